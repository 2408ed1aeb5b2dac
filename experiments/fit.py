"""A small training loop for experiments whose step is not the classifier's.

``fit`` drives any pure ``step(state, batch, rng) -> (state, stats)``:
explicit per-step keys, windowed means of ``stats`` written to
``metrics.jsonl``/TensorBoard with img/s, a progress bar, and a clear error
when the loss stops being finite.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np


def fit(step: Callable, state: Any, next_batch: Callable[[int], Any], *, steps: int,
        batch_size: int, workdir: str | pathlib.Path, seed: int, log_every: int = 50,
        quiet: bool = False) -> Any:
  """Runs ``steps`` steps of ``step`` on ``next_batch(i)``; returns the final state.

  Raises:
    FloatingPointError: the ``'loss'`` stat became NaN/Inf (names the step range).
  """
  from cnn_jax.train.logging import MetricWriter
  if steps <= 0:
    raise ValueError(f'steps must be positive, got {steps}.')
  key = jax.random.key(seed)
  writer = MetricWriter(workdir, total_steps=steps, quiet=quiet)
  window, t0 = [], time.perf_counter()
  try:
    for i in range(steps):
      state, stats = step(state, next_batch(i), jax.random.fold_in(key, i))
      window.append(stats)
      if (i + 1) % log_every == 0 or i + 1 == steps:
        rows = jax.device_get(window)
        row = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        if not np.isfinite(row['loss']):
          raise FloatingPointError(f'loss became {row["loss"]} within steps '
                                   f'{i + 2 - len(window)}-{i + 1}; lower the learning rate.')
        row['img_per_sec'] = len(window) * batch_size / (time.perf_counter() - t0)
        writer.write(i + 1, 'train', row)
        writer.progress(i + 1, loss=row['loss'])
        window, t0 = [], time.perf_counter()
  finally:
    writer.close()
  return state
