"""GoogLeNet / Inception v1 (Szegedy et al., 2015) in torchvision's layout.

Every convolution is a bias-free conv -> BatchNorm (eps 1e-3) -> ReLU unit, as
torchvision's ``BasicConv2d``. At 224x224x3 the feature maps are::

    conv1 7x7/2 -> (N, 112, 112, 64) -maxpool 3/2-> (N, 56, 56, 64)
    conv2 1x1, conv3 3x3 -> (N, 56, 56, 192) -maxpool 3/2-> (N, 28, 28, 192)
    inception3a, 3b -> (N, 28, 28, 480) -maxpool 3/2-> (N, 14, 14, 480)
    inception4a..4e -> (N, 14, 14, 832) -maxpool 2/2-> (N, 7, 7, 832)
    inception5a, 5b -> (N, 7, 7, 1024) -global avg, dropout, fc-> (N, num_classes)

Down-sampling max pools use PyTorch's ``ceil_mode=True`` (the last window may
hang over the bottom/right edge; at even sizes this equals ``'SAME'``).

``c5_kernel=3`` (default) reproduces torchvision, whose "5x5" branch is a 3x3
conv (pytorch/vision#906): 6,624,904 parameters without the auxiliary heads,
the number torchvision reports. ``c5_kernel=5`` is the paper's module and
adds ``16 * sum(c5_reduce * c5)`` = 380,928 parameters (7,005,832 in all).
The two auxiliary heads (on inception4a and 4d) add 3,188,968 + 3,191,016 for
1000 classes (13,004,888 with ``c5_kernel=3``). Parameter counts include the
BatchNorm scale and bias, not the running statistics.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Linen forms of the specs of cnn_jax.ops.blocks, where each block is written.
from cnn_jax.nn.blocks import Inception
from cnn_jax.nn.layers import ConvBN, Dense, cast
from cnn_jax.ops import pool

BN_EPS = 1e-3

# (c1, c3_reduce, c3, c5_reduce, c5, pool_proj) per inception module, Table 1 of the paper.
INCEPTION = {
    '3a': (64, 96, 128, 16, 32, 32),
    '3b': (128, 128, 192, 32, 96, 64),
    '4a': (192, 96, 208, 16, 48, 64),
    '4b': (160, 112, 224, 24, 64, 64),
    '4c': (128, 128, 256, 24, 64, 64),
    '4d': (112, 144, 288, 32, 64, 64),
    '4e': (256, 160, 320, 32, 128, 128),
    '5a': (256, 160, 320, 32, 128, 128),
    '5b': (384, 192, 384, 48, 128, 128),
}


def _max_pool_ceil(x: jax.Array, window: int, stride: int) -> jax.Array:
  """PyTorch's ``MaxPool2d(window, stride, ceil_mode=True)``, (N, H, W, C) -> (N, H', W', C).

  ``H' = ceil((H - window) / stride) + 1``, minus one if that last window
  would start past the input; the overhang is padded (with -inf) on the
  bottom/right only, which keeps torchvision's pixel alignment at any size.
  """
  pads = []
  for n in x.shape[1:3]:
    out = -(-(n - window) // stride) + 1
    if (out - 1) * stride >= n:
      out -= 1
    pads.append((0, max((out - 1) * stride + window - n, 0)))
  return pool.max_pool(x, window, stride, tuple(pads))


class InceptionAux(nn.Module):
  """Auxiliary classifier, (N, H, W, C) -> (N, num_classes) in the compute dtype.

  adaptive avg 4x4 -> 1x1 conv-BN-ReLU (128) -> flatten (2048) -> fc1 (1024)
  -> ReLU -> dropout -> fc2.
  """
  num_classes: int
  dropout: float = 0.7
  conv_impl: str = 'lax'
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = pool.adaptive_avg_pool(x, 4)
    x = ConvBN(features=128, kernel_size=1, bn_eps=BN_EPS, conv_impl=self.conv_impl,
               axis_name=self.axis_name, name='conv')(x, train)
    x = x.reshape(x.shape[0], -1)
    x = jax.nn.relu(Dense(1024, name='fc1')(x))
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    return Dense(self.num_classes, name='fc2')(x)


class GoogLeNet(nn.Module):
  """GoogLeNet, ``(N, H, W, 3) -> (N, num_classes)`` float32 logits.

  ``__call__`` always returns the main logits. With ``aux_logits`` the two
  auxiliary heads exist in the parameters after ``init``; in training they
  run and their float32 logits are sown into the ``'aux_logits'`` collection
  as ``'aux1'`` and ``'aux2'`` (each a 1-tuple, Flax's ``sow`` convention)::

      logits, updates = model.apply(variables, x, train=True,
                                    mutable=['batch_stats', 'aux_logits'],
                                    rngs={'dropout': key})
      aux1, = updates['aux_logits']['aux1']

  In evaluation they are skipped entirely (no FLOPs). Inputs need H, W >= 15
  for every pool to have a window; 224 is the reference size.

  Attributes:
    num_classes: size of the output layers.
    aux_logits: build the two auxiliary classifiers (torchvision's default).
    c5_kernel: kernel of the "5x5" branch: 3 (torchvision) or 5 (paper).
    dropout: dropout rate before the main fc.
    aux_dropout: dropout rate inside the auxiliary heads.
    conv_impl: ``'lax'`` or ``'einsum'`` convolution.
    dtype: compute dtype (e.g. ``jnp.bfloat16``); ``None`` keeps the input's.

  Submodules: ``conv1..3``, ``inception3a..5b``, ``aux_head1``, ``aux_head2``, ``fc``.
  """
  num_classes: int = 1000
  aux_logits: bool = True
  c5_kernel: int = 3
  dropout: float = 0.2
  aux_dropout: float = 0.7
  conv_impl: str = 'lax'
  dtype: Any = None
  axis_name: str | None = None  # set under pmap: BatchNorm statistics over devices

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv_bn = lambda features, kernel, name, **kw: ConvBN(
        features=features, kernel_size=kernel, bn_eps=BN_EPS, conv_impl=self.conv_impl,
        axis_name=self.axis_name, name=name, **kw)
    inception = lambda key: Inception(
        **dict(zip(('c1', 'c3_reduce', 'c3', 'c5_reduce', 'c5', 'pool_proj'), INCEPTION[key])),
        c5_kernel=self.c5_kernel, bn_eps=BN_EPS, conv_impl=self.conv_impl,
        axis_name=self.axis_name, name=f'inception{key}')
    # Heads run while initialising so that their parameters exist, and in
    # training; evaluation never pays for them.
    run_aux = self.aux_logits and (train or self.is_initializing())

    def aux(i, h):
      # The head is 'aux_head{i}' because Flax gives a submodule and a sown
      # variable of one module a single namespace, and 'aux{i}' is the sown name.
      logits = InceptionAux(self.num_classes, self.aux_dropout, self.conv_impl, self.axis_name,
                            name=f'aux_head{i}')(h, train).astype(jnp.float32)
      # Sowing during init would store the heads' logits in the returned
      # variables, and a later apply would append to them.
      if train and not self.is_initializing():
        self.sow('aux_logits', f'aux{i}', logits)

    x = cast(x, self.dtype)
    x = conv_bn(64, 7, 'conv1', strides=2)(x, train)
    x = _max_pool_ceil(x, 3, 2)
    x = conv_bn(64, 1, 'conv2')(x, train)
    x = conv_bn(192, 3, 'conv3')(x, train)
    x = _max_pool_ceil(x, 3, 2)
    x = inception('3a')(x, train)
    x = inception('3b')(x, train)
    x = _max_pool_ceil(x, 3, 2)
    x = inception('4a')(x, train)
    if run_aux:
      aux(1, x)
    x = inception('4b')(x, train)
    x = inception('4c')(x, train)
    x = inception('4d')(x, train)
    if run_aux:
      aux(2, x)
    x = inception('4e')(x, train)
    x = _max_pool_ceil(x, 2, 2)
    x = inception('5a')(x, train)
    x = inception('5b')(x, train)
    x = pool.global_avg_pool(x)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    x = Dense(self.num_classes, name='fc')(x)
    return x.astype(jnp.float32)
