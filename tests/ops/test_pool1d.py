"""1-D pooling over time: windowed pools and masked max/mean over padded sequences."""

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cnn_jax.ops import pool
from tests.ops.test_conv1d import _ref_pads


def _ref_pool1d(x, kind, window, stride, lo, hi, count_include_pad=False):
  """Loops over windows of (N, L, C); padding is never the max and counts 0 in sums."""
  x = np.asarray(x, np.float64)
  n, length, c = x.shape
  real = np.zeros(length + lo + hi, bool)
  real[lo:lo + length] = True
  xp = np.zeros((n, length + lo + hi, c))
  xp[:, lo:lo + length] = x
  outs = []
  for start in range(0, length + lo + hi - window + 1, stride):
    win, is_real = xp[:, start:start + window], real[start:start + window]
    if kind == 'max':
      outs.append(win[:, is_real].max(axis=1))
    else:
      outs.append(win.sum(axis=1) / (window if count_include_pad else is_real.sum()))
  return np.stack(outs, axis=1)


def _ref_over_time(x, mask, kind):
  """Per row: max / mean of the real steps, 0 for a row without any."""
  x = np.asarray(x, np.float64)
  out = np.zeros((x.shape[0], x.shape[2]))
  for i in range(x.shape[0]):
    real = x[i, mask[i]]
    if len(real):
      out[i] = real.max(axis=0) if kind == 'max' else real.mean(axis=0)
  return out


def _pools(x, window, stride, padding):
  return dict(max=pool.max_pool1d(x, window, stride, padding),
              avg=pool.avg_pool1d(x, window, stride, padding),
              avg_incl=pool.avg_pool1d(x, window, stride, padding, count_include_pad=True))


@hypothesis.settings(max_examples=12)
@hypothesis.given(length=st.integers(3, 12), window=st.integers(1, 4), stride=st.integers(1, 3),
                  padding=st.sampled_from(['VALID', 'SAME', 0, 1, (0, 1), (1, 0)]),
                  seed=st.integers(0, 2**16))
def test_windowed_pools_match_reference(length, window, stride, padding, seed):
  hypothesis.assume(window > 1 or padding in ('VALID', 'SAME', 0))  # pad < window
  x = np.random.default_rng(seed).normal(size=(2, length, 3)).astype(np.float32)
  out = jax.jit(_pools, static_argnums=(1, 2, 3))(x, window, stride, padding)
  lo, hi = _ref_pads(padding, length, window, stride, dilation=1)
  for kind, incl in (('max', False), ('avg', False), ('avg_incl', True)):
    want = _ref_pool1d(x, kind[:3], window, stride, lo, hi, count_include_pad=incl)
    np.testing.assert_allclose(out[kind], want, rtol=1e-5, atol=1e-6, err_msg=kind)


class Pool1dTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((2, None, 'VALID', 3), (3, 1, 'SAME', 7), (3, 2, 1, 4))
  def test_shapes(self, window, stride, padding, want_len):
    x = jnp.zeros((2, 7, 5))
    for fn in (pool.max_pool1d, pool.avg_pool1d):
      chex.assert_shape(self.variant(lambda x: fn(x, window, stride, padding))(x),
                        (2, want_len, 5))

  def test_padding_never_wins_max(self):
    y = pool.max_pool1d(-jnp.ones((1, 5, 2)), 3, 1, 'SAME')
    np.testing.assert_array_equal(y, -np.ones((1, 5, 2)))

  def test_errors(self):
    with pytest.raises(ValueError, match=r'max_pool1d expects NWC input of rank 3'):
      pool.max_pool1d(jnp.zeros((1, 4, 4, 1)), 2)
    with pytest.raises(ValueError, match=r'avg_pool1d padding \(2, 2\) along length must be'):
      pool.avg_pool1d(jnp.zeros((1, 6, 1)), 2, padding=2)
    with pytest.raises(ValueError, match=r'max_pool1d: window of size 5 .* does not fit'):
      pool.max_pool1d(jnp.zeros((1, 4, 1)), 5)
    with pytest.raises(ValueError, match=r'window must be an int for a 1-D op'):
      pool.max_pool1d(jnp.zeros((1, 4, 1)), (2, 2))
    with pytest.raises(ValueError, match='avg_pool1d expects a floating-point input'):
      pool.avg_pool1d(jnp.zeros((1, 4, 1), jnp.int32), 2)


def _padded_batch(seed, lengths, max_len=6, channels=3, fill=1e3):
  """Right-padded (N, L, C) with huge garbage (and a NaN) in the padding, and its mask."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(len(lengths), max_len, channels)).astype(np.float32)
  mask = np.arange(max_len)[None, :] < np.asarray(lengths)[:, None]
  x[~mask] = fill
  if not mask.all():
    x[np.argwhere(~mask)[0][0], -1, 0] = np.nan
  return x, mask


class OverTimeTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_match_reference_and_ignore_padding(self):
    x, mask = _padded_batch(0, [6, 3, 1, 0])  # the last row is all padding
    mx = self.variant(pool.masked_max_over_time)(x, mask)
    mean = self.variant(pool.masked_mean_over_time)(x, mask)
    chex.assert_shape([mx, mean], (4, 3))
    np.testing.assert_allclose(mx, _ref_over_time(x, mask, 'max'), rtol=1e-6)
    np.testing.assert_allclose(mean, _ref_over_time(x, mask, 'mean'), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(mx[3], 0.0)  # not -inf
    np.testing.assert_array_equal(mean[3], 0.0)  # not 0/0

  def test_result_does_not_depend_on_padding_length(self):
    x, mask = _padded_batch(1, [2, 4])
    longer = np.concatenate([x, np.full((2, 5, 3), -7.0, np.float32)], axis=1)
    longer_mask = np.concatenate([mask, np.zeros((2, 5), bool)], axis=1)
    for fn in (pool.masked_max_over_time, pool.masked_mean_over_time):
      np.testing.assert_allclose(fn(longer, longer_mask), fn(x, mask), rtol=1e-6)

  def test_no_mask_is_plain_max_and_mean(self):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 5, 3)), jnp.float32)
    np.testing.assert_array_equal(pool.masked_max_over_time(x), jnp.max(x, axis=1))
    np.testing.assert_allclose(pool.masked_mean_over_time(x), jnp.mean(x, axis=1), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_gradients_finite_and_only_on_real_steps(self):
    x, mask = _padded_batch(3, [5, 2, 0])
    x = np.where(mask[..., None], x, 0.0).astype(np.float32)  # finite everywhere for the VJP
    g_max = self.variant(jax.grad(lambda x: pool.masked_max_over_time(x, mask).sum()))(x)
    g_mean = self.variant(jax.grad(lambda x: pool.masked_mean_over_time(x, mask).sum()))(x)
    assert np.all(np.isfinite(g_max)) and np.all(np.isfinite(g_mean))
    # Max: one 1 per (row, channel) at the first maximal real step; none for the empty row.
    want = np.zeros_like(x)
    for i in range(2):
      first = np.argmax(np.where(mask[i][:, None], x[i], -np.inf), axis=0)
      want[i, first, np.arange(3)] = 1.0
    np.testing.assert_array_equal(g_max, want)
    # Mean: 1 / length on real steps, 0 on padding and on the empty row.
    lengths = np.maximum(mask.sum(1), 1)[:, None, None]
    np.testing.assert_allclose(g_mean, mask[..., None] / lengths * np.ones_like(x), rtol=1e-6)

  def test_low_precision_keeps_dtype(self):
    x, mask = _padded_batch(4, [4, 2], fill=0.0)
    xb = jnp.asarray(x, jnp.bfloat16)
    for fn, kind in ((pool.masked_max_over_time, 'max'), (pool.masked_mean_over_time, 'mean')):
      y = fn(xb, mask)
      assert y.dtype == jnp.bfloat16
      np.testing.assert_allclose(y.astype(jnp.float32), _ref_over_time(x, mask, kind),
                                 rtol=2e-2, atol=2e-2)

  @parameterized.parameters(pool.masked_max_over_time, pool.masked_mean_over_time)
  def test_errors(self, fn):
    x = jnp.zeros((2, 5, 3))
    with pytest.raises(ValueError, match=r'expects NWC input of rank 3, got shape \(5, 3\)'):
      fn(jnp.zeros((5, 3)), jnp.ones((5,), bool))
    with pytest.raises(ValueError, match=r'mask must be boolean .*got dtype int32'):
      fn(x, jnp.ones((2, 5), jnp.int32))
    with pytest.raises(ValueError, match=r'mask has shape \(2, 4\) .* needs \(N, L\) = \(2, 5\)'):
      fn(x, jnp.ones((2, 4), bool))
    with pytest.raises(ValueError, match='floating-point'):
      fn(jnp.zeros((2, 5, 3), jnp.int32), jnp.ones((2, 5), bool))
