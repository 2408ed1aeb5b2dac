"""Face-verification style embeddings (FaceNet) and the siamese "same?" head (DeepFace).

* :class:`Embedding`: any zoo backbone with a ``dim``-way linear output, then
  L2 normalisation: ``(N, H, W, C) -> (N, dim)`` unit vectors, so squared
  distances lie in [0, 4] and the triplet margin (0.2) has a fixed scale.
* :class:`SiameseHead`: logistic regression on pair features of two
  embeddings, ``|f1 - f2|`` or the chi-squared form (see
  :func:`cnn_jax.ops.losses.pairwise_features`): ``(N, dim) x 2 -> (N,)``
  logits of "same identity".
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.nn.layers import Dense
from cnn_jax.ops import losses


def l2_normalize(x: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Rows of ``x`` (..., D) scaled to unit L2 norm (zero rows stay zero)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), -1, keepdims=True), eps))


class Embedding(nn.Module):
  """``(N, H, W, C) -> (N, dim)`` L2-normalised float32 embeddings.

  Attributes:
    backbone: a classifier module whose ``dim``-way output is the projection
      (the registry's ``embedding`` entry builds it; variables under ``backbone/``).
  """
  backbone: nn.Module

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    return l2_normalize(self.backbone(x, train).astype(jnp.float32))


class SiameseHead(nn.Module):
  """``(f1, f2) -> (N,)`` logits that the two embeddings show one identity.

  ``kind='abs'`` uses ``|f1 - f2|``; ``'chi2'`` uses ``(g1 - g2)^2 / (g1 + g2)``
  on ``g = (f + 1) / 2``, which maps unit-norm coordinates into [0, 1] (the
  chi-squared form needs non-negative features).
  """
  kind: str = 'abs'

  @nn.compact
  def __call__(self, f1: jax.Array, f2: jax.Array) -> jax.Array:
    if self.kind == 'chi2':
      f1, f2 = (f1 + 1.0) / 2.0, (f2 + 1.0) / 2.0
    phi = losses.pairwise_features(f1, f2, self.kind)
    return Dense(1, name='logistic')(phi)[..., 0]
