r"""The depth ablation's full recipe on one GPU: concurrent parts of one sweep, then its report.

Runs ``python -m experiments.ablation_depth run ... --only CELLS`` in ``--procs``
processes at once on the one GPU, each capped at a share of its memory
(``XLA_PYTHON_CLIENT_MEM_FRACTION``, allocating on demand), the (net, depth)
cells split between them by cost (longest first onto the least-loaded part; a
part trains its cells shallowest first), all in one sweep folder; then writes
the sweep's ``sweep.json`` and its report (``results.md`` with He et al.'s
Table 6 and the JPEG-cost line, ``fig6.png``). Every option this script does not
define goes to ``ablation_depth run`` verbatim (``--data-root``, ``--depths``,
``--seeds``, ``--scale``, ``--set KEY=VALUE``, ``--num-seeds K``: seeds trained
together, vmapped on a GPU), after the defaults ``--depths 20,56 --seeds 1`` (see the estimate below).

  # CPU: the whole thing on a generated 4-class JPEG pack, 2 processes, in well under a minute
  python -m experiments.ablation_gpu --sweep-dir /tmp/gpu_smoke --smoke --depths 8
  # GPU: the paper's 64k-iteration recipe on a packed CIFAR-10
  python -m cnn_jax.data.packed pack ../shared/data/cifar10-jpeg workdirs/cifar10.pack
  python -m experiments.ablation_gpu --sweep-dir workdirs/ablation_gpu \
      --data-root workdirs/cifar10.pack --procs 4 --time-limit 480 --out OUT_DIR

``--time-limit S`` sends SIGTERM to the parts after S seconds: each saves a
checkpoint at its current step and stops (exit 143), the report covers what
ran (unfinished runs count as found, not finished), and running the same
command again in the same folder resumes them. ``--out DIR`` copies
``results.{md,json,csv}``, ``fig6.png`` and ``runs.tar.gz`` (every run's
``metrics.jsonl``, ``config.json`` and ``result.json``, the parts' logs and
``sweep.json``; no checkpoints) to DIR: unpacked into one folder, runs from
several machines make one report (``ablation_depth report DIR``).

The GPU procedure (device tool; not run on a GPU yet: no GPU was lent to the
task that wrote this). ``../shared`` does not travel, so the images go as one
pack file (54 MiB, in the 64 MiB a call may carry), and two wheels the image
lacks go along (ml-collections, pure Python; pycocotools, which
``cnn_jax.evaluation`` imports; its absl-py, PyYAML and numpy are there;
tensorboardX and grain are optional or lazy)::

  # here, in the repository root
  python -m cnn_jax.data.packed pack ../shared/data/cifar10-jpeg workdirs/cifar10.pack
  python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .whl ml-collections==1.1.0 pycocotools==2.0.11
  # device run, carry ["workdirs/cifar10.pack", ".whl"], timeout_s 600, command:
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 && nvidia-smi -L \
    && python3 -m experiments.ablation_gpu --sweep-dir workdirs/ablation_gpu \
       --data-root workdirs/cifar10.pack --procs 4 --time-limit 480 --out $OUT
  # back here: one report from the runs (add those of later calls to the same folder)
  mkdir -p workdirs/ablation_gpu && tar -xzf FILES_AT/runs.tar.gz -C workdirs/ablation_gpu
  python -m experiments.ablation_depth report workdirs/ablation_gpu

Estimate (reasoned, not measured on a GPU). XLA's cost analysis of one
training step at batch 128 (forward + backward, on CPU) gives 29 / 50 / 71 / 92
GFLOP and 3.1 / 5.3 / 7.6 / 10.1 GB of memory traffic for depth 20 / 32 / 44 /
56 (0.27M to 0.85M parameters; plain and residual cost the same). These
16-64-channel convolutions on 32x32 maps are memory-bound: one seed of all 8
runs moves 64,000 x 52 GB = 3.3 PB, 13 minutes at the 4.3 TB/s an H200 copies
at, or about 6.5 if XLA's GPU fusions halve the traffic; 31 PFLOP adds 3-5
minutes at 100-200 TFLOP/s of TF32. Concurrent processes fill the GPU's idle
gaps (Python dispatch, evaluation, checkpoints, compilation) but add no
bandwidth, and CUDA time-slices processes unless MPS runs. So all 8 runs need
roughly 7-20 GPU-minutes for one seed: they do not surely fit one 10-minute
call (nor a session's 15 device-minutes with the machine's start), and K
vmapped seeds (``--num-seeds``) cost about K times as much when memory-bound.
What fits: depths 20 and 56, plain and residual, one seed (1.7 PB and 15 PFLOP:
about 3.5-7 minutes), which shows both of He et al.'s effects at the full recipe
and the ResNet-20 JPEG cost against the paper's 8.75%; hence the defaults
``--depths 20,56 --seeds 1``. Depths 32 and 44 are a second call
(``--depths 32,44``) whose runs.tar.gz joins the first in one folder;
``--set dtype=bfloat16`` about halves the traffic (not the paper's fp32).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence

from cnn_jax.data.image_folder import write_image_folder
from cnn_jax.data.packed import pack_image_folder
from cnn_jax.data.synthetic import load_synthetic
from experiments import ablation_depth as ab

REPO = pathlib.Path(__file__).resolve().parents[1]
# Fits about 7 GPU-minutes of one seed (see the estimate in the docstring); the user's
# own --depths / --seeds come later on the command line, and argparse keeps the last.
GPU_DEFAULTS = ('--depths', '20,56', '--seeds', '1')
SMOKE_DEFAULTS = ('--seeds', '1')
RUN_FILES = ('metrics.jsonl', 'config.json', 'result.json')
RESULT_FILES = ('results.md', 'results.json', 'results.csv', 'fig6.png')


def split_cells(cells: Sequence[tuple[str, int]], procs: int) -> list[list[str]]:
  """Cells spread over ``procs`` parts: deepest first onto the least-loaded part.

  A cell costs its depth (a step's work grows about linearly with it). Each part
  lists its cells shallowest first, so short runs finish before a time limit.
  """
  parts: list[list[tuple[str, int]]] = [[] for _ in range(min(procs, len(cells)))]
  for cell in sorted(cells, key=lambda c: (-c[1], ab.NETS.index(c[0]))):
    min(parts, key=lambda p: sum(d for _, d in p)).append(cell)
  return [[ab.cell_name(n, d) for n, d in sorted(p, key=lambda c: (c[1], ab.NETS.index(c[0])))]
          for p in parts]


def part_env(env: dict[str, str], mem_fraction: float, smoke: bool) -> dict[str, str]:
  """A part's environment: a capped share of GPU memory, taken on demand, unbuffered logs."""
  fraction = f'{mem_fraction:.3f}'
  path = os.pathsep.join(p for p in (str(REPO), env.get('PYTHONPATH', '')) if p)
  return {**env, 'XLA_PYTHON_CLIENT_PREALLOCATE': 'false',
          # jax reads XLA_CLIENT_MEM_FRACTION in newer releases, the older name before.
          'XLA_PYTHON_CLIENT_MEM_FRACTION': fraction, 'XLA_CLIENT_MEM_FRACTION': fraction,
          'PYTHONUNBUFFERED': '1', 'PYTHONPATH': path,
          **({'JAX_PLATFORMS': 'cpu'} if smoke else {})}


def make_smoke_pack(root: pathlib.Path) -> pathlib.Path:
  """A tiny JPEG pack (4 classes of 16x16 synthetic shapes): the data path, end to end."""
  folder = root / 'smoke-data'
  for split, n in (('train', 64), ('test', 40)):
    write_image_folder(load_synthetic(split, num_examples=n, image_size=16, num_classes=4),
                       folder, split)
  pack_image_folder(folder, root / 'smoke.pack')
  return root / 'smoke.pack'


def run_parts(commands: list[list[str]], env: dict[str, str], logs: pathlib.Path,
              time_limit: float, grace: float) -> list[int]:
  """Runs the commands at once (logs in ``logs/part<i>.log``); their exit codes.

  After ``time_limit`` seconds (0: none), or on SIGTERM to this process, each
  part still running gets SIGTERM (it checkpoints and exits 143), and after
  ``grace`` more seconds its whole process group SIGKILL.
  """
  logs.mkdir(parents=True, exist_ok=True)
  stop = {'at': time.monotonic() + time_limit if time_limit > 0 else float('inf')}
  previous = signal.signal(signal.SIGTERM, lambda *_: stop.update(at=time.monotonic()))
  procs, t0 = [], time.monotonic()
  try:
    for i, cmd in enumerate(commands):
      with open(logs / f'part{i}.log', 'w') as log:  # the child keeps its own descriptor
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
    codes: list[int | None] = [None] * len(procs)
    signalled = False
    while None in codes:
      time.sleep(0.2)
      for i, p in enumerate(procs):
        if codes[i] is None and p.poll() is not None:
          codes[i] = p.returncode
          print(f'part {i}: exit {p.returncode} after {time.monotonic() - t0:.0f} s'
                + ('' if p.returncode == 0 else f'; last lines of {logs / f"part{i}.log"}:\n'
                   + _tail(logs / f'part{i}.log')), flush=True)
      now = time.monotonic()
      if not signalled and now >= stop['at']:
        signalled = True
        print(f'time limit: SIGTERM to the running parts after {now - t0:.0f} s; they save '
              'a checkpoint, and the same command resumes them', flush=True)
        for p in procs:
          if p.poll() is None:
            p.send_signal(signal.SIGTERM)
      if signalled and now >= stop['at'] + grace:
        for p in procs:
          if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
  finally:
    signal.signal(signal.SIGTERM, previous)
    for p in procs:  # an exception here must not leave parts training on their own
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
  return [int(c) for c in codes]


def _tail(path: pathlib.Path, lines: int = 5) -> str:
  return '\n'.join('  ' + line for line in path.read_text(errors='replace').splitlines()[-lines:])


def export(root: pathlib.Path, out: pathlib.Path) -> list[pathlib.Path]:
  """Copies the report and ``runs.tar.gz`` (run records and logs, no checkpoints) to ``out``."""
  out.mkdir(parents=True, exist_ok=True)
  written = []
  for name in RESULT_FILES:
    if (root / name).exists():
      written.append(pathlib.Path(shutil.copy2(root / name, out / name)))
  with tarfile.open(out / 'runs.tar.gz', 'w:gz') as tar:
    for path in sorted(root.glob('*_seed*/*')):
      if path.name in RUN_FILES:
        tar.add(path, arcname=path.relative_to(root).as_posix())
    for path in [root / 'sweep.json', *sorted((root / 'logs').glob('*.log'))]:
      if path.exists():
        tar.add(path, arcname=path.relative_to(root).as_posix())
  return written + [out / 'runs.tar.gz']


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(
      description=__doc__.splitlines()[0], allow_abbrev=False,  # never take another's option
      epilog='Every other option goes to `python -m experiments.ablation_depth run` verbatim.')
  p.add_argument('--procs', type=int, default=0,
                 help='concurrent processes on the GPU (default 4; 2 with --smoke)')
  p.add_argument('--mem-fraction', type=float, default=0.0,
                 help='GPU memory cap of each process (default 0.9 / procs)')
  p.add_argument('--time-limit', type=float, default=0.0,
                 help='seconds before the parts are stopped with a checkpoint (0: none)')
  p.add_argument('--grace', type=float, default=60.0,
                 help='seconds a stopped part gets to save before it is killed')
  p.add_argument('--out', default='', help='copy the report and runs.tar.gz here')
  p.add_argument('--smoke', action='store_true',
                 help='on CPU: a generated JPEG pack, 2 processes, 12 steps a run')
  args, forwarded = p.parse_known_args(argv)
  procs = args.procs or (2 if args.smoke else 4)
  run_parser = argparse.ArgumentParser(prog='experiments.ablation_depth run')
  ab.add_run_arguments(run_parser)
  forwarded = [*(['--smoke', *SMOKE_DEFAULTS] if args.smoke else GPU_DEFAULTS), *forwarded]
  run_args = run_parser.parse_args(forwarded)  # bad options: ablation_depth's own usage error
  if run_args.only:
    p.error('--only is the launcher\'s own split; choose the cells with --depths.')
  root = pathlib.Path(run_args.sweep_dir)
  try:
    if args.smoke and not run_args.data_root:
      forwarded += ['--data-root', str(make_smoke_pack(root))]
      run_args = run_parser.parse_args(forwarded)
    sweep = ab.sweep_from_args(run_args)
    for net, depth, seeds in sweep.groups():  # bad --set values, no --data-root: fail once
      ab.make_config(sweep, net, depth, seeds[0])
    if sweep.data == 'folder' and not pathlib.Path(sweep.data_root).expanduser().exists():
      raise FileNotFoundError(f'--data-root {sweep.data_root} does not exist; pack the image '
                              'folder first: python -m cnn_jax.data.packed pack DIR FILE.pack')
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  ab.write_sweep_file(sweep, root)
  parts = split_cells([(n, d) for d in sweep.depths for n in ab.NETS], procs)
  fraction = args.mem_fraction or 0.9 / len(parts)
  commands = [[sys.executable, '-m', 'experiments.ablation_depth', 'run', *forwarded,
               '--only', ','.join(cells)] for cells in parts]
  for i, cells in enumerate(parts):
    print(f"part {i}: {', '.join(cells)} x {sweep.seeds} seed(s)", flush=True)
  codes = run_parts(commands, part_env(dict(os.environ), fraction, args.smoke), root / 'logs',
                    args.time_limit, args.grace)
  try:
    ab.report(root)
  except SystemExit as e:  # no evaluated run at all: say so, still export the logs
    print(e, file=sys.stderr)
  if args.out:
    for path in export(root, pathlib.Path(args.out)):
      print(f'wrote {path}')
  return 0 if all(c == 0 for c in codes) else (143 if 143 in codes else 1)


if __name__ == '__main__':
  sys.exit(main())
