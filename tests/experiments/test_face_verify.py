"""Face verification: identities, P x K batches, pairs, a short run well above chance."""

import numpy as np
import pytest
from PIL import Image

from cnn_jax.data.synthetic import render_identities
from cnn_jax.train.config import load_config
from experiments import face_verify as fv


def _cfg(**overrides):
  c = load_config('face_verify', 'steps=80')
  c.update(dict(train_identities=16, val_identities=6, test_identities=6, per_identity=12,
                siamese_steps=100, log_every=20, dim=32))
  c.backbone_kwargs.widths = (8, 16, 32)
  c.update(overrides)
  return c


def test_identities_are_deterministic_and_disjoint():
  a = render_identities(range(0, 4), 3, image_size=16, seed=1)
  b = render_identities([2, 3, 9], 3, image_size=16, seed=1)
  np.testing.assert_array_equal(a.images[6:], b.images[:6])  # ids 2, 3 again
  assert a.class_names == ('id0', 'id1', 'id2', 'id3') and b.labels.tolist() == [0] * 3 + [
      1] * 3 + [2] * 3
  assert not np.array_equal(a.images[0], a.images[1])  # nuisance differs per image


def test_pk_batch_and_balanced_pairs():
  labels = np.repeat(np.arange(6), [5, 5, 5, 5, 2, 5])
  idx = fv.pk_batch(labels, 3, 4, np.random.default_rng(0))
  picked = labels[idx].reshape(3, 4)
  assert (picked == picked[:, :1]).all() and len(set(picked[:, 0])) == 3
  i, j, same = fv.balanced_pairs(labels, np.random.default_rng(0))
  assert same.sum() == (~same).sum() == 4 * 10 + 1 + 10  # every positive pair, as many negatives
  assert np.array_equal(labels[i] == labels[j], same) and (i < j).all()
  i, j, same = fv.balanced_pairs(labels, np.random.default_rng(0), max_pairs=10)
  assert len(same) == 10 and same.sum() == 5


def test_one_shot_nearest_gallery():
  emb = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.2, 0.8], [0.8, 0.2]], np.float32)
  labels = np.array([0, 1, 0, 1, 1])  # probe 4 is closer to identity 0's gallery image
  out = fv.one_shot(emb, labels)
  assert out == {'accuracy': pytest.approx(2 / 3), 'identities': 2, 'probes': 3, 'chance': 0.5}


@pytest.fixture(scope='module')
def short_run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('faces')
  return workdir, fv.run(_cfg(), workdir, quiet=True)


def test_short_run_verifies_unseen_identities_well_above_chance(short_run):
  workdir, r = short_run
  v = r['verification']
  assert v['test_accuracy'] > 0.75 and v['test_auc'] > 0.85  # chance: 0.5 and 0.5
  assert r['one_shot']['accuracy'] > 3 * r['one_shot']['chance']
  for kind in ('abs', 'chi2'):
    assert r['siamese'][kind]['test_accuracy'] > 0.7
  assert r['unit_norm_max_error'] < 1e-5
  for name in ('results.md', 'roc.png', 'embedding.npz', 'metrics.jsonl'):
    assert (workdir / name).stat().st_size > 100
  assert 'one-shot' in (workdir / 'results.md').read_text()


def test_identity_folder_is_split_by_person(tmp_path):
  rng = np.random.default_rng(0)
  for p in range(8):
    folder = tmp_path / 'people' / f'person{p}'
    folder.mkdir(parents=True)
    for k in range(3):
      Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
          folder / f'{k}.png')
  cfg = _cfg(data='folder', root=str(tmp_path / 'people'), image_size=16, val_identities=2,
             test_identities=2)
  data = fv.load_identities(cfg)
  names = {s: set(ds.class_names) for s, ds in data.items()}
  assert [len(names[s]) for s in ('train', 'val', 'test')] == [4, 2, 2]
  assert not (names['train'] & names['val']) and not (names['val'] & names['test'])
  assert data['test'].images.shape == (6, 16, 16, 3)
  with pytest.raises(ValueError, match='has 8 identities; need at least 12'):
    fv.load_identities(_cfg(data='folder', root=str(tmp_path / 'people'), val_identities=5,
                            test_identities=5))
