"""CNN building blocks written once, as pure functions over explicit pytrees.

Every block comes as a pair:

* ``<block>_init(key, ...) -> (params, state)``: trainable parameters and
  non-trainable state (BatchNorm running statistics), both plain dicts.
* ``<block>(params, state, x, *, train, impl, ...) -> (y, new_state)``.

The Flax modules in :mod:`cnn_jax.nn` and the combinators in
:mod:`cnn_jax.ops.compose` both call these functions, so the math of a
residual, plain, bottleneck or inception block exists in exactly one place.

Dtype policy: parameters are stored in their init dtype (float32); each
function casts them to the activation dtype before the contraction, so a
bfloat16 input runs the convolutions in bfloat16 while BatchNorm statistics
stay in float32 (see :func:`cnn_jax.ops.norm.batch_norm`). Convolutions pad
``k // 2`` on every side (PyTorch's convention), which keeps torchvision
weights numerically faithful when loaded.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from cnn_jax.ops import conv as conv_ops
from cnn_jax.ops import pool
from cnn_jax.ops.conv import Impl
from cnn_jax.ops.norm import batch_norm, batch_norm_init

Tree = dict
SHORTCUTS = ('A', 'B')

_he_normal = jax.nn.initializers.he_normal()
_lecun_normal = jax.nn.initializers.lecun_normal()


# --------------------------------------------------------------------------- units

def conv_init(key: jax.Array, kernel: int, c_in: int, c_out: int, *, bias: bool = False,
              groups: int = 1, dtype=jnp.float32) -> Tree:
  """``{'kernel': (k, k, c_in // groups, c_out)[, 'bias': (c_out,)]}``, He-normal init."""
  p = {'kernel': _he_normal(key, (kernel, kernel, c_in // groups, c_out), dtype)}
  if bias:
    p['bias'] = jnp.zeros((c_out,), dtype)
  return p


def conv(params: Tree, x: jax.Array, *, stride: int = 1, padding=None, dilation: int = 1,
         groups: int = 1, impl: Impl = 'lax') -> jax.Array:
  """Convolution with parameters from :func:`conv_init`; pads ``k // 2`` by default."""
  w = params['kernel'].astype(x.dtype)
  if padding is None:
    padding = dilation * (w.shape[0] // 2)
  return conv_ops.conv2d(x, w, params.get('bias'), stride=stride, padding=padding,
                         dilation=dilation, groups=groups, impl=impl)


def dense_init(key: jax.Array, d_in: int, d_out: int, *, bias: bool = True,
               dtype=jnp.float32) -> Tree:
  """``{'kernel': (d_in, d_out)[, 'bias': (d_out,)]}``, LeCun-normal init."""
  p = {'kernel': _lecun_normal(key, (d_in, d_out), dtype)}
  if bias:
    p['bias'] = jnp.zeros((d_out,), dtype)
  return p


def dense(params: Tree, x: jax.Array) -> jax.Array:
  """(..., d_in) -> (..., d_out) in ``x``'s dtype."""
  y = x @ params['kernel'].astype(x.dtype)
  if 'bias' in params:
    y = y + params['bias'].astype(x.dtype)
  return y


def conv_bn_init(key: jax.Array, kernel: int, c_in: int, c_out: int,
                 dtype=jnp.float32) -> tuple[Tree, Tree]:
  """Bias-free convolution followed by BatchNorm: ``({'conv', 'bn'}, {'bn'})``."""
  bn_params, bn_state = batch_norm_init(c_out, dtype)
  return {'conv': conv_init(key, kernel, c_in, c_out, dtype=dtype), 'bn': bn_params}, {
      'bn': bn_state}


def conv_bn(params: Tree, state: Tree, x: jax.Array, *, train: bool, stride: int = 1,
            padding=None, act: Callable | None = None, impl: Impl = 'lax',
            bn_eps: float = 1e-5, axis_name: str | None = None) -> tuple[jax.Array, Tree]:
  """conv -> BatchNorm -> optional activation. (N, H, W, C_in) -> (N, H', W', C_out)."""
  y = conv(params['conv'], x, stride=stride, padding=padding, impl=impl)
  y, bn_state = batch_norm(params['bn'], state['bn'], y, train=train, eps=bn_eps,
                           axis_name=axis_name)
  return (act(y) if act is not None else y), {'bn': bn_state}


# --------------------------------------------------------------------------- residual

def _check_shortcut(shortcut: str) -> None:
  if shortcut not in SHORTCUTS:
    raise ValueError(f'unknown shortcut option {shortcut!r}; choose one of {SHORTCUTS} '
                     "('A': parameter-free zero-padding identity, 'B': 1x1 projection).")


def needs_projection(c_in: int, c_out: int, stride: int, shortcut: str, plain: bool) -> bool:
  """Option B projects only when the shape changes; A and plain blocks never do."""
  return not plain and shortcut == 'B' and (stride != 1 or c_in != c_out)


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


def residual_block_init(key: jax.Array, c_in: int, c_out: int, *, stride: int = 1,
                        shortcut: str = 'B', plain: bool = False,
                        dtype=jnp.float32) -> tuple[Tree, Tree]:
  """Parameters of a basic (two 3x3 convs) block; ``plain`` omits any projection."""
  _check_shortcut(shortcut)
  k1, k2, k3 = jax.random.split(key, 3)
  (p1, s1), (p2, s2) = conv_bn_init(k1, 3, c_in, c_out, dtype), conv_bn_init(k2, 3, c_out,
                                                                             c_out, dtype)
  params, state = {'conv1': p1['conv'], 'bn1': p1['bn'], 'conv2': p2['conv'], 'bn2': p2['bn']}, {
      'bn1': s1['bn'], 'bn2': s2['bn']}
  if needs_projection(c_in, c_out, stride, shortcut, plain):
    params['proj'], state['proj'] = conv_bn_init(k3, 1, c_in, c_out, dtype)
  return params, state


def residual_block(params: Tree, state: Tree, x: jax.Array, *, train: bool, stride: int = 1,
                   shortcut: str = 'B', plain: bool = False, impl: Impl = 'lax',
                   axis_name: str | None = None) -> tuple[jax.Array, Tree]:
  """``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``; ``plain`` drops the sum.

  x: (N, H, W, C_in) -> (N, ceil(H / stride), ceil(W / stride), C_out).
  """
  _check_shortcut(shortcut)
  c_out = params['conv1']['kernel'].shape[-1]
  unit = dict(train=train, impl=impl, axis_name=axis_name)
  h, s1 = conv_bn({'conv': params['conv1'], 'bn': params['bn1']}, {'bn': state['bn1']}, x,
                  stride=stride, act=jax.nn.relu, **unit)
  h, s2 = conv_bn({'conv': params['conv2'], 'bn': params['bn2']}, {'bn': state['bn2']}, h,
                  **unit)
  new_state = {'bn1': s1['bn'], 'bn2': s2['bn']}
  if not plain:
    if 'proj' in params:
      sc, new_state['proj'] = conv_bn(params['proj'], state['proj'], x, stride=stride,
                                      padding=0, **unit)
    elif shortcut == 'A' or (stride == 1 and x.shape[-1] == c_out):
      sc = shortcut_a(x, c_out, stride)
    else:
      raise ValueError(f'option B needs projection parameters for {x.shape[-1]} -> {c_out} '
                       f'channels at stride {stride}; build them with residual_block_init.')
    h = h + sc
  return jax.nn.relu(h), new_state


def plain_block_init(key: jax.Array, c_in: int, c_out: int, *, stride: int = 1,
                     dtype=jnp.float32) -> tuple[Tree, Tree]:
  """A residual block's parameters without a shortcut (He et al.'s plain nets)."""
  return residual_block_init(key, c_in, c_out, stride=stride, plain=True, dtype=dtype)


def plain_block(params: Tree, state: Tree, x: jax.Array, *, train: bool, stride: int = 1,
                impl: Impl = 'lax', axis_name: str | None = None) -> tuple[jax.Array, Tree]:
  """``relu(bn2(conv2(relu(bn1(conv1(x))))))``: the residual block minus its shortcut."""
  return residual_block(params, state, x, train=train, stride=stride, plain=True, impl=impl,
                        axis_name=axis_name)


# --------------------------------------------------------------------------- bottleneck

def bottleneck_block_init(key: jax.Array, c_in: int, width: int, *, stride: int = 1,
                          expansion: int = 4, dtype=jnp.float32) -> tuple[Tree, Tree]:
  """1x1 (c_in -> width), 3x3 (width -> width), 1x1 (width -> expansion * width)."""
  c_out = expansion * width
  ks = jax.random.split(key, 4)
  params, state = {}, {}
  for i, (k, ci, co, kernel) in enumerate(
      [(ks[0], c_in, width, 1), (ks[1], width, width, 3), (ks[2], width, c_out, 1)], 1):
    p, s = conv_bn_init(k, kernel, ci, co, dtype)
    params[f'conv{i}'], params[f'bn{i}'], state[f'bn{i}'] = p['conv'], p['bn'], s['bn']
  if needs_projection(c_in, c_out, stride, 'B', plain=False):
    params['proj'], state['proj'] = conv_bn_init(ks[3], 1, c_in, c_out, dtype)
  return params, state


def bottleneck_block(params: Tree, state: Tree, x: jax.Array, *, train: bool, stride: int = 1,
                     impl: Impl = 'lax',
                     axis_name: str | None = None) -> tuple[jax.Array, Tree]:
  """ResNet v1.5 bottleneck (stride on the 3x3, as torchvision) with option B shortcut.

  x: (N, H, W, C_in) -> (N, ceil(H / stride), ceil(W / stride), 4 * width).
  """
  unit = dict(train=train, impl=impl, axis_name=axis_name)
  h, new_state = x, {}
  for i, (s, act) in enumerate([(1, jax.nn.relu), (stride, jax.nn.relu), (1, None)], 1):
    h, st = conv_bn({'conv': params[f'conv{i}'], 'bn': params[f'bn{i}']},
                    {'bn': state[f'bn{i}']}, h, stride=s, act=act, **unit)
    new_state[f'bn{i}'] = st['bn']
  if 'proj' in params:
    sc, new_state['proj'] = conv_bn(params['proj'], state['proj'], x, stride=stride, padding=0,
                                    **unit)
  else:
    sc = x
  return jax.nn.relu(h + sc), new_state


# --------------------------------------------------------------------------- inception

def inception_block_init(key: jax.Array, c_in: int, c1: int, c3_reduce: int, c3: int,
                         c5_reduce: int, c5: int, pool_proj: int, *, c5_kernel: int = 5,
                         dtype=jnp.float32) -> tuple[Tree, Tree]:
  """Four branches of conv-BN-ReLU units (GoogLeNet's module, torchvision layout).

  ``c5_kernel=3`` reproduces torchvision's GoogLeNet, whose "5x5" branch is 3x3.
  """
  ks = jax.random.split(key, 6)
  units = {
      'b1': (ks[0], 1, c_in, c1), 'b2_reduce': (ks[1], 1, c_in, c3_reduce),
      'b2': (ks[2], 3, c3_reduce, c3), 'b3_reduce': (ks[3], 1, c_in, c5_reduce),
      'b3': (ks[4], c5_kernel, c5_reduce, c5), 'b4': (ks[5], 1, c_in, pool_proj),
  }
  params, state = {}, {}
  for name, (k, kernel, ci, co) in units.items():
    params[name], state[name] = conv_bn_init(k, kernel, ci, co, dtype)
  return params, state


def inception_block(params: Tree, state: Tree, x: jax.Array, *, train: bool,
                    impl: Impl = 'lax', bn_eps: float = 1e-3,
                    axis_name: str | None = None) -> tuple[jax.Array, Tree]:
  """1x1 | 1x1->3x3 | 1x1->kxk | maxpool3x3->1x1, concatenated on channels.

  x: (N, H, W, C_in) -> (N, H, W, c1 + c3 + c5 + pool_proj).
  """
  new_state = {}

  def unit(name, h):
    y, new_state[name] = conv_bn(params[name], state[name], h, train=train, act=jax.nn.relu,
                                 impl=impl, bn_eps=bn_eps, axis_name=axis_name)
    return y

  b1 = unit('b1', x)
  b2 = unit('b2', unit('b2_reduce', x))
  b3 = unit('b3', unit('b3_reduce', x))
  b4 = unit('b4', pool.max_pool(x, 3, stride=1, padding=1))
  return jnp.concatenate([b1, b2, b3, b4], axis=-1), new_state
