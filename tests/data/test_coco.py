"""COCO reader: a tiny instances JSON (polygon, compressed and uncompressed RLE, crowd)."""

import json
import re

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from cnn_jax.data.coco import clip_boxes, load_coco
from tests.data.annotated_files import load_recording_warnings

S, K = 30, 4


def _compressed_rle(m: np.ndarray) -> dict:
  rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
  return {'size': rle['size'], 'counts': rle['counts'].decode()}


def _uncompressed_rle(m: np.ndarray) -> dict:
  flat = m.flatten(order='F').astype(np.int8)  # COCO runs are column-major, zeros first
  edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
  counts = np.diff(np.concatenate([[0], edges])).tolist()
  return {'size': list(m.shape), 'counts': counts}


def _rect(hw, y0, y1, x0, x1):
  m = np.zeros(hw, bool)
  m[y0:y1, x0:x1] = True
  return m


def _spec() -> dict:
  """Images 42 (40x60 PNG), 7 (50x30 JPEG), 100 (20x20, no annotations)."""
  return {
      'images': [
          {'id': 42, 'file_name': 'a.png', 'height': 40, 'width': 60},
          {'id': 7, 'file_name': 'b.jpg', 'height': 50, 'width': 30},
          {'id': 100, 'file_name': 'c.png'},
      ],
      # Listed out of id order: labels follow the sorted ids 1, 3, 7.
      'categories': [{'id': 7, 'name': 'zebra'}, {'id': 1, 'name': 'ant'},
                     {'id': 3, 'name': 'cat'}],
      'annotations': [
          {'id': 1, 'image_id': 42, 'category_id': 3, 'bbox': [6, 4, 12, 8], 'iscrowd': 0,
           'area': 96, 'segmentation': [[6, 4, 18, 4, 18, 12, 6, 12]]},
          {'id': 2, 'image_id': 42, 'category_id': 1, 'bbox': [30, 10, 20, 20], 'iscrowd': 0,
           'area': 400, 'segmentation': _compressed_rle(_rect((40, 60), 10, 30, 30, 50))},
          {'id': 3, 'image_id': 7, 'category_id': 7, 'bbox': [0, 0, 10, 12], 'iscrowd': 1,
           'area': 120, 'segmentation': _uncompressed_rle(_rect((50, 30), 0, 12, 0, 10))},
          {'id': 4, 'image_id': 7, 'category_id': 3, 'bbox': [5, 5, 0, 4], 'iscrowd': 0},
          {'id': 5, 'image_id': 7, 'category_id': 3, 'bbox': [100, 100, 5, 5], 'iscrowd': 0},
          # Partly outside: clipped to x 20..30, y 40..50; no segmentation.
          {'id': 6, 'image_id': 7, 'category_id': 3, 'bbox': [20, 40, 20, 20], 'iscrowd': 0},
      ],
  }


def _write(root, spec=None, name='instances_train.json'):
  (root / 'annotations').mkdir(parents=True, exist_ok=True)
  path = root / 'annotations' / name
  path.write_text(json.dumps(_spec() if spec is None else spec))
  return path


@pytest.fixture
def root(tmp_path):
  root = tmp_path / 'coco'
  (root / 'train').mkdir(parents=True)
  a = np.full((40, 60, 3), 20, np.uint8)
  a[4:12, 6:18] = (250, 30, 30)  # the annotation-1 rectangle
  Image.fromarray(a).save(root / 'train' / 'a.png')
  Image.fromarray(np.full((50, 30, 3), 90, np.uint8)).save(root / 'train' / 'b.jpg')
  Image.fromarray(np.full((20, 20, 3), 160, np.uint8)).save(root / 'train' / 'c.png')
  _write(root)
  return root


def _load(root, **kwargs):
  return load_recording_warnings(load_coco, root, **{'image_size': S, 'max_boxes': K, **kwargs})


def test_fields_shapes_and_dtypes(root):
  ds, _ = _load(root)
  assert ds.images.shape == (3, S, S, 3) and ds.images.dtype == np.uint8
  assert ds.labels.shape == (3,) and ds.labels.dtype == np.int32
  assert ds.class_names == ('ant', 'cat', 'zebra')
  e = ds.extras
  assert e['boxes'].shape == (3, K, 4) and e['boxes'].dtype == np.float32
  assert e['box_labels'].shape == (3, K) and e['box_labels'].dtype == np.int32
  for flag in ('box_crowd', 'box_difficult'):
    assert e[flag].shape == (3, K) and e[flag].dtype == bool
  np.testing.assert_array_equal(e['image_id'], [42, 7, 100])
  assert e['image_id'].dtype == np.int32
  np.testing.assert_allclose(e['image_scale'], [2.0, 50 / 30, 20 / 30], rtol=1e-6)
  np.testing.assert_array_equal(e['orig_hw'], [[40, 60], [50, 30], [20, 20]])
  assert 'masks' not in e and 'instance_masks' not in e


def test_boxes_labels_and_crowd(root):
  ds, _ = _load(root)
  e = ds.extras
  # Image 42, scale 0.5, largest first: annotation 2 (category 1 -> 0), then 1 (3 -> 1).
  np.testing.assert_allclose(e['boxes'][0, :2], np.array([[5, 15, 15, 25], [2, 3, 6, 9]]) / S,
                             atol=1e-6)
  np.testing.assert_array_equal(e['box_labels'][0], [0, 1, -1, -1])
  # Image 7, scale 0.6: the crowd box (category 7 -> 2), then the clipped one.
  np.testing.assert_allclose(e['boxes'][1, :2],
                             np.array([[0, 0, 12, 10], [40, 20, 50, 30]]) * 0.6 / S, atol=1e-6)
  np.testing.assert_array_equal(e['box_labels'][1], [2, 1, -1, -1])
  np.testing.assert_array_equal(e['box_crowd'][1], [True, False, False, False])
  assert not e['box_crowd'][0].any() and not e['box_difficult'].any()
  # Image 100 has no annotations: kept, all padding.
  np.testing.assert_array_equal(e['box_labels'][2], -1)
  assert not e['boxes'][2].any()
  np.testing.assert_array_equal(ds.labels, [0, 2, 0])


def test_drawn_rectangle_lands_in_its_box(root):
  ds, _ = _load(root)
  red = (ds.images[0, ..., 0] > 150) & (ds.images[0, ..., 1] < 100)
  rows, cols = np.nonzero(red)
  y0, x0, y1, x1 = ds.extras['boxes'][0, 1] * S
  assert rows.size and rows.min() >= y0 and rows.max() < y1
  assert cols.min() >= x0 and cols.max() < x1


def test_skipped_boxes_warn_once_with_count(root):
  _, messages = _load(root)
  skipped = [m for m in messages if 'non-positive size or outside the image' in m]
  assert len(skipped) == 1
  assert skipped[0].startswith('2 boxes') and 'instances_train.json' in skipped[0]


def test_semantic_masks(root):
  ds, _ = _load(root, masks=True)
  masks = ds.extras['masks']
  assert masks.shape == (3, S, S) and masks.dtype == np.int32
  m = masks[0]
  # Polygon of category 3 (label 1 -> value 2) and RLE of category 1 (value 1), at scale 0.5.
  assert (m[2:6, 3:9] == 2).all() and (m == 2).sum() == 24
  assert (m[5:15, 15:25] == 1).all() and (m == 1).sum() == 100
  assert (m[20:] == 255).all()  # letterbox padding below the 20-row picture
  assert set(np.unique(m[:20])) == {0, 1, 2}
  # Image 7: crowd region and the box without segmentation are ignored, nothing labelled.
  m = masks[1]
  assert (m[0:7, 0:6] == 255).all() and (m[24:30, 12:18] == 255).all()
  assert (m[:, 18:] == 255).all() and set(np.unique(m)) == {0, 255}
  assert (m[10:20, 0:12] == 0).all()
  assert (masks[2] == 0).all()  # square: fills the canvas, no annotations


def test_instance_masks(root):
  ds, _ = _load(root, instance_masks=True)
  inst = ds.extras['instance_masks']
  assert inst.shape == (3, K, S, S) and inst.dtype == bool
  assert 'masks' not in ds.extras
  np.testing.assert_array_equal(inst[0, 0], _rect((S, S), 5, 15, 15, 25))
  np.testing.assert_array_equal(inst[0, 1], _rect((S, S), 2, 6, 3, 9))
  assert not inst[0, 2:].any() and not inst[2].any()
  assert inst[1, 0].sum() > 0 and not inst[1, 1].any()  # crowd RLE; no segmentation


def test_ann_file_relative_or_absolute(root):
  other = _write(root, name='custom.json')
  rel, _ = _load(root, ann_file='annotations/custom.json')
  absolute, _ = _load(root, ann_file=str(other))
  np.testing.assert_array_equal(rel.extras['boxes'], absolute.extras['boxes'])


def test_clip_boxes():
  boxes, keep = clip_boxes(np.array([[-2, 1, 5, 9], [1, 1, 1, 4], [20, 0, 30, 5],
                                     [np.nan, 0, 1, 1]]), (10, 8))
  np.testing.assert_array_equal(keep, [True, False, False, False])
  np.testing.assert_array_equal(boxes, [[0, 1, 5, 8]])


# --------------------------------------------------------------------------- bad input

def test_missing_annotation_file(root):
  with pytest.raises(FileNotFoundError, match=r'instances_val\.json.*train_ann='):
    load_coco(root, 'val', image_size=S, max_boxes=K)


def test_invalid_json(root):
  (root / 'annotations' / 'instances_train.json').write_text('{"images": [')
  with pytest.raises(ValueError, match=r'instances_train\.json is not valid JSON'):
    _load(root)


@pytest.mark.parametrize('key', ['images', 'annotations', 'categories'])
def test_not_coco_names_missing_key(root, key):
  spec = _spec()
  del spec[key]
  _write(root, spec)
  with pytest.raises(ValueError, match=rf"instances_train\.json is not a COCO.*'{key}'"):
    _load(root)


@pytest.mark.parametrize('index,key,value,match', [
    (0, 'image_id', 999, r'annotation 1 .*image_id 999'),
    (1, 'category_id', 55, r'annotation 2 .*category_id 55'),
], ids=['unknown_image', 'unknown_category'])
def test_annotation_pointing_nowhere(root, index, key, value, match):
  spec = _spec()
  spec['annotations'][index][key] = value
  _write(root, spec)
  with pytest.raises(ValueError, match=r'instances_train\.json: ' + match):
    _load(root)


def test_missing_image_file(root):
  (root / 'train' / 'b.jpg').unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(root / 'train')) + r'.*b\.jpg'):
    _load(root)


def test_corrupt_image_raises_or_is_skipped(root):
  (root / 'train' / 'b.jpg').write_bytes(b'not a jpeg')
  with pytest.raises(ValueError, match=r'b\.jpg.*skip_corrupt'):
    _load(root)
  ds, messages = _load(root, skip_corrupt=True)
  np.testing.assert_array_equal(ds.extras['image_id'], [42, 100])
  assert sum('skipped 1 corrupt image' in m for m in messages) == 1


def test_image_size_disagrees_with_entry(root):
  spec = _spec()
  spec['images'][0]['width'] = 61
  _write(root, spec)
  with pytest.raises(ValueError, match=r'a\.png is 60x40.*instances_train\.json says 61x40'):
    _load(root)


def test_rle_of_another_size(root):
  spec = _spec()
  spec['annotations'][1]['segmentation'] = _compressed_rle(np.zeros((10, 10), bool))
  _write(root, spec)
  with pytest.raises(ValueError, match=r'instances_train\.json: annotation 2 has an RLE of size'):
    _load(root, masks=True)


def test_bad_uncompressed_rle_counts(root):
  spec = _spec()
  spec['annotations'][2]['segmentation']['counts'] = [3, 4]
  _write(root, spec)
  with pytest.raises(ValueError, match=r'annotation 3 has uncompressed RLE counts summing to 7'):
    _load(root, masks=True)
