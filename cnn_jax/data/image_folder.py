"""Image folders (``root/<split>/<class>/*.jpg``) decoded once into an :class:`ArrayDataset`.

Layout::

  root/
    train/
      cat/  0001.jpg 0002.png ...
      dog/  ...
    test/
      cat/  ...

Class ids follow the sorted class-folder names unless ``class_names`` fixes the
order (e.g. to match a model trained on another split). Stray files (hidden
files, ``.DS_Store``, notes, nested folders) are ignored.

The first :func:`load_image_folder` call decodes every file with Pillow (in a
process pool on machines with more than 2 CPUs) and writes the result to an
``.npz`` cache; later calls with the same files (paths, sizes and modification
times), ``image_size``, ``channels`` and class order load that cache instead. Any change to the folder gives a new cache
key, so a stale cache is never read.

Colour handling (``channels``): every Pillow mode is accepted. Images with
transparency (RGBA, LA, palette with a transparent colour) are composited on
black first, so transparent pixels are black rather than whatever colour the
encoder left under them; 16-bit images are scaled to 8 bits. ``channels=3``
gives RGB, ``channels=1`` the ITU-R 601 luma Pillow's ``convert('L')`` computes.
"""

from __future__ import annotations

import concurrent.futures
import glob
import hashlib
import io
import json
import logging
import multiprocessing
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile

from cnn_jax.atomic_files import write_atomically
from cnn_jax.data.dataset import ArrayDataset

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({'.jpg', '.jpeg', '.png', '.bmp', '.gif', '.webp', '.tif', '.tiff'})
ImageSize = Union[int, tuple[int, int], None]

# Bump whenever decoding or the cache layout changes, so old caches are ignored.
CACHE_FORMAT_VERSION = 1
_SHOW_FILES = 5


def default_cache_dir() -> Path:
  """``$CNN_JAX_CACHE/image_folder``, else ``~/.cache/cnn_jax/image_folder``."""
  base = os.environ.get('CNN_JAX_CACHE')
  return (Path(base).expanduser() if base else Path.home() / '.cache' / 'cnn_jax') / 'image_folder'


def _is_image(entry: os.DirEntry) -> bool:
  return (not entry.name.startswith('.') and entry.is_file()
          and os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS)


def _subdirs(path: Path) -> list[str]:
  return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith('.'))


def list_image_folder(root: str | os.PathLike, split: str, *,
                      class_names: Sequence[str] | None = None,
                      allow_empty_classes: bool = False
                      ) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
  """Lists the images of ``root/<split>/<class>/``.

  Args:
    root: dataset folder holding one sub-folder per split.
    split: split folder name, e.g. ``'train'``.
    class_names: fixes the class order (label ``i`` is ``class_names[i]``);
      every name must be a folder, and folders not named are an error. Default:
      the sorted folder names.
    allow_empty_classes: keep a class whose folder has no images instead of
      raising (its label then never occurs).

  Returns:
    ``(files, labels, class_names)``: files sorted by class then name, labels
    (N,) int32 aligned with ``files``, and the class names in label order.

  Raises:
    FileNotFoundError: ``root`` or ``root/split`` is missing.
    ValueError: no class folders, an empty class folder, or a ``class_names``
      that does not match the folders.
  """
  root = Path(root).expanduser()
  split_dir = root / split
  if not root.is_dir():
    raise FileNotFoundError(f'image folder root {root} does not exist; set data.root to a folder '
                            'laid out as root/<split>/<class>/<image>.')
  if not split_dir.is_dir():
    splits = ', '.join(_subdirs(root)) or 'none'
    raise FileNotFoundError(f'split folder {split_dir} does not exist (splits found in {root}: '
                            f'{splits}); pick one of them or create {split_dir}/<class>/.')
  found = _subdirs(split_dir)
  if class_names is None:
    names = tuple(found)
  else:
    names = tuple(str(c) for c in class_names)
    missing = [c for c in names if c not in found]
    extra = [c for c in found if c not in names]
    if len(set(names)) != len(names):
      raise ValueError(f'class_names has duplicates: {list(names)}.')
    if missing or extra:
      raise ValueError(f'class_names does not match the class folders of {split_dir}: missing '
                       f'folders {missing}, folders not in class_names {extra}; fix class_names '
                       'or the folders.')
  if not names:
    raise ValueError(f'{split_dir} has no class folders; expected {split_dir}/<class>/<image>.')

  files: list[Path] = []
  labels: list[int] = []
  for label, name in enumerate(names):
    class_dir = split_dir / name
    images = sorted(e.name for e in os.scandir(class_dir) if _is_image(e))
    if not images and not allow_empty_classes:
      raise ValueError(f'class folder {class_dir} has no images (extensions: '
                       f'{", ".join(sorted(IMAGE_EXTENSIONS))}); add images, remove the folder '
                       'or pass allow_empty_classes=True.')
    files.extend(class_dir / f for f in images)
    labels.extend([label] * len(images))
  if not files:
    raise ValueError(f'{split_dir} has no images in any class folder.')
  return files, np.asarray(labels, np.int32), names


def write_image_folder(ds: ArrayDataset, root: str | os.PathLike, split: str, *,
                       ext: str = '.jpg', quality: int = 90) -> Path:
  """Writes ``ds`` as ``root/<split>/<class>/<index><ext>`` (the layout read here); returns root.

  For small generated folders (tests, smoke runs). ``quality`` applies to JPEG.
  """
  root = Path(root).expanduser()
  for i, (image, label) in enumerate(zip(ds.images, ds.labels)):
    path = root / split / ds.class_names[int(label)] / f'{i:05d}{ext}'
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path, quality=quality)
  return root


# --------------------------------------------------------------------------- decoding

class CorruptImageError(ValueError):
  """Pillow could not open or fully decode an image file."""


def image_hw(image_size: ImageSize) -> tuple[int, int] | None:
  """``None``, or ``(h, w)`` from an int or a pair."""
  if image_size is None:
    return None
  if isinstance(image_size, int):
    hw = (image_size, image_size)
  else:
    hw = tuple(int(v) for v in image_size)
  if len(hw) != 2 or min(hw) < 1:
    raise ValueError(f'image_size must be a positive int or (height, width), got {image_size!r}.')
  return hw  # type: ignore[return-value]


def _check_channels(channels: int) -> None:
  if channels not in (1, 3):
    raise ValueError(f'channels must be 1 (grayscale) or 3 (RGB), got {channels!r}.')


def _to_8bit(img: Image.Image) -> Image.Image:
  # convert('L') clips 16/32-bit values at 255, which would turn most of a
  # 16-bit image white; rescale the full range instead.
  arr = np.asarray(img)
  if img.mode in ('I', 'I;16', 'I;16B', 'I;16L', 'I;16N'):
    arr = (arr.astype(np.float64) / 257.0).round()
  elif img.mode == 'F':
    arr = arr.astype(np.float64) * (255.0 if arr.max(initial=0) <= 1.0 else 1.0)
  return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), 'L')


def convert_image(img: Image.Image, image_size: ImageSize = None, channels: int = 3) -> np.ndarray:
  """A decoded Pillow image as (H, W, channels) uint8, optionally resized.

  Transparency is composited on black; the resize is Pillow's antialiased
  bilinear (an area-like average when shrinking) to ``image_size`` (h, w).
  """
  _check_channels(channels)
  hw = image_hw(image_size)
  if img.mode in ('I', 'F') or img.mode.startswith('I;16'):
    img = _to_8bit(img)
  if img.mode in ('RGBA', 'LA', 'PA', 'La', 'RGBa') or 'transparency' in img.info:
    rgba = img.convert('RGBA')
    img = Image.alpha_composite(Image.new('RGBA', rgba.size, (0, 0, 0, 255)), rgba)
  target = 'L' if channels == 1 else 'RGB'
  if img.mode != target:
    img = img.convert(target)
  if hw is not None and (img.height, img.width) != hw:
    img = img.resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
  arr = np.asarray(img, dtype=np.uint8)
  return arr[..., None] if arr.ndim == 2 else arr


def convert_array(image: np.ndarray, image_size: ImageSize = None,
                  channels: int | None = None) -> np.ndarray:
  """(H, W, C) or (H, W) uint8 array -> (H', W', channels) uint8 via :func:`convert_image`.

  ``channels=None`` keeps 1 or 3 channels as they are (4 becomes RGB).
  """
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if channels is None:
    channels = 1 if image.ndim == 2 else 3
  if image.ndim == 3 and image.shape[-1] == channels and image_hw(image_size) in (
      None, image.shape[:2]):
    return image.astype(np.uint8, copy=False)  # fast path: nothing to do
  if image.ndim == 2 and channels == 3 and image_hw(image_size) in (None, image.shape):
    return np.repeat(image[..., None], 3, axis=-1)  # exact, unlike a luma round trip
  return convert_image(Image.fromarray(image.astype(np.uint8, copy=False)), image_size, channels)


_warned_truncated = False


def decode_image(path: str | os.PathLike, image_size: ImageSize = None,
                 channels: int = 3, *, data: bytes | None = None) -> np.ndarray:
  """Decodes one file to (H, W, channels) uint8 (see :func:`convert_image`).

  ``data``: the file's encoded bytes (e.g. from a pack file,
  :mod:`cnn_jax.data.packed`), decoded instead of reading ``path``, which then
  only names the image in errors.

  Raises:
    CorruptImageError: Pillow cannot open it or it is truncated.
  """
  global _warned_truncated
  if ImageFile.LOAD_TRUNCATED_IMAGES and not _warned_truncated:
    # Some other library switched it on; truncated files then decode with a
    # grey tail instead of failing, and we cannot flag them.
    _warned_truncated = True
    warnings.warn('PIL.ImageFile.LOAD_TRUNCATED_IMAGES is enabled (by some other code), so '
                  'truncated images cannot be detected; set it back to False.', stacklevel=2)
  try:
    with Image.open(path if data is None else io.BytesIO(data)) as img:
      img.load()  # Image.open only reads the header; load() finds truncation.
      return convert_image(img, image_size, channels)
  except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
    if isinstance(e, FileNotFoundError):
      raise
    raise CorruptImageError(f'{path}: {type(e).__name__}: {e}') from e


_Job = tuple[str, ImageSize, int, Union[bytes, None]]  # (path or name, size, channels, bytes)


def _decode_or_error(args: _Job) -> np.ndarray | str:
  # Errors travel back as strings: a clear message, and nothing unpicklable
  # crosses the process boundary.
  path, image_size, channels, data = args
  try:
    return decode_image(path, image_size, channels, data=data)
  except CorruptImageError as e:
    return str(e)


def _decode_chunk(chunk: list[_Job]) -> list[np.ndarray | str]:
  return [_decode_or_error(a) for a in chunk]


def _default_workers() -> int:
  try:
    cpus = len(os.sched_getaffinity(0))
  except AttributeError:  # not on Linux
    cpus = os.cpu_count() or 1
  # On 2 (shared) CPUs a pool gained ~15% when the machine was idle and lost
  # when it was busy (CIFAR-10 test folder, 10k 32x32 JPEGs: 0.85 s in
  # process, 0.72-1.8 s with 2 processes), so small machines decode in process.
  return min(cpus, 16) if cpus > 2 else 0


def _decode_all(files: Sequence[Path | str], image_size: ImageSize, channels: int,
                num_workers: int | None, data: Sequence[bytes] | None = None):
  """Yields (index, array or error string) in file order.

  ``data``: the files' encoded bytes, aligned with ``files`` (which then only
  name them), instead of reading the files.
  """
  jobs = [(str(f), image_size, channels, None if data is None else data[i])
          for i, f in enumerate(files)]
  workers = _default_workers() if num_workers is None else num_workers
  workers = min(workers, len(jobs) // 64)  # a few dozen files are not worth a pool
  index = 0
  if workers > 1:
    # Processes, not threads: on small images (CIFAR's 32x32 JPEGs) most of
    # the time is Python-level Pillow work under the GIL, and 2 threads were
    # slower than one (10k files: in process 0.85 s, 2 threads 1.2-1.8 s,
    # 2 processes 0.72 s). 'spawn' because forking a process in which JAX
    # has started its threads can deadlock.
    chunk = max(16, min(512, len(jobs) // (workers * 8)))
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context('spawn'))
    try:
      futures = [pool.submit(_decode_chunk, jobs[i:i + chunk])
                 for i in range(0, len(jobs), chunk)]
      for fut in futures:
        for result in fut.result():
          yield index, result
          index += 1
    except concurrent.futures.process.BrokenProcessPool as e:
      # E.g. a script without an `if __name__ == '__main__':` guard, which
      # spawned workers re-run; decoding in this process still works.
      warnings.warn(f'image decoding worker processes failed ({e}); decoding the remaining '
                    f'{len(jobs) - index} images in this process. In a script, put the code under '
                    "`if __name__ == '__main__':`, or pass num_workers=0.", stacklevel=4)
    finally:
      pool.shutdown(wait=True, cancel_futures=True)
  for i in range(index, len(jobs)):
    yield i, _decode_or_error(jobs[i])


# --------------------------------------------------------------------------- cache

def _cache_paths(root: Path, split: str, files: list[Path], class_names: tuple[str, ...],
                 hw: tuple[int, int] | None, channels: int,
                 cache_dir: Path) -> tuple[Path, str]:
  """``(cache file, prefix shared by every cache of this folder and config)``."""
  config = json.dumps([CACHE_FORMAT_VERSION, str(root.resolve()), split, list(class_names),
                       hw, channels])
  content = hashlib.sha256(config.encode())
  split_dir = root / split
  for f in files:
    st = f.stat()
    content.update(f'{f.relative_to(split_dir).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n'
                   .encode())
  prefix = f'{root.resolve().name}-{split}-{hashlib.sha256(config.encode()).hexdigest()[:10]}'
  return cache_dir / f'{prefix}-{content.hexdigest()[:20]}.npz', prefix


def _read_cache(path: Path):
  try:
    with np.load(path, allow_pickle=False) as z:
      return z['images'], z['labels'], tuple(str(c) for c in z['class_names']), \
          [str(s) for s in z['skipped']]
  except FileNotFoundError:
    return None
  except Exception as e:  # noqa: BLE001 - any unreadable cache just means decode again
    warnings.warn(f'ignoring unreadable image cache {path} ({type(e).__name__}: {e}); '
                  'decoding the folder again.', stacklevel=3)
    return None


def save_npz_atomically(path: Path, **arrays: np.ndarray) -> None:
  """``np.savez(path, **arrays)`` (uncompressed), never leaving a half-written file."""
  write_atomically(path, lambda f: np.savez(f, **arrays))


def _write_cache(path: Path, prefix: str, images: np.ndarray, labels: np.ndarray,
                 class_names: tuple[str, ...], skipped: list[str]) -> None:
  save_npz_atomically(path, images=images, labels=labels,
                      class_names=np.asarray(class_names, dtype=str),
                      skipped=np.asarray(skipped, dtype=str))
  # Caches of older versions of this folder can never be hit again.
  for old in path.parent.glob(f'{glob.escape(prefix)}-*.npz'):
    if old != path:
      old.unlink(missing_ok=True)


# --------------------------------------------------------------------------- loading

def _corrupt_error(message: str) -> CorruptImageError:
  return CorruptImageError(f'cannot decode image {message}; fix or delete the file, or pass '
                           'skip_corrupt=True (config data.skip_corrupt) to skip bad files.')


def _warn_skipped(skipped: list[str], split_dir: Path) -> None:
  shown = '; '.join(m.replace(f'{split_dir}{os.sep}', '') for m in skipped[:_SHOW_FILES])
  shown += '; ...' if len(skipped) > _SHOW_FILES else ''
  warnings.warn(f'skipped {len(skipped)} corrupt image(s) in {split_dir}: {shown}', stacklevel=3)


def decode_or_skip(path: str | os.PathLike, skipped: list[str], *, channels: int = 3,
                   skip_corrupt: bool = False) -> np.ndarray | None:
  """Decodes one file at its native size, applying the ``skip_corrupt`` rule.

  For readers that decode file by file (COCO, VOC, mask folders): a corrupt
  file raises the same error as :func:`load_image_folder`, or, with
  ``skip_corrupt``, is appended to ``skipped`` (report them once with
  :func:`_warn_skipped`) and gives None.

  Raises:
    FileNotFoundError: ``path`` does not exist (naming it and its folder).
    CorruptImageError: Pillow cannot decode it and ``skip_corrupt`` is False.
  """
  try:
    return decode_image(path, None, channels)
  except FileNotFoundError as e:
    raise FileNotFoundError(f'image file {path} is missing (images are read from '
                            f'{Path(path).parent}); check data.root and the split, or remove '
                            'its entry from the annotations.') from e
  except CorruptImageError as e:
    if not skip_corrupt:
      raise _corrupt_error(str(e)) from e
    skipped.append(str(e))
    return None


def load_image_folder(root: str | os.PathLike, split: str = 'train', *,
                      image_size: ImageSize = None, channels: int = 3,
                      class_names: Sequence[str] | None = None,
                      cache_dir: str | os.PathLike | None = None, cache: bool = True,
                      skip_corrupt: bool = False, num_workers: int | None = None,
                      allow_empty_classes: bool = False) -> ArrayDataset:
  """Decodes ``root/<split>/<class>/*`` into memory, through an on-disk cache.

  Args:
    root: dataset folder; see :func:`list_image_folder` for the layout.
    split: split folder name.
    image_size: resize every image to ``(h, w)`` (an int means square). None
      keeps the native size, which must then be the same for all images.
    channels: 1 (grayscale) or 3 (RGB); any input mode is converted (see the
      module docstring for transparency).
    class_names: fixed class order; default sorted folder names.
    cache_dir: where decoded arrays are cached; default
      :func:`default_cache_dir` (``$CNN_JAX_CACHE/image_folder`` or
      ``~/.cache/cnn_jax/image_folder``).
    cache: False neither reads nor writes the cache.
    skip_corrupt: skip files Pillow cannot decode (one warning with the count)
      instead of raising.
    num_workers: decoding processes; default one per available CPU (at most
      16) on machines with more than 2 CPUs. 0 or 1 decodes in this process,
      as do folders under 128 files.
    allow_empty_classes: see :func:`list_image_folder`.

  Returns:
    ``ArrayDataset`` with images (N, H, W, channels) uint8 and labels (N,) int32.

  Raises:
    FileNotFoundError: missing root or split folder.
    ValueError: bad layout, a corrupt file (without ``skip_corrupt``), or mixed
      native sizes without ``image_size``.
  """
  _check_channels(channels)
  hw = image_hw(image_size)
  root = Path(root).expanduser()
  files, labels, names = list_image_folder(root, split, class_names=class_names,
                                           allow_empty_classes=allow_empty_classes)
  split_dir = root / split

  cache_path = prefix = None
  if cache:
    cache_path, prefix = _cache_paths(root, split, files, names, hw, channels,
                                      Path(cache_dir).expanduser() if cache_dir
                                      else default_cache_dir())
    cached = _read_cache(cache_path)
    if cached is not None:
      images, cached_labels, cached_names, skipped = cached
      if skipped and not skip_corrupt:
        raise _corrupt_error(skipped[0])
      if skipped:
        _warn_skipped(skipped, split_dir)
      log.info('loaded %d images of %s from cache %s', len(images), split_dir, cache_path)
      return ArrayDataset(images, cached_labels, cached_names)

  images, keep, skipped = _decode_into_array(files, hw, channels, skip_corrupt, num_workers)
  labels = labels[keep]
  if skipped:
    _warn_skipped(skipped, split_dir)
  if cache_path is not None:
    try:
      _write_cache(cache_path, prefix, images, labels, names, skipped)
    except OSError as e:  # a read-only or full disk must not stop training
      warnings.warn(f'could not write image cache {cache_path}: {e}', stacklevel=2)
  return ArrayDataset(images, labels, names)


def _decode_into_array(files: Sequence[Path | str], hw: tuple[int, int] | None, channels: int,
                       skip_corrupt: bool, num_workers: int | None,
                       data: Sequence[bytes] | None = None):
  """Decodes all files (or their bytes ``data``, see :func:`_decode_all`) into one
  preallocated (N, H, W, C) array.

  Returns ``(images, keep (N,) bool, skipped messages)``; ``images`` holds only
  the kept files.
  """
  images = None
  keep = np.zeros(len(files), bool)
  skipped: list[str] = []
  first_file = None
  for i, result in _decode_all(files, hw, channels, num_workers, data):
    if isinstance(result, str):
      if not skip_corrupt:
        raise _corrupt_error(result)
      skipped.append(result)
      continue
    if images is None:
      images = np.empty((len(files),) + result.shape, np.uint8)
      first_file = files[i]
    elif result.shape != images.shape[1:]:
      raise ValueError(
          f'image {files[i]} is {result.shape[1]}x{result.shape[0]} but {first_file} is '
          f'{images.shape[2]}x{images.shape[1]}; images of different sizes need image_size '
          '(config data.image_size) to resize them to one size.')
    images[i] = result
    keep[i] = True
  if images is None:
    raise ValueError(f'none of the {len(files)} images could be decoded (first error: '
                     f'{skipped[0] if skipped else "none"}).')
  return images[keep] if not keep.all() else images, keep, skipped
