r"""FCN-32s / 16s / 8s semantic segmentation of synthetic scenes (offline).

  python -m cnn_jax.main --config=configs/segment.py:variant=8s --workdir=workdirs/segment/8s
  python -m cnn_jax.main --config=configs/segment.py:variant=32s --workdir=workdirs/segment/32s
  python -m cnn_jax.main --config=configs/segment.py:variant=16s --workdir=workdirs/segment/16s
  python -m experiments.segment report workdirs/segment   # results.md, overlays.png

64x64 scenes with 1-3 shapes of 4 kinds; labels 0 (background) and 1-4, and
the 1-px object borders 255 (ignored, as PASCAL VOC's void). Each variant
trains the same slim ResNet-18 backbone (width 16) from scratch (task
``segmentation``, model ``fcn<variant>``); evaluated by pixel accuracy, mean
IoU, per-class IoU and the accuracy on pixels within 2 px of an object edge
(where the finer skips of 8s should help); ``checkpoints`` keeps the best-mIoU step.

Arg: none, or ``variant=32s|16s|8s,steps=N``.

Result (2026-12-02, 2-core x86-64 CPU dev machine, jax 0.10.2, the three commands
above, defaults, CPU shared with other jobs): mean IoU / pixel accuracy / edge-band
accuracy on 300 test scenes: 32s 0.429 / 91.1% / 57.0% (119 s wall), 16s 0.562 /
93.7% / 64.1% (109 s), 8s 0.652 / 95.6% / 74.6% (122 s); best checkpoint = the last.
"""

import ml_collections

from cnn_jax.train.config import default_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, {'variant': '8s', 'steps': 800})
  c = default_config('segmentation')
  c.model.name = f"fcn{a['variant']}"
  c.model.kwargs = ml_collections.ConfigDict({
      'backbone': 'resnet18', 'backbone_kwargs': {'width': 16}})
  c.data.name = 'synthetic'
  c.data.image_size = 64
  c.data.num_classes = 4          # shape kinds; the label maps have num_classes + 1 values
  c.data.objects_per_image = (1, 3)
  c.data.num_train = 3000
  c.data.num_eval = 300
  c.batch_size = 32
  c.eval_batch_size = 64
  c.num_steps = a['steps']
  c.log_every = 50
  c.eval_every = 400
  c.checkpoint_every = 400
  c.optimizer.name = 'adam'
  c.optimizer.lr = 3e-3
  c.optimizer.weight_decay = 0.0
  c.schedule.name = 'cosine'
  c.schedule.warmup_steps = a['steps'] // 20
  return c
