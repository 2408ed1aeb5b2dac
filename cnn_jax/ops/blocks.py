"""CNN building blocks, each defined once: its hyperparameters, init and apply in one class.

A block is a frozen dataclass (a "spec"): its fields are the hyperparameters
and two pure methods use them::

    spec = BasicBlock(features=32, strides=2, shortcut='A')
    params, state = spec.init(key, c_in)                    # plain dicts
    y, new_state = spec.apply(params, state, x, train=True)  # (N, H, W, c_in) -> ...

``state`` holds BatchNorm running statistics (``{}`` for stateless blocks) and
is returned updated instead of mutated, so both methods stay pure under
``jit``/``grad``/``pmap``. A spec is hashable, so it can be a static argument.

The same spec is the Flax Linen module (:mod:`cnn_jax.nn`: one generic adapter
gives the module exactly these fields) and the composable layer
(:func:`cnn_jax.ops.compose.from_spec`), so adding a block option is one edit:
a field here, used by ``init``/``apply``, appears in both.

Dtype policy (fields of :class:`Spec`): parameters and BatchNorm statistics
are created in ``param_dtype`` (float32); ``apply`` casts the input to
``dtype`` when set and the parameters to the activation dtype before each
contraction, so bfloat16 runs the convolutions in bfloat16 while the
BatchNorm statistics stay float32 (:func:`cnn_jax.ops.norm.batch_norm`).
Convolutions pad ``k // 2`` on every side by default (PyTorch's convention),
which keeps torchvision weights numerically faithful when loaded.
``axis_name`` (under ``pmap``/``shard_map``) makes BatchNorm average its batch
statistics over that device axis.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax.ops import conv as conv_ops
from cnn_jax.ops import pool
from cnn_jax.ops.conv import Impl
from cnn_jax.ops.norm import batch_norm, batch_norm_init

Tree = dict
Dtype = Any
SHORTCUTS = ('A', 'B')

_he_normal = jax.nn.initializers.he_normal()
_lecun_normal = jax.nn.initializers.lecun_normal()


def cast(x: jax.Array, dtype: Dtype | None) -> jax.Array:
  """``x`` in the compute ``dtype``; ``None`` keeps ``x``'s."""
  return x if dtype is None else x.astype(dtype)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Spec:
  """Base of every block: the dtype policy, and the two methods a block defines.

  Attributes:
    dtype: compute dtype (e.g. ``jnp.bfloat16``); ``None`` keeps the input's.
    param_dtype: dtype of the parameters and BatchNorm statistics.
  """
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  def init(self, key: jax.Array, c_in: int) -> tuple[Tree, Tree]:
    """``(params, state)`` for an input with ``c_in`` channels (last axis)."""
    raise NotImplementedError

  def apply(self, params: Tree, state: Tree, x: jax.Array, *,
            train: bool) -> tuple[jax.Array, Tree]:
    """``(y, new_state)``; ``new_state`` differs from ``state`` only when ``train``."""
    raise NotImplementedError


# --------------------------------------------------------------------------- units

@dataclasses.dataclass(frozen=True)
class Conv(Spec):
  """Convolution, (N, H, W, C_in) -> (N, H', W', features).

  ``kernel_size`` k or (kh, kw) (Inception-v3's 1x7 and 7x1); ``padding=None``
  pads ``dilation * (k // 2)`` per axis. Params ``{'kernel': (kh, kw,
  C_in // groups, features)[, 'bias': (features,)]}``: He-normal kernel (or
  normal with ``kernel_std``, as torchvision's detection heads' 0.01), zero
  bias; no state.
  """
  features: int
  kernel_size: int | tuple[int, int] = 3
  strides: int = 1
  padding: Any = None
  use_bias: bool = True
  groups: int = 1
  dilation: int = 1
  conv_impl: Impl = dataclasses.field(default='lax', kw_only=True)
  kernel_std: float | None = dataclasses.field(default=None, kw_only=True)

  def init(self, key: jax.Array, c_in: int) -> tuple[Tree, Tree]:
    kh, kw = (self.kernel_size,) * 2 if isinstance(self.kernel_size, int) else self.kernel_size
    shape = (kh, kw, c_in // self.groups, self.features)
    return _with_bias({'kernel': _kernel_init(self, _he_normal)(key, shape, self.param_dtype)},
                      self), {}

  def apply(self, params: Tree, state: Tree, x: jax.Array, *,
            train: bool = False) -> tuple[jax.Array, Tree]:
    x = cast(x, self.dtype)
    w = params['kernel'].astype(x.dtype)
    # From the kernel passed, not kernel_size: loaded weights decide the padding.
    padding = (tuple((self.dilation * (k // 2),) * 2 for k in w.shape[:2])
               if self.padding is None else self.padding)
    y = conv_ops.conv2d(x, w, params.get('bias'), stride=self.strides, padding=padding,
                        dilation=self.dilation, groups=self.groups, impl=self.conv_impl)
    return y, state


def _kernel_init(spec: Conv | Dense, default: Callable) -> Callable:
  if spec.kernel_std is None:
    return default
  return jax.nn.initializers.normal(spec.kernel_std)


def _with_bias(params: Tree, spec: Conv | Dense) -> Tree:
  """``params`` plus a zero ``bias`` of ``spec.features`` when ``spec.use_bias``."""
  if spec.use_bias:
    return {**params, 'bias': jnp.zeros((spec.features,), spec.param_dtype)}
  return params


@dataclasses.dataclass(frozen=True)
class Dense(Spec):
  """(..., d_in) -> (..., features); params ``{'kernel': (d_in, features)[, 'bias']}``.

  LeCun-normal kernel (or normal with ``kernel_std``), zero bias; no state.

  ``window=(h, w)``: the layer after a flatten of (N, h, w, C) maps, applied as
  the equivalent VALID convolution (:func:`.conv.dense_as_conv`, OverFeat's
  trick), so (N, H, W, C) -> (N, H - h + 1, W - w + 1, features): one output per
  h x w window. Same parameters (``d_in = h * w * C``); at H, W = h, w it is the
  dense layer of the flattened input.
  """
  features: int
  use_bias: bool = True
  kernel_std: float | None = dataclasses.field(default=None, kw_only=True)
  window: tuple[int, int] | None = dataclasses.field(default=None, kw_only=True)
  conv_impl: Impl = dataclasses.field(default='lax', kw_only=True)

  def init(self, key: jax.Array, c_in: int) -> tuple[Tree, Tree]:
    init = _kernel_init(self, _lecun_normal)
    d_in = c_in * (self.window[0] * self.window[1] if self.window else 1)
    return _with_bias({'kernel': init(key, (d_in, self.features), self.param_dtype)}, self), {}

  def apply(self, params: Tree, state: Tree, x: jax.Array, *,
            train: bool = False) -> tuple[jax.Array, Tree]:
    x = cast(x, self.dtype)
    w = params['kernel'].astype(x.dtype)
    if self.window:
      y = conv_ops.conv2d(x, conv_ops.dense_as_conv(w, (*self.window, x.shape[-1])),
                          params.get('bias'), impl=self.conv_impl)
      return y, state
    y = x @ w
    if 'bias' in params:
      y = y + params['bias'].astype(x.dtype)
    return y, state


@dataclasses.dataclass(frozen=True)
class BatchNorm(Spec):
  """BatchNorm over all axes but the last, (..., C) -> (..., C) (:func:`.norm.batch_norm`).

  Params ``{'scale', 'bias'}`` and state ``{'mean', 'var'}``, each (C,).
  ``momentum=0.9`` is PyTorch's ``momentum=0.1``.

  ``frozen=True`` is torchvision's ``FrozenBatchNorm2d`` (the detection
  backbones'): a fixed affine map from the running statistics, in training
  too. Its scale and bias are then state, not params (torchvision keeps them
  as buffers), so they get no gradient, no weight decay and are not counted
  as parameters.
  """
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: str | None = None
  frozen: bool = False

  def init(self, key: jax.Array, c_in: int) -> tuple[Tree, Tree]:
    del key  # identity transform: nothing random
    params, state = batch_norm_init(c_in, self.param_dtype)
    return ({}, {**params, **state}) if self.frozen else (params, state)

  def apply(self, params: Tree, state: Tree, x: jax.Array, *,
            train: bool) -> tuple[jax.Array, Tree]:
    if self.frozen:
      affine = {'scale': state['scale'], 'bias': state['bias']}
      y, _ = batch_norm(affine, {'mean': state['mean'], 'var': state['var']},
                        cast(x, self.dtype), train=False, eps=self.epsilon)
      return y, state
    return batch_norm(params, state, cast(x, self.dtype), train=train, momentum=self.momentum,
                      eps=self.epsilon, axis_name=self.axis_name)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ConvBlock(Spec):
  """Base of the blocks made of conv-BN units; its fields reach every unit.

  Attributes:
    conv_impl: ``'lax'`` or a from-scratch ``'einsum'`` convolution.
    axis_name: device axis BatchNorm averages its statistics over, or None.
    frozen_bn: every BatchNorm is frozen (:class:`BatchNorm` ``frozen``).
  """
  conv_impl: Impl = 'lax'
  axis_name: str | None = None
  frozen_bn: bool = False

  def _conv_bn(self, features: int, kernel_size: int, strides: int = 1, padding: Any = None,
               act: Callable | None = None, bn_eps: float = 1e-5) -> ConvBN:
    """A unit sharing this block's dtypes, conv_impl and axis_name."""
    shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(ConvBlock)}
    return ConvBN(features, kernel_size, strides, padding, act, bn_eps, **shared)


@dataclasses.dataclass(frozen=True)
class ConvBN(ConvBlock):
  """Bias-free conv -> BatchNorm -> optional ``act``, (N, H, W, C_in) -> (N, H', W', features).

  Params ``{'conv': {'kernel'}, 'bn': {'scale', 'bias'}}``, state ``{'bn':
  {'mean', 'var'}}``.
  """
  features: int
  kernel_size: int | tuple[int, int] = 3
  strides: int = 1
  padding: Any = None
  act: Callable | None = jax.nn.relu
  bn_eps: float = 1e-5

  def _conv(self) -> Conv:
    return Conv(self.features, self.kernel_size, self.strides, self.padding, use_bias=False,
                conv_impl=self.conv_impl, dtype=self.dtype, param_dtype=self.param_dtype)

  def _bn(self) -> BatchNorm:
    return BatchNorm(epsilon=self.bn_eps, axis_name=self.axis_name, frozen=self.frozen_bn,
                     param_dtype=self.param_dtype)

  def init(self, key: jax.Array, c_in: int) -> tuple[Tree, Tree]:
    conv, _ = self._conv().init(key, c_in)
    bn, bn_state = self._bn().init(key, self.features)
    return {'conv': conv, **({'bn': bn} if bn else {})}, {'bn': bn_state}

  def apply(self, params: Tree, state: Tree, x: jax.Array, *,
            train: bool) -> tuple[jax.Array, Tree]:
    y, _ = self._conv().apply(params['conv'], {}, x)
    y, bn_state = self._bn().apply(params.get('bn', {}), state['bn'], y, train=train)
    return (self.act(y) if self.act is not None else y), {'bn': bn_state}


def _flatten_units(units: list[tuple[Tree, Tree]]) -> tuple[Tree, Tree]:
  """ConvBN variables -> torchvision's flat ``{'conv1', 'bn1', ...}`` and ``{'bn1', ...}``."""
  params, state = {}, {}
  for i, (p, s) in enumerate(units, 1):
    params[f'conv{i}'], state[f'bn{i}'] = p['conv'], s['bn']
    if 'bn' in p:  # a frozen BatchNorm has no params
      params[f'bn{i}'] = p['bn']
  return params, state


def _unit_vars(params: Tree, state: Tree, i: int) -> tuple[Tree, Tree]:
  """The inverse of :func:`_flatten_units` for unit ``i`` (from 1)."""
  bn = {'bn': params[f'bn{i}']} if f'bn{i}' in params else {}
  return {'conv': params[f'conv{i}'], **bn}, {'bn': state[f'bn{i}']}


# --------------------------------------------------------------------------- residual

def shortcut_a(x: jax.Array, c_out: int, stride: int) -> jax.Array:
  """He et al.'s option A: strided subsampling plus zero channels, no parameters.

  (N, H, W, C_in) -> (N, ceil(H / s), ceil(W / s), C_out), new channels zero.
  """
  x = x[:, ::stride, ::stride, :]
  extra = c_out - x.shape[-1]
  if extra < 0:
    raise ValueError(f'option A cannot reduce channels ({x.shape[-1]} -> {c_out}); use '
                     "shortcut='B'.")
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra))) if extra else x


@dataclasses.dataclass(frozen=True)
class BasicBlock(ConvBlock):
  """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``, two 3x3 conv-BN units.

  x: (N, H, W, C_in) -> (N, ceil(H / strides), ceil(W / strides), features).
  Params ``{'conv1', 'bn1', 'conv2', 'bn2'[, 'proj': ConvBN's]}``, state
  ``{'bn1', 'bn2'[, 'proj']}``.

  Attributes:
    shortcut: ``'A'``, a parameter-free zero-padding identity; ``'B'``, a 1x1
      conv-BN projection where the shape changes (identity elsewhere);
      ``None``, no shortcut (see :class:`PlainBlock`).
  """
  features: int
  strides: int = 1
  shortcut: str | None = 'B'

  def __post_init__(self):
    if self.shortcut is not None and self.shortcut not in SHORTCUTS:
      raise ValueError(f'unknown shortcut option {self.shortcut!r}; choose one of {SHORTCUTS} '
                       "('A': parameter-free zero-padding identity, 'B': 1x1 projection).")

  def _units(self) -> tuple[ConvBN, ConvBN]:
    return (self._conv_bn(self.features, 3, self.strides, act=jax.nn.relu),
            self._conv_bn(self.features, 3))

  def _projection(self) -> ConvBN:
    return self._conv_bn(self.features, 1, self.strides, padding=0)

  def init(self, key: jax.Array, c_in: int) -> tuple[Tree, Tree]:
    k1, k2, k3 = jax.random.split(key, 3)
    u1, u2 = self._units()
    params, state = _flatten_units([u1.init(k1, c_in), u2.init(k2, self.features)])
    # Option A, and B at an unchanged shape, have no parameters on the shortcut.
    if self.shortcut == 'B' and (self.strides != 1 or c_in != self.features):
      params['proj'], state['proj'] = self._projection().init(k3, c_in)
    return params, state

  def apply(self, params: Tree, state: Tree, x: jax.Array, *,
            train: bool) -> tuple[jax.Array, Tree]:
    x = cast(x, self.dtype)
    u1, u2 = self._units()
    h, s1 = u1.apply(*_unit_vars(params, state, 1), x, train=train)
    h, s2 = u2.apply(*_unit_vars(params, state, 2), h, train=train)
    new_state = {'bn1': s1['bn'], 'bn2': s2['bn']}
    if self.shortcut is not None:
      if 'proj' in params:
        sc, new_state['proj'] = self._projection().apply(params['proj'], state['proj'], x,
                                                         train=train)
      elif self.shortcut == 'A' or (self.strides == 1 and x.shape[-1] == self.features):
        sc = shortcut_a(x, self.features, self.strides)
      else:
        raise ValueError(f'option B needs projection parameters for {x.shape[-1]} -> '
                         f'{self.features} channels at stride {self.strides}; build them with '
                         'init.')
      h = h + sc
    return jax.nn.relu(h), new_state


@dataclasses.dataclass(frozen=True)
class PlainBlock(BasicBlock):
  """``relu(bn2(conv2(relu(bn1(conv1(x))))))``: BasicBlock minus its shortcut.

  He et al.'s plain nets: the same parameters as option A, and every other
  BasicBlock field applies.
  """
  shortcut: str | None = dataclasses.field(default=None, init=False)


# --------------------------------------------------------------------------- bottleneck

@dataclasses.dataclass(frozen=True)
class Bottleneck(ConvBlock):
  """ResNet v1.5 bottleneck: 1x1 (width) -> 3x3 (width, strided, as torchvision) -> 1x1.

  x: (N, H, W, C_in) -> (N, ceil(H / strides), ceil(W / strides), expansion * width),
  with an option B shortcut (1x1 conv-BN projection where the shape changes).
  Params ``{'conv1', 'bn1', ..., 'bn3'[, 'proj']}``, state ``{'bn1', 'bn2', 'bn3'[, 'proj']}``.
  """
  width: int
  strides: int = 1
  expansion: int = 4

  @property
  def c_out(self) -> int:
    return self.expansion * self.width

  def _units(self) -> tuple[ConvBN, ConvBN, ConvBN]:
    return (self._conv_bn(self.width, 1, act=jax.nn.relu),
            self._conv_bn(self.width, 3, self.strides, act=jax.nn.relu),
            self._conv_bn(self.c_out, 1))

  def _projection(self) -> ConvBN:
    return self._conv_bn(self.c_out, 1, self.strides, padding=0)

  def init(self, key: jax.Array, c_in: int) -> tuple[Tree, Tree]:
    ks = jax.random.split(key, 4)
    params, state = _flatten_units([u.init(k, ci) for u, k, ci in zip(
        self._units(), ks, (c_in, self.width, self.width))])
    if self.strides != 1 or c_in != self.c_out:
      params['proj'], state['proj'] = self._projection().init(ks[3], c_in)
    return params, state

  def apply(self, params: Tree, state: Tree, x: jax.Array, *,
            train: bool) -> tuple[jax.Array, Tree]:
    x = cast(x, self.dtype)
    h, new_state = x, {}
    for i, unit in enumerate(self._units(), 1):
      h, s = unit.apply(*_unit_vars(params, state, i), h, train=train)
      new_state[f'bn{i}'] = s['bn']
    if 'proj' in params:
      sc, new_state['proj'] = self._projection().apply(params['proj'], state['proj'], x,
                                                       train=train)
    else:
      sc = x
    return jax.nn.relu(h + sc), new_state


# --------------------------------------------------------------------------- inception

@dataclasses.dataclass(frozen=True)
class Inception(ConvBlock):
  """GoogLeNet's module: 1x1 | 1x1->3x3 | 1x1->kxk | maxpool3x3->1x1, concatenated.

  x: (N, H, W, C_in) -> (N, H, W, c1 + c3 + c5 + pool_proj). Every conv is a
  conv-BN-ReLU unit, params and state ``{'b1', 'b2_reduce', 'b2', 'b3_reduce',
  'b3', 'b4'}`` of ConvBN's (torchvision's layout).

  Attributes:
    c5_kernel: the "5x5" branch's kernel; 3 reproduces torchvision's GoogLeNet.
  """
  c1: int
  c3_reduce: int
  c3: int
  c5_reduce: int
  c5: int
  pool_proj: int
  c5_kernel: int = 5
  bn_eps: float = 1e-3

  def _units(self) -> dict[str, ConvBN]:
    unit = lambda features, kernel: self._conv_bn(features, kernel, act=jax.nn.relu,
                                                  bn_eps=self.bn_eps)
    return {'b1': unit(self.c1, 1), 'b2_reduce': unit(self.c3_reduce, 1),
            'b2': unit(self.c3, 3), 'b3_reduce': unit(self.c5_reduce, 1),
            'b3': unit(self.c5, self.c5_kernel), 'b4': unit(self.pool_proj, 1)}

  def init(self, key: jax.Array, c_in: int) -> tuple[Tree, Tree]:
    c_ins = {'b1': c_in, 'b2_reduce': c_in, 'b2': self.c3_reduce, 'b3_reduce': c_in,
             'b3': self.c5_reduce, 'b4': c_in}
    params, state = {}, {}
    for k, (name, unit) in zip(jax.random.split(key, 6), self._units().items()):
      params[name], state[name] = unit.init(k, c_ins[name])
    return params, state

  def apply(self, params: Tree, state: Tree, x: jax.Array, *,
            train: bool) -> tuple[jax.Array, Tree]:
    x = cast(x, self.dtype)
    units, new_state = self._units(), {}

    def run(name, h):
      y, new_state[name] = units[name].apply(params[name], state[name], h, train=train)
      return y

    b1 = run('b1', x)
    b2 = run('b2', run('b2_reduce', x))
    b3 = run('b3', run('b3_reduce', x))
    b4 = run('b4', pool.max_pool(x, 3, stride=1, padding=1))
    return jnp.concatenate([b1, b2, b3, b4], axis=-1), new_state


# --------------------------------------------------------------------------- functional

def conv_init(key: jax.Array, kernel: int, c_in: int, c_out: int, *, bias: bool = False,
              groups: int = 1, dtype=jnp.float32) -> Tree:
  """:class:`Conv`'s params as a function (one-off convolutions, weight ports)."""
  return Conv(c_out, kernel, use_bias=bias, groups=groups, param_dtype=dtype).init(key, c_in)[0]


def conv(params: Tree, x: jax.Array, *, stride: int = 1, padding=None, dilation: int = 1,
         groups: int = 1, impl: Impl = 'lax') -> jax.Array:
  """:class:`Conv` on explicit ``params`` (its size and bias read from them); pads ``k // 2``."""
  w = params['kernel']
  spec = Conv(w.shape[-1], w.shape[0], stride, padding, 'bias' in params, groups, dilation,
              conv_impl=impl)
  return spec.apply(params, {}, x)[0]
