"""The dtype policy's two helpers: compute dtype from a config string, and optax's promotion.

Parameters are always float32; ``config.dtype`` ('float32' | 'bfloat16')
names the compute dtype that models cast their inputs to.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp

DTYPES = ('float32', 'bfloat16')


def compute_dtype(name: str):
  """``'bfloat16'`` -> ``jnp.bfloat16``; ``'float32'`` -> None (compute in the input's dtype)."""
  if name not in DTYPES:
    raise ValueError(f'dtype={name!r} is not valid; choose one of {", ".join(DTYPES)}.')
  return jnp.bfloat16 if name == 'bfloat16' else None


@contextlib.contextmanager
def standard_promotion() -> Iterator[None]:
  """Standard dtype promotion for optax calls.

  optax mixes its int32 step count with float hyper-parameters, which
  ``jax_numpy_dtype_promotion='strict'`` (the tests' setting) rejects; our own
  code is strict-clean, so only optimizer updates and schedules run in here.
  """
  with jax.numpy_dtype_promotion('standard'):
    yield
