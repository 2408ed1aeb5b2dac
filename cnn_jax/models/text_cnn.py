"""Kim (2014)'s CNN for sentence classification: embeddings, parallel 1-D convolutions.

``(N, L) int32 token ids -> (N, num_classes) float32 logits``::

  tokens ─ embed (V x D) ─┬─ conv k=3, F filters ─ ReLU ─ max over time ─┐
                          ├─ conv k=4 ...                                 ├─ concat ─ dropout ─ fc
                          └─ conv k=5 ...                                 ┘

Padding (id 0) is masked, so a sentence's logits do not depend on how far it
is padded: embeddings of padding steps are zeroed, each convolution is
*wide* (``k - 1`` zero steps on both sides, as Kim's code pads every
sentence), and the max over time (:func:`cnn_jax.ops.pool.masked_max_over_time`)
takes only windows that touch a real token. A window at the edge of the
sentence therefore sees the same zeros whether the batch is padded to 20 or
to 400 steps. A sentence with no token gives zero features.

Variables: ``embed/embedding`` (V, D), ``conv<k>/{kernel (k, D, F), bias}``
per width, ``fc/{kernel, bias}``. The embedding starts ``U(-0.25, 0.25)``
(Kim's init of words without a pretrained vector); with ``pretrained`` (a
:class:`cnn_jax.data.text.Pretrained` of GloVe/word2vec vectors) the words
it has start from their vectors. Freezing it (Kim's "static" model) is the
trainer's ``transfer.freeze=('embed',)``: no optimizer state, bit-identical
rows. ``conv_impl`` switches every convolution between ``lax`` and the
from-scratch einsum paths (:func:`cnn_jax.ops.conv.conv1d`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.nn.layers import Dense, cast
from cnn_jax.ops import conv, pool

EMBED_INIT_SCALE = 0.25  # Kim: U(-a, a) for words without a pretrained vector


def window_mask(mask: jax.Array, width: int) -> jax.Array:
  """(N, L) -> (N, L + width - 1): which windows of a wide convolution touch a real step.

  Output step ``t`` covers input steps ``t - width + 1 .. t``.
  """
  padded = jnp.pad(mask, ((0, 0), (width - 1, width - 1)))
  length = mask.shape[1] + width - 1
  return jnp.any(jnp.stack([padded[:, j:j + length] for j in range(width)]), axis=0)


class Conv1D(nn.Module):
  """``(N, L, C) -> (N, L_out, features)``: :func:`cnn_jax.ops.conv.conv1d` with a bias.

  LeCun-normal kernel ``(width, C, features)`` (fan-in ``width * C``), zero bias.
  """
  features: int
  width: int
  padding: Any = 'VALID'
  conv_impl: str = 'lax'
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (self.width, x.shape[-1], self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    x = cast(x, self.dtype)
    return conv.conv1d(x, kernel.astype(x.dtype), bias, padding=self.padding,
                       impl=self.conv_impl)


class TextCNN(nn.Module):
  """Kim 2014's CNN-rand / CNN-non-static (CNN-static with ``transfer.freeze=('embed',)``).

  Attributes:
    vocab_size: rows of the embedding (the vocabulary's size; the task sets it).
    num_classes: outputs.
    embed_dim: D, the word vector size (300 in Kim's word2vec runs).
    widths: filter widths, one convolution each (Kim: 3, 4, 5).
    features: filters per width (Kim: 100).
    dropout: on the pooled features, in training (Kim: 0.5).
    pad_id: the padding token (masked everywhere).
    pretrained: optional :class:`cnn_jax.data.text.Pretrained` (vocab_size x
      embed_dim vectors and which words were found) to start the embedding from.
    conv_impl: 'lax' | 'einsum' | 'einsum_shifted' for every convolution.
    dtype: compute dtype (parameters stay float32).
    axis_name: accepted for data parallel runs under pmap; the model has no
      BatchNorm, so there is nothing to synchronise.
  """
  vocab_size: int = 10_000
  num_classes: int = 2
  embed_dim: int = 128
  widths: Sequence[int] = (3, 4, 5)
  features: int = 100
  dropout: float = 0.5
  pad_id: int = 0
  pretrained: Any = None
  conv_impl: str = 'lax'
  dtype: Any = None
  axis_name: str | None = None

  def _embedding_init(self, key, shape, dtype=jnp.float32):
    random = jax.random.uniform(key, shape, dtype, -EMBED_INIT_SCALE, EMBED_INIT_SCALE)
    p = self.pretrained
    if p is None:
      return random
    if tuple(p.vectors.shape) != tuple(shape):
      raise ValueError(f'pretrained embeddings of shape {tuple(p.vectors.shape)} do not fit an '
                       f'embedding of {tuple(shape)} (vocab_size x embed_dim).')
    return jnp.where(jnp.asarray(p.found)[:, None], jnp.asarray(p.vectors, dtype), random)

  @nn.compact
  def __call__(self, tokens: jax.Array, train: bool = False) -> jax.Array:
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise ValueError(f'TextCNN takes (N, L) integer token ids, got {tokens.shape} '
                       f'{tokens.dtype}; use it with task text_classification.')
    if not self.widths or len(set(self.widths)) != len(self.widths):
      raise ValueError(f'TextCNN needs distinct filter widths (model.kwargs.widths), got '
                       f'{tuple(self.widths)}.')
    mask = tokens != self.pad_id
    table = nn.Embed(self.vocab_size, self.embed_dim, embedding_init=self._embedding_init,
                     name='embed')
    x = table(tokens) * mask[..., None].astype(jnp.float32)  # padding: exactly zero vectors
    x = cast(x, self.dtype)
    pooled = []
    for k in map(int, self.widths):
      # Wide convolution as zero padding + VALID: the same numbers, but XLA:CPU's gradient
      # of a padded convolution is ~7x slower than a VALID one's (measured here).
      wide = jnp.pad(x, ((0, 0), (k - 1, k - 1), (0, 0)))
      y = Conv1D(self.features, k, conv_impl=self.conv_impl, dtype=self.dtype,
                 name=f'conv{k}')(wide)
      pooled.append(pool.masked_max_over_time(jax.nn.relu(y), window_mask(mask, k)))
    h = jnp.concatenate(pooled, axis=-1)
    h = nn.Dropout(self.dropout)(h, deterministic=not train)
    return Dense(self.num_classes, dtype=self.dtype, name='fc')(h).astype(jnp.float32)
