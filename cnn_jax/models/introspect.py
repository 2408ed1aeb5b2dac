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
* :func:`receptive_field` measures a layer's receptive field (size, stride,
  offset) from the network itself: any architecture, padding and branches.
* :func:`xla_flops` asks XLA's cost analysis of a compiled function, e.g. a
  whole train step, to cross-check the analytic count.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jex_core

from cnn_jax.nn.layers import BatchNorm, Block, Conv, Dense
from cnn_jax.ops import cost
from cnn_jax.pytree import leaf_paths

_LEAF_TYPES = (Conv, Dense, BatchNorm, Block)


def predict_batches(fn: Callable[[jax.Array], jax.Array], x: np.ndarray,
                    batch_size: int = 256) -> np.ndarray:
  """``fn`` (jit it) over ``x`` (N, ...) in batches of ``batch_size``, as one numpy array."""
  return np.concatenate([np.asarray(fn(jnp.asarray(x[s:s + batch_size])))
                         for s in range(0, len(x), batch_size)])


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


def iter_eqns(jaxpr) -> Iterator:
  """Every equation of a (closed) jaxpr, those of its sub-jaxprs (jit, scan, cond) included."""
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in jax.tree.leaves(eqn.params, is_leaf=lambda x: isinstance(
        x, (jex_core.Jaxpr, jex_core.ClosedJaxpr))):
      if isinstance(sub, (jex_core.Jaxpr, jex_core.ClosedJaxpr)):
        yield from iter_eqns(sub)


def jaxpr_multiplies(jaxpr) -> int:
  """Multiply-adds of every convolution and matrix product in a (closed) jaxpr."""
  return sum(_eqn_multiplies(eqn) for eqn in iter_eqns(jaxpr))


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
  # Captured outputs sit at '<module path>/__call__/0'.
  for path, value in leaf_paths(state.get('intermediates', {})).items():
    keys = path.split('/')
    found['/'.join(keys[:keys.index('__call__')])] = value
  missing = [n for n in names if n not in found]
  if missing:
    raise ValueError(f'no layer named {missing} in {type(model).__name__}; module paths look '
                     f'like {sorted(found)[:3] or list(variables.get("params", {}))[:5]}.')
  return {n: found[n] for n in names}


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
  """Where a layer's units look in the input (rows and columns separately).

  Unit ``(i, j)`` sees input rows ``offset[0] + i * stride[0]`` up to
  ``+ size[0] - 1`` (and likewise columns); a negative offset means the field
  starts in the zero padding.
  """
  size: tuple[int, int]
  stride: tuple[int, int]
  offset: tuple[int, int]

  def box(self, i: int, j: int, image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(y0, x0, y1, x1)`` of unit ``(i, j)``'s field, clipped to the image (end exclusive)."""
    y0, x0 = self.offset[0] + i * self.stride[0], self.offset[1] + j * self.stride[1]
    return (max(y0, 0), max(x0, 0), min(y0 + self.size[0], image_hw[0]),
            min(x0 + self.size[1], image_hw[1]))


def _field_along(affected: np.ndarray, axis_name: str, layer: str) -> tuple[int, int, int]:
  """``affected[y, v]``: input line y reaches output line v -> (size, stride, offset)."""
  n_out = affected.shape[1]
  spans = []
  for v in (n_out // 2 - 1, n_out // 2):
    lines = np.flatnonzero(affected[:, v])
    if lines.size == 0 or lines[0] == 0 or lines[-1] == affected.shape[0] - 1:
      raise ValueError(f'the receptive field of {layer!r} reaches the input border along '
                       f'{axis_name}; pass a larger input_hw.')
    spans.append((int(lines[0]), int(lines[-1])))
  (a0, a1), (b0, b1) = spans
  stride = b0 - a0
  return a1 - a0 + 1, stride, a0 - (n_out // 2 - 1) * stride


def receptive_field(model: nn.Module, variables: Any, layer: str, *,
                    input_hw: tuple[int, int] = (64, 64), channels: int = 3,
                    **call_kwargs: Any) -> ReceptiveField:
  """The receptive field of layer ``layer``'s units, measured by NaN propagation.

  A NaN in input row ``y`` turns the outputs that depend on row ``y`` into
  NaN whatever the weights (``0 * NaN`` is NaN); a batched forward with one
  marked row (and one with a marked column) per image gives, for two
  neighbouring interior units, the first and last input line they see. A
  second pass marks with ``+inf`` through all-positive parameters, because
  XLA's max reductions can drop a NaN. Padding, strides, dilation, pooling,
  residual branches and BatchNorm (inference mode) are all handled because
  the network itself is run. (A tanh followed by max pooling could hide a
  line from both passes; no zoo model has one.)

  Args:
    model, variables: a Linen model and its variables.
    layer: a module path (see :func:`activations`) with a 4-D output.
    input_hw: an input size large enough that interior units' fields do not
      reach the border (a ValueError says so otherwise). Models with a fixed
      input size (LeNet-5: 32) need exactly that size.
    channels: input channels.
  """
  h, w = input_hw
  # Two markers, unioned: NaN passes tanh/sigmoid and sums but XLA's vectorised
  # max reductions may drop it; +inf with every parameter made positive
  # (|p| + 1: a monotone network, no inf - inf) passes max pooling and ReLU.
  positive = jax.jit(lambda v: jax.tree.map(
      lambda p: jnp.abs(p) + 1 if jnp.issubdtype(p.dtype, jnp.floating) else p, v))(variables)
  # One compiled forward for the four passes (not op by op: ~1 compile per op).
  forward = jax.jit(lambda v, x: activations(model, v, x, [layer], **call_kwargs)[layer])
  reach = {}
  for axis, n in (('rows', h), ('columns', w)):
    marked = np.zeros((n, h, w, channels), np.float32)
    idx = (np.arange(n), np.arange(n)) if axis == 'rows' else (np.arange(n), slice(None),
                                                                np.arange(n))
    hit = None
    for value, params in ((np.nan, variables), (np.inf, positive)):
      marked[idx] = value
      out = np.asarray(forward(params, marked))
      if out.ndim != 4:
        raise ValueError(f'layer {layer!r} has output shape {out.shape[1:]}, not a spatial map.')
      bad = ~np.isfinite(out)
      hit = bad if hit is None else hit | bad
    reach[axis] = hit.any(axis=(2, 3)) if axis == 'rows' else hit.any(axis=(1, 3))
  size_h, stride_h, off_h = _field_along(reach['rows'], 'rows', layer)
  size_w, stride_w, off_w = _field_along(reach['columns'], 'columns', layer)
  return ReceptiveField((size_h, size_w), (stride_h, stride_w), (off_h, off_w))


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
  for a conv net the result is a bit above ``2 * count_multiplies(...)``. A
  function already jitted is lowered as it is, so its shardings and donation
  are kept and the program compiled here is the one its calls then reuse.
  """
  jitted = fn if hasattr(fn, 'lower') else jax.jit(fn)
  compiled = jitted.lower(*args).compile()
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older jax returns one dict per device
    analysis = analysis[0] if analysis else None
  if not analysis or 'flops' not in analysis:
    return None
  return float(analysis['flops'])
