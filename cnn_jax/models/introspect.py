"""Model introspection: a per-layer table and FLOPs, analytic and from XLA.

* :func:`summary` runs ``model.init`` abstractly (``jax.eval_shape``: no FLOPs,
  no memory) while intercepting every layer of :mod:`cnn_jax.nn` (Conv, Dense,
  BatchNorm and the pure-block wrappers), and records each one's output shape,
  parameter count and multiply-adds per example.
* Multiply-adds are counted analytically from the layer's jaxpr: every
  convolution and matrix product found in it is costed with
  :mod:`cnn_jax.ops.cost`, so the count is the same for ``conv_impl='lax'`` and
  ``'einsum'`` (the latter is a ``dot_general`` over patches).
* :func:`activations` returns the outputs of named layers for an input (style
  transfer's features, activation maps).
* :func:`xla_flops` asks XLA's cost analysis of a compiled function, e.g. a
  whole train step, to cross-check the analytic count.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.extend import core as jex_core

from cnn_jax.nn.layers import BatchNorm, Block, Conv, Dense
from cnn_jax.ops import cost

_LEAF_TYPES = (Conv, Dense, BatchNorm, Block)


@dataclasses.dataclass(frozen=True)
class LayerRow:
  name: str            # module path, e.g. 'stage1_0'
  kind: str            # module class, e.g. 'BasicBlock'
  input_shape: tuple[int, ...]
  output_shape: tuple[int, ...]
  params: int          # trainable parameters (BatchNorm statistics excluded)
  multiplies: int      # multiply-adds for one example


def _eqn_multiplies(eqn) -> int:
  name = eqn.primitive.name
  if name == 'conv_general_dilated':
    lhs, rhs = (v.aval.shape for v in eqn.invars)
    out = eqn.outvars[0].aval.shape
    dn = eqn.params['dimension_numbers']
    out_spatial = [out[d] for d in dn.out_spec[2:]]
    k_spatial = [rhs[d] for d in dn.rhs_spec[2:]]
    # rhs's input-feature axis already holds C_in / groups. An lhs dilation
    # (the input gradient of a strided conv) inserts zeros: taps on them are
    # not useful work, and only 1 / prod(dilation) of the taps are not zeros.
    dense = out[dn.out_spec[0]] * cost.conv_multiplies(
        *out_spatial, out[dn.out_spec[1]], *k_spatial, rhs[dn.rhs_spec[1]])
    return dense // math.prod(eqn.params.get('lhs_dilation') or (1,))
  if name == 'dot_general':
    (lhs_contract, _), _ = eqn.params['dimension_numbers']
    lhs = eqn.invars[0].aval.shape
    return math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[d] for d in lhs_contract)
  return 0


def jaxpr_multiplies(jaxpr) -> int:
  """Multiply-adds of every convolution and matrix product in a (closed) jaxpr."""
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  total = 0
  for eqn in jaxpr.eqns:
    total += _eqn_multiplies(eqn)
    for sub in jax.tree.leaves(eqn.params, is_leaf=lambda x: isinstance(
        x, (jex_core.Jaxpr, jex_core.ClosedJaxpr))):
      if isinstance(sub, (jex_core.Jaxpr, jex_core.ClosedJaxpr)):
        total += jaxpr_multiplies(sub)
  return total


def count_multiplies(fn: Callable, *args: Any) -> int:
  """Analytic multiply-adds of ``fn(*args)`` (args may be ShapeDtypeStructs)."""
  return jaxpr_multiplies(jax.make_jaxpr(fn)(*args))


def count_params(tree) -> int:
  return sum(int(math.prod(x.shape)) for x in jax.tree.leaves(tree))


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def summary(model: nn.Module, input_shape: Sequence[int], *, print_table: bool = True,
            **call_kwargs: Any) -> list[LayerRow]:
  """Per-layer output shape, parameters and multiply-adds of ``model``.

  Args:
    model: a Linen model built from :mod:`cnn_jax.nn` layers.
    input_shape: (N, H, W, C); multiply-adds are reported per example.
    print_table: also print the table (see :func:`format_summary`).
    **call_kwargs: extra arguments of ``model.__call__`` (``train`` defaults
      to False).

  Returns:
    One :class:`LayerRow` per layer in call order.
  """
  rows: list[LayerRow] = []
  batch = input_shape[0]
  counting = []  # non-empty while a layer is re-traced for its multiplies

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if (counting or context.method_name != '__call__' or
        not isinstance(module, _LEAF_TYPES)):
      return next_fun(*args, **kwargs)
    x = args[0]
    out = next_fun(*args, **kwargs)
    params = module.variables.get('params', {})
    # Re-trace the layer on abstract values to count its contractions alone.
    variables = _abstract(dict(module.variables))
    unbound = module.clone(parent=None)
    counting.append(True)
    try:
      mults = count_multiplies(
          lambda v, x: unbound.apply(v, x, *args[1:], **kwargs, mutable=True),
          variables, jax.ShapeDtypeStruct(x.shape, x.dtype))
    finally:
      counting.pop()
    rows.append(LayerRow(
        name='/'.join(module.path) or type(module).__name__, kind=type(module).__name__,
        input_shape=tuple(x.shape), output_shape=tuple(out.shape),
        params=count_params(params), multiplies=mults // batch))
    return out

  call_kwargs.setdefault('train', False)
  with nn.intercept_methods(interceptor):
    jax.eval_shape(lambda x: model.init(
        {'params': jax.random.key(0), 'dropout': jax.random.key(1)}, x, **call_kwargs),
                   jax.ShapeDtypeStruct(tuple(input_shape), jnp.float32))
  if print_table:
    print(format_summary(rows))
  return rows


def activations(model: nn.Module, variables: Any, x: jax.Array, names: Sequence[str],
                **call_kwargs: Any) -> dict[str, jax.Array]:
  """The outputs of the layers ``names`` (module paths joined by ``'/'``) for input ``x``.

  Differentiable in ``x`` and ``variables`` (style transfer takes gradients
  through it). Outputs are what the module returns: a ``Conv``'s is before
  its ReLU.

  Args:
    model: a Linen model; ``variables`` its variables.
    x: the input, e.g. (N, H, W, C).
    names: e.g. ``('conv1_1', 'conv4_2')`` for a VGG or ``('stage2_0',)``.
    **call_kwargs: for ``model.__call__`` (``train`` defaults to False).

  Returns:
    ``{name: (N, h, w, c) array}`` in the order of ``names``.
  """
  wanted = set(names)
  call_kwargs.setdefault('train', False)
  _, state = model.apply(
      variables, x, capture_intermediates=lambda mdl, method: (
          method == '__call__' and '/'.join(mdl.path) in wanted),
      mutable=['intermediates'], **call_kwargs)
  found = {}
  flat, _ = jax.tree_util.tree_flatten_with_path(state.get('intermediates', {}))
  for path, value in flat:
    keys = [str(getattr(k, 'key', '')) for k in path]
    found['/'.join(keys[:keys.index('__call__')])] = value
  missing = [n for n in names if n not in found]
  if missing:
    raise ValueError(f'no layer named {missing} in {type(model).__name__}; module paths look '
                     f'like {sorted(found)[:3] or list(variables.get("params", {}))[:5]}.')
  return {n: found[n] for n in names}


def format_summary(rows: Sequence[LayerRow]) -> str:
  """A fixed-width table with a totals line."""
  header = f"{'layer':24s} {'type':12s} {'output shape':22s} {'params':>12s} {'mult-adds':>15s}"
  lines = [header, '-' * len(header)]
  for r in rows:
    lines.append(f'{r.name:24s} {r.kind:12s} {str(r.output_shape):22s} {r.params:12,d} '
                 f'{r.multiplies:15,d}')
  lines.append('-' * len(header))
  lines.append(f"{'total':24s} {'':12s} {'':22s} {sum(r.params for r in rows):12,d} "
               f'{sum(r.multiplies for r in rows):15,d}')
  return '\n'.join(lines)


def xla_flops(fn: Callable, *args: Any) -> float | None:
  """FLOPs of ``jit(fn)(*args)`` from XLA's cost analysis (None if unavailable).

  XLA counts a multiply-add as 2 FLOPs and also counts elementwise work, so
  for a conv net the result is a bit above ``2 * count_multiplies(...)``.
  """
  compiled = jax.jit(fn).lower(*args).compile()
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax returns one dict per device
    analysis = analysis[0] if analysis else None
  if not analysis or 'flops' not in analysis:
    return None
  return float(analysis['flops'])
