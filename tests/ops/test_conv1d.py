"""conv1d: lax vs from-scratch einsum vs a numpy loop, gradients, jaxprs and errors."""

import math

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from jax import lax

from cnn_jax.ops import conv
from tests.arrays import normal

HIGHEST = lax.Precision.HIGHEST


def _ref_pads(padding, length, k, stride, dilation):
  """Independent resolution of a 1-D padding spelling to (lo, hi)."""
  if padding == 'VALID':
    return 0, 0
  if padding == 'SAME':
    total = max((math.ceil(length / stride) - 1) * stride + dilation * (k - 1) + 1 - length, 0)
    return total // 2, total - total // 2
  if isinstance(padding, int):
    return padding, padding
  return tuple(padding)


def _ref_conv1d(x, w, stride, padding, dilation, groups):
  """y[n, t, o] = sum_{j, c in o's group} x_pad[n, t s + j d, c] w[j, c, o], in float64."""
  x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
  n, length, _ = x.shape
  k, c_group, c_out = w.shape
  lo, hi = _ref_pads(padding, length, k, stride, dilation)
  xp = np.pad(x, ((0, 0), (lo, hi), (0, 0)))
  l_out = (length + lo + hi - dilation * (k - 1) - 1) // stride + 1
  per_group = c_out // groups
  y = np.zeros((n, l_out, c_out))
  for t in range(l_out):
    for o in range(c_out):
      g = o // per_group
      for j in range(k):
        y[:, t, o] += xp[:, t * stride + j * dilation, g * c_group:(g + 1) * c_group] @ w[j, :, o]
  return y


@st.composite
def conv1d_cases(draw):
  groups = draw(st.sampled_from([1, 1, 2, 3]))
  c_in = groups * draw(st.integers(1, 3))
  c_out = groups * draw(st.integers(1, 3))
  k = draw(st.integers(1, 5))
  stride = draw(st.integers(1, 3))
  dilation = draw(st.integers(1, 3))
  padding = draw(st.one_of(st.sampled_from(['VALID', 'SAME']), st.integers(0, 3),
                           st.tuples(st.integers(0, 3), st.integers(0, 3))))
  length = draw(st.integers(dilation * (k - 1) + 1, 14))  # the dilated kernel always fits
  return dict(x_shape=(draw(st.integers(1, 2)), length, c_in), w_shape=(k, c_in // groups, c_out),
              kwargs=dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
              seed=draw(st.integers(0, 2**16)))


@hypothesis.settings(max_examples=12)
@hypothesis.given(conv1d_cases())
def test_every_impl_matches_numpy_and_einsum_gradients_match_lax(case):
  x, w = normal(case['seed'], case['x_shape']), normal(case['seed'] + 1, case['w_shape'])
  kwargs = case['kwargs']

  def loss(impl, x, w):
    y = conv.conv1d(x, w, impl=impl, precision=HIGHEST, **kwargs)
    return jnp.sum(y * jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))), y

  @jax.jit  # one program per example for every impl's value and gradients
  def all_impls(x, w):
    return {impl: jax.grad(lambda x, w: loss(impl, x, w), argnums=(0, 1), has_aux=True)(x, w)
            for impl in conv.IMPLS}

  out = all_impls(x, w)
  want = _ref_conv1d(x, w, **kwargs)
  (gx_lax, gw_lax), _ = out['lax']
  for impl in conv.IMPLS:
    (gx, gw), y = out[impl]
    assert y.shape == want.shape, impl
    np.testing.assert_allclose(y, want, atol=1e-5, rtol=1e-5, err_msg=impl)
    np.testing.assert_allclose(gx, gx_lax, atol=1e-5, rtol=1e-5, err_msg=impl)
    np.testing.assert_allclose(gw, gw_lax, atol=1e-5, rtol=1e-5, err_msg=impl)


class Conv1dVariantsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(impl=conv.IMPLS)
  def test_text_cnn_shapes_and_bias(self, impl):
    # Kim (2014)-style: 6-d embeddings of 7-token sentences, filter width 3, 'SAME'.
    x, w, b = normal(0, (2, 7, 6)), normal(1, (3, 6, 4)), normal(2, (4,))
    fn = self.variant(lambda x, w, b: conv.conv1d(x, w, b, padding='SAME', impl=impl,
                                                  precision=HIGHEST))
    y = fn(x, w, b)
    chex.assert_shape(y, (2, 7, 4))
    np.testing.assert_allclose(y, _ref_conv1d(x, w, 1, 'SAME', 1, 1) + np.asarray(b),
                               atol=1e-5, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_strided_same_gives_ceil(self):
    y = self.variant(lambda x, w: conv.conv1d(x, w, stride=3, padding='SAME'))(
        normal(0, (1, 10, 2)), normal(1, (4, 2, 3)))
    chex.assert_shape(y, (1, 4, 3))  # ceil(10 / 3)


def test_single_channel_is_numpy_correlate():
  rng = np.random.default_rng(0)
  sig, ker = rng.normal(size=11).astype(np.float32), rng.normal(size=4).astype(np.float32)
  for impl in conv.IMPLS:
    y = conv.conv1d(jnp.asarray(sig)[None, :, None], jnp.asarray(ker)[:, None, None],
                    impl=impl, precision=HIGHEST)
    np.testing.assert_allclose(y[0, :, 0], np.correlate(sig, ker, 'valid'), atol=1e-5)


def test_einsum_gradients_numerically():
  x, w = normal(0, (1, 7, 2)), normal(1, (3, 1, 4))
  f = jax.jit(lambda x, w: conv.conv1d(x, w, stride=2, padding='SAME', dilation=2, groups=2,
                                       impl='einsum'))
  jax.test_util.check_grads(f, (x, w), order=1, modes=('rev',), atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize('impl', conv.IMPLS[1:])
def test_einsum_path_has_no_conv_primitive(impl):
  x, w = normal(0, (2, 9, 4)), normal(1, (3, 2, 4))
  fn = lambda x, w: conv.conv1d(x, w, stride=2, padding='SAME', groups=2, impl=impl)
  grad = jax.grad(lambda x, w: fn(x, w).sum(), argnums=(0, 1))
  for jaxpr in (jax.make_jaxpr(fn)(x, w), jax.make_jaxpr(grad)(x, w)):
    assert 'conv_general_dilated' not in str(jaxpr)
  assert 'conv_general_dilated' in str(jax.make_jaxpr(
      lambda x, w: conv.conv1d(x, w, groups=2))(x, w))


@pytest.mark.parametrize('impl', conv.IMPLS)
def test_bad_input_errors(impl):
  w = jnp.zeros((3, 4, 5))
  with pytest.raises(ValueError, match=r'NWC input of rank 3, got shape \(9, 4\); add a batch'):
    conv.conv1d(jnp.zeros((9, 4)), w, impl=impl)
  with pytest.raises(ValueError, match=r'rank 3, got shape \(1, 8, 8, 4\); images .* 2-D ops'):
    conv.conv1d(jnp.zeros((1, 8, 8, 4)), w, impl=impl)
  with pytest.raises(ValueError, match=r'WIO kernel of rank 3 \(k, C_in // groups, C_out\)'):
    conv.conv1d(jnp.zeros((1, 9, 4)), jnp.zeros((1, 3, 4, 5)), impl=impl)
  with pytest.raises(ValueError, match=r'input has 6 channels.*expects 4.*kernel axis 1'):
    conv.conv1d(jnp.zeros((1, 9, 6)), w, impl=impl)
  with pytest.raises(ValueError, match=r'groups=3 must divide'):
    conv.conv1d(jnp.zeros((1, 9, 4)), w, groups=3, impl=impl)
  with pytest.raises(ValueError, match=r'does not fit'):
    conv.conv1d(jnp.zeros((1, 2, 4)), w, impl=impl)
  with pytest.raises(ValueError, match=r"1-D padding must be 'SAME', 'VALID', an int or"):
    conv.conv1d(jnp.zeros((1, 9, 4)), w, padding=((1, 1), (1, 1)), impl=impl)
  with pytest.raises(ValueError, match=r'stride must be an int for a 1-D op'):
    conv.conv1d(jnp.zeros((1, 9, 4)), w, stride=(1, 2), impl=impl)
  with pytest.raises(ValueError, match=r'dilation must be at least 1'):
    conv.conv1d(jnp.zeros((1, 9, 4)), w, dilation=0, impl=impl)
  with pytest.raises(ValueError, match=r'bias must have shape \(5,\)'):
    conv.conv1d(jnp.zeros((1, 9, 4)), w, jnp.zeros(4), impl=impl)
