"""YOLO and FCN train from every annotated-data format, with no code change: COCO, VOC,
a mask folder and tfds (mock), two steps each; COCO and the mask folder through the CLI;
Mask R-CNN (boxes and instance masks) from COCO."""

import math

import pytest

from cnn_jax.train import loop
from cnn_jax.train.logging import read_metrics
from tests.data import annotated_files as files
from tests.subprocess_env import run_module
from tests.tasks.configs import cli_overrides, tiny


@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
  base = tmp_path_factory.mktemp('annotated')
  for split, n, seed in (('train', 8, 0), ('val', 4, 1)):
    files.write_coco(base / 'coco', split, n, seed)
    # The synthetic task runs' 4 categories: see the Mask R-CNN test.
    files.write_coco(base / 'coco4', split, n, seed, class_names=files.CLASS_NAMES[:4])
    files.write_voc(base / 'voc', split, n, seed)
    files.write_mask_folder(base / 'masks', split, n, seed)
  return base


def _data(config, name, root='', **extra):
  config.data.name, config.data.root = name, str(root)
  config.data.train_split, config.data.eval_split = 'train', 'val'
  config.data.max_boxes = 4
  config.data.update(extra)


def _two_steps(config, workdir):
  config.num_steps, config.eval_every, config.log_every, config.checkpoint_every = 2, 0, 1, 2
  config.num_devices, config.schedule.warmup_steps = 1, 0
  config.batch_size = config.eval_batch_size = 4
  return loop.train_and_evaluate(config, workdir, quiet=True)


def _check(result, config_name):
  assert result['steps'] == 2 and math.isfinite(result['train']['loss'])
  m = result['eval']
  headline = m[{'detect': 'mAP50', 'segment': 'mean_iou', 'mask_rcnn': 'mask_AP50'}[config_name]]
  assert 0.0 <= headline <= 1.0 or math.isnan(headline)
  if config_name in ('detect', 'mask_rcnn'):
    assert 'coco_AP' in m and 'coco_AP50' in m  # COCOeval ran, in original pixels


@pytest.mark.parametrize('config_name,name', [('detect', 'voc'), ('segment', 'voc'),
                                              ('segment', 'coco')])
def test_trains_from_files(datasets, tmp_path, config_name, name):
  c = tiny(config_name)
  _data(c, name, datasets / {'voc': 'voc', 'coco': 'coco'}[name])
  result = _two_steps(c, tmp_path)
  _check(result, config_name)
  if name == 'voc':
    want = 21 if config_name == 'segment' else 20  # + background
    assert result['eval'].get('count', 4) == 4
    assert len([k for k in result['eval'] if k.startswith(('iou_', 'ap50_'))]) == want


@pytest.mark.slow
def test_mask_rcnn_trains_from_coco_instances(datasets, tmp_path):
  """The two-stage family reads boxes and per-instance masks from COCO JSON files too."""
  c = tiny('mask_rcnn')
  # 4 categories and 3 boxes per image, as the synthetic scenes of tests/models/test_rcnn.py's
  # shared run: the same train step, read from the compilation cache (this test 14 -> 5 s).
  _data(c, 'coco', datasets / 'coco4', max_boxes=3)
  result = _two_steps(c, tmp_path)
  _check(result, 'mask_rcnn')
  assert math.isfinite(result['train']['mask']) and 'mask_AP' in result['eval']


@pytest.mark.parametrize('config_name,tfds_name', [('detect', 'voc/2007'),
                                                   ('segment', 'oxford_iiit_pet')])
def test_trains_from_tfds(tmp_path, config_name, tfds_name):
  tfds = pytest.importorskip('tensorflow_datasets')
  c = tiny(config_name)
  _data(c, 'tfds', tfds_name=tfds_name)
  c.data.eval_split = 'test'
  with tfds.testing.mock_data(num_examples=8, policy=tfds.testing.MockPolicy.USE_CODE):
    result = _two_steps(c, tmp_path)
  _check(result, config_name)


@pytest.mark.parametrize('config_name,name,folder', [('detect', 'coco', 'coco'),
                                                     ('segment', 'mask_folder', 'masks')])
def test_trains_through_the_cli(datasets, tmp_path, config_name, name, folder):
  args = [f'--config=configs/{config_name}.py',
          f'--workdir={tmp_path}', '--quiet', *cli_overrides(config_name),
          f'--config.data.name={name}', f'--config.data.root={datasets / folder}',
          '--config.data.train_split=train', '--config.data.eval_split=val',
          '--config.data.max_boxes=4', '--config.num_steps=2', '--config.eval_every=0',
          '--config.num_devices=1', '--config.schedule.warmup_steps=0',
          '--config.batch_size=4', '--config.eval_batch_size=4']
  if name == 'coco':
    args += ['--config.data.train_ann=annotations/instances_train.json',
             f'--config.data.eval_ann={datasets / folder / "annotations/instances_val.json"}']
  r = run_module('cnn_jax.main', *args, devices=None)
  assert r.returncode == 0, r.stderr
  assert 'after 2 steps' in r.stdout, r.stdout
  if name == 'coco':
    assert 'COCO AP' in r.stdout
    evals = read_metrics(tmp_path / 'metrics.jsonl')['eval']
    assert evals[-1]['count'] == 4 and 'coco_APs' in evals[-1]


def test_missing_root_and_size_are_one_line_errors():
  from cnn_jax.train.config import validate
  c = tiny('detect')
  c.data.name = 'coco'
  with pytest.raises(ValueError, match='data.name=coco needs data.root=DIR'):
    validate(c)
  c.data.root, c.data.image_size = '/data/coco', 0
  with pytest.raises(ValueError, match='needs a fixed data.image_size'):
    validate(c)
