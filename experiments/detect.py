r"""YOLO-style object detection on synthetic scenes: train, mAP@0.5, pictures.

  python -m experiments.detect --config=configs/detect.py --workdir=workdirs/detect

A fully convolutional :class:`~cnn_jax.models.yolo.YOLO` predicts every grid
cell's boxes in one pass; targets come from :func:`cnn_jax.ops.boxes.yolo_encode`
(inside the jitted step, after the random horizontal flip of images and
boxes), the loss is :func:`cnn_jax.ops.losses.yolo_loss`, detections are
decoded and filtered by per-class NMS (:func:`cnn_jax.ops.boxes.detect`), and
:func:`cnn_jax.ops.boxes.average_precision` gives per-class AP and mAP@0.5.
Writes ``metrics.jsonl``, ``results.json``, ``results.md`` and
``detections.png`` (predictions solid with class and score, ground truth dashed).
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

from cnn_jax.ops import boxes as box_ops
from cnn_jax.ops import losses
from experiments.fit import fit

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def anchor_sizes(boxes: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
  """``k`` anchor ``(h, w)`` by k-means (1 - IoU distance, YOLOv2) of the real boxes' sizes."""
  hw = (boxes[..., 2:] - boxes[..., :2])[labels >= 0]
  rng = np.random.default_rng(seed)
  centres = hw[rng.choice(len(hw), k, replace=False)]
  for _ in range(30):
    inter = np.minimum(hw[:, None, 0], centres[None, :, 0]) * np.minimum(hw[:, None, 1],
                                                                        centres[None, :, 1])
    iou = inter / (hw.prod(1)[:, None] + centres.prod(1)[None] - inter)
    assign = iou.argmax(1)
    centres = np.stack([hw[assign == j].mean(0) if np.any(assign == j) else centres[j]
                        for j in range(k)])
  return centres[np.argsort(centres.prod(1))].astype(np.float32)


def flip_boxes(b: jax.Array) -> jax.Array:
  """Corner boxes of a left-right mirrored image."""
  return jnp.stack([b[..., 0], 1.0 - b[..., 3], b[..., 2], 1.0 - b[..., 1]], axis=-1)


def make_step(model, tx, anchors: jax.Array, cfg: Any):
  grid = cfg.image_size // 2 ** len(cfg.widths)
  encode = jax.vmap(lambda b, l: box_ops.yolo_encode(b, l, grid=grid, anchors=anchors,
                                                     num_classes=cfg.num_classes))

  def step(state, batch, rng):
    from cnn_jax.data import augment
    x = augment.normalize(batch['image'], MEAN, STD)
    b = batch['boxes']
    if cfg.flip:
      flip = jax.random.bernoulli(rng, 0.5, (x.shape[0],))
      x = jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)
      b = jnp.where(flip[:, None, None], flip_boxes(b), b)
    target = encode(b, batch['labels'])

    def loss_fn(params):
      out, mutated = model.apply({'params': params, 'batch_stats': state.batch_stats}, x,
                                 train=True, mutable=['batch_stats'])
      total, parts = losses.yolo_loss(out, target, coord_weight=cfg.coord_weight,
                                      noobj_weight=cfg.noobj_weight)
      return total, (parts, mutated['batch_stats'])

    (loss, (parts, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params)
    with jax.numpy_dtype_promotion('standard'):  # optax mixes int32 counts and floats
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
    return state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                         batch_stats=batch_stats, opt_state=opt_state), {'loss': loss, **parts}

  return jax.jit(step)


def predict(model, state, images: np.ndarray, anchors: jax.Array, cfg: Any, batch: int = 250):
  """Per image ``(boxes, scores, classes)`` numpy arrays of the valid detections."""
  from cnn_jax.data import augment
  detect = jax.vmap(lambda o: box_ops.detect(o, anchors, iou_threshold=cfg.iou_threshold,
                                             score_threshold=cfg.score_threshold,
                                             max_outputs=cfg.max_detections))
  fn = jax.jit(lambda v, x: detect(model.apply(v, augment.normalize(x, MEAN, STD),
                                               train=False)))
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  out = []
  for s in range(0, len(images), batch):
    b, sc, c, valid = jax.device_get(fn(variables, images[s:s + batch]))
    out += [(b[i][valid[i]], sc[i][valid[i]], c[i][valid[i]]) for i in range(len(b))]
  return out


def draw(images: np.ndarray, dets, gts, class_names, path: pathlib.Path,
         min_score: float = 0.3) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.patches as patches
  import matplotlib.pyplot as plt
  n = len(images)
  fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6))
  size = images.shape[1]
  colours = plt.cm.tab10.colors
  for ax, img, (db, ds, dc), (gb, gc) in zip(np.atleast_1d(axes), images, dets, gts):
    ax.imshow(img)
    for box, c in zip(gb[gc >= 0], gc[gc >= 0]):
      y0, x0, y1, x1 = box * size
      ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls='--', lw=1,
                                     ec='white'))
    for box, s, c in zip(db, ds, dc):
      if s < min_score:
        continue
      y0, x0, y1, x1 = np.clip(box, 0, 1) * size
      ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.5,
                                     ec=colours[int(c) % 10]))
      ax.text(x0, y0, f'{class_names[int(c)]} {s:.2f}', fontsize=6, color='white',
              bbox=dict(fc=colours[int(c) % 10], ec='none', pad=0.5))
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run(cfg: Any, workdir: str | pathlib.Path, *, quiet: bool = False) -> dict:
  from cnn_jax.data.synthetic import load_synthetic
  from cnn_jax.models.yolo import YOLO
  from cnn_jax.train.state import create_train_state
  from cnn_jax.train.xla_cache import enable_compilation_cache
  enable_compilation_cache(min_compile_secs=0.5)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  if cfg.image_size % 2 ** len(cfg.widths):
    raise ValueError(f'image_size={cfg.image_size} must be a multiple of 2**len(widths) = '
                     f'{2 ** len(cfg.widths)}.')
  kw = dict(image_size=cfg.image_size, num_classes=cfg.num_classes,
            objects_per_image=tuple(cfg.objects_per_image), seed=cfg.seed)
  train = load_synthetic('train', num_examples=cfg.num_train, **kw)
  test = load_synthetic('test', num_examples=cfg.num_test, **kw)
  anchors = jnp.asarray(anchor_sizes(train.extras['boxes'], train.extras['box_labels'],
                                     cfg.num_anchors, cfg.seed))
  model = YOLO(num_classes=cfg.num_classes, num_anchors=cfg.num_anchors,
               widths=tuple(cfg.widths), head_width=cfg.head_width)
  schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, max(1, cfg.steps // 20), cfg.steps)
  tx = optax.adam(schedule)
  state = jax.jit(lambda k: create_train_state(
      model, tx, k, (1, cfg.image_size, cfg.image_size, 3)))(jax.random.key(cfg.seed))
  arrays = {'image': jax.device_put(train.images),
            'boxes': jax.device_put(train.extras['boxes']),
            'labels': jax.device_put(train.extras['box_labels'])}

  def next_batch(i):
    epoch, start = divmod(i * cfg.batch_size, len(train) - cfg.batch_size + 1)
    idx = np.random.default_rng([cfg.seed, epoch]).permutation(len(train))[
        start:start + cfg.batch_size]
    return {k: v[idx] for k, v in arrays.items()}

  t0 = time.perf_counter()
  state = fit(make_step(model, tx, anchors, cfg), state, next_batch, steps=cfg.steps,
              batch_size=cfg.batch_size, workdir=workdir, seed=cfg.seed,
              log_every=cfg.log_every, quiet=quiet)
  train_s = time.perf_counter() - t0
  dets = predict(model, state, test.images, anchors, cfg)
  gts = list(zip(test.extras['boxes'], test.extras['box_labels']))
  m_ap, ap = box_ops.average_precision(dets, gts, cfg.num_classes, iou_threshold=0.5)
  names = test.class_names
  draw(test.images[:cfg.num_pictures], dets[:cfg.num_pictures], gts[:cfg.num_pictures], names,
       workdir / 'detections.png')
  results = {'mAP50': m_ap, 'ap50': {names[c]: float(ap[c]) for c in range(cfg.num_classes)},
             'anchors_hw': np.asarray(anchors).round(4).tolist(), 'steps': cfg.steps,
             'train_seconds': train_s, 'test_images': len(test),
             'test_objects': int((test.extras['box_labels'] >= 0).sum()),
             'params': int(sum(x.size for x in jax.tree.leaves(state.params)))}
  (workdir / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
  (workdir / 'results.md').write_text(results_table(results) + '\n')
  return results


def results_table(r: dict) -> str:
  head = '| class | ' + ' | '.join(r['ap50']) + ' | **mAP@0.5** |'
  rule = '|---' * (len(r['ap50']) + 2) + '|'
  row = '| AP@0.5 | ' + ' | '.join(f'{v:.3f}' for v in r['ap50'].values()) + \
      f" | **{r['mAP50']:.3f}** |"
  return '\n'.join([head, rule, row, '',
                    f"{r['test_images']} test scenes, {r['test_objects']} objects; "
                    f"{r['steps']} steps in {r['train_seconds']:.0f} s; {r['params']:,} params."])


if __name__ == '__main__':
  from experiments.cli import run_script
  run_script('configs/detect.py', lambda cfg, d, quiet: run(cfg, d, quiet=quiet),
             results_table)
