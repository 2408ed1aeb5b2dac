"""The task interface: what differs between kinds of training, and nothing else.

A task is one class in one file. The training loop (:mod:`cnn_jax.train.loop`)
owns everything else once, for every task: resume, data parallelism,
multi-host, checkpoints, the NaN guard, logging and the progress bar.

What a task says::

  name, headline ('mAP50'), headline_mode   what checkpoints' best is chosen by
  input_field ('image')        the batch field the model is called on ('tokens': text)
  defaults()                   its keys of the config's ``task`` section
  load_data() -> (train, eval) ArrayDatasets; extras are batch fields
  sampler(train)               optional (seed, step) -> indices (P x K identity batches)
  model_kwargs(num_classes)    what the model needs to know of the data
  model_inputs(batch, train)   extra keyword arguments of the model's call (targets)
  preprocess(batch, mean, std) on device: raw input -> model input (uint8 -> normalised float)
  augment(keys, batch)         on device, one key per example; moves annotations too
  flip_fields()                what a flip mirrors: {'image': mirror, 'boxes': ...}
  loss(outputs, batch, extras, axis_name) -> (loss, metrics)
  eval_outputs(outputs, batch) -> {'sums': {...}, 'rows': {...}}  on device
  eval_metrics(sums, rows) -> {'mAP50': ...}                        on host

``preprocess``, ``augment``, ``loss`` and ``eval_outputs`` run inside the
compiled steps; after ``preprocess`` ``batch['image']`` is normalised float
(a text task's ``batch['tokens']`` stays int32 token ids). An eval batch's
``mask`` marks its real rows (the last batch is padded): ``sums`` must skip
padding themselves, ``rows`` are filtered by the loop. Under ``pmap``
(``axis_name`` set) sums are ``psum``\\ ed and rows gathered by the loop; a
loss over the whole batch (triplet mining, a mean over valid pixels) uses
:func:`gather_batch` / :func:`global_mean` so that it equals one device's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax import lax

from cnn_jax.data import augment as augment_lib
from cnn_jax.data import box_augment
from cnn_jax.data.annotations import IGNORE
from cnn_jax.data.build import load_split
from cnn_jax.data.dataset import ArrayDataset, holdout_split

Batch = dict[str, jax.Array]


class Task:
  """Base class of every task; subclasses override what differs.

  Attributes:
    name: the registry name (``config.task.name``).
    headline: the eval metric that picks ``best`` checkpoints.
    headline_mode: 'max' or 'min'.
    fields: batch fields the task reads (checked against the data).
    collections: Linen collections the loss reads besides ``batch_stats``
      (GoogLeNet's auxiliary logits).
    progress: the train metric shown on the progress bar.
    augment_keys: the ``config.augment`` keys this task can apply.
    wants: the annotations it asks readers of annotated data for
      (``'boxes'``, ``'masks'``; see :func:`cnn_jax.data.build.load_split`).
    input_field: the batch field the model is called on: ``'image'`` ((B, H, W,
      C) uint8 in the batch, normalised float after :meth:`preprocess`) or
      ``'tokens'`` ((B, L) int32 ids); the data's ``ArrayDataset.input_field``.
  """
  name: ClassVar[str] = ''
  headline: ClassVar[str] = 'accuracy'
  headline_mode: ClassVar[str] = 'max'
  fields: ClassVar[tuple[str, ...]] = ('image', 'label')
  collections: ClassVar[tuple[str, ...]] = ()
  progress: ClassVar[str] = 'accuracy'
  augment_keys: ClassVar[tuple[str, ...]] = ('flip',)
  streaming: ClassVar[bool] = False
  wants: ClassVar[tuple[str, ...]] = ()
  input_field: ClassVar[str] = 'image'

  def __init__(self, config: ml_collections.ConfigDict):
    self.config = config
    self.t = config.task
    on = sorted(k for k, v in config.augment.items() if v and k != 'crop_mode')
    bad = [k for k in on if k not in self.augment_keys]
    if bad:
      supported = ", ".join("augment." + k for k in self.augment_keys) or "no augmentation"
      raise ValueError(f'task {self.name!r} cannot apply augment.{bad[0]}; it supports '
                       f'{supported}.')

  @staticmethod
  def defaults() -> ml_collections.ConfigDict:
    """The task's own config keys (``config.task``, besides ``name``)."""
    return ml_collections.ConfigDict()

  # ---- data (host) --------------------------------------------------------

  @property
  def data_seed(self) -> int:
    """The seed of what the data is (a synthetic set, a few-shot draw, identity splits, eval
    pairs): ``data.seed``, or ``seed`` when that is -1. Seeds trained together
    (``num_seeds``) share it; init, data order and augmentation follow each one's own seed."""
    return self.config.seed if self.config.data.seed < 0 else int(self.config.data.seed)

  def load_data(self) -> tuple[ArrayDataset, ArrayDataset]:
    """``(train, eval)`` in memory; ``extras`` become batch fields of the same name."""
    d = self.config.data
    train = load_split(d, d.train_split, seed=self.data_seed, wants=self.wants)
    if d.holdout:  # a validation split from the training data (fixed across seeds)
      return holdout_split(train, int(d.holdout))
    return train, load_split(d, d.eval_split, seed=self.data_seed, wants=self.wants)

  def sampler(self, train: ArrayDataset) -> Callable[[int, int], np.ndarray] | None:
    """``(seed, step) -> (batch_size,) indices`` for batches that are not a shuffle; None: shuffle.

    A pure function of its arguments (exact resume; seeds trained together draw
    their own batches).
    """
    del train
    return None

  def model_kwargs(self, num_classes: int) -> dict[str, Any]:
    """Arguments of the model that follow from the data."""
    return {'num_classes': num_classes}

  # ---- steps (traced) -----------------------------------------------------

  def preprocess(self, batch: Batch, mean: Sequence[float], std: Sequence[float]) -> Batch:
    """The raw batch -> the model's input, first thing in both steps (on device).

    By default uint8 ``image`` -> float32 ``(image / 255 - mean) / std``
    (``data.mean``, ``data.std``); a task whose input is not an image (token
    ids) returns the batch unchanged. Initialisation sees its output's shape
    and dtype too (:func:`cnn_jax.train.loop.model_input_spec`).
    """
    return {**batch, 'image': augment_lib.normalize(batch['image'], mean, std)}

  def model_inputs(self, batch: Batch, train: bool) -> dict[str, Any]:
    """Keyword arguments of the model's call besides ``(image, train)``.

    None by default; two-stage detectors take their training ``targets``
    (matching and sampling happen inside the model, as in torchvision).
    """
    del batch, train
    return {}

  def augment(self, keys: jax.Array, batch: Batch) -> Batch:
    """Random train-time transforms of the batch (image normalised float).

    ``keys``: (B,) PRNG keys, one per example (so a draw never depends on how
    the batch is split over devices). By default a horizontal flip
    (``augment.flip``) of every field in :meth:`flip_fields`, one draw per
    example for all of them.
    """
    if not self.config.augment.flip:
      return batch
    return random_flip(keys, batch, self.flip_fields())

  def flip_fields(self) -> dict[str, Callable[[jax.Array], jax.Array]]:
    """Field -> its left-right mirror (batched); annotations move with the pixels."""
    return {'image': mirror}

  def loss(self, outputs: Any, batch: Batch, extras: dict, axis_name: str | None
           ) -> tuple[jax.Array, dict[str, jax.Array]]:
    raise NotImplementedError

  def eval_outputs(self, outputs: Any, batch: Batch) -> dict[str, dict[str, jax.Array]]:
    raise NotImplementedError

  # ---- evaluation (host) --------------------------------------------------

  def eval_metrics(self, sums: dict[str, np.ndarray], rows: dict[str, np.ndarray]
                   ) -> dict[str, Any]:
    raise NotImplementedError

  def summary(self, metrics: dict[str, Any]) -> str:
    """One line for the log and the CLI's last line."""
    return ', '.join(f'{k} {metrics[k]:.4f}' for k in _scalars(metrics)[:4])


def mirror(x: jax.Array) -> jax.Array:
  """Left-right mirror of (B, H, W, ...) images or label maps."""
  return x[:, :, ::-1]


def random_flip(keys: jax.Array, batch: Batch,
                flips: dict[str, Callable[[jax.Array], jax.Array]]) -> Batch:
  """Mirrors each example (keys: (B,)) with probability 1/2: each field in ``flips`` by its fn."""
  flip = jax.vmap(lambda k: jax.random.bernoulli(k, 0.5))(keys)
  out = dict(batch)
  for key, fn in flips.items():
    x = batch[key]
    out[key] = jnp.where(flip.reshape((-1,) + (1,) * (x.ndim - 1)), fn(x), x)
  return out


def augment_annotated(task: Task, keys: jax.Array, batch: Batch, *,
                      ignore_index: int = IGNORE) -> Batch:
  """The augment of detection and segmentation: flip (``augment.flip``), then zoom-crop.

  ``augment.scale_crop`` ``(min, max)`` (empty: off) applies
  :func:`cnn_jax.data.box_augment.random_scale_crop` to the image, ``boxes``
  / ``box_labels`` and ``segmentation`` present in ``batch``. The flip keeps
  the step's keys, so switching the crop on leaves the flip draws as they
  were; the crop draws from keys folded off them, independent of the flip.
  """
  aug = task.config.augment
  if aug.flip:
    batch = random_flip(keys, batch, task.flip_fields())
  if aug.get('scale_crop'):
    crop_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(keys)
    batch = box_augment.random_scale_crop(crop_keys, batch, scale=tuple(aug.scale_crop),
                                          ignore_index=ignore_index)
  return batch


def _scalars(metrics: dict) -> list[str]:
  return [k for k, v in metrics.items() if isinstance(v, (int, float)) and k != 'count']


def gather_batch(x: jax.Array, axis_name: str | None) -> jax.Array:
  """The whole global batch of ``x`` (B, ...) on every device under pmap; ``x`` otherwise.

  Only this device's own rows carry a gradient, so with
  :func:`scale_gradient_for_pmean` on the loss the step's ``pmean`` of
  gradients sums every device's share: a loss over the whole batch (triplet
  mining) then trains exactly as on one device. This spells the gradient out
  instead of relying on the transpose convention of ``all_gather``.
  """
  if axis_name is None:
    return x
  full = lax.all_gather(lax.stop_gradient(x), axis_name, axis=0, tiled=True)
  return lax.dynamic_update_slice_in_dim(full, x, lax.axis_index(axis_name) * x.shape[0], 0)


def scale_gradient_for_pmean(loss: jax.Array, axis_name: str | None) -> jax.Array:
  """``loss`` with its value kept and its gradient times the device count (pmap only)."""
  if axis_name is None:
    return loss
  n = lax.psum(1, axis_name)
  return n * loss - (n - 1) * lax.stop_gradient(loss)


def global_mean(total: jax.Array, count: jax.Array, axis_name: str | None) -> jax.Array:
  """``sum(total) / sum(count)`` over the global batch (e.g. a mean over valid pixels).

  Under pmap each device returns its share ``n * total / sum(count)``, whose
  ``pmean`` (the step averages losses and gradients over devices) is the
  global mean; ``count`` must carry no gradient.
  """
  if axis_name is None:
    return total / jnp.maximum(count, 1).astype(total.dtype)
  n = lax.psum(1, axis_name)
  return n * total / jnp.maximum(lax.psum(count, axis_name), 1).astype(total.dtype)
