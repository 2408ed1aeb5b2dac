"""Hand-made 3x3 edge-detection kernels and an ``edge_detect`` built on ``conv2d``.

Kernels are ``(3, 3)`` float32 arrays applied by cross-correlation (what
``conv2d`` computes), so the ``_x`` kernels respond to intensity falling from
left to right and the ``_y`` kernels to intensity falling from top to bottom:
a bright-left / dark-right image gives positive ``vertical`` responses.

``vertical`` / ``horizontal`` weigh the three rows or columns equally
(Prewitt), Sobel weighs the centre by 2, Scharr by 10 (with 3 outside) for a
more rotation-invariant gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops.conv import Impl, conv2d
from cnn_jax.ops.shapes import Padding

# Kept as numpy so that importing the module does not start a JAX backend.
_X_KERNELS = {
    'vertical': np.array([[1, 0, -1], [1, 0, -1], [1, 0, -1]], np.float32),
    'sobel_x': np.array([[1, 0, -1], [2, 0, -2], [1, 0, -1]], np.float32),
    'scharr_x': np.array([[3, 0, -3], [10, 0, -10], [3, 0, -3]], np.float32),
}
_Y_NAMES = {'vertical': 'horizontal', 'sobel_x': 'sobel_y', 'scharr_x': 'scharr_y'}
_KERNELS = {**_X_KERNELS, **{_Y_NAMES[k]: v.T for k, v in _X_KERNELS.items()}}
_MAGNITUDES = {'sobel': ('sobel_x', 'sobel_y'), 'scharr': ('scharr_x', 'scharr_y')}
# How 'sobel' / 'scharr' combine their two responses gx, gy.
COMBINES: tuple[str, ...] = ('magnitude', 'sum')

EDGE_KERNELS: tuple[str, ...] = tuple(_KERNELS)
EDGE_KINDS: tuple[str, ...] = EDGE_KERNELS + tuple(_MAGNITUDES)

# ITU-R BT.601 luma weights for R, G, B.
_LUMA = (0.299, 0.587, 0.114)


def edge_kernel(kind: str) -> jax.Array:
  """The ``(3, 3)`` float32 kernel named ``kind`` (one of ``EDGE_KERNELS``)."""
  if kind not in _KERNELS:
    raise ValueError(f'unknown edge kernel {kind!r}; known kernels: {", ".join(EDGE_KERNELS)}.')
  return jnp.asarray(_KERNELS[kind])


def vertical() -> jax.Array:
  """``[[1, 0, -1]] * 3``: responds to vertical edges."""
  return edge_kernel('vertical')


def horizontal() -> jax.Array:
  """Transpose of ``vertical()``: responds to horizontal edges."""
  return edge_kernel('horizontal')


def sobel_x() -> jax.Array:
  """``[[1, 0, -1], [2, 0, -2], [1, 0, -1]]``: Sobel derivative across columns."""
  return edge_kernel('sobel_x')


def sobel_y() -> jax.Array:
  """Transpose of ``sobel_x()``: Sobel derivative across rows."""
  return edge_kernel('sobel_y')


def scharr_x() -> jax.Array:
  """``[[3, 0, -3], [10, 0, -10], [3, 0, -3]]``: Scharr derivative across columns."""
  return edge_kernel('scharr_x')


def scharr_y() -> jax.Array:
  """Transpose of ``scharr_x()``: Scharr derivative across rows."""
  return edge_kernel('scharr_y')


def _to_gray_batch(image: jax.Array) -> jax.Array:
  """``(H, W)``, ``(H, W, C)`` or ``(N, H, W, C)`` -> floating ``(N, H, W, 1)``."""
  shape = tuple(image.shape)
  if image.ndim == 2:
    image = image[None, :, :, None]
  elif image.ndim == 3:
    image = image[None]
  if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(
        f'edge_detect expects an image of shape (H, W), (H, W, C) or (N, H, W, C) with C in '
        f'(1, 3, 4), got shape {shape}; for a batch of gray images add a channel axis with '
        'image[..., None].')
  if not jnp.issubdtype(image.dtype, jnp.floating):
    image = image.astype(jnp.float32)
  if image.shape[-1] == 1:
    return image
  # Weighted sum of channel slices rather than a matmul: a dot could run in
  # TF32/bf16 on accelerators, and this is exact enough in any float dtype.
  # An alpha channel (C=4) is simply dropped.
  r, g, b = (image[..., i:i + 1] for i in range(3))
  return _LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b


def edge_detect(image: jax.Array, kind: str = 'sobel', padding: Padding = 'VALID',
                impl: Impl = 'lax', combine: str = 'magnitude') -> jax.Array:
  """Edge map of an image by cross-correlation with a 3x3 edge kernel.

  RGB(A) images are first reduced to luminance with the ITU-R BT.601 weights
  (0.299, 0.587, 0.114), dropping alpha; integer images (e.g. uint8) are
  converted to float32 without rescaling.

  Args:
    image: ``(H, W)`` gray, ``(H, W, C)`` with C = 1 (gray), 3 (RGB) or
      4 (RGBA), or a batch ``(N, H, W, C)``.
    kind: one of ``EDGE_KINDS``. The kernel names (``'vertical'``,
      ``'horizontal'``, ``'sobel_x'``, ``'sobel_y'``, ``'scharr_x'``,
      ``'scharr_y'``) give the signed response; ``'sobel'`` and ``'scharr'``
      combine the ``_x`` and ``_y`` responses ``gx, gy`` as ``combine`` says.
    padding: any spelling from :mod:`cnn_jax.ops.shapes` (``'SAME'`` keeps
      ``H, W``; padding is with zeros).
    impl: ``conv2d`` implementation, ``'lax'`` or ``'einsum'``.
    combine: for ``'sobel'`` / ``'scharr'`` only. ``'magnitude'`` (the
      default) is the gradient magnitude ``sqrt(gx^2 + gy^2)``: non-negative
      and the same for an edge at any orientation. ``'sum'`` is ``gx + gy``,
      the course's "add the vertical and the horizontal responses": one
      cross-correlation with ``k_x + k_y`` (for Sobel
      ``[[2, 2, 0], [2, 0, -2], [0, -2, -2]]``), signed, strongest on edges
      along the anti-diagonal (bright top-left) and blind where
      ``gx = -gy`` (an edge along the main diagonal, bright top-right).

  Returns:
    ``(H', W')`` for a single image, ``(N, H', W')`` for a batch, where
    ``H' = H - 2`` for ``'VALID'``.
  """
  if kind not in EDGE_KINDS:
    raise ValueError(f'unknown edge kind {kind!r}; known kinds: {", ".join(EDGE_KINDS)}.')
  if combine not in COMBINES:
    raise ValueError(f'combine={combine!r} is not valid; choose one of {", ".join(COMBINES)}.')
  if combine != 'magnitude' and kind not in _MAGNITUDES:
    # A single kernel has nothing to combine: refuse rather than silently ignore.
    raise ValueError(f'combine={combine!r} needs kind sobel or scharr (two responses), '
                     f'got kind {kind!r}.')
  batched = jnp.ndim(image) == 4
  x = _to_gray_batch(jnp.asarray(image))
  names = _MAGNITUDES.get(kind, (kind,))
  # One conv with an output channel per kernel: HWIO (3, 3, 1, len(names)).
  w = jnp.stack([edge_kernel(n) for n in names], axis=-1)[:, :, None, :].astype(x.dtype)
  # Edges are small differences of large values; TF32 would blur them.
  y = conv2d(x, w, padding=padding, impl=impl, precision=lax.Precision.HIGHEST)
  if kind in _MAGNITUDES and combine == 'sum':
    y = y[..., 0] + y[..., 1]
  elif kind in _MAGNITUDES:
    sq = jnp.sum(jnp.square(y), axis=-1)
    # Safe-where: sqrt has an infinite slope at 0 (flat regions), which would
    # make gradients through the magnitude NaN.
    flat = sq == 0
    y = jnp.where(flat, 0, jnp.sqrt(jnp.where(flat, 1, sq)))
  else:
    y = y[..., 0]
  return y if batched else y[0]
