"""A small fast CIFAR-10 network in the style of airbench94 (Keller Jordan, 2024).

``(N, 32, 32, 3) -> (N, num_classes)``:

* a 2x2 patch-whitening conv (VALID, 32 -> 31) whose kernel is set from the
  training data by :func:`whitening_kernel` (the speedrun keeps it frozen; its
  bias trains for the first epochs), then GELU;
* three groups of conv3x3 -> 2x2 max pool -> BN -> GELU -> conv3x3 -> BN ->
  GELU (31 -> 15 -> 7 -> 3), widths ``(64, 256, 256)``;
* a global max pool and a bias-free linear head scaled by ``1 / 9``.

BatchNorm has ``eps = 1e-12`` and momentum 0.6 (PyTorch ``momentum=0.4``):
its running statistics follow the last few batches. Its ``scale`` exists but
the speedrun does not train it (airbench freezes it at 1). 3x3 kernels start
as PyTorch's default uniform init plus an identity (Dirac) on the first
``min(C_in, C_out)`` output channels: an implicit residual at init.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.nn.layers import BatchNorm, Dense, cast
from cnn_jax.ops import conv, pool


def whitening_kernel(images: Any, patch: int = 2, eps: float = 5e-4) -> jax.Array:
  """``(patch, patch, C, 2 patch^2 C)`` kernel that whitens the images' patches.

  The eigenvectors ``v_i`` of the patch covariance, scaled by
  ``1 / sqrt(lambda_i + eps)``, then their negatives (so the GELU that
  follows sees both signs). Runs on the device (float32), so on an
  accelerator it costs milliseconds.

  Args:
    images: (N, H, W, C) float images, already normalised.
  """
  x = jnp.asarray(images, jnp.float32)
  c = x.shape[-1]
  # (N, H', W', kh, kw, C): flattened in (kh, kw, C) order, the HWIO kernel's.
  patches = conv.extract_patches(x, (patch, patch)).reshape(-1, patch * patch * c)
  centred = patches - patches.mean(axis=0)
  cov = centred.T @ centred / (patches.shape[0] - 1)
  eigvals, eigvecs = jnp.linalg.eigh(cov)
  filters = (eigvecs / jnp.sqrt(jnp.maximum(eigvals, 0.0) + eps)).T.reshape(-1, patch, patch, c)
  kernel = jnp.moveaxis(filters, 0, -1)  # (patch, patch, C, patch^2 C)
  return jnp.concatenate([kernel, -kernel], axis=-1)


def dirac_uniform_init(key: jax.Array, shape: Sequence[int], dtype=jnp.float32) -> jax.Array:
  """PyTorch's default conv init (uniform in +-1/sqrt(fan_in)) plus an identity map.

  ``shape = (kh, kw, C_in, C_out)``; output channel ``i < min(C_in, C_out)``
  gets 1 at the centre tap of input channel ``i`` (``torch.nn.init.dirac_``).
  """
  kh, kw, c_in, c_out = shape
  bound = 1.0 / np.sqrt(kh * kw * c_in)
  w = jax.random.uniform(key, shape, dtype, -bound, bound)
  k = min(c_in, c_out)
  dirac = np.zeros(shape, np.float32)
  dirac[kh // 2, kw // 2, np.arange(k), np.arange(k)] = 1.0
  # dirac_ overwrites those k output channels entirely.
  keep = np.ones((c_out,), np.float32)
  keep[:k] = 0.0
  return w * jnp.asarray(keep, dtype) + jnp.asarray(dirac, dtype)


class SpeedNet(nn.Module):
  """The speedrun network; ``whiten`` must be filled with :func:`whitening_kernel`."""
  widths: Sequence[int] = (64, 256, 256)
  num_classes: int = 10
  bn_momentum: float = 0.6
  bn_eps: float = 1e-12
  head_scale: float = 1 / 9
  conv_impl: str = 'lax'
  dtype: Any = None
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    x = cast(x, self.dtype)
    c = x.shape[-1]
    w = self.param('whiten', nn.initializers.zeros, (2, 2, c, 8 * c), jnp.float32)
    b = self.param('whiten_bias', nn.initializers.zeros, (8 * c,), jnp.float32)
    x = jax.nn.gelu(conv.conv2d(x, w.astype(x.dtype), b.astype(x.dtype), impl=self.conv_impl))
    for g, width in enumerate(self.widths, 1):
      for i in (1, 2):
        kernel = self.param(f'group{g}_conv{i}', dirac_uniform_init,
                            (3, 3, x.shape[-1], width), jnp.float32)
        x = conv.conv2d(x, kernel.astype(x.dtype), padding='SAME', impl=self.conv_impl)
        if i == 1:
          x = pool.max_pool(x, 2)
        x = BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_eps, axis_name=self.axis_name,
                      name=f'group{g}_bn{i}')(x, train)
        x = jax.nn.gelu(x)
    x = pool.global_max_pool(x)
    logits = Dense(self.num_classes, use_bias=False, name='head')(x) * self.head_scale
    return logits.astype(jnp.float32)
