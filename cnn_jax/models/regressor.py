"""Regression heads on a zoo backbone: a box, landmarks, any fixed vector per image.

A classifier's global average pool throws away *where* things are; the
course's localisation network and landmark network keep it by flattening
the last feature map before the dense layers (as LeNet and AlexNet do).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.nn.layers import Dense, cast


def feature_map(head: nn.Module, x: jax.Array, train: bool) -> jax.Array:
  """``head.backbone``'s feature ``head.tap`` of ``x`` (default its deepest), (N, h, w, C).

  For heads whose backbone is built with ``features_only=True``; a one-line
  error names the head if it is not, or lists the features if ``tap`` is unknown.
  """
  feats = head.backbone(x, train)
  if not isinstance(feats, dict):
    raise ValueError(f'{type(head).__name__} needs a backbone built with features_only=True; '
                     f'{type(head.backbone).__name__} returned one array.')
  if head.tap is not None and head.tap not in feats:
    raise ValueError(f'backbone {type(head.backbone).__name__} has no feature {head.tap!r}; '
                     f'it has {", ".join(feats)}.')
  return feats[head.tap] if head.tap is not None else list(feats.values())[-1]


class Regressor(nn.Module):
  """``(N, H, W, C) -> (N, num_classes)`` float32: flatten a feature map, dense, ReLU, dense.

  Attributes:
    backbone: a zoo module with ``features_only=True`` (variables under ``backbone/``).
    num_classes: the number of outputs (the task says how many: ``5 + C`` for
      localisation, ``2 K`` for K landmarks).
    hidden: width of the hidden dense layer (0: none).
    tap: the backbone feature to flatten; default its deepest (last) one.
    dropout: before each dense layer, in training.
  """
  backbone: nn.Module
  num_classes: int = 10
  hidden: int = 256
  tap: str | None = None
  dropout: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = feature_map(self, x, train)
    x = cast(x, self.dtype).reshape(x.shape[0], -1)
    if self.hidden:
      x = nn.Dropout(self.dropout)(x, deterministic=not train)
      x = jax.nn.relu(Dense(self.hidden, dtype=self.dtype, name='hidden')(x))
    x = nn.Dropout(self.dropout)(x, deterministic=not train)
    return Dense(self.num_classes, dtype=self.dtype, name='out')(x).astype(jnp.float32)
