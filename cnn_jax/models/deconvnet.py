"""Zeiler & Fergus's deconvnet (2014): project one unit's activation back to pixels.

A plain conv/pool chain is run forward once, recording at every max pool the
position of each window's maximum (the *switches*). Then a feature map in
which only the chosen unit keeps its activation is sent back through the
chain in reverse, layer by layer: a max pool is *unpooled* (each value goes to
its switch position, zeros elsewhere), a ReLU *rectifies the backward signal
itself*, and a convolution is replaced by its transpose (the same filters,
transposed: ``jax.linear_transpose`` of the project's ``conv2d`` without
bias). The result has the input's shape and shows which input pattern the
unit responds to.

How this differs from the gradient (:func:`cnn_jax.models.explain.saliency`):
backprop multiplies by ``relu'(z)``, i.e. passes the backward signal where the
*forward* activation was positive, whatever its sign; the deconvnet applies
``relu`` to the *backward signal*, wherever the forward activation was. The
max-pool switches and the transposed filters are what both share: with every
ReLU removed, the projection equals the gradient of the unit (a test checks it).

BatchNorm (inference mode, ``y = (x - mean) * a + beta`` with ``a = gamma /
sqrt(var + eps)``): by default (``batch_norm='scale'``) the projection
multiplies by ``a``, the transpose of its linear part; its shift ``-mean * a +
beta`` is dropped like the conv biases (a projection keeps only linear maps).
``batch_norm='skip'`` treats it as the identity.

Reading a model: :func:`read_chain` runs the model once on the images
(Flax method interception), records each :mod:`cnn_jax.nn` layer up to the
named one (Conv, ConvBN, BatchNorm) with its spec and variables, and infers
what lies between two layers (ReLU and/or max pooling are not modules): the
pool's window, stride and padding are chosen among those that give the next
layer's input shape and are *confirmed on the data* (the next layer's input
must equal ``max_pool(relu(previous output))``; non-overlapping pools are tried
first, and the first geometry that reproduces the data is kept). A residual or
branching block, a Dense layer, another activation (tanh, GELU) or average
pooling before the named layer raises a ``ValueError``; the chain found is
finally checked to reproduce the named layer's output.

Conventions: NHWC; a projection starts from the named layer's output as
:func:`cnn_jax.models.introspect.activations` returns it (a plain ``Conv``'s
is before its ReLU; a ``ConvBN``'s after BN and ReLU). Projecting the
strongest unit of a map before or after its max pool is the same thing (a
pooled unit is the pre-pool unit at its switch).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any, Literal, Union

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax

from cnn_jax.nn.layers import Block
from cnn_jax.ops import blocks, pool, shapes
from cnn_jax.ops import conv as conv_ops

Location = Union[Literal['max', 'all'], tuple[int, int]]
BatchNormRule = Literal['scale', 'skip']
_BN_RULES = ('scale', 'skip')
_PLAIN = 'the deconvnet needs a plain conv -> (BN) -> ReLU -> max-pool chain'


@dataclasses.dataclass(frozen=True, eq=False)
class ConvLayer:
  """One convolution of the chain: conv (+ bias) -> optional BatchNorm -> optional ReLU.

  Attributes:
    name: the module path it was read from (any label for a hand-built chain).
    conv: the :class:`cnn_jax.ops.blocks.Conv` spec (stride, padding, dilation,
      groups, conv_impl); ``params`` its ``{'kernel': (kh, kw, C_in // g, C_out)
      [, 'bias': (C_out,)]}``.
    bn: a :class:`cnn_jax.ops.blocks.BatchNorm` spec applied after the conv in
      inference mode, with ``bn_params`` / ``bn_state``; None without one.
    relu: whether a ReLU follows (inside the module or between modules).
  """
  name: str
  conv: blocks.Conv
  params: dict
  bn: blocks.BatchNorm | None = None
  bn_params: dict = dataclasses.field(default_factory=dict)
  bn_state: dict = dataclasses.field(default_factory=dict)
  relu: bool = False

  def forward(self, x: jax.Array) -> jax.Array:
    """(N, H, W, C_in) -> (N, H', W', C_out), exactly as the model's layers compute it."""
    y, _ = self.conv.apply(self.params, {}, x)
    if self.bn is not None:
      y, _ = self.bn.apply(self.bn_params, self.bn_state, y, train=False)
    return jax.nn.relu(y) if self.relu else y

  def bn_scale(self) -> jax.Array:
    """BatchNorm's per-channel factor ``gamma / sqrt(var + eps)``, (C_out,)."""
    # A frozen BatchNorm keeps gamma in its state (torchvision's buffers).
    gamma = (self.bn_state if self.bn.frozen else self.bn_params)['scale']
    return lax.rsqrt(self.bn_state['var'].astype(jnp.float32) + self.bn.epsilon) * gamma

  def transpose(self, r: jax.Array, in_shape: tuple[int, ...]) -> jax.Array:
    """The transposed filters: (N, H', W', C_out) -> ``in_shape`` (bias-free adjoint)."""
    kernel = self.params['kernel']
    # Linear in z (no bias), so its transpose is the exact adjoint for any
    # stride, padding, dilation and groups, with the input size recorded forward
    # (a strided conv maps several input sizes to one output size).
    linear = lambda z: self.conv.apply({'kernel': kernel}, {}, z)[0]
    (out,) = jax.linear_transpose(linear, jax.ShapeDtypeStruct(in_shape, r.dtype))(r)
    return out


@dataclasses.dataclass(frozen=True)
class MaxPool:
  """A max pool of the chain: ``window``, ``stride`` (pairs) and explicit ``padding``
  ``((top, bottom), (left, right))``, as :func:`cnn_jax.ops.pool.max_pool` takes them."""
  window: tuple[int, int]
  stride: tuple[int, int]
  padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))


ChainLayer = Union[ConvLayer, MaxPool]


@struct.dataclass
class Forward:
  """What the forward pass records for the projection.

  Attributes:
    output: the last layer's output (N, h, w, c).
    switches: per :class:`MaxPool` in chain order, (N, H', W', C) int32: the
      flat index ``row * W + col`` of each window's maximum in the pool's input.
    in_shapes: per chain layer, its input shape (static).
  """
  output: jax.Array
  switches: tuple[jax.Array, ...]
  in_shapes: tuple[tuple[int, ...], ...] = struct.field(pytree_node=False)


# --------------------------------------------------------------------------- switches

def max_pool_switches(x: jax.Array, window: Sequence[int] | int,
                      stride: Sequence[int] | int | None = None,
                      padding: shapes.Padding = 'VALID') -> tuple[jax.Array, jax.Array]:
  """Max pooling that also returns where each maximum came from.

  Args:
    x: (N, H, W, C) floating input.
    window, stride, padding: as :func:`cnn_jax.ops.pool.max_pool`.

  Returns:
    ``(pooled, switches)``: ``pooled`` (N, H', W', C) equals ``pool.max_pool``;
    ``switches`` (N, H', W', C) int32 is the flat index ``row * W + col`` in
    ``x`` of each window's maximum, the first one in row-major order on ties
    (the cell ``max_pool``'s gradient goes to).
  """
  pooled = pool.max_pool(x, window, stride, padding)  # also validates the geometry
  window = shapes.pair(window, 'window')
  stride = window if stride is None else shapes.pair(stride, 'stride')
  pads = shapes.normalize_padding(padding, x.shape[1:3], window, stride)
  # Pad with -inf (max_pool's padding) so a padded cell never wins, then take
  # every window's cells in row-major order: argmax returns the first maximum.
  xp = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=-jnp.inf)
  patches = conv_ops.extract_patches(xp, window, stride=stride)  # (N, H', W', kh, kw, C)
  n, ho, wo, kh, kw, c = patches.shape
  local = jnp.argmax(patches.reshape(n, ho, wo, kh * kw, c), axis=3)
  rows = (jnp.arange(ho) * stride[0] - pads[0][0])[None, :, None, None] + local // kw
  cols = (jnp.arange(wo) * stride[1] - pads[1][0])[None, None, :, None] + local % kw
  return pooled, (rows * x.shape[2] + cols).astype(jnp.int32)


def unpool(r: jax.Array, switches: jax.Array, in_hw: Sequence[int]) -> jax.Array:
  """Places each value of ``r`` at its switch position, zeros elsewhere.

  Args:
    r: (N, H', W', C) signal at the pool's output.
    switches: (N, H', W', C) from :func:`max_pool_switches`.
    in_hw: the pool input's (H, W).

  Returns:
    (N, H, W, C). Overlapping windows (AlexNet's 3/2) that chose the same
    cell add up there, as the pool's gradient does.
  """
  n, _, _, c = r.shape
  h, w = in_hw
  batch = jnp.arange(n)[:, None, None, None]
  chan = jnp.arange(c)[None, None, None, :]
  out = jnp.zeros((n, h * w, c), r.dtype).at[batch, switches, chan].add(r)
  return out.reshape(n, h, w, c)


# --------------------------------------------------------------------------- the deconvnet

def forward(chain: Sequence[ChainLayer], x: jax.Array) -> Forward:
  """Runs ``chain`` on ``x`` (N, H, W, C), recording the pools' switches."""
  switches, in_shapes = [], []
  for layer in chain:
    in_shapes.append(tuple(x.shape))
    if isinstance(layer, MaxPool):
      x, s = max_pool_switches(x, layer.window, layer.stride, layer.padding)
      switches.append(s)
    else:
      x = layer.forward(x)
  return Forward(x, tuple(switches), tuple(in_shapes))


def _check_channels(channel: Any, num_channels: int) -> None:
  try:
    values = np.asarray(channel)
  except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
    return  # traced under jit: checked by the caller that knew the values
  bad = values[(values < 0) | (values >= num_channels)]
  if bad.size:
    raise ValueError(f'channel(s) {sorted(set(bad.tolist()))} out of range; the layer has '
                     f'{num_channels} channels.')


def keep_unit(fmap: jax.Array, channel: int | jax.Array, location: Location = 'max') -> jax.Array:
  """``fmap`` with every activation zeroed except the chosen unit's (per image).

  Args:
    fmap: (N, h, w, C) a layer's output.
    channel: an int, or (N,) one channel per image.
    location: ``'max'``, the strongest position of that channel in each image
      (the first on ties); ``'all'``, the whole channel map; or ``(y, x)``.

  Returns:
    (N, h, w, C), zero except ``fmap[n, ..., channel[n]]`` at ``location``.
  """
  n, h, w, c = fmap.shape
  _check_channels(channel, c)
  channel = jnp.broadcast_to(jnp.asarray(channel, jnp.int32), (n,))
  batch = jnp.arange(n)
  maps = fmap[batch, :, :, channel]  # (N, h, w)
  if location == 'all':
    kept = maps
  elif location == 'max':
    best = jnp.argmax(maps.reshape(n, h * w), axis=1)
    kept = jnp.where(jnp.arange(h * w)[None] == best[:, None], maps.reshape(n, -1),
                     jnp.zeros((), maps.dtype)).reshape(n, h, w)
  else:
    y, x = (int(v) for v in location)
    if not (0 <= y < h and 0 <= x < w):
      raise ValueError(f'location {(y, x)} is outside the {h}x{w} map.')
    kept = jnp.zeros_like(maps).at[:, y, x].set(maps[:, y, x])
  return jnp.zeros_like(fmap).at[batch, :, :, channel].set(kept)


def project(chain: Sequence[ChainLayer], fwd: Forward, fmap: jax.Array, *,
            batch_norm: BatchNormRule = 'scale') -> jax.Array:
  """Sends ``fmap`` (N, h, w, c) at the chain's output back to pixel space.

  For each layer in reverse: a max pool is unpooled with ``fwd``'s switches;
  a conv layer rectifies the signal (if a ReLU follows it), multiplies by its
  BatchNorm factor (``batch_norm='scale'``) and applies the transposed filters.

  Returns:
    (N, H, W, C) in the input's (normalised) space.
  """
  if batch_norm not in _BN_RULES:
    raise ValueError(f'unknown batch_norm rule {batch_norm!r}; choose one of {_BN_RULES}.')
  if len(fwd.in_shapes) != len(chain):
    raise ValueError(f'the forward record has {len(fwd.in_shapes)} layers, the chain '
                     f'{len(chain)}; run forward() on this chain.')
  r = fmap
  switches = list(fwd.switches)
  for layer, in_shape in zip(reversed(chain), reversed(fwd.in_shapes)):
    if isinstance(layer, MaxPool):
      r = unpool(r, switches.pop(), in_shape[1:3])
      continue
    if layer.relu:  # Z&F: rectify the backward signal itself, not gated by the forward
      r = jax.nn.relu(r)
    if layer.bn is not None and batch_norm == 'scale':
      r = r * layer.bn_scale().astype(r.dtype)
    r = layer.transpose(r, in_shape)
  return r


def deconvnet(chain: Sequence[ChainLayer], x: jax.Array, channel: int | jax.Array, *,
              location: Location = 'max', batch_norm: BatchNormRule = 'scale') -> jax.Array:
  """Projects unit ``channel`` of the chain's output back to the input, per image.

  Pure and jit-able (``location`` and ``batch_norm`` static).

  Args:
    chain: e.g. from :func:`read_chain`.
    x: (N, H, W, C) model inputs.
    channel: int or (N,) channel of the last layer, per image.
    location: see :func:`keep_unit`.

  Returns:
    (N, H, W, C) projections.
  """
  fwd = forward(chain, x)
  return project(chain, fwd, keep_unit(fwd.output, channel, location), batch_norm=batch_norm)


# --------------------------------------------------------------------------- reading a model

@dataclasses.dataclass(frozen=True)
class _Call:
  name: str
  spec: blocks.Spec
  variables: dict
  input: np.ndarray
  output: np.ndarray


class _Reached(Exception):
  """Stops the model's forward pass at the named layer (the rest is not needed)."""


def _record(model: nn.Module, variables: Any, layer: str, x: jax.Array,
            call_kwargs: dict) -> list[_Call]:
  """Each :mod:`cnn_jax.nn` layer's spec, variables, input and output, up to ``layer``."""
  static: list[tuple[str, blocks.Spec]] = []  # filled while tracing (names and specs)

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if context.method_name != '__call__' or not isinstance(module, Block):
      return next_fun(*args, **kwargs)
    out = next_fun(*args, **kwargs)
    name = '/'.join(module.path)
    static.append((name, module.spec()))
    arrays.append((dict(module.variables), args[0], out))
    if name == layer:
      raise _Reached
    return out

  def run(variables, x):
    # One compiled program instead of op-by-op dispatch; the exception stops
    # tracing at ``layer``, so the layers after it (a large head) cost nothing.
    # ``run`` is a new function at every call, so jit always traces it and
    # ``static`` is always filled.
    arrays.clear()
    static.clear()
    try:
      with nn.intercept_methods(interceptor):
        model.apply(variables, x, **call_kwargs)
    except _Reached:
      pass
    return list(arrays)

  arrays: list = []
  call_kwargs.setdefault('train', False)
  recorded = jax.device_get(jax.jit(run)(variables, jnp.asarray(x)))
  if not static or static[-1][0] != layer:
    raise ValueError(f'no layer {layer!r} in {type(model).__name__}; its layers are '
                     f'{[name for name, _ in static]}.')
  return [_Call(name, spec, vs, np.asarray(inp), np.asarray(out))
          for (name, spec), (vs, inp, out) in zip(static, recorded)]


def _same(a: np.ndarray, b: np.ndarray) -> bool:
  return a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-6)


def _pool_candidates(in_hw: Sequence[int], out_hw: Sequence[int]) -> list[MaxPool]:
  """Max pools (windows 2-4, stride <= window, pads <= window // 2) mapping in_hw to out_hw.

  Non-overlapping unpadded pools come first (the zoo's usual 2x2/2).
  """
  found = []
  for k in (2, 3, 4):
    for s in range(1, k + 1):
      per_axis = []
      for n, m in zip(in_hw, out_hw):
        pads = [(lo, hi) for lo in range(k // 2 + 1) for hi in range(k // 2 + 1)
                if n + lo + hi >= k and (n + lo + hi - k) // s + 1 == m]
        per_axis.append(sorted(pads, key=lambda p: (p[0] + p[1], p[1])))
      found += [MaxPool((k, k), (s, s), (ph, pw)) for ph, pw in itertools.product(*per_axis)]
  return sorted(found, key=lambda p: (p.window != p.stride, sum(map(sum, p.padding)),
                                      p.window))


def _numpy_max_pool(z: np.ndarray, p: MaxPool) -> np.ndarray:
  """``pool.max_pool`` in numpy (a max is exact): no compilation per candidate."""
  zp = np.pad(z, ((0, 0), *p.padding, (0, 0)), constant_values=-np.inf)
  win = np.lib.stride_tricks.sliding_window_view(zp, p.window, axis=(1, 2))
  return win[:, ::p.stride[0], ::p.stride[1]].max(axis=(-2, -1))


def _infer_gap(y: np.ndarray, x_next: np.ndarray,
               relu_options: Sequence[bool]) -> tuple[bool, MaxPool | None] | None:
  """``(relu, pool)`` with ``x_next == pool(relu(y))`` exactly on the data, or None."""
  for relu in relu_options:
    z = np.maximum(y, 0) if relu else y
    if _same(z, x_next):
      return relu, None
    if z.ndim != 4 or x_next.ndim != 4 or z.shape[-1] != x_next.shape[-1]:
      continue
    for cand in _pool_candidates(z.shape[1:3], x_next.shape[1:3]):
      if _same(_numpy_max_pool(z, cand), x_next):
        return relu, cand
  return None


def read_chain(model: nn.Module, variables: Any, layer: str, x: jax.Array,
               **call_kwargs: Any) -> tuple[ChainLayer, ...]:
  """The conv/pool chain of ``model`` from its input up to layer ``layer`` (included).

  Args:
    model, variables: a Linen model built from :mod:`cnn_jax.nn` layers.
    layer: a module path (as :func:`cnn_jax.models.introspect.activations`).
    x: (N, H, W, C) inputs; the pools between layers are confirmed on them
      (and the model runs only up to ``layer``).
    **call_kwargs: for ``model.__call__`` (``train`` defaults to False).

  Returns:
    :class:`ConvLayer` and :class:`MaxPool` items in forward order.

  Raises:
    ValueError: a layer before ``layer`` is not a conv, BatchNorm or ReLU /
      max pool (residual blocks, Inception, Dense, tanh, average pooling), or
      ``layer`` does not exist.
  """
  model_name = type(model).__name__
  calls = _record(model, variables, layer, x, call_kwargs)
  chain: list[ChainLayer] = []
  prev = np.asarray(x)
  for call in calls:
    spec = call.spec
    if isinstance(spec, blocks.BatchNorm):
      # Only a BatchNorm directly on a conv's output (VGG-BN): folded into that conv.
      last = chain[-1] if chain else None
      if not (isinstance(last, ConvLayer) and last.bn is None and not last.relu
              and _same(prev, call.input)):
        raise ValueError(f'{model_name} is not a plain chain up to {layer!r}: BatchNorm '
                         f'{call.name!r} does not directly follow a conv; {_PLAIN}.')
      chain[-1] = dataclasses.replace(last, bn=spec, bn_params=call.variables.get('params', {}),
                                      bn_state=call.variables.get('batch_stats', {}))
      prev = call.output
      continue
    # ReLU can only follow a conv without one; the first layer sees the image itself.
    last = chain[-1] if chain else None
    relu_options = (True, False) if isinstance(last, ConvLayer) and not last.relu else (False,)
    gap = _infer_gap(prev, call.input, relu_options)
    if gap is None:
      raise ValueError(f'{model_name} is not a plain chain up to {layer!r}: the input of '
                       f'{call.name!r} is not a ReLU and/or max pool of the previous output; '
                       f'{_PLAIN}.')
    relu, found_pool = gap
    if relu:
      chain[-1] = dataclasses.replace(last, relu=True)
    if found_pool is not None:
      chain.append(found_pool)
    params, state = call.variables.get('params', {}), call.variables.get('batch_stats', {})
    if type(spec) is blocks.Conv:
      chain.append(ConvLayer(call.name, spec, params))
    elif type(spec) is blocks.ConvBN:
      if spec.act not in (None, jax.nn.relu):
        raise ValueError(f'{model_name}: {call.name!r} uses activation {spec.act!r}, not a '
                         f'ReLU; {_PLAIN}.')
      # ConvBN's own conv and BatchNorm specs, so the forward is the module's.
      chain.append(ConvLayer(call.name, spec._conv(), params['conv'], spec._bn(),
                             params.get('bn', {}), state['bn'], relu=spec.act is not None))
    else:
      raise ValueError(f'{model_name} is not a plain chain up to {layer!r}: {call.name!r} is '
                       f'a {type(spec).__name__}; {_PLAIN}.')
    prev = call.output
  ours = np.asarray(jax.jit(lambda v: forward(chain, v).output)(jnp.asarray(x)))
  if not (ours.shape == prev.shape and
          np.allclose(ours, prev, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(prev).max())))):
    raise ValueError(f'the chain read from {model_name} does not reproduce the output of '
                     f'{layer!r}; {_PLAIN}.')
  return tuple(chain)


def project_units(model: nn.Module, variables: Any, x: np.ndarray | jax.Array, layer: str,
                  channels: Sequence[int], *, location: Location = 'max',
                  batch_norm: BatchNormRule = 'scale',
                  chain: Sequence[ChainLayer] | None = None) -> np.ndarray:
  """Deconvnet projections of ``channels`` of ``layer`` for every image.

  Args:
    model, variables: the network; ``chain`` (from :func:`read_chain`) skips the reading.
    x: (N, H, W, C) model inputs.
    layer: module path; ``channels``: K channels of it.
    location, batch_norm: see :func:`keep_unit` and :func:`project`.

  Returns:
    (N, K, H, W, C) numpy projections.
  """
  x = jnp.asarray(x)
  chain = tuple(chain) if chain is not None else read_chain(model, variables, layer, x)
  channels = np.asarray(channels, np.int32).reshape(-1)
  # Checked here, where the values are known (under jit keep_unit sees tracers).
  _check_channels(channels, jax.eval_shape(lambda v: forward(chain, v).output, x).shape[-1])
  n, k = x.shape[0], len(channels)
  fn = jax.jit(lambda xs, cs: deconvnet(chain, xs, cs, location=location,
                                        batch_norm=batch_norm))
  out = fn(jnp.repeat(x, k, axis=0), jnp.asarray(np.tile(channels, n)))
  return np.asarray(out).reshape(n, k, *x.shape[1:])
