"""Captions: a tokenizer, a vocabulary, captions written from synthetic scenes, a COCO reader.

Text becomes ids in two steps, on the host:

* :func:`tokenize`: lowercase, split on everything that is not a letter
  ("A man's bike." -> ``['a', 'man', 's', 'bike']``);
* :class:`Vocabulary`: ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2,
  ``<unk>`` = 3, then the words of the *train* split by decreasing count (ties
  alphabetical), those seen fewer than ``min_count`` times left out; any other
  word encodes as ``<unk>``. :meth:`Vocabulary.encode` writes
  ``[<bos>, w_1 .. w_k, <eos>, <pad> ...]`` of a fixed ``max_len``: a caption
  of more than ``max_len - 2`` words keeps its first ``max_len - 2`` and its
  ``<eos>``, and is counted (the captioning task warns with the count per split).

Readers return an :class:`~cnn_jax.data.dataset.ArrayDataset` whose extra
``captions`` is an ``(N, R)`` object array of strings (``R`` references per
image, ``''`` for padding) and ``image_id`` ``(N,)`` int32; the captioning task
(:mod:`cnn_jax.tasks.captioning`) builds the vocabulary from the train split and
turns them into ``caption_tokens`` ``(N, R, max_len)`` int32.

Synthetic captions (:func:`describe_scene`, :func:`load_synthetic_captions`):
scenes of :func:`cnn_jax.data.synthetic.render_scenes` with one or two
objects, described from what was rendered. The grammar lives here, in code:

* one object: ``"a {size} {colour} {kind}"`` and ``"there is a {size} {colour} {kind}"``;
* two objects (A drawn first, the larger by radius; B the other): ``"a {colour A}
  {kind A} {relation} a {colour B} {kind B}"`` and the same from B's side
  (``above`` <-> ``below``, ``to the left of`` <-> ``to the right of``), with
  "an" before a vowel ("an orange disc").

``colour`` is the name nearest (in CIELAB) to the median of the object's
visible pixels (:data:`COLOURS`: Berlin and Kay's eleven basic colour terms and
cyan); ``size`` is
``large`` when the box's longer side is more than half the image, else
``small``; the relation compares the box centres along the axis where they
differ most (ties: vertical). A mirror image swaps ``left`` and ``right`` and
nothing else, which is what the task's flip does to the tokens.

COCO captions (:func:`load_coco_captions`): ``annotations/captions_<split>.json``
with ``images`` (``id``, ``file_name``) and ``annotations`` (``image_id``,
``caption``), images under ``<root>/<split>/`` resized to ``image_size``
squared (aspect not kept, as Show and Tell's input). Errors name the file and
the entry: a file that is not UTF-8 or not JSON, a missing key, a caption of an
unknown image id, a caption with no words (naming its image id). Images
without any caption are left out with one warning.
"""

from __future__ import annotations

import collections
import json
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cnn_jax.data.coco import _field
from cnn_jax.data.dataset import ArrayDataset

PAD, BOS, EOS, UNK = '<pad>', '<bos>', '<eos>', '<unk>'
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)

_WORD = re.compile(r'[^\W\d_]+')  # runs of letters (any script); digits, _ and punctuation split


def tokenize(text: str) -> list[str]:
  """Lowercased runs of letters: ``"Two dogs, 1 ball!"`` -> ``['two', 'dogs', 'ball']``."""
  return _WORD.findall(str(text).lower())


class Vocabulary:
  """Words <-> ids, with ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3.

  Attributes:
    words: every token, by id (the specials first).
  """

  def __init__(self, words: Sequence[str]):
    words = tuple(words)
    if words[:len(SPECIALS)] != SPECIALS or len(set(words)) != len(words):
      raise ValueError(f'a vocabulary starts with {SPECIALS} and has no repeated word; got '
                       f'{words[:6]}...')
    self.words = words
    self._ids = {w: i for i, w in enumerate(words)}

  @classmethod
  def build(cls, captions: Iterable[Sequence[str]], min_count: int = 1) -> 'Vocabulary':
    """From tokenized captions: words seen ``min_count`` times or more, most frequent first."""
    counts = collections.Counter(w for caption in captions for w in caption)
    kept = sorted((w for w, k in counts.items() if k >= min_count and w not in SPECIALS),
                  key=lambda w: (-counts[w], w))
    return cls(SPECIALS + tuple(kept))

  def __len__(self) -> int:
    return len(self.words)

  def __contains__(self, word: str) -> bool:
    return word in self._ids

  def id(self, word: str) -> int:
    """The id of ``word``; ``<unk>``'s for a word outside the vocabulary."""
    return self._ids.get(word, UNK_ID)

  def encode(self, tokens: Sequence[str], max_len: int) -> tuple[np.ndarray, bool]:
    """``([<bos>, ids.., <eos>, <pad>..] (max_len,) int32, truncated)``; see the module doc."""
    if max_len < 3:
      raise ValueError(f'max_len must be at least 3 (<bos>, a word, <eos>), got {max_len}.')
    keep = list(tokens)[:max_len - 2]
    ids = np.full(max_len, PAD_ID, np.int32)
    ids[:len(keep) + 2] = [BOS_ID, *(self.id(w) for w in keep), EOS_ID]
    return ids, len(tokens) > max_len - 2

  def encode_references(self, captions: np.ndarray, max_len: int) -> tuple[np.ndarray, int]:
    """``(N, R)`` strings (``''`` = no reference) -> ``((N, R, max_len) int32, truncated count)``.

    An absent reference is all ``<pad>`` (no ``<bos>``).
    """
    captions = np.asarray(captions, object)
    out = np.full((*captions.shape, max_len), PAD_ID, np.int32)
    truncated = 0
    for idx in np.ndindex(captions.shape):
      if captions[idx]:
        out[idx], cut = self.encode(tokenize(captions[idx]), max_len)
        truncated += cut
    return out, truncated

  def decode(self, ids: Iterable[int]) -> list[str]:
    """The words of ids up to the first ``<eos>`` (``<bos>`` and ``<pad>`` skipped)."""
    out = []
    for i in ids:
      i = int(i)
      if i == EOS_ID:
        break
      if i not in (PAD_ID, BOS_ID):
        out.append(self.words[i] if 0 <= i < len(self.words) else UNK)
    return out


# ----------------------------------------------------------------------------- synthetic scenes

# Nearest-named colour table: Berlin and Kay's eleven basic colour terms (1969) and cyan,
# each at a typical sRGB value; a colour is named by the nearest entry in CIELAB.
COLOURS: dict[str, tuple[int, int, int]] = {
    'black': (0, 0, 0), 'white': (255, 255, 255), 'grey': (128, 128, 128),
    'red': (220, 0, 0), 'orange': (255, 140, 0), 'yellow': (255, 230, 0),
    'green': (0, 170, 0), 'cyan': (0, 210, 230), 'blue': (40, 100, 250),
    'purple': (128, 0, 160), 'pink': (255, 150, 190), 'brown': (130, 70, 20),
}
# The words of each kind of synthetic.SHAPES (two words where the name is not English).
KIND_WORDS = {'hbar': 'horizontal bar', 'vbar': 'vertical bar'}
LARGE = 0.5  # a lone object is "large" when its box's longer side exceeds this fraction
MAX_OBJECTS = 2
# (relation of A to B, the same seen from B); flips swap left and right.
RELATIONS = {'above': 'below', 'below': 'above', 'to the left of': 'to the right of',
             'to the right of': 'to the left of'}
MIRROR_WORDS = (('left', 'right'),)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
  """sRGB (..., 3) in 0..255 -> CIELAB (..., 3) (D65 white), the standard formulas."""
  c = np.asarray(rgb, np.float64) / 255.0
  linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
  xyz = linear @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192],
                           [0.1805, 0.0722, 0.9505]])
  t = xyz / np.array([0.95047, 1.0, 1.08883])
  f = np.where(t > (6 / 29) ** 3, np.cbrt(t), t / (3 * (6 / 29) ** 2) + 4 / 29)
  return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                   200 * (f[..., 1] - f[..., 2])], -1)


_COLOUR_NAMES = tuple(COLOURS)
_COLOUR_LAB = srgb_to_lab(np.array([COLOURS[n] for n in _COLOUR_NAMES]))


def colour_name(rgb: Sequence[float]) -> str:
  """The name in :data:`COLOURS` nearest to ``rgb`` (0..255) in CIELAB (Euclidean, CIE76)."""
  d = np.linalg.norm(_COLOUR_LAB - srgb_to_lab(np.asarray(rgb, np.float64)), axis=-1)
  return _COLOUR_NAMES[int(np.argmin(d))]


def kind_words(kind: str) -> str:
  return KIND_WORDS.get(kind, kind)


def relation(box_a: Sequence[float], box_b: Sequence[float]) -> str:
  """Where A is seen from B: ``above``/``below``/``to the left of``/``to the right of``.

  Boxes are corners ``(y0, x0, y1, x1)``; the axis where the centres differ
  most decides (vertical on a tie).
  """
  dy = (box_b[0] + box_b[2] - box_a[0] - box_a[2]) / 2
  dx = (box_b[1] + box_b[3] - box_a[1] - box_a[3]) / 2
  if abs(dy) >= abs(dx):
    return 'above' if dy > 0 else 'below'
  return 'to the left of' if dx > 0 else 'to the right of'


def describe_scene(boxes: np.ndarray, kinds: Sequence[str], colours: Sequence[str]) -> list[str]:
  """The two reference captions of a scene of one or two objects (grammar in the module doc).

  Args:
    boxes: (K, 4) corners in [0, 1] of the visible objects, the larger first.
    kinds: K kind names (``synthetic.SHAPES`` entries).
    colours: K colour names.
  """
  if not 1 <= len(kinds) <= MAX_OBJECTS:
    raise ValueError(f'synthetic captions describe 1 to {MAX_OBJECTS} objects, got {len(kinds)}.')
  things = [f'{c} {kind_words(k)}' for k, c in zip(kinds, colours)]
  if len(kinds) == 1:
    b = boxes[0]
    size = 'large' if max(b[2] - b[0], b[3] - b[1]) > LARGE else 'small'
    return [f'a {size} {things[0]}', f'there is a {size} {things[0]}']
  rel = relation(boxes[0], boxes[1])
  a, b = (with_article(t) for t in things)
  return [f'{a} {rel} {b}', f'{b} {RELATIONS[rel]} {a}']


def with_article(phrase: str) -> str:
  """``'an orange disc'``, ``'a red disc'``: the indefinite article by the first letter."""
  return ('an ' if phrase[:1] in 'aeiou' else 'a ') + phrase


def caption_scenes(scenes: dict[str, np.ndarray], class_names: Sequence[str]) -> np.ndarray:
  """``(N, 2)`` object array of captions of :func:`render_scenes` output (``instance_masks=True``).

  An object's colour is the median of its visible pixels; an object with no
  visible pixel (its label -1) is not mentioned.
  """
  images, inst = scenes['images'], scenes['instance_masks']
  out = np.empty((len(images), 2), object)
  for i in range(len(images)):
    slots = [k for k in np.flatnonzero(scenes['box_labels'][i] >= 0) if inst[i, k].any()]
    colours = [colour_name(np.median(images[i][inst[i, k]], axis=0)) for k in slots]
    kinds = [class_names[scenes['box_labels'][i, k]] for k in slots]
    out[i] = describe_scene(scenes['boxes'][i, slots], kinds, colours)
  return out


def load_synthetic_captions(split: str = 'train', *, num_examples: int, image_size: int = 32,
                            num_classes: int = 4, seed: int = 0,
                            objects_per_image: int | tuple[int, int] = (1, 2)) -> ArrayDataset:
  """Synthetic scenes with two reference captions each (train and test from different seeds).

  Returns:
    ``images`` (N, S, S, 3) uint8, ``labels`` (the largest object's kind),
    ``class_names`` the kinds, and extras ``captions`` (N, 2) object (str),
    ``image_id`` (N,) int32 (the scene's index), ``boxes`` (N, K, 4),
    ``box_labels`` (N, K).
  """
  from cnn_jax.data import synthetic
  if split not in synthetic.SPLITS:
    raise ValueError(f'unknown split {split!r}; choose one of {", ".join(synthetic.SPLITS)}.')
  lo_hi = (objects_per_image,) * 2 if isinstance(objects_per_image, int) else objects_per_image
  if not 1 <= min(lo_hi) <= max(lo_hi) <= MAX_OBJECTS:
    raise ValueError(f'synthetic captions need 1 to {MAX_OBJECTS} objects per image, got '
                     f'data.objects_per_image={objects_per_image!r}.')
  scenes = synthetic.render_scenes(num_examples, image_size=image_size, num_classes=num_classes,
                                   objects_per_image=objects_per_image, instance_masks=True,
                                   seed=2 * int(seed) + synthetic.SPLITS.index(split))
  names = synthetic.SHAPES[:num_classes]
  extras = {'captions': caption_scenes(scenes, names),
            'image_id': np.arange(num_examples, dtype=np.int32),
            'boxes': scenes['boxes'], 'box_labels': scenes['box_labels']}
  return ArrayDataset(scenes['images'], scenes['labels'], names, extras)


# ----------------------------------------------------------------------------- COCO captions

def _read_captions_json(path: Path) -> dict[str, Any]:
  if not path.is_file():
    raise FileNotFoundError(
        f'COCO captions file {path} not found; set --config.data.train_ann= (or '
        '--config.data.eval_ann=) to the captions JSON, relative to data.root or absolute.')
  try:
    text = path.read_bytes().decode('utf-8')
  except UnicodeDecodeError as e:
    raise ValueError(f'{path} is not UTF-8 text ({e}); re-save the captions JSON as UTF-8.'
                     ) from None
  try:
    data = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not valid JSON ({e}); re-export the COCO captions file.'
                     ) from None
  if not isinstance(data, dict):
    raise ValueError(f'{path} holds a JSON {type(data).__name__}, not a COCO captions object '
                     'with keys images and annotations.')
  for key in ('images', 'annotations'):
    if not isinstance(data.get(key), list):
      raise ValueError(f'{path} is not a COCO captions file: key {key!r} is missing or not a '
                       'list; point data.train_ann at a captions_<split>.json.')
  return data


def read_coco_captions(path: str | os.PathLike
                       ) -> tuple[list[dict[str, Any]], dict[int, list[str]]]:
  """``(image entries in file order, image id -> its captions in file order)``, all checked."""
  path = Path(path)
  data = _read_captions_json(path)
  images, by_image = [], {}
  for entry in data['images']:
    iid = int(_field(entry, 'id', 'image', path))
    _field(entry, 'file_name', 'image', path)
    if iid in by_image:
      raise ValueError(f'{path}: image id {iid} appears twice in images; fix the file.')
    by_image[iid] = []
    images.append(entry)
  for ann in data['annotations']:
    iid = int(_field(ann, 'image_id', 'annotation', path))
    caption = _field(ann, 'caption', 'annotation', path)
    if iid not in by_image:
      raise ValueError(f'{path}: annotation {ann.get("id", "?")} refers to image_id {iid}, '
                       "which has no entry in 'images'; add the image or remove the caption.")
    if not isinstance(caption, str) or not tokenize(caption):
      raise ValueError(f'{path}: image id {iid} has an empty caption {caption!r} (annotation '
                       f'{ann.get("id", "?")}): no words; remove or fix it.')
    by_image[iid].append(caption)
  return images, by_image


def load_coco_captions(root: str | os.PathLike, split: str, *,
                       ann_file: str | os.PathLike | None = None, image_size: int,
                       channels: int = 3, skip_corrupt: bool = False) -> ArrayDataset:
  """Reads ``<root>/<split>/`` and its captions JSON (layout in the module docstring).

  Returns:
    ``images`` (N, S, S, C) uint8 resized to ``image_size`` squared, ``labels``
    all 0 (class ``'image'``), extras ``captions`` (N, R) object (R = the most
    captions any image has; ``''`` pads) and ``image_id`` (N,) int32.
  """
  from cnn_jax.data.image_folder import _warn_skipped, decode_or_skip
  root = Path(root).expanduser()
  path = root / (ann_file if ann_file else Path('annotations') / f'captions_{split}.json')
  entries, by_image = read_coco_captions(path)
  without = [int(e['id']) for e in entries if not by_image[int(e['id'])]]
  if without:
    warnings.warn(f'{len(without)} image(s) of {path} have no caption and were left out '
                  f'(ids {without[:5]}{" ..." if len(without) > 5 else ""}).', stacklevel=2)
  entries = [e for e in entries if by_image[int(e['id'])]]
  refs = max((len(by_image[int(e['id'])]) for e in entries), default=1)
  images, captions, ids, skipped = [], [], [], []
  for entry in entries:
    image = decode_or_skip(root / split / entry['file_name'], skipped, channels=channels,
                           skip_corrupt=skip_corrupt)
    if image is None:
      continue
    resized = Image.fromarray(image if channels == 3 else image[..., 0]).resize(
        (image_size, image_size), Image.Resampling.BILINEAR)
    images.append(np.asarray(resized).reshape(image_size, image_size, channels))
    row = by_image[int(entry['id'])]
    captions.append(row + [''] * (refs - len(row)))
    ids.append(int(entry['id']))
  if skipped:
    _warn_skipped(skipped, root / split)
  if not images:
    raise ValueError(f'{path} gives no captioned image; check data.root and the split.')
  caps = np.empty((len(captions), refs), object)
  caps[:] = captions
  return ArrayDataset(np.stack(images), np.zeros(len(images), np.int32), ('image',),
                      {'captions': caps, 'image_id': np.asarray(ids, np.int32)})
