"""``train_and_evaluate(config, workdir)``: config -> task -> data -> jitted step -> metrics.

One loop for every task and every experiment, readable top to bottom. The
task (:mod:`cnn_jax.tasks`) says what differs (data fields, augmentation,
loss, evaluation, the headline metric that picks the best checkpoint); the
loop owns the rest. Keys come from
``(seed, step)`` and the data order from ``(seed, epoch)``, so the state of a
run is fully described by ``TrainState`` and the step number: rerunning the
same command resumes from the last checkpoint in ``workdir`` and ends with
bit-identical parameters, as if it had never stopped.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import pathlib
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax import models, tasks
from cnn_jax.data import pipeline
from cnn_jax.data.build import open_stream_source
from cnn_jax.dtypes import compute_dtype
from cnn_jax.ops.compose import count_params
from cnn_jax.tasks.base import Task
from cnn_jax.train import config as config_lib
from cnn_jax.train import cpu_library, optim, transfer
from cnn_jax.train import seeds as seeds_lib
from cnn_jax.train.checkpoint import Checkpointer
from cnn_jax.train.logging import MetricWriter, plot_metrics, truncate_metrics
from cnn_jax.train.parallel import (DataParallel, check_divisible, host_value,
                                    initialize_distributed)
from cnn_jax.train.state import TrainState, create_train_state
from cnn_jax.train.step import evaluate, evaluate_seeds, make_eval_step, make_train_step


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or Inf."""


class Preempted(RuntimeError):
  """SIGTERM arrived; a checkpoint was saved and the same command resumes."""


def build_model(config: ml_collections.ConfigDict, task_kwargs: dict[str, Any],
                axis_name: str | None = None):
  """The model of ``config.model`` with the task's data-derived arguments (num_classes)."""
  kwargs = {**task_kwargs, **config.model.kwargs.to_dict()}
  if axis_name is not None:  # pmap: BatchNorm must average its statistics over devices
    if 'axis_name' not in models.model_fields(config.model.name):
      raise ValueError(f'model {config.model.name!r} cannot sync BatchNorm under pmap; use '
                       "--config.parallel=jit.")
    kwargs['axis_name'] = axis_name
  return models.get_model(config.model.name, conv_impl=config.model.conv_impl,
                          dtype=compute_dtype(config.dtype), **kwargs)


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  if config.num_steps > 0:
    return int(config.num_steps)
  return max(1, math.ceil(config.num_epochs * steps_per_epoch))


@dataclasses.dataclass
class Data:
  """What the loop needs from the input side, for in-memory and streamed data alike."""
  train: Any                        # .batch(step) -> dict, .steps_per_epoch
  eval_batches: Callable[[], Any]   # a fresh pass over the eval split
  num_classes: int
  input_shape: tuple[int, ...]      # one raw example: (H, W, C) image, (L,) token ids
  num_train: int
  num_eval: int
  input_dtype: Any = np.uint8       # its dtype in the batch (before task.preprocess)


def build_data(config: ml_collections.ConfigDict, task: Task) -> Data:
  d = config.data
  if d.streaming:
    if not task.streaming:
      raise ValueError(f'task {task.name!r} trains from memory; set '
                       '--config.data.streaming=False.')
    train_src = open_stream_source(d, d.train_split)
    eval_src = open_stream_source(d, d.eval_split)
    threads = d.num_workers or 8
    return Data(
        train=pipeline.StreamTrainData(train_src, config.batch_size, config.seed,
                                       num_threads=threads, process_index=jax.process_index(),
                                       process_count=jax.process_count()),
        eval_batches=lambda: pipeline.stream_eval_batches(eval_src, config.eval_batch_size,
                                                          num_threads=threads),
        num_classes=train_src.num_classes, input_shape=(d.image_size, d.image_size, d.channels),
        num_train=len(train_src), num_eval=len(eval_src))
  train_ds, eval_ds = task.load_data()
  missing = [f for f in task.fields
             if f not in (train_ds.input_field, 'label', *train_ds.extras)]
  if missing:
    raise ValueError(f'task {task.name!r} needs batch fields {missing} that data.name='
                     f'{d.name!r} does not give.')
  eval_arrays = jax.device_put(pipeline.batch_fields(eval_ds))
  return Data(
      train=pipeline.InMemoryTrainData(train_ds, config.batch_size, config.seed,
                                       sampler=task.sampler(train_ds),
                                       num_seeds=config.num_seeds),
      eval_batches=lambda: pipeline.eval_batches(eval_ds, config.eval_batch_size,
                                                 device_arrays=eval_arrays),
      num_classes=train_ds.num_classes, input_shape=tuple(train_ds.images.shape[1:]),
      num_train=len(train_ds), num_eval=len(eval_ds), input_dtype=train_ds.images.dtype)


def model_input_spec(task: Task, data: Data, mean, std) -> jax.ShapeDtypeStruct:
  """Shape and dtype of the model's input for one example: ``task.preprocess`` of the raw one.

  (1, H, W, C) float32 for images; (1, L) int32 for token ids (a text task's
  ``preprocess`` is the identity). Traced abstractly, nothing is computed.
  """
  raw = jax.ShapeDtypeStruct((1, *data.input_shape), data.input_dtype)
  field = task.input_field
  return jax.eval_shape(lambda x: task.preprocess({field: x}, mean, std)[field], raw)


class _SigtermFlag:
  """Turns SIGTERM into a flag the loop checks between steps (main thread only).

  With several processes the decision to stop must be collective (the
  checkpoint is): :meth:`stop_now` all-gathers the flags every ``sync_every``
  steps, the same steps on every process, and stops all of them when any one
  was signalled. A single process checks its own flag every step.
  """

  def __init__(self, sync_every: int = 1):
    self.raised = False
    self.sync_every = max(1, sync_every)
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    self.raised = True

  def stop_now(self, step: int) -> bool:
    if jax.process_count() == 1:
      return self.raised
    if step % self.sync_every:
      return False
    from jax.experimental import multihost_utils
    flags = multihost_utils.process_allgather(np.int32(self.raised))
    return bool(np.any(flags))

  def restore(self):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


def _finite_per_seed(tree, num_seeds: int) -> np.ndarray:
  """(num_seeds,) bools: whether every float leaf of a seed's slice of ``tree`` is finite.

  With ``num_seeds == 1`` the tree has no seed axis and the result is (1,).
  Checked in numpy on the host copy, not compiled: XLA:CPU compiles one kernel
  per leaf, and for a state of a few hundred leaves that took longer than the
  check itself ever does (1.4 s for FCN-8s, 5.9 s for ResNet-50, 2-core Xeon),
  while the checkpoint that follows copies the state to the host anyway.
  """
  finite = np.ones(num_seeds, bool)
  for x in jax.tree.leaves(tree):
    if jnp.issubdtype(x.dtype, jnp.floating):
      finite &= np.isfinite(host_value(x).reshape(num_seeds, -1)).all(axis=1)
  return finite


def _check_finite(losses: np.ndarray, first_step: int, seeds: Sequence[int] = ()) -> None:
  """``losses``: (steps,), or (steps, K) when ``seeds`` (K of them) train together."""
  losses = np.asarray(losses).reshape(len(losses), -1)
  bad = np.argwhere(~np.isfinite(losses))
  if bad.size:
    row, k = bad[0]
    where = f' (seed {seeds[k]})' if len(seeds) > 1 else ''
    raise NonFiniteLossError(
        f'loss became {losses[row, k]} at step {first_step + int(row)}{where}; lower '
        'optimizer.lr, add optimizer.grad_clip_norm, or check the data.')


def _train_rows(stacked: dict, *, steps: int, batch_size: int, elapsed: float, epoch: float,
                num_seeds: int) -> tuple[dict, list[dict]]:
  """The log rows of a window of train steps: the run's, and each seed's when K > 1.

  ``stacked``: metric -> (steps,) or (steps, K). A seed's row averages its own
  steps; the run's row averages the seeds, and its img/s counts every seed's images.
  """
  def row(m: dict, images: float) -> dict:
    out = {k: float(np.mean(v)) for k, v in m.items() if k != 'lr'}
    return {**out, 'lr': float(np.ravel(m['lr'])[-1]), 'img_per_sec': images / elapsed,
            'epoch': epoch}

  if num_seeds == 1:
    return row(stacked, steps * batch_size), []
  seed_rows = [row({k: np.asarray(v)[:, i] for k, v in stacked.items()}, steps * batch_size)
               for i in range(num_seeds)]
  return row(stacked, steps * batch_size * num_seeds), seed_rows


def mean_over_seeds(per_seed: list[dict]) -> dict[str, float]:
  """Each metric's mean over the seeds' dicts (one dict: itself)."""
  if len(per_seed) == 1:
    return per_seed[0]
  return {k: float(np.mean([m[k] for m in per_seed])) for k in per_seed[0]}


def _seed_metric(name: str, seed: int) -> str:
  """The checkpoint metrics key of one seed's own value, e.g. ``'accuracy/seed3'``."""
  return f'{name}/seed{seed}'


def _init_from_run(state: TrainState, tx, t: ml_collections.ConfigDict
                   ) -> tuple[TrainState, str]:
  """``state`` with the source run's weights in every module but ``t.exclude``."""
  source = transfer.load_variables(t.init_from, which=t.init_which)
  params, copied = transfer.transplant(jax.device_get(state.params), source['params'],
                                       t.exclude)
  batch_stats, _ = transfer.transplant(jax.device_get(state.batch_stats),
                                       source['batch_stats'], t.exclude, what='batch_stats')
  # device_put, not a jnp.asarray per leaf (a compiled program per shape); one jitted init.
  params, batch_stats = jax.device_put((params, batch_stats))
  state = state.replace(params=params, batch_stats=batch_stats, opt_state=jax.jit(tx.init)(params))
  new = [name for name in params if name not in copied]
  return state, (f'initialised from {t.init_from} ({len(copied)} modules; new: '
                 f'{", ".join(new) or "none"}; frozen: {", ".join(t.freeze) or "none"})')


def prepare_workdir(workdir: str | pathlib.Path, config: ml_collections.ConfigDict
                    ) -> pathlib.Path:
  """Creates ``workdir`` or checks that it can hold this run; never deletes anything.

  Raises:
    ValueError: one line when ``workdir`` is a file, cannot be written, or holds a
      run of another task or model (its ``config.json`` says which).
  """
  workdir = pathlib.Path(workdir)
  if workdir.exists() and not workdir.is_dir():
    raise ValueError(f'--workdir {workdir} exists and is not a folder; pass a new folder.')
  try:
    workdir.mkdir(parents=True, exist_ok=True)
    probe = workdir / f'.write-test-{os.getpid()}'
    probe.write_text('')
    probe.unlink()
  except OSError as e:
    raise ValueError(f'--workdir {workdir} is not writable ({e.strerror or e}); choose a '
                     'folder you can write to.') from None
  previous = workdir / 'config.json'
  if previous.exists():
    try:
      old = json.loads(previous.read_text())
    except (OSError, ValueError):
      old = None
    if not isinstance(old, dict):
      raise ValueError(f'--workdir {workdir} has an unreadable config.json; it is not a run '
                       'this command can resume: use a new --workdir.')
    mine = {'task': config.task.name, 'model': config.model.name,
            'model.kwargs': config.model.kwargs.to_dict()}
    theirs = {'task': old.get('task', {}).get('name', 'classification'),
              'model': old.get('model', {}).get('name'),
              'model.kwargs': old.get('model', {}).get('kwargs', {})}
    differ = [k for k in mine if json.dumps(mine[k], sort_keys=True, default=list) !=
              json.dumps(theirs[k], sort_keys=True, default=list)]
    if differ:
      k = differ[0]
      raise ValueError(f'--workdir {workdir} holds a run of {k} {theirs[k]!r}, not '
                       f'{mine[k]!r}; use a new --workdir (nothing was changed in it).')
  return workdir


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       quiet: bool = False) -> dict[str, Any]:
  """Trains ``config`` in ``workdir``; returns the final train and eval metrics.

  Writes ``config.json``, ``metrics.jsonl``, TensorBoard events under
  ``tensorboard/``, ``metrics.png`` and orbax checkpoints under
  ``checkpoints/<step>`` (every ``checkpoint_every`` steps, at every
  evaluation with its metrics, and at the end; the newest ``keep_checkpoints``
  and the best by the task's headline metric are kept). If ``workdir``
  already holds a checkpoint, training resumes from the newest readable one.

  Raises:
    NonFiniteLossError: the loss became NaN/Inf (the last good checkpoint stays).
    Preempted: SIGTERM arrived; a checkpoint of the current step was saved.
    ValueError: bad config or workdir, or a checkpoint that does not match the config.
  """
  config_lib.validate(config)
  task = tasks.get_task(config)
  initialize_distributed(**config.distributed.to_dict())
  cpu_library.check_processes(config.xla_cpu_ynnpack)
  if config.num_devices > jax.device_count():
    raise ValueError(f'num_devices={config.num_devices} but only {jax.device_count()} '
                     'devices exist; use 0 for all.')
  num_seeds = config.num_seeds
  seeds = list(range(config.seed, config.seed + num_seeds))
  dp = DataParallel(config.parallel,
                    jax.devices()[:config.num_devices] if config.num_devices else None,
                    num_seeds=num_seeds)
  check_divisible(config.batch_size, dp.num_devices, 'batch_size')
  check_divisible(config.eval_batch_size, dp.num_devices, 'eval_batch_size')
  is_main = jax.process_index() == 0
  workdir = prepare_workdir(workdir, config)

  data = build_data(config, task)
  train_data = data.train
  num_steps = total_steps(config, train_data.steps_per_epoch)

  model = build_model(config, task.model_kwargs(data.num_classes), axis_name=dp.axis_name)
  schedule = optim.make_schedule(config, num_steps)
  is_frozen = transfer.frozen_predicate(config.transfer.freeze, config.transfer.exclude)
  tx = transfer.freeze_optimizer(optim.make_optimizer(config, schedule), is_frozen)
  # Seed s's keys are those of a run with config.seed = s; trained together, each
  # function of the state below is vmapped over a leading (num_seeds,) axis.
  seed_keys = [jax.random.split(jax.random.key(s)) for s in seeds]
  init_key, step_key = (seed_keys[0][i] if num_seeds == 1 else
                        jnp.stack([k[i] for k in seed_keys]) for i in (0, 1))
  per_seed = functools.partial(seeds_lib.over_seeds, num_seeds=num_seeds,
                               mode=config.seeds_mode)
  fold_key = jax.jit(per_seed(jax.random.fold_in, in_axes=(0, None)))
  mean, std = tuple(config.data.mean), tuple(config.data.std)
  spec = model_input_spec(task, data, mean, std)
  input_shape = spec.shape
  try:
    state = jax.jit(per_seed(
        lambda k: create_train_state(model, tx, k, input_shape, spec.dtype)))(init_key)
  except (TypeError, ValueError, ZeroDivisionError, IndexError) as e:
    # e.g. --config.model.kwargs.widths=abc: say which setting, not where it broke.
    raise ValueError(
        f'model {config.model.name!r} cannot be built with model.kwargs='
        f'{config.model.kwargs.to_dict()} on input {input_shape}: {type(e).__name__}: '
        f'{str(e).splitlines()[0] if str(e) else ""}; fix --config.model.kwargs.') from e
  transfer.check_patterns(state.params, config.transfer.freeze, 'transfer.freeze')
  if config.transfer.init_from:  # exclude only means something when copying a run
    transfer.check_patterns(state.params, config.transfer.exclude, 'transfer.exclude')

  ckpt = Checkpointer(workdir / 'checkpoints', save_every=config.checkpoint_every,
                      max_to_keep=config.keep_checkpoints, keep_best=config.keep_best,
                      best_metric=task.headline, best_mode=task.headline_mode,
                      also_best=[_seed_metric(task.headline, s) for s in seeds] if num_seeds > 1
                      else ())
  # Seeds trained together: each one's rows (and plot, TensorBoard) in a folder of its own.
  seed_dirs = [workdir / 'seeds' / str(s) for s in seeds] if num_seeds > 1 else []
  writer, seed_writers = None, []
  try:
    start, init_note, resume_note = 0, '', ''
    if ckpt.latest_step() is not None:
      state, data_state = ckpt.restore(dp.abstract_state(state))
      resume_note = ckpt.restore_warning or ''
      start = int(np.ravel(state.step)[0])  # (num_seeds,) equal steps when seeds train together
      if data_state and hasattr(train_data, 'restore'):
        train_data.restore(data_state)
      if is_main:  # rows past the checkpoint will be written again
        for d in [workdir, *seed_dirs]:
          truncate_metrics(d / 'metrics.jsonl', start)
    elif config.transfer.init_from:
      state, init_note = _init_from_run(state, tx, config.transfer)
    if is_main:  # only now: a config that does not match the checkpoint must not overwrite it
      (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2) + '\n')
    state = dp.put_state(state)

    def run_eval(state) -> list[dict]:
      """Each seed's eval metrics (one dict without seeds trained together)."""
      batches = map(dp.put_batch, data.eval_batches())
      if num_seeds == 1:
        return [evaluate(eval_step, state, batches, task)]
      return evaluate_seeds(eval_step, state, batches, task, num_seeds)

    def write_eval(step, evals: list[dict]) -> tuple[dict, dict]:
      """Writes the eval rows; returns the run's (the mean over seeds) and the checkpoint's."""
      for w, m in zip(seed_writers, evals):
        w.write(step, 'eval', m)
      row = writer.write(step, 'eval', mean_over_seeds(evals))
      if num_seeds == 1:
        return row, row
      return row, {**row, **{_seed_metric(k, s): float(v)
                             for s, m in zip(seeds, evals) for k, v in m.items()}}

    def save(step, state, metrics=None, force=False):
      # Never checkpoint a state that has diverged: the loss of the last step
      # can still be finite when its update already was not.
      if window:
        _check_finite(np.asarray(jax.device_get([m['loss'] for m in window])),
                      window_start + 1, seeds)
      one = dp.get_state(state)
      finite = _finite_per_seed(one, num_seeds)
      if not finite.all():
        where = f' (seed {seeds[int(np.argmin(finite))]})' if num_seeds > 1 else ''
        raise NonFiniteLossError(
            f'parameters became non-finite at step {step}{where}; lower optimizer.lr, add '
            'optimizer.grad_clip_norm, or check the data.')
      data_state = train_data.state() if hasattr(train_data, 'state') else None
      ckpt.save(step, one, data_state=data_state, metrics=metrics, force=force)

    writer = MetricWriter(workdir, total_steps=num_steps, initial_step=start, quiet=quiet,
                          enabled=is_main)
    seed_writers = [MetricWriter(d, total_steps=num_steps, initial_step=start, quiet=True,
                                 enabled=is_main) for d in seed_dirs]
    if resume_note:
      writer.message(f'warning: {resume_note}')
    n_params = count_params(dp.get_state(state).params) // num_seeds
    writer.message(f'{config.model.name} ({task.name}): {n_params:,} params; '
                   f'{data.num_train} train / {data.num_eval} eval examples; {num_steps} steps '
                   f'of {config.batch_size} on {dp.num_devices} device(s) ({config.parallel})' +
                   (f'; seeds {seeds[0]}..{seeds[-1]} trained together' if num_seeds > 1
                    else '') +
                   (f'; resumed at step {start}' if start else '') +
                   (f'; {init_note}' if init_note else ''))
    # With xla_cpu_ynnpack=auto the train step is chosen at its first call, and the
    # eval step, built at its first call, follows that choice.
    library = cpu_library.Library(config.xla_cpu_ynnpack, workdir / cpu_library.RECORD,
                                  note=writer.message, resumed=start > 0)
    train_fn = per_seed(make_train_step(model, task, tx, schedule, mean=mean, std=std,
                                        axis_name=dp.axis_name, is_frozen=is_frozen))
    train_step = library.train(lambda options: dp.compile_train(train_fn, options))
    eval_fn = per_seed(make_eval_step(model, task, mean=mean, std=std, axis_name=dp.axis_name),
                       in_axes=(0, None))
    eval_step = library.eval(lambda options: dp.compile_eval(eval_fn, options))
    last_train: dict[str, float] = {}
    seed_train: list[dict] = [{} for _ in seed_dirs]
    eval_metrics: dict[str, Any] = {}
    seed_evals: list[dict] = []
    window: list[dict] = []
    window_start, t_window = start, time.perf_counter()
    compile_s = None
    sigterm = _SigtermFlag(sync_every=min(config.log_every, config.checkpoint_every or 10**9))
    try:
      for step in range(start, num_steps):
        batch = dp.put_batch(train_data.batch(step), local=train_data.process_local, train=True)
        state, metrics = train_step(state, batch, fold_key(step_key, step))
        window.append(metrics)
        done = step + 1
        if compile_s is None:  # the first call traces and compiles
          jax.block_until_ready(metrics)
          compile_s = time.perf_counter() - t_window
          _check_finite(np.asarray(metrics['loss']).reshape(1, -1), done, seeds)
          window_start, t_window, window = done, time.perf_counter(), []
        elif done % config.log_every == 0 or done == num_steps:
          stacked = jax.device_get(jax.tree.map(lambda *xs: jnp.stack(xs), *window))
          elapsed = time.perf_counter() - t_window
          _check_finite(np.asarray(stacked['loss']), window_start + 1, seeds)
          row, seed_rows = _train_rows(stacked, steps=len(window), batch_size=config.batch_size,
                                       elapsed=elapsed, epoch=done / train_data.steps_per_epoch,
                                       num_seeds=num_seeds)
          last_train = writer.write(done, 'train', row)
          seed_train = [w.write(done, 'train', r) for w, r in zip(seed_writers, seed_rows)]
          writer.progress(done, loss=row['loss'], img_s=row['img_per_sec'],
                          **({task.progress: row[task.progress]} if task.progress in row
                             else {}))
          window_start, t_window, window = done, time.perf_counter(), []
        if done == num_steps:
          break  # the final evaluation and checkpoint follow the loop
        # Evaluate before checkpointing: every row up to a checkpoint is then in the
        # file, and a resume rewrites exactly the rows after it.
        metrics_now = None
        if config.eval_every and done % config.eval_every == 0:
          seed_evals = run_eval(state)
          eval_metrics, metrics_now = write_eval(done, seed_evals)
          writer.message(f'step {done}: eval {task.summary(eval_metrics)}' +
                         (f' (mean of {num_seeds} seeds)' if num_seeds > 1 else ''))
          t_window = time.perf_counter()  # keep eval time out of img/s
        stop = sigterm.stop_now(done)
        if ckpt.should_save(done) or stop or metrics_now is not None:
          save(done, state, metrics=metrics_now, force=stop)
        if stop:
          ckpt.wait()
          raise Preempted(f'stopped by SIGTERM after step {done}; checkpoint saved in '
                          f'{workdir}; rerun the same command to resume.')
      seed_evals = run_eval(state)
      if start < num_steps or ckpt.latest_step() != num_steps:
        eval_metrics, final_metrics = write_eval(num_steps, seed_evals)
        save(num_steps, state, metrics=final_metrics, force=True)
      else:  # resumed a finished run: report its final evaluation again
        eval_metrics = mean_over_seeds(seed_evals)
      ckpt.wait()
    finally:
      sigterm.restore()
  finally:
    if writer is not None:
      writer.close()
    for w in seed_writers:
      w.close()
    ckpt.close()
  if is_main:
    for d in [workdir, *seed_dirs]:
      plot_metrics(d / 'metrics.jsonl', d / 'metrics.png',
                   keys=('loss', task.progress, task.headline))
  result = {'steps': num_steps, 'train': last_train, 'eval': eval_metrics,
            'summary': task.summary(eval_metrics), 'headline': task.headline,
            'best_step': ckpt.best_step(), 'compile_s': compile_s or 0.0,
            'num_params': n_params, 'resumed_from': start, 'state': dp.get_state(state)}
  if num_seeds > 1:  # 'state' holds every seed: leaves (num_seeds, ...)
    result['seeds'] = [
        {'seed': s, 'workdir': str(d), 'train': t, 'eval': e, 'summary': task.summary(e),
         'best_step': ckpt.best_step(_seed_metric(task.headline, s))}
        for s, d, t, e in zip(seeds, seed_dirs, seed_train, seed_evals)]
  return result
