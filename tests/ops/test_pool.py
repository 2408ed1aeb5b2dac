"""Tests for cnn_jax.ops.pool against a plain numpy loop reference."""

import math

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cnn_jax.ops import pool, shapes


def _ref_pads(padding, in_hw, window, stride):
  """Independent resolution of the padding spellings to ((t, b), (l, r))."""
  if padding == 'VALID':
    return (0, 0), (0, 0)
  if padding == 'SAME':
    pads = []
    for n, f, s in zip(in_hw, window, stride):
      total = max((math.ceil(n / s) - 1) * s + f - n, 0)
      pads.append((total // 2, total - total // 2))
    return tuple(pads)
  if isinstance(padding, int):
    return (padding, padding), (padding, padding)
  if isinstance(padding[0], int):
    return tuple(padding), tuple(padding)
  return tuple(padding)


def _ref_pool(x, kind, window, stride, padding, p=None, count_include_pad=False):
  """Loops over output positions; kind in {'max', 'avg', 'lp'}."""
  x = np.asarray(x, np.float64)
  n, h, w, c = x.shape
  (kh, kw), (sh, sw) = window, stride
  (pt, pb), (pl, pr) = _ref_pads(padding, (h, w), window, stride)
  fill = -np.inf if kind == 'max' else 0.0
  xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
  real = np.pad(np.ones((h, w)), ((pt, pb), (pl, pr)))
  oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
  out = np.empty((n, oh, ow, c))
  for i in range(oh):
    for j in range(ow):
      rows, cols = slice(i * sh, i * sh + kh), slice(j * sw, j * sw + kw)
      win = xp[:, rows, cols, :]
      if kind == 'max':
        out[:, i, j] = win.max(axis=(1, 2))
      elif kind == 'avg':
        count = kh * kw if count_include_pad else real[rows, cols].sum()
        out[:, i, j] = win.sum(axis=(1, 2)) / count
      else:
        out[:, i, j] = (np.abs(win) ** p).sum(axis=(1, 2)) ** (1 / p)
  return out


def _all_pools(x, window, stride, padding):
  """Every windowed pool in one function, so each geometry compiles once."""
  return dict(
      max=pool.max_pool(x, window, stride, padding),
      avg=pool.avg_pool(x, window, stride, padding),
      avg_incl=pool.avg_pool(x, window, stride, padding, count_include_pad=True),
      lp1=pool.lp_pool(x, 1, window, stride, padding),
      lp2=pool.lp_pool(x, 2, window, stride, padding),
      lp3=pool.lp_pool(x, 3.0, window, stride, padding),
  )


def _check_all_pools(out, x, window, stride, padding):
  window = (window,) * 2 if isinstance(window, int) else window
  stride = window if stride is None else stride
  stride = (stride,) * 2 if isinstance(stride, int) else stride
  want = dict(
      max=_ref_pool(x, 'max', window, stride, padding),
      avg=_ref_pool(x, 'avg', window, stride, padding),
      avg_incl=_ref_pool(x, 'avg', window, stride, padding, count_include_pad=True),
      lp1=_ref_pool(x, 'lp', window, stride, padding, p=1),
      lp2=_ref_pool(x, 'lp', window, stride, padding, p=2),
      lp3=_ref_pool(x, 'lp', window, stride, padding, p=3),
  )
  for name, ref in want.items():
    np.testing.assert_allclose(out[name], ref, rtol=1e-5, atol=1e-5, err_msg=name)


# (input shape, window, stride, padding): every padding spelling, overlapping
# and non-overlapping windows, rectangular windows and strides.
_CASES = [
    ((2, 6, 6, 3), 2, None, 'VALID'),
    ((1, 7, 5, 2), 3, 2, 'SAME'),
    ((2, 5, 8, 1), (2, 3), (1, 2), 1),
    ((1, 6, 7, 2), 3, 1, (1, 2)),
    ((1, 5, 6, 3), (3, 2), 2, ((2, 0), (1, 1))),
]


class PoolVsReferenceTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*_CASES)
  def test_matches_numpy_reference(self, shape, window, stride, padding):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    fn = self.variant(lambda x: _all_pools(x, window, stride, padding))
    _check_all_pools(fn(jnp.asarray(x)), x, window, stride, padding)


@hypothesis.settings(max_examples=12)
@hypothesis.given(
    h=st.integers(3, 7), w=st.integers(3, 7),
    kh=st.integers(1, 3), kw=st.integers(1, 3),
    sh=st.integers(1, 3), sw=st.integers(1, 3),
    padding=st.sampled_from(['VALID', 'SAME', 0, 1]),
    seed=st.integers(0, 2**16))
def test_random_geometry_matches_reference(h, w, kh, kw, sh, sw, padding, seed):
  hypothesis.assume(padding != 1 or min(kh, kw) > 1)  # Padding must be below the window.
  x = np.random.default_rng(seed).normal(size=(1, h, w, 2)).astype(np.float32)
  out = jax.jit(_all_pools, static_argnums=(1, 2, 3))(x, (kh, kw), (sh, sw), padding)
  _check_all_pools(out, x, (kh, kw), (sh, sw), padding)


class MaxPoolTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_gradient_goes_to_argmax_of_each_window(self):
    rng = np.random.default_rng(1)
    # Distinct values so every window has a unique maximum.
    x = rng.permutation(2 * 4 * 6 * 3).reshape(2, 4, 6, 3).astype(np.float32)
    g = rng.normal(size=(2, 2, 3, 3)).astype(np.float32)
    _, vjp = jax.vjp(self.variant(lambda x: pool.max_pool(x, 2)), jnp.asarray(x))
    (dx,) = vjp(jnp.asarray(g))
    want = np.zeros_like(x)
    for i in range(2):
      for j in range(3):
        win = x[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2, :]
        is_max = win == win.max(axis=(1, 2), keepdims=True)
        want[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2, :] = is_max * g[:, i:i + 1, j:j + 1, :]
    np.testing.assert_array_equal(dx, want)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      (2, 2, 'VALID', (2, 4, 6, 3)),   # non-overlapping tiles (the reshape path)
      (2, 2, 'VALID', (1, 7, 5, 2)),   # ... with uncovered trailing rows/columns
      (3, 1, 'SAME', (2, 5, 6, 3)),    # overlapping, padded (reduce_window)
      (3, 2, 1, (1, 7, 7, 2)),         # AlexNet/GoogLeNet-style 3x3/2 windows
  )
  def test_gradient_routes_to_first_argmax_also_on_ties(self, window, stride, padding, shape):
    rng = np.random.default_rng(3)
    # Few distinct values, so most windows hold ties (as after a ReLU).
    x = rng.integers(0, 3, shape).astype(np.float32)
    y = np.asarray(pool.max_pool(jnp.asarray(x), window, stride, padding))
    g = rng.normal(size=y.shape).astype(np.float32)
    _, vjp = jax.vjp(self.variant(lambda x: pool.max_pool(x, window, stride, padding)),
                     jnp.asarray(x))
    (dx,) = vjp(jnp.asarray(g))
    # numpy reference: each window's whole cotangent goes to its first maximal
    # real cell in row-major order; overlapping windows accumulate.
    (pt, _), (pl, _) = shapes.normalize_padding(padding, shape[1:3], (window,) * 2, (stride,) * 2)
    want = np.zeros_like(x)
    for b in range(shape[0]):
      for c in range(shape[3]):
        for i in range(y.shape[1]):
          for j in range(y.shape[2]):
            r0, c0 = i * stride - pt, j * stride - pl
            cells = [(r, q) for r in range(r0, r0 + window) for q in range(c0, c0 + window)
                     if 0 <= r < shape[1] and 0 <= q < shape[2]]
            r, q = max(cells, key=lambda rq: (x[b, rq[0], rq[1], c], -cells.index(rq)))
            assert x[b, r, q, c] == y[b, i, j, c]
            want[b, r, q, c] += g[b, i, j, c]
    np.testing.assert_allclose(dx, want, rtol=1e-6, atol=1e-6)

  def test_global_max_pool_gradient_goes_to_one_cell(self):
    x = jnp.zeros((1, 3, 3, 2)).at[0, 2, 1, 1].set(1.0)  # channel 0: all tied at 0
    dx = jax.grad(lambda x: pool.global_max_pool(x).sum())(x)
    want = np.zeros((1, 3, 3, 2), np.float32)
    want[0, 0, 0, 0] = want[0, 2, 1, 1] = 1.0
    np.testing.assert_array_equal(dx, want)

  @chex.variants(with_jit=True, without_jit=True)
  def test_padding_never_wins(self):
    # Zero padding would put 0 in the border outputs of an all-negative input.
    x = -jnp.ones((1, 5, 5, 2))
    y = self.variant(lambda x: pool.max_pool(x, 3, 1, 'SAME'))(x)
    np.testing.assert_array_equal(y, -np.ones((1, 5, 5, 2)))

  def test_integer_input(self):
    x = jnp.arange(-16, 0, dtype=jnp.int8).reshape(1, 4, 4, 1)
    y = pool.max_pool(x, 3, 1, 'SAME')
    assert y.dtype == jnp.int8
    np.testing.assert_array_equal(y, _ref_pool(x, 'max', (3, 3), (1, 1), 'SAME'))


class LpPoolTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_p1_is_sum_of_abs(self):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 4, 6, 3)), jnp.float32)
    y = self.variant(lambda x: pool.lp_pool(x, 1, (4, 6)))(x)
    np.testing.assert_allclose(y[:, 0, 0], jnp.sum(jnp.abs(x), axis=(1, 2)), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(1, 2, 3, 2.5)
  def test_gradient_finite_at_zero(self, p):
    grad = self.variant(jax.grad(lambda x: pool.lp_pool(x, p, 2, padding='SAME').sum()))
    dx = grad(jnp.zeros((1, 3, 4, 2)))
    assert np.all(np.isfinite(dx))

  def test_gradient_matches_finite_differences(self):
    x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 4, 4, 2)), jnp.float32)
    chex.assert_numerical_grads(lambda x: pool.lp_pool(x, 2, 2, 1, 'SAME').sum(), (x,),
                                order=1, atol=1e-2, rtol=1e-2)

  def test_rejects_p_below_one(self):
    with pytest.raises(ValueError, match='p >= 1'):
      pool.lp_pool(jnp.ones((1, 4, 4, 1)), 0.5, 2)


class GlobalPoolTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(False, True)
  def test_matches_jnp(self, keepdims):
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 5, 4, 6)), jnp.float32)
    avg = self.variant(lambda x: pool.global_avg_pool(x, keepdims=keepdims))(x)
    mx = self.variant(lambda x: pool.global_max_pool(x, keepdims=keepdims))(x)
    want_shape = (3, 1, 1, 6) if keepdims else (3, 6)
    chex.assert_shape([avg, mx], want_shape)
    np.testing.assert_allclose(avg.reshape(3, 6), jnp.mean(x, axis=(1, 2)), rtol=1e-6)
    np.testing.assert_array_equal(mx.reshape(3, 6), jnp.max(x, axis=(1, 2)))

  def test_equals_full_window_pool(self):
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 3, 5, 4)), jnp.float32)
    np.testing.assert_allclose(pool.global_avg_pool(x, keepdims=True),
                               pool.avg_pool(x, (3, 5)), rtol=1e-6)
    np.testing.assert_array_equal(pool.global_max_pool(x, keepdims=True),
                                  pool.max_pool(x, (3, 5)))


class ShapeAndDtypeTest(parameterized.TestCase):

  @parameterized.parameters(
      ((7, 5), 3, 2, (4, 3)),
      ((8, 8), 2, None, (4, 4)),
      ((6, 9), (2, 4), (3, 1), (2, 9)),
      ((1, 1), 3, 1, (1, 1)),  # SAME pads even a window larger than the input.
  )
  def test_same_output_size_is_ceil(self, hw, window, stride, want_hw):
    x = jnp.zeros((2, *hw, 3))
    for fn in (pool.max_pool, pool.avg_pool):
      chex.assert_shape(fn(x, window, stride, 'SAME'), (2, *want_hw, 3))
    chex.assert_shape(pool.lp_pool(x, 2, window, stride, 'SAME'), (2, *want_hw, 3))

  def test_low_precision_keeps_dtype(self):
    x = jnp.asarray(np.random.default_rng(6).normal(size=(1, 6, 6, 2)), jnp.bfloat16)
    for y in (pool.max_pool(x, 2), pool.avg_pool(x, 3, 1, 'SAME'), pool.lp_pool(x, 2, 2)):
      assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(pool.avg_pool(x, 3, 1, 'SAME').astype(jnp.float32),
                               _ref_pool(x.astype(jnp.float32), 'avg', (3, 3), (1, 1), 'SAME'),
                               rtol=1e-2, atol=1e-2)


class ErrorTest(parameterized.TestCase):

  @parameterized.parameters(
      pool.max_pool, pool.avg_pool, lambda x, w: pool.lp_pool(x, 2, w))
  def test_wrong_rank(self, fn):
    with pytest.raises(ValueError, match=r'rank 4, got shape \(8, 8, 3\); add a batch axis'):
      fn(jnp.zeros((8, 8, 3)), 2)

  @parameterized.parameters(pool.global_avg_pool, pool.global_max_pool)
  def test_global_wrong_rank(self, fn):
    with pytest.raises(ValueError, match='rank 4'):
      fn(jnp.zeros((8, 8)))

  def test_window_larger_than_input(self):
    with pytest.raises(ValueError, match='does not fit'):
      pool.max_pool(jnp.zeros((1, 4, 4, 1)), 5)
    with pytest.raises(ValueError, match='does not fit'):
      pool.avg_pool(jnp.zeros((1, 4, 8, 1)), (2, 9))

  def test_padding_as_large_as_window(self):
    with pytest.raises(ValueError, match='smaller than the window'):
      pool.avg_pool(jnp.zeros((1, 4, 4, 1)), 2, padding=2)

  def test_bad_window_and_dtype(self):
    with pytest.raises(ValueError, match='window'):
      pool.max_pool(jnp.zeros((1, 4, 4, 1)), 0)
    with pytest.raises(ValueError, match='floating-point'):
      pool.avg_pool(jnp.zeros((1, 4, 4, 1), jnp.int32), 2)


def _ref_adaptive_avg(x, out_hw):
  """PyTorch's AdaptiveAvgPool2d loop: bin i spans [floor(i*H/h), ceil((i+1)*H/h))."""
  x = np.asarray(x, np.float64)
  n, h, w, c = x.shape
  oh, ow = out_hw
  out = np.empty((n, oh, ow, c))
  for i in range(oh):
    r0, r1 = math.floor(i * h / oh), math.ceil((i + 1) * h / oh)
    for j in range(ow):
      c0, c1 = math.floor(j * w / ow), math.ceil((j + 1) * w / ow)
      out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
  return out


class AdaptiveAvgPoolTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      ((2, 12, 12, 3), 6),        # divisible: the avg_pool path
      ((1, 13, 13, 2), 6),        # AlexNet-like uneven, overlapping bins
      ((1, 7, 10, 2), (3, 4)),    # rectangular, each axis uneven
      ((1, 8, 5, 2), (4, 3)),     # one axis divisible, the other not
      ((1, 2, 3, 1), (6, 6)),     # output larger than input repeats cells
      ((2, 5, 5, 4), 1),          # global average
      ((1, 6, 6, 2), 6),          # identity
  )
  def test_matches_numpy_reference(self, shape, output_size):
    x = np.random.default_rng(7).normal(size=shape).astype(np.float32)
    y = self.variant(lambda x: pool.adaptive_avg_pool(x, output_size))(jnp.asarray(x))
    out_hw = (output_size,) * 2 if isinstance(output_size, int) else output_size
    chex.assert_shape(y, (shape[0], *out_hw, shape[-1]))
    np.testing.assert_allclose(y, _ref_adaptive_avg(x, out_hw), rtol=1e-5, atol=1e-6)

  def test_divisible_equals_avg_pool(self):
    x = jnp.asarray(np.random.default_rng(8).normal(size=(2, 14, 21, 3)), jnp.float32)
    np.testing.assert_array_equal(pool.adaptive_avg_pool(x, (7, 7)),
                                  pool.avg_pool(x, (2, 3), (2, 3)))

  def test_gradient_matches_transpose_of_bins(self):
    # The pool is linear, so d(sum y)/dx counts how many bins include each cell,
    # weighted by 1 / bin size.
    x = jnp.zeros((1, 5, 5, 1))
    dx = jax.grad(lambda x: pool.adaptive_avg_pool(x, 3).sum())(x)
    want = np.zeros((5, 5))
    for i in range(3):
      r0, r1 = math.floor(i * 5 / 3), math.ceil((i + 1) * 5 / 3)
      for j in range(3):
        c0, c1 = math.floor(j * 5 / 3), math.ceil((j + 1) * 5 / 3)
        want[r0:r1, c0:c1] += 1 / ((r1 - r0) * (c1 - c0))
    np.testing.assert_allclose(dx[0, :, :, 0], want, rtol=1e-6)

  def test_low_precision_keeps_dtype(self):
    x = jnp.asarray(np.random.default_rng(9).normal(size=(1, 13, 13, 2)), jnp.bfloat16)
    y = pool.adaptive_avg_pool(x, 6)
    assert y.dtype == jnp.bfloat16
    np.testing.assert_allclose(y.astype(jnp.float32),
                               _ref_adaptive_avg(x.astype(jnp.float32), (6, 6)),
                               rtol=1e-2, atol=1e-2)

  def test_errors(self):
    with pytest.raises(ValueError, match='rank 4'):
      pool.adaptive_avg_pool(jnp.zeros((8, 8, 3)), 2)
    with pytest.raises(ValueError, match='output_size'):
      pool.adaptive_avg_pool(jnp.zeros((1, 8, 8, 3)), 0)
    with pytest.raises(ValueError, match='floating-point'):
      pool.adaptive_avg_pool(jnp.zeros((1, 8, 8, 3), jnp.int32), 2)
