"""RoI crops: RoIPool (Fast R-CNN), RoIAlign (Mask R-CNN), the FPN level mapper, mask targets.

One image's map ``(H, W, C)`` and boxes ``(R, 4)`` corners ``(y0, x0, y1, x1)``
in input pixels (callers ``vmap`` over the batch); semantics are
torchvision's ``roi_pool`` / ``roi_align`` with the axes in our order:

* **RoIAlign**: with ``offset = 0.5 if aligned else 0`` the RoI starts at
  ``box * spatial_scale - offset``; without ``aligned`` each side is at
  least 1. Each of the ``ph x pw`` bins averages ``sampling_ratio^2``
  bilinear samples at ``start + (i + (s + 0.5) / sampling_ratio) * bin``. A
  sample beyond ``[-1, H]`` is 0; otherwise it is clamped to the map
  (torchvision's border rule). torchvision's adaptive ``sampling_ratio <= 0``
  is data-dependent, so a positive count is required here.
* **RoIPool**: corners rounded (half away from zero, C's ``round``) after
  scaling, ``size = max(end - start + 1, 1)``; bin ``i`` covers rows
  ``floor(i size / ph) .. ceil((i + 1) size / ph)`` from the start, clipped to
  the map; the max over it, 0 for an empty bin. Computed separably (rows,
  then columns), so memory is ``O(R ph W C)``.

Both are differentiable in the features (RoIAlign also in the boxes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
  return (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(size)


def _check(features: Array, boxes: Array) -> None:
  if features.ndim != 3:
    raise ValueError(f'RoI ops take one image\'s (H, W, C) map, got shape {features.shape}; '
                     'vmap over the batch.')
  if boxes.ndim != 2 or boxes.shape[-1] != 4:
    raise ValueError(f'RoI boxes must be (R, 4) corners, got shape {boxes.shape}.')


def _bilinear(features: Array, y: Array, x: Array) -> Array:
  """Samples (H, W, C) at float coordinates y, x (any equal shapes) -> (*shape, C)."""
  h, w = features.shape[:2]
  outside = (y < -1.0) | (y > h) | (x < -1.0) | (x > w)
  y, x = jnp.maximum(y, 0.0), jnp.maximum(x, 0.0)
  y0 = jnp.floor(y).astype(jnp.int32)
  x0 = jnp.floor(x).astype(jnp.int32)
  y_edge, x_edge = y0 >= h - 1, x0 >= w - 1
  y0 = jnp.where(y_edge, h - 1, y0)
  x0 = jnp.where(x_edge, w - 1, x0)
  y1 = jnp.where(y_edge, h - 1, y0 + 1)
  x1 = jnp.where(x_edge, w - 1, x0 + 1)
  y = jnp.where(y_edge, y0.astype(y.dtype), y)
  x = jnp.where(x_edge, x0.astype(x.dtype), x)
  ly, lx = y - y0.astype(y.dtype), x - x0.astype(x.dtype)
  hy, hx = 1.0 - ly, 1.0 - lx
  f = lambda yy, xx: features[yy, xx]
  out = ((hy * hx)[..., None] * f(y0, x0) + (hy * lx)[..., None] * f(y0, x1)
         + (ly * hx)[..., None] * f(y1, x0) + (ly * lx)[..., None] * f(y1, x1))
  return jnp.where(outside[..., None], 0.0, out)


def roi_align(features: Array, boxes: Array, output_size: int | Sequence[int], *,
              spatial_scale: float = 1.0, sampling_ratio: int = 2,
              aligned: bool = False) -> Array:
  """``(H, W, C)``, ``(R, 4)`` -> ``(R, ph, pw, C)`` bilinear RoI features (see the module doc)."""
  _check(features, boxes)
  if sampling_ratio <= 0:
    raise ValueError(f'sampling_ratio={sampling_ratio}: the adaptive count is data-dependent '
                     'under jit; pass a positive sampling_ratio (2 is common).')
  ph, pw = _pair(output_size)
  offset = 0.5 if aligned else 0.0
  b = boxes.astype(jnp.float32) * spatial_scale - offset
  start, size = b[:, :2], b[:, 2:] - b[:, :2]
  if not aligned:
    size = jnp.maximum(size, 1.0)
  bins = size / jnp.asarray([ph, pw], jnp.float32)  # (R, 2)
  f32 = jnp.float32
  s = (jnp.arange(sampling_ratio, dtype=f32) + 0.5) / sampling_ratio
  gy = (jnp.arange(ph, dtype=f32)[:, None] + s[None, :]).reshape(-1)  # (ph * g,)
  gx = (jnp.arange(pw, dtype=f32)[:, None] + s[None, :]).reshape(-1)
  y = start[:, 0, None] + gy[None] * bins[:, 0, None]      # (R, ph * g)
  x = start[:, 1, None] + gx[None] * bins[:, 1, None]
  yy = jnp.broadcast_to(y[:, :, None], (y.shape[0], y.shape[1], x.shape[1]))
  xx = jnp.broadcast_to(x[:, None, :], yy.shape)
  v = _bilinear(features.astype(jnp.float32), yy, xx)      # (R, ph g, pw g, C)
  r, c = v.shape[0], v.shape[-1]
  v = v.reshape(r, ph, sampling_ratio, pw, sampling_ratio, c).mean(axis=(2, 4))
  return v.astype(features.dtype)


def _round_half_away(x: Array) -> Array:
  return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def roi_pool(features: Array, boxes: Array, output_size: int | Sequence[int], *,
             spatial_scale: float = 1.0) -> Array:
  """``(H, W, C)``, ``(R, 4)`` -> ``(R, ph, pw, C)`` max over quantised bins (see the module doc)."""
  _check(features, boxes)
  ph, pw = _pair(output_size)
  h, w = features.shape[:2]
  q = _round_half_away(boxes.astype(jnp.float32) * spatial_scale)
  start = q[:, :2]
  size = jnp.maximum(q[:, 2:] - q[:, :2] + 1.0, 1.0)

  def ranges(n_bins: int, axis: int, limit: int) -> Array:  # (R, n_bins, limit) bool
    # floor(i size / n) and ceil((i + 1) size / n) in integers: XLA's vectorised float
    # division is not always correctly rounded (7 / 3 * 3 -> 7.0000005, ceil 8).
    i = jnp.arange(n_bins, dtype=jnp.int32)
    n = size[:, axis, None].astype(jnp.int32)
    s0 = start[:, axis, None].astype(jnp.int32)
    lo = jnp.clip(i * n // n_bins + s0, 0, limit)
    hi = jnp.clip(-((-(i + 1) * n) // n_bins) + s0, 0, limit)
    pos = jnp.arange(limit, dtype=jnp.int32)
    return (pos >= lo[..., None]) & (pos < hi[..., None])

  rows, cols = ranges(ph, 0, h), ranges(pw, 1, w)
  neg = jnp.asarray(-jnp.inf, features.dtype)
  # max over each bin's rows: (R, ph, W, C), then over its columns: (R, ph, pw, C).
  by_row = jnp.max(jnp.where(rows[:, :, :, None, None], features[None, None], neg), axis=2)
  out = jnp.max(jnp.where(cols[:, None, :, :, None], by_row[:, :, None], neg), axis=3)
  return jnp.where(jnp.isneginf(out), jnp.zeros((), features.dtype), out)


def roi_levels(boxes: Array, strides: Sequence[int], *, canonical_scale: float = 224.0,
               canonical_level: int = 4) -> Array:
  """``(R,)`` int32 index into the pyramid of each box (torchvision's ``LevelMapper``).

  ``k = floor(canonical_level + log2(sqrt(area) / canonical_scale) + 1e-6)``,
  clamped to the levels ``log2(stride)`` present.
  """
  logs = [math.log2(s) for s in strides]
  if any(abs(v - round(v)) > 1e-9 for v in logs):
    raise ValueError(f'pyramid strides must be powers of two, got {list(strides)}.')
  k_min, k_max = round(logs[0]), round(logs[-1])
  area = jnp.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-6)
  k = jnp.floor(canonical_level + jnp.log2(jnp.sqrt(area) / canonical_scale) + 1e-6)
  return (jnp.clip(k, k_min, k_max) - k_min).astype(jnp.int32)


def multiscale_roi_align(features: Sequence[Array], strides: Sequence[int], boxes: Array,
                         output_size: int | Sequence[int], *, sampling_ratio: int = 2,
                         aligned: bool = False, canonical_scale: float = 224.0,
                         canonical_level: int = 4) -> Array:
  """RoIAlign of each box from its pyramid level (torchvision's ``MultiScaleRoIAlign``).

  ``features``: ``[(H_l, W_l, C)]`` fine to coarse with ``strides``; ``-> (R, ph, pw, C)``.
  Every level is pooled and the box's own selected (static shapes; few levels).
  """
  if len(features) != len(strides):
    raise ValueError(f'{len(features)} feature maps but {len(strides)} strides; give one '
                     'stride per level.')
  level = roi_levels(boxes, strides, canonical_scale=canonical_scale,
                     canonical_level=canonical_level)
  out = 0.0
  for i, (f, s) in enumerate(zip(features, strides)):
    pooled = roi_align(f, boxes, output_size, spatial_scale=1.0 / s,
                       sampling_ratio=sampling_ratio, aligned=aligned)
    out = out + jnp.where((level == i)[:, None, None, None], pooled, 0.0)
  return out.astype(features[0].dtype)


def mask_targets(instance_masks: Array, boxes: Array, matched: Array, size: int = 28) -> Array:
  """``(R, size, size)`` float in [0, 1]: each RoI's matched mask cropped to its box.

  torchvision's ``project_masks_on_boxes`` (RoIAlign at scale 1, not
  aligned), with ``sampling_ratio=2`` where torchvision uses the adaptive count.

  Args:
    instance_masks: (K, H, W) one mask per ground-truth box.
    boxes: (R, 4) RoIs in image pixels; matched: (R,) row of ``instance_masks``.
  """
  masks = instance_masks.astype(jnp.float32)[matched][..., None]  # (R, H, W, 1)
  crop = jax.vmap(lambda m, b: roi_align(m, b[None], size, sampling_ratio=2)[0])(masks, boxes)
  return jax.lax.stop_gradient(crop[..., 0])


def paste_masks(masks: Array, boxes: Array, image_hw: Sequence[int]) -> Array:
  """``(D, M, M)`` box-relative mask probabilities -> ``(D, H, W)`` in image pixels.

  Pixel centre ``(y + 0.5, x + 0.5)`` reads the mask at ``(y + 0.5 - y0) / (y1
  - y0) * M - 0.5`` (bilinear, clamped to the mask), 0 outside the box. This
  differs from torchvision's ``paste_masks_in_image`` (which grows the box by
  one mask pixel and resizes with ``F.interpolate``) only along the border.
  """
  h, w = image_hw
  m = masks.shape[-1]
  cy = jnp.arange(h, dtype=jnp.float32) + 0.5
  cx = jnp.arange(w, dtype=jnp.float32) + 0.5

  def one(mask: Array, box: Array) -> Array:
    bh = jnp.maximum(box[2] - box[0], 1e-6)
    bw = jnp.maximum(box[3] - box[1], 1e-6)
    u = jnp.clip((cy - box[0]) / bh * m - 0.5, 0.0, m - 1)
    v = jnp.clip((cx - box[1]) / bw * m - 0.5, 0.0, m - 1)
    uu, vv = jnp.meshgrid(u, v, indexing='ij')
    val = _bilinear(mask[..., None].astype(jnp.float32), uu, vv)[..., 0]
    inside = (((cy >= box[0]) & (cy < box[2]))[:, None]
              & ((cx >= box[1]) & (cx < box[3]))[None, :])
    return jnp.where(inside, val, 0.0)

  return jax.vmap(one)(masks, boxes)
