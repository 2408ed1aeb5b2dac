r"""FCN-32s vs 16s vs 8s: the table and overlays of trained runs (training is ``cnn_jax.main``'s).

  for v in 32s 16s 8s; do
    python -m cnn_jax.main --config=configs/segment.py:variant=$v --workdir=workdirs/segment/$v
  done
  python -m experiments.segment report workdirs/segment [--which best] [--pictures 6]

``report`` restores every run under the folder (each subfolder with a
``config.json``; the folder itself if it is one run), evaluates it through the
segmentation task's evaluator (pixel accuracy, per-class and mean IoU with the
ignore label excluded, accuracy within 2 px of an object edge) and writes
``results.json``, ``results.md`` and ``overlays.png`` (rows: image, ground
truth, then one prediction per run; columns: test scenes).
"""

from __future__ import annotations

import json
import pathlib
import sys

import matplotlib
import numpy as np
from PIL import Image

from cnn_jax.models import explain
from cnn_jax.models.fcn import VARIANTS
from cnn_jax.train.restore import load_run
from experiments.cli import report_main

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def run_dirs(folder: pathlib.Path) -> list[pathlib.Path]:
  """The runs to compare: ``folder`` itself, or its subfolders that hold a run."""
  if (folder / 'config.json').exists():
    return [folder]
  # Coarse to fine (32s, 16s, 8s) when named by variant, else by name.
  order = lambda p: (VARIANTS.index(p.name) if p.name in VARIANTS else len(VARIANTS), p.name)
  runs = sorted((p for p in folder.iterdir() if (p / 'config.json').exists()), key=order)
  if not runs:
    raise FileNotFoundError(f'no training run in {folder} or its subfolders; train with '
                            'python -m cnn_jax.main --config=configs/segment.py ...')
  return runs


def overlay(masks: np.ndarray, num_labels: int) -> np.ndarray:
  """Label maps -> RGB in [0, 1] (background black, ignore white)."""
  colours = np.array([(0, 0, 0), *plt.cm.tab10.colors[:num_labels - 1]], np.float32)
  out = colours[np.clip(masks, 0, num_labels - 1)]
  out[masks >= num_labels] = 1.0
  return out


def report(folder: str | pathlib.Path, which: str = 'best', pictures: int = 6) -> dict:
  """Evaluates every run under ``folder``; writes the table and overlays there."""
  folder = pathlib.Path(folder)
  results, preds, first = {}, {}, None
  for d in run_dirs(folder):
    run = load_run(d, which)
    first = first or run
    metrics, _ = run.evaluate()
    name = run.config.model.name.removeprefix('fcn')
    results[name] = {'pixel_accuracy': metrics['pixel_accuracy'],
                     'mean_iou': metrics['mean_iou'], 'edge_accuracy': metrics['edge_accuracy'],
                     'iou': [metrics[f'iou_{n}'] for n in run.task.label_names],
                     'steps': int(run.config.num_steps), 'params': run.num_params}
    preds[name] = run.predict(run.eval.images[:pictures]).argmax(-1)
  k = min(pictures, len(first.eval))
  labels = first.task.label_names
  truth = first.eval.extras['segmentation'][:k]
  panels = [first.eval.images[:k].astype(np.float32) / 255.0, overlay(truth, len(labels))]
  panels += [overlay(p[:k], len(labels)) for p in preds.values()]
  grid = explain.tile(np.concatenate(panels), cols=k, pad=2)
  Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8)).resize(
      (grid.shape[1] * 3, grid.shape[0] * 3), Image.Resampling.NEAREST).save(
          folder / 'overlays.png')
  summary = {'variants': results, 'checkpoint': which, 'test_images': len(first.eval),
             'labels': list(labels), 'void_border': bool(first.task.t.void_border)}
  (folder / 'results.json').write_text(json.dumps(summary, indent=2) + '\n')
  (folder / 'results.md').write_text(results_table(summary) + '\n')
  return summary


def results_table(s: dict) -> str:
  lines = ['| FCN | pixel acc. | mean IoU | edge-band acc. (2 px) | ' +
           ' | '.join(f'IoU {n}' for n in s['labels']) + ' | steps |',
           '|---' * (5 + len(s['labels'])) + '|']
  for v, r in s['variants'].items():
    lines.append(f"| {v} | {100 * r['pixel_accuracy']:.1f}% | {r['mean_iou']:.3f} | "
                 f"{100 * r['edge_accuracy']:.1f}% | " +
                 ' | '.join(f'{x:.3f}' for x in r['iou']) + f" | {r['steps']} |")
  return '\n'.join(lines)



if __name__ == '__main__':
  sys.exit(report_main(__doc__, lambda a: results_table(report(a.workdir, a.which, a.pictures))))
