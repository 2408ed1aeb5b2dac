"""Config arguments and validation errors."""

import numpy as np
import pytest

from cnn_jax.train import config as config_lib

# Configs of experiments with their own scripts (not cnn_jax.main's schema):
# the style transfer (a pixel optimisation, seed/steps), and the speedrun (seeds/epochs, tests/experiments/test_speedrun.py).
SCRIPT_CONFIGS = ('style_transfer',)
OWN_SCHEMA = SCRIPT_CONFIGS + ('cifar_speedrun',)
CONFIGS = sorted(p for p in config_lib.CONFIG_DIR.glob('*.py') if p.stem not in OWN_SCHEMA)
# Trained by tests/tasks and tests/train/test_resume.py (their own tiny versions) rather
# than by the two-step test below; the R-CNN family's model by tests/models/test_rcnn.py.
TASK_CONFIGS = ('detect', 'segment', 'face_verify', 'composed_cifar', 'faster_rcnn',
                'mask_rcnn', 'fast_rcnn', 'rcnn')
CLASSIFIERS = [p for p in CONFIGS if p.stem not in TASK_CONFIGS]


def test_every_task_config_holds_its_task_section():
  want = {'detect': 'detection', 'segment': 'segmentation', 'face_verify': 'metric_learning'}
  for name, task in want.items():
    cfg = config_lib.load_config(name)
    assert cfg.task.name == task
  cfg = config_lib.load_config('detect')
  cfg.task.name = 'segmentation'  # the detection keys do not make a segmentation task
  with pytest.raises(ValueError, match="start from default_config\\('segmentation'\\)"):
    config_lib.validate(cfg)
  cfg = config_lib.default_config()
  cfg.task.name = 'captioning'
  with pytest.raises(ValueError, match="unknown task 'captioning'; known tasks: "
                     'classification, detection, instance_segmentation, metric_learning, '
                     'rcnn, segmentation'):
    config_lib.validate(cfg)


@pytest.mark.parametrize('name', SCRIPT_CONFIGS)
def test_script_configs_load_and_reject_unknown_args(name):
  cfg = config_lib.load_config(name)
  assert cfg.seed == 0 and cfg.steps > 0
  assert config_lib.load_config(name, 'steps=3').steps == 3
  with pytest.raises(ValueError, match="bad config argument 'stepz=3'"):
    config_lib.load_config(name, 'stepz=3')


def test_parse_arg_types_and_errors():
  defaults = {'depth': 20, 'plain': False, 'scale': 1.0, 'data': 'folder'}
  assert config_lib.parse_arg('depth=56,plain=True,scale=1', defaults) == {
      'depth': 56, 'plain': True, 'scale': 1.0, 'data': 'folder'}
  assert config_lib.parse_arg('data=tfds', defaults)['data'] == 'tfds'
  assert config_lib.parse_arg(None, defaults) == defaults
  with pytest.raises(ValueError, match=r"bad config argument 'dept=56'.*'depth'"):
    config_lib.parse_arg('dept=56', defaults)
  with pytest.raises(ValueError, match=r"depth='deep' must be a int"):
    config_lib.parse_arg('depth=deep', defaults)


@pytest.mark.parametrize('path', CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_config_builds_and_validates(path, monkeypatch):
  monkeypatch.setenv('CNN_JAX_CIFAR10', '/data/cifar10')
  cfg = config_lib.load_config(path)
  if cfg.data.name == 'image_folder' and not cfg.data.root:
    cfg.data.root = '/data/folder'
  config_lib.validate(cfg)
  with pytest.raises(AttributeError, match='locked'):
    cfg.optimizer.lrr = 0.1  # a misspelt key is refused, not silently added
  cfg.optimizer.lr = 0.01  # existing keys stay overridable


def test_resnet_cifar_arg_scales_the_recipe():
  cfg = config_lib.load_config('resnet_cifar', 'depth=56,plain=True,scale=0.5')
  assert (cfg.model.kwargs.depth, cfg.model.kwargs.plain) == (56, True)
  assert cfg.num_steps == 32_000 and tuple(cfg.schedule.decay_steps) == (16_000, 24_000)
  full = config_lib.load_config('resnet_cifar')
  assert full.num_steps == 64_000 and full.optimizer.weight_decay == 1e-4
  assert full.augment.crop_padding == 4 and full.augment.flip


@pytest.mark.parametrize('key,value,match', [
    ('model.name', 'resnet7', r"model.name='resnet7' is not valid; choose one of .*resnet18"),
    ('data.name', 'imagenet', r"data.name='imagenet' is not valid; choose one of synthetic"),
    ('dtype', 'float16', r"dtype='float16' is not valid; choose one of float32, bfloat16"),
    ('batch_size', 0, r'batch_size must be positive'),
])
def test_validate_errors_name_key_and_choices(key, value, match):
  cfg = config_lib.default_config()
  section, _, leaf = key.rpartition('.')
  (cfg[section] if section else cfg)[leaf] = value
  with pytest.raises(ValueError, match=match):
    config_lib.validate(cfg)


def test_image_folder_needs_root():
  cfg = config_lib.default_config()
  cfg.data.name = 'image_folder'
  with pytest.raises(ValueError, match='needs data.root=DIR'):
    config_lib.validate(cfg)


def test_load_config_errors_and_bare_names():
  assert config_lib.load_config('transfer', 'mode=scratch').transfer.init_from == ''
  with pytest.raises(FileNotFoundError, match="config file .*nope.py' does not exist"):
    config_lib.load_config('nope')
  with pytest.raises(ValueError, match='mode=features needs source=WORKDIR'):
    config_lib.load_config('transfer', 'mode=features')


@pytest.mark.slow
@pytest.mark.parametrize('path', CLASSIFIERS, ids=[p.stem for p in CLASSIFIERS])
def test_every_config_trains_two_steps(path, tmp_path):
  """Each config's model, optimiser and schedule really run (on tiny synthetic data)."""
  from cnn_jax.train import loop
  cfg = config_lib.load_config(path)
  cfg.data.name, cfg.data.streaming = 'synthetic', False
  cfg.data.num_train, cfg.data.num_eval, cfg.data.image_size = 64, 16, 32
  cfg.data.classes, cfg.data.examples_per_class = (), 0
  cfg.data.channels, cfg.data.mean, cfg.data.std = 3, (0.5,) * 3, (0.25,) * 3  # synthetic is RGB
  cfg.transfer.init_from = ''
  cfg.batch_size, cfg.eval_batch_size, cfg.num_devices = 8, 16, 1
  cfg.num_steps, cfg.num_epochs, cfg.log_every, cfg.eval_every = 2, 0.0, 1, 0
  cfg.schedule.warmup_steps = 0
  if cfg.schedule.name == 'piecewise':
    cfg.schedule.decay_steps = (1,)
  result = loop.train_and_evaluate(cfg, tmp_path, quiet=True)
  assert result['steps'] == 2 and np.isfinite(result['eval']['loss'])
