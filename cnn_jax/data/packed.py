r"""An image folder packed into one file: its encoded bytes, sent as is, decoded on load.

A class-folder dataset (``ROOT/<split>/<class>/*.jpg``, as
:mod:`cnn_jax.data.image_folder` reads it) becomes one file holding every
image file's bytes unchanged (JPEG stays JPEG: CIFAR-10's 60,000 files are
about 53 MiB) with the labels, class names and file names, so that it can be
copied to a machine that cannot see the folder (the GPU machine, for which
``../shared`` does not travel) and decoded there into exactly the arrays the
folder gives::

  python -m cnn_jax.data.packed pack ../shared/data/cifar10-jpeg workdirs/cifar10.pack
  python -m cnn_jax.data.packed info workdirs/cifar10.pack
  # a pack is a data.root of data.name=image_folder, like the folder it came from
  python -m cnn_jax.main --config=configs/resnet_cifar.py \
      --config.data.root=workdirs/cifar10.pack --workdir=workdirs/r20

Loading lists nothing and decodes with the folder reader's own decoder
(:func:`cnn_jax.data.image_folder.decode_image`, in its process pool on machines
with more than 2 CPUs), so ``load_packed(pack, split, ...)`` equals
``load_image_folder(root, split, ...)`` bit for bit, labels and class order
included (tested). There is no decode cache: 60,000 small JPEGs decode in
seconds. Streaming (``data.streaming``) reads folders only.

Format, version 1: an uncompressed ``.npz`` (a zip archive: each member has a
CRC-32, so damage is detected when it is read), holding

  ``format``  ``'cnn_jax.packed_folder'``;  ``version``  int64 1
  ``splits``  (S,) str, the split folder names
  and per split ``s``:
  ``s.blob``     (B,) uint8, the image files' bytes, concatenated in listing order
  ``s.offsets``  (N + 1,) int64: image ``i`` is ``blob[offsets[i]:offsets[i + 1]]``
  ``s.labels``   (N,) int32;  ``s.classes``  (C,) str, the class names in label order
  ``s.files``    UTF-8 bytes of the N paths under the split folder, one per line
                 (``cat/0001.jpg``), which name an image in errors

A file that is not such a zip, is truncated or damaged, or is of another
version is one ``PackError`` line naming the file and the command that
re-creates it.
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.data.image_folder import (ImageSize, _check_channels, _decode_into_array, _subdirs,
                                       _warn_skipped, image_hw, list_image_folder,
                                       load_image_folder, save_npz_atomically)

PACK_FORMAT = 'cnn_jax.packed_folder'
# Bump whenever the layout changes; readers refuse other versions rather than misread them.
PACK_VERSION = 1
PACK_SUFFIX = '.pack'


class PackError(ValueError):
  """A pack file that cannot be read: not a pack, damaged, truncated, or another version."""


def is_pack(root: str | os.PathLike) -> bool:
  """Whether a ``data.root`` names a pack file rather than an image folder."""
  path = Path(root).expanduser()
  return path.is_file() or (path.suffix == PACK_SUFFIX and not path.is_dir())


def _remedy(path: Path) -> str:
  return f're-create it with `python -m cnn_jax.data.packed pack ROOT {path}`'


# ----------------------------------------------------------------------------- writing

def pack_image_folder(root: str | os.PathLike, out: str | os.PathLike,
                      splits: Sequence[str] | None = None) -> dict[str, int]:
  """Packs ``root/<split>/<class>/*`` into the file ``out``; returns images per split.

  Args:
    root: dataset folder (see :func:`cnn_jax.data.image_folder.list_image_folder`).
    out: the pack file to write (atomically: an interrupted write leaves no file).
    splits: split folders to pack; default every split folder of ``root``.

  Raises:
    FileNotFoundError: ``root`` or a split folder is missing.
    ValueError: a split with no class folders or an empty class folder.
  """
  root = Path(root).expanduser()
  if not root.is_dir():
    raise FileNotFoundError(f'image folder root {root} does not exist; pack a folder laid out '
                            'as ROOT/<split>/<class>/<image>.')
  splits = list(splits) if splits else _subdirs(root)
  if not splits:
    raise ValueError(f'{root} has no split folders; expected {root}/<split>/<class>/<image>.')
  arrays = {'format': np.asarray(PACK_FORMAT), 'version': np.asarray(PACK_VERSION, np.int64),
            'splits': np.asarray(splits, dtype=str)}
  counts = {}
  for split in splits:
    files, labels, class_names = list_image_folder(root, split)
    encoded = [f.read_bytes() for f in files]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    names = '\n'.join(f.relative_to(root / split).as_posix() for f in files)
    arrays.update({
        f'{split}.blob': np.frombuffer(b''.join(encoded), np.uint8),
        f'{split}.offsets': offsets,
        f'{split}.labels': labels,
        f'{split}.classes': np.asarray(class_names, dtype=str),
        f'{split}.files': np.frombuffer(names.encode(), np.uint8),
    })
    counts[split] = len(files)
  save_npz_atomically(Path(out).expanduser(), **arrays)
  return counts


# ----------------------------------------------------------------------------- reading

def _read(path: Path, split: str | None) -> dict[str, np.ndarray]:
  """The header of ``path``, plus the arrays of ``split`` unless None; checked.

  Raises:
    FileNotFoundError: no such file.
    PackError: not a pack, damaged, truncated, another version, or no ``split``.
  """
  if not path.is_file():
    raise FileNotFoundError(f'pack file {path} does not exist; create it with '
                            f'`python -m cnn_jax.data.packed pack ROOT {path}`.')
  # The zip's central directory sits at its end: a truncated file has none.
  if not zipfile.is_zipfile(path):
    raise PackError(f'{path} is not an image pack (not a zip archive: truncated, damaged or '
                    f'another kind of file); {_remedy(path)}.')
  try:
    with np.load(path, allow_pickle=False) as z:
      if 'format' not in z.files or str(z['format']) != PACK_FORMAT:
        raise PackError(f'{path} is not an image pack (no {PACK_FORMAT!r} header); '
                        f'{_remedy(path)}.')
      version = int(z['version'])
      if version != PACK_VERSION:
        raise PackError(f'{path} is an image pack of version {version}, but this code reads '
                        f'version {PACK_VERSION}; {_remedy(path)}.')
      out = {'splits': z['splits']}
      if split is not None:
        if split not in out['splits'].tolist():
          raise PackError(f'split {split!r} is not in pack {path} (splits: '
                          f'{", ".join(out["splits"].tolist())}); pick one of them or pack it.')
        out.update({key: z[f'{split}.{key}']
                    for key in ('blob', 'offsets', 'labels', 'classes', 'files')})
      else:
        out.update({f'{s}.{key}': z[f'{s}.{key}'] for s in out['splits'].tolist()
                    for key in ('labels', 'classes', 'offsets')})
  except PackError:
    raise
  except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError) as e:
    # A bad CRC-32, a missing member or a malformed array: the file was damaged.
    raise PackError(f'{path} is a damaged image pack ({type(e).__name__}: {e}); '
                    f'{_remedy(path)}.') from e
  return out


def load_images(root: str | os.PathLike, split: str = 'train', *,
                image_size: ImageSize = None, channels: int = 3, skip_corrupt: bool = False,
                num_workers: int | None = None,
                cache_dir: str | os.PathLike | None = None) -> ArrayDataset:
  """``split`` of a class-folder image set, from its folder or from a pack file of it.

  Every reader of whole image folders goes through this, so a pack (what travels
  to a machine without the folder) works wherever a folder does. ``cache_dir``:
  the folder reader's decoded cache (a pack is decoded each time).
  """
  if is_pack(root):
    return load_packed(root, split, image_size=image_size, channels=channels,
                       skip_corrupt=skip_corrupt, num_workers=num_workers)
  return load_image_folder(root, split, image_size=image_size, channels=channels,
                           cache_dir=cache_dir, skip_corrupt=skip_corrupt,
                           num_workers=num_workers)


def load_packed(path: str | os.PathLike, split: str = 'train', *, image_size: ImageSize = None,
                channels: int = 3, skip_corrupt: bool = False,
                num_workers: int | None = None) -> ArrayDataset:
  """Decodes ``split`` of a pack file into memory: what ``load_image_folder`` gives its folder.

  Args:
    path: a file written by :func:`pack_image_folder`.
    split, image_size, channels, skip_corrupt, num_workers: as
      :func:`cnn_jax.data.image_folder.load_image_folder`; a corrupt image is
      named ``PACK:<split>/<class>/<file>``.

  Returns:
    ``ArrayDataset`` with images (N, H, W, channels) uint8 and labels (N,) int32.

  Raises:
    FileNotFoundError: no such file.
    PackError: not a readable pack of this version, or no such split.
    ValueError: a corrupt image (without ``skip_corrupt``), or mixed native
      sizes without ``image_size``.
  """
  _check_channels(channels)
  hw = image_hw(image_size)
  path = Path(path).expanduser()
  part = _read(path, split)
  blob, offsets = part['blob'], part['offsets']
  names = [f'{path}:{split}/{f}' for f in part['files'].tobytes().decode().split('\n')]
  if len(names) != len(offsets) - 1 or offsets[-1] != len(blob):
    raise PackError(f'{path} is a damaged image pack (split {split!r}: {len(names)} names, '
                    f'{len(offsets) - 1} offsets, {len(blob)} bytes); {_remedy(path)}.')
  data = [blob[a:b].tobytes() for a, b in zip(offsets[:-1], offsets[1:])]
  images, keep, skipped = _decode_into_array(names, hw, channels, skip_corrupt, num_workers,
                                             data)
  if skipped:
    _warn_skipped(skipped, f'{path}:{split}')
  return ArrayDataset(images, part['labels'][keep],
                      tuple(str(c) for c in part['classes'].tolist()))


def pack_info(path: str | os.PathLike) -> dict[str, dict]:
  """Per split: images, classes and encoded bytes, read from the index (nothing decoded)."""
  path = Path(path).expanduser()
  index = _read(path, None)
  return {s: {'images': len(index[f'{s}.labels']), 'classes': len(index[f'{s}.classes']),
              'bytes': int(index[f'{s}.offsets'][-1])}
          for s in index['splits'].tolist()}


# ----------------------------------------------------------------------------- CLI

def _summary(path: Path, info: dict[str, dict]) -> str:
  splits = ', '.join(f"{s} {v['images']} images ({v['classes']} classes)"
                     for s, v in info.items())
  return f'{path}: {path.stat().st_size / 2**20:.1f} MiB; {splits}'


def main(argv: Sequence[str] | None = None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  sub = p.add_subparsers(dest='command', required=True)
  pk = sub.add_parser('pack', help='pack ROOT/<split>/<class>/* into one file')
  pk.add_argument('root', help='image folder with one sub-folder per split')
  pk.add_argument('out', help=f'the pack file to write (e.g. workdirs/cifar10{PACK_SUFFIX})')
  pk.add_argument('--splits', default='', help='comma list (default: every split folder)')
  inf = sub.add_parser('info', help='splits, image and class counts of a pack file')
  inf.add_argument('pack')
  args = p.parse_args(argv)
  try:
    if args.command == 'pack':
      pack_image_folder(args.root, args.out, [s for s in args.splits.split(',') if s])
      out = Path(args.out).expanduser()
    else:
      out = Path(args.pack).expanduser()
    print(_summary(out, pack_info(out)))
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
