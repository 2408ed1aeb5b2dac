r"""R-CNN (Girshick et al. 2014) on the synthetic scenes: one CNN pass per proposal (offline).

  python -m cnn_jax.main --config=configs/rcnn.py --workdir=workdirs/rcnn

The teaching baseline of the family: fixed proposals like :mod:`configs.fast_rcnn`'s
but every 16 px (``proposal_stride``; 144 per image, since each costs a CNN
pass), 3 sizes x 3 aspect ratios, each grown by 10% context, warped to 32x32
and scored by a CIFAR ResNet-20 that outputs class logits and per-class box
deltas (evaluated 20 images, 2,880 crops, at a time). Same data,
schedule and budget as the rest of the family (:mod:`configs.faster_rcnn`).

Arg: none, or ``steps=N``.

Result (2026-12-06, 2-core Intel Xeon, jax 0.10.2; the run stopped by SIGTERM at step
77 and resumed with ``--config.eval_every=800``, one evaluation at the end, since each
is 500 x 144 ResNet-20 passes): box AP50 0.660 (VOC), COCO AP 0.485, COCO AP50 0.658;
270,697 parameters; 2.53 s per step of 16 (~2,030 s for 800); inference 8.3 img/s
(``benchmarks/detectors.py``). Box AP50 below Fast R-CNN's 0.78 and Faster R-CNN's
0.998 on the same scenes; COCO AP a little above Fast R-CNN's 0.465 (README,
"Two-stage detection").
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
