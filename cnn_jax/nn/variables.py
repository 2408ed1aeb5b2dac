"""Bridges a spec's pure ``init -> (params, state)`` to Flax Linen variables.

:class:`cnn_jax.nn.layers.Block` calls :func:`declare` with its spec's init;
each top-level key of the returned ``params`` becomes a Linen parameter and
each key of ``state`` a ``batch_stats`` variable, so
``variables['params'][module]`` is exactly the pytree the spec's apply takes.
Then :func:`update_state` writes the apply's ``new_state`` back (only in
training, never during init, like ``flax.linen.BatchNorm``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

STATE_COLLECTION = 'batch_stats'


def declare(module: nn.Module, init_fn: Callable[[jax.Array], tuple[Any, Any]]
            ) -> tuple[dict, dict[str, nn.Variable]]:
  """Declares the variables of a pure block inside ``module``.

  At init, ``init_fn`` runs once with the module's ``'params'`` rng; when
  applying, the names come from the bound variables and ``init_fn`` never
  runs (no tracing cost per call).

  Args:
    module: the Linen module being set up (call from ``@nn.compact``).
    init_fn: ``key -> (params, state)`` with dict params/state.

  Returns:
    ``(params, state_vars)``: the parameter dict to pass to the pure function,
    and ``{name: Variable}`` handles for the state (use :func:`read_state`).
  """
  if module.is_initializing():
    params0, state0 = init_fn(module.make_rng('params'))
    params = {name: module.param(name, lambda rng, v=v: v) for name, v in params0.items()}
    state = {name: module.variable(STATE_COLLECTION, name, lambda v=v: v)
             for name, v in state0.items()}
    return params, state
  bound = module.variables
  if 'params' not in bound:
    raise ValueError(f"{type(module).__name__} at {'/'.join(module.path) or 'top'}: no "
                     "parameters were passed; build them with model.init(...) and apply "
                     "with {'params': ..., 'batch_stats': ...}.")
  params = dict(bound['params'])
  state = {name: module.variable(STATE_COLLECTION, name) for name in bound.get(
      STATE_COLLECTION, {})}
  return params, state


def read_state(state_vars: dict[str, nn.Variable]) -> dict:
  return {name: v.value for name, v in state_vars.items()}


def update_state(module: nn.Module, state_vars: dict[str, nn.Variable], new_state: dict,
                 train: bool) -> None:
  """Stores ``new_state`` when training (apply with ``mutable=['batch_stats']``)."""
  if train and not module.is_initializing():
    for name, v in state_vars.items():
      v.value = new_state[name]
