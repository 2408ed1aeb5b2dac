"""Landmark regression: K ``(x, y)`` points per image, their flip and their error metrics.

Landmarks are ``(B, K, 2)`` ``(x, y)`` fractions of the image width and
height (pixel ``j`` spans ``[j, j + 1) / W``), so a left-right mirror maps
``x`` to ``1 - x`` and a resize leaves them as they are.

* :func:`flip_landmarks`: mirror and swap each left/right pair (the left eye
  of a mirrored face is where the right eye was).
* :func:`normalised_error`: each landmark's distance over a per-image scale,
  e.g. the inter-ocular distance (NME, as 300-W reports it) or the face box
  size; :func:`nme` its mean, :func:`pck` the fraction within a threshold.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

Array = jax.Array
LOSSES = ('l2', 'l1')


def _check(landmarks: Array, name: str = 'landmarks') -> None:
  if landmarks.ndim != 3 or landmarks.shape[-1] != 2:
    raise ValueError(f'{name} must be (B, K, 2) (x, y) points, got shape {landmarks.shape}.')


def flip_permutation(num: int, pairs: Sequence[Sequence[int]]) -> list[int]:
  """Index order of the K landmarks after a mirror: each pair ``(i, j)`` swapped."""
  order = list(range(num))
  for i, j in pairs:
    if not (0 <= i < num and 0 <= j < num) or i == j:
      raise ValueError(f'flip pair ({i}, {j}) must name two different landmarks of {num}.')
    order[i], order[j] = j, i
  return order


def flip_landmarks(landmarks: Array, pairs: Sequence[Sequence[int]]) -> Array:
  """(B, K, 2) landmarks of the left-right mirrored images: ``x -> 1 - x``, pairs swapped."""
  _check(landmarks)
  flipped = jnp.stack([1.0 - landmarks[..., 0], landmarks[..., 1]], -1)
  return flipped[:, jnp.asarray(flip_permutation(landmarks.shape[1], pairs))]


def interocular(landmarks: Array, eyes: Sequence[int] = (0, 1)) -> Array:
  """(B, K, 2) -> (B,) distance between the two eye landmarks ``eyes``."""
  _check(landmarks)
  return jnp.linalg.norm(landmarks[:, eyes[0]] - landmarks[:, eyes[1]], axis=-1)


def box_size(boxes: Array) -> Array:
  """(B, 4) corners -> (B,) ``max(h, w)``: the PCK scale of an object's box."""
  return jnp.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def normalised_error(pred: Array, target: Array, scale: Array) -> Array:
  """(B, K, 2) x 2, (B,) -> (B, K) point distances over each image's ``scale``."""
  _check(pred, 'pred')
  _check(target, 'target')
  if pred.shape != target.shape or scale.shape != pred.shape[:1]:
    raise ValueError(f'pred {pred.shape}, target {target.shape} and scale {scale.shape} '
                     'must be (B, K, 2), (B, K, 2) and (B,).')
  dist = jnp.linalg.norm(pred.astype(jnp.float32) - target, axis=-1)
  return dist / jnp.maximum(scale, 1e-12)[:, None]


def nme(pred: Array, target: Array, scale: Array) -> Array:
  """(B,) normalised mean error: each image's mean over its K landmarks."""
  return jnp.mean(normalised_error(pred, target, scale), -1)


def pck(pred: Array, target: Array, scale: Array, alpha: float = 0.05) -> Array:
  """(B,) fraction of each image's landmarks within ``alpha * scale`` of the truth."""
  return jnp.mean((normalised_error(pred, target, scale) <= alpha).astype(jnp.float32), -1)


def loss(pred: Array, target: Array, kind: str = 'l2') -> Array:
  """Mean over images of the summed per-coordinate ``'l2'`` (squared) or ``'l1'`` error."""
  _check(pred, 'pred')
  diff = pred.astype(jnp.float32) - target
  if kind == 'l2':
    return jnp.mean(jnp.sum(jnp.square(diff), (1, 2)))
  if kind == 'l1':
    return jnp.mean(jnp.sum(jnp.abs(diff), (1, 2)))
  raise ValueError(f'unknown landmark loss {kind!r}; choose one of {", ".join(LOSSES)}.')
