"""LSTM / GRU cells and the masked scan against numpy references of PyTorch's equations."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cnn_jax.ops import rnn


def _sigmoid(v):
  return 1.0 / (1.0 + np.exp(-v))


def _np_gate(p, h, x, k, hidden, reset=None):
  """Block k's pre-activation ``x W_i + b_i + (reset *) (h W_h + b_h)``, in float64."""
  cols = slice(k * hidden, (k + 1) * hidden)
  from_x = x @ p['w_ih'][:, cols] + p['b_ih'][cols]
  from_h = h @ p['w_hh'][:, cols] + p['b_hh'][cols]
  return from_x + (from_h if reset is None else reset * from_h)


def np_lstm_step(p, carry, x):
  """torch.nn.LSTM: blocks i, f, g, o; c' = f c + i g; h' = o tanh(c')."""
  h, c = carry
  hid = h.shape[1]
  i, f = _sigmoid(_np_gate(p, h, x, 0, hid)), _sigmoid(_np_gate(p, h, x, 1, hid))
  g, o = np.tanh(_np_gate(p, h, x, 2, hid)), _sigmoid(_np_gate(p, h, x, 3, hid))
  c = f * c + i * g
  h = o * np.tanh(c)
  return (h, c), h


def np_gru_step(p, h, x):
  """torch.nn.GRU: blocks r, z, n; n = tanh(x W_in + b_in + r (h W_hn + b_hn))."""
  hid = h.shape[1]
  r, z = _sigmoid(_np_gate(p, h, x, 0, hid)), _sigmoid(_np_gate(p, h, x, 1, hid))
  n = np.tanh(_np_gate(p, h, x, 2, hid, reset=r))
  h = (1 - z) * n + z * h
  return h, h


def np_run(step, p, carry, xs):
  """Plain Python loop over time of an (N, T, D) batch: (final carry, (N, T, H) outputs)."""
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  carry = jax.tree.map(lambda a: np.asarray(a, np.float64), carry)
  ys = []
  for t in range(xs.shape[1]):
    carry, y = step(p, carry, np.asarray(xs[:, t], np.float64))
    ys.append(y)
  return carry, np.stack(ys, axis=1)


# name -> (init, cell, numpy step, zero carry)
CELLS = {
    'lstm': (rnn.init_lstm, rnn.lstm_cell, np_lstm_step, rnn.lstm_zero_carry),
    'gru': (rnn.init_gru, rnn.gru_cell, np_gru_step, rnn.gru_zero_carry),
}
N, T, D, H = 3, 5, 4, 6


def _setup(name, seed=0, n=N, t=T, d=D, hidden=H):
  init, cell, np_step, zero = CELLS[name]
  k_p, k_x, k_c = jax.random.split(jax.random.key(seed), 3)
  params = init(k_p, d, hidden)
  xs = jax.random.normal(k_x, (n, t, d))
  # A non-zero initial state (as from image features) exercises the h/c paths from step one.
  carry0 = jax.tree.map(lambda a: 0.5 * jax.random.normal(k_c, a.shape), zero(n, hidden))
  return params, cell, np_step, carry0, xs


def _assert_tree_close(a, b, **kw):
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, **kw), a, b)


class CellTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters('lstm', 'gru')
  def test_steps_match_numpy_reference(self, name):
    params, cell, np_step, carry0, xs = _setup(name)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    carry, np_carry = carry0, jax.tree.map(lambda a: np.asarray(a, np.float64), carry0)
    step = self.variant(cell)
    for t in range(T):
      carry, y = step(params, carry, xs[:, t])
      np_carry, np_y = np_step(p64, np_carry, np.asarray(xs[:, t], np.float64))
      np.testing.assert_allclose(y, np_y, atol=1e-5, rtol=1e-5)
      _assert_tree_close(carry, np_carry, atol=1e-5, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters('lstm', 'gru')
  def test_scan_matches_numpy_loop(self, name):
    params, cell, np_step, carry0, xs = _setup(name, seed=1)
    carry, ys = self.variant(functools.partial(rnn.scan_rnn, cell))(params, carry0, xs)
    np_carry, np_ys = np_run(np_step, params, carry0, xs)
    chex.assert_shape(ys, (N, T, H))
    np.testing.assert_allclose(ys, np_ys, atol=1e-5, rtol=1e-5)
    _assert_tree_close(carry, np_carry, atol=1e-5, rtol=1e-5)

  def test_gate_order_is_pytorchs(self):
    # LSTM: zero weights, forget block (1) saturated open, input block (0) shut: c' = c.
    hid = 2
    zeros = {'w_ih': jnp.zeros((3, 4 * hid)), 'w_hh': jnp.zeros((hid, 4 * hid)),
             'b_hh': jnp.zeros(4 * hid)}
    b = jnp.zeros(4 * hid).at[:hid].set(-50.0).at[hid:2 * hid].set(50.0)
    c = jnp.array([[0.3, -0.7]])
    (_, c_new), _ = rnn.lstm_cell({**zeros, 'b_ih': b}, (jnp.zeros((1, hid)), c),
                                  jnp.ones((1, 3)))
    np.testing.assert_allclose(c_new, c, atol=1e-6)
    # GRU: update block (1) saturated to 1 keeps h whatever n is.
    zeros = {k: v[..., :3 * hid] for k, v in zeros.items()}
    b = jnp.zeros(3 * hid).at[hid:2 * hid].set(50.0).at[2 * hid:].set(3.0)
    h = jnp.array([[0.3, -0.7]])
    h_new, _ = rnn.gru_cell({**zeros, 'b_ih': b}, h, jnp.ones((1, 3)))
    np.testing.assert_allclose(h_new, h, atol=1e-6)

  @parameterized.parameters(('lstm', 4), ('gru', 3))
  def test_init_shapes_and_bounds(self, name, gates):
    params = CELLS[name][0](jax.random.key(0), 7, 16)
    chex.assert_shape([params['w_ih'], params['w_hh'], params['b_ih'], params['b_hh']],
                      [(7, gates * 16), (16, gates * 16), (gates * 16,), (gates * 16,)])
    for v in params.values():  # PyTorch: U(-1/sqrt(H), 1/sqrt(H)) = U(-0.25, 0.25)
      assert v.dtype == jnp.float32 and float(jnp.max(jnp.abs(v))) <= 0.25


def _pad(xs, lengths, left=False, fill=100.0):
  """Pads (N, T, D) rows to max(lengths) + 2 with a huge fill; returns (padded, mask)."""
  n, t_max = len(lengths), max(lengths) + 2
  padded = np.full((n, t_max, xs.shape[2]), fill, np.float32)
  mask = np.zeros((n, t_max), bool)
  for i, length in enumerate(lengths):
    cols = slice(t_max - length, t_max) if left else slice(0, length)
    padded[i, cols], mask[i, cols] = xs[i, :length], True
  return jnp.asarray(padded), jnp.asarray(mask)


class MaskedScanTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(name=('lstm', 'gru'), left=(False, True))
  def test_padded_equals_unpadded_shorter_sequence(self, name, left):
    params, cell, _, carry0, xs = _setup(name, seed=2)
    lengths = [5, 2, 0]  # the last row is all padding: it keeps carry0
    padded, mask = _pad(np.asarray(xs), lengths, left=left)
    carry, ys = self.variant(functools.partial(rnn.scan_rnn, cell))(params, carry0, padded, mask)
    np.testing.assert_array_equal(np.where(mask[..., None], 0.0, ys), 0.0)  # zeros at padding
    for i, length in enumerate(lengths):
      row0 = jax.tree.map(lambda a: a[i:i + 1], carry0)
      want_carry, want_ys = rnn.scan_rnn(cell, params, row0, xs[i:i + 1, :length])
      _assert_tree_close(jax.tree.map(lambda a: a[i:i + 1], carry), want_carry,
                         atol=1e-6, rtol=1e-6)
      np.testing.assert_allclose(ys[i][mask[i]], want_ys[0], atol=1e-6, rtol=1e-6)

  @parameterized.parameters('lstm', 'gru')
  def test_reverse_is_scan_of_flipped_sequence(self, name):
    params, cell, _, carry0, xs = _setup(name, seed=3)
    carry, ys = rnn.scan_rnn(cell, params, carry0, xs, reverse=True)
    want_carry, want_ys = rnn.scan_rnn(cell, params, carry0, xs[:, ::-1])
    _assert_tree_close(carry, want_carry, atol=1e-6)
    np.testing.assert_allclose(ys, want_ys[:, ::-1], atol=1e-6)

  @parameterized.parameters('lstm', 'gru')
  def test_gradients_numerically(self, name):
    params, cell, _, carry0, xs = _setup(name, seed=4, n=2, t=3, d=2, hidden=3)
    mask = jnp.array([[True, True, True], [True, True, False]])

    @jax.jit
    def loss(params, carry0, xs):
      carry, ys = rnn.scan_rnn(cell, params, carry0, xs, mask)
      return jnp.sum(ys * jnp.cos(jnp.arange(ys.size, dtype=ys.dtype).reshape(ys.shape))) + \
          sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(carry))

    jax.test_util.check_grads(loss, (params, carry0, xs), order=1, modes=('rev',),
                              atol=1e-2, rtol=1e-2)
    grads = jax.grad(loss, argnums=2)(params, carry0, xs)
    np.testing.assert_array_equal(grads[1, 2], 0.0)  # a padded step gets no gradient


class ErrorTest(parameterized.TestCase):

  def test_scan_errors(self):
    params, cell, _, carry0, xs = _setup('lstm')
    with pytest.raises(ValueError, match=r'batch-first inputs \(N, T, D\), got shape \(5, 4\)'):
      rnn.scan_rnn(cell, params, carry0, xs[0])
    with pytest.raises(ValueError, match=r'mask must be bool \(N, T\) = \(3, 5\)'):
      rnn.scan_rnn(cell, params, carry0, xs, jnp.ones((3, 5), jnp.int32))
    with pytest.raises(ValueError, match=r'carry0 leaves must have batch size N=2'):
      rnn.scan_rnn(cell, params, carry0, xs[:2])

  @parameterized.parameters('lstm', 'gru')
  def test_cell_errors(self, name):
    params, cell, _, carry0, xs = _setup(name)
    with pytest.raises(ValueError, match=r'x must be one time step \(N, D=4\).*scan_rnn'):
      cell(params, carry0, xs)
    with pytest.raises(ValueError, match=r'state h must be \(N, H\) = \(3, 6\)'):
      cell(params, jax.tree.map(lambda a: a[:, :2], carry0), xs[:, 0])
    with pytest.raises(ValueError, match=rf"params lack \['w_hh'\].*init_{name}"):
      cell({k: v for k, v in params.items() if k != 'w_hh'}, carry0, xs[:, 0])
    with pytest.raises(ValueError, match='input_dim and hidden must be positive'):
      CELLS[name][0](jax.random.key(0), 0, 4)
