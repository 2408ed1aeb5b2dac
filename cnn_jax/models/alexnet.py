"""AlexNet in torchvision's single-tower layout (Krizhevsky, 2014 "one weird trick").

At 224x224x3 the feature maps are::

    conv1 11x11/4 p2 -> (N, 55, 55, 64)  -maxpool 3/2-> (N, 27, 27, 64)
    conv2 5x5 p2     -> (N, 27, 27, 192) -maxpool 3/2-> (N, 13, 13, 192)
    conv3..5 3x3     -> (N, 13, 13, 384 | 256 | 256) -maxpool 3/2-> (N, 6, 6, 256)
    adaptive avg 6x6 -> (N, 6, 6, 256) -flatten-> (N, 9216)
    fc1, fc2 -> 4096, fc3 -> num_classes

61,100,840 parameters for 1000 classes. The adaptive pool makes the
classifier independent of the input resolution (at 224 it is the identity).
Flattening is NHWC, so porting torchvision's ``classifier.1`` weight needs its
input axis permuted from (C, H, W) to (H, W, C) order.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.nn.layers import Conv, Dense, cast
from cnn_jax.ops import pool


class AlexNet(nn.Module):
  """AlexNet, ``(N, H, W, 3) -> (N, num_classes)`` float32 logits (H, W >= 63).

  Attributes:
    num_classes: size of the output layer.
    dropout: dropout rate before fc1 and fc2 (active only when ``train``; the
      apply then needs a ``'dropout'`` rng).
    conv_impl: ``'lax'`` or ``'einsum'`` convolution.
    dtype: compute dtype (e.g. ``jnp.bfloat16``); ``None`` keeps the input's.
  """
  num_classes: int = 1000
  dropout: float = 0.5
  conv_impl: str = 'lax'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    conv = lambda features, kernel, name, **kw: Conv(
        features, kernel, conv_impl=self.conv_impl, name=name, **kw)
    x = cast(x, self.dtype)
    x = jax.nn.relu(conv(64, 11, 'conv1', strides=4, padding=2)(x))
    x = pool.max_pool(x, 3, 2)
    x = jax.nn.relu(conv(192, 5, 'conv2')(x))
    x = pool.max_pool(x, 3, 2)
    x = jax.nn.relu(conv(384, 3, 'conv3')(x))
    x = jax.nn.relu(conv(256, 3, 'conv4')(x))
    x = jax.nn.relu(conv(256, 3, 'conv5')(x))
    x = pool.max_pool(x, 3, 2)
    x = pool.adaptive_avg_pool(x, 6)
    x = x.reshape(x.shape[0], -1)
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    x = jax.nn.relu(Dense(4096, name='fc1')(x))
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    x = jax.nn.relu(Dense(4096, name='fc2')(x))
    x = Dense(self.num_classes, name='fc3')(x)
    return x.astype(jnp.float32)
