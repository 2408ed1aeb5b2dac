"""TensorFlow Datasets (MNIST, CIFAR-10, ...) read without TensorFlow.

``tfds.data_source`` gives random access to a dataset prepared in the
ArrayRecord format and decodes records with numpy/Pillow, so TensorFlow is
never imported. Nothing is ever downloaded: this machine has no network, so a
dataset must already be prepared in ``data_dir``; on a machine with network::

  tfds build mnist --data_dir DIR --file_format array_record

then copy ``DIR`` over (or point ``data.root`` at an image folder instead).
``tensorflow_datasets`` is imported inside the functions so that importing
``cnn_jax.data`` stays light.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.data.image_folder import ImageSize, convert_array, image_hw

def _not_prepared(name: str, where: str) -> FileNotFoundError:
  # tfds' own error for this case talks about file formats, which misleads.
  return FileNotFoundError(
      f'TFDS dataset {name!r} is not prepared in {where} and cannot be downloaded here (no '
      f'network); on a machine with network run `tfds build {name} --data_dir DIR '
      '--file_format array_record`, copy DIR here and set data_dir (config data.data_dir), or '
      'set data.root to an image folder instead.')


def open_tfds(name: str, split: str = 'train', *, data_dir: str | os.PathLike | None = None
              ) -> tuple[Sequence[Mapping[str, Any]], Any]:
  """``(records, builder info)`` of a prepared TFDS split, without downloading.

  ``records`` is the random-access ``tfds.data_source`` (``len`` and
  ``records[i] -> dict of numpy``). A builder whose code needs TensorFlow
  (COCO) is made from the prepared files instead
  (:func:`builder_from_prepared_files`).

  Raises:
    ValueError: unknown dataset name.
    FileNotFoundError: the dataset is not prepared (in ArrayRecord format) in
      ``data_dir``.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  data_dir = None if data_dir is None else os.fspath(os.path.expanduser(data_dir))
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError:
    raise ValueError(f'unknown TFDS dataset {name!r}; check the name against '
                     '`tfds.list_builders()` (e.g. mnist, cifar10).') from None
  except ModuleNotFoundError as e:
    if 'tensorflow' not in str(e):
      raise
    builder = builder_from_prepared_files(name, data_dir=data_dir)
    # Pinning the prepared version makes tfds.data_source read the files too.
    name = f"{name.split(':')[0]}:{builder.version}"
  try:
    records = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
  except Exception as e:  # tfds raises assorted types; decide by what is on disk
    where = str(builder.data_dir)
    if not builder.is_prepared():
      raise _not_prepared(name, where) from e
    if 'file format' in str(e).lower():
      raise ValueError(f'TFDS dataset {name!r} in {where} was prepared as '
                       f'{builder.info.file_format}, but reading without TensorFlow needs '
                       f'ArrayRecord: rebuild it with `tfds build {name} --file_format '
                       'array_record`.') from e
    raise
  return records, builder.info


def builder_from_prepared_files(name: str, *, data_dir: str | None = None) -> Any:
  """The builder of a prepared dataset made from its metadata files, without its code.

  For builders whose code needs TensorFlow (``coco``: ``tf.int64`` in
  ``_info``): the prepared ``dataset_info.json`` and ``features.json`` describe
  the features just as well.

  Raises:
    FileNotFoundError: ``name`` is not prepared in ``data_dir``.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    return tfds.core.read_only_builder.builder_from_files(name, data_dir=data_dir)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise _not_prepared(name, data_dir or tfds.core.constants.DATA_DIR) from e


def class_names_of(info: Any, label_key: str = 'label',
                   labels: np.ndarray | None = None) -> tuple[str, ...]:
  """The label feature's names, else ``str(i)`` for its classes (or ``labels.max() + 1``)."""
  feature = None
  try:
    feature = info.features[label_key]
  except (KeyError, TypeError):
    pass
  names = getattr(feature, 'names', None)
  if names:
    return tuple(str(n) for n in names)
  num = getattr(feature, 'num_classes', None)
  if num is None:
    num = int(labels.max()) + 1 if labels is not None and labels.size else 0
  return tuple(str(i) for i in range(num))


def example_to_numpy(example: Mapping[str, Any], *, image_key: str = 'image',
                     label_key: str = 'label', image_size: ImageSize = None,
                     channels: int | None = None) -> tuple[np.ndarray, np.int32]:
  """One TFDS record -> ``(image (H, W, C) uint8, label int32)``.

  ``channels=None`` keeps the stored channels (MNIST stays 1); 3 repeats a
  gray image, 1 takes the luma of an RGB one.

  Raises:
    ValueError: ``image_key`` or ``label_key`` is not in the record.
  """
  for key, what in ((image_key, 'image_key'), (label_key, 'label_key')):
    if key not in example:
      raise ValueError(f'{what} {key!r} is not a feature of this dataset (features: '
                       f'{sorted(example)}); set data.{what}.')
  image = np.asarray(example[image_key])
  if image.dtype != np.uint8:
    raise ValueError(f'feature {image_key!r} has dtype {image.dtype}, expected uint8 images.')
  return convert_array(image, image_size, channels), np.int32(example[label_key])


def load_tfds(name: str, split: str = 'train', *, data_dir: str | os.PathLike | None = None,
              image_key: str = 'image', label_key: str = 'label',
              image_size: ImageSize = None, channels: int | None = None) -> ArrayDataset:
  """Reads a whole prepared TFDS split into memory (for sets that fit: MNIST, CIFAR).

  Args:
    name: TFDS name, e.g. ``'mnist'`` or ``'cifar10'`` (``'name:version'`` works).
    split: TFDS split spec, e.g. ``'train'`` or ``'train[:90%]'``.
    data_dir: where the dataset is prepared; default ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``.
    image_key, label_key: feature names of the image and the class label.
    image_size: resize to ``(h, w)`` (int: square); None keeps the stored size.
    channels: None keeps the stored channels; 1 or 3 converts.

  Returns:
    ``ArrayDataset`` with images (N, H, W, C) uint8, labels (N,) int32 and the
    label feature's class names.

  Raises:
    FileNotFoundError: the dataset is not prepared in ``data_dir``.
    ValueError: unknown name or feature keys, or images of different sizes
      without ``image_size``.
  """
  if channels is not None and channels not in (1, 3):
    raise ValueError(f'channels must be None, 1 or 3, got {channels!r}.')
  hw = image_hw(image_size)
  records, info = open_tfds(name, split, data_dir=data_dir)
  n = len(records)
  if n == 0:
    raise ValueError(f'TFDS split {name}[{split!r}] is empty.')
  images = None
  labels = np.empty((n,), np.int32)
  # One record at a time: decoding dominates, and tfds.testing.mock_data's
  # __getitems__ is broken in tfds 4.9.10 (called without its self argument).
  for i in range(n):
    image, labels[i] = example_to_numpy(records[i], image_key=image_key, label_key=label_key,
                                        image_size=hw, channels=channels)
    if images is None:
      images = np.empty((n,) + image.shape, np.uint8)
    elif image.shape != images.shape[1:]:
      raise ValueError(f'{name}[{split!r}] record {i} has image shape {image.shape} but '
                       f'record 0 has {images.shape[1:]}; set image_size (config '
                       'data.image_size) to resize them to one size.')
    images[i] = image
  return ArrayDataset(images, labels, class_names_of(info, label_key, labels))
