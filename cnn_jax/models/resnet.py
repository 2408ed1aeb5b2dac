"""ResNets: ImageNet (torchvision layout) and CIFAR ResNet-n / Plain-n (He et al. 2016).

* :class:`ResNet` — ImageNet ResNet-18/34 (basic blocks) and 50/101/152
  (bottleneck, stride on the 3x3 as in torchvision, "v1.5"), option B
  shortcuts, 224x224 input. Parameter counts equal torchvision's.
* :class:`CifarResNet` — the 6n+2 networks of He et al. Section 4.2: a 3x3
  conv with 16 filters, three stages of n blocks at 16/32/64 filters on
  32/16/8 feature maps, global average pooling and a 10-way classifier.
  ``plain=True`` removes every shortcut (the degradation experiment); with
  option A shortcuts both have exactly the same parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

# Linen forms of the specs of cnn_jax.ops.blocks, where each block is written.
from cnn_jax.nn.blocks import BasicBlock, Bottleneck, PlainBlock
from cnn_jax.nn.layers import ConvBN, Dense, cast
from cnn_jax.ops import pool

IMAGENET_STAGES = {
    18: ('basic', (2, 2, 2, 2)),
    34: ('basic', (3, 4, 6, 3)),
    50: ('bottleneck', (3, 4, 6, 3)),
    101: ('bottleneck', (3, 4, 23, 3)),
    152: ('bottleneck', (3, 8, 36, 3)),
}


class ResNet(nn.Module):
  """ImageNet ResNet. (N, 224, 224, 3) -> (N, num_classes) float32 logits.

  ``features_only=True`` returns ``{'layer1': ..., 'layer4': ...}``, each stage's
  output (strides 4, 8, 16, 32), and has no ``fc`` (dense prediction heads).
  ``frozen_bn=True`` makes every BatchNorm torchvision's ``FrozenBatchNorm2d``
  (the detection backbones': scale and bias become ``batch_stats``).
  """
  depth: int = 50
  num_classes: int = 1000
  width: int = 64
  conv_impl: str = 'lax'
  dtype: Any = None
  axis_name: str | None = None
  features_only: bool = False
  frozen_bn: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.depth not in IMAGENET_STAGES:
      raise ValueError(f'ImageNet ResNet depth must be one of {sorted(IMAGENET_STAGES)}, '
                       f'got {self.depth}.')
    kind, stages = IMAGENET_STAGES[self.depth]
    common = dict(conv_impl=self.conv_impl, dtype=self.dtype, axis_name=self.axis_name,
                  frozen_bn=self.frozen_bn)
    x = cast(x, self.dtype)
    x = ConvBN(features=self.width, kernel_size=7, strides=2, name='stem', **common)(x, train)
    x = pool.max_pool(x, 3, stride=2, padding=1)
    features = {}
    for i, n in enumerate(stages):
      for j in range(n):
        stride = 2 if i > 0 and j == 0 else 1
        name = f'layer{i + 1}_{j}'
        if kind == 'basic':
          block = BasicBlock(features=self.width * 2**i, strides=stride, shortcut='B',
                             name=name, **common)
        else:
          block = Bottleneck(width=self.width * 2**i, strides=stride, name=name, **common)
        x = block(x, train)
      features[f'layer{i + 1}'] = x
    if self.features_only:
      return features
    x = pool.global_avg_pool(x)
    return Dense(self.num_classes, name='fc')(x).astype(jnp.float32)


def cifar_depths(max_depth: int = 1202) -> list[int]:
  return list(range(8, max_depth + 1, 6))


class CifarResNet(nn.Module):
  """He et al.'s CIFAR-10 ResNet-n / Plain-n, n = 6k + 2. (N, 32, 32, 3) -> (N, classes)."""
  depth: int = 20
  plain: bool = False
  shortcut: str = 'A'
  widths: Sequence[int] = (16, 32, 64)
  num_classes: int = 10
  conv_impl: str = 'lax'
  dtype: Any = None
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.depth < 8 or (self.depth - 2) % 6:
      raise ValueError(f'CIFAR ResNet depth must be 6k+2 (20, 32, 44, 56, 110, ...), '
                       f'got {self.depth}.')
    n = (self.depth - 2) // 6
    common = dict(conv_impl=self.conv_impl, dtype=self.dtype, axis_name=self.axis_name)
    x = cast(x, self.dtype)
    x = ConvBN(features=self.widths[0], kernel_size=3, name='stem', **common)(x, train)
    for i, features in enumerate(self.widths):
      for j in range(n):
        stride = 2 if i > 0 and j == 0 else 1
        name = f'stage{i + 1}_{j}'
        if self.plain:
          block = PlainBlock(features=features, strides=stride, name=name, **common)
        else:
          block = BasicBlock(features=features, strides=stride, shortcut=self.shortcut,
                             name=name, **common)
        x = block(x, train)
    x = pool.global_avg_pool(x)
    return Dense(self.num_classes, name='fc')(x).astype(jnp.float32)
