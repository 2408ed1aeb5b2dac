"""Mask folders: images/ and masks/ of a split, index and palette PNG labels."""


import numpy as np
import pytest
from PIL import Image

from cnn_jax.data.mask_folder import load_mask_folder, read_label_png
from tests.data.annotated_files import load_recording_warnings

S, K = 30, 2


@pytest.fixture
def root(tmp_path):
  root = tmp_path / 'seg'
  images, masks = root / 'train' / 'images', root / 'train' / 'masks'
  images.mkdir(parents=True)
  masks.mkdir(parents=True)
  Image.fromarray(np.full((40, 60, 3), 50, np.uint8)).save(images / 'a.png')
  Image.fromarray(np.full((50, 30, 3), 90, np.uint8)).save(images / 'b.jpg')
  m = np.zeros((40, 60), np.uint8)
  m[4:12, 6:18] = 2
  m[0:2, :] = 255
  pal = Image.fromarray(m, 'P')
  pal.putpalette([c for i in range(256) for c in (255 - i, i, i)])
  pal.save(masks / 'a.png')
  m = np.zeros((50, 30), np.uint8)
  m[25:50, 0:15] = 1
  Image.fromarray(m, 'L').save(masks / 'b.png')
  (images / '.DS_Store').write_bytes(b'junk')  # stray files are ignored
  return root


def _load(root, **kwargs):
  return load_recording_warnings(load_mask_folder, root, **{'image_size': S, 'max_boxes': K, **kwargs})


def test_fields_and_masks(root):
  ds, _ = _load(root)
  e = ds.extras
  assert ds.images.shape == (2, S, S, 3) and ds.images.dtype == np.uint8
  assert e['masks'].shape == (2, S, S) and e['masks'].dtype == np.int32
  assert e['boxes'].shape == (2, K, 4) and not e['boxes'].any()
  np.testing.assert_array_equal(e['box_labels'], -1)
  np.testing.assert_array_equal(ds.labels, 0)
  np.testing.assert_array_equal(e['image_id'], [0, 1])
  np.testing.assert_array_equal(e['orig_hw'], [[40, 60], [50, 30]])
  m = e['masks'][0]  # a.png at scale 0.5, palette indices (not colours)
  assert (m[2:6, 3:9] == 2).all() and (m == 2).sum() == 24
  assert (m[0, :] == 255).all() and (m[20:] == 255).all()
  m = e['masks'][1]  # b.png at scale 0.6: 30 rows x 18 columns, label 1 lower-left
  assert (m[15:30, 0:9] == 1).all() and (m == 1).sum() == 135
  assert (m[:, 18:] == 255).all() and (m[:15, :18] == 0).all()
  assert ds.class_names == ('class_1', 'class_2')  # no classes.txt: up to the largest label


def test_classes_txt(root):
  (root / 'classes.txt').write_text('road\ncar\n\nsky\n')
  ds, _ = _load(root)
  assert ds.class_names == ('road', 'car', 'sky')


def test_grayscale_channels(root):
  ds, _ = _load(root, channels=1)
  assert ds.images.shape == (2, S, S, 1)


def test_read_label_png_keeps_indices(root):
  values = read_label_png(root / 'train' / 'masks' / 'a.png')
  assert values.dtype == np.uint8 and values.shape == (40, 60)
  assert set(np.unique(values)) == {0, 2, 255}


# --------------------------------------------------------------------------- bad input

def test_image_without_mask(root):
  (root / 'train' / 'masks' / 'b.png').unlink()
  with pytest.raises(ValueError, match=r'image .*b\.jpg has no mask .*masks/b\.png'):
    _load(root)


def test_mask_without_image(root):
  (root / 'train' / 'images' / 'b.jpg').unlink()
  with pytest.raises(ValueError, match=r"mask .*b\.png has no image of stem 'b'"):
    _load(root)


def test_size_mismatch_names_both(root):
  Image.fromarray(np.zeros((50, 31), np.uint8)).save(root / 'train' / 'masks' / 'b.png')
  with pytest.raises(ValueError, match=r'mask .*masks/b\.png is 31x50 but its image '
                                       r'.*images/b\.jpg is 30x50'):
    _load(root)


def test_label_above_classes(root):
  (root / 'classes.txt').write_text('road\n')
  with pytest.raises(ValueError, match=r'mask .*masks/a\.png holds label 2 but classes\.txt '
                                       r'names 1 classes'):
    _load(root)


def test_rgb_mask(root):
  Image.fromarray(np.zeros((50, 30, 3), np.uint8)).save(root / 'train' / 'masks' / 'b.png')
  with pytest.raises(ValueError, match=r'mask .*b\.png is a RGB image; expected a '
                                       r'single-channel'):
    _load(root)


def test_missing_split(root):
  with pytest.raises(FileNotFoundError, match=r'seg/val/images does not exist'):
    load_mask_folder(root, 'val', image_size=S, max_boxes=K)


def test_corrupt_image_skipped_with_warning(root):
  (root / 'train' / 'images' / 'b.jpg').write_bytes(b'oops')
  with pytest.raises(ValueError, match=r'b\.jpg.*skip_corrupt'):
    _load(root)
  ds, messages = _load(root, skip_corrupt=True)
  assert len(ds.images) == 1 and sum('skipped 1 corrupt' in m for m in messages) == 1
