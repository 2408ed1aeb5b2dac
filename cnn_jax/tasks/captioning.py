"""Image captioning (Show and Tell, Vinyals et al. 2015): a CNN encoder and an LSTM decoder.

Data: any reader whose split has the extra ``captions``, an ``(N, R)`` object
array of reference strings (``''`` pads): ``data.name='synthetic_captions'``
(scenes described by a grammar in code) or ``'coco_captions'`` (a COCO
``captions_<split>.json``); see :mod:`cnn_jax.data.captions`. :meth:`load_data`
builds the :class:`~cnn_jax.data.captions.Vocabulary` from the train split
(words seen ``task.min_count`` times or more; others are ``<unk>``) and turns
the captions into batch fields:

* ``caption_tokens`` (N, R, ``task.max_len``) int32: every reference as
  ``[<bos>, words.., <eos>, <pad>..]``, an absent one all ``<pad>``; a caption
  longer than ``max_len - 2`` words is truncated (a warning counts them per split);
* ``caption_index`` (N,) int32: the example's row in its split (eval rows
  carry it, so BLEU reads the raw references, not their truncated ids).

The dataset's ``class_names`` become the vocabulary (``num_classes`` = V,
what the model's output layer needs).

Training: each step draws one reference per image (per-example keys, so a
resumed run draws the same ones) into ``caption``, the model reads it with
teacher forcing (:meth:`model_inputs`), and the loss is the token cross
entropy over the non-pad targets, a mean over the global batch's tokens
(:func:`~cnn_jax.tasks.base.global_mean`); the train metric is token
accuracy. A horizontal flip (``augment.flip``) mirrors the image and swaps the
words ``left`` and ``right`` in every reference (for the synthetic grammar
exactly right; for free text like COCO's, right where "left" and "right" mean
sides of the picture).

Evaluation: the model decodes each image (greedy; beam search of width
``task.beam_size`` when > 1, final choice by ``score / length **
task.length_penalty``); on the host, corpus BLEU-1..4 (Papineni et al.,
:func:`cnn_jax.evaluation.bleu.corpus_bleu`) against all the image's
references (tokenized as :func:`~cnn_jax.data.captions.tokenize`, untruncated),
headline ``bleu4``; ``exact_match``: the caption equals one of the references;
``loss`` and ``token_accuracy`` teacher-forced on the first reference;
``mean_length`` of the captions in words. :meth:`captions` turns eval rows
into strings (the report's examples).
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cnn_jax.data.captions import (BOS_ID, MIRROR_WORDS, PAD_ID, Vocabulary, tokenize)
from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.evaluation.bleu import corpus_bleu
from cnn_jax.tasks.base import Task, global_mean, mirror, random_flip


class Captioning(Task):
  name = 'captioning'
  headline = 'bleu4'
  fields = ('image', 'caption_tokens', 'caption_index')
  progress = 'token_accuracy'
  augment_keys = ('flip',)

  @staticmethod
  def defaults() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.max_len = 16            # tokens per caption with <bos> and <eos>; longer ones truncated
    c.min_count = 1           # train-split words seen fewer times become <unk>
    c.beam_size = 1           # evaluation: 1 greedy, > 1 beam search of this width
    c.length_penalty = 0.0    # beam search: pick by score / length ** alpha (0: raw score)
    return c

  def __init__(self, config):
    super().__init__(config)
    if self.t.max_len < 3 or self.t.beam_size < 1 or self.t.min_count < 1:
      raise ValueError(f'task.max_len must be >= 3, task.beam_size and task.min_count >= 1; got '
                       f'{self.t.max_len}, {self.t.beam_size}, {self.t.min_count}.')
    self.vocab: Vocabulary | None = None
    self.eval_references: list[list[list[str]]] | None = None
    self.truncated: dict[str, int] = {}

  # ---- data (host) --------------------------------------------------------

  def load_data(self) -> tuple[ArrayDataset, ArrayDataset]:
    train, ev = super().load_data()
    for ds in (train, ev):
      if 'captions' not in ds.extras:
        raise ValueError(f'task captioning needs captions; data.name={self.config.data.name!r} '
                         'gives none (use synthetic_captions or coco_captions).')
    self.vocab = Vocabulary.build((tokenize(c) for c in train.extras['captions'].ravel() if c),
                                  min_count=int(self.t.min_count))
    self.eval_references = [[tokenize(c) for c in row if c] for row in ev.extras['captions']]
    return self._encode(train, 'train'), self._encode(ev, 'eval')

  def _encode(self, ds: ArrayDataset, split: str) -> ArrayDataset:
    tokens, cut = self.vocab.encode_references(ds.extras['captions'], int(self.t.max_len))
    self.truncated[split] = cut
    if cut:
      total = int(np.sum(ds.extras['captions'] != ''))
      warnings.warn(f'{cut} of {total} {split} captions have more than {self.t.max_len - 2} '
                    f'words and were truncated to task.max_len={self.t.max_len} tokens (with '
                    '<bos> and <eos>); raise task.max_len to keep them.', stacklevel=3)
    extras = {k: v for k, v in ds.extras.items() if k != 'captions'}
    extras.update(caption_tokens=tokens, caption_index=np.arange(len(ds), dtype=np.int32))
    return ArrayDataset(ds.images, ds.labels, self.vocab.words, extras)

  def model_kwargs(self, num_classes):
    return {'vocab_size': num_classes, 'max_len': int(self.t.max_len)}

  # ---- steps (traced) -----------------------------------------------------

  def model_inputs(self, batch, train):
    if train:
      return {'tokens': batch['caption']}
    return {'tokens': batch['caption_tokens'][:, 0], 'beam_size': int(self.t.beam_size),
            'length_penalty': float(self.t.length_penalty)}

  def flip_fields(self):
    return {'image': mirror, 'caption_tokens': self.mirror_tokens}

  def mirror_tokens(self, tokens: jax.Array) -> jax.Array:
    """Ids with ``left`` <-> ``right`` swapped (:data:`~cnn_jax.data.captions.MIRROR_WORDS`)."""
    if self.vocab is None:
      raise ValueError('the captioning task has no vocabulary yet; call load_data() first.')
    perm = np.arange(len(self.vocab), dtype=np.int32)
    for a, b in MIRROR_WORDS:
      if a in self.vocab and b in self.vocab:
        perm[[self.vocab.id(a), self.vocab.id(b)]] = self.vocab.id(b), self.vocab.id(a)
    return jnp.asarray(perm)[tokens]

  def augment(self, keys, batch):
    """Flip (``augment.flip``), then draw one of each image's references into ``caption``."""
    if self.config.augment.flip:
      batch = random_flip(keys, batch, self.flip_fields())
    refs = batch['caption_tokens']
    present = refs[:, :, 0] == BOS_ID
    pick_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    pick = jax.vmap(lambda k, p: jax.random.categorical(k, jnp.where(p, 0.0, -jnp.inf)))(
        pick_keys, present)
    return {**batch, 'caption': refs[jnp.arange(refs.shape[0]), pick]}

  def _token_terms(self, logits, target, valid):
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, target)
    correct = (jnp.argmax(logits, -1) == target) & valid
    return jnp.sum(jnp.where(valid, nll, 0.0)), jnp.sum(correct, dtype=jnp.int32)

  def loss(self, out, batch, extras, axis_name):
    del extras
    target = batch['caption'][:, 1:]
    valid = target != PAD_ID
    total, correct = self._token_terms(out['logits'], target, valid)
    count = jax.lax.stop_gradient(jnp.sum(valid, dtype=jnp.int32))
    return global_mean(total, count, axis_name), {
        'token_accuracy': global_mean(correct.astype(jnp.float32), count, axis_name)}

  def eval_outputs(self, out, batch):
    target = batch['caption_tokens'][:, 0, 1:]
    valid = (target != PAD_ID) & batch['mask'][:, None]
    nll, correct = self._token_terms(out['logits'], target, valid)
    return {'sums': {'count': jnp.sum(batch['mask'], dtype=jnp.int32),
                     'tokens': jnp.sum(valid, dtype=jnp.int32), 'nll': nll, 'correct': correct},
            'rows': {'decoded': out['tokens'], 'index': batch['caption_index']}}

  # ---- evaluation (host) --------------------------------------------------

  def captions(self, rows: dict[str, np.ndarray]) -> list[str]:
    """The decoded captions of eval rows, as strings."""
    if self.vocab is None:
      raise ValueError('the captioning task has no vocabulary yet; call load_data() first.')
    return [' '.join(self.vocab.decode(r)) for r in rows['decoded']]

  def eval_metrics(self, sums, rows):
    if self.eval_references is None:
      raise ValueError('the captioning task has no references yet; call load_data() first.')
    hyps = [c.split() for c in self.captions(rows)]
    refs = [self.eval_references[int(i)] for i in rows['index']]
    bleu = corpus_bleu(refs, hyps)
    tokens = max(int(sums['tokens']), 1)
    out = {'bleu4': bleu['bleu_4'], **{f'bleu{n}': bleu[f'bleu_{n}'] for n in (1, 2, 3)},
           'exact_match': float(np.mean([h in r for h, r in zip(hyps, refs)])),
           'loss': float(sums['nll']) / tokens, 'token_accuracy': int(sums['correct']) / tokens,
           'mean_length': float(np.mean([len(h) for h in hyps])),
           'brevity_penalty': bleu['brevity_penalty'], 'count': int(sums['count'])}
    return out

  def summary(self, m):
    return (f"BLEU-4 {m['bleu4']:.4f} (BLEU-1 {m['bleu1']:.4f}, BLEU-2 {m['bleu2']:.4f}, "
            f"BLEU-3 {m['bleu3']:.4f}), exact match {m['exact_match']:.4f}, token accuracy "
            f"{m['token_accuracy']:.4f} on {int(m['count'])} images")
