r"""Face verification and one-shot recognition: triplet-loss embeddings, then a siamese head.

  python -m experiments.face_verify --config=configs/face_verify.py --workdir=workdirs/faces

1. An :class:`~cnn_jax.models.embedding.Embedding` (L2-normalised, ``dim``) is
   trained with the triplet loss and online mining (batch-hard or FaceNet's
   semi-hard, margin 0.2) on P identities x K images per batch.
2. Verification: the distance threshold with the best accuracy on balanced
   pairs of the *val* identities is applied to balanced pairs of the *test*
   identities (unseen in training); ROC AUC too.
3. One-shot recognition: a gallery of one image per test identity; every
   other test image is labelled by its nearest gallery embedding.
4. Siamese heads: logistic regression on ``|f_i - f_j|`` and on the
   chi-squared form, trained on pairs of the train identities (embeddings
   frozen), evaluated on the test pairs.

Writes ``metrics.jsonl`` (+ TensorBoard), ``results.json``, ``results.md``,
``roc.png`` and ``embedding.npz`` (the trained variables, flat
``collection/module/.../leaf`` keys, see ``cnn_jax.models.weights.save_flat``).
"""

from __future__ import annotations

import json
import pathlib
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.ops import losses, metrics
from experiments.fit import fit

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


# ----------------------------------------------------------------------------- data

def load_identities(cfg: Any) -> dict[str, ArrayDataset]:
  """``{'train', 'val', 'test'}`` datasets over disjoint identities."""
  n_train, n_val, n_test = cfg.train_identities, cfg.val_identities, cfg.test_identities
  if min(n_val, n_test) < 2 or n_train < 2:
    raise ValueError('train_identities, val_identities and test_identities must each be >= 2 '
                     f'(got {n_train}, {n_val}, {n_test}).')
  if cfg.data == 'synthetic':
    from cnn_jax.data.synthetic import render_identities
    ranges = {'train': range(n_train), 'val': range(n_train, n_train + n_val),
              'test': range(n_train + n_val, n_train + n_val + n_test)}
    return {split: render_identities(ids, cfg.per_identity, image_size=cfg.image_size,
                                     seed=cfg.seed) for split, ids in ranges.items()}
  if cfg.data != 'folder':
    raise ValueError(f"data={cfg.data!r} is not valid; choose 'synthetic' or 'folder'.")
  if not cfg.root:
    raise ValueError('data=folder needs --config.root=DIR with one folder of images per person.')
  from cnn_jax.data.image_folder import load_image_folder
  root = pathlib.Path(cfg.root).absolute()
  people = load_image_folder(root.parent, root.name, image_size=cfg.image_size)
  order = np.random.default_rng(cfg.seed).permutation(people.num_classes)
  if people.num_classes < n_val + n_test + 2:
    raise ValueError(f'{root} has {people.num_classes} identities; need at least '
                     f'{n_val + n_test + 2} (val {n_val} + test {n_test} + 2 to train).')
  test_ids, val_ids = order[:n_test], order[n_test:n_test + n_val]
  train_ids = order[n_test + n_val:]

  def subset(ids):
    remap = np.full(people.num_classes, -1, np.int32)
    remap[ids] = np.arange(len(ids), dtype=np.int32)
    keep = np.flatnonzero(remap[people.labels] >= 0)
    return ArrayDataset(people.images[keep], remap[people.labels[keep]],
                        tuple(people.class_names[i] for i in ids))

  return {'train': subset(train_ids), 'val': subset(val_ids), 'test': subset(test_ids)}


def pk_batch(labels: np.ndarray, p: int, k: int, rng: np.random.Generator) -> np.ndarray:
  """Indices of a P x K batch: ``p`` random identities, ``k`` images of each.

  Identities with fewer than ``k`` images are sampled with replacement.
  """
  ids = rng.choice(np.unique(labels), size=p, replace=False)
  out = []
  for i in ids:
    members = np.flatnonzero(labels == i)
    out.append(rng.choice(members, size=k, replace=len(members) < k))
  return np.concatenate(out)


def balanced_pairs(labels: np.ndarray, rng: np.random.Generator,
                   max_pairs: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``(i, j, same)``: every positive pair (or ``max_pairs // 2``) and as many negatives."""
  i, j = np.triu_indices(len(labels), k=1)
  same = labels[i] == labels[j]
  pos, neg = np.flatnonzero(same), np.flatnonzero(~same)
  n = min(len(pos), len(neg), (max_pairs or 2 * len(pos)) // 2)
  pick = np.concatenate([rng.choice(pos, n, replace=False), rng.choice(neg, n, replace=False)])
  return i[pick], j[pick], same[pick]


# ----------------------------------------------------------------------------- training

def make_train_step(model, tx: optax.GradientTransformation, cfg: Any):
  """``step(state, images, idx, labels, rng) -> (state, metrics)``; images stay on device."""
  from cnn_jax.data import augment

  def step(state, images, idx, labels, rng):
    x = augment.normalize(images[idx], MEAN, STD)
    if cfg.flip:
      x = jax.vmap(augment.random_flip)(jax.random.split(rng, x.shape[0]), x)

    def loss_fn(params):
      emb, mutated = model.apply({'params': params, 'batch_stats': state.batch_stats}, x,
                                 train=True, mutable=['batch_stats'])
      return losses.batch_triplet_loss(emb, labels, cfg.margin, cfg.mining), (emb, mutated)

    (loss, (emb, mutated)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    with jax.numpy_dtype_promotion('standard'):  # optax mixes int32 counts and floats
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
    d = losses.pairwise_sq_distances(emb)
    same = labels[:, None] == labels[None, :]
    off_diag = ~jnp.eye(labels.shape[0], dtype=jnp.bool_)
    pos, neg = same & off_diag, ~same
    stats = {'loss': loss,
             'pos_dist': jnp.sum(jnp.where(pos, d, 0.0)) / jnp.sum(pos, dtype=jnp.float32),
             'neg_dist': jnp.sum(jnp.where(neg, d, 0.0)) / jnp.sum(neg, dtype=jnp.float32)}
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=mutated['batch_stats'], opt_state=opt_state), stats

  return jax.jit(step)


def embed(model, state, images: np.ndarray, batch: int = 500) -> np.ndarray:
  """(N, H, W, C) uint8 -> (N, dim) float32 unit embeddings (inference mode)."""
  from cnn_jax.data import augment
  fn = jax.jit(lambda v, x: model.apply(v, augment.normalize(x, MEAN, STD), train=False))
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  return np.concatenate([np.asarray(fn(variables, images[s:s + batch]))
                         for s in range(0, len(images), batch)])


def train_embedding(cfg: Any, data: dict, workdir: pathlib.Path, *, quiet: bool):
  from cnn_jax.models.embedding import Embedding
  from cnn_jax.train.optim import kernel_mask
  from cnn_jax.train.state import create_train_state
  model = Embedding(backbone=cfg.backbone, dim=cfg.dim,
                    backbone_kwargs=cfg.backbone_kwargs.to_dict())
  schedule = optax.cosine_decay_schedule(cfg.lr, cfg.steps)
  tx = optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=kernel_mask)
  init_key = jax.random.key(cfg.seed)
  shape = (1, *data['train'].images.shape[1:])
  state = jax.jit(lambda k: create_train_state(model, tx, k, shape))(init_key)
  step = make_train_step(model, tx, cfg)
  images = jax.device_put(data['train'].images)
  labels = data['train'].labels
  p, k = cfg.identities_per_batch, cfg.images_per_identity
  if p > data['train'].num_classes:
    raise ValueError(f'identities_per_batch={p} exceeds the {data["train"].num_classes} '
                     'training identities; lower it.')

  def next_batch(i):
    idx = pk_batch(labels, p, k, np.random.default_rng([cfg.seed, i]))
    return jnp.asarray(idx), jnp.asarray(labels[idx])

  state = fit(lambda st, batch, rng: step(st, images, *batch, rng), state, next_batch,
              steps=cfg.steps, batch_size=p * k, workdir=workdir, seed=cfg.seed,
              log_every=cfg.log_every, quiet=quiet)
  return model, state


# ----------------------------------------------------------------------------- evaluation

def verification(emb: dict[str, np.ndarray], data: dict, seed: int) -> dict:
  """Threshold on val pairs, accuracy and AUC on test pairs (distances are squared L2)."""
  out = {}
  for split in ('val', 'test'):
    i, j, same = balanced_pairs(data[split].labels, np.random.default_rng([seed, 1]))
    d = np.sum(np.square(emb[split][i] - emb[split][j]), axis=-1)
    out[split] = {'distances': d, 'same': same,
                  'auc': float(metrics.roc_auc(-d, same)), 'pairs': int(len(d))}
  threshold, val_acc = metrics.best_threshold(out['val']['distances'], out['val']['same'])
  test_acc = metrics.verification_accuracy(out['test']['distances'], out['test']['same'],
                                           threshold)
  return {'threshold': float(threshold), 'val_accuracy': float(val_acc),
          'test_accuracy': float(test_acc), 'val_auc': out['val']['auc'],
          'test_auc': out['test']['auc'], 'test_pairs': out['test']['pairs'],
          '_curves': out}


def one_shot(emb: np.ndarray, labels: np.ndarray) -> dict:
  """Gallery: the first image of each identity; probes: all others -> nearest gallery id."""
  ids = np.unique(labels)
  gallery = np.array([np.flatnonzero(labels == i)[0] for i in ids])
  probes = np.setdiff1d(np.arange(len(labels)), gallery)
  d = np.sum(np.square(emb[probes, None] - emb[None, gallery]), axis=-1)
  pred = ids[np.argmin(d, axis=1)]
  return {'accuracy': float(np.mean(pred == labels[probes])), 'identities': int(len(ids)),
          'probes': int(len(probes)), 'chance': 1.0 / len(ids)}


def train_siamese_head(kind: str, emb: dict, data: dict, cfg: Any) -> dict:
  """Logistic regression on pair features of frozen embeddings; test accuracy and AUC."""
  from cnn_jax.models.embedding import SiameseHead
  head = SiameseHead(kind=kind)
  i, j, same = balanced_pairs(data['train'].labels, np.random.default_rng([cfg.seed, 2]),
                              cfg.siamese_pairs)
  f1, f2 = jnp.asarray(emb['train'][i]), jnp.asarray(emb['train'][j])
  y = jnp.asarray(same, jnp.float32)
  params = head.init(jax.random.key(cfg.seed), f1[:1], f2[:1])
  tx = optax.adam(cfg.siamese_lr)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(
        lambda p: losses.sigmoid_binary_cross_entropy(head.apply(p, f1, f2), y))(params)
    with jax.numpy_dtype_promotion('standard'):
      updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  for _ in range(cfg.siamese_steps):
    params, opt_state, loss = step(params, opt_state)
  ti, tj, tsame = balanced_pairs(data['test'].labels, np.random.default_rng([cfg.seed, 1]))
  logits = head.apply(params, jnp.asarray(emb['test'][ti]), jnp.asarray(emb['test'][tj]))
  return {'train_loss': float(loss), 'test_accuracy': float(np.mean((logits > 0) == tsame)),
          'test_auc': float(metrics.roc_auc(logits, tsame))}


def plot_roc(curves: dict, path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
  for split, c in curves.items():
    d, same = c['distances'], c['same']
    ts = np.sort(np.unique(d))
    tpr = [np.mean(d[same] <= t) for t in ts]
    fpr = [np.mean(d[~same] <= t) for t in ts]
    ax1.plot([0, *fpr], [0, *tpr], label=f"{split} (AUC {c['auc']:.3f})")
  ax1.plot([0, 1], [0, 1], 'k:', lw=0.8)
  ax1.set_xlabel('false accept rate')
  ax1.set_ylabel('true accept rate')
  ax1.set_title('verification ROC (unseen identities)')
  ax1.legend()
  test = curves['test']
  bins = np.linspace(0, 4, 41)
  ax2.hist(test['distances'][test['same']], bins, alpha=0.6, label='same identity')
  ax2.hist(test['distances'][~test['same']], bins, alpha=0.6, label='different')
  ax2.set_xlabel('squared L2 distance')
  ax2.set_title('test pair distances')
  ax2.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def run(cfg: Any, workdir: str | pathlib.Path, *, quiet: bool = False) -> dict:
  from cnn_jax.models import weights as weights_lib
  from cnn_jax.train.xla_cache import enable_compilation_cache
  enable_compilation_cache(min_compile_secs=0.5)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  data = load_identities(cfg)
  t0 = time.perf_counter()
  model, state = train_embedding(cfg, data, workdir, quiet=quiet)
  train_s = time.perf_counter() - t0
  variables = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
  weights_lib.save_flat({k: np.asarray(v) for k, v in weights_lib.flat_paths(variables).items()},
                        workdir / 'embedding.npz')
  emb = {split: embed(model, state, ds.images) for split, ds in data.items()}
  verify = verification(emb, data, cfg.seed)
  curves = verify.pop('_curves')
  plot_roc(curves, workdir / 'roc.png')
  results = {
      'verification': verify,
      'one_shot': one_shot(emb['test'], data['test'].labels),
      'siamese': {kind: train_siamese_head(kind, emb, data, cfg) for kind in ('abs', 'chi2')},
      'unit_norm_max_error': float(np.max(np.abs(np.linalg.norm(emb['test'], axis=1) - 1))),
      'identities': {s: int(ds.num_classes) for s, ds in data.items()},
      'images': {s: len(ds) for s, ds in data.items()},
      'train_seconds': train_s, 'steps': cfg.steps, 'mining': cfg.mining,
  }
  (workdir / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
  (workdir / 'results.md').write_text(results_table(results) + '\n')
  return results


def results_table(r: dict) -> str:
  v, o, s = r['verification'], r['one_shot'], r['siamese']
  ids = r['identities']
  return '\n'.join([
      f"Unseen test identities: {ids['test']} (val {ids['val']}, train {ids['train']}); "
      f"{r['steps']} steps, {r['mining']} mining, {r['train_seconds']:.0f} s training.",
      '',
      '| task | metric | value | chance |',
      '|---|---|---|---|',
      f"| verification, threshold {v['threshold']:.3f} from val | test accuracy | "
      f"{100 * v['test_accuracy']:.1f}% | 50% |",
      f"| verification | test ROC AUC | {v['test_auc']:.3f} | 0.5 |",
      f"| one-shot, gallery of 1 per identity | NN accuracy | {100 * o['accuracy']:.1f}% | "
      f"{100 * o['chance']:.1f}% |",
      f"| siamese head on abs(f1 - f2) | test accuracy / AUC | "
      f"{100 * s['abs']['test_accuracy']:.1f}% / {s['abs']['test_auc']:.3f} | 50% / 0.5 |",
      f"| siamese head, chi-squared | test accuracy / AUC | "
      f"{100 * s['chi2']['test_accuracy']:.1f}% / {s['chi2']['test_auc']:.3f} | 50% / 0.5 |",
  ])


if __name__ == '__main__':
  from experiments.cli import run_script
  run_script('configs/face_verify.py', lambda cfg, d, quiet: run(cfg, d, quiet=quiet),
             results_table)
