"""Image-folder listing, decoding, colour conversion, the decode cache and bad-input errors."""

import os
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

from cnn_jax.data import image_folder as F

RED = (255, 0, 0)
BLUE = (0, 0, 255)


def _save(path, img, **kw):
  path.parent.mkdir(parents=True, exist_ok=True)
  img.save(path, **kw)
  return path


def _solid(color, size=(8, 8), mode='RGB'):
  return Image.new(mode, size, color)


@pytest.fixture
def root(tmp_path):
  """root/{train,test}/{bird,cat,dog}: mixed formats and modes, plus stray files.

  train/bird: 2 blue images (BMP, uppercase .PNG)
  train/cat:  red PNG, red JPEG, gray 'L' PNG (value 100)
  train/dog:  RGBA PNG (left half opaque red, right half transparent green),
              palette 'P' GIF (all palette colour 1 = blue)
  """
  r = tmp_path / 'ds'
  tr = r / 'train'
  _save(tr / 'bird' / 'b1.bmp', _solid(BLUE))
  _save(tr / 'bird' / 'b2.PNG', _solid(BLUE), format='PNG')
  _save(tr / 'cat' / 'c1.png', _solid(RED))
  _save(tr / 'cat' / 'c2.jpg', _solid(RED), quality=100)
  _save(tr / 'cat' / 'c3.png', _solid(100, mode='L'))
  rgba = np.zeros((8, 8, 4), np.uint8)
  rgba[:, :4] = (255, 0, 0, 255)
  rgba[:, 4:] = (0, 255, 0, 0)
  _save(tr / 'dog' / 'd1.png', Image.fromarray(rgba, 'RGBA'))
  pal = Image.new('P', (8, 8), 1)
  pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
  _save(tr / 'dog' / 'd2.gif', pal)
  # Strays that must be ignored.
  (tr / 'cat' / '.DS_Store').write_bytes(b'\0\1junk')
  (tr / '.DS_Store').write_bytes(b'\0\1junk')
  (tr / 'cat' / 'notes.txt').write_text('not an image')
  _save(tr / 'cat' / '.hidden.png', _solid(RED))
  _save(tr / 'cat' / 'nested' / 'deep.png', _solid(RED))
  (tr / '.git').mkdir()
  _save(r / 'test' / 'cat' / 't1.png', _solid(RED))
  _save(r / 'test' / 'dog' / 't2.png', _solid(BLUE))
  _save(r / 'test' / 'bird' / 't3.png', _solid(BLUE))
  return r


def load(root, split='train', **kw):
  kw.setdefault('cache_dir', root.parent / 'cache')
  return F.load_image_folder(root, split, **kw)


def test_truncated_images_not_tolerated_globally():
  assert not ImageFile.LOAD_TRUNCATED_IMAGES


def test_listing_order_labels_and_strays_ignored(root):
  files, labels, names = F.list_image_folder(root, 'train')
  assert names == ('bird', 'cat', 'dog')
  assert [f.name for f in files] == ['b1.bmp', 'b2.PNG', 'c1.png', 'c2.jpg', 'c3.png',
                                     'd1.png', 'd2.gif']
  assert labels.dtype == np.int32
  np.testing.assert_array_equal(labels, [0, 0, 1, 1, 1, 2, 2])


def test_explicit_class_names_fix_order(root):
  files, labels, names = F.list_image_folder(root, 'train', class_names=['dog', 'cat', 'bird'])
  assert names == ('dog', 'cat', 'bird')
  assert {f.name: int(l) for f, l in zip(files, labels)} == {
      'd1.png': 0, 'd2.gif': 0, 'c1.png': 1, 'c2.jpg': 1, 'c3.png': 1, 'b1.bmp': 2, 'b2.PNG': 2}
  ds = load(root, class_names=('dog', 'cat', 'bird'))
  assert ds.class_names == ('dog', 'cat', 'bird')
  np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 1, 2, 2])
  np.testing.assert_array_equal(ds.images[6], np.broadcast_to(BLUE, (8, 8, 3)))  # a bird
  # The class order is part of the cache key.
  assert load(root).class_names == ('bird', 'cat', 'dog')
  with pytest.raises(ValueError,
                     match=r"missing folders \['horse'\].*not in class_names \['bird'\]"):
    F.list_image_folder(root, 'train', class_names=['dog', 'cat', 'horse'])


def test_rgb_conversion_of_every_mode(root):
  ds = load(root)
  assert ds.images.shape == (7, 8, 8, 3) and ds.images.dtype == np.uint8
  assert ds.labels.dtype == np.int32 and ds.class_names == ('bird', 'cat', 'dog')
  im = ds.images.astype(int)
  np.testing.assert_array_equal(im[0], np.broadcast_to(BLUE, (8, 8, 3)))        # BMP
  np.testing.assert_array_equal(im[1], np.broadcast_to(BLUE, (8, 8, 3)))        # .PNG
  np.testing.assert_array_equal(im[2], np.broadcast_to(RED, (8, 8, 3)))         # PNG
  assert np.abs(im[3] - np.array(RED)).max() <= 3                               # JPEG is lossy
  np.testing.assert_array_equal(im[4], np.full((8, 8, 3), 100))                 # 'L' -> RGB
  np.testing.assert_array_equal(im[5][:, :4], np.broadcast_to(RED, (8, 4, 3)))  # RGBA opaque
  np.testing.assert_array_equal(im[5][:, 4:], 0)          # transparent -> black, not green
  np.testing.assert_array_equal(im[6], np.broadcast_to(BLUE, (8, 8, 3)))        # palette


def test_grayscale_channels(root):
  ds = load(root, channels=1)
  assert ds.images.shape == (7, 8, 8, 1)
  g = ds.images[..., 0].astype(int)
  assert (g[2] == 76).all()       # ITU-R 601 luma of red: 0.299 * 255
  assert (g[4] == 100).all()      # 'L' stays as is
  assert (g[5][:, 4:] == 0).all()


def test_resize(root):
  ds = load(root, image_size=4)
  assert ds.images.shape == (7, 4, 4, 3)
  np.testing.assert_array_equal(ds.images[2], np.broadcast_to(RED, (4, 4, 3)))
  ds = load(root, image_size=(4, 6), channels=1)
  assert ds.images.shape == (7, 4, 6, 1)


def test_mixed_native_sizes_need_image_size(root):
  _save(root / 'train' / 'dog' / 'd3_big.png', _solid(RED, size=(10, 8)))
  with pytest.raises(ValueError, match=r'd3_big\.png is 10x8 .*image_size'):
    load(root)
  assert load(root, image_size=8).images.shape == (8, 8, 8, 3)


def test_cache_hit_then_invalidated_by_a_new_file(root, monkeypatch):
  cache = root.parent / 'cache'
  first = load(root, image_size=6)
  calls = []

  def no_decode(*args, **kw):
    calls.append(args)
    raise AssertionError('decoded although the cache should have been used')

  monkeypatch.setattr(F, 'decode_image', no_decode)
  second = load(root, image_size=6)
  assert not calls
  np.testing.assert_array_equal(first.images, second.images)
  np.testing.assert_array_equal(first.labels, second.labels)
  assert second.class_names == first.class_names
  # Another image_size or channel count is another cache entry.
  with pytest.raises(AssertionError, match='decoded'):
    load(root, image_size=5)
  monkeypatch.undo()

  _save(root / 'train' / 'bird' / 'b3.png', _solid(BLUE))
  third = load(root, image_size=6)
  assert len(third) == 8 and third.labels.tolist().count(0) == 3
  entries = sorted(p.name for p in cache.iterdir())
  # The stale cache of the old file list is gone and no temporary file is left.
  assert len(entries) == 1 and entries[0].endswith('.npz'), entries


def test_cache_invalidated_by_a_modified_file(root):
  load(root)
  path = root / 'train' / 'cat' / 'c1.png'
  _save(path, _solid(BLUE))
  os.utime(path, ns=(1, 1))  # mtime differs even on coarse-clock filesystems
  np.testing.assert_array_equal(load(root).images[2], np.broadcast_to(BLUE, (8, 8, 3)))


def test_cache_dir_from_environment(root, tmp_path, monkeypatch):
  monkeypatch.setenv('CNN_JAX_CACHE', str(tmp_path / 'envcache'))
  assert F.default_cache_dir() == tmp_path / 'envcache' / 'image_folder'
  F.load_image_folder(root, 'test')
  assert len(list((tmp_path / 'envcache' / 'image_folder').glob('ds-test-*.npz'))) == 1
  monkeypatch.delenv('CNN_JAX_CACHE')
  assert F.default_cache_dir() == F.Path.home() / '.cache' / 'cnn_jax' / 'image_folder'


def test_cache_disabled(root):
  load(root, cache=False)
  assert not (root.parent / 'cache').exists()


def _add_corrupt(root):
  jpeg = root / 'train' / 'cat' / 'c2.jpg'
  data = jpeg.read_bytes()
  (root / 'train' / 'cat' / 'c4_truncated.jpg').write_bytes(data[:len(data) // 2])
  (root / 'train' / 'dog' / 'd0_garbage.png').write_bytes(b'this is not a png')


def test_corrupt_file_error_names_the_file(root):
  _add_corrupt(root)
  with pytest.raises(ValueError, match=r'c4_truncated\.jpg.*skip_corrupt=True'):
    load(root)


def test_skip_corrupt_warns_once_with_count(root):
  _add_corrupt(root)
  with pytest.warns(UserWarning, match=r'skipped 2 corrupt image\(s\).*c4_truncated\.jpg.*'
                    r'd0_garbage\.png') as record:
    ds = load(root, skip_corrupt=True)
  assert len([w for w in record if 'corrupt' in str(w.message)]) == 1
  assert len(ds) == 7
  np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1, 1, 2, 2])
  # A cache written while skipping does not hide the corrupt files later.
  with pytest.raises(ValueError, match=r'c4_truncated\.jpg'):
    load(root)
  with pytest.warns(UserWarning, match='skipped 2'):
    assert len(load(root, skip_corrupt=True)) == 7


def test_empty_class_folder(root):
  (root / 'train' / 'horse').mkdir()
  (root / 'train' / 'horse' / 'readme.txt').write_text('no images here')
  with pytest.raises(ValueError, match=r'class folder .*horse has no images'):
    F.list_image_folder(root, 'train')
  _, labels, names = F.list_image_folder(root, 'train', allow_empty_classes=True)
  assert names == ('bird', 'cat', 'dog', 'horse') and labels.max() == 2


def test_missing_split_lists_available_splits(root):
  with pytest.raises(FileNotFoundError, match=r'val does not exist \(splits found in .*: '
                     r'test, train\)'):
    F.list_image_folder(root, 'val')
  with pytest.raises(FileNotFoundError, match='nowhere does not exist'):
    F.load_image_folder(root.parent / 'nowhere', 'train')


def test_no_class_folders(tmp_path):
  (tmp_path / 'r' / 'train').mkdir(parents=True)
  _save(tmp_path / 'r' / 'train' / 'loose.png', _solid(RED))
  with pytest.raises(ValueError, match='has no class folders'):
    F.list_image_folder(tmp_path / 'r', 'train')


def test_bad_arguments(root):
  with pytest.raises(ValueError, match='channels must be 1'):
    load(root, channels=4)
  with pytest.raises(ValueError, match='image_size must be'):
    load(root, image_size=(0, 4))


def test_process_pool_matches_in_process_decoding(tmp_path):
  rng = np.random.default_rng(0)
  for i in range(130):
    _save(tmp_path / 'r' / 'train' / f'c{i % 2}' / f'{i:03d}.png',
          Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)))
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # the pool must not have fallen back to this process
    pooled = F.load_image_folder(tmp_path / 'r', 'train', cache=False, num_workers=2)
  serial = F.load_image_folder(tmp_path / 'r', 'train', cache=False, num_workers=0)
  np.testing.assert_array_equal(pooled.images, serial.images)
  np.testing.assert_array_equal(pooled.labels, serial.labels)


def test_convert_array():
  gray = np.arange(16, dtype=np.uint8).reshape(4, 4, 1)
  rgb = F.convert_array(gray, channels=3)
  assert rgb.shape == (4, 4, 3) and (rgb == gray).all()
  assert F.convert_array(gray).shape == (4, 4, 1)
  assert F.convert_array(gray, image_size=2).shape == (2, 2, 1)
  red = np.broadcast_to(np.array(RED, np.uint8), (4, 4, 3))
  assert (F.convert_array(red, channels=1) == 76).all()
