"""VGG-11/13/16/19 (Simonyan & Zisserman, 2015), torchvision layout, with optional BatchNorm.

Five stages of 3x3 convolutions (with bias, padding 1, ReLU) separated by 2x2
max pooling, then an adaptive 7x7 average pool and a 25088 -> 4096 -> 4096 ->
``num_classes`` classifier with dropout after each hidden layer. At 224x224
the stages see 224, 112, 56, 28 and 14 pixels and the last pool leaves 7x7,
where the adaptive pool is the identity.

Parameters for 1000 classes (``batch_norm=True`` adds 2 per conv channel, as
torchvision's ``vgg*_bn``, which also keeps the conv bias):

======  ===========  ===========
depth   plain        batch_norm
======  ===========  ===========
11      132,863,336  132,868,840
13      133,047,848  133,053,736
16      138,357,544  138,365,992
19      143,667,240  143,678,248
======  ===========  ===========

Flattening is NHWC, so porting torchvision's ``classifier.0`` weight needs its
input axis permuted from (C, H, W) to (H, W, C) order.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.nn.layers import BatchNorm, Conv, Dense, cast
from cnn_jax.ops import pool

# Conv widths per stage; each stage ends with a 2x2 max pool (torchvision's cfgs A, B, D, E).
STAGES: dict[int, tuple[tuple[int, ...], ...]] = {
    11: ((64,), (128,), (256, 256), (512, 512), (512, 512)),
    13: ((64, 64), (128, 128), (256, 256), (512, 512), (512, 512)),
    16: ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)),
    19: ((64, 64), (128, 128), (256, 256, 256, 256), (512, 512, 512, 512),
         (512, 512, 512, 512)),
}


class VGG(nn.Module):
  """VGG, ``(N, H, W, 3) -> (N, num_classes)`` float32 logits (H, W >= 32).

  Attributes:
    depth: 11, 13, 16 or 19 weight layers.
    batch_norm: BatchNorm after every conv (running stats in ``batch_stats``).
    num_classes: size of the output layer.
    dropout: dropout rate after fc1 and fc2 (active only when ``train``; the
      apply then needs a ``'dropout'`` rng).
    conv_impl: ``'lax'`` or ``'einsum'`` convolution.
    dtype: compute dtype (e.g. ``jnp.bfloat16``); ``None`` keeps the input's.
    include_top: False drops the classifier (no fc params): the output is the
      last max pool's ``(N, H/32, W/32, 512)`` feature map, for any H, W >= 32
      (the style transfer feature extractor).
    features_only: return ``{'pool1': ..., 'pool5': ...}``, every stage's
      pooled output (strides 2 to 32), without the classifier.

  Convs are named ``conv{stage}_{i}`` (and ``bn{stage}_{i}``), counting from 1.
  """
  depth: int = 16
  batch_norm: bool = False
  num_classes: int = 1000
  dropout: float = 0.5
  conv_impl: str = 'lax'
  dtype: Any = None
  axis_name: str | None = None  # set under pmap: BatchNorm statistics over devices
  include_top: bool = True
  features_only: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.depth not in STAGES:
      raise ValueError(f'unknown VGG depth {self.depth}; choose one of {tuple(STAGES)}.')
    x = cast(x, self.dtype)
    taps = {}
    for s, widths in enumerate(STAGES[self.depth], 1):
      for i, features in enumerate(widths, 1):
        x = Conv(features, 3, conv_impl=self.conv_impl, name=f'conv{s}_{i}')(x)
        if self.batch_norm:
          x = BatchNorm(axis_name=self.axis_name, name=f'bn{s}_{i}')(x, train)
        x = jax.nn.relu(x)
      x = pool.max_pool(x, 2)
      taps[f'pool{s}'] = x
    if self.features_only:
      return taps
    if not self.include_top:
      return x
    x = pool.adaptive_avg_pool(x, 7)
    x = x.reshape(x.shape[0], -1)
    x = jax.nn.relu(Dense(4096, name='fc1')(x))
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    x = jax.nn.relu(Dense(4096, name='fc2')(x))
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    x = Dense(self.num_classes, name='fc3')(x)
    return x.astype(jnp.float32)
