r"""Residual vs plain networks as depth grows: He et al. (2016), CIFAR-10, Sec. 4.2.

Runs {plain, residual} x depths x seeds through the normal training system
(``configs/resnet_cifar.py``: SGD momentum 0.9, weight decay 1e-4, batch 128,
lr 0.1 divided by 10 at 32k and 48k iterations, 64k iterations, 4-pixel pad +
crop + flip, option A shortcuts), each in its own workdir under the sweep root,
then writes ``results.json``, ``results.csv``, ``results.md`` (He et al.'s
Table 6 next to ours) and ``fig6.png`` (training error dashed, test error
solid, vs iterations; plain left, residual right).

  # the paper's recipe on a CIFAR-10 image folder (GPU-sized: 64k steps per run)
  python -m experiments.ablation_depth run --sweep-dir workdirs/ablation \
      --data-root ../shared/data/cifar10-jpeg
  # the same as concurrent processes on one GPU, from a pack file: experiments/ablation_gpu.py
  # a proportionally shortened run (steps and lr boundaries x scale)
  python -m experiments.ablation_depth run --sweep-dir workdirs/ablation_cpu \
      --data-root ../shared/data/cifar10-jpeg --depths 20,56 --seeds 2 --scale 0.004
  # the whole pipeline on synthetic data in under a minute (what CI runs)
  python -m experiments.ablation_depth run --sweep-dir /tmp/smoke --smoke
  # rebuild table and plots from a finished or partial sweep
  python -m experiments.ablation_depth report workdirs/ablation
  # or the general sweep's report: any eval metric, final, best or at a step
  python -m experiments.sweep report workdirs/ablation --metric loss --at best

``--holdout 5000`` evaluates on 5,000 held-out training images (the paper's
45k/5k split) instead of the test set; ``--with-110`` adds depth 110, which
warms up at lr 0.01 for 400 iterations as in the paper. ``--set KEY=VALUE``
changes a config value of every run (e.g. ``--set dtype=bfloat16``);
``--only plain56,residual20`` trains only those cells of the sweep and writes
neither ``sweep.json`` nor the report (what ``experiments/ablation_gpu.py``
runs in each of its concurrent processes); ``--smoke --data-root FILE.pack``
runs the smoke setting on that folder or pack file instead of synthetic data.
``--data-root`` may be a pack file (``python -m cnn_jax.data.packed pack``).

The sweep is resumable: a finished run (``result.json`` present) is skipped and
an interrupted one resumes from its last checkpoint (the training system's
auto-resume), so re-running the same command completes the sweep.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import pathlib
import statistics
import sys
from typing import Any

from cnn_jax.train.config import load_config
from cnn_jax.train.logging import read_metrics
from cnn_jax.train.loop import Preempted
from cnn_jax.train.xla_cache import enable_compilation_cache
from experiments.sweep import mean_std, parse_set, run_or_skip, set_value

NETS = ('plain', 'residual')
# He et al. 2016, Table 6: test error (%) of ResNet-n on CIFAR-10 (best of 5 runs).
PAPER_RESNET_ERROR = {20: 8.75, 32: 7.51, 44: 7.17, 56: 6.97, 110: 6.43}
PAPER_STEPS = 64_000  # the recipe's iterations: only a run this long measures the JPEG cost
JPEG_NOTE = ('This copy of CIFAR-10 is JPEG-compressed, which costs a few points of accuracy '
             'against the paper\'s PNG-exact images; scaled-down runs (scale < 1) are far from '
             'converged, so compare plain vs residual and shallow vs deep, not absolute numbers.')


@dataclasses.dataclass(frozen=True)
class Sweep:
  depths: tuple[int, ...] = (20, 32, 44, 56)
  seeds: int = 3
  scale: float = 1.0
  data: str = 'folder'          # 'folder' | 'tfds' | 'synthetic'
  data_root: str = ''
  smoke: bool = False
  eval_every: int = 0           # 0: 32 evaluations per run (the Fig. 6 test curves)
  holdout: int = 0              # > 0: evaluate on this many held-out training images (45k/5k)
  sets: tuple[tuple[str, Any], ...] = ()  # (config key, value) set last in every run (--set)
  only: tuple[str, ...] = ()    # cell names ('plain56'): train only these (--only)
  num_seeds: int = 1            # > 1: this many seeds of a net train together (config.num_seeds)

  def cells(self) -> list[str]:
    """Every (net, depth) cell of the sweep by name, 'plain20', 'residual20', ..."""
    return [cell_name(net, depth) for depth in self.depths for net in NETS]

  def groups(self) -> list[tuple[str, int, tuple[int, ...]]]:
    """(net, depth, seeds) of each training, seed-major so that a partial sweep covers every net.

    One seed per training, or ``num_seeds`` of them trained together in one program;
    only the ``only`` cells when it is set.
    """
    k = max(1, self.num_seeds)
    return [(net, depth, tuple(range(first, min(first + k, self.seeds))))
            for first in range(0, self.seeds, k) for depth in self.depths for net in NETS
            if not self.only or cell_name(net, depth) in self.only]


def cell_name(net: str, depth: int) -> str:
  return f'{net}{depth}'


def run_name(net: str, depth: int, seed: int) -> str:
  return f'{cell_name(net, depth)}_seed{seed}'


def group_name(net: str, depth: int, seeds: tuple[int, ...]) -> str:
  """The workdir of one training: a seed's run, or ``plain20_seeds0-1`` for seeds together."""
  if len(seeds) == 1:
    return run_name(net, depth, seeds[0])
  return f'{cell_name(net, depth)}_seeds{seeds[0]}-{seeds[-1]}'


def make_config(sweep: Sweep, net: str, depth: int, seed: int):
  """The training config of one run: the paper's recipe, scaled, or the smoke setting."""
  c = load_config('resnet_cifar',
                  f'depth={depth},plain={net == "plain"},scale={sweep.scale},data={sweep.data}')
  c.seed = seed
  if sweep.data == 'folder':
    if not sweep.data_root:
      raise ValueError('--data-root DIR is required with --data folder (a CIFAR-10 folder '
                       'with train/ and test/ class folders).')
    c.data.root = sweep.data_root
  c.data.holdout = sweep.holdout
  if sweep.smoke:  # tiny everything: the pipeline, not the result, is under test
    c.data.num_train, c.data.num_eval, c.data.num_classes = 256, 100, 4
    c.data.image_size = 16
    c.data.mean, c.data.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    c.model.kwargs.widths = (4, 8, 16)
    c.batch_size, c.eval_batch_size = 32, 64  # divisible by 8 simulated test devices
    c.num_steps, c.log_every, c.eval_every = 12, 4, 6
    c.schedule.decay_steps = (8, 10)
    c.checkpoint_every = 6
  else:
    c.eval_every = sweep.eval_every or max(1, c.num_steps // 32)
    c.checkpoint_every = max(1, min(c.num_steps // 4, 4_000))
    c.log_every = max(1, min(100, c.num_steps // 20))
  for key, value in sweep.sets:
    set_value(c, key, value)
  return c


def write_sweep_file(sweep: Sweep, root: pathlib.Path) -> None:
  """``root/sweep.json``: the settings, and the general sweep's grid and runs too, so
  `python -m experiments.sweep report ROOT` (any eval metric, final/best/at a step)
  reads this sweep as well."""
  root.mkdir(parents=True, exist_ok=True)
  grid = [['model.kwargs.depth', list(sweep.depths)], ['model.kwargs.plain', [True, False]]]
  runs = []
  for net, depth, seeds in sweep.groups():
    group = group_name(net, depth, seeds)
    runs += [{'name': run_name(net, depth, seed),
              'cell': {'model.kwargs.depth': depth, 'model.kwargs.plain': net == 'plain'},
              'seed': seed, 'group': group,
              'dir': group if len(seeds) == 1 else f'{group}/seeds/{seed}'} for seed in seeds]
  (root / 'sweep.json').write_text(json.dumps(
      {**dataclasses.asdict(sweep), 'config': f'configs/resnet_cifar.py:data={sweep.data}',
       'grid': grid, 'runs': runs}, indent=2) + '\n')


def run_sweep(sweep: Sweep, root: pathlib.Path, *, quiet: bool = True) -> None:
  """Trains (or skips, or resumes) every run; then ``sweep.json`` and the report, unless
  ``sweep.only`` makes this one part of a sweep whose caller writes those."""
  groups = sweep.groups()
  configs = []
  for net, depth, seeds in groups:  # bad --set values fail first
    configs.append(make_config(sweep, net, depth, seeds[0]))
    configs[-1].num_seeds = len(seeds)
  enable_compilation_cache(min_compile_secs=0.5)  # seeds 1.. reuse seed 0's programs
  root.mkdir(parents=True, exist_ok=True)
  if not sweep.only:
    write_sweep_file(sweep, root)
  for (net, depth, seeds), config in zip(groups, configs):
    run_or_skip(config, root / group_name(net, depth, seeds),
                {'net': net, 'depth': depth, 'seed': seeds[0]}, quiet=quiet)
  if not sweep.only:
    report(root)


# ----------------------------------------------------------------------------- report

def _read_run(workdir: pathlib.Path) -> dict | None:
  """Curves and summary of one run from its metrics.jsonl (finished or not).

  A seed trained together with others has its own folder ``<group>/seeds/<seed>``
  and shares the group's config.json.
  """
  rows = read_metrics(workdir / 'metrics.jsonl')
  if not rows.get('eval'):
    return None
  train, evals = rows.get('train', []), rows['eval']
  result = json.loads((workdir / 'result.json').read_text()) if (
      workdir / 'result.json').exists() else {}
  config_file = workdir / 'config.json'
  if not config_file.exists():
    config_file = workdir.parents[1] / 'config.json'
  config = json.loads(config_file.read_text())
  return {
      'finished': bool(result),
      'train_curve': [(r['step'], 1.0 - r['accuracy']) for r in train],
      'test_curve': [(r['step'], 1.0 - r['accuracy']) for r in evals],
      'final_test_error': 1.0 - evals[-1]['accuracy'],
      'best_test_error': 1.0 - max(r['accuracy'] for r in evals),
      'img_per_sec': statistics.mean(r['img_per_sec'] for r in train) if train else math.nan,
      'train_time_s': _train_seconds(train, config['batch_size']),
      'params': result.get('params'),
      'steps': evals[-1]['step'],
  }


def _train_seconds(train_rows: list[dict], batch_size: int) -> float:
  """Seconds spent in train steps over every segment of a (resumed) run.

  Each train row covers the steps since the previous one at its measured
  img/s; rows re-run after a resume replace the lost ones, so the sum counts
  each step once (compilation and evaluation excluded).
  """
  total, prev = 0.0, 0
  for r in train_rows:
    if r.get('img_per_sec'):
      total += (r['step'] - prev) * batch_size / r['img_per_sec']
    prev = r['step']
  return total if train_rows else math.nan


def summarize(root: pathlib.Path) -> list[dict]:
  """One row per (net, depth) with mean and std over the seeds found."""
  runs: dict[tuple[str, int], list[dict]] = {}
  for workdir in sorted(p for p in root.iterdir() if p.is_dir()):
    name = workdir.name
    for net in NETS:
      if name.startswith(net) and '_seed' in name:
        depth = int(name[len(net):name.index('_seed')])
        together = workdir / 'seeds'
        for folder in sorted(together.iterdir()) if together.is_dir() else [workdir]:
          run = _read_run(folder)
          if run is not None:
            runs.setdefault((net, depth), []).append(run)
  rows = []
  for (net, depth), rs in sorted(runs.items(), key=lambda kv: (NETS.index(kv[0][0]), kv[0][1])):
    final_m, final_s = mean_std([100 * r['final_test_error'] for r in rs])
    best_m, best_s = mean_std([100 * r['best_test_error'] for r in rs])
    rows.append({
        'net': net, 'depth': depth, 'seeds': len(rs),
        'finished': sum(r['finished'] for r in rs), 'steps': max(r['steps'] for r in rs),
        'final_test_error_mean': final_m, 'final_test_error_std': final_s,
        'best_test_error_mean': best_m, 'best_test_error_std': best_s,
        'params': next((r['params'] for r in rs if r['params']), None),
        'train_time_s_mean': mean_std([r['train_time_s'] for r in rs])[0],
        'img_per_sec_mean': mean_std([r['img_per_sec'] for r in rs])[0],
        'paper_test_error': PAPER_RESNET_ERROR.get(depth) if net == 'residual' else None,
    })
  return rows, runs


def markdown_table(rows: list[dict]) -> str:
  lines = ['| net | depth | params | runs | steps | final test error (%) | best test error (%) '
           '| He et al. (%) | img/s | train min |',
           '|---|---:|---:|---:|---:|---|---|---:|---:|---:|']
  for r in rows:
    name = f"{'ResNet' if r['net'] == 'residual' else 'Plain'}-{r['depth']}"
    params = (f"{r['params'] / 1e6:.2f}M" if r['params'] >= 1e5 else
              f"{r['params'] / 1e3:.1f}k") if r['params'] else '?'
    paper = f"{r['paper_test_error']:.2f}" if r['paper_test_error'] else '-'
    lines.append(
        f"| {name} | {r['depth']} | {params} | {r['finished']}/{r['seeds']} | {r['steps']} | "
        f"{r['final_test_error_mean']:.2f} ± {r['final_test_error_std']:.2f} | "
        f"{r['best_test_error_mean']:.2f} ± {r['best_test_error_std']:.2f} | {paper} | "
        f"{r['img_per_sec_mean']:.0f} | {r['train_time_s_mean'] / 60:.1f} |")
  return '\n'.join(lines)


def jpeg_cost(rows: list[dict], holdout: int = 0) -> str:
  """One line: what this JPEG copy costs, from ResNet-20 at the paper's recipe vs its 8.75%."""
  paper = PAPER_RESNET_ERROR[20]
  r20 = next((r for r in rows if r['net'] == 'residual' and r['depth'] == 20), None)
  if r20 is None:
    return f"JPEG cost: not measured (no ResNet-20 run; He et al.'s ResNet-20: {paper:.2f}%)."
  ours = f"{r20['final_test_error_mean']:.2f}%"
  if holdout:
    return (f'JPEG cost: not measured: ResNet-20 ({ours}) was evaluated on held-out training '
            f"images, not the test set of He et al.'s {paper:.2f}%.")
  if r20['steps'] != PAPER_STEPS or r20['finished'] < r20['seeds']:
    return (f"JPEG cost: not measured: ResNet-20 ({ours}) ran {r20['steps']} of the paper's "
            f"{PAPER_STEPS} iterations ({r20['finished']}/{r20['seeds']} runs finished), so "
            f"it is not comparable with He et al.'s {paper:.2f}%.")
  return (f"JPEG cost: ResNet-20 at the paper's recipe ({PAPER_STEPS} iterations, "
          f"{r20['seeds']} run(s)) reaches {ours} final test error on this JPEG-compressed "
          f"copy against He et al.'s {paper:.2f}% on the original images: "
          f"{r20['final_test_error_mean'] - paper:+.2f} points "
          f"({r20['best_test_error_mean']:.2f}% at its best evaluation).")


def plot_fig6(runs: dict, path: pathlib.Path) -> None:
  """He et al. Fig. 6 style: error vs iterations, dashed train, solid test, mean over seeds."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
  depths = sorted({d for _, d in runs})
  colours = dict(zip(depths, plt.cm.viridis([i / max(len(depths) - 1, 1)
                                             for i in range(len(depths))])))
  for ax, net in zip(axes, NETS):
    for depth in depths:
      rs = runs.get((net, depth))
      if not rs:
        continue
      for key, style in (('train_curve', '--'), ('test_curve', '-')):
        by_step: dict[int, list[float]] = {}
        for r in rs:
          for step, err in r[key]:
            by_step.setdefault(step, []).append(err)
        steps = sorted(by_step)
        ax.plot(steps, [100 * statistics.mean(by_step[s]) for s in steps], style,
                color=colours[depth],
                label=f"{'ResNet' if net == 'residual' else 'plain'}-{depth}"
                if style == '-' else None)
    ax.set_title(f"{'residual' if net == 'residual' else 'plain'} networks")
    ax.set_xlabel('iterations')
    ax.grid(alpha=0.3)
    ax.legend()
  axes[0].set_ylabel('error (%)  (dashed: training, solid: test)')
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def report(root: pathlib.Path) -> list[dict]:
  """Rebuilds results.{json,csv,md} and fig6.png from the run folders under ``root``."""
  root = pathlib.Path(root)
  if not root.is_dir():
    raise SystemExit(f'error: sweep directory {root} does not exist; run the sweep first.')
  rows, runs = summarize(root)
  if not rows:
    raise SystemExit(f'error: no evaluated runs under {root}; run the sweep first.')
  (root / 'results.json').write_text(json.dumps(rows, indent=2) + '\n')
  with open(root / 'results.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  table = markdown_table(rows)
  sweep_file = root / 'sweep.json'
  holdout = json.loads(sweep_file.read_text()).get('holdout', 0) if sweep_file.exists() else 0
  note = (f'"Test error" columns are on {holdout} training images held out for validation '
          '(--holdout), not on the test set.\n\n' if holdout else '')
  (root / 'results.md').write_text(f'{table}\n\n{note}{JPEG_NOTE}\n\n{jpeg_cost(rows, holdout)}\n')
  plot_fig6(runs, root / 'fig6.png')
  print(table)
  print(jpeg_cost(rows, holdout))
  return rows


def add_run_arguments(r: argparse.ArgumentParser) -> None:
  """The options of ``run`` (also parsed by experiments/ablation_gpu.py for its parts)."""
  r.add_argument('--sweep-dir', required=True)
  r.add_argument('--depths', default='20,32,44,56', help='comma list of 6k+2 depths')
  r.add_argument('--with-110', action='store_true', help='add ResNet/Plain-110')
  r.add_argument('--seeds', type=int, default=None, help='default 3 (2 with --smoke)')
  r.add_argument('--num-seeds', type=int, default=1, metavar='K',
                 help='train K seeds of a net together in one program (config.num_seeds)')
  r.add_argument('--scale', type=float, default=1.0,
                 help='multiply the 64k steps and the lr boundaries')
  r.add_argument('--data', default='folder', choices=('folder', 'tfds', 'synthetic'))
  r.add_argument('--data-root', default='',
                 help='CIFAR-10 image folder (train/ and test/), or a pack file of one')
  r.add_argument('--eval-every', type=int, default=0,
                 help='steps between test-set evaluations (default: 32 per run)')
  r.add_argument('--holdout', type=int, default=0,
                 help="evaluate on N held-out training images instead of the test set "
                      "(He et al.'s 45k/5k split: 5000)")
  r.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='a config value for every run, e.g. dtype=bfloat16 (repeatable)')
  r.add_argument('--only', default='', metavar='CELLS',
                 help='train only these cells, e.g. plain56,residual20, and write neither '
                      'sweep.json nor the report (one part of a concurrent sweep)')
  r.add_argument('--smoke', action='store_true',
                 help='depths 8 and 14, 2 seeds, 12 steps on synthetic data (or on '
                      '--data-root): the pipeline in under a minute')
  r.add_argument('--verbose', action='store_true', help='progress bars')


def sweep_from_args(args: argparse.Namespace) -> Sweep:
  """The :class:`Sweep` that ``run``'s parsed options describe.

  Raises:
    ValueError: a depth that is not 6k+2, an ``--only`` cell not in the sweep,
      a malformed ``--set``, or ``--num-seeds`` below 1.
  """
  depths = tuple(int(d) for d in args.depths.split(',')) + ((110,) if args.with_110 else ())
  if args.num_seeds < 1:
    raise ValueError(f'--num-seeds must be >= 1, got {args.num_seeds}')
  common = dict(holdout=args.holdout, sets=tuple(parse_set(item) for item in args.set),
                only=tuple(c for c in args.only.split(',') if c), num_seeds=args.num_seeds)
  if args.smoke:
    sweep = Sweep(depths=(8, 14) if args.depths == '20,32,44,56' else depths,
                  seeds=args.seeds or 2, data='folder' if args.data_root else 'synthetic',
                  data_root=args.data_root, smoke=True, **common)
  else:
    sweep = Sweep(depths=depths, seeds=args.seeds or 3, scale=args.scale, data=args.data,
                  data_root=args.data_root, eval_every=args.eval_every, **common)
  bad = [d for d in sweep.depths if d < 8 or (d - 2) % 6]
  if bad:
    raise ValueError(f'depths must be 6k+2 (20, 32, 44, 56, 110), got {bad}')
  unknown = [c for c in sweep.only if c not in sweep.cells()]
  if unknown:
    raise ValueError(f'--only names cells {unknown} that are not in the sweep '
                     f'({", ".join(sweep.cells())})')
  return sweep


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest='command', required=True)
  add_run_arguments(sub.add_parser('run', help='run (or resume) the sweep, then report'))
  rep = sub.add_parser('report', help='rebuild table and plots from a sweep directory')
  rep.add_argument('sweep_dir')
  args = p.parse_args(argv)
  if args.command == 'report':
    report(pathlib.Path(args.sweep_dir))
    return 0
  try:
    sweep = sweep_from_args(args)
  except ValueError as e:
    p.error(str(e))
  try:
    run_sweep(sweep, pathlib.Path(args.sweep_dir), quiet=not args.verbose)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except Preempted as e:  # SIGTERM (e.g. the GPU launcher's time limit): resumable
    print(f'stopped: {e}', file=sys.stderr)
    return 143
  return 0


if __name__ == '__main__':
  sys.exit(main())
