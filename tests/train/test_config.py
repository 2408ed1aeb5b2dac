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
                'mask_rcnn', 'fast_rcnn', 'rcnn', 'localise', 'landmarks', 'text_cnn', 'caption')
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
  cfg.task.name = 'dreaming'
  with pytest.raises(ValueError, match="unknown task 'dreaming'; known tasks: "
                     'captioning, classification, detection, instance_segmentation, landmarks, '
                     'localisation, metric_learning, rcnn, segmentation, text_classification'):
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


def test_transfer_case_two_trains_the_last_layers_at_a_lowered_lr():
  base = config_lib.load_config('transfer', 'mode=scratch').optimizer.lr
  partial = config_lib.load_config('transfer', 'mode=partial,source=/runs/pre')
  assert base == 0.05 and partial.optimizer.lr == pytest.approx(0.005)
  assert tuple(partial.transfer.freeze) == ('stem', 'stage1')
  assert partial.transfer.init_from == '/runs/pre'
  # The multiplier is an argument; 1.0 is the pre-change recipe (lr 0.05).
  same = config_lib.load_config('transfer', 'mode=partial,source=/runs/pre,partial_lr=1.0')
  assert same.optimizer.lr == pytest.approx(0.05)
  features = config_lib.load_config('transfer', 'mode=features,source=/runs/pre')
  assert features.optimizer.lr == pytest.approx(0.05)  # only the new random head learns


def test_lenet5_paper_schedule_is_lecun_et_al():
  from cnn_jax.train import optim
  cfg = config_lib.load_config('lenet5_mnist', 'schedule=paper')
  config_lib.validate(cfg)
  per_pass = 60_000  # batch 1: one update per training pattern
  assert (cfg.batch_size, cfg.optimizer.name, cfg.num_steps) == (1, 'sgd', 20 * per_pass)
  schedule = optim.make_schedule(cfg, cfg.num_steps)
  # (pass, lr): 5e-4 for passes 0-1, 2e-4 for 2-4, 1e-4 for 5-7, 5e-5 for 8-11, 1e-5 after.
  for passes, lr in [(0, 5e-4), (1.99, 5e-4), (2, 2e-4), (4.99, 2e-4), (5, 1e-4), (7.99, 1e-4),
                     (8, 5e-5), (11.99, 5e-5), (12, 1e-5), (19.99, 1e-5)]:
    step = int(passes * per_pass)
    assert float(schedule(step)) == pytest.approx(lr, rel=1e-6), passes
  batched = config_lib.load_config('lenet5_mnist', 'schedule=paper,batch=100')
  assert batched.num_steps == 20 * 600 and tuple(batched.schedule.decay_steps) == (
      1200, 3000, 4800, 7200)
  default = config_lib.load_config('lenet5_mnist')
  assert (default.optimizer.name, default.schedule.name, default.batch_size) == (
      'adam', 'cosine', 128)
  with pytest.raises(ValueError, match="schedule='sgd' is not valid; choose one of adam, paper"):
    config_lib.load_config('lenet5_mnist', 'schedule=sgd')


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
