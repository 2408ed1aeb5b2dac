"""Losses for classification, segmentation, metric learning and style transfer.

Every function here is a pure ``jnp`` function of arrays, safe under ``jit``,
``grad`` and ``vmap``. String and numeric options (``reduction``, ``mining``,
``margin``, ...) are static Python values: bind them with
``functools.partial`` before jitting.

Losses over a batch take ``reduction``:

* ``'mean'`` (default): the mean over the batch (over masked-in entries only
  when a ``where`` mask is given; ``0`` when nothing is masked in, so a fully
  padded batch contributes no gradient instead of a NaN).
* ``'sum'``: the sum over the (masked-in) batch.
* ``'none'``: the per-example values, shaped like the batch dimensions, with
  ``0`` at masked-out positions.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from cnn_jax.ops.shapes import check_mask

Array = jax.Array

REDUCTIONS = ('mean', 'sum', 'none')
MINING = ('all', 'hard', 'semi_hard')
PAIRWISE_FEATURES = ('abs', 'chi2')
CONTENT_NORMS = ('4hwc', 'half')
# 'modern': BCE objectness, CE classes (yolo_loss); 'course': sum-squared error throughout
# (yolo_course_loss, YOLO v1 / the course).
YOLO_LOSSES = ('modern', 'course')

# Gram matrices and pairwise distances are differences of large dot products;
# TF32 / bf16 passes on accelerators would swamp the differences we care about.
_PRECISION = jax.lax.Precision.HIGHEST


def _check_reduction(reduction: str) -> None:
  if reduction not in REDUCTIONS:
    raise ValueError(f'reduction must be one of {REDUCTIONS}, got {reduction!r}.')


def _reduce(values: Array, reduction: str, where: Array | None = None) -> Array:
  """Applies ``reduction`` to per-example ``values``, honouring a boolean mask."""
  _check_reduction(reduction)
  if where is not None:
    # jnp.where (not a multiply) so NaN/inf at masked-out entries cannot leak.
    values = jnp.where(where, values, jnp.zeros_like(values))
  if reduction == 'none':
    return values
  total = jnp.sum(values)
  if reduction == 'sum':
    return total
  if where is None:
    return total / values.size
  count = jnp.sum(where, dtype=jnp.int32)
  return total / jnp.maximum(count, 1).astype(values.dtype)


def _float(x: Array, like: Array) -> Array:
  """Casts labels / masks to the float dtype of ``like`` (strict promotion)."""
  return jnp.asarray(x).astype(like.dtype)


# ----------------------------------------------------------------------------
# Classification and segmentation.
# ----------------------------------------------------------------------------


def softmax_cross_entropy(logits: Array, labels: Array, *, label_smoothing: float = 0.0,
                          where: Array | None = None, reduction: str = 'mean') -> Array:
  """Softmax cross-entropy for classification or per-pixel segmentation.

  Args:
    logits: ``(..., K)`` unnormalised scores, e.g. ``(N, K)`` or ``(N, H, W, K)``.
    labels: integer class ids ``(...)`` (rank of ``logits`` minus one), or
      one-hot / probability targets ``(..., K)`` (same shape as ``logits``).
      Integer labels outside ``[0, K)`` (e.g. an ignore label 255) must be
      masked out with ``where``; unmasked they give NaN rather than a silently
      wrong loss.
    label_smoothing: ``eps`` in ``[0, 1]``; the target becomes
      ``(1 - eps) * target + eps / K`` (as ``optax.smooth_labels``).
    where: optional boolean mask over the leading dims ``(...)``; ``False``
      entries (padding, ignored pixels) are excluded, and ``'mean'`` divides
      by the number of ``True`` entries.
    reduction: ``'mean'``, ``'sum'`` or ``'none'`` (returns ``(...)``).

  Returns:
    A scalar, or ``(...)`` for ``reduction='none'``.
  """
  _check_reduction(reduction)
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if logits.ndim < 1:
    raise ValueError(f'logits must have a class axis (..., K), got shape {logits.shape}.')
  if not 0.0 <= label_smoothing <= 1.0:
    raise ValueError(f'label_smoothing must be in [0, 1], got {label_smoothing}.')
  num_classes = logits.shape[-1]
  batch_shape = logits.shape[:-1]
  where = check_mask(where, batch_shape)
  log_p = jax.nn.log_softmax(logits, axis=-1)

  if labels.shape == batch_shape:
    if not jnp.issubdtype(labels.dtype, jnp.integer):
      raise ValueError(f'labels of shape {labels.shape} (logits.shape[:-1]) must be integer '
                       f'class ids, got dtype {labels.dtype}; pass one-hot labels of shape '
                       f'{logits.shape} for soft targets.')
    if where is not None:
      # Keeps ignore labels (e.g. 255) from indexing out of range.
      labels = jnp.where(where, labels, jnp.zeros_like(labels))
    # take_along_axis instead of a one-hot product: O(N) rather than O(NK).
    nll = -jnp.take_along_axis(log_p, labels[..., None], axis=-1)[..., 0]
    if label_smoothing:
      # -sum_k [(1-eps) onehot_k + eps/K] log p_k, without building the one-hot.
      nll = (1.0 - label_smoothing) * nll - label_smoothing * jnp.mean(log_p, axis=-1)
  elif labels.shape == logits.shape:
    targets = _float(labels, log_p)
    if label_smoothing:
      targets = (1.0 - label_smoothing) * targets + label_smoothing / num_classes
    # 0 * log p stays finite since log_softmax never returns -inf for finite logits.
    nll = -jnp.sum(targets * log_p, axis=-1)
  else:
    raise ValueError(f'labels must have shape {batch_shape} (integer ids) or {logits.shape} '
                     f'(one-hot / probabilities) for logits of shape {logits.shape}, '
                     f'got {labels.shape}.')
  return _reduce(nll, reduction, where)


def sigmoid_binary_cross_entropy(logits: Array, labels: Array,
                                 reduction: str = 'mean') -> Array:
  """Element-wise binary cross-entropy on logits (e.g. a siamese "same?" head).

  Uses ``max(x, 0) - x z + log1p(exp(-|x|))``, which neither overflows for
  large ``|x|`` nor loses the loss to ``log(0)``.

  Args:
    logits: any shape ``S``.
    labels: targets in ``[0, 1]`` (bool, int or float), shape ``S``.
    reduction: ``'mean'`` (over all elements), ``'sum'`` or ``'none'`` (``S``).

  Returns:
    A scalar, or ``S`` for ``reduction='none'``.
  """
  _check_reduction(reduction)
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  if labels.shape != logits.shape:
    raise ValueError(f'labels shape {labels.shape} must equal logits shape {logits.shape}.')
  z = _float(labels, logits)
  loss = jnp.maximum(logits, 0) - logits * z + jnp.log1p(jnp.exp(-jnp.abs(logits)))
  return _reduce(loss, reduction)


# ----------------------------------------------------------------------------
# Metric learning: triplet and siamese losses.
# ----------------------------------------------------------------------------


def triplet_loss(anchor: Array, positive: Array, negative: Array, margin: float = 0.2,
                 reduction: str = 'mean') -> Array:
  """FaceNet triplet loss ``max(||a - p||^2 - ||a - n||^2 + margin, 0)``.

  Distances are squared L2, as in Schroff et al. (2015).

  Args:
    anchor, positive, negative: ``(..., D)`` embeddings of equal shape.
    margin: the ``alpha`` of the paper.
    reduction: ``'mean'``, ``'sum'`` or ``'none'`` (returns ``(...)``).
  """
  _check_reduction(reduction)
  anchor, positive, negative = map(jnp.asarray, (anchor, positive, negative))
  if not anchor.shape == positive.shape == negative.shape or anchor.ndim < 1:
    raise ValueError('anchor, positive and negative must share one shape (..., D), got '
                     f'{anchor.shape}, {positive.shape} and {negative.shape}.')
  d_ap = jnp.sum(jnp.square(anchor - positive), axis=-1)
  d_an = jnp.sum(jnp.square(anchor - negative), axis=-1)
  return _reduce(jax.nn.relu(d_ap - d_an + margin), reduction)


def pairwise_sq_distances(emb: Array) -> Array:
  """All squared Euclidean distances between the rows of ``emb``.

  Computed as ``|x|^2 + |y|^2 - 2 x.y`` (one matmul), then clamped at ``0``
  because cancellation can make it slightly negative, and with the diagonal
  set to exactly ``0``.

  Args:
    emb: ``(N, D)`` embeddings.

  Returns:
    ``(N, N)`` squared distances.
  """
  emb = jnp.asarray(emb)
  if emb.ndim != 2:
    raise ValueError(f'emb must be (N, D), got shape {emb.shape}.')
  sq_norm = jnp.sum(jnp.square(emb), axis=-1)
  dots = jnp.matmul(emb, emb.T, precision=_PRECISION)
  d = jnp.maximum(sq_norm[:, None] + sq_norm[None, :] - 2.0 * dots, 0.0)
  eye = jnp.eye(emb.shape[0], dtype=jnp.bool_)
  return jnp.where(eye, jnp.zeros_like(d), d)


def label_pair_masks(labels: Array) -> tuple[Array, Array]:
  """``(positive, negative)`` pair masks: same label and not self; other label."""
  same = labels[:, None] == labels[None, :]
  eye = jnp.eye(labels.shape[0], dtype=jnp.bool_)
  return same & ~eye, ~same


def batch_hard_indices(sq_dist: Array, labels: Array) -> tuple[Array, Array]:
  """Batch-hard picks (Hermans et al., 2017): per anchor, the hardest pair.

  Args:
    sq_dist: ``(N, N)`` pairwise distances (e.g. ``pairwise_sq_distances``).
    labels: ``(N,)`` integer identities.

  Returns:
    ``(pos_idx, neg_idx)``, each ``(N,)`` int32: the index of the farthest
    other sample with the same label and of the closest sample with a
    different label. ``-1`` where the anchor has no such sample. Ties go to
    the lowest index.
  """
  sq_dist = jnp.asarray(sq_dist)
  labels = jnp.asarray(labels)
  n = labels.shape[0] if labels.ndim == 1 else -1
  if labels.ndim != 1 or sq_dist.shape != (n, n):
    raise ValueError(f'need sq_dist (N, N) and labels (N,), got {sq_dist.shape} '
                     f'and {labels.shape}.')
  pos_mask, neg_mask = label_pair_masks(labels)
  pos_idx = jnp.argmax(jnp.where(pos_mask, sq_dist, -jnp.inf), axis=1).astype(jnp.int32)
  neg_idx = jnp.argmin(jnp.where(neg_mask, sq_dist, jnp.inf), axis=1).astype(jnp.int32)
  missing = jnp.array(-1, jnp.int32)
  pos_idx = jnp.where(jnp.any(pos_mask, axis=1), pos_idx, missing)
  neg_idx = jnp.where(jnp.any(neg_mask, axis=1), neg_idx, missing)
  return pos_idx, neg_idx


def _masked_mean(values: Array, mask: Array) -> Array:
  """Mean of ``values`` over ``mask``; ``0`` (not NaN) when the mask is empty."""
  return _reduce(values, 'mean', mask)


def batch_triplet_loss(embeddings: Array, labels: Array, margin: float = 0.2,
                       mining: str = 'all') -> Array:
  """Triplet loss with online mining over a labelled batch.

  All distances are squared L2 (``pairwise_sq_distances``), like
  ``triplet_loss``. A positive is another sample with the same label; a
  negative is a sample with a different label.

  * ``'all'``: mean of ``max(d_ap - d_an + margin, 0)`` over every valid
    triplet ``(a, p, n)`` (including the already-satisfied, zero-loss ones).
  * ``'hard'``: batch-hard (Hermans et al., 2017): per anchor, its farthest
    positive and closest negative (``batch_hard_indices``); mean over anchors
    that have both.
  * ``'semi_hard'``: FaceNet / ``tfa.losses.triplet_semihard_loss``: for each
    positive pair ``(a, p)``, the negative with the smallest ``d_an`` among
    those with ``d_an > d_ap``; if there is none, the negative with the largest
    ``d_an``. Mean over positive pairs whose anchor has a negative.

  Returns ``0`` when the batch has no valid triplet. ``'all'`` and
  ``'semi_hard'`` build an ``(N, N, N)`` tensor, fine for usual batch sizes.

  Args:
    embeddings: ``(N, D)``.
    labels: ``(N,)`` integer identities.
    margin: hinge margin.
    mining: ``'all'``, ``'hard'`` or ``'semi_hard'``.

  Returns:
    A scalar.
  """
  if mining not in MINING:
    raise ValueError(f'mining must be one of {MINING}, got {mining!r}.')
  embeddings = jnp.asarray(embeddings)
  labels = jnp.asarray(labels)
  if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
    raise ValueError(f'need embeddings (N, D) and labels (N,), got {embeddings.shape} '
                     f'and {labels.shape}.')
  d = pairwise_sq_distances(embeddings)
  pos_mask, neg_mask = label_pair_masks(labels)

  if mining == 'all':
    hinge = jax.nn.relu(d[:, :, None] - d[:, None, :] + margin)
    valid = pos_mask[:, :, None] & neg_mask[:, None, :]
    return _masked_mean(hinge, valid)

  if mining == 'hard':
    pos_idx, neg_idx = batch_hard_indices(d, labels)
    valid = (pos_idx >= 0) & (neg_idx >= 0)
    # Gather at the picks (argmax itself has no gradient); -1 is masked below.
    d_ap = jnp.take_along_axis(d, jnp.maximum(pos_idx, 0)[:, None], axis=1)[:, 0]
    d_an = jnp.take_along_axis(d, jnp.maximum(neg_idx, 0)[:, None], axis=1)[:, 0]
    return _masked_mean(jax.nn.relu(d_ap - d_an + margin), valid)

  # Semi-hard: axes are (anchor, positive, negative).
  d_ap = d[:, :, None]
  d_an = d[:, None, :]
  farther = neg_mask[:, None, :] & (d_an > d_ap)
  semi_hard = jnp.min(jnp.where(farther, d_an, jnp.inf), axis=2)
  hardest_fallback = jnp.max(jnp.where(neg_mask, d, -jnp.inf), axis=1)
  chosen = jnp.where(jnp.any(farther, axis=2), semi_hard, hardest_fallback[:, None])
  valid = pos_mask & jnp.any(neg_mask, axis=1)[:, None]
  # `chosen` is +-inf off `valid`; the where in _reduce drops it before summing.
  return _masked_mean(jax.nn.relu(d + margin - chosen), valid)


def pairwise_features(f1: Array, f2: Array, kind: str = 'abs', eps: float = 1e-6) -> Array:
  """Siamese pair features fed to a binary "same person?" head (DeepFace).

  Args:
    f1, f2: ``(..., D)`` embeddings of equal shape.
    kind: ``'abs'`` for ``|f1 - f2|``; ``'chi2'`` for
      ``(f1 - f2)^2 / (f1 + f2 + eps)`` (meant for non-negative features,
      e.g. after a ReLU).
    eps: keeps ``'chi2'`` finite where ``f1 + f2 = 0``.

  Returns:
    ``(..., D)``.
  """
  if kind not in PAIRWISE_FEATURES:
    raise ValueError(f'kind must be one of {PAIRWISE_FEATURES}, got {kind!r}.')
  f1, f2 = jnp.asarray(f1), jnp.asarray(f2)
  if f1.shape != f2.shape:
    raise ValueError(f'f1 and f2 must have the same shape, got {f1.shape} and {f2.shape}.')
  if kind == 'abs':
    return jnp.abs(f1 - f2)
  return jnp.square(f1 - f2) / (f1 + f2 + eps)


def contrastive_loss(e1: Array, e2: Array, same: Array, margin: float = 1.0,
                     reduction: str = 'mean') -> Array:
  """Contrastive loss (Hadsell, Chopra & LeCun, 2006).

  ``same * d^2 + (1 - same) * max(margin - d, 0)^2`` with ``d`` the Euclidean
  distance. The gradient at ``d = 0`` (identical embeddings) is finite: the
  square root is only differentiated where ``d^2 > 0``.

  Args:
    e1, e2: ``(..., D)`` embeddings of equal shape.
    same: ``(...)``, 1/True for matching pairs, 0/False otherwise.
    margin: distance beyond which dissimilar pairs cost nothing.
    reduction: ``'mean'``, ``'sum'`` or ``'none'`` (returns ``(...)``).
  """
  _check_reduction(reduction)
  e1, e2, same = jnp.asarray(e1), jnp.asarray(e2), jnp.asarray(same)
  if e1.shape != e2.shape or e1.ndim < 1:
    raise ValueError(f'e1 and e2 must share one shape (..., D), got {e1.shape} and {e2.shape}.')
  if same.shape != e1.shape[:-1]:
    raise ValueError(f'same must have shape {e1.shape[:-1]} (e1.shape[:-1]), got {same.shape}.')
  sq = jnp.sum(jnp.square(e1 - e2), axis=-1)
  # Double-where: sqrt'(0) is inf, and inf * 0 in the backward pass is NaN.
  positive = sq > 0
  d = jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, jnp.ones_like(sq))),
                jnp.zeros_like(sq))
  y = _float(same, sq)
  loss = y * sq + (1.0 - y) * jnp.square(jax.nn.relu(margin - d))
  return _reduce(loss, reduction)


# ----------------------------------------------------------------------------
# Neural style transfer (Gatys et al., 2015, with the course's normalisation).
# ----------------------------------------------------------------------------


def _check_activations(a: Array, name: str) -> Array:
  a = jnp.asarray(a)
  if a.ndim < 3:
    raise ValueError(f'{name} must be (H, W, C) or (N, H, W, C) activations, got shape {a.shape}.')
  return a


def _check_pair(a: Array, b: Array, names: str) -> tuple[Array, Array]:
  first, second = names.split(',')
  a, b = _check_activations(a, first), _check_activations(b, second.strip())
  if a.shape != b.shape:
    raise ValueError(f'{names} must have the same shape, got {a.shape} and {b.shape}.')
  return a, b


def content_loss(a_c: Array, a_g: Array, norm: str = '4hwc') -> Array:
  """The content cost of one layer per image, averaged over the batch.

  * ``norm='4hwc'`` (default): ``1 / (4 nH nW nC) * sum (a_c - a_g)^2``, the
    course's programming exercise; dividing by the layer size keeps the cost
    of a large image or a wide layer on the same scale as a small one.
  * ``norm='half'``: ``1/2 ||a_c - a_g||^2``, the cost as the course's lecture
    and Gatys et al. (2015, eq. 1) write it; its gradient with respect to
    ``a_g`` is simply ``a_g - a_c``, but its size grows with ``nH nW nC``, so
    ``content_weight`` has to be retuned when the image or layer changes.

  Args:
    a_c, a_g: content and generated activations of one layer, ``(H, W, C)``
      or ``(..., H, W, C)``; leading axes are batch axes.
    norm: one of ``CONTENT_NORMS``.

  Returns:
    A scalar.
  """
  if norm not in CONTENT_NORMS:
    raise ValueError(f'norm={norm!r} is not valid; choose one of {", ".join(CONTENT_NORMS)}.')
  a_c, a_g = _check_pair(a_c, a_g, 'a_c, a_g')
  h, w, c = a_c.shape[-3:]
  scale = 4.0 * h * w * c if norm == '4hwc' else 2.0
  per_image = jnp.sum(jnp.square(a_c - a_g), axis=(-3, -2, -1)) / scale
  return jnp.mean(per_image)


def gram_matrix(a: Array) -> Array:
  """Unnormalised Gram matrix ``A^T A`` of the ``(H W, C)`` unrolled activations.

  Entry ``(c, c')`` is ``sum_{i,j} a[i, j, c] a[i, j, c']`` (the course's
  ``G = A A^T`` with ``A`` stored ``(nC, nH nW)``).

  Args:
    a: ``(..., H, W, C)``.

  Returns:
    ``(..., C, C)``.
  """
  a = _check_activations(a, 'a')
  *lead, h, w, c = a.shape
  unrolled = a.reshape(*lead, h * w, c)
  return jnp.einsum('...kc,...kd->...cd', unrolled, unrolled, precision=_PRECISION)


def style_layer_loss(a_s: Array, a_g: Array) -> Array:
  """``1 / (4 nC^2 (nH nW)^2) * sum (G_s - G_g)^2`` per image, mean over batch.

  Args:
    a_s, a_g: style and generated activations, ``(H, W, C)`` or
      ``(..., H, W, C)``.

  Returns:
    A scalar.
  """
  a_s, a_g = _check_pair(a_s, a_g, 'a_s, a_g')
  h, w, c = a_s.shape[-3:]
  diff = gram_matrix(a_s) - gram_matrix(a_g)
  per_image = jnp.sum(jnp.square(diff), axis=(-2, -1)) / (4.0 * c**2 * (h * w)**2)
  return jnp.mean(per_image)


def style_loss(layers: Sequence[tuple[Array, Array]],
               weights: Sequence[float] | None = None) -> Array:
  """Weighted sum of ``style_layer_loss`` over layers.

  Args:
    layers: a non-empty sequence of ``(a_s, a_g)`` activation pairs, one per
      style layer (shapes may differ between layers).
    weights: one ``lambda_l`` per layer; ``None`` means equal weights
      ``1 / L``, so the result is the mean of the layer losses.

  Returns:
    A scalar.
  """
  layers = list(layers)
  if not layers:
    raise ValueError('style_loss needs at least one (a_s, a_g) layer pair.')
  if weights is None:
    weights = [1.0 / len(layers)] * len(layers)
  weights = list(weights)
  if len(weights) != len(layers):
    raise ValueError(f'got {len(weights)} weights for {len(layers)} layers; '
                     'pass one weight per layer or None for equal weights.')
  return sum(w * style_layer_loss(a_s, a_g) for w, (a_s, a_g) in zip(weights, layers))


def total_variation(x: Array, p: int = 1) -> Array:
  """Total variation of an image, a smoothness prior for generated images.

  ``sum_{i,j,c} |x[i+1,j,c] - x[i,j,c]|^p + |x[i,j+1,c] - x[i,j,c]|^p``;
  ``p=1`` is the anisotropic L1 form of ``tf.image.total_variation``, ``p=2``
  the squared form.

  Args:
    x: ``(H, W, C)`` or ``(N, H, W, C)``. Integer images are summed in float32.
    p: ``1`` or ``2``.

  Returns:
    A scalar for one image, ``(N,)`` for a batch.
  """
  if p not in (1, 2):
    raise ValueError(f'p must be 1 (L1, anisotropic) or 2 (squared), got {p!r}.')
  x = jnp.asarray(x)
  if x.ndim not in (3, 4):
    raise ValueError(f'x must be (H, W, C) or (N, H, W, C), got shape {x.shape}.')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    # uint8 differences would wrap around.
    x = x.astype(jnp.float32)
  dh = x[..., 1:, :, :] - x[..., :-1, :, :]
  dw = x[..., :, 1:, :] - x[..., :, :-1, :]
  penalty = jnp.abs if p == 1 else jnp.square
  axes = (-3, -2, -1)
  return jnp.sum(penalty(dh), axis=axes) + jnp.sum(penalty(dw), axis=axes)


# ----------------------------------------------------------------------------
# YOLO detection loss.
# ----------------------------------------------------------------------------


def yolo_loss(output: Array, target: Array, *, coord_weight: float = 5.0,
              noobj_weight: float = 0.5) -> tuple[Array, dict[str, Array]]:
  """YOLO loss over ``(N, S, S, B, 5 + C)`` raw outputs and encoded targets.

  Per slot, with ``1obj`` the target's objectness (see
  :func:`cnn_jax.ops.boxes.yolo_encode`):

  * objectness: binary cross entropy of ``sigmoid(out[0])``, weighted 1 where
    an object is and ``noobj_weight`` elsewhere (most slots are empty);
  * box: ``coord_weight * 1obj * (|sigmoid(out[1:3]) - t[1:3]|^2 + |out[3:5] - t[3:5]|^2)``
    (cell offsets and log size ratios);
  * class: ``1obj *`` softmax cross entropy of ``out[5:]``.

  Summed over slots, averaged over images.

  Returns:
    ``(total, parts)`` with parts ``obj``, ``noobj``, ``box``, ``cls``.
  """
  output, target = jnp.asarray(output), jnp.asarray(target)
  if output.shape != target.shape or output.ndim != 5 or output.shape[-1] < 6:
    raise ValueError(f'output and target must both be (N, S, S, B, 5 + C), got {output.shape} '
                     f'and {target.shape}.')
  obj = target[..., 0]
  bce = sigmoid_binary_cross_entropy(output[..., 0], obj, reduction='none')
  box = (jnp.sum(jnp.square(jax.nn.sigmoid(output[..., 1:3]) - target[..., 1:3]), -1) +
         jnp.sum(jnp.square(output[..., 3:5] - target[..., 3:5]), -1))
  cls = -jnp.sum(target[..., 5:] * jax.nn.log_softmax(output[..., 5:], axis=-1), -1)
  n = output.shape[0]
  parts = {'obj': jnp.sum(obj * bce) / n,
           'noobj': noobj_weight * jnp.sum((1.0 - obj) * bce) / n,
           'box': coord_weight * jnp.sum(obj * box) / n,
           'cls': jnp.sum(obj * cls) / n}
  return sum(parts.values()), parts


def yolo_course_loss(output: Array, target: Array, anchors: Array, *,
                     coord_weight: float = 5.0, noobj_weight: float = 0.5
                     ) -> tuple[Array, dict[str, Array]]:
  """The YOLO v1 / course loss: sum-squared error on every term.

  Redmon et al. (2016, eq. 3), as the course writes it, on the same
  ``(N, S, S, B, 5 + C)`` outputs and :func:`cnn_jax.ops.boxes.yolo_encode`
  targets as :func:`yolo_loss`. The squared errors are taken on what
  :func:`cnn_jax.ops.boxes.detect` decodes, not on raw logits, so the loss
  measures the quantities the detector reports:

  * ``p = sigmoid(out[0])``, ``(y, x) = sigmoid(out[1:3])`` (the centre's
    offset in its cell, in [0, 1]), ``(h, w) = anchor * exp(out[3:5])``
    (fractions of the image), class probabilities ``softmax(out[5:])``;
  * objectness: ``1obj (p - 1)^2 + noobj_weight (1 - 1obj) p^2`` (the
    course's target ``p_c = 1``; YOLO v1 itself regresses to the IoU of the
    predicted box with the ground truth);
  * box: ``coord_weight 1obj [(y - ty)^2 + (x - tx)^2 + (sqrt h - sqrt h*)^2 +
    (sqrt w - sqrt w*)^2]`` with ``h* = anchor_h exp(t[3])`` the true size:
    the square roots make an error on a small box cost more than the same
    error on a large one;
  * class: ``1obj sum_c (softmax(out[5:])_c - onehot_c)^2``, per anchor slot
    (YOLO v1 predicts one class distribution per cell; here each slot has its own).

  Summed over slots, averaged over images (as :func:`yolo_loss`).

  Args:
    output: ``(N, S, S, B, 5 + C)`` raw network outputs.
    target: ``(N, S, S, B, 5 + C)`` from ``yolo_encode``.
    anchors: ``(B, 2)`` anchor ``(h, w)`` as fractions of the image, the
      ones the targets were encoded with (the square-root size term needs
      sizes, not log ratios).
    coord_weight: YOLO's ``lambda_coord``.
    noobj_weight: YOLO's ``lambda_noobj``.

  Returns:
    ``(total, parts)`` with parts ``obj``, ``noobj``, ``box``, ``cls``.
  """
  output, target = jnp.asarray(output), jnp.asarray(target)
  anchors = jnp.asarray(anchors)
  if output.shape != target.shape or output.ndim != 5 or output.shape[-1] < 6:
    raise ValueError(f'output and target must both be (N, S, S, B, 5 + C), got {output.shape} '
                     f'and {target.shape}.')
  if anchors.shape != (output.shape[3], 2):
    raise ValueError(f'anchors must be (B, 2) = ({output.shape[3]}, 2) for B anchors per cell, '
                     f'got {anchors.shape}.')
  obj = target[..., 0]
  p = jax.nn.sigmoid(output[..., 0])
  # sqrt(anchor * exp(t)) = sqrt(anchor) * exp(t / 2): no sqrt of a predicted size,
  # whose slope at 0 would be infinite.
  root_anchor = jnp.sqrt(anchors.astype(output.dtype))
  root_size = root_anchor * jnp.exp(0.5 * output[..., 3:5])
  # Empty slots hold t = 0 (size = anchor); they are masked by 1obj below.
  root_size_true = root_anchor * jnp.exp(0.5 * target[..., 3:5])
  box = (jnp.sum(jnp.square(jax.nn.sigmoid(output[..., 1:3]) - target[..., 1:3]), -1) +
         jnp.sum(jnp.square(root_size - root_size_true), -1))
  cls = jnp.sum(jnp.square(jax.nn.softmax(output[..., 5:], axis=-1) - target[..., 5:]), -1)
  n = output.shape[0]
  parts = {'obj': jnp.sum(obj * jnp.square(p - 1.0)) / n,
           'noobj': noobj_weight * jnp.sum((1.0 - obj) * jnp.square(p)) / n,
           'box': coord_weight * jnp.sum(obj * box) / n,
           'cls': jnp.sum(obj * cls) / n}
  return sum(parts.values()), parts


def smooth_l1(x: Array, beta: float = 1.0) -> Array:
  """Element-wise Huber-style smooth L1 (torch's ``smooth_l1_loss`` without reduction).

  ``0.5 x^2 / beta`` where ``|x| < beta``, else ``|x| - 0.5 beta``; ``beta=0`` is L1.
  """
  ax = jnp.abs(x)
  if beta <= 0:
    return ax
  return jnp.where(ax < beta, 0.5 * jnp.square(x) / beta, ax - 0.5 * beta)
