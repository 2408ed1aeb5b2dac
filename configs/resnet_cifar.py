r"""He et al. (2016) CIFAR-10 ResNet-n / Plain-n, Section 4.2 recipe.

  python -m cnn_jax.main --config=configs/resnet_cifar.py:depth=56,plain=True \
      --config.data.root=../shared/data/cifar10-jpeg --workdir=workdirs/plain56

Recipe: SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1 divided by 10
at 32k and 48k iterations, stop at 64k; 4-pixel padding + random 32x32 crop
and horizontal flip; option A (parameter-free) shortcuts; per-channel mean/std
normalisation. Args (comma-separated key=value):

  depth=20     6k+2: 20, 32, 44, 56, 110
  plain=False  remove every shortcut (He et al.'s plain nets)
  scale=1.0    multiply the step count and the lr boundaries (0.05 = 3.2k steps)
  data='folder'  'folder' (data.root=DIR with train/ and test/ class folders),
                 'tfds' (tfds cifar10 in data.data_dir) or 'synthetic' (offline smoke)

depth >= 110 warms up at lr 0.01 for 400 iterations (x scale), as the paper
does for ResNet-110. He et al.'s 45k/5k train/val split:
``--config.data.holdout=5000`` (evaluates on 5,000 held-out training images).

Data: the CIFAR-10 image folder given by --config.data.root (or the
CNN_JAX_CIFAR10 environment variable).

Result (2026-12-01, 2-core x86-64 CPU dev machine, jax 0.10.2, shared JPEG
CIFAR-10 folder, 50k train / 10k test):

  python -m cnn_jax.main --config=configs/resnet_cifar.py:depth=20,scale=0.01 \
      --config.data.root=../shared/data/cifar10-jpeg --workdir=workdirs/r20_s001

(640 steps, 1.6 epochs, lr /10 at 320 and 480) reached 62.04% test accuracy
(loss 1.052) at 262 img/s, 7 min 44 s wall, compile 4.8 s. The full recipe
(64k steps) is a GPU job; see experiments/ablation_depth.py and the README
for the depth ablation.

Depth ablation at a two-hour CPU budget (2026-12-06, 2-core AMD EPYC, jax
0.10.2, shared JPEG CIFAR-10, 45k/5k split, 2 seeds, 87 min wall):

  python -m experiments.ablation_depth run --sweep-dir workdirs/ablation_cpu2h \
      --data-root ../shared/data/cifar10-jpeg --depths 20,32 --seeds 2 \
      --scale 0.0125 --holdout 5000 --eval-every 100

(800 steps per run, lr /10 at 400 and 600). Val error: Plain-20 43.98 ± 1.10%,
Plain-32 58.46 ± 2.26%, ResNet-20 36.20 ± 1.13%, ResNet-32 45.92 ± 1.56%;
training error Plain-20 45.7%, Plain-32 61.1% (the degradation problem shown).
ResNet-32 does not yet beat ResNet-20 at 2.3 epochs; the README says which
budget should show it (--scale 0.25).

On CPU, ``--config.xla_cpu_ynnpack=auto`` measures whether the train step is
faster with XLA:CPU's YNNPACK or without it and keeps the faster (2026-12-07,
2-core Intel Xeon, jax 0.10.2, synthetic data, batch 128, 50 steps): ResNet-20
chose YNNPACK off, 205 img/s against 168 with the flags (222 with ``off``);
ResNet-56 chose the flags, 65 against 66 (52 with ``off``). See
benchmarks/README.md ("infer_throughput.py").
"""

import os

import ml_collections

from cnn_jax.train.config import default_config, parse_arg

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, {'depth': 20, 'plain': False, 'scale': 1.0, 'data': 'folder'})
  c = default_config()
  c.model.name = 'cifar_resnet'
  c.model.kwargs = ml_collections.ConfigDict(
      {'depth': args['depth'], 'plain': args['plain'], 'shortcut': 'A',
       'widths': (16, 32, 64)})  # He et al.'s stage widths
  if args['data'] == 'folder':
    c.data.name = 'image_folder'
    c.data.root = os.environ.get('CNN_JAX_CIFAR10', '')
  elif args['data'] == 'tfds':
    c.data.name = 'tfds'
    c.data.tfds_name = 'cifar10'
  elif args['data'] == 'synthetic':
    c.data.name = 'synthetic'
  else:
    raise ValueError(f"config argument data={args['data']!r}; choose folder, tfds or synthetic.")
  c.data.image_size = 32
  c.data.mean, c.data.std = CIFAR10_MEAN, CIFAR10_STD
  c.batch_size = 128
  c.eval_batch_size = 1024
  c.num_steps = max(1, round(64_000 * args['scale']))
  c.log_every = 100
  c.eval_every = max(1, round(4_000 * args['scale']))
  c.optimizer.name = 'momentum'
  c.optimizer.lr = 0.1
  c.optimizer.momentum = 0.9
  c.optimizer.weight_decay = 1e-4
  c.schedule.name = 'piecewise'
  c.schedule.decay_steps = (round(32_000 * args['scale']), round(48_000 * args['scale']))
  c.schedule.decay_factor = 0.1
  if args['depth'] >= 110:
    # He et al.: "0.1 is slightly too large to start converging": 0.01 until the
    # training error is below 80% (about 400 iterations), then back to 0.1.
    c.schedule.warmup_steps = max(1, round(400 * args['scale']))
    c.schedule.warmup_mode = 'constant'
    c.schedule.warmup_factor = 0.1
  c.augment.crop_padding = 4
  c.augment.flip = True
  return c
