"""Annotated images (boxes, masks) of any source, packed into one in-memory split.

Every detection or segmentation reader (COCO JSON, PASCAL VOC, a mask folder,
tfds) yields :class:`Annotated` records at their original size;
:func:`pack` letterboxes them to one square size and pads the boxes to a fixed
count, so every source gives the same batch fields:

* ``image``: (N, S, S, C) uint8, the picture scaled so its longer side is S
  (aspect kept) at the top-left of the canvas, the rest zero.
* ``boxes``: (N, K, 4) float32 corners ``(y0, x0, y1, x1)`` in [0, 1] of the
  canvas; ``box_labels`` (N, K) int32, -1 for padding; ``box_crowd`` and
  ``box_difficult`` (N, K) bool (COCO ``iscrowd``, VOC ``difficult``: kept
  for evaluation to ignore, never trained as negatives or positives).
* ``masks``: (N, S, S) int32 semantic labels (0 background, ``c + 1`` for
  class ``c``, ``ignore_index`` 255 on the padding and on void pixels).
* ``instance_masks`` (optional): (N, K, S, S) bool, one per box.
* ``image_id`` (N,) int32, ``image_scale`` (N,) float32 (original pixels per
  canvas pixel) and ``orig_hw`` (N, 2) int32: what maps predictions back to
  the original image for COCO-style evaluation.

Pixel boxes are corners in continuous coordinates: a box covering pixel
columns 3..5 inclusive is ``x0 = 3, x1 = 6``.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable

import numpy as np
from PIL import Image

from cnn_jax.data.dataset import ArrayDataset

IGNORE = 255


@dataclasses.dataclass
class Annotated:
  """One image and its annotations at the original size.

  Attributes:
    image: (H, W, C) uint8.
    boxes: (K, 4) float32 pixel corners ``(y0, x0, y1, x1)``.
    labels: (K,) int32 contiguous class ids.
    image_id: the source's id (COCO ``id``; a running index otherwise).
    crowd, difficult: (K,) bool, or None for all False.
    mask: (H, W) semantic labels (0 background, c + 1, 255 void), or None.
    instance_masks: (K, H, W) bool, or None.
  """
  image: np.ndarray
  boxes: np.ndarray
  labels: np.ndarray
  image_id: int = 0
  crowd: np.ndarray | None = None
  difficult: np.ndarray | None = None
  mask: np.ndarray | None = None
  instance_masks: np.ndarray | None = None


def letterbox_scale(hw: tuple[int, int], size: int) -> float:
  """Canvas pixels per original pixel when the longer side of ``hw`` becomes ``size``."""
  return size / max(hw)


def _resize(array: np.ndarray, hw: tuple[int, int], nearest: bool) -> np.ndarray:
  img = Image.fromarray(array)
  method = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
  return np.asarray(img.resize((hw[1], hw[0]), method))


def letterbox(record: Annotated, size: int, max_boxes: int) -> dict[str, np.ndarray]:
  """One record -> its packed fields (see the module docstring), boxes cut at ``max_boxes``.

  Boxes beyond ``max_boxes`` are dropped (largest kept first), which
  :func:`pack` counts and reports.
  """
  h, w = record.image.shape[:2]
  s = letterbox_scale((h, w), size)
  nh, nw = max(1, round(h * s)), max(1, round(w * s))
  image = np.zeros((size, size, record.image.shape[2]), np.uint8)
  resized = _resize(record.image if record.image.shape[2] == 3 else record.image[..., 0],
                    (nh, nw), nearest=False)
  image[:nh, :nw] = resized.reshape(nh, nw, -1)
  order = np.argsort(-_areas(record.boxes), kind='stable')[:max_boxes]
  out = {
      'image': image,
      'boxes': np.zeros((max_boxes, 4), np.float32),
      'box_labels': np.full((max_boxes,), -1, np.int32),
      'box_crowd': np.zeros((max_boxes,), bool),
      'box_difficult': np.zeros((max_boxes,), bool),
      'image_id': np.int32(record.image_id),
      'image_scale': np.float32(1.0 / s),
      'orig_hw': np.array([h, w], np.int32),
  }
  n = len(order)
  out['boxes'][:n] = np.clip(record.boxes[order] * s / size, 0.0, 1.0)
  out['box_labels'][:n] = record.labels[order]
  for field, flags in (('box_crowd', record.crowd), ('box_difficult', record.difficult)):
    if flags is not None:
      out[field][:n] = flags[order]
  if record.mask is not None:
    mask = np.full((size, size), IGNORE, np.int32)
    mask[:nh, :nw] = _resize(record.mask.astype(np.uint8), (nh, nw), nearest=True)
    out['masks'] = mask
  if record.instance_masks is not None:
    inst = np.zeros((max_boxes, size, size), bool)
    for j, src in enumerate(order):
      inst[j, :nh, :nw] = _resize(record.instance_masks[src].astype(np.uint8) * 255,
                                  (nh, nw), nearest=True) > 127
    out['instance_masks'] = inst
  return out


def _areas(boxes: np.ndarray) -> np.ndarray:
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def pack(records: Iterable[Annotated], class_names: tuple[str, ...], *, size: int,
         max_boxes: int, source: str) -> ArrayDataset:
  """Letterboxes and stacks ``records``; ``labels`` is each image's largest box's class.

  Records are letterboxed as they arrive, so a generator keeps only one
  full-size image in memory at a time (a COCO split is then as large as its
  canvases, not its photos).

  Args:
    records: at least one (a list or a generator).
    class_names: contiguous class names (label ``c`` is ``class_names[c]``).
    size: canvas side S (``config.data.image_size``).
    max_boxes: K (``config.data.max_boxes``).
    source: named in messages (the annotation file or dataset).

  Raises:
    ValueError: no records, records that disagree on which fields they carry,
      or ``size`` / ``max_boxes`` not positive.
  """
  if size <= 0 or max_boxes <= 0:
    raise ValueError(f'{source}: data.image_size ({size}) and data.max_boxes ({max_boxes}) '
                     'must be positive for detection/segmentation data.')
  rows, cut = [], 0
  for r in records:
    cut += max(0, len(r.labels) - max_boxes)
    rows.append(letterbox(r, size, max_boxes))
    if rows[-1].keys() != rows[0].keys():
      raise ValueError(f'{source}: image {r.image_id} has fields {sorted(rows[-1])} but the '
                       f'first has {sorted(rows[0])} (a mask missing for some images?).')
  if not rows:
    raise ValueError(f'{source}: no annotated images to load.')
  if cut:
    warnings.warn(f'{source}: {cut} boxes beyond data.max_boxes={max_boxes} per image were '
                  'dropped (the smallest first); raise data.max_boxes to keep them.',
                  stacklevel=2)
  fields = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
  images = fields.pop('image')
  first = fields['box_labels'][:, 0]
  labels = np.where(first >= 0, first, 0).astype(np.int32)
  return ArrayDataset(images, labels, tuple(class_names), fields)
