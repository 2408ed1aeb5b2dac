"""Analytic parameter and multiply counts for convolution and dense layers.

Plain Python integers, no JAX: these are for back-of-the-envelope design
(e.g. why Inception puts a 1x1 bottleneck before its 5x5 convolutions), and
they are exact, so tests can pin them down.

Multiplies count one per weight per output position (a multiply-accumulate);
bias additions are not counted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cnn_jax.ops import shapes


def _positive_int(value: int, name: str) -> int:
  # bool is an int subclass; conv_params(3, 3, True, ...) is surely a mistake.
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f'{name} must be a positive int, got {value!r}.')
  return value


def _check_groups(c_in: int, c_out: int, groups: int) -> None:
  _positive_int(groups, 'groups')
  if c_in % groups or c_out % groups:
    raise ValueError(f'groups={groups} must divide both c_in={c_in} and c_out={c_out}.')


def conv_params(kh: int, kw: int, c_in: int, c_out: int, groups: int = 1,
                bias: bool = True) -> int:
  """Weights ``kh kw (c_in / groups) c_out`` plus ``c_out`` biases.

  E.g. one 3x3x3 filter has 27 weights + 1 bias = 28; twenty of them, 560.
  """
  for value, name in ((kh, 'kh'), (kw, 'kw'), (c_in, 'c_in'), (c_out, 'c_out')):
    _positive_int(value, name)
  _check_groups(c_in, c_out, groups)
  return kh * kw * (c_in // groups) * c_out + (c_out if bias else 0)


def dense_params(d_in: int, d_out: int, bias: bool = True) -> int:
  """Weights ``d_in d_out`` plus ``d_out`` biases."""
  _positive_int(d_in, 'd_in')
  _positive_int(d_out, 'd_out')
  return d_in * d_out + (d_out if bias else 0)


def conv_multiplies(out_h: int, out_w: int, c_out: int, kh: int, kw: int, c_in: int,
                    groups: int = 1) -> int:
  """``out_h out_w c_out kh kw c_in / groups``: one multiply per weight per output.

  E.g. a 5x5 'SAME' conv from 28x28x192 to 28x28x32 costs 120,422,400.
  """
  for value, name in ((out_h, 'out_h'), (out_w, 'out_w'), (c_out, 'c_out'), (kh, 'kh'),
                      (kw, 'kw'), (c_in, 'c_in')):
    _positive_int(value, name)
  _check_groups(c_in, c_out, groups)
  return out_h * out_w * c_out * kh * kw * (c_in // groups)


def dense_multiplies(d_in: int, d_out: int) -> int:
  """``d_in d_out`` multiplies per example."""
  _positive_int(d_in, 'd_in')
  _positive_int(d_out, 'd_out')
  return d_in * d_out


@dataclasses.dataclass(frozen=True)
class ConvCost:
  """Static cost of one convolution layer on one example.

  Attributes:
    output_shape: ``(H_out, W_out, C_out)``.
    params: trainable parameters (weights and biases).
    multiplies: multiplies for one forward pass of one example.
  """
  output_shape: tuple[int, int, int]
  params: int
  multiplies: int


def conv_cost(in_shape: Sequence[int], c_out: int, kernel: int | Sequence[int],
              stride: int | Sequence[int] = 1, padding: shapes.Padding = 'SAME',
              dilation: int | Sequence[int] = 1, groups: int = 1,
              bias: bool = True) -> ConvCost:
  """Output shape, parameters and multiplies of a convolution.

  Args:
    in_shape: ``(H, W, C)`` of one example (no batch axis).
    c_out: output channels.
    kernel, stride, dilation: an int or an ``(h, w)`` pair.
    padding: any spelling accepted by ``shapes.normalize_padding``.
    groups: feature groups (``groups == C`` is depthwise).
    bias: whether the layer has a bias.

  Returns:
    A ``ConvCost``.
  """
  in_shape = tuple(in_shape)
  if len(in_shape) != 3:
    raise ValueError(f'in_shape must be (H, W, C) without a batch axis, got {in_shape!r}.')
  h, w, c_in = (_positive_int(v, 'in_shape entries') for v in in_shape)
  _positive_int(c_out, 'c_out')
  kernel_hw = shapes.pair(kernel, 'kernel')
  stride_hw = shapes.pair(stride, 'stride')
  dilation_hw = shapes.pair(dilation, 'dilation')
  pads = shapes.normalize_padding(padding, (h, w), kernel_hw, stride_hw, dilation_hw)
  out_h, out_w = shapes.conv_output_hw((h, w), kernel_hw, stride_hw, pads, dilation_hw)
  kh, kw = kernel_hw
  return ConvCost(
      output_shape=(out_h, out_w, c_out),
      params=conv_params(kh, kw, c_in, c_out, groups, bias),
      multiplies=conv_multiplies(out_h, out_w, c_out, kh, kw, c_in, groups))
