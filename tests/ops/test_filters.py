"""Tests for cnn_jax.ops.filters: seed vectors, scipy references and shape handling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized
from scipy import ndimage, signal

from cnn_jax.ops import filters

SEED_IMAGE = np.array([[3, 0, 1, 2, 7, 4],
                       [1, 5, 8, 9, 3, 1],
                       [2, 7, 2, 5, 1, 3],
                       [0, 1, 3, 1, 7, 8],
                       [4, 2, 1, 6, 2, 8],
                       [2, 4, 5, 2, 3, 9]])
SEED_VERTICAL = np.array([[-5, -4, 0, 8],
                          [-10, -2, 2, 3],
                          [0, -2, -4, -7],
                          [-3, -2, -3, -16]])

SIGNED_KINDS = ('vertical', 'horizontal', 'sobel_x', 'sobel_y', 'scharr_x', 'scharr_y')


def _rng_image(seed, shape):
  return np.random.default_rng(seed).uniform(0, 1, size=shape).astype(np.float32)


class KernelTest(parameterized.TestCase):

  def test_values(self):
    np.testing.assert_array_equal(filters.vertical(), [[1, 0, -1]] * 3)
    np.testing.assert_array_equal(filters.sobel_x(), [[1, 0, -1], [2, 0, -2], [1, 0, -1]])
    np.testing.assert_array_equal(filters.scharr_x(), [[3, 0, -3], [10, 0, -10], [3, 0, -3]])
    np.testing.assert_array_equal(filters.horizontal(), filters.vertical().T)
    np.testing.assert_array_equal(filters.sobel_y(), filters.sobel_x().T)
    np.testing.assert_array_equal(filters.scharr_y(), filters.scharr_x().T)

  @parameterized.parameters(*SIGNED_KINDS)
  def test_lookup_is_float32_3x3(self, kind):
    k = filters.edge_kernel(kind)
    assert k.shape == (3, 3) and k.dtype == jnp.float32
    np.testing.assert_array_equal(k, getattr(filters, kind)())

  def test_unknown_kernel_lists_known(self):
    with pytest.raises(ValueError, match="unknown edge kernel 'sobel'.*sobel_x.*scharr_y"):
      filters.edge_kernel('sobel')


class SeedVectorTest(parameterized.TestCase):

  @parameterized.parameters('lax', 'einsum')
  def test_course_example(self, impl):
    y = filters.edge_detect(SEED_IMAGE, 'vertical', impl=impl)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, SEED_VERTICAL)

  @parameterized.parameters('lax', 'einsum')
  def test_step_edge(self, impl):
    step = np.array([[10, 10, 10, 0, 0, 0]] * 6, np.uint8)
    y = filters.edge_detect(step, 'vertical', impl=impl)
    np.testing.assert_array_equal(y, [[0, 30, 30, 0]] * 4)
    # The same edge turned on its side is invisible to 'vertical' and found by 'horizontal'.
    np.testing.assert_array_equal(filters.edge_detect(step.T, 'vertical'), np.zeros((4, 4)))
    np.testing.assert_array_equal(filters.edge_detect(step.T, 'horizontal'), [[0] * 4, [30] * 4,
                                                                              [30] * 4, [0] * 4])


class ScipyReferenceTest(parameterized.TestCase):

  @parameterized.parameters(*SIGNED_KINDS)
  def test_signed_matches_correlate2d(self, kind):
    img = _rng_image(0, (9, 11))
    k = np.asarray(filters.edge_kernel(kind))
    np.testing.assert_allclose(filters.edge_detect(img, kind),
                               signal.correlate2d(img, k, mode='valid'), rtol=1e-5, atol=1e-5)
    # 'SAME' is one pixel of zero padding for a 3x3 kernel.
    np.testing.assert_allclose(filters.edge_detect(img, kind, padding='SAME'),
                               signal.correlate2d(img, k, mode='same', boundary='fill'),
                               rtol=1e-5, atol=1e-5)

  def test_sobel_matches_ndimage(self):
    img = _rng_image(1, (10, 12)).astype(np.float64)
    # ndimage.sobel differentiates towards increasing index; ours (1, 0, -1)
    # towards decreasing, hence the sign. Crop ndimage's border handling.
    gx = -ndimage.sobel(img, axis=1)[1:-1, 1:-1]
    gy = -ndimage.sobel(img, axis=0)[1:-1, 1:-1]
    np.testing.assert_allclose(filters.edge_detect(img, 'sobel_x'), gx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(filters.edge_detect(img, 'sobel_y'), gy, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(filters.edge_detect(img, 'sobel'), np.hypot(gx, gy),
                               rtol=1e-5, atol=1e-5)

  def test_scharr_magnitude(self):
    img = _rng_image(2, (8, 8))
    gx = signal.correlate2d(img, np.asarray(filters.scharr_x()), mode='valid')
    gy = signal.correlate2d(img, np.asarray(filters.scharr_y()), mode='valid')
    np.testing.assert_allclose(filters.edge_detect(img, 'scharr'), np.hypot(gx, gy),
                               rtol=1e-5, atol=1e-5)


class PropertyTest(parameterized.TestCase):

  def test_horizontal_on_transpose_equals_vertical(self):
    img = _rng_image(3, (7, 9))
    np.testing.assert_allclose(filters.edge_detect(img.T, 'horizontal'),
                               filters.edge_detect(img, 'vertical').T, rtol=1e-6, atol=1e-6)

  @parameterized.parameters('sobel', 'scharr', 'sobel_x')
  def test_rgb_equals_luminance_gray(self, kind):
    rgb = _rng_image(4, (8, 9, 3))
    gray = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    want = filters.edge_detect(gray, kind)
    np.testing.assert_allclose(filters.edge_detect(rgb, kind), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(filters.edge_detect(gray[..., None], kind), want, rtol=1e-6)
    rgba = np.concatenate([rgb, _rng_image(5, (8, 9, 1))], axis=-1)  # Alpha is ignored.
    np.testing.assert_allclose(filters.edge_detect(rgba, kind), want, rtol=1e-5, atol=1e-5)

  def test_uint8_rgb(self):
    rgb = np.random.default_rng(6).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    y = filters.edge_detect(rgb, 'sobel_x')
    assert y.dtype == jnp.float32 and y.shape == (4, 5)
    np.testing.assert_allclose(y, filters.edge_detect(rgb.astype(np.float32), 'sobel_x'))

  @parameterized.parameters(1, 3)
  def test_batch_equals_per_image(self, channels):
    batch = _rng_image(7, (3, 8, 6, channels))
    y = jax.jit(lambda x: filters.edge_detect(x, 'sobel', padding='SAME'))(batch)
    assert y.shape == (3, 8, 6)
    for i in range(3):
      np.testing.assert_allclose(y[i], filters.edge_detect(batch[i], 'sobel', padding='SAME'),
                                 rtol=1e-6, atol=1e-6)

  @parameterized.parameters('sobel', 'scharr')
  def test_magnitude_non_negative_and_zero_on_flat(self, kind):
    img = _rng_image(8, (9, 9)) - 0.5
    assert np.all(filters.edge_detect(img, kind) >= 0)
    np.testing.assert_array_equal(filters.edge_detect(np.full((5, 5), 7.0), kind), 0)

  def test_magnitude_gradient_finite_on_flat_image(self):
    dx = jax.grad(lambda x: filters.edge_detect(x, 'sobel').sum())(jnp.ones((5, 5)))
    assert np.all(np.isfinite(dx))

  @parameterized.parameters('sobel', 'scharr_y', 'vertical')
  def test_lax_and_einsum_agree(self, kind):
    img = _rng_image(9, (2, 9, 7, 3))
    for padding in ('VALID', 'SAME'):
      np.testing.assert_allclose(filters.edge_detect(img, kind, padding, impl='einsum'),
                                 filters.edge_detect(img, kind, padding, impl='lax'),
                                 rtol=1e-5, atol=1e-5)


class CombineSumTest(parameterized.TestCase):
  """``combine='sum'``: the course's vertical + horizontal responses added."""

  # A bright top-left corner: its edge runs along the anti-diagonal.
  CORNER = np.array([[9, 9, 9, 0],
                     [9, 9, 0, 0],
                     [9, 0, 0, 0],
                     [0, 0, 0, 0]], np.float32)

  @parameterized.parameters('lax', 'einsum')
  def test_hand_computed_sum(self, impl):
    # Window (0, 0) = [[9, 9, 9], [9, 9, 0], [9, 0, 0]]:
    #   sobel_x: (9 - 9) + 2 (9 - 0) + (9 - 0) = 27; sobel_y: (9 + 18 + 9) - (9 + 0 + 0) = 27.
    # Windows (0, 1) and (1, 0) = [[9, 9, 0], [9, 0, 0], [0, 0, 0]]: 9 + 18 = 27 and 27.
    # Window (1, 1) = [[9, 0, 0], [0, 0, 0], [0, 0, 0]]: 9 and 9.
    y = filters.edge_detect(self.CORNER, 'sobel', impl=impl, combine='sum')
    np.testing.assert_array_equal(y, [[54, 54], [54, 18]])
    # The magnitude (the default) of the same responses: sqrt(27^2 + 27^2) = 27 sqrt 2.
    np.testing.assert_allclose(filters.edge_detect(self.CORNER, 'sobel', impl=impl),
                               [[27 * 2**0.5] * 2, [27 * 2**0.5, 9 * 2**0.5]], rtol=1e-6)
    # Scharr at window (0, 0): 10 * 9 + 3 * 9 = 117 each way.
    y = filters.edge_detect(self.CORNER, 'scharr', impl=impl, combine='sum')
    assert float(y[0, 0]) == 234.0
    # Mirrored (bright top-right): gx = -27, gy = 27 everywhere: the sum is blind to it.
    np.testing.assert_array_equal(
        filters.edge_detect(self.CORNER[:, ::-1], 'sobel', impl=impl, combine='sum'), 0)

  @parameterized.parameters('sobel', 'scharr')
  def test_sum_is_x_plus_y(self, kind):
    img = _rng_image(10, (2, 9, 8, 3))
    for padding in ('VALID', 'SAME'):
      want = (filters.edge_detect(img, f'{kind}_x', padding) +
              filters.edge_detect(img, f'{kind}_y', padding))
      np.testing.assert_allclose(filters.edge_detect(img, kind, padding, combine='sum'), want,
                                 rtol=1e-5, atol=1e-5)

  def test_bad_combine(self):
    with pytest.raises(ValueError, match="combine='max' is not valid; choose one of magnitude, sum"):
      filters.edge_detect(self.CORNER, 'sobel', combine='max')
    with pytest.raises(ValueError, match="combine='sum' needs kind sobel or scharr.*'vertical'"):
      filters.edge_detect(self.CORNER, 'vertical', combine='sum')


class ErrorTest(parameterized.TestCase):

  def test_unknown_kind_lists_kinds(self):
    with pytest.raises(ValueError, match="unknown edge kind 'laplace'.*vertical.*sobel.*scharr"):
      filters.edge_detect(np.zeros((5, 5)), 'laplace')

  @parameterized.parameters((5,), (2, 5, 5, 3, 1), (5, 5, 2), (2, 5, 5, 5), (4, 5, 5))
  def test_wrong_rank_or_channels(self, *shape):
    with pytest.raises(ValueError, match=r'edge_detect expects .*got shape'):
      filters.edge_detect(np.zeros(shape, np.float32))

  def test_image_smaller_than_kernel(self):
    with pytest.raises(ValueError, match='does not fit'):
      filters.edge_detect(np.zeros((2, 5)))
