"""Run outputs: metrics.jsonl, TensorBoard events, a progress bar and a PNG plot.

Every row of ``metrics.jsonl`` is ``{"step": int, "split": "train"|"eval", ...}``
with the split's scalars (train: loss, accuracy, lr, grad_norm, img_per_sec;
eval: loss, accuracy, count). The file is opened in append mode, so a resumed
run continues it; :func:`read_metrics` keeps the last row per (split, step).
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm


class MetricWriter:
  """Writes metric rows to JSONL and TensorBoard and drives the progress bar.

  Args:
    workdir: run directory.
    total_steps: for the progress bar and its ETA.
    initial_step: where a resumed run starts.
    quiet: no progress bar.
    enabled: False on non-zero processes of a multi-host run (they write nothing).
  """

  def __init__(self, workdir: str | pathlib.Path, *, total_steps: int, initial_step: int = 0,
               quiet: bool = False, enabled: bool = True):
    self.workdir = pathlib.Path(workdir)
    self.enabled = enabled
    self._jsonl = self._tb = None
    if enabled:
      self.workdir.mkdir(parents=True, exist_ok=True)
      self._jsonl = open(self.workdir / 'metrics.jsonl', 'a', buffering=1)
      try:
        from tensorboardX import SummaryWriter
        self._tb = SummaryWriter(str(self.workdir / 'tensorboard'))
      except ImportError:  # TensorBoard output is optional; JSONL is the record
        self._tb = None
    self._bar = tqdm(total=total_steps, initial=initial_step, disable=quiet or not enabled,
                     unit='step', dynamic_ncols=True, mininterval=0.5)

  def write(self, step: int, split: str, metrics: dict[str, Any]) -> dict[str, float]:
    row = {k: float(v) for k, v in metrics.items()}
    if self.enabled:
      self._jsonl.write(json.dumps({'step': int(step), 'split': split, **row}) + '\n')
      if self._tb is not None:
        for k, v in row.items():
          if math.isfinite(v):  # NaN = undefined (e.g. COCO APl without large objects)
            self._tb.add_scalar(f'{split}/{k}', v, int(step))
    return row

  def progress(self, step: int, **postfix: float) -> None:
    self._bar.update(step - self._bar.n)
    if postfix:
      self._bar.set_postfix({k: f'{v:.4g}' for k, v in postfix.items()}, refresh=False)

  def message(self, text: str) -> None:
    """Prints without breaking the progress bar."""
    if self.enabled:
      self._bar.write(text)

  def close(self) -> None:
    self._bar.close()
    if self._jsonl is not None:
      self._jsonl.close()
    if self._tb is not None:
      self._tb.close()


def read_metrics(path: str | pathlib.Path) -> dict[str, list[dict]]:
  """Rows of a metrics.jsonl by split, sorted by step, last write wins per step."""
  rows: dict[tuple[str, int], dict] = {}
  path = pathlib.Path(path)
  if path.exists():
    for line in path.read_text().splitlines():
      if line.strip():
        row = json.loads(line)
        rows[(row['split'], row['step'])] = row
  out: dict[str, list[dict]] = {}
  for (split, _), row in sorted(rows.items(), key=lambda kv: (kv[0][0], kv[0][1])):
    out.setdefault(split, []).append(row)
  return out


def truncate_metrics(path: str | pathlib.Path, step: int) -> None:
  """Drops rows after ``step`` (a resumed run writes them again), atomically."""
  path = pathlib.Path(path)
  if not path.exists():
    return
  kept = [line for line in path.read_text().splitlines()
          if line.strip() and json.loads(line)['step'] <= step]
  tmp = path.with_suffix('.jsonl.tmp')
  tmp.write_text(''.join(line + '\n' for line in kept))
  tmp.replace(path)


def plot_metrics(jsonl: str | pathlib.Path, png: str | pathlib.Path,
                 keys: Sequence[str] = ('loss', 'accuracy')) -> pathlib.Path:
  """One panel per metric in ``keys`` (train and eval curves vs step), saved as a PNG."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  by_split = read_metrics(jsonl)
  keys = list(dict.fromkeys(keys))
  fig, axes = plt.subplots(1, len(keys), figsize=(5 * len(keys), 4), squeeze=False)
  for ax, key in zip(axes[0], keys):
    for split, rows in by_split.items():
      pts = [(r['step'], r[key]) for r in rows if key in r and math.isfinite(r[key])]
      if pts:
        xs, ys = zip(*pts)
        ax.plot(xs, ys, marker='o' if split == 'eval' else None, label=split)
    ax.set_xlabel('step')
    ax.set_title(key)
    ax.grid(alpha=0.3)
    if ax.lines:
      ax.legend()
  fig.tight_layout()
  png = pathlib.Path(png)
  fig.savefig(png, dpi=90)
  plt.close(fig)
  return png
