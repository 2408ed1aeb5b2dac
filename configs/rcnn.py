r"""R-CNN (Girshick et al. 2014) on the synthetic scenes: one CNN pass per proposal (offline).

  python -m cnn_jax.main --config=configs/rcnn.py --workdir=workdirs/rcnn

The teaching baseline of the family: fixed proposals like :mod:`configs.fast_rcnn`'s
but every 16 px (``proposal_stride``; 144 per image, since each costs a CNN
pass), 3 sizes x 3 aspect ratios, each grown by 10% context, warped to 32x32
and scored by a CIFAR ResNet-20 that outputs class logits and per-class box
deltas (evaluated 20 images, 2,880 crops, at a time). Same data,
schedule and budget as the rest of the family (:mod:`configs.faster_rcnn`).

Arg: none, or ``steps=N``.

Result: not recorded yet. A 4-step smoke run (64 scenes) trains and evaluates; at
about 2 img/s on the 2-core dev CPU (a ResNet-20 pass per proposal: 144 per image at
evaluation) a full run takes well over an hour.
"""

import ml_collections

from cnn_jax.train.config import parse_arg
from configs.faster_rcnn import scenes


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, {'steps': 800})
  c = scenes('rcnn', 'rcnn', a['steps'])
  c.eval_batch_size = 20
  c.model.kwargs = ml_collections.ConfigDict({
      'backbone': 'cifar_resnet20',
      'crop_size': 32,
      'proposal_stride': 16,
      'anchor_sizes': (24, 36, 48),
      'box_samples': 32,
      'detections': 20,
  })
  return c
