"""The persistent XLA compilation cache: a second run of the same shapes skips compiling."""

from __future__ import annotations

import os
import pathlib

import jax


def enable_compilation_cache(path: str | None = None,
                             min_compile_secs: float | None = None) -> str:
  """Caches compiled programs in ``path`` (default ``~/.cache/cnn_jax/xla``); returns the folder.

  Programs that compiled in under ``min_compile_secs`` (default 1 s) are not
  kept. The environment wins over both arguments: ``$CNN_JAX_COMPILATION_CACHE``
  names the folder and JAX's own ``$JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS``
  the threshold (the test suite keeps every program in its own folder this way,
  whatever an experiment asks for).
  """
  cache = os.environ.get('CNN_JAX_COMPILATION_CACHE') or path or str(
      pathlib.Path.home() / '.cache' / 'cnn_jax' / 'xla')
  min_compile_secs = float(os.environ.get('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS') or
                           (1.0 if min_compile_secs is None else min_compile_secs))
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', min_compile_secs)
  return cache
