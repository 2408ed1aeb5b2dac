"""A small fully convolutional YOLO-style detector (the convolutional sliding window).

One forward pass scores every grid cell: conv-BN-ReLU stages with 2x2 max
pooling bring an ``(N, H, W, 3)`` image to an ``(N, H/2^k, W/2^k, F)`` map,
and a 1x1 convolution predicts, for each cell and each of ``B`` anchors,
``[p_obj, t_y, t_x, t_h, t_w, c_1..c_C]`` (raw logits; see
:mod:`cnn_jax.ops.boxes` for their meaning and :func:`cnn_jax.ops.losses.yolo_loss`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.nn.layers import Conv, ConvBN, cast
from cnn_jax.ops import pool


class YOLO(nn.Module):
  """``(N, H, W, 3) -> (N, S, S, B, 5 + C)`` float32, ``S = H / 2**len(widths)``.

  Attributes:
    num_classes: C.
    num_anchors: B.
    widths: one conv-BN-ReLU + 2x2 max pool stage each (each halves the grid).
    head_width: a last 3x3 conv-BN-ReLU before the 1x1 prediction conv.
  """
  num_classes: int = 4
  num_anchors: int = 2
  widths: Sequence[int] = (16, 32, 64)
  head_width: int = 128
  conv_impl: str = 'lax'
  dtype: Any = None
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    common = dict(conv_impl=self.conv_impl, dtype=self.dtype, axis_name=self.axis_name)
    x = cast(x, self.dtype)
    for i, features in enumerate(self.widths):
      x = ConvBN(features=features, kernel_size=3, name=f'conv{i + 1}', **common)(x, train)
      x = pool.max_pool(x, 2)
    x = ConvBN(features=self.head_width, kernel_size=3, name='head', **common)(x, train)
    out = Conv(self.num_anchors * (5 + self.num_classes), 1, conv_impl=self.conv_impl,
               dtype=self.dtype, name='predict')(x)
    n, s_h, s_w, _ = out.shape
    return out.reshape(n, s_h, s_w, self.num_anchors, 5 + self.num_classes).astype(jnp.float32)
