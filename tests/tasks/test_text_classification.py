"""Task text_classification: the shared tiny run, data and errors, GloVe + freeze, 8 devices."""

import warnings

import jax
import numpy as np
import pytest

from cnn_jax.data.dataset import ArrayDataset, holdout_indices
from cnn_jax.tasks import get_task
from cnn_jax.tasks.text_classification import TextClassification, decode_batch
from cnn_jax.train import loop
from cnn_jax.train.config import load_config
from cnn_jax.train.logging import read_metrics
from cnn_jax.train.restore import load_run
from tests.tasks.configs import tiny


def test_shared_run_reports_negation_accuracy_and_reloads(task_runs):
  workdir, result = task_runs['text_cnn']
  m = result['eval']
  assert set(m) == {'accuracy', 'loss', 'accuracy_negated', 'accuracy_plain', 'count'}
  assert m['count'] == 64 and 0 <= m['accuracy_negated'] <= 1
  run = load_run(workdir, 'latest')
  assert run.eval.input_field == 'tokens' and run.eval.images.shape == (64, 24)
  metrics, _ = run.evaluate()
  assert metrics['accuracy'] == pytest.approx(m['accuracy'])
  logits = run.predict(run.eval.images)  # token ids go to the model unchanged
  assert np.mean(logits.argmax(-1) == run.eval.labels) == pytest.approx(m['accuracy'])
  assert decode_batch(run.task.vocab, run.eval.images[:1])[0].split()[0].isalpha()


def test_data_vocabulary_from_train_and_truncation_reported_once():
  c = tiny('text_cnn')
  c.task.max_len = 8
  task = get_task(c)
  with pytest.warns(UserWarning) as caught:
    train, ev = task.load_data()
  notes = [str(w.message) for w in caught if 'truncated' in str(w.message)]
  assert len(notes) == 2  # one per split
  assert notes[0].startswith(f'{int(np.sum(_lengths(c, True) > 8))} of 256 reviews in '
                             'synthetic_sentiment (train')
  assert train.images.shape == (256, 8) and train.images.dtype == np.int32
  assert ev.extras['negated'].shape == (64,) and train.class_names == ('neg', 'pos')
  assert task.vocab.words[:2] == ('<pad>', '<unk>')
  assert task.model_kwargs(2) == {'num_classes': 2, 'vocab_size': len(task.vocab)}


def _lengths(c, train):
  from cnn_jax.data.text import synthetic_sentiment
  s = synthetic_sentiment(c.data.num_train if train else c.data.num_eval, seed=c.seed,
                          train=train)
  return np.array([len(d) for d in s.docs])


def test_holdout_is_kept_out_of_the_vocabulary(tmp_path):
  root = tmp_path / 'reviews'
  bodies = {('neg', 'a'): 'awful alpha', ('neg', 'b'): 'awful beta',
            ('pos', 'c'): 'lovely gamma', ('pos', 'd'): 'lovely delta'}  # read in this order
  for (cls, name), body in bodies.items():
    for split in ('train', 'test'):
      (root / split / cls).mkdir(parents=True, exist_ok=True)
      (root / split / cls / f'{name}.txt').write_text(body if split == 'train' else 'lovely')
  c = tiny('text_cnn')
  c.data.name, c.data.root = 'text_folder', str(root)
  task = TextClassification(c)
  task.load_data()
  assert set(task.vocab.words[2:]) == {'awful', 'lovely', 'alpha', 'beta', 'gamma', 'delta'}
  c.data.holdout = 1
  task = TextClassification(c)
  train, ev = task.load_data()
  assert len(train) == 3 and len(ev) == 1
  _, (held,) = holdout_indices(4, 1)
  unique = list(bodies.values())[held].split()[1]
  assert unique not in task.vocab.words and len(task.vocab) == 2 + 5
  assert decode_batch(task.vocab, ev.images)[0].split()[1] == '<unk>'


def test_errors_for_augment_and_mismatched_data():
  c = tiny('text_cnn')
  c.augment.flip = True
  with pytest.raises(ValueError, match="task 'text_classification' cannot apply augment.flip; "
                     'it supports no augmentation.'):
    get_task(c)
  c = tiny('text_cnn')
  c.data.name = 'synthetic'
  with pytest.raises(ValueError, match="data.name='synthetic' is not text; text_classification "
                     'reads synthetic_sentiment, text_folder or tfds'):
    get_task(c).load_data()
  image = load_config('synthetic_cnn')
  image.data.name = 'synthetic_sentiment'
  with pytest.raises(ValueError, match="data.name='synthetic_sentiment' is text: train it with "
                     'task text_classification'):
    get_task(image).load_data()
  with pytest.raises(ValueError, match=r'tokens must be \(N, L\) int32'):
    ArrayDataset(np.zeros((2, 3), np.int64), np.zeros(2, np.int32), ('a',), input_field='tokens')


def test_tfds_imdb_reviews_through_the_task():
  tfds = pytest.importorskip('tensorflow_datasets')
  c = tiny('text_cnn')
  c.data.name, c.data.tfds_name = 'tfds', 'imdb_reviews'
  task = get_task(c)
  with tfds.testing.mock_data(num_examples=5):
    train, ev = task.load_data()
  assert train.images.shape == (5, 24) and train.class_names == ('neg', 'pos')
  assert 'negated' not in train.extras


def _glove(tmp_path, vocab, dim):
  path = tmp_path / 'vectors.txt'
  rng = np.random.default_rng(0)
  rows = {w: rng.normal(size=dim).round(3) for w in vocab.words[2:12]}  # ten words
  path.write_text(''.join(f'{w} {" ".join(map(str, v))}\n' for w, v in rows.items()) +
                  'unrelated ' + ' '.join(['1'] * dim) + '\n')
  return path, rows


def test_glove_init_and_frozen_embedding_through_the_loop(tmp_path):
  c = tiny('text_cnn', num_steps=3, num_devices=1, eval_every=0, checkpoint_every=100)
  probe = get_task(c)
  probe.load_data()
  path, rows = _glove(tmp_path, probe.vocab, 8)
  c.task.embeddings = str(path)
  c.transfer.freeze = ('embed',)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    result = loop.train_and_evaluate(c, tmp_path / 'run', quiet=True)
  emb = np.asarray(result['state'].params['embed']['embedding'])
  for w, v in rows.items():
    np.testing.assert_allclose(emb[probe.vocab.index(w)], v, rtol=1e-6)  # frozen: the file's
  conv = result['state'].params['conv3']['kernel']
  assert len(read_metrics(tmp_path / 'run' / 'metrics.jsonl')['train']) >= 1
  assert np.isfinite(np.asarray(conv)).all()
  c.model.kwargs.embed_dim = 16
  with pytest.raises(ValueError, match=r'has 8-d vectors but model.kwargs.embed_dim is 16; set '
                     r'--config.model.kwargs.embed_dim=8'):
    get_task(c).load_data()


def _losses(workdir):
  return np.array([r['loss'] for r in read_metrics(workdir / 'metrics.jsonl')['train']])


@pytest.mark.slow
def test_eight_devices_jit_and_pmap_match_one(task_runs, tmp_path):
  """Token batches shard like image batches: 8 devices give one device's losses (1e-5).

  jit draws dropout for the global batch (as one device does); pmap draws per device,
  so it is compared without dropout.
  """
  assert jax.device_count() == 8
  over = dict(log_every=1, eval_every=0, checkpoint_every=100, num_steps=5)  # constant lr
  loop.train_and_evaluate(tiny('text_cnn', num_devices=8, parallel='jit', **over),
                          tmp_path / 'jit', quiet=True)
  np.testing.assert_allclose(_losses(tmp_path / 'jit')[:4],
                             _losses(task_runs['text_cnn'][0])[:4], rtol=1e-5, atol=1e-5)
  for devices, mode in ((1, 'jit'), (8, 'pmap')):
    c = tiny('text_cnn', num_devices=devices, parallel=mode, **over)
    c.model.kwargs.dropout = 0.0
    loop.train_and_evaluate(c, tmp_path / f'{mode}{devices}', quiet=True)
  np.testing.assert_allclose(_losses(tmp_path / 'pmap8')[:4], _losses(tmp_path / 'jit1')[:4],
                             rtol=1e-5, atol=1e-5)


def test_config_args_and_validation():
  from cnn_jax.train import config as config_lib
  c = load_config('text_cnn')
  assert (c.task.name, c.model.name, c.data.name) == ('text_classification', 'text_cnn',
                                                      'synthetic_sentiment')
  imdb = load_config('text_cnn', "data='folder',freeze=True")
  assert (imdb.data.name, imdb.task.max_len, imdb.num_steps) == ('text_folder', 400, 4000)
  assert tuple(imdb.transfer.freeze) == ('embed',)
  assert load_config('text_cnn', "data='tfds',steps=10").num_steps == 10
  with pytest.raises(ValueError, match='data.name=text_folder needs data.root=DIR'):
    config_lib.validate(imdb)
  with pytest.raises(ValueError, match="data='web' must be 'synthetic', 'folder' or 'tfds'"):
    load_config('text_cnn', "data='web'")
