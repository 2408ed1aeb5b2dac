r"""The one GPU command: speedrun, train throughput and conv impls, one JSON and one table.

  python -m benchmarks.gpu_suite                          # the GPU run, about 8 minutes
  python -m benchmarks.gpu_suite --data-root DIR --out benchmarks/results/x.json
  python -m benchmarks.gpu_suite --smoke                  # CPU: synthetic data, tiny sizes

Three parts, each calling its benchmark's own functions in this process:

* ``speedrun``: ``experiments.speedrun.run`` on ``configs/cifar_speedrun.py``
  (full width, 9.9 epochs, 5 seeds): test accuracy mean +- std and training
  seconds excluding compilation, next to the airbench anchor (``ANCHOR``,
  quoted, not run here). Needs the CIFAR-10 folder or a pack file of it
  (``python -m cnn_jax.data.packed pack``): ``--data-root``, else
  ``$CNN_JAX_CIFAR10``, else ``../shared/data/cifar10-jpeg`` beside the
  checkout; without one the part is skipped and says so.
* ``train_throughput``: ``train_throughput.throughput_row`` for ResNet-20/56
  (batch 128 and 512) and ResNet-50 (224x224, batch 128) in bf16 and fp32,
  the project's step beside PyTorch (torch.compile, channels_last, AMP), with
  MFU against the fp32 and bf16 matmul rates measured in the same run.
* ``conv_impls``: ``conv_impls.shape_rows`` at batch 128 for every impl,
  winograd and auto included.
* ``num_seeds``: ``num_seeds.seeds_rows``, ResNet-20 at batch 128: K = 2, 4, 8
  seeds trained together (``seeds_mode`` vmap and unroll) against K runs apart.

Time: ``--budget-s`` (default 420 s, so the whole command, imports and the
last unit's overrun included, ends within 8 minutes) is shared out by
``SHARES``; a part only starts a unit (one row) while its share lasts, and
time a part leaves unspent passes to the next. Units not started are listed
as skipped. A failure (torch missing, out of memory, a compile error) is
recorded as a one-line error for its unit or part, and the suite goes on.
Writes ``benchmarks/results/gpu_suite_<device>_<date>.json`` and a ``.md``
beside it (``--out`` names the JSON), and prints the markdown last.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import pathlib
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence

from benchmarks import conv_impls, num_seeds, timer, train_throughput
from cnn_jax.ops import conv, conv_auto
from cnn_jax.train.config import load_config
from experiments import speedrun

PARTS = ('speedrun', 'train_throughput', 'conv_impls', 'num_seeds')
# Seconds of the default 420-s budget per part, rescaled to --budget-s and to
# the parts chosen. Compilation dominates every part on a GPU.
SHARES = {'speedrun': 120, 'train_throughput': 170, 'conv_impls': 80, 'num_seeds': 50}
DATA_ENV = 'CNN_JAX_CIFAR10'
SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / 'shared' / 'data' / 'cifar10-jpeg'
# The reference the speedrun is read against, as issue 19 quotes it; not run here.
ANCHOR = {'name': 'airbench94_muon', 'device': 'NVIDIA H100', 'accuracy_mean': 0.9081,
          'accuracy_std': 0.0012, 'train_s': 1.37, 'source': 'quoted in issue 19; not run here'}


@dataclasses.dataclass(frozen=True)
class Plan:
  """What the suite runs: the GPU sizes, or the smoke test's."""
  speedrun_arg: str                          # configs/cifar_speedrun.py's argument
  throughput: tuple[tuple[str, int], ...]    # (model, batch), most wanted first
  dtypes: tuple[str, ...]
  repeats: int
  matmul_n: int
  conv_shapes: tuple[tuple, ...]             # conv_impls.SHAPES entries
  conv_batch: int
  conv_repeats: int
  seeds_model: tuple[str, int]               # (model, batch) of the num_seeds part
  seeds: tuple[int, ...]                     # the K to measure


GPU = Plan(
    speedrun_arg='',
    # Batch 512 last: if time runs short, the rows the issue names first survive.
    throughput=(('resnet20', 128), ('resnet56', 128), ('resnet50', 128),
                ('resnet20', 512), ('resnet56', 512)),
    dtypes=('bfloat16', 'float32'), repeats=30, matmul_n=8192,
    conv_shapes=tuple(s for group in ('resnet20', 'resnet50') for s in conv_impls.SHAPES[group]),
    conv_batch=128, conv_repeats=20, seeds_model=('resnet20', 128), seeds=(2, 4, 8))

SMOKE = Plan(
    speedrun_arg='smoke=True,epochs=1.0,seeds=1',  # synthetic data (the speedrun's tests: more)
    throughput=(('resnet8', 8),), dtypes=('float32',), repeats=1, matmul_n=64,
    conv_shapes=(conv_impls.SHAPES['resnet20'][2],),  # 3x3 stride 1: Winograd applies
    # num_seeds at the throughput row's model and batch: its one-seed step is that row's
    # program, which the persistent compilation cache (on in the tests) serves again.
    conv_batch=2, conv_repeats=1, seeds_model=('resnet8', 8), seeds=(2,))


# ----------------------------------------------------------------------------- budget

def deadlines(parts: Sequence[str], start: float, budget_s: float) -> dict[str, float]:
  """Each part's deadline: the budget's end less the shares of the parts after it.

  So a part may use what earlier parts left unspent, and never eats into the
  shares of later ones.
  """
  scale = budget_s / sum(SHARES[p] for p in parts)
  return {p: start + budget_s - scale * sum(SHARES[q] for q in parts[i + 1:])
          for i, p in enumerate(parts)}


def run_units(units: Sequence[tuple[str, Callable[[], list[dict]]]], deadline: float,
              clock: Callable[[], float] = time.perf_counter) -> dict:
  """Runs ``(label, fn)`` units in order while each can still end before ``deadline``.

  A unit starts only if the slowest unit so far would finish in time (a unit
  cannot be stopped once started). Returns ``{'status', 'rows', 'errors',
  'skipped'}``: a unit that raises is one ``{'unit', 'error'}`` entry.
  """
  rows, errors, skipped, slowest = [], [], [], 0.0
  for label, fn in units:
    t0 = clock()
    if t0 + slowest > deadline:
      skipped.append(label)
      continue
    try:
      rows.extend(fn())
    except Exception as e:  # noqa: BLE001 -- OOM, compile error, missing package: record, go on
      errors.append({'unit': label, 'error': timer.one_line(e)})
      print(f'{label}: error: {errors[-1]["error"]}', flush=True)
    slowest = max(slowest, clock() - t0)
  if skipped:
    print(f'over budget, not run: {", ".join(skipped)}', flush=True)
  status = ('ok' if rows and not errors and not skipped else 'partial' if rows else
            'error' if errors else 'skipped')
  return {'status': status, 'rows': rows, 'errors': errors, 'skipped': skipped}


# ----------------------------------------------------------------------------- parts

def default_data_root() -> str | None:
  """``$CNN_JAX_CIFAR10``, else the shared CIFAR-10 folder beside the checkout, else None."""
  if os.environ.get(DATA_ENV):
    return os.environ[DATA_ENV]
  return str(SHARED_DATA) if SHARED_DATA.is_dir() else None


def speedrun_part(plan: Plan, data_root: str | None, deadline: float) -> dict:
  """5 seeds of the speedrun (mean +- std), beside the anchor; skipped without data."""
  del deadline  # one call of speedrun.run: its seeds cannot be cut short
  cfg = load_config('cifar_speedrun', plan.speedrun_arg)
  if cfg.data == 'folder':
    if not data_root or not pathlib.Path(data_root).exists():
      reason = (f'no CIFAR-10 folder (--data-root, ${DATA_ENV} or {SHARED_DATA}); '
                f'looked at {data_root!r}' if data_root else
                f'no CIFAR-10 folder: pass --data-root or set ${DATA_ENV}')
      print(f'speedrun: skipped, {reason}', flush=True)
      return {'status': 'skipped', 'reason': reason, 'anchor': ANCHOR}
    cfg.root = data_root
  with tempfile.TemporaryDirectory() as workdir:
    summary = speedrun.run(cfg, workdir)
  print(speedrun.summary_line(summary), flush=True)
  return {'status': 'ok', 'result': summary, 'anchor': ANCHOR}


def throughput_part(plan: Plan, deadline: float) -> dict:
  """The project's train step beside PyTorch, per (model, batch, dtype), with MFU."""
  # Both rates, whatever the rows' dtypes: MFU is also read against bf16's.
  peaks = train_throughput.measure_peaks(sorted({*plan.dtypes, 'bfloat16', 'float32'}),
                                         plan.matmul_n, plan.repeats)

  def row(name: str, batch: int, dtype: str) -> list[dict]:
    return [train_throughput.throughput_row(name, batch, dtype, peaks, repeats=plan.repeats,
                                            baseline=False, with_torch=True)]

  units = [(f'{name} b{batch} {dtype}', functools.partial(row, name, batch, dtype))
           for name, batch in plan.throughput for dtype in plan.dtypes]
  return {'matmul_peak_tflops': peaks, **run_units(units, deadline)}


def conv_part(plan: Plan, deadline: float) -> dict:
  """Every conv impl, winograd and auto included, per shape and dtype; auto's choices."""
  units = [(f'{shape[0]} {dtype}',
            functools.partial(conv_impls.shape_rows, shape, dtype, plan.conv_batch,
                              plan.conv_repeats, conv.IMPL_CHOICES))
           for dtype in plan.dtypes for shape in plan.conv_shapes]
  out = run_units(units, deadline)
  return {**out, 'conv_auto_cache': conv_auto.device_entries()}


def seeds_part(plan: Plan, deadline: float) -> dict:
  """K seeds trained together (vmap, unroll) against K runs apart, per K."""
  name, batch = plan.seeds_model
  units = [(f'{name} b{batch} K={k}',
            functools.partial(num_seeds.seeds_rows, name, batch, plan.dtypes[-1], (k,),
                              repeats=plan.repeats)) for k in plan.seeds]
  return run_units(units, deadline)


def run_part(name: str, fn: Callable[[float], dict], deadline: float) -> dict:
  """``fn(deadline)`` timed; an exception becomes ``{'status': 'error', 'error': ...}``."""
  print(f'== {name}', flush=True)
  t0 = time.perf_counter()
  try:
    out = fn(deadline)
  except Exception as e:  # noqa: BLE001 -- the suite goes on to the next part
    out = {'status': 'error', 'error': timer.one_line(e)}
    print(f'{name}: error: {out["error"]}', flush=True)
  return {**out, 'seconds': time.perf_counter() - t0}


def run(args) -> dict:
  start = time.perf_counter()
  plan = SMOKE if args.smoke else GPU
  env = timer.environment()
  print('environment:', ', '.join(f'{k} {v}' for k, v in env.items()), flush=True)
  fns = {'speedrun': functools.partial(speedrun_part, plan, args.data_root),
         'train_throughput': functools.partial(throughput_part, plan),
         'conv_impls': functools.partial(conv_part, plan),
         'num_seeds': functools.partial(seeds_part, plan)}
  ends = deadlines(args.parts, start, args.budget_s)
  parts = {name: run_part(name, fns[name], ends[name]) for name in args.parts}
  return {'benchmark': 'gpu_suite', 'smoke': args.smoke, 'environment': env,
          'budget_s': args.budget_s, 'wall_s': time.perf_counter() - start,
          'plan': dataclasses.asdict(plan), 'parts': parts}


# ----------------------------------------------------------------------------- markdown

def _f(value, spec: str) -> str:
  return '-' if value is None else format(value, spec)


def _part_notes(part: Mapping) -> list[str]:
  """One line each for a part's error, skipped units and unit errors."""
  lines = []
  if part.get('status') in ('error', 'skipped') and not part.get('rows'):
    lines.append(f"**{part['status']}**: {part.get('error') or part.get('reason')}")
  if part.get('skipped'):
    lines.append(f"Over budget, not run: {', '.join(part['skipped'])}.")
  lines += [f"Error in {e['unit']}: {e['error']}" for e in part.get('errors', [])]
  return lines


def speedrun_table(part: Mapping) -> list[str]:
  pct = lambda m, s: f'{100 * m:.2f} ± {100 * s:.2f}%'
  a = part.get('anchor', ANCHOR)
  lines = ['| run | device | seeds | test accuracy (TTA) | training s, compile excluded '
           '| with whitening + TTA, s | compile s (first seed) |',
           '|---|---|---:|---:|---:|---:|---:|']
  if part.get('status') == 'ok':
    r = part['result']
    lines.append(f"| cnn_jax speedrun ({r['epochs']} epochs, {r['dtype']}, loop={r['loop']}) "
                 f"| {r['device']} | {len(r['runs'])} "
                 f"| {pct(r['accuracy_mean'], r['accuracy_std'])} "
                 f"| {r['train_s_mean']:.2f} ± {r['train_s_std']:.2f} "
                 f"| {r['total_s_mean']:.2f} | {r['runs'][0]['compile_s']:.1f} |")
  lines.append(f"| {a['name']} ({a['source']}) | {a['device']} | - "
               f"| {pct(a['accuracy_mean'], a['accuracy_std'])} | {a['train_s']:.2f} | - | - |")
  return lines


def throughput_table(part: Mapping) -> list[str]:
  lines = ['| model | batch | dtype | cnn_jax img/s | TFLOP/s | MFU | MFU vs bf16 '
           '| torch img/s | torch MFU vs bf16 | cnn_jax / torch | compile s (jax / torch) |',
           '|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|']
  for r in part.get('rows', []):
    torch_cells = (f"{r['torch_img_s']:.1f} | {_f(r.get('torch_mfu_vs_bf16'), '.1%')} "
                   f"| {r['ratio_cnn_jax_over_torch']:.3f}" if 'torch_img_s' in r else
                   f"{r.get('torch_error', 'not run')} | - | -")
    lines.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | {r['cnn_jax_img_s']:.1f} "
                 f"| {r['cnn_jax_tflops']:.3f} | {r['cnn_jax_mfu']:.1%} "
                 f"| {_f(r.get('cnn_jax_mfu_vs_bf16'), '.1%')} | {torch_cells} "
                 f"| {r['cnn_jax_compile_s']:.1f} / {_f(r.get('torch_compile_s'), '.1f')} |")
  return lines


def conv_table(part: Mapping) -> list[str]:
  others = [i for i in conv.IMPL_CHOICES if i != 'lax']
  lines = ['| shape | dtype | pass | winograd runs | lax ms (TFLOP/s) | '
           + ' | '.join(f'{i} / lax' for i in others) + ' |',
           '|---|---|---|---|---:|' + '---:|' * len(others)]
  for r in part.get('rows', []):
    lines.append(f"| {r['shape']} | {r['dtype']} | {r['mode']} "
                 f"| {'F(2x2, 3x3)' if r['winograd_applies'] else 'einsum'} "
                 f"| {r['lax_ms']:.3f} ({r['lax_tflops']:.2f}) | "
                 + ' | '.join(_f(r.get(f'ratio_{i}_over_lax'), '.2f') for i in others) + ' |')
  return lines


def seeds_table(part: Mapping) -> list[str]:
  lines = ['| model | batch | dtype | K | apart img/s | vmap img/s (speedup) '
           '| unroll img/s (speedup) |', '|---|---:|---|---:|---:|---:|---:|']
  for r in part.get('rows', []):
    lines.append(f"| {r['model']} | {r['batch']} | {r['dtype']} | {r['num_seeds']} "
                 f"| {r['apart_img_s']:.1f} "
                 + ' | '.join(f"{r[f'{m}_img_s']:.1f} ({r[f'speedup_{m}_over_apart']:.2f})"
                              for m in ('vmap', 'unroll')) + ' |')
  return lines


TABLES = {'speedrun': ('CIFAR-10 speedrun', speedrun_table),
          'train_throughput': ('Train throughput (the project step beside PyTorch)',
                               throughput_table),
          'conv_impls': ('Convolution impls', conv_table),
          'num_seeds': ('Seeds trained together vs apart', seeds_table)}


def markdown(report: Mapping) -> str:
  """The report as markdown: an environment line, then each part's table and notes."""
  env = report['environment']
  lines = [f"# gpu_suite{' --smoke' if report['smoke'] else ''}: {env['device']}, {env['date']}",
           '', ', '.join(f'{k} {v}' for k, v in env.items())
           + f"; {report['wall_s']:.0f} s of a {report['budget_s']:.0f}-s budget.", '']
  for name, part in report['parts'].items():
    title, table = TABLES[name]
    lines += [f"## {title} ({part['status']}, {part['seconds']:.0f} s)", '']
    if name == 'train_throughput' and 'matmul_peak_tflops' in part:
      lines += ['Matmul peak, TFLOP/s: ' + ', '.join(
          f'{d} {p:.4g}' for d, p in part['matmul_peak_tflops'].items()) + '.', '']
    lines += table(part) + ['']
    notes = _part_notes(part)
    lines += [f'- {n}' for n in notes] + [''] * bool(notes)
  return '\n'.join(lines).rstrip() + '\n'


# ----------------------------------------------------------------------------- main

def default_out(env: Mapping[str, str]) -> pathlib.Path:
  device = re.sub(r'[^a-z0-9]+', '_', env['device'].lower()).strip('_') or 'device'
  return pathlib.Path('benchmarks/results') / f"gpu_suite_{device}_{env['date']}.json"


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--smoke', action='store_true', help='synthetic data and tiny sizes (CPU test)')
  p.add_argument('--data-root', default=default_data_root(),
                 help=f'CIFAR-10 folder (train/ and test/); default ${DATA_ENV} or {SHARED_DATA}')
  p.add_argument('--parts', default=','.join(PARTS), help='comma list of ' + ','.join(PARTS))
  p.add_argument('--budget-s', type=float, default=sum(SHARES.values()),
                 help='seconds in which parts may start work (default: all within 8 minutes)')
  p.add_argument('--out', help='the JSON path (the .md goes beside it); default '
                 'benchmarks/results/gpu_suite_<device>_<date>.json')
  args = p.parse_args(argv)
  args.parts = timer.choose(p, args.parts, PARTS, 'part(s)')
  # torch shares the GPU with JAX in this process: keep JAX from preallocating
  # 75% of it (read when the GPU backend starts, which nothing has done yet).
  os.environ.setdefault('XLA_PYTHON_CLIENT_MEM_FRACTION', '0.6')
  report = run(args)
  out = pathlib.Path(args.out) if args.out else default_out(report['environment'])
  timer.write_json(out, report)
  table = markdown(report)
  out.with_suffix('.md').write_text(table)
  print(f'wrote {out} and {out.with_suffix(".md")}\n\n{table}', flush=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
