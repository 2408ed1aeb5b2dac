"""Test-wide JAX setup: CPU only, 8 simulated devices, strict dtype promotion, compile cache.

Environment variables must be set before JAX initialises its backends, which is
why this runs at import time of the conftest (pytest imports it first).
"""

import fcntl
import json
import os
import pathlib

from cnn_jax import xla_defaults

# Forced, not defaulted: a shell exporting JAX_PLATFORMS=cuda must not move the suite.
os.environ['JAX_PLATFORMS'] = 'cpu'
# jaxlib 0.10, where the compile flags below were measured (XLA aborts on a flag it
# does not know).
_MEASURED = xla_defaults.measured_jaxlib()
_TEST_FLAGS = (
    # Multi-device tests (data parallel, pmap) need several CPU devices; the rest
    # of the suite only ever uses device 0.
    '--xla_force_host_platform_device_count=8',
    # The 8 simulated devices are 8 threads that meet at every collective; XLA aborts
    # the process when one waits 40 s (its default), which 2 loaded cores shared by two
    # xdist workers can approach. (The worker aborts seen on 2026-12-06 were in an
    # eager cross-device gather, removed by parallel.first_replica; this is a margin.)
    '--xla_cpu_collective_call_terminate_timeout_seconds=900',
    # Most of the suite's time is XLA compiling small programs, and most of a CPU
    # compile is LLVM optimising the generated kernels. The tests check values, not
    # speed, and XLA's graph passes (fusion, layout) run at every level. Measured
    # 2026-12-06 (2-core Xeon, cold cache, XLA's fusion emitters), LLVM level 2
    # (XLA's default) / 1 / 0: the conv hypothesis tests 62 / 35 / 28 s, three
    # end-to-end training tests 62 / 41 / 39 s, but the style-transfer L-BFGS test
    # 6 / 6 / 32 s (level 0's kernels run slowly). On jaxlib 0.10, level 0: see below.
    f'--xla_backend_optimization_level={0 if _MEASURED else 1}',
)
# On jaxlib 0.10: XLA:CPU's older elemental emitters compile a small program in about
# 60% of the fusion emitters' time (13 vs 22 ms of backend compile per eager op; the
# suite compiles about 10,000 programs), and with them LLVM level 0 beats level 1
# (2026-12-07, back to back: 8 min 35 s against 10 min 2 s for the whole suite;
# README "Tests"). Level 0 paid off only once loops stopped hiding convolutions from
# the libraries (ops.conv's lax path): before, its unvectorised loops made run-bound
# tests as much slower as compile-bound ones got faster (that morning: 7 min 58 s
# against 8 min 0 s).
_COMPILE_FLAGS = ('--xla_cpu_use_fusion_emitters=false',)
# A flag the user's own XLA_FLAGS names keeps the user's value (e.g. level 2: the
# kernels users run).
os.environ['XLA_FLAGS'] = xla_defaults.with_defaults(
    os.environ.get('XLA_FLAGS', ''), _TEST_FLAGS + (_COMPILE_FLAGS if _MEASURED else ()))

import hypothesis  # noqa: E402
import jax  # noqa: E402
import pytest  # noqa: E402

from cnn_jax.train import xla_cache  # noqa: E402
from cnn_jax.train.gc_tuning import tune_gc  # noqa: E402

_CACHE = pathlib.Path(os.environ.get(
    'CNN_JAX_TEST_CACHE', pathlib.Path(__file__).resolve().parents[1] / '.cache' / 'jax-tests'))
# Decoded image-folder caches of the tests' own tiny folders stay out of ~/.cache.
os.environ.setdefault('CNN_JAX_CACHE', str(_CACHE.parent / 'cnn-jax-tests'))
# Compiled programs too, also those of the experiments that enable the cache
# themselves (cnn_jax.train.xla_cache: the environment wins) and of subprocesses.
# Every program is kept, however fast it compiled: the two xdist workers and the
# subprocesses compile many of the same small programs, and reading one back
# costs about a quarter of compiling it.
os.environ['CNN_JAX_COMPILATION_CACHE'] = str(_CACHE)
os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'

jax.config.update('jax_numpy_dtype_promotion', 'strict')
xla_cache.enable_compilation_cache()

# Each hypothesis example compiles new shapes, so keep counts modest and never
# apply a deadline (compile time is not what is being tested).
hypothesis.settings.register_profile(
    'default', deadline=None, max_examples=20, derandomize=True,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.register_profile(
    'thorough', deadline=None, max_examples=200,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile(os.environ.get('HYPOTHESIS_PROFILE', 'default'))


def pytest_collection_finish(session):
  # After every test module is imported, so their imports are frozen too: tracing
  # the suite's networks then collects far less often (cnn_jax/train/gc_tuning.py).
  tune_gc()


@pytest.fixture(scope='session')
def run_once(tmp_path_factory, worker_id):
  """``run_once(name, fn)``: ``fn(folder) -> json`` runs once per pytest run, in one worker.

  Under xdist the tests of one module land on several workers, so an expensive
  module fixture (a training run) would run once per worker; here the first
  worker to arrive runs it under a file lock and the others read its result.
  """
  base = tmp_path_factory.getbasetemp()
  root = base.parent if worker_id != 'master' else base  # parent: shared by this run's workers

  def run(name, fn):
    folder = root / f'shared-{name}'
    with open(root / f'shared-{name}.lock', 'w') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)
      done = folder / 'result.json'
      if not done.exists():
        folder.mkdir(exist_ok=True)
        done.write_text(json.dumps(fn(folder)))
      return json.loads(done.read_text())

  return run


@pytest.fixture(scope='session')
def task_runs(run_once):
  """``task_runs[name] -> (workdir, result)``: one run of a tiny task config, for every test.

  The task tests read their reports and best steps; the 8-device test compares
  its losses; the kill-and-resume test compares its final parameters, so
  those subprocess runs reuse these compiled programs from the cache. Each
  config trains on first use, once per pytest run, so the two xdist workers
  train different configs instead of one waiting for all nine.
  """
  from cnn_jax.train import loop
  from tests.tasks.configs import SHARED_RUNS, tiny

  class Runs:
    def __getitem__(self, name):
      if name not in SHARED_RUNS:
        raise KeyError(f'{name!r} is not a shared run; add it to SHARED_RUNS')

      def train(folder):
        result = loop.train_and_evaluate(tiny(name, num_devices=1), folder, quiet=True)
        return {'workdir': str(folder),
                **{k: result[k] for k in ('eval', 'headline', 'best_step', 'steps')}}

      result = run_once(f'task-run-{name}', train)
      return pathlib.Path(result['workdir']), result

  return Runs()
