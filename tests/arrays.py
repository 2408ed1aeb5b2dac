"""Random test inputs drawn on the host.

``jax.random.normal`` compiles one program per shape and dtype (about 0.1 s
each on a 2-core CPU), and the property tests draw a new shape per example;
numpy draws the same kind of values, and ``jax.device_put`` (unlike
``jnp.asarray``, which compiles a small program per shape) moves them
without compiling anything.
"""

import jax
import jax.numpy as jnp
import numpy as np


def normal(seed: int, shape, dtype=jnp.float32) -> jax.Array:
  """Standard-normal values of ``shape`` (drawn in float32, then cast to ``dtype``)."""
  x = np.random.default_rng(seed).standard_normal(shape, dtype=np.float32)
  return jax.device_put(x.astype(jnp.dtype(dtype)))  # jnp.asarray would compile per shape
