"""FCN-32s / 16s / 8s (Long, Shelhamer & Darrell 2015) over a zoo backbone.

The backbone (``features_only=True``) gives feature maps at strides 8, 16 and
32 (VGG: ``pool3/4/5``; ImageNet ResNet: ``layer2/3/4``). Each gets a 1x1
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
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.nn.layers import Conv, cast
from cnn_jax.ops import conv

TAPS = {'vgg': ('pool3', 'pool4', 'pool5'), 'resnet': ('layer2', 'layer3', 'layer4')}
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
    num_classes: output classes (background included).
    variant: ``'32s'``, ``'16s'`` or ``'8s'``.
    backbone: a ``vgg*`` or ``resnet*`` registry name.
    backbone_kwargs: e.g. ``{'width': 16}`` for a slim ResNet.
  """
  num_classes: int = 21
  variant: str = '8s'
  backbone: str = 'resnet18'
  backbone_kwargs: Mapping[str, Any] | None = None
  conv_impl: str = 'lax'
  dtype: Any = None
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    from cnn_jax.models.registry import get_model  # the registry imports this module
    if self.variant not in VARIANTS:
      raise ValueError(f'unknown FCN variant {self.variant!r}; choose one of {VARIANTS}.')
    family = next((f for f in TAPS if self.backbone.startswith(f)), None)
    if family is None:
      raise ValueError(f'FCN backbone must be a vgg* or resnet* model, got {self.backbone!r}.')
    n, h, w, _ = x.shape
    ph, pw = math.ceil(h / 32) * 32 - h, math.ceil(w / 32) * 32 - w
    x = jnp.pad(cast(x, self.dtype), ((0, 0), (0, ph), (0, pw), (0, 0)), mode='edge')
    kwargs = dict(self.backbone_kwargs or {})
    if family == 'resnet':
      kwargs['axis_name'] = self.axis_name
    feats = get_model(self.backbone, features_only=True, conv_impl=self.conv_impl,
                      dtype=self.dtype, module_name='backbone', **kwargs)(x, train)
    f8, f16, f32 = (feats[t] for t in TAPS[family])
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
