"""The config schema shared by every experiment: defaults, arg parsing, validation.

Each ``configs/*.py`` starts from :func:`default_config` (``default_config('detection')``
for another task) and overrides what its experiment needs, so every run has
the same keys and a typo is an error:

  seed, num_seeds (K > 1: seeds seed..seed+K-1 trained together in one program),
  seeds_mode ('auto' | 'vmap' | 'unroll'), batch_size, eval_batch_size, num_steps (or num_epochs), log_every,
  eval_every, dtype ('float32' | 'bfloat16' compute), parallel ('jit' | 'pmap'), num_devices,
  xla_cpu_ynnpack ('flags' | 'off' | 'auto': YNNPACK per compiled step on XLA:CPU),
  checkpoint_every, keep_checkpoints, keep_best
  distributed: coordinator_address ('' single host, 'auto', or host:port),
             num_processes, process_id
  task:      name ('classification' | 'detection' | 'segmentation' | 'metric_learning' | 'rcnn'
             | 'instance_segmentation' | 'localisation' | 'landmarks' | 'captioning'
             | 'text_classification',
             or a path 'pkg.module:Class'), then that task's own keys (its defaults())
  model:     name (a cnn_jax.models.list_models() name, or a path 'pkg.module:attr' /
             'file.py:attr' to a Linen class or a compose-network factory), conv_impl,
             kwargs (model args)
  data:      name ('synthetic' | 'synthetic_faces' | 'image_folder' | 'tfds' | 'coco' | 'voc'
             | 'mask_folder' | 'landmark_folder' | 'synthetic_captions' | 'coco_captions';
             text: 'synthetic_sentiment' | 'text_folder'),
             root, tfds_name, data_dir,
             train_split, eval_split, image_size, channels, num_classes, num_train,
             num_eval, objects_per_image (synthetic scenes), mean, std, cache_dir,
             skip_corrupt, streaming, num_workers,
             classes (a subset, relabelled 0..k-1), examples_per_class (few-shot train split),
             holdout (evaluate on n held-out train examples, e.g. He et al.'s 45k/5k),
             seed (what the data is: synthetic sets, few-shot draws; -1 follows seed),
             train_ann / eval_ann (COCO JSON), max_boxes, instance_masks (annotated data)
  augment:   crop_padding, flip, rotation, shift, zoom, shear, scale_crop (detection/segmentation)
  optimizer: name, lr, momentum, b1, b2, weight_decay, grad_clip_norm, label_smoothing
  schedule:  name, warmup_steps, warmup_mode ('linear' | 'constant'), warmup_factor,
             decay_steps, decay_factor, decay_factors (one per boundary), end_factor
  transfer:  init_from (a trained run's workdir), init_which ('latest' | 'best'),
             exclude (modules re-initialised: the new head), freeze (module patterns,
             '*' = all but exclude); see cnn_jax.train.transfer
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import pathlib

import ml_collections

from cnn_jax import models, tasks
from cnn_jax.dtypes import DTYPES
from cnn_jax.importing import is_path
from cnn_jax.ops import conv
from cnn_jax.train import cpu_library, optim, parallel
from cnn_jax.train import seeds as seeds_lib

DATASETS = ('synthetic', 'synthetic_faces', 'image_folder', 'tfds', 'coco', 'voc', 'mask_folder',
            'landmark_folder', 'synthetic_captions', 'coco_captions', 'synthetic_sentiment',
            'text_folder')
# Readers of annotated images (boxes, masks) under data.root; see cnn_jax/data/annotations.py.
ANNOTATED_DATASETS = {
    'coco': 'a COCO dataset: <root>/<split>/ images and an instances JSON (data.train_ann)',
    'voc': 'a PASCAL VOC year folder: <root>/{Annotations,JPEGImages,ImageSets}',
    'mask_folder': 'a folder with <root>/<split>/{images,masks}/',
    'landmark_folder': 'a folder with <root>/<split>/landmarks.csv beside its images',
    'coco_captions': 'a COCO captions dataset: <root>/<split>/ images and a captions JSON '
                     '(data.train_ann, default annotations/captions_<split>.json)',
}
CONV_IMPLS = conv.IMPL_CHOICES  # the impls and 'auto'


def default_config(task: str = 'classification') -> ml_collections.ConfigDict:
  """Every key of a run, with the ``task`` section of ``task``."""
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.num_seeds = 1              # > 1: seeds seed..seed+K-1 trained together in one program
  c.seeds_mode = 'auto'        # how: 'vmap', 'unroll' (K copies), 'auto' (unroll on CPU)
  c.batch_size = 128
  c.eval_batch_size = 512      # a power of two: divides any usual device count
  c.num_steps = 1000           # total optimizer steps; 0 means use num_epochs
  c.num_epochs = 0.0
  c.log_every = 50
  c.eval_every = 0             # 0: evaluate only at the end
  c.dtype = 'float32'
  c.parallel = 'jit'           # data parallel over all devices: 'jit' (NamedSharding) or 'pmap'
  c.num_devices = 0            # 0: every device (of every process)
  # XLA:CPU: 'flags' (XLA_FLAGS decide), 'off' (steps compiled without YNNPACK), 'auto'
  # (the faster of the two, measured at the first step; cnn_jax/train/cpu_library.py)
  c.xla_cpu_ynnpack = 'flags'
  c.checkpoint_every = 1000    # steps; the final step is always saved
  c.keep_checkpoints = 3
  c.keep_best = True           # also keep the best checkpoint by the task's headline metric

  c.distributed = ml_collections.ConfigDict()
  c.distributed.coordinator_address = ''
  c.distributed.num_processes = 0
  c.distributed.process_id = -1

  c.task = tasks.task_section(task)

  c.model = ml_collections.ConfigDict()
  c.model.name = 'simple_cnn'
  c.model.conv_impl = 'lax'
  c.model.kwargs = ml_collections.ConfigDict()

  c.data = ml_collections.ConfigDict()
  c.data.name = 'synthetic'
  c.data.root = ''
  c.data.tfds_name = ''
  c.data.data_dir = ''
  c.data.train_split = 'train'
  c.data.eval_split = 'test'
  c.data.image_size = 32
  c.data.channels = 3
  c.data.num_classes = 10      # synthetic only; folders and tfds know theirs
  c.data.num_train = 10_000    # synthetic only
  c.data.num_eval = 2_000      # synthetic only
  c.data.objects_per_image = (1, 1)  # synthetic only: (min, max) objects per scene
  c.data.mean = (0.5, 0.5, 0.5)
  c.data.std = (0.25, 0.25, 0.25)
  c.data.cache_dir = ''
  c.data.skip_corrupt = False
  c.data.streaming = False
  c.data.num_workers = 0       # 0: automatic
  c.data.classes = ()          # e.g. (5, 6, 7, 8, 9): keep these, relabelled 0..k-1 in this order
  c.data.examples_per_class = 0  # > 0: a few-shot train split (first n per class after a seeded shuffle)
  c.data.seed = -1             # what the data is (synthetic sets, few-shot draws); -1: seed
  c.data.holdout = 0           # > 0: evaluate on this many held-out train examples, not eval_split
  # Annotated data (coco, voc, mask_folder, tfds detection/segmentation sets):
  c.data.train_ann = ''        # coco: instances JSON of train_split ('' : <root>/annotations/instances_<split>.json)
  c.data.eval_ann = ''         # coco: the same for eval_split
  c.data.max_boxes = 20        # boxes per image kept (the largest), padded with label -1
  c.data.instance_masks = False  # also load one mask per box (N, K, S, S): memory-hungry

  c.augment = ml_collections.ConfigDict()
  c.augment.crop_padding = 0
  c.augment.flip = False
  c.augment.rotation = 0.0
  c.augment.shift = 0.0
  c.augment.zoom = 0.0
  c.augment.shear = 0.0
  c.augment.scale_crop = ()  # detection/segmentation: (min, max) zoom, e.g. (0.5, 1.5); empty = off

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = 'momentum'
  c.optimizer.lr = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.999
  c.optimizer.weight_decay = 5e-4
  c.optimizer.grad_clip_norm = 0.0
  c.optimizer.label_smoothing = 0.0

  c.schedule = ml_collections.ConfigDict()
  c.schedule.name = 'cosine'
  c.schedule.warmup_steps = 0
  c.schedule.warmup_mode = 'linear'  # or 'constant' at lr * warmup_factor
  c.schedule.warmup_factor = 0.1
  c.schedule.decay_steps = (0,)
  c.schedule.decay_factor = 0.1
  c.schedule.decay_factors = ()  # piecewise: one factor per decay_steps boundary; () = decay_factor
  c.schedule.end_factor = 0.0

  c.transfer = ml_collections.ConfigDict()
  c.transfer.init_from = ''    # workdir of a trained run: its params/batch_stats start this one
  c.transfer.init_which = 'latest'
  c.transfer.exclude = ('fc',)  # not copied (re-initialised): the classifier head
  c.transfer.freeze = ()       # e.g. ('*',) feature extraction, ('stem', 'stage1') first stage
  return c


CONFIG_DIR = pathlib.Path(__file__).resolve().parents[2] / 'configs'


def load_config(path: str | os.PathLike, arg: str | None = None) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of a config file (``configs/`` is a folder of files, not a package).

  A bare name such as ``'transfer'`` means ``configs/transfer.py`` of this checkout.
  The result is locked, as the CLI's ``--config`` is: existing keys can be
  changed, a misspelt new one raises instead of being silently ignored.
  """
  path = pathlib.Path(path)
  if path.suffix != '.py':
    path = CONFIG_DIR / f'{path}.py'
  if not path.is_file():
    raise FileNotFoundError(f'config file {str(path)!r} does not exist; pass '
                            'configs/NAME.py or a NAME from configs/.')
  spec = importlib.util.spec_from_file_location(f'cnn_jax_config_{path.stem}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config(arg)
  config.lock()
  return config


def parse_arg(arg: str | None, defaults: dict) -> dict:
  """Parses a config argument ``'depth=56,plain=True'`` against typed defaults.

  Unknown keys and values of the wrong type raise a one-line ValueError naming
  the valid keys.
  """
  out = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, sep, value = item.partition('=')
    key = key.strip()
    if not sep or key not in defaults:
      raise ValueError(f'bad config argument {item!r}; expected key=value with key in '
                       f'{sorted(defaults)}.')
    try:
      parsed = ast.literal_eval(value.strip())
    except (ValueError, SyntaxError):
      parsed = value.strip()
    want = type(defaults[key])
    if want is float and isinstance(parsed, int) and not isinstance(parsed, bool):
      parsed = float(parsed)
    if not isinstance(parsed, want):
      raise ValueError(f'config argument {key}={value!r} must be a {want.__name__}.')
    out[key] = parsed
  return out


def unknown_key_error(config: ml_collections.ConfigDict, key: str) -> str | None:
  """The one-line error for a dotted ``key`` that ``config`` lacks, or None if it has it.

  E.g. ``unknown config key 'optimizer.lrr'; did you mean 'optimizer.lr'? valid
  keys of optimizer: b1, b2, ...`` (what ``--config.KEY=VALUE`` overrides report).
  """
  parts = key.split('.')
  node = config
  for depth, part in enumerate(parts):
    section = '.'.join(parts[:depth])
    key = '.'.join(parts[:depth + 1])
    if not hasattr(node, 'keys'):
      return f"unknown config key '{key}': {section!r} is a value, not a section."
    if part not in node:
      valid = sorted(node.keys())
      guess = difflib.get_close_matches(part, valid, n=1)
      where = f'{section}.' if section else ''
      hint = f"; did you mean '{where}{guess[0]}'?" if guess else ''
      return (f"unknown config key '{key}'{hint}; valid keys of "
              f"{section or 'the config'}: {', '.join(valid)}.")
    node = node[part]
  return None


def _choice(value, choices, key):
  if value not in choices:
    raise ValueError(f'{key}={value!r} is not valid; choose one of {", ".join(choices)}.')


def validate(config: ml_collections.ConfigDict) -> None:
  """Checks names and ranges up front, with one-line errors naming the key."""
  if not is_path(config.model.name):
    _choice(config.model.name, models.list_models(), 'model.name')
  want = tasks.task_section(config.task.name)  # also rejects an unknown task
  if set(config.task.keys()) != set(want.keys()):
    raise ValueError(f'the task section holds the keys {sorted(config.task.keys())} but task '
                     f'{config.task.name!r} has {sorted(want.keys())}; start from '
                     f"default_config({config.task.name!r}) rather than changing task.name.")
  _choice(config.model.conv_impl, CONV_IMPLS, 'model.conv_impl')
  _choice(config.data.name, DATASETS, 'data.name')
  _choice(config.dtype, DTYPES, 'dtype')
  _choice(config.optimizer.name, optim.OPTIMIZERS, 'optimizer.name')
  _choice(config.schedule.name, optim.SCHEDULES, 'schedule.name')
  _choice(config.schedule.warmup_mode, optim.WARMUP_MODES, 'schedule.warmup_mode')
  _choice(config.parallel, parallel.MODES, 'parallel')
  _choice(config.xla_cpu_ynnpack, cpu_library.SETTINGS, 'xla_cpu_ynnpack')
  if config.xla_cpu_ynnpack != 'flags' and config.parallel != 'jit':
    raise ValueError(f'xla_cpu_ynnpack={config.xla_cpu_ynnpack} sets compiler options per jit '
                     'program; it needs --config.parallel=jit.')
  for key in ('batch_size', 'eval_batch_size', 'log_every', 'checkpoint_every',
              'keep_checkpoints'):
    if config[key] <= 0:
      raise ValueError(f'{key} must be positive, got {config[key]}.')
  if config.num_steps <= 0 and config.num_epochs <= 0:
    raise ValueError('set num_steps or num_epochs to a positive value.')
  _choice(config.seeds_mode, seeds_lib.MODES, 'seeds_mode')
  if config.num_seeds < 1:
    raise ValueError(f'num_seeds must be >= 1, got {config.num_seeds}.')
  if config.num_seeds > 1:
    together = {'parallel=pmap': config.parallel == 'pmap',
                'data.streaming': config.data.streaming,
                'transfer.init_from': bool(config.transfer.init_from)}
    clash = [k for k, on in together.items() if on]
    if clash:
      raise ValueError(f'num_seeds={config.num_seeds} trains seeds together with parallel=jit on '
                       f'in-memory data from scratch; it does not combine with {clash[0]}: set '
                       '--config.num_seeds=1 (and run seeds apart) or drop that option.')
  if config.data.name == 'image_folder' and not config.data.root:
    raise ValueError('data.name=image_folder needs data.root=DIR (a folder with '
                     '<split>/<class>/ images, or a pack file of one), e.g. '
                     '--config.data.root=/path/to/cifar10-jpeg.')
  if config.data.name == 'text_folder' and not config.data.root:
    raise ValueError('data.name=text_folder needs data.root=DIR (a folder with '
                     '<split>/<class>/*.txt, e.g. aclImdb), e.g. '
                     '--config.data.root=/path/to/aclImdb.')
  if config.data.name in ANNOTATED_DATASETS and not config.data.root:
    raise ValueError(f'data.name={config.data.name} needs data.root=DIR, '
                     f'{ANNOTATED_DATASETS[config.data.name]}.')
  if config.data.name in ANNOTATED_DATASETS and config.data.image_size <= 0:
    raise ValueError(f'data.name={config.data.name} needs a fixed data.image_size (images are '
                     'letterboxed to image_size x image_size), e.g. --config.data.image_size=416.')
  if config.data.max_boxes <= 0:
    raise ValueError(f'data.max_boxes must be positive, got {config.data.max_boxes}.')
  if config.data.name == 'tfds' and not config.data.tfds_name:
    raise ValueError('data.name=tfds needs data.tfds_name, e.g. --config.data.tfds_name=mnist.')
  if config.data.streaming and config.data.image_size <= 0:
    raise ValueError('data.streaming needs a fixed data.image_size (e.g. 224) to batch images.')
  if config.data.holdout < 0:
    raise ValueError(f'data.holdout must be >= 0, got {config.data.holdout}.')
  if config.data.streaming and (config.data.classes or config.data.examples_per_class or
                                config.data.holdout):
    raise ValueError('data.classes / data.examples_per_class / data.holdout need in-memory '
                     'data; set --config.data.streaming=False.')
  _choice(config.transfer.init_which, ('latest', 'best'), 'transfer.init_which')
  if len(config.data.mean) != config.data.channels or len(config.data.std) != config.data.channels:
    raise ValueError(f'data.mean/std need {config.data.channels} values (data.channels), got '
                     f'{tuple(config.data.mean)} / {tuple(config.data.std)}.')
