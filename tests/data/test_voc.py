"""PASCAL VOC reader: a tiny year folder with XML, JPEGs and palette masks."""

import re

import numpy as np
import pytest
from PIL import Image

from cnn_jax.data.voc import VOC_CLASSES, load_voc
from tests.data.annotated_files import load_recording_warnings

S, K = 30, 3
DOG, PERSON, CAT = (VOC_CLASSES.index(n) for n in ('dog', 'person', 'cat'))


def _xml(objects, size=(60, 40)):
  body = ''.join(
      f'<object><name>{name}</name><difficult>{int(difficult)}</difficult><bndbox>'
      f'<xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax>'
      '</bndbox></object>' for name, box, difficult in objects)
  return (f'<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>'
          f'{body}</annotation>')


def _palette_png(values: np.ndarray, path):
  img = Image.fromarray(values.astype(np.uint8), 'P')
  img.putpalette([c for i in range(256) for c in (i, 255 - i, (7 * i) % 256)])
  img.save(path)


@pytest.fixture
def root(tmp_path):
  root = tmp_path / 'VOCdevkit' / 'VOC2007'
  for sub in ('ImageSets/Main', 'ImageSets/Segmentation', 'Annotations', 'JPEGImages',
              'SegmentationClass'):
    (root / sub).mkdir(parents=True)
  a = np.full((40, 60, 3), 20, np.uint8)
  a[4:12, 6:18] = 240  # the dog's bndbox 7..18 x 5..12 (1-based inclusive)
  Image.fromarray(a).save(root / 'JPEGImages' / '000001.jpg', quality=95)
  Image.fromarray(np.full((50, 30, 3), 90, np.uint8)).save(root / 'JPEGImages' / '000002.jpg')
  Image.fromarray(np.full((20, 20, 3), 90, np.uint8)).save(root / 'JPEGImages' / '000003.jpg')
  (root / 'Annotations' / '000001.xml').write_text(
      _xml([('dog', (7, 5, 18, 12), False), (' person ', (41, 21, 48, 26), True)]))
  (root / 'Annotations' / '000002.xml').write_text(
      _xml([('cat', (0, 1, 10, 25), False), ('cat', (100, 100, 110, 110), False)], (30, 50)))
  (root / 'ImageSets' / 'Main' / 'train.txt').write_text('000001\n000002\n')
  (root / 'ImageSets' / 'Main' / 'dog_train.txt').write_text('000001  1\n000002 -1\n')
  (root / 'ImageSets' / 'Segmentation' / 'train.txt').write_text('000001\n000003\n')
  m = np.zeros((40, 60), np.uint8)
  m[4:12, 6:18] = DOG + 1
  m[3, 5:19] = 255  # a void border row
  _palette_png(m, root / 'SegmentationClass' / '000001.png')
  m = np.zeros((20, 20), np.uint8)
  m[10:20, 0:10] = CAT + 1
  _palette_png(m, root / 'SegmentationClass' / '000003.png')
  return root


def _load(root, split='train', **kwargs):
  return load_recording_warnings(load_voc, root, split, **{'image_size': S, 'max_boxes': K, **kwargs})


def test_detection_fields_boxes_and_difficult(root):
  ds, messages = _load(root)
  e = ds.extras
  assert ds.class_names == VOC_CLASSES and len(VOC_CLASSES) == 20
  assert VOC_CLASSES[0] == 'aeroplane' and VOC_CLASSES[-1] == 'tvmonitor'
  assert ds.images.shape == (2, S, S, 3) and ds.images.dtype == np.uint8
  assert e['boxes'].shape == (2, K, 4) and e['boxes'].dtype == np.float32
  assert e['box_labels'].dtype == np.int32 and e['box_difficult'].dtype == bool
  assert e['box_crowd'].dtype == bool and not e['box_crowd'].any()
  np.testing.assert_array_equal(e['image_id'], [0, 1])
  assert 'masks' not in e
  # 000001 (40x60, scale 0.5): dog corners (4, 6, 12, 18) px, person (20, 40, 26, 48) px.
  np.testing.assert_allclose(e['boxes'][0, :2],
                             np.array([[2, 3, 6, 9], [10, 20, 13, 24]]) / S, atol=1e-6)
  np.testing.assert_array_equal(e['box_labels'][0], [DOG, PERSON, -1])
  np.testing.assert_array_equal(e['box_difficult'][0], [False, True, False])
  # 000002 (50x30, scale 0.6): xmin=0 becomes x0=-1, clipped to 0; the far box is skipped.
  np.testing.assert_allclose(e['boxes'][1, 0], np.array([0, 0, 25, 10]) * 0.6 / S, atol=1e-6)
  np.testing.assert_array_equal(e['box_labels'][1], [CAT, -1, -1])
  np.testing.assert_array_equal(ds.labels, [DOG, CAT])
  skipped = [m for m in messages if 'non-positive size or outside the image' in m]
  assert len(skipped) == 1 and skipped[0].startswith('1 boxes') and 'Annotations' in skipped[0]


def test_drawn_rectangle_lands_in_its_box(root):
  ds, _ = _load(root)
  rows, cols = np.nonzero(ds.images[0, ..., 0] > 150)
  y0, x0, y1, x1 = ds.extras['boxes'][0, 0] * S
  assert rows.size and rows.min() >= y0 and rows.max() < y1
  assert cols.min() >= x0 and cols.max() < x1


def test_segmentation_masks_and_boxes_from_xml(root):
  ds, _ = _load(root, segmentation=True)
  e = ds.extras
  assert e['masks'].shape == (2, S, S) and e['masks'].dtype == np.int32
  m = e['masks'][0]
  assert (m[2:6, 3:9] == DOG + 1).all() and (m == DOG + 1).sum() == 24
  assert (m[20:] == 255).all() and set(np.unique(m)) == {0, DOG + 1, 255}
  m = e['masks'][1]  # 20x20 fills the canvas: cat in the lower-left quarter
  assert (m[15:, :15] == CAT + 1).all() and (m == CAT + 1).sum() == 225
  np.testing.assert_array_equal(e['box_labels'][0], [DOG, PERSON, -1])
  np.testing.assert_array_equal(e['box_labels'][1], -1)  # 000003 has no XML


# --------------------------------------------------------------------------- bad input

def test_missing_split_list_names_it_and_the_present_ones(root):
  with pytest.raises(FileNotFoundError, match=r'Main/nosuch\.txt does not exist \(split lists '
                                              r'there: train\)'):
    _load(root, 'nosuch')


def test_unknown_class(root):
  (root / 'Annotations' / '000002.xml').write_text(_xml([('unicorn', (1, 1, 5, 5), False)]))
  with pytest.raises(ValueError, match=r"000002\.xml has an object of class 'unicorn'.*"
                                       r'aeroplane, bicycle'):
    _load(root)


def test_invalid_xml(root):
  (root / 'Annotations' / '000002.xml').write_text('<annotation><object>')
  with pytest.raises(ValueError, match=r'000002\.xml is not valid XML'):
    _load(root)


def test_missing_xml_for_detection(root):
  (root / 'Annotations' / '000002.xml').unlink()
  with pytest.raises(FileNotFoundError, match=r'000002\.xml for id .000002.'):
    _load(root)


def test_missing_image(root):
  (root / 'JPEGImages' / '000002.jpg').unlink()
  with pytest.raises(FileNotFoundError, match=re.escape(str(root / 'JPEGImages')) + r'.*000002'):
    _load(root)


def test_corrupt_image_skipped_with_warning(root):
  (root / 'JPEGImages' / '000002.jpg').write_bytes(b'\xff\xd8 truncated')
  with pytest.raises(ValueError, match=r'000002\.jpg.*skip_corrupt'):
    _load(root)
  ds, messages = _load(root, skip_corrupt=True)
  assert len(ds.images) == 1 and sum('skipped 1 corrupt' in m for m in messages) == 1


def test_mask_of_another_size(root):
  _palette_png(np.zeros((21, 20), np.uint8), root / 'SegmentationClass' / '000003.png')
  with pytest.raises(ValueError, match=r'SegmentationClass/000003\.png is 20x21 but its image '
                                       r'.*JPEGImages/000003\.jpg is 20x20'):
    _load(root, segmentation=True)


def test_mask_value_out_of_range(root):
  _palette_png(np.full((20, 20), 21, np.uint8), root / 'SegmentationClass' / '000003.png')
  with pytest.raises(ValueError, match=r'000003\.png holds value 21'):
    _load(root, segmentation=True)
