"""Text classification (Kim 2014's sentence CNN): softmax cross entropy on token ids.

Batch fields: ``tokens`` (B, L) int32 ids (0 = padding, 1 = out of
vocabulary; the model's input, ``input_field``), ``label`` (B,) int32; the
synthetic corpus adds ``negated`` (B,) bool. There is no normalisation
(``preprocess`` is the identity) and no augmentation: setting any
``config.augment`` key is an error.

Data (:mod:`cnn_jax.data.text`), by ``data.name``:

* ``synthetic_sentiment``: the embedded default, generated in code
  (``data.num_train`` / ``data.num_eval`` reviews), where negation flips a
  sentiment word's polarity;
* ``text_folder``: ``data.root/<split>/<class>/*.txt`` (aclImdb);
* ``tfds``: a prepared text set, ``data.tfds_name='imdb_reviews'``
  (``task.text_key`` / ``task.label_key`` name its features).

The vocabulary is built from the training split only (after
``data.holdout`` took its reviews out): ``task.max_vocab`` entries (with
``<pad>`` and ``<unk>``), words seen ``task.min_count`` times; every review
is cut or padded to ``task.max_len`` tokens (truncations are reported).
``task.embeddings``: a GloVe / word2vec text file whose vectors start the
embedding of the words it has (its dimension must be
``model.kwargs.embed_dim``, or that key is left unset and taken from the
file). ``data.classes`` / ``data.examples_per_class`` apply as for images.

Evaluation (sums): ``accuracy`` (headline), ``loss``; with the synthetic
corpus also ``accuracy_negated`` / ``accuracy_plain``: accuracy on reviews
with and without a negated sentiment phrase (where a bag of words fails).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax.data import build
from cnn_jax.data import text as text_lib
from cnn_jax.data.dataset import ArrayDataset, holdout_indices
from cnn_jax.ops import losses, metrics as metrics_lib
from cnn_jax.tasks.base import Task

SUBGROUP = 'negated'  # the synthetic corpus's per-review flag, scored separately


class TextClassification(Task):
  name = 'text_classification'
  headline = 'accuracy'
  input_field = 'tokens'
  fields = ('tokens', 'label')
  augment_keys = ()

  @staticmethod
  def defaults() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.max_len = 40        # tokens per review (longer ones keep their first max_len)
    c.max_vocab = 20_000  # vocabulary entries with <pad> and <unk> (0: every word)
    c.min_count = 1       # a word needs this many train occurrences to get an id
    c.embeddings = ''     # a GloVe / word2vec text file ('' : random init)
    c.text_key = 'text'   # tfds: the text feature
    c.label_key = 'label'  # tfds: the label feature
    return c

  def __init__(self, config):
    super().__init__(config)
    self.vocab: text_lib.Vocabulary | None = None
    self.pretrained: text_lib.Pretrained | None = None

  # ---- data (host) --------------------------------------------------------

  def load_data(self) -> tuple[ArrayDataset, ArrayDataset]:
    d, t, seed = self.config.data, self.t, self.data_seed
    kw = dict(seed=seed, text_key=t.text_key, label_key=t.label_key)
    train = build.load_text_split(d, d.train_split, **kw)
    if d.holdout:  # before the vocabulary: held-out reviews must not shape it
      rest, held = holdout_indices(len(train), int(d.holdout))
      train, ev = train.take(rest), train.take(held)
      ev.source = f'{ev.source} (data.holdout)'
    else:
      ev = build.load_text_split(d, d.eval_split, **kw)
    if ev.class_names != train.class_names:
      raise ValueError(f'the eval split has classes {ev.class_names} but the train split '
                       f'{train.class_names}; both need the same class folders.')
    self.vocab = text_lib.Vocabulary.build(train.docs, int(t.max_vocab), int(t.min_count))
    if t.embeddings:
      dim = self.config.model.kwargs.get('embed_dim')
      self.pretrained = text_lib.load_embeddings(t.embeddings, self.vocab,
                                                 None if dim is None else int(dim))
    return (build.restrict(self._encode(train), d, d.train_split, seed),
            build.restrict(self._encode(ev), d, d.eval_split, seed))

  def _encode(self, split: text_lib.TextSplit) -> ArrayDataset:
    max_len = int(self.t.max_len)
    ids, truncated = self.vocab.encode(split.docs, max_len)
    text_lib.warn_truncated(truncated, len(split), max_len, split.source)
    return ArrayDataset(ids, split.labels, split.class_names, dict(split.extras),
                        input_field='tokens')

  def model_kwargs(self, num_classes):
    if self.vocab is None:
      raise RuntimeError('call load_data() first: the vocabulary sizes the model.')
    kwargs = {'num_classes': num_classes, 'vocab_size': len(self.vocab)}
    if self.pretrained is not None:
      kwargs.update(embed_dim=self.pretrained.dim, pretrained=self.pretrained)
    return kwargs

  # ---- steps (traced) -----------------------------------------------------

  def preprocess(self, batch, mean, std):
    del mean, std  # token ids go to the embedding as they are
    return batch

  def augment(self, keys, batch):
    del keys  # no augmentation (the constructor rejects augment.* keys)
    return batch

  def loss(self, logits, batch, extras, axis_name):
    del extras, axis_name  # a mean over examples: the step's pmean makes it global
    loss = losses.softmax_cross_entropy(
        logits, batch['label'], label_smoothing=self.config.optimizer.label_smoothing)
    return loss, {'accuracy': metrics_lib.accuracy(logits, batch['label'])}

  def eval_outputs(self, logits, batch):
    mask, labels = batch['mask'], batch['label']
    per_example = losses.softmax_cross_entropy(logits, labels, reduction='none')
    correct = (jnp.argmax(logits, -1) == labels) & mask
    sums = {'loss_sum': jnp.sum(jnp.where(mask, per_example, 0.0)),
            'correct': jnp.sum(correct, dtype=jnp.int32),
            'count': jnp.sum(mask, dtype=jnp.int32)}
    if SUBGROUP in batch:
      flag = batch[SUBGROUP].astype(bool)
      sums.update({'correct_negated': jnp.sum(correct & flag, dtype=jnp.int32),
                   'count_negated': jnp.sum(mask & flag, dtype=jnp.int32)})
    return {'sums': sums}

  # ---- evaluation (host) --------------------------------------------------

  def eval_metrics(self, sums, rows):
    del rows
    count = max(int(sums['count']), 1)
    out = {'accuracy': float(sums['correct']) / count,
           'loss': float(sums['loss_sum']) / count}
    if 'count_negated' in sums:
      neg, n_neg = int(sums['correct_negated']), int(sums['count_negated'])
      plain, n_plain = int(sums['correct']) - neg, int(sums['count']) - n_neg
      out['accuracy_negated'] = neg / n_neg if n_neg else float('nan')
      out['accuracy_plain'] = plain / n_plain if n_plain else float('nan')
    out['count'] = int(sums['count'])
    return out

  def summary(self, m):
    line = f"accuracy {m['accuracy']:.4f} (loss {m['loss']:.4f}) on {int(m['count'])} reviews"
    if 'accuracy_negated' in m:
      line += (f"; with a negated phrase {m['accuracy_negated']:.4f}, without "
               f"{m['accuracy_plain']:.4f}")
    return line


def decode_batch(vocab: text_lib.Vocabulary, ids: np.ndarray) -> list[str]:
  """The reviews of (N, L) ids as text (``<unk>`` where a word had no id), for reports."""
  return [' '.join(vocab.decode(row)) for row in np.asarray(ids)]
