"""Classification with localisation: one object per image as the course's vector.

The course writes the target of an image with (at most) one object as::

  y = [p_c, b_x, b_y, b_h, b_w, c_1, ..., c_C]

``p_c`` is 1 if there is an object, ``(b_x, b_y)`` its box centre and
``(b_h, b_w)`` its height and width, all as fractions of the image side, and
``c_k`` a one-hot class. When ``p_c = 0`` the other entries are "don't care"
(zero here). A model predicts ``(B, 5 + C)`` numbers in the same order. Two
losses:

* :func:`course_loss`: squared error on all ``5 + C`` entries when
  ``p_c = 1`` and on ``p_c`` alone when ``p_c = 0``, on the raw outputs: the
  course's loss exactly as written;
* :func:`modern_loss`: BCE on the ``p_c`` logit, softmax cross entropy on the
  class logits, and L1 + (1 - IoU) on the box corners (the box outputs pass
  through a sigmoid, so a box stays inside the image), the last two only
  when ``p_c = 1``.

:func:`decode` turns either kind of output into ``(p, corners, class)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cnn_jax.ops import boxes as box_ops
from cnn_jax.ops import losses

Array = jax.Array
LOSSES = ('course', 'modern')


def encode(boxes: Array, labels: Array, num_classes: int) -> Array:
  """Each image's object (slot 0) as ``(B, 5 + C)`` course targets.

  Args:
    boxes: (B, K, 4) corners ``(y_min, x_min, y_max, x_max)`` in [0, 1].
    labels: (B, K) int class per box, -1 for padding; slot 0 is the object
      (an image without one has ``labels[:, 0] = -1``).
    num_classes: C.

  Returns:
    (B, 5 + C) float32 ``[p_c, b_x, b_y, b_h, b_w, c_1..c_C]``, zeros after
    ``p_c`` when there is no object.
  """
  if boxes.ndim != 3 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:2]:
    raise ValueError(f'boxes must be (B, K, 4) and labels (B, K), got {boxes.shape} and '
                     f'{labels.shape}.')
  label = labels[:, 0]
  p = (label >= 0).astype(jnp.float32)[:, None]
  cy, cx, h, w = jnp.moveaxis(box_ops.corners_to_centers(boxes[:, 0].astype(jnp.float32)), -1, 0)
  onehot = jax.nn.one_hot(label, num_classes, dtype=jnp.float32)  # all zero for -1
  return jnp.concatenate([p, jnp.stack([cx, cy, h, w], -1) * p, onehot], -1)


def _check(pred: Array, target: Array) -> None:
  if pred.ndim != 2 or pred.shape != target.shape or pred.shape[-1] < 6:
    raise ValueError(f'pred and target must both be (B, 5 + C) with C >= 1, got '
                     f'{pred.shape} and {target.shape}.')


def box_corners(pred: Array, kind: str) -> Array:
  """The box of ``(B, 5 + C)`` outputs as (B, 4) corners (``'modern'``: sigmoid first)."""
  b = pred[:, 1:5].astype(jnp.float32)
  if kind == 'modern':
    b = jax.nn.sigmoid(b)
  bx, by, bh, bw = jnp.moveaxis(b, -1, 0)
  return box_ops.centers_to_corners(jnp.stack([by, bx, bh, bw], -1))


def pair_iou(a: Array, b: Array) -> Array:
  """IoU of row i of ``a`` with row i of ``b``: (B, 4) corners each -> (B,)."""
  return box_ops.box_iou(a[:, None], b[:, None])[:, 0, 0]


def course_loss(pred: Array, target: Array) -> Array:
  """The course's squared error, mean over images: ``(B, 5 + C) x 2 -> ()``.

  ``sum_i (pred_i - y_i)^2`` over all entries if ``p_c = 1``, else
  ``(pred_1 - y_1)^2``.
  """
  _check(pred, target)
  sq = jnp.square(pred.astype(jnp.float32) - target)
  return jnp.mean(jnp.where(target[:, 0] > 0.5, jnp.sum(sq, -1), sq[:, 0]))


def modern_loss(pred: Array, target: Array, *, box_weight: float = 1.0) -> Array:
  """``BCE(p_c) + [p_c = 1] (CE(classes) + box_weight (L1 + 1 - IoU))``, mean over images."""
  _check(pred, target)
  pred = pred.astype(jnp.float32)
  obj = losses.sigmoid_binary_cross_entropy(pred[:, 0], target[:, 0], reduction='none')
  ce = losses.softmax_cross_entropy(pred[:, 5:], jnp.argmax(target[:, 5:], -1),
                                    reduction='none')
  pb, tb = box_corners(pred, 'modern'), box_corners(target, 'course')
  box = jnp.sum(jnp.abs(pb - tb), -1) + 1.0 - pair_iou(pb, tb)
  return jnp.mean(obj + jnp.where(target[:, 0] > 0.5, ce + box_weight * box, 0.0))


def loss(pred: Array, target: Array, kind: str, *, box_weight: float = 1.0) -> Array:
  """:func:`course_loss` or :func:`modern_loss` by name."""
  if kind == 'course':
    return course_loss(pred, target)
  if kind == 'modern':
    return modern_loss(pred, target, box_weight=box_weight)
  raise ValueError(f'unknown localisation loss {kind!r}; choose one of {", ".join(LOSSES)}.')


def decode(pred: Array, kind: str) -> tuple[Array, Array, Array]:
  """(B, 5 + C) outputs -> ``(p_object (B,), corners (B, 4), class (B,))``."""
  p = pred[:, 0].astype(jnp.float32)
  return (jax.nn.sigmoid(p) if kind == 'modern' else p,
          box_corners(pred, kind), jnp.argmax(pred[:, 5:], -1).astype(jnp.int32))
