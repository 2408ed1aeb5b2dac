r"""Report of a trained face-verification embedding (training is ``cnn_jax.main``'s).

  python -m cnn_jax.main --config=configs/face_verify.py --workdir=workdirs/faces
  python -m experiments.face_verify report workdirs/faces [--which best]

Restores the run's best checkpoint (by val ROC AUC), evaluates it through the
metric-learning task's evaluator on the unseen identities (verification at the
val threshold, ROC AUC, one-shot nearest neighbour with a gallery of one image
per identity, siamese heads fitted on val pairs) and writes ``results.json``,
``results.md``, ``roc.png`` and ``embedding.npz`` (the trained variables, flat
``collection/module/.../leaf`` keys, see ``cnn_jax.models.weights.save_flat``).
"""

from __future__ import annotations

import json
import pathlib
import sys

import matplotlib
import numpy as np

from cnn_jax.models import weights as weights_lib
from cnn_jax.ops import metrics
from cnn_jax.tasks.metric_learning import group_pairs
from cnn_jax.train.restore import load_run
from experiments.cli import report_main

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def pair_curves(rows: dict, seed: int) -> dict:
  """Per eval group (val, test): pair distances, same-identity flags and AUC."""
  return {name: {'distances': p['d'], 'same': p['same'],
                 'auc': float(metrics.roc_auc(-p['d'], p['same']))}
          for name, p in group_pairs(rows, seed).items()}


def plot_roc(curves: dict, path: pathlib.Path) -> None:
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
  for split, c in curves.items():
    d, same = c['distances'], c['same']
    ts = np.sort(np.unique(d))
    tpr = [np.mean(d[same] <= t) for t in ts]
    fpr = [np.mean(d[~same] <= t) for t in ts]
    ax1.plot([0, *fpr], [0, *tpr], label=f"{split} (AUC {c['auc']:.3f})")
  ax1.plot([0, 1], [0, 1], 'k:', lw=0.8)
  ax1.set_xlabel('false accept rate')
  ax1.set_ylabel('true accept rate')
  ax1.set_title('verification ROC (unseen identities)')
  ax1.legend()
  test = curves['test']
  bins = np.linspace(0, 4, 41)
  ax2.hist(test['distances'][test['same']], bins, alpha=0.6, label='same identity')
  ax2.hist(test['distances'][~test['same']], bins, alpha=0.6, label='different')
  ax2.set_xlabel('squared L2 distance')
  ax2.set_title('test pair distances')
  ax2.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def report(workdir: str | pathlib.Path, which: str = 'best') -> dict:
  """Evaluates the run in ``workdir``; writes results, the ROC plot and the weights there."""
  workdir = pathlib.Path(workdir)
  run = load_run(workdir, which)
  m, rows = run.evaluate()
  plot_roc(pair_curves(rows, int(run.config.seed)), workdir / 'roc.png')
  weights_lib.save_flat({k: np.asarray(v) for k, v in
                         weights_lib.flat_paths(run.variables).items()}, workdir / 'embedding.npz')
  results = {
      'verification': {k: m[k] for k in ('threshold', 'val_accuracy', 'accuracy', 'auc',
                                         'val_auc', 'test_pairs')},
      'one_shot': {'accuracy': m['one_shot_accuracy'], 'chance': m['one_shot_chance']},
      'siamese': {kind: {'test_accuracy': m[f'siamese_{kind}_accuracy'],
                         'test_auc': m[f'siamese_{kind}_auc']}
                  for kind in ('abs', 'chi2') if f'siamese_{kind}_accuracy' in m},
      'unit_norm_max_error': m['unit_norm_error'], 'identities': run.task.identities,
      'checkpoint': which, 'steps': int(run.config.num_steps), 'mining': run.task.t.mining,
  }
  (workdir / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
  (workdir / 'results.md').write_text(results_table(results) + '\n')
  return results


def results_table(r: dict) -> str:
  v, o, s = r['verification'], r['one_shot'], r['siamese']
  ids = r['identities']
  return '\n'.join([
      f"Unseen test identities: {ids['test']} (val {ids['val']}, train {ids['train']}); "
      f"{r['checkpoint']} checkpoint of {r['steps']} steps, {r['mining']} mining.",
      '',
      '| task | metric | value | chance |',
      '|---|---|---|---|',
      f"| verification, threshold {v['threshold']:.3f} from val | test accuracy | "
      f"{100 * v['accuracy']:.1f}% | 50% |",
      f"| verification | test ROC AUC | {v['auc']:.3f} | 0.5 |",
      f"| one-shot, gallery of 1 per identity | NN accuracy | {100 * o['accuracy']:.1f}% | "
      f"{100 * o['chance']:.1f}% |",
      f"| siamese head on abs(f1 - f2) | test accuracy / AUC | "
      f"{100 * s['abs']['test_accuracy']:.1f}% / {s['abs']['test_auc']:.3f} | 50% / 0.5 |",
      f"| siamese head, chi-squared | test accuracy / AUC | "
      f"{100 * s['chi2']['test_accuracy']:.1f}% / {s['chi2']['test_auc']:.3f} | 50% / 0.5 |",
  ])


if __name__ == '__main__':
  sys.exit(report_main(__doc__, lambda a: results_table(report(a.workdir, a.which))))
