"""Exact parameter / multiply counts from cnn_jax.ops.cost."""

import dataclasses

import hypothesis
import hypothesis.strategies as st
import pytest

from cnn_jax.ops import cost


class TestParams:

  def test_single_3x3x3_filter_has_28_parameters(self):
    assert cost.conv_params(3, 3, 3, 1) == 27 + 1

  def test_layer_of_20_filters_has_560_parameters(self):
    assert cost.conv_params(3, 3, 3, 20) == 560
    # ... and a real layer of the library holds exactly that many numbers.
    import jax
    from cnn_jax.ops import blocks
    layer = blocks.conv_init(jax.random.key(0), 3, 3, 20, bias=True)
    assert sum(a.size for a in jax.tree.leaves(layer)) == 560

  def test_no_bias(self):
    assert cost.conv_params(3, 3, 3, 20, bias=False) == 540

  def test_groups_divide_input_channels(self):
    # Depthwise 3x3 on 32 channels: one 3x3x1 filter per channel.
    assert cost.conv_params(3, 3, 32, 32, groups=32) == 32 * 9 + 32
    assert cost.conv_params(3, 3, 32, 64, groups=4) == 3 * 3 * 8 * 64 + 64

  def test_dense(self):
    assert cost.dense_params(400, 120) == 48_120
    assert cost.dense_params(400, 120, bias=False) == 48_000

  @pytest.mark.parametrize('args, match', [
      ((0, 3, 3, 1), 'kh'),
      ((3, 3, 3, 4, 2), 'groups=2 must divide'),
      ((3, 3, True, 4), 'c_in'),
  ])
  def test_bad_input(self, args, match):
    with pytest.raises(ValueError, match=match):
      cost.conv_params(*args)


class TestMultiplies:

  def test_inception_5x5_same(self):
    assert cost.conv_multiplies(28, 28, 32, 5, 5, 192) == 120_422_400

  def test_inception_bottleneck(self):
    reduce = cost.conv_multiplies(28, 28, 16, 1, 1, 192)
    expand = cost.conv_multiplies(28, 28, 32, 5, 5, 16)
    assert (reduce, expand) == (2_408_448, 10_035_200)
    assert reduce + expand == 12_443_648

  def test_grouped(self):
    assert cost.conv_multiplies(8, 8, 16, 3, 3, 16, groups=16) == 8 * 8 * 16 * 9

  def test_dense(self):
    assert cost.dense_multiplies(400, 120) == 48_000
    with pytest.raises(ValueError, match='d_out'):
      cost.dense_multiplies(4, 0)


class TestConvCost:

  def test_inception_via_conv_cost(self):
    direct = cost.conv_cost((28, 28, 192), 32, 5, padding='SAME')
    assert direct.output_shape == (28, 28, 32)
    assert direct.multiplies == 120_422_400
    assert direct.params == 5 * 5 * 192 * 32 + 32
    bottleneck = cost.conv_cost((28, 28, 192), 16, 1)
    expand = cost.conv_cost(bottleneck.output_shape, 32, 5)
    assert bottleneck.multiplies + expand.multiplies == 12_443_648

  def test_valid_stride_and_int_padding_follow_course_formula(self):
    # floor((n + 2p - f) / s) + 1.
    assert cost.conv_cost((39, 39, 3), 10, 3, padding='VALID').output_shape == (37, 37, 10)
    assert cost.conv_cost((37, 37, 10), 20, 5, stride=2, padding=0).output_shape == (17, 17, 20)
    assert cost.conv_cost((6, 6, 1), 1, 3, padding=1).output_shape == (6, 6, 1)

  def test_same_with_stride_and_dilation(self):
    c = cost.conv_cost((7, 9, 4), 8, (3, 3), stride=2, dilation=2, padding='SAME')
    assert c.output_shape == (4, 5, 8)
    assert c.multiplies == 4 * 5 * 8 * 9 * 4

  def test_frozen(self):
    c = cost.conv_cost((8, 8, 3), 4, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
      c.params = 0  # type: ignore[misc]

  @pytest.mark.parametrize('kwargs, match', [
      (dict(in_shape=(1, 8, 8, 3)), r'in_shape must be \(H, W, C\)'),
      (dict(kernel=9, padding='VALID'), 'does not fit'),
      (dict(padding='FULL'), 'padding must be'),
      (dict(groups=2), 'groups=2 must divide'),
  ])
  def test_bad_input(self, kwargs, match):
    args = dict(in_shape=(8, 8, 3), c_out=4, kernel=3) | kwargs
    with pytest.raises(ValueError, match=match):
      cost.conv_cost(**args)

  @hypothesis.given(n=st.integers(1, 40), c_in=st.integers(1, 8), c_out=st.integers(1, 8),
                    f=st.integers(1, 5), s=st.integers(1, 3))
  def test_same_keeps_ceil_and_matches_formula(self, n, c_in, c_out, f, s):
    c = cost.conv_cost((n, n, c_in), c_out, f, stride=s, padding='SAME')
    out = -(-n // s)
    assert c.output_shape == (out, out, c_out)
    assert c.multiplies == out * out * c_out * f * f * c_in
    assert c.params == cost.conv_params(f, f, c_in, c_out)
