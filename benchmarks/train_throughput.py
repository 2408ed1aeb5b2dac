r"""Images/s of the real train step, side by side with baselines, plus TFLOP/s and MFU.

Candidates, timed interleaved in one process (``benchmarks/timer.py``):

* ``cnn_jax``: the project's step (``cnn_jax.train.step.make_train_step``):
  uint8 batch in, normalisation, random crop + flip, BN, SGD momentum + weight
  decay, loss/accuracy/grad-norm metrics.
* ``cnn_jax_no_ynn`` (CPU): that step compiled with YNNPACK off for it
  (``NO_YNNPACK``), beside the process-wide flags of ``cnn_jax.xla_defaults``.
* ``flax_baseline`` (ResNet-20/56 only): the same network written the way a
  user writes it from the flax examples (``nn.Conv``, ``nn.BatchNorm``,
  ``optax.sgd``, ``optax.softmax_cross_entropy``; float input, no augmentation),
  defined in this file.
* ``torch`` (``--torch``, when PyTorch is installed): the same network in
  PyTorch (the CIFAR ResNets written here, ResNet-50 as torchvision builds it),
  channels_last, AMP for bf16, ``torch.compile`` and cuDNN autotuning on CUDA.
  A torch failure (not installed, a compile error) is recorded in the row as
  ``torch_error`` and the JAX candidates are still timed.

TFLOP/s come from XLA's cost analysis of the compiled step; MFU divides them by
a matmul peak measured on the same device in the same run (the row's own
dtype's, and bf16's when measured: the chip's headline rate). torch's TFLOP/s
count the same network's FLOPs per image.

  python -m benchmarks.train_throughput                        # CPU: ResNet-20, batch 128
  python -m benchmarks.train_throughput --models resnet20,resnet56,resnet50 \
      --batches 128,512 --dtypes float32,bfloat16 --torch      # GPU
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import timer
from cnn_jax.dtypes import compute_dtype
from cnn_jax.models import get_model
from cnn_jax.models.introspect import xla_flops
from cnn_jax.tasks import Classification
from cnn_jax.train.config import default_config
from cnn_jax.train.cpu_library import NO_YNNPACK
from cnn_jax.train.parallel import DataParallel
from cnn_jax.train.seeds import over_seeds
from cnn_jax.train.state import create_train_state
from cnn_jax.train.step import make_train_step

MODELS = {  # name -> (registry name, kwargs, image side, baseline depth or None)
    'resnet8': ('cifar_resnet', {'depth': 8}, 32, 8),  # the smallest: smoke runs
    'resnet20': ('cifar_resnet', {'depth': 20}, 32, 20),
    'resnet56': ('cifar_resnet', {'depth': 56}, 32, 56),
    'resnet50': ('resnet50', {}, 224, None),
}


# ----------------------------------------------------------------------------- baseline

class _BaselineBlock(nn.Module):
  """A CIFAR basic block as the flax examples write it (option A shortcut)."""
  features: int
  strides: int
  dtype: Any

  @nn.compact
  def __call__(self, x, train: bool):
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    y = conv(self.features, (3, 3), (self.strides, self.strides), padding=1)(x)
    y = nn.relu(norm()(y))
    y = conv(self.features, (3, 3), padding=1)(y)
    y = norm()(y)
    if self.strides != 1 or x.shape[-1] != self.features:
      x = x[:, ::self.strides, ::self.strides]
      pad = self.features - x.shape[-1]
      x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (pad // 2, pad - pad // 2)))
    return nn.relu(x + y)


class BaselineResNet(nn.Module):
  """He et al.'s CIFAR ResNet-n in plain flax.linen (the benchmark's reference)."""
  depth: int = 20
  num_classes: int = 10
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = True):
    n = (self.depth - 2) // 6
    x = nn.Conv(16, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
    x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=self.dtype)(x))
    for i, features in enumerate((16, 32, 64)):
      for j in range(n):
        x = _BaselineBlock(features, 2 if i > 0 and j == 0 else 1, self.dtype)(x, train)
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.num_classes, dtype=self.dtype)(x).astype(jnp.float32)


def baseline_step_fn(depth: int, batch: int, dtype):
  """``(state, step)`` of the flax-examples-style train step, ready to time."""
  model = BaselineResNet(depth=depth, dtype=dtype)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
  tx = optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(0.1, momentum=0.9))
  state = (variables['params'], variables['batch_stats'], tx.init(variables['params']))

  @functools.partial(jax.jit, donate_argnums=0)  # as the flax examples' pmap'd step
  def step(state, images, labels):
    params, batch_stats, opt_state = state

    def loss_fn(params):
      logits, updates = model.apply({'params': params, 'batch_stats': batch_stats}, images,
                                    train=True, mutable=['batch_stats'])
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
      return loss, (logits, updates['batch_stats'])

    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, batch_stats, opt_state), {'loss': loss,
                                              'accuracy': jnp.mean(logits.argmax(-1) == labels)}

  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.normal(size=(batch, 32, 32, 3)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 10, batch), jnp.int32)
  return state, lambda s: step(s, images, labels)


# ----------------------------------------------------------------------------- project

# The project's optimiser, as the CIFAR configs set it up.
_SCHEDULE = optax.constant_schedule(0.1)
_TX = optax.chain(optax.add_decayed_weights(1e-4), optax.sgd(_SCHEDULE, momentum=0.9))


@functools.cache
def _model_and_init(name: str, dtype_name: str):
  """``(model, init)``: ``init(key) -> TrainState`` jitted once per model and dtype.

  K seeds are K calls of this one program, stacked: a vmapped or unrolled init
  would be one more compile per K and mode (on CPU, longer than the step's).
  """
  reg, kwargs, side, _ = MODELS[name]
  model = get_model(reg, num_classes=10 if side == 32 else 1000,
                    dtype=compute_dtype(dtype_name), **kwargs)
  return model, jax.jit(lambda k: create_train_state(model, _TX, k, (1, side, side, 3)))


def project_step_fn(name: str, batch: int, dtype_name: str, num_seeds: int = 1,
                    seeds_mode: str = 'auto'):
  """The training loop's own step: ``make_train_step`` compiled by ``DataParallel``.

  That is what ``cnn_jax.main`` runs (state donated, batch sharded, here over
  one device), with the uint8 batch normalised and augmented inside. With
  ``num_seeds`` K > 1, what ``config.num_seeds=K`` runs: the step lifted over K
  seeds' states, a (K, batch, ...) batch and K keys (``seeds_mode``: vmap or unroll).
  """
  side = MODELS[name][2]
  model, init = _model_and_init(name, dtype_name)
  dp = DataParallel('jit', jax.devices()[:1], num_seeds=num_seeds)
  seeded = functools.partial(over_seeds, num_seeds=num_seeds, mode=seeds_mode)
  keys = jax.random.split(jax.random.key(0), num_seeds)
  if num_seeds == 1:
    state = init(keys[0])
  else:  # stacked on the host: an eager jnp.stack would compile once per leaf shape
    state = jax.tree.map(lambda *xs: np.stack(xs), *(jax.device_get(init(k)) for k in keys))
  state = dp.put_state(state)
  task_config = default_config()
  task_config.augment.crop_padding, task_config.augment.flip = 4, True
  train_step = seeded(make_train_step(model, Classification(task_config), _TX, _SCHEDULE,
                                      mean=(0.5,) * 3, std=(0.25,) * 3))
  step = dp.compile_train(train_step)
  rng = np.random.default_rng(0)
  lead = (batch,) if num_seeds == 1 else (num_seeds, batch)
  batch_arrays = dp.put_batch({
      'image': jnp.asarray(rng.integers(0, 256, (*lead, side, side, 3), np.uint8)),
      'label': jnp.asarray(rng.integers(0, 10, lead), jnp.int32)}, train=True)
  key = jax.random.key(1) if num_seeds == 1 else jax.random.split(jax.random.key(1), num_seeds)
  # The jitted step itself (not train_step): lowering it for XLA's FLOP count
  # compiles the very program the calls then reuse, not a second one.
  return state, lambda s: step(s, batch_arrays, key), (step, batch_arrays, key)


# ----------------------------------------------------------------------------- torch

def _torch_cifar_resnet(depth: int):
  """He et al.'s CIFAR ResNet-n in PyTorch (option A shortcut, as the flax baseline)."""
  import torch.nn as tnn
  import torch.nn.functional as F

  class Block(tnn.Module):
    def __init__(self, c_in, c_out, stride):
      super().__init__()
      self.c1 = tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
      self.b1 = tnn.BatchNorm2d(c_out)
      self.c2 = tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
      self.b2 = tnn.BatchNorm2d(c_out)
      self.stride, self.pad = stride, c_out - c_in

    def forward(self, x):
      y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
      if self.stride != 1 or self.pad:
        x = F.pad(x[:, :, ::self.stride, ::self.stride],
                  (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))
      return F.relu(x + y)

  n = (depth - 2) // 6
  layers, c_in = [tnn.Conv2d(3, 16, 3, 1, 1, bias=False), tnn.BatchNorm2d(16), tnn.ReLU()], 16
  for i, c in enumerate((16, 32, 64)):
    for j in range(n):
      layers.append(Block(c_in, c, 2 if i > 0 and j == 0 else 1))
      c_in = c
  layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 10)]
  return tnn.Sequential(*layers)


def _torch_resnet50():
  """torchvision's ResNet-50 (v1.5: the stride on the 3x3), written here: only torch needed.

  25,557,032 parameters, as torchvision's and the zoo's (``torch_model`` checks).
  """
  import torch
  import torch.nn as tnn

  def conv_bn(c_in, c_out, k, stride=1):
    return [tnn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), tnn.BatchNorm2d(c_out)]

  class Bottleneck(tnn.Module):
    def __init__(self, c_in, width, stride):
      super().__init__()
      relu = functools.partial(tnn.ReLU, inplace=True)
      self.body = tnn.Sequential(*conv_bn(c_in, width, 1), relu(),
                                 *conv_bn(width, width, 3, stride), relu(),
                                 *conv_bn(width, 4 * width, 1))
      self.down = (tnn.Sequential(*conv_bn(c_in, 4 * width, 1, stride))
                   if stride != 1 or c_in != 4 * width else tnn.Identity())

    def forward(self, x):
      return torch.relu(self.body(x) + self.down(x))

  layers, c_in = [*conv_bn(3, 64, 7, 2), tnn.ReLU(inplace=True), tnn.MaxPool2d(3, 2, 1)], 64
  for i, (width, n) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3))):
    for j in range(n):
      layers.append(Bottleneck(c_in, width, 2 if i > 0 and j == 0 else 1))
      c_in = 4 * width
  layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(2048, 1000)]
  return tnn.Sequential(*layers)


TORCH_PARAMS = {'resnet50': 25_557_032}  # torchvision's count


def torch_model(name: str):
  """``(net, num_classes)``: the PyTorch twin of ``MODELS[name]``, on the CPU."""
  depth = MODELS[name][3]
  net, classes = ((_torch_resnet50(), 1000) if depth is None else
                  (_torch_cifar_resnet(depth), 10))
  n = sum(p.numel() for p in net.parameters())
  if name in TORCH_PARAMS and n != TORCH_PARAMS[name]:
    raise AssertionError(f'torch {name} has {n:,} parameters, not {TORCH_PARAMS[name]:,}')
  return net, classes


def torch_device() -> str:
  import torch
  return 'cuda' if torch.cuda.is_available() else 'cpu'


def torch_step_fn(name: str, batch: int, dtype_name: str):
  """``(None, step)``: the same network in PyTorch, as a tuned PyTorch user runs it.

  channels_last, AMP (bf16 autocast) for bfloat16, and on CUDA ``torch.compile``
  and ``cudnn.benchmark`` (cuDNN's autotuning, the counterpart of XLA's). The
  networks are ``torch_model``'s.
  """
  import torch
  import torch.nn.functional as F
  side = MODELS[name][2]
  device = torch_device()
  net, classes = torch_model(name)
  model = net.to(device, memory_format=torch.channels_last)
  opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
  if device == 'cuda':
    torch.backends.cudnn.benchmark = True
  compiled = torch.compile(model) if device == 'cuda' else model
  x = torch.randn(batch, 3, side, side, device=device).to(memory_format=torch.channels_last)
  y = torch.randint(0, classes, (batch,), device=device)
  amp = dtype_name == 'bfloat16'

  def step(_):
    with torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
      loss = F.cross_entropy(compiled(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if device == 'cuda':
      torch.cuda.synchronize()
    return None

  return None, step


# ----------------------------------------------------------------------------- peak

def matmul_peak_tflops(dtype_name: str, n: int, repeats: int) -> float:
  """Achieved TFLOP/s of an n x n x n matmul: the device's practical peak."""
  dtype = jnp.dtype(dtype_name)
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  mm = jax.jit(jnp.matmul)
  t = timer.time_interleaved({'mm': lambda: mm(a, b)}, repeats=repeats, warmup=2)
  return 2 * n ** 3 / t['mm']['median_s'] / 1e12


class _Stateful:
  """Adapts ``state -> (state, metrics)`` steps to the timer's zero-argument calls."""

  def __init__(self, state, step):
    self.state, self.step = state, step

  def __call__(self):
    out = self.step(self.state)
    if isinstance(out, tuple):
      self.state, metrics = out
      return metrics
    return out


def _first_call(make) -> tuple[_Stateful, float]:
  """Builds a candidate and makes its first (compiling) call: ``(candidate, seconds)``."""
  t0 = time.perf_counter()
  cand = _Stateful(*make())
  timer.block(cand())
  return cand, time.perf_counter() - t0


def throughput_row(name: str, batch: int, dtype_name: str, peaks: Mapping[str, float], *,
                   repeats: int, baseline: bool = True, with_torch: bool = False) -> dict:
  """One (model, batch, dtype) row: img/s of each candidate side by side, TFLOP/s, MFU.

  ``peaks`` maps dtype names to matmul TFLOP/s measured on this device
  (``matmul_peak_tflops``); the row's dtype must be among them. ``baseline``
  adds the flax-examples ResNet (CIFAR models only); ``with_torch`` adds
  PyTorch, whose failure is recorded as ``torch_error`` rather than raised.
  Each ``*_compile_s`` is the candidate's first call (for cnn_jax, its
  ahead-of-time compilation for XLA's FLOP count; for cnn_jax_no_ynn, its own).
  """
  _, _, _, base_depth = MODELS[name]
  state, fn, (step, arrays, key) = project_step_fn(name, batch, dtype_name)
  t0 = time.perf_counter()
  flops = xla_flops(step, state, arrays, key) or float('nan')  # before donation
  first_call = {'cnn_jax': time.perf_counter() - t0}
  candidates = {'cnn_jax': _Stateful(state, fn)}
  if jax.default_backend() == 'cpu':  # the same step with YNNPACK off for it, on its own state
    t0 = time.perf_counter()
    no_ynn = step.lower(state, arrays, key).compile(compiler_options=NO_YNNPACK)
    first_call['cnn_jax_no_ynn'] = time.perf_counter() - t0
    twin = jax.device_put(jax.device_get(state), jax.tree.map(lambda a: a.sharding, state))
    candidates['cnn_jax_no_ynn'] = _Stateful(twin, lambda s: no_ynn(s, arrays, key))
  if baseline and base_depth is not None:
    dtype = compute_dtype(dtype_name) or jnp.float32
    candidates['flax_baseline'] = _Stateful(*baseline_step_fn(base_depth, batch, dtype))
  row = {'model': name, 'batch': batch, 'dtype': dtype_name, 'step_gflops': flops / 1e9,
         'matmul_peak_tflops': peaks[dtype_name]}
  if with_torch:
    try:
      candidates['torch'], first_call['torch'] = _first_call(
          lambda: torch_step_fn(name, batch, dtype_name))
    except Exception as e:  # noqa: BLE001 -- not installed, compile error, OOM: JAX still runs
      row['torch_error'] = timer.one_line(e)
      print(f'{name} b{batch} {dtype_name}: torch skipped ({row["torch_error"]})', flush=True)
  t = timer.time_interleaved(candidates, repeats=repeats, warmup=2)
  for cand, r in t.items():
    row[f'{cand}_img_s'] = batch / r['median_s']
    row[f'{cand}_best_img_s'] = batch / r['min_s']  # the least disturbed repeat
    row[f'{cand}_compile_s'] = first_call.get(cand, 0.0) + r['compile_s']
    # Same network, same FLOPs per image (XLA's count of the cnn_jax step).
    row[f'{cand}_tflops'] = flops / batch * row[f'{cand}_img_s'] / 1e12
    row[f'{cand}_mfu'] = row[f'{cand}_tflops'] / peaks[dtype_name]
    if 'bfloat16' in peaks:
      row[f'{cand}_mfu_vs_bf16'] = row[f'{cand}_tflops'] / peaks['bfloat16']
  line = (f"{name:9s} b{batch:<4d} {dtype_name:8s} cnn_jax {row['cnn_jax_img_s']:9.1f} "
          f"img/s ({row['cnn_jax_tflops']:.3f} TF/s, MFU {100 * row['cnn_jax_mfu']:.1f}%)")
  for cand in t:
    if cand != 'cnn_jax':
      row[f'ratio_cnn_jax_over_{cand}'] = row['cnn_jax_img_s'] / row[f'{cand}_img_s']
      row[f'best_ratio_cnn_jax_over_{cand}'] = (row['cnn_jax_best_img_s'] /
                                                row[f'{cand}_best_img_s'])
      line += (f"  {cand} {row[f'{cand}_img_s']:9.1f} img/s (ratio "
               f"{row[f'ratio_cnn_jax_over_{cand}']:.3f}, of best repeats "
               f"{row[f'best_ratio_cnn_jax_over_{cand}']:.3f})")
  if 'cnn_jax_no_ynn' in t and 'torch' in t:
    row['ratio_cnn_jax_no_ynn_over_torch'] = row['cnn_jax_no_ynn_img_s'] / row['torch_img_s']
  print(line, flush=True)
  return row


def measure_peaks(dtypes, n: int, repeats: int) -> dict[str, float]:
  """``{dtype: matmul TFLOP/s}`` on this device, printed as measured."""
  peaks = {d: matmul_peak_tflops(d, n, repeats) for d in dtypes}
  for d, p in peaks.items():
    print(f'matmul peak {d}: {p:.3f} TFLOP/s ({n}^3)', flush=True)
  return peaks


def run(args) -> dict:
  peaks = measure_peaks(args.dtypes.split(','), args.matmul_n, args.repeats)
  rows = [throughput_row(name, int(batch), dtype_name, peaks, repeats=args.repeats,
                         with_torch=args.torch)
          for name in args.models.split(',') for batch in args.batches.split(',')
          for dtype_name in args.dtypes.split(',')]
  return {'benchmark': 'train_throughput', 'environment': timer.environment(), 'rows': rows}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  on_cpu = timer.add_common_args(p, 'train_throughput', cpu_repeats=30)
  p.add_argument('--models', default='resnet20' if on_cpu else 'resnet20,resnet56,resnet50')
  p.add_argument('--batches', default='128' if on_cpu else '128,512')
  p.add_argument('--matmul-n', type=int, default=1024 if on_cpu else 8192)
  p.add_argument('--torch', action='store_true', help='add the PyTorch reference')
  return timer.run_over_models(p, argv, run, MODELS)


if __name__ == '__main__':
  sys.exit(main())
