r"""Transfer learning: a CIFAR ResNet trained on classes 0-4, moved to classes 5-9.

  # 1. the source task: classes 0-4, all their training images
  python -m cnn_jax.main --config=configs/transfer.py:mode=pretrain --workdir=workdirs/tl/pretrain
  # 2. the target task: classes 5-9, `shots` labelled images per class
  python -m cnn_jax.main --config=configs/transfer.py:mode=features,source=workdirs/tl/pretrain \
      --workdir=workdirs/tl/features

``mode``:
  pretrain  source task, from scratch
  scratch   target task, from scratch (the baseline)
  features  (a) feature extraction: the whole backbone frozen (BN statistics
            included), a new ``fc`` head trained
  partial   (b) the course's case II: the stem and the first ``frozen_stages``
            stages frozen, the later layers and the new head trained, at lr x
            ``partial_lr`` (default 0.1: 0.005 instead of 0.05)
  finetune  (c) everything trained from the source weights, lr x ``finetune_lr``

Learning rates: from scratch (and feature extraction, where only a new random head
learns) lr 0.05 (momentum 0.9, cosine). Whenever trained layers start from the
source weights (``partial``, ``finetune``) the lr is 10x smaller by default, 0.005,
as the course advises ("keep it small"): the source weights are already a good
solution, a large first step would wreck them before the new head has learned
anything useful, and 20 images per class would overfit quickly anyway.

Args (``key=value``, comma separated): mode, source (the pretrain workdir, for
features/partial/finetune; sets ``transfer.init_from``), shots (labelled target images per
class, 0 = all), depth (6k+2), steps, data ('synthetic' | 'folder'), root (the
image folder for data=folder), frozen_stages, partial_lr, finetune_lr (lr multipliers).

``experiments/transfer.py`` runs all five and writes the comparison table.

Result (2026-11-24, 2-core CPU dev machine, jax 0.10.2, synthetic shapes,
``python -m experiments.transfer run --out-dir workdirs/transfer``): source
99.9% after 600 steps (144 s); target with 20 images per class, 200 steps,
2 seeds: scratch 36.4 +- 2.9%, features 89.0 +- 0.8%, partial 94.1 +- 0.1%,
finetune 89.8 +- 3.2%. That partial figure is from before its lr was lowered,
i.e. ``partial_lr=1.0`` (lr 0.05). Re-measured 2026-12-06 (same machine and
recipe, CPU shared; source again 99.9%): partial at the new default lr 0.005
91.9 +- 1.4% (90.9, 92.9) vs 94.1 +- 0.05% (94.08, 94.14) at ``partial_lr=1.0``.
Here, with 200 steps and a source task close to the target, the small lr costs
about 2 points: it is the course's safe default, not this benchmark's best.
"""

import ml_collections

from cnn_jax.train.config import default_config, parse_arg

MODES = ('pretrain', 'scratch', 'features', 'partial', 'finetune')
SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, {'mode': 'pretrain', 'source': '', 'shots': 20, 'depth': 8, 'steps': 0,
                      'data': 'synthetic', 'root': '', 'frozen_stages': 1,
                      'partial_lr': 0.1, 'finetune_lr': 0.1})
  if a['mode'] not in MODES:
    raise ValueError(f'mode={a["mode"]!r} is not valid; choose one of {", ".join(MODES)}.')
  c = default_config()
  c.model.name = 'cifar_resnet'
  c.model.kwargs = ml_collections.ConfigDict({'depth': a['depth'], 'widths': (16, 32, 64)})
  if a['data'] == 'folder':
    c.data.name = 'image_folder'
    c.data.root = a['root']
    c.data.mean = (0.4914, 0.4822, 0.4465)
    c.data.std = (0.2470, 0.2435, 0.2616)
  elif a['data'] == 'synthetic':
    c.data.name = 'synthetic'
    c.data.num_train = 10_000
    c.data.num_eval = 2_000
  else:
    raise ValueError(f"data={a['data']!r} is not valid; choose synthetic or folder.")
  c.augment.flip = True
  c.augment.crop_padding = 4
  c.optimizer.name = 'momentum'
  c.optimizer.lr = 0.05
  c.optimizer.weight_decay = 5e-4
  c.schedule.name = 'cosine'
  c.log_every = 25
  c.checkpoint_every = 10_000
  c.keep_best = False
  pretrain = a['mode'] == 'pretrain'
  c.data.classes = SOURCE_CLASSES if pretrain else TARGET_CLASSES
  if pretrain:
    c.batch_size = 128
    c.num_steps = a['steps'] or 600
    c.schedule.warmup_steps = min(50, c.num_steps // 10)
    return c
  # The target task: few labelled images, so small batches and few steps.
  c.data.examples_per_class = a['shots']
  c.batch_size = 50 if a['shots'] == 0 else min(50, 5 * a['shots'])
  c.num_steps = a['steps'] or 200
  if a['mode'] != 'scratch':
    if not a['source']:
      raise ValueError(f"mode={a['mode']} needs source=WORKDIR (a finished mode=pretrain run).")
    c.transfer.init_from = a['source']
  if a['mode'] == 'features':
    c.transfer.freeze = ('*',)
  elif a['mode'] == 'partial':
    c.transfer.freeze = ('stem',) + tuple(f'stage{i}' for i in range(1, a['frozen_stages'] + 1))
    c.optimizer.lr *= a['partial_lr']  # trained layers start from source weights: keep lr small
  elif a['mode'] == 'finetune':
    c.optimizer.lr *= a['finetune_lr']
  return c
