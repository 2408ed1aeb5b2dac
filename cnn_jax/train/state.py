"""The whole training state as one pytree (checkpointed and sharded as a unit)."""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  """``step`` int32 scalar; ``params`` / ``batch_stats`` model variables; ``opt_state``."""
  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any


def create_train_state(model, tx: optax.GradientTransformation, key: jax.Array,
                       input_shape: tuple[int, ...], input_dtype: Any = jnp.float32
                       ) -> TrainState:
  """Initialises variables on a dummy batch of zeros.

  ``input_shape``, ``input_dtype``: the model's input, e.g. (N, H, W, C)
  float32 images (the default) or (N, L) int32 token ids (zeros: padding).
  """
  variables = model.init({'params': key, 'dropout': key}, jnp.zeros(input_shape, input_dtype),
                         train=False)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params))
