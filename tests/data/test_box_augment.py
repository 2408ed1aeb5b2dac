"""Box- and mask-aware augmentation: annotations move exactly with the pixels.

The property tests paint a box as a filled rectangle into a blank image (and
as label ``C`` into a mask), transform all three with one draw and check that
the moved box is the bounding box of the moved rectangle within one pixel.
Shapes are fixed and only keys and box corners vary (as array values), so one
compile serves every hypothesis example.
"""

from __future__ import annotations

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from cnn_jax.data import box_augment
from cnn_jax.tasks import base, detection, segmentation
from tests.tasks.configs import tiny

H, W, C = 24, 32, 3     # not square: catches a swapped y / x
LABEL = 3               # the painted object's mask label
SCALE = (0.5, 1.5)
MIN_VISIBLE = 0.3
IGNORE = 255


def _paint(box_px: jax.Array, h: int = H, w: int = W) -> tuple[jax.Array, jax.Array]:
  """(h, w, C) float image, 1 inside the pixel box ``(y0, x0, y1, x1)``, and its (h, w) mask."""
  rows = jnp.arange(h)[:, None]
  cols = jnp.arange(w)[None, :]
  inside = ((rows >= box_px[0]) & (rows < box_px[2]) & (cols >= box_px[1])
            & (cols < box_px[3]))
  image = jnp.broadcast_to(inside[..., None], (h, w, C)).astype(jnp.float32)
  return image, jnp.where(inside, LABEL, 0).astype(jnp.int32)


def _boxes(box_px: jax.Array, h: int = H, w: int = W) -> tuple[jax.Array, jax.Array]:
  """(2, 4) boxes (the painted one, then a padding row) and their (2,) labels."""
  norm = box_px.astype(jnp.float32) / jnp.array([h, w, h, w], jnp.float32)
  boxes = jnp.stack([norm, jnp.zeros(4, jnp.float32)])
  return boxes, jnp.array([LABEL, -1], jnp.int32)


@jax.jit
def _crop_case(seed: jax.Array, box_px: jax.Array):
  key = jax.random.key(seed)
  image, mask = _paint(box_px)
  boxes, labels = _boxes(box_px)
  out = box_augment.scale_crop(key, image, boxes, labels, mask, scale=SCALE,
                               min_visible=MIN_VISIBLE, ignore_index=IGNORE)
  return out, box_augment.sample_scale_crop(key, SCALE)


LB_SIZE = 20


@jax.jit
def _letterbox_case(hw: jax.Array, box_px: jax.Array):
  image, mask = _paint(box_px)
  # Junk outside the valid region must never reach the output.
  outside = ~((jnp.arange(H)[:, None] < hw[0]) & (jnp.arange(W)[None, :] < hw[1]))
  image = jnp.where(outside[..., None], 7.0, image)
  mask = jnp.where(outside, 9, mask)
  boxes, _ = _boxes(box_px)
  return box_augment.letterbox(image, hw, LB_SIZE, boxes, mask, ignore_index=IGNORE)


def _bbox(region: np.ndarray) -> np.ndarray | None:
  """(y0, x0, y1, x1) pixel corners of a (h, w) bool region, None when empty."""
  ys, xs = np.nonzero(region)
  if len(ys) == 0:
    return None
  return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], np.float64)


def _check_regions(image: np.ndarray, mask: np.ndarray, box: np.ndarray,
                   hw: tuple[int, int]) -> None:
  """The box (normalised, of an ``hw`` image) bounds the painted region of image and mask."""
  px = box * np.array([hw[0], hw[1], hw[0], hw[1]], np.float64)
  if min(px[2] - px[0], px[3] - px[1]) < 2:  # thinner than 2 px may blur below 0.5: no claim
    return
  from_image, from_mask = _bbox(image[..., 0] > 0.5), _bbox(mask == LABEL)
  assert from_image is not None and from_mask is not None, (px, from_image, from_mask)
  np.testing.assert_allclose(from_image, px, atol=1.0)
  np.testing.assert_allclose(from_mask, px, atol=1.0)
  np.testing.assert_allclose(from_mask, from_image, atol=1.0)


def _box_px(draw, h: int, w: int, hw: tuple[int, int] | None = None):
  vh, vw = hw or (h, w)
  y0 = draw(st.integers(0, vh - 1))
  x0 = draw(st.integers(0, vw - 1))
  y1 = draw(st.integers(y0 + 1, vh))
  x1 = draw(st.integers(x0 + 1, vw))
  return np.array([y0, x0, y1, x1], np.int32)


@st.composite
def crop_cases(draw):
  return np.uint32(draw(st.integers(0, 2**32 - 1))), _box_px(draw, H, W)


@settings(max_examples=15)
@given(crop_cases())
def test_scale_crop_moves_box_and_mask_with_pixels(case):
  seed, box_px = case
  (image, boxes, labels, mask), (zoom, u) = _crop_case(seed, box_px)
  chex.assert_shape(image, (H, W, C))
  chex.assert_shape(boxes, (2, 4))
  chex.assert_shape(labels, (2,))
  chex.assert_shape(mask, (H, W))
  chex.assert_type([image, boxes, labels, mask], [jnp.float32, jnp.float32, jnp.int32, jnp.int32])
  image, boxes, labels, mask = map(np.asarray, (image, boxes, labels, mask))
  zoom, u = float(zoom), np.asarray(u, np.float64)
  assert SCALE[0] - 1e-6 <= zoom <= SCALE[1] + 1e-6
  assert set(np.unique(mask)) <= {0, LABEL, IGNORE}  # nearest: no blended labels
  if zoom >= 1:  # zooming in never reads from outside the input
    assert IGNORE not in mask
  # The padding row stays dropped.
  assert labels[1] == -1 and np.all(boxes[1] == 0)
  # The box by the same affine map, in float64.
  norm = box_px / np.array([H, W, H, W], np.float64)
  moved = norm * zoom + np.tile(u * (1 - zoom), 2)
  clipped = np.clip(moved, 0, 1)
  area = lambda b: max(b[2] - b[0], 0) * max(b[3] - b[1], 0)  # noqa: E731
  ratio = area(clipped) / max(area(moved), 1e-12)
  if abs(ratio - MIN_VISIBLE) < 1e-4:  # float32 may round either way at the threshold
    return
  if ratio < MIN_VISIBLE or area(clipped) == 0:
    assert labels[0] == -1 and np.all(boxes[0] == 0)
    return
  assert labels[0] == LABEL
  np.testing.assert_allclose(boxes[0], clipped, atol=1e-5)
  _check_regions(image, mask, boxes[0].astype(np.float64), (H, W))


@st.composite
def letterbox_cases(draw):
  hw = (draw(st.integers(4, H)), draw(st.integers(4, W)))
  return np.array(hw, np.int32), _box_px(draw, H, W, hw)


@settings(max_examples=15)
@given(letterbox_cases())
def test_letterbox_moves_box_and_mask_with_pixels(case):
  hw, box_px = case
  image, boxes, mask = _letterbox_case(hw, box_px)
  chex.assert_shape([image, boxes, mask], [(LB_SIZE, LB_SIZE, C), (2, 4), (LB_SIZE, LB_SIZE)])
  chex.assert_type([image, boxes, mask], [jnp.float32, jnp.float32, jnp.int32])
  image, boxes, mask = map(np.asarray, (image, boxes, mask))
  s = min(LB_SIZE / hw[0], LB_SIZE / hw[1])
  assert image.max() <= 1 + 1e-5 and set(np.unique(mask)) <= {0, LABEL, IGNORE}  # no junk
  # Rows / columns whose centres fall beyond the scaled valid region are padding.
  beyond = ((np.arange(LB_SIZE)[:, None] + 0.5) / s >= hw[0]) | (
      (np.arange(LB_SIZE)[None, :] + 0.5) / s >= hw[1])
  assert np.all(image[beyond] == 0) and np.all(mask[beyond] == IGNORE)
  assert np.all(mask[~beyond] != IGNORE)
  expected = box_px * s / LB_SIZE
  np.testing.assert_allclose(boxes[0], np.clip(expected, 0, 1), atol=1e-5)
  _check_regions(image, mask, boxes[0].astype(np.float64), (LB_SIZE, LB_SIZE))


def test_scale_crop_is_deterministic_and_varies_with_the_key():
  box_px = np.array([4, 6, 16, 20], np.int32)
  a = jax.tree.map(np.asarray, _crop_case(np.uint32(1), box_px))
  b = jax.tree.map(np.asarray, _crop_case(np.uint32(1), box_px))
  c = jax.tree.map(np.asarray, _crop_case(np.uint32(2), box_px))
  chex.assert_trees_all_equal(a, b)
  assert not np.array_equal(a[0][0], c[0][0])


def test_scale_of_one_is_the_identity():
  image, mask = _paint(jnp.array([3, 5, 11, 17]))
  boxes, labels = _boxes(jnp.array([3, 5, 11, 17]))
  crop = jax.jit(functools.partial(box_augment.scale_crop, scale=(1.0, 1.0)))
  out = crop(jax.random.key(0), image, boxes, labels, mask)
  chex.assert_trees_all_close(out, (image, boxes, labels, mask), atol=1e-5)


def test_resize_to_and_random_scale_crop_batch():
  box_px = jnp.array([[2, 3, 10, 12], [5, 1, 20, 30]])
  images, masks = jax.vmap(_paint)(box_px)
  boxes, labels = jax.vmap(_boxes)(box_px)
  batch = {'image': images, 'boxes': boxes, 'box_labels': labels, 'segmentation': masks,
           'label': jnp.arange(2)}
  out = jax.jit(functools.partial(box_augment.resize_to, size=16))(batch)
  chex.assert_shape([out['image'], out['segmentation'], out['boxes']],
                    [(2, 16, 16, C), (2, 16, 16), (2, 2, 4)])
  np.testing.assert_array_equal(out['label'], batch['label'])  # other fields pass through
  for i in range(2):  # W = 32 -> 16: half size; rows beyond 12 are padding
    _check_regions(np.asarray(out['image'][i]), np.asarray(out['segmentation'][i]),
                   np.asarray(out['boxes'][i, 0], np.float64), (16, 16))
    assert np.all(np.asarray(out['segmentation'][i, 12:]) == IGNORE)
  keys = jax.random.split(jax.random.key(3), 2)
  crop = jax.jit(functools.partial(box_augment.random_scale_crop, scale=SCALE))(keys, batch)
  single_crop = jax.jit(functools.partial(box_augment.scale_crop, scale=SCALE))
  for i in range(2):  # the batched helper draws per example what scale_crop draws
    single = single_crop(keys[i], images[i], boxes[i], labels[i], masks[i])
    for got, want in zip((crop['image'], crop['boxes'], crop['box_labels'],
                          crop['segmentation']), single):
      np.testing.assert_allclose(np.asarray(got[i]), np.asarray(want), atol=1e-5)


def test_bad_scale_is_refused():
  with pytest.raises(ValueError, match=r'scale_crop must be \(min, max\)'):
    box_augment.sample_scale_crop(jax.random.key(0), (1.5, 0.5))


def _task_batch(n: int = 8, size: int = 32):
  rng = np.random.default_rng(0)
  y0, x0 = rng.integers(0, size // 2, (2, n))
  y1, x1 = y0 + rng.integers(4, size // 2, n), x0 + rng.integers(4, size // 2, n)
  box_px = jnp.asarray(np.stack([y0, x0, y1, x1], 1))
  paint = functools.partial(_paint, h=size, w=size)
  images, masks = jax.vmap(paint)(box_px)
  boxes, labels = jax.vmap(functools.partial(_boxes, h=size, w=size))(box_px)
  return images, masks, boxes, labels


def test_detection_augment_flips_and_crops_inside_jit():
  c = tiny('detect')
  c.augment.flip, c.augment.scale_crop = True, SCALE
  task = detection.Detection(c)
  images, _, boxes, labels = _task_batch()
  batch = {'image': images, 'boxes': boxes, 'box_labels': labels}
  keys = jax.random.split(jax.random.key(0), 8)
  out = jax.jit(task.augment)(keys, batch)
  chex.assert_trees_all_equal_shapes_and_dtypes(out, batch)
  # Same as the flip alone, then the crop on keys folded off the step's keys.
  c_flip = tiny('detect')
  c_flip.augment.flip = True
  @jax.jit
  def flip_then_crop(keys, batch):
    flipped = detection.Detection(c_flip).augment(keys, batch)
    crop_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    return box_augment.random_scale_crop(crop_keys, flipped, scale=SCALE)

  want = flip_then_crop(keys, batch)
  chex.assert_trees_all_close(out, want, atol=1e-5)
  flips = np.asarray(jax.vmap(lambda k: jax.random.bernoulli(k, 0.5))(keys))
  assert 0 < flips.sum() < 8  # the draw covers both branches of the flip
  for i in range(8):
    img, bx, lb = (np.asarray(out[k][i]) for k in ('image', 'boxes', 'box_labels'))
    if lb[0] >= 0:
      _check_regions(img, (img[..., 0] > 0.5).astype(np.int32) * LABEL, bx[0].astype(float),
                     (32, 32))
    else:
      assert np.all(bx[0] == 0)


def test_segmentation_augment_pads_masks_with_its_ignore_index():
  c = tiny('segment')
  c.augment.scale_crop = (0.5, 0.6)  # always shrinks: padding appears
  c.task.ignore_index = 254
  task = segmentation.Segmentation(c)
  images, masks, _, _ = _task_batch(4)
  keys = jax.random.split(jax.random.key(1), 4)
  out = jax.jit(task.augment)(keys, {'image': images, 'segmentation': masks})
  for i in range(4):
    m = np.asarray(out['segmentation'][i])
    assert 254 in m and set(np.unique(m)) <= {0, LABEL, 254}
    a, b = _bbox(np.asarray(out['image'][i, ..., 0]) > 0.5), _bbox(m == LABEL)
    np.testing.assert_allclose(a, b, atol=1.0)


def test_only_annotated_tasks_accept_scale_crop():
  c = tiny('detect')
  c.augment.scale_crop = SCALE
  with pytest.raises(ValueError, match='cannot apply augment.scale_crop'):
    base.Task(c)  # the classification default: flip only
  c.augment.scale_crop = ()  # empty: off, accepted anywhere
  base.Task(c)
