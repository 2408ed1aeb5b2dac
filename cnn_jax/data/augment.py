"""Data augmentation as pure ``jnp`` functions, run on device inside the step.

Single-image functions take one ``(H, W, C)`` float image and, when random, a
PRNG key; :func:`augment_batch` splits one key into per-example keys and
``vmap``s them over an ``(N, H, W, C)`` batch. Transforms that are switched
off are skipped at trace time, so they cost nothing in the compiled step.

Geometry conventions (see :func:`affine_matrix`): coordinates are ``(x, y)``
in pixels relative to the image centre ``((W - 1) / 2, (H - 1) / 2)``, ``x``
to the right along columns and ``y`` down along rows. A matrix maps input
coordinates to output coordinates, i.e. it moves the *content*: a positive
shift moves it right/down, a positive rotation turns it counter-clockwise as
displayed (90 degrees equals ``np.rot90(x)``), zoom > 1 enlarges it. Pixels
that come from outside the input are zero, which after :func:`normalize` is
the dataset mean.
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
from jax import lax
from jax.scipy import ndimage

from cnn_jax.ops.shapes import check_nhwc

# Per-channel RGB statistics of images scaled to [0, 1]. CIFAR-10's std is the
# per-pixel std over the training set (not the often-copied 0.2023, 0.1994, 0.2010).
CIFAR10_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize(images: jax.Array, mean, std) -> jax.Array:
  """``(images / 255 - mean) / std`` per channel, as float32.

  Args:
    images: (..., C) uint8 (or any real dtype on the 0..255 scale).
    mean, std: (C,) per-channel statistics of images scaled to [0, 1], e.g.
      ``CIFAR10_MEAN`` / ``CIFAR10_STD``.

  Returns:
    (..., C) float32.
  """
  images = jnp.asarray(images)
  mean = jnp.asarray(mean, jnp.float32)
  std = jnp.asarray(std, jnp.float32)
  channels = images.shape[-1] if images.ndim else None
  if mean.shape not in ((), (channels,)) or std.shape not in ((), (channels,)):
    raise ValueError(f'mean {mean.shape} and std {std.shape} must be scalars or have one entry '
                     f'per channel ({channels}) of images {tuple(images.shape)}.')
  return (images.astype(jnp.float32) / 255.0 - mean) / std


def _check_image(x, name: str) -> None:
  if x.ndim != 3:
    raise ValueError(f'{name} expects one (H, W, C) image, got shape {tuple(x.shape)}; '
                     'use augment_batch (or jax.vmap) for a batch.')


def flip_lr(x: jax.Array) -> jax.Array:
  """Mirrors an (H, W, C) image left-right: column ``j`` goes to ``W - 1 - j``."""
  _check_image(x, 'flip_lr')
  return x[:, ::-1, :]


def random_flip(key: jax.Array, x: jax.Array, p: float = 0.5) -> jax.Array:
  """:func:`flip_lr` with probability ``p``; (H, W, C) -> (H, W, C)."""
  _check_image(x, 'random_flip')
  return jnp.where(jax.random.bernoulli(key, p), flip_lr(x), x)


PAD_MODES = ('constant', 'reflect', 'edge')


def random_crop(key: jax.Array, x: jax.Array, padding: int, mode: str = 'constant') -> jax.Array:
  """Pads by ``padding`` on every side, then crops back to (H, W) at a random offset.

  The CIFAR recipe of He et al. (2016): the content shifts by a uniform
  integer ``(dy, dx)`` in ``[-padding, padding]`` per axis, zeros fill in
  (``mode='constant'``); airbench fills by reflection (``mode='reflect'``).

  Args:
    key: PRNG key.
    x: (H, W, C) image.
    padding: static non-negative int; 0 returns ``x``.
    mode: ``jnp.pad`` mode of the border: 'constant' (zeros), 'reflect' or 'edge'.

  Returns:
    (H, W, C), same dtype.
  """
  _check_image(x, 'random_crop')
  if not isinstance(padding, int) or padding < 0:
    raise ValueError(f'padding must be a non-negative int, got {padding!r}.')
  if mode not in PAD_MODES:
    raise ValueError(f'unknown crop padding mode {mode!r}; choose one of {PAD_MODES}.')
  if padding == 0:
    return x
  h, w, c = x.shape
  padded = jnp.pad(x, ((padding, padding), (padding, padding), (0, 0)), mode=mode)
  offset = jax.random.randint(key, (2,), 0, 2 * padding + 1, dtype=jnp.int32)
  return lax.dynamic_slice(padded, (offset[0], offset[1], jnp.int32(0)), (h, w, c))


def affine_matrix(*, rotation=0.0, shift=(0.0, 0.0), zoom=1.0, shear=0.0) -> jax.Array:
  """The 3x3 float32 matrix ``T @ R @ S @ Z`` acting on centred ``(x, y, 1)``.

  Args:
    rotation: degrees, counter-clockwise as displayed.
    shift: ``(dx, dy)`` in pixels, right/down.
    zoom: scale factor, > 1 enlarges.
    shear: degrees; horizontal shear ``x' = x + tan(shear) * y``, which leaves
      the centre row fixed.

  All arguments may be traced scalars.
  """
  theta = jnp.deg2rad(jnp.asarray(rotation, jnp.float32))
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  # With y pointing down, counter-clockwise on screen is [[c, s], [-s, c]].
  rot = jnp.stack([jnp.stack([cos, sin]), jnp.stack([-sin, cos])])
  shear_m = jnp.eye(2, dtype=jnp.float32).at[0, 1].set(
      jnp.tan(jnp.deg2rad(jnp.asarray(shear, jnp.float32))))
  linear = rot @ shear_m * jnp.asarray(zoom, jnp.float32)
  shift = jnp.asarray(shift, jnp.float32).reshape(2)
  top = jnp.concatenate([linear, shift[:, None]], axis=1)
  return jnp.concatenate([top, jnp.array([[0.0, 0.0, 1.0]], jnp.float32)], axis=0)


def affine(x: jax.Array, matrix: jax.Array) -> jax.Array:
  """Applies an affine map about the image centre by bilinear sampling.

  Each output pixel ``p`` reads the input at ``A^-1 (p - t)`` (bilinear,
  ``map_coordinates(order=1)``), zero outside the input.

  Args:
    x: (H, W, C) floating image.
    matrix: (2, 3) ``[A | t]`` or (3, 3) (its last row is ignored), mapping
      centred input ``(x, y)`` to output ``(x, y)``; see :func:`affine_matrix`.

  Returns:
    (H, W, C), same dtype as ``x``.
  """
  _check_image(x, 'affine')
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise ValueError(f'affine expects a floating image, got {x.dtype}; convert with normalize().')
  matrix = jnp.asarray(matrix, jnp.float32)
  if matrix.shape not in ((2, 3), (3, 3)):
    raise ValueError(f'matrix must have shape (2, 3) or (3, 3), got {matrix.shape}.')
  h, w, _ = x.shape
  a, t = matrix[:2, :2], matrix[:2, 2]
  # Analytic 2x2 inverse: exact for the identity and cheap under vmap.
  det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
  inv = jnp.stack([jnp.stack([a[1, 1], -a[0, 1]]), jnp.stack([-a[1, 0], a[0, 0]])]) / det
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  rows, cols = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                            jnp.arange(w, dtype=jnp.float32), indexing='ij')
  ox, oy = cols - cx - t[0], rows - cy - t[1]
  src_x = inv[0, 0] * ox + inv[0, 1] * oy + cx
  src_y = inv[1, 0] * ox + inv[1, 1] * oy + cy

  def sample(channel):
    return ndimage.map_coordinates(channel, [src_y, src_x], order=1, mode='constant', cval=0.0)

  out = jax.vmap(sample, in_axes=2, out_axes=2)(x.astype(jnp.float32))
  return out.astype(x.dtype)


def random_affine(key: jax.Array, x: jax.Array, *, rotation: float = 0.0, shift: float = 0.0,
                  zoom: float = 0.0, shear: float = 0.0) -> jax.Array:
  """A random :func:`affine` map with each parameter uniform in its range.

  Args:
    key: PRNG key.
    x: (H, W, C) floating image.
    rotation: max degrees; angle in ``[-rotation, rotation]``.
    shift: max fraction of the size; per-axis shift in ``[-shift, shift] * (W, H)``.
    zoom: max fraction; scale in ``[1 - zoom, 1 + zoom]``.
    shear: max degrees; shear angle in ``[-shear, shear]``.

  Returns:
    (H, W, C), same dtype; ``x`` itself when every range is 0.
  """
  _check_image(x, 'random_affine')
  for name, value in (('rotation', rotation), ('shift', shift), ('zoom', zoom), ('shear', shear)):
    if value < 0:
      raise ValueError(f'{name} is a maximum magnitude and must be >= 0, got {value!r}.')
  if not zoom < 1:
    raise ValueError(f'zoom must be below 1 so the scale 1 - zoom stays positive, got {zoom!r}.')
  if not shear < 90:
    raise ValueError(f'shear must be below 90 degrees, got {shear!r}.')
  if rotation == shift == zoom == shear == 0:
    return x
  h, w, _ = x.shape
  u = jax.random.uniform(key, (5,), jnp.float32, -1.0, 1.0)
  matrix = affine_matrix(rotation=u[0] * rotation,
                         shift=jnp.stack([u[1] * (shift * w), u[2] * (shift * h)]),
                         zoom=1.0 + u[3] * zoom, shear=u[4] * shear)
  return affine(x, matrix)


def augment_batch(key: jax.Array, images: jax.Array, *, crop_padding: int = 0,
                  crop_mode: str = 'constant', flip: bool = False, rotation: float = 0.0,
                  shift: float = 0.0, zoom: float = 0.0, shear: float = 0.0) -> jax.Array:
  """Independent random augmentation of every image in a batch.

  Per image, in order: :func:`random_affine` (if any of rotation, shift, zoom,
  shear is non-zero), :func:`random_crop` (if ``crop_padding``), then
  :func:`random_flip` (if ``flip``). Every keyword must be static under
  ``jit`` (``static_argnames``); disabled transforms are not traced at all.
  ``crop_mode`` is the crop's border fill (see :func:`random_crop`).

  Args:
    key: one PRNG key, split into N per-example keys, or those (N,) keys.
    images: (N, H, W, C) floating images (e.g. from :func:`normalize`).

  Returns:
    (N, H, W, C), same dtype.
  """
  check_nhwc(images, 'augment_batch')
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f'augment_batch expects floating images, got {images.dtype}; '
                     'convert with normalize() first.')
  use_affine = any(v != 0 for v in (rotation, shift, zoom, shear))
  if not (use_affine or crop_padding or flip):
    return images

  def one(k, x):
    k_affine, k_crop, k_flip = jax.random.split(k, 3)
    if use_affine:
      x = random_affine(k_affine, x, rotation=rotation, shift=shift, zoom=zoom, shear=shear)
    if crop_padding:
      x = random_crop(k_crop, x, crop_padding, crop_mode)
    if flip:
      x = random_flip(k_flip, x)
    return x

  n = images.shape[0]
  keys = key if key.shape == (n,) else jax.random.split(key, n)
  return jax.vmap(one)(keys, images)
