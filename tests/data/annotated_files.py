"""Synthetic scenes written to disk as COCO, PASCAL VOC and mask-folder datasets.

The tests' stand-ins for real annotated photos: the shapes of
:func:`cnn_jax.data.synthetic.render_scenes`, saved as files in each format's
layout with their boxes and per-object masks, so a detector or an FCN can
train from them through the normal loop.
"""

import json
import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from cnn_jax.data.synthetic import render_scenes
from cnn_jax.data.voc import VOC_CLASSES

NUM_CLASSES = 3  # shape kinds drawn
# Class lists are VOC's 20 in every format, so the detectors (and FCNs) of every
# format are one compiled program, shared through the persistent cache.
CLASS_NAMES = VOC_CLASSES


def _scenes(n: int, seed: int, size: int = 40):
  return render_scenes(n, image_size=size, num_classes=NUM_CLASSES, objects_per_image=(1, 2),
                       seed=seed, instance_masks=True)


def _pixel_boxes(boxes: np.ndarray, size: int) -> np.ndarray:
  return np.round(boxes * size).astype(int)  # (K, 4) y0, x0, y1, x1, exclusive ends


def write_coco(root: pathlib.Path, split: str, n: int, seed: int = 0,
               class_names: Sequence[str] = CLASS_NAMES) -> pathlib.Path:
  """``root/<split>/*.png`` and ``root/annotations/instances_<split>.json`` (RLE masks).

  ``class_names``: the file's categories (the scenes draw the first ``NUM_CLASSES``).
  """
  s = _scenes(n, seed)
  size = s['images'].shape[1]
  (root / split).mkdir(parents=True, exist_ok=True)
  images, anns = [], []
  for i in range(n):
    Image.fromarray(s['images'][i]).save(root / split / f'{i:04d}.png')
    images.append({'id': 1000 + i, 'file_name': f'{i:04d}.png', 'height': size, 'width': size})
    for k in np.flatnonzero(s['box_labels'][i] >= 0):
      y0, x0, y1, x1 = _pixel_boxes(s['boxes'][i, k], size)
      rle = mask_utils.encode(np.asfortranarray(s['instance_masks'][i, k].astype(np.uint8)))
      rle['counts'] = rle['counts'].decode('ascii')
      anns.append({'id': len(anns) + 1, 'image_id': 1000 + i,
                   'category_id': 10 * (int(s['box_labels'][i, k]) + 1),
                   'bbox': [int(x0), int(y0), int(x1 - x0), int(y1 - y0)], 'iscrowd': 0,
                   'area': int(s['instance_masks'][i, k].sum()), 'segmentation': rle})
  cats = [{'id': 10 * (c + 1), 'name': n} for c, n in enumerate(class_names)]
  path = root / 'annotations' / f'instances_{split}.json'
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps({'images': images, 'annotations': anns, 'categories': cats}))
  return path


def write_voc(root: pathlib.Path, split: str, n: int, seed: int = 0) -> None:
  """A VOC year folder: JPEGImages, Annotations, SegmentationClass and both split lists."""
  s = _scenes(n, seed)
  size = s['images'].shape[1]
  for sub in ('ImageSets/Main', 'ImageSets/Segmentation', 'Annotations', 'JPEGImages',
              'SegmentationClass'):
    (root / sub).mkdir(parents=True, exist_ok=True)
  ids = [f'{split}{i:04d}' for i in range(n)]
  for i, name in enumerate(ids):
    Image.fromarray(s['images'][i]).save(root / 'JPEGImages' / f'{name}.jpg', quality=95)
    objects = ''
    for k in np.flatnonzero(s['box_labels'][i] >= 0):
      y0, x0, y1, x1 = _pixel_boxes(s['boxes'][i, k], size)
      objects += (f'<object><name>{VOC_CLASSES[s["box_labels"][i, k]]}</name>'
                  f'<difficult>{int(k == 1)}</difficult><bndbox><xmin>{x0 + 1}</xmin>'
                  f'<ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>')
    (root / 'Annotations' / f'{name}.xml').write_text(
        f'<annotation><size><width>{size}</width><height>{size}</height></size>{objects}'
        '</annotation>')
    Image.fromarray(s['masks'][i].astype(np.uint8), 'L').save(
        root / 'SegmentationClass' / f'{name}.png')
  for sub in ('Main', 'Segmentation'):
    (root / 'ImageSets' / sub / f'{split}.txt').write_text('\n'.join(ids) + '\n')


def write_mask_folder(root: pathlib.Path, split: str, n: int, seed: int = 0) -> None:
  """``root/<split>/{images,masks}/`` and ``root/classes.txt``."""
  s = _scenes(n, seed)
  for sub in ('images', 'masks'):
    (root / split / sub).mkdir(parents=True, exist_ok=True)
  for i in range(n):
    Image.fromarray(s['images'][i]).save(root / split / 'images' / f'{i:04d}.jpg', quality=95)
    Image.fromarray(s['masks'][i].astype(np.uint8), 'L').save(
        root / split / 'masks' / f'{i:04d}.png')
  (root / 'classes.txt').write_text('\n'.join(CLASS_NAMES) + '\n')


def load_recording_warnings(loader, root, split='train', **kwargs):
  """``(loader(root, split, **kwargs), [warning messages])``."""
  import warnings
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    ds = loader(root, split, **kwargs)
  return ds, [str(w.message) for w in caught]
