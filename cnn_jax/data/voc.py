"""PASCAL VOC (detection or segmentation) read into one packed split.

``root`` is one year's folder of the devkit::

  VOCdevkit/VOC2007/                  # = root
    ImageSets/Main/<split>.txt        # detection ids, one per line (train, val, trainval, test)
    ImageSets/Segmentation/<split>.txt  # segmentation ids
    Annotations/<id>.xml              # objects: name, bndbox, difficult
    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png        # palette PNG: 0 background, 1..20 classes, 255 border

Classes are the 20 standard VOC names in the standard order
(:data:`VOC_CLASSES`); an XML naming another class is an error. A ``bndbox``
holds 1-based inclusive pixels; as in the VOC devkit and torchvision's
references they become continuous corners ``x0 = xmin - 1, x1 = xmax`` (same
for y), then are clipped to the image, and boxes with nothing left are skipped
with one counted warning (:func:`cnn_jax.data.coco.clip_boxes`). ``difficult``
objects are kept, flagged ``box_difficult`` (evaluation ignores them).

``segmentation=True`` reads the ``Segmentation`` id list and each
``SegmentationClass`` PNG's palette indices as the semantic mask (they already
follow :mod:`cnn_jax.data.annotations`' convention); boxes then come from the
XML when there is one, else the image has none. ``image_id`` is the index in
the id list (VOC ids such as ``2008_000123`` are not numbers).

Errors are one line naming the file: a missing id list (listing those that
exist), an unknown class, an XML that does not parse or lacks a field, a
missing image or mask, a mask of another size than its image, or a mask value
other than 0..20 and 255. A corrupt image follows ``skip_corrupt``.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cnn_jax.data.annotations import IGNORE, Annotated, pack
from cnn_jax.data.coco import clip_boxes, warn_skipped_boxes
from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.data.image_folder import _warn_skipped, decode_or_skip
from cnn_jax.data.mask_folder import check_mask_size, read_label_png

VOC_CLASSES: tuple[str, ...] = (
    'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
    'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
    'train', 'tvmonitor')
_LABEL = {name: i for i, name in enumerate(VOC_CLASSES)}


def read_split_ids(root: str | os.PathLike, split: str, segmentation: bool = False) -> list[str]:
  """The image ids of ``ImageSets/(Main|Segmentation)/<split>.txt``.

  Raises:
    FileNotFoundError: the list is missing (the message lists those present).
  """
  folder = Path(root).expanduser() / 'ImageSets' / ('Segmentation' if segmentation else 'Main')
  path = folder / f'{split}.txt'
  if not path.is_file():
    # Main/ also holds per-class lists (<class>_<split>.txt); only splits are useful here.
    found = sorted(p.stem for p in folder.glob('*.txt') if '_' not in p.stem) \
        if folder.is_dir() else []
    raise FileNotFoundError(f'VOC split list {path} does not exist (split lists there: '
                            f'{", ".join(found) or "none"}); set data.train_split / '
                            'data.eval_split to one of them, or data.root to a year folder such '
                            'as VOCdevkit/VOC2007.')
  return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]


def parse_voc_xml(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """One ``Annotations/<id>.xml`` -> ``(boxes (K, 4) pixel corners, labels (K,), difficult (K,))``.

  Boxes are continuous corners ``(ymin - 1, xmin - 1, ymax, xmax)``, not yet clipped.

  Raises:
    ValueError: the XML does not parse, an object lacks a field, or names a
      class outside :data:`VOC_CLASSES`.
  """
  try:
    tree = ET.parse(path)
  except ET.ParseError as e:
    raise ValueError(f'VOC annotation {path} is not valid XML ({e}); fix or re-export it.') from e
  boxes, labels, difficult = [], [], []
  for obj in tree.getroot().iter('object'):
    name = (obj.findtext('name') or '').strip()
    if name not in _LABEL:
      raise ValueError(f'VOC annotation {path} has an object of class {name!r}, not one of the '
                       f'20 VOC classes ({", ".join(VOC_CLASSES)}); fix the name.')
    box = obj.find('bndbox')
    try:
      xmin, ymin, xmax, ymax = (float(box.findtext(k)) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
    except (AttributeError, TypeError, ValueError):
      raise ValueError(f'VOC annotation {path} has a {name} object without a numeric bndbox '
                       'xmin/ymin/xmax/ymax; fix the object.') from None
    boxes.append((ymin - 1.0, xmin - 1.0, ymax, xmax))
    labels.append(_LABEL[name])
    difficult.append((obj.findtext('difficult') or '0').strip() not in ('0', ''))
  return (np.array(boxes, np.float64).reshape(-1, 4), np.array(labels, np.int32),
          np.array(difficult, bool))


def load_voc(root: str | os.PathLike, split: str, *, segmentation: bool = False,
             image_size: int, max_boxes: int, channels: int = 3,
             skip_corrupt: bool = False) -> ArrayDataset:
  """Reads one VOC split into one letterboxed split.

  Args:
    root: the year folder, e.g. ``VOCdevkit/VOC2007`` (layout in the module
      docstring).
    split: id list name, e.g. ``'trainval'``, ``'test'``, ``'train'``, ``'val'``.
    segmentation: read the Segmentation list and its masks, not the Main list.
    image_size: canvas side S of the letterbox.
    max_boxes: boxes kept per image K (the largest), padded with label -1.
    channels: 3 (RGB) or 1 (grayscale).
    skip_corrupt: skip images Pillow cannot decode (one counted warning).

  Returns:
    ``ArrayDataset`` with images (N, S, S, C) uint8, labels (N,) int32 (the
    largest box's class, else 0), class names :data:`VOC_CLASSES` and extras
    ``boxes`` (N, K, 4) float32 in [0, 1], ``box_labels`` (N, K) int32 (-1
    padding), ``box_difficult`` (N, K) bool, ``box_crowd`` (N, K) bool (all
    False), ``image_id`` (N,) int32 (index in the id list), ``image_scale``
    (N,) float32, ``orig_hw`` (N, 2) int32 and, with ``segmentation``,
    ``masks`` (N, S, S) int32.

  Raises:
    FileNotFoundError: a missing id list, XML (detection), image or mask.
    ValueError: see the module docstring.
  """
  root = Path(root).expanduser()
  ids = read_split_ids(root, split, segmentation)
  counts = {'boxes': 0}
  skipped: list[str] = []
  records = _records(root, ids, segmentation, counts, skipped, channels=channels,
                     skip_corrupt=skip_corrupt)
  kind = 'Segmentation' if segmentation else 'Main'
  ds = pack(records, VOC_CLASSES, size=image_size, max_boxes=max_boxes,
            source=str(root / 'ImageSets' / kind / f'{split}.txt'))
  warn_skipped_boxes(counts['boxes'], root / 'Annotations')
  if skipped:
    _warn_skipped(skipped, root / 'JPEGImages')
  return ds


def _records(root: Path, ids: list[str], segmentation: bool, counts: dict[str, int],
             skipped: list[str], *, channels: int, skip_corrupt: bool) -> Iterator[Annotated]:
  for index, image_id in enumerate(ids):
    xml = root / 'Annotations' / f'{image_id}.xml'
    if xml.is_file():
      corners, labels, difficult = parse_voc_xml(xml)
    elif segmentation:  # segmentation-only images may have no XML
      corners, labels, difficult = np.zeros((0, 4)), np.zeros((0,), np.int32), np.zeros(0, bool)
    else:
      raise FileNotFoundError(f'VOC annotation {xml} for id {image_id!r} of the split list does '
                              'not exist; restore it or remove the id from the list.')
    image_path = root / 'JPEGImages' / f'{image_id}.jpg'
    image = decode_or_skip(image_path, skipped, channels=channels, skip_corrupt=skip_corrupt)
    if image is None:
      continue
    boxes, keep = clip_boxes(corners, image.shape[:2])
    counts['boxes'] += int((~keep).sum())
    mask = None
    if segmentation:
      mask_path = root / 'SegmentationClass' / f'{image_id}.png'
      mask = read_label_png(mask_path)
      check_mask_size(mask, image, mask_path, image_path)
      bad = (mask > len(VOC_CLASSES)) & (mask != IGNORE)
      if bad.any():
        raise ValueError(f'VOC mask {mask_path} holds value {int(mask[bad][0])}; expected 0 '
                         f'(background), 1..{len(VOC_CLASSES)} (classes) or {IGNORE} (border).')
    yield Annotated(image=image, boxes=boxes, labels=labels[keep], image_id=index,
                    difficult=difficult[keep], mask=mask)
