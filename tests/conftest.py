"""Test-wide JAX setup: CPU only, 8 simulated devices, strict dtype promotion, compile cache.

Environment variables must be set before JAX initialises its backends, which is
why this runs at import time of the conftest (pytest imports it first).
"""

import os
import pathlib

# Forced, not defaulted: a shell exporting JAX_PLATFORMS=cuda must not move the suite.
os.environ['JAX_PLATFORMS'] = 'cpu'
# Multi-device tests (data parallel, pmap) need several CPU devices; the rest
# of the suite only ever uses device 0.
if '--xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') +
                             ' --xla_force_host_platform_device_count=8').strip()

import hypothesis  # noqa: E402
import jax  # noqa: E402

_CACHE = pathlib.Path(os.environ.get(
    'CNN_JAX_TEST_CACHE', pathlib.Path(__file__).resolve().parents[1] / '.cache' / 'jax-tests'))
# Decoded image-folder caches of the tests' own tiny folders stay out of ~/.cache.
os.environ.setdefault('CNN_JAX_CACHE', str(_CACHE.parent / 'cnn-jax-tests'))

jax.config.update('jax_numpy_dtype_promotion', 'strict')
jax.config.update('jax_compilation_cache_dir', str(_CACHE))
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)

# Each hypothesis example compiles new shapes, so keep counts modest and never
# apply a deadline (compile time is not what is being tested).
hypothesis.settings.register_profile(
    'default', deadline=None, max_examples=20, derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile(
    'thorough', deadline=None, max_examples=200,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'default'))
