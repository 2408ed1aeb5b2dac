"""FCN-32s / 16s / 8s (Long, Shelhamer & Darrell 2015) over a zoo backbone.

The backbone is a module passed in (``features_only=True``, built by the
registry's ``fcn*`` entries or by the caller); its feature maps at strides 8,
16 and 32 are ``taps`` (VGG: ``pool3/4/5``; ImageNet ResNet: ``layer2/3/4``,
looked up by the backbone's class when ``taps`` is not given). Each gets a 1x1
"score" conv to ``num_classes`` channels; upsampling is a learnable
transposed conv initialised to bilinear interpolation
(:func:`cnn_jax.ops.conv.upsample_transposed`):

* 32s: score(stride 32), upsampled x32;
* 16s: score(32) x2 + score(16), upsampled x16;
* 8s:  (score(32) x2 + score(16)) x2 + score(8), upsampled x8.

Skip score layers start at zero (as in the paper), so 16s/8s begin from the
stride-32 scores alone and learn how much of the finer maps to add.
Inputs of any size work: the image is padded (edge) to a multiple of 32 and
the output cropped back, so ``(N, H, W, 3) -> (N, H, W, num_classes)`` logits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.models.resnet import ResNet
from cnn_jax.models.vgg import VGG
from cnn_jax.nn.layers import Conv, cast
from cnn_jax.ops import conv

# The stride-8/16/32 feature maps of each backbone family (``features_only`` keys).
TAPS = {VGG: ('pool3', 'pool4', 'pool5'), ResNet: ('layer2', 'layer3', 'layer4')}
VARIANTS = ('32s', '16s', '8s')


class Upsample(nn.Module):
  """Learnable ``factor``x upsampling, bilinear at init: (N, H, W, C) -> (N, fH, fW, C)."""
  factor: int
  conv_impl: str = 'lax'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    w = self.param('kernel', lambda key: conv.bilinear_kernel(self.factor, c))
    return conv.upsample_transposed(x, w.astype(x.dtype), self.factor, impl=self.conv_impl)


class FCN(nn.Module):
  """Fully convolutional segmentation, ``(N, H, W, 3) -> (N, H, W, num_classes)`` float32.

  Attributes:
    backbone: a module returning a dict of feature maps (``features_only=True``);
      its variables live under ``backbone/``.
    num_classes: output classes (background included).
    variant: ``'32s'``, ``'16s'`` or ``'8s'``.
    taps: the backbone's stride-8, 16 and 32 feature names; default by its class.
  """
  backbone: nn.Module
  num_classes: int = 21
  variant: str = '8s'
  taps: Sequence[str] | None = None
  conv_impl: str = 'lax'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    if self.variant not in VARIANTS:
      raise ValueError(f'unknown FCN variant {self.variant!r}; choose one of {VARIANTS}.')
    taps = self.taps or TAPS.get(type(self.backbone))
    if taps is None:
      raise ValueError(f'FCN needs taps=(stride8, stride16, stride32) feature names for a '
                       f'{type(self.backbone).__name__} backbone (known: VGG, ResNet).')
    n, h, w, _ = x.shape
    ph, pw = math.ceil(h / 32) * 32 - h, math.ceil(w / 32) * 32 - w
    x = jnp.pad(cast(x, self.dtype), ((0, 0), (0, ph), (0, pw), (0, 0)), mode='edge')
    feats = self.backbone(x, train)
    f8, f16, f32 = (feats[t] for t in taps)
    score = lambda name: Conv(
        self.num_classes, 1, conv_impl=self.conv_impl, dtype=self.dtype, name=name)
    up = lambda factor, name: Upsample(factor, conv_impl=self.conv_impl, name=name)
    y = score('score32')(f32)
    if self.variant == '32s':
      y = up(32, 'up32')(y)
    else:
      y = up(2, 'up32_to_16')(y) + _zero_score(self, 'score16')(f16)
      if self.variant == '16s':
        y = up(16, 'up16')(y)
      else:
        y = up(2, 'up16_to_8')(y) + _zero_score(self, 'score8')(f8)
        y = up(8, 'up8')(y)
    return y[:, :h, :w, :].astype(jnp.float32)


class _ZeroConv(nn.Module):
  """A 1x1 score conv that starts at zero (FCN's skip layers)."""
  features: int
  conv_impl: str = 'lax'

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    k = self.param('kernel', nn.initializers.zeros, (1, 1, x.shape[-1], self.features))
    b = self.param('bias', nn.initializers.zeros, (self.features,))
    return conv.conv2d(x, k.astype(x.dtype), b.astype(x.dtype), impl=self.conv_impl)


def _zero_score(parent: FCN, name: str) -> _ZeroConv:
  return _ZeroConv(parent.num_classes, conv_impl=parent.conv_impl, name=name)
