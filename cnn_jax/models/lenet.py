"""LeNet-5: the course ("seed") version and LeCun et al. (1998)'s classic one.

Both map a 32x32 image to ``num_classes`` logits through two 5x5 VALID
convolutions (6 and 16 filters), each followed by 2x2 pooling, and three dense
layers (120, 84, ``num_classes``)::

    (N, 32, 32, C) -conv1-> (N, 28, 28, 6) -pool-> (N, 14, 14, 6)
                   -conv2-> (N, 10, 10, 16) -pool-> (N, 5, 5, 16) -flatten-> (N, 400)
                   -fc1-> (N, 120) -fc2-> (N, 84) -fc3-> (N, num_classes)

``variant='seed'`` (the course version, 32x32x3 CIFAR-style input) uses ReLU
and max pooling: 456 + 2,416 + 48,120 + 10,164 + 850 = 62,006 parameters.
``variant='classic'`` uses tanh and average pooling, as in the 1998 paper; on
its 32x32x1 input it has 156 + 2,416 + 48,120 + 10,164 + 850 = 61,706. The
paper's sparse C2->C3 connection table, trainable subsampling coefficients and
RBF output layer are replaced by a dense conv, plain averaging and a dense
layer, the usual modern reading of "LeNet-5".

``fully_convolutional=True`` is the same network (same parameters) with its
dense layers applied as convolutions (OverFeat, Sermanet et al. 2014): fc1 as a
5x5 VALID convolution over the (N, H', W', 16) maps, fc2 and fc3 as 1x1, so an
(N, H, W, C) image with H, W = 32 + 4k gives (N, 1 + k, 1 + k, num_classes):
the logits of every 32x32 window at stride 4 (the two 2x2 pools) in one pass.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.nn.layers import Conv, Dense, cast
from cnn_jax.ops import pool

VARIANTS = ('seed', 'classic')


class LeNet5(nn.Module):
  """LeNet-5, ``(N, 32, 32, C) -> (N, num_classes)`` float32 logits.

  Attributes:
    num_classes: size of the output layer.
    variant: ``'seed'`` (ReLU + max pooling) or ``'classic'`` (tanh + average
      pooling).
    conv_impl: ``'lax'`` or ``'einsum'`` convolution.
    dtype: compute dtype (e.g. ``jnp.bfloat16``); ``None`` keeps the input's.
    fully_convolutional: dense layers as convolutions; returns (N, H', W',
      num_classes) window logits instead of (N, num_classes).
  """
  num_classes: int = 10
  variant: str = 'seed'
  conv_impl: str = 'lax'
  dtype: Any = None
  fully_convolutional: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    del train  # No dropout or BatchNorm; kept for a uniform model signature.
    if self.variant not in VARIANTS:
      raise ValueError(f'unknown LeNet5 variant {self.variant!r}; choose one of {VARIANTS}.')
    if self.variant == 'seed':
      act, subsample = jax.nn.relu, pool.max_pool
    else:
      act, subsample = jnp.tanh, pool.avg_pool
    x = cast(x, self.dtype)
    x = subsample(act(Conv(6, 5, padding='VALID', conv_impl=self.conv_impl, name='conv1')(x)), 2)
    x = subsample(act(Conv(16, 5, padding='VALID', conv_impl=self.conv_impl, name='conv2')(x)),
                  2)
    if self.fully_convolutional:  # fc1 sees each 5x5 window of the maps: a 5x5 conv
      x = act(Dense(120, window=(5, 5), conv_impl=self.conv_impl, name='fc1')(x))
    else:
      x = act(Dense(120, name='fc1')(x.reshape(x.shape[0], -1)))
    x = act(Dense(84, name='fc2')(x))
    x = Dense(self.num_classes, name='fc3')(x)
    return x.astype(jnp.float32)
