"""Residual, plain, bottleneck and inception blocks as Linen modules.

Each is its spec of :mod:`cnn_jax.ops.blocks` (read the block there) through
the one adapter :class:`cnn_jax.nn.layers.Block`: same fields, same variables.
"""

from __future__ import annotations

from cnn_jax.nn.layers import Block
from cnn_jax.ops import blocks


class BasicBlock(Block, spec=blocks.BasicBlock):
  pass


class PlainBlock(Block, spec=blocks.PlainBlock):
  pass


class Bottleneck(Block, spec=blocks.Bottleneck):
  pass


class Inception(Block, spec=blocks.Inception):
  pass
