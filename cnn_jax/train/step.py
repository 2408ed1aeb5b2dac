"""Pure train and eval steps: ``train_step(state, batch, rng) -> (state, metrics)``.

Both steps take the raw uint8 batch and do normalisation and augmentation
inside the compiled program, on device. A batch is a dict:

  image: (B, H, W, C) uint8
  label: (B,) int32
  mask:  (B,) bool, eval only: False marks padding rows of the last batch

The same functions serve one device and data parallel runs: with sharded
inputs under ``jit`` XLA inserts the gradient all-reduce, and under ``pmap``
``axis_name`` makes gradients and BatchNorm statistics global.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import optax
from jax import lax

from cnn_jax.data import augment as augment_lib
from cnn_jax.ops import losses, metrics as metrics_lib
from cnn_jax.train import transfer
from cnn_jax.train.state import TrainState

# torchvision's weighting of GoogLeNet's two auxiliary classifier losses.
AUX_LOSS_WEIGHT = 0.3


def preprocess(batch: dict, mean: Sequence[float], std: Sequence[float],
               dtype=jnp.float32) -> jax.Array:
  """uint8 images -> normalised float (B, H, W, C) in the compute dtype."""
  return augment_lib.normalize(batch['image'], mean, std).astype(dtype)


def make_train_step(model, tx: optax.GradientTransformation, schedule: optax.Schedule, *,
                    mean: Sequence[float], std: Sequence[float], label_smoothing: float = 0.0,
                    augment: dict | None = None, axis_name: str | None = None,
                    is_frozen: transfer.Predicate | None = None
                    ) -> Callable[[TrainState, dict, jax.Array], tuple[TrainState, dict]]:
  """Builds the pure train step for ``model`` (any cnn_jax Linen classifier).

  Args:
    model: Linen module ``(x, train) -> logits``; its ``dtype`` is the compute dtype.
    tx: the optax optimizer; ``schedule`` its learning rate (logged).
    mean, std: per-channel normalisation of ``image / 255``.
    label_smoothing: for the softmax cross entropy.
    augment: keyword arguments of :func:`cnn_jax.data.augment.augment_batch`
      (crop_padding, flip, rotation, shift, zoom, shear); None or {} for none.
    axis_name: set under ``pmap`` to average gradients and metrics over devices.
    is_frozen: top-level module name -> frozen? (:mod:`cnn_jax.train.transfer`):
      frozen modules get no gradient, no update and run with ``train=False``.
      Pair it with ``transfer.freeze_optimizer(tx, is_frozen)``.

  Returns:
    ``train_step(state, batch, rng) -> (new_state, metrics)`` with metrics
    ``loss``, ``accuracy``, ``grad_norm``, ``lr`` (scalars, device arrays).
  """
  augment = dict(augment or {})

  def loss_fn(params, batch_stats, x, labels, rng):
    if is_frozen is not None:
      params = transfer.stop_frozen_gradients(params, is_frozen)
    with transfer.frozen_in_eval_mode(is_frozen):
      logits, mutated = model.apply(
          {'params': params, 'batch_stats': batch_stats}, x, train=True,
          mutable=['batch_stats', 'aux_logits'], rngs={'dropout': rng})
    loss = losses.softmax_cross_entropy(logits, labels, label_smoothing=label_smoothing)
    for (aux,) in mutated.get('aux_logits', {}).values():
      loss = loss + AUX_LOSS_WEIGHT * losses.softmax_cross_entropy(
          aux, labels, label_smoothing=label_smoothing)
    return loss, (logits, mutated.get('batch_stats', {}))

  def train_step(state: TrainState, batch: dict, rng: jax.Array):
    if axis_name:  # every device gets the same key: make each one's examples differ
      rng = jax.random.fold_in(rng, lax.axis_index(axis_name))
    aug_rng, drop_rng = jax.random.split(rng)
    x = preprocess(batch, mean, std)
    if augment:
      x = augment_lib.augment_batch(aug_rng, x, **augment)
    (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state.params, state.batch_stats, x, batch['label'], drop_rng)
    if axis_name:
      grads = lax.pmean(grads, axis_name)
    # optax mixes its int32 step count with float hyper-parameters, which
    # jax_numpy_dtype_promotion='strict' would reject; our own code is strict-clean.
    with jax.numpy_dtype_promotion('standard'):
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      lr = schedule(state.step)
    params = optax.apply_updates(state.params, updates)
    if is_frozen is not None:  # exact: adding a zero update could still flip -0.0
      params = transfer.keep_frozen(state.params, params, is_frozen)
    metrics = {
        'loss': loss,
        'accuracy': metrics_lib.accuracy(logits, batch['label']),
        'grad_norm': optax.tree.norm(grads),
    }
    if axis_name:
      metrics = lax.pmean(metrics, axis_name)
    metrics['lr'] = jnp.asarray(lr, jnp.float32)
    new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                              opt_state=opt_state)
    return new_state, metrics

  return train_step


def make_eval_step(model, *, mean: Sequence[float], std: Sequence[float],
                   axis_name: str | None = None) -> Callable[[TrainState, dict], dict]:
  """``eval_step(state, batch) -> sums`` of loss, correct and count over real rows.

  Sums (not means) so that batches, including a padded last one, add up to
  exact dataset metrics: ``accuracy = correct / count``.
  """

  def eval_step(state: TrainState, batch: dict) -> dict:
    x = preprocess(batch, mean, std)
    logits = model.apply({'params': state.params, 'batch_stats': state.batch_stats}, x,
                         train=False)
    mask = batch['mask']
    per_example = losses.softmax_cross_entropy(logits, batch['label'], reduction='none')
    correct = jnp.argmax(logits, -1) == batch['label']
    sums = {
        'loss_sum': jnp.sum(jnp.where(mask, per_example, 0.0)),
        'correct': jnp.sum(correct & mask, dtype=jnp.int32),
        'count': jnp.sum(mask, dtype=jnp.int32),
    }
    return lax.psum(sums, axis_name) if axis_name else sums

  return eval_step


def summarize_eval(sums: dict) -> dict[str, float]:
  """Host-side: turns accumulated eval sums into loss and accuracy."""
  count = max(int(sums['count']), 1)
  return {'loss': float(sums['loss_sum']) / count,
          'accuracy': float(sums['correct']) / count,
          'count': int(sums['count'])}


def add_sums(a: dict | None, b: dict) -> dict:
  return b if a is None else jax.tree.map(jnp.add, a, b)

