r"""FCN-32s vs 16s vs 8s semantic segmentation on synthetic masks: train, mIoU, overlays.

  python -m experiments.segment --config=configs/segment.py --workdir=workdirs/segment

Each variant of :class:`~cnn_jax.models.fcn.FCN` trains with per-pixel softmax
cross entropy that skips the ignore label (``void_border``: a 1-px band at
object borders is labelled 255, as in PASCAL VOC) and is evaluated on held-out
scenes: pixel accuracy, per-class and mean IoU (``cnn_jax.ops.metrics``, ignore
label excluded) and the accuracy on pixels within 2 px of an object edge.
Writes ``<variant>/metrics.jsonl``, ``results.json``, ``results.md`` and
``overlays.png`` (image, ground truth, one prediction per variant).
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

from cnn_jax.ops import losses, metrics
from experiments.fit import fit

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def edge_band(masks: np.ndarray, radius: int) -> np.ndarray:
  """(N, H, W) bool: pixels within ``radius`` (Chebyshev) of a label change."""
  m = np.asarray(masks)
  edge = np.zeros(m.shape, bool)
  edge[:, 1:, :] |= m[:, 1:, :] != m[:, :-1, :]
  edge[:, :-1, :] |= m[:, 1:, :] != m[:, :-1, :]
  edge[:, :, 1:] |= m[:, :, 1:] != m[:, :, :-1]
  edge[:, :, :-1] |= m[:, :, 1:] != m[:, :, :-1]
  band = edge.copy()
  for _ in range(radius - 1):
    grown = band.copy()
    grown[:, 1:] |= band[:, :-1]
    grown[:, :-1] |= band[:, 1:]
    grown[:, :, 1:] |= band[:, :, :-1]
    grown[:, :, :-1] |= band[:, :, 1:]
    band = grown
  return band


def make_step(model, tx, cfg: Any):
  def step(state, batch, rng):
    from cnn_jax.data import augment
    del rng
    x = augment.normalize(batch['image'], MEAN, STD)
    labels = batch['mask']
    valid = labels != cfg.ignore_index

    def loss_fn(params):
      logits, mutated = model.apply({'params': params, 'batch_stats': state.batch_stats}, x,
                                    train=True, mutable=['batch_stats'])
      loss = losses.softmax_cross_entropy(logits, jnp.where(valid, labels, 0), where=valid)
      return loss, (logits, mutated['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    with jax.numpy_dtype_promotion('standard'):  # optax mixes int32 counts and floats
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
    acc = metrics.pixel_accuracy(jnp.argmax(logits, -1), labels, cfg.ignore_index)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=batch_stats, opt_state=opt_state), {'loss': loss,
                                                                         'pixel_acc': acc}

  return jax.jit(step)


def predict(model, state, images: np.ndarray, batch: int = 100) -> np.ndarray:
  from cnn_jax.data import augment
  fn = jax.jit(lambda v, x: jnp.argmax(model.apply(v, augment.normalize(x, MEAN, STD),
                                                   train=False), -1))
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  return np.concatenate([np.asarray(fn(variables, images[s:s + batch]))
                         for s in range(0, len(images), batch)])


def evaluate(pred: np.ndarray, masks: np.ndarray, num_labels: int, ignore_index: int) -> dict:
  miou, per_class = metrics.mean_iou(pred, masks, num_labels, ignore_index=ignore_index)
  band = edge_band(np.where(masks == ignore_index, 0, masks), 2) & (masks != ignore_index)
  return {'pixel_accuracy': float(metrics.pixel_accuracy(pred, masks, ignore_index)),
          'mean_iou': float(miou), 'iou': [float(v) for v in np.asarray(per_class)],
          # NaN when every edge pixel is ignored (void borders of radius >= 2).
          'edge_accuracy': float(np.mean(pred[band] == masks[band])) if band.any() else np.nan}


def overlay(masks: np.ndarray, num_labels: int) -> np.ndarray:
  """Label maps -> RGB in [0, 1] (background black, ignore white)."""
  import matplotlib.pyplot as plt
  colours = np.array([(0, 0, 0), *plt.cm.tab10.colors[:num_labels - 1]], np.float32)
  out = colours[np.clip(masks, 0, num_labels - 1)]
  out[masks >= num_labels] = 1.0
  return out


def run(cfg: Any, workdir: str | pathlib.Path, *, quiet: bool = False) -> dict:
  from cnn_jax.data.synthetic import load_synthetic
  from cnn_jax.models import explain
  from cnn_jax.models.fcn import FCN, VARIANTS
  from cnn_jax.train.state import create_train_state
  from cnn_jax.train.xla_cache import enable_compilation_cache
  from PIL import Image
  enable_compilation_cache(min_compile_secs=0.5)
  bad = [v for v in cfg.variants if v not in VARIANTS]
  if bad:
    raise ValueError(f'unknown FCN variants {bad}; choose from {VARIANTS}.')
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  kw = dict(image_size=cfg.image_size, num_classes=cfg.num_classes,
            objects_per_image=tuple(cfg.objects_per_image), seed=cfg.seed)
  train = load_synthetic('train', num_examples=cfg.num_train, **kw)
  test = load_synthetic('test', num_examples=cfg.num_test, **kw)
  num_labels = cfg.num_classes + 1

  def with_void(masks):
    masks = masks.astype(np.int32)
    return np.where(edge_band(masks, 1), cfg.ignore_index, masks) if cfg.void_border else masks

  train_masks, test_masks = with_void(train.extras['masks']), with_void(test.extras['masks'])
  arrays = {'image': jax.device_put(train.images), 'mask': jax.device_put(train_masks)}

  def next_batch(i):
    epoch, start = divmod(i * cfg.batch_size, len(train) - cfg.batch_size + 1)
    idx = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))[
        start:start + cfg.batch_size]
    return {k: v[idx] for k, v in arrays.items()}

  results, preds = {}, {}
  for variant in cfg.variants:
    model = FCN(num_classes=num_labels, variant=variant, backbone=cfg.backbone,
                backbone_kwargs=cfg.backbone_kwargs.to_dict())
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, max(1, cfg.steps // 20),
                                                  cfg.steps)
    tx = optax.adam(schedule)
    state = jax.jit(lambda k: create_train_state(
        model, tx, k, (1, cfg.image_size, cfg.image_size, 3)))(jax.random.key(cfg.seed))
    t0 = time.perf_counter()
    state = fit(make_step(model, tx, cfg), state, next_batch, steps=cfg.steps,
                batch_size=cfg.batch_size, workdir=workdir / variant, seed=cfg.seed,
                log_every=cfg.log_every, quiet=quiet)
    preds[variant] = predict(model, state, test.images)
    results[variant] = {**evaluate(preds[variant], test_masks, num_labels, cfg.ignore_index),
                        'train_seconds': time.perf_counter() - t0,
                        'params': int(sum(x.size for x in jax.tree.leaves(state.params)))}
  k = cfg.num_pictures
  panels = [test.images[:k].astype(np.float32) / 255.0, overlay(test_masks[:k], num_labels)]
  panels += [overlay(preds[v][:k], num_labels) for v in cfg.variants]
  # Rows: image, ground truth, then one row per variant; columns: test scenes.
  grid = explain.tile(np.concatenate(panels), cols=k, pad=2)
  Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8)).resize(
      (grid.shape[1] * 3, grid.shape[0] * 3), Image.Resampling.NEAREST).save(
          workdir / 'overlays.png')
  summary = {'variants': results, 'steps': cfg.steps, 'test_images': len(test),
             'labels': ['background', *test.class_names], 'void_border': cfg.void_border}
  (workdir / 'results.json').write_text(json.dumps(summary, indent=2) + '\n')
  (workdir / 'results.md').write_text(results_table(summary) + '\n')
  return summary


def results_table(s: dict) -> str:
  lines = ['| FCN | pixel acc. | mean IoU | edge-band acc. (2 px) | ' +
           ' | '.join(f'IoU {n}' for n in s['labels']) + ' | train s |',
           '|---' * (5 + len(s['labels'])) + '|']
  for v, r in s['variants'].items():
    lines.append(f"| {v} | {100 * r['pixel_accuracy']:.1f}% | {r['mean_iou']:.3f} | "
                 f"{100 * r['edge_accuracy']:.1f}% | " +
                 ' | '.join(f'{x:.3f}' for x in r['iou']) + f" | {r['train_seconds']:.0f} |")
  return '\n'.join(lines)


if __name__ == '__main__':
  from experiments.cli import run_script
  run_script('configs/segment.py', lambda cfg, d, quiet: run(cfg, d, quiet=quiet),
             results_table)
