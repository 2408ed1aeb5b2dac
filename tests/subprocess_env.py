"""The environment of a test's subprocess: CPU, the suite's XLA flags and compilation cache."""

import os

_DEVICES = '--xla_force_host_platform_device_count'


def subprocess_env(devices: int | None = 1) -> dict[str, str]:
  """``os.environ`` for a subprocess (``cnn_jax.main``, an experiment script) of a test.

  The suite's XLA flags (tests/conftest.py) with ``devices`` simulated CPU
  devices (None: this process's 8). The suite's compilation cache comes with
  the environment (conftest sets it there), so a subprocess reads what the
  suite or an earlier subprocess compiled instead of compiling it again; the
  flags are part of the cache key, which is why they must be the suite's.
  """
  flags = os.environ.get('XLA_FLAGS', '').split()
  if devices is not None:
    flags = [f for f in flags if not f.startswith(_DEVICES)] + [f'{_DEVICES}={devices}']
  return dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=' '.join(flags))
