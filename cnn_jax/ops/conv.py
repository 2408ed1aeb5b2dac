"""2-D (and 1-D) convolution: ``lax.conv_general_dilated``, from-scratch einsums, Winograd.

Conventions: activations NHWC, kernels HWIO ``(kh, kw, C_in // groups, C_out)``;
sequences ``(N, L, C)`` (NWC) with kernels WIO ``(k, C_in // groups, C_out)``
for ``conv1d``, whose from-scratch path is the 2-D one on a ``1 x L`` image.
``conv2d`` is what deep learning calls convolution, i.e. cross-correlation;
``convolve2d`` is the mathematical convolution (kernel flipped in space).

The from-scratch implementations never touch a convolution primitive
(``conv_general_dilated_patches`` included): they pad with ``lax.pad`` and
gather the ``kh * kw`` shifted, strided views of the input with plain slicing.
``impl='einsum'`` stacks the views into patches and contracts them with the
kernel in a single ``jnp.einsum`` (im2col); ``impl='einsum_shifted'`` contracts
each view with its kernel tap and sums the ``kh * kw`` products, so no patch
tensor (``kh * kw`` times the input) is ever materialised. Both support the
same stride, padding, dilation and groups as the lax path, and autodiff gives
their gradients (slices transpose to pads, einsums to einsums), so forward and
backward match the lax version.

``impl='winograd'`` means "Winograd where it applies": 3x3 kernels at stride 1
and dilation 1 (any padding, any groups) run the minimal-filtering algorithm
F(2x2, 3x3) of Lavin & Gray (2016), ``conv2d_winograd``: 4x4 input tiles at
stride 2, ``V = B^T d B`` and ``U = G g G^T`` (additions and halvings only),
one batched einsum over the 16 tile positions summing over input channels
(16 multiplies per 2x2 outputs per channel pair instead of 36: 2.25x fewer),
and ``Y = A^T M A``. Every other layer (other kernel sizes, strides,
dilations; ``conv1d``'s 1 x k kernels) silently takes the ``'einsum'`` path,
so ``conv_impl='winograd'`` runs every model without a convolution primitive.

``conv2d``'s lax path computes ``lax.conv_general_dilated`` and, bit for bit,
its gradients, but spells its tangent maps so that JAX's transposes of them
are canonical convolutions, which XLA:CPU runs as library calls inside
``scan``/``while`` bodies too (JAX's own were 20-40x slower there; see
``_conv2d_lax``).

``impl='auto'`` picks, per layer shape, whichever of these measured fastest
on the current backend, measuring at first use and caching the choice on
disk (:mod:`cnn_jax.ops.conv_auto`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from cnn_jax.ops import conv_auto, shapes
from cnn_jax.ops.shapes import Padding

Impl = Literal['lax', 'einsum', 'einsum_shifted', 'winograd', 'auto']
# The implementations; IMPLS[1:] are the from-scratch ones (no conv primitive).
IMPLS: tuple[str, ...] = ('lax', 'einsum', 'einsum_shifted', 'winograd')
# What conv2d / conv1d / conv_transpose2d accept: an impl, or 'auto' (measured per shape).
IMPL_CHOICES: tuple[str, ...] = IMPLS + ('auto',)
# conv2d's impl name -> conv2d_einsum's strategy ('winograd' falls back to patches
# on the layers it does not serve).
_EINSUM_IMPLS = {'einsum': 'patches', 'einsum_shifted': 'shifted_sum', 'winograd': 'patches'}
_DIMENSION_NUMBERS = ('NHWC', 'HWIO', 'NHWC')
_DIMENSION_NUMBERS_1D = ('NWC', 'WIO', 'NWC')
# activation layout -> (kernel layout with its article, kernel shape spelled out).
_KERNEL_LAYOUTS = {'NHWC': ('an HWIO', '(kh, kw, C_in // groups, C_out)'),
                   'NWC': ('a WIO', '(k, C_in // groups, C_out)')}


def _check_impl(impl: str) -> None:
  if impl not in IMPL_CHOICES:
    raise ValueError(f'unknown conv impl {impl!r}; choose one of {IMPL_CHOICES}.')


def _auto(op: str, fn: Callable, x: jax.Array, w: jax.Array, winograd: bool,
          **geometry) -> str:
  """``impl='auto'``: the cached or measured fastest impl for this layer (conv_auto)."""
  candidates = IMPLS if winograd else tuple(i for i in IMPLS if i != 'winograd')
  return conv_auto.choose(op, lambda impl: functools.partial(fn, impl=impl), x.shape, w.shape,
                          x.dtype, candidates, **geometry)


def _check_operands(name: str, x: jax.Array, w: jax.Array, b: jax.Array | None,
                    groups: int, layout: str = 'NHWC') -> None:
  """Validates ranks, channels and dtypes, so users never see a raw XLA error.

  ``layout`` is the activation layout: 'NHWC' (2-D) or 'NWC' (1-D sequences).
  """
  (shapes.check_nwc if layout == 'NWC' else shapes.check_nhwc)(x, name)
  rank = len(layout)
  if w.ndim != rank:
    kind, spelled = _KERNEL_LAYOUTS[layout]
    raise ValueError(f'{name} expects {kind} kernel of rank {rank} {spelled}, '
                     f'got shape {tuple(w.shape)}.')
  if groups < 1 or x.shape[-1] % groups or w.shape[-1] % groups:
    raise ValueError(
        f'{name}: groups={groups} must divide input channels {x.shape[-1]} and output '
        f'channels {w.shape[-1]}.')
  if x.shape[-1] != w.shape[-2] * groups:
    raise ValueError(
        f'{name}: input has {x.shape[-1]} channels (shape {tuple(x.shape)}) but the kernel '
        f'{tuple(w.shape)} expects {w.shape[-2] * groups} (= {w.shape[-2]} x groups {groups}); '
        f'make kernel axis {rank - 2} equal C_in // groups.')
  if x.dtype != w.dtype:
    raise ValueError(
        f'{name}: input is {x.dtype} but kernel is {w.dtype}; cast both to one compute '
        'dtype first (e.g. w.astype(x.dtype)).')
  if b is not None and b.shape != (w.shape[-1],):
    raise ValueError(f'{name}: bias must have shape ({w.shape[-1]},), got {tuple(b.shape)}.')


def _geometry(x: jax.Array, w: jax.Array, stride, padding, dilation):
  strides = shapes.pair(stride, 'stride')
  dilations = shapes.pair(dilation, 'dilation')
  pads = shapes.normalize_padding(padding, x.shape[1:3], w.shape[:2], strides, dilations)
  # Raises a clear error when the (dilated) kernel does not fit.
  out_hw = shapes.conv_output_hw(x.shape[1:3], w.shape[:2], strides, pads, dilations)
  return strides, dilations, pads, out_hw


def _taps(x: jax.Array, kernel_hw: Sequence[int], stride, padding: Padding,
          dilation) -> list[list[jax.Array]]:
  """``taps[p][q]``: the (N, H_out, W_out, C) input pixels under kernel tap (p, q)."""
  kh, kw = shapes.pair(tuple(kernel_hw), 'kernel_hw')
  strides = shapes.pair(stride, 'stride')
  dilations = shapes.pair(dilation, 'dilation')
  pads = shapes.normalize_padding(padding, x.shape[1:3], (kh, kw), strides, dilations)
  h_out, w_out = shapes.conv_output_hw(x.shape[1:3], (kh, kw), strides, pads, dilations)
  zero = jnp.zeros((), x.dtype)
  xp = lax.pad(x, zero, ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
  (sh, sw), (dh, dw) = strides, dilations
  return [[lax.slice(xp, (0, p * dh, q * dw, 0),
                     (xp.shape[0], p * dh + (h_out - 1) * sh + 1,
                      q * dw + (w_out - 1) * sw + 1, xp.shape[3]), (1, sh, sw, 1))
           for q in range(kw)] for p in range(kh)]


def extract_patches(x: jax.Array, kernel_hw: Sequence[int], *, stride=1,
                    padding: Padding = 'VALID', dilation=1) -> jax.Array:
  """Every receptive field of ``x``, built from strided slices (no conv primitive).

  Args:
    x: (N, H, W, C).
    kernel_hw: (kh, kw).
    stride, padding, dilation: as in ``conv2d``.

  Returns:
    (N, H_out, W_out, kh, kw, C): ``patches[n, i, j, p, q]`` is the input pixel
    under kernel tap ``(p, q)`` of the window at output position ``(i, j)``.
  """
  taps = _taps(x, kernel_hw, stride, padding, dilation)
  return jnp.stack([jnp.stack(row, axis=3) for row in taps], axis=3)


EINSUM_STRATEGIES = ('patches', 'shifted_sum')


def conv2d_einsum(x: jax.Array, w: jax.Array, *, stride=1, padding: Padding = 'VALID',
                  dilation=1, groups: int = 1, precision=None,
                  strategy: str = 'patches') -> jax.Array:
  """From-scratch cross-correlation from strided slices and einsums (no conv primitive).

  ``strategy='patches'`` stacks the ``kh * kw`` shifted views into patches
  ``(N, H', W', kh, kw, C)`` and contracts them with the kernel in one einsum;
  ``'shifted_sum'`` contracts each view with its kernel tap and sums the
  ``kh * kw`` products (no patch tensor is materialised). Grouped
  convolutions split the channel axis into ``(groups, C // groups)`` and
  contract inside each group (``groups == C_in`` is depthwise).
  """
  if strategy not in EINSUM_STRATEGIES:
    raise ValueError(f'unknown einsum strategy {strategy!r}; choose one of '
                     f'{EINSUM_STRATEGIES}.')
  _check_operands('conv2d_einsum', x, w, None, groups)
  kh, kw, c_in_g, c_out = w.shape
  if strategy == 'shifted_sum':
    taps = _taps(x, (kh, kw), stride, padding, dilation)
    n, h_out, w_out, _ = taps[0][0].shape
    wg = w.reshape(kh, kw, c_in_g, groups, c_out // groups)
    y = None
    for p in range(kh):
      for q in range(kw):
        if groups == 1:  # a plain (N H W, C) x (C, O) matmul: no group axis in the way
          term = jnp.einsum('nhwc,co->nhwo', taps[p][q], w[p, q], precision=precision)
        else:
          t = taps[p][q].reshape(n, h_out, w_out, groups, c_in_g)
          term = jnp.einsum('nhwgc,cgo->nhwgo', t, wg[p, q],
                            precision=precision).reshape(n, h_out, w_out, c_out)
        y = term if y is None else y + term
    return y
  patches = extract_patches(x, (kh, kw), stride=stride, padding=padding, dilation=dilation)
  n, h_out, w_out = patches.shape[:3]
  if groups == 1:
    return jnp.einsum('nhwpqc,pqco->nhwo', patches, w, precision=precision)
  patches = patches.reshape(n, h_out, w_out, kh, kw, groups, c_in_g)
  wg = w.reshape(kh, kw, c_in_g, groups, c_out // groups)
  y = jnp.einsum('nhwpqgc,pqcgo->nhwgo', patches, wg, precision=precision)
  return y.reshape(n, h_out, w_out, c_out)


# --- Winograd F(2x2, 3x3) ----------------------------------------------------
# Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016):
#   B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]
#   G   = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]
#   A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]
# and Y = A^T [(G g G^T) * (B^T d B)] A for a 4x4 input tile d and 3x3 kernel g.
# The matrices are applied as the additions they stand for (one axis, then the
# other), so no transform goes through a matmul or loses precision to one.


def _winograd_bt(d):
  """``B^T d`` along one axis: four arrays in, four out."""
  d0, d1, d2, d3 = d
  return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]


def _winograd_g(g):
  """``G g`` along one axis: three kernel rows in, four out."""
  g0, g1, g2 = g
  return [g0, (g0 + g1 + g2) * 0.5, (g0 - g1 + g2) * 0.5, g2]


def _winograd_at(m):
  """``A^T m`` along one axis: four arrays in, two out."""
  m0, m1, m2, m3 = m
  return [m0 + m1 + m2, m1 - m2 - m3]


def winograd_applies(kernel_hw: Sequence[int], stride=1, dilation=1) -> bool:
  """Whether ``conv2d_winograd`` serves a layer: a 3x3 kernel at stride 1, dilation 1."""
  return (tuple(kernel_hw) == (3, 3) and shapes.pair(stride, 'stride') == (1, 1)
          and shapes.pair(dilation, 'dilation') == (1, 1))


def winograd_kernel(w: jax.Array) -> jax.Array:
  """``U = G g G^T`` of an HWIO 3x3 kernel: (3, 3, I, O) -> (4, 4, I, O)."""
  rows = _winograd_g([w[0], w[1], w[2]])  # each (3, I, O)
  return jnp.stack([jnp.stack(_winograd_g([r[0], r[1], r[2]])) for r in rows])


def conv2d_winograd(x: jax.Array, w: jax.Array, *, padding: Padding = 'VALID',
                    groups: int = 1, precision=None) -> jax.Array:
  """Stride-1, 3x3 cross-correlation by Winograd's F(2x2, 3x3) (no conv primitive).

  The input is padded (``lax.pad``) by the layer's padding plus one row /
  column at the bottom / right when the output size is odd, so that the
  ``ceil(H_out / 2) x ceil(W_out / 2)`` overlapping 4x4 tiles at stride 2 cover
  it; the tiles come from 16 strided ``lax.slice`` views (four row views, each
  cut into four column views, with ``B^T`` applied in between). The kernel
  transform gives ``U`` (4, 4, C_in // groups, C_out); one einsum multiplies
  the 16 tile positions elementwise and sums over the input channels within
  each group: 16 multiplies per 2x2 output block and channel pair instead of
  36. ``A^T M A`` gives the 2x2 outputs, which are interleaved and cropped.

  Args:
    x: (N, H, W, C_in).
    w: (3, 3, C_in // groups, C_out).
    padding: as in ``conv2d``.
    groups: feature groups; ``groups == C_in`` is depthwise.
    precision: passed to the einsum.

  Returns:
    (N, H_out, W_out, C_out), as ``conv2d(x, w, padding=padding, groups=groups)``.
  """
  _check_operands('conv2d_winograd', x, w, None, groups)
  if w.shape[:2] != (3, 3):
    raise ValueError(f'conv2d_winograd serves 3x3 kernels only, got {tuple(w.shape[:2])}; '
                     "use conv2d(..., impl='winograd'), which falls back to 'einsum'.")
  pads = shapes.normalize_padding(padding, x.shape[1:3], (3, 3))
  h_out, w_out = shapes.conv_output_hw(x.shape[1:3], (3, 3), (1, 1), pads)
  th, tw = -(-h_out // 2), -(-w_out // 2)  # tiles per column / row
  n, c_in = x.shape[0], x.shape[3]
  c_in_g, c_out = w.shape[2], w.shape[3]
  zero = jnp.zeros((), x.dtype)
  # Odd outputs: one more zero row / column, so that the last tile is whole.
  xp = lax.pad(x, zero, ((0, 0, 0), (pads[0][0], pads[0][1] + 2 * th - h_out, 0),
                         (pads[1][0], pads[1][1] + 2 * tw - w_out, 0), (0, 0, 0)))
  wp = xp.shape[2]  # == 2 * tw + 2
  rows = _winograd_bt([lax.slice(xp, (0, a, 0, 0), (n, a + 2 * th - 1, wp, c_in), (1, 2, 1, 1))
                       for a in range(4)])  # each (N, th, W_p, C)
  v = jnp.stack([jnp.stack(_winograd_bt([
      lax.slice(r, (0, 0, b, 0), (n, th, b + 2 * tw - 1, c_in), (1, 1, 2, 1))
      for b in range(4)])) for r in rows])  # (4, 4, N, th, tw, C)
  u = winograd_kernel(w)  # (4, 4, C // groups, C_out)
  # One batched matmul: the 16 tile positions are its batch, the N * th * tw
  # tiles its rows. (Spelled 'abnhwc,abco->abnhwo', XLA:CPU's backward of the
  # same product ran 1.5-3x slower.)
  p = n * th * tw
  if groups == 1:
    m = jnp.einsum('tpc,tco->tpo', v.reshape(16, p, c_in), u.reshape(16, c_in_g, c_out),
                   precision=precision)
  else:
    m = jnp.einsum('tpgc,tcgo->tpgo', v.reshape(16, p, groups, c_in_g),
                   u.reshape(16, c_in_g, groups, c_out // groups), precision=precision)
  m = m.reshape(4, 4, n, th, tw, c_out)
  out_rows = _winograd_at([m[a] for a in range(4)])  # each (4, N, th, tw, O)
  y = [_winograd_at([r[b] for b in range(4)]) for r in out_rows]  # y[i][j]: (N, th, tw, O)
  # y[i][j][n, t, s] is output pixel (2t + i, 2s + j).
  y = jnp.stack([jnp.stack(yi, axis=3) for yi in y], axis=2)  # (N, th, 2, tw, 2, O)
  y = y.reshape(n, 2 * th, 2 * tw, c_out)
  return y[:, :h_out, :w_out] if (2 * th, 2 * tw) != (h_out, w_out) else y


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv2d_lax(x, w, strides, pads, dilations, groups, precision):
  """``lax.conv_general_dilated`` (NHWC, HWIO) whose gradients XLA:CPU can run in loops.

  The value and every derivative equal lax's own (bit for bit at ResNet-20's
  shapes). What differs is how the tangent maps spell their layouts. JAX's
  transpose rules turn ``conv(dx, w)`` into an input gradient whose kernel is
  (kh, kw, O, I) and ``conv(x, dw)`` into a weight gradient over an input
  (C, H, W, N) into an output (kh, kw, I, O): dimension numbers XLA:CPU's
  libraries cannot take. At a program's top level XLA rewrites such a
  convolution into transposes and a library call; inside a ``while``/``scan``
  body it does not (``ConvCanonicalization`` only visits top-level
  convolutions), and the gradient ran 20-40x slower there (jax-ml/jax#12868;
  ``benchmarks/conv_in_loop.py``). Declaring the tangent maps' operands in the
  transposed layouts ('HWOI' for the kernel; 'CHWN' in, 'IHWO' kernel, 'HWNC'
  out for the weight tangent) makes JAX's transposes come out canonical
  (NHWC / HWIO) with explicit transposes around them, wherever they run.
  A ``custom_jvp`` (not ``custom_vjp``) keeps forward mode (``jax.jvp``,
  ``jacfwd``) working.
  """
  return lax.conv_general_dilated(
      x, w, window_strides=strides, padding=pads, rhs_dilation=dilations,
      dimension_numbers=_DIMENSION_NUMBERS, feature_group_count=groups, precision=precision)


@functools.partial(_conv2d_lax.defjvp, symbolic_zeros=True)
def _conv2d_lax_jvp(strides, pads, dilations, groups, precision, primals, tangents):
  (x, w), (dx, dw) = primals, tangents
  y = _conv2d_lax(x, w, strides, pads, dilations, groups, precision)
  conv = functools.partial(lax.conv_general_dilated, window_strides=strides, padding=pads,
                           rhs_dilation=dilations, feature_group_count=groups,
                           precision=precision)
  parts = []
  if not isinstance(dx, jax.custom_derivatives.SymbolicZero):
    parts.append(conv(dx, w.transpose(0, 1, 3, 2), dimension_numbers=('NHWC', 'HWOI', 'NHWC')))
  if not isinstance(dw, jax.custom_derivatives.SymbolicZero):
    parts.append(conv(x.transpose(3, 1, 2, 0), dw.transpose(2, 0, 1, 3),
                      dimension_numbers=('CHWN', 'IHWO', 'HWNC')).transpose(2, 0, 1, 3))
  return y, functools.reduce(jnp.add, parts) if parts else jnp.zeros_like(y)


def _from_scratch(x, w, strides, pads, dilations, groups, precision, impl):
  """A from-scratch impl on normalised geometry: Winograd where it applies, else einsum."""
  if impl == 'winograd' and winograd_applies(w.shape[:2], strides, dilations):
    return conv2d_winograd(x, w, padding=pads, groups=groups, precision=precision)
  return conv2d_einsum(x, w, stride=strides, padding=pads, dilation=dilations, groups=groups,
                       precision=precision, strategy=_EINSUM_IMPLS[impl])


def conv2d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *,
           stride: int | Sequence[int] = 1, padding: Padding = 'VALID',
           dilation: int | Sequence[int] = 1, groups: int = 1, impl: Impl = 'lax',
           precision=None) -> jax.Array:
  """2-D cross-correlation (deep learning's "convolution") with optional bias.

  Args:
    x: (N, H, W, C_in) input.
    w: (kh, kw, C_in // groups, C_out) kernel.
    b: optional (C_out,) bias.
    stride: int or (sh, sw).
    padding: 'VALID', 'SAME' (TF-style), int p, (lo, hi) or ((t, b), (l, r)).
    dilation: kernel (atrous) dilation, int or pair.
    groups: feature groups; ``groups == C_in`` is depthwise.
    impl: 'lax' (``lax.conv_general_dilated``), or from scratch: 'einsum'
      (patches, one contraction), 'einsum_shifted' (sum of per-tap
      contractions) or 'winograd' (F(2x2, 3x3) where it applies: 3x3 kernel,
      stride 1, dilation 1; every other layer falls back to 'einsum'), or
      'auto' (per shape, the fastest of these on this backend, measured once
      and cached on disk: ``cnn_jax.ops.conv_auto``).
    precision: passed to the contraction (e.g. ``lax.Precision.HIGHEST`` to
      avoid TF32 on GPU when comparing implementations).

  Returns:
    (N, H_out, W_out, C_out) with ``H_out = floor((H + pt + pb - d(kh-1) - 1)/sh) + 1``.
  """
  _check_impl(impl)
  _check_operands('conv2d', x, w, b, groups)
  strides, dilations, pads, _ = _geometry(x, w, stride, padding, dilation)
  if impl == 'auto':
    layer = functools.partial(conv2d, stride=strides, padding=pads, dilation=dilations,
                              groups=groups, precision=precision)
    impl = _auto('conv2d', layer, x, w, winograd_applies(w.shape[:2], strides, dilations),
                 stride=strides, padding=pads, dilation=dilations, groups=groups)
  if impl == 'lax':
    y = _conv2d_lax(x, w, strides, pads, dilations, groups, precision)
  else:
    y = _from_scratch(x, w, strides, pads, dilations, groups, precision, impl)
  if b is not None:
    y = y + b.astype(y.dtype)
  return y


def conv1d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *, stride: int = 1,
           padding: Padding = 'VALID', dilation: int = 1, groups: int = 1, impl: Impl = 'lax',
           precision=None) -> jax.Array:
  """1-D cross-correlation over the length axis of a sequence batch, with optional bias.

  The text-CNN convolution (Kim 2014): ``y[n, t, o] = b[o] + sum_{j, c}
  x_pad[n, t * s + j * d, c] w[j, c, o]`` (within the channel group of ``o``).
  Padding and stride follow ``conv2d`` along one axis.

  Args:
    x: (N, L, C_in) input, e.g. word embeddings of N sentences of length L.
    w: (k, C_in // groups, C_out) kernel.
    b: optional (C_out,) bias.
    stride: int step along the length.
    padding: 'VALID', 'SAME' (TF-style, output ``ceil(L / s)``), int p or (lo, hi).
    dilation: int kernel dilation.
    groups: feature groups; ``groups == C_in`` is depthwise.
    impl: 'lax' (``lax.conv_general_dilated`` with NWC/WIO/NWC), or from scratch:
      'einsum' / 'einsum_shifted', the 2-D from-scratch path on ``x`` seen as a
      ``1 x L`` image with a ``1 x k`` kernel (no convolution primitive);
      'winograd' takes the 'einsum' path (its F(2x2, 3x3) needs a 3x3 kernel);
      'auto' as in ``conv2d``.
    precision: passed to the contraction.

  Returns:
    (N, L_out, C_out) with ``L_out = floor((L + lo + hi - d(k-1) - 1)/s) + 1``.
  """
  _check_impl(impl)
  _check_operands('conv1d', x, w, b, groups, layout='NWC')
  stride = shapes.single(stride, 'stride')
  dilation = shapes.single(dilation, 'dilation')
  pads = shapes.normalize_padding_1d(padding, x.shape[1], w.shape[0], stride, dilation)
  # Raises a clear error when the (dilated) kernel does not fit.
  shapes.conv_output_size(x.shape[1], w.shape[0], stride, pads, dilation)
  if impl == 'auto':
    layer = functools.partial(conv1d, stride=stride, padding=pads, dilation=dilation,
                              groups=groups, precision=precision)
    impl = _auto('conv1d', layer, x, w, False, stride=stride, padding=pads,
                 dilation=dilation, groups=groups)
  if impl == 'lax':
    y = lax.conv_general_dilated(
        x, w, window_strides=(stride,), padding=(pads,), rhs_dilation=(dilation,),
        dimension_numbers=_DIMENSION_NUMBERS_1D, feature_group_count=groups,
        precision=precision)
  else:
    y = conv2d_einsum(x[:, None], w[None], stride=(1, stride), padding=((0, 0), pads),
                      dilation=(1, dilation), groups=groups, precision=precision,
                      strategy=_EINSUM_IMPLS[impl])[:, 0]
  if b is not None:
    y = y + b.astype(y.dtype)
  return y


def dense_as_conv(kernel: jax.Array, in_hwc: Sequence[int]) -> jax.Array:
  """A dense layer on flattened (h, w, C) maps as the equivalent convolution kernel.

  ``kernel`` (h * w * C, D) -> (h, w, C, D): row-major flattening of NHWC maps
  orders the inputs (row, column, channel), so a reshape is the whole
  conversion. A VALID convolution with it gives, at every h x w window of a
  larger map, the dense layer's output for that window (OverFeat's sliding
  windows in one pass).
  """
  h, w, c = (int(v) for v in in_hwc)
  if kernel.ndim != 2 or kernel.shape[0] != h * w * c:
    raise ValueError(f'a dense kernel of shape {tuple(kernel.shape)} does not take flattened '
                     f'{h}x{w}x{c} maps (needs ({h * w * c}, D)); pass the window the '
                     'layer was trained on.')
  return kernel.reshape(h, w, c, kernel.shape[1])


def flip_kernel(w: jax.Array) -> jax.Array:
  """Rotates an HWIO kernel by 180 degrees in space (flips both spatial axes)."""
  return w[::-1, ::-1]


def convolve2d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, **kwargs) -> jax.Array:
  """True (mathematical) 2-D convolution: ``conv2d`` with the kernel flipped.

  ``convolve2d(x, w) == conv2d(x, flip_kernel(w))``; for a single channel this
  matches ``scipy.signal.convolve2d``, while ``conv2d`` matches ``correlate2d``.
  Arguments as in ``conv2d``.
  """
  _check_operands('convolve2d', x, w, b, kwargs.get('groups', 1))
  return conv2d(x, flip_kernel(w), b, **kwargs)


def conv_transpose2d(x: jax.Array, w: jax.Array, b: jax.Array | None = None, *,
                     stride: int | Sequence[int] = 1, padding: Padding = 'VALID',
                     output_padding: int | Sequence[int] = 0,
                     dilation: int | Sequence[int] = 1, impl: Impl = 'lax',
                     precision=None) -> jax.Array:
  """Transposed ("fractionally strided") convolution, e.g. for FCN upsampling.

  Defined as the adjoint of ``conv2d``: with ``w`` of shape
  ``(kh, kw, C_in, C_out)`` and ``wt = w.swapaxes(2, 3)``,
  ``conv_transpose2d(x, w)`` is the vector-Jacobian product of
  ``z -> conv2d(z, wt, stride=stride, padding=padding, dilation=dilation)``
  with cotangent ``x``. So ``<conv2d(z, wt), x> == <z, conv_transpose2d(x, w)>``.

  Args:
    x: (N, H, W, C_in).
    w: (kh, kw, C_in, C_out).
    b: optional (C_out,) bias.
    stride: the upsampling factor (the stride of the conv being transposed).
    padding: the padding of the conv being transposed; ``'SAME'`` gives an
      output of exactly ``H * stride``. Explicit pads crop the output.
    output_padding: extra rows/cols at the end (bottom/right), choosing among
      the input sizes that a strided conv maps to the same output size.
    dilation, impl, precision: as in ``conv2d``.

  Returns:
    (N, H_out, W_out, C_out) with ``H_out = (H - 1) s + d (kh - 1) + 1 - pt - pb + op``.
  """
  _check_impl(impl)
  _check_operands('conv_transpose2d', x, w, b, groups=1)
  strides = shapes.pair(stride, 'stride')
  dilations = shapes.pair(dilation, 'dilation')
  out_pad = shapes.pair(output_padding, 'output_padding', minimum=0)
  if any(op >= max(s, d) for op, s, d in zip(out_pad, strides, dilations)):
    raise ValueError(
        f'output_padding {output_padding} must be below max(stride, dilation) per axis, '
        f'here {tuple(max(s, d) for s, d in zip(strides, dilations))}.')
  k_eff = [shapes.effective_kernel_size(f, d) for f, d in zip(w.shape[:2], dilations)]
  if isinstance(padding, str) and padding.upper() == 'SAME':
    # Adjoint of a 'SAME' conv applied to an input of size H * s.
    fwd = [shapes.same_padding(n * s, f, s, d)
           for n, f, s, d in zip(x.shape[1:3], w.shape[:2], strides, dilations)]
    out_pad = tuple(op + n * s - ((n - 1) * s + k - lo - hi)
                    for op, n, s, k, (lo, hi) in zip(out_pad, x.shape[1:3], strides, k_eff, fwd))
  else:
    fwd = shapes.normalize_padding(padding, x.shape[1:3], w.shape[:2], strides, dilations)
  # Zero-insert (interior padding) by the stride, pad by k_eff - 1 - p, then a
  # stride-1 correlation with the spatially flipped kernel: the textbook adjoint.
  # lax.pad also handles the negative pads that crop when p > k_eff - 1.
  pads = [(k - 1 - lo, k - 1 - hi + op) for k, (lo, hi), op in zip(k_eff, fwd, out_pad)]
  if impl == 'auto':
    layer = functools.partial(conv_transpose2d, stride=stride, padding=padding,
                              output_padding=output_padding, dilation=dilation,
                              precision=precision)
    # Keyed by the stride-1 correlation it runs: pads already hold padding and output_padding.
    impl = _auto('conv_transpose2d', layer, x, w, winograd_applies(w.shape[:2], 1, dilations),
                 stride=strides, padding=tuple(pads), dilation=dilations)
  wf = flip_kernel(w)
  if impl == 'lax':
    y = lax.conv_general_dilated(
        x, wf, window_strides=(1, 1), padding=pads, lhs_dilation=strides,
        rhs_dilation=dilations, dimension_numbers=_DIMENSION_NUMBERS, precision=precision)
  else:
    zero = jnp.zeros((), x.dtype)
    xd = lax.pad(x, zero, ((0, 0, 0), (*pads[0], strides[0] - 1),
                           (*pads[1], strides[1] - 1), (0, 0, 0)))
    y = _from_scratch(xd, wf, (1, 1), ((0, 0), (0, 0)), dilations, 1, precision, impl)
  if b is not None:
    y = y + b.astype(y.dtype)
  return y


def bilinear_kernel(factor: int, channels: int, dtype=jnp.float32) -> jax.Array:
  """FCN's upsampling initialisation: ``(2f, 2f, C, C)``, bilinear on the diagonal.

  Each channel is upsampled independently (zero weights across channels).
  """
  if factor < 1 or channels < 1:
    raise ValueError(f'factor and channels must be positive, got {factor} and {channels}.')
  k = 2 * factor
  taps = 1.0 - np.abs(np.arange(k) - (factor - 0.5)) / factor
  w = np.zeros((k, k, channels, channels), np.float32)
  w[:, :, np.arange(channels), np.arange(channels)] = np.outer(taps, taps)[:, :, None]
  return jnp.asarray(w, dtype)


def upsample_transposed(x: jax.Array, w: jax.Array, factor: int, b: jax.Array | None = None,
                        *, impl: Impl = 'lax') -> jax.Array:
  """Learnable ``factor``x upsampling by a transposed conv: (N, H, W, C) -> (N, fH, fW, C_out).

  The input is edge-padded by one pixel and the output cropped back, so that
  with ``w = bilinear_kernel(factor, C)`` the result is exactly bilinear
  interpolation with half-pixel centres and clamped edges (as
  ``jax.image.resize(..., 'bilinear')``) everywhere, borders included: a
  constant map stays that constant.

  Args:
    x: (N, H, W, C).
    w: (2 factor, 2 factor, C, C_out).
    factor: the integer scale.
    b: optional (C_out,) bias.
  """
  if w.shape[:2] != (2 * factor, 2 * factor):
    raise ValueError(f'upsampling by {factor} needs a ({2 * factor}, {2 * factor}, C, C_out) '
                     f'kernel, got {w.shape}.')
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='edge')
  y = conv_transpose2d(padded, w, b, stride=factor, padding='SAME', impl=impl)
  return y[:, factor:-factor, factor:-factor, :]
