"""grain streams over image folders: determinism, epochs, resumption and eval padding."""

import itertools

import numpy as np
import pytest
from PIL import Image

grain = pytest.importorskip('grain')

from cnn_jax.data import stream as S  # noqa: E402

N = 23  # not a multiple of any batch size used below


@pytest.fixture(scope='module')
def source(tmp_path_factory):
  """N 6x6 images over 3 classes; image i is filled with value i (its id)."""
  root = tmp_path_factory.mktemp('stream')
  for i in range(N):
    path = root / 'train' / f'class{i % 3}' / f'{i:02d}.png'
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', (6 + i % 2, 6), (i, i, i)).save(path)  # mixed sizes: resized to 4x4
  return S.ImageFolderSource(root, 'train', image_size=4, channels=3)


def ids(batches):
  """Example ids (pixel values) of each batch."""
  return [b['image'][:, 0, 0, 0].astype(int).tolist() for b in batches]


def test_source_items(source):
  assert len(source) == N and source.class_names == ('class0', 'class1', 'class2')
  item = source[4]
  assert item['image'].shape == (4, 4, 3) and item['image'].dtype == np.uint8
  assert item['label'].dtype == np.int32
  assert (item['image'] == int(item['image'][0, 0, 0])).all()
  assert int(item['label']) == int(item['image'][0, 0, 0]) % 3


def test_same_seed_same_order_and_every_example_once(source):
  a = list(S.make_stream(source, batch_size=5, seed=1, num_threads=2))
  b = list(S.make_stream(source, batch_size=5, seed=1, num_threads=0))
  assert len(a) == N // 5
  assert ids(a) == ids(b)
  for batch in a:
    assert batch['image'].shape == (5, 4, 4, 3) and batch['image'].dtype == np.uint8
    assert batch['label'].dtype == np.int32 and 'mask' not in batch
    np.testing.assert_array_equal(batch['label'], batch['image'][:, 0, 0, 0] % 3)
  # One epoch without dropping: a permutation of all ids.
  full = list(S.make_stream(source, batch_size=N, seed=1, drop_remainder=False))
  assert sorted(ids(full)[0]) == list(range(N))


def test_epoch_and_seed_change_the_order(source):
  def order(**kw):
    batches = S.make_stream(source, batch_size=N, drop_remainder=False, num_threads=2, **kw)
    return ids(batches)[0]
  base = order(seed=0, epoch=0)
  assert order(seed=0, epoch=1) != base
  assert order(seed=1, epoch=0) != base
  assert sorted(order(seed=0, epoch=1)) == sorted(base) == list(range(N))
  assert order(seed=0, epoch=0, shuffle=False) == [int(f.stem) for f in source.files]


def test_resume_from_saved_state_matches_uninterrupted(source):
  def make():
    return S.make_stream(source, batch_size=3, seed=7, epoch=2, num_threads=4, prefetch=2)
  uninterrupted = ids(make())
  it = make()
  head = ids(itertools.islice(it, 3))
  state = it.get_state()
  rest_same_iterator = ids(it)
  resumed = make()
  resumed.set_state(state)
  rest = ids(resumed)
  assert head + rest == uninterrupted
  assert rest == rest_same_iterator and len(rest) == N // 3 - 3


def test_eval_stream_pads_last_batch_with_mask(source):
  batches = list(S.make_stream(source, batch_size=5, seed=0, shuffle=False,
                               drop_remainder=False))
  assert len(batches) == 5  # ceil(23 / 5)
  for b in batches:
    assert b['image'].shape == (5, 4, 4, 3) and b['label'].shape == (5,)
    assert b['mask'].dtype == np.bool_ and b['mask'].shape == (5,)
  last = batches[-1]
  np.testing.assert_array_equal(last['mask'], [True, True, True, False, False])
  assert (last['image'][3:] == 0).all() and (last['label'][3:] == 0).all()
  real = np.concatenate([b['image'][b['mask']][:, 0, 0, 0] for b in batches])
  np.testing.assert_array_equal(real, [int(f.stem) for f in source.files])
  assert sum(int(b['mask'].sum()) for b in batches) == N


def test_native_size_mismatch_is_reported(source):
  raw = S.ImageFolderSource(source.files[0].parents[2], 'train', image_size=None)
  assert raw[0]['image'].shape == (6, 6, 3)  # 00.png
  with pytest.raises(ValueError, match=r'03\.png has shape \(6, 7, 3\) but .*00\.png.*image_size'):
    raw[1]


def test_corrupt_file_raises_or_is_skipped(tmp_path):
  for i in range(4):
    path = tmp_path / 'train' / 'a' / f'{i}.png'
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('L', (4, 4), i).save(path)
  (tmp_path / 'train' / 'a' / '2.png').write_bytes(b'garbage')
  src = S.ImageFolderSource(tmp_path, 'train', image_size=4, channels=1)
  with pytest.raises(ValueError, match=r'2\.png.*skip_corrupt=True'):
    list(S.make_stream(src, batch_size=2, seed=0, shuffle=False, num_threads=0))
  src = S.ImageFolderSource(tmp_path, 'train', image_size=4, channels=1, skip_corrupt=True)
  with pytest.warns(UserWarning, match=r'skipping corrupt image .*2\.png'):
    batches = list(S.make_stream(src, batch_size=2, seed=0, shuffle=False,
                                 drop_remainder=False, num_threads=0))
  assert ids(batches) == [[0, 1], [3, 0]]
  np.testing.assert_array_equal(batches[1]['mask'], [True, False])


def test_bad_arguments(source):
  with pytest.raises(ValueError, match='fewer than batch_size=64'):
    S.make_stream(source, batch_size=64, seed=0)
  with pytest.raises(ValueError, match='batch_size must be positive'):
    S.make_stream(source, batch_size=0, seed=0)


def test_tfds_source_uses_the_same_format():
  tfds = pytest.importorskip('tensorflow_datasets')
  with tfds.testing.mock_data(num_examples=7):
    src = S.TfdsSource('mnist', 'train', channels=3, image_size=8)
    assert len(src) == 7 and src.num_classes == 10
    item = src[3]
    assert item['image'].shape == (8, 8, 3) and item['image'].dtype == np.uint8
    assert item['label'].dtype == np.int32
    batches = list(S.make_stream(src, batch_size=4, seed=0, drop_remainder=False,
                                 num_threads=2))
  assert [b['image'].shape for b in batches] == [(4, 8, 8, 3)] * 2
  np.testing.assert_array_equal(batches[1]['mask'], [True, True, True, False])


def test_streamed_training_epochs_stay_full_when_corrupt_files_are_skipped(tmp_path):
  """18 files, 2 corrupt, batch 6: a pass yields 2 batches, the epoch needs 3."""
  import warnings

  from cnn_jax.data.pipeline import StreamTrainData
  for i in range(18):
    path = tmp_path / 'train' / f'c{i % 2}' / f'{i:02d}.png'
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('L', (4, 4), i).save(path)
  for i in (3, 11):
    (tmp_path / 'train' / f'c{i % 2}' / f'{i:02d}.png').write_bytes(b'not a png')
  src = S.ImageFolderSource(tmp_path, 'train', image_size=4, channels=1, skip_corrupt=True)
  data = StreamTrainData(src, batch_size=6, seed=0, num_threads=0)
  assert data.steps_per_epoch == 3
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    batches = [np.asarray(data.batch(s)['image'][:, 0, 0, 0]) for s in range(6)]
  assert all(b.shape == (6,) for b in batches)
  assert not {3, 11} & set(np.concatenate(batches).tolist())
  # One warning per corrupt file, with the running count, however many passes.
  messages = [str(w.message) for w in caught if 'corrupt' in str(w.message)]
  assert len(messages) == 2 and '2 corrupt of 18 files' in messages[-1]
  # Resuming mid-epoch (the checkpointed iterator state) continues exactly,
  # also inside a top-up pass.
  for stop in (1, 2, 4, 5):
    fresh = StreamTrainData(src, batch_size=6, seed=0, num_threads=0)
    head = StreamTrainData(src, batch_size=6, seed=0, num_threads=0)
    for s in range(stop):
      head.batch(s)
    fresh.restore(head.state())
    rest = [np.asarray(fresh.batch(s)['image'][:, 0, 0, 0]) for s in range(stop, 6)]
    for got, want in zip(rest, batches[stop:]):
      np.testing.assert_array_equal(got, want)


def test_all_corrupt_training_data_is_a_clear_error(tmp_path):
  from cnn_jax.data.pipeline import StreamTrainData
  for i in range(4):
    path = tmp_path / 'train' / 'a' / f'{i}.png'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'garbage')
  src = S.ImageFolderSource(tmp_path, 'train', image_size=4, channels=1, skip_corrupt=True)
  data = StreamTrainData(src, batch_size=2, seed=0, num_threads=0)
  with pytest.warns(UserWarning), pytest.raises(ValueError, match='every file was skipped'):
    data.batch(0)


def test_process_shards_decode_only_their_rows_and_rebuild_the_global_batch(source):
  from cnn_jax.data.pipeline import StreamTrainData
  whole = StreamTrainData(source, batch_size=6, seed=1, num_threads=0)
  shards = [StreamTrainData(source, batch_size=6, seed=1, num_threads=0, process_index=i,
                            process_count=3) for i in range(3)]
  assert not whole.process_local and all(s.process_local for s in shards)
  for step in range(5):  # across the epoch boundary (3 steps of 6 out of 23)
    want = np.asarray(whole.batch(step)['image'][:, 0, 0, 0])
    got = np.concatenate([np.asarray(s.batch(step)['image'][:, 0, 0, 0]) for s in shards])
    np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError, match=r'count dividing batch_size=6'):
    list(S.make_stream(source, batch_size=6, seed=0, shard=(0, 4)))


def test_a_shard_reads_only_its_own_files(source):
  read = []

  class Counting:
    def __len__(self):
      return len(source)

    def __getitem__(self, i):
      read.append(i)
      return source[i]

  next(iter(S.make_stream(Counting(), batch_size=6, seed=0, num_threads=0, shard=(1, 3))))
  assert len(read) == 2  # one shard of one batch: 6 / 3 rows decoded, not 6
