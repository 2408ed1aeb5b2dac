"""On-device batches: deterministic order from (seed, epoch), exact padded eval."""

import numpy as np
import pytest

from cnn_jax.data import pipeline
from cnn_jax.data.dataset import ArrayDataset


def _dataset(n=50, size=4):
  images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((1, size, size, 3),
                                                                       np.uint8)
  return ArrayDataset(images, np.arange(n, dtype=np.int32) % 7, tuple('abcdefg'))


def test_batches_cover_each_epoch_once_and_are_random_access():
  data = pipeline.InMemoryTrainData(_dataset(50), batch_size=8, seed=3)
  assert data.steps_per_epoch == 6
  seen = np.concatenate([np.asarray(data.batch(s)['image'][:, 0, 0, 0]) for s in range(6)])
  assert len(set(seen.tolist())) == 48  # 2 dropped per epoch, none repeated
  epoch1 = [np.asarray(data.batch(s)['image'][:, 0, 0, 0]) for s in range(6, 12)]
  assert not np.array_equal(epoch1[0], seen[:8])  # a fresh permutation each epoch
  # Random access (as after a resume) gives the very same batch.
  fresh = pipeline.InMemoryTrainData(_dataset(50), batch_size=8, seed=3)
  np.testing.assert_array_equal(fresh.batch(9)['image'], data.batch(9)['image'])
  np.testing.assert_array_equal(fresh.batch(9)['label'], data.batch(9)['label'])


def test_seed_changes_order():
  a = pipeline.epoch_permutation(0, 0, 100)
  assert sorted(a.tolist()) == list(range(100))
  assert not np.array_equal(a, pipeline.epoch_permutation(1, 0, 100))
  np.testing.assert_array_equal(a, pipeline.epoch_permutation(0, 0, 100))


def test_eval_batches_pad_and_mask_the_last_batch():
  ds = _dataset(23)
  batches = list(pipeline.eval_batches(ds, 10))
  assert [b['image'].shape[0] for b in batches] == [10, 10, 10]
  mask = np.concatenate([np.asarray(b['mask']) for b in batches])
  assert mask.sum() == 23 and not mask[23:].any()
  ids = np.concatenate([np.asarray(b['image'][:, 0, 0, 0]) for b in batches])[mask]
  np.testing.assert_array_equal(ids, np.arange(23))


def test_too_small_training_set():
  with pytest.raises(ValueError, match='fewer than one batch of 64'):
    pipeline.InMemoryTrainData(_dataset(10), batch_size=64, seed=0)


def test_holdout_split_is_fixed_disjoint_and_complete():
  from cnn_jax.data.dataset import holdout_split
  ds = _dataset(50)
  rest, held = holdout_split(ds, 5)
  ids = lambda d: d.images[:, 0, 0, 0].tolist()
  assert len(rest) == 45 and len(held) == 5
  assert sorted(ids(rest) + ids(held)) == list(range(50))
  assert ids(holdout_split(ds, 5)[1]) == ids(held)  # the same split every time
  with pytest.raises(ValueError, match='data.holdout=50 must be between 1 and 49'):
    holdout_split(ds, 50)
