"""Geometric augmentation that moves boxes and label masks with the pixels (pure ``jnp``).

Everything here is one example at a time (``jax.vmap`` over the batch; see
:func:`random_scale_crop` and :func:`resize_to`), with static shapes, so it
runs inside the compiled train step. The image, its boxes and its mask share
the same random draw, hence the same map.

Conventions: pixel ``i`` covers the continuous interval ``[i, i + 1)`` (as in
:mod:`cnn_jax.data.annotations`); boxes are ``(y0, x0, y1, x1)`` corners in
[0, 1] of the image, so pixel coordinates are ``y * H`` and ``x * W``. Every
map here is ``out = in * scale + translation`` per axis in those continuous
pixel coordinates, which is exactly what :func:`jax.image.scale_and_translate`
applies to the image, so boxes move by the same formula in closed form.
Pixels that come from outside the input are zero in images (after
normalisation: the dataset mean, as in :mod:`cnn_jax.data.augment`) and
``ignore_index`` in masks.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from cnn_jax.data.annotations import IGNORE


def _check_scale(scale: Sequence[float]) -> tuple[float, float]:
  if len(scale) != 2 or not 0 < float(scale[0]) <= float(scale[1]):
    raise ValueError(f'scale_crop must be (min, max) zoom factors with 0 < min <= max, '
                     f'got {tuple(scale)!r}, e.g. (0.5, 1.5).')
  return float(scale[0]), float(scale[1])


def _resample_image(image: jax.Array, out_hw: tuple[int, int], scale: jax.Array,
                    translation: jax.Array) -> jax.Array:
  """Bilinear (antialiased when shrinking) ``out = in * scale + translation``, zero outside."""
  if not jnp.issubdtype(image.dtype, jnp.floating):
    raise ValueError(f'box augmentation expects a floating image, got {image.dtype}.')
  out = jax.image.scale_and_translate(image.astype(jnp.float32), (*out_hw, image.shape[2]),
                                      (0, 1), scale, translation, 'linear')
  return out.astype(image.dtype)


def _source_index(n_out: int, scale: jax.Array, translation: jax.Array, n_in: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
  """Nearest source index of each output pixel centre and whether it lies inside ``[0, n_in)``."""
  src = (jnp.arange(n_out, dtype=jnp.float32) + 0.5 - translation) / scale
  valid = (src >= 0) & (src < n_in.astype(jnp.float32))
  return jnp.floor(src).astype(jnp.int32), valid


def _resample_mask(mask: jax.Array, out_hw: tuple[int, int], scale: jax.Array,
                   translation: jax.Array, valid_hw: jax.Array, ignore_index: int) -> jax.Array:
  """Nearest-neighbour resample of an (H, W) int mask by gathering (labels stay exact).

  Interpolating integer labels (even 'nearest' in a float resize) can blend or
  round classes; a gather by the source index of each output pixel cannot.
  ``valid_hw``: the input's valid region (pixels beyond it become ignore).
  """
  iy, vy = _source_index(out_hw[0], scale[0], translation[0], valid_hw[0])
  ix, vx = _source_index(out_hw[1], scale[1], translation[1], valid_hw[1])
  h, w = mask.shape
  picked = mask[jnp.clip(iy, 0, h - 1)[:, None], jnp.clip(ix, 0, w - 1)[None, :]]
  return jnp.where(vy[:, None] & vx[None, :], picked, jnp.asarray(ignore_index, mask.dtype))


def sample_scale_crop(key: jax.Array, scale: Sequence[float] = (0.5, 1.5)
                      ) -> tuple[jax.Array, jax.Array]:
  """The random draw of :func:`scale_crop`: ``(zoom, offset)``.

  ``zoom``: () float32, log-uniform in ``scale`` (so 0.5 and 2 are equally
  likely around 1). ``offset``: (2,) float32 ``(u_y, u_x)`` uniform in [0, 1],
  the crop window's (zoom > 1) or the shrunk picture's (zoom < 1) position:
  in normalised coordinates ``out = in * zoom + u * (1 - zoom)``, so ``u = 0``
  is top-left and ``u = 1`` bottom-right, and the output is always inside the
  zoomed picture (zoom in) or the picture inside the output (zoom out).
  """
  lo, hi = _check_scale(scale)
  k_zoom, k_offset = jax.random.split(key)
  log_zoom = jax.random.uniform(k_zoom, (), jnp.float32, jnp.log(lo), jnp.log(hi))
  return jnp.exp(log_zoom), jax.random.uniform(k_offset, (2,), jnp.float32)


def _move_boxes(boxes: jax.Array, scale: jax.Array, shift: jax.Array) -> jax.Array:
  """(K, 4) corners under ``out = in * scale + shift`` per axis ((2,) each, normalised (y, x))."""
  return boxes * jnp.tile(scale, 2) + jnp.tile(shift, 2)


def _area(boxes: jax.Array) -> jax.Array:
  return (jnp.maximum(boxes[:, 2] - boxes[:, 0], 0.0) *
          jnp.maximum(boxes[:, 3] - boxes[:, 1], 0.0))


def scale_crop(key: jax.Array, image: jax.Array, boxes: jax.Array | None = None,
               labels: jax.Array | None = None, mask: jax.Array | None = None, *,
               scale: Sequence[float] = (0.5, 1.5), min_visible: float = 0.3,
               ignore_index: int = IGNORE
               ) -> tuple[jax.Array, jax.Array | None, jax.Array | None, jax.Array | None]:
  """Random zoom (in: crop and enlarge; out: shrink and pad) at a random offset; same size.

  One draw (:func:`sample_scale_crop`) moves the image (bilinear via
  :func:`jax.image.scale_and_translate`), the boxes (the same affine map,
  clipped to [0, 1]) and the mask (nearest, exact labels). A box whose visible
  area after clipping is below ``min_visible`` of its whole transformed area,
  or whose clipped height or width is zero, is dropped: label -1 and zero
  coordinates, like the padding rows (which stay dropped).

  Args:
    key: PRNG key.
    image: (H, W, C) floating image.
    boxes: (K, 4) float corners ``(y0, x0, y1, x1)`` in [0, 1], or None.
    labels: (K,) int labels, -1 = padding; required with ``boxes``.
    mask: (H, W) int label map, or None.
    scale: static ``(min, max)`` zoom factors, ``0 < min <= max``.
    min_visible: static fraction of a box that must stay in view.
    ignore_index: the mask label of pixels from outside the input.

  Returns:
    ``(image, boxes, labels, mask)`` with the input shapes and dtypes (None
    where the input was None).
  """
  if image.ndim != 3:
    raise ValueError(f'scale_crop expects one (H, W, C) image, got {tuple(image.shape)}; '
                     'use random_scale_crop for a batch.')
  if (boxes is None) != (labels is None):
    raise ValueError('scale_crop needs boxes and labels together.')
  h, w, _ = image.shape
  zoom, u = sample_scale_crop(key, scale)
  shift = u * (1.0 - zoom)  # normalised translation; see sample_scale_crop
  size = jnp.array([h, w], jnp.float32)
  zoom2 = jnp.stack([zoom, zoom])
  image = _resample_image(image, (h, w), zoom2, shift * size)
  if mask is not None:
    mask = _resample_mask(mask, (h, w), zoom2, shift * size, jnp.array([h, w], jnp.int32),
                          ignore_index)
  if boxes is not None:
    moved = _move_boxes(boxes.astype(jnp.float32), zoom2, shift)
    clipped = jnp.clip(moved, 0.0, 1.0)
    visible = _area(clipped)
    keep = ((labels >= 0) & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
            & (visible >= min_visible * _area(moved)))
    boxes = jnp.where(keep[:, None], clipped, 0.0).astype(boxes.dtype)
    labels = jnp.where(keep, labels, jnp.asarray(-1, labels.dtype))
  return image, boxes, labels, mask


def letterbox(image: jax.Array, hw: jax.Array, size: int | tuple[int, int],
              boxes: jax.Array | None = None, mask: jax.Array | None = None, *,
              ignore_index: int = IGNORE
              ) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
  """On-device letterbox: the valid top-left ``hw`` region scaled (aspect kept) into ``size``.

  The device twin of :func:`cnn_jax.data.annotations.letterbox` for a
  fixed-shape canvas whose valid region ``hw`` is traced (e.g. multi-scale
  training re-letterboxes host-letterboxed canvases to another size): the
  region's longer side becomes the output's (the shorter fit, for a non-square
  ``size``), at the top-left, the rest zero / ``ignore_index``. Pixels of the
  canvas outside ``hw`` never reach the output.

  Args:
    image: (H, W, C) floating canvas.
    hw: (2,) int ``(h, w)``, the valid region, ``1 <= h <= H``, ``1 <= w <= W``.
    size: static output side ``S`` or ``(S_h, S_w)``.
    boxes: (K, 4) corners in [0, 1] of the *canvas* (H, W), or None; padding
      rows stay where the map sends them (their labels are unchanged).
    mask: (H, W) int label map, or None.
    ignore_index: the mask label of the padding.

  Returns:
    ``(image (S_h, S_w, C), boxes (K, 4) in [0, 1] of the output, mask (S_h, S_w))``.
  """
  if image.ndim != 3:
    raise ValueError(f'letterbox expects one (H, W, C) image, got {tuple(image.shape)}; '
                     'use resize_to for a batch.')
  out_hw = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
  h_in, w_in, _ = image.shape
  hw = jnp.asarray(hw, jnp.int32)
  hw_f = hw.astype(jnp.float32)
  s = jnp.min(jnp.array(out_hw, jnp.float32) / hw_f)  # output pixels per input pixel
  # Zero the canvas outside hw so bilinear edges fade to the fill, not to stale pixels.
  rows = jnp.arange(h_in)[:, None, None] < hw[0]
  cols = jnp.arange(w_in)[None, :, None] < hw[1]
  image = jnp.where(rows & cols, image, jnp.zeros((), image.dtype))
  scale2, zero2 = jnp.stack([s, s]), jnp.zeros((2,), jnp.float32)
  out = _resample_image(image, out_hw, scale2, zero2)
  # Output pixel centres beyond the scaled region read from outside hw: padding.
  _, in_y = _source_index(out_hw[0], s, jnp.float32(0), hw[0])
  _, in_x = _source_index(out_hw[1], s, jnp.float32(0), hw[1])
  out = jnp.where(in_y[:, None, None] & in_x[None, :, None], out, jnp.zeros((), out.dtype))
  if mask is not None:
    mask = _resample_mask(mask, out_hw, scale2, zero2, hw, ignore_index)
  if boxes is not None:
    # canvas-normalised -> canvas pixels -> output pixels -> output-normalised
    per_axis = s * jnp.array([h_in, w_in], jnp.float32) / jnp.array(out_hw, jnp.float32)
    moved = _move_boxes(boxes.astype(jnp.float32), per_axis, jnp.zeros((2,), jnp.float32))
    boxes = jnp.clip(moved, 0.0, 1.0).astype(boxes.dtype)
  return out, boxes, mask


_FIELDS = ('image', 'boxes', 'box_labels', 'segmentation')


def random_scale_crop(keys: jax.Array, batch: dict[str, jax.Array], *,
                      scale: Sequence[float] = (0.5, 1.5), min_visible: float = 0.3,
                      fields: Sequence[str] = _FIELDS, ignore_index: int = IGNORE
                      ) -> dict[str, jax.Array]:
  """:func:`scale_crop` of every example, one draw per key for all its fields.

  Args:
    keys: (B,) PRNG keys.
    batch: ``image`` (B, H, W, C) floating; optionally ``boxes`` (B, K, 4)
      with ``box_labels`` (B, K) and ``segmentation`` (B, H, W) int.
    scale, min_visible, ignore_index: as for :func:`scale_crop` (static).
    fields: the names of the fields moved when present, in the order
      (image, boxes, box labels, mask); other fields pass through unchanged.

  Returns:
    A new batch dict, same shapes and dtypes.
  """
  image_f, boxes_f, labels_f, mask_f = fields
  has_boxes, has_mask = boxes_f in batch, mask_f in batch
  if has_boxes and labels_f not in batch:
    raise ValueError(f'random_scale_crop: batch has {boxes_f!r} but no {labels_f!r}.')

  def one(key, image, boxes, labels, mask):
    return scale_crop(key, image, boxes, labels, mask, scale=scale, min_visible=min_visible,
                      ignore_index=ignore_index)

  image, boxes, labels, mask = jax.vmap(one)(
      keys, batch[image_f], batch[boxes_f] if has_boxes else None,
      batch[labels_f] if has_boxes else None, batch[mask_f] if has_mask else None)
  out = dict(batch)
  out[image_f] = image
  if has_boxes:
    out[boxes_f], out[labels_f] = boxes, labels
  if has_mask:
    out[mask_f] = mask
  return out


def resize_to(batch: dict[str, jax.Array], size: int | tuple[int, int],
              hw: jax.Array | None = None, *, ignore_index: int = IGNORE
              ) -> dict[str, jax.Array]:
  """:func:`letterbox` of every example to ``size`` (multi-scale training).

  Args:
    batch: ``image`` (B, H, W, C); optionally ``boxes`` (B, K, 4) and
      ``segmentation`` (B, H, W). Other fields pass through.
    size: static output side(s).
    hw: (B, 2) int valid regions; None: the whole canvas.

  Returns:
    A new batch with ``image`` (B, S_h, S_w, C) (and ``segmentation``,
    ``boxes`` moved with it).
  """
  n, h, w, _ = batch['image'].shape
  if hw is None:
    hw = jnp.broadcast_to(jnp.array([h, w], jnp.int32), (n, 2))

  def one(image, valid, boxes, mask):
    return letterbox(image, valid, size, boxes, mask, ignore_index=ignore_index)

  image, boxes, mask = jax.vmap(one)(batch['image'], hw, batch.get('boxes'),
                                     batch.get('segmentation'))
  out = dict(batch, image=image)
  if boxes is not None:
    out['boxes'] = boxes
  if mask is not None:
    out['segmentation'] = mask
  return out
