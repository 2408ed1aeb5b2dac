"""The R-CNN family: torchvision's parameter counts, bad input, zero-box images, and a
few training steps of Mask R-CNN (RPN, RoIAlign, box and mask heads) through the loop."""

import functools
import math
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import get_model
from cnn_jax.models.rcnn import roi_targets, rpn_targets
from cnn_jax.ops import anchors as anchor_ops
from cnn_jax.tasks import get_task
from cnn_jax.train import loop
from tests.tasks.configs import tiny, two_stage_kwargs


def _param_count(model, size=64):
  v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))
  return sum(math.prod(x.shape) for x in jax.tree.leaves(v['params']))


@pytest.mark.parametrize('name,count', [('faster_rcnn', 41_755_286), ('mask_rcnn', 44_401_393)])
def test_resnet50_fpn_has_torchvisions_parameter_count(name, count):
  # torchvision's documented counts: FrozenBatchNorm affines are buffers, 91 classes with bg.
  model = get_model(name, backbone_kwargs={'frozen_bn': True}, num_classes=90)
  assert _param_count(model) == count


def test_backbone_without_the_levels_is_a_one_line_error():
  model = get_model('faster_rcnn', **two_stage_kwargs(taps=('layer1', 'conv5')))
  with pytest.raises(ValueError, match=r"no feature level\(s\) \['conv5'\]; it has layer1, "
                                       'layer2, layer3, layer4'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))


def test_anchor_levels_must_match_the_pyramid():
  model = get_model('faster_rcnn', **two_stage_kwargs(anchor_sizes=((16,), (32,))))
  with pytest.raises(ValueError, match='anchor_sizes has 2 levels but the RPN sees 3'):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))


def test_roi_pool_needs_one_level():
  model = get_model('faster_rcnn', **two_stage_kwargs(roi_op='pool'))
  with pytest.raises(ValueError, match="roi_op='pool' reads one feature map"):
    jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))


def test_an_image_without_boxes_is_all_background():
  anchors = jnp.asarray(anchor_ops.anchor_grid((4, 4), 8, (16,), (1.0,)))
  gt, labels = jnp.zeros((3, 4)), jnp.full((3,), -1)
  # Jitted as the step runs them (one compile each instead of one per op).
  rpn = jax.jit(functools.partial(rpn_targets, fg_iou=0.7, bg_iou=0.3, samples=8,
                                  positive_fraction=0.5))(
      jax.random.key(0), anchors, gt, labels >= 0)
  assert not np.any(rpn['labels'] == 1) and int(rpn['sampled'].sum()) == 8
  roi = jax.jit(functools.partial(roi_targets, fg_iou=0.5, bg_iou=0.5, samples=8,
                                  positive_fraction=0.25))(
      jax.random.key(1), anchors, jnp.ones(16, bool), gt, labels)
  assert np.all(roi['labels'] == 0) and np.all(roi['valid']) and np.all(roi['matched'] == -1)
  assert np.all(np.isfinite(roi['deltas']))


def test_ground_truth_joins_the_proposals_as_a_positive():
  proposals = jnp.asarray([[0.0, 0.0, 4.0, 4.0]])
  gt = jnp.asarray([[10.0, 10.0, 20.0, 30.0], [0.0, 0.0, 0.0, 0.0]])
  roi = roi_targets(jax.random.key(0), proposals, jnp.ones(1, bool), gt, jnp.asarray([2, -1]),
                    fg_iou=0.5, bg_iou=0.5, samples=4, positive_fraction=0.5)
  # Row 0: the gt box itself (label 2 + 1 for background), delta 0; then the background proposal.
  np.testing.assert_allclose(roi['rois'][0], gt[0])
  assert roi['labels'].tolist()[:2] == [3, 0] and roi['valid'].tolist() == [True, True, False,
                                                                             False]
  np.testing.assert_allclose(roi['deltas'][0], 0.0, atol=1e-6)


def test_bfloat16_compute_traces_train_step_and_inference():
  """--config.dtype=bfloat16: convolutions, RoIAlign and the heads in bf16, params and outputs
  fp32 (traced abstractly: a dtype clash anywhere in the loss, its gradient or NMS fails here)."""
  model = get_model('mask_rcnn', dtype=jnp.bfloat16, num_classes=3,
                    **two_stage_kwargs(mask_layers=(8,)))
  x = jnp.zeros((2, 32, 32, 3))
  targets = {'boxes': jnp.tile(jnp.array([[0.1, 0.1, 0.5, 0.5], [0.5, 0.5, 0.9, 0.9]]), (2, 1, 1)),
             'labels': jnp.array([[0, 1]] * 2), 'keys': jax.random.split(jax.random.key(1), 2),
             'masks': jnp.ones((2, 2, 32, 32), bool)}
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  assert {p.dtype for p in jax.tree.leaves(variables['params'])} == {jnp.dtype(jnp.float32)}

  def loss(params, batch_stats):
    out, _ = model.apply({'params': params, 'batch_stats': batch_stats}, x, train=True,
                         targets=targets, mutable=['batch_stats'])
    return sum(jnp.sum(o['logits'].astype(jnp.float32)) for k, o in out.items()
               if k in ('rpn', 'roi', 'mask'))

  grads = jax.eval_shape(jax.grad(loss), variables['params'], variables['batch_stats'])
  assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
  det = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
  assert (det['boxes'].shape, det['masks'].shape[:2]) == ((2, 5, 4), (2, 5))


@pytest.fixture(scope='module')
def mask_rcnn_run(run_once):
  """``(config, result, workdir)`` of a 3-step run, trained once for both xdist workers."""
  c = tiny('mask_rcnn', num_steps=3, eval_every=0, checkpoint_every=3, num_devices=1)

  def train(folder):
    result = loop.train_and_evaluate(c, folder, quiet=True)
    return {'workdir': str(folder), **{k: result[k] for k in ('steps', 'train', 'eval')}}

  result = run_once('mask-rcnn-run', train)
  return c, result, pathlib.Path(result['workdir'])


def test_mask_rcnn_trains_and_evaluates_masks(mask_rcnn_run):
  _, result, _ = mask_rcnn_run
  train, m = result['train'], result['eval']
  assert result['steps'] == 3
  for k in ('rpn_obj', 'rpn_box', 'cls', 'box', 'mask', 'loss'):
    assert math.isfinite(train[k]), k
  assert 0.0 <= m['mask_AP50'] <= 1.0 and 0.0 <= m['mAP50'] <= 1.0
  assert 'coco_AP' in m and 'mask_AP' in m


def test_sampling_keys_come_from_the_step(mask_rcnn_run):
  # The samplers draw from per-example keys in the batch: the same keys, the same RoIs.
  c, _, _ = mask_rcnn_run
  task = get_task(c)
  batch = {'image': jnp.zeros((2, 32, 32, 3)), 'boxes': jnp.zeros((2, 3, 4)),
           'box_labels': -jnp.ones((2, 3), jnp.int32),
           'instance_masks': jnp.zeros((2, 3, 32, 32), bool)}
  keys = jax.random.split(jax.random.key(0), 2)
  a, b = task.augment(keys, batch), task.augment(keys, batch)
  np.testing.assert_array_equal(jax.random.key_data(a['sample_key']),
                                jax.random.key_data(b['sample_key']))
  assert set(task.model_inputs(a, True)['targets']) == {'boxes', 'labels', 'keys', 'masks'}
  assert task.model_inputs(a, False) == {}


def test_torchvision_names_round_trip_through_safetensors(tmp_path):
  from cnn_jax.models import weights
  model = get_model('mask_rcnn', **two_stage_kwargs(mask_layers=(8, 8),
                                                backbone_kwargs={'width': 4, 'frozen_bn': True}))
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), shapes)
  names = weights.names_for('mask_rcnn', variables)
  assert set(names) == set(weights.flat_paths(variables))
  keys = {str(k) for k in names.values()}
  for key in ('backbone.body.conv1.weight', 'backbone.body.bn1.weight',
              'backbone.body.layer1.0.bn1.running_var', 'backbone.fpn.inner_blocks.1.0.bias',
              'backbone.fpn.layer_blocks.0.0.weight', 'rpn.head.conv.0.0.weight',
              'rpn.head.bbox_pred.weight', 'roi_heads.box_head.fc6.weight',
              'roi_heads.box_predictor.cls_score.bias', 'roi_heads.mask_head.1.0.weight',
              'roi_heads.mask_predictor.conv5_mask.weight',
              'roi_heads.mask_predictor.mask_logits.bias'):
    assert key in keys, key
  flat = weights.export_flat(variables, names)
  p = variables['params']
  # Box deltas: torchvision's (dx, dy, dw, dh) per class <- our (dy, dx, dh, dw).
  ours = np.asarray(p['box_predictor']['bbox_pred']['bias'])
  np.testing.assert_array_equal(flat['roi_heads.box_predictor.bbox_pred.bias'][:4],
                                ours[[1, 0, 3, 2]])
  # ConvTranspose2d weights are (in, out, kh, kw).
  k = np.asarray(p['mask_predictor']['conv5_mask']['kernel'])
  np.testing.assert_array_equal(flat['roi_heads.mask_predictor.conv5_mask.weight'],
                                k.transpose(2, 3, 0, 1))
  path = tmp_path / 'maskrcnn.safetensors'
  weights.save_flat(flat, path)
  zeros = jax.tree.map(jnp.zeros_like, variables)
  loaded = weights.load_pretrained('mask_rcnn', zeros, path)
  jax.tree.map(np.testing.assert_array_equal, loaded, variables)


def test_mask_upsampling_is_the_transposed_conv():
  from cnn_jax.models.rcnn import ConvTranspose2x2
  from cnn_jax.ops import conv
  x = jax.random.normal(jax.random.key(0), (2, 3, 4, 5))
  m = ConvTranspose2x2()
  v = m.init(jax.random.key(1), x)
  v = jax.tree.map(lambda a: a + 0.1, v)  # a non-zero bias too
  p = v['params']
  np.testing.assert_allclose(m.apply(v, x), conv.conv_transpose2d(x, p['kernel'], p['bias'],
                                                                  stride=2), atol=1e-5)


def test_detectors_benchmark_times_a_trained_run(mask_rcnn_run, tmp_path):
  from benchmarks import detectors
  _, _, workdir = mask_rcnn_run
  out = detectors.main([str(workdir), '--batch', '2', '--repeats', '1',
                        '--out', str(tmp_path / 'd.json')])
  row = out['runs'][workdir.name]
  assert row['img_per_s'] > 0 and row['params'] > 0 and 'mask_AP50' in row
  assert (tmp_path / 'd.json').exists()


def test_detection_report_draws_boxes_and_masks(mask_rcnn_run):
  from experiments import detect
  _, result, workdir = mask_rcnn_run
  r = detect.report(workdir, 'latest', pictures=2)
  assert r['mAP50'] == pytest.approx(result['eval']['mAP50'], abs=1e-9)
  assert 'anchors_hw' not in r  # the family's anchors are a grid, not YOLO's k-means sizes
  for name in ('detections.png', 'masks.png', 'pr_curves.png'):
    assert (workdir / name).stat().st_size > 2000, name


def test_instance_vs_semantic_compare_scores_both_runs(mask_rcnn_run, task_runs, tmp_path):
  from experiments import instances
  _, result, workdir = mask_rcnn_run
  fcn_dir, _ = task_runs['segment']  # the same scenes' generator, 32 px, 4 classes
  r = instances.compare(workdir, fcn_dir, tmp_path, pictures=3, which='latest')
  assert r['mask_rcnn']['mask_AP50'] == pytest.approx(result['eval']['mask_AP50'])
  for key in ('mask_rcnn', 'fcn'):
    m = r[key]
    assert 0 <= m['mask_AP50'] <= 1 and 0 <= m['mean_iou'] <= 1 and 0 <= m['separated'] <= 1
    assert len(m['iou']) == 5
  assert (tmp_path / 'instances.png').stat().st_size > 1000
  assert '| mask_rcnn | instance |' in (tmp_path / 'results.md').read_text()
  with pytest.raises(ValueError, match='pass a configs/mask_rcnn.py run first'):
    instances.compare(fcn_dir, workdir, tmp_path)
