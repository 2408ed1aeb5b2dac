"""Batch normalisation as a pure function over explicit ``(params, state)``.

``params = {'scale': (C,), 'bias': (C,)}`` are trained; ``state = {'mean': (C,),
'var': (C,)}`` holds running statistics and is returned updated instead of
mutated, so the function stays pure under ``jit``/``grad``/``pmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

Params = dict[str, jax.Array]


def batch_norm_init(num_features: int, dtype=jnp.float32) -> tuple[Params, Params]:
  """Identity transform and unit running variance: ``(params, state)``."""
  # Separate arrays: a donated train state must not hold one buffer twice.
  ones = lambda: jnp.ones((num_features,), dtype)
  zeros = lambda: jnp.zeros((num_features,), dtype)
  return {'scale': ones(), 'bias': zeros()}, {'mean': zeros(), 'var': ones()}


def batch_norm(params: Params, state: Params, x: jax.Array, *, train: bool,
               momentum: float = 0.9, eps: float = 1e-5,
               axis_name: str | None = None) -> tuple[jax.Array, Params]:
  """Normalises over all axes but the last (channels).

  Args:
    params: ``{'scale', 'bias'}`` each (C,).
    state: running ``{'mean', 'var'}`` each (C,).
    x: (..., C), typically (N, H, W, C); any float dtype.
    train: use batch statistics and return updated running statistics; else
      use the running statistics and return ``state`` unchanged.
    momentum: ``running = momentum * running + (1 - momentum) * batch`` (0.9 is
      PyTorch's ``momentum=0.1``).
    eps: added to the variance.
    axis_name: under ``pmap``/``shard_map``, average the statistics over this
      axis so every device normalises with the global batch statistics.

  Returns:
    ``(y, new_state)``; ``y`` has ``x``'s dtype. Statistics are computed in
    float32 even for bfloat16 activations.
  """
  if x.shape[-1] != params['scale'].shape[0]:
    raise ValueError(f'batch_norm: input has {x.shape[-1]} channels (shape {tuple(x.shape)}) '
                     f"but the parameters have {params['scale'].shape[0]}.")
  x32 = x.astype(jnp.float32)
  if train:
    axes = tuple(range(x.ndim - 1))
    mean, mean_sq = jnp.mean(x32, axes), jnp.mean(jnp.square(x32), axes)
    if axis_name is not None:
      mean, mean_sq = lax.pmean((mean, mean_sq), axis_name)
    # E[x^2] - E[x]^2 lets one all-reduce carry both moments; clamp rounding below 0.
    var = jnp.maximum(mean_sq - jnp.square(mean), 0.0)
    new_state = {
        'mean': momentum * state['mean'] + (1.0 - momentum) * lax.stop_gradient(mean),
        'var': momentum * state['var'] + (1.0 - momentum) * lax.stop_gradient(var),
    }
  else:
    mean, var = state['mean'].astype(jnp.float32), state['var'].astype(jnp.float32)
    new_state = state
  inv = lax.rsqrt(var + eps) * params['scale'].astype(jnp.float32)
  y = (x32 - mean) * inv + params['bias'].astype(jnp.float32)
  return y.astype(x.dtype), new_state
