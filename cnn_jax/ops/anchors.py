"""Anchors and the box coder of two-stage detectors (torchvision semantics, our box order).

Boxes are corners ``(y0, x0, y1, x1)`` in input-image pixels (torchvision's
are ``(x0, y0, x1, y1)``; every function here is torchvision's with the two
axes swapped). Deltas are ``(dy, dx, dh, dw)``:

  dy = wy (gy - py) / ph,   dh = wh log(gh / ph)     (centres and sizes; h = y1 - y0)

as torchvision's ``BoxCoder`` (no +1 on sizes), with ``weights`` ``(wy, wx,
wh, ww)`` (the RPN uses ones, the RoI head ``(10, 10, 5, 5)``). Everything is
pure ``jnp`` with static shapes; zero-size padding rows give finite values and
finite gradients.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
DEFAULT_CLAMP = math.log(1000.0 / 16)  # torchvision's bbox_xform_clip
_TINY = 1e-6


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
  """``(len(ratios) * len(sizes), 4)`` anchors centred at 0, ratio-major (torchvision's order).

  ``ratio = h / w``: ``h = size sqrt(ratio)``, ``w = size / sqrt(ratio)``,
  corners rounded half-to-even as ``torch.round``.
  """
  sizes = np.asarray(sizes, np.float32)
  ratios = np.asarray(aspect_ratios, np.float32)
  if sizes.ndim != 1 or ratios.ndim != 1 or not sizes.size or not ratios.size:
    raise ValueError(f'anchor sizes and aspect ratios must be non-empty 1-D sequences, got '
                     f'{sizes.tolist()} and {ratios.tolist()}.')
  if np.any(sizes <= 0) or np.any(ratios <= 0):
    raise ValueError('anchor sizes and aspect ratios must be positive.')
  h_ratios = np.sqrt(ratios)
  w_ratios = 1.0 / h_ratios
  ws = (w_ratios[:, None] * sizes[None, :]).reshape(-1)
  hs = (h_ratios[:, None] * sizes[None, :]).reshape(-1)
  return np.round(np.stack([-hs, -ws, hs, ws], axis=1) / 2).astype(np.float32)


def anchor_grid(feature_hw: Sequence[int], stride: int | Sequence[int],
                sizes: Sequence[float], aspect_ratios: Sequence[float]) -> np.ndarray:
  """``(h * w * A, 4)`` anchors of an ``h x w`` map, location-major then the A cell anchors.

  Cell ``(i, j)``'s anchors are centred at ``(i * stride_y, j * stride_x)``
  (torchvision's ``grid_anchors``), so the order lines up with an NHWC head
  output reshaped ``(h, w, A, ...)``.
  """
  h, w = (int(v) for v in feature_hw)
  sy, sx = (stride, stride) if isinstance(stride, (int, np.integer)) else stride
  base = cell_anchors(sizes, aspect_ratios)
  yy, xx = np.meshgrid(np.arange(h) * sy, np.arange(w) * sx, indexing='ij')
  shifts = np.stack([yy, xx, yy, xx], axis=-1).reshape(-1, 1, 4).astype(np.float32)
  return (shifts + base[None]).reshape(-1, 4)


def multilevel_anchors(feature_hws: Sequence[Sequence[int]], strides: Sequence[int],
                       sizes_per_level: Sequence[Sequence[float]],
                       aspect_ratios: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
  """Anchors of every level concatenated: ``(anchors (N, 4), level (N,) int32)``."""
  if not len(feature_hws) == len(strides) == len(sizes_per_level):
    raise ValueError(f'{len(feature_hws)} feature maps, {len(strides)} strides and '
                     f'{len(sizes_per_level)} anchor size tuples: give one of each per level.')
  grids = [anchor_grid(hw, s, sz, aspect_ratios)
           for hw, s, sz in zip(feature_hws, strides, sizes_per_level)]
  level = np.concatenate([np.full(len(g), i, np.int32) for i, g in enumerate(grids)])
  return np.concatenate(grids), level


def _centres(boxes: Array) -> tuple[Array, Array]:
  size = boxes[..., 2:] - boxes[..., :2]
  return boxes[..., :2] + 0.5 * size, size


def encode_boxes(gt: Array, proposals: Array,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0)) -> Array:
  """Deltas ``(..., 4)`` that move ``proposals`` onto ``gt`` (both ``(..., 4)``)."""
  w = jnp.asarray(weights, jnp.float32)
  g_c, g_s = _centres(gt.astype(jnp.float32))
  p_c, p_s = _centres(proposals.astype(jnp.float32))
  p_s = jnp.maximum(p_s, _TINY)  # padding rows: finite, and masked out by the losses
  d_c = (g_c - p_c) / p_s
  d_s = jnp.log(jnp.maximum(g_s, _TINY) / p_s)
  return jnp.concatenate([d_c, d_s], -1) * w


def decode_boxes(deltas: Array, proposals: Array,
                 weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
                 clamp: float = DEFAULT_CLAMP) -> Array:
  """The boxes ``(..., 4)`` that ``deltas`` make of ``proposals`` (the inverse of encode)."""
  w = jnp.asarray(weights, jnp.float32)
  d = deltas.astype(jnp.float32) / w
  p_c, p_s = _centres(proposals.astype(jnp.float32))
  c = p_c + d[..., :2] * p_s
  s = p_s * jnp.exp(jnp.minimum(d[..., 2:], clamp))
  return jnp.concatenate([c - 0.5 * s, c + 0.5 * s], -1)


def clip_boxes(boxes: Array, image_hw: Sequence[int]) -> Array:
  """Boxes clipped to ``[0, H] x [0, W]``."""
  h, w = image_hw
  hi = jnp.asarray([h, w, h, w], jnp.float32)
  return jnp.clip(boxes, 0.0, hi)


def small_box_mask(boxes: Array, min_size: float) -> Array:
  """``(...)`` bool: both sides at least ``min_size`` (torchvision ``remove_small_boxes``)."""
  size = boxes[..., 2:] - boxes[..., :2]
  return jnp.all(size >= min_size, axis=-1)
