r"""The real train step under candidate XLA:CPU flags, each in its own process, beside PyTorch.

XLA reads ``XLA_FLAGS`` once, when its backend starts, so every candidate runs
in a fresh subprocess of this module (``--worker``). The worker compiles the
project's step (``train_throughput.project_step_fn``), records which library
runs each convolution (``step_breakdown.hlo_convolutions``: YNNPACK, Eigen,
oneDNN, ...) and times the step, interleaved with PyTorch's step of the same
network when ``--torch`` is given and PyTorch is installed. Candidates run one
after another, in the opposite order every other round, so slow drift of the
machine's load falls on all of them alike, and a ``default`` process (no flag
added) runs before the first candidate and after each one. Each candidate gets
two ratios against the mean of the two default runs around it:

* ``speedup``: its img/s over default's;
* ``torch_normalised``: the same with each img/s first divided by the
  PyTorch step timed in its own process; PyTorch ignores XLA's flags, so this
  cancels load that differed between the processes (on a machine shared with
  other work PyTorch's own OpenMP threads suffer from it more than XLA, so
  read it beside ``speedup``).

A flag this XLA does not know aborts the process ("Unknown flag in
XLA_FLAGS"): recorded as ``not a flag in this XLA``; other failures as a
one-line error, and XLA's warnings about a flag (e.g. "no longer supported")
are kept. Candidate flags go before the user's own ``XLA_FLAGS``, so a flag the
user sets wins; ``cnn_jax``'s own defaults (``cnn_jax.xla_defaults``) are
off in the workers, so ``default`` is XLA's. Compiled programs are cached on
disk for the run (the cache key includes ``XLA_FLAGS``), so only the first
round compiles.

  python -m benchmarks.xla_flags --torch --out benchmarks/recorded/xla_flags_cpu_2026-12-06.json
  python -m benchmarks.xla_flags --candidates default,ynn_conv_off --models resnet20,resnet56
  python -m benchmarks.xla_flags --flags 'mine=--xla_cpu_enable_fast_math=true' --candidates default
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

import jax

from benchmarks import timer
from benchmarks.step_breakdown import census, compile_step
from benchmarks.train_throughput import MODELS, _Stateful, project_step_fn, torch_step_fn
from cnn_jax import xla_defaults

# name -> flags added to XLA_FLAGS. In jax 0.10 XLA:CPU runs convolutions with
# more than 16 channels in YNNPACK (``__ynn_fusion``), the rest in Eigen.
CANDIDATES = {
    'default': '',
    'ynn_conv_off': '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution',
    'ynn_eltwise_reduce': '--xla_cpu_experimental_ynn_fusion_type=+eltwise,+reduce',
    'xnn_dot_eltwise': '--xla_cpu_experimental_xnn_fusion_type=dot,eltwise',
    'xnn_graph_greedy':
        '--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY',
    'xnnpack_off': '--xla_cpu_use_xnnpack=false',
    'onednn_custom_call':
        '--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_custom_call=true',
    'onednn_fusion':
        '--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot,eltwise',
    'thunk_runtime_off': '--xla_cpu_use_thunk_runtime=false',
    'eigen_single_thread': '--xla_cpu_multi_thread_eigen=false',
    'fast_math': '--xla_cpu_enable_fast_math=true',
    'vector_width_512': '--xla_cpu_prefer_vector_width=512',
    'concurrency_scheduler_off': '--xla_cpu_enable_concurrency_optimized_scheduler=false',
}
_MARK = 'XLA_FLAGS_WORKER_RESULT '
_ROOT = pathlib.Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- worker

def worker(model: str, batch: int, repeats: int, with_torch: bool) -> dict:
  """In this process (flags already read): the step's img/s, PyTorch's, and the conv census."""
  state, _, (step, arrays, key) = project_step_fn(model, batch, 'float32')
  t0 = time.perf_counter()
  compiled, _, _, convs = compile_step(step, state, arrays, key)
  out = {'compile_s': time.perf_counter() - t0, 'convolutions': census(convs)}
  cands = {'jax': _Stateful(state, lambda s: compiled(s, arrays, key))}
  if with_torch:
    try:
      cands['torch'] = _Stateful(*torch_step_fn(model, batch, 'float32'))
    except ImportError as e:
      out['torch_error'] = timer.one_line(e)
  t = timer.time_interleaved(cands, repeats=repeats, warmup=2)
  for name, r in t.items():
    out[f'{name}_img_s'] = batch / r['median_s']
    out[f'{name}_best_img_s'] = batch / r['min_s']
  return out


def _flag_notes(stderr: str) -> list[str]:
  # XLA's own words about a flag (deprecated, ignored), one line each.
  return sorted({line.split('] ', 1)[-1].strip() for line in stderr.splitlines()
                 if 'flag' in line.lower() and line[:1] in 'WEF'})


def run_candidate(flags: str, model: str, batch: int, repeats: int, with_torch: bool,
                  cache_dir: str, timeout_s: float = 600) -> dict:
  """One worker process under ``flags`` (before the user's own XLA_FLAGS): its result or error."""
  # The candidate against XLA's own defaults: cnn_jax's defaults stay off.
  env = dict(os.environ, XLA_FLAGS=' '.join(f for f in (flags, os.environ.get('XLA_FLAGS', ''))
                                           if f), **{xla_defaults.SWITCH: '0'})
  cmd = [sys.executable, '-m', 'benchmarks.xla_flags', '--worker', '--models', model,
         '--batch', str(batch), '--repeats', str(repeats), '--cache-dir', cache_dir]
  try:
    proc = subprocess.run(cmd + (['--torch'] if with_torch else []), env=env, cwd=_ROOT,
                          capture_output=True, text=True, timeout=timeout_s)
  except subprocess.TimeoutExpired:
    return {'status': f'timed out after {timeout_s:.0f} s'}
  notes = _flag_notes(proc.stderr)
  if 'Unknown flag in XLA_FLAGS' in proc.stderr:
    return {'status': 'not a flag in this XLA', 'notes': notes}
  lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(_MARK)]
  if proc.returncode or not lines:
    tail = (proc.stderr.strip().splitlines() or ['no output'])[-1]
    return {'status': f'failed (exit {proc.returncode}): {tail[:300]}', 'notes': notes}
  return {'status': 'ok', 'notes': notes, **json.loads(lines[-1][len(_MARK):])}


# ----------------------------------------------------------------------------- driver

def _ratios(res: dict, before: dict, after: dict) -> None:
  """Adds ``res``'s ratios to the mean of the default runs bracketing it (both must be ok)."""
  if res['status'] != 'ok' or before['status'] != 'ok' or after['status'] != 'ok':
    return
  base = statistics.mean([before['jax_img_s'], after['jax_img_s']])
  res['speedup'] = res['jax_img_s'] / base
  if all('torch_img_s' in x for x in (res, before, after)):
    res['over_torch'] = res['jax_img_s'] / res['torch_img_s']
    res['torch_normalised'] = res['over_torch'] / statistics.mean(
        [x['jax_img_s'] / x['torch_img_s'] for x in (before, after)])


def trial(candidates: Mapping[str, str], model: str, batch: int, rounds: int, repeats: int,
          with_torch: bool, cache_dir: str) -> dict:
  """Each candidate in its own process between two default ones, ``rounds`` times.

  A round runs default, c1, default, c2, ..., default (candidates in the
  opposite order every other round); each candidate's ratios are to the mean
  of the two default runs around it, so load that drifts during the round
  cancels. A candidate that fails is not followed by a default run.
  """
  others = [n for n in candidates if n != 'default']
  run = lambda name, r: _report(model, r, name, run_candidate(
      candidates[name], model, batch, repeats, with_torch, cache_dir))
  runs = {name: [] for name in candidates}
  for r in range(rounds):
    before = run('default', r)
    runs['default'].append(before)
    for name in (others if r % 2 == 0 else others[::-1]):
      res = run(name, r)
      runs[name].append(res)
      if res['status'] == 'ok':
        after = run('default', r)
        runs['default'].append(after)
        _ratios(res, before, after)
        before = after
  summary = {}
  for name, results in runs.items():
    ok = [x for x in results if x['status'] == 'ok']
    summary[name] = {'flags': candidates[name], 'status': results[0]['status'],
                     'notes': results[0].get('notes', []),
                     'convolutions': ok[0]['convolutions'] if ok else {}}
    for field in ('jax_img_s', 'torch_img_s', 'speedup', 'torch_normalised', 'over_torch'):
      values = [x[field] for x in ok if field in x]
      if values:
        summary[name][field] = values
        summary[name][f'{field}_median'] = statistics.median(values)
  return {'model': model, 'batch': batch, 'rounds': rounds, 'repeats': repeats,
          'candidates': summary}


def _report(model: str, r: int, name: str, res: dict) -> dict:
  line = res['status'] if res['status'] != 'ok' else f"{res['jax_img_s']:7.1f} img/s" + (
      f", torch {res['torch_img_s']:7.1f}" if 'torch_img_s' in res else '')
  print(f'{model} round {r + 1} {name:26s} {line}', flush=True)
  return res


def format_trial(t: Mapping) -> str:
  """A markdown table of one ``trial``: per candidate its rounds' ratios and conv libraries."""
  lines = [f"### {t['model']}, batch {t['batch']}: {t['rounds']} rounds of {t['repeats']} "
           'interleaved repeats', '',
           '| candidate | XLA_FLAGS | img/s per run | speedup per round | '
           'torch-normalised | XLA / torch | convolutions run by |',
           '|---|---|---|---|---|---|---|']
  fmt = lambda xs, spec: ', '.join(format(x, spec) for x in xs) if xs else '-'
  for name, c in t['candidates'].items():
    status = '' if c['status'] == 'ok' else f" ({c['status']})"
    libs = ', '.join(f'{k}: {v}' for k, v in c['convolutions'].items())
    lines.append(f"| {name}{status} | `{c['flags']}` | {fmt(c.get('jax_img_s'), '.1f')} | "
                 f"{fmt(c.get('speedup'), '.3f')} | {fmt(c.get('torch_normalised'), '.3f')} | "
                 f"{fmt(c.get('over_torch'), '.3f')} | {libs} |")
  return '\n'.join(lines)


def _parse_extra(parser, items: Sequence[str]) -> dict[str, str]:
  extra = {}
  for item in items:
    name, sep, flags = item.partition('=')
    if not sep or not name:
      parser.error(f'--flags wants NAME=FLAGS, got {item!r}')
    extra[name] = flags
  return extra


def run(args, candidates: Mapping[str, str]) -> dict:
  with tempfile.TemporaryDirectory() as cache_dir:
    trials = []
    for model in args.models.split(','):
      trials.append(trial(candidates, model, args.batch, args.rounds, args.repeats, args.torch,
                          cache_dir))
      print(format_trial(trials[-1]), flush=True)
  return {'benchmark': 'xla_flags', 'environment': timer.environment(),
          'user_xla_flags': os.environ.get('XLA_FLAGS', ''), 'trials': trials}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--models', default='resnet20')
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--rounds', type=int, default=2)
  p.add_argument('--repeats', type=int, default=6)
  p.add_argument('--candidates', default=','.join(CANDIDATES),
                 help='comma list of names in CANDIDATES (and of --flags)')
  p.add_argument('--flags', action='append', default=[], metavar='NAME=FLAGS',
                 help='an extra candidate; repeatable')
  p.add_argument('--torch', action='store_true', help="time PyTorch's step in every process")
  p.add_argument('--out', default='benchmarks/results/xla_flags.json')
  p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  p.add_argument('--cache-dir', help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  timer.choose(p, args.models, MODELS, 'model(s)')
  if args.worker:
    if args.cache_dir:
      jax.config.update('jax_compilation_cache_dir', args.cache_dir)
      jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
    print(_MARK + json.dumps(worker(args.models, args.batch, args.repeats, args.torch)),
          flush=True)
    return 0
  known = {**CANDIDATES, **_parse_extra(p, args.flags)}
  names = timer.choose(p, args.candidates, known, 'candidate(s)')
  names += [n for n in _parse_extra(p, args.flags) if n not in names]
  candidates = {n: known[n] for n in (['default'] if 'default' not in names else []) + names}
  return timer.run_and_write(functools.partial(run, candidates=candidates), args)


if __name__ == '__main__':
  sys.exit(main())
