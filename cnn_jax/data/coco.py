"""COCO instances JSON (boxes, semantic and instance masks) read into one packed split.

Layout (``ann_file`` defaults to ``annotations/instances_<split>.json``)::

  root/
    annotations/
      instances_train2017.json
      instances_val2017.json
    train2017/  000000000009.jpg ...    # <root>/<split>/<file_name>
    val2017/    000000000139.jpg ...

Only the JSON's ``images`` (``id``, ``file_name``, optional ``height`` and
``width``), ``annotations`` (``id``, ``image_id``, ``category_id``, ``bbox``
``[x, y, w, h]`` in pixels, ``iscrowd``, ``segmentation``) and ``categories``
(``id``, ``name``) are read, with :mod:`json` (no ``pycocotools.coco.COCO``
index). Category ids map to contiguous labels in sorted id order (COCO 2017's
80 ids 1..90 become 0..79), named by the categories' ``name``. Images keep the
JSON's order, those without annotations too (all boxes padding), and
``image_id`` is the COCO id, so predictions map back for COCO evaluation.
Crowd annotations stay as boxes flagged ``box_crowd`` (evaluation ignores
them; the detection task never trains on them).

Boxes: ``[x, y, w, h]`` become corners ``(y, x, y + h, x + w)`` (see
:mod:`cnn_jax.data.annotations`), clipped to the image (:func:`clip_boxes`).
An annotation whose box has ``w <= 0`` or ``h <= 0`` (or a non-finite value),
or that lies wholly outside the image, is skipped with its segmentation: one
warning per split counts them (:func:`warn_skipped_boxes`). Such boxes occur in
real exports and would give empty targets, so they are not worth an error.

Masks, decoded with ``pycocotools.mask`` from polygons, compressed RLE
(string ``counts``) or uncompressed RLE (list ``counts``):

* ``masks=True``: one semantic (H, W) mask per image. First what is unknown is
  painted 255 (ignore): crowd regions, and the box of an annotation without a
  segmentation (which of its pixels are object is unknown). Then the other
  instances by decreasing pixel area, each over what is there: a small object
  on a large one stays visible, and an object annotated on its own wins over
  the crowd region it stands in.
* ``instance_masks=True``: each box's own mask, (K, H, W) bool per image, in
  box order (empty for an annotation without a segmentation).

Everything else that is wrong raises a one-line error naming the file and the
fix: a missing annotation file, invalid JSON or JSON without ``images`` /
``annotations`` / ``categories``, an annotation of an image id that has no
image entry or of an unknown category id, a malformed entry, an RLE of
another size than its image, an image file that is missing
(``FileNotFoundError``) or of another size than its entry says; a corrupt
image follows ``skip_corrupt`` (see :func:`cnn_jax.data.image_folder.decode_or_skip`).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from cnn_jax.data.annotations import IGNORE, Annotated, pack
from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.data.image_folder import _warn_skipped, decode_or_skip

_REQUIRED_KEYS = ('images', 'annotations', 'categories')


def clip_boxes(boxes: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
  """Clips pixel corners ``(y0, x0, y1, x1)`` to an ``hw`` image and drops bad ones.

  Returns:
    ``(kept boxes (M, 4) float32, keep (K,) bool)``: a box is dropped when a
    value is not finite, it has no positive height and width, or nothing of it
    is left after clipping (it lay outside the image).
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  h, w = hw
  finite = np.isfinite(boxes).all(axis=1)
  positive = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  clipped = np.clip(np.nan_to_num(boxes), 0.0, [h, w, h, w])
  inside = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
  keep = finite & positive & inside
  return clipped[keep].astype(np.float32), keep


def warn_skipped_boxes(count: int, source: str | os.PathLike) -> None:
  """The one warning per split for boxes :func:`clip_boxes` dropped."""
  if count:
    warnings.warn(f'{count} boxes with non-positive size or outside the image were skipped in '
                  f'{source}.', stacklevel=3)


def load_coco(root: str | os.PathLike, split: str, *, ann_file: str | os.PathLike | None = None,
              image_size: int, max_boxes: int, channels: int = 3, skip_corrupt: bool = False,
              masks: bool = False, instance_masks: bool = False) -> ArrayDataset:
  """Reads ``<root>/<split>/`` and its instances JSON into one letterboxed split.

  Args:
    root: dataset folder (see the module docstring for the layout).
    split: image folder name, e.g. ``'train2017'``.
    ann_file: the instances JSON, relative to ``root`` or absolute; default
      ``annotations/instances_<split>.json``.
    image_size: canvas side S of the letterbox.
    max_boxes: boxes kept per image K (the largest), padded with label -1.
    channels: 3 (RGB) or 1 (grayscale).
    skip_corrupt: skip images Pillow cannot decode (one counted warning)
      instead of raising.
    masks: also paint the semantic ``masks`` (rule in the module docstring).
    instance_masks: also keep one mask per box, ``instance_masks``.

  Returns:
    ``ArrayDataset`` with images (N, S, S, C) uint8, labels (N,) int32 (the
    largest box's class, else 0), class names from ``categories`` and extras
    ``boxes`` (N, K, 4) float32 in [0, 1], ``box_labels`` (N, K) int32 (-1
    padding), ``box_crowd`` (N, K) bool (``iscrowd``), ``box_difficult``
    (N, K) bool (all False), ``image_id`` (N,) int32 (the COCO id),
    ``image_scale`` (N,) float32, ``orig_hw`` (N, 2) int32 and, if asked,
    ``masks`` (N, S, S) int32 and ``instance_masks`` (N, K, S, S) bool.

  Raises:
    FileNotFoundError: the annotation file or an image file is missing.
    ValueError: bad JSON or annotations (see the module docstring), or a
      corrupt image without ``skip_corrupt``.
  """
  root = Path(root).expanduser()
  ann_path = root / (ann_file if ann_file else Path('annotations') / f'instances_{split}.json')
  data = _read_json(ann_path)
  label_of, class_names = _categories(data['categories'], ann_path)
  if masks and len(class_names) >= IGNORE:
    raise ValueError(f'{ann_path}: {len(class_names)} categories do not fit a semantic mask '
                     f'(labels 1..{IGNORE - 1}, {IGNORE} is ignore); train with boxes only or '
                     'merge categories.')
  entries = _images(data['images'], ann_path)
  by_image = _group(data['annotations'], entries, label_of, ann_path,
                    keep_segmentation=masks or instance_masks)
  del data  # the parsed JSON can be several GB for COCO train
  counts = {'boxes': 0}
  skipped: list[str] = []
  records = _records(entries, by_image, root / split, ann_path, counts, skipped,
                     channels=channels, skip_corrupt=skip_corrupt, masks=masks,
                     instance_masks=instance_masks)
  ds = pack(records, class_names, size=image_size, max_boxes=max_boxes, source=str(ann_path))
  warn_skipped_boxes(counts['boxes'], ann_path)
  if skipped:
    _warn_skipped(skipped, root / split)
  return ds


def _read_json(path: Path) -> dict[str, Any]:
  if not path.is_file():
    raise FileNotFoundError(
        f'COCO annotation file {path} not found; set --config.data.train_ann= (or '
        '--config.data.eval_ann= for the eval split) to the instances JSON, relative to '
        'data.root or absolute.')
  try:
    with open(path, encoding='utf-8') as f:
      data = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise ValueError(f'{path} is not valid JSON ({e}); re-export the COCO annotation file.'
                     ) from e
  if not isinstance(data, dict):
    raise ValueError(f'{path} holds a JSON {type(data).__name__}, not a COCO object with keys '
                     f'{", ".join(_REQUIRED_KEYS)}; point data.train_ann at an instances JSON.')
  for key in _REQUIRED_KEYS:
    if not isinstance(data.get(key), list):
      raise ValueError(f'{path} is not a COCO instances file: key {key!r} is missing or not a '
                       'list; point data.train_ann at an instances_<split>.json.')
  return data


def _field(entry: Any, key: str, what: str, path: Path) -> Any:
  """``entry[key]``, or a one-line error naming the entry and the file."""
  try:
    return entry[key]
  except (KeyError, TypeError, IndexError):
    ident = entry.get('id', '?') if isinstance(entry, dict) else '?'
    raise ValueError(f'{path}: {what} {ident} has no {key!r} field; fix the entry.') from None


def _categories(categories: list, path: Path) -> tuple[dict[int, int], tuple[str, ...]]:
  """``(category id -> contiguous label in sorted id order, names in label order)``."""
  named = {}
  for c in categories:
    cid = int(_field(c, 'id', 'category', path))
    if cid in named:
      raise ValueError(f'{path}: category id {cid} appears twice in categories; fix the file.')
    named[cid] = str(_field(c, 'name', 'category', path))
  ids = sorted(named)
  return {cid: i for i, cid in enumerate(ids)}, tuple(named[cid] for cid in ids)


def _images(images: list, path: Path) -> list[dict[str, Any]]:
  seen = set()
  for entry in images:
    iid = int(_field(entry, 'id', 'image', path))
    _field(entry, 'file_name', 'image', path)
    if iid in seen:
      raise ValueError(f'{path}: image id {iid} appears twice in images; fix the file.')
    seen.add(iid)
  return images


def _group(annotations: list, images: list[dict[str, Any]], label_of: dict[int, int],
           path: Path, *, keep_segmentation: bool) -> dict[int, list[tuple]]:
  """Image id -> ``(bbox xywh, label, crowd, segmentation or None, annotation id)`` tuples.

  Everything is checked here, before any image is decoded, so a bad file fails
  in seconds rather than after an hour of decoding.
  """
  by_image: dict[int, list[tuple]] = {int(e['id']): [] for e in images}
  for ann in annotations:
    aid = ann.get('id', '?') if isinstance(ann, dict) else '?'
    iid = int(_field(ann, 'image_id', 'annotation', path))
    cid = int(_field(ann, 'category_id', 'annotation', path))
    bbox = _field(ann, 'bbox', 'annotation', path)
    if iid not in by_image:
      raise ValueError(f'{path}: annotation {aid} refers to image_id {iid}, which has no entry in '
                       "'images'; add the image entry or remove the annotation.")
    if cid not in label_of:
      raise ValueError(f'{path}: annotation {aid} has category_id {cid}, which is not in '
                       f"'categories' (ids {sorted(label_of)}); add the category or fix the "
                       'annotation.')
    try:
      x, y, w, h = (float(v) for v in bbox)
    except (TypeError, ValueError):
      raise ValueError(f'{path}: annotation {aid} has bbox {bbox!r}, expected [x, y, width, '
                       'height] numbers; fix the annotation.') from None
    segmentation = ann.get('segmentation') if keep_segmentation else None
    by_image[iid].append(((x, y, w, h), label_of[cid], bool(ann.get('iscrowd', 0)),
                          segmentation, aid))
  return by_image


def _records(entries: list[dict[str, Any]], by_image: dict[int, list[tuple]], image_dir: Path,
             ann_path: Path, counts: dict[str, int], skipped: list[str], *, channels: int,
             skip_corrupt: bool, masks: bool, instance_masks: bool) -> Iterator[Annotated]:
  """Decodes the images one at a time (``pack`` letterboxes each as it comes)."""
  for entry in entries:
    iid = int(entry['id'])
    path = image_dir / entry['file_name']
    image = decode_or_skip(path, skipped, channels=channels, skip_corrupt=skip_corrupt)
    if image is None:
      continue
    hw = image.shape[:2]
    stated = (entry.get('height'), entry.get('width'))
    if None not in stated and tuple(int(v) for v in stated) != hw:
      raise ValueError(f'image {path} is {hw[1]}x{hw[0]} (width x height) but {ann_path} says '
                       f'{stated[1]}x{stated[0]} for image id {iid}; fix its width/height or '
                       'the file.')
    anns = by_image[iid]
    xywh = np.array([a[0] for a in anns], np.float64).reshape(-1, 4)
    corners = np.stack([xywh[:, 1], xywh[:, 0], xywh[:, 1] + xywh[:, 3],
                        xywh[:, 0] + xywh[:, 2]], axis=1)
    # A non-positive width or height clips to a valid-looking box, so test first.
    corners[(xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)] = np.nan
    boxes, keep = clip_boxes(corners, hw)
    counts['boxes'] += int((~keep).sum())
    anns = [a for a, k in zip(anns, keep) if k]
    labels = np.array([a[1] for a in anns], np.int32)
    crowd = np.array([a[2] for a in anns], bool)
    inst = ([_decode_segmentation(a[3], hw, ann_path, a[4]) for a in anns]
            if masks or instance_masks else None)
    yield Annotated(
        image=image, boxes=boxes, labels=labels, image_id=iid, crowd=crowd,
        mask=_paint(inst, boxes, labels, crowd, hw) if masks else None,
        instance_masks=_stack_instances(inst, hw) if instance_masks else None)


def _stack_instances(inst: list[np.ndarray | None], hw: tuple[int, int]) -> np.ndarray:
  out = np.zeros((len(inst), *hw), bool)
  for j, m in enumerate(inst):
    if m is not None:
      out[j] = m
  return out


def _decode_segmentation(seg: Any, hw: tuple[int, int], path: Path,
                         aid: Any) -> np.ndarray | None:
  """One annotation's (H, W) bool mask, or None when it has no segmentation."""
  from pycocotools import mask as mask_utils  # only needed for masks
  h, w = hw
  if not seg:
    return None
  if isinstance(seg, list):
    # Fewer than 3 points is no area; pycocotools would read a 4-number
    # polygon as a bbox.
    polygons = [[float(v) for v in p] for p in seg if isinstance(p, list) and len(p) >= 6]
    if not polygons:
      return None
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
  elif isinstance(seg, dict) and 'counts' in seg and 'size' in seg:
    if [int(v) for v in seg['size']] != [h, w]:
      raise ValueError(f'{path}: annotation {aid} has an RLE of size {seg["size"]} (height, '
                       f'width) on an image of {h}x{w}; fix the annotation or the image entry.')
    if isinstance(seg['counts'], list):
      # pycocotools does not check the run lengths and would read past them.
      if sum(seg['counts']) != h * w:
        raise ValueError(f'{path}: annotation {aid} has uncompressed RLE counts summing to '
                         f'{sum(seg["counts"])}, not height*width={h * w}; fix the annotation.')
      rle = mask_utils.frPyObjects(seg, h, w)
    else:
      rle = seg
  else:
    raise ValueError(f'{path}: annotation {aid} has a segmentation that is neither polygons nor '
                     'an RLE dict with counts and size; fix the annotation.')
  return mask_utils.decode(rle).astype(bool)


def _paint(inst: list[np.ndarray | None], boxes: np.ndarray, labels: np.ndarray,
           crowd: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  """The semantic mask of one image (painting rule in the module docstring)."""
  mask = np.zeros(hw, np.uint8)
  unknown = [j for j, m in enumerate(inst) if crowd[j] or m is None]
  known = [j for j, m in enumerate(inst) if not (crowd[j] or m is None)]
  known.sort(key=lambda j: -int(inst[j].sum()))  # stable: ties keep the JSON order
  for j in unknown:
    if inst[j] is None:
      y0, x0 = (math.floor(v) for v in boxes[j, :2])
      y1, x1 = (math.ceil(v) for v in boxes[j, 2:])
      mask[y0:y1, x0:x1] = IGNORE
    else:
      mask[inst[j]] = IGNORE
  for j in known:
    mask[inst[j]] = labels[j] + 1
  return mask
