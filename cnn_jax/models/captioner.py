"""Show and Tell (Vinyals et al. 2015): a CNN encoder, an LSTM decoder, greedy or beam decoding.

The image is encoded by any zoo backbone built with ``features_only=True``:
its deepest feature map (or ``tap``) is mean-pooled (``pool='mean'``, the
paper's pooled CNN vector) or flattened (``pool='flatten'``, which keeps where
things are, as :class:`~cnn_jax.models.regressor.Regressor` does), then
projected linearly to the word-embedding size ``E``. The LSTM (the pure cell
of :mod:`cnn_jax.ops.rnn`, PyTorch's equations) reads the image vector as its
first input, once, then the words::

    x_{-1} = W_I CNN(I),  x_t = W_e S_t,  p_{t+1} = softmax(W_o LSTM(x_t))

so in training (teacher forcing) the input sequence is ``[image, <bos>, w_1,
.., w_{L-2}]`` and the output at each word predicts the next token of
``tokens[:, 1:]``. Inference feeds back its own tokens from ``<bos>``
(:mod:`cnn_jax.ops.decode`: greedy, or beam search for ``beam_size > 1``),
for ``max_len - 1`` steps, with fixed shapes under jit.

Variables: ``backbone/...``, ``project`` (Dense, feature -> E), ``embed``
``(V, E)``, ``lstm`` ``{w_ih (E, 4H), w_hh (H, 4H), b_ih, b_hh}`` and ``out``
``{kernel (H, V), bias (V,)}``, the last three plain arrays declared with
``self.param``, so that the decoder's step is a pure function of arrays that
``lax.scan`` can run.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.data.captions import BOS_ID, EOS_ID, PAD_ID
from cnn_jax.nn.layers import Dense, cast
from cnn_jax.ops import decode, rnn

POOLS = ('mean', 'flatten')


def _out_init(key: jax.Array, hidden: int, vocab: int) -> dict[str, jax.Array]:
  return {'kernel': jax.nn.initializers.lecun_normal()(key, (hidden, vocab), jnp.float32),
          'bias': jnp.zeros((vocab,), jnp.float32)}


class Captioner(nn.Module):
  """``(N, H, W, C) -> {'logits' (N, L-1, V)}`` with ``tokens``; decoded ``tokens`` in inference.

  Attributes:
    backbone: a zoo module with ``features_only=True`` (variables under ``backbone/``).
    vocab_size: V, the vocabulary (ids as :mod:`cnn_jax.data.captions`: pad 0, bos 1, eos 2).
    max_len: L, the token length of a caption with its ``<bos>`` and ``<eos>``.
    embed_dim: E, the word embedding and image projection size.
    hidden: H, the LSTM's state size.
    pool: ``'mean'`` (global average of the feature map) or ``'flatten'``.
    tap: the backbone feature to encode; default the deepest (last).
    dropout: on the LSTM's inputs and outputs, in training.
  """
  backbone: nn.Module
  vocab_size: int = 32
  max_len: int = 16
  embed_dim: int = 128
  hidden: int = 256
  pool: str = 'mean'
  tap: str | None = None
  dropout: float = 0.0
  dtype: Any = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False, tokens: jax.Array | None = None,
               beam_size: int = 1, length_penalty: float = 0.0) -> dict[str, jax.Array]:
    """Teacher-forced logits if ``tokens`` (N, L) are given; in inference also a decoding.

    Args:
      x: images, normalised float.
      train: BatchNorm and dropout in training mode; needs ``tokens``.
      tokens: ``(N, max_len)`` int32 captions ``[<bos>, .., <eos>, <pad>..]``.
      beam_size: inference: 1 greedy, > 1 beam search of that width (static).
      length_penalty: beam search's final choice by ``score / length ** alpha``.

    Returns:
      ``'logits'`` (N, L - 1, V) float32 (if ``tokens``): position ``t``
      predicts ``tokens[:, t + 1]``; in inference ``'tokens'`` (N, L - 1)
      int32 (after ``<bos>``, up to ``<eos>``, then pad) and ``'scores'`` (N,),
      their summed log-probabilities.
    """
    if self.pool not in POOLS:
      raise ValueError(f'Captioner pool={self.pool!r}; choose one of {", ".join(POOLS)}.')
    if train and tokens is None:
      raise ValueError('Captioner needs tokens= (the captions, teacher forcing) in training.')
    image = self.encode(x, train)
    embed = self.param('embed', nn.initializers.normal(0.1), (self.vocab_size, self.embed_dim),
                       jnp.float32)
    lstm = self.param('lstm', lambda k: rnn.init_lstm(k, self.embed_dim, self.hidden))
    out = self.param('out', lambda k: _out_init(k, self.hidden, self.vocab_size))
    lstm, out, embed = (jax.tree.map(lambda p: cast(p, self.dtype), t) for t in (lstm, out, embed))
    n = x.shape[0]
    zero = rnn.lstm_zero_carry(n, self.hidden, image.dtype)
    result = {}
    if tokens is not None:
      if tokens.shape != (n, self.max_len):
        raise ValueError(f'Captioner tokens must be (N, max_len) = {(n, self.max_len)}, got '
                         f'{tuple(tokens.shape)}.')
      words = jnp.take(embed, tokens[:, :-1], axis=0)
      inputs = jnp.concatenate([image[:, None], words], axis=1)  # (N, L, E)
      inputs = nn.Dropout(self.dropout)(inputs, deterministic=not train)
      _, ys = rnn.scan_rnn(rnn.lstm_cell, lstm, zero, inputs)
      ys = nn.Dropout(self.dropout)(ys[:, 1:], deterministic=not train)
      result['logits'] = (ys @ out['kernel'] + out['bias']).astype(jnp.float32)
    if not train:
      start, _ = rnn.lstm_cell(lstm, zero, image)

      def step(state, prev):
        state, y = rnn.lstm_cell(lstm, state, jnp.take(embed, prev, axis=0))
        return jax.nn.log_softmax((y @ out['kernel'] + out['bias']).astype(jnp.float32)), state

      result['tokens'], result['scores'] = decode.decode(
          step, start, n, self.max_len - 1, beam_size, bos_id=BOS_ID, eos_id=EOS_ID,
          pad_id=PAD_ID, **({'length_penalty': length_penalty} if beam_size > 1 else {}))
    return result

  @nn.nowrap  # inline in __call__'s compact scope: 'project' is this module's
  def encode(self, x: jax.Array, train: bool) -> jax.Array:
    """``(N, E)``: the projected image vector (the LSTM's first input)."""
    feats = self.backbone(x, train)
    if not isinstance(feats, dict):
      raise ValueError(f'Captioner needs a backbone built with features_only=True; '
                       f'{type(self.backbone).__name__} returned one array.')
    if self.tap is not None and self.tap not in feats:
      raise ValueError(f'backbone {type(self.backbone).__name__} has no feature {self.tap!r}; '
                       f'it has {", ".join(feats)}.')
    f = cast(feats[self.tap] if self.tap is not None else list(feats.values())[-1], self.dtype)
    f = jnp.mean(f, axis=(1, 2)) if self.pool == 'mean' else f.reshape(f.shape[0], -1)
    return Dense(self.embed_dim, dtype=self.dtype, name='project')(f)
