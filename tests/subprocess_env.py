"""Test subprocesses: CPU, the suite's XLA flags and compilation cache, the repository root."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
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


def module_command(module: str, *args: str) -> list[str]:
  """``python -m module *args`` with this interpreter."""
  return [sys.executable, '-m', module, *args]


def run_module(module: str, *args: str, devices: int | None = 1,
               timeout: float = 300) -> subprocess.CompletedProcess:
  """Runs ``python -m module *args`` in the repository root, in :func:`subprocess_env`;
  stdout and stderr are captured as text."""
  return subprocess.run(module_command(module, *args), cwd=ROOT, env=subprocess_env(devices),
                        capture_output=True, text=True, timeout=timeout)
