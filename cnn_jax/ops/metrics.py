"""Classification and segmentation metrics as pure, jit-able ``jnp`` functions.

Rates (accuracy, IoU) are ``NaN`` when nothing is counted (empty mask, every
pixel ignored, class absent): 0/0 is undefined, and a ``0`` would silently
drag averages down. To aggregate over a data set, sum per-batch confusion
matrices (or correct / total counts) rather than averaging per-batch rates.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from cnn_jax.ops.shapes import check_mask

Array = jax.Array


def _class_ids(logits: Array, labels: Array) -> Array:
  """Integer labels ``(...)`` from integer ids or one-hot ``(..., K)`` labels."""
  labels = jnp.asarray(labels)
  if labels.shape == logits.shape[:-1]:
    if not jnp.issubdtype(labels.dtype, jnp.integer):
      raise ValueError(f'labels of shape {labels.shape} must be integer class ids, '
                       f'got dtype {labels.dtype}.')
    return labels
  if labels.shape == logits.shape:
    return jnp.argmax(labels, axis=-1)
  raise ValueError(f'labels must have shape {logits.shape[:-1]} (integer ids) or '
                   f'{logits.shape} (one-hot) for logits of shape {logits.shape}, '
                   f'got {labels.shape}.')


def _rate(hits: Array, where: Array | None) -> Array:
  """Fraction of ``True`` in ``hits`` over ``where``; NaN when ``where`` is empty."""
  hits = hits if where is None else hits & where
  count = hits.size if where is None else jnp.sum(where, dtype=jnp.int32)
  return (jnp.sum(hits, dtype=jnp.int32) / count).astype(jnp.float32)


def accuracy(logits: Array, labels: Array, where: Array | None = None) -> Array:
  """Top-1 accuracy.

  Args:
    logits: ``(..., K)`` scores (argmax is taken; ties go to the lowest class).
    labels: integer ``(...)`` or one-hot ``(..., K)``.
    where: optional boolean ``(...)`` mask; ``False`` entries are not counted.

  Returns:
    float32 scalar in ``[0, 1]``; NaN if ``where`` masks everything out.
  """
  logits = jnp.asarray(logits)
  ids = _class_ids(logits, labels)
  where = check_mask(where, logits.shape[:-1])
  return _rate(jnp.argmax(logits, axis=-1) == ids, where)


def top_k_accuracy(logits: Array, labels: Array, k: int = 5,
                   where: Array | None = None) -> Array:
  """Fraction of examples whose label is among the ``k`` highest logits.

  Ties are broken as ``jax.lax.top_k`` does (lower index first).

  Args:
    logits: ``(..., K)`` with ``K >= k``.
    labels: integer ``(...)`` or one-hot ``(..., K)``.
    k: how many top predictions count as correct.
    where: optional boolean ``(...)`` mask.

  Returns:
    float32 scalar; NaN if ``where`` masks everything out.
  """
  logits = jnp.asarray(logits)
  num_classes = logits.shape[-1]
  if not 1 <= k <= num_classes:
    raise ValueError(f'k must be in [1, {num_classes}] (the number of classes), got {k}.')
  ids = _class_ids(logits, labels)
  where = check_mask(where, logits.shape[:-1])
  _, top = jax.lax.top_k(logits, k)
  return _rate(jnp.any(top == ids[..., None], axis=-1), where)


def confusion_matrix(preds: Array, labels: Array, num_classes: int,
                     where: Array | None = None, ignore_index: int | None = None) -> Array:
  """Counts of (true class, predicted class) pairs.

  Args:
    preds: integer predicted classes, any shape ``S``.
    labels: integer true classes, shape ``S``.
    num_classes: ``K``.
    where: optional boolean mask ``S`` of entries to count.
    ignore_index: optional label value whose entries are not counted (e.g. 255
      for segmentation void); same as ``where=labels != ignore_index``.

  Entries whose label or prediction is outside ``[0, K)`` are dropped (they
  cannot raise under ``jit``).

  Returns:
    ``(K, K)`` int32; ``cm[t, p]`` counts entries with label ``t`` predicted
    as ``p``, so rows are true classes and columns predicted ones.
  """
  preds, labels = jnp.asarray(preds), jnp.asarray(labels)
  if preds.shape != labels.shape:
    raise ValueError(f'preds and labels must have the same shape, got {preds.shape} '
                     f'and {labels.shape}.')
  for name, x in (('preds', preds), ('labels', labels)):
    if not jnp.issubdtype(x.dtype, jnp.integer):
      raise ValueError(f'{name} must be integer class ids, got dtype {x.dtype}; '
                       'take argmax of logits first.')
  if num_classes < 1:
    raise ValueError(f'num_classes must be positive, got {num_classes}.')
  valid = ((labels >= 0) & (labels < num_classes) & (preds >= 0) & (preds < num_classes))
  if ignore_index is not None:
    valid &= labels != ignore_index
  mask = check_mask(where, labels.shape)
  if mask is not None:
    valid &= mask
  # Out-of-range ids could alias into another cell of the flat index; point
  # every invalid entry at cell 0 with weight 0 instead.
  flat = labels.astype(jnp.int32) * num_classes + preds.astype(jnp.int32)
  flat = jnp.where(valid, flat, jnp.zeros_like(flat))
  counts = jnp.zeros(num_classes * num_classes, jnp.int32)
  counts = counts.at[flat.reshape(-1)].add(valid.reshape(-1).astype(jnp.int32))
  return counts.reshape(num_classes, num_classes)


def pixel_accuracy(pred: Array, label: Array, ignore_index: int | None = None) -> Array:
  """Fraction of pixels whose predicted class equals the label.

  Args:
    pred: integer class mask, e.g. ``(N, H, W)``.
    label: integer class mask of the same shape.
    ignore_index: optional label value excluded from the count.

  Returns:
    float32 scalar; NaN if every pixel is ignored.
  """
  pred, label = jnp.asarray(pred), jnp.asarray(label)
  if pred.shape != label.shape:
    raise ValueError(f'pred and label must have the same shape, got {pred.shape} '
                     f'and {label.shape}.')
  where = None if ignore_index is None else label != ignore_index
  return _rate(pred == label, where)


def iou_from_confusion_matrix(cm: Array) -> tuple[Array, Array]:
  """Per-class Jaccard index ``TP / (TP + FP + FN)`` and its mean.

  Args:
    cm: ``(K, K)`` counts with rows = true class (``confusion_matrix``),
      possibly summed over many batches.

  Returns:
    ``(miou, per_class_iou)``: float32 scalar and ``(K,)``. A class absent from
    both predictions and labels has IoU NaN and is left out of the mean.
  """
  cm = jnp.asarray(cm)
  if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
    raise ValueError(f'cm must be a square (K, K) matrix, got shape {cm.shape}.')
  cm = cm.astype(jnp.float32)
  tp = jnp.diagonal(cm)
  union = jnp.sum(cm, axis=0) + jnp.sum(cm, axis=1) - tp
  present = union > 0
  iou = jnp.where(present, tp / jnp.where(present, union, jnp.ones_like(union)), jnp.nan)
  return jnp.nanmean(iou), iou


def mean_iou(pred: Array, label: Array, num_classes: int,
             ignore_index: int | None = None) -> tuple[Array, Array]:
  """Mean intersection-over-union of integer segmentation masks.

  Args:
    pred: integer predicted mask, e.g. ``(N, H, W)``.
    label: integer true mask of the same shape.
    num_classes: ``K``.
    ignore_index: optional label value whose pixels are not counted.

  Returns:
    ``(miou, per_class_iou)``: float32 scalar and ``(K,)``; classes absent from
    both ``pred`` and ``label`` are NaN and excluded from ``miou``.
  """
  cm = confusion_matrix(pred, label, num_classes, ignore_index=ignore_index)
  return iou_from_confusion_matrix(cm)


# ----------------------------------------------------------------------------
# Verification (pairs scored "same" vs "different").
# ----------------------------------------------------------------------------


def _check_scores(scores: Array, positive: Array) -> tuple[Array, Array]:
  scores, positive = jnp.asarray(scores), jnp.asarray(positive)
  if scores.ndim != 1 or positive.shape != scores.shape:
    raise ValueError(f'need scores (N,) and positive (N,), got {scores.shape} and '
                     f'{positive.shape}.')
  return scores.astype(jnp.float32), positive.astype(jnp.bool_)


def roc_auc(scores: Array, positive: Array) -> Array:
  """Area under the ROC curve: P(score of a positive > score of a negative).

  The Mann-Whitney statistic with ties counted 1/2 (average ranks), so it is
  exact, threshold-free and equals the trapezoidal area under the ROC curve.

  Args:
    scores: (N,) higher means "more likely positive" (for distances pass ``-d``).
    positive: (N,) bool labels.

  Returns:
    A float32 scalar; NaN if either class is empty.
  """
  scores, positive = _check_scores(scores, positive)
  order = jnp.argsort(scores)
  sorted_scores = scores[order]
  # Average rank (1-based) of each group of tied scores.
  first = jnp.searchsorted(sorted_scores, sorted_scores, side='left')
  last = jnp.searchsorted(sorted_scores, sorted_scores, side='right')
  ranks = jnp.zeros_like(scores).at[order].set((first + last + 1).astype(jnp.float32) / 2.0)
  n_pos = jnp.sum(positive, dtype=jnp.float32)
  n_neg = jnp.float32(scores.shape[0]) - n_pos
  rank_sum = jnp.sum(jnp.where(positive, ranks, 0.0))
  auc = (rank_sum - n_pos * (n_pos + 1.0) / 2.0) / (n_pos * n_neg)
  return jnp.where((n_pos > 0) & (n_neg > 0), auc, jnp.nan)


def best_threshold(distances: Array, same: Array) -> tuple[Array, Array]:
  """The distance threshold that classifies pairs best (``same`` iff ``d <= t``).

  Tries every observed distance as ``t``, and ``t`` below all of them.

  Args:
    distances: (N,) pair distances.
    same: (N,) bool, True for pairs of one identity.

  Returns:
    ``(threshold, accuracy)`` float32 scalars.
  """
  distances, same = _check_scores(distances, same)
  candidates = jnp.concatenate([jnp.min(distances, keepdims=True) - 1.0, distances])
  acc = jax.vmap(lambda t: verification_accuracy(distances, same, t))(candidates)
  i = jnp.argmax(acc)
  return candidates[i], acc[i]


def verification_accuracy(distances: Array, same: Array, threshold: Array | float) -> Array:
  """Fraction of pairs classified right by ``same iff distance <= threshold``."""
  distances, same = _check_scores(distances, same)
  return jnp.mean((distances <= threshold) == same, dtype=jnp.float32)
