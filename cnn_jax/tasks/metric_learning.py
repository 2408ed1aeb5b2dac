"""Metric learning (FaceNet): triplet-loss embeddings, verification and one-shot recognition.

Identities are split three ways, disjoint: ``train`` (triplet training),
``val`` (unseen: picks the distance threshold, fits the siamese heads) and
``test`` (unseen: verification accuracy at that threshold, ROC AUC, one-shot
nearest-neighbour accuracy with a gallery of one image per identity).

Batch fields: ``image``, ``label`` (the identity). A train batch is P
identities x K images (:func:`pk_batch`, a pure function of
``(seed, step)``, so resume is exact); the loss is
:func:`cnn_jax.ops.losses.batch_triplet_loss` with online mining over the
whole global batch, also under pmap. Eval batches add ``group`` (0 val,
1 test). The model (``embedding``) maps images to ``(B, dim)`` unit vectors.

Siamese heads (DeepFace) are a documented stage of evaluation: a logistic
regression on ``|f1 - f2|`` and on the chi-squared form of two frozen
embeddings, fitted on balanced pairs of the val identities and scored on the
test pairs (``siamese_abs_*``, ``siamese_chi2_*``).
"""

from __future__ import annotations

import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cnn_jax.data.dataset import ArrayDataset, select_classes
from cnn_jax.models.embedding import SiameseHead
from cnn_jax.ops import losses, metrics as metrics_lib
from cnn_jax.tasks.base import Task, gather_batch, scale_gradient_for_pmean
from cnn_jax.dtypes import standard_promotion


def pk_batch(labels: np.ndarray, p: int, k: int, rng: np.random.Generator) -> np.ndarray:
  """Indices of a P x K batch: ``p`` random identities, ``k`` images of each.

  Identities with fewer than ``k`` images are sampled with replacement.
  """
  ids = rng.choice(np.unique(labels), size=p, replace=False)
  out = []
  for i in ids:
    members = np.flatnonzero(labels == i)
    out.append(rng.choice(members, size=k, replace=len(members) < k))
  return np.concatenate(out).astype(np.int32)


def balanced_pairs(labels: np.ndarray, rng: np.random.Generator,
                   max_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(i, j, same)``: every positive pair (or ``max_pairs // 2``) and as many negatives."""
  i, j = np.triu_indices(len(labels), k=1)
  same = labels[i] == labels[j]
  pos, neg = np.flatnonzero(same), np.flatnonzero(~same)
  n = min(len(pos), len(neg), (max_pairs or 2 * len(pos)) // 2)
  pick = np.concatenate([rng.choice(pos, n, replace=False), rng.choice(neg, n, replace=False)])
  return i[pick], j[pick], same[pick]


def group_pairs(rows: dict[str, np.ndarray], seed: int) -> dict[str, dict[str, np.ndarray]]:
  """Per eval group ('val', 'test'): its embeddings, labels and balanced pairs.

  Returns per group ``emb`` (M, D), ``labels`` (M,), pair indices ``i``, ``j``,
  ``same`` (P,) and squared distances ``d`` (P,).
  """
  out = {}
  for name, g in (('val', 0), ('test', 1)):
    keep = rows['group'] == g
    emb, labels = rows['embedding'][keep], rows['label'][keep]
    i, j, same = balanced_pairs(labels, np.random.default_rng([seed, 1]))
    out[name] = dict(emb=emb, labels=labels, i=i, j=j, same=same,
                     d=np.sum(np.square(emb[i] - emb[j]), axis=-1))
  return out


def one_shot(emb: np.ndarray, labels: np.ndarray) -> dict:
  """Gallery: the first image of each identity; probes: all others -> nearest gallery id."""
  ids = np.unique(labels)
  gallery = np.array([np.flatnonzero(labels == i)[0] for i in ids])
  probes = np.setdiff1d(np.arange(len(labels)), gallery)
  d = np.sum(np.square(emb[probes, None] - emb[None, gallery]), axis=-1)
  pred = ids[np.argmin(d, axis=1)]
  return {'accuracy': float(np.mean(pred == labels[probes])), 'identities': int(len(ids)),
          'probes': int(len(probes)), 'chance': 1.0 / len(ids)}


def fit_siamese_head(kind: str, f1: np.ndarray, f2: np.ndarray, same: np.ndarray, *,
                     steps: int, lr: float, seed: int) -> tuple[SiameseHead, dict]:
  """Full-batch Adam on the logistic loss of a :class:`SiameseHead` over frozen features.

  Args:
    f1, f2: (P, dim) embeddings of the two images of each pair; same: (P,) bool.
  Returns:
    ``(head, params)``.
  """
  head = SiameseHead(kind=kind)
  f1, f2, y = jnp.asarray(f1), jnp.asarray(f2), jnp.asarray(same, jnp.float32)
  params = head.init(jax.random.key(seed), f1[:1], f2[:1])
  tx = optax.adam(lr)
  loss_fn = lambda p: losses.sigmoid_binary_cross_entropy(head.apply(p, f1, f2), y)

  def body(_, carry):
    p, opt_state = carry
    grads = jax.grad(loss_fn)(p)
    with standard_promotion():
      updates, opt_state = tx.update(grads, opt_state, p)
    return optax.apply_updates(p, updates), opt_state

  params, _ = jax.jit(lambda p: jax.lax.fori_loop(0, steps, body, (p, tx.init(p))))(params)
  return head, params


class MetricLearning(Task):
  name = 'metric_learning'
  headline = 'val_auc'
  progress = 'pos_dist'

  @staticmethod
  def defaults() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.margin = 0.2
    c.mining = 'semi_hard'        # 'hard' (batch-hard) | 'semi_hard' (FaceNet) | 'all'
    c.identities_per_batch = 8    # P; batch_size must be P x K
    c.images_per_identity = 8     # K
    c.train_identities = 40       # synthetic: ids 0..39; a folder: the rest after val/test
    c.val_identities = 10
    c.test_identities = 10
    c.per_identity = 30           # synthetic only: images per identity
    c.siamese_steps = 300         # 0: no siamese heads
    c.siamese_lr = 0.05
    return c

  def __init__(self, config):
    super().__init__(config)
    p, k = self.t.identities_per_batch, self.t.images_per_identity
    if p * k != config.batch_size:
      raise ValueError(f'batch_size={config.batch_size} must be task.identities_per_batch x '
                       f'task.images_per_identity = {p} x {k}; set --config.batch_size={p * k}.')
    if self.t.mining not in losses.MINING:
      raise ValueError(f'task.mining={self.t.mining!r} is not valid; choose one of '
                       f'{", ".join(losses.MINING)}.')

  # ---- data ---------------------------------------------------------------

  def _identities(self) -> dict[str, ArrayDataset]:
    t, d, seed = self.t, self.config.data, self.data_seed
    n_train, n_val, n_test = t.train_identities, t.val_identities, t.test_identities
    if min(n_train, n_val, n_test) < 2:
      raise ValueError('task.train_identities, val_identities and test_identities must each be '
                       f'>= 2 (got {n_train}, {n_val}, {n_test}).')
    if d.name == 'synthetic':
      from cnn_jax.data.synthetic import render_identities
      ranges = {'train': range(n_train), 'val': range(n_train, n_train + n_val),
                'test': range(n_train + n_val, n_train + n_val + n_test)}
      return {s: render_identities(ids, t.per_identity, image_size=d.image_size, seed=seed)
              for s, ids in ranges.items()}
    if d.name != 'image_folder':
      raise ValueError(f'task metric_learning reads data.name synthetic or image_folder, not '
                       f'{d.name!r}.')
    from cnn_jax.data.image_folder import load_image_folder
    people = load_image_folder(d.root, d.train_split, image_size=d.image_size or None,
                               channels=d.channels, cache_dir=d.cache_dir or None,
                               skip_corrupt=d.skip_corrupt)
    if people.num_classes < n_val + n_test + 2:
      raise ValueError(f'{pathlib.Path(d.root) / d.train_split} has {people.num_classes} '
                       f'identities; need at least {n_val + n_test + 2} (val {n_val} + test '
                       f'{n_test} + 2 to train).')
    order = np.random.default_rng(seed).permutation(people.num_classes)
    ids = {'test': order[:n_test], 'val': order[n_test:n_test + n_val],
           'train': order[n_test + n_val:]}
    return {s: select_classes(people, tuple(v)) for s, v in ids.items()}

  def load_data(self) -> tuple[ArrayDataset, ArrayDataset]:
    parts = self._identities()
    if self.t.identities_per_batch > parts['train'].num_classes:
      raise ValueError(f'task.identities_per_batch={self.t.identities_per_batch} exceeds the '
                       f'{parts["train"].num_classes} training identities; lower it.')
    self.identities = {s: ds.num_classes for s, ds in parts.items()}
    val, test = parts['val'], parts['test']
    # One eval split: val then test, labels kept per group (identities never mix).
    eval_ds = ArrayDataset(
        np.concatenate([val.images, test.images]),
        np.concatenate([val.labels, test.labels + val.num_classes]).astype(np.int32),
        val.class_names + test.class_names,
        {'group': np.concatenate([np.zeros(len(val), np.int32), np.ones(len(test), np.int32)])})
    return parts['train'], eval_ds

  def sampler(self, train):
    labels = train.labels
    p, k = self.t.identities_per_batch, self.t.images_per_identity
    return lambda seed, step: pk_batch(labels, p, k, np.random.default_rng([seed, step, 0x7B]))

  def model_kwargs(self, num_classes):
    del num_classes  # the embedding's size is model.kwargs.dim
    return {}

  # ---- steps --------------------------------------------------------------

  def loss(self, emb, batch, extras, axis_name):
    del extras
    emb = gather_batch(emb, axis_name)  # mining needs every identity of the global batch
    labels = gather_batch(batch['label'], axis_name)
    loss = losses.batch_triplet_loss(emb, labels, self.t.margin, self.t.mining)
    d = jax.lax.stop_gradient(losses.pairwise_sq_distances(emb))
    pos, neg = losses.label_pair_masks(labels)
    mean_over = lambda m: (jnp.sum(jnp.where(m, d, 0.0)) /
                           jnp.maximum(jnp.sum(m, dtype=jnp.float32), 1.0))
    return scale_gradient_for_pmean(loss, axis_name), {'pos_dist': mean_over(pos),
                                                       'neg_dist': mean_over(neg)}

  def eval_outputs(self, emb, batch):
    return {'rows': {'embedding': emb.astype(jnp.float32), 'label': batch['label'],
                     'group': batch['group']}}

  # ---- evaluation ---------------------------------------------------------

  def eval_metrics(self, sums, rows):
    del sums
    seed = self.data_seed
    pairs = group_pairs(rows, seed)
    val, test = pairs['val'], pairs['test']
    threshold, val_acc = metrics_lib.best_threshold(val['d'], val['same'])
    shot = one_shot(test['emb'], test['labels'])
    out = {
        'val_auc': float(metrics_lib.roc_auc(-val['d'], val['same'])),
        'auc': float(metrics_lib.roc_auc(-test['d'], test['same'])),
        'accuracy': float(metrics_lib.verification_accuracy(test['d'], test['same'],
                                                            threshold)),
        'threshold': float(threshold), 'val_accuracy': float(val_acc),
        'one_shot_accuracy': shot['accuracy'], 'one_shot_chance': shot['chance'],
        'unit_norm_error': float(np.max(np.abs(np.linalg.norm(test['emb'], axis=1) - 1))),
        'test_pairs': int(len(test['d'])), 'count': int(len(rows['label'])),
    }
    if self.t.siamese_steps:
      for kind in ('abs', 'chi2'):
        head, params = fit_siamese_head(
            kind, val['emb'][val['i']], val['emb'][val['j']], val['same'],
            steps=int(self.t.siamese_steps), lr=float(self.t.siamese_lr), seed=seed)
        logits = np.asarray(head.apply(params, test['emb'][test['i']], test['emb'][test['j']]))
        out[f'siamese_{kind}_accuracy'] = float(np.mean((logits > 0) == test['same']))
        out[f'siamese_{kind}_auc'] = float(metrics_lib.roc_auc(logits, test['same']))
    return out

  def summary(self, m):
    text = (f"verification accuracy {m['accuracy']:.4f} at the val threshold "
            f"{m['threshold']:.3f}, ROC AUC {m['auc']:.4f} (val {m['val_auc']:.4f}), one-shot "
            f"{m['one_shot_accuracy']:.4f} (chance {m['one_shot_chance']:.3f}) on unseen "
            'identities')
    if 'siamese_abs_accuracy' in m:
      text += (f"; siamese heads {m['siamese_abs_accuracy']:.4f} (abs) / "
               f"{m['siamese_chi2_accuracy']:.4f} (chi2)")
    return text
