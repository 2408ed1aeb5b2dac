"""Spatial pooling on NHWC activations, built on ``lax.reduce_window``.

Pooling has no parameters, so there is nothing to initialise: every function
here is a pure map from an ``(N, H, W, C)`` array to a pooled one. Windows and
strides are an int or an ``(h, w)`` pair; ``stride`` defaults to the window
(non-overlapping pooling). ``padding`` takes every spelling documented in
:mod:`cnn_jax.ops.shapes`.

Each window covers the ``h x w`` cells of one channel; channels and the batch
are never mixed.

Sequences ``(N, L, C)`` (e.g. a text CNN's feature maps over time) have
``max_pool1d`` / ``avg_pool1d`` (the 2-D pools on a ``1 x L`` image) and, for
batches of padded sequences, ``masked_max_over_time`` /
``masked_mean_over_time``: ``(N, L, C) -> (N, C)`` over the real steps only.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops.shapes import (IntPair, Padding, check_nhwc, check_nwc, conv_output_size,
                                normalize_padding, normalize_padding_1d, pair, single)

Window = int | Sequence[int]

def _check_floating(x: jax.Array, name: str) -> None:
  # Averages and norms of integers would silently truncate or overflow.
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f'{name} expects a floating-point input, got dtype {x.dtype}; '
                     'cast it first, e.g. x.astype(jnp.float32).')


def _check_windows(name: str, axes: Sequence[str], sizes: Sequence[int], window: Sequence[int],
                   stride: Sequence[int], pads: Sequence[IntPair]) -> None:
  """Raises unless every window holds a real cell and fits its (padded) axis."""
  for axis, n, f, s, (lo, hi) in zip(axes, sizes, window, stride, pads):
    # A window lying wholly in padding has no real cell: max would be -inf and
    # the default average 0/0, so such paddings are rejected rather than
    # producing silent infs and NaNs. 'SAME' never triggers this.
    if lo >= f or hi >= f:
      raise ValueError(f'{name} padding ({lo}, {hi}) along {axis} must be smaller than the '
                       f'window size {f}; reduce the padding or enlarge the window.')
    try:
      conv_output_size(n, f, s, (lo, hi))
    except ValueError as e:  # The window does not fit; say which op complained.
      raise ValueError(f'{name}: {e}') from None


def _geometry(x: jax.Array, window: Window, stride: Window | None, padding: Padding,
              name: str) -> tuple[IntPair, IntPair, tuple[IntPair, IntPair]]:
  """Validates a pooling call; returns ``(window, stride, pads)`` as int pairs."""
  check_nhwc(x, name)
  window = pair(window, 'window')
  stride = window if stride is None else pair(stride, 'stride')
  pads = normalize_padding(padding, x.shape[1:3], window, stride)
  _check_windows(name, ('height', 'width'), x.shape[1:3], window, stride, pads)
  return window, stride, pads


def _geometry_1d(x: jax.Array, window: int, stride: int | None, padding: Padding,
                 name: str) -> tuple[IntPair, IntPair, tuple[IntPair, IntPair]]:
  """Validates a 1-D pooling call on (N, L, C); returns the 2-D geometry of ``x[:, None]``.

  A sequence is pooled as a ``1 x L`` image with ``1 x k`` windows.
  """
  check_nwc(x, name)
  window = single(window, 'window')
  stride = window if stride is None else single(stride, 'stride')
  pads = normalize_padding_1d(padding, x.shape[1], window, stride)
  _check_windows(name, ('length',), x.shape[1:2], (window,), (stride,), (pads,))
  return (1, window), (1, stride), ((0, 0), pads)


def _reduce(x: jax.Array, init: np.ndarray, op, window: IntPair, stride: IntPair,
            pads: tuple[IntPair, IntPair]) -> jax.Array:
  # A concrete identity ``init`` (0 for add, -inf for max) lets JAX use the
  # monoid reduce_window primitives, which are the ones with gradient rules.
  # reduce_window pads with ``init``, which is what makes max padding -inf.
  return lax.reduce_window(x, init, op, (1, *window, 1), (1, *stride, 1),
                           ((0, 0), *pads, (0, 0)))


def _accumulation_dtype(dtype) -> jnp.dtype:
  # Window sums of bf16/f16 lose precision quickly; accumulate in at least f32.
  return jnp.dtype(jnp.float32) if jnp.finfo(dtype).bits < 32 else jnp.dtype(dtype)


def _real_cell_counts(in_hw: Sequence[int], window: IntPair, stride: IntPair,
                      pads: tuple[IntPair, IntPair]) -> np.ndarray:
  """Number of non-padding cells under each window, shape ``(H', W')``.

  The count depends only on static shapes and factors over the two axes, so
  it is computed here in numpy at trace time and enters XLA as a constant.
  """
  per_axis = []
  for n, f, s, (lo, hi) in zip(in_hw, window, stride, pads):
    out = (n + lo + hi - f) // s + 1
    starts = np.arange(out) * s - lo
    per_axis.append(np.minimum(starts + f, n) - np.maximum(starts, 0))
  return np.outer(*per_axis)


def _max_to_first(x: jax.Array, axis: int) -> jax.Array:
  """``max`` over ``axis`` whose gradient goes wholly to the first maximal cell.

  ``jnp.max`` splits the gradient evenly among tied cells (common after a
  ReLU); routing it to one cell matches ``reduce_window``'s max (the general
  path of ``max_pool``) and the usual definition of max pooling. A select
  of the argmax cell transposes to a select, so the backward pass fuses into
  elementwise work (faster on CPU than ``jnp.max``'s, and far faster than
  ``select_and_scatter``).
  """
  idx = jnp.expand_dims(jnp.argmax(x, axis=axis), axis)
  shape = [1] * x.ndim
  shape[axis] = x.shape[axis]
  is_first_max = jnp.arange(x.shape[axis]).reshape(shape) == idx
  return jnp.sum(jnp.where(is_first_max, x, jnp.zeros((), x.dtype)), axis=axis)


def max_pool(x: jax.Array, window: Window, stride: Window | None = None,
             padding: Padding = 'VALID') -> jax.Array:
  """Maximum over each window.

  Padded cells hold ``-inf`` (the integer minimum for integer inputs), so they
  never win. The whole gradient of a window flows to its maximal cell (the
  first one in row-major order on ties), zero to the others.

  Args:
    x: ``(N, H, W, C)`` floating or integer array.
    window: window size, int or ``(h, w)``.
    stride: step between windows, int or ``(h, w)``; defaults to ``window``.
    padding: any spelling from :mod:`cnn_jax.ops.shapes`.

  Returns:
    ``(N, H', W', C)`` with ``H' = conv_output_size(H, h, stride_h, pad_h)``.
  """
  return _max_pool(x, *_geometry(x, window, stride, padding, 'max_pool'), 'max_pool')


def _max_pool(x: jax.Array, window: IntPair, stride: IntPair, pads: tuple[IntPair, IntPair],
              name: str) -> jax.Array:
  """``max_pool`` on validated NHWC geometry."""
  if jnp.issubdtype(x.dtype, jnp.floating):
    init = np.array(-np.inf, x.dtype)
  elif jnp.issubdtype(x.dtype, jnp.integer):
    init = np.array(np.iinfo(x.dtype).min, x.dtype)
  else:
    raise ValueError(f'{name} expects a floating or integer input, got dtype {x.dtype}; '
                     'cast it first, e.g. x.astype(jnp.float32).')
  n, h, w, c = x.shape
  if window == stride and pads == ((0, 0), (0, 0)):
    # Non-overlapping tiles: a reshape + max is the same function, and its
    # gradient avoids select_and_scatter (~9x slower fwd+bwd on CPU). Trailing
    # rows/columns that no window covers (e.g. 31 -> 15) are cropped first.
    ho, wo = h // window[0], w // window[1]
    x = x[:, :ho * window[0], :wo * window[1]]
    tiles = x.reshape(n, ho, window[0], wo, window[1], c)
    tiles = jnp.moveaxis(tiles, 2, 3).reshape(n, ho, wo, -1, c)
    return _max_to_first(tiles, axis=3)
  return _reduce(x, init, lax.max, window, stride, pads)


def avg_pool(x: jax.Array, window: Window, stride: Window | None = None,
             padding: Padding = 'VALID', count_include_pad: bool = False) -> jax.Array:
  """Mean over each window.

  With the default ``count_include_pad=False`` each window's sum is divided by
  the number of real (non-padding) cells under it, the Keras/TensorFlow
  convention, so border outputs are not darkened by padding zeros. With
  ``True`` it is divided by the full window area ``h * w``, as PyTorch's
  default does. Both agree for ``'VALID'``.

  Args:
    x: ``(N, H, W, C)`` floating array.
    window: window size, int or ``(h, w)``.
    stride: step between windows, int or ``(h, w)``; defaults to ``window``.
    padding: any spelling from :mod:`cnn_jax.ops.shapes`; padding counts as 0.
    count_include_pad: whether padding cells count in the divisor.

  Returns:
    ``(N, H', W', C)`` array of the same dtype as ``x``.
  """
  return _avg_pool(x, *_geometry(x, window, stride, padding, 'avg_pool'), count_include_pad,
                   'avg_pool')


def _avg_pool(x: jax.Array, window: IntPair, stride: IntPair, pads: tuple[IntPair, IntPair],
              count_include_pad: bool, name: str) -> jax.Array:
  """``avg_pool`` on validated NHWC geometry."""
  _check_floating(x, name)
  acc = _accumulation_dtype(x.dtype)
  sums = _reduce(x.astype(acc), np.array(0, acc), lax.add, window, stride, pads)
  if count_include_pad:
    counts = np.full((1, 1), window[0] * window[1])
  else:
    counts = _real_cell_counts(x.shape[1:3], window, stride, pads)
  return (sums / jnp.asarray(counts[None, :, :, None], acc)).astype(x.dtype)


def max_pool1d(x: jax.Array, window: int, stride: int | None = None,
               padding: Padding = 'VALID') -> jax.Array:
  """Maximum over each window along the length of ``(N, L, C)`` sequences.

  ``max_pool`` on ``x`` seen as a ``1 x L`` image: padded steps never win, and
  a window's gradient goes to its first maximal step.

  Args:
    x: ``(N, L, C)`` floating or integer array.
    window: window length (int).
    stride: step between windows (int); defaults to ``window``.
    padding: 'VALID', 'SAME', int p or (lo, hi).

  Returns:
    ``(N, L', C)`` with ``L' = conv_output_size(L, window, stride, padding)``.
  """
  return _max_pool(x[:, None], *_geometry_1d(x, window, stride, padding, 'max_pool1d'),
                   'max_pool1d')[:, 0]


def avg_pool1d(x: jax.Array, window: int, stride: int | None = None,
               padding: Padding = 'VALID', count_include_pad: bool = False) -> jax.Array:
  """Mean over each window along the length of ``(N, L, C)`` sequences.

  ``avg_pool`` on ``x`` seen as a ``1 x L`` image, with the same
  ``count_include_pad`` convention (default: divide by the real steps only).

  Args:
    x: ``(N, L, C)`` floating array.
    window: window length (int).
    stride: step between windows (int); defaults to ``window``.
    padding: 'VALID', 'SAME', int p or (lo, hi); padding counts as 0.
    count_include_pad: whether padding steps count in the divisor.

  Returns:
    ``(N, L', C)`` array of the same dtype as ``x``.
  """
  return _avg_pool(x[:, None], *_geometry_1d(x, window, stride, padding, 'avg_pool1d'),
                   count_include_pad, 'avg_pool1d')[:, 0]


def _check_time_mask(x: jax.Array, mask: jax.Array | None, name: str) -> jax.Array | None:
  """Validates ``(N, L, C)`` floating ``x`` and its ``(N, L)`` boolean mask (or None)."""
  check_nwc(x, name)
  _check_floating(x, name)
  if mask is None:
    return None
  mask = jnp.asarray(mask)
  if mask.dtype != jnp.bool_:
    raise ValueError(f'{name}: mask must be boolean (True = real step), got dtype {mask.dtype}; '
                     'pass e.g. `tokens != pad_id`.')
  if mask.shape != x.shape[:2]:
    raise ValueError(f'{name}: mask has shape {tuple(mask.shape)} but x {tuple(x.shape)} needs '
                     f'(N, L) = {tuple(x.shape[:2])}.')
  return mask


def masked_max_over_time(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Max over the real steps of padded sequences: ``(N, L, C), (N, L) -> (N, C)``.

  The text CNN's max-over-time pooling (Collobert et al. 2011, Kim 2014) on a
  batch of sequences padded to one length: steps with ``mask == False`` never
  win, whatever they hold (zeros, garbage, NaN), so a sentence's result does
  not depend on how far it was padded. A row with no real step gives 0 (not
  ``-inf``) and a zero gradient. The gradient goes wholly to the first maximal
  real step of each channel, as ``max_pool``'s.

  Args:
    x: ``(N, L, C)`` floating array.
    mask: ``(N, L)`` bool, True at real steps; None means all steps are real.

  Returns:
    ``(N, C)`` array of the same dtype as ``x``.
  """
  mask = _check_time_mask(x, mask, 'masked_max_over_time')
  if mask is None:
    return _max_to_first(x, axis=1)
  y = _max_to_first(jnp.where(mask[..., None], x, jnp.array(-jnp.inf, x.dtype)), axis=1)
  return jnp.where(jnp.any(mask, axis=1)[:, None], y, jnp.zeros((), x.dtype))


def masked_mean_over_time(x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """Mean over the real steps of padded sequences: ``(N, L, C), (N, L) -> (N, C)``.

  Steps with ``mask == False`` neither add to the sum nor count in the divisor
  (NaN or garbage there does not leak); a row with no real step gives 0, not
  0/0 = NaN. Low-precision inputs are summed in float32.

  Args:
    x: ``(N, L, C)`` floating array.
    mask: ``(N, L)`` bool, True at real steps; None means all steps are real.

  Returns:
    ``(N, C)`` array of the same dtype as ``x``.
  """
  mask = _check_time_mask(x, mask, 'masked_mean_over_time')
  acc = _accumulation_dtype(x.dtype)
  if mask is None:
    return jnp.mean(x.astype(acc), axis=1).astype(x.dtype)
  total = jnp.sum(jnp.where(mask[..., None], x.astype(acc), 0), axis=1)
  count = jnp.sum(mask, axis=1, dtype=acc)[:, None]
  return (total / jnp.maximum(count, 1)).astype(x.dtype)



def _adaptive_bins(n: int, out: int) -> np.ndarray:
  """``(out, n)`` averaging matrix: row ``i`` is ``1/len`` over PyTorch's bin ``i``.

  Bin ``i`` spans ``[floor(i * n / out), ceil((i + 1) * n / out))``; when
  ``n % out != 0`` bins differ in size and may overlap (or repeat cells if
  ``out > n``).
  """
  i = np.arange(out)
  starts, ends = (i * n) // out, -((-(i + 1) * n) // out)
  cells = np.arange(n)
  member = (cells[None, :] >= starts[:, None]) & (cells[None, :] < ends[:, None])
  return member / (ends - starts)[:, None]


def adaptive_avg_pool(x: jax.Array, output_size: int | Sequence[int]) -> jax.Array:
  """Mean over ``output_size`` bins, PyTorch ``AdaptiveAvgPool2d`` semantics.

  Output cell ``(i, j)`` averages rows ``[floor(i * H / h), ceil((i + 1) * H / h))``
  and the matching columns, so any input size maps to a fixed output size
  (e.g. AlexNet's and VGG's classifiers at resolutions other than 224).
  Shapes are static: the bins are computed at trace time.

  Args:
    x: ``(N, H, W, C)`` floating array.
    output_size: ``(h, w)`` or an int for a square output; ``h`` may exceed
      ``H`` (cells are then repeated).

  Returns:
    ``(N, h, w, C)`` array of the same dtype as ``x``.
  """
  check_nhwc(x, 'adaptive_avg_pool')
  _check_floating(x, 'adaptive_avg_pool')
  out_hw = pair(output_size, 'output_size')
  in_hw = x.shape[1:3]
  if tuple(in_hw) == out_hw:  # e.g. AlexNet and VGG at 224x224.
    return x
  if all(n % o == 0 for n, o in zip(in_hw, out_hw)):
    # Equal, disjoint bins: a plain average pool (one reduce_window).
    window = tuple(n // o for n, o in zip(in_hw, out_hw))
    return avg_pool(x, window)
  # Uneven bins differ in size and may overlap, so no single window/stride
  # fits; the pool is separable and linear, so two constant matrices express it.
  acc = _accumulation_dtype(x.dtype)
  mh, mw = (jnp.asarray(_adaptive_bins(n, o), acc) for n, o in zip(in_hw, out_hw))
  y = jnp.einsum('ih,nhwc,jw->nijc', mh, x.astype(acc), mw,
                 precision=lax.Precision.HIGHEST)
  return y.astype(x.dtype)


def lp_pool(x: jax.Array, p: float, window: Window, stride: Window | None = None,
            padding: Padding = 'VALID') -> jax.Array:
  """Power-``p`` pooling: ``(sum over window of |x|^p)^(1/p)``.

  A sum, not a mean, as in PyTorch's ``LPPool2d``: ``p=1`` is the window sum of
  ``|x|``, ``p=2`` is L2 pooling, and large ``p`` approaches max pooling of
  ``|x|``. Padding cells count as 0 and so add nothing. The gradient is finite
  (zero) for windows that are all zero, where ``s^(1/p)`` itself has an
  infinite slope.

  Args:
    x: ``(N, H, W, C)`` floating array.
    p: finite exponent ``>= 1`` (below 1, ``|x|^p`` has an infinite slope at 0
      and the result is not a norm).
    window: window size, int or ``(h, w)``.
    stride: step between windows, int or ``(h, w)``; defaults to ``window``.
    padding: any spelling from :mod:`cnn_jax.ops.shapes`.

  Returns:
    ``(N, H', W', C)`` array of the same dtype as ``x``.
  """
  window, stride, pads = _geometry(x, window, stride, padding, 'lp_pool')
  _check_floating(x, 'lp_pool')
  p = float(p)
  if not 1 <= p < np.inf:
    raise ValueError(f'lp_pool needs a finite p >= 1, got p={p}; use max_pool for p=inf.')
  # An integral p keeps |x|**p on lax.integer_pow: exact, and cheaper than exp/log.
  p = int(p) if p.is_integer() else p
  acc = _accumulation_dtype(x.dtype)
  sums = _reduce(jnp.abs(x.astype(acc)) ** p, np.array(0, acc), lax.add, window, stride, pads)
  if p == 1:
    return sums.astype(x.dtype)
  # Safe-where: the derivative of s^(1/p) is infinite at s=0, and inf * 0 from
  # the inner |x|^p would be NaN; route s=0 through a harmless value instead.
  positive = sums > 0
  root = jnp.where(positive, sums, 1) ** (1 / p)
  return jnp.where(positive, root, 0).astype(x.dtype)


def global_avg_pool(x: jax.Array, keepdims: bool = False) -> jax.Array:
  """Mean over all spatial positions: ``(N, H, W, C) -> (N, C)``, or ``(N, 1, 1, C)``."""
  check_nhwc(x, 'global_avg_pool')
  _check_floating(x, 'global_avg_pool')
  return jnp.mean(x, axis=(1, 2), keepdims=keepdims)


def global_max_pool(x: jax.Array, keepdims: bool = False) -> jax.Array:
  """Maximum over all spatial positions: ``(N, H, W, C) -> (N, C)``, or ``(N, 1, 1, C)``.

  Its gradient goes to the first maximal position of each channel, as ``max_pool``'s.
  """
  check_nhwc(x, 'global_max_pool')
  n, h, w, c = x.shape
  y = _max_to_first(x.reshape(n, h * w, c), axis=1)
  return y.reshape(n, 1, 1, c) if keepdims else y
