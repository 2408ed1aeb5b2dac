"""The R-CNN family: R-CNN, Fast R-CNN, Faster R-CNN and Mask R-CNN, one code path.

* :class:`TwoStageDetector` — a zoo backbone (``features_only``), an optional
  feature pyramid (:class:`FPN`), proposals, RoI features and the box (and
  mask) heads. Its options make the family:

  ==============  ==================  ============  ===========
  model           proposals           RoI op        mask head
  ==============  ==================  ============  ===========
  Fast R-CNN      fixed (anchor grid)  RoIPool      no
  Faster R-CNN    RPN                 RoIAlign      no
  Mask R-CNN      RPN                 RoIAlign      yes
  ==============  ==================  ============  ===========

* :class:`RCNN` — the original (Girshick et al. 2014) as a teaching
  baseline: every proposal is cropped out of the *image*, warped to a fixed
  size and classified by a zoo CNN on its own, so the backbone runs once per
  proposal instead of once per image.

Boxes are the batch's normalised corners ``(y0, x0, y1, x1)`` at the model's
boundary and input pixels inside (the ops in :mod:`cnn_jax.ops.anchors`,
:mod:`cnn_jax.ops.rcnn`, :mod:`cnn_jax.ops.roi` are torchvision's, in
pixels). Class 0 of the heads is background; detections report foreground
classes ``0 .. C-1`` like the batch's ``box_labels``.

Training (``train=True``) needs ``targets``: ``boxes`` (B, K, 4), ``labels``
(B, K) (-1 padding), ``keys`` (B,) per-example PRNG keys for the samplers (so a
draw never depends on the device split) and, for masks, ``masks`` (B, K, H, W).
Target assignment (anchor and proposal matching, balanced sampling, mask
crops) happens here, as in torchvision's ``RegionProposalNetwork`` /
``RoIHeads``; the output dict holds predictions and their targets, and the
losses are :func:`cnn_jax.ops.rcnn.rpn_loss`, ``fast_rcnn_loss`` and
``mask_rcnn_loss`` (the ``rcnn`` task sums them). Inference returns fixed-size
padded detections ``boxes`` (B, D, 4), ``scores``, ``classes``, ``valid`` and
with a mask head ``masks`` (B, D, M, M) probabilities inside each box.

Variable names follow torchvision's ``fasterrcnn_resnet50_fpn`` /
``maskrcnn_resnet50_fpn`` module tree (``backbone`` = ``backbone.body``,
``fpn`` = ``backbone.fpn``, ``rpn_head`` = ``rpn.head``, ``box_head``,
``box_predictor``, ``mask_head``, ``mask_predictor`` = ``roi_heads.*``), so
:func:`cnn_jax.models.weights.torchvision_rcnn_names` maps a state dict onto
them; with a ``frozen_bn`` ResNet-50 and ``num_classes=90`` (torchvision's 91
with background) the parameter counts equal torchvision's (41,755,286 and
44,401,393).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.nn.layers import Conv, Dense, cast
from cnn_jax.ops import anchors as anchor_ops
from cnn_jax.ops import boxes as box_ops
from cnn_jax.ops import pool
from cnn_jax.ops import rcnn as rcnn_ops
from cnn_jax.ops import roi

PROPOSALS = ('rpn', 'fixed')
ROI_OPS = ('align', 'pool')
RPN_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)  # torchvision's RoIHeads box coder


def _scale(h: int, w: int) -> jax.Array:
  return jnp.asarray([h, w, h, w], jnp.float32)


def _stride(image_hw: tuple[int, int], fmap: jax.Array, name: str) -> int:
  stride = image_hw[0] // fmap.shape[1]
  if stride < 1 or stride & (stride - 1) or image_hw[0] != stride * fmap.shape[1]:
    raise ValueError(f'feature map {name!r} is {fmap.shape[1]}x{fmap.shape[2]} for a '
                     f'{image_hw[0]}x{image_hw[1]} image: its stride must be a power of two '
                     '(use an image size divisible by the largest stride).')
  return stride


class FPN(nn.Module):
  """torchvision's ``FeaturePyramidNetwork`` + ``LastLevelMaxPool``.

  ``[(B, H_l, W_l, C_l)]`` fine to coarse -> ``[(B, H_l, W_l, channels)]`` and,
  with ``extra_pool``, one more level max-pooled from the coarsest (stride x2).
  Lateral 1x1 convs (``inner_blocks_i``), nearest-neighbour top-down
  upsampling, 3x3 output convs (``layer_blocks_i``).
  """
  channels: int = 256
  extra_pool: bool = True
  conv_impl: str = 'lax'
  dtype: Any = None

  @nn.compact
  def __call__(self, feats: Sequence[jax.Array]) -> list[jax.Array]:
    common = dict(conv_impl=self.conv_impl, dtype=self.dtype)
    inner = [Conv(self.channels, 1, name=f'inner_blocks_{i}', **common)(f)
             for i, f in enumerate(feats)]
    last = inner[-1]
    outs = [Conv(self.channels, 3, name=f'layer_blocks_{len(feats) - 1}', **common)(last)]
    for i in range(len(feats) - 2, -1, -1):
      fy, fx = inner[i].shape[1] // last.shape[1], inner[i].shape[2] // last.shape[2]
      last = inner[i] + jnp.repeat(jnp.repeat(last, fy, axis=1), fx, axis=2)
      outs.insert(0, Conv(self.channels, 3, name=f'layer_blocks_{i}', **common)(last))
    if self.extra_pool:
      outs.append(pool.max_pool(outs[-1], 1, stride=2))
    return outs


class RPNHead(nn.Module):
  """Shared over levels: 3x3 conv + ReLU, then per anchor an objectness logit and 4 deltas.

  ``[(B, h_l, w_l, C)] -> (logits (B, N), deltas (B, N, 4))``, N = sum of
  ``h_l * w_l * num_anchors``, in :func:`cnn_jax.ops.anchors.anchor_grid` order.
  """
  num_anchors: int
  conv_impl: str = 'lax'
  dtype: Any = None

  @nn.compact
  def __call__(self, maps: Sequence[jax.Array]) -> tuple[jax.Array, jax.Array]:
    common = dict(conv_impl=self.conv_impl, dtype=self.dtype, kernel_std=0.01)
    conv = Conv(maps[0].shape[-1], 3, name='conv', **common)
    cls = Conv(self.num_anchors, 1, name='cls_logits', **common)
    bbox = Conv(4 * self.num_anchors, 1, name='bbox_pred', **common)
    logits, deltas = [], []
    for m in maps:
      t = jax.nn.relu(conv(m))
      logits.append(cls(t).reshape(m.shape[0], -1))
      deltas.append(bbox(t).reshape(m.shape[0], -1, 4))
    return (jnp.concatenate(logits, 1).astype(jnp.float32),
            jnp.concatenate(deltas, 1).astype(jnp.float32))


class BoxHead(nn.Module):
  """torchvision's ``TwoMLPHead``: ``(..., S, S, C)`` RoI features -> ``(..., representation)``."""
  representation: int = 1024
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = x.reshape(*x.shape[:-3], -1)
    x = jax.nn.relu(Dense(self.representation, name='fc6', dtype=self.dtype)(x))
    return jax.nn.relu(Dense(self.representation, name='fc7', dtype=self.dtype)(x))


class BoxPredictor(nn.Module):
  """torchvision's ``FastRCNNPredictor``: ``(..., D) -> (logits (..., C+1), deltas (..., C+1, 4))``."""
  num_classes: int  # foreground; class 0 is background
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    k = self.num_classes + 1
    logits = Dense(k, name='cls_score', dtype=self.dtype, kernel_std=0.01)(x)
    deltas = Dense(4 * k, name='bbox_pred', dtype=self.dtype, kernel_std=0.001)(x)
    return logits.astype(jnp.float32), deltas.reshape(*x.shape[:-1], k, 4).astype(jnp.float32)


class MaskHead(nn.Module):
  """torchvision's ``MaskRCNNHeads``: ``(N, S, S, C) -> (N, S, S, layers[-1])``, 3x3 conv + ReLU each."""
  layers: Sequence[int] = (256, 256, 256, 256)
  conv_impl: str = 'lax'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, features in enumerate(self.layers):
      x = jax.nn.relu(Conv(features, 3, name=f'mask_fcn{i + 1}', conv_impl=self.conv_impl,
                           dtype=self.dtype)(x))
    return x


class ConvTranspose2x2(nn.Module):
  """A 2x2 stride-2 transposed conv with bias: (N, S, S, C) -> (N, 2S, 2S, C).

  With kernel == stride the windows do not overlap, so
  :func:`cnn_jax.ops.conv.conv_transpose2d` is exactly ``y[2h + i, 2w + j] =
  x[h, w] @ kernel[i, j]``: one matmul, for every ``conv_impl`` (XLA's CPU
  backend runs the input-dilated convolution far slower).
  """

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    w = self.param('kernel', jax.nn.initializers.he_normal(), (2, 2, c, c))
    b = self.param('bias', jax.nn.initializers.zeros, (c,))
    n, h, wd, _ = x.shape
    y = jnp.einsum('nhwc,ijco->nhiwjo', x, w.astype(x.dtype)).reshape(n, 2 * h, 2 * wd, c)
    return y + b.astype(x.dtype)


class MaskPredictor(nn.Module):
  """torchvision's ``MaskRCNNPredictor``: (N, S, S, C) -> (N, 2S, 2S, C+1) mask logits."""
  num_classes: int
  conv_impl: str = 'lax'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    x = jax.nn.relu(ConvTranspose2x2(name='conv5_mask')(x))
    return Conv(self.num_classes + 1, 1, name='mask_logits', conv_impl=self.conv_impl,
                dtype=self.dtype)(x).astype(jnp.float32)


def _mask_logits(head: MaskHead, predictor: MaskPredictor, maps, strides, rois: jax.Array,
                 size: int, sampling_ratio: int) -> jax.Array:
  """(B, R, 4) pixel boxes -> (B, R, 2 size, 2 size, C+1) mask logits."""
  feats = _pool_rois(maps, strides, rois, size, 'align', sampling_ratio)
  b, r = feats.shape[:2]
  logits = predictor(head(feats.reshape(b * r, *feats.shape[2:])))
  return logits.reshape(b, r, *logits.shape[1:])


def _detections(logits, deltas, rois, valid, image_hw, *, score_threshold: float,
                nms_threshold: float, max_detections: int) -> dict[str, jax.Array]:
  """Per image :func:`cnn_jax.ops.rcnn.detect_boxes` of scored (B, R) RoIs (pixel boxes)."""
  return jax.vmap(lambda lg, dl, r, v: rcnn_ops.detect_boxes(
      lg, dl, r, v, image_hw=image_hw, weights=BOX_WEIGHTS, score_threshold=score_threshold,
      nms_threshold=nms_threshold, max_detections=max_detections))(logits, deltas, rois, valid)


def _pool_rois(maps: Sequence[jax.Array], strides: Sequence[int], boxes: jax.Array,
               size: int, op: str, sampling_ratio: int) -> jax.Array:
  """RoI features of (B, R, 4) pixel boxes: (B, R, size, size, C); several maps: FPN levels."""
  if op == 'pool':
    if len(maps) != 1:
      raise ValueError("roi_op='pool' reads one feature map; use roi_op='align' with an FPN.")
    return jax.vmap(lambda f, b: roi.roi_pool(f, b, size, spatial_scale=1.0 / strides[0]))(
        maps[0], boxes)
  if len(maps) == 1:
    return jax.vmap(lambda f, b: roi.roi_align(
        f, b, size, spatial_scale=1.0 / strides[0], sampling_ratio=sampling_ratio))(maps[0], boxes)
  return jax.vmap(lambda b, *fs: roi.multiscale_roi_align(
      fs, strides, b, size, sampling_ratio=sampling_ratio))(boxes, *maps)


def rpn_targets(key: jax.Array, anchors: jax.Array, gt: jax.Array, gt_valid: jax.Array, *,
                fg_iou: float, bg_iou: float, samples: int, positive_fraction: float
                ) -> dict[str, jax.Array]:
  """One image's RPN targets: ``labels`` (N,) 1/0/-1, ``deltas`` (N, 4), ``sampled`` (N,)."""
  iou = box_ops.box_iou(gt, anchors)
  matched = rcnn_ops.match_boxes(iou, gt_valid, high=fg_iou, low=bg_iou, allow_low_quality=True)
  labels = jnp.where(matched >= 0, 1, jnp.where(matched == rcnn_ops.BACKGROUND, 0, -1))
  deltas = anchor_ops.encode_boxes(gt[jnp.maximum(matched, 0)], anchors, weights=RPN_WEIGHTS)
  sampled = rcnn_ops.sample_balanced(key, labels, samples, positive_fraction)
  return {'labels': labels.astype(jnp.int32), 'deltas': deltas, 'sampled': sampled}


def roi_targets(key: jax.Array, proposals: jax.Array, valid: jax.Array, gt: jax.Array,
                gt_labels: jax.Array, *, fg_iou: float, bg_iou: float, samples: int,
                positive_fraction: float) -> dict[str, jax.Array]:
  """One image's sampled RoIs and their targets (torchvision ``RoIHeads.select_training_samples``).

  The ground-truth boxes join the proposals (``add_gt_proposals``); ``samples``
  rows are drawn, positives first: ``rois`` (R, 4), ``labels`` (R,) 0 = background,
  ``deltas`` (R, 4) to the matched box, ``matched`` (R,) gt row (-1 none), ``valid`` (R,).
  """
  gt_valid = gt_labels >= 0
  cands = jnp.concatenate([proposals, gt])
  cand_valid = jnp.concatenate([valid, gt_valid])
  iou = box_ops.box_iou(gt, cands)
  matched = rcnn_ops.match_boxes(iou, gt_valid, high=fg_iou, low=bg_iou, allow_low_quality=False)
  kind = jnp.where(matched >= 0, 1, jnp.where(matched == rcnn_ops.BACKGROUND, 0, -1))
  kind = jnp.where(cand_valid, kind, -1)
  idx, rows = rcnn_ops.sample_indices(key, kind.astype(jnp.int32), samples, positive_fraction)
  m = matched[idx]
  fg = rows & (m >= 0)
  labels = jnp.where(fg, gt_labels[jnp.maximum(m, 0)] + 1, 0)
  rois = cands[idx]
  deltas = anchor_ops.encode_boxes(gt[jnp.maximum(m, 0)], rois, weights=BOX_WEIGHTS)
  return {'rois': rois, 'labels': labels.astype(jnp.int32), 'deltas': deltas,
          'matched': jnp.where(fg, m, -1).astype(jnp.int32), 'valid': rows}


def _check_targets(targets: dict | None, needs_masks: bool) -> dict:
  if targets is None:
    raise ValueError('a two-stage detector trains on targets: call it with train=True, '
                     "targets={'boxes', 'labels', 'keys'} (the rcnn task passes them).")
  if needs_masks and 'masks' not in targets:
    raise ValueError("the mask head trains on instance masks: targets need 'masks' (B, K, H, W) "
                     '(use task.name=instance_segmentation, which loads them).')
  return targets


class _RoIHead(nn.Module):
  """The box-head settings and steps both models share (torchvision's ``RoIHeads``)."""
  box_fg_iou: float = 0.5
  box_bg_iou: float = 0.5
  box_samples: int = 512
  box_positive_fraction: float = 0.25
  box_score_threshold: float = 0.05
  box_nms_threshold: float = 0.5
  detections: int = 100

  def sample_rois(self, keys, proposals, valid, gt, labels) -> dict[str, jax.Array]:
    """Per image :func:`roi_targets`: (B,) keys, (B, P, 4) proposals, (B, K, 4) pixel gt."""
    return jax.vmap(lambda k, p, v, g, lb: roi_targets(
        k, p, v, g, lb, fg_iou=self.box_fg_iou, bg_iou=self.box_bg_iou,
        samples=self.box_samples, positive_fraction=self.box_positive_fraction))(
            keys, proposals, valid, gt, labels)

  def detect(self, logits, deltas, rois, valid, image_hw) -> dict[str, jax.Array]:
    """The fixed-size detections, boxes normalised to the image."""
    det = _detections(logits, deltas, rois, valid, image_hw,
                      score_threshold=self.box_score_threshold,
                      nms_threshold=self.box_nms_threshold, max_detections=self.detections)
    return {**det, 'boxes': det['boxes'] / _scale(*image_hw)}


class TwoStageDetector(_RoIHead):
  """Fast / Faster / Mask R-CNN. ``(B, H, W, 3) -> dict`` (see the module docstring).

  Attributes:
    backbone: a zoo module with ``features_only=True`` (variables under ``backbone/``).
    num_classes: foreground classes C.
    taps: the backbone's feature maps used, fine to coarse (e.g. ResNet's
      ``layer1..layer4``; VGG's ``pool5``).
    fpn_channels: 0: no pyramid (RPN and RoIs on the one tap); else an FPN of
      this width, its extra max-pool level used by the RPN only (torchvision).
    anchor_sizes: one tuple per RPN level (with an FPN: taps + 1).
    aspect_ratios: h / w of the anchors, the same at every level.
    proposals: 'rpn' (Faster R-CNN) or 'fixed': the anchor grid itself, clipped
      to the image (Fast R-CNN's external proposals stand-in; no RPN).
    roi_op: 'align' (RoIAlign, Mask R-CNN) or 'pool' (RoIPool, Fast R-CNN).
    rpn_*: torchvision's RPN settings (pre/post NMS counts are per image; pre per level).
    box_*: the RoI head's matching, sampling and inference settings.
    masks: add the mask head (Mask R-CNN).
  """
  backbone: nn.Module | None = None  # required; a field default only for the shared base
  num_classes: int = 4
  taps: Sequence[str] = ('layer1', 'layer2', 'layer3', 'layer4')
  fpn_channels: int = 256
  anchor_sizes: Sequence[Sequence[float]] = ((32,), (64,), (128,), (256,), (512,))
  aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0)
  proposals: str = 'rpn'
  roi_op: str = 'align'
  roi_size: int = 7
  sampling_ratio: int = 2
  representation: int = 1024
  rpn_pre_nms_top_n: tuple[int, int] = (2000, 1000)   # (train, test)
  rpn_post_nms_top_n: tuple[int, int] = (2000, 1000)
  rpn_nms_threshold: float = 0.7
  rpn_fg_iou: float = 0.7
  rpn_bg_iou: float = 0.3
  rpn_samples: int = 256
  rpn_positive_fraction: float = 0.5
  rpn_min_size: float = 1e-3
  masks: bool = False
  mask_roi_size: int = 14
  mask_layers: Sequence[int] = (256, 256, 256, 256)
  conv_impl: str = 'lax'
  dtype: Any = None

  def _check(self):
    if self.proposals not in PROPOSALS:
      raise ValueError(f'proposals must be one of {PROPOSALS}, got {self.proposals!r}.')
    if self.roi_op not in ROI_OPS:
      raise ValueError(f'roi_op must be one of {ROI_OPS}, got {self.roi_op!r}.')
    levels = len(self.taps) + (1 if self.fpn_channels else 0)
    if len(self.anchor_sizes) != levels:
      raise ValueError(f'anchor_sizes has {len(self.anchor_sizes)} levels but the RPN sees '
                       f'{levels} ({len(self.taps)} taps{" + the FPN pool level" if self.fpn_channels else ""}); '
                       'give one tuple of sizes per level.')
    if self.box_samples * self.box_positive_fraction < 1:
      raise ValueError(f'box_samples={self.box_samples} x box_positive_fraction='
                       f'{self.box_positive_fraction} leaves no positive RoI; raise either.')

  def _features(self, x: jax.Array, train: bool) -> tuple[list, list, list, list]:
    """(RPN maps, their strides, RoI maps, their strides)."""
    if self.backbone is None:
      raise ValueError('TwoStageDetector needs a backbone module (features_only=True); build it '
                       "with get_model('faster_rcnn', backbone=...).")
    feats = self.backbone(x, train)
    if not isinstance(feats, dict):
      raise ValueError('the backbone must return a dict of feature maps: build it with '
                       'features_only=True.')
    missing = [t for t in self.taps if t not in feats]
    if missing:
      raise ValueError(f'the backbone has no feature level(s) {missing}; it has '
                       f'{", ".join(feats)} (set model.kwargs.taps).')
    hw = x.shape[1:3]
    maps = [feats[t] for t in self.taps]
    strides = [_stride(hw, m, t) for m, t in zip(maps, self.taps)]
    if not self.fpn_channels:
      return maps, strides, maps, strides
    pyramid = FPN(self.fpn_channels, conv_impl=self.conv_impl, dtype=self.dtype,
                  name='fpn')(maps)
    return pyramid, strides + [2 * strides[-1]], pyramid[:-1], strides

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, targets: dict | None = None
               ) -> dict[str, Any]:
    self._check()
    x = cast(x, self.dtype)
    b, h, w = x.shape[:3]
    scale = _scale(h, w)
    rpn_maps, rpn_strides, roi_maps, roi_strides = self._features(x, train)
    anchors, level = anchor_ops.multilevel_anchors(
        [m.shape[1:3] for m in rpn_maps], rpn_strides, self.anchor_sizes, self.aspect_ratios)
    level_sizes = np.bincount(level).tolist()
    out: dict[str, Any] = {}
    phase = 0 if train else 1
    if self.proposals == 'rpn':
      num_anchors = len(self.aspect_ratios) * len(self.anchor_sizes[0])
      logits, deltas = RPNHead(num_anchors, conv_impl=self.conv_impl, dtype=self.dtype,
                               name='rpn_head')(rpn_maps)
      decoded = anchor_ops.decode_boxes(jax.lax.stop_gradient(deltas), anchors[None],
                                        weights=RPN_WEIGHTS)
      props, _, prop_valid = jax.vmap(lambda bx, lg: rcnn_ops.select_proposals(
          bx, lg, level_sizes=level_sizes, image_hw=(h, w),
          pre_nms_top_n=self.rpn_pre_nms_top_n[phase],
          post_nms_top_n=self.rpn_post_nms_top_n[phase], nms_threshold=self.rpn_nms_threshold,
          min_size=self.rpn_min_size))(decoded, jax.lax.stop_gradient(logits))
      out['rpn'] = {'logits': logits, 'deltas': deltas}
    else:
      fixed = anchor_ops.clip_boxes(anchors, (h, w))
      props = jnp.broadcast_to(fixed, (b, *fixed.shape))
      prop_valid = jnp.broadcast_to(anchor_ops.small_box_mask(fixed, 1.0), props.shape[:2])

    box_head = BoxHead(self.representation, dtype=self.dtype, name='box_head')
    box_predictor = BoxPredictor(self.num_classes, dtype=self.dtype, name='box_predictor')
    if self.masks:
      mask_head = MaskHead(self.mask_layers, conv_impl=self.conv_impl, dtype=self.dtype,
                           name='mask_head')
      mask_predictor = MaskPredictor(self.num_classes, conv_impl=self.conv_impl,
                                     dtype=self.dtype, name='mask_predictor')
    if train:
      targets = _check_targets(targets, self.masks)
      gt = targets['boxes'] * scale
      keys = jax.vmap(lambda k: jax.random.split(k, 2))(targets['keys'])
      if self.proposals == 'rpn':
        out['rpn_targets'] = jax.vmap(lambda k, g, lb: rpn_targets(
            k, anchors, g, lb >= 0, fg_iou=self.rpn_fg_iou, bg_iou=self.rpn_bg_iou,
            samples=self.rpn_samples, positive_fraction=self.rpn_positive_fraction))(
                keys[:, 0], gt, targets['labels'])
      tg = self.sample_rois(keys[:, 1], props, prop_valid, gt, targets['labels'])
      feats = _pool_rois(roi_maps, roi_strides, tg['rois'], self.roi_size, self.roi_op,
                         self.sampling_ratio)
      cls_logits, box_deltas = box_predictor(box_head(feats))
      out['roi'] = {'logits': cls_logits, 'deltas': box_deltas}
      out['roi_targets'] = {k: tg[k] for k in ('labels', 'deltas', 'valid')}
      if self.masks:  # positives come first: the mask head sees only that many rows
        n_pos = int(self.box_samples * self.box_positive_fraction)
        rois, matched = tg['rois'][:, :n_pos], tg['matched'][:, :n_pos]
        mask_logits = _mask_logits(mask_head, mask_predictor, roi_maps, roi_strides, rois,
                                   self.mask_roi_size, self.sampling_ratio)
        m = self.mask_roi_size * 2
        mask_targets = jax.vmap(lambda im, r, mt: roi.mask_targets(im, r, mt, m))(
            targets['masks'], rois, jnp.maximum(matched, 0))
        out['mask'] = {'logits': mask_logits}
        out['mask_targets'] = {'labels': tg['labels'][:, :n_pos], 'masks': mask_targets,
                               'valid': tg['valid'][:, :n_pos] & (matched >= 0)}
      return out

    feats = _pool_rois(roi_maps, roi_strides, props, self.roi_size, self.roi_op,
                       self.sampling_ratio)
    cls_logits, box_deltas = box_predictor(box_head(feats))
    det = self.detect(cls_logits, box_deltas, props, prop_valid, (h, w))
    result = {k: det[k] for k in ('boxes', 'scores', 'classes', 'valid')}
    if self.masks:
      logits = _mask_logits(mask_head, mask_predictor, roi_maps, roi_strides, det['boxes'] * scale,
                            self.mask_roi_size, self.sampling_ratio)
      picked = jnp.take_along_axis(logits, (det['classes'] + 1)[:, :, None, None, None], -1)
      result['masks'] = jax.nn.sigmoid(picked[..., 0])
    return result


class RCNN(_RoIHead):
  """R-CNN (Girshick et al. 2014): each proposal warped out of the image and classified alone.

  ``(B, H, W, 3) -> dict`` like :class:`TwoStageDetector` (no RPN, no masks).
  Proposals are the fixed anchor grid (``proposal_stride``, ``anchor_sizes``,
  ``aspect_ratios``; the stand-in for selective search), each enlarged by
  ``context`` of its size on every side (the paper's 16 px of context at
  227 px), bilinearly warped to ``crop_size`` squared (RoIAlign on the image,
  ``aligned=True``) and scored by ``classifier``, a zoo CNN whose
  ``(C + 1) * 5`` outputs are the class logits and per-class box deltas (the
  paper trained SVMs and a separate box regressor on the CNN's features; one
  jointly trained head keeps the comparison about the crops).

  Attributes:
    classifier: a zoo classifier with ``num_classes = 5 * (num_classes + 1)``
      (its variables under ``classifier/``).
  """
  classifier: nn.Module | None = None  # required
  num_classes: int = 4
  crop_size: int = 32
  context: float = 0.1
  proposal_stride: int = 16
  anchor_sizes: Sequence[float] = (32.0,)
  aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0)
  box_samples: int = 64  # a CNN pass each
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, targets: dict | None = None
               ) -> dict[str, Any]:
    if self.classifier is None:
      raise ValueError("RCNN needs a classifier module; build it with get_model('rcnn', "
                       'backbone=...).')
    x = cast(x, self.dtype)
    b, h, w = x.shape[:3]
    scale = _scale(h, w)
    cells = (math.ceil(h / self.proposal_stride), math.ceil(w / self.proposal_stride))
    fixed = anchor_ops.clip_boxes(anchor_ops.anchor_grid(
        cells, self.proposal_stride, self.anchor_sizes, self.aspect_ratios), (h, w))
    props = jnp.broadcast_to(fixed, (b, *fixed.shape))
    valid = jnp.broadcast_to(anchor_ops.small_box_mask(fixed, 1.0), props.shape[:2])
    k = self.num_classes + 1

    def score(rois):  # (B, R, 4) pixels -> logits (B, R, k), deltas (B, R, k, 4)
      size = jnp.tile(rois[..., 2:] - rois[..., :2], 2)
      grown = rois + jnp.asarray([-1.0, -1.0, 1.0, 1.0]) * self.context * size
      crops = jax.vmap(lambda im, r: roi.roi_align(
          im, r, self.crop_size, sampling_ratio=2, aligned=True))(x, grown)
      y = self.classifier(crops.reshape(-1, *crops.shape[2:]), train).astype(jnp.float32)
      if y.shape[-1] != 5 * k:
        raise ValueError(f'the R-CNN classifier gives {y.shape[-1]} outputs; it needs '
                         f'5 * (num_classes + 1) = {5 * k} (class logits and box deltas).')
      y = y.reshape(*rois.shape[:2], 5 * k)
      return y[..., :k], y[..., k:].reshape(*rois.shape[:2], k, 4)

    if train:
      targets = _check_targets(targets, False)
      tg = self.sample_rois(targets['keys'], props, valid, targets['boxes'] * scale,
                            targets['labels'])
      logits, deltas = score(tg['rois'])
      return {'roi': {'logits': logits, 'deltas': deltas},
              'roi_targets': {k_: tg[k_] for k_ in ('labels', 'deltas', 'valid')}}
    logits, deltas = score(props)
    det = self.detect(logits, deltas, props, valid, (h, w))
    return {k: det[k] for k in ('boxes', 'scores', 'classes', 'valid')}
