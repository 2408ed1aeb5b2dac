"""The synthetic shapes dataset: determinism, splits, boxes vs masks, errors."""

import numpy as np
import pytest

from cnn_jax.data import synthetic
from cnn_jax.data.dataset import ArrayDataset


@pytest.fixture(scope='module')
def scenes():
  return synthetic.render_scenes(400, seed=3)


@pytest.fixture(scope='module')
def multi():
  return synthetic.render_scenes(120, image_size=48, num_classes=14,
                                 objects_per_image=(2, 4), seed=5)


def test_shape_names():
  assert len(synthetic.SHAPES) >= 10
  assert len(set(synthetic.SHAPES)) == len(synthetic.SHAPES)


def test_shapes_and_dtypes(scenes):
  n = 400
  assert scenes['images'].shape == (n, 32, 32, 3) and scenes['images'].dtype == np.uint8
  assert scenes['labels'].shape == (n,) and scenes['labels'].dtype == np.int32
  assert scenes['boxes'].shape == (n, 1, 4) and scenes['boxes'].dtype == np.float32
  assert scenes['box_labels'].shape == (n, 1) and scenes['box_labels'].dtype == np.int32
  assert scenes['masks'].shape == (n, 32, 32) and scenes['masks'].dtype == np.int32
  np.testing.assert_array_equal(scenes['labels'], scenes['box_labels'][:, 0])


def test_deterministic_and_seed_dependent(scenes):
  again = synthetic.render_scenes(400, seed=3)
  for key, value in scenes.items():
    np.testing.assert_array_equal(again[key], value, err_msg=key)
  other = synthetic.render_scenes(50, seed=4)
  assert not np.array_equal(other['images'], scenes['images'][:50])


def test_prefix_of_a_larger_request_is_the_same(scenes):
  # Example i depends only on (seed, i), not on how many were asked for.
  small = synthetic.render_scenes(37, seed=3)
  np.testing.assert_array_equal(small['images'], scenes['images'][:37])
  np.testing.assert_array_equal(small['masks'], scenes['masks'][:37])


def test_labels_roughly_balanced(scenes):
  counts = np.bincount(scenes['labels'], minlength=10)
  assert counts.shape == (10,)
  # 40 expected per class; a binomial(400, 0.1) stays well inside [15, 70].
  assert counts.min() >= 15 and counts.max() <= 70, counts


def test_num_classes_limits_labels():
  out = synthetic.render_scenes(60, num_classes=3, objects_per_image=(1, 3), seed=1)
  assert set(np.unique(out['labels'])) <= {0, 1, 2}
  assert set(np.unique(out['box_labels'])) <= {-1, 0, 1, 2}
  assert set(np.unique(out['masks'])) <= {0, 1, 2, 3}


def _check_boxes_cover_masks(out, image_size):
  boxes, box_labels, masks = out['boxes'], out['box_labels'], out['masks']
  assert np.all((boxes >= 0) & (boxes <= 1))
  valid = box_labels >= 0
  assert np.all(boxes[~valid] == 0)
  assert np.all(boxes[valid][:, 2] > boxes[valid][:, 0])
  assert np.all(boxes[valid][:, 3] > boxes[valid][:, 1])
  centres = (np.arange(image_size) + 0.5) / image_size
  tol = 1.0 / image_size
  for i in range(len(masks)):
    for k in np.nonzero(valid[i])[0]:
      rows, cols = np.nonzero(masks[i] == box_labels[i, k] + 1)
      # Pixels of that kind may belong to another object of the same kind, so
      # only the single-object case checks containment exactly.
      if valid[i].sum() == 1:
        y0, x0, y1, x1 = boxes[i, k]
        assert rows.size > 0
        assert np.all((centres[rows] >= y0 - tol) & (centres[rows] <= y1 + tol))
        assert np.all((centres[cols] >= x0 - tol) & (centres[cols] <= x1 + tol))


def test_single_object_box_contains_its_mask(scenes):
  _check_boxes_cover_masks(scenes, 32)
  # The box is tight: the object touches all four sides (up to a pixel).
  for i in range(50):
    rows, cols = np.nonzero(scenes['masks'][i])
    y0, x0, y1, x1 = scenes['boxes'][i, 0] * 32
    assert abs(rows.min() - y0) < 1 and abs(rows.max() + 1 - y1) < 1
    assert abs(cols.min() - x0) < 1 and abs(cols.max() + 1 - x1) < 1
    assert set(np.unique(scenes['masks'][i])) == {0, scenes['labels'][i] + 1}


def test_multi_object_mode(multi):
  assert multi['boxes'].shape == (120, 4, 4)
  counts = (multi['box_labels'] >= 0).sum(axis=1)
  assert counts.min() >= 2 and counts.max() <= 4
  assert set(np.unique(counts)) == {2, 3, 4}
  # Valid rows come first, padding after.
  for row, c in zip(multi['box_labels'], counts):
    assert np.all(row[:c] >= 0) and np.all(row[c:] == -1)
  _check_boxes_cover_masks(multi, 48)
  # Every visible mask label is one of the image's objects.
  for mask, row in zip(multi['masks'], multi['box_labels']):
    assert set(np.unique(mask)) - {0} <= set(row[row >= 0] + 1)
  # Objects are sorted largest first and the label is the first one's kind.
  areas = ((multi['boxes'][..., 2] - multi['boxes'][..., 0])
           * (multi['boxes'][..., 3] - multi['boxes'][..., 1]))
  np.testing.assert_array_equal(multi['labels'], multi['box_labels'][:, 0])
  assert np.mean(areas[:, 0] >= areas[:, 1]) > 0.7


def test_objects_contrast_with_background(scenes):
  images = scenes['images'].astype(np.float32)
  fg = scenes['masks'] > 0
  for i in range(40):
    inside = images[i][fg[i]].mean(axis=0)
    outside = images[i][~fg[i]].mean(axis=0)
    assert np.linalg.norm(inside - outside) > 60


def test_class_mean_images_differ(scenes):
  # A cheap learnability proxy: per-class mean foreground masks are distinct.
  fg = (scenes['masks'] > 0).astype(np.float32)
  means = np.stack([fg[scenes['labels'] == k].mean(axis=0) for k in range(10)])
  dists = np.linalg.norm(means[:, None] - means[None], axis=(-2, -1))
  assert dists[~np.eye(10, dtype=bool)].min() > 1.0


def test_load_synthetic_splits_are_disjoint():
  train = synthetic.load_synthetic('train', num_examples=300, seed=1)
  test = synthetic.load_synthetic('test', num_examples=300, seed=1)
  assert isinstance(train, ArrayDataset) and len(train) == 300
  assert train.class_names == synthetic.SHAPES[:10] and train.num_classes == 10
  assert set(train.extras) == {'boxes', 'box_labels', 'masks'}
  hashes = {x.tobytes() for x in train.images}
  assert len(hashes) == 300
  assert not hashes & {x.tobytes() for x in test.images}
  again = synthetic.load_synthetic('train', num_examples=300, seed=1)
  np.testing.assert_array_equal(again.images, train.images)


def test_load_synthetic_default_size_and_options():
  test = synthetic.load_synthetic('test', image_size=16, num_classes=4)
  assert len(test) == 2000 and test.images.shape[1:] == (16, 16, 3)
  assert test.class_names == synthetic.SHAPES[:4]
  assert test.labels.max() <= 3


@pytest.mark.parametrize('kwargs, match', [
    (dict(num_classes=len(synthetic.SHAPES) + 1), r'num_classes must be in \[1, '),
    (dict(num_classes=0), 'num_classes'),
    (dict(image_size=15), 'at least 16'),
    (dict(objects_per_image=(3, 2)), 'min <= max'),
    (dict(objects_per_image=0), 'objects_per_image'),
    (dict(seed=-1), 'non-negative'),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    synthetic.render_scenes(4, **kwargs)
  with pytest.raises(ValueError, match=match):
    synthetic.load_synthetic('train', num_examples=4, **kwargs)


def test_unknown_split():
  with pytest.raises(ValueError, match='train, test'):
    synthetic.load_synthetic('validation')
  with pytest.raises(ValueError, match='non-negative'):
    synthetic.render_scenes(-1)
