r"""FCN-32s / 16s / 8s semantic segmentation of synthetic scenes (offline).

  python -m experiments.segment --config=configs/segment.py --workdir=workdirs/segment

64x64 scenes with 1-3 shapes of 4 kinds; labels 0 (background) and 1-4. Each
variant trains the same slim ResNet-18 backbone (width 16) from scratch;
evaluated by pixel accuracy, mean IoU and the accuracy on pixels within 2 px
of an object edge (where the finer skips of 8s should help).

Arg: none, or ``steps=N``.

Result (2026-11-24, 2-core CPU dev machine, jax 0.10.2, defaults), mean IoU /
pixel accuracy / edge-band accuracy on 300 test scenes: 32s 0.439 / 91.3% /
28.6%, 16s 0.476 / 92.3% / 34.8%, 8s 0.582 / 94.7% / 57.6%.
"""

import ml_collections

from cnn_jax.train.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, {'steps': 800})
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.image_size = 64
  c.num_classes = 4             # shape kinds; the label maps have num_classes + 1 values
  c.objects_per_image = (1, 3)
  c.num_train = 3000
  c.num_test = 300
  c.variants = ('32s', '16s', '8s')
  c.backbone = 'resnet18'
  c.backbone_kwargs = ml_collections.ConfigDict({'width': 16})
  c.void_border = True          # label 1-px object borders 255 (ignored), as VOC does
  c.ignore_index = 255
  c.steps = a['steps']
  c.batch_size = 32
  c.lr = 3e-3                   # Adam, cosine decay, 5% warmup
  c.log_every = 50
  c.num_pictures = 6
  return c
