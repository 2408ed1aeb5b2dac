"""Sliding-window classification, the naive way: one classifier call per crop.

:func:`crop_by_crop` is the loop that OverFeat's convolutional implementation
(a classifier whose dense layers run as convolutions, :func:`.conv.dense_as_conv`)
replaces: both give the logits of every ``window`` x ``window`` crop at
``stride``; the convolutional pass shares the computation of overlapping crops.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from cnn_jax.ops.shapes import check_nhwc


def window_grid(size: int, window: int, stride: int) -> int:
  """How many windows fit along one axis: ``(size - window) // stride + 1``."""
  if size < window or (size - window) % stride:
    raise ValueError(f'windows of {window} at stride {stride} do not tile {size} pixels; use '
                     f'a size of {window} + k * {stride}.')
  return (size - window) // stride + 1


def crops(images: jax.Array, window: int, stride: int) -> jax.Array:
  """(N, H, W, C) -> (N, H', W', window, window, C): every crop, as one array."""
  check_nhwc(images, 'images')
  n, h, w, c = images.shape
  gh, gw = window_grid(h, window, stride), window_grid(w, window, stride)
  rows = jnp.arange(gh)[:, None] * stride + jnp.arange(window)[None]   # (H', window)
  cols = jnp.arange(gw)[:, None] * stride + jnp.arange(window)[None]
  return images[:, rows[:, None, :, None], cols[None, :, None, :]]


def crop_by_crop(classify: Callable[[jax.Array], jax.Array], images: jax.Array, window: int,
                 stride: int) -> jax.Array:
  """Logits of every crop, one ``classify`` call per window position.

  Args:
    classify: (N, window, window, C) -> (N, K) logits.
    images: (N, H, W, C).
    window, stride: crop size and step in pixels.

  Returns:
    (N, H', W', K) with H' = (H - window) // stride + 1 (and W' alike).
  """
  check_nhwc(images, 'images')
  gh = window_grid(images.shape[1], window, stride)
  gw = window_grid(images.shape[2], window, stride)
  rows = [[classify(images[:, i * stride:i * stride + window, j * stride:j * stride + window])
           for j in range(gw)] for i in range(gh)]
  return jnp.stack([jnp.stack(r, axis=1) for r in rows], axis=1)
