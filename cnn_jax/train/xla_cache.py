"""The persistent XLA compilation cache: a second run of the same shapes skips compiling."""

from __future__ import annotations

import os
import pathlib

import jax


def enable_compilation_cache(path: str | None = None, min_compile_secs: float = 1.0) -> str:
  """Caches compiled programs in ``path`` (default ``~/.cache/cnn_jax/xla`` or
  ``$CNN_JAX_COMPILATION_CACHE``); returns the directory used."""
  cache = path or os.environ.get('CNN_JAX_COMPILATION_CACHE',
                                 str(pathlib.Path.home() / '.cache' / 'cnn_jax' / 'xla'))
  jax.config.update('jax_compilation_cache_dir', cache)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', min_compile_secs)
  return cache
