"""``config.xla_cpu_ynnpack``: whether XLA:CPU gives a run's steps to YNNPACK, per program.

XLA:CPU (jaxlib 0.10) hands convolutions, and with the project's default flag
(:mod:`cnn_jax.xla_defaults`) elementwise work and reductions, to YNNPACK; with
YNNPACK off for a program, XLA's Eigen convolutions and its own loops run it.
Which is faster depends on the network and the pass, by 10-70% either way
(``benchmarks/README.md``, 2026-12-07): ResNet-20's train step ran 1.14x faster
with YNNPACK off, ResNet-56's 0.90x, ResNet-50's 0.81x, and ResNet-50's
inference 1.5x faster. One process-wide flag cannot take the better of each, a
compiler option per program can:

* ``'flags'`` (default): the process's ``XLA_FLAGS``, nothing per program;
* ``'off'``: the run's train and eval steps compiled with YNNPACK off;
* ``'auto'``: at the first train step, the step is compiled both ways and each
  program timed on copies of the real state and batch (interleaved, median of
  :data:`REPEATS`); the faster one runs the train and eval steps. The choice
  and its timings go to ``<workdir>/xla_cpu_ynnpack.json`` before the first
  checkpoint, and a resumed run compiles what the file says without measuring:
  the two programs round differently, so exact resume needs the same one. (A
  fresh run measures for itself; a resume without a readable record warns and
  measures.) The first step's ``compile_s`` includes the measurement.

Only XLA:CPU on the jaxlib versions :mod:`cnn_jax.xla_defaults` was measured
on knows the option; elsewhere (a GPU, another jaxlib) ``off`` and ``auto``
run as ``flags`` and say so. ``auto`` measures in one process (a multi-host
run would need every host to agree: pick ``flags`` or ``off`` there), and
both need ``parallel=jit``: options are per compiled program, ``pmap`` has no
place to pass them.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from cnn_jax import xla_defaults
from cnn_jax.atomic_files import write_json
from cnn_jax.timing import interleaved_ms

SETTINGS = ('flags', 'off', 'auto')
# An empty list of fusion types: YNNPACK takes nothing from this program.
NO_YNNPACK: dict[str, Any] = {'xla_cpu_experimental_ynn_fusion_type': ''}
RECORD = 'xla_cpu_ynnpack.json'
REPEATS = 3
_OPTIONS = {'flags': None, 'off': NO_YNNPACK}


def applies() -> bool:
  """Whether this process can compile a program with YNNPACK off (XLA:CPU, measured jaxlib)."""
  return jax.default_backend() == 'cpu' and xla_defaults.measured_jaxlib()


def read_record(path: pathlib.Path) -> dict | None:
  """The recorded choice ``{'choice', 'ms', ...}``; None when missing or unreadable."""
  try:
    record = json.loads(path.read_text())
  except (OSError, ValueError):
    return None
  return record if isinstance(record, dict) and record.get('choice') in _OPTIONS else None


def run_options(setting: str, workdir: pathlib.Path) -> dict | None:
  """The compiler options a run in ``workdir`` compiled its steps with (its reports use them)."""
  if not applies():
    return None
  if setting == 'auto':
    record = read_record(workdir / RECORD)
    return _OPTIONS[record['choice']] if record else None
  return _OPTIONS.get(setting)


@jax.jit
def _copy(tree):
  """New buffers for a donated argument, so a timing call leaves the real one alone."""
  return jax.tree.map(jnp.copy, tree)


def check_processes(setting: str) -> None:
  """``auto`` measures in one process: a one-line error for a multi-host run, before it starts."""
  if setting == 'auto' and jax.process_count() > 1:
    raise ValueError('xla_cpu_ynnpack=auto measures in one process; a multi-host run '
                     'needs --config.xla_cpu_ynnpack=flags or off.')


def _built_at_first_call(make: Callable[[tuple], Callable]) -> Callable:
  """A function that builds itself as ``make(args)`` from its first call's arguments."""
  built: list[Callable] = []

  def call(*args):
    if not built:
      built.append(make(args))
    return built[0](*args)

  return call


class Library:
  """One run's setting, resolved to compiler options once and shared by its steps.

  Args:
    setting: one of :data:`SETTINGS`.
    record: the run's ``xla_cpu_ynnpack.json``: ``auto`` writes it when it
      measures, and a resumed ``auto`` run reads it.
    note: where one line about the choice goes (the run's log).
    resumed: the run continues from a checkpoint. A fresh run measures even
      if the folder holds a record (from an earlier run with other settings);
      a resumed one keeps what its first part chose.
  """

  def __init__(self, setting: str, record: pathlib.Path, note: Callable[[str], None],
               resumed: bool = False):
    if setting not in SETTINGS:
      raise ValueError(f'xla_cpu_ynnpack={setting!r} is not valid; choose one of '
                       f'{", ".join(SETTINGS)}.')
    self.record, self._note = record, note
    self.choice: str | None = None if setting == 'auto' else setting
    if setting != 'flags' and not applies():
      note(f'xla_cpu_ynnpack={setting} applies to XLA:CPU on jaxlib '
           f'{"/".join(xla_defaults.MEASURED_ON)}x only; this run uses the process flags.')
      self.choice = 'flags'
    elif setting == 'auto' and resumed:
      recorded = read_record(record)
      if recorded is not None:
        self.choice = recorded['choice']
        note(f'xla_cpu_ynnpack=auto: {self.choice}, as recorded in {record}')
      else:
        note(f'warning: {record} is {"unreadable" if record.exists() else "missing"}, so '
             "the first part's program is unknown; auto chooses again at the next train step "
             '(the rest of the run may round differently).')

  @property
  def options(self) -> dict | None:
    """The compiler options of the chosen program (None: the process's flags)."""
    return _OPTIONS[self.choice or 'flags']

  def train(self, build: Callable[[dict | None], Any]) -> Callable:
    """``build(options)`` jitted with those options; under ``auto``, chosen at the first call.

    The measurement lowers ``build(None)`` for the first call's arguments, compiles
    it with and without YNNPACK, times both on copies of the arguments (the step
    donates its state) and then runs the faster program, this call included.
    """
    if self.choice is not None:
      return build(self.options)
    return _built_at_first_call(lambda args: self._measure(build, args))

  def eval(self, build: Callable[[dict | None], Any]) -> Callable:
    """``build(options)`` built at the first call, with the choice made by then (or 'flags')."""
    return _built_at_first_call(lambda args: build(self.options))

  def _measure(self, build, args) -> Callable:
    t0 = time.perf_counter()
    lowered = build(None).lower(*args)  # traced once, compiled both ways
    programs = {name: lowered.compile(compiler_options=options)
                for name, options in _OPTIONS.items()}
    for program in programs.values():  # warm-up
      jax.block_until_ready(program(*_copy(args)))
    # Each call gets fresh copies of what it donates, made before its clock starts.
    ms = interleaved_ms({name: lambda copies, p=program: p(*copies)
                         for name, program in programs.items()}, REPEATS,
                        setup=lambda: jax.block_until_ready(_copy(args)))
    ms = {name: round(t, 3) for name, t in ms.items()}
    self.choice = min(ms, key=ms.get)
    write_json(self.record, {
        'choice': self.choice, 'ms': ms,
        'measured': f'train step on copies of the first batch and state, median of {REPEATS}',
        'backend': jax.default_backend(), 'device': jax.devices()[0].device_kind})
    self._note(f'xla_cpu_ynnpack=auto: {self.choice} (train step {ms["flags"]:.1f} ms with the '
               f'flags, {ms["off"]:.1f} ms with YNNPACK off; measured in '
               f'{time.perf_counter() - t0:.1f} s), recorded in {self.record}')
    return programs[self.choice]
