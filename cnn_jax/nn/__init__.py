"""Flax Linen modules: thin wrappers that declare variables and call ``cnn_jax.ops``."""

from cnn_jax.nn.blocks import BasicBlock, Bottleneck, Inception, PlainBlock
from cnn_jax.nn.layers import BatchNorm, Block, Conv, ConvBN, Dense
from cnn_jax.nn.variables import declare, read_state, update_state
