"""Pack files: bit-identical to the folder they came from, usable as data.root, clear errors."""

import warnings

import ml_collections
import numpy as np
import pytest
from PIL import Image

from cnn_jax.data import build
from cnn_jax.data import image_folder as F
from cnn_jax.data import packed as P
from cnn_jax.data.dataset import ArrayDataset


def _noise(rng, n, size=(8, 8)):
  return rng.integers(0, 256, (n, *size, 3), dtype=np.uint8)


@pytest.fixture
def root(tmp_path):
  """train: 3 classes of noisy JPEGs (one 10x6, one grayscale), a PNG, strays; test: 2 classes."""
  rng = np.random.default_rng(0)
  r = tmp_path / 'ds'
  F.write_image_folder(ArrayDataset(_noise(rng, 9), np.arange(9, dtype=np.int32) % 3,
                                    ('bird', 'cat', 'dog')), r, 'train')
  Image.fromarray(_noise(rng, 1, (10, 6))[0]).save(r / 'train' / 'cat' / 'wide.jpg')
  Image.fromarray(_noise(rng, 1)[0, ..., 0]).save(r / 'train' / 'dog' / 'gray.jpg')
  Image.fromarray(_noise(rng, 1)[0]).save(r / 'train' / 'bird' / 'lossless.png')
  (r / 'train' / 'cat' / 'notes.txt').write_text('not an image')
  (r / 'train' / '.DS_Store').write_bytes(b'\0junk')
  F.write_image_folder(ArrayDataset(_noise(rng, 4), np.array([0, 1, 0, 1], np.int32),
                                    ('cat', 'dog')), r, 'test', quality=50)
  return r


@pytest.fixture
def pack(root, tmp_path):
  out = tmp_path / 'ds.pack'
  assert P.pack_image_folder(root, out) == {'test': 4, 'train': 12}
  return out


def _assert_same(a, b):
  np.testing.assert_array_equal(a.images, b.images)
  np.testing.assert_array_equal(a.labels, b.labels)
  assert a.class_names == b.class_names and a.labels.dtype == b.labels.dtype == np.int32


@pytest.mark.parametrize('kw', [dict(image_size=8), dict(image_size=(4, 6), channels=1)])
def test_pack_decodes_to_the_folder_arrays(root, pack, kw):
  for split in ('train', 'test'):
    _assert_same(P.load_packed(pack, split, **kw),
                 F.load_image_folder(root, split, cache=False, **kw))
  assert P.pack_info(pack) == {
      'test': {'images': 4, 'classes': 2, 'bytes': P.pack_info(pack)['test']['bytes']},
      'train': {'images': 12, 'classes': 3, 'bytes': P.pack_info(pack)['train']['bytes']}}
  assert P.pack_info(pack)['train']['bytes'] == sum(
      f.stat().st_size for f in root.glob('train/*/*') if f.suffix in ('.jpg', '.png'))


def test_pool_decoding_matches_the_folder(tmp_path):
  rng = np.random.default_rng(1)
  root = F.write_image_folder(ArrayDataset(_noise(rng, 130), np.arange(130, dtype=np.int32) % 2,
                                           ('a', 'b')), tmp_path / 'r', 'train')
  P.pack_image_folder(root, tmp_path / 'r.pack')
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # the pool must not have fallen back to this process
    pooled = P.load_packed(tmp_path / 'r.pack', 'train', num_workers=2)
  _assert_same(pooled, F.load_image_folder(root, 'train', cache=False, num_workers=0))


def test_a_pack_is_a_data_root_of_image_folder(root, pack):
  data = ml_collections.ConfigDict({'name': 'image_folder', 'root': str(pack), 'image_size': 8,
                                    'channels': 3, 'skip_corrupt': False, 'num_workers': 0,
                                    'cache_dir': '', 'streaming': True})
  _assert_same(build.load_split(data, 'test'), F.load_image_folder(root, 'test', image_size=8,
                                                                   cache=False))
  with pytest.raises(ValueError, match='streaming reads image folders, not the pack file'):
    build.open_stream_source(data, 'test')
  # The one reader of whole image sets (the speedrun's too) takes either.
  for source in (pack, root):
    _assert_same(P.load_images(source, 'test', image_size=8),
                 F.load_image_folder(root, 'test', image_size=8, cache=False))


def test_corrupt_image_named_inside_the_pack(root, tmp_path):
  (root / 'train' / 'cat' / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 not really')
  P.pack_image_folder(root, tmp_path / 'c.pack')
  with pytest.raises(F.CorruptImageError, match=r'c\.pack:train/cat/broken\.jpg.*skip_corrupt'):
    P.load_packed(tmp_path / 'c.pack', 'train', image_size=8)
  with pytest.warns(UserWarning, match='skipped 1 corrupt image'):
    ds = P.load_packed(tmp_path / 'c.pack', 'train', image_size=8, skip_corrupt=True)
  assert len(ds.labels) == 12


def _damaged(pack, tmp_path, name, edit):
  out = tmp_path / name
  out.write_bytes(edit(bytearray(pack.read_bytes())))
  return out


def test_bad_pack_files_are_one_line_errors(pack, tmp_path):
  half = _damaged(pack, tmp_path, 'half.pack', lambda b: b[:len(b) // 2])

  def flip(b):  # a byte inside the first image of train.blob: the member's CRC no longer holds
    b[b.index(b'\xff\xd8\xff', b.index(b'train.blob.npy')) + 40] ^= 0xFF
    return b

  flipped = _damaged(pack, tmp_path, 'flipped.pack', flip)
  other = tmp_path / 'v2.pack'
  with np.load(pack) as z, open(other, 'wb') as f:
    np.savez(f, **{**{k: z[k] for k in z.files}, 'version': np.asarray(2)})
  text = tmp_path / 'notes.pack'
  text.write_text('hello')
  cases = [(half, 'not an image pack'), (flipped, 'damaged image pack .*CRC'),
           (other, 'version 2, but this code reads version 1'), (text, 'not an image pack')]
  for path, message in cases:
    with pytest.raises(P.PackError, match=message) as e:
      P.load_packed(path, 'train')
    assert '\n' not in str(e.value) and str(path) in str(e.value)
    assert f'python -m cnn_jax.data.packed pack ROOT {path}' in str(e.value)
  with pytest.raises(P.PackError, match="split 'val' is not in pack .*splits: test, train"):
    P.load_packed(pack, 'val')
  with pytest.raises(FileNotFoundError, match='does not exist; create it with'):
    P.load_packed(tmp_path / 'nowhere.pack', 'train')
  assert P.is_pack(tmp_path / 'nowhere.pack') and P.is_pack(text) and not P.is_pack(tmp_path)


def test_cli_packs_and_reports(root, tmp_path, capsys):
  out = tmp_path / 'cli.pack'
  assert P.main(['pack', str(root), str(out), '--splits', 'test']) == 0
  assert capsys.readouterr().out.startswith(f'{out}: 0.0 MiB; test 4 images (2 classes)')
  assert P.main(['info', str(out)]) == 0
  assert 'test 4 images' in capsys.readouterr().out
  assert P.main(['info', str(tmp_path / 'missing.pack')]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: pack file') and err.count('\n') == 1
  assert P.main(['pack', str(tmp_path / 'nofolder'), str(out)]) == 2
