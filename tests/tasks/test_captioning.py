"""Captioning task: data to tokens, masked loss, flips that swap left and right, BLEU, report."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax import tasks
from cnn_jax.data.captions import BOS_ID, EOS_ID, PAD_ID, load_synthetic_captions, tokenize
from cnn_jax.evaluation.bleu import corpus_bleu
from cnn_jax.train.logging import read_metrics
from tests.tasks.configs import tiny


@pytest.fixture(scope='module')
def loaded():
  task = tasks.get_task(tiny('caption'))
  train, ev = task.load_data()
  return task, train, ev


def test_load_data_builds_the_vocabulary_and_token_fields(loaded):
  task, train, ev = loaded
  assert train.class_names == task.vocab.words == ev.class_names
  assert task.vocab.words[:4] == ('<pad>', '<bos>', '<eos>', '<unk>')
  assert {'left', 'right', 'above', 'below', 'a', 'small', 'large'} <= set(task.vocab.words)
  for ds in (train, ev):
    assert 'captions' not in ds.extras
    assert ds.extras['caption_tokens'].shape == (len(ds), 2, 16)
    assert ds.extras['caption_tokens'].dtype == np.int32
    np.testing.assert_array_equal(ds.extras['caption_index'], np.arange(len(ds)))
    np.testing.assert_array_equal(ds.extras['caption_tokens'][:, :, 0], BOS_ID)
  assert task.truncated == {'train': 0, 'eval': 0}
  refs = task.eval_references[0]
  assert [task.vocab.decode(t) for t in ev.extras['caption_tokens'][0]] == refs
  assert task.model_kwargs(train.num_classes) == {'vocab_size': len(task.vocab), 'max_len': 16}


def test_long_captions_are_truncated_and_counted():
  config = tiny('caption')
  config.task.max_len = 6  # room for 4 words: every two-object caption is cut
  task = tasks.get_task(config)
  with pytest.warns(UserWarning) as record:
    train, _ = task.load_data()
  said = [str(w.message) for w in record]
  assert any(re.match(r'\d+ of 256 train captions have more than 4 words and were truncated to '
                      r'task.max_len=6', m) for m in said)
  assert any(re.match(r'\d+ of 64 eval captions', m) for m in said)
  raw = load_synthetic_captions('train', num_examples=128, image_size=32, num_classes=4)
  lengths = np.array([len(tokenize(c)) for c in raw.extras['captions'].ravel()])
  assert task.truncated['train'] == np.sum(lengths > 4) > 0
  assert lengths.min() == 4  # so every caption fills the 6 tokens, truncated or not
  np.testing.assert_array_equal(train.extras['caption_tokens'][:, :, -1], EOS_ID)
  i = int(np.argmax(lengths > 4))
  first = tokenize(raw.extras['captions'].ravel()[i])[:4]
  assert task.vocab.decode(train.extras['caption_tokens'].reshape(-1, 6)[i]) == first


def test_data_without_captions_is_an_error():
  config = tiny('caption')
  config.data.name = 'synthetic'
  with pytest.raises(ValueError, match="task captioning needs captions; data.name='synthetic'"):
    tasks.get_task(config).load_data()
  config.task.beam_size = 0
  with pytest.raises(ValueError, match='task.beam_size'):
    tasks.get_task(config)


def test_loss_masks_pad_targets(loaded):
  """The mean over non-pad targets only: logits at pad positions change nothing."""
  task, _, _ = loaded
  v = len(task.vocab)
  caption = jnp.array([[BOS_ID, 5, 6, EOS_ID, 0, 0], [BOS_ID, 7, EOS_ID, 0, 0, 0]], jnp.int32)
  logits = jax.random.normal(jax.random.key(0), (2, 5, v))
  loss, metrics = task.loss({'logits': logits}, {'caption': caption}, {}, None)
  target = np.asarray(caption[:, 1:])
  nll = np.asarray(optax.softmax_cross_entropy_with_integer_labels(logits, target))
  valid = target != PAD_ID
  assert float(loss) == pytest.approx(nll[valid].mean(), rel=1e-5)  # 5 real targets
  noisy = logits + 50.0 * jnp.asarray(~valid, jnp.float32)[..., None] * jax.random.normal(
      jax.random.key(1), logits.shape)
  loss2, metrics2 = task.loss({'logits': noisy}, {'caption': caption}, {}, None)
  assert float(loss2) == pytest.approx(float(loss), rel=1e-6)
  assert float(metrics2['token_accuracy']) == float(metrics['token_accuracy'])
  right = logits.at[0, 0, 5].set(100.0).at[1, 1, EOS_ID].set(100.0)
  _, m = task.loss({'logits': right}, {'caption': caption}, {}, None)
  want = np.sum((np.argmax(np.asarray(right), -1) == target) & valid) / 5
  assert want >= 2 / 5 and float(m['token_accuracy']) == pytest.approx(want)


def test_flip_swaps_left_and_right_and_a_present_reference_is_drawn(loaded):
  task, train, _ = loaded
  words = task.vocab.words
  has_side = np.array([any(words[t] in ('left', 'right') for t in row[0])
                       for row in train.extras['caption_tokens']])
  idx = np.flatnonzero(has_side)[:12]
  refs = np.array(train.extras['caption_tokens'][idx])
  refs[::2, 1] = PAD_ID  # every other image has one reference only
  batch = {'image': jnp.asarray(train.images[idx], jnp.float32),
           'caption_tokens': jnp.asarray(refs)}
  task.config.augment.flip = True
  out = jax.tree.map(np.asarray, task.augment(jax.random.split(jax.random.key(3), len(idx)),
                                              batch))
  flipped = np.any(out['image'] != np.asarray(batch['image']), axis=(1, 2, 3))
  assert 0 < flipped.sum() < len(idx)
  swap = {task.vocab.id('left'): task.vocab.id('right'),
          task.vocab.id('right'): task.vocab.id('left')}
  for i in range(len(idx)):
    want = np.vectorize(lambda t: swap.get(t, t))(refs[i]) if flipped[i] else refs[i]
    np.testing.assert_array_equal(out['caption_tokens'][i], want)
    assert any(np.array_equal(out['caption'][i], r) for r in want if r[0] == BOS_ID)
  assert np.array_equal(out['caption'][::2], out['caption_tokens'][::2, 0])
  drawn = {int(np.array_equal(out['caption'][i], out['caption_tokens'][i, 1]))
           for i in range(1, len(idx), 2)}
  assert drawn == {0, 1}  # both references of two-reference images get drawn


def test_eval_metrics_by_hand(loaded):
  task, _, ev = loaded
  refs = task.eval_references
  vocab = task.vocab
  n = 4
  decoded = np.zeros((n, 15), np.int32)
  hyps = [refs[0][0], refs[1][1], refs[2][0][:2], ['a', 'a', 'a']]  # right, right, short, wrong
  for i, h in enumerate(hyps):
    decoded[i, :len(h) + 1] = [vocab.id(w) for w in h] + [EOS_ID]
  rows = {'decoded': decoded, 'index': np.array([0, 1, 2, 3], np.int32)}
  sums = {'count': np.int64(n), 'tokens': np.int64(20), 'nll': np.float64(10.0),
          'correct': np.int64(15)}
  m = task.eval_metrics(sums, rows)
  want = corpus_bleu(refs[:4], hyps)
  assert m['bleu4'] == pytest.approx(want['bleu_4']) and m['bleu1'] == pytest.approx(
      want['bleu_1'])
  assert m['exact_match'] == 0.5 and m['loss'] == 0.5 and m['token_accuracy'] == 0.75
  assert m['mean_length'] == pytest.approx(np.mean([len(h) for h in hyps]))
  assert task.captions(rows)[3] == 'a a a'
  assert 'BLEU-4' in task.summary(m)


def test_report_draws_captions_of_the_best_checkpoint(task_runs):
  from experiments import caption
  workdir, result = task_runs['caption']
  assert result['headline'] == 'bleu4'
  r = caption.report(workdir, 'best', pictures=4)
  evals = {e['step']: e['bleu4'] for e in read_metrics(workdir / 'metrics.jsonl')['eval']}
  assert r['metrics']['bleu4'] == pytest.approx(evals[result['best_step']], abs=1e-9)
  assert (workdir / 'captions.png').stat().st_size > 5000
  assert len(r['examples']) == 4 and all(len(e['references']) == 2 for e in r['examples'])
  assert 'bleu4' in (workdir / 'results.md').read_text()
  with pytest.raises(ValueError, match='is a landmarks run; this report is for captioning'):
    caption.report(task_runs['landmarks'][0])
