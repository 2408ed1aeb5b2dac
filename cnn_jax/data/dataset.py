"""The in-memory dataset every loader returns, and the errors they share.

A split that fits in memory (CIFAR, MNIST, the synthetic shapes, a text
corpus) is one :class:`ArrayDataset`: the model's raw inputs (uint8 images,
or int32 token ids for text) and int32 labels as numpy arrays. The training
loop moves it to the device once and shuffles/batches there; larger sources
stream through grain instead (:mod:`cnn_jax.data.stream`).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """One split held in memory.

  Attributes:
    images: the model's raw inputs, one row per example, in the batch field
      ``input_field``: (N, H, W, C) uint8 images for ``'image'`` (every image
      task), (N, L) int32 token ids for ``'tokens'`` (text; 0 = padding, see
      :mod:`cnn_jax.data.text`). The field name keeps its image-era name so
      every image loader and task reads as before.
    labels: (N,) int32 class ids in [0, num_classes).
    class_names: one name per class, in label order.
    extras: optional per-example arrays aligned with ``images`` (e.g. the
      synthetic set's ``boxes`` (N, K, 4), ``box_labels`` (N, K) and ``masks``
      (N, H, W)).
    input_field: the batch field ``images`` travels in (what the task's
      ``input_field`` reads and its ``preprocess`` turns into the model's input).
  """
  images: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...]
  extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
  input_field: str = 'image'

  def __post_init__(self):
    if self.input_field == 'image' and (self.images.ndim != 4 or self.images.dtype != np.uint8):
      raise ValueError(f'images must be (N, H, W, C) uint8, got {self.images.shape} '
                       f'{self.images.dtype}.')
    if self.input_field == 'tokens' and (self.images.ndim != 2 or
                                         self.images.dtype != np.int32):
      raise ValueError(f'tokens must be (N, L) int32, got {self.images.shape} '
                       f'{self.images.dtype}.')
    if self.input_field in ('label', 'mask') or self.input_field in self.extras:
      raise ValueError(f'input_field {self.input_field!r} clashes with another batch field.')
    if self.labels.shape != (self.images.shape[0],):
      raise ValueError(f'labels shape {self.labels.shape} does not match '
                       f'{self.images.shape[0]} images.')
    for name, value in self.extras.items():
      if value.shape[0] != self.images.shape[0]:
        raise ValueError(f'extra {name!r} has {value.shape[0]} rows for '
                         f'{self.images.shape[0]} images.')

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def __len__(self) -> int:
    return int(self.images.shape[0])

  def take(self, indices: np.ndarray) -> 'ArrayDataset':
    """A subset (e.g. a validation split or a few-shot sample)."""
    return dataclasses.replace(self, images=self.images[indices], labels=self.labels[indices],
                               extras={k: v[indices] for k, v in self.extras.items()})


def select_classes(ds: ArrayDataset, classes: tuple[int, ...]) -> ArrayDataset:
  """The examples of ``classes`` only, relabelled ``0..k-1`` in the given order."""
  classes = tuple(int(c) for c in classes)
  bad = [c for c in classes if not 0 <= c < ds.num_classes]
  if bad or len(set(classes)) != len(classes):
    raise ValueError(f'data.classes {classes} must be distinct class ids in '
                     f'[0, {ds.num_classes}).')
  remap = np.full(ds.num_classes, -1, np.int32)
  remap[list(classes)] = np.arange(len(classes), dtype=np.int32)
  keep = np.flatnonzero(remap[ds.labels] >= 0)
  sub = ds.take(keep)
  return dataclasses.replace(sub, labels=remap[sub.labels],
                             class_names=tuple(ds.class_names[c] for c in classes))


def few_shot(ds: ArrayDataset, per_class: int, seed: int) -> ArrayDataset:
  """``per_class`` examples of every class, drawn by a seeded shuffle (sorted by index)."""
  order = np.random.default_rng(seed).permutation(len(ds))
  keep = np.concatenate([order[ds.labels[order] == c][:per_class]
                         for c in range(ds.num_classes)])
  short = [c for c in range(ds.num_classes) if np.sum(ds.labels == c) < per_class]
  if short:
    raise ValueError(f'data.examples_per_class={per_class} but classes {short} have fewer '
                     'examples; lower it.')
  return ds.take(np.sort(keep))


def holdout_split(ds: ArrayDataset, n: int, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
  """``(rest, held_out)``: ``n`` examples drawn by a seeded shuffle, e.g. a 45k/5k split.

  Both parts keep the original order; the same ``(n, seed)`` always holds out
  the same examples, whatever the run's own seed.
  """
  rest, held = holdout_indices(len(ds), n, seed)
  return ds.take(rest), ds.take(held)


def holdout_indices(total: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """``(rest, held_out)`` sorted indices of :func:`holdout_split` (also for raw texts)."""
  if not 0 < n < total:
    raise ValueError(f'data.holdout={n} must be between 1 and {total - 1} (the training '
                     f'split has {total} examples).')
  order = np.random.default_rng(seed).permutation(total)
  return np.sort(order[n:]), np.sort(order[:n])
