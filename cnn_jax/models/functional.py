"""A network composed with :mod:`cnn_jax.ops.compose` behind Linen's calling convention.

The training loop, evaluation, checkpoints and introspection call models as
Linen modules (``model.init(rngs, x, train=False)``,
``model.apply(variables, x, train=..., mutable=[...], rngs={...})``).
:class:`Functional` gives a compose ``Layer`` exactly that interface and
nothing more: its variables are ``{'params': params, 'batch_stats': state}``
with ``(params, state)`` what ``layer.init`` returns, so a composed network
and its Linen twin train through the same step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax

from cnn_jax.ops.compose import Layer


@dataclasses.dataclass(frozen=True)
class Functional:
  """``layer`` as a model: (N, H, W, C) -> whatever the layer returns.

  Attributes:
    layer: an ``(init, apply)`` pair from :mod:`cnn_jax.ops.compose`.
    dtype: compute dtype (inputs are cast; parameters stay float32), or None.
  """
  layer: Layer
  dtype: Any = None

  def init(self, rngs: jax.Array | dict, x: jax.Array, train: bool = False) -> dict:
    del train
    key = rngs['params'] if isinstance(rngs, dict) else rngs
    params, state, _ = self.layer.init(key, tuple(x.shape))
    return {'params': params, 'batch_stats': state}

  def apply(self, variables: dict, x: jax.Array, train: bool = False,
            mutable: bool | Sequence[str] = False, rngs: dict | None = None):
    if self.dtype is not None:
      x = x.astype(self.dtype)
    y, new_state = self.layer.apply(variables['params'], variables.get('batch_stats', ()), x,
                                    train=train, rng=(rngs or {}).get('dropout'))
    if not mutable:
      return y
    wanted = mutable if not isinstance(mutable, bool) else ('batch_stats',)
    return y, ({'batch_stats': new_state} if 'batch_stats' in wanted else {})

