"""Coloured shapes on textured backgrounds, generated in code: the offline dataset.

Every image is a smooth random colour gradient with faint stripes, one or more
flat-coloured shapes on top, and low-amplitude pixel noise over everything.
The class is the *kind* of shape (``SHAPES``); colour, position, scale,
rotation (within limits that keep kinds apart, e.g. a square never turns into
a diamond) and the background are random nuisance, so a small CNN learns the
32x32 set well above chance in about a minute of CPU training.

Besides ``images`` and ``labels``, :func:`render_scenes` returns what later
tasks need: tight ``boxes`` and ``box_labels`` per object (detection) and a
semantic ``masks`` image (segmentation), for one or several objects per image.

Example ``i`` of a given ``seed`` is drawn from its own generator
``np.random.default_rng([seed, i])``, so the output depends only on
``(seed, i)`` and the keyword arguments: no global state, and the first ``n``
images of a larger request are the ``n`` images of a smaller one.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from cnn_jax.data.dataset import ArrayDataset

_Shape = Callable[[np.ndarray, np.ndarray], np.ndarray]


# Each shape is a point test on local coordinates (u, v) in units of the
# object's radius, v pointing down; every shape lies inside the unit disc so
# that an object of radius r centred at least r from the border is whole.
def _disc(u, v):
  return u * u + v * v <= 1.0


def _square(u, v):
  return np.maximum(np.abs(u), np.abs(v)) <= 0.7


def _regular_polygon(u, v, sides: int, first_normal_deg: float):
  # Inside iff no edge's outward normal sees the point past the apothem.
  apothem = math.cos(math.pi / sides)
  inside = np.ones(u.shape, bool)
  for k in range(sides):
    a = math.radians(first_normal_deg + 360.0 * k / sides)
    inside &= u * math.cos(a) + v * math.sin(a) <= apothem
  return inside


def _triangle(u, v):
  # Normals at 90, 210, 330 degrees: the apex points up (v = -1).
  return _regular_polygon(u, v, 3, 90.0)


def _ring(u, v):
  rho2 = u * u + v * v
  return (rho2 <= 1.0) & (rho2 >= 0.55 ** 2)


def _plus(u, v):
  au, av = np.abs(u), np.abs(v)
  return ((au <= 0.28) & (av <= 0.95)) | ((av <= 0.28) & (au <= 0.95))


def _diamond(u, v):
  return np.abs(u) + np.abs(v) <= 1.0


def _bar(u, v):
  return (np.abs(u) <= 0.95) & (np.abs(v) <= 0.3)


def _star(u, v, points: int = 5, inner: float = 0.45):
  # Fold the polar angle into [0, pi / points] away from the nearest tip; the
  # boundary there is the segment from the tip (1, 0) to the inner vertex.
  sector = 2.0 * math.pi / points
  t = np.mod(np.arctan2(v, u) + math.pi / 2.0, sector)
  phi = np.minimum(t, sector - t)
  half = sector / 2.0
  n_u, n_v = inner * math.sin(half), 1.0 - inner * math.cos(half)
  rho = np.sqrt(u * u + v * v)
  return rho * (n_u * np.cos(phi) + n_v * np.sin(phi)) <= n_u


def _ellipse(u, v):
  return u * u + (v / 0.5) ** 2 <= 1.0


def _hexagon(u, v):
  return _regular_polygon(u, v, 6, 30.0)


def _frame(u, v):
  m = np.maximum(np.abs(u), np.abs(v))
  return (m <= 0.7) & (m >= 0.38)


def _semicircle(u, v):
  return (u * u + v * v <= 1.0) & (v >= -0.1)


# name -> (point test, rotation). Rotation is (base, jitter) in degrees, drawn
# uniformly from base +- jitter, or None for any angle: kinds that differ only
# by orientation (square/diamond, plus/cross, hbar/vbar) stay 15+ degrees apart.
_SHAPE_TABLE: dict[str, tuple[_Shape, tuple[float, float] | None]] = {
    'disc': (_disc, None),
    'square': (_square, (0.0, 15.0)),
    'triangle': (_triangle, None),
    'ring': (_ring, None),
    'plus': (_plus, (0.0, 15.0)),
    'cross': (_plus, (45.0, 15.0)),
    'diamond': (_diamond, (0.0, 15.0)),
    'hbar': (_bar, (0.0, 15.0)),
    'vbar': (_bar, (90.0, 15.0)),
    'star': (_star, None),
    'ellipse': (_ellipse, None),
    'hexagon': (_hexagon, None),
    'frame': (_frame, (0.0, 15.0)),
    'semicircle': (_semicircle, None),
}

SHAPES: tuple[str, ...] = tuple(_SHAPE_TABLE)

SPLITS: tuple[str, ...] = ('train', 'test')
_DEFAULT_SIZES = {'train': 10000, 'test': 2000}

_MIN_IMAGE_SIZE = 16
# Object radius as a fraction of the image size for a single object; with n
# objects both ends shrink by sqrt(n) so they fit side by side.
_RADIUS_RANGE = (0.18, 0.36)
_MIN_RADIUS_PX = 3.0
_COLOUR_CANDIDATES = 6
_PLACEMENT_TRIES = 20
# Images rendered at once: bounds the float64 working set for large sizes.
_CHUNK = 256


def _check_args(num_examples, image_size, num_classes, objects_per_image, seed):
  if not isinstance(num_examples, (int, np.integer)) or num_examples < 0:
    raise ValueError(f'num_examples must be a non-negative int, got {num_examples!r}.')
  if not isinstance(image_size, (int, np.integer)) or image_size < _MIN_IMAGE_SIZE:
    raise ValueError(f'image_size must be an int of at least {_MIN_IMAGE_SIZE}, '
                     f'got {image_size!r}.')
  if not isinstance(num_classes, (int, np.integer)) or not 1 <= num_classes <= len(SHAPES):
    raise ValueError(f'num_classes must be in [1, {len(SHAPES)}] (one per entry of SHAPES), '
                     f'got {num_classes!r}.')
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f'seed must be a non-negative int, got {seed!r}.')
  if isinstance(objects_per_image, (int, np.integer)):
    objects_per_image = (objects_per_image, objects_per_image)
  lo, hi = (tuple(objects_per_image) + (None, None))[:2]
  if (len(tuple(objects_per_image)) != 2 or not isinstance(lo, (int, np.integer))
      or not isinstance(hi, (int, np.integer)) or not 0 <= lo <= hi or hi < 1):
    raise ValueError(f'objects_per_image must be an int or a (min, max) pair with '
                     f'0 <= min <= max and max >= 1, got {objects_per_image!r}.')
  return int(lo), int(hi)


def _draw_example(rng: np.random.Generator, size: int, num_classes: int, lo: int, hi: int):
  """All random choices for one image (rendering is then deterministic)."""
  count = int(rng.integers(lo, hi + 1))
  kinds = rng.integers(0, num_classes, size=count)
  shrink = math.sqrt(count)
  radii = np.maximum(size * rng.uniform(*_RADIUS_RANGE, size=count) / shrink, _MIN_RADIUS_PX)
  # Largest first: it is the image's label, and smaller objects painted later
  # stay visible on top of it.
  order = np.argsort(-radii, kind='stable')
  kinds, radii = kinds[order], radii[order]
  angles = np.empty(count)
  centres = np.empty((count, 2))
  for j in range(count):
    rotation = _SHAPE_TABLE[SHAPES[kinds[j]]][1]
    if rotation is None:
      angles[j] = rng.uniform(0.0, 360.0)
    else:
      angles[j] = rotation[0] + rng.uniform(-rotation[1], rotation[1])
    # Rejection sampling keeps several objects mostly apart (for detection);
    # when nothing fits, take the least-overlapping try.
    r = min(radii[j], size / 2.0)
    tries = rng.uniform(r, size - r, size=(_PLACEMENT_TRIES, 2))
    if j:
      gaps = (np.linalg.norm(tries[:, None] - centres[None, :j], axis=-1)
              / (0.9 * (radii[j] + radii[:j])))
      score = gaps.min(axis=1)
      ok = np.nonzero(score >= 1.0)[0]
      centres[j] = tries[ok[0] if ok.size else int(np.argmax(score))]
    else:
      centres[j] = tries[0]
  return {
      'kinds': kinds, 'radii': radii, 'angles': np.radians(angles), 'centres': centres,
      'colours': rng.uniform(0.0, 255.0, size=(count, _COLOUR_CANDIDATES, 3)),
      **_draw_background(rng, size),
  }


def _draw_background(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
  """The random choices of one background (:func:`_backgrounds`) and its pixel noise."""
  return {
      'bg': rng.uniform(30.0, 225.0, size=(2, 3)),
      # gradient angle, stripe angle, stripe phase, stripe cycles, stripe amplitude, noise std
      'params': np.array([rng.uniform(0, 2 * math.pi), rng.uniform(0, math.pi),
                          rng.uniform(0, 2 * math.pi), rng.uniform(1.5, 5.0),
                          rng.uniform(0.0, 18.0), rng.uniform(2.0, 7.0)]),
      'stripe_tint': rng.uniform(0.5, 1.0, size=3),
      'noise': rng.standard_normal((size, size, 3), dtype=np.float32),
  }


def _backgrounds(draws, size: int) -> np.ndarray:
  """Gradient plus stripes for a chunk: (M, S, S, 3) float64 in [0, 255]-ish."""
  grid = np.arange(size) + 0.5 - size / 2.0
  yy, xx = grid[None, :, None], grid[None, None, :]
  p = np.stack([d['params'] for d in draws])
  bg = np.stack([d['bg'] for d in draws])
  tint = np.stack([d['stripe_tint'] for d in draws])

  def col(k):
    return p[:, k, None, None]

  # Projection onto the gradient direction, scaled so the corners reach 0 and 1.
  t = 0.5 + (xx * np.cos(col(0)) + yy * np.sin(col(0))) / (size * math.sqrt(2.0))
  image = bg[:, None, None, 0] + (bg[:, None, None, 1] - bg[:, None, None, 0]) * t[..., None]
  phase = 2 * math.pi * col(3) * (xx * np.cos(col(1)) + yy * np.sin(col(1))) / size + col(2)
  stripes = col(4) * np.sin(phase)
  return image + stripes[..., None] * tint[:, None, None, :]


def _render_chunk(draws, size: int, k_max: int, owners: bool = False):
  """Images, masks, boxes, box labels and (``owners``) each pixel's visible slot or -1."""
  m = len(draws)
  canvas = _backgrounds(draws, size)
  masks = np.zeros((m, size, size), np.int32)
  # The slot drawn last over each pixel: the visible object (instance masks).
  owner = np.full((m, size, size), -1, np.int16) if owners else None
  boxes = np.zeros((m, k_max, 4), np.float32)
  box_labels = np.full((m, k_max), -1, np.int32)
  grid = np.arange(size) + 0.5
  for slot in range(k_max):
    owners = np.array([i for i, d in enumerate(draws) if len(d['kinds']) > slot], int)
    if not owners.size:
      break
    kinds = np.array([draws[i]['kinds'][slot] for i in owners])
    for kind in np.unique(kinds):
      idx = owners[kinds == kind]
      sel = [draws[i] for i in idx]
      r = np.array([d['radii'][slot] for d in sel])[:, None, None]
      a = np.array([d['angles'][slot] for d in sel])[:, None, None]
      cy, cx = (np.array([d['centres'][slot][k] for d in sel])[:, None, None] for k in (0, 1))
      dy, dx = (grid[None, :, None] - cy) / r, (grid[None, None, :] - cx) / r
      u = np.cos(a) * dx + np.sin(a) * dy
      v = -np.sin(a) * dx + np.cos(a) * dy
      inside = _SHAPE_TABLE[SHAPES[kind]][0](u, v)
      area = inside.sum(axis=(1, 2))
      # Pick the candidate colour farthest from what is under the shape now,
      # so it stands out from the background and from objects it overlaps.
      under = (canvas[idx] * inside[..., None]).sum(axis=(1, 2)) / np.maximum(area, 1)[:, None]
      cands = np.stack([d['colours'][slot] for d in sel])
      best = np.argmax(np.linalg.norm(cands - under[:, None], axis=-1), axis=1)
      colour = cands[np.arange(len(idx)), best]
      canvas[idx] = np.where(inside[..., None], colour[:, None, None, :], canvas[idx])
      masks[idx] = np.where(inside, kind + 1, masks[idx])
      if owner is not None:
        owner[idx] = np.where(inside, slot, owner[idx])
      rows, cols = inside.any(axis=2), inside.any(axis=1)
      # Tight box of the object's own pixels (before later objects cover it),
      # as pixel edges: pixel i spans [i, i + 1) / size.
      y0, x0 = rows.argmax(axis=1), cols.argmax(axis=1)
      y1, x1 = size - rows[:, ::-1].argmax(axis=1), size - cols[:, ::-1].argmax(axis=1)
      box = np.stack([y0, x0, y1, x1], axis=1) / size
      boxes[idx, slot] = np.where(area[:, None] > 0, box, 0.0)
      box_labels[idx, slot] = np.where(area > 0, kind, -1)
  return _finish(canvas, draws), masks, boxes, box_labels, owner


def _finish(canvas: np.ndarray, draws) -> np.ndarray:
  """Adds each draw's pixel noise and quantises: (M, S, S, 3) float -> uint8."""
  noise = np.stack([d['noise'] * d['params'][5] for d in draws])
  return np.clip(np.rint(canvas + noise), 0, 255).astype(np.uint8)


def render_scenes(num_examples: int, *, image_size: int = 32, num_classes: int = 10,
                  objects_per_image: int | tuple[int, int] = (1, 1),
                  seed: int = 0, instance_masks: bool = False) -> dict[str, np.ndarray]:
  """Renders ``num_examples`` images of random shapes, with labels, boxes and masks.

  Args:
    num_examples: number of images N.
    image_size: height and width S (at least 16).
    num_classes: shape kinds used, ``SHAPES[:num_classes]`` (1 to ``len(SHAPES)``).
    objects_per_image: ``(min, max)`` objects per image, uniform; an int ``k``
      means exactly ``k``. ``min = 0`` gives some background-only images
      (localisation's ``p_c = 0``): their label is -1.
    seed: non-negative int; example ``i`` depends only on ``(seed, i)``.
    instance_masks: also return ``'instance_masks'`` (N*K*S*S bytes, so off by
      default); nothing else changes.

  Returns:
    A dict of numpy arrays, K = ``max`` objects per image:

    * ``'images'``: (N, S, S, 3) uint8.
    * ``'labels'``: (N,) int32 kind of the largest object (``box_labels[:, 0]``;
      -1 for an image without objects).
    * ``'boxes'``: (N, K, 4) float32 ``(y_min, x_min, y_max, x_max)`` in [0, 1],
      tight around each object's pixels, objects sorted by decreasing size;
      padding rows are zero.
    * ``'box_labels'``: (N, K) int32 kind per box, -1 for padding.
    * ``'masks'``: (N, S, S) int32, 0 for background and ``kind + 1`` where an
      object is visible (later, smaller objects drawn on top).
    * ``'instance_masks'`` (only if asked): (N, K, S, S) bool, the visible
      pixels of each object, in box order (all False for padding), so they
      never overlap and their union is ``masks > 0``.

  Raises:
    ValueError: for an out-of-range size, class count, object count or seed.
  """
  lo, hi = _check_args(num_examples, image_size, num_classes, objects_per_image, seed)
  n, size = int(num_examples), int(image_size)
  out = {
      'images': np.zeros((n, size, size, 3), np.uint8),
      'labels': np.zeros((n,), np.int32),
      'boxes': np.zeros((n, hi, 4), np.float32),
      'box_labels': np.full((n, hi), -1, np.int32),
      'masks': np.zeros((n, size, size), np.int32),
  }
  if instance_masks:
    out['instance_masks'] = np.zeros((n, hi, size, size), bool)
  for start in range(0, n, _CHUNK):
    stop = min(start + _CHUNK, n)
    draws = [_draw_example(np.random.default_rng([int(seed), i]), size, num_classes, lo, hi)
             for i in range(start, stop)]
    images, masks, boxes, box_labels, owner = _render_chunk(draws, size, hi, instance_masks)
    if instance_masks:
      out['instance_masks'][start:stop] = owner[:, None] == np.arange(hi)[None, :, None, None]
    out['images'][start:stop] = images
    out['masks'][start:stop] = masks
    out['boxes'][start:stop] = boxes
    out['box_labels'][start:stop] = box_labels
  out['labels'] = out['box_labels'][:, 0].copy()
  return out


def load_synthetic(split: str = 'train', *, num_examples: int | None = None,
                   image_size: int = 32, num_classes: int = 10, seed: int = 0,
                   objects_per_image: int | tuple[int, int] = (1, 1),
                   instance_masks: bool = False) -> ArrayDataset:
  """One split of the synthetic shapes as an :class:`ArrayDataset`.

  Train and test render from different derived seeds (``2 * seed`` and
  ``2 * seed + 1``), so they never share an image.

  Args:
    split: ``'train'`` (default 10000 images) or ``'test'`` (default 2000).
    num_examples: overrides the split's default size.
    image_size, num_classes, objects_per_image: as in :func:`render_scenes`.
    seed: non-negative int selecting the whole dataset.
    instance_masks: also put ``instance_masks`` (N, K, S, S) bool in extras
      (off by default: N*K*S*S bytes).

  Returns:
    ``images`` (N, S, S, 3) uint8, ``labels`` (N,) int32, ``class_names``
    ``SHAPES[:num_classes]`` and ``extras`` ``boxes`` (N, K, 4), ``box_labels``
    (N, K) and ``masks`` (N, S, S) (and ``instance_masks`` if asked).
  """
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; choose one of {", ".join(SPLITS)}.')
  if not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f'seed must be a non-negative int, got {seed!r}.')
  if num_examples is None:
    num_examples = _DEFAULT_SIZES[split]
  scenes = render_scenes(num_examples, image_size=image_size, num_classes=num_classes,
                         objects_per_image=objects_per_image,
                         seed=2 * int(seed) + SPLITS.index(split), instance_masks=instance_masks)
  extras = {k: scenes[k] for k in ('boxes', 'box_labels', 'masks', 'instance_masks')
            if k in scenes}
  return ArrayDataset(scenes['images'], scenes['labels'], SHAPES[:num_classes], extras)


# ----------------------------------------------------------------------------- identities

def identity_colour(identity: int) -> np.ndarray:
  """The RGB colour (0..255) of an identity: hues spaced by the golden ratio."""
  import colorsys
  hue = (identity * 0.6180339887) % 1.0
  return np.array(colorsys.hsv_to_rgb(hue, 0.85, 0.95)) * 255.0


def render_identities(identities: range | list[int], per_identity: int, *,
                      image_size: int = 32, seed: int = 0) -> ArrayDataset:
  """Images of "identities" for face-verification style experiments.

  Identity ``i`` is one shape kind (``SHAPES[i % len(SHAPES)]``) in one colour
  (:func:`identity_colour`); two identities with the same shape differ in
  colour. Every image of an identity varies in the nuisance the scenes have:
  position, size, rotation (within the kind's limits), background, noise, and
  a +-15% brightness jitter. Image ``j`` of identity ``i`` depends only on
  ``(seed, i, j)``, so disjoint identity ranges give disjoint, unseen people.

  Args:
    identities: the identity ids, e.g. ``range(40)`` to train, ``range(40, 60)``
      to test on unseen ones.
    per_identity: images per identity.
    image_size: side S (at least 16).
    seed: non-negative int.

  Returns:
    ``images`` (N, S, S, 3) uint8 and ``labels`` (N,) int32 in
    ``0..len(identities)-1`` (in the order given), ``class_names`` ``'id<i>'``.
  """
  identities = [int(i) for i in identities]
  _check_args(per_identity, image_size, 1, 1, seed)
  if not identities or min(identities) < 0:
    raise ValueError(f'identities must be non-empty non-negative ids, got {identities[:5]}.')
  size = int(image_size)
  draws, labels = [], []
  for label, identity in enumerate(identities):
    kind = identity % len(SHAPES)
    rotation = _SHAPE_TABLE[SHAPES[kind]][1]
    for j in range(per_identity):
      rng = np.random.default_rng([int(seed), identity, j])
      d = _draw_example(rng, size, 1, 1, 1)
      d['kinds'] = np.array([kind])
      if rotation is not None:
        d['angles'] = np.radians([rotation[0] + rng.uniform(-rotation[1], rotation[1])])
      colour = np.clip(identity_colour(identity) * rng.uniform(0.85, 1.15), 0, 255)
      d['colours'] = np.broadcast_to(colour, (1, _COLOUR_CANDIDATES, 3))
      draws.append(d)
      labels.append(label)
  images = np.concatenate([_render_chunk(draws[s:s + _CHUNK], size, 1)[0]
                           for s in range(0, len(draws), _CHUNK)])
  return ArrayDataset(images, np.asarray(labels, np.int32),
                      tuple(f'id{i}' for i in identities))


# ----------------------------------------------------------------------------- faces

# The five landmarks of the synthetic faces, named by the side of the image
# they are on (so a mirror swaps each left/right pair).
FACE_LANDMARKS = ('left_eye', 'right_eye', 'nose_tip', 'mouth_left', 'mouth_right')
FACE_FLIP_PAIRS = ((0, 1), (3, 4))


def _draw_face(rng: np.random.Generator, size: int) -> dict[str, np.ndarray]:
  """All random choices of one face; landmarks in face units (u right, v down, radii 1)."""
  rx = size * rng.uniform(0.22, 0.32)
  ry = min(rx * rng.uniform(1.15, 1.35), 0.46 * size)
  reach = max(rx, ry)
  eye_dx, eye_y = rng.uniform(0.3, 0.45), rng.uniform(-0.35, -0.15)
  mouth_dx, mouth_y = rng.uniform(0.22, 0.38), rng.uniform(0.42, 0.56)
  local = np.array([(-eye_dx, eye_y), (eye_dx, eye_y),
                    (rng.uniform(-0.12, 0.12), rng.uniform(0.05, 0.2)),
                    (-mouth_dx, mouth_y), (mouth_dx, mouth_y)])
  return {
      'radii': np.array([rx, ry]), 'angle': np.radians(rng.uniform(-25.0, 25.0)),
      'centre': rng.uniform(reach, size - reach, size=2), 'local': local,
      'skin': rng.uniform(100.0, 245.0, size=3), 'dark': rng.uniform(0.0, 70.0, size=3),
      'lips': np.array([rng.uniform(130, 230), rng.uniform(0, 90), rng.uniform(0, 90)]),
      **_draw_background(rng, size),
  }


def _segment_distance(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Distance of points (px, py) to the segment from ``a`` to ``b`` ((x, y) each)."""
  d = b - a
  t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / max(float(d @ d), 1e-12), 0.0, 1.0)
  return np.hypot(px - a[0] - t * d[0], py - a[1] - t * d[1])


def _render_face(d: dict[str, np.ndarray], canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Paints one face on ``canvas`` (S, S, 3) in place; returns landmarks (5, 2) and box (4,), pixels."""
  size = canvas.shape[0]
  (rx, ry), (cx, cy), a = d['radii'], d['centre'], d['angle']
  cos, sin = math.cos(a), math.sin(a)
  u, v = d['local'][:, 0] * rx, d['local'][:, 1] * ry
  marks = np.stack([cx + cos * u - sin * v, cy + sin * u + cos * v], -1)  # (x, y) pixels
  grid = np.arange(size) + 0.5
  px, py = grid[None, :], grid[:, None]
  fu = (cos * (px - cx) + sin * (py - cy)) / rx
  fv = (-sin * (px - cx) + cos * (py - cy)) / ry
  canvas[np.square(fu) + np.square(fv) <= 1.0] = d['skin']
  eye = max(0.1 * rx, 1.2)
  nose_root = marks[:2].mean(0) + 0.25 * (marks[2] - marks[:2].mean(0))
  strokes = [(np.hypot(px - x, py - y) <= 1.8 * eye, np.full(3, 250.0)) for x, y in marks[:2]]
  strokes += [(np.hypot(px - x, py - y) <= eye, d['dark']) for x, y in marks[:2]]
  strokes += [(_segment_distance(px, py, nose_root, marks[2]) <= max(0.05 * rx, 0.7),
               0.6 * d['skin']),
              (np.hypot(px - marks[2, 0], py - marks[2, 1]) <= max(0.08 * rx, 1.0),
               0.45 * d['skin']),
              (_segment_distance(px, py, marks[3], marks[4]) <= max(0.07 * ry, 0.9), d['lips'])]
  for inside, colour in strokes:
    canvas[inside] = colour
  half = np.array([math.hypot(rx * sin, ry * cos), math.hypot(rx * cos, ry * sin)])  # (y, x)
  box = np.concatenate([np.array([cy, cx]) - half, np.array([cy, cx]) + half])
  return marks, np.clip(box, 0.0, size)


def render_faces(num_examples: int, *, image_size: int = 64, seed: int = 0
                 ) -> dict[str, np.ndarray]:
  """Synthetic faces with known landmarks (eyes, nose tip, mouth corners).

  An elliptic face of random size, skin colour, position and roll (+-25
  degrees) on the scenes' textured backgrounds, with eyes (white and pupil),
  a nose line ending in a tip, and a mouth line between its corners; the
  landmark positions inside the face vary per image too. Example ``i``
  depends only on ``(seed, i)``.

  Returns:
    ``'images'`` (N, S, S, 3) uint8; ``'landmarks'`` (N, 5, 2) float32 ``(x, y)``
    in [0, 1] (pixel ``j`` spans ``[j, j + 1) / S``), in :data:`FACE_LANDMARKS`
    order; ``'face_box'`` (N, 4) float32 corners ``(y0, x0, y1, x1)`` of the
    face ellipse, in [0, 1].
  """
  _check_args(num_examples, image_size, 1, 1, seed)
  n, size = int(num_examples), int(image_size)
  out = {'images': np.zeros((n, size, size, 3), np.uint8),
         'landmarks': np.zeros((n, len(FACE_LANDMARKS), 2), np.float32),
         'face_box': np.zeros((n, 4), np.float32)}
  for start in range(0, n, _CHUNK):
    draws = [_draw_face(np.random.default_rng([int(seed), i]), size)
             for i in range(start, min(start + _CHUNK, n))]
    canvas = _backgrounds(draws, size)
    for j, d in enumerate(draws):
      out['landmarks'][start + j], out['face_box'][start + j] = (
          x / size for x in _render_face(d, canvas[j]))
    out['images'][start:start + len(draws)] = _finish(canvas, draws)
  return out


def load_faces(split: str = 'train', *, num_examples: int | None = None, image_size: int = 64,
               seed: int = 0) -> ArrayDataset:
  """One split of :func:`render_faces` (train and test from different derived seeds).

  Returns ``images``, ``labels`` (all 0, class ``'face'``) and ``extras``
  ``landmarks`` (N, 5, 2) ``(x, y)`` in [0, 1] and ``face_box`` (N, 4).
  """
  if split not in SPLITS:
    raise ValueError(f'unknown split {split!r}; choose one of {", ".join(SPLITS)}.')
  if num_examples is None:
    num_examples = _DEFAULT_SIZES[split]
  faces = render_faces(num_examples, image_size=image_size,
                       seed=2 * int(seed) + SPLITS.index(split))
  return ArrayDataset(faces['images'], np.zeros(len(faces['images']), np.int32), ('face',),
                      {'landmarks': faces['landmarks'], 'face_box': faces['face_box']})
