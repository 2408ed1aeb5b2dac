"""RoI ops: RoIAlign / RoIPool vs numpy ports of torchvision's C kernels, hand values, grads."""

import math

import chex
import jax
import jax.numpy as jnp
import jax.test_util
import numpy as np
import pytest

from cnn_jax.ops import roi as R


# ----------------------------------------------------------------------------------------------
# numpy references, written like torchvision/csrc/ops/cpu/roi_{align,pool}_kernel.cpp with our
# (y0, x0, y1, x1) boxes and (H, W, C) maps.

def _bilinear_ref(f, y, x):
  h, w = f.shape[:2]
  if y < -1.0 or y > h or x < -1.0 or x > w:
    return np.zeros(f.shape[-1])
  if y <= 0:
    y = 0.0
  if x <= 0:
    x = 0.0
  y_low, x_low = int(y), int(x)
  if y_low >= h - 1:
    y_high = y_low = h - 1
    y = float(y_low)
  else:
    y_high = y_low + 1
  if x_low >= w - 1:
    x_high = x_low = w - 1
    x = float(x_low)
  else:
    x_high = x_low + 1
  ly, lx = y - y_low, x - x_low
  hy, hx = 1.0 - ly, 1.0 - lx
  return (hy * hx * f[y_low, x_low] + hy * lx * f[y_low, x_high]
          + ly * hx * f[y_high, x_low] + ly * lx * f[y_high, x_high])


def _roi_align_ref(f, boxes, ph, pw, scale, sr, aligned):
  f = np.asarray(f, np.float64)
  out = np.zeros((len(boxes), ph, pw, f.shape[-1]))
  offset = 0.5 if aligned else 0.0
  for r, box in enumerate(np.asarray(boxes, np.float64)):
    start_h, start_w = box[0] * scale - offset, box[1] * scale - offset
    end_h, end_w = box[2] * scale - offset, box[3] * scale - offset
    roi_h, roi_w = end_h - start_h, end_w - start_w
    if not aligned:
      roi_h, roi_w = max(roi_h, 1.0), max(roi_w, 1.0)
    bin_h, bin_w = roi_h / ph, roi_w / pw
    for i in range(ph):
      for j in range(pw):
        acc = np.zeros(f.shape[-1])
        for iy in range(sr):
          y = start_h + i * bin_h + (iy + 0.5) * bin_h / sr
          for ix in range(sr):
            x = start_w + j * bin_w + (ix + 0.5) * bin_w / sr
            acc += _bilinear_ref(f, y, x)
        out[r, i, j] = acc / max(sr * sr, 1)
  return out


def _c_round(v):
  return math.floor(abs(v) + 0.5) * (1 if v >= 0 else -1)


def _roi_pool_ref(f, boxes, ph, pw, scale):
  f = np.asarray(f, np.float64)
  h, w = f.shape[:2]
  out = np.zeros((len(boxes), ph, pw, f.shape[-1]))
  boxes = np.asarray(boxes, np.float32) * np.float32(scale)  # the kernel rounds in float
  for r, box in enumerate(boxes):
    sh, sw, eh, ew = (_c_round(float(v)) for v in box)
    roi_h, roi_w = max(eh - sh + 1, 1), max(ew - sw + 1, 1)
    bin_h, bin_w = roi_h / ph, roi_w / pw
    for i in range(ph):
      hs = min(max(int(math.floor(i * bin_h)) + sh, 0), h)
      he = min(max(int(math.ceil((i + 1) * bin_h)) + sh, 0), h)
      for j in range(pw):
        ws = min(max(int(math.floor(j * bin_w)) + sw, 0), w)
        we = min(max(int(math.ceil((j + 1) * bin_w)) + sw, 0), w)
        if he <= hs or we <= ws:
          continue  # empty bin -> 0
        out[r, i, j] = f[hs:he, ws:we].reshape(-1, f.shape[-1]).max(axis=0)
  return out


def _random_case(seed, scale):
  rng = np.random.default_rng(seed)
  f = rng.normal(size=(5, 6, 2)).astype(np.float32)
  lim = np.array([5, 6]) / scale
  boxes = []
  for _ in range(3):  # general boxes, partly outside the map
    p0 = rng.uniform(-2.0, lim + 1.0)
    boxes.append(np.concatenate([p0, p0 + rng.uniform(0.5, lim)]))
  p0 = rng.uniform(0.0, lim)  # tiny box (< 1 pixel)
  boxes.append(np.concatenate([p0, p0 + rng.uniform(0.0, 0.4, size=2)]))
  p0 = rng.uniform(-3.0, -1.5, size=2)  # mostly off the top-left corner
  boxes.append(np.concatenate([p0, p0 + rng.uniform(1.0, 3.0, size=2)]))
  boxes.append(np.concatenate([rng.integers(0, 3, size=2), rng.integers(3, 6, size=2)]) / scale)
  return f, np.asarray(boxes, np.float32)


_align_jit = jax.jit(R.roi_align, static_argnums=2,
                     static_argnames=('spatial_scale', 'sampling_ratio', 'aligned'))
_pool_jit = jax.jit(R.roi_pool, static_argnums=2, static_argnames=('spatial_scale',))


@pytest.mark.parametrize('scale', [1.0, 0.5])
def test_roi_align_matches_torchvision_reference(scale):
  for seed in range(20):
    f, boxes = _random_case(seed, scale)
    for aligned in (False, True):
      for sr in (1, 2):
        got = _align_jit(jnp.asarray(f), jnp.asarray(boxes), (2, 3), spatial_scale=scale,
                         sampling_ratio=sr, aligned=aligned)
        assert got.shape == (len(boxes), 2, 3, 2)
        want = _roi_align_ref(f, boxes, 2, 3, scale, sr, aligned)
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5,
                                   err_msg=f'seed={seed} aligned={aligned} sr={sr}')


@pytest.mark.parametrize('scale', [1.0, 0.5])
def test_roi_pool_matches_torchvision_reference(scale):
  for seed in range(20):
    f, boxes = _random_case(seed, scale)
    got = _pool_jit(jnp.asarray(f), jnp.asarray(boxes), (2, 3), spatial_scale=scale)
    want = _roi_pool_ref(f, boxes, 2, 3, scale)
    np.testing.assert_allclose(got, want, atol=1e-6, err_msg=f'seed={seed}')


# ----------------------------------------------------------------------------------------------
# Hand values.

def _ramp(h=6, w=8):
  y, x = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
  return jnp.asarray((2 * y + 3 * x + 1)[..., None], jnp.float32)


class RoiAlignHandTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_ramp_bin_centres(self):
    f = _ramp()
    box = jnp.array([[1.0, 2.0, 3.0, 6.0]])  # rows 1..3, cols 2..6: bins 1 x 2
    plain = self.variant(lambda f, b: R.roi_align(f, b, 2, sampling_ratio=2))(f, box)
    # bin centres y in (1.5, 2.5), x in (3, 5): 2y + 3x + 1.
    np.testing.assert_allclose(plain[0, ..., 0], [[13.0, 19.0], [15.0, 21.0]], rtol=1e-6)
    shifted = self.variant(lambda f, b: R.roi_align(f, b, 2, sampling_ratio=2,
                                                    aligned=True))(f, box)
    # aligned: the RoI moves by -0.5 pixel in y and x (same size): centres (1, 2) x (2.5, 4.5).
    np.testing.assert_allclose(shifted[0, ..., 0], [[10.5, 16.5], [12.5, 18.5]], rtol=1e-6)
    np.testing.assert_allclose(shifted - plain, -2.5 * np.ones_like(plain), atol=1e-5)

  def test_small_box_side_clamped_to_one_unless_aligned(self):
    f = _ramp()
    box = jnp.array([[2.0, 3.0, 2.25, 3.5]])  # 0.25 x 0.5
    plain = R.roi_align(f, box, 1, sampling_ratio=1)
    # not aligned: each side grows to 1 from the start: centre (2.5, 3.5) -> 5 + 10.5 + 1.
    np.testing.assert_allclose(plain[0, 0, 0, 0], 16.5, rtol=1e-6)
    al = R.roi_align(f, box, 1, sampling_ratio=1, aligned=True)
    # aligned: true size, shifted: centre (2.125 - 0.5, 3.25 - 0.5) -> 3.25 + 8.25 + 1.
    np.testing.assert_allclose(al[0, 0, 0, 0], 12.5, rtol=1e-6)

  def test_border_rule(self):
    f = _ramp(4, 4)
    # samples beyond [-1, H] are 0; between H - 1 and H they take the last row.
    box = jnp.array([[3.2, 0.0, 3.8, 1.0], [4.2, 0.0, 4.8, 1.0], [-0.8, 0.0, -0.2, 1.0]])
    out = R.roi_align(f, box, 1, sampling_ratio=1)
    # centre rows 3.7 (-> row 3), 4.7 (> H -> 0), -0.3 (-> row 0); column 0.5 (not aligned: w 1).
    np.testing.assert_allclose(out[:, 0, 0, 0], [2 * 3 + 1.5 + 1, 0.0, 1.5 + 1], rtol=1e-6)


_POOL_MAP = np.array([[3, 14, 1, 9],
                      [7, 0, 12, 5],
                      [10, 2, 15, 6],
                      [4, 13, 8, 11]], np.float32)


class RoiPoolHandTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_maxima(self):
    f = jnp.asarray(_POOL_MAP[..., None])
    # rows 0..2, cols 1..3 (inclusive corners): 3 x 3, bins of 1.5 -> rows {0,1}/{1,2},
    # cols {1,2}/{2,3}. Corners 0.4 / 2.6 round to 0 / 3; -0.5 rounds away to -1.
    boxes = jnp.array([[0.0, 1.0, 2.0, 3.0], [0.4, 1.4, 2.4, 2.6], [-0.5, -0.5, 0.0, 0.0]])
    out = self.variant(lambda f, b: R.roi_pool(f, b, 2))(f, boxes)
    np.testing.assert_array_equal(out[0, ..., 0], [[14, 12], [15, 15]])
    # box 1: rows 0..2, cols 1..3 after rounding (1.4 -> 1, 2.6 -> 3): same bins.
    np.testing.assert_array_equal(out[1, ..., 0], [[14, 12], [15, 15]])
    # box 2: rows/cols -1..0, size 2, bins of 1: bin 0 is row -1 (empty -> 0), bin 1 row 0.
    np.testing.assert_array_equal(out[2, ..., 0], [[0, 0], [0, 3]])

  def test_gradient_is_one_at_each_bins_argmax(self):
    f = jnp.asarray(_POOL_MAP[..., None])
    box = jnp.array([[0.0, 1.0, 2.0, 3.0]])
    jac = jax.jit(jax.jacrev(lambda f: R.roi_pool(f, box, 2)))(f)
    jac = jac[0, ..., 0, :, :, 0]  # (2, 2, 4, 4): bin -> map
    argmax = {(0, 0): (0, 1), (0, 1): (1, 2), (1, 0): (2, 2), (1, 1): (2, 2)}
    for (i, j), (y, x) in argmax.items():
      want = np.zeros((4, 4))
      want[y, x] = 1.0
      np.testing.assert_array_equal(jac[i, j], want, err_msg=f'bin {(i, j)}')
    g = jax.jit(jax.grad(lambda f: R.roi_pool(f, box, 2).sum()))(f)[..., 0]
    want = np.zeros((4, 4))
    want[0, 1], want[1, 2], want[2, 2] = 1.0, 1.0, 2.0
    np.testing.assert_array_equal(g, want)


# ----------------------------------------------------------------------------------------------
# Gradients.

def test_roi_align_grads_features_and_boxes():
  rng = np.random.default_rng(0)
  f = jnp.asarray(rng.normal(size=(5, 6, 2)), jnp.float32)
  # generic box: every sample coordinate is >= 0.05 away from an integer and inside the map.
  box = jnp.array([[1.3, 0.7, 3.9, 4.4], [0.35, 1.1, 2.2, 5.0]], jnp.float32)
  by_f = jax.jit(lambda f: R.roi_align(f, box, 2))
  by_box = jax.jit(lambda b: R.roi_align(f, b, 2, aligned=True))
  jax.test_util.check_grads(by_f, (f,), order=1, modes=['rev'])
  jax.test_util.check_grads(by_box, (box,), order=1, modes=['rev'], atol=1e-2, rtol=1e-2,
                            eps=1e-3)
  # the box gradient is not trivially zero.
  g = jax.grad(lambda b: R.roi_align(f, b, 2).sum())(box)
  assert np.all(np.isfinite(g)) and np.abs(g).max() > 1e-2


# ----------------------------------------------------------------------------------------------
# FPN levels.

def _level_mapper_ref(side, k_min=2, k_max=5):
  k = math.floor(4 + math.log2(side / 224) + 1e-6)
  return min(max(k, k_min), k_max) - k_min


def _square(y, x, side):
  return [y, x, y + side, x + side]


class LevelsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_levels_match_level_mapper(self):
    sides = [50, 112, 224, 448, 900, 223.9]
    boxes = jnp.asarray([_square(3.0, 5.0, s) for s in sides], jnp.float32)
    got = self.variant(lambda b: R.roi_levels(b, (4, 8, 16, 32)))(boxes)
    want = [_level_mapper_ref(s) for s in sides]
    assert want[:5] == [0, 1, 2, 3, 3]
    assert got.tolist() == want
    assert got.dtype == jnp.int32
    # non-square: sqrt(area) decides (112 x 448 -> side 224 -> level 2, index 2).
    assert R.roi_levels(jnp.array([[0.0, 0.0, 112.0, 448.0]]), (4, 8, 16, 32)).tolist() == [2]

  def test_multiscale_equals_chosen_level(self):
    rng = np.random.default_rng(1)
    strides = (4, 8, 16, 32)
    feats = [jnp.asarray(rng.normal(size=(512 // s, 512 // s, 2)), jnp.float32) for s in strides]
    boxes = jnp.asarray([_square(10.5, 20.25, 50), _square(3.0, 100.0, 112),
                         _square(200.0, 7.0, 224), _square(30.0, 40.0, 448)], jnp.float32)
    out = jax.jit(lambda fs, b: R.multiscale_roi_align(fs, strides, b, 7, aligned=True))(
        feats, boxes)
    assert out.shape == (4, 7, 7, 2)
    for r, level in enumerate([0, 1, 2, 3]):
      want = R.roi_align(feats[level], boxes[r:r + 1], 7, spatial_scale=1 / strides[level],
                         aligned=True)
      np.testing.assert_allclose(out[r:r + 1], want, atol=1e-5, err_msg=f'box {r}')


# ----------------------------------------------------------------------------------------------
# Mask targets and pasting.

def _square_mask(hw, y0, x0, side):
  m = np.zeros(hw, np.float32)
  m[y0:y0 + side, x0:x0 + side] = 1.0
  return m


def test_mask_targets_cover_and_matched():
  a = _square_mask((32, 32), 8, 8, 16)
  b = _square_mask((32, 32), 24, 0, 8)
  masks = jnp.asarray(np.stack([a, b]))
  boxes = jnp.array([[8.0, 8.0, 24.0, 24.0], [24.0, 0.0, 32.0, 8.0], [8.0, 8.0, 24.0, 24.0]])
  t = jax.jit(R.mask_targets)(masks, boxes, jnp.array([0, 1, 1]))
  assert t.shape == (3, 28, 28)
  for r in (0, 1):  # a box exactly on its own square: ~all ones
    assert float(t[r].mean()) > 0.85
    np.testing.assert_allclose(t[r, :20, :20], 1.0, atol=1e-6)
  # not aligned (torchvision's project_masks_on_boxes): samples sit half a pixel late, so the
  # last bins straddle the mask's far edge. Box a, bin 16 / 28: rows 0..25 read only ones.
  np.testing.assert_allclose(t[0, :26, :26], 1.0, atol=1e-6)
  assert float(t[0, 27, 27]) < 0.5 and float(t[0, 0, 0]) == 1.0
  # box of a, matched to b (rows 24.., which a's samples, all < 24, never reach): zeros.
  np.testing.assert_allclose(t[2], 0.0, atol=1e-6)
  # no gradient flows into the targets.
  g = jax.jit(jax.grad(lambda m: R.mask_targets(m, boxes, jnp.array([0, 1, 1])).sum()))(masks)
  np.testing.assert_array_equal(g, 0.0)


def test_paste_all_ones_covers_pixel_centres_in_box():
  box = jnp.array([[2.3, 1.7, 7.6, 9.2]])
  pasted = jax.jit(R.paste_masks, static_argnums=2)(jnp.ones((1, 28, 28)), box, (12, 12))
  want = np.zeros((12, 12))
  want[2:8, 2:9] = 1.0  # centres y + 0.5 in [2.3, 7.6), x + 0.5 in [1.7, 9.2)
  np.testing.assert_allclose(pasted[0], want, atol=1e-6)
  assert np.all(np.asarray(pasted[0])[want == 0] == 0.0)


def test_mask_targets_then_paste_round_trip():
  # the non-aligned targets read half a pixel late, so the far row / column is lost
  # (side 30: 29^2 / 30^2 = 0.934); the round trip is otherwise exact.
  obj = _square_mask((48, 48), 9, 12, 30)
  box = jnp.array([[9.0, 12.0, 39.0, 42.0]])
  t = jax.jit(R.mask_targets)(jnp.asarray(obj[None]), box, jnp.array([0]))
  pasted = np.asarray(jax.jit(R.paste_masks, static_argnums=2)(t, box, (48, 48))[0]) > 0.5
  assert not np.any(pasted & (obj == 0))
  inter = np.logical_and(pasted, obj > 0).sum()
  union = np.logical_or(pasted, obj > 0).sum()
  assert inter / union > 0.9


# ----------------------------------------------------------------------------------------------
# Bad input.

def test_bad_input():
  f, b = jnp.zeros((4, 4, 1)), jnp.zeros((2, 4))
  with pytest.raises(ValueError, match=r"one image's \(H, W, C\) map"):
    R.roi_align(jnp.zeros((1, 4, 4, 1)), b, 2)
  with pytest.raises(ValueError, match=r"one image's \(H, W, C\) map"):
    R.roi_pool(jnp.zeros((4, 4)), b, 2)
  with pytest.raises(ValueError, match=r'must be \(R, 4\)'):
    R.roi_align(f, jnp.zeros((2, 3)), 2)
  with pytest.raises(ValueError, match=r'must be \(R, 4\)'):
    R.roi_pool(f, jnp.zeros((4,)), 2)
  for sr in (0, -1):
    with pytest.raises(ValueError, match=f'sampling_ratio={sr}'):
      R.roi_align(f, b, 2, sampling_ratio=sr)
  with pytest.raises(ValueError, match='2 feature maps but 3 strides'):
    R.multiscale_roi_align([f, f], (4, 8, 16), b, 2)
  with pytest.raises(ValueError, match='powers of two'):
    R.roi_levels(b, (4, 12))
  with pytest.raises(ValueError, match='powers of two'):
    R.multiscale_roi_align([f, f], (4, 6), b, 2)
