"""The in-memory dataset every loader returns, and the errors they share.

A split that fits in memory (CIFAR, MNIST, the synthetic shapes) is one
:class:`ArrayDataset`: uint8 images and int32 labels as numpy arrays. The
training loop moves it to the device once and shuffles/batches there; larger
sources stream through grain instead (:mod:`cnn_jax.data.stream`).
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
  """One split held in memory.

  Attributes:
    images: (N, H, W, C) uint8.
    labels: (N,) int32 class ids in [0, num_classes).
    class_names: one name per class, in label order.
    extras: optional per-example arrays aligned with ``images`` (e.g. the
      synthetic set's ``boxes`` (N, K, 4), ``box_labels`` (N, K) and ``masks``
      (N, H, W)).
  """
  images: np.ndarray
  labels: np.ndarray
  class_names: tuple[str, ...]
  extras: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if self.images.ndim != 4 or self.images.dtype != np.uint8:
      raise ValueError(f'images must be (N, H, W, C) uint8, got {self.images.shape} '
                       f'{self.images.dtype}.')
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
    return ArrayDataset(self.images[indices], self.labels[indices], self.class_names,
                        {k: v[indices] for k, v in self.extras.items()})


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
  return ArrayDataset(sub.images, remap[sub.labels], tuple(ds.class_names[c] for c in classes),
                      sub.extras)


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
  if not 0 < n < len(ds):
    raise ValueError(f'data.holdout={n} must be between 1 and {len(ds) - 1} (the training '
                     f'split has {len(ds)} examples).')
  order = np.random.default_rng(seed).permutation(len(ds))
  return ds.take(np.sort(order[n:])), ds.take(np.sort(order[:n]))
