"""Convolution: lax vs from-scratch einsum, true convolution, transposed conv, sizes."""

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from absl.testing import parameterized
from jax import lax

from cnn_jax.ops import conv, shapes

HIGHEST = lax.Precision.HIGHEST


def _rand(seed, shape, dtype=jnp.float32):
  return jax.random.normal(jax.random.key(seed), shape, dtype)


@st.composite
def conv_cases(draw):
  groups = draw(st.sampled_from([1, 1, 2, 3]))
  c_in = groups * draw(st.integers(1, 3))
  c_out = groups * draw(st.integers(1, 3))
  kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
  stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
  dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
  padding = draw(st.one_of(
      st.sampled_from(['VALID', 'SAME']),
      st.integers(0, 2),
      st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                st.tuples(st.integers(0, 2), st.integers(0, 2)))))
  # The input must be large enough for the dilated kernel under any padding.
  h = draw(st.integers(dilation[0] * (kh - 1) + 1, 10))
  w = draw(st.integers(dilation[1] * (kw - 1) + 1, 10))
  n = draw(st.integers(1, 2))
  seed = draw(st.integers(0, 2**16))
  return dict(x_shape=(n, h, w, c_in), w_shape=(kh, kw, c_in // groups, c_out),
              kwargs=dict(stride=stride, padding=padding, dilation=dilation, groups=groups),
              seed=seed)


@hypothesis.given(conv_cases())
def test_einsum_matches_lax_forward_and_gradients(case):
  x, w = _rand(case['seed'], case['x_shape']), _rand(case['seed'] + 1, case['w_shape'])
  kwargs = case['kwargs']

  def loss(impl, x, w):
    y = conv.conv2d(x, w, impl=impl, precision=HIGHEST, **kwargs)
    # A fixed non-constant cotangent exercises every output element's gradient path.
    return jnp.sum(y * jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))), y

  # One compiled program per example: eager grads would dispatch op by op.
  @jax.jit
  def both(x, w):
    return {impl: jax.grad(lambda x, w: loss(impl, x, w), argnums=(0, 1), has_aux=True)(x, w)
            for impl in conv.IMPLS}

  out = both(x, w)
  (gx_lax, gw_lax), y_lax = out['lax']
  expected_hw = shapes.conv_output_hw(
      x.shape[1:3], w.shape[:2], kwargs['stride'],
      shapes.normalize_padding(kwargs['padding'], x.shape[1:3], w.shape[:2],
                               kwargs['stride'], kwargs['dilation']), kwargs['dilation'])
  assert y_lax.shape == (x.shape[0], *expected_hw, w.shape[-1])
  for impl in conv.IMPLS[1:]:  # every from-scratch impl against lax
    (gx_ein, gw_ein), y_ein = out[impl]
    chex.assert_equal_shape([y_lax, y_ein])
    np.testing.assert_allclose(y_ein, y_lax, atol=1e-5, rtol=1e-5, err_msg=impl)
    np.testing.assert_allclose(gx_ein, gx_lax, atol=1e-5, rtol=1e-5, err_msg=impl)
    np.testing.assert_allclose(gw_ein, gw_lax, atol=1e-5, rtol=1e-5, err_msg=impl)


class ConvVariantsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(impl=conv.IMPLS)
  def test_scipy_correlate_and_convolve(self, impl):
    rng = np.random.default_rng(0)
    img, ker = rng.normal(size=(7, 9)).astype(np.float32), rng.normal(size=(3, 4)).astype(
        np.float32)
    x, w = jnp.asarray(img)[None, :, :, None], jnp.asarray(ker)[:, :, None, None]
    corr = self.variant(lambda x, w: conv.conv2d(x, w, impl=impl, precision=HIGHEST))(x, w)
    true = self.variant(lambda x, w: conv.convolve2d(x, w, impl=impl, precision=HIGHEST))(x, w)
    np.testing.assert_allclose(corr[0, :, :, 0], scipy.signal.correlate2d(img, ker, 'valid'),
                               atol=1e-5)
    np.testing.assert_allclose(true[0, :, :, 0], scipy.signal.convolve2d(img, ker, 'valid'),
                               atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(impl=conv.IMPLS, stride=[1, 2], padding=['SAME', 'VALID', 1])
  def test_transpose_is_adjoint_of_conv(self, impl, stride, padding):
    x = _rand(0, (2, 5, 6, 3))
    w = _rand(1, (3, 3, 3, 4))  # (kh, kw, C_in of the transpose, C_out of the transpose)
    y = self.variant(lambda x, w: conv.conv_transpose2d(
        x, w, stride=stride, padding=padding, impl=impl, precision=HIGHEST))(x, w)
    if padding == 'SAME':
      assert y.shape == (2, 5 * stride, 6 * stride, 4)
    fwd = lambda z: conv.conv2d(z, jnp.swapaxes(w, 2, 3), stride=stride, padding=padding,
                                precision=HIGHEST)
    out, vjp = jax.vjp(fwd, jnp.zeros_like(y))
    assert out.shape == x.shape  # the forward conv maps y's shape back to x's
    np.testing.assert_allclose(y, vjp(x)[0], atol=1e-5)
    # The dot-product form of the adjoint identity, on random vectors.
    z = _rand(2, y.shape)
    np.testing.assert_allclose(jnp.vdot(fwd(z), x), jnp.vdot(z, y), rtol=1e-4)

  @chex.variants(with_jit=True, without_jit=True)
  def test_transpose_output_padding_and_dilation(self):
    x, w = _rand(0, (1, 4, 4, 2)), _rand(1, (3, 3, 2, 3))
    for impl in conv.IMPLS:
      y = self.variant(lambda x, w: conv.conv_transpose2d(
          x, w, stride=2, padding=1, output_padding=1, dilation=2, impl=impl,
          precision=HIGHEST))(x, w)
      # (H - 1) s + d (k - 1) + 1 - 2p + op = 6 + 5 - 2 + 1
      assert y.shape == (1, 10, 10, 3)
      fwd = lambda z: conv.conv2d(z, jnp.swapaxes(w, 2, 3), stride=2, padding=1, dilation=2,
                                  precision=HIGHEST)
      np.testing.assert_allclose(y, jax.vjp(fwd, jnp.zeros_like(y))[1](x)[0], atol=1e-5)


@pytest.mark.parametrize('impl', conv.IMPLS)
def test_convolve_differs_from_correlate_exactly_by_the_flip(impl):
  x, w = _rand(0, (2, 8, 8, 3)), _rand(1, (3, 5, 3, 2))
  np.testing.assert_array_equal(conv.convolve2d(x, w, impl=impl),
                                conv.conv2d(x, w[::-1, ::-1], impl=impl))
  # ...and they genuinely differ for a non-symmetric kernel.
  assert not np.allclose(conv.convolve2d(x, w, impl=impl), conv.conv2d(x, w, impl=impl))


@pytest.mark.parametrize('impl', conv.IMPLS)
def test_translation_equivariance(impl):
  x, w = _rand(0, (1, 12, 12, 2)), _rand(1, (3, 3, 2, 4))

  def circular_conv(x):  # wrap padding makes shifts exact, edges included
    return conv.conv2d(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='wrap'), w, impl=impl)

  shift = (3, -2)
  np.testing.assert_allclose(circular_conv(jnp.roll(x, shift, axis=(1, 2))),
                             jnp.roll(circular_conv(x), shift, axis=(1, 2)), atol=1e-5)


@pytest.mark.parametrize('impl', conv.IMPLS)
def test_bias_and_bfloat16(impl):
  x, w, b = _rand(0, (2, 6, 6, 4)), _rand(1, (3, 3, 4, 5)), _rand(2, (5,))
  np.testing.assert_allclose(conv.conv2d(x, w, b, impl=impl),
                             conv.conv2d(x, w, impl=impl) + b, atol=1e-6)
  y16 = conv.conv2d(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), impl=impl)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(y16.astype(jnp.float32), conv.conv2d(x, w), atol=0.25, rtol=0.05)


@pytest.mark.parametrize('impl', conv.IMPLS[1:])
def test_einsum_gradients_numerically(impl):
  x, w = _rand(0, (1, 5, 5, 2)), _rand(1, (2, 3, 1, 4))
  f = lambda x, w: conv.conv2d(x, w, stride=2, padding='SAME', groups=2, impl=impl)
  jax.test_util.check_grads(f, (x, w), order=1, modes=('rev', 'fwd'), atol=1e-2, rtol=1e-2)


def test_extract_patches_layout():
  x = jnp.arange(16, dtype=jnp.float32).reshape(1, 4, 4, 1)
  p = conv.extract_patches(x, (2, 2), stride=2)
  assert p.shape == (1, 2, 2, 2, 2, 1)
  np.testing.assert_array_equal(p[0, 1, 0, :, :, 0], [[8, 9], [12, 13]])


@pytest.mark.parametrize('n,f,s,p,expected', [
    (6, 3, 1, 0, 4),      # the seed's 6x6 * 3x3 -> 4x4
    (6, 3, 1, 1, 6),      # 'same' with p = (f - 1) / 2
    (7, 3, 2, 0, 3),      # floor((7 - 3) / 2) + 1
    (39, 3, 1, 0, 37),    # the course's ConvNet example
    (37, 5, 2, 0, 17),
    (17, 5, 2, 0, 7),
    (32, 5, 1, 0, 28),    # LeNet-5
    (224, 7, 2, 3, 112),  # ResNet stem
    (5, 3, 2, 'SAME', 3),  # ceil(5 / 2)
    (6, 3, 2, (0, 1), 3),
])
def test_conv_output_size(n, f, s, p, expected):
  assert shapes.conv_output_size(n, f, s, p) == expected


def test_conv_output_size_error_names_numbers():
  with pytest.raises(ValueError, match=r'size 5 .*input size 3.*output size would be -1'):
    shapes.conv_output_size(3, 5, 1, 0)
  with pytest.raises(ValueError, match=r'stride must be at least 1, got 0'):
    shapes.conv_output_size(5, 3, 0, 0)
  with pytest.raises(ValueError, match=r'input size n must be at least 1, got 0'):
    shapes.conv_output_size(0, 3, 1, 'SAME')


def test_conv2d_einsum_checks_operands_itself():
  with pytest.raises(ValueError, match=r'conv2d_einsum: input has 5 channels.*expects 3'):
    conv.conv2d_einsum(jnp.zeros((1, 8, 8, 5)), jnp.zeros((3, 3, 3, 4)))


@pytest.mark.parametrize('n,f,s,d', [(5, 3, 1, 1), (5, 3, 2, 1), (8, 4, 3, 1), (7, 3, 1, 2),
                                     (4, 1, 2, 1), (9, 5, 4, 1)])
def test_same_padding_matches_lax(n, f, s, d):
  assert shapes.same_padding(n, f, s, d) == tuple(
      lax.padtype_to_pads((n,), ((f - 1) * d + 1,), (s,), 'SAME')[0])
  assert shapes.conv_output_size(n, f, s, shapes.same_padding(n, f, s, d), d) == -(-n // s)


@pytest.mark.parametrize('impl', conv.IMPLS)
def test_bad_input_errors(impl):
  x, w = jnp.zeros((8, 8, 3)), jnp.zeros((3, 3, 3, 4))
  with pytest.raises(ValueError, match=r'rank 4.*\(8, 8, 3\).*x\[None\]'):
    conv.conv2d(x, w, impl=impl)
  with pytest.raises(ValueError, match=r'has 5 channels.*expects 3'):
    conv.conv2d(jnp.zeros((1, 8, 8, 5)), w, impl=impl)
  with pytest.raises(ValueError, match=r'HWIO kernel of rank 4'):
    conv.conv2d(jnp.zeros((1, 8, 8, 3)), jnp.zeros((3, 3, 3)), impl=impl)
  with pytest.raises(ValueError, match=r'bfloat16 but kernel is float32'):
    conv.conv2d(jnp.zeros((1, 8, 8, 3), jnp.bfloat16), w, impl=impl)
  with pytest.raises(ValueError, match=r'does not fit'):
    conv.conv2d(jnp.zeros((1, 2, 2, 3)), w, impl=impl)
  with pytest.raises(ValueError, match=r'groups=2 must divide'):
    conv.conv2d(jnp.zeros((1, 8, 8, 3)), w, groups=2, impl=impl)
  with pytest.raises(ValueError, match=r'output_padding'):
    conv.conv_transpose2d(jnp.zeros((1, 4, 4, 3)), w, stride=2, output_padding=2, impl=impl)
  with pytest.raises(ValueError, match=r"padding must be 'SAME', 'VALID'"):
    conv.conv2d(jnp.zeros((1, 8, 8, 3)), w, padding='FULL', impl=impl)
  with pytest.raises(ValueError, match=r'stride must be at least 1'):
    conv.conv2d(jnp.zeros((1, 8, 8, 3)), w, stride=0, impl=impl)


def test_unknown_impl():
  with pytest.raises(ValueError,
                     match=r"unknown conv impl 'fft'.*'lax', 'einsum', 'einsum_shifted'"):
    conv.conv2d(jnp.zeros((1, 8, 8, 3)), jnp.zeros((3, 3, 3, 4)), impl='fft')


@pytest.mark.parametrize('impl', conv.IMPLS[1:])
def test_einsum_path_has_no_conv_primitive(impl):
  x, w = _rand(0, (1, 6, 6, 4)), _rand(1, (3, 3, 2, 4))
  fn = lambda x, w: conv.conv2d(x, w, stride=2, padding='SAME', groups=2, impl=impl)
  for jaxpr in (jax.make_jaxpr(fn)(x, w), jax.make_jaxpr(jax.grad(
      lambda x, w: fn(x, w).sum(), argnums=(0, 1)))(x, w),
                jax.make_jaxpr(lambda x, w: conv.conv_transpose2d(
                    x, jnp.swapaxes(w, 2, 3)[..., :2], stride=2, impl=impl))(x, w)):
    assert 'conv_general_dilated' not in str(jaxpr)
  assert 'conv_general_dilated' in str(jax.make_jaxpr(
      lambda x, w: conv.conv2d(x, w, groups=2))(x, w))


def test_unknown_einsum_strategy():
  with pytest.raises(ValueError, match="unknown einsum strategy 'im2col'"):
    conv.conv2d_einsum(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), strategy='im2col')
