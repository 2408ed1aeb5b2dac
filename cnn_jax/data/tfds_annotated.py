"""Detection and segmentation sets of TensorFlow Datasets, read without TensorFlow.

Each record of a prepared split (opened with :func:`cnn_jax.data.tfds.open_tfds`,
so ArrayRecord, no TensorFlow, no download) becomes one
:class:`~cnn_jax.data.annotations.Annotated` at its stored size, and
:func:`~cnn_jax.data.annotations.pack` letterboxes the split. What a dataset
provides is decided by its features, not its name:

* boxes: an ``objects`` sequence with a ``bbox`` (tfds ``BBoxFeature``,
  normalised ``(ymin, xmin, ymax, xmax)``), e.g. ``voc/2007``, ``voc/2012``,
  ``coco/2017``. Classes are ``objects/label``'s names; ``objects/is_crowd``
  (COCO) and ``objects/is_difficult`` (VOC) become the crowd and difficult
  flags; ``image/id`` (COCO) the image id, else the record's index.
* masks: the feature and value table of :data:`MASK_SPECS` for the dataset
  (``oxford_iiit_pet``'s trimap), else a feature named
  ``segmentation_mask`` whose values are already semantic labels.

Prepare a dataset elsewhere with ``tfds build NAME --file_format array_record``
(see :mod:`cnn_jax.data.tfds`).
"""

from __future__ import annotations

import dataclasses
import os
import types
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from cnn_jax.data.annotations import IGNORE, Annotated, pack
from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.data.image_folder import convert_array
from cnn_jax.data.tfds import class_names_of, open_tfds


@dataclasses.dataclass(frozen=True)
class MaskSpec:
  """How one dataset's mask feature becomes semantic labels.

  Attributes:
    key: the mask feature, (H, W) or (H, W, 1) integers.
    class_names: the foreground classes; class ``c`` is label ``c + 1``
      (background is label 0 and is not named).
    values: stored value -> semantic label (0 background, ``c + 1``, or
      ``IGNORE``); values not listed become ``IGNORE``. None: the stored
      values are the labels already (the generic fallback).
  """
  key: str
  class_names: tuple[str, ...]
  values: Mapping[int, int] | None


# Keyed by the builder's name (``info.name``: no config, no version).
MASK_SPECS: dict[str, MaskSpec] = {
    # The trimap: 1 pet, 2 background, 3 the border around the pet, which is
    # neither, so it is ignored (as the usual foreground/background benchmark does).
    'oxford_iiit_pet': MaskSpec('segmentation_mask', ('pet',), {1: 1, 2: 0, 3: IGNORE}),
}

# A feature of this name without a MASK_SPECS entry is taken as labels already
# (0 background, c + 1 for class c, 255 void); its classes are then counted.
GENERIC_MASK_KEY = 'segmentation_mask'

_FLAGS = {'crowd': 'is_crowd', 'difficult': 'is_difficult'}


def load_tfds_annotated(name: str, split: str, *, data_dir: str | os.PathLike | None = None,
                        wants: tuple[str, ...], image_size: int, max_boxes: int,
                        channels: int | None = 3, skip_corrupt: bool = False) -> ArrayDataset:
  """Reads a prepared TFDS detection or segmentation split into one packed split.

  Args:
    name: TFDS name, e.g. ``'voc/2007'``, ``'coco/2017'``, ``'oxford_iiit_pet'``
      (``'name:version'`` works).
    split: TFDS split spec, e.g. ``'train'`` or ``'validation[:10%]'``.
    data_dir: where the dataset is prepared; default ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``.
    wants: what the task reads, ``'boxes'`` and/or ``'masks'``. Boxes are
      read whenever the dataset has them; masks only when wanted.
    image_size: canvas side S of the letterbox.
    max_boxes: boxes kept per image K (the largest), padded with label -1.
    channels: 3 or 1 converts the images; None keeps the stored channels.
    skip_corrupt: accepted for the common reader signature and ignored: tfds
      stores images already checked at preparation and decodes them to arrays.

  Returns:
    ``ArrayDataset`` with images (N, S, S, C) uint8, labels (N,) int32 (the
    largest box's class, else 0) and extras ``boxes`` (N, K, 4) float32 in
    [0, 1], ``box_labels`` (N, K) int32 (-1 padding), ``box_crowd`` and
    ``box_difficult`` (N, K) bool, ``image_id`` (N,) int32, ``image_scale``
    (N,) float32, ``orig_hw`` (N, 2) int32 and, with ``'masks'`` wanted,
    ``masks`` (N, S, S) int32. ``class_names`` are the mask's foreground
    classes when masks are wanted, else the box classes.

  Raises:
    FileNotFoundError: the dataset is not prepared in ``data_dir``.
    ValueError: unknown name or ``wants``, boxes or masks wanted from a dataset
      without them, or an empty split.
  """
  del skip_corrupt  # tfds images are decoded arrays: nothing to skip
  unknown = set(wants) - {'boxes', 'masks'}
  if unknown:
    raise ValueError(f'wants may hold only boxes and masks, got {sorted(unknown)}.')
  if channels is not None and channels not in (1, 3):
    raise ValueError(f'channels must be None, 1 or 3, got {channels!r}.')
  records, info = open_tfds(name, split, data_dir=data_dir)
  features = sorted(info.features.keys())
  objects = _objects_feature(info)
  if 'boxes' in wants and objects is None:
    raise ValueError(f"TFDS dataset {name!r} has no boxes (no 'objects' feature with a 'bbox'; "
                     f'features: {features}); use a detection set such as voc/2007 or '
                     'coco/2017, or a task that does not read boxes.')
  spec = _mask_spec(info) if 'masks' in wants else None
  if 'masks' in wants and spec is None:
    raise ValueError(f'TFDS dataset {name!r} has no segmentation mask (features: {features}); '
                     f'masks are read from a {GENERIC_MASK_KEY!r} feature or the one named '
                     'in cnn_jax.data.tfds_annotated.MASK_SPECS: use a segmentation set such '
                     'as oxford_iiit_pet, or add the dataset to MASK_SPECS.')
  lut = None if spec is None or spec.values is None else _lookup_table(spec.values)
  counts = {'dropped': 0, 'ragged': 0, 'resized': 0}
  annotated = []
  # One record at a time: tfds.testing.mock_data's __getitems__ is broken in
  # tfds 4.9.10, and decoding dominates anyway.
  for i in range(len(records)):
    record = records[i]
    image = np.asarray(record['image'])
    if image.dtype != np.uint8:
      raise ValueError(f"{name}: feature 'image' has dtype {image.dtype}, expected uint8.")
    hw = image.shape[:2]
    boxes, labels, flags = (_boxes_of(record['objects'], hw, counts) if objects is not None
                            else (np.zeros((0, 4), np.float32), np.zeros((0,), np.int32), {}))
    mask = None if spec is None else _mask_of(record[spec.key], hw, lut, counts)
    annotated.append(Annotated(image=convert_array(image, None, channels), boxes=boxes,
                               labels=labels, image_id=int(record.get('image/id', i)),
                               mask=mask, **flags))
  source = f'TFDS {name}[{split!r}]'
  _warn_counts(source, counts)
  if spec is not None:
    class_names = spec.class_names if spec.values is not None else _counted_names(annotated)
  elif objects is not None:
    # class_names_of reads `.features[key]`; the box classes sit one level down.
    all_labels = np.concatenate([r.labels for r in annotated]) if annotated else None
    class_names = class_names_of(types.SimpleNamespace(features=objects), 'label', all_labels)
  else:
    class_names = ()
  return pack(annotated, class_names, size=image_size, max_boxes=max_boxes, source=source)


def _objects_feature(info: Any) -> Any | None:
  """The ``objects`` sequence feature if it has a ``bbox``, else None."""
  features = info.features
  if 'objects' not in features.keys():
    return None
  objects = features['objects']
  try:
    return objects if 'bbox' in objects else None
  except TypeError:  # a feature that is not a dict of sub-features
    return None


def _mask_spec(info: Any) -> MaskSpec | None:
  """``MASK_SPECS[info.name]`` if its feature exists, else the generic mask or None."""
  keys = set(info.features.keys())
  spec = MASK_SPECS.get(info.name)
  if spec is not None and spec.key in keys:
    return spec
  if GENERIC_MASK_KEY in keys:
    return MaskSpec(GENERIC_MASK_KEY, (), None)  # values are labels already
  return None


def _lookup_table(values: Mapping[int, int]) -> np.ndarray:
  """(256,) uint8 stored value -> label; unlisted values map to ``IGNORE``."""
  lut = np.full((256,), IGNORE, np.uint8)
  for stored, label in values.items():
    lut[stored] = label
  return lut


def _boxes_of(objects: Mapping[str, Any], hw: tuple[int, int], counts: dict[str, int]
              ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
  """``objects`` of one record -> (boxes (K, 4) pixel corners, labels (K,), flags (K,) bool).

  Boxes are clipped to the image; those left with no area are dropped (and
  counted). Sub-features of different lengths (only mock_data makes them)
  are cut to the shortest of ``bbox`` and ``label``, flags padded with False.
  """
  h, w = hw
  bbox = np.asarray(objects['bbox'], np.float32).reshape(-1, 4)
  labels = np.asarray(objects['label'], np.int32).reshape(-1) if 'label' in objects else (
      np.zeros((len(bbox),), np.int32))
  raw_flags = {f: np.asarray(objects[k], bool).reshape(-1) for f, k in _FLAGS.items()
               if k in objects}
  n = min(len(bbox), len(labels))
  if any(len(v) != n for v in (bbox, labels, *raw_flags.values())):
    counts['ragged'] += 1
  flags = {}
  for field, values in raw_flags.items():
    flags[field] = np.zeros((n,), bool)
    flags[field][:min(n, len(values))] = values[:n]
  boxes = np.clip(bbox[:n] * np.array([h, w, h, w], np.float32), 0.0,
                  np.array([h, w, h, w], np.float32))
  keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  counts['dropped'] += int(n - keep.sum())
  return boxes[keep], labels[:n][keep], {k: v[keep] for k, v in flags.items()}


def _mask_of(stored: Any, hw: tuple[int, int], lut: np.ndarray | None,
             counts: dict[str, int]) -> np.ndarray:
  """One stored mask -> (H, W) uint8 semantic labels at the image's size ``hw``."""
  mask = np.asarray(stored)
  if mask.ndim == 3 and mask.shape[-1] == 1:
    mask = mask[..., 0]
  if mask.size and (mask.min() < 0 or mask.max() > 255):
    raise ValueError(f'mask values must lie in [0, 255], got [{mask.min()}, {mask.max()}].')
  mask = mask.astype(np.uint8)
  if lut is not None:
    mask = lut[mask]
  if mask.shape != tuple(hw):
    # Real datasets store masks at the image size; mock_data draws each size
    # independently. Nearest keeps labels as labels.
    counts['resized'] += 1
    mask = np.asarray(Image.fromarray(mask).resize((hw[1], hw[0]), Image.Resampling.NEAREST))
  return mask


def _counted_names(records: list[Annotated]) -> tuple[str, ...]:
  """``'0'..'k-1'`` for generic masks, ``k`` the largest label below ``IGNORE``."""
  top = 0
  for r in records:
    labels = r.mask[r.mask != IGNORE]
    if labels.size:
      top = max(top, int(labels.max()))
  return tuple(str(c) for c in range(top))


def _warn_counts(source: str, counts: dict[str, int]) -> None:
  """One warning per kind per split, so a large set does not print per record."""
  if counts['dropped']:
    warnings.warn(f'{source}: {counts["dropped"]} boxes with no area inside the image were '
                  'skipped.', stacklevel=3)
  if counts['ragged']:
    warnings.warn(f'{source}: {counts["ragged"]} records had objects sub-features of '
                  'different lengths; cut to the shortest of bbox and label.', stacklevel=3)
  if counts['resized']:
    warnings.warn(f'{source}: {counts["resized"]} masks differed in size from their image '
                  'and were resized to it (nearest).', stacklevel=3)
