"""Decoding a sequence model with fixed shapes under jit: greedy and beam search.

Both take a step function ``step_fn(state, tokens) -> (log_probs, state)``:
``tokens`` ``(M,)`` int32 are the last tokens of ``M`` sequences,
``log_probs`` ``(M, V)`` the next token's log-probabilities and ``state`` any
pytree of ``(M, ...)`` arrays (an LSTM's ``(h, c)``). The output length
``max_len``, the beam width and the special ids are static: one ``lax.scan`` of
``max_len`` steps, whatever the sequences do.

A sequence ends at its ``eos`` (which is part of it, and of its score); every
position after it holds ``pad``. A sequence that reaches ``max_len`` without
``eos`` ends there. Scores are sums of log-probabilities.

Beam search keeps the ``K`` best prefixes per example. A finished prefix stays
in the beam, continued by ``pad`` at no cost, and competes with the unfinished
ones on its score (which they can only lower), so with ``length_penalty = 0``
the result is the best-scoring sequence the beam saw; with ``K = 1`` it is
greedy decoding, token for token. ``length_penalty = alpha > 0`` picks the
final sequence by ``score / length ** alpha`` (lengths count ``eos``), which
favours longer captions (Wu et al. 2016 use a smoothed length; this is the
plain one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

StepFn = Callable[[Any, jax.Array], tuple[jax.Array, Any]]

NEG = -1e9  # the score of an impossible prefix (finite: no inf - inf)


def greedy_decode(step_fn: StepFn, state: Any, batch_size: int, max_len: int, *,
                  bos_id: int, eos_id: int, pad_id: int = 0) -> tuple[jax.Array, jax.Array]:
  """The most likely next token, step by step, from ``bos_id``.

  Returns:
    ``(tokens (N, max_len) int32, scores (N,) float32)``: each sequence up to
    and with its ``eos``, then ``pad``; the sum of its tokens' log-probabilities.
  """

  def body(carry, _):
    state, prev, done, score = carry
    logp, state = step_fn(state, prev)
    logp = logp.astype(jnp.float32)
    tok = jnp.argmax(logp, -1).astype(jnp.int32)
    score = score + jnp.where(done, 0.0, jnp.take_along_axis(logp, tok[:, None], 1)[:, 0])
    tok = jnp.where(done, pad_id, tok)
    return (state, tok, done | (tok == eos_id), score), tok

  init = (state, jnp.full((batch_size,), bos_id, jnp.int32), jnp.zeros((batch_size,), bool),
          jnp.zeros((batch_size,), jnp.float32))
  (_, _, _, score), tokens = lax.scan(body, init, None, length=max_len)
  return tokens.T, score


def _tile(x: jax.Array, k: int) -> jax.Array:
  """(N, ...) -> (N * K, ...): each row repeated ``k`` times, next to each other."""
  return jnp.repeat(x, k, axis=0)


def beam_search(step_fn: StepFn, state: Any, batch_size: int, max_len: int, beam_size: int, *,
                bos_id: int, eos_id: int, pad_id: int = 0, length_penalty: float = 0.0
                ) -> tuple[jax.Array, jax.Array]:
  """Beam search of width ``beam_size`` (rules in the module docstring).

  Args:
    step_fn: ``(state, tokens (M,)) -> (log_probs (M, V), state)``.
    state: the initial state, ``(N, ...)`` leaves (tiled to ``N * K`` rows here).
    batch_size, max_len, beam_size: N, the output length, K (static).
    bos_id, eos_id, pad_id: the special tokens.
    length_penalty: ``alpha`` of the final choice ``score / length ** alpha``.

  Returns:
    ``(tokens (N, max_len) int32, scores (N,) float32)`` of the chosen sequence;
    ``scores`` are its summed log-probabilities (not length-normalised).
  """
  n, k = batch_size, beam_size
  if k < 1:
    raise ValueError(f'beam_size must be at least 1, got {k}.')
  state = jax.tree.map(lambda x: _tile(x, k), state)
  rows = jnp.arange(n)[:, None]

  def body(carry, t):
    state, seqs, scores, done, lengths = carry
    prev = jnp.where(t == 0, bos_id, seqs[:, :, jnp.maximum(t - 1, 0)])
    logp, state = step_fn(state, prev.reshape(n * k))
    v = logp.shape[-1]
    logp = logp.astype(jnp.float32).reshape(n, k, v)
    # A finished prefix goes on with pad alone, at no cost.
    only_pad = jnp.where(jnp.arange(v) == pad_id, 0.0, NEG)
    logp = jnp.where(done[..., None], only_pad, logp)
    flat = (scores[..., None] + logp).reshape(n, k * v)
    scores, idx = lax.top_k(flat, k)
    beam, tok = idx // v, (idx % v).astype(jnp.int32)
    seqs = seqs[rows, beam].at[:, :, t].set(tok)
    lengths = lengths[rows, beam] + (~done[rows, beam]).astype(jnp.int32)
    done = done[rows, beam] | (tok == eos_id)
    take = (rows * k + beam).reshape(-1)
    state = jax.tree.map(lambda x: x[take], state)
    return (state, seqs, scores, done, lengths), None

  # Only beam 0 is live at first, so the K beams do not start as K copies.
  scores = jnp.tile(jnp.where(jnp.arange(k) == 0, 0.0, NEG)[None], (n, 1))
  init = (state, jnp.full((n, k, max_len), pad_id, jnp.int32), scores,
          jnp.zeros((n, k), bool), jnp.zeros((n, k), jnp.int32))
  (_, seqs, scores, _, lengths), _ = lax.scan(body, init, jnp.arange(max_len))
  rank = scores
  if length_penalty:
    rank = scores / jnp.maximum(lengths, 1).astype(jnp.float32) ** length_penalty
  best = jnp.argmax(rank, -1)
  return seqs[jnp.arange(n), best], scores[jnp.arange(n), best]


def decode(step_fn: StepFn, state: Any, batch_size: int, max_len: int, beam_size: int = 1,
           **kwargs) -> tuple[jax.Array, jax.Array]:
  """Greedy for ``beam_size == 1``, else :func:`beam_search`."""
  if beam_size == 1:
    kwargs.pop('length_penalty', None)
    return greedy_decode(step_fn, state, batch_size, max_len, **kwargs)
  return beam_search(step_fn, state, batch_size, max_len, beam_size, **kwargs)
