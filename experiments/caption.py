r"""Example captions and a table of a trained captioning run (training is ``cnn_jax.main``'s).

  python -m cnn_jax.main --config=configs/caption.py --workdir=workdirs/caption
  python -m experiments.caption report workdirs/caption [--which best] [--pictures 8]

Restores the run's best checkpoint (``--which latest`` for the last),
evaluates it on the held-out split through the task's own evaluator (the
config's decoding: greedy, or beam search for ``task.beam_size > 1``) and
writes into the workdir:

* ``captions.png``: the first ``--pictures`` eval images, each with its
  generated caption (green if it equals a reference, red if not) and its
  references (grey) underneath;
* ``results.json`` (metrics and the example captions), ``results.md``.
"""

from __future__ import annotations

import json
import pathlib
import sys
import textwrap

import matplotlib
import numpy as np

from cnn_jax.train.restore import load_run
from experiments.cli import report_main

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)


def draw_captions(images: np.ndarray, captions: list[str], references: list[list[str]],
                  path: pathlib.Path, per_row: int = 4) -> None:
  """Images in rows of ``per_row``, each over its caption and references (an axes of text)."""
  n = len(images)
  rows = -(-n // per_row)
  fig, axes = plt.subplots(2 * rows, per_row, figsize=(2.6 * per_row, 3.9 * rows), squeeze=False,
                           gridspec_kw={'height_ratios': [2.4, 1.5] * rows})
  for ax in axes.ravel():
    ax.axis('off')
  wrap = lambda s: '\n'.join(textwrap.wrap(s, 30)) or '(empty)'
  for i in range(n):
    image_ax, text_ax = axes[2 * (i // per_row), i % per_row], axes[2 * (i // per_row) + 1,
                                                                   i % per_row]
    image_ax.imshow(images[i], interpolation='nearest')
    right = captions[i] in references[i]
    caption = wrap(captions[i])
    text_ax.text(0.5, 1.0, caption, transform=text_ax.transAxes, ha='center', va='top',
                 fontsize=8, color='tab:green' if right else 'tab:red', fontweight='bold')
    text_ax.text(0.5, 0.82 - 0.13 * caption.count('\n'),
                 '\n'.join(wrap(r) for r in references[i]), transform=text_ax.transAxes,
                 ha='center', va='top', fontsize=6.5, color='0.35')
  fig.tight_layout(h_pad=0.2)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def report(workdir: str | pathlib.Path, which: str = 'best', pictures: int = 8) -> dict:
  """Evaluates the run in ``workdir`` and writes its results and ``captions.png`` there."""
  run = load_run(workdir, which)
  if run.config.task.name != 'captioning':
    raise ValueError(f'{workdir} is a {run.config.task.name} run; this report is for '
                     'captioning runs.')
  metrics, rows = run.evaluate()
  workdir = pathlib.Path(workdir)
  captions = run.task.captions(rows)
  refs = [[' '.join(r) for r in run.task.eval_references[int(i)]] for i in rows['index']]
  k = min(pictures, len(captions))
  order = np.argsort(rows['index'])[:k]
  draw_captions(run.eval.images[rows['index'][order]], [captions[i] for i in order],
                [refs[i] for i in order], workdir / 'captions.png')
  examples = [{'index': int(rows['index'][i]), 'caption': captions[i], 'references': refs[i]}
              for i in order]
  results = {'task': 'captioning', 'checkpoint': which, 'steps': int(run.config.num_steps),
             'beam_size': int(run.config.task.beam_size), 'params': run.num_params,
             'vocabulary': len(run.task.vocab), 'truncated': run.task.truncated,
             'metrics': metrics, 'examples': examples}
  (workdir / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
  (workdir / 'results.md').write_text(results_table(results) + '\n')
  return results


def results_table(r: dict) -> str:
  m = r['metrics']
  keys = ['bleu1', 'bleu2', 'bleu3', 'bleu4', 'exact_match', 'token_accuracy', 'mean_length']
  decoding = 'greedy' if r['beam_size'] == 1 else f"beam search (width {r['beam_size']})"
  lines = ['| ' + ' | '.join(keys) + ' |', '|---' * len(keys) + '|',
           '| ' + ' | '.join(f'{m[k]:.4f}' for k in keys) + ' |', '',
           f"{m['count']} test images, {decoding}; {r['checkpoint']} checkpoint of {r['steps']} "
           f"steps; {r['params']:,} params; vocabulary of {r['vocabulary']} tokens.", '',
           '| # | generated | references |', '|---|---|---|']
  lines += [f"| {e['index']} | {e['caption']} | {' / '.join(e['references'])} |"
            for e in r['examples']]
  return '\n'.join(lines)


if __name__ == '__main__':
  sys.exit(report_main(__doc__, lambda a: results_table(report(a.workdir, a.which, a.pictures))))
