"""Convolution: lax vs from-scratch einsums and Winograd, true and transposed conv, sizes."""

import functools

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

from cnn_jax.models.introspect import iter_eqns
from cnn_jax.ops import conv, shapes
from tests.arrays import normal

HIGHEST = lax.Precision.HIGHEST
# fp32 tolerance against lax: Winograd's transforms add and halve before and
# after the product, so it rounds a few more times than the einsums.
TOL = {'einsum': 1e-5, 'einsum_shifted': 1e-5, 'winograd': 1e-4}


def _lax_reference(x, w, stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1,
                   precision=None):
  """``lax.conv_general_dilated`` itself, with JAX's own derivatives (not ``conv2d``'s)."""
  return lax.conv_general_dilated(x, w, stride, padding, rhs_dilation=dilation,
                                  dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                  feature_group_count=groups, precision=precision)


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
  x, w = normal(case['seed'], case['x_shape']), normal(case['seed'] + 1, case['w_shape'])
  kwargs = case['kwargs']

  pads = shapes.normalize_padding(kwargs['padding'], x.shape[1:3], w.shape[:2],
                                  kwargs['stride'], kwargs['dilation'])
  convs = {impl: functools.partial(conv.conv2d, impl=impl, precision=HIGHEST, **kwargs)
           for impl in conv.IMPLS}
  convs['raw'] = functools.partial(_lax_reference, stride=kwargs['stride'], padding=pads,
                                   dilation=kwargs['dilation'], groups=kwargs['groups'],
                                   precision=HIGHEST)

  def loss(impl, x, w):
    y = convs[impl](x, w)
    # A fixed non-constant cotangent exercises every output element's gradient path.
    return jnp.sum(y * jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))), y

  # One compiled program per example: eager grads would dispatch op by op.
  @jax.jit
  def both(x, w):
    return {impl: jax.grad(lambda x, w: loss(impl, x, w), argnums=(0, 1), has_aux=True)(x, w)
            for impl in convs}

  out = both(x, w)
  (gx_lax, gw_lax), y_lax = out['lax']
  # The lax path's gradients (tangent maps in transposed layouts) are lax's own, bit for bit.
  for got, want in zip(jax.tree.leaves(out['lax']), jax.tree.leaves(out['raw'])):
    np.testing.assert_array_equal(got, want)
  expected_hw = shapes.conv_output_hw(x.shape[1:3], w.shape[:2], kwargs['stride'], pads,
                                      kwargs['dilation'])
  assert y_lax.shape == (x.shape[0], *expected_hw, w.shape[-1])
  for impl in conv.IMPLS[1:]:  # every from-scratch impl against lax
    (gx_ein, gw_ein), y_ein = out[impl]
    chex.assert_equal_shape([y_lax, y_ein])
    tol = TOL[impl]
    np.testing.assert_allclose(y_ein, y_lax, atol=tol, rtol=tol, err_msg=impl)
    np.testing.assert_allclose(gx_ein, gx_lax, atol=tol, rtol=tol, err_msg=impl)
    np.testing.assert_allclose(gw_ein, gw_lax, atol=tol, rtol=tol, err_msg=impl)


@pytest.mark.parametrize('kwargs,w_shape', [
    (dict(padding='SAME'), (3, 3, 4, 6)), (dict(stride=2, padding=1), (3, 3, 4, 6)),
    (dict(dilation=2, padding='VALID'), (3, 3, 4, 6)),
    (dict(padding='SAME', groups=2), (3, 3, 2, 6)),
])
def test_lax_gradients_are_canonical_convolutions(kwargs, w_shape):
  """What lets XLA:CPU run them as library calls inside loop bodies (not only at a
  program's top level): every convolution of the gradient is NHWC / HWIO -> NHWC."""
  x, w = normal(0, (2, 9, 8, 4)), normal(1, w_shape)
  canonical = lax.conv_dimension_numbers(x.shape, w.shape, ('NHWC', 'HWIO', 'NHWC'))
  jaxpr = jax.make_jaxpr(jax.grad(lambda x, w: jnp.sum(jnp.sin(conv.conv2d(x, w, **kwargs))),
                                  argnums=(0, 1)))(x, w)
  dims = [e.params['dimension_numbers'] for e in iter_eqns(jaxpr)
          if e.primitive.name == 'conv_general_dilated']
  assert len(dims) == 3 and all(d == canonical for d in dims), dims


def test_lax_path_keeps_forward_mode():
  """A custom_jvp, not a custom_vjp: jvp and jacfwd work and equal lax's own."""
  x, w = normal(0, (1, 5, 5, 2)), normal(1, (3, 3, 2, 3))
  ours = lambda x, w: conv.conv2d(x, w, padding='SAME')
  tangents = (normal(2, x.shape), normal(3, w.shape))
  np.testing.assert_allclose(jax.jvp(ours, (x, w), tangents)[1],
                             jax.jvp(_lax_reference, (x, w), tangents)[1], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(jax.jacfwd(ours, argnums=1)(x, w),
                             jax.jacfwd(_lax_reference, argnums=1)(x, w), rtol=1e-5, atol=1e-5)


@st.composite
def winograd_cases(draw):
  """3x3, stride 1, dilation 1 (the layers Winograd serves): odd and even sizes, any padding."""
  groups = draw(st.sampled_from([1, 1, 2, 3]))
  padding = draw(st.one_of(
      st.sampled_from(['VALID', 'SAME']),
      st.integers(0, 2),
      st.tuples(st.tuples(st.integers(0, 2), st.integers(0, 2)),
                st.tuples(st.integers(0, 2), st.integers(0, 2)))))
  x_shape = (draw(st.integers(1, 3)), draw(st.integers(3, 11)), draw(st.integers(3, 11)),
             groups * draw(st.integers(1, 4)))
  w_shape = (3, 3, x_shape[-1] // groups, groups * draw(st.integers(1, 4)))
  return dict(x_shape=x_shape, w_shape=w_shape, padding=padding, groups=groups,
              seed=draw(st.integers(0, 2**16)))


@hypothesis.given(winograd_cases())
def test_winograd_matches_lax_forward_and_gradients(case):
  x, w = normal(case['seed'], case['x_shape']), normal(case['seed'] + 1, case['w_shape'])
  kwargs = dict(padding=case['padding'], groups=case['groups'], precision=HIGHEST)

  @jax.jit
  def both(x, w):
    out = {}
    for impl in ('lax', 'winograd'):
      f = lambda x, w, impl=impl: conv.conv2d(x, w, impl=impl, **kwargs)
      y, vjp = jax.vjp(f, x, w)
      # A fixed non-constant cotangent exercises every output element's gradient path.
      out[impl] = (y, *vjp(jnp.cos(jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))))
    # The public function directly, to be sure conv2d took the Winograd path.
    out['direct'] = conv.conv2d_winograd(x, w, **kwargs)
    return out

  out = both(x, w)
  for got, want, what in zip(out['winograd'], out['lax'], ('y', 'dx', 'dw')):
    chex.assert_equal_shape([got, want])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4, err_msg=what)
  np.testing.assert_array_equal(out['direct'], out['winograd'][0])


@pytest.mark.parametrize('kernel_hw,kwargs', [
    ((1, 1), {}), ((5, 5), dict(padding='SAME')), ((3, 1), dict(padding=1)),
    ((3, 3), dict(stride=2, padding='SAME')), ((3, 3), dict(stride=(1, 2))),
    ((3, 3), dict(dilation=2, padding='SAME', groups=2)),
])
def test_winograd_falls_back_to_einsum_elsewhere(kernel_hw, kwargs):
  """Layers Winograd cannot serve run the 'einsum' path: same program, equal to lax."""
  x, w = normal(0, (2, 9, 8, 4)), normal(1, (*kernel_hw, 4 // kwargs.get('groups', 1), 6))
  assert not conv.winograd_applies(kernel_hw, kwargs.get('stride', 1), kwargs.get('dilation', 1))
  f = {impl: jax.jit(lambda x, w, impl=impl: conv.conv2d(x, w, impl=impl, precision=HIGHEST,
                                                         **kwargs))
       for impl in ('lax', 'einsum', 'winograd')}
  assert str(jax.make_jaxpr(f['winograd'])(x, w)) == str(jax.make_jaxpr(f['einsum'])(x, w))
  np.testing.assert_allclose(f['winograd'](x, w), f['lax'](x, w), atol=1e-5, rtol=1e-5)
  gw = jax.grad(lambda x, w: f['winograd'](x, w).sum(), argnums=(0, 1))(x, w)
  gl = jax.grad(lambda x, w: f['lax'](x, w).sum(), argnums=(0, 1))(x, w)
  for a, b in zip(gw, gl):
    np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)
  # conv1d's kernels are 1 x k, so its winograd is the einsum path too.
  x1, w1 = normal(2, (2, 10, 4)), normal(3, (3, 4, 5))
  np.testing.assert_allclose(conv.conv1d(x1, w1, padding='SAME', impl='winograd'),
                             conv.conv1d(x1, w1, padding='SAME'), atol=1e-5)


def test_winograd_has_no_conv_primitive_and_is_winograd():
  x, w = normal(0, (2, 7, 6, 4)), normal(1, (3, 3, 2, 4))
  for groups, wk in ((1, jnp.concatenate([w, w], axis=2)), (2, w)):
    fn = lambda x, w: conv.conv2d(x, w, padding='SAME', groups=groups, impl='winograd')
    fwd = jax.make_jaxpr(fn)(x, wk)
    bwd = jax.make_jaxpr(jax.grad(lambda x, w: fn(x, w).sum(), argnums=(0, 1)))(x, wk)
    for jaxpr in (fwd, bwd):
      assert 'conv_general_dilated' not in str(jaxpr)
    # The product is a single batched contraction over the 16 tile positions.
    dots = [e for e in fwd.jaxpr.eqns if e.primitive.name == 'dot_general']
    assert len(dots) == 1 and dots[0].outvars[0].aval.shape[0] == 16, dots
  # A stride-1 3x3 transposed conv is a Winograd conv of the zero-inserted input.
  tr = jax.make_jaxpr(lambda x, w: conv.conv_transpose2d(
      x, w, padding='SAME', impl='winograd'))(x, normal(2, (3, 3, 4, 5)))
  assert 'conv_general_dilated' not in str(tr)
  assert any(e.primitive.name == 'dot_general' and e.outvars[0].aval.shape[0] == 16
             for e in tr.jaxpr.eqns)


def test_winograd_kernel_transform_by_hand():
  """U = G g G^T, against the matrices written out."""
  g_mat = np.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]], np.float32)
  w = np.asarray(normal(0, (3, 3, 2, 3)))
  np.testing.assert_allclose(conv.winograd_kernel(jnp.asarray(w)),
                             np.einsum('ap,pqco,bq->abco', g_mat, w, g_mat), atol=1e-6)
  with pytest.raises(ValueError, match=r'3x3 kernels only, got \(5, 5\)'):
    conv.conv2d_winograd(jnp.zeros((1, 8, 8, 2)), jnp.zeros((5, 5, 2, 3)))


@pytest.mark.parametrize('shape', [(2, 9, 10, 16), (1, 8, 7, 64)])
def test_winograd_bfloat16(shape):
  """bf16 runs; it rounds after each transform, so ~3x lax's bf16 error.

  Measured (fp32 HIGHEST lax reference, SAME 3x3, C_in 16-128, C_out 8): the
  largest error of y, dx and dw is 0.7-1.2% of the largest |value| for
  Winograd, against 0.3% for lax and 0.3-0.9% for the einsums. The tolerance
  is 3% of the largest |value|.
  """
  c = shape[-1]
  x, w = normal(0, shape), normal(1, (3, 3, c, 8)) / np.sqrt(9 * c)
  f = lambda impl, x, w: conv.conv2d(x, w, padding='SAME', impl=impl, precision=HIGHEST)
  ct = normal(2, (*shape[:3], 8))

  def y_and_grads(impl, x, w, ct):
    y, vjp = jax.vjp(lambda x, w: f(impl, x, w), x, w)
    return (y, *vjp(ct))

  y_and_grads = jax.jit(y_and_grads, static_argnums=0)
  bf16 = [a.astype(jnp.bfloat16) for a in (x, w, ct)]
  for got, want in zip(y_and_grads('winograd', *bf16), y_and_grads('lax', x, w, ct)):
    assert got.dtype == jnp.bfloat16
    scale = float(jnp.abs(want).max())
    np.testing.assert_allclose(got.astype(jnp.float32), want, atol=0.03 * scale, rtol=0)


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
    x = normal(0, (2, 5, 6, 3))
    w = normal(1, (3, 3, 3, 4))  # (kh, kw, C_in of the transpose, C_out of the transpose)
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
    z = normal(2, y.shape)
    np.testing.assert_allclose(jnp.vdot(fwd(z), x), jnp.vdot(z, y), rtol=1e-4)

  @chex.variants(with_jit=True, without_jit=True)
  def test_transpose_output_padding_and_dilation(self):
    x, w = normal(0, (1, 4, 4, 2)), normal(1, (3, 3, 2, 3))
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
  x, w = normal(0, (2, 8, 8, 3)), normal(1, (3, 5, 3, 2))
  np.testing.assert_array_equal(conv.convolve2d(x, w, impl=impl),
                                conv.conv2d(x, w[::-1, ::-1], impl=impl))
  # ...and they genuinely differ for a non-symmetric kernel.
  assert not np.allclose(conv.convolve2d(x, w, impl=impl), conv.conv2d(x, w, impl=impl))


@pytest.mark.parametrize('impl', conv.IMPLS)
def test_translation_equivariance(impl):
  x, w = normal(0, (1, 12, 12, 2)), normal(1, (3, 3, 2, 4))

  def circular_conv(x):  # wrap padding makes shifts exact, edges included
    return conv.conv2d(jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='wrap'), w, impl=impl)

  shift = (3, -2)
  np.testing.assert_allclose(circular_conv(jnp.roll(x, shift, axis=(1, 2))),
                             jnp.roll(circular_conv(x), shift, axis=(1, 2)), atol=1e-5)


@pytest.mark.parametrize('impl', conv.IMPLS)
def test_bias_and_bfloat16(impl):
  x, w, b = normal(0, (2, 6, 6, 4)), normal(1, (3, 3, 4, 5)), normal(2, (5,))
  np.testing.assert_allclose(conv.conv2d(x, w, b, impl=impl),
                             conv.conv2d(x, w, impl=impl) + b, atol=1e-6)
  y16 = conv.conv2d(x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), impl=impl)
  assert y16.dtype == jnp.bfloat16
  np.testing.assert_allclose(y16.astype(jnp.float32), conv.conv2d(x, w), atol=0.25, rtol=0.05)


@pytest.mark.parametrize('impl', conv.IMPLS[1:])
def test_einsum_gradients_numerically(impl):
  x, w = normal(0, (1, 5, 5, 2)), normal(1, (2, 3, 1, 4))
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
  x, w = normal(0, (1, 6, 6, 4)), normal(1, (3, 3, 2, 4))
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
