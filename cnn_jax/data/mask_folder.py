"""Image and label-mask folders (semantic segmentation) read into one packed split.

Layout::

  root/
    classes.txt          # optional: the foreground classes, line 1 is label 1
    train/
      images/  0001.jpg 0002.png ...     # any of image_folder.IMAGE_EXTENSIONS
      masks/   0001.png 0002.png ...     # same stem, always PNG
    val/
      images/ ...
      masks/ ...

A mask is a single-channel index PNG (mode ``L``) or a palette PNG (mode ``P``,
whose indices are read, not its colours): value ``v`` is label ``v``, 0 is
background and 255 is ignore (void), the convention of
:mod:`cnn_jax.data.annotations`; PASCAL VOC's ``SegmentationClass`` PNGs
already follow it. Class names come from ``classes.txt`` (blank lines
skipped); without it they are ``class_1 .. class_C``, C the largest label seen
in the split, so train and eval splits should then hold the same largest label,
or better, provide ``classes.txt``.

There are no boxes: every image gets ``max_boxes`` padding boxes, and labels
are all 0. An image without a mask, a mask without an image, a mask of
another size than its image, an RGB mask, or a label above the number of
classes (other than 255) raise a one-line error naming the file; a corrupt
image follows ``skip_corrupt`` (:func:`cnn_jax.data.image_folder.decode_or_skip`),
a corrupt mask always raises (a label is not skipped silently).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from cnn_jax.data.annotations import IGNORE, Annotated, pack
from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.data.image_folder import IMAGE_EXTENSIONS, _warn_skipped, decode_or_skip

# Modes whose pixels are label values: palette indices, 8/16/32-bit gray, bilevel.
_INDEX_MODES = frozenset({'P', 'L', '1', 'I', 'I;16', 'I;16B', 'I;16L'})


def read_label_png(path: str | os.PathLike) -> np.ndarray:
  """A label PNG (index or palette) as (H, W) uint8 values, checked to fit 0..255.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    ValueError: it cannot be decoded, is not single-channel (e.g. an RGB
      colour mask), or holds values above 255.
  """
  try:
    with Image.open(path) as img:
      img.load()
      if img.mode not in _INDEX_MODES:
        raise ValueError(f'mask {path} is a {img.mode} image; expected a single-channel index '
                         'or palette PNG whose value v is label v (0 background, 255 ignore): '
                         'convert colour masks to indices first.')
      values = np.asarray(img)
  except FileNotFoundError:
    raise FileNotFoundError(f'mask file {path} does not exist.') from None
  except (OSError, SyntaxError, EOFError) as e:
    raise ValueError(f'cannot decode mask {path} ({type(e).__name__}: {e}); fix or re-export '
                     'it.') from e
  if values.dtype != np.uint8:
    if values.size and (values.min() < 0 or values.max() > IGNORE):
      raise ValueError(f'mask {path} holds values {values.min()}..{values.max()}; labels must be '
                       f'0..{IGNORE} ({IGNORE} = ignore).')
    values = values.astype(np.uint8)
  return values


def check_mask_size(mask: np.ndarray, image: np.ndarray, mask_path: Path,
                    image_path: Path) -> None:
  """One-line error when a mask does not cover its image pixel for pixel."""
  if mask.shape[:2] != image.shape[:2]:
    raise ValueError(f'mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image '
                     f'{image_path} is {image.shape[1]}x{image.shape[0]} (width x height); '
                     'masks must have their image\'s size.')


def _stems(folder: Path, extensions: frozenset[str]) -> dict[str, Path]:
  """Stem -> file of the files in ``folder`` with one of ``extensions`` (no hidden files)."""
  found: dict[str, Path] = {}
  for entry in os.scandir(folder):
    stem, ext = os.path.splitext(entry.name)
    if entry.name.startswith('.') or ext.lower() not in extensions or not entry.is_file():
      continue
    if stem in found:
      raise ValueError(f'{folder} holds both {found[stem].name} and {entry.name}; keep one file '
                       f'per stem.')
    found[stem] = folder / entry.name
  return found


def list_mask_folder(root: str | os.PathLike, split: str) -> list[tuple[Path, Path]]:
  """``(image, mask)`` pairs of ``root/<split>/``, sorted by stem.

  Raises:
    FileNotFoundError: the split, images or masks folder is missing.
    ValueError: an image without a mask or a mask without an image, or none.
  """
  split_dir = Path(root).expanduser() / split
  for sub in ('images', 'masks'):
    if not (split_dir / sub).is_dir():
      raise FileNotFoundError(f'{split_dir / sub} does not exist; a mask folder is laid out as '
                              'root/<split>/images/<stem>.jpg and root/<split>/masks/<stem>.png.')
  images = _stems(split_dir / 'images', IMAGE_EXTENSIONS)
  masks = _stems(split_dir / 'masks', frozenset({'.png'}))
  for stem, path in sorted(images.items()):
    if stem not in masks:
      raise ValueError(f'image {path} has no mask {split_dir / "masks" / stem}.png; add it or '
                       'remove the image.')
  for stem, path in sorted(masks.items()):
    if stem not in images:
      raise ValueError(f'mask {path} has no image of stem {stem!r} in {split_dir / "images"}; '
                       'add it or remove the mask.')
  if not images:
    raise ValueError(f'{split_dir / "images"} holds no images.')
  return [(images[s], masks[s]) for s in sorted(images)]


def _read_classes(root: Path) -> tuple[str, ...] | None:
  path = root / 'classes.txt'
  if not path.is_file():
    return None
  names = tuple(line.strip() for line in path.read_text(encoding='utf-8').splitlines()
                if line.strip())
  if not names:
    raise ValueError(f'{path} names no classes; write one foreground class per line (line 1 '
                     'is label 1) or delete the file.')
  return names


def load_mask_folder(root: str | os.PathLike, split: str, *, image_size: int, max_boxes: int,
                     channels: int = 3, skip_corrupt: bool = False) -> ArrayDataset:
  """Reads ``root/<split>/images`` and ``masks`` into one letterboxed split.

  Args:
    root: dataset folder (layout in the module docstring).
    split: split folder name, e.g. ``'train'``.
    image_size: canvas side S of the letterbox.
    max_boxes: K padding boxes per image (for the common batch fields).
    channels: 3 (RGB) or 1 (grayscale).
    skip_corrupt: skip images Pillow cannot decode (one counted warning).

  Returns:
    ``ArrayDataset`` with images (N, S, S, C) uint8, labels (N,) int32 (all 0),
    the foreground class names and extras ``masks`` (N, S, S) int32 (255 on
    the letterbox padding), ``boxes`` (N, K, 4) float32 (all 0),
    ``box_labels`` (N, K) int32 (all -1), ``box_crowd`` / ``box_difficult``
    (N, K) bool, ``image_id`` (N,) int32 (the index in stem order),
    ``image_scale`` (N,) float32 and ``orig_hw`` (N, 2) int32.

  Raises:
    FileNotFoundError: missing folders.
    ValueError: unpaired files, bad masks (see the module docstring), or a
      corrupt image without ``skip_corrupt``.
  """
  root = Path(root).expanduser()
  pairs = list_mask_folder(root, split)
  names = _read_classes(root)
  seen = {'max': 0}
  skipped: list[str] = []
  records = _records(pairs, names, seen, skipped, channels=channels, skip_corrupt=skip_corrupt)
  ds = pack(records, names or (), size=image_size, max_boxes=max_boxes, source=str(root / split))
  if skipped:
    _warn_skipped(skipped, root / split / 'images')
  if names is None:
    # Known only once every mask is read; pack stores the names, nothing more.
    ds = ArrayDataset(ds.images, ds.labels,
                      tuple(f'class_{c}' for c in range(1, seen['max'] + 1)), ds.extras)
  return ds


def _records(pairs: list[tuple[Path, Path]], names: tuple[str, ...] | None, seen: dict[str, int],
             skipped: list[str], *, channels: int, skip_corrupt: bool) -> Iterator[Annotated]:
  for index, (image_path, mask_path) in enumerate(pairs):
    image = decode_or_skip(image_path, skipped, channels=channels, skip_corrupt=skip_corrupt)
    if image is None:
      continue
    mask = read_label_png(mask_path)
    check_mask_size(mask, image, mask_path, image_path)
    labels = mask[mask != IGNORE]
    top = int(labels.max(initial=0))
    if names is not None and top > len(names):
      raise ValueError(f'mask {mask_path} holds label {top} but classes.txt names '
                       f'{len(names)} classes (labels 1..{len(names)}, {IGNORE} ignore); fix the '
                       'mask or add the class.')
    seen['max'] = max(seen['max'], top)
    yield Annotated(image=image, boxes=np.zeros((0, 4), np.float32),
                    labels=np.zeros((0,), np.int32), image_id=index, mask=mask)
