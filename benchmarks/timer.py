"""Side-by-side timing for benchmarks: interleaved repeats, medians, JSON out.

Machines are noisy, so candidates are timed in alternation (A, B, A, B, ...)
and compared by the ratio of their medians, never against a fixed threshold.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import pathlib
import platform
import statistics
import time
from collections.abc import Callable, Mapping

import jax

from cnn_jax.timing import interleaved_samples


def block(tree):
  """Waits for every array in ``tree`` (async dispatch would hide the cost)."""
  return jax.tree.map(lambda a: a.block_until_ready() if hasattr(a, 'block_until_ready') else a,
                      tree)


def time_interleaved(fns: Mapping[str, Callable[[], object]], repeats: int,
                     warmup: int = 1) -> dict[str, dict[str, float]]:
  """Runs each zero-argument ``fn`` ``warmup`` times, then ``repeats`` rounds in turn.

  Returns:
    ``{name: {'median_s', 'min_s', 'compile_s'}}``; ``compile_s`` is the first
    (tracing + compilation) call, reported separately from steady state.
  """
  out = {}
  for name, fn in fns.items():
    t0 = time.perf_counter()
    block(fn())
    out[name] = {'compile_s': time.perf_counter() - t0}
    for _ in range(warmup - 1):
      block(fn())
  for name, s in interleaved_samples(fns, repeats).items():
    out[name].update(median_s=statistics.median(s), min_s=min(s))
  return out


def _version(package: str) -> str:
  try:  # the installed version, without importing the package (torch takes seconds)
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return 'not installed'


def environment() -> dict[str, str]:
  """What a reader needs to compare numbers: device, versions, date."""
  dev = jax.devices()[0]
  return {
      'device': getattr(dev, 'device_kind', str(dev)),
      'platform': dev.platform,
      'device_count': str(jax.device_count()),
      'host': platform.processor() or platform.machine(),
      'python': platform.python_version(),
      'jax': jax.__version__,
      'jaxlib': _version('jaxlib'),
      'flax': _version('flax'),
      'torch': _version('torch'),
      'date': datetime.date.today().isoformat(),
  }


def one_line(e: BaseException) -> str:
  """``'TypeName: first line of the message'``, short enough for a JSON field or a table."""
  lines = str(e).strip().splitlines()
  return f"{type(e).__name__}: {lines[0] if lines else ''}"[:300]


def write_json(path: str | pathlib.Path, payload: dict) -> pathlib.Path:
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(payload, indent=2) + '\n')
  return path


def choose(parser, value: str, known, what: str) -> list[str]:
  """A comma list of names, each one of ``known``; else the parser's one-line error."""
  names = value.split(',')
  unknown = sorted(set(names) - set(known))
  if unknown:
    parser.error(f'unknown {what} {unknown}; choose from {sorted(known)}')
  return names


def add_common_args(parser, name: str, cpu_repeats: int) -> bool:
  """``--dtypes``, ``--repeats`` and ``--out`` with defaults for the backend; True on CPU."""
  on_cpu = jax.default_backend() == 'cpu'
  parser.add_argument('--dtypes', default='float32' if on_cpu else 'float32,bfloat16')
  parser.add_argument('--repeats', type=int, default=cpu_repeats if on_cpu else 30)
  parser.add_argument('--out', default=f'benchmarks/results/{name}.json')
  return on_cpu


def run_and_write(run, args) -> int:
  """Runs a benchmark and writes its JSON; the exit status for ``sys.exit``."""
  print('wrote', write_json(args.out, run(args)))
  return 0


def run_over_models(parser, argv, run, models) -> int:
  """Parses ``argv``, checks its ``--models`` against ``models``, runs and writes the JSON."""
  args = parser.parse_args(argv)
  choose(parser, args.models, models, 'model(s)')
  return run_and_write(run, args)
