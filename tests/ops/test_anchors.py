"""Anchors and the box coder: torchvision's base anchors, grid order, encode/decode by hand."""

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.ops import anchors as A


def test_cell_anchors_torchvision_size_32():
  # torchvision (x0, y0, x1, y1): [-23, -11, 23, 11], [-16, -16, 16, 16], [-11, -23, 11, 23];
  # ours swap the axes. ratio = h / w, so ratio 0.5 is wide.
  got = A.cell_anchors((32,), (0.5, 1.0, 2.0))
  np.testing.assert_array_equal(got, [[-11, -23, 11, 23], [-16, -16, 16, 16], [-23, -11, 23, 11]])
  assert got.dtype == np.float32
  # The same from the formula: h = size sqrt(r), w = size / sqrt(r), corners rounded half-to-even.
  for r, row in zip((0.5, 1.0, 2.0), got):
    h, w = 32 * np.sqrt(r), 32 / np.sqrt(r)
    np.testing.assert_array_equal(row, np.round([-h / 2, -w / 2, h / 2, w / 2]))


def test_cell_anchors_order_and_rounding():
  # Ratio-major: (r0, s0), (r0, s1), (r1, s0), (r1, s1).
  got = A.cell_anchors((32, 64), (0.5, 1.0))
  np.testing.assert_array_equal(got, [[-11, -23, 11, 23], [-23, -45, 23, 45],
                                      [-16, -16, 16, 16], [-32, -32, 32, 32]])
  # Half-to-even, as torch.round: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2.
  got = A.cell_anchors((1, 3, 5), (1.0,))
  np.testing.assert_array_equal(np.abs(got), [[0] * 4, [2] * 4, [2] * 4])
  with pytest.raises(ValueError, match='non-empty'):
    A.cell_anchors((), (1.0,))
  with pytest.raises(ValueError, match='positive'):
    A.cell_anchors((32,), (0.0,))


def test_anchor_grid_order_and_shifts():
  base = A.cell_anchors((32,), (0.5, 1.0, 2.0))
  grid = A.anchor_grid((2, 3), 16, (32,), (0.5, 1.0, 2.0))
  assert grid.shape == (2 * 3 * 3, 4)
  # Location-major: cell (i, j) holds rows (i * 3 + j) * 3 + a, centred at (16 i, 16 j).
  for i in range(2):
    for j in range(3):
      for a in range(3):
        np.testing.assert_array_equal(grid[(i * 3 + j) * 3 + a], base[a] + [16 * i, 16 * j] * 2)
  np.testing.assert_array_equal(grid.reshape(2, 3, 3, 4), grid.reshape(-1, 3, 4).reshape(2, 3, 3, 4))
  # A (stride_y, stride_x) pair.
  grid = A.anchor_grid((2, 3), (8, 16), (32,), (1.0,))
  np.testing.assert_array_equal(grid[5], [8 - 16, 32 - 16, 8 + 16, 32 + 16])


def test_multilevel_anchors():
  anchors, level = A.multilevel_anchors([(2, 2), (1, 1)], [8, 16], [(32,), (64,)], (0.5, 1.0, 2.0))
  assert anchors.shape == (15, 4) and level.dtype == np.int32
  np.testing.assert_array_equal(level, [0] * 12 + [1] * 3)
  np.testing.assert_array_equal(anchors[:12], A.anchor_grid((2, 2), 8, (32,), (0.5, 1.0, 2.0)))
  np.testing.assert_array_equal(anchors[12:], A.cell_anchors((64,), (0.5, 1.0, 2.0)))
  with pytest.raises(ValueError, match='one of each per level'):
    A.multilevel_anchors([(2, 2), (1, 1)], [8], [(32,), (64,)], (1.0,))


class CoderTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_encode_hand_value(self):
    proposal = jnp.array([0.0, 0.0, 10.0, 20.0])  # centre (5, 10), size (10, 20)
    gt = jnp.array([0.0, 0.0, 20.0, 10.0])        # centre (10, 5), size (20, 10)
    want = np.array([0.5, -0.25, np.log(2.0), np.log(0.5)])
    np.testing.assert_allclose(self.variant(A.encode_boxes)(gt, proposal), want, rtol=1e-6)
    enc = self.variant(lambda g, p: A.encode_boxes(g, p, weights=(10, 10, 5, 5)))
    np.testing.assert_allclose(enc(gt, proposal), want * [10, 10, 5, 5], rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_decode_clamps_size_deltas(self):
    proposal = jnp.array([[0.0, 0.0, 10.0, 10.0]])
    got = self.variant(A.decode_boxes)(jnp.array([[0.0, 0.0, 100.0, 100.0]]), proposal)
    assert np.all(np.isfinite(got))
    half = 0.5 * 10 * np.exp(A.DEFAULT_CLAMP)  # 312.5
    np.testing.assert_allclose(got, [[5 - half, 5 - half, 5 + half, 5 + half]], rtol=1e-5)
    # The clamp applies after dividing by the weights.
    got = A.decode_boxes(jnp.array([[0.0, 0.0, 5.0, -5.0]]), proposal, weights=(10, 10, 5, 5))
    np.testing.assert_allclose(got, [[5 - 5 * np.e, 5 - 5 / np.e, 5 + 5 * np.e, 5 + 5 / np.e]],
                               rtol=1e-5)


_box = st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(1, 50), st.floats(1, 50))


@hypothesis.settings(max_examples=15, deadline=None)
@hypothesis.given(st.lists(st.tuples(_box, _box), min_size=1, max_size=4),
                  st.sampled_from([(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]))
def test_encode_decode_identity(pairs, weights):
  def corners(b):
    y, x, h, w = b
    return [y, x, y + h, x + w]
  gt = jnp.array([corners(g) for g, _ in pairs], jnp.float32)
  prop = jnp.array([corners(p) for _, p in pairs], jnp.float32)
  deltas = A.encode_boxes(gt, prop, weights)
  np.testing.assert_allclose(A.decode_boxes(deltas, prop, weights), gt, atol=2e-3, rtol=1e-4)


def test_zero_size_rows_finite_values_and_gradients():
  gt = jnp.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
  prop = jnp.array([[1.0, 1.0, 9.0, 12.0], [0.0, 0.0, 0.0, 0.0]])
  for w in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
    assert np.all(np.isfinite(A.encode_boxes(gt, prop, w)))
    assert np.all(np.isfinite(A.encode_boxes(prop, gt, w)))  # zero-size gt row with a real proposal
    g_prop, g_gt = jax.grad(lambda p, g: jnp.sum(A.encode_boxes(g, p, w)), argnums=(0, 1))(prop, gt)
    assert np.all(np.isfinite(g_prop)) and np.all(np.isfinite(g_gt))
    g = jax.grad(lambda d: jnp.sum(A.decode_boxes(d, prop, w)))(jnp.zeros((2, 4)))
    assert np.all(np.isfinite(g))


def test_clip_boxes_and_small_box_mask():
  boxes = jnp.array([[-5.0, -5.0, 15.0, 25.0], [2.0, 3.0, 4.0, 5.0]])
  np.testing.assert_array_equal(A.clip_boxes(boxes, (10, 20)), [[0, 0, 10, 20], [2, 3, 4, 5]])
  boxes = jnp.array([[0.0, 0.0, 1.0, 5.0], [0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 5.0, 1.9],
                     [3.0, 3.0, 3.0, 3.0]])
  assert A.small_box_mask(boxes, 2.0).tolist() == [False, True, False, False]
  assert A.small_box_mask(boxes[None], 0.0).shape == (1, 4)
