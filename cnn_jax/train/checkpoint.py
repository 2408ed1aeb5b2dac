"""Checkpoints of a ``TrainState`` (plus a small JSON data-iterator state) on orbax.

Two orbax ``CheckpointManager``\\ s under one directory::

  <directory>/latest/<step>/   the last ``max_to_keep`` periodic saves
  <directory>/best/<step>/     the single best by ``best_metric`` (with its metrics)

Each step folder holds two items: ``state`` (the ``TrainState`` pytree, saved
with ``StandardSave``) and, when given, ``data`` (``JsonSave`` of e.g. a grain
iterator state or ``{'epoch': ...}``).

Usage in a training loop::

  ckpt = Checkpointer(workdir / 'checkpoints', save_every=1000)
  if ckpt.latest_step() is not None:
    state, data_state = ckpt.restore(jax.eval_shape(lambda: state))
  for step in ...:
    ckpt.save(step, state, data_state=data.state())  # no-op unless step % save_every == 0
  ckpt.save(num_steps, state, force=True)
  ckpt.close()

Crash safety comes from orbax: a step is written to ``<step>.orbax-checkpoint-tmp*``
and renamed when complete, so a process killed mid-save leaves the previous
checkpoints intact and the half-written folder is never listed (and is removed
by the next ``Checkpointer`` on the directory).

Multi-host: every process must call ``save`` / ``save_best`` / ``restore`` with
the same arguments; orbax synchronises them and only the primary writes
metadata. Do not guard the calls with ``jax.process_index() == 0``.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

_STATE = 'state'
_DATA = 'data'


def _key_name(entry: Any) -> str:
  """One path element as text, the same for a dict key, attribute or index.

  Orbax stores custom nodes (``TrainState``, optax namedtuples) as dicts and
  lists, so ``opt_state[0].trace`` in the live tree is ``opt_state/0/trace`` in
  the checkpoint; naming both the same way lets the two trees be compared.
  """
  for attr in ('key', 'name', 'idx'):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)


def _leaf_path(path: tuple[Any, ...]) -> str:
  return '/'.join(_key_name(k) for k in path)


def _flatten(tree: Any) -> dict[str, Any]:
  """``{'params/conv1/kernel': leaf}`` in the tree's own leaf order."""
  return {_leaf_path(p): x for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


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
  return {str(k): float(v) for k, v in metrics.items()}


class Checkpointer:
  """Periodic, best-so-far and restore of a ``TrainState`` under one directory.

  Args:
    directory: root folder; ``latest/`` and ``best/`` are created below it.
    save_every: ``save`` writes only at steps that are multiples of this (or
      with ``force=True``).
    max_to_keep: how many periodic checkpoints ``latest/`` keeps (the newest).
    keep_best: whether ``save_best`` keeps a best-by-metric checkpoint.
    best_metric: the key of the metrics dict given to ``save_best``.
    best_mode: ``'max'`` (e.g. accuracy) or ``'min'`` (e.g. loss).
    async_save: write in a background thread; ``save`` returns once the arrays
      are copied off the device (so donating the state afterwards is safe).
  """

  def __init__(self, directory: str | pathlib.Path, *, save_every: int, max_to_keep: int = 3,
               keep_best: bool = True, best_metric: str = 'accuracy', best_mode: str = 'max',
               async_save: bool = True):
    if save_every < 1:
      raise ValueError(f'save_every must be a positive number of steps, got {save_every}.')
    if max_to_keep < 1:
      raise ValueError(f'max_to_keep must be at least 1, got {max_to_keep}.')
    if best_mode not in ('max', 'min'):
      raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}.")
    self.directory = pathlib.Path(directory).absolute()
    self.save_every = save_every
    self.keep_best = keep_best
    self.best_metric = best_metric
    self.best_mode = best_mode
    # Our own cadence decides when to save (orbax gets force=True), so orbax's
    # save_interval_steps stays at its default of 1.
    self._latest = self._manager(
        self.directory / 'latest',
        ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                     cleanup_tmp_directories=True,
                                     enable_async_checkpointing=async_save))
    self._best = None
    self._best_value: float | None = None
    if keep_best:
      # best_fn makes orbax write each step's metrics next to it, which is how
      # the best value so far survives a restart. A checkpoint from a run that
      # tracked another metric ranks last, so the next best replaces it.
      worst = -math.inf if best_mode == 'max' else math.inf
      self._best = self._manager(
          self.directory / 'best',
          ocp.CheckpointManagerOptions(max_to_keep=1, create=True, cleanup_tmp_directories=True,
                                       best_fn=lambda m: m.get(best_metric, worst),
                                       best_mode=best_mode,
                                       keep_checkpoints_without_metrics=False,
                                       enable_async_checkpointing=async_save))
      step = self._best.best_step()
      if step is not None:
        self._best_value = self._read_best_metrics(step).get(best_metric)

  @staticmethod
  def _manager(path: pathlib.Path, options: ocp.CheckpointManagerOptions) -> ocp.CheckpointManager:
    # Registering the handlers up front (rather than letting orbax infer them
    # from the first save) is what makes item metadata readable in a fresh
    # process, before anything was saved: the mismatch check needs it.
    return ocp.CheckpointManager(
        path, options=options,
        item_names=(_STATE, _DATA),
        item_handlers={_STATE: ocp.StandardCheckpointHandler(),
                       _DATA: ocp.JsonCheckpointHandler()})

  # ---- queries ------------------------------------------------------------

  def latest_step(self) -> int | None:
    """The newest periodic checkpoint, or None if there is none.

    In the process that saved it this includes an async save still being
    written (``wait()`` first for committed steps only); a new process sees
    committed steps only.
    """
    return self._latest.latest_step()

  def all_steps(self) -> list[int]:
    """Every periodic checkpoint, oldest first (see :meth:`latest_step`)."""
    return sorted(self._latest.all_steps())

  def best_step(self) -> int | None:
    """The step of the best checkpoint, or None (none yet, or ``keep_best=False``)."""
    return None if self._best is None else self._best.best_step()

  @property
  def best_value(self) -> float | None:
    """The best ``best_metric`` saved so far (read back from disk on construction)."""
    return self._best_value

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

  @staticmethod
  def _can_write(manager: ocp.CheckpointManager, step: int, *, ordered: bool) -> bool:
    """False for a step that is already saved (orbax never overwrites one).

    With ``ordered`` also for a step behind the newest one: ``latest_step``
    must stay the point to resume from.
    """
    steps = manager.all_steps()
    if step in steps or (ordered and steps and step < max(steps)):
      logging.warning('Not checkpointing step %d in %s: it already holds steps %s.',
                      step, manager.directory, sorted(steps))
      return False
    return True

  def save(self, step: int, state: Any, *, data_state: dict | None = None,
           force: bool = False) -> bool:
    """Saves ``state`` (and ``data_state``) to ``latest/`` if ``should_save(step)`` or ``force``.

    Returns whether a save was started. With ``async_save`` the files are
    written in the background; ``wait()`` blocks until they are committed.
    """
    if not (force or self.should_save(step)):
      return False
    if not self._can_write(self._latest, step, ordered=True):
      return False
    return bool(self._latest.save(step, args=self._args(state, data_state), force=True))

  def _improves(self, value: float) -> bool:
    if math.isnan(value):
      return False
    if self._best_value is None:
      return True
    return value > self._best_value if self.best_mode == 'max' else value < self._best_value

  def save_best(self, step: int, state: Any, metrics: dict[str, float]) -> bool:
    """Saves ``state`` to ``best/`` (replacing the old one) if ``metrics`` beat the best so far.

    Returns whether a save was started.
    """
    if self._best is None:
      return False
    if self.best_metric not in metrics:
      raise KeyError(f'save_best needs metrics[{self.best_metric!r}] but got keys '
                     f'{sorted(metrics)}; pass the eval metrics or change best_metric.')
    metrics = _metrics_to_json(metrics)
    value = metrics[self.best_metric]
    if not self._improves(value) or not self._can_write(self._best, step, ordered=False):
      return False
    saved = bool(self._best.save(step, args=self._args(state, None), metrics=metrics, force=True))
    if saved:
      self._best_value = value
    return saved

  # ---- restoring ----------------------------------------------------------

  def _check_matches(self, manager: ocp.CheckpointManager, step: int, abstract_state: Any,
                     saved_tree: Any) -> None:
    """Raises ValueError at the first leaf whose shape, dtype or presence differs."""
    saved = _flatten(getattr(saved_tree, 'tree', saved_tree))
    wanted = _flatten(abstract_state)
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
      raise ValueError(f'checkpoint at {manager.directory} step {step} does not match this '
                       f'config: {problem}; use a new --workdir or the config the checkpoint '
                       'was made with.')

  def _restore(self, manager: ocp.CheckpointManager, abstract_state: Any,
               step: int | None) -> tuple[Any, dict | None]:
    steps = sorted(manager.all_steps())
    if step is None:
      if not steps:
        raise FileNotFoundError(f'no checkpoint in {manager.directory}; check latest_step() '
                                'is not None before restoring.')
      step = steps[-1]
    elif step not in steps:
      raise FileNotFoundError(f'no checkpoint for step {step} in {manager.directory}; '
                              f'available steps: {steps}.')
    metadata = manager.metadata(step)
    abstract_state = _to_abstract(abstract_state)
    self._check_matches(manager, step, abstract_state, metadata.item_metadata[_STATE])
    has_data = _DATA in (metadata.item_handlers or {})
    items = {_STATE: ocp.args.StandardRestore(abstract_state)}
    if has_data:
      items[_DATA] = ocp.args.JsonRestore()
    restored = manager.restore(step, args=ocp.args.Composite(**items))
    return restored[_STATE], (restored[_DATA] if has_data else None)

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict | None]:
    """Restores ``(state, data_state or None)`` from ``latest/`` (newest step by default).

    ``abstract_state`` is the state's pytree of ``jax.ShapeDtypeStruct`` (e.g.
    ``jax.eval_shape`` of the init) or of concrete arrays; the restored arrays
    take its shardings (the first local device where it has none). Raises
    ValueError, before reading any array, if the checkpoint's tree or shapes
    differ from it, and FileNotFoundError if there is no such checkpoint.
    """
    # An async save from this process may still be writing the step it lists.
    self._latest.wait_until_finished()
    return self._restore(self._latest, abstract_state, step)

  def restore_best(self, abstract_state: Any) -> tuple[Any, dict[str, float]]:
    """Restores ``(state, metrics)`` of the best checkpoint; see :meth:`restore`."""
    if self._best is None:
      raise FileNotFoundError('restore_best needs a Checkpointer made with keep_best=True.')
    self._best.wait_until_finished()
    step = self._best.best_step()
    if step is None:
      raise FileNotFoundError(f'no best checkpoint in {self._best.directory}; call save_best '
                              'with eval metrics first.')
    state, _ = self._restore(self._best, abstract_state, step)
    return state, self._read_best_metrics(step)

  def _read_best_metrics(self, step: int) -> dict[str, float]:
    metrics = self._best.metadata(step).metrics  # type: ignore[union-attr]
    return dict(metrics or {})

  # ---- lifetime -----------------------------------------------------------

  def wait(self) -> None:
    """Blocks until every async save has been committed (renamed into place)."""
    self._latest.wait_until_finished()
    if self._best is not None:
      self._best.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases orbax's background threads."""
    self._latest.close()
    if self._best is not None:
      self._best.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc: Any) -> None:
    self.close()
