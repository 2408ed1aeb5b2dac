"""Timing candidates side by side: in turn, round after round, so a burst of load on a
shared machine hits each alike (``conv_impl='auto'``, ``xla_cpu_ynnpack='auto'`` and
``benchmarks/timer.py``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np


def interleaved_samples(calls: Mapping[str, Callable[..., Any]], repeats: int,
                        setup: Callable[[], Any] | None = None) -> dict[str, list[float]]:
  """Seconds of each call in each of ``repeats`` rounds (its outputs waited for).

  ``setup``: run before each call, outside its clock; its result is the call's
  argument (e.g. fresh copies of what the call donates). Without it calls take none.
  """
  samples: dict[str, list[float]] = {name: [] for name in calls}
  for _ in range(repeats):
    for name, call in calls.items():
      args = () if setup is None else (setup(),)
      t0 = time.perf_counter()
      jax.block_until_ready(call(*args))
      samples[name].append(time.perf_counter() - t0)
  return samples


def interleaved_ms(calls: Mapping[str, Callable[..., Any]], repeats: int,
                   setup: Callable[[], Any] | None = None) -> dict[str, float]:
  """Median milliseconds of each call, timed by :func:`interleaved_samples`."""
  return {name: 1e3 * float(np.median(s))
          for name, s in interleaved_samples(calls, repeats, setup).items()}
