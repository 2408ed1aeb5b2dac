r"""LeNet-5 on 32x32 synthetic shapes: the classifier the sliding-window demo slides (offline).

  python -m cnn_jax.main --config=configs/sliding_windows.py --workdir=workdirs/sliding_windows
  python -m experiments.sliding_windows report workdirs/sliding_windows
  python -m benchmarks.sliding_windows --out benchmarks/recorded/sliding_windows_cpu.json

The course's LeNet-5 (``lenet5``: ReLU, max pooling; 61,496 parameters with its
4 outputs, :mod:`cnn_jax.models.lenet`) learns one shape per 32x32 image (4 kinds). ``report`` then slides it over a mosaic of test images two ways, a
crop-by-crop loop and one pass of the same network with its dense layers as
convolutions (``model.kwargs.fully_convolutional``), checks they agree, and
draws the class map.

Arg: none, or ``steps=N``.

Result (2026-12-06, 2-core AMD EPYC, jax 0.10.2, the commands above, CPU shared):
test accuracy 95.9% (1,000 single images) after 1500 steps, 86 s wall; the report
over 111 mosaics of 3x3 test images (96 px, 289 windows each): loop and one pass
agree exactly (max abs difference 0.0), tile-aligned windows 95.9% right. The
benchmark: the convolutional pass is 9x / 31x / 60x faster than the crop loop at
64 / 96 / 128 px (batched crops 6x / 22x / 36x slower than the pass).
"""

import ml_collections

from cnn_jax.train.config import default_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, {'steps': 1500})
  c = default_config()
  c.model.name = 'lenet5'
  c.data.name = 'synthetic'
  c.data.image_size = 32
  c.data.num_classes = 4
  c.data.num_train = 8000
  c.data.num_eval = 1000
  c.batch_size = 128
  c.num_steps = a['steps']
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  c.optimizer.name = 'adam'
  c.optimizer.lr = 2e-3
  c.optimizer.weight_decay = 0.0
  c.schedule.name = 'cosine'
  c.schedule.warmup_steps = 50
  c.augment.flip = True
  return c
