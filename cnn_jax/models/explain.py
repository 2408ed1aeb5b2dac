"""What a trained network responds to (Zeiler & Fergus 2014; Simonyan et al. 2014).

* :func:`filter_grid` tiles first-layer kernels into one image.
* :func:`saliency` is the gradient of a class logit with respect to the input.
* :func:`occlusion` slides a grey patch and records the class probability.
* :func:`top_patches` finds the input crops that most excite chosen units of a
  layer, cropped to each unit's receptive field
  (:func:`cnn_jax.models.introspect.receptive_field`).
* Zeiler & Fergus's deconvnet projections (unpooling with the max-pool
  switches, ReLU, transposed filters) are in :mod:`cnn_jax.models.deconvnet`.

Inputs are the model's inputs (normalised float images); outputs are numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.models.introspect import ReceptiveField, activations, predict_batches


def tile(images: np.ndarray, cols: int | None = None, pad: int = 1,
         pad_value: float = 1.0) -> np.ndarray:
  """``(N, h, w[, C])`` -> one ``(rows*(h+pad)-pad, cols*(w+pad)-pad[, C])`` grid."""
  images = np.asarray(images)
  n, h, w = images.shape[:3]
  cols = cols or int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / cols))
  grid = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad, *images.shape[3:]), pad_value,
                 images.dtype)
  for k in range(n):
    r, c = divmod(k, cols)
    grid[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = images[k]
  return grid


def filter_grid(kernel: np.ndarray, cols: int | None = None) -> np.ndarray:
  """First-layer kernels ``(kh, kw, C_in, C_out)`` as a grid image in [0, 1].

  Each filter is scaled on its own (``(w - min) / (max - min)``); 3 input
  channels show as RGB, others as the mean over input channels in grey.
  """
  kernel = np.asarray(kernel, np.float32)
  if kernel.ndim != 4:
    raise ValueError(f'kernel must be (kh, kw, C_in, C_out), got shape {kernel.shape}.')
  filters = np.moveaxis(kernel, -1, 0)  # (C_out, kh, kw, C_in)
  if filters.shape[-1] != 3:
    filters = filters.mean(-1)
  lo = filters.reshape(len(filters), -1).min(1).reshape(-1, *[1] * (filters.ndim - 1))
  hi = filters.reshape(len(filters), -1).max(1).reshape(-1, *[1] * (filters.ndim - 1))
  return tile((filters - lo) / np.maximum(hi - lo, 1e-12), cols)


def saliency(apply_fn: Callable[[jax.Array], jax.Array], x: jax.Array,
             classes: jax.Array) -> tuple[np.ndarray, np.ndarray]:
  """Gradient saliency (Simonyan et al. 2014) of ``classes``' logits.

  Args:
    apply_fn: ``(N, H, W, C) -> (N, num_classes)`` logits (inference mode).
    x: (N, H, W, C) inputs.
    classes: (N,) the class per image to explain.

  Returns:
    ``(grad, map)``: the (N, H, W, C) gradient and the (N, H, W) map ``max_c |grad|``.
  """
  x = jnp.asarray(x)
  classes = jnp.asarray(classes)
  pick = lambda x: jnp.sum(jnp.take_along_axis(apply_fn(x), classes[:, None], axis=1))
  grad = np.asarray(jax.jit(jax.grad(pick))(x))
  return grad, np.abs(grad).max(axis=-1)


def occlusion(apply_fn: Callable[[jax.Array], jax.Array], x: jax.Array, label: int, *,
              patch: int = 8, stride: int = 4, fill: float = 0.0,
              batch: int = 256) -> np.ndarray:
  """Zeiler & Fergus occlusion sensitivity for one image.

  Args:
    apply_fn: ``(N, H, W, C) -> (N, num_classes)`` logits.
    x: one (H, W, C) input.
    label: the class whose probability is tracked.
    patch, stride: the grey square's side and step.
    fill: the value pasted (0 is the data mean for normalised inputs).

  Returns:
    ``(rows, cols)`` probability of ``label`` with the patch at each position
    (low = the network needed what was covered).
  """
  x = np.asarray(x)
  h, w = x.shape[:2]
  ys, xs = range(0, h - patch + 1, stride), range(0, w - patch + 1, stride)
  variants = np.repeat(x[None], len(ys) * len(xs), axis=0)
  for k, (y0, x0) in enumerate((y, xx) for y in ys for xx in xs):
    variants[k, y0:y0 + patch, x0:x0 + patch] = fill
  fn = jax.jit(lambda v: jax.nn.softmax(apply_fn(v), axis=-1)[:, label])
  probs = predict_batches(fn, variants, batch)
  return probs.reshape(len(ys), len(xs))


def top_patches(model: Any, variables: Any, inputs: np.ndarray, images: np.ndarray,
                layer: str, units: Sequence[int], field: ReceptiveField, *, k: int = 9,
                batch: int = 256) -> list[list[np.ndarray]]:
  """For each unit (channel) of ``layer``, the ``k`` image crops that excite it most.

  Every spatial position of every image is a candidate; the crop is that
  position's receptive field (clipped at the border, so edge crops are smaller).

  Args:
    model, variables: the network.
    inputs: (N, H, W, C) model inputs; ``images`` the (N, H, W, 3) pictures to crop.
    layer: a module path; ``units`` its channels to explain.
    field: ``layer``'s receptive field.

  Returns:
    ``[[crop, ...] for each unit]``, crops ``(h, w, 3)`` by decreasing activation.
  """
  fn = jax.jit(lambda x: activations(model, variables, x, [layer])[layer])
  acts = predict_batches(fn, inputs, batch)
  if acts.ndim != 4:
    raise ValueError(f'layer {layer!r} has output shape {acts.shape[1:]}, not a spatial map.')
  n, oh, ow, c = acts.shape
  bad = [u for u in units if not 0 <= u < c]
  if bad:
    raise ValueError(f'units {bad} do not exist in {layer!r}, which has {c} channels.')
  out = []
  for u in units:
    flat = acts[..., u].reshape(-1)
    crops = []
    for idx in np.argsort(-flat)[:k]:
      img, rest = divmod(int(idx), oh * ow)
      i, j = divmod(rest, ow)
      y0, x0, y1, x1 = field.box(i, j, images.shape[1:3])
      crops.append(images[img, y0:y1, x0:x1])
    out.append(crops)
  return out
