r"""Pictures and a table of a trained localisation or landmark run (training is ``cnn_jax.main``'s).

  python -m cnn_jax.main --config=configs/localise.py --workdir=workdirs/localise
  python -m experiments.localise report workdirs/localise [--which best] [--pictures 8]
  python -m cnn_jax.main --config=configs/landmarks.py --workdir=workdirs/landmarks
  python -m experiments.localise report workdirs/landmarks

Restores the run's best checkpoint (``--which latest`` for the last),
evaluates it on the held-out split through the task's own evaluator and
writes ``results.json``, ``results.md`` and a picture into the workdir:

* task ``localisation``: ``localisation.png``, the predicted box (solid, with
  class and ``p_c``) over the true one (dashed white), or "no object";
* task ``landmarks``: ``landmarks.png``, predicted points (crosses, one
  colour per landmark) over the true ones (circles).
"""

from __future__ import annotations

import json
import pathlib
import sys

import jax.numpy as jnp
import matplotlib
import numpy as np

from cnn_jax.ops import localisation as loc
from cnn_jax.train.restore import load_run
from experiments.cli import report_main

matplotlib.use('Agg')
import matplotlib.patches as patches  # noqa: E402  (after the backend is chosen)
import matplotlib.pyplot as plt  # noqa: E402


def _panels(images: np.ndarray):
  fig, axes = plt.subplots(1, len(images), figsize=(2.2 * len(images), 2.6))
  axes = np.atleast_1d(axes)
  for ax, img in zip(axes, images):
    ax.imshow(img)
    ax.axis('off')
  return fig, axes


def _rect(ax, box, size, **kw):
  y0, x0, y1, x1 = np.clip(box, 0, 1) * size
  ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, **kw))


def draw_boxes(images, outputs, boxes, labels, class_names, kind, path, threshold=0.5):
  p, pred, cls = (np.asarray(a) for a in loc.decode(jnp.asarray(outputs), kind))
  fig, axes = _panels(images)
  size = images.shape[1]
  for i, ax in enumerate(axes):
    if labels[i] >= 0:
      _rect(ax, boxes[i], size, ls='--', lw=1, ec='white')
    text = f'{class_names[cls[i]]} {p[i]:.2f}' if p[i] > threshold else f'no object {p[i]:.2f}'
    if p[i] > threshold:
      _rect(ax, pred[i], size, lw=1.5, ec='yellow')
    ax.set_title(text, fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def draw_points(images, pred, target, names, path):
  fig, axes = _panels(images)
  size = images.shape[1]
  colours = plt.cm.tab10.colors
  for i, ax in enumerate(axes):
    for k in range(len(names)):
      c = colours[k % 10]
      ax.plot(*(target[i, k] * size), 'o', ms=5, mfc='none', mec=c, mew=1)
      ax.plot(*(pred[i, k] * size), 'x', ms=4, color=c, mew=1.2)
  axes[0].legend([plt.Line2D([], [], color=colours[k % 10], marker='x', ls='')
                  for k in range(len(names))], names, fontsize=5, loc='lower left')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def report(workdir: str | pathlib.Path, which: str = 'best', pictures: int = 8) -> dict:
  """Evaluates the run in ``workdir`` and writes its results and picture there."""
  run = load_run(workdir, which)
  task = run.config.task.name
  if task not in ('localisation', 'landmarks'):
    raise ValueError(f'{workdir} is a {task} run; this report is for localisation and '
                     'landmarks runs (experiments.detect reports detectors).')
  metrics, _ = run.evaluate()
  workdir = pathlib.Path(workdir)
  k = min(pictures, len(run.eval))
  images, extras = run.eval.images[:k], {n: v[:k] for n, v in run.eval.extras.items()}
  out = run.predict(images)
  if task == 'localisation':
    draw_boxes(images, out, extras['boxes'][:, 0], extras['box_labels'][:, 0],
               run.eval.class_names, run.config.task.loss, workdir / 'localisation.png',
               float(run.config.task.threshold))
  else:
    draw_points(images, out.reshape(k, -1, 2), extras['landmarks'], tuple(run.config.task.names),
                workdir / 'landmarks.png')
  results = {'task': task, 'checkpoint': which, 'steps': int(run.config.num_steps),
             'params': run.num_params, 'metrics': metrics}
  (workdir / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
  (workdir / 'results.md').write_text(results_table(results) + '\n')
  return results


def results_table(r: dict) -> str:
  m = r['metrics']
  keys = [k for k, v in m.items() if isinstance(v, float)]
  return '\n'.join(['| ' + ' | '.join(keys) + ' |', '|---' * len(keys) + '|',
                    '| ' + ' | '.join(f'{m[k]:.4f}' for k in keys) + ' |', '',
                    f"{m['count']} test images; {r['checkpoint']} checkpoint of {r['steps']} "
                    f"steps; {r['params']:,} params."])


if __name__ == '__main__':
  sys.exit(report_main(__doc__, lambda a: results_table(report(a.workdir, a.which, a.pictures))))
