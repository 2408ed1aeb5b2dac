"""Residual, plain, bottleneck and inception blocks as thin Linen wrappers.

Each wrapper only names the pure functions of :mod:`cnn_jax.ops.blocks`; the
variable plumbing lives in :class:`cnn_jax.nn.layers.Block`.
"""

from __future__ import annotations

import functools

from cnn_jax.nn.layers import Block
from cnn_jax.ops import blocks


class BasicBlock(Block):
  """Two 3x3 conv-BN units with a shortcut (option 'A' or 'B'), (N,H,W,C) -> (N,H/s,W/s,F)."""
  features: int = 0
  strides: int = 1
  shortcut: str = 'B'

  def pure(self, c_in):
    init = functools.partial(blocks.residual_block_init, c_in=c_in, c_out=self.features,
                             stride=self.strides, shortcut=self.shortcut,
                             dtype=self.param_dtype)
    apply = lambda p, s, x, train: blocks.residual_block(
        p, s, x, train=train, stride=self.strides, shortcut=self.shortcut,
        impl=self.conv_impl, axis_name=self.axis_name)
    return init, apply


class PlainBlock(Block):
  """BasicBlock without the shortcut (same parameters as option A)."""
  features: int = 0
  strides: int = 1

  def pure(self, c_in):
    init = functools.partial(blocks.plain_block_init, c_in=c_in, c_out=self.features,
                             stride=self.strides, dtype=self.param_dtype)
    apply = lambda p, s, x, train: blocks.plain_block(
        p, s, x, train=train, stride=self.strides, impl=self.conv_impl,
        axis_name=self.axis_name)
    return init, apply


class Bottleneck(Block):
  """1x1 -> 3x3 (strided) -> 1x1 with 4x expansion and a projection shortcut."""
  width: int = 0
  strides: int = 1
  expansion: int = 4

  def pure(self, c_in):
    init = functools.partial(blocks.bottleneck_block_init, c_in=c_in, width=self.width,
                             stride=self.strides, expansion=self.expansion,
                             dtype=self.param_dtype)
    apply = lambda p, s, x, train: blocks.bottleneck_block(
        p, s, x, train=train, stride=self.strides, impl=self.conv_impl,
        axis_name=self.axis_name)
    return init, apply


class Inception(Block):
  """GoogLeNet module: 1x1 | 1x1->3x3 | 1x1->kxk | pool->1x1, concatenated."""
  c1: int = 0
  c3_reduce: int = 0
  c3: int = 0
  c5_reduce: int = 0
  c5: int = 0
  pool_proj: int = 0
  c5_kernel: int = 5
  bn_eps: float = 1e-3

  def pure(self, c_in):
    init = functools.partial(blocks.inception_block_init, c_in=c_in, c1=self.c1,
                             c3_reduce=self.c3_reduce, c3=self.c3, c5_reduce=self.c5_reduce,
                             c5=self.c5, pool_proj=self.pool_proj, c5_kernel=self.c5_kernel,
                             dtype=self.param_dtype)
    apply = lambda p, s, x, train: blocks.inception_block(
        p, s, x, train=train, impl=self.conv_impl, bn_eps=self.bn_eps,
        axis_name=self.axis_name)
    return init, apply
