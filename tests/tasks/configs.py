"""Tiny versions of the task configs, shared by the task tests (seconds, not minutes)."""

import ml_collections

from cnn_jax.train.config import load_config

# One run length for every use of a task config (the shared runs, the 8-device
# comparison, the kill-and-resume subprocesses): the schedule is compiled into
# the step, so equal configs share compiled programs through the persistent
# cache, and the subprocesses' runs can be compared with the shared ones.
STEPS = 60

# The tiny configs every task test shares (one run each, tests/conftest.py ``task_runs``),
# also killed and resumed (tests/train/test_resume.py).
TASK_CONFIGS = ('detect', 'segment', 'face_verify', 'composed_cifar')
# Shared runs whose tasks add no new path to resume: trained and checked for their best
# step and metrics, not killed. Sums-only evaluation, one-field flips; and Faster R-CNN,
# whose per-example sampling keys come from the step key through the task's augment as
# YOLO's flips do, and whose evaluation is the detection task's (killed above).
SHARED_RUNS = TASK_CONFIGS + ('faster_rcnn', 'localise', 'landmarks', 'text_cnn', 'caption')


def two_stage_kwargs(**over) -> dict:
  """A Faster/Mask R-CNN small enough for tests: ResNet-18 of width 4, two FPN levels + pool."""
  kw = dict(backbone='resnet18', backbone_kwargs={'width': 4}, taps=('layer1', 'layer2'),
            fpn_channels=8, anchor_sizes=((16,), (32,), (64,)), aspect_ratios=(1.0,),
            representation=16, rpn_pre_nms_top_n=(20, 20), rpn_post_nms_top_n=(10, 10),
            rpn_samples=16, box_samples=8, detections=5)
  kw.update(over)
  return kw


def tiny(name: str, **top):
  """``configs/<name>.py`` shrunk to a few seconds of CPU; ``top`` overrides top-level keys."""
  if name == 'detect':
    c = load_config('detect', f'steps={STEPS}')
    c.data.num_train, c.data.num_eval, c.data.image_size = 128, 24, 32
    c.model.kwargs.widths, c.model.kwargs.head_width = (8, 16), 16
    c.batch_size, c.eval_batch_size = 16, 16
  elif name == 'segment':
    c = load_config('segment', f'steps={STEPS},variant=8s')
    c.data.num_train, c.data.num_eval, c.data.image_size = 48, 16, 32
    c.model.kwargs.backbone_kwargs.width = 4
    c.batch_size, c.eval_batch_size = 8, 8
  elif name == 'face_verify':
    c = load_config('face_verify', f'steps={STEPS}')
    c.task.train_identities, c.task.val_identities, c.task.test_identities = 8, 4, 4
    c.task.per_identity, c.task.siamese_steps = 8, 50
    c.task.identities_per_batch, c.task.images_per_identity = 4, 4
    c.data.image_size = 16
    c.model.kwargs.dim = 16
    c.model.kwargs.backbone_kwargs.widths = (4, 8, 16)
    c.batch_size, c.eval_batch_size = 16, 32
  elif name == 'composed_cifar':
    c = load_config('composed_cifar', f'steps={STEPS},depth=8')
    c.data.num_train, c.data.num_eval, c.data.image_size = 256, 64, 16
    c.data.num_classes = 4
    c.model.kwargs.widths = (4, 8, 16)
    c.batch_size, c.eval_batch_size = 16, 32
  elif name == 'faster_rcnn':
    c = load_config('faster_rcnn', f'steps={STEPS}')
    kw = two_stage_kwargs()
    del kw['aspect_ratios']  # the config's three ratios: only its own keys have CLI flags
    c.model.kwargs.update(kw)
    c.data.num_train, c.data.num_eval, c.data.image_size = 64, 16, 32
    c.batch_size, c.eval_batch_size = 8, 16
  elif name == 'mask_rcnn':  # not a shared run: tests/models/test_rcnn.py, the COCO test
    c = load_config('mask_rcnn', f'steps={STEPS}')
    c.model.kwargs = ml_collections.ConfigDict(two_stage_kwargs(mask_layers=(8,)))
    c.data.num_train, c.data.num_eval, c.data.image_size = 16, 8, 32
    c.batch_size, c.eval_batch_size = 4, 8
  elif name in ('localise', 'landmarks'):
    c = load_config(name, f'steps={STEPS}')
    c.data.num_train, c.data.num_eval, c.data.image_size = 128, 32, 32
    c.model.kwargs.backbone_kwargs.widths, c.model.kwargs.hidden = (4, 8, 16), 16
    c.batch_size, c.eval_batch_size = 16, 32
  elif name == 'text_cnn':
    c = load_config('text_cnn', f'steps={STEPS}')
    c.data.num_train, c.data.num_eval = 256, 64
    c.model.kwargs.embed_dim, c.model.kwargs.features = 8, 8
    c.task.max_len = 24
    c.optimizer.lr = 1e-2  # a visible drop of the loss within the 60 steps
  elif name == 'caption':
    c = load_config('caption', f'steps={STEPS}')
    c.data.num_train, c.data.num_eval, c.data.image_size = 128, 32, 32
    c.model.kwargs.backbone_kwargs.widths = (4, 8, 16)
    c.model.kwargs.embed_dim, c.model.kwargs.hidden = 16, 16
    c.batch_size, c.eval_batch_size = 16, 32
  else:
    raise ValueError(name)
  c.log_every, c.eval_every, c.checkpoint_every = 1, 30, 15
  # A constant lr makes step t's update independent of num_steps, so a run of a
  # few steps reproduces the first steps of the 60-step shared run.
  c.schedule.name, c.schedule.warmup_steps = 'constant', 0
  c.update(top)
  return c


def cli_overrides(name: str) -> list[str]:
  """The same shrinking as command-line flags (for subprocess runs of cnn_jax.main)."""
  base, small, flags = load_config(name), tiny(name), []

  def walk(a, b, prefix):
    for k in b.keys():
      if hasattr(b[k], 'keys'):
        walk(a[k], b[k], f'{prefix}{k}.')
      elif a[k] != b[k]:
        value = tuple(b[k]) if isinstance(b[k], list) else b[k]
        text = value if isinstance(value, str) else repr(value).replace(' ', '')  # as typed
        flags.append(f'--config.{prefix}{k}={text}')

  walk(base, small, '')
  return flags
