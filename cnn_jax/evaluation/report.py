"""Per-class results as a markdown table and precision-recall curves as a PNG.

Both read what the evaluators return: the metrics dicts of
:func:`cnn_jax.evaluation.coco.coco_evaluate` (``ap_<name>``, ``ap50_<name>``,
``gt_<name>``) or of the detection task (``ap50_<name>``), and the curves of
:func:`cnn_jax.ops.boxes.precision_recall`. Matplotlib is imported only by
:func:`plot_pr_curves`, and through its Agg canvas directly, so the process's
pyplot backend is left alone.
"""

from __future__ import annotations

import math
import pathlib
from collections.abc import Mapping, Sequence

import numpy as np


def _cell(value: float | None, fmt: str) -> str:
  return '-' if value is None or (isinstance(value, float) and math.isnan(value)) else format(
      value, fmt)


def per_class_table(metrics: Mapping[str, float], class_names: Sequence[str], *,
                    gt_counts: Sequence[int] | None = None) -> str:
  """A markdown table: class, AP50, AP (when any ``ap_<name>`` is present), #GT.

  Args:
    metrics: ``ap50_<name>`` per class, optionally ``ap_<name>`` (COCO's
      0.50:0.95) and ``gt_<name>`` (ground-truth count).
    class_names: the rows, in this order.
    gt_counts: (C,) ground-truth counts for metrics without ``gt_<name>``
      (e.g. ``[c.n_gt for c in precision_recall(...)]``).

  Returns:
    The table, with a last row of the means over classes (NaN cells, i.e.
    classes without ground truth, left out) and the total count; '-' marks
    an undefined value.
  """
  with_ap = any(f'ap_{n}' in metrics for n in class_names)
  head = ['class', 'AP50'] + (['AP'] if with_ap else []) + ['#GT']
  lines = ['| ' + ' | '.join(head) + ' |', '|---|' + '---:|' * (len(head) - 1)]
  columns = {'AP50': [], 'AP': [], '#GT': []}
  for c, name in enumerate(class_names):
    count = metrics.get(f'gt_{name}', None if gt_counts is None else gt_counts[c])
    row = {'AP50': metrics.get(f'ap50_{name}'), 'AP': metrics.get(f'ap_{name}'),
           '#GT': None if count is None else int(count)}
    for k, v in row.items():
      columns[k].append(v)
    lines.append(_row(name, row, with_ap))

  def mean(values):
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else None

  counts = [v for v in columns['#GT'] if v is not None]
  lines.append(_row('**mean**', {'AP50': mean(columns['AP50']), 'AP': mean(columns['AP']),
                                 '#GT': sum(counts) if counts else None}, with_ap))
  return '\n'.join(lines) + '\n'


def _row(name: str, row: Mapping[str, float | int | None], with_ap: bool) -> str:
  cells = [name, _cell(row['AP50'], '.3f')] + ([_cell(row['AP'], '.3f')] if with_ap else [])
  return '| ' + ' | '.join(cells + [_cell(row['#GT'], 'd')]) + ' |'


def plot_pr_curves(curves: Sequence, class_names: Sequence[str],
                   path: str | pathlib.Path, *, title: str = 'precision-recall') -> pathlib.Path:
  """Writes one PNG of precision vs recall, one line per class, with a legend.

  Args:
    curves: per class a :class:`cnn_jax.ops.boxes.PRCurve` (its AP goes in
      the legend) or a ``(precision (R,), recall (R,))`` pair. Classes
      without points or without ground truth (NaN recall) are left out.
    class_names: legend labels, same order.
    path: the PNG to write (folders are created).
    title: the axes' title.

  Returns:
    ``path``.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  if len(curves) != len(class_names):
    raise ValueError(f'{len(curves)} curves for {len(class_names)} class names.')
  fig = Figure(figsize=(6.4, 4.8), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for curve, name in zip(curves, class_names):
    if hasattr(curve, 'precision'):
      precision, recall, ap = curve.precision, curve.recall, getattr(curve, 'ap', None)
    else:
      (precision, recall), ap = curve, None
    precision, recall = np.asarray(precision, float), np.asarray(recall, float)
    if not len(recall) or np.all(np.isnan(recall)):
      continue
    label = name if ap is None or math.isnan(ap) else f'{name} (AP {ap:.3f})'
    # Each detection's precision over the recall it adds, from recall 0 on.
    ax.plot(np.concatenate([[0.0], recall]), np.concatenate([precision[:1], precision]),
            drawstyle='steps-pre', label=label)
  ax.set(xlabel='recall', ylabel='precision', xlim=(0.0, 1.0), ylim=(0.0, 1.05), title=title)
  ax.grid(alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(loc='lower left', fontsize='small')
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(path, format='png')
  return path
