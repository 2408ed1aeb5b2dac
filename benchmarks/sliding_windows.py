"""Sliding-window classification: crop-by-crop loop vs batched crops vs one convolutional pass.

LeNet-5 (32x32 windows, stride 4) over square images of ``--sizes`` pixels:
``loop`` calls the jitted classifier once per window position (the naive
method), ``batched`` stacks every crop into one batch (one call, but each
overlapping pixel is still recomputed per window), ``conv`` runs the same
weights once with the dense layers as convolutions
(``fully_convolutional=True``). All three give the same logits (checked here
to 1e-4 before timing); ratios are per size against ``conv``. No time is
asserted anywhere.

  python -m benchmarks.sliding_windows [--sizes 64,96,128] [--batch 1] \
      [--out benchmarks/results/sliding_windows.json]
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from benchmarks import timer
from cnn_jax.models.lenet import LeNet5
from cnn_jax.ops import sliding

WINDOW, STRIDE = 32, 4


def run(args) -> dict:
  model = LeNet5(num_classes=10)
  variables = model.init(jax.random.key(0), np.zeros((1, WINDOW, WINDOW, 3), np.float32))
  classify = jax.jit(lambda crop: model.apply(variables, crop))
  conv = jax.jit(lambda x: model.clone(fully_convolutional=True).apply(variables, x))
  out = {'env': timer.environment(), 'batch': args.batch, 'window': WINDOW, 'stride': STRIDE,
         'sizes': {}}
  for size in (int(s) for s in args.sizes.split(',')):
    x = jax.random.normal(jax.random.key(size), (args.batch, size, size, 3))
    fns = {'loop': lambda x=x: sliding.crop_by_crop(classify, x, WINDOW, STRIDE),
           'batched': lambda x=x: classify(
               sliding.crops(x, WINDOW, STRIDE).reshape(-1, WINDOW, WINDOW, 3)),
           'conv': lambda x=x: conv(x)}
    ref = np.asarray(fns['conv']())
    np.testing.assert_allclose(np.asarray(fns['loop']()), ref, atol=1e-4)
    np.testing.assert_allclose(np.asarray(fns['batched']()).reshape(ref.shape), ref, atol=1e-4)
    times = timer.time_interleaved(fns, args.repeats)
    windows = int(np.prod(ref.shape[1:3]))
    row = {'windows': windows, **times}
    for k in ('loop', 'batched'):
      row[f'{k}_over_conv'] = times[k]['median_s'] / times['conv']['median_s']
    out['sizes'][str(size)] = row
    print(f"{size:4d} px, {windows:4d} windows: loop {times['loop']['median_s'] * 1e3:8.2f} ms, "
          f"batched {times['batched']['median_s'] * 1e3:7.2f} ms, conv "
          f"{times['conv']['median_s'] * 1e3:6.2f} ms  (loop/conv "
          f"{row['loop_over_conv']:.0f}x, batched/conv {row['batched_over_conv']:.1f}x)")
  return out


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--sizes', default='64,96,128')
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--out', default='benchmarks/results/sliding_windows.json')
  return timer.run_and_write(run, p.parse_args(argv))


if __name__ == '__main__':
  sys.exit(main())
