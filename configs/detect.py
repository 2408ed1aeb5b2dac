r"""YOLO-style detection on synthetic scenes with several objects (offline).

  python -m experiments.detect --config=configs/detect.py --workdir=workdirs/detect

Scenes of 64x64 pixels hold 1-3 shapes of 4 kinds (disc, square, triangle,
ring); an 8x8 grid with 2 anchors (k-means of the training boxes' sizes)
predicts [p_obj, t_y, t_x, t_h, t_w, class logits] per slot. Evaluated by
mAP@0.5 (VOC all-point AP) on held-out scenes after per-class NMS.

Arg: none, or ``steps=N``.

Result (2026-11-24, 2-core CPU dev machine, jax 0.10.2, defaults): mAP@0.5
0.989 (AP disc 0.986, square 0.992, triangle 0.985, ring 0.991) on 500 test
scenes with 1,008 objects after 1500 steps (213 s of training).
"""

import ml_collections

from cnn_jax.train.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, {'steps': 1500})
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.image_size = 64
  c.num_classes = 4
  c.objects_per_image = (1, 3)
  c.num_train = 4000
  c.num_test = 500
  c.widths = (16, 32, 64)       # each stage halves the grid: 64 / 2**3 = 8 cells
  c.head_width = 128
  c.num_anchors = 2
  c.coord_weight = 5.0
  c.noobj_weight = 0.5
  c.steps = a['steps']
  c.batch_size = 64
  c.lr = 2e-3                   # Adam, cosine decay, 5% warmup
  c.flip = True
  c.log_every = 50
  c.score_threshold = 0.05
  c.iou_threshold = 0.5         # NMS
  c.max_detections = 20
  c.num_pictures = 8
  return c
