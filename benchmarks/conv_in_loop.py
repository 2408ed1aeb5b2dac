"""A convolution's forward and backward inside a loop body against the same at top level.

XLA:CPU rewrites a convolution whose dimension numbers its libraries cannot
take (JAX's own gradients: the input gradient's kernel is (kh, kw, O, I), the
weight gradient's input is (C, H, W, N)) into transposes and a library call
only at the top level of a program (its ``ConvCanonicalization`` pass); inside
a ``while``/``scan`` body such a convolution is emitted as XLA's own loops
(jax-ml/jax#12868). ``ops.conv``'s lax path spells its gradients as canonical
convolutions to avoid that; this benchmark found the problem and now checks
the fix (``benchmarks/README.md`` has both runs). Per ``conv_impls.SHAPES``
entry and impl, this times
``jax.vjp`` of ``ops.conv2d`` (the input and weight gradients of a random
cotangent) jitted as is and inside a one-trip ``lax.scan``, side by side, and
reports ``ratio_<impl>_scan_over_plain``. The from-scratch impls are einsums
(dot products), which the CPU backend takes from a loop body as they are.

  python -m benchmarks.conv_in_loop                              # CPU: ResNet-20 shapes
  python -m benchmarks.conv_in_loop --batch 128 --impls lax,einsum,winograd
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from benchmarks import timer
from benchmarks.conv_impls import main_over_shapes, operands
from cnn_jax.ops import conv


def _fwd_bwd(impl: str, stride: int):
  f = functools.partial(conv.conv2d, stride=stride, padding='SAME', impl=impl)
  return lambda x, w, ct: jax.vjp(f, x, w)[1](ct)


def _in_scan(fn):
  """``fn(x, w, ct) -> (dx, dw)`` as the body of a one-trip ``lax.scan`` carrying ``(x, w)``."""
  def run(x, w, ct):
    return jax.lax.scan(lambda carry, _: (fn(*carry, ct), None), (x, w), length=1)[0]
  return run


def shape_rows(shape: tuple, dtype_name: str, batch: int, repeats: int,
               impls: Sequence[str]) -> list[dict]:
  """One ``SHAPES`` entry's row: each impl's forward+backward at top level and in a scan."""
  name, hw, c_in, c_out, k, stride = shape
  x, w, ct = operands(batch, hw, c_in, c_out, k, stride, jnp.dtype(dtype_name))
  fns = {}
  for impl in impls:
    for where, wrap in (('plain', lambda f: f), ('scan', _in_scan)):
      fns[f'{impl}@{where}'] = functools.partial(jax.jit(wrap(_fwd_bwd(impl, stride))), x, w, ct)
  t = timer.time_interleaved(fns, repeats=repeats, warmup=2)
  row = dict(shape=name, dtype=dtype_name, batch=batch, input=[batch, hw, hw, c_in],
             kernel=[k, k, c_in, c_out], stride=stride)
  for impl in impls:
    plain, scan = t[f'{impl}@plain']['median_s'], t[f'{impl}@scan']['median_s']
    row.update({f'{impl}_plain_ms': 1e3 * plain, f'{impl}_scan_ms': 1e3 * scan,
                f'ratio_{impl}_scan_over_plain': scan / plain})
  print(f'{name:20s} {dtype_name:9s} ' + '  '.join(
      f"{impl} {row[f'{impl}_plain_ms']:8.3f} -> {row[f'{impl}_scan_ms']:8.3f} ms in a scan "
      f"({row[f'ratio_{impl}_scan_over_plain']:5.2f}x)" for impl in impls), flush=True)
  return [row]


def main(argv=None) -> int:
  return main_over_shapes('conv_in_loop', shape_rows, argv, doc=__doc__, shapes='resnet20',
                          impls='lax,einsum', choices=conv.IMPLS)


if __name__ == '__main__':
  sys.exit(main())
