"""Greedy and beam search decoding on hand-made transition tables."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.ops import decode

PAD, BOS, EOS, A, B = range(5)


def table_step(logp_table):
  """``step_fn`` of a table ``(T, V, V)``: log p(next | step, previous); the state is the step."""
  table = jnp.asarray(logp_table, jnp.float32)

  def step(t, prev):
    return table[t, prev], t + 1

  return step


def random_table(seed, steps, v=5, n=3):
  p = np.random.default_rng(seed).dirichlet(np.ones(v) * 0.7, size=(n, steps, v))
  return np.log(p)


def brute_force(logp, max_len):
  """The best sequence of one table (T, V, V) by enumeration (eos, then pad at no cost)."""
  best, best_score = None, -np.inf
  v = logp.shape[-1]
  for seq in itertools.product(range(v), repeat=max_len):
    score, prev, out = 0.0, BOS, []
    for t, tok in enumerate(seq):
      score += logp[t, prev, tok]
      out.append(tok)
      prev = tok
      if tok == EOS:
        break
    out += [PAD] * (max_len - len(out))
    if score > best_score:
      best, best_score = out, score
  return best, best_score


def _decode(tables, fn, max_len, **kw):
  """One table per example: vmap over examples of a batch of 1."""
  def one(table):
    tokens, score = fn(table_step(table), jnp.zeros((1,), jnp.int32), 1, max_len,
                       bos_id=BOS, eos_id=EOS, pad_id=PAD, **kw)
    return tokens[0], score[0]
  return jax.jit(jax.vmap(one))(jnp.asarray(tables, jnp.float32))


def test_greedy_takes_the_argmax_step_by_step():
  tables = random_table(0, 6)
  tokens, scores = _decode(tables, decode.greedy_decode, 6)
  for n in range(len(tables)):
    prev, score, done = BOS, 0.0, False
    for t in range(6):
      if done:
        assert tokens[n, t] == PAD
        continue
      tok = int(np.argmax(tables[n, t, prev]))
      assert tokens[n, t] == tok
      score += tables[n, t, prev, tok]
      prev, done = tok, tok == EOS
    assert scores[n] == pytest.approx(score, rel=1e-5)


def test_beam_of_one_is_greedy():
  tables = random_table(1, 7, n=6)
  greedy = _decode(tables, decode.greedy_decode, 7)
  beam = _decode(tables, lambda *a, **k: decode.beam_search(*a[:4], 1, **k), 7)
  np.testing.assert_array_equal(beam[0], greedy[0])
  np.testing.assert_allclose(beam[1], greedy[1], rtol=1e-6)


def test_beam_search_beats_greedy_on_a_garden_path():
  """Greedy takes A (0.6) into a flat continuation; B (0.4) then <eos> (0.98) is better."""
  p = np.full((5, 5), 0.005)
  p[BOS, [A, B]] = 0.6, 0.4 - 3 * 0.005
  p[A, [A, B, EOS]] = 0.34, 0.33, 0.33 - 2 * 0.005
  p[B, EOS] = 0.98
  p[EOS, PAD] = p[PAD, PAD] = 1.0
  p /= p.sum(-1, keepdims=True)
  tables = np.log(np.broadcast_to(p, (1, 4, 5, 5)))
  g_tok, g_score = _decode(tables, decode.greedy_decode, 4)
  b_tok, b_score = _decode(tables, lambda *a, **k: decode.beam_search(*a[:4], 2, **k), 4)
  assert g_tok[0].tolist() == [A, A, A, A]
  assert b_tok[0].tolist() == [B, EOS, PAD, PAD]
  assert float(b_score[0]) == pytest.approx(np.log(p[BOS, B] * p[B, EOS]), rel=1e-5)
  assert float(b_score[0]) > float(g_score[0]) + 1.0


def test_wide_beam_is_exhaustive():
  """With K >= V^(T-1) the beam keeps every prefix: it finds the enumeration's best."""
  tables = random_table(2, 3, n=4)
  tokens, scores = _decode(tables, lambda *a, **k: decode.beam_search(*a[:4], 25, **k), 3)
  for n in range(len(tables)):
    best, score = brute_force(tables[n], 3)
    assert tokens[n].tolist() == best
    assert float(scores[n]) == pytest.approx(score, rel=1e-5)


def test_length_penalty_prefers_the_longer_caption():
  p = np.full((5, 5), 1e-6)
  p[BOS, [EOS, A]] = 0.5
  p[A, EOS] = 0.9
  p[EOS, PAD] = p[PAD, PAD] = 1.0
  tables = np.log(np.broadcast_to(p / p.sum(-1, keepdims=True), (1, 3, 5, 5)))
  beam = lambda alpha: _decode(
      tables, lambda *a, **k: decode.beam_search(*a[:4], 2, length_penalty=alpha, **k), 3)
  assert beam(0.0)[0][0].tolist() == [EOS, PAD, PAD]
  assert beam(1.0)[0][0].tolist() == [A, EOS, PAD]


def test_batch_rows_are_independent_and_state_follows_the_beam():
  """A batch of 2 in one call (state (N, ...) tiled to N * K rows) equals two calls of 1."""
  tables = jnp.asarray(random_table(3, 5, n=2), jnp.float32)

  def step(state, prev):  # state: (M, 2) = (example, step)
    return tables[state[:, 0], state[:, 1], prev], state.at[:, 1].add(1)

  state = jnp.array([[0, 0], [1, 0]], jnp.int32)
  tokens, scores = decode.beam_search(step, state, 2, 5, 3, bos_id=BOS, eos_id=EOS, pad_id=PAD)
  one = _decode(np.asarray(tables), lambda *a, **k: decode.beam_search(*a[:4], 3, **k), 5)
  np.testing.assert_array_equal(tokens, one[0])
  np.testing.assert_allclose(scores, one[1], rtol=1e-6)
  with pytest.raises(ValueError, match='beam_size must be at least 1'):
    decode.beam_search(step, state, 2, 5, 0, bos_id=BOS, eos_id=EOS)
