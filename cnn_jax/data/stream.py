"""Streaming input for datasets that do not fit in memory, on grain.

A *source* is random access (``len`` and ``source[i] -> {'image': (H, W, C)
uint8, 'label': int32}``) and decodes one example per item;
:func:`make_stream` shuffles it deterministically from ``(seed, epoch)``,
decodes in grain's threads and batches::

  src = ImageFolderSource('/data/imagenette', 'train', image_size=160)
  it = make_stream(src, batch_size=64, seed=0, epoch=3)
  for batch in it:            # {'image': (64, 160, 160, 3) uint8, 'label': (64,) int32}
    ...
  state = it.get_state()      # store with the checkpoint; later:
  it = make_stream(src, batch_size=64, seed=0, epoch=3)
  it.set_state(state)         # continues with exactly the batches that were left

Eval streams (``drop_remainder=False``) pad the last batch to ``batch_size``
and add ``'mask'`` (batch,) bool, True for real examples, so that metrics
averaged with the mask count every example exactly once.

``grain`` (which imports JAX) and ``tensorflow_datasets`` are imported inside
the functions so that importing ``cnn_jax.data`` stays light.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from cnn_jax.data.image_folder import (CorruptImageError, ImageSize, decode_image, image_hw,
                                       list_image_folder)

Example = dict[str, np.ndarray]


class ImageFolderSource:
  """Random access to ``root/<split>/<class>/*`` decoding one file per item.

  Args:
    root, split, class_names: as :func:`cnn_jax.data.image_folder.list_image_folder`.
    image_size: ``(h, w)`` or int every image is resized to. Batching needs one
      size, so None only works when all files share their native size (a
      mismatch raises when it is met).
    channels: 1 (grayscale) or 3 (RGB).
    skip_corrupt: drop undecodable files from the stream instead of raising
      (one warning per file, with the running count); a pass over the data
      then holds fewer examples.

  ``source[i]`` is ``{'image': (H, W, channels) uint8, 'label': () int32}``.
  """

  def __init__(self, root: str | os.PathLike, split: str, image_size: ImageSize,
               channels: int = 3, class_names: Sequence[str] | None = None, *,
               skip_corrupt: bool = False):
    self.files, self.labels, self.class_names = list_image_folder(root, split,
                                                                  class_names=class_names)
    self.image_size = image_hw(image_size)
    self.channels = channels
    self.skip_corrupt = skip_corrupt
    self._shape: tuple[int, ...] | None = None
    self._first: str | None = None
    self.corrupt: set[str] = set()  # files found undecodable so far

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def __len__(self) -> int:
    return len(self.files)

  def __getitem__(self, index: int) -> Example | None:
    path = self.files[index]
    try:
      image = decode_image(path, self.image_size, self.channels)
    except CorruptImageError as e:
      if not self.skip_corrupt:
        raise CorruptImageError(f'cannot decode image {e}; fix or delete the file, or pass '
                                'skip_corrupt=True (config data.skip_corrupt).') from None
      if str(path) not in self.corrupt:  # once per file, not once per epoch
        self.corrupt.add(str(path))
        warnings.warn(f'skipping corrupt image {e} ({len(self.corrupt)} corrupt of '
                      f'{len(self)} files so far)', stacklevel=2)
      return None  # grain drops None elements before batching
    if self._shape is None:
      # Set by whichever thread decodes first; any later mismatch is an error.
      self._shape, self._first = image.shape, str(path)
    elif image.shape != self._shape:
      raise ValueError(f'image {path} has shape {image.shape} but {self._first} has '
                       f'{self._shape}; set image_size (config data.image_size) so every '
                       'image is resized to one size.')
    return {'image': image, 'label': self.labels[index]}

  def __repr__(self) -> str:
    return (f'ImageFolderSource({len(self)} files, {self.num_classes} classes, '
            f'image_size={self.image_size}, channels={self.channels})')


class TfdsSource:
  """Random access to a prepared TFDS split in the same dict format.

  Args: as :func:`cnn_jax.data.tfds.load_tfds` (nothing is downloaded).
  """

  def __init__(self, name: str, split: str = 'train', *,
               data_dir: str | os.PathLike | None = None, image_key: str = 'image',
               label_key: str = 'label', image_size: ImageSize = None,
               channels: int | None = None):
    from cnn_jax.data import tfds as tfds_lib  # pylint: disable=g-import-not-at-top

    self.name, self.split = name, split
    self._records, info = tfds_lib.open_tfds(name, split, data_dir=data_dir)
    self.class_names = tfds_lib.class_names_of(info, label_key)
    self._convert = functools.partial(tfds_lib.example_to_numpy, image_key=image_key,
                                      label_key=label_key, image_size=image_hw(image_size),
                                      channels=channels)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  def __len__(self) -> int:
    return len(self._records)

  def __getitem__(self, index: int) -> Example:
    image, label = self._convert(self._records[int(index)])
    return {'image': image, 'label': label}

  def __repr__(self) -> str:
    return f'TfdsSource({self.name}[{self.split!r}], {len(self)} records)'


def epoch_seed(seed: int, epoch: int, repeat: int = 0) -> int:
  """A 32-bit shuffle seed from ``(seed, epoch[, repeat])``; each gives an unrelated order."""
  entropy = [int(seed), int(epoch)] + ([int(repeat)] if repeat else [])
  return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _with_mask(example: Example) -> Example:
  return {**example, 'mask': np.True_}


def _pad_batch(batch: Example, batch_size: int) -> Example:
  n = batch['mask'].shape[0]
  if n == batch_size:
    return batch
  # Zeros (label 0, mask False) keep dtypes and shapes static for jit.
  return {k: np.concatenate([v, np.zeros((batch_size - n,) + v.shape[1:], v.dtype)])
          for k, v in batch.items()}


def make_stream(source: Any, *, batch_size: int, seed: int, epoch: int = 0,
                shuffle: bool = True, drop_remainder: bool = True, num_threads: int = 8,
                prefetch: int = 2, repeat: int = 0, shard: tuple[int, int] = (0, 1)):
  """One epoch of batches from a random-access ``source``.

  Args:
    source: ``len`` + ``source[i] -> dict`` of numpy (e.g. :class:`ImageFolderSource`).
    batch_size: examples per batch.
    seed, epoch: the shuffle order is a pure function of both.
    repeat: a further pass over the same epoch in another order (see
      :class:`cnn_jax.data.pipeline.StreamTrainData`: it tops up an epoch that
      skipped corrupt files).
    shard: ``(index, count)``: yield only rows ``[index * r, (index + 1) * r)``,
      ``r = batch_size // count``, of every global batch, decoding nothing
      else (each of ``count`` processes feeds its own slice; with
      ``drop_remainder`` only). Concatenated in process order, the shards are
      exactly the batches of ``shard=(0, 1)``.
    shuffle: False keeps the source order (eval).
    drop_remainder: True drops a last partial batch (training); False pads it
      to ``batch_size`` and adds ``'mask'`` (batch,) bool to every batch.
    num_threads: grain threads decoding examples in parallel (0: in the caller).
    prefetch: batches decoded ahead of the consumer.

  Returns:
    A ``grain.DatasetIterator`` yielding dicts of numpy arrays with a leading
    batch axis (e.g. image (B, H, W, C) uint8, label (B,) int32); its
    ``get_state()``/``set_state()`` save and restore the position, on an
    iterator made with the same arguments.
  """
  import grain  # pylint: disable=g-import-not-at-top

  if batch_size < 1:
    raise ValueError(f'batch_size must be positive, got {batch_size}.')
  if num_threads < 0 or prefetch < 0:
    raise ValueError(f'num_threads and prefetch must be >= 0, got {num_threads}, {prefetch}.')
  n = len(source)
  if n == 0:
    raise ValueError(f'{source!r} is empty.')
  if drop_remainder and n < batch_size:
    raise ValueError(f'{source!r} has {n} examples, fewer than batch_size={batch_size}, so '
                     'dropping the remainder leaves no batch; lower batch_size.')
  index, count = shard
  if not 0 <= index < count or batch_size % count:
    raise ValueError(f'shard {shard} needs 0 <= index < count and count dividing '
                     f'batch_size={batch_size}.')
  if count > 1 and not drop_remainder:
    raise ValueError('shard needs drop_remainder=True (training streams).')
  ds = grain.MapDataset.source(source)
  if shuffle:
    ds = ds.shuffle(seed=epoch_seed(seed, epoch, repeat))
  if count > 1:
    # Positions of this shard's rows in the shuffled order; the lookup into
    # ``ds`` is lazy, so the other processes' rows are never decoded.
    rows, shuffled, full = batch_size // count, ds, batch_size
    ds = grain.MapDataset.range((n // full) * rows).map(
        lambda i: shuffled[(i // rows) * full + index * rows + i % rows])
    batch_size = rows
  if not drop_remainder:
    ds = ds.map(_with_mask)
  # Threads work per example (not per batch) so one slow file does not hold
  # back a whole batch; the buffer is counted in examples.
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                            prefetch_buffer_size=max(1, prefetch) * batch_size))
  it = it.batch(batch_size, drop_remainder=drop_remainder)
  if not drop_remainder:
    it = it.map(functools.partial(_pad_batch, batch_size=batch_size))
  return iter(it)
