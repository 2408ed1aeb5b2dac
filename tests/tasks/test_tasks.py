"""Every task through the one loop: short task_runs, best-by-headline, reports, data parallel."""

import functools
import json

import jax
import numpy as np
import pytest

from cnn_jax import tasks
from cnn_jax.ops import boxes as box_ops
from cnn_jax.tasks import detection, metric_learning, segmentation
from cnn_jax.train import loop
from cnn_jax.train.logging import read_metrics
from cnn_jax.train.restore import load_run
from tests.tasks.configs import SHARED_RUNS, tiny


@pytest.mark.parametrize('name', SHARED_RUNS)
def test_best_checkpoint_is_the_best_headline_step(task_runs, name):
  workdir, result = task_runs[name]
  rows = read_metrics(workdir / 'metrics.jsonl')
  evals = rows['eval']
  headline = result['headline']
  assert [r['step'] for r in evals] == [30, 60]
  mode = tasks.task_class(tiny(name).task.name).headline_mode  # landmarks' NME: lower is better
  best = (max if mode == 'max' else min)(r[headline] for r in evals)  # ties: any best step
  assert {r['step']: r[headline] for r in evals}[result['best_step']] == best
  losses = np.array([r['loss'] for r in rows['train']])
  assert np.isfinite(losses).all() and losses[-4:].mean() < losses[:4].mean()


def test_detection_report(task_runs, tmp_path):
  from experiments import detect
  workdir, result = task_runs['detect']
  r = detect.report(workdir, 'best', pictures=3)
  # The report re-evaluates the checkpoint the loop picked: the same mAP.
  evals = {e['step']: e['mAP50'] for e in read_metrics(workdir / 'metrics.jsonl')['eval']}
  assert r['mAP50'] == pytest.approx(evals[result['best_step']], abs=1e-9)
  assert set(r['ap50']) == {'disc', 'square', 'triangle', 'ring'}
  assert (workdir / 'detections.png').stat().st_size > 3000
  assert (workdir / 'pr_curves.png').stat().st_size > 3000
  table = (workdir / 'results.md').read_text()
  assert 'mAP@0.5' in table and '| class | AP50 | AP | #GT |' in table
  assert r['coco']['AP'] == pytest.approx(evals_coco(workdir)[result['best_step']], abs=1e-9)


def evals_coco(workdir):
  return {e['step']: e['coco_AP'] for e in read_metrics(workdir / 'metrics.jsonl')['eval']}


def test_segmentation_report(task_runs):
  from experiments import segment
  workdir, result = task_runs['segment']
  s = segment.report(workdir, 'latest', pictures=2)
  r = s['variants']['8s']
  assert r['mean_iou'] == pytest.approx(result['eval']['mean_iou'], abs=1e-6)
  assert len(r['iou']) == 5 and 0 <= r['pixel_accuracy'] <= 1
  assert (workdir / 'overlays.png').stat().st_size > 1000


def test_metric_learning_run_and_report(task_runs):
  from experiments import face_verify
  workdir, result = task_runs['face_verify']
  m = result['eval']
  assert m['auc'] > 0.6 and m['one_shot_accuracy'] > m['one_shot_chance']  # well above chance
  assert m['unit_norm_error'] < 1e-5
  r = face_verify.report(workdir, 'latest')
  assert r['verification']['auc'] == pytest.approx(m['auc'])
  for name in ('results.md', 'roc.png', 'embedding.npz'):
    assert (workdir / name).stat().st_size > 100
  assert 'one-shot' in (workdir / 'results.md').read_text()


# ---------------------------------------------------------------------------- data parallel

def _losses(workdir):
  return np.array([r['loss'] for r in read_metrics(workdir / 'metrics.jsonl')['train']])


# Faster R-CNN: jit only (its per-example sampling keys are what sharding could break;
# a pmap run would add two more compiles of the largest program in the suite). Captions:
# pmap only, where a per-device mean over non-pad tokens could stand in for the global
# one; jit computes the global mean by construction, and its sharding of token batches
# is the text CNN's (tests/tasks/test_text_classification.py).
@pytest.mark.slow
@pytest.mark.parametrize('name,modes', [('detect', ('jit', 'pmap')), ('segment', ('jit', 'pmap')),
                                        ('face_verify', ('jit', 'pmap')), ('faster_rcnn', ('jit',)),
                                        ('caption', ('pmap',))])
def test_eight_devices_jit_and_pmap_match_one(task_runs, name, modes, tmp_path):
  """The loss of the first steps on 8 simulated devices equals one device's (1e-5)."""
  one = _losses(task_runs[name][0])[:4]  # steps 2-5 (step 1 is the compile, not logged)
  for mode in modes:
    # The baseline's config and constant lr, stopped after 5 steps (the final
    # evaluation does not touch training).
    config = tiny(name, num_devices=8, parallel=mode, log_every=1, eval_every=0,
                  checkpoint_every=100, num_steps=5)
    loop.train_and_evaluate(config, tmp_path / mode, quiet=True)
    np.testing.assert_allclose(_losses(tmp_path / mode)[:4], one, rtol=1e-5, atol=1e-5,
                               err_msg=mode)


# ---------------------------------------------------------------------------- task pieces

def test_anchor_kmeans_and_box_flip():
  boxes = np.array([[[0, 0, .1, .1], [0, 0, .5, .4]], [[0, 0, .12, .1], [0, 0, 0, 0]]])
  labels = np.array([[0, 1], [2, -1]])
  anchors = detection.anchor_sizes(boxes, labels, 2)
  np.testing.assert_allclose(anchors, [[0.11, 0.1], [0.5, 0.4]], atol=1e-6)
  flipped = np.asarray(box_ops.flip_boxes_lr(np.array([[0.1, 0.2, 0.3, 0.5]])))
  np.testing.assert_allclose(flipped, [[0.1, 0.5, 0.3, 0.8]], atol=1e-6)
  with pytest.raises(ValueError, match='cannot give 4 anchors'):
    detection.anchor_sizes(boxes, labels, 4)


def test_detection_flip_moves_boxes_with_pixels():
  task = detection.Detection(tiny('detect'))
  img = np.zeros((1, 16, 16, 3), np.float32)
  img[0, 2:6, 1:4] = 1.0  # rows 2-5, columns 1-3
  box = np.array([[[2 / 16, 1 / 16, 6 / 16, 4 / 16]]], np.float32)
  flipped = set()
  for seed in range(6):  # some draws flip, some do not
    keys = jax.random.split(jax.random.key(seed), 1)
    out = task.augment(keys, {'image': img, 'boxes': box,
                              'box_labels': np.zeros((1, 1), np.int32)})
    ys, xs = np.nonzero(np.asarray(out['image'])[0, ..., 0])
    y0, x0, y1, x1 = np.asarray(out['boxes'])[0, 0] * 16
    assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == pytest.approx((y0, x0, y1, x1))
    flipped.add(bool(xs.min() != 1))
  assert flipped == {True, False}


def test_edge_band_and_hand_miou():
  masks = np.zeros((1, 6, 6), np.int32)
  masks[0, 2:4, 2:4] = 1
  band = segmentation.edge_band(masks, 1)
  assert band[0].sum() == 4 + 8 and band[0, 1, 1] == 0  # the object and its 4-neighbours
  c = tiny('segment')
  c.task.edge_radius = 1
  task = segmentation.Segmentation(c)
  task.label_names = ('background', 'thing')
  pred = masks.copy()
  pred[0, 2, 2] = 0  # one object pixel missed
  logits = jax.nn.one_hot(pred, 2)
  batch = {'segmentation': masks, 'edge': band, 'mask': np.ones(1, bool)}
  r = task.eval_metrics(jax.device_get(task.eval_outputs(logits, batch))['sums'], {})
  # class 1: IoU 3/4; background: 32/33.
  assert [r['iou_background'], r['iou_thing']] == pytest.approx([32 / 33, 3 / 4])
  assert r['mean_iou'] == pytest.approx((32 / 33 + 0.75) / 2)
  assert r['edge_accuracy'] == pytest.approx(11 / 12)
  ignored = {**batch, 'segmentation': np.where(band, 255, masks)}
  r2 = task.eval_metrics(jax.device_get(task.eval_outputs(logits, ignored))['sums'], {})
  assert r2['pixel_accuracy'] == 1.0  # the only error sits in the ignored band
  padded = {**batch, 'mask': np.zeros(1, bool)}  # a padding row counts nothing
  assert int(task.eval_outputs(logits, padded)['sums']['confusion'].sum()) == 0


def test_pk_batch_balanced_pairs_one_shot():
  labels = np.repeat(np.arange(6), [5, 5, 5, 5, 2, 5])
  idx = metric_learning.pk_batch(labels, 3, 4, np.random.default_rng(0))
  picked = labels[idx].reshape(3, 4)
  assert (picked == picked[:, :1]).all() and len(set(picked[:, 0])) == 3
  i, j, same = metric_learning.balanced_pairs(labels, np.random.default_rng(0))
  assert same.sum() == (~same).sum() == 4 * 10 + 1 + 10  # every positive pair, as many negatives
  assert np.array_equal(labels[i] == labels[j], same) and (i < j).all()
  i, j, same = metric_learning.balanced_pairs(labels, np.random.default_rng(0), max_pairs=10)
  assert len(same) == 10 and same.sum() == 5
  emb = np.array([[1, 0], [0, 1], [0.9, 0.1], [0.2, 0.8], [0.8, 0.2]], np.float32)
  out = metric_learning.one_shot(emb, np.array([0, 1, 0, 1, 1]))
  assert out == {'accuracy': pytest.approx(2 / 3), 'identities': 2, 'probes': 3, 'chance': 0.5}


def test_metric_learning_sampler_is_pure_in_the_step():
  task = metric_learning.MetricLearning(tiny('face_verify'))
  train, ev = task.load_data()
  sample = functools.partial(task.sampler(train), 0)
  assert np.array_equal(sample(5), sample(5)) and not np.array_equal(sample(5), sample(6))
  assert len(sample(0)) == 16 and len(np.unique(train.labels[sample(0)])) == 4
  assert not np.array_equal(task.sampler(train)(1, 5), sample(5))  # each seed its own batches
  assert set(np.unique(ev.extras['group'])) == {0, 1}
  # Unseen identities: no eval image shares a label with training.
  assert ev.num_classes == 8 and train.num_classes == 8


def test_identity_folder_is_split_by_person(tmp_path):
  from PIL import Image
  rng = np.random.default_rng(0)
  for p in range(8):
    folder = tmp_path / 'people' / f'person{p}'
    folder.mkdir(parents=True)
    for k in range(3):
      Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(
          folder / f'{k}.png')
  c = tiny('face_verify')
  c.data.name, c.data.root, c.data.train_split = 'image_folder', str(tmp_path), 'people'
  c.task.val_identities = c.task.test_identities = 2
  c.task.identities_per_batch = 2
  c.batch_size = 8
  c.task.images_per_identity = 4
  parts = metric_learning.MetricLearning(c)._identities()
  names = {s: set(ds.class_names) for s, ds in parts.items()}
  assert [len(names[s]) for s in ('train', 'val', 'test')] == [4, 2, 2]
  assert not (names['train'] & names['val']) and not (names['val'] & names['test'])
  assert parts['test'].images.shape == (6, 16, 16, 3)
  c.task.val_identities = c.task.test_identities = 5
  with pytest.raises(ValueError, match='has 8 identities; need at least 12'):
    metric_learning.MetricLearning(c)._identities()


def test_batch_size_must_be_p_times_k():
  with pytest.raises(ValueError, match=r'must be task.identities_per_batch x'):
    metric_learning.MetricLearning(tiny('face_verify', batch_size=12))


def test_detection_trains_with_the_course_loss(tmp_path, monkeypatch):
  """``task.loss='course'`` (YOLO v1's sum-squared error) runs through the loop."""
  from cnn_jax.ops import losses
  traced = []
  course = losses.yolo_course_loss

  def spy(*args, **kwargs):  # runs when the step is traced: proves which loss trains
    traced.append(kwargs)
    return course(*args, **kwargs)

  monkeypatch.setattr(losses, 'yolo_course_loss', spy)
  c = tiny('detect', num_steps=2, num_devices=1, eval_every=0, checkpoint_every=100)
  c.task.loss, c.task.coco_metrics = 'course', False
  c.data.num_train, c.data.num_eval = 32, 16
  result = loop.train_and_evaluate(c, tmp_path / 'course', quiet=True)
  rows = read_metrics(tmp_path / 'course' / 'metrics.jsonl')['train']
  assert result['steps'] == 2 and rows and all(np.isfinite(r['loss']) for r in rows)
  assert 0.0 <= result['eval']['mAP50'] <= 1.0
  assert traced and traced[0] == {'coord_weight': 5.0, 'noobj_weight': 0.5}


def test_detection_loss_choice_is_checked():
  assert detection.Detection.defaults().loss == 'modern'  # the default is unchanged
  c = tiny('detect')
  c.task.loss = 'yolo9000'
  task = detection.Detection(c)
  task.anchors = np.array([[0.2, 0.2], [0.5, 0.5]], np.float32)
  batch = {'boxes': np.zeros((1, 1, 4), np.float32), 'box_labels': np.full((1, 1), -1, np.int32)}
  with pytest.raises(ValueError, match="task.loss='yolo9000' is not valid; choose one of "
                     'modern, course'):
    task.loss(np.zeros((1, 4, 4, 2, 9), np.float32), batch, {}, None)
  # Both losses on the same empty scene: BCE at logit 0 is log 2 per slot, the squared
  # error sigmoid(0)^2 = 1/4; each times lambda_noobj over 4 x 4 x 2 slots.
  out = np.zeros((1, 4, 4, 2, 9), np.float32)
  for kind, per_slot in (('modern', np.log(2.0)), ('course', 0.25)):
    c.task.loss = kind
    total, parts = jax.jit(lambda o: task.loss(o, batch, {}, None))(out)  # jit: op-by-op is slow
    assert float(total) == pytest.approx(0.5 * 32 * per_slot, rel=1e-6), kind
    assert set(parts) == {'obj', 'noobj', 'box', 'cls'}


def test_task_rejects_augmentation_it_cannot_apply():
  c = tiny('detect')
  c.augment.crop_padding = 4
  with pytest.raises(ValueError, match="task 'detection' cannot apply augment.crop_padding"):
    detection.Detection(c)


def test_loaded_run_config_round_trips(task_runs):
  workdir, _ = task_runs['detect']
  run = load_run(workdir)
  assert run.config.task.name == 'detection' and run.num_params > 0
  assert json.loads((workdir / 'config.json').read_text())['model']['name'] == 'yolo'
