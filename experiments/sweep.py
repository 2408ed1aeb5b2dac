r"""A sweep over config axes x seeds, each run in its own workdir, resumably; its report.

  # He et al.'s residual vs plain depth ablation as a general sweep
  python -m experiments.sweep run --config=configs/resnet_cifar.py \
      --grid model.kwargs.depth=20,32,44,56 --grid model.kwargs.plain=True,False \
      --seeds 3 --sweep-dir workdirs/sweep_depth --set data.root=../shared/data/cifar10-jpeg
  # the same, 3 seeds of each cell trained together in one program (--num-seeds 3)
  # shortcut option A (zero-padding) vs B (1x1 projection), He et al. Table 3 on CIFAR
  python -m experiments.sweep run --config=configs/resnet_cifar.py:scale=0.01 \
      --grid model.kwargs.shortcut=A,B --grid model.kwargs.depth=20,56 --seeds 2 \
      --sweep-dir workdirs/sweep_shortcut --set data.root=../shared/data/cifar10-jpeg
  # mean +- std over seeds of any eval metric: final, best or at a step
  python -m experiments.sweep report workdirs/sweep_depth [--metric accuracy] \
      [--at final|best|STEP] [--x AXIS] [--group AXIS]

Runs are the cartesian product of the ``--grid`` axes (the first axis varies
slowest) for each seed, seed-major (seed 0 of every cell, then seed 1, ...), so
a partial sweep covers every cell; ``--seeds N`` sets ``config.seed`` to 0..N-1.
``--num-seeds K`` trains K seeds of a cell at a time in one compiled program
(``config.num_seeds``: vmapped parameters, optimizer and BatchNorm state, keys
and data orders; each seed equals its own run) in ``<cell>_seeds0-1/``, with
each seed's rows and ``result.json`` in ``<cell>_seeds0-1/seeds/<seed>/``.
Values parse like config values (ints, floats, bools, strings, tuples such as
``(8,16,32)``); ``--set KEY=VALUE`` changes every run. A run's workdir is named
by its axis values, e.g. ``depth20_plainTrue_seed0``. A finished run
(``result.json`` present) is skipped and an interrupted one resumes from its last
checkpoint (the training loop's own resume), so re-running the command completes
the sweep. The grid is written to ``sweep.json``, so ``report`` needs no flags.
``report`` writes ``report.{csv,json,md}``, ``metric_vs_<axis>.png`` (one line
per group, std error bars) and ``curves_<metric>.png`` (eval metric vs step, mean
over seeds, one panel per group value).

Bad input (an unknown axis key, a value of the wrong type) ends with one
``error: ...`` line naming the valid keys of that config section, exit 2.
"""

from __future__ import annotations

import argparse
import ast
import csv
import itertools
import json
import math
import re
import sys
import pathlib
import statistics
import time
from collections.abc import Iterable
from typing import Any

from cnn_jax.train.config import load_config, unknown_key_error, validate
from cnn_jax.train.logging import read_metrics
from cnn_jax.train.loop import train_and_evaluate
from experiments.cli import exit_code


def run_or_skip(config: Any, workdir: pathlib.Path, meta: dict, *, quiet: bool = True) -> dict:
  """Trains ``config`` in ``workdir`` unless its ``result.json`` exists; returns that row.

  An interrupted run resumes from its last checkpoint (the training loop's
  auto-resume). The row is ``meta`` plus steps, params, the task's headline
  metric name, every scalar eval metric as ``eval_<name>`` (``eval_accuracy``,
  ``eval_loss``, ``eval_mAP50``, ...), wall seconds and the step it resumed from.
  """
  done = workdir / 'result.json'
  if done.exists():
    print(f'{workdir.name}: finished, skipped', flush=True)
    return json.loads(done.read_text())
  print(f'{workdir.name}: training {config.num_steps} steps'
        + (f' of seeds {config.seed}..{config.seed + config.num_seeds - 1} together'
           if config.num_seeds > 1 else '')
        + (' (resuming)' if (workdir / 'checkpoints').exists() else ''), flush=True)
  t0 = time.perf_counter()
  result = train_and_evaluate(config, workdir, quiet=quiet)
  wall_s = time.perf_counter() - t0

  def row_of(meta: dict, evals: dict) -> dict:
    return {**meta, 'steps': result['steps'], 'params': int(result['num_params']),
            'headline': result['headline'],
            **{f'eval_{k}': float(v) for k, v in evals.items()
               if isinstance(v, (int, float)) or getattr(v, 'ndim', None) == 0},
            'wall_s': wall_s, 'resumed_from': result['resumed_from']}

  row = row_of(meta, result['eval'])
  if 'seeds' in result:  # seeds trained together: each seed's folder gets its own result
    row['seeds'] = []
    for info in result['seeds']:
      seed_row = row_of({**meta, 'seed': info['seed']}, info['eval'])
      (pathlib.Path(info['workdir']) / 'result.json').write_text(
          json.dumps(seed_row, indent=2) + '\n')
      row['seeds'].append(seed_row)
  done.write_text(json.dumps(row, indent=2) + '\n')
  head = result['headline']
  print(f"{workdir.name}: eval {head} {row.get(f'eval_{head}', math.nan):.4g}"
        + (' (mean over seeds)' if 'seeds' in result else ''), flush=True)
  return row


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
  """Mean and sample standard deviation over seeds (0 for one seed; NaN/None skipped)."""
  values = [v for v in values if v is not None and not math.isnan(v)]
  if not values:
    return math.nan, math.nan
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


# ----------------------------------------------------------------------------- the grid

def split_top(text: str) -> list[str]:
  """Splits on commas outside brackets: ``'(4,8),(8,16)'`` -> ``['(4,8)', '(8,16)']``."""
  parts, depth, start = [], 0, 0
  for i, ch in enumerate(text):
    if ch in '([{':
      depth += 1
    elif ch in ')]}':
      depth -= 1
    elif ch == ',' and depth == 0:
      parts.append(text[start:i])
      start = i + 1
  parts.append(text[start:])
  return [p.strip() for p in parts]


def parse_value(text: str) -> Any:
  """A config value as ``parse_arg`` reads one: a Python literal, else the string itself."""
  try:
    value = ast.literal_eval(text.strip())
  except (ValueError, SyntaxError):
    return text.strip()
  return tuple(value) if isinstance(value, list) else value


def parse_axis(spec: str) -> tuple[str, list[Any]]:
  """``'model.kwargs.depth=20,32'`` -> ``('model.kwargs.depth', [20, 32])``."""
  key, sep, values = spec.partition('=')
  key = key.strip().removeprefix('--config.').removeprefix('config.')
  if not sep or not key or not values.strip():
    raise ValueError(f'bad axis {spec!r}; expected KEY=V1,V2,... e.g. model.kwargs.depth=20,56.')
  return key, [parse_value(v) for v in split_top(values)]


def parse_set(item: str) -> tuple[str, Any]:
  """``--set`` ``'dtype=bfloat16'`` -> ``('dtype', 'bfloat16')``: one key, one value."""
  key, values = parse_axis(item)
  if len(values) != 1:
    raise ValueError(f'--set {item!r} takes one value (a tuple in parentheses).')
  return key, values[0]


def set_value(config: Any, key: str, value: Any) -> None:
  """Sets dotted ``key`` of ``config`` to ``value``, refusing unknown keys and wrong types."""
  error = unknown_key_error(config, key)
  if error:
    raise ValueError(error)
  *path, last = key.split('.')
  node = config
  for part in path:
    node = node[part]
  if hasattr(node[last], 'keys'):
    raise ValueError(f"config key '{key}' is a section, not a value; its keys: "
                     f"{', '.join(sorted(node[last].keys()))}.")
  old = node[last]
  section = '.'.join(path) or 'the config'
  ok = (old is None or isinstance(value, type(old))
        or (isinstance(old, float) and isinstance(value, int))
        or (isinstance(old, (tuple, list)) and isinstance(value, (tuple, list))))
  if isinstance(old, bool) != isinstance(value, bool) and old is not None:
    ok = False
  if not ok:
    kind = type(old).__name__
    raise ValueError(f"bad value {key}={value!r}: {key} is a{'n' if kind[0] in 'aeiou' else ''} "
                     f'{kind} '
                     f'(now {old!r}); valid keys of {section}: {", ".join(sorted(node.keys()))}.')
  try:
    node[last] = value
  except (TypeError, ValueError) as e:
    raise ValueError(f'bad value {key}={value!r}: {e}; valid keys of {section}: '
                     f'{", ".join(sorted(node.keys()))}.') from None


def _name_part(key: str, value: Any) -> str:
  if isinstance(value, (tuple, list)):
    text = 'x'.join(str(v) for v in value)
  else:
    text = str(value)
  return key.split('.')[-1] + re.sub(r'[^A-Za-z0-9.+-]+', '-', text).strip('-')


def expand(axes: list[tuple[str, list[Any]]], seeds: int, num_seeds: int = 1) -> list[dict]:
  """The runs: product of the axes (first slowest) for each seed, seed-major.

  Each run is ``{'name': 'depth20_plainTrue_seed0', 'cell': {key: value}, 'seed': 0,
  'group': ..., 'dir': ...}``: ``group`` is the training workdir and ``dir`` the
  seed's own folder. With ``num_seeds`` K > 1 the seeds of a cell train K at a time
  in one program (``config.num_seeds``): group ``depth20_plainTrue_seeds0-1``,
  dirs ``depth20_plainTrue_seeds0-1/seeds/0`` and ``.../seeds/1``.
  """
  keys = [k for k, _ in axes]
  if len(set(keys)) != len(keys):
    raise ValueError(f'an axis is given twice: {keys}.')
  if num_seeds < 1:
    raise ValueError(f'--num-seeds must be >= 1, got {num_seeds}.')
  cells = [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in axes))]
  runs = []
  for first in range(0, seeds, num_seeds):
    chunk = range(first, min(first + num_seeds, seeds))
    for cell in cells:
      stem = [_name_part(k, v) for k, v in cell.items()]
      together = num_seeds > 1 and len(chunk) > 1
      group = '_'.join(stem + [f'seeds{chunk[0]}-{chunk[-1]}' if together
                               else f'seed{chunk[0]}'])
      for seed in chunk:
        runs.append({'name': '_'.join(stem + [f'seed{seed}']), 'cell': cell, 'seed': seed,
                     'group': group, 'dir': f'{group}/seeds/{seed}' if together else group})
  return runs


def load_spec(spec: str):
  path, _, arg = spec.partition(':')
  return load_config(path, arg or None)


def make_config(spec: str, sets: list[tuple[str, Any]], cell: dict, seed: int):
  """The config of one run: the file's, then ``--set`` values, then the cell's, then the seed."""
  config = load_spec(spec)
  for key, value in [*sets, *cell.items()]:
    set_value(config, key, value)
  config.seed = seed
  return config


def run_grid(spec: str, axes: list[tuple[str, list[Any]]], seeds: int, root: pathlib.Path,
             sets: list[tuple[str, Any]] = (), *, num_seeds: int = 1,
             quiet: bool = True) -> list[dict]:
  """Checks every run's config, writes ``sweep.json``, runs or skips each group; its rows.

  ``num_seeds`` > 1 trains that many seeds of a cell together (see :func:`expand`).
  """
  runs = expand(axes, seeds, num_seeds)
  groups: dict[str, list[dict]] = {}
  for r in runs:
    groups.setdefault(r['group'], []).append(r)
  configs = {}
  for group, members in groups.items():
    c = make_config(spec, list(sets), members[0]['cell'], members[0]['seed'])
    c.num_seeds = len(members)
    validate(c)  # bad input fails here, before any training
    configs[group] = c
  root.mkdir(parents=True, exist_ok=True)
  (root / 'sweep.json').write_text(json.dumps(
      {'config': spec, 'grid': [[k, list(v)] for k, v in axes], 'seeds': seeds,
       'num_seeds': num_seeds, 'set': [[k, v] for k, v in sets], 'runs': runs},
      indent=2) + '\n')
  from cnn_jax.train.xla_cache import enable_compilation_cache
  enable_compilation_cache(min_compile_secs=0.5)  # seeds 1.. reuse seed 0's programs
  return [run_or_skip(configs[g], root / g, {**members[0]['cell'], 'seed': members[0]['seed']},
                      quiet=quiet) for g, members in groups.items()]


# ----------------------------------------------------------------------------- report

LOWER_IS_BETTER = ('loss', 'error', 'nme', 'mse', 'mae', 'rmse')


def metric_value(evals: list[dict], metric: str, at: str) -> float | None:
  """The metric in eval rows at 'final', 'best' (max, or min for losses/errors) or a step."""
  rows = [r for r in evals if isinstance(r.get(metric), (int, float))]
  if not rows:
    return None
  if at == 'final':
    return float(rows[-1][metric])
  if at == 'best':
    pick = min if any(w in metric.lower() for w in LOWER_IS_BETTER) else max
    return float(pick(r[metric] for r in rows))
  step = int(at)
  return next((float(r[metric]) for r in rows if r['step'] == step), None)


def _fmt(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return '(' + ','.join(str(v) for v in value) + ')'
  return str(value)


def run_dir(run: dict) -> str:
  """A run's folder under the sweep root (sweeps written before ``dir`` existed: its name)."""
  return run.get('dir', run['name'])


def summarize(root: pathlib.Path, metric: str = '', at: str = 'final'):
  """(rows, curves, sweep): one row per cell with mean and std over the seeds found."""
  sweep = json.loads((root / 'sweep.json').read_text())
  keys = [k for k, _ in sweep['grid']]
  runs = {}
  recorded: set[str] = set()
  for r in sweep['runs']:
    evals = read_metrics(root / run_dir(r) / 'metrics.jsonl').get('eval', [])
    if evals:
      recorded.update(k for k, v in evals[-1].items() if isinstance(v, (int, float))
                      and k not in ('step',))
      runs[r['name']] = (r, evals)
  if not runs:
    raise ValueError(f'no evaluated runs under {root}; run the sweep first.')
  if not metric:
    result = next((root / run_dir(r) / 'result.json' for r, _ in runs.values()
                   if (root / run_dir(r) / 'result.json').exists()), None)
    metric = json.loads(result.read_text()).get('headline', 'accuracy') if result else 'accuracy'
  if metric not in recorded:
    raise ValueError(f'no eval metric {metric!r} recorded; recorded: '
                     f'{", ".join(sorted(recorded))}.')
  if at not in ('final', 'best') and not at.isdigit():
    raise ValueError(f'--at {at!r}: use final, best or a step number.')
  cells: dict[str, dict] = {}
  for r in sweep['runs']:
    label = json.dumps([r['cell'][k] for k in keys])
    cell = cells.setdefault(label, {'cell': r['cell'], 'values': [], 'finished': 0, 'steps': 0,
                                    'curves': []})
    if r['name'] not in runs:
      continue
    evals = runs[r['name']][1]
    value = metric_value(evals, metric, at)
    if value is not None:
      cell['values'].append(value)
      cell['finished'] += (root / run_dir(r) / 'result.json').exists()
      cell['steps'] = max(cell['steps'], evals[-1]['step'])
      cell['curves'].append([(e['step'], e[metric]) for e in evals if metric in e])
  rows = []
  for cell in cells.values():
    if not cell['values']:
      continue
    m, s = mean_std(cell['values'])
    rows.append({**{k: cell['cell'][k] for k in keys}, 'seeds': len(cell['values']),
                 'finished': cell['finished'], 'steps': cell['steps'],
                 f'{metric}_mean': m, f'{metric}_std': s})
  return rows, [c for c in cells.values() if c['values']], {**sweep, 'metric': metric, 'at': at}


def _positions(values: list[Any]) -> tuple[list[float], list[str] | None]:
  if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
    return [float(v) for v in values], None
  order = list(dict.fromkeys(_fmt(v) for v in values))
  return [float(order.index(_fmt(v))) for v in values], order


def plot_report(rows: list[dict], cells: list[dict], keys: list[str], metric: str, x: str,
                group: str | None, root: pathlib.Path) -> list[pathlib.Path]:
  """``metric_vs_<x>.png`` (a line per group, std bars) and ``curves_<metric>.png``."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  others = [k for k in keys if k != x]
  group_keys = [group] if group else others

  def glabel(cell):
    return ', '.join(f'{k.split(".")[-1]}={_fmt(cell[k])}' for k in group_keys) or 'all'

  short = x.split('.')[-1]
  fig, ax = plt.subplots(figsize=(6, 4.5))
  groups: dict[str, list[dict]] = {}
  for r in rows:
    groups.setdefault(glabel(r), []).append(r)
  xs_all, ticks = _positions([r[x] for r in rows])
  pos = {id(r): p for r, p in zip(rows, xs_all)}
  for label, rs in groups.items():
    rs = sorted(rs, key=lambda r: pos[id(r)])
    ax.errorbar([pos[id(r)] for r in rs], [r[f'{metric}_mean'] for r in rs],
                yerr=[r[f'{metric}_std'] for r in rs], marker='o', capsize=3, label=label)
  if ticks:
    ax.set_xticks(range(len(ticks)), ticks)
  ax.set_xlabel(x)
  ax.set_ylabel(f'{metric} (mean ± std over seeds)')
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.tight_layout()
  vs = root / f'metric_vs_{short}.png'
  fig.savefig(vs, dpi=90)
  plt.close(fig)

  panel_key = group or (others[0] if others else None)
  panels = list(dict.fromkeys(_fmt(c['cell'][panel_key]) for c in cells)) if panel_key else ['all']
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), sharey=True,
                           squeeze=False)
  for ax, panel in zip(axes[0], panels):
    for c in cells:
      if panel_key and _fmt(c['cell'][panel_key]) != panel:
        continue
      by_step: dict[int, list[float]] = {}
      for curve in c['curves']:
        for step, v in curve:
          by_step.setdefault(step, []).append(v)
      steps = sorted(by_step)
      label = ', '.join(f'{k.split(".")[-1]}={_fmt(c["cell"][k])}' for k in keys
                        if k != panel_key) or 'all'
      ax.plot(steps, [statistics.mean(by_step[s]) for s in steps], marker='.', label=label)
    ax.set_title(f'{panel_key.split(".")[-1]}={panel}' if panel_key else metric)
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  axes[0][0].set_ylabel(f'eval {metric} (mean over seeds)')
  fig.tight_layout()
  curves = root / f'curves_{metric}.png'
  fig.savefig(curves, dpi=90)
  plt.close(fig)
  return [vs, curves]


def markdown(rows: list[dict], keys: list[str], metric: str, at: str) -> str:
  head = [k.split('.')[-1] for k in keys] + ['runs', 'steps', f'{metric} ({at}), mean ± std']
  lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
  for r in rows:
    lines.append('| ' + ' | '.join(
        [_fmt(r[k]) for k in keys]
        + [f"{r['finished']}/{r['seeds']}", str(r['steps']),
           f"{r[f'{metric}_mean']:.4f} ± {r[f'{metric}_std']:.4f}"]) + ' |')
  return '\n'.join(lines)


def report(root: pathlib.Path, metric: str = '', at: str = 'final', x: str = '',
           group: str = '') -> list[dict]:
  """Writes ``report.{csv,json,md}`` and the plots of a sweep directory; its rows."""
  root = pathlib.Path(root)
  if not (root / 'sweep.json').exists():
    raise FileNotFoundError(f'{root}/sweep.json does not exist; run the sweep first.')
  rows, cells, sweep = summarize(root, metric, at)
  metric = sweep['metric']
  keys = [k for k, _ in sweep['grid']]

  def axis(name, what):
    if not name:
      return ''
    match = [k for k in keys if k == name or k.split('.')[-1] == name]
    if len(match) != 1:
      raise ValueError(f'{what} {name!r} is not a sweep axis; axes: {", ".join(keys)}.')
    return match[0]

  x, group = axis(x, '--x'), axis(group, '--group')
  if not x:
    x = next((k for k in keys if k != group and all(
        isinstance(r[k], (int, float)) and not isinstance(r[k], bool) for r in rows)),
        next((k for k in keys if k != group), keys[0] if keys else ''))
  (root / 'report.json').write_text(json.dumps(
      {'metric': metric, 'at': at, 'axes': keys, 'rows': rows}, indent=2) + '\n')
  with open(root / 'report.csv', 'w', newline='') as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows([{k: _fmt(v) for k, v in r.items()} for r in rows])
  table = markdown(rows, keys, metric, at)
  (root / 'report.md').write_text(
      f"Sweep of `{sweep['config']}` over {', '.join(keys) or 'seeds'}; eval {metric} "
      f"({at}), mean ± sample std over seeds.\n\n{table}\n")
  if keys:
    plot_report(rows, cells, keys, metric, x, group or None, root)
  print(table)
  return rows


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog=__doc__.split('\n', 1)[1])
  sub = p.add_subparsers(dest='command', required=True)
  r = sub.add_parser('run', help='run (or resume) the sweep, then report')
  r.add_argument('--config', required=True, help='configs/NAME.py[:ARG]')
  r.add_argument('--grid', action='append', default=[], metavar='KEY=V1,V2,...',
                 help='an axis (repeat for a product)')
  r.add_argument('--seeds', type=int, default=1, help='seeds 0..N-1 per cell (config.seed)')
  r.add_argument('--num-seeds', type=int, default=1, metavar='K',
                 help='train K seeds of a cell together in one program (config.num_seeds)')
  r.add_argument('--sweep-dir', required=True)
  r.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                 help='a config value for every run')
  r.add_argument('--verbose', action='store_true', help='progress bars')
  rep = sub.add_parser('report', help='rebuild table and plots from a sweep directory')
  rep.add_argument('sweep_dir')
  rep.add_argument('--metric', default='', help='an eval metric (default: the task headline)')
  rep.add_argument('--at', default='final', help='final, best or a step number')
  rep.add_argument('--x', default='', help='axis on the x axis (default: first numeric axis)')
  rep.add_argument('--group', default='', help='axis whose values are the lines')
  args = p.parse_args(argv)

  def command() -> None:
    if args.command == 'report':
      report(pathlib.Path(args.sweep_dir), args.metric, args.at, args.x, args.group)
      return
    if args.seeds < 1:
      raise ValueError(f'--seeds must be >= 1, got {args.seeds}.')
    axes = [parse_axis(a) for a in args.grid]
    sets = [parse_set(item) for item in args.set]
    root = pathlib.Path(args.sweep_dir)
    run_grid(args.config, axes, args.seeds, root, sets, num_seeds=args.num_seeds,
             quiet=not args.verbose)
    report(root)

  return exit_code(command)


if __name__ == '__main__':
  sys.exit(main())
