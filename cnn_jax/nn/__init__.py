"""Flax Linen modules: the specs of ``cnn_jax.ops.blocks`` through one adapter (``Block``)."""

from cnn_jax.nn.blocks import BasicBlock, Bottleneck, Inception, PlainBlock
from cnn_jax.nn.layers import BatchNorm, Block, Conv, ConvBN, Dense, cast
from cnn_jax.nn.variables import declare, read_state, update_state
