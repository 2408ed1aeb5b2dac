"""Box operations for YOLO-style detection: IoU, NMS, grid encoding, average precision.

Boxes are in the synthetic dataset's order, as fractions of the image:

* corners: ``(y_min, x_min, y_max, x_max)``
* centres: ``(y_c, x_c, h, w)``

Everything except :func:`average_precision` and :func:`precision_recall` is
pure ``jnp`` and jit-able with fixed shapes (padding rows are marked by a
label of ``-1`` or a ``valid`` mask). Average precision is a host-side,
vectorised numpy evaluation over a whole data set, as in the VOC/COCO
toolkits.

YOLO targets (:func:`yolo_encode`), per image, on an ``S x S`` grid with
``B`` anchors ``(h, w)``: an object belongs to the cell holding its centre
and to the anchor whose shape has the highest IoU with it (both centred);
that slot's ``(S, S, B, 5 + C)`` row is

  ``[1, ty, tx, th, tw, one_hot(class)]`` with ``ty, tx`` the centre's offset in
  the cell (in [0, 1)) and ``th = log(h / anchor_h)``, ``tw = log(w / anchor_w)``
  (YOLOv2's parametrisation), and all-zero rows elsewhere.

Two objects in one slot keep the later one (YOLO's known limit: more anchors
or a finer grid fix it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
FORMATS = ('corners', 'centers')


def _check_boxes(boxes: Array, name: str) -> Array:
  boxes = jnp.asarray(boxes)
  if boxes.ndim < 1 or boxes.shape[-1] != 4:
    raise ValueError(f'{name} must have a last axis of 4 box coordinates, got shape '
                     f'{boxes.shape}.')
  return boxes


def centers_to_corners(boxes: Array) -> Array:
  """``(..., 4)`` ``(y_c, x_c, h, w)`` -> ``(y_min, x_min, y_max, x_max)``."""
  boxes = _check_boxes(boxes, 'boxes')
  c, hw = boxes[..., :2], boxes[..., 2:]
  return jnp.concatenate([c - hw / 2.0, c + hw / 2.0], axis=-1)


def corners_to_centers(boxes: Array) -> Array:
  """``(..., 4)`` ``(y_min, x_min, y_max, x_max)`` -> ``(y_c, x_c, h, w)``."""
  boxes = _check_boxes(boxes, 'boxes')
  lo, hi = boxes[..., :2], boxes[..., 2:]
  return jnp.concatenate([(lo + hi) / 2.0, hi - lo], axis=-1)


def box_area(boxes: Array) -> Array:
  """``(..., 4)`` corners -> ``(...)`` areas (0 for empty or inverted boxes)."""
  boxes = _check_boxes(boxes, 'boxes')
  return jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * jnp.maximum(
      boxes[..., 3] - boxes[..., 1], 0.0)


def box_iou(a: Array, b: Array, fmt: str = 'corners') -> Array:
  """Pairwise intersection over union: ``(N, 4) x (M, 4) -> (N, M)``.

  Leading batch axes broadcast: ``(..., N, 4) x (..., M, 4) -> (..., N, M)``.
  Two empty boxes have IoU 0 (not NaN).
  """
  if fmt not in FORMATS:
    raise ValueError(f'fmt must be one of {FORMATS}, got {fmt!r}.')
  a, b = _check_boxes(a, 'a'), _check_boxes(b, 'b')
  if fmt == 'centers':
    a, b = centers_to_corners(a), centers_to_corners(b)
  lo = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])
  hi = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
  inter = jnp.prod(jnp.maximum(hi - lo, 0.0), axis=-1)
  union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter
  return jnp.where(union > 0, inter / jnp.where(union > 0, union, 1.0), 0.0)


def nms(boxes: Array, scores: Array, *, iou_threshold: float = 0.5,
        score_threshold: float = 0.0, max_outputs: int = 100,
        classes: Array | None = None) -> tuple[Array, Array]:
  """Greedy non-maximum suppression with fixed-size output (jit-compatible).

  Boxes are visited by decreasing score; one is kept if its score exceeds
  ``score_threshold`` and its IoU with every kept box (of the same class, when
  ``classes`` is given: per-class NMS) is at most ``iou_threshold``.

  Args:
    boxes: (N, 4) corners.
    scores: (N,).
    iou_threshold, score_threshold: as above.
    max_outputs: the size K of the result.
    classes: optional (N,) int class ids.

  Returns:
    ``(indices, valid)``: (K,) int32 indices into ``boxes`` of the kept boxes
    by decreasing score, and (K,) bool; rows past the kept count are padding
    (``valid`` False, index 0).
  """
  boxes, scores = _check_boxes(boxes, 'boxes'), jnp.asarray(scores)
  if boxes.ndim != 2 or scores.shape != boxes.shape[:1]:
    raise ValueError(f'need boxes (N, 4) and scores (N,), got {boxes.shape} and '
                     f'{scores.shape}.')
  n = boxes.shape[0]
  order = jnp.argsort(-scores)
  iou = box_iou(boxes[order], boxes[order])
  if classes is not None:
    cls = jnp.asarray(classes)[order]
    iou = jnp.where(cls[:, None] == cls[None, :], iou, 0.0)
  candidate = scores[order] > score_threshold
  earlier = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]  # [i, j]: j before i

  def visit(i, keep):
    suppressed = jnp.any(keep & earlier[i] & (iou[i] > iou_threshold))
    return keep.at[i].set(candidate[i] & ~suppressed)

  keep = lax.fori_loop(0, n, visit, jnp.zeros(n, jnp.bool_))
  # Kept positions first (stable, so still by decreasing score), then padding.
  rank = jnp.argsort(~keep, stable=True)[:max_outputs]
  if max_outputs > n:
    rank = jnp.concatenate([rank, jnp.zeros(max_outputs - n, rank.dtype)])
  valid = jnp.arange(max_outputs) < jnp.sum(keep)
  return jnp.where(valid, order[rank], 0).astype(jnp.int32), valid


# ----------------------------------------------------------------------------- YOLO grid


def _check_anchors(anchors: Array) -> Array:
  anchors = jnp.asarray(anchors, jnp.float32)
  if anchors.ndim != 2 or anchors.shape[1] != 2:
    raise ValueError(f'anchors must be (B, 2) (h, w) fractions of the image, got '
                     f'{anchors.shape}.')
  return anchors


def flip_boxes_lr(boxes: Array) -> Array:
  """Corner boxes ``(..., 4)`` in [0, 1] of the left-right mirrored image."""
  b = jnp.asarray(boxes)
  return jnp.stack([b[..., 0], 1.0 - b[..., 3], b[..., 2], 1.0 - b[..., 1]], axis=-1)


def yolo_encode(boxes: Array, labels: Array, *, grid: int, anchors: Array,
                num_classes: int) -> Array:
  """One image's objects -> its ``(S, S, B, 5 + C)`` YOLO target.

  Args:
    boxes: (K, 4) corners in [0, 1]; rows with ``labels < 0`` are padding.
    labels: (K,) int class ids, -1 for padding.
    grid: S.
    anchors: (B, 2) anchor ``(h, w)`` as fractions of the image.
    num_classes: C.
  """
  boxes, anchors = _check_boxes(boxes, 'boxes'), _check_anchors(anchors)
  labels = jnp.asarray(labels)
  if boxes.ndim != 2 or labels.shape != boxes.shape[:1]:
    raise ValueError(f'need boxes (K, 4) and labels (K,), got {boxes.shape} and '
                     f'{labels.shape}.')
  num_anchors = anchors.shape[0]
  cy, cx, h, w = jnp.moveaxis(corners_to_centers(boxes), -1, 0)
  h, w = jnp.maximum(h, 1e-6), jnp.maximum(w, 1e-6)
  row = jnp.clip(jnp.floor(cy * grid), 0, grid - 1).astype(jnp.int32)
  col = jnp.clip(jnp.floor(cx * grid), 0, grid - 1).astype(jnp.int32)
  # Anchor choice: IoU of shapes with aligned centres.
  inter = jnp.minimum(h[:, None], anchors[None, :, 0]) * jnp.minimum(w[:, None],
                                                                     anchors[None, :, 1])
  shape_iou = inter / (h[:, None] * w[:, None] + jnp.prod(anchors, axis=1)[None] - inter)
  anchor = jnp.argmax(shape_iou, axis=1).astype(jnp.int32)
  dtype = boxes.dtype if jnp.issubdtype(boxes.dtype, jnp.floating) else jnp.float32
  rows = jnp.concatenate([
      jnp.ones((boxes.shape[0], 1), dtype),
      (cy * grid - row.astype(dtype))[:, None], (cx * grid - col.astype(dtype))[:, None],
      jnp.log(h / anchors[anchor, 0])[:, None], jnp.log(w / anchors[anchor, 1])[:, None],
      jax.nn.one_hot(labels, num_classes, dtype=dtype)], axis=1).astype(dtype)
  target = jnp.zeros((grid, grid, num_anchors, 5 + num_classes), dtype)
  valid = labels >= 0
  # Padding rows are sent out of bounds and dropped.
  row = jnp.where(valid, row, grid)
  return target.at[row, col, anchor].set(rows, mode='drop')


def yolo_decode(output: Array, anchors: Array, *, from_logits: bool = True
                ) -> tuple[Array, Array, Array]:
  """A ``(..., S, S, B, 5 + C)`` grid -> boxes, objectness and class probabilities.

  Args:
    output: a network's raw output (``from_logits=True``: objectness and the
      centre offsets pass through a sigmoid, classes through a softmax) or a
      target from :func:`yolo_encode` (``from_logits=False``).
    anchors: (B, 2).

  Returns:
    ``(boxes, objectness, class_probs)``: (..., S*S*B, 4) corners,
    (..., S*S*B) and (..., S*S*B, C), in (row, col, anchor) order.
  """
  anchors = _check_anchors(anchors)
  output = jnp.asarray(output)
  s = output.shape[-4]
  if output.ndim < 4 or output.shape[-3] != s or output.shape[-2] != anchors.shape[0]:
    raise ValueError(f'output must be (..., S, S, B, 5 + C) with B={anchors.shape[0]} '
                     f'anchors, got {output.shape}.')
  obj, tyx, thw, cls = (output[..., 0], output[..., 1:3], output[..., 3:5], output[..., 5:])
  if from_logits:
    obj, tyx, cls = jax.nn.sigmoid(obj), jax.nn.sigmoid(tyx), jax.nn.softmax(cls, axis=-1)
  cells = jnp.stack(jnp.meshgrid(jnp.arange(s), jnp.arange(s), indexing='ij'), -1).astype(
      tyx.dtype)
  centre = (cells[:, :, None, :] + tyx) / s
  size = anchors.astype(thw.dtype) * jnp.exp(thw)
  boxes = centers_to_corners(jnp.concatenate([centre, size], axis=-1))
  lead = output.shape[:-4]
  n = s * s * anchors.shape[0]
  return (boxes.reshape(*lead, n, 4), obj.reshape(*lead, n),
          cls.reshape(*lead, n, cls.shape[-1]))


def detect(output: Array, anchors: Array, *, iou_threshold: float = 0.5,
           score_threshold: float = 0.05, max_outputs: int = 50
           ) -> tuple[Array, Array, Array, Array]:
  """One image's raw YOLO output -> up to ``max_outputs`` detections after per-class NMS.

  Each slot predicts its most likely class with score ``p_obj * p_class``.

  Returns:
    ``(boxes (K, 4), scores (K,), classes (K,), valid (K,))``.
  """
  boxes, obj, cls = yolo_decode(output, anchors)
  classes = jnp.argmax(cls, axis=-1).astype(jnp.int32)
  scores = obj * jnp.max(cls, axis=-1)
  idx, valid = nms(boxes, scores, iou_threshold=iou_threshold, score_threshold=score_threshold,
                   max_outputs=max_outputs, classes=classes)
  return boxes[idx], jnp.where(valid, scores[idx], 0.0), classes[idx], valid


# ----------------------------------------------------------------------------- evaluation


def _iou_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Pairwise IoU on the host: ``(..., N, 4) x (..., M, 4) -> (..., N, M)`` float32.

  The numpy twin of :func:`box_iou` (corners only), with the same float32
  arithmetic in the same order so that IoUs on a threshold fall the same way,
  for evaluation over a whole data set where dispatching one jnp call per
  detection would cost far more than the arithmetic.
  """
  a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
  lo = np.maximum(a[..., :, None, :2], b[..., None, :, :2])
  hi = np.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
  wh = np.maximum(hi - lo, np.float32(0))
  inter = wh[..., 0] * wh[..., 1]

  def area(x):
    return (np.maximum(x[..., 2] - x[..., 0], np.float32(0)) *
            np.maximum(x[..., 3] - x[..., 1], np.float32(0)))

  union = area(a)[..., :, None] + area(b)[..., None, :] - inter
  return np.where(union > 0, inter / np.where(union > 0, union, np.float32(1)), np.float32(0))


class PRCurve(NamedTuple):
  """One class's precision-recall curve over its ranked detections.

  Attributes:
    precision, recall: (R,) after each of the class's R ranked detections
      (by decreasing score; detections matched to an ignored ground-truth box
      are left out). ``recall`` is NaN throughout when ``n_gt`` is 0.
    scores: (R,) the detections' scores, so a point can be read as a threshold.
    n_gt: ground-truth boxes of the class, ignored ones not counted.
    ap: all-point AP (NaN when ``n_gt`` is 0; 0 when there are no detections).
  """
  precision: np.ndarray
  recall: np.ndarray
  scores: np.ndarray
  n_gt: int
  ap: float


# Image chunks are padded to their own most detections x most ground-truth
# boxes; this bounds the (images, D, G) float32 IoU block to ~16 MB.
_MATCH_BLOCK = 1 << 22


def _match_chunk(dets: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 gts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                 iou_threshold: float) -> list[np.ndarray]:
  """Greedy matching of a few images at once -> per image (D,) int8 status.

  Status: 1 true positive, 0 false positive, -1 ignored (matched to an
  ignored box). Within an image, detections are visited by decreasing score
  (ties: earlier row first, as a stable sort of all images' detections
  would); each takes the unmatched ground-truth box of its class with the
  highest IoU (first on ties). The loop runs over rank positions (at most D
  steps), each step vectorised over the chunk's images.
  """
  n = len(dets)
  d_max = max(len(s) for _, s, _ in dets)
  g_max = max(1, max(len(c) for _, c, _ in gts))  # one padding column keeps argmax defined
  db = np.zeros((n, d_max, 4), np.float32)
  ds = np.full((n, d_max), -np.inf)
  dc = np.full((n, d_max), -2, np.int64)
  live = np.zeros((n, d_max), bool)
  gb = np.zeros((n, g_max, 4), np.float32)
  gc = np.full((n, g_max), -1, np.int64)
  gi = np.zeros((n, g_max), bool)
  for i, ((b, s, c), (g, l, ig)) in enumerate(zip(dets, gts)):
    db[i, :len(s)], ds[i, :len(s)], dc[i, :len(s)], live[i, :len(s)] = b, s, c, True
    gb[i, :len(l)], gc[i, :len(l)], gi[i, :len(l)] = g, l, ig
  iou = _iou_np(db, gb)
  iou[dc[:, :, None] != gc[:, None, :]] = -1.0  # other classes (and padding) never match
  # Padding rows score -inf and sit last, so a stable sort leaves them at the end.
  order = np.argsort(-ds, axis=1, kind='stable')
  status = np.zeros((n, d_max), np.int8)
  used = np.zeros((n, g_max), bool)
  rows = np.arange(n)
  for r in range(d_max):
    k = order[:, r]
    cand = np.where(used, np.float32(-1), iou[rows, k])
    j = np.argmax(cand, axis=1)
    hit = (cand[rows, j] >= iou_threshold) & live[rows, k]
    ignored = hit & gi[rows, j]
    status[rows, k] = np.where(ignored, -1, hit.astype(np.int8))
    # An ignored box is never used up: like VOC's "difficult", it absorbs any
    # number of detections without making them duplicates.
    take = hit & ~ignored
    used[rows[take], j[take]] = True
  return [status[i, :len(s)] for i, (_, s, _) in enumerate(dets)]


def _all_point_ap(precision: np.ndarray, recall: np.ndarray) -> float:
  """Area under the step curve of the monotone precision envelope (VOC 2010+)."""
  envelope = np.maximum.accumulate(precision[::-1])[::-1]
  recall_steps = np.diff(np.concatenate([[0.0], recall]))
  return float(np.sum(recall_steps * envelope))


def precision_recall(detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                     ground_truth: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int,
                     *, iou_threshold: float = 0.5,
                     ignore: Sequence[np.ndarray] | None = None) -> list[PRCurve]:
  """Per-class precision-recall curves and VOC all-point AP (see :func:`average_precision`).

  Args:
    detections: per image ``(boxes (D, 4), scores (D,), classes (D,))``
      (numpy; only valid rows). Classes outside ``[0, num_classes)`` are
      not evaluated.
    ground_truth: per image ``(boxes (G, 4), classes (G,))``; classes < 0 are
      padding.
    num_classes: C.
    iou_threshold: a match needs IoU >= this.
    ignore: optional, per image (G,) bool: ground-truth boxes to ignore
      (VOC "difficult"; COCO crowd regions can be passed the same way). As
      in the VOC devkit they are not counted in ``n_gt``, and a detection
      matched to one is neither a true nor a false positive.

  Returns:
    C :class:`PRCurve`, one per class.
  """
  if len(detections) != len(ground_truth):
    raise ValueError(f'{len(detections)} images of detections but {len(ground_truth)} of '
                     'ground truth.')
  if ignore is not None and len(ignore) != len(ground_truth):
    raise ValueError(f'ignore has {len(ignore)} images but ground truth has '
                     f'{len(ground_truth)}.')
  dets, gts = [], []
  for i, ((b, s, c), (g, l)) in enumerate(zip(detections, ground_truth)):
    s, c = np.asarray(s, np.float64).reshape(-1), np.asarray(c).reshape(-1).astype(np.int64)
    l = np.asarray(l).reshape(-1).astype(np.int64)
    ig = np.zeros(len(l), bool) if ignore is None else np.asarray(ignore[i], bool).reshape(-1)
    if ig.shape != l.shape:
      raise ValueError(f'image {i}: ignore has {ig.size} flags for {l.size} ground-truth boxes.')
    keep = (c >= 0) & (c < num_classes)
    dets.append((np.asarray(b, np.float32).reshape(-1, 4)[keep], s[keep], c[keep]))
    # -1 for padding and out-of-range labels: never equal to a kept detection's class.
    gts.append((np.asarray(g, np.float32).reshape(-1, 4),
                np.where((l >= 0) & (l < num_classes), l, -1), ig))

  status, start = [], 0
  while start < len(dets):
    stop, d_max, g_max = start, 1, 1
    while stop < len(dets):
      d_new, g_new = max(d_max, len(dets[stop][1])), max(g_max, len(gts[stop][1]))
      if stop > start and (stop + 1 - start) * d_new * g_new > _MATCH_BLOCK:
        break
      d_max, g_max, stop = d_new, g_new, stop + 1
    status += _match_chunk(dets[start:stop], gts[start:stop], iou_threshold)
    start = stop

  # Flattened in (image, row) order, so a stable sort by score breaks ties as
  # ranking every image's detections in turn would.
  scores = np.concatenate([s for _, s, _ in dets] + [np.zeros(0)])
  classes = np.concatenate([c for _, _, c in dets] + [np.zeros(0, np.int64)])
  status = np.concatenate(status + [np.zeros(0, np.int8)])
  order = np.argsort(-scores, kind='stable')
  scores, classes, status = scores[order], classes[order], status[order]
  n_gt = np.zeros(num_classes, np.int64)
  for _, l, ig in gts:
    np.add.at(n_gt, l[(l >= 0) & ~ig], 1)

  curves = []
  for c in range(num_classes):
    mine = (classes == c) & (status >= 0)
    tp = (status[mine] == 1).astype(np.float64)
    cum_tp = np.cumsum(tp)
    precision = cum_tp / np.arange(1, len(tp) + 1)
    if n_gt[c] == 0:
      recall, ap = np.full(len(tp), np.nan), float('nan')
    else:
      recall = cum_tp / n_gt[c]
      ap = _all_point_ap(precision, recall) if len(tp) else 0.0
    curves.append(PRCurve(precision, recall, scores[mine], int(n_gt[c]), ap))
  return curves


def average_precision(detections: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                      ground_truth: Sequence[tuple[np.ndarray, np.ndarray]], num_classes: int,
                      *, iou_threshold: float = 0.5,
                      ignore: Sequence[np.ndarray] | None = None) -> tuple[float, np.ndarray]:
  """VOC-style average precision per class and their mean (mAP@``iou_threshold``).

  Per class, detections of all images are ranked by score; each is a true
  positive if it overlaps a not-yet-matched ground-truth box of its class by
  IoU >= the threshold (greedy, highest score first), else a false positive.
  AP is the area under the precision-recall curve with precision made
  monotone (all-point interpolation, VOC 2010+). Ground-truth boxes flagged
  in ``ignore`` (VOC "difficult") are not counted, and detections matched to
  them are dropped from the ranking. Vectorised numpy on the host; the
  curves themselves come from :func:`precision_recall`.

  Args:
    detections: per image ``(boxes (D, 4), scores (D,), classes (D,))`` (numpy;
      only valid rows).
    ground_truth: per image ``(boxes (G, 4), classes (G,))``; classes < 0 are
      padding.
    num_classes: C.
    iou_threshold: a match needs IoU >= this.
    ignore: optional, per image (G,) bool flags of ground-truth boxes to ignore.

  Returns:
    ``(mAP, ap)``: the mean over classes that have ground truth, and (C,) AP
    per class (NaN for classes without ground truth).
  """
  curves = precision_recall(detections, ground_truth, num_classes,
                            iou_threshold=iou_threshold, ignore=ignore)
  ap = np.array([c.ap for c in curves], np.float64).reshape(num_classes)
  return float(np.nanmean(ap)) if np.any(~np.isnan(ap)) else float('nan'), ap
