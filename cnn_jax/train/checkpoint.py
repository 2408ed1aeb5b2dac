"""Checkpoints of a ``TrainState`` (plus a small JSON data-iterator state) on orbax.

One orbax ``CheckpointManager`` on one directory, a folder per step::

  <directory>/<step>/state/     the ``TrainState`` pytree (``StandardSave``)
  <directory>/<step>/data/      when given: ``JsonSave`` of e.g. a grain iterator
                                state or ``{'epoch': ...}``
  <directory>/<step>/metrics/   eval steps only: the metrics they were saved with

Retention is an orbax preservation policy: a step survives if it is one of the
newest ``max_to_keep`` steps, or if it is the best by ``best_metric`` among the
steps saved with metrics (the eval steps), however old. Periodic steps carry no
metrics and never count as best.

Usage in a training loop::

  ckpt = Checkpointer(workdir / 'checkpoints', save_every=1000)
  if ckpt.latest_step() is not None:
    state, data_state = ckpt.restore(jax.eval_shape(lambda: state))
    if ckpt.restore_warning:
      print(ckpt.restore_warning)  # the newest step was unreadable
  for step in ...:
    ckpt.save(step, state, data_state=data.state())  # no-op unless step % save_every == 0
    if step % eval_every == 0:
      ckpt.save(step, state, metrics=eval_metrics)   # always written; ranked for best
  ckpt.save(num_steps, state, metrics=final_metrics, force=True)
  ckpt.close()

Crash safety comes from orbax: a step is written to ``<step>.orbax-checkpoint-tmp*``
and renamed when complete, so a process killed mid-save leaves the previous
checkpoints intact and the half-written folder is never listed (and is removed
by the next ``Checkpointer`` on the directory). A committed step that was
damaged later (a truncated file, a full disk, a bad copy) is skipped by
``restore``, which resumes from the newest step that still reads.

Multi-host: every process must call ``save`` / ``restore`` with the same
arguments; orbax synchronises them and only the primary writes metadata. Do not
guard the calls with ``jax.process_index() == 0``. The fall-back past an
unreadable step is decided by each process on its own, so all processes must
read the same files (a shared filesystem) to agree on the step.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging as py_logging
import math
import pathlib
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from orbax.checkpoint.checkpoint_managers import preservation_policy

from cnn_jax.pytree import leaf_paths

_STATE = 'state'
_DATA = 'data'
# Longest reason quoted from an exception: tensorstore chains a dozen
# "Error opening ... driver: " contexts ahead of the cause.
_MAX_REASON = 240


class CheckpointError(ValueError):
  """No checkpoint of the directory (or not the one asked for) can be read."""


class _Unreadable(Exception):
  """A step's files are damaged; ``reason`` is one short line."""

  def __init__(self, reason: str):
    super().__init__(reason)
    self.reason = reason


def _reason(e: BaseException) -> str:
  """``'ValueError: DATA_LOSS: ...: <cause>'``: one line, without tensorstore's spec dump."""
  text = e.args[0] if isinstance(e, KeyError) and e.args else e  # KeyError's str is a repr
  text = str(text).strip()
  text = text.splitlines()[0] if text else ''
  text = text.split(' [tensorstore_spec', 1)[0]
  # Tensorstore's "CODE: context: context: ...: cause": keep the code and the cause.
  parts = text.split(': ')
  while len(': '.join(parts)) > _MAX_REASON and len(parts) > 3:
    parts = [parts[0], '...', *parts[3:]]
  text = ': '.join(parts)
  if len(text) > _MAX_REASON:
    text = text[:_MAX_REASON - 3] + '...'
  return f'{type(e).__name__}: {text}' if text else type(e).__name__


def _drop_closed_loop_errors(hook):
  def unraisable(args):
    # Tensorstore reads still in flight when orbax's event loop has given up
    # on a failed restore call back into the closed loop.
    if isinstance(args.exc_value, RuntimeError) and 'Event loop is closed' in str(args.exc_value):
      return
    hook(args)
  return unraisable


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
  """Keeps orbax's, tensorstore's and asyncio's reports of a failed read off the console.

  A damaged step makes orbax log errors with whole tensorstore specs and
  asyncio print tracebacks of the reads it abandoned; the caller turns the
  exception into one line instead. Process-wide while it lasts (logging is).
  """
  verbosity = logging.get_verbosity()
  asyncio_logger = py_logging.getLogger('asyncio')
  asyncio_level = asyncio_logger.level
  hook = sys.unraisablehook
  logging.set_verbosity(logging.FATAL)
  asyncio_logger.setLevel(py_logging.CRITICAL)
  sys.unraisablehook = _drop_closed_loop_errors(hook)
  failed = False
  try:
    with warnings.catch_warnings():
      warnings.filterwarnings('ignore', message='coroutine .* was never awaited',
                              category=RuntimeWarning)
      try:
        yield
      except BaseException:
        failed = True
        raise
      finally:
        if failed:
          # Let the abandoned reads finish, and collect their futures and
          # coroutines now, while their complaints are still silenced. They are
          # young: the two young generations hold them, and a full collection
          # would walk the whole heap (about a second in a process that has
          # traced many networks).
          time.sleep(0.05)
          gc.collect(1)
  finally:
    sys.unraisablehook = hook
    asyncio_logger.setLevel(asyncio_level)
    logging.set_verbosity(verbosity)


class _DropMissingMetricsWarning(py_logging.Filter):
  """Orbax warns on every save without metrics once a best_fn is set: every periodic step."""

  def filter(self, record: py_logging.LogRecord) -> bool:
    return 'did not provide metrics' not in str(record.msg)


def _metric(metrics: Any, name: str) -> float | None:
  """``metrics[name]`` as a float, or None if it is missing, not a number, or NaN."""
  try:
    value = float(metrics[name])
  except (KeyError, TypeError, ValueError):
    return None
  return None if math.isnan(value) else value


def _rank_fn(best_metric: str, best_mode: str):
  """Orbax's ``best_fn``: the metric, and the worst possible value where there is none.

  A step from a run that tracked another metric, or whose metric was NaN,
  then ranks last, and any real value replaces it as best.
  """
  worst = -math.inf if best_mode == 'max' else math.inf

  def rank(metrics: Any) -> float:
    value = _metric(metrics, best_metric)
    return worst if value is None else value

  return rank


class _Manager(ocp.CheckpointManager):
  """A ``CheckpointManager`` that reads a step's garbled metrics file as no metrics.

  The manager reads every step's metrics as it opens the directory (to rank
  them), where orbax would raise on one damaged file and so make the whole
  directory unopenable. Such a step then ranks as a periodic one.
  """

  def metrics(self, step: int) -> Any:
    try:
      return super().metrics(step)
    except Exception:  # pylint: disable=broad-except
      return None


def _write_replicas_whole_on_cpu() -> None:
  """Saves each replicated array from one replica when the devices are CPU threads.

  orbax (0.12) splits a replicated array into one slice per replica, so that
  accelerators copy to the host in parallel; it turns that off on GPU itself.
  CPU devices share one memory, and each slice is a program compiled per
  device: 128 compiles, 2 s, for FCN-8s' first save on 8 simulated devices.
  orbax keeps its handlers in one global registry, hence a global (idempotent) choice.
  """
  if jax.default_backend() == 'cpu':
    ocp.type_handlers.register_type_handler(
        jax.Array, ocp.type_handlers.ArrayHandler(use_replica_parallel=False), override=True)


def _open_manager(directory: pathlib.Path, *, max_to_keep: int | None, keep_best: bool,
                  best_metric: str, best_mode: str, async_save: bool,
                  read_only: bool = False, also_best: Sequence[str] = ()
                  ) -> ocp.CheckpointManager:
  """The one orbax manager of a checkpoint directory (see the module docstring)."""
  if read_only:
    policy = preservation_policy.PreserveAll()
  else:
    policies = [preservation_policy.LatestN(n=max_to_keep)]
    if keep_best:
      # BestN sorts ascending (descending with reverse) and keeps the last n:
      # the best. Steps without metrics are the periodic ones; LatestN keeps
      # those it should.
      policies += [preservation_policy.BestN(
          get_metric_fn=_rank_fn(name, best_mode), reverse=best_mode == 'min', n=1,
          keep_checkpoints_without_metrics=False) for name in (best_metric, *also_best)]
    policy = preservation_policy.AnyPreservationPolicy(policies)
  options = ocp.CheckpointManagerOptions(
      create=not read_only, read_only=read_only, cleanup_tmp_directories=not read_only,
      save_interval_steps=0 if read_only else 1,
      enable_async_checkpointing=async_save, preservation_policy=policy,
      # best_fn makes orbax write each eval step's metrics next to it (which
      # is how the best step is known after a restart) and rank steps for
      # best_step() exactly as BestN does. Retention is the policy's alone.
      best_fn=_rank_fn(best_metric, best_mode), best_mode=best_mode)
  # Registering the handlers up front (rather than letting orbax infer them
  # from the first save) is what makes item metadata readable in a fresh
  # process, before anything was saved: the mismatch check needs it.
  with _quiet():  # a damaged step's metadata must not fill the console on opening
    _write_replicas_whole_on_cpu()  # (orbax logs a warning on every registration)
    return _Manager(directory, options=options, item_names=(_STATE, _DATA),
                    item_handlers={_STATE: ocp.StandardCheckpointHandler(),
                                   _DATA: ocp.JsonCheckpointHandler()})


def _to_abstract(tree: Any) -> Any:
  """Turns concrete arrays into ``ShapeDtypeStruct``\\ s, always with a sharding.

  Without a sharding orbax falls back on the sharding recorded at save time,
  which names devices that may not exist any more (another machine, another
  device count). A leaf without one is restored whole onto this process's
  first local device instead: what ``jax.jit`` gives an unsharded state, and
  the host copy that a pmap loop replicates itself.
  """
  default = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

  def leaf(x):
    sharding = getattr(x, 'sharding', None)
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or default)

  return jax.tree.map(leaf, tree)


def _metrics_to_json(metrics: dict[str, Any]) -> dict[str, float]:
  # Eval metrics arrive as numpy / jax scalars, which json cannot write.
  out = {}
  for k, v in metrics.items():
    try:
      out[str(k)] = float(v)
    except (TypeError, ValueError) as e:
      raise TypeError(f'metrics[{k!r}] must be a scalar number, got {type(v).__name__} '
                      f'{np.shape(v)}; pass eval metrics averaged to floats.') from e
  return out


class Checkpointer:
  """Periodic, best-so-far and restore of a ``TrainState`` under one directory.

  Args:
    directory: root folder; step folders ``<directory>/<step>`` are created in it.
    save_every: ``save`` writes at steps that are multiples of this (and at
      any step given ``metrics`` or ``force=True``).
    max_to_keep: how many of the newest steps are kept.
    keep_best: whether the best step by ``best_metric`` among the steps saved
      with metrics is kept as well, even when older than the newest ones.
    best_metric: the key of the metrics dict given to ``save`` that ranks steps.
    best_mode: ``'max'`` (e.g. accuracy) or ``'min'`` (e.g. loss).
    also_best: more metric keys whose best step is kept too (ranked like
      ``best_metric``), e.g. each seed's own ``'accuracy/seed3'`` when seeds train
      together; :meth:`best_step` takes one of them.
    async_save: write in a background thread; ``save`` returns once the arrays
      are copied off the device (so donating the state afterwards is safe).

  Attributes:
    restore_warning: after ``restore()``, one line saying which unreadable
      newer step it skipped, or None when it read the newest step.
  """

  def __init__(self, directory: str | pathlib.Path, *, save_every: int, max_to_keep: int = 3,
               keep_best: bool = True, best_metric: str = 'accuracy', best_mode: str = 'max',
               also_best: Sequence[str] = (), async_save: bool = True):
    if save_every < 1:
      raise ValueError(f'save_every must be a positive number of steps, got {save_every}.')
    if max_to_keep < 1:
      raise ValueError(f'max_to_keep must be at least 1, got {max_to_keep}.')
    if best_mode not in ('max', 'min'):
      raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}.")
    self.directory = pathlib.Path(directory).absolute()
    self.save_every = save_every
    self.max_to_keep = max_to_keep
    self.keep_best = keep_best
    self.best_metric = best_metric
    self.best_mode = best_mode
    self.restore_warning: str | None = None
    # Our own cadence decides when to save (orbax gets force=True), so orbax's
    # save_interval_steps stays at its default of 1.
    self._manager = _open_manager(self.directory, max_to_keep=max_to_keep, keep_best=keep_best,
                                  best_metric=best_metric, best_mode=best_mode,
                                  async_save=async_save, also_best=tuple(also_best))
    # The metrics of every step, by step: orbax only reads them from disk,
    # where an async save of this process has not put them yet.
    with _quiet():
      self._metrics: dict[int, dict[str, float]] = {
          step: dict(m) for step in self._manager.all_steps()
          if isinstance(m := self._manager.metrics(step), dict)}

  # ---- queries ------------------------------------------------------------

  def latest_step(self) -> int | None:
    """The newest checkpoint, or None if there is none.

    In the process that saved it this includes an async save still being
    written (``wait()`` first for committed steps only); a new process sees
    committed steps only.
    """
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    """Every kept checkpoint, oldest first (see :meth:`latest_step`)."""
    return sorted(self._manager.all_steps())

  def best_step(self, metric: str | None = None) -> int | None:
    """The kept step with the best ``best_metric`` (or ``metric``, one of ``also_best``), or None.

    None with ``keep_best=False``, or when no kept step has a (non-NaN) value
    of the metric. Of equal values the newest step is best (the one the
    retention keeps).
    """
    if not self.keep_best:
      return None
    if metric is not None and metric != self.best_metric:
      ranked = [(v, s) for s, m in self._metrics.items()
                if (v := _metric(m, metric)) is not None]
      if not ranked:
        return None
      sign = 1 if self.best_mode == 'max' else -1
      return max(ranked, key=lambda vs: (sign * vs[0], vs[1]))[1]
    step = self._manager.best_step()
    if step is None or _metric(self._metrics.get(step, {}), self.best_metric) is None:
      return None
    return step

  def best_metrics(self) -> dict[str, float] | None:
    """All metrics saved with :meth:`best_step`, or None when there is no best step."""
    step = self.best_step()
    return None if step is None else dict(self._metrics[step])

  def should_save(self, step: int) -> bool:
    return step % self.save_every == 0

  # ---- saving -------------------------------------------------------------

  def _args(self, state: Any, data_state: dict | None) -> ocp.args.Composite:
    items = {_STATE: ocp.args.StandardSave(state)}
    if data_state is not None:
      try:
        json.dumps(data_state)
      except (TypeError, ValueError) as e:
        # Checked here because an async save would only fail later, in a
        # background thread, far from the caller.
        raise TypeError(f'data_state must be JSON-serialisable ({e}); convert arrays with '
                        '.tolist() and bytes with .decode() before saving.') from e
      items[_DATA] = ocp.args.JsonSave(data_state)
    return ocp.args.Composite(**items)

  def _can_write(self, step: int) -> bool:
    """False for a step that is already saved (orbax never overwrites one) or behind the newest.

    ``latest_step`` must stay the point to resume from.
    """
    steps = self._manager.all_steps()
    if step in steps or (steps and step < max(steps)):
      logging.warning('Not checkpointing step %d in %s: it already holds steps %s.',
                      step, self.directory, sorted(steps))
      return False
    return True

  def save(self, step: int, state: Any, *, data_state: dict | None = None,
           metrics: dict[str, Any] | None = None, force: bool = False) -> bool:
    """Saves ``state`` (and ``data_state``, ``metrics``) as step ``step``.

    Writes if ``should_save(step)``, ``force``, or ``metrics`` are given (an
    eval step), unless ``step`` is already saved or older than the newest
    saved step. ``metrics`` (scalars; stored as floats) rank the step for
    :meth:`best_step`; a NaN value never becomes best.

    Returns whether a save was started. With ``async_save`` the files are
    written in the background; ``wait()`` blocks until they are committed.
    """
    if not (force or metrics is not None or self.should_save(step)):
      return False
    if metrics is not None:
      if self.keep_best and self.best_metric not in metrics:
        raise KeyError(f'save needs metrics[{self.best_metric!r}] but got keys '
                       f'{sorted(metrics)}; pass the eval metrics or change best_metric.')
      metrics = _metrics_to_json(metrics)
    args = self._args(state, data_state)
    if not self._can_write(step):
      return False
    absl_logger = py_logging.getLogger('absl')
    quiet = _DropMissingMetricsWarning()
    absl_logger.addFilter(quiet)
    try:
      saved = bool(self._manager.save(step, args=args, metrics=metrics, force=True))
    finally:
      absl_logger.removeFilter(quiet)
    if saved:
      if metrics is not None:
        self._metrics[step] = metrics
      # Forget the steps the policy has just deleted.
      kept = set(self._manager.all_steps())
      self._metrics = {s: m for s, m in self._metrics.items() if s in kept}
    return saved

  # ---- restoring ----------------------------------------------------------

  def _check_matches(self, step: int, abstract_state: Any, saved_tree: Any) -> None:
    """Raises ValueError at the first leaf whose shape, dtype or presence differs."""
    saved = leaf_paths(getattr(saved_tree, 'tree', saved_tree))
    wanted = leaf_paths(abstract_state)
    problem = None
    for path, x in wanted.items():
      if path not in saved:
        problem = f'{path} {tuple(x.shape)} is missing from the checkpoint'
        break
      s = saved[path]
      if tuple(s.shape) != tuple(x.shape):
        problem = (f'{path} has shape {tuple(s.shape)} in the checkpoint but {tuple(x.shape)} '
                   'here')
        break
      # Orbax would silently cast on restore; a different dtype means a
      # different config just as a different shape does.
      if s.dtype is not None and np.dtype(s.dtype) != np.dtype(x.dtype):
        problem = (f'{path} has dtype {np.dtype(s.dtype)} in the checkpoint but '
                   f'{np.dtype(x.dtype)} here')
        break
    else:
      extra = [p for p in saved if p not in wanted]
      if extra:
        problem = f'{extra[0]} is in the checkpoint but not in this state'
    if problem:
      raise ValueError(f'checkpoint at {self.directory} step {step} does not match this '
                       f'config: {problem}; use a new --workdir or the config the checkpoint '
                       'was made with.')

  def _read(self, step: int, abstract_state: Any) -> tuple[Any, dict | None]:
    """``(state, data_state or None)`` of one step.

    Raises _Unreadable for damaged files and ValueError (from
    ``_check_matches``, before any array is read) for a different config.
    """
    with _quiet():
      try:
        metadata = self._manager.metadata(step)
      except Exception as e:  # pylint: disable=broad-except
        raise _Unreadable(_reason(e)) from e
    items_found = metadata.item_metadata or {}
    if _STATE not in items_found:
      raise _Unreadable(f'its {_STATE!r} item is missing')
    saved_tree = items_found[_STATE]
    if saved_tree is None:  # orbax reads a missing _METADATA file as no metadata
      raise _Unreadable(f'the metadata of its {_STATE!r} item is missing')
    self._check_matches(step, abstract_state, saved_tree)
    has_data = _DATA in (metadata.item_handlers or {})
    items = {_STATE: ocp.args.StandardRestore(abstract_state)}
    if has_data:
      items[_DATA] = ocp.args.JsonRestore()
    with _quiet():
      try:
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
      except Exception as e:  # pylint: disable=broad-except
        raise _Unreadable(_reason(e)) from e
    return restored[_STATE], (restored[_DATA] if has_data else None)

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict | None]:
    """Restores ``(state, data_state or None)``, of the newest readable step by default.

    ``abstract_state`` is the state's pytree of ``jax.ShapeDtypeStruct`` (e.g.
    ``jax.eval_shape`` of the init) or of concrete arrays; the restored arrays
    take its shardings (the first local device where it has none).

    Without ``step``, an unreadable newest step (damaged files) is skipped for
    the next newest that reads, and ``restore_warning`` says so in one line.

    Raises:
      ValueError: before reading any array, if the checkpoint's tree, shapes
        or dtypes differ from ``abstract_state`` (never skipped: it means
        another config, not a damaged file).
      CheckpointError: if no step (or not the given ``step``) is readable.
      FileNotFoundError: if there is no checkpoint (or no such ``step``).
    """
    # An async save from this process may still be writing the step it lists.
    self._manager.wait_until_finished()
    self.restore_warning = None
    steps = self.all_steps()
    abstract_state = _to_abstract(abstract_state)
    if step is not None:
      if step not in steps:
        raise FileNotFoundError(f'no checkpoint for step {step} in {self.directory}; '
                                f'available steps: {steps}.')
      try:
        return self._read(step, abstract_state)
      except _Unreadable as e:
        raise CheckpointError(f'checkpoint step {step} in {self.directory} is unreadable '
                              f'({e.reason}); restore another step or delete that '
                              'one') from None
    if not steps:
      raise FileNotFoundError(f'no checkpoint in {self.directory}; check latest_step() '
                              'is not None before restoring.')
    skipped: list[int] = []
    reason = ''
    for candidate in reversed(steps):
      try:
        restored = self._read(candidate, abstract_state)
      except _Unreadable as e:
        reason = reason or e.reason
        skipped.append(candidate)
        continue
      if skipped:
        others = skipped[1:]
        more = (f'; step{"s" if len(others) > 1 else ""} {", ".join(map(str, others))} too'
                if others else '')
        aside = self._set_aside(skipped)
        self.restore_warning = (f'checkpoint step {skipped[0]} in {self.directory} is '
                                f'unreadable ({reason}{more}); resumed from step {candidate} '
                                f'(the damaged step{"s" if others else ""} moved to {aside})')
      return restored
    raise CheckpointError(f'no readable checkpoint in {self.directory} (newest step '
                          f'{steps[-1]}: {reason}); delete the folder or use a new --workdir')

  def _set_aside(self, steps: list[int]) -> pathlib.Path:
    """Moves unreadable step folders to ``<dir>/unreadable-<time>/`` (kept, not deleted).

    The run continues from an older step, and a step behind the newest could
    never be saved again while the damaged ones are listed.
    """
    aside = self.directory / f'unreadable-{time.strftime("%Y%m%d-%H%M%S")}'
    if jax.process_index() == 0:
      aside.mkdir(exist_ok=True)
      for step in steps:
        (self.directory / str(step)).rename(aside / str(step))
    self._manager.reload()
    self._metrics = {s: m for s, m in self._metrics.items() if s not in steps}
    return aside

  def restore_best(self, abstract_state: Any) -> tuple[Any, dict[str, float]]:
    """Restores ``(state, metrics)`` of :meth:`best_step`; see :meth:`restore`."""
    self._manager.wait_until_finished()
    step = self.best_step()
    if step is None:
      raise FileNotFoundError(f'no best checkpoint in {self.directory}; save with eval '
                              'metrics first (and keep_best=True).')
    state, _ = self.restore(abstract_state, step=step)
    return state, dict(self._metrics[step])

  # ---- lifetime -----------------------------------------------------------

  def wait(self) -> None:
    """Blocks until every async save has been committed (renamed into place)."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases orbax's background threads."""
    self._manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()


def load_tree(directory: str | pathlib.Path, *, which: str = 'latest',
              best_metric: str = 'accuracy', best_mode: str = 'max') -> tuple[int, Any]:
  """``(step, state tree as saved)`` of another run's checkpoint, touching nothing.

  The tree comes back as orbax saved it (nested dicts and lists of arrays,
  whatever the optimizer was), so no abstract state is needed.

  Args:
    directory: a ``Checkpointer`` directory.
    which: ``'latest'`` (the newest step) or ``'best'`` (:meth:`Checkpointer.best_step`).
    best_metric, best_mode: how that run ranked its steps.
  """
  if which not in ('latest', 'best'):
    raise ValueError(f"which must be 'latest' or 'best', got {which!r}.")
  directory = pathlib.Path(directory).absolute()
  # Read-only: no tmp-folder cleanup, so a run that is still writing there keeps its save.
  manager = _open_manager(directory, max_to_keep=None, keep_best=True, best_metric=best_metric,
                          best_mode=best_mode, async_save=False, read_only=True)
  try:
    if which == 'latest':
      step = manager.latest_step()
    else:
      step = manager.best_step()
      with _quiet():
        metrics = None if step is None else manager.metrics(step)
      if metrics is None or _metric(metrics, best_metric) is None:
        step = None
    if step is None:
      raise FileNotFoundError(f'no {which} checkpoint in {directory}' +
                              (f' (no step was saved with eval {best_metric!r})'
                               if which == 'best' else '') + '.')
    with _quiet():
      try:
        restored = manager.restore(step, args=ocp.args.Composite(
            **{_STATE: ocp.args.StandardRestore()}))
      except Exception as e:  # pylint: disable=broad-except
        raise CheckpointError(f'checkpoint step {step} in {directory} is unreadable '
                              f'({_reason(e)}).') from None
  finally:
    manager.close()
  return step, restored[_STATE]
