r"""What K seeds trained together cost against K separate runs: the real train step, side by side.

  python -m benchmarks.num_seeds                          # CPU: resnet20, b128, K = 2, 4
  python -m benchmarks.num_seeds --models resnet20,resnet56 --seeds 2,4,8 --batches 128,512

Per K, three candidates do the same work (K optimizer steps of one batch each):
``vmap`` and ``unroll`` are one call of the step lifted over K seeds (what
``--config.num_seeds=K`` compiles with ``seeds_mode=vmap`` / ``unroll``), ``apart``
is K calls of the single-seed step (K separate runs, one after another, in one
process). The ratio ``apart / <mode>`` of their medians is the speedup of
training seeds together that way; img/s count every seed's images.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from benchmarks import timer
from benchmarks.train_throughput import MODELS, _Stateful, project_step_fn


def _apart(state, fn, k: int) -> _Stateful:
  """K single-seed steps per call: K runs, one after another, sharing one compiled program.

  Each run steps its own copy of ``state`` (the step donates its input).
  """
  states = [jax.tree.map(jnp.copy, state) for _ in range(k)]

  def run_all(_):
    metrics = None
    for i, s in enumerate(states):
      states[i], metrics = fn(s)
    return None, metrics

  return _Stateful(None, run_all)


def seeds_rows(name: str, batch: int, dtype_name: str, ks: Sequence[int],
               modes: Sequence[str] = ('vmap', 'unroll'), repeats: int = 5) -> list[dict]:
  """One row per K: img/s of K runs apart and of each ``seeds_mode``, and their speedups."""
  state, single, _ = project_step_fn(name, batch, dtype_name)
  rows = []
  for k in ks:
    candidates = {mode: _Stateful(*project_step_fn(name, batch, dtype_name, num_seeds=k,
                                                   seeds_mode=mode)[:2]) for mode in modes}
    candidates['apart'] = _apart(state, single, k)
    t = timer.time_interleaved(candidates, repeats=repeats, warmup=2)
    row = {'model': name, 'batch': batch, 'dtype': dtype_name, 'num_seeds': k}
    for cand, r in t.items():
      row[f'{cand}_img_s'] = k * batch / r['median_s']
      row[f'{cand}_compile_s'] = r['compile_s']
    line = (f"{name:9s} b{batch:<4d} {dtype_name:8s} K={k}: "
            f"apart {row['apart_img_s']:8.1f} img/s")
    for mode in modes:
      row[f'speedup_{mode}_over_apart'] = t['apart']['median_s'] / t[mode]['median_s']
      row[f'best_speedup_{mode}'] = t['apart']['min_s'] / t[mode]['min_s']
      line += (f"; {mode} {row[f'{mode}_img_s']:8.1f} img/s, speedup "
               f"{row[f'speedup_{mode}_over_apart']:.3f} (of best repeats "
               f"{row[f'best_speedup_{mode}']:.3f})")
    print(line, flush=True)
    rows.append(row)
  return rows


def run(args) -> dict:
  ks = [int(x) for x in args.seeds.split(',')]
  rows = [row for name in args.models.split(',') for batch in map(int, args.batches.split(','))
          for dtype_name in args.dtypes.split(',')
          for row in seeds_rows(name, batch, dtype_name, ks, args.modes.split(','),
                                args.repeats)]
  return {'benchmark': 'num_seeds', 'environment': timer.environment(), 'rows': rows}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  on_cpu = timer.add_common_args(p, 'num_seeds', cpu_repeats=5)
  p.add_argument('--models', default='resnet20' if on_cpu else 'resnet20,resnet56')
  p.add_argument('--batches', default='128' if on_cpu else '128,512')
  p.add_argument('--seeds', default='2,4' if on_cpu else '2,4,8', help='comma list of K')
  p.add_argument('--modes', default='vmap,unroll', help='seeds_mode candidates')
  return timer.run_over_models(p, argv, run, MODELS)


if __name__ == '__main__':
  sys.exit(main())
