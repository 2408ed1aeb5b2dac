"""Inception-v3 (Szegedy et al., 2016, "Rethinking the Inception Architecture") in torchvision's layout.

Every convolution is a bias-free conv -> BatchNorm (eps 1e-3) -> ReLU unit
(torchvision's ``BasicConv2d``); module and branch names are torchvision's, so
a ``inception_v3`` ``state_dict`` maps name by name
(:func:`cnn_jax.models.weights.torchvision_inception_v3_names`). At the
reference 299x299x3 input::

    Conv2d_1a 3x3/2, 2a 3x3, 2b 3x3 -> (N, 147, 147, 64) -maxpool 3/2-> 73
    Conv2d_3b 1x1, 4a 3x3 -> (N, 71, 71, 192) -maxpool 3/2-> (N, 35, 35, 192)
    Mixed_5b, 5c, 5d (A: 1x1 | 5x5 | double 3x3 | pool)   -> (N, 35, 35, 288)
    Mixed_6a (B: grid reduction, 3x3/2 | double 3x3/2 | maxpool) -> (N, 17, 17, 768)
    Mixed_6b..6e (C: 7x7 factorised into 1x7 and 7x1)     -> (N, 17, 17, 768)
    Mixed_7a (D: grid reduction)                          -> (N, 8, 8, 1280)
    Mixed_7b, 7c (E: 3x3 split into parallel 1x3 and 3x1) -> (N, 8, 8, 2048)
    global average, dropout 0.5, fc                       -> (N, num_classes)

The auxiliary classifier (``AuxLogits``, on Mixed_6e: avg pool 5/3, 1x1 conv
128, 5x5 conv 768, global average, fc) exists with ``aux_logits=True``
(torchvision's default); in training its float32 logits are sown as
``aux_logits/aux1`` like GoogLeNet's, and the ``classification`` task adds
``task.aux_loss_weight`` times its loss (0.3 by default; torchvision's
reference recipe for Inception-v3 uses 0.4). 27,161,264 parameters at 1000 classes with the head,
23,834,568 without, the counts torchvision documents (BatchNorm scale and bias
counted, running statistics not).

``transform_input=True`` maps an ImageNet-normalised input to the [-1, 1]
scaling the Google weights were trained with, as torchvision does for its
pretrained model. Inputs need H, W >= 75 (the stem and two grid reductions).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.nn.layers import ConvBN, Dense, cast
from cnn_jax.ops import pool

BN_EPS = 1e-3
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def basic_conv(name: str, features: int, kernel: int | tuple[int, int], *, stride: int = 1,
               same: bool = False, **kw) -> ConvBN:
  """torchvision's ``BasicConv2d``: no padding, or ``same`` (k // 2 per axis, odd kernels)."""
  return ConvBN(features=features, kernel_size=kernel, strides=stride,
                padding=None if same else 0, bn_eps=BN_EPS, name=name, **kw)


class _Module(nn.Module):
  """Shared by the blocks: their units' conv implementation and pmap axis."""
  conv_impl: str = 'lax'
  axis_name: str | None = None

  def unit(self, name: str, features: int, kernel: int | tuple[int, int], **kw) -> ConvBN:
    return basic_conv(name, features, kernel, conv_impl=self.conv_impl,
                      axis_name=self.axis_name, **kw)


def transform_input(x: jax.Array) -> jax.Array:
  """ImageNet-normalised (N, H, W, 3) -> the [-1, 1] scaling of the Google weights."""
  # x * std + mean is the [0, 1] image; (that - 0.5) / 0.5 the [-1, 1] one.
  return (x * jnp.asarray(_IMAGENET_STD) + jnp.asarray(_IMAGENET_MEAN) - 0.5) / 0.5


def _avg3(x: jax.Array) -> jax.Array:
  # torch's F.avg_pool2d(x, 3, stride=1, padding=1): padding counts in the divisor.
  return pool.avg_pool(x, 3, 1, 1, count_include_pad=True)


class InceptionA(_Module):
  """35x35: 1x1 (64) | 1x1 -> 5x5 (64) | 1x1 -> 3x3 -> 3x3 (96) | avg -> 1x1 (pool_features)."""
  pool_features: int = 32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    b1 = self.unit('branch1x1', 64, 1)(x, train)
    b5 = self.unit('branch5x5_2', 64, 5, same=True)(self.unit('branch5x5_1', 48, 1)(x, train),
                                                    train)
    b3 = self.unit('branch3x3dbl_1', 64, 1)(x, train)
    b3 = self.unit('branch3x3dbl_2', 96, 3, same=True)(b3, train)
    b3 = self.unit('branch3x3dbl_3', 96, 3, same=True)(b3, train)
    bp = self.unit('branch_pool', self.pool_features, 1)(_avg3(x), train)
    return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(_Module):
  """35 -> 17 grid reduction: 3x3/2 (384) | 1x1 -> 3x3 -> 3x3/2 (96) | maxpool 3/2."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    b3 = self.unit('branch3x3', 384, 3, stride=2)(x, train)
    bd = self.unit('branch3x3dbl_1', 64, 1)(x, train)
    bd = self.unit('branch3x3dbl_2', 96, 3, same=True)(bd, train)
    bd = self.unit('branch3x3dbl_3', 96, 3, stride=2)(bd, train)
    return jnp.concatenate([b3, bd, pool.max_pool(x, 3, 2)], -1)


class InceptionC(_Module):
  """17x17 with 7x7 factorised: 1x1 | 1x7 -> 7x1 | (7x1 -> 1x7) x 2 | avg -> 1x1; 192 each."""
  channels_7x7: int = 128

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    c7 = self.channels_7x7
    b1 = self.unit('branch1x1', 192, 1)(x, train)
    b7 = self.unit('branch7x7_1', c7, 1)(x, train)
    b7 = self.unit('branch7x7_2', c7, (1, 7), same=True)(b7, train)
    b7 = self.unit('branch7x7_3', 192, (7, 1), same=True)(b7, train)
    bd = self.unit('branch7x7dbl_1', c7, 1)(x, train)
    for i, (features, kernel) in enumerate([(c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)),
                                            (192, (1, 7))], 2):
      bd = self.unit(f'branch7x7dbl_{i}', features, kernel, same=True)(bd, train)
    bp = self.unit('branch_pool', 192, 1)(_avg3(x), train)
    return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(_Module):
  """17 -> 8 grid reduction: 1x1 -> 3x3/2 (320) | 1x1 -> 1x7 -> 7x1 -> 3x3/2 (192) | maxpool."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    b3 = self.unit('branch3x3_2', 320, 3, stride=2)(self.unit('branch3x3_1', 192, 1)(x, train),
                                                    train)
    b7 = self.unit('branch7x7x3_1', 192, 1)(x, train)
    b7 = self.unit('branch7x7x3_2', 192, (1, 7), same=True)(b7, train)
    b7 = self.unit('branch7x7x3_3', 192, (7, 1), same=True)(b7, train)
    b7 = self.unit('branch7x7x3_4', 192, 3, stride=2)(b7, train)
    return jnp.concatenate([b3, b7, pool.max_pool(x, 3, 2)], -1)


class InceptionE(_Module):
  """8x8, expanded: 1x1 (320) | 1x1 -> [1x3, 3x1] (768) | 1x1 -> 3x3 -> [1x3, 3x1] (768) | pool."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    split = lambda prefix, h: jnp.concatenate([
        self.unit(f'{prefix}a', 384, (1, 3), same=True)(h, train),
        self.unit(f'{prefix}b', 384, (3, 1), same=True)(h, train)], -1)
    b1 = self.unit('branch1x1', 320, 1)(x, train)
    b3 = split('branch3x3_2', self.unit('branch3x3_1', 384, 1)(x, train))
    bd = self.unit('branch3x3dbl_1', 448, 1)(x, train)
    bd = split('branch3x3dbl_3', self.unit('branch3x3dbl_2', 384, 3, same=True)(bd, train))
    bp = self.unit('branch_pool', 192, 1)(_avg3(x), train)
    return jnp.concatenate([b1, b3, bd, bp], -1)


class InceptionAux(_Module):
  """Auxiliary head on the 17x17 maps: avg 5/3 -> 1x1 (128) -> 5x5 (768) -> mean -> fc."""
  num_classes: int = 1000

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    x = pool.avg_pool(x, 5, 3)
    x = self.unit('conv0', 128, 1)(x, train)
    x = self.unit('conv1', 768, 5)(x, train)
    return Dense(self.num_classes, name='fc')(pool.global_avg_pool(x))


class InceptionV3(nn.Module):
  """Inception-v3, ``(N, H, W, 3) -> (N, num_classes)`` float32 logits (299x299 reference).

  Attributes:
    num_classes: size of the output layers.
    aux_logits: build the auxiliary classifier ``AuxLogits`` (sown in training).
    transform_input: re-normalise ImageNet-normalised input to [-1, 1].
    dropout: dropout rate before ``fc``.
    conv_impl: convolution implementation of every unit.
    dtype: compute dtype (e.g. ``jnp.bfloat16``); ``None`` keeps the input's.
    axis_name: BatchNorm statistics over this pmap axis.
  """
  num_classes: int = 1000
  aux_logits: bool = True
  transform_input: bool = False
  dropout: float = 0.5
  conv_impl: str = 'lax'
  dtype: Any = None
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if min(x.shape[1:3]) < 75:
      raise ValueError(f'Inception-v3 needs images of at least 75x75 (299x299 is the reference '
                       f'size), got {x.shape[1]}x{x.shape[2]}.')
    if self.transform_input:
      x = transform_input(x)
    x = cast(x, self.dtype)
    kw = dict(conv_impl=self.conv_impl, axis_name=self.axis_name)
    unit = lambda *a, **k: basic_conv(*a, **k, **kw)
    x = unit('Conv2d_1a_3x3', 32, 3, stride=2)(x, train)
    x = unit('Conv2d_2a_3x3', 32, 3)(x, train)
    x = unit('Conv2d_2b_3x3', 64, 3, same=True)(x, train)
    x = pool.max_pool(x, 3, 2)
    x = unit('Conv2d_3b_1x1', 80, 1)(x, train)
    x = unit('Conv2d_4a_3x3', 192, 3)(x, train)
    x = pool.max_pool(x, 3, 2)
    x = InceptionA(pool_features=32, name='Mixed_5b', **kw)(x, train)
    x = InceptionA(pool_features=64, name='Mixed_5c', **kw)(x, train)
    x = InceptionA(pool_features=64, name='Mixed_5d', **kw)(x, train)
    x = InceptionB(name='Mixed_6a', **kw)(x, train)
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(channels_7x7=c7, name=name, **kw)(x, train)
    # The head runs while initialising (its parameters exist) and in training only.
    if self.aux_logits and (train or self.is_initializing()):
      if min(x.shape[1:3]) < 17:
        raise ValueError(f'Inception-v3\'s auxiliary head needs 17x17 Mixed_6e maps (299x299 '
                         f'images), got {x.shape[1]}x{x.shape[2]}; pass aux_logits=False for '
                         'smaller images.')
      aux = InceptionAux(num_classes=self.num_classes, name='AuxLogits', **kw)(x, train)
      if train and not self.is_initializing():
        self.sow('aux_logits', 'aux1', aux.astype(jnp.float32))
    x = InceptionD(name='Mixed_7a', **kw)(x, train)
    x = InceptionE(name='Mixed_7b', **kw)(x, train)
    x = InceptionE(name='Mixed_7c', **kw)(x, train)
    x = pool.global_avg_pool(x)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    return Dense(self.num_classes, name='fc')(x).astype(jnp.float32)
