r"""Images/s of the inference forward pass: the zoo's model beside the same one in PyTorch.

Issue 19's inference target is ResNet-50 at batch 8 at least as fast as PyTorch
on the same CPU. Candidates, timed interleaved in one process:

* ``cnn_jax``: ``model.apply(variables, x, train=False)`` jitted, what
  ``Run.predict`` runs on a batch (BN with its running statistics, float32
  NHWC input; bf16 compute with ``--dtypes bfloat16``).
* ``cnn_jax_no_ynn``: the same program compiled with YNNPACK off for it
  (``compiler_options={'xla_cpu_experimental_ynn_fusion_type': ''}``: XLA's
  own convolutions and fusions). The process-wide default
  (``cnn_jax.xla_defaults``: YNNPACK for convolutions, elementwise work and
  reductions) was chosen on CIFAR ResNet training; this row shows where
  inference of a larger network wants the other library.
* ``torch`` (``--torch``, when PyTorch is installed): ``train_throughput``'s
  twin network in eval mode under ``torch.inference_mode()``, channels_last,
  AMP for bf16, ``torch.compile`` on CUDA. A failure is recorded as
  ``torch_error``.

  python -m benchmarks.infer_throughput --torch            # CPU: ResNet-50, batch 8
  python -m benchmarks.infer_throughput --models resnet20,resnet50 --batches 1,8,64 --torch
"""

from __future__ import annotations

import argparse
import sys

import jax
import numpy as np

from benchmarks import timer
from benchmarks.train_throughput import (MODELS, _model_and_init, torch_device,
                                         torch_model)
from cnn_jax.models.introspect import xla_flops
from cnn_jax.train.cpu_library import NO_YNNPACK


def project_forward_fn(name: str, batch: int, dtype_name: str):
  """``(forward, variables, x)``: the zoo model's jitted inference pass and its inputs."""
  model, init = _model_and_init(name, dtype_name)
  state = init(jax.random.key(0))
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  side = MODELS[name][2]
  x = jax.device_put(np.random.default_rng(0).normal(size=(batch, side, side, 3))
                     .astype(np.float32))
  return jax.jit(lambda v, x: model.apply(v, x, train=False)), variables, x


def torch_forward_fn(name: str, batch: int, dtype_name: str):
  """A zero-argument call of the PyTorch twin's inference pass."""
  import torch
  side = MODELS[name][2]
  device = torch_device()
  net = torch_model(name)[0].to(device, memory_format=torch.channels_last).eval()
  compiled = torch.compile(net) if device == 'cuda' else net
  x = torch.randn(batch, 3, side, side, device=device).to(memory_format=torch.channels_last)
  amp = dtype_name == 'bfloat16'

  def forward():
    with torch.inference_mode(), torch.autocast(device, dtype=torch.bfloat16, enabled=amp):
      out = compiled(x)
    if device == 'cuda':
      torch.cuda.synchronize()
    return out

  return forward


def infer_row(name: str, batch: int, dtype_name: str, *, repeats: int,
              with_torch: bool = False) -> dict:
  """One (model, batch, dtype) row: img/s of each candidate, their ratio, GFLOP per batch."""
  forward, variables, x = project_forward_fn(name, batch, dtype_name)
  flops = xla_flops(forward, variables, x) or float('nan')  # compiles what the calls reuse
  candidates = {'cnn_jax': lambda: forward(variables, x)}
  if jax.default_backend() == 'cpu':
    no_ynn = forward.lower(variables, x).compile(compiler_options=NO_YNNPACK)
    candidates['cnn_jax_no_ynn'] = lambda: no_ynn(variables, x)
  row = {'model': name, 'batch': batch, 'dtype': dtype_name, 'forward_gflops': flops / 1e9}
  if with_torch:
    try:
      candidates['torch'] = torch_forward_fn(name, batch, dtype_name)
    except Exception as e:  # noqa: BLE001 -- not installed, compile error: JAX still runs
      row['torch_error'] = timer.one_line(e)
      print(f'{name} b{batch} {dtype_name}: torch skipped ({row["torch_error"]})', flush=True)
  t = timer.time_interleaved(candidates, repeats=repeats, warmup=3)
  for cand, r in t.items():
    row[f'{cand}_img_s'] = batch / r['median_s']
    row[f'{cand}_best_img_s'] = batch / r['min_s']
    row[f'{cand}_ms'] = 1e3 * r['median_s']
  line = f"{name:9s} b{batch:<4d} {dtype_name:8s}"
  for cand in t:
    line += f"  {cand} {row[f'{cand}_img_s']:.1f} img/s"
  for cand in (c for c in t if c.startswith('cnn_jax') and 'torch' in t):
    ratio = f'ratio_{cand}_over_torch'
    row[ratio] = row[f'{cand}_img_s'] / row['torch_img_s']
    row[f'best_{ratio}'] = row[f'{cand}_best_img_s'] / row['torch_best_img_s']
    line += f"; {cand} / torch {row[ratio]:.3f} (best repeats {row[f'best_{ratio}']:.3f})"
  print(line, flush=True)
  return row


def run(args) -> dict:
  rows = [infer_row(name, int(batch), dtype_name, repeats=args.repeats, with_torch=args.torch)
          for name in args.models.split(',') for batch in args.batches.split(',')
          for dtype_name in args.dtypes.split(',')]
  return {'benchmark': 'infer_throughput', 'environment': timer.environment(), 'rows': rows}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  timer.add_common_args(p, 'infer_throughput', cpu_repeats=30)
  p.add_argument('--models', default='resnet50')
  p.add_argument('--batches', default='8')
  p.add_argument('--torch', action='store_true', help='add the PyTorch reference')
  return timer.run_over_models(p, argv, run, MODELS)


if __name__ == '__main__':
  sys.exit(main())
