"""Flax Linen layers that are thin wrappers over :mod:`cnn_jax.ops`.

Dtype policy, shared by every module here and in :mod:`cnn_jax.nn.blocks`:
parameters are created in ``param_dtype`` (float32); if ``dtype`` is set the
input is cast to it and the computation runs in it (e.g. ``jnp.bfloat16``),
otherwise in the input's dtype. ``conv_impl`` picks ``'lax'`` or the
from-scratch ``'einsum'`` convolution.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.ops import blocks, norm
from cnn_jax.nn.variables import declare, read_state, update_state

Dtype = Any


def cast(x: jax.Array, dtype: Dtype | None) -> jax.Array:
  return x if dtype is None else x.astype(dtype)


class Conv(nn.Module):
  """Convolution, (N, H, W, C_in) -> (N, H', W', features); pads ``k // 2`` by default."""
  features: int
  kernel_size: int = 3
  strides: int = 1
  padding: Any = None
  use_bias: bool = True
  groups: int = 1
  conv_impl: str = 'lax'
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    params, _ = declare(self, lambda key: (blocks.conv_init(
        key, self.kernel_size, x.shape[-1], self.features, bias=self.use_bias,
        groups=self.groups, dtype=self.param_dtype), {}))
    return blocks.conv(params, cast(x, self.dtype), stride=self.strides, padding=self.padding,
                       groups=self.groups, impl=self.conv_impl)


class Dense(nn.Module):
  """(..., d_in) -> (..., features)."""
  features: int
  use_bias: bool = True
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    params, _ = declare(self, lambda key: (blocks.dense_init(
        key, x.shape[-1], self.features, bias=self.use_bias, dtype=self.param_dtype), {}))
    return blocks.dense(params, cast(x, self.dtype))


class BatchNorm(nn.Module):
  """BatchNorm over all but the channel axis; running stats in ``batch_stats``."""
  momentum: float = 0.9
  epsilon: float = 1e-5
  axis_name: str | None = None
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    params, state = declare(self, lambda key: norm.batch_norm_init(x.shape[-1],
                                                                   self.param_dtype))
    y, new_state = norm.batch_norm(params, read_state(state), x, train=train,
                                   momentum=self.momentum, eps=self.epsilon,
                                   axis_name=self.axis_name)
    update_state(self, state, new_state, train)
    return y


class Block(nn.Module):
  """Base of every wrapper around a pure ``(init, apply)`` block of :mod:`cnn_jax.ops.blocks`.

  Subclasses say how to build the pure pair for a given input channel count;
  this class declares the variables, casts to the compute dtype, calls the
  pure function and stores the new BatchNorm statistics.
  """
  conv_impl: str = 'lax'
  dtype: Dtype | None = None
  param_dtype: Dtype = jnp.float32
  axis_name: str | None = None

  def pure(self, c_in: int) -> tuple[Callable, Callable]:
    """Returns ``(init(key) -> (params, state), apply(params, state, x, train))``."""
    raise NotImplementedError

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    init, apply = self.pure(x.shape[-1])
    params, state = declare(self, init)
    y, new_state = apply(params, read_state(state), cast(x, self.dtype), train)
    update_state(self, state, new_state, train)
    return y


class ConvBN(Block):
  """Bias-free conv -> BatchNorm -> optional activation (``act``)."""
  features: int = 0
  kernel_size: int = 3
  strides: int = 1
  padding: Any = None
  act: Callable | None = jax.nn.relu
  bn_eps: float = 1e-5

  def pure(self, c_in):
    init = functools.partial(blocks.conv_bn_init, kernel=self.kernel_size, c_in=c_in,
                             c_out=self.features, dtype=self.param_dtype)
    apply = lambda p, s, x, train: blocks.conv_bn(
        p, s, x, train=train, stride=self.strides, padding=self.padding, act=self.act,
        impl=self.conv_impl, bn_eps=self.bn_eps, axis_name=self.axis_name)
    return init, apply
