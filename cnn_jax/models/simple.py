"""A small VGG-style CNN: the embedded default's model (about a minute on 2 CPU cores)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.nn.layers import ConvBN, Dense, cast
from cnn_jax.ops import pool


class SimpleCNN(nn.Module):
  """conv-BN-ReLU stages, each followed by 2x2 max pooling, then a linear head.

  (N, H, W, C) -> (N, num_classes) float32 logits; ``widths`` sets one stage each.
  ``features_only=True`` returns ``{'stage1': ..., 'stageN': ...}``, each stage's
  pooled output (strides 2, 4, ...), and has no ``fc`` (heads that need where
  things are: :class:`cnn_jax.models.regressor.Regressor`).
  """
  widths: Sequence[int] = (32, 64, 128)
  num_classes: int = 10
  conv_impl: str = 'lax'
  dtype: Any = None
  axis_name: str | None = None
  features_only: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = cast(x, self.dtype)
    taps = {}
    for i, features in enumerate(self.widths):
      x = ConvBN(features=features, kernel_size=3, conv_impl=self.conv_impl, dtype=self.dtype,
                 axis_name=self.axis_name, name=f'conv{i + 1}')(x, train)
      x = taps[f'stage{i + 1}'] = pool.max_pool(x, 2)
    if self.features_only:
      return taps
    x = pool.global_avg_pool(x)
    return Dense(self.num_classes, name='fc')(x).astype(jnp.float32)
