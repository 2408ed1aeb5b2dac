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

``attention=True`` is Show, Attend and Tell's soft attention (Xu et al.
2015) instead: every location of the feature map is projected to an
annotation vector ``a_i`` (``pool`` does not apply), the LSTM state starts
from their mean (``h_0, c_0 = tanh(Dense(mean_i a_i))``, no image step) and
each step's input is the word with the context ``z_t = sum_i alpha_ti a_i``,
``alpha_t = softmax_i(v . tanh(a_i W_a + h_{t-1} W_h + b))``.

Variables: ``backbone/...``, ``project`` (Dense, feature -> E), ``embed``
``(V, E)``, ``lstm`` ``{w_ih (E, 4H), w_hh (H, 4H), b_ih, b_hh}`` (``2E``
inputs with attention) and ``out`` ``{kernel (H, V), bias (V,)}``, plain
arrays declared with ``self.param`` so that the decoder's step is a pure
function of arrays that ``lax.scan`` can run; with attention also
``attention`` ``{w_a (E, E), w_h (H, E), b, v}``, ``init_h`` and ``init_c``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.data.captions import BOS_ID, EOS_ID, PAD_ID
from cnn_jax.models.regressor import feature_map
from cnn_jax.nn.layers import Dense, cast
from cnn_jax.ops import decode, rnn

POOLS = ('mean', 'flatten')


def _out_init(key: jax.Array, hidden: int, vocab: int) -> dict[str, jax.Array]:
  return {'kernel': jax.nn.initializers.lecun_normal()(key, (hidden, vocab), jnp.float32),
          'bias': jnp.zeros((vocab,), jnp.float32)}


def _attention_init(key: jax.Array, dim: int, hidden: int) -> dict[str, jax.Array]:
  k1, k2, k3 = jax.random.split(key, 3)
  init = jax.nn.initializers.lecun_normal()
  return {'w_a': init(k1, (dim, dim), jnp.float32), 'w_h': init(k2, (hidden, dim), jnp.float32),
          'b': jnp.zeros((dim,), jnp.float32),
          'v': jax.random.normal(k3, (dim,), jnp.float32) / jnp.sqrt(dim)}


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
    attention: soft attention over the feature map's locations (Xu et al. 2015).
  """
  backbone: nn.Module
  vocab_size: int = 32
  max_len: int = 16
  embed_dim: int = 128
  hidden: int = 256
  pool: str = 'mean'
  tap: str | None = None
  dropout: float = 0.0
  attention: bool = False
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
    n = x.shape[0]
    drop = lambda y: nn.Dropout(self.dropout)(y, deterministic=not train)
    embed = self.param('embed', nn.initializers.normal(0.1), (self.vocab_size, self.embed_dim),
                       jnp.float32)
    inputs = self.embed_dim * (2 if self.attention else 1)  # attention: word and context
    lstm = self.param('lstm', lambda k: rnn.init_lstm(k, inputs, self.hidden))
    out = self.param('out', lambda k: _out_init(k, self.hidden, self.vocab_size))
    lstm, out, embed = (jax.tree.map(lambda p: cast(p, self.dtype), t) for t in (lstm, out, embed))
    start, cell = (self.attend(x, train, lstm) if self.attention
                   else self.show_and_tell(x, train, lstm, drop))
    logits = lambda y: (y @ out['kernel'] + out['bias']).astype(jnp.float32)
    result = {}
    if tokens is not None:
      if tokens.shape != (n, self.max_len):
        raise ValueError(f'Captioner tokens must be (N, max_len) = {(n, self.max_len)}, got '
                         f'{tuple(tokens.shape)}.')
      words = drop(jnp.take(embed, tokens[:, :-1], axis=0))  # <bos>, w_1, .. (N, L - 1, E)
      _, ys = rnn.scan_rnn(lambda _, state, w: cell(state, w), {}, start, words)
      result['logits'] = logits(drop(ys))
    if not train:

      def step(state, prev):
        state, y = cell(state, jnp.take(embed, prev, axis=0))
        return jax.nn.log_softmax(logits(y)), state

      result['tokens'], result['scores'] = decode.decode(
          step, start, n, self.max_len - 1, beam_size, bos_id=BOS_ID, eos_id=EOS_ID,
          pad_id=PAD_ID, **({'length_penalty': length_penalty} if beam_size > 1 else {}))
    return result

  @nn.nowrap
  def show_and_tell(self, x, train, lstm, drop):
    """The state after the image step, and the LSTM cell on word embeddings."""
    image = drop(self.encode(x, train))
    start, _ = rnn.lstm_cell(lstm, rnn.lstm_zero_carry(x.shape[0], self.hidden, image.dtype),
                             image)
    return start, lambda state, w: rnn.lstm_cell(lstm, state, w)

  @nn.nowrap
  def attend(self, x, train, lstm):
    """Soft attention (Xu et al. 2015): state ``((h, c), a, a W_a)``; the cell's input ``[w, z]``.

    ``a`` (N, P, E): the projected feature vector of each of the map's P
    locations; ``h_0, c_0 = tanh(Dense(mean_i a_i))``; at each step
    ``alpha = softmax_i(v . tanh(a_i W_a + h W_h + b))`` and the context
    ``z = sum_i alpha_i a_i`` joins the word embedding as the LSTM's input.
    """
    feats = self.features(x, train)
    a = Dense(self.embed_dim, dtype=self.dtype, name='project')(
        feats.reshape(feats.shape[0], -1, feats.shape[-1]))
    att = self.param('attention', lambda k: _attention_init(k, self.embed_dim, self.hidden))
    att = jax.tree.map(lambda p: cast(p, self.dtype), att)
    mean = jnp.mean(a, axis=1)
    h0 = jnp.tanh(Dense(self.hidden, dtype=self.dtype, name='init_h')(mean))
    c0 = jnp.tanh(Dense(self.hidden, dtype=self.dtype, name='init_c')(mean))

    def cell(state, w):
      (h, c), a, keys = state
      scores = jnp.tanh(keys + (h @ att['w_h'])[:, None]) @ att['v']  # (N, P)
      alpha = jax.nn.softmax(scores.astype(jnp.float32), axis=-1).astype(a.dtype)
      z = jnp.einsum('np,npe->ne', alpha, a)
      (h, c), y = rnn.lstm_cell(lstm, (h, c), jnp.concatenate([w, z], axis=-1))
      return ((h, c), a, keys), y

    return ((h0, c0), a, a @ att['w_a'] + att['b']), cell

  @nn.nowrap
  def features(self, x: jax.Array, train: bool) -> jax.Array:
    """The backbone's feature map ``tap`` (default the deepest), (N, h, w, C)."""
    return cast(feature_map(self, x, train), self.dtype)

  @nn.nowrap  # inline in __call__'s compact scope: 'project' is this module's
  def encode(self, x: jax.Array, train: bool) -> jax.Array:
    """``(N, E)``: the projected image vector (the LSTM's first input)."""
    f = self.features(x, train)
    f = jnp.mean(f, axis=(1, 2)) if self.pool == 'mean' else f.reshape(f.shape[0], -1)
    return Dense(self.embed_dim, dtype=self.dtype, name='project')(f)
