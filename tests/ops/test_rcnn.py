"""Two-stage detection pieces: matching, sampling, proposals, detections, losses by hand."""

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.ops import anchors as A
from cnn_jax.ops import losses
from cnn_jax.ops import rcnn as R

BG, IGN = R.BACKGROUND, R.IGNORED


class MatchTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_thresholds(self):
    iou = jnp.array([[0.9, 0.1, 0.5, 0.0, 0.2],
                     [0.2, 0.8, 0.1, 0.0, 0.35]])
    match = self.variant(lambda i, v: R.match_boxes(i, v, high=0.7, low=0.3,
                                                    allow_low_quality=False))
    got = match(iou, jnp.array([True, True]))
    assert got.dtype == jnp.int32
    assert got.tolist() == [0, 1, IGN, BG, IGN]

  @chex.variants(with_jit=True, without_jit=True)
  def test_low_quality_ties_and_padding(self):
    iou = jnp.array([[0.2, 0.25, 0.0, 0.25],
                     [0.1, 0.0, 0.6, 0.0],
                     [0.99, 0.99, 0.99, 0.99]])  # a padding row
    valid = jnp.array([True, True, False])
    kw = dict(high=0.7, low=0.3)
    plain = self.variant(lambda i, v: R.match_boxes(i, v, allow_low_quality=False, **kw))
    low_q = self.variant(lambda i, v: R.match_boxes(i, v, allow_low_quality=True, **kw))
    assert plain(iou, valid).tolist() == [BG, BG, IGN, BG]
    # gt 0's best IoU 0.25 (< low) is shared by anchors 1 and 3; gt 1's best 0.6 is anchor 2.
    assert low_q(iou, valid).tolist() == [BG, 0, 1, 0]
    # The padding row, were it valid, would take everything.
    assert plain(iou, jnp.array([True, True, True])).tolist() == [2, 2, 2, 2]

  def test_no_valid_gt_and_bad_thresholds(self):
    iou = jnp.full((2, 3), 0.9)
    for lq in (False, True):
      got = R.match_boxes(iou, jnp.array([False, False]), high=0.7, low=0.3, allow_low_quality=lq)
      assert got.tolist() == [BG] * 3
    with pytest.raises(ValueError, match='low <= high'):
      R.match_boxes(iou, jnp.array([True, True]), high=0.3, low=0.7, allow_low_quality=False)


_sample = jax.jit(R.sample_balanced, static_argnums=(2, 3))
_indices = jax.jit(R.sample_indices, static_argnums=(2, 3))


@hypothesis.settings(max_examples=12, deadline=None)
@hypothesis.given(st.lists(st.sampled_from([-1, 0, 1]), min_size=1, max_size=24),
                  st.sampled_from([1, 5, 12, 30]), st.sampled_from([0.25, 0.5]),
                  st.integers(0, 2**16))
def test_sample_balanced_counts(labels, n, frac, seed):
  # Padded with ignored labels to one length, so that few shapes compile.
  labels = np.array(labels + [-1] * (24 - len(labels)), np.int32)
  key = jax.random.PRNGKey(seed)
  chosen = np.asarray(_sample(key, jnp.asarray(labels), n, frac))
  pos = min(int(n * frac), int(np.sum(labels == 1)))
  assert np.sum(chosen & (labels == 1)) == pos
  assert np.sum(chosen & (labels == 0)) == min(n - pos, int(np.sum(labels == 0)))
  assert not np.any(chosen & (labels == -1))
  np.testing.assert_array_equal(_sample(key, jnp.asarray(labels), n, frac), chosen)
  # The list form draws the same set: positives first, then negatives, then padding.
  idx, valid = _indices(key, jnp.asarray(labels), n, frac)
  idx, valid = np.asarray(idx), np.asarray(valid)
  assert idx.shape == valid.shape == (n,) and idx.dtype == np.int32
  k = int(chosen.sum())
  assert valid.tolist() == [True] * k + [False] * (n - k)
  assert sorted(idx[:k].tolist()) == np.flatnonzero(chosen).tolist()
  assert np.all(labels[idx[:pos]] == 1) and np.all(labels[idx[pos:k]] == 0)
  assert np.all(idx[k:] == 0)


def test_sample_keys_differ():
  labels = jnp.asarray(np.r_[np.ones(100), np.zeros(100)].astype(np.int32))
  draws = [np.asarray(_sample(jax.random.PRNGKey(s), labels, 20, 0.5)) for s in range(4)]
  assert all(d.sum() == 20 for d in draws)
  assert any(not np.array_equal(draws[0], d) for d in draws[1:])


def test_sample_indices_fixed_size_beyond_n():
  labels = jnp.array([1, 0, -1, 0, 1], jnp.int32)
  idx, valid = _indices(jax.random.PRNGKey(0), labels, 8, 0.5)
  assert idx.shape == (8,) and valid.tolist() == [True] * 4 + [False] * 4
  assert sorted(idx[:2].tolist()) == [0, 4] and sorted(idx[2:4].tolist()) == [1, 3]
  assert idx[4:].tolist() == [0] * 4


# ----------------------------------------------------------------------------- proposals

_BOXES = jnp.array([[0.0, 0.0, 10.0, 10.0],    # level 0
                    [1.0, 1.0, 11.0, 11.0],    # level 0, IoU 0.68 with row 0
                    [20.0, 20.0, 20.5, 30.0],  # level 0, too thin
                    [0.0, 0.0, 10.0, 10.0],    # level 1, identical to row 0
                    [40.0, 40.0, 70.0, 70.0]])  # level 1, clipped to 64
_LOGITS = jnp.array([3.0, 2.0, 5.0, 1.0, -1.0])


def _select(boxes, logits, pre=10, post=6):
  return R.select_proposals(boxes, logits, level_sizes=(3, 2), image_hw=(64, 64),
                            pre_nms_top_n=pre, post_nms_top_n=post, nms_threshold=0.5,
                            min_size=1.0)


def test_select_proposals_hand_case():
  boxes, scores, valid = jax.jit(_select, static_argnums=(2, 3))(_BOXES, _LOGITS, 10, 6)
  assert boxes.shape == (6, 4) and scores.shape == valid.shape == (6,)
  assert valid.tolist() == [True] * 3 + [False] * 3
  np.testing.assert_allclose(boxes[:3], [[0, 0, 10, 10], [0, 0, 10, 10], [40, 40, 64, 64]])
  np.testing.assert_allclose(scores, np.r_[1 / (1 + np.exp(-np.array([3.0, 1.0, -1.0]))), 0, 0, 0],
                             rtol=1e-6)
  # Top-k is per level: level 0's best is the thin box, dropped; level 1's is row 3.
  boxes, scores, valid = jax.jit(_select, static_argnums=(2, 3))(_BOXES, _LOGITS, 1, 3)
  assert valid.tolist() == [True, False, False]
  np.testing.assert_allclose(boxes[0], [0, 0, 10, 10])
  with pytest.raises(ValueError, match='level_sizes add up'):
    R.select_proposals(_BOXES[:4], _LOGITS[:4], level_sizes=(3, 2), image_hw=(64, 64),
                       pre_nms_top_n=4, post_nms_top_n=2, nms_threshold=0.5, min_size=1.0)


def test_select_proposals_no_gradient():
  def f(b, l):
    boxes, scores, _ = _select(b, l)
    return jnp.sum(boxes) + jnp.sum(scores)
  gb, gl = jax.jit(jax.grad(f, argnums=(0, 1)))(_BOXES, _LOGITS)
  assert not np.any(gb) and not np.any(gl)


# ----------------------------------------------------------------------------- detections


def test_detect_boxes_hand_case():
  probs = np.array([[0.1, 0.8, 0.1],     # class 0 at 0.8
                    [0.1, 0.6, 0.3],     # class 0 suppressed by row 0; class 1 kept
                    [0.9, 0.04, 0.06],   # background wins, class 0 below 0.05, class 1 kept
                    [0.0, 1.0, 0.0]])    # an invalid RoI
  logits = jnp.asarray(np.log(np.maximum(probs, 1e-9)), jnp.float32)
  proposals = jnp.array([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0],
                         [30.0, 30.0, 40.0, 40.0], [50.0, 50.0, 60.0, 60.0]])
  deltas = np.zeros((4, 3, 4), np.float32)
  deltas[2, 2, 0] = 1.0  # class 1's box of RoI 2 moves down 1 / 10 of its height
  valid = jnp.array([True, True, True, False])
  det = jax.jit(lambda *a: R.detect_boxes(*a, image_hw=(64, 64), max_detections=5))(
      logits, jnp.asarray(deltas), proposals, valid)
  assert det['valid'].tolist() == [True] * 3 + [False] * 2
  assert det['roi'][:3].tolist() == [0, 1, 2]
  assert det['classes'].tolist() == [0, 1, 1, 0, 0]
  np.testing.assert_allclose(det['scores'], [0.8, 0.3, 0.06, 0, 0], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(det['boxes'], [[0, 0, 10, 10], [1, 1, 11, 11], [31, 30, 41, 40],
                                            [0] * 4, [0] * 4], atol=1e-5)
  for v in det.values():
    assert v.shape[0] == 5


# ----------------------------------------------------------------------------- losses


def _smooth_l1_np(x, beta):
  ax = np.abs(x)
  return np.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def _bce_np(x, z):
  return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0) - x * z


def test_smooth_l1():
  x = jnp.array([-2.0, -0.5, 0.0, 0.5, 2.0])
  np.testing.assert_allclose(losses.smooth_l1(x), [1.5, 0.125, 0.0, 0.125, 1.5])
  np.testing.assert_allclose(losses.smooth_l1(jnp.array([0.1, 1.0]), 1 / 9),
                             [0.5 * 0.01 * 9, 1 - 1 / 18], rtol=1e-6)
  np.testing.assert_allclose(losses.smooth_l1(x, 0.0), np.abs(x))
  # Continuous at |x| = beta, and the gradient at 0 is 0.
  b = 0.3
  lo, hi = losses.smooth_l1(jnp.array([b - 1e-4, b + 1e-4]), b)
  assert abs(float(lo) - float(hi)) < 1e-3
  assert float(jax.grad(lambda v: losses.smooth_l1(v, b))(0.0)) == 0.0
  np.testing.assert_allclose(jax.jit(jax.grad(lambda v: jnp.sum(losses.smooth_l1(v, b))))(x),
                             [-1, -1, 0, 1, 1])


def test_rpn_loss_by_hand():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 6)).astype(np.float32)
  deltas = rng.normal(size=(2, 6, 4)).astype(np.float32) * 0.3
  targets = rng.normal(size=(2, 6, 4)).astype(np.float32) * 0.3
  labels = np.array([[1, 0, -1, 0, 1, 0], [0, -1, 1, 0, 0, -1]], np.int32)
  sampled = np.array([[1, 1, 0, 0, 1, 1], [1, 0, 0, 1, 1, 0]], bool)
  obj, box = jax.jit(R.rpn_loss)(logits, deltas, labels, targets, sampled)
  n = sampled.sum()
  want_obj = np.sum(_bce_np(logits, labels == 1)[sampled]) / n
  pos = sampled & (labels == 1)
  want_box = np.sum(_smooth_l1_np(deltas - targets, 1 / 9)[pos]) / n
  np.testing.assert_allclose([obj, box], [want_obj, want_box], rtol=1e-5)

  none = np.zeros_like(sampled)
  f = lambda l, d: sum(R.rpn_loss(l, d, labels, targets, none))  # noqa: E731
  assert float(jax.jit(f)(logits, deltas)) == 0.0
  for g in jax.jit(jax.grad(f, argnums=(0, 1)))(logits, deltas):
    assert np.all(np.isfinite(g)) and not np.any(g)
  # Sampled negatives only: the box term is 0, the objectness term is not.
  obj, box = jax.jit(R.rpn_loss)(logits, deltas, np.zeros_like(labels), targets, sampled)
  assert float(box) == 0.0 and float(obj) > 0


def test_fast_rcnn_loss_by_hand():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(5, 3)).astype(np.float32)
  deltas = rng.normal(size=(5, 3, 4)).astype(np.float32)
  targets = rng.normal(size=(5, 4)).astype(np.float32)
  labels = np.array([2, 0, 1, 1, 0], np.int32)
  valid = np.array([True, True, True, False, True])
  cls, box = jax.jit(R.fast_rcnn_loss)(logits, deltas, labels, targets, valid)
  m = logits.max(-1, keepdims=True)
  logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
  ce = -logp[np.arange(5), labels]
  want_cls = ce[valid].sum() / valid.sum()
  l1 = _smooth_l1_np(deltas[np.arange(5), labels] - targets, 1 / 9).sum(-1)
  want_box = l1[valid & (labels > 0)].sum() / valid.sum()
  np.testing.assert_allclose([cls, box], [want_cls, want_box], rtol=1e-5)
  # Batched leading axes normalise over the whole batch.
  cls2, box2 = jax.jit(R.fast_rcnn_loss)(*(np.stack([a, a]) for a in (logits, deltas, labels, targets, valid)))
  np.testing.assert_allclose([cls2, box2], [want_cls, want_box], rtol=1e-5)

  bg = np.zeros_like(labels)
  f = lambda l, d: R.fast_rcnn_loss(l, d, bg, targets, valid)[1]  # noqa: E731
  assert float(jax.jit(f)(logits, deltas)) == 0.0
  for g in jax.jit(jax.grad(f, argnums=(0, 1)))(logits, deltas):
    assert np.all(np.isfinite(g))
  f = lambda l, d: sum(R.fast_rcnn_loss(l, d, labels, targets, np.zeros_like(valid)))  # noqa: E731
  assert float(jax.jit(f)(logits, deltas)) == 0.0
  for g in jax.jit(jax.grad(f, argnums=(0, 1)))(logits, deltas):
    assert np.all(np.isfinite(g)) and not np.any(g)


def test_mask_rcnn_loss_by_hand():
  rng = np.random.default_rng(2)
  logits = rng.normal(size=(3, 4, 4, 3)).astype(np.float32)
  targets = (rng.uniform(size=(3, 4, 4)) > 0.5).astype(np.float32)
  labels = np.array([1, 0, 2], np.int32)
  valid = np.array([True, True, True])
  got = jax.jit(R.mask_rcnn_loss)(logits, labels, targets, valid)
  picked = logits[np.arange(3), :, :, labels]
  fg = labels > 0
  want = _bce_np(picked, targets)[fg].mean()
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # An invalid foreground RoI drops out of the mean.
  got = jax.jit(R.mask_rcnn_loss)(logits, labels, targets, np.array([True, True, False]))
  np.testing.assert_allclose(got, _bce_np(picked[0], targets[0]).mean(), rtol=1e-5)

  f = lambda l: R.mask_rcnn_loss(l, np.zeros_like(labels), targets, valid)  # noqa: E731
  assert float(jax.jit(f)(logits)) == 0.0
  g = jax.jit(jax.grad(f))(logits)
  assert np.all(np.isfinite(g)) and not np.any(g)


def test_losses_agree_with_anchor_coder_targets():
  # A prediction equal to the encoded target costs nothing in the box term.
  prop = jnp.array([[0.0, 0.0, 10.0, 20.0]])
  gt = jnp.array([[1.0, 2.0, 12.0, 18.0]])
  t = A.encode_boxes(gt, prop, (10, 10, 5, 5))
  deltas = jnp.zeros((1, 2, 4)).at[0, 1].set(t[0])
  _, box = R.fast_rcnn_loss(jnp.zeros((1, 2)), deltas, jnp.array([1]), t, jnp.array([True]))
  assert float(box) == 0.0
