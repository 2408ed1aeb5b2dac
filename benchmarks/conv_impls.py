"""lax vs the from-scratch convolutions (einsums, Winograd), forward and forward+backward.

Times every implementation of ``cnn_jax.ops.conv2d`` side by side in one run on
the 3x3 and 1x1 convolutions of ResNet-20 (CIFAR) and ResNet-50 (ImageNet),
and reports the time ratio of each from-scratch implementation to lax
(``einsum``: stacked patches, one contraction; ``einsum_shifted``: one
contraction per kernel tap, summed; ``winograd``: F(2x2, 3x3) on the 3x3
stride-1 shapes, the ``einsum`` program on the others, flagged by
``winograd_applies``) and achieved TFLOP/s (analytic FLOPs of the direct
convolution: 2 x multiplies forward, 3 x that for forward+backward; for
Winograd that is an "effective" rate, as it does 2.25x fewer multiplies).
``--impls`` may add ``auto`` (per shape the impl that measured fastest,
``cnn_jax.ops.conv_auto``); its first call, ``auto_compile_s``, includes that
measurement unless the shape is already in the auto cache.

  python -m benchmarks.conv_impls                         # CPU-sized defaults
  python -m benchmarks.conv_impls --batch 128 --repeats 20 --dtypes float32,bfloat16  # GPU
  python -m benchmarks.conv_impls --impls lax,einsum,einsum_shifted,winograd,auto
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from benchmarks import timer
from cnn_jax.ops import conv, cost

# (name, H=W, C_in, C_out, kernel, stride)
SHAPES = {
    'resnet20': [
        ('r20.s1.3x3', 32, 16, 16, 3, 1),
        ('r20.s2.3x3', 16, 32, 32, 3, 1),
        ('r20.s3.3x3', 8, 64, 64, 3, 1),
        ('r20.down.3x3/2', 32, 16, 32, 3, 2),
    ],
    'resnet50': [
        ('r50.c2.3x3', 56, 64, 64, 3, 1),
        ('r50.c3.3x3', 28, 128, 128, 3, 1),
        ('r50.c4.3x3', 14, 256, 256, 3, 1),
        ('r50.c5.3x3', 7, 512, 512, 3, 1),
        ('r50.c2.1x1.expand', 56, 64, 256, 1, 1),
        ('r50.c4.1x1.reduce', 14, 1024, 256, 1, 1),
    ],
}


# lax, and the from-scratch ones: 'einsum' (patches, one contraction),
# 'einsum_shifted' (one contraction per kernel tap, summed; no patch tensor) and
# 'winograd' (F(2x2, 3x3) where it applies, else the 'einsum' program); the
# default. ``--impls`` may also name 'auto' (conv.IMPL_CHOICES).
CANDIDATES = conv.IMPLS


def operands(batch: int, hw: int, c_in: int, c_out: int, k: int, stride: int, dtype):
  """``(x, w, ct)``: NHWC input, HWIO kernel and a cotangent of the 'SAME' output."""
  kx, kw, kc = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (batch, hw, hw, c_in), dtype)
  w = jax.random.normal(kw, (k, k, c_in, c_out), dtype) * (k * k * c_in) ** -0.5
  # A random cotangent: an all-ones one (grad of a sum) lets XLA fold the backward pass.
  ct = jax.random.normal(kc, (batch, -(-hw // stride), -(-hw // stride), c_out), dtype)
  return x, w, ct


def _programs(batch: int, hw: int, c_in: int, c_out: int, k: int, stride: int, dtype,
              impls: Sequence[str]):
  x, w, ct = operands(batch, hw, c_in, c_out, k, stride, dtype)
  progs = {}
  for impl in impls:
    f = functools.partial(conv.conv2d, stride=stride, padding='SAME', impl=impl)
    fwd = jax.jit(f)
    fwd_bwd = jax.jit(lambda x, w, ct, f=f: jax.vjp(f, x, w)[1](ct))
    progs[('fwd', impl)] = functools.partial(fwd, x, w)
    progs[('fwd+bwd', impl)] = functools.partial(fwd_bwd, x, w, ct)
  return progs


def shape_rows(shape: tuple, dtype_name: str, batch: int, repeats: int,
               impls: Sequence[str] = CANDIDATES) -> list[dict]:
  """The 'fwd' and 'fwd+bwd' rows of one ``SHAPES`` entry: every impl timed side by side.

  'lax' is always timed, first: every other impl's ratio divides by it.
  """
  impls = ('lax',) + tuple(i for i in impls if i != 'lax')
  name, hw, c_in, c_out, k, stride = shape
  c = cost.conv_cost((hw, hw, c_in), c_out, k, stride=stride, padding='SAME', bias=False)
  fwd_flops = 2 * c.multiplies * batch
  progs = _programs(batch, hw, c_in, c_out, k, stride, jnp.dtype(dtype_name), impls)
  rows = []
  for mode, flops in (('fwd', fwd_flops), ('fwd+bwd', 3 * fwd_flops)):
    t = timer.time_interleaved({impl: progs[(mode, impl)] for impl in impls},
                               repeats=repeats, warmup=2)
    row = dict(shape=name, dtype=dtype_name, mode=mode, batch=batch,
               input=[batch, hw, hw, c_in], kernel=[k, k, c_in, c_out], stride=stride,
               winograd_applies=conv.winograd_applies((k, k), stride),
               **{f'ratio_{impl}_over_lax': t[impl]['median_s'] / t['lax']['median_s']
                  for impl in impls[1:]})
    for impl in impls:
      row[f'{impl}_ms'] = 1e3 * t[impl]['median_s']
      row[f'{impl}_tflops'] = flops / t[impl]['median_s'] / 1e12
      row[f'{impl}_compile_s'] = t[impl]['compile_s']
    rows.append(row)
    wino = 'F(2,3)' if row['winograd_applies'] else 'einsum'
    print(f"{name:20s} {dtype_name:9s} {mode:8s} [winograd={wino}] " + '  '.join(
        f"{impl} {row[f'{impl}_ms']:8.3f} ms ({row[f'{impl}_tflops']:.3f} TF/s)"
        for impl in impls) + '  ' + '  '.join(
        f"{impl}/lax {row[f'ratio_{impl}_over_lax']:5.2f}" for impl in impls[1:]),
        flush=True)
  return rows


def main_over_shapes(name: str, rows_fn, argv, *, doc: str, shapes: str, impls: str,
                     choices: Sequence[str], note: str = '') -> int:
  """The CLI of a per-shape conv benchmark: ``rows_fn(shape, dtype_name, batch, repeats,
  impls) -> rows`` over ``--dtypes`` x ``--shapes`` (``SHAPES`` groups), one JSON."""
  p = argparse.ArgumentParser(description=doc.splitlines()[0])
  on_cpu = timer.add_common_args(p, name, cpu_repeats=5)
  p.add_argument('--batch', type=int, default=8 if on_cpu else 128)
  p.add_argument('--shapes', default=shapes, help='comma list of ' + ','.join(SHAPES))
  p.add_argument('--impls', default=impls, help='comma list of ' + ','.join(choices) + note)
  args = p.parse_args(argv)
  timer.choose(p, args.shapes, SHAPES, 'shape group(s)')
  timer.choose(p, args.impls, choices, 'impl(s)')

  def run(args) -> dict:
    rows = [row for dtype_name in args.dtypes.split(',')
            for group in args.shapes.split(',') for shape in SHAPES[group]
            for row in rows_fn(shape, dtype_name, args.batch, args.repeats,
                               args.impls.split(','))]
    return {'benchmark': name, 'environment': timer.environment(), 'rows': rows}

  return timer.run_and_write(run, args)


def main(argv=None) -> int:
  return main_over_shapes('conv_impls', shape_rows, argv, doc=__doc__,
                          shapes='resnet20,resnet50', impls=','.join(CANDIDATES),
                          choices=conv.IMPL_CHOICES, note=" ('lax' is always timed)")


if __name__ == '__main__':
  sys.exit(main())
