"""Helpers shared by the model tests: counting and materialising variables cheaply.

Real ``model.init`` of a big model is dominated by XLA compile time on CPU, so
the tests get shapes with ``jax.eval_shape`` (no FLOPs, no memory) and, where
a real forward pass is wanted, fill those shapes with numpy random values.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


def abstract_variables(model, shape, dtype=jnp.float32, **init_kwargs):
  """``jax.eval_shape`` of ``model.init(key, zeros(shape), train=False)``."""
  init = functools.partial(model.init, train=False, **init_kwargs)
  return jax.eval_shape(init, jax.random.key(0), jax.ShapeDtypeStruct(shape, dtype))


def count(tree) -> int:
  return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def param_count(model, shape) -> int:
  """Trainable parameters only: the ``'params'`` collection (BN statistics excluded)."""
  return count(abstract_variables(model, shape)['params'])


def random_variables(abstract, seed: int = 0):
  """Concrete variables for ``abstract``: He-scaled kernels, BN at identity."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      fan_in = math.prod(leaf.shape[:-1])
      return jnp.asarray(rng.standard_normal(leaf.shape, np.float32) * np.sqrt(2 / fan_in))
    if name in ('scale', 'var'):
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.zeros(leaf.shape, leaf.dtype)  # Biases and running means.

  return jax.tree_util.tree_map_with_path(fill, abstract)
