r"""A CIFAR ResNet written with the functional composition API, trained through the CLI.

  python -m cnn_jax.main --config=configs/composed_cifar.py --workdir=workdirs/composed
  python -m cnn_jax.main --config=configs/composed_cifar.py:data='folder',depth=20,scale=0.01 \
      --config.data.root=../shared/data/cifar10-jpeg --workdir=workdirs/composed_cifar

The network is :func:`build` below: ``cnn_jax.ops.compose`` combinators over
the same pure blocks (``ops.blocks``) that the Linen zoo wraps, so it is
He et al.'s CIFAR ResNet-n with option-A shortcuts, as ``cifar_resnet``. The
config names it by path (``model.name = '<this file>:build'``); the trainer
calls it with ``num_classes`` and ``model.kwargs`` and wraps the returned
``(init, apply)`` pair in ``cnn_jax.models.Functional``. Its variables are
exactly what ``build(...).init(key, (1, 32, 32, 3))`` returns, and it
trains, evaluates, checkpoints and resumes like any zoo model (``parallel='jit'``;
pmap needs BatchNorm that syncs over devices, which compose's does not).

Args: ``data='synthetic'|'folder'|'tfds'``, ``depth=20`` (6k+2), ``scale=1.0``
(as ``configs/resnet_cifar.py``: steps and lr boundaries of the 64k recipe),
``steps=0`` (overrides the step count; the default for synthetic data is 600).

Result (2026-12-02, 2-core x86-64 CPU dev machine, jax 0.10.2, the first command):
eval accuracy 0.9995 (loss 0.0025) on 2,000 held-out synthetic shapes after 600
steps of 128 (ResNet-20, 230 img/s, 347 s wall, compile 4.5 s).
"""

import pathlib

import ml_collections

from cnn_jax.ops import compose
from cnn_jax.train.config import load_config, parse_arg


def build(num_classes: int = 10, depth: int = 20, widths: tuple[int, ...] = (16, 32, 64),
          conv_impl: str = 'lax') -> compose.Layer:
  """ResNet-``depth`` for 32x32 inputs: (N, 32, 32, 3) -> (N, num_classes) logits."""
  if (depth - 2) % 6:
    raise ValueError(f'depth must be 6k+2 (20, 32, 44, 56, 110), got {depth}.')
  blocks = []
  for stage, width in enumerate(widths):
    for i in range((depth - 2) // 6):
      stride = 2 if stage > 0 and i == 0 else 1
      blocks.append(compose.residual_block(width, stride=stride, shortcut='A', impl=conv_impl))
  return compose.sequential(compose.conv_bn(widths[0], 3, impl=conv_impl), compose.relu,
                            *blocks, compose.global_avg_pool, compose.dense(num_classes))


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, {'data': 'synthetic', 'depth': 20, 'scale': 1.0, 'steps': 0})
  c = load_config('resnet_cifar', f"depth={a['depth']},scale={a['scale']},data={a['data']!r}")
  c.unlock()
  c.model.name = f'{pathlib.Path(__file__).resolve()}:build'
  c.model.kwargs = ml_collections.ConfigDict({'depth': a['depth'], 'widths': (16, 32, 64)})
  if a['data'] == 'synthetic':
    c.data.num_train, c.data.num_eval = 10_000, 2_000
    c.data.mean, c.data.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    c.num_steps, c.eval_every, c.log_every = 600, 200, 50
    c.schedule.name, c.schedule.warmup_steps = 'cosine', 50
    c.eval_batch_size = 512
  if a['steps']:
    c.num_steps = a['steps']
  c.lock()
  return c
