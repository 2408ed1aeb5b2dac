"""Augmentation: exact geometry on hand-made images, per-example keys, jit."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cnn_jax.data import augment


def _dot(h, w, r, c, channels=1, value=1.0):
  x = np.zeros((h, w, channels), np.float32)
  x[r, c] = value
  return x


def _shifted(x, dy, dx):
  """``x`` translated by (dy, dx) with zero fill (numpy reference)."""
  h, w = x.shape[:2]
  out = np.zeros_like(x)
  out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
      x[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
  return out


def _keys(n, seed=0):
  return jax.random.split(jax.random.key(seed), n)


class NormalizeTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_numpy(self):
    x = np.random.default_rng(0).integers(0, 256, (2, 4, 5, 3), dtype=np.uint8)
    out = self.variant(functools.partial(
        augment.normalize, mean=augment.CIFAR10_MEAN, std=augment.CIFAR10_STD))(x)
    ref = (x / 255.0 - np.array(augment.CIFAR10_MEAN)) / np.array(augment.CIFAR10_STD)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)

  def test_imagenet_constants_and_bad_stats(self):
    x = np.full((1, 2, 2, 3), 255, np.uint8)
    out = augment.normalize(x, augment.IMAGENET_MEAN, augment.IMAGENET_STD)
    ref = (1.0 - np.array(augment.IMAGENET_MEAN)) / np.array(augment.IMAGENET_STD)
    np.testing.assert_allclose(out[0, 0, 0], ref, rtol=1e-6)
    with pytest.raises(ValueError, match='per channel'):
      augment.normalize(x, (0.5, 0.5), (0.2, 0.2))


class FlipCropTest(chex.TestCase):

  def test_flip_moves_column_and_is_an_involution(self):
    x = _dot(4, 6, 1, 1)
    y = np.asarray(augment.flip_lr(jnp.asarray(x)))
    np.testing.assert_array_equal(y, _dot(4, 6, 1, 6 - 1 - 1))
    np.testing.assert_array_equal(augment.flip_lr(augment.flip_lr(jnp.asarray(x))), x)

  def test_random_flip_gives_both_outcomes(self):
    x = jnp.asarray(_dot(3, 5, 0, 0))
    out = np.asarray(jax.vmap(augment.random_flip, in_axes=(0, None))(_keys(64), x))
    flipped = np.all(out == np.asarray(augment.flip_lr(x)), axis=(1, 2, 3))
    kept = np.all(out == np.asarray(x), axis=(1, 2, 3))
    assert np.all(flipped | kept) and flipped.any() and kept.any()
    never = jax.vmap(lambda k: augment.random_flip(k, x, p=0.0))(_keys(8))
    np.testing.assert_array_equal(never, np.broadcast_to(x, never.shape))

  def test_crop_with_zero_padding_is_identity(self):
    x = np.random.default_rng(0).normal(size=(5, 7, 2)).astype(np.float32)
    np.testing.assert_array_equal(augment.random_crop(jax.random.key(0), jnp.asarray(x), 0), x)

  def test_crop_is_a_zero_filled_shift_by_at_most_padding(self):
    p = 2
    # Three dots so that every output identifies a unique shift, and one of
    # them near the border falls off for large shifts.
    x = np.zeros((8, 9, 1), np.float32)
    x[0, 1], x[4, 4], x[6, 8] = 1.0, 2.0, 3.0
    out = np.asarray(jax.jit(jax.vmap(augment.random_crop, in_axes=(0, None, None)),
                             static_argnums=2)(_keys(100), jnp.asarray(x), p))
    shifts = []
    for y in out:
      matches = [(dy, dx) for dy in range(-p, p + 1) for dx in range(-p, p + 1)
                 if np.array_equal(y, _shifted(x, dy, dx))]
      assert len(matches) == 1, 'output is not a zero-filled shifted copy'
      shifts.append(matches[0])
    dys, dxs = zip(*shifts)
    assert set(dys) == set(dxs) == set(range(-p, p + 1))

  def test_reflect_crop_is_a_window_of_the_reflected_image(self):
    x = np.arange(5 * 6, dtype=np.float32).reshape(5, 6, 1)
    ref = np.pad(x, ((2, 2), (2, 2), (0, 0)), mode='reflect')
    out = np.asarray(jax.vmap(lambda k: augment.random_crop(k, jnp.asarray(x), 2, 'reflect'))(
        _keys(60)))
    offsets = set()
    for y in out:
      matches = [(i, j) for i in range(5) for j in range(5)
                 if np.array_equal(y, ref[i:i + 5, j:j + 6])]
      assert len(matches) == 1
      offsets.add(matches[0])
    assert len(offsets) > 15  # many of the 25 shifts occur

  def test_bad_padding(self):
    with pytest.raises(ValueError, match="unknown crop padding mode 'wrap'"):
      augment.random_crop(jax.random.key(0), jnp.zeros((4, 4, 1)), 1, 'wrap')
    with pytest.raises(ValueError, match='non-negative'):
      augment.random_crop(jax.random.key(0), jnp.zeros((4, 4, 1)), -1)
    with pytest.raises(ValueError, match=r'one \(H, W, C\) image'):
      augment.random_crop(jax.random.key(0), jnp.zeros((2, 4, 4, 1)), 1)


class AffineTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(2, 3)
  def test_identity(self, rows):
    x = np.random.default_rng(0).normal(size=(6, 7, 3)).astype(np.float32)
    out = self.variant(augment.affine)(jnp.asarray(x), jnp.eye(3)[:rows])
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, x, atol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((2, 3), (-1, 0), (0, -4))
  def test_integer_shift_moves_dot_exactly(self, dx, dy):
    x = _dot(9, 10, 4, 5, channels=2)
    matrix = augment.affine_matrix(shift=(dx, dy))
    out = self.variant(augment.affine)(jnp.asarray(x), matrix)
    np.testing.assert_allclose(out, _shifted(x, dy, dx), atol=1e-6)

  def test_rotate_90_is_counter_clockwise_like_rot90(self):
    x = np.random.default_rng(1).normal(size=(8, 8, 2)).astype(np.float32)
    out = np.asarray(augment.affine(jnp.asarray(x), augment.affine_matrix(rotation=90.0)))
    np.testing.assert_allclose(out[1:-1, 1:-1], np.rot90(x)[1:-1, 1:-1], atol=1e-4)
    back = augment.affine(jnp.asarray(x), augment.affine_matrix(rotation=-90.0))
    np.testing.assert_allclose(np.asarray(back)[1:-1, 1:-1], np.rot90(x, -1)[1:-1, 1:-1],
                               atol=1e-4)

  def test_zoom_keeps_centre_pixel_and_doubles_distances(self):
    x = np.zeros((9, 9, 1), np.float32)
    x[4, 4], x[4, 5] = 1.0, 2.0
    out = np.asarray(augment.affine(jnp.asarray(x), augment.affine_matrix(zoom=2.0)))
    assert out[4, 4, 0] == pytest.approx(1.0)
    # The neighbour one pixel right lands two pixels right (bilinear in between).
    assert out[4, 6, 0] == pytest.approx(2.0)
    assert out[4, 5, 0] == pytest.approx(1.5)

  def test_shear_keeps_centre_row_and_slants_others(self):
    x = np.random.default_rng(2).normal(size=(9, 11, 1)).astype(np.float32)
    out = np.asarray(augment.affine(jnp.asarray(x), augment.affine_matrix(shear=45.0)))
    np.testing.assert_allclose(out[4], x[4], atol=1e-5)
    # tan(45) = 1: the row one below the centre moves one pixel right.
    np.testing.assert_allclose(out[5, 1:], x[5, :-1], atol=1e-5)

  def test_affine_rejects_bad_input(self):
    with pytest.raises(ValueError, match='shape'):
      augment.affine(jnp.zeros((4, 4, 1)), jnp.eye(2))
    with pytest.raises(ValueError, match='floating'):
      augment.affine(jnp.zeros((4, 4, 1), jnp.uint8), jnp.eye(3))

  def test_random_affine_ranges(self):
    x = jnp.asarray(_dot(9, 9, 4, 4))
    np.testing.assert_array_equal(augment.random_affine(jax.random.key(0), x), x)
    # Pure rotation about the centre never moves the centre dot.
    rotated = jax.vmap(lambda k: augment.random_affine(k, x, rotation=30.0))(_keys(8))
    np.testing.assert_allclose(np.asarray(rotated)[:, 4, 4, 0], 1.0, atol=1e-5)
    with pytest.raises(ValueError, match='zoom'):
      augment.random_affine(jax.random.key(0), x, zoom=1.0)
    with pytest.raises(ValueError, match='>= 0'):
      augment.random_affine(jax.random.key(0), x, shift=-0.1)


_ALL_ON = dict(crop_padding=2, flip=True, rotation=15.0, shift=0.1, zoom=0.1, shear=5.0)


class AugmentBatchTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_per_example_keys_and_reproducibility(self):
    image = np.random.default_rng(3).normal(size=(12, 12, 3)).astype(np.float32)
    images = jnp.asarray(np.broadcast_to(image, (6, 12, 12, 3)))
    fn = self.variant(functools.partial(augment.augment_batch, **_ALL_ON))
    a = np.asarray(fn(jax.random.key(0), images))
    b = np.asarray(fn(jax.random.key(0), images))
    c = np.asarray(fn(jax.random.key(1), images))
    assert a.dtype == np.float32 and a.shape == images.shape
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    flat = a.reshape(6, -1)
    assert len({row.tobytes() for row in flat}) == 6, 'examples share an augmentation'

  def test_jit_with_static_kwargs(self):
    fn = jax.jit(augment.augment_batch, static_argnames=tuple(_ALL_ON))
    images = jnp.ones((3, 8, 8, 3), jnp.float32)
    out = fn(jax.random.key(0), images, **_ALL_ON)
    # Eager and compiled code may fuse float ops differently.
    np.testing.assert_allclose(out, augment.augment_batch(jax.random.key(0), images, **_ALL_ON),
                               atol=1e-5)

  def test_disabled_is_identity_and_crop_only_matches_single(self):
    images = jnp.asarray(np.random.default_rng(4).normal(size=(4, 6, 6, 1)), jnp.float32)
    np.testing.assert_array_equal(augment.augment_batch(jax.random.key(0), images), images)
    out = augment.augment_batch(jax.random.key(5), images, crop_padding=1)
    keys = jax.random.split(jax.random.key(5), 4)
    for k, x, y in zip(keys, images, out):
      # augment_batch splits each example key three ways; crop uses the second.
      np.testing.assert_array_equal(y, augment.random_crop(jax.random.split(k, 3)[1], x, 1))

  def test_flip_only_preserves_rows(self):
    images = jnp.asarray(np.random.default_rng(5).normal(size=(8, 4, 5, 2)), jnp.float32)
    out = np.asarray(augment.augment_batch(jax.random.key(0), images, flip=True))
    for x, y in zip(np.asarray(images), out):
      assert np.array_equal(y, x) or np.array_equal(y, x[:, ::-1])

  def test_bad_batch(self):
    with pytest.raises(ValueError, match='rank 4'):
      augment.augment_batch(jax.random.key(0), jnp.zeros((4, 4, 3)), flip=True)
    with pytest.raises(ValueError, match='normalize'):
      augment.augment_batch(jax.random.key(0), jnp.zeros((1, 4, 4, 3), jnp.uint8), flip=True)
