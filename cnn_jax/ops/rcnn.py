"""The pure pieces of two-stage detection between the anchors and the heads (torchvision semantics).

Per image, static shapes (padding rows are marked by ``valid`` masks or
label -1), boxes ``(y0, x0, y1, x1)`` in input pixels:

* :func:`match_boxes` — torchvision's ``Matcher`` (IoU thresholds, the ignored
  band, low-quality matches);
* :func:`sample_balanced` / :func:`sample_indices` — ``BalancedPositiveNegativeSampler``
  as a mask or as a fixed-size list with positives first;
* :func:`select_proposals` — ``RegionProposalNetwork.filter_proposals``;
* :func:`detect_boxes` — ``RoIHeads.postprocess_detections``;
* losses over any leading axes, normalised over the whole batch as torchvision
  concatenates every image's samples: :func:`rpn_loss`, :func:`fast_rcnn_loss`,
  :func:`mask_rcnn_loss`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops import anchors as anchor_ops
from cnn_jax.ops import boxes as box_ops
from cnn_jax.ops import losses

Array = jax.Array
BACKGROUND = -1  # torchvision's Matcher.BELOW_LOW_THRESHOLD
IGNORED = -2     # torchvision's Matcher.BETWEEN_THRESHOLDS
BOX_BETA = 1.0 / 9  # torchvision's smooth-L1 beta for both box losses


def match_boxes(iou: Array, gt_valid: Array, *, high: float, low: float,
                allow_low_quality: bool) -> Array:
  """``(N,)`` int32: each of N boxes' ground-truth row, or BACKGROUND / IGNORED.

  Args:
    iou: (G, N) IoU of G ground-truth boxes with N anchors or proposals.
    gt_valid: (G,) bool; padding rows never match.
    high, low: a best IoU ``>= high`` matches; ``< low`` is background; between is ignored.
    allow_low_quality: each valid ground truth also keeps every box whose IoU
      with it equals its best IoU (ties included, if above 0), so no object
      goes without an anchor.
  """
  if low > high:
    raise ValueError(f'match_boxes needs low <= high, got low={low}, high={high}.')
  iou = jnp.where(gt_valid[:, None], iou, -1.0)
  best = jnp.max(iou, axis=0)
  arg = jnp.argmax(iou, axis=0).astype(jnp.int32)
  matched = jnp.where(best >= high, arg, jnp.where(best < low, BACKGROUND, IGNORED))
  if allow_low_quality:
    per_gt = jnp.max(iou, axis=1, keepdims=True)
    low_quality = jnp.any((iou == per_gt) & (per_gt > 0) & gt_valid[:, None], axis=0)
    matched = jnp.where(low_quality, arg, matched)
  return jnp.where(jnp.any(gt_valid), matched, BACKGROUND).astype(jnp.int32)


def _priorities(key: Array, labels: Array, num_samples: int, positive_fraction: float):
  """Random ranks with positives' quota first: (order (N,), keep count per kind)."""
  u = jax.random.uniform(key, labels.shape)
  fg, bg = labels == 1, labels == 0
  num_pos = jnp.minimum(int(num_samples * positive_fraction), jnp.sum(fg))
  num_neg = jnp.minimum(num_samples - num_pos, jnp.sum(bg))
  # Positives rank before negatives before ignored; random order within each.
  score = jnp.where(fg, 2.0, jnp.where(bg, 1.0, 0.0)) + u
  order = jnp.argsort(-score)
  rank_in_kind = jnp.empty_like(order).at[order].set(jnp.arange(labels.shape[0]))
  rank_in_kind = rank_in_kind - jnp.where(fg, 0, jnp.where(bg, jnp.sum(fg), 0))
  return fg, bg, num_pos, num_neg, rank_in_kind


def sample_balanced(key: Array, labels: Array, num_samples: int,
                    positive_fraction: float) -> Array:
  """``(N,)`` bool: at most ``num_samples * fraction`` positives, the rest negatives.

  ``labels`` (N,) int: 1 foreground, 0 background, -1 ignored (never drawn).
  """
  fg, bg, num_pos, num_neg, rank = _priorities(key, labels, num_samples, positive_fraction)
  return (fg & (rank < num_pos)) | (bg & (rank < num_neg))


def sample_indices(key: Array, labels: Array, num_samples: int, positive_fraction: float
                   ) -> tuple[Array, Array]:
  """The same draw as a list: ``(indices (num_samples,) int32, valid (num_samples,))``.

  Sampled positives come first, then negatives, then padding (index 0).
  """
  chosen = sample_balanced(key, labels, num_samples, positive_fraction)
  u = jax.random.uniform(jax.random.fold_in(key, 1), labels.shape)
  score = jnp.where(chosen, jnp.where(labels == 1, 3.0, 2.0) + u, 0.0)
  order = jnp.argsort(-score)[:num_samples]
  if num_samples > labels.shape[0]:
    order = jnp.concatenate([order, jnp.zeros(num_samples - labels.shape[0], order.dtype)])
  valid = jnp.arange(num_samples) < jnp.sum(chosen)
  return jnp.where(valid, order, 0).astype(jnp.int32), valid


def select_proposals(boxes: Array, logits: Array, *, level_sizes: Sequence[int], image_hw: Sequence[int], pre_nms_top_n: int,
                     post_nms_top_n: int, nms_threshold: float, min_size: float,
                     score_threshold: float = 0.0) -> tuple[Array, Array, Array]:
  """One image's RPN proposals: ``(boxes (P, 4), scores (P,), valid (P,))``, P = post_nms_top_n.

  The top ``pre_nms_top_n`` logits of each level (levels are contiguous runs
  of ``level_sizes``), sigmoid, clipped to the image, small and low-score
  boxes dropped, NMS within each level, the best ``post_nms_top_n`` kept.
  Detached (no gradient), as torchvision's.

  Args:
    boxes: (N, 4) decoded anchors, level by level; logits: (N,) objectness.
  """
  boxes, logits = lax.stop_gradient(boxes), lax.stop_gradient(logits)
  if sum(level_sizes) != boxes.shape[0]:
    raise ValueError(f'level_sizes add up to {sum(level_sizes)}, not the {boxes.shape[0]} boxes.')
  picks, lvls, start = [], [], 0
  for i, n in enumerate(level_sizes):
    k = min(pre_nms_top_n, n)
    _, idx = lax.top_k(logits[start:start + n], k)
    picks.append(idx + start)
    lvls.append(np.full(k, i, np.int32))
    start += n
  idx = jnp.concatenate(picks)
  cand = anchor_ops.clip_boxes(boxes[idx], image_hw)
  scores = jax.nn.sigmoid(logits[idx])
  ok = anchor_ops.small_box_mask(cand, min_size) & (scores >= score_threshold)
  keep, valid = box_ops.nms(cand, jnp.where(ok, scores, -1.0), iou_threshold=nms_threshold,
                            score_threshold=-0.5, max_outputs=post_nms_top_n,
                            classes=jnp.asarray(np.concatenate(lvls)))
  return cand[keep], jnp.where(valid, scores[keep], 0.0), valid


def detect_boxes(class_logits: Array, box_deltas: Array, proposals: Array, valid: Array, *,
                 image_hw: Sequence[int], weights: Sequence[float] = (10.0, 10.0, 5.0, 5.0),
                 score_threshold: float = 0.05, nms_threshold: float = 0.5,
                 max_detections: int = 100, min_size: float = 1e-2,
                 max_candidates: int = 1000) -> dict[str, Array]:
  """One image's final detections from its scored RoIs (class 0 = background).

  Args:
    class_logits: (R, C+1); box_deltas: (R, C+1, 4); proposals: (R, 4); valid: (R,).

  Returns:
    ``boxes`` (D, 4) pixels, ``scores`` (D,), ``classes`` (D,) foreground class
    ``0 .. C-1``, ``valid`` (D,), ``roi`` (D,) the source row; D = max_detections.
    The best ``max_candidates`` (RoI, class) pairs by score enter the
    class-aware NMS (a fixed bound where torchvision filters by threshold).
  """
  r, k = class_logits.shape
  probs = jax.nn.softmax(class_logits.astype(jnp.float32), -1)[:, 1:]
  decoded = anchor_ops.decode_boxes(box_deltas[:, 1:], proposals[:, None], weights=weights)
  decoded = anchor_ops.clip_boxes(decoded, image_hw)
  ok = valid[:, None] & anchor_ops.small_box_mask(decoded, min_size) & (probs > score_threshold)
  flat = jnp.where(ok, probs, -1.0).reshape(-1)
  top, idx = lax.top_k(flat, min(max_candidates, flat.shape[0]))
  cand_boxes = decoded.reshape(-1, 4)[idx]
  cls = (idx % (k - 1)).astype(jnp.int32)
  keep, det_valid = box_ops.nms(cand_boxes, top, iou_threshold=nms_threshold,
                                score_threshold=-0.5, max_outputs=max_detections, classes=cls)
  return {'boxes': jnp.where(det_valid[:, None], cand_boxes[keep], 0.0),
          'scores': jnp.where(det_valid, top[keep], 0.0),
          'classes': jnp.where(det_valid, cls[keep], 0),
          'valid': det_valid, 'roi': (idx[keep] // (k - 1)).astype(jnp.int32)}


def _mean_over(total: Array, count: Array) -> Array:
  return total / jnp.maximum(count, 1).astype(jnp.float32)


def rpn_loss(logits: Array, deltas: Array, labels: Array, target_deltas: Array,
             sampled: Array) -> tuple[Array, Array]:
  """``(objectness, box)``: BCE over sampled anchors; smooth-L1 (beta 1/9) of sampled positives.

  Shapes ``(..., N)`` / ``(..., N, 4)``; both terms are divided by the number
  of sampled anchors in the whole batch (torchvision's normalisation).
  """
  n = jnp.sum(sampled)
  bce = losses.sigmoid_binary_cross_entropy(logits, (labels == 1).astype(jnp.float32),
                                            reduction='none')
  obj = _mean_over(jnp.sum(jnp.where(sampled, bce, 0.0)), n)
  pos = sampled & (labels == 1)
  l1 = jnp.sum(losses.smooth_l1(deltas - target_deltas, BOX_BETA), -1)
  return obj, _mean_over(jnp.sum(jnp.where(pos, l1, 0.0)), n)


def fast_rcnn_loss(class_logits: Array, box_deltas: Array, labels: Array,
                   target_deltas: Array, valid: Array) -> tuple[Array, Array]:
  """``(classification, box)`` of sampled RoIs: CE over valid rows; the gt class's smooth-L1.

  Shapes ``(..., R, C+1)``, ``(..., R, C+1, 4)``, labels ``(..., R)`` (0 background),
  ``(..., R, 4)``, ``(..., R)``; the box term sums over valid foreground rows and
  divides by all valid rows.
  """
  n = jnp.sum(valid)
  ce = losses.softmax_cross_entropy(class_logits, labels, reduction='none')
  cls = _mean_over(jnp.sum(jnp.where(valid, ce, 0.0)), n)
  picked = jnp.take_along_axis(box_deltas, labels[..., None, None], axis=-2)[..., 0, :]
  l1 = jnp.sum(losses.smooth_l1(picked - target_deltas, BOX_BETA), -1)
  return cls, _mean_over(jnp.sum(jnp.where(valid & (labels > 0), l1, 0.0)), n)


def mask_rcnn_loss(mask_logits: Array, labels: Array, targets: Array, valid: Array) -> Array:
  """Per-pixel BCE of the gt class's mask channel, mean over valid foreground RoIs' pixels.

  Shapes ``(..., R, M, M, C+1)``, ``(..., R)``, ``(..., R, M, M)``, ``(..., R)``;
  0 when no RoI is foreground.
  """
  picked = jnp.take_along_axis(mask_logits, labels[..., None, None, None], axis=-1)[..., 0]
  bce = losses.sigmoid_binary_cross_entropy(picked, targets, reduction='none')
  fg = (valid & (labels > 0))[..., None, None]
  count = jnp.sum(fg) * targets.shape[-1] * targets.shape[-2]
  return _mean_over(jnp.sum(jnp.where(fg, bce, 0.0)), count)
