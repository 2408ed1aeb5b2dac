"""The one pure train step and eval step, built from a task: ``step(state, batch, rng)``.

Both steps take the raw batch (uint8 images and the task's annotations) and
do normalisation and augmentation inside the compiled program, on device.
What differs between tasks (preprocessing, augmentation of annotations, loss,
eval outputs, which field the model reads) comes from the
:class:`~cnn_jax.tasks.base.Task`; everything else is here once:

  image: (B, H, W, C) uint8 (the task's ``input_field``; a text task's is
         ``tokens`` (B, L) int32); the task's fields (label, boxes, masks, ...)
  mask:  (B,) bool, eval only: False marks padding rows of the last batch

The same functions serve one device and data parallel runs: with sharded
inputs under ``jit`` XLA inserts the gradient all-reduce, and under ``pmap``
``axis_name`` makes gradients, metrics and BatchNorm statistics global.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from cnn_jax.data import augment as augment_lib
from cnn_jax.dtypes import standard_promotion
from cnn_jax.tasks.base import Task
from cnn_jax.train import transfer
from cnn_jax.train.state import TrainState

ROW_MASK = '_valid'  # the eval rows' own copy of the batch mask


def preprocess(batch: dict, mean: Sequence[float], std: Sequence[float]) -> dict:
  """The batch with uint8 images -> normalised float32 (B, H, W, C).

  What :meth:`Task.preprocess <cnn_jax.tasks.base.Task.preprocess>` does by
  default; the steps call the task's, so a task can change it.
  """
  return {**batch, 'image': augment_lib.normalize(batch['image'], mean, std)}


def example_keys(key: jax.Array, n: int, axis_name: str | None = None) -> jax.Array:
  """(n,) keys, one per example of this device's rows of the global batch.

  Under pmap each device takes its slice of the keys of the whole global batch,
  so an example's augmentation never depends on how the batch is split over
  devices (8 devices draw exactly what one device draws).
  """
  if axis_name is None:
    return jax.random.split(key, n)
  every = jax.random.split(key, n * lax.axis_size(axis_name))
  return lax.dynamic_slice_in_dim(every, lax.axis_index(axis_name) * n, n)


def make_update(model, task: Task, tx: optax.GradientTransformation, *,
                axis_name: str | None = None, is_frozen: transfer.Predicate | None = None
                ) -> Callable[..., tuple[Any, Any, Any, dict, Any]]:
  """The gradient step shared by every trainer (this module's and the speedrun's).

  Returns ``update(params, batch_stats, opt_state, batch, rng) -> (params,
  batch_stats, opt_state, metrics, grads)`` on a prepared batch (normalised,
  augmented): forward in train mode, the task's loss, gradients (averaged over
  devices under pmap), one optimizer update; ``metrics`` holds ``loss`` and the
  task's train metrics (not yet averaged over devices).

  Args:
    model: a Linen module (or :class:`~cnn_jax.models.functional.Functional`)
      ``(x, train) -> outputs``; its ``dtype`` is the compute dtype.
    task: gives the loss (see :mod:`cnn_jax.tasks.base`).
    tx: the optax optimizer.
    axis_name: set under ``pmap``.
    is_frozen: top-level module name -> frozen? (:mod:`cnn_jax.train.transfer`):
      frozen modules get no gradient, no update and run with ``train=False``.
      Pair it with ``transfer.freeze_optimizer(tx, is_frozen)``.
  """
  mutable = ['batch_stats', *task.collections]

  def loss_fn(params, batch_stats, batch, rng):
    if is_frozen is not None:
      params = transfer.stop_frozen_gradients(params, is_frozen)
    with transfer.frozen_in_eval_mode(is_frozen):
      outputs, mutated = model.apply(
          {'params': params, 'batch_stats': batch_stats}, batch[task.input_field], train=True,
          **task.model_inputs(batch, True), mutable=mutable, rngs={'dropout': rng})
    extras = {k: v for k, v in mutated.items() if k != 'batch_stats'}
    loss, metrics = task.loss(outputs, batch, extras, axis_name)
    return loss, ({'loss': loss, **metrics}, mutated.get('batch_stats', batch_stats))

  def update(params, batch_stats, opt_state, batch, rng):
    (_, (metrics, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, batch_stats, batch, rng)
    if axis_name:
      grads = lax.pmean(grads, axis_name)
    with standard_promotion():
      updates, opt_state = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    if is_frozen is not None:  # exact: adding a zero update could still flip -0.0
      new_params = transfer.keep_frozen(params, new_params, is_frozen)
    return new_params, batch_stats, opt_state, metrics, grads

  return update


def make_train_step(model, task: Task, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, *, mean: Sequence[float], std: Sequence[float],
                    axis_name: str | None = None, is_frozen: transfer.Predicate | None = None
                    ) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
  """Builds the pure train step of ``model`` on ``task``.

  Args:
    model, task, tx, axis_name, is_frozen: as for :func:`make_update`.
    schedule: the learning rate of ``tx`` (logged).
    mean, std: per-channel normalisation of ``image / 255`` (the task's ``preprocess``).

  Returns:
    ``train_step(state, batch, rng) -> (new_state, metrics)`` with metrics
    ``loss``, the task's train metrics, ``grad_norm``, ``lr`` (device scalars).
  """
  update = make_update(model, task, tx, axis_name=axis_name, is_frozen=is_frozen)

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    aug_rng, drop_rng = jax.random.split(rng)
    keys = example_keys(aug_rng, batch[task.input_field].shape[0], axis_name)
    if axis_name:  # every device gets the same key: make each one's dropout differ
      drop_rng = jax.random.fold_in(drop_rng, lax.axis_index(axis_name))
    batch = task.augment(keys, task.preprocess(batch, mean, std))
    params, batch_stats, opt_state, metrics, grads = update(
        state.params, state.batch_stats, state.opt_state, batch, drop_rng)
    metrics = {**metrics, 'grad_norm': optax.tree.norm(grads)}
    if axis_name:
      metrics = lax.pmean(metrics, axis_name)
    with standard_promotion():
      metrics['lr'] = jnp.asarray(schedule(state.step), jnp.float32)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    return new_state, metrics

  return train_step


def make_eval_step(model, task: Task, *, mean: Sequence[float], std: Sequence[float],
                   axis_name: str | None = None) -> Callable[[TrainState, dict], dict]:
  """``eval_step(state, batch) -> {'sums': ..., 'rows': ...}`` of the task's eval outputs.

  ``sums`` add up over batches (and devices) to exact dataset totals; ``rows``
  are per-example outputs, gathered over devices, that :func:`evaluate`
  concatenates (padding rows dropped) for metrics computed on the host.
  """

  def eval_step(state: TrainState, batch: dict) -> dict:
    batch = task.preprocess(batch, mean, std)
    outputs = model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                          batch[task.input_field], train=False,
                          **task.model_inputs(batch, False))
    out = task.eval_outputs(outputs, batch)
    sums = out.get('sums', {})
    rows = {**out.get('rows', {}), ROW_MASK: batch['mask']} if 'rows' in out else {}
    if axis_name:
      sums = lax.psum(sums, axis_name)
      rows = lax.all_gather(rows, axis_name, axis=0, tiled=True)
    return {'sums': sums, 'rows': rows}

  return eval_step


def collect(eval_step: Callable, state: TrainState, batches) -> tuple[dict, dict]:
  """One pass of ``eval_step`` over ``batches``: summed ``sums`` and joined real ``rows``."""
  return _accumulate(jax.device_get(eval_step(state, batch)) for batch in batches)


def _accumulate(outs) -> tuple[dict, dict]:
  """Host eval outputs of consecutive batches -> summed ``sums`` and joined real ``rows``."""
  sums, rows = None, []
  for out in outs:
    s = jax.tree.map(_widen, out['sums'])
    sums = s if sums is None else jax.tree.map(np.add, sums, s)
    if out['rows']:
      keep = np.asarray(out['rows'][ROW_MASK], bool)
      rows.append({k: np.asarray(v)[keep] for k, v in out['rows'].items() if k != ROW_MASK})
  joined = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]} if rows else {}
  return sums or {}, joined


def evaluate(eval_step: Callable, state: TrainState, batches, task: Task) -> dict:
  """The task's named metrics (host floats) of one pass over ``batches``."""
  return task.eval_metrics(*collect(eval_step, state, batches))


def evaluate_seeds(eval_step: Callable, state: TrainState, batches, task: Task,
                   num_seeds: int) -> list[dict]:
  """Each seed's metrics of one pass: ``eval_step`` is vmapped over the seeds of ``state``.

  Its outputs carry a leading (num_seeds,) axis; every batch is run once for all seeds.
  """
  outs = [jax.device_get(eval_step(state, batch)) for batch in batches]
  return [task.eval_metrics(*_accumulate(jax.tree.map(lambda x, k=k: x[k], out) for out in outs))
          for k in range(num_seeds)]


def _widen(x) -> np.ndarray:
  """int64 / float64, so sums over a large split neither overflow nor round."""
  x = np.asarray(x)
  return x.astype(np.int64 if np.issubdtype(x.dtype, np.integer) else np.float64)
