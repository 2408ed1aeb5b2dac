"""Running a list of configs, each in its own workdir, resumably (shared by the experiments)."""

from __future__ import annotations

import json
import math
import pathlib
import statistics
import time
from collections.abc import Iterable
from typing import Any

from cnn_jax.train.loop import train_and_evaluate


def run_or_skip(config: Any, workdir: pathlib.Path, meta: dict, *, quiet: bool = True) -> dict:
  """Trains ``config`` in ``workdir`` unless its ``result.json`` exists; returns that row.

  An interrupted run resumes from its last checkpoint (the training loop's
  auto-resume). The row is ``meta`` plus steps, params, eval accuracy and
  loss, wall seconds and the step it resumed from.
  """
  done = workdir / 'result.json'
  if done.exists():
    print(f'{workdir.name}: finished, skipped', flush=True)
    return json.loads(done.read_text())
  print(f'{workdir.name}: training {config.num_steps} steps'
        + (' (resuming)' if (workdir / 'checkpoints').exists() else ''), flush=True)
  t0 = time.perf_counter()
  result = train_and_evaluate(config, workdir, quiet=quiet)
  row = {**meta, 'steps': result['steps'], 'params': int(result['num_params']),
         'eval_accuracy': result['eval']['accuracy'], 'eval_loss': result['eval']['loss'],
         'wall_s': time.perf_counter() - t0, 'resumed_from': result['resumed_from']}
  done.write_text(json.dumps(row, indent=2) + '\n')
  print(f"{workdir.name}: eval accuracy {100 * row['eval_accuracy']:.2f}%", flush=True)
  return row


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
  """Mean and sample standard deviation over seeds (0 for one seed; NaN/None skipped)."""
  values = [v for v in values if v is not None and not math.isnan(v)]
  if not values:
    return math.nan, math.nan
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
