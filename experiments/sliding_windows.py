r"""Sliding windows, crop by crop and convolutionally (OverFeat), on a trained LeNet-5.

  python -m cnn_jax.main --config=configs/sliding_windows.py --workdir=workdirs/sliding_windows
  python -m experiments.sliding_windows report workdirs/sliding_windows [--pictures 3]

``report`` tiles held-out 32x32 test images into 3x3 mosaics (96x96) and
computes the logits of every 32x32 window at stride 4 (17 x 17 = 289 per
mosaic) twice: the naive loop, one classifier call per crop
(:func:`cnn_jax.ops.sliding.crop_by_crop`), and one pass of the same weights
with the dense layers applied as convolutions (``fully_convolutional=True``:
fc1 a 5x5 convolution, fc2/fc3 1x1). It writes ``results.json``/``results.md``
(the largest difference of the two, the accuracy of the windows that sit
exactly on a tile) and ``sliding_windows.png`` (mosaics; the class of every
window at its centre, faded by its softmax confidence). The speed of the two is
``benchmarks/sliding_windows.py``'s.
"""

from __future__ import annotations

import json
import pathlib
import sys

import jax
import matplotlib
import numpy as np
from scipy import special

from cnn_jax.data import augment
from cnn_jax.ops import sliding
from cnn_jax.train.restore import load_run
from experiments.cli import report_main

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

WINDOW, STRIDE, GRID = 32, 4, 3


def mosaics(images: np.ndarray, labels: np.ndarray, grid: int = GRID):
  """Tiles (N, 32, 32, C) images into (N // grid**2, 32 grid, 32 grid, C) and their labels."""
  m = len(images) // grid ** 2
  tiles = images[:m * grid ** 2].reshape(m, grid, grid, *images.shape[1:])
  out = tiles.transpose(0, 1, 3, 2, 4, 5).reshape(m, grid * images.shape[1],
                                                  grid * images.shape[2], images.shape[3])
  return out, labels[:m * grid ** 2].reshape(m, grid, grid)


def window_logits(run, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """``(crop_by_crop, convolutional)`` logits (N, H', W', K) of uint8 images."""
  model = run.model
  if not hasattr(model, 'fully_convolutional'):
    raise ValueError(f'model {run.config.model.name!r} has no fully_convolutional option; '
                     'train lenet5 (configs/sliding_windows.py).')
  c = run.config
  x = augment.normalize(images, tuple(c.data.mean), tuple(c.data.std))
  classify = jax.jit(lambda crop: model.apply(run.variables, crop))
  loop = sliding.crop_by_crop(classify, x, WINDOW, STRIDE)
  dense_as_conv = model.clone(fully_convolutional=True)
  conv = jax.jit(lambda v, x: dense_as_conv.apply(v, x))(run.variables, x)
  return np.asarray(loop), np.asarray(conv)


def report(workdir: str | pathlib.Path, which: str = 'best', pictures: int = 3) -> dict:
  workdir = pathlib.Path(workdir)
  run = load_run(workdir, which)
  images, labels = mosaics(run.eval.images, run.eval.labels)
  loop, conv = window_logits(run, images)
  step = WINDOW // STRIDE  # windows from one tile to the next
  on_tiles = conv[:, ::step, ::step].argmax(-1)
  results = {'mosaics': len(images), 'mosaic_px': int(images.shape[1]),
             'windows_per_mosaic': int(np.prod(conv.shape[1:3])),
             'window': WINDOW, 'stride': STRIDE,
             'max_abs_diff': float(np.abs(loop - conv).max()),
             'max_abs_logit': float(np.abs(loop).max()),
             'tile_window_accuracy': float((on_tiles == labels).mean()),
             'params': run.num_params, 'steps': int(run.config.num_steps)}
  draw(images[:pictures], conv[:pictures], run.eval.class_names, workdir / 'sliding_windows.png')
  (workdir / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
  (workdir / 'results.md').write_text(results_table(results) + '\n')
  return results


def draw(images: np.ndarray, logits: np.ndarray, class_names, path: pathlib.Path) -> None:
  """Each mosaic beside its window class map (a square per window centre)."""
  p = special.softmax(logits, axis=-1)
  colours = np.array(plt.cm.tab10.colors, np.float32)
  n, size = len(images), images.shape[1]
  fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.4), squeeze=False)
  lo, hi = WINDOW / 2 - STRIDE / 2, WINDOW / 2 + STRIDE * (logits.shape[1] - 0.5)
  for k in range(n):
    axes[0, k].imshow(images[k])
    rgb = colours[p[k].argmax(-1) % 10] * p[k].max(-1, keepdims=True) + \
        (1 - p[k].max(-1, keepdims=True))
    axes[1, k].imshow(rgb, extent=(lo, hi, hi, lo), interpolation='nearest')
    axes[1, k].set_xlim(0, size)
    axes[1, k].set_ylim(size, 0)
    for ax in axes[:, k]:
      ax.set_xticks([])
      ax.set_yticks([])
  handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i % 10]) for i in range(len(class_names))]
  fig.legend(handles, class_names, loc='lower center', ncol=len(class_names), fontsize=8)
  fig.suptitle(f'class of every {WINDOW}x{WINDOW} window (stride {STRIDE}), '
               'faded by confidence', fontsize=9)
  fig.tight_layout(rect=(0, 0.05, 1, 0.95))
  fig.savefig(path, dpi=110)
  plt.close(fig)


def results_table(r: dict) -> str:
  return '\n'.join([
      '| windows / mosaic | max abs difference (loop vs conv) | largest logit | '
      'accuracy of tile-aligned windows |',
      '|---|---|---|---|',
      f"| {r['windows_per_mosaic']} ({r['mosaic_px']} px, {r['window']} px at stride "
      f"{r['stride']}) | {r['max_abs_diff']:.2e} | {r['max_abs_logit']:.1f} | "
      f"{100 * r['tile_window_accuracy']:.1f}% |",
      f"\n{r['mosaics']} mosaics of held-out images; {r['params']:,} params, "
      f"{r['steps']} steps."])


if __name__ == '__main__':
  sys.exit(report_main(__doc__, lambda a: results_table(report(a.workdir, a.which, a.pictures))))
