"""Images with landmark points from a CSV file: ``<root>/<split>/landmarks.csv``.

The CSV's header is ``image`` then two columns per landmark, ``<name>_x`` and
``<name>_y``, in pixels of the original image (``x`` right, ``y`` down,
pixel ``j`` spanning ``[j, j + 1)``); each row names an image file relative
to the split folder::

  image,left_eye_x,left_eye_y,right_eye_x,right_eye_y,...
  faces/0001.jpg,31.5,40.0,58.0,39.5,...

Images are resized (not letterboxed) to ``image_size`` x ``image_size``;
points are stored as fractions of the width and height, which that resize
leaves unchanged. Landmark names come from the header (``task.names`` must
list them in the same order).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.data.image_folder import _warn_skipped, convert_array, decode_or_skip

CSV_NAME = 'landmarks.csv'


def read_landmark_csv(path: str | os.PathLike) -> tuple[tuple[str, ...], list[str], np.ndarray]:
  """``(names, image paths, points (N, K, 2) pixels)`` of one landmarks CSV.

  Raises:
    FileNotFoundError: no such file.
    ValueError: a bad header, or a row with the wrong field count or a
      non-numeric coordinate (naming the file and line).
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'landmark file {path} is missing; a landmark_folder split needs '
                            f'<root>/<split>/{CSV_NAME} (see cnn_jax/data/landmark_folder.py).')
  try:
    with open(path, newline='', encoding='utf-8') as f:
      rows = list(csv.reader(f))
  except UnicodeDecodeError as e:
    raise ValueError(f'{path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as '
                     'UTF-8.') from None
  header = [h.strip() for h in rows[0]] if rows else []
  names = tuple(h[:-2] for h in header[1::2])
  if (len(header) < 3 or len(header) % 2 == 0 or header[0] != 'image'
      or header[1::2] != [f'{n}_x' for n in names] or header[2::2] != [f'{n}_y' for n in names]):
    raise ValueError(f'{path}: the header must be image,<name>_x,<name>_y,... ; got '
                     f'{",".join(header) or "an empty file"}.')
  files, points = [], []
  for line, row in enumerate(rows[1:], start=2):
    if not row:
      continue
    if len(row) != len(header):
      raise ValueError(f'{path}:{line}: {len(row)} fields, the header has {len(header)}.')
    try:
      points.append(np.asarray(row[1:], np.float64).reshape(-1, 2))
    except ValueError:
      raise ValueError(f'{path}:{line}: a coordinate is not a number: {row[1:]}.') from None
    files.append(row[0].strip())
  if not files:
    raise ValueError(f'{path} lists no images.')
  return names, files, np.stack(points)


def load_landmark_folder(root: str | os.PathLike, split: str, *, image_size: int,
                         channels: int = 3, skip_corrupt: bool = False) -> ArrayDataset:
  """One split as images (N, S, S, C) uint8 and ``extras['landmarks']`` (N, K, 2) in [0, 1].

  ``class_names`` are the landmark names (``labels`` are all 0). A missing
  or corrupt image is the image readers' error (or skipped with
  ``skip_corrupt``); a point outside its image is an error naming the row.
  """
  split_dir = Path(root) / split
  names, files, points = read_landmark_csv(split_dir / CSV_NAME)
  images, kept, skipped = [], [], []
  for i, name in enumerate(files):
    image = decode_or_skip(split_dir / name, skipped, channels=channels,
                           skip_corrupt=skip_corrupt)
    if image is None:
      continue
    h, w = image.shape[:2]
    p = points[i] / np.array([w, h])
    if np.any(p < 0) or np.any(p > 1):
      raise ValueError(f'{split_dir / CSV_NAME}:{i + 2}: a landmark of {name} lies outside its '
                       f'{w}x{h} image; fix the row or crop the image.')
    images.append(convert_array(image, image_size, channels))
    kept.append(p.astype(np.float32))
  if skipped:
    _warn_skipped(skipped, split_dir)
  if not images:
    raise ValueError(f'no readable image in {split_dir} (all {len(files)} skipped as corrupt).')
  return ArrayDataset(np.stack(images), np.zeros(len(images), np.int32), names,
                      {'landmarks': np.stack(kept)})
