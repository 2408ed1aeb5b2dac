"""Output-size and padding arithmetic shared by convolution and pooling.

Everything here is plain Python on static integers (shapes are static under
``jit``), so it runs at trace time and raises clear ``ValueError``s before XLA
sees a bad shape.

Padding spellings accepted everywhere in ``cnn_jax.ops``:

* ``'VALID'``: no padding.
* ``'SAME'``: TensorFlow-style, output size ``ceil(n / stride)``; the extra
  pixel of an odd total goes to the end (bottom/right).
* ``p`` (int): ``p`` pixels on every side (the course's ``p``).
* ``(lo, hi)``: the same pair for height and width.
* ``((top, bottom), (left, right))``: fully explicit.

The 1-D ops (sequences ``(N, L, C)``) take the same spellings less the last:
``'VALID'``, ``'SAME'``, ``p`` or ``(lo, hi)`` along the length
(:func:`normalize_padding_1d`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Union

import jax.numpy as jnp

IntPair = tuple[int, int]
Padding = Union[str, int, IntPair, Sequence[IntPair]]


def pair(value: int | Sequence[int], name: str, minimum: int = 1) -> IntPair:
  """Returns ``(v, v)`` for an int, or the two ints of a length-2 sequence.

  Raises:
    ValueError: if the value is not one or two ints, or any is below ``minimum``.
  """
  if isinstance(value, int):
    out = (value, value)
  else:
    out = tuple(int(v) for v in value)
    if len(out) != 2:
      raise ValueError(f'{name} must be an int or a pair of ints, got {value!r}.')
  if min(out) < minimum:
    raise ValueError(f'{name} must be at least {minimum}, got {value!r}.')
  return out  # type: ignore[return-value]


def single(value: int, name: str, minimum: int = 1) -> int:
  """The 1-D counterpart of :func:`pair`: one int (or a length-1 sequence) ``>= minimum``."""
  if not isinstance(value, int):
    items = tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(items) != 1 or not isinstance(items[0], int):
      raise ValueError(f'{name} must be an int for a 1-D op, got {value!r}.')
    value = items[0]
  if value < minimum:
    raise ValueError(f'{name} must be at least {minimum}, got {value!r}.')
  return value


# layout -> (shape spelled out, {wrong rank: how to fix it}).
_LAYOUTS = {
    'NHWC': ('(N, H, W, C)', {
        2: 'add batch and channel axes with x[None, ..., None]',
        3: 'add a batch axis with x[None]',
    }),
    'NWC': ('(N, L, C)', {
        1: 'add batch and channel axes with x[None, :, None]',
        2: 'add a batch axis with x[None] (or a channel axis with x[..., None])',
        4: 'images (N, H, W, C) go to the 2-D ops',
    }),
}


def _check_layout(x, name: str, layout: str) -> None:
  shape, hints = _LAYOUTS[layout]
  if x.ndim != len(layout):
    hint = hints.get(x.ndim, f'reshape it to {shape}')
    raise ValueError(f'{name} expects {layout} input of rank {len(layout)}, got shape '
                     f'{tuple(x.shape)}; {hint}.')


def check_nhwc(x, name: str) -> None:
  """Raises a one-line ``ValueError`` unless ``x`` is a rank-4 NHWC array."""
  _check_layout(x, name, 'NHWC')


def check_nwc(x, name: str) -> None:
  """Raises a one-line ``ValueError`` unless ``x`` is a rank-3 ``(N, L, C)`` sequence batch."""
  _check_layout(x, name, 'NWC')


def check_mask(where, shape: Sequence[int]):
  """Validates a boolean ``where`` mask against ``shape`` and broadcasts it.

  Returns None for ``where=None``; raises a one-line ``ValueError`` for a
  non-boolean mask or one that does not broadcast to ``shape``.
  """
  if where is None:
    return None
  where = jnp.asarray(where)
  if where.dtype != jnp.bool_:
    raise ValueError(f'where must be a boolean mask, got dtype {where.dtype}; '
                     'pass e.g. `labels != ignore_index`.')
  try:
    ok = tuple(jnp.broadcast_shapes(where.shape, tuple(shape))) == tuple(shape)
  except ValueError:
    ok = False
  if not ok:
    raise ValueError(f'where has shape {where.shape} but must match (or broadcast to) the '
                     f'batch shape {tuple(shape)}.')
  return jnp.broadcast_to(where, tuple(shape))


def effective_kernel_size(f: int, dilation: int = 1) -> int:
  """Spatial extent of a dilated kernel: ``dilation * (f - 1) + 1``."""
  return dilation * (f - 1) + 1


def same_padding(n: int, f: int, stride: int = 1, dilation: int = 1) -> IntPair:
  """TF-style 'SAME' padding ``(lo, hi)`` for one spatial axis.

  The output size is ``ceil(n / stride)``; the total padding is the smallest
  that makes the last window fit, and an odd total puts the extra pixel at the
  end, like TensorFlow and ``lax.padtype_to_pads``.
  """
  out = -(-n // stride)
  total = max((out - 1) * stride + effective_kernel_size(f, dilation) - n, 0)
  return total // 2, total - total // 2


def normalize_padding(padding: Padding, in_hw: Sequence[int],
                      kernel_hw: Sequence[int], stride: Sequence[int] = (1, 1),
                      dilation: Sequence[int] = (1, 1)) -> tuple[IntPair, IntPair]:
  """Turns any accepted padding spelling into ``((top, bottom), (left, right))``."""
  if isinstance(padding, str):
    mode = padding.upper()
    if mode == 'VALID':
      return (0, 0), (0, 0)
    if mode == 'SAME':
      return tuple(same_padding(n, f, s, d) for n, f, s, d in  # type: ignore[return-value]
                   zip(in_hw, kernel_hw, stride, dilation))
    raise ValueError(f"padding must be 'SAME', 'VALID', an int or pairs, got {padding!r}.")
  if isinstance(padding, int):
    pads = ((padding, padding), (padding, padding))
  else:
    items = list(padding)
    if len(items) == 2 and all(isinstance(p, int) for p in items):
      pads = (tuple(items), tuple(items))
    elif len(items) == 2 and all(len(p) == 2 for p in items):
      pads = tuple(tuple(int(v) for v in p) for p in items)
    else:
      raise ValueError(
          f'padding must be an int, (lo, hi) or ((top, bottom), (left, right)), got {padding!r}.')
  if min(v for p in pads for v in p) < 0:
    raise ValueError(f'padding must be non-negative, got {padding!r}.')
  return pads  # type: ignore[return-value]


def normalize_padding_1d(padding: Padding, n: int, f: int, stride: int = 1,
                         dilation: int = 1) -> IntPair:
  """Any 1-D padding spelling (``'VALID'``, ``'SAME'``, ``p``, ``(lo, hi)``) as ``(lo, hi)``.

  ``'SAME'`` follows :func:`same_padding` (output ``ceil(n / stride)``).
  """
  if not isinstance(padding, (str, int)):
    items = tuple(padding) if isinstance(padding, (tuple, list)) else ()
    if len(items) != 2 or not all(isinstance(p, int) for p in items):
      raise ValueError(f"1-D padding must be 'SAME', 'VALID', an int or (lo, hi), got "
                       f'{padding!r}.')
  return normalize_padding(padding, (1, n), (1, f), (1, stride), (1, dilation))[1]


def conv_output_size(n: int, f: int, stride: int = 1, padding: Padding = 0,
                     dilation: int = 1) -> int:
  """Output length of a convolution or pooling window along one axis.

  ``floor((n + p_lo + p_hi - f_eff) / s) + 1`` with ``f_eff = d (f - 1) + 1``;
  with a symmetric int ``p`` this is the course's ``floor((n + 2p - f)/s) + 1``.
  ``'SAME'`` gives ``ceil(n / s)``.

  Raises:
    ValueError: if a size, stride or dilation is not positive, or the window
      does not fit, i.e. the output would be empty.
  """
  for name, value in (('input size n', n), ('kernel size f', f), ('stride', stride),
                      ('dilation', dilation)):
    if value < 1:
      raise ValueError(f'conv_output_size: {name} must be at least 1, got {value}.')
  if isinstance(padding, str) and padding.upper() == 'SAME':
    return -(-n // stride)
  if isinstance(padding, str):
    lo, hi = normalize_padding(padding, (n, n), (f, f))[0]
  elif isinstance(padding, int):
    lo = hi = padding
  else:
    lo, hi = padding  # type: ignore[misc]
  f_eff = effective_kernel_size(f, dilation)
  out = math.floor((n + lo + hi - f_eff) / stride) + 1
  if out <= 0:
    raise ValueError(
        f'window of size {f} (dilation {dilation}, effective {f_eff}) does not fit input '
        f'size {n} with padding ({lo}, {hi}) and stride {stride}: output size would be {out}; '
        'use a smaller kernel or more padding.')
  return out


def conv_output_hw(in_hw: Sequence[int], kernel_hw: Sequence[int],
                   stride: Sequence[int], pads: tuple[IntPair, IntPair],
                   dilation: Sequence[int] = (1, 1)) -> IntPair:
  """``conv_output_size`` for both spatial axes given explicit pads."""
  return tuple(conv_output_size(n, f, s, p, d) for n, f, s, p, d in  # type: ignore[return-value]
               zip(in_hw, kernel_hw, stride, pads, dilation))
