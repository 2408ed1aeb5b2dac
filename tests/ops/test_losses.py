"""Tests for cnn_jax.ops.losses: numpy / optax references, hand examples, gradients."""

import functools
import itertools

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from jax.test_util import check_grads
from scipy.special import log_softmax as np_log_softmax

from cnn_jax.ops import losses


def _x64_check_grads(fn, args, order=1):
  """Finite-difference gradient check in float64, where it is reliable.

  ``fn`` is jitted: check_grads evaluates it many times, and op-by-op
  dispatch of every evaluation would dominate the test time.
  """
  with jax.enable_x64(True):
    check_grads(jax.jit(fn), tuple(np.asarray(a, np.float64) for a in args), order=order,
                modes=('rev',), atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------
# Cross-entropy.
# ----------------------------------------------------------------------------


def _np_ce(logits, targets):
  """Reference CE with probability targets, float64."""
  return -np.sum(targets * np_log_softmax(logits.astype(np.float64), axis=-1), axis=-1)


class SoftmaxCrossEntropyTest(chex.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.logits = rng.normal(size=(6, 5)).astype(np.float32) * 3
    self.labels = rng.integers(0, 5, size=6).astype(np.int32)
    self.one_hot = np.eye(5, dtype=np.float32)[self.labels]

  @chex.variants(with_jit=True, without_jit=True)
  def test_integer_labels_match_numpy_and_optax(self):
    per_ex = self.variant(functools.partial(losses.softmax_cross_entropy, reduction='none'))(
        self.logits, self.labels)
    chex.assert_shape(per_ex, (6,))
    np.testing.assert_allclose(per_ex, _np_ce(self.logits, self.one_hot), rtol=1e-5)
    np.testing.assert_allclose(
        per_ex, optax.softmax_cross_entropy_with_integer_labels(self.logits, self.labels),
        rtol=1e-6)
    mean = self.variant(losses.softmax_cross_entropy)(self.logits, self.labels)
    chex.assert_shape(mean, ())
    np.testing.assert_allclose(mean, _np_ce(self.logits, self.one_hot).mean(), rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_soft_labels_match_optax(self):
    probs = jax.nn.softmax(jax.random.normal(jax.random.key(0), (6, 5)))
    got = self.variant(functools.partial(losses.softmax_cross_entropy, reduction='none'))(
        self.logits, probs)
    np.testing.assert_allclose(got, optax.softmax_cross_entropy(self.logits, probs), rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0.1, 0.5, 1.0)
  def test_label_smoothing_matches_optax(self, eps):
    expected = optax.softmax_cross_entropy(self.logits, optax.smooth_labels(self.one_hot, eps))
    fn = self.variant(functools.partial(losses.softmax_cross_entropy, label_smoothing=eps,
                                        reduction='none'))
    np.testing.assert_allclose(fn(self.logits, self.labels), expected, rtol=1e-5)
    np.testing.assert_allclose(fn(self.logits, self.one_hot), expected, rtol=1e-5)
    targets = (1 - eps) * self.one_hot + eps / 5
    np.testing.assert_allclose(fn(self.logits, self.labels), _np_ce(self.logits, targets),
                               rtol=1e-5)

  def test_reductions(self):
    ce = functools.partial(losses.softmax_cross_entropy, self.logits, self.labels)
    per_ex = ce(reduction='none')
    np.testing.assert_allclose(ce(reduction='sum'), per_ex.sum(), rtol=1e-6)
    np.testing.assert_allclose(ce(reduction='mean'), per_ex.mean(), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_masked_mean_over_padded_batch(self):
    where = np.array([True, True, True, True, False, False])
    ce = self.variant(losses.softmax_cross_entropy)
    got = ce(self.logits, self.labels, where=where)
    np.testing.assert_allclose(got, ce(self.logits[:4], self.labels[:4]), rtol=1e-6)
    np.testing.assert_allclose(got, _np_ce(self.logits, self.one_hot)[:4].mean(), rtol=1e-5)
    none = losses.softmax_cross_entropy(self.logits, self.labels, where=where, reduction='none')
    np.testing.assert_array_equal(none[4:], 0.0)

  @chex.variants(with_jit=True, without_jit=True)
  def test_spatial_logits_with_ignore_label(self):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    labels = rng.integers(0, 5, size=(2, 3, 4)).astype(np.int32)
    labels[0, 0, :] = 255  # segmentation "void"
    where = labels != 255
    ce = self.variant(functools.partial(losses.softmax_cross_entropy, reduction='none'))
    per_pixel = ce(logits, labels, where=where)
    chex.assert_shape(per_pixel, (2, 3, 4))
    chex.assert_tree_all_finite(per_pixel)
    safe = np.where(where, labels, 0)
    ref = _np_ce(logits, np.eye(5)[safe])
    np.testing.assert_allclose(per_pixel, np.where(where, ref, 0.0), rtol=1e-5, atol=1e-6)
    mean = losses.softmax_cross_entropy(logits, labels, where=where)
    np.testing.assert_allclose(mean, ref[where].mean(), rtol=1e-5)

  def test_unmasked_ignore_label_is_loud(self):
    labels = self.labels.copy()
    labels[0] = 255
    self.assertTrue(np.isnan(losses.softmax_cross_entropy(self.logits, labels)))

  def test_fully_masked_batch_is_zero_with_zero_grad(self):
    where = np.zeros(6, bool)
    loss, grad = jax.jit(jax.value_and_grad(losses.softmax_cross_entropy))(
        self.logits, self.labels, where=where)
    self.assertEqual(float(loss), 0.0)
    np.testing.assert_array_equal(grad, 0.0)

  def test_stable_for_huge_logits(self):
    logits = np.array([[1000.0, -1000.0, 0.0], [-1e4, 1e4, 0.0]], np.float32)
    labels = np.array([1, 1], np.int32)
    per_ex = losses.softmax_cross_entropy(logits, labels, reduction='none')
    np.testing.assert_allclose(per_ex, [2000.0, 0.0], rtol=1e-6)
    chex.assert_tree_all_finite(jax.grad(losses.softmax_cross_entropy)(logits, labels))

  def test_gradient_is_softmax_minus_target(self):
    grad = jax.grad(losses.softmax_cross_entropy)(self.logits, self.labels)
    expected = (jax.nn.softmax(self.logits) - self.one_hot) / 6
    np.testing.assert_allclose(grad, expected, atol=1e-6)
    eps = 0.2
    grad = jax.grad(functools.partial(losses.softmax_cross_entropy, label_smoothing=eps))(
        self.logits, self.labels)
    expected = (jax.nn.softmax(self.logits) - ((1 - eps) * self.one_hot + eps / 5)) / 6
    np.testing.assert_allclose(grad, expected, atol=1e-6)

  def test_finite_difference_gradient(self):
    where = np.array([True, False, True, True, True, False])
    _x64_check_grads(
        lambda x: losses.softmax_cross_entropy(x, self.labels, label_smoothing=0.1,
                                               where=where), (self.logits,))

  @parameterized.named_parameters(
      ('bad_reduction', dict(reduction='avg'), 'reduction must be one of'),
      ('float_ids', dict(labels=np.zeros(6, np.float32)), 'must be integer class ids'),
      ('bad_label_shape', dict(labels=np.zeros((6, 4), np.float32)), 'labels must have shape'),
      ('bad_mask_shape', dict(where=np.ones(5, bool)), 'where has shape'),
      ('int_mask', dict(where=np.ones(6, np.int32)), 'boolean mask'),
      ('bad_eps', dict(label_smoothing=1.5), 'label_smoothing'),
  )
  def test_bad_input(self, kwargs, match):
    args = dict(logits=self.logits, labels=self.labels) | kwargs
    with pytest.raises(ValueError, match=match):
      losses.softmax_cross_entropy(**args)


class SigmoidBinaryCrossEntropyTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_matches_numpy_and_optax(self):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(8,)).astype(np.float32) * 4
    labels = rng.integers(0, 2, size=8).astype(np.int32)
    per_ex = self.variant(functools.partial(losses.sigmoid_binary_cross_entropy,
                                            reduction='none'))(logits, labels)
    x = logits.astype(np.float64)
    p = 1 / (1 + np.exp(-x))
    ref = -(labels * np.log(p) + (1 - labels) * np.log1p(-p))
    np.testing.assert_allclose(per_ex, ref, rtol=1e-5)
    np.testing.assert_allclose(per_ex, optax.sigmoid_binary_cross_entropy(logits, labels),
                               rtol=1e-5)
    self.assertAlmostEqual(float(self.variant(losses.sigmoid_binary_cross_entropy)(
        logits, labels)), ref.mean(), places=5)

  def test_stable_and_bool_labels(self):
    logits = np.array([100.0, -100.0, 100.0, 0.0], np.float32)
    labels = np.array([True, False, False, True])
    per_ex = losses.sigmoid_binary_cross_entropy(logits, labels, reduction='none')
    np.testing.assert_allclose(per_ex, [0.0, 0.0, 100.0, np.log(2)], atol=1e-6)
    self.assertAlmostEqual(float(losses.sigmoid_binary_cross_entropy(logits, labels, 'sum')),
                           100 + np.log(2), places=4)
    chex.assert_tree_all_finite(jax.grad(losses.sigmoid_binary_cross_entropy)(logits, labels))

  def test_gradient_is_sigmoid_minus_label(self):
    logits = np.array([-2.0, 0.5, 3.0], np.float32)
    labels = np.array([0.0, 1.0, 0.3], np.float32)
    grad = jax.grad(functools.partial(losses.sigmoid_binary_cross_entropy, reduction='sum'))(
        logits, labels)
    np.testing.assert_allclose(grad, jax.nn.sigmoid(logits) - labels, atol=1e-6)

  def test_shape_mismatch(self):
    with pytest.raises(ValueError, match='labels shape'):
      losses.sigmoid_binary_cross_entropy(np.zeros(3), np.zeros(4))


# ----------------------------------------------------------------------------
# Triplet losses and mining.
# ----------------------------------------------------------------------------


def _np_sq_dist(emb):
  emb = np.asarray(emb, np.float64)
  return ((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1)


def _np_batch_all(d, labels, margin):
  vals = [max(d[a, p] - d[a, n] + margin, 0.0)
          for a, p, n in itertools.product(range(len(labels)), repeat=3)
          if a != p and labels[a] == labels[p] and labels[n] != labels[a]]
  return np.mean(vals) if vals else 0.0


def _np_batch_hard(d, labels, margin):
  vals = []
  for a in range(len(labels)):
    pos = [d[a, p] for p in range(len(labels)) if p != a and labels[p] == labels[a]]
    neg = [d[a, n] for n in range(len(labels)) if labels[n] != labels[a]]
    if pos and neg:
      vals.append(max(max(pos) - min(neg) + margin, 0.0))
  return np.mean(vals) if vals else 0.0


def _np_semi_hard(d, labels, margin):
  vals = []
  for a, p in itertools.product(range(len(labels)), repeat=2):
    if a == p or labels[a] != labels[p]:
      continue
    neg = [d[a, n] for n in range(len(labels)) if labels[n] != labels[a]]
    if not neg:
      continue
    farther = [x for x in neg if x > d[a, p]]
    d_an = min(farther) if farther else max(neg)
    vals.append(max(d[a, p] - d_an + margin, 0.0))
  return np.mean(vals) if vals else 0.0


_NP_MINING = {'all': _np_batch_all, 'hard': _np_batch_hard, 'semi_hard': _np_semi_hard}
_JIT_MINING = {m: jax.jit(functools.partial(losses.batch_triplet_loss, margin=0.5, mining=m))
               for m in losses.MINING}


class TripletTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_triplet_loss_by_hand(self):
    a = np.array([[0.0, 0.0], [0.0, 0.0]], np.float32)
    p = np.array([[1.0, 0.0], [0.0, 0.1]], np.float32)
    n = np.array([[0.0, 2.0], [0.0, 0.0]], np.float32)
    # d_ap = 1, 0.01; d_an = 4, 0 -> hinge(1 - 4 + 0.2) = 0, hinge(0.01 + 0.2) = 0.21.
    fn = self.variant(functools.partial(losses.triplet_loss, reduction='none'))
    np.testing.assert_allclose(fn(a, p, n), [0.0, 0.21], rtol=1e-5)
    np.testing.assert_allclose(losses.triplet_loss(a, p, n), 0.105, rtol=1e-5)
    np.testing.assert_allclose(losses.triplet_loss(a, p, n, margin=4.0, reduction='sum'),
                               1 - 4 + 4 + 0.01 + 4, rtol=1e-5)

  def test_triplet_loss_gradient(self):
    rng = np.random.default_rng(3)
    a, p, n = (rng.normal(size=(4, 3)) for _ in range(3))
    _x64_check_grads(losses.triplet_loss, (a, p, n))

  @chex.variants(with_jit=True, without_jit=True)
  def test_pairwise_sq_distances(self):
    emb = np.random.default_rng(4).normal(size=(7, 5)).astype(np.float32)
    d = self.variant(losses.pairwise_sq_distances)(emb)
    chex.assert_shape(d, (7, 7))
    np.testing.assert_allclose(d, _np_sq_dist(emb), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.diag(d), 0.0)

  def test_pairwise_sq_distances_cancellation(self):
    # Near-identical large vectors: |x|^2 + |y|^2 - 2xy cancels catastrophically.
    base = np.full((1, 16), 1000.0, np.float32)
    emb = np.concatenate([base, base, base + 1e-4], 0)
    d = losses.pairwise_sq_distances(emb)
    self.assertTrue(np.all(np.asarray(d) >= 0.0))
    np.testing.assert_array_equal(np.diag(d), 0.0)
    chex.assert_tree_all_finite(
        jax.jit(jax.grad(lambda e: losses.pairwise_sq_distances(e).sum()))(emb))

  def test_batch_hard_picks_on_hand_made_batch(self):
    # 1-D embeddings, so the distances are obvious.
    emb = np.array([[0.0], [1.0], [3.0], [1.5], [2.0], [10.0]], np.float32)
    labels = np.array([0, 0, 0, 1, 1, 2], np.int32)
    pos_idx, neg_idx = jax.jit(losses.batch_hard_indices)(
        losses.pairwise_sq_distances(emb), labels)
    chex.assert_shape((pos_idx, neg_idx), (6,))
    # anchor 0: positives 1 (d 1), 2 (d 9) -> 2; negatives 3 (2.25), 4 (4), 5 -> 3.
    # anchor 1: positives 0 (1), 2 (4) -> 2; negatives 3 (0.25) -> 3.
    # anchor 2: positives 0 (9), 1 (4) -> 0; negatives 4 (1) -> 4.
    # anchor 3: positive 4; negatives 1 (0.25) -> 1.
    # anchor 4: positive 3; negatives 2 (1) -> 2... and 1 (1): tie -> lower index 1.
    # anchor 5: no positive -> -1; closest negative 2 (49).
    np.testing.assert_array_equal(pos_idx, [2, 2, 0, 4, 3, -1])
    np.testing.assert_array_equal(neg_idx, [3, 3, 4, 1, 1, 2])
    loss = _JIT_MINING['hard'](emb, labels)
    d = _np_sq_dist(emb)
    expected = np.mean([max(d[a, p] - d[a, n] + 0.5, 0) for a, p, n in
                        zip(range(5), [2, 2, 0, 4, 3], [3, 3, 4, 1, 1])])
    np.testing.assert_allclose(loss, expected, rtol=1e-6)

  def test_semi_hard_on_hand_made_batch(self):
    # 1-D embeddings; squared distances, margin 0.5.
    emb = np.array([[0.0], [1.0], [1.5], [4.0]], np.float32)
    labels = np.array([0, 0, 1, 1], np.int32)
    # Positive pairs and their semi-hard negative (nearest with d_an > d_ap, else farthest):
    # (0,1): d_ap 1;  negatives 2 (2.25), 3 (16) -> 2: hinge(1 - 2.25 + .5)  = 0
    # (1,0): d_ap 1;  negatives 2 (0.25), 3 (9)  -> 3: hinge(1 - 9 + .5)     = 0
    # (2,3): d_ap 6.25; negatives 0 (2.25), 1 (0.25): none farther -> 0: hinge(6.25 - 2.25 + .5) = 4.5
    # (3,2): d_ap 6.25; negatives 0 (16), 1 (9) -> 1: hinge(6.25 - 9 + .5)  = 0
    loss = _JIT_MINING['semi_hard'](emb, labels)
    np.testing.assert_allclose(loss, 4.5 / 4, rtol=1e-6)

  @hypothesis.given(seed=st.integers(0, 2**31 - 1), mining=st.sampled_from(losses.MINING))
  def test_mining_matches_brute_force(self, seed, mining):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(8, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=8).astype(np.int32)
    got = _JIT_MINING[mining](emb, labels)
    # Reuse the op's own distances so float32 rounding cannot flip a pick.
    d = np.asarray(losses.pairwise_sq_distances(emb), np.float64)
    np.testing.assert_allclose(got, _NP_MINING[mining](d, labels, 0.5), rtol=1e-5, atol=1e-6)

  @parameterized.parameters(*losses.MINING)
  def test_no_valid_triplet_is_zero(self, mining):
    emb = np.random.default_rng(5).normal(size=(4, 2)).astype(np.float32)
    for labels in ([0, 0, 0, 0], [0, 1, 2, 3]):
      self.assertEqual(float(_JIT_MINING[mining](emb, np.array(labels, np.int32))), 0.0)

  @parameterized.parameters(*losses.MINING)
  def test_gradients_finite_and_correct(self, mining):
    rng = np.random.default_rng(6)
    emb = rng.normal(size=(6, 3))
    labels = np.array([0, 0, 1, 1, 2, 2], np.int32)
    emb32 = emb.astype(np.float32)
    emb32[1] = emb32[0]  # a zero distance must not break the gradient
    chex.assert_tree_all_finite(
        jax.jit(jax.grad(functools.partial(losses.batch_triplet_loss, mining=mining)))(
            emb32, labels))
    _x64_check_grads(lambda e: losses.batch_triplet_loss(e, labels, margin=1.0, mining=mining),
                     (emb,))

  def test_unknown_mining(self):
    with pytest.raises(ValueError, match=r"mining must be one of \('all', 'hard', 'semi_hard'\)"):
      losses.batch_triplet_loss(np.zeros((4, 2)), np.zeros(4, np.int32), mining='easy')

  def test_bad_shapes(self):
    with pytest.raises(ValueError, match='labels'):
      losses.batch_triplet_loss(np.zeros((4, 2)), np.zeros(3, np.int32))
    with pytest.raises(ValueError, match='same shape|share one shape'):
      losses.triplet_loss(np.zeros((4, 2)), np.zeros((4, 2)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r'\(N, D\)'):
      losses.pairwise_sq_distances(np.zeros(4))


# ----------------------------------------------------------------------------
# Siamese.
# ----------------------------------------------------------------------------


class SiameseTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_pairwise_features(self):
    f1 = np.array([[1.0, 0.0, 2.0]], np.float32)
    f2 = np.array([[3.0, 0.0, 1.0]], np.float32)
    np.testing.assert_allclose(self.variant(losses.pairwise_features)(f1, f2), [[2.0, 0.0, 1.0]])
    chi2 = self.variant(functools.partial(losses.pairwise_features, kind='chi2'))(f1, f2)
    np.testing.assert_allclose(chi2, [[4 / 4, 0.0, 1 / 3]], rtol=1e-5)
    chex.assert_tree_all_finite(chi2)

  def test_pairwise_features_bad_kind(self):
    with pytest.raises(ValueError, match=r"kind must be one of \('abs', 'chi2'\)"):
      losses.pairwise_features(np.zeros(2), np.zeros(2), kind='l2')

  @chex.variants(with_jit=True, without_jit=True)
  def test_contrastive_by_hand(self):
    e1 = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]], np.float32)
    e2 = np.array([[3.0, 4.0], [0.3, 0.4], [3.0, 4.0], [1.0, 1.0]], np.float32)
    same = np.array([1, 0, 0, 1], np.int32)
    # d = 5, 0.5, 5, 0: 25 (similar), (1 - 0.5)^2 = 0.25, 0 (beyond margin), 0.
    fn = self.variant(functools.partial(losses.contrastive_loss, reduction='none'))
    np.testing.assert_allclose(fn(e1, e2, same), [25.0, 0.25, 0.0, 0.0], rtol=1e-5)
    np.testing.assert_allclose(losses.contrastive_loss(e1, e2, same.astype(bool)),
                               25.25 / 4, rtol=1e-5)
    np.testing.assert_allclose(losses.contrastive_loss(e1, e2, same, margin=6.0, reduction='sum'),
                               25 + 5.5**2 + 1.0, rtol=1e-5)

  def test_contrastive_gradient_finite_at_zero_distance(self):
    e = np.array([[1.0, 2.0], [0.5, -1.0]], np.float32)
    for same in ([1, 1], [0, 0]):
      grads = jax.grad(losses.contrastive_loss, argnums=(0, 1))(e, e, np.array(same))
      chex.assert_tree_all_finite(grads)
    # Matching pair at d = 0 is at its minimum: the gradient is exactly zero.
    g = jax.grad(losses.contrastive_loss)(e, e, np.array([1, 1]))
    np.testing.assert_array_equal(g, 0.0)

  def test_contrastive_gradient(self):
    rng = np.random.default_rng(7)
    e1, e2 = rng.normal(size=(2, 5, 3)) * 0.5
    same = np.array([1, 0, 1, 0, 0], np.int32)
    _x64_check_grads(lambda a, b: losses.contrastive_loss(a, b, same, margin=2.0), (e1, e2))

  def test_contrastive_bad_same_shape(self):
    with pytest.raises(ValueError, match='same must have shape'):
      losses.contrastive_loss(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(2))


# ----------------------------------------------------------------------------
# Style transfer.
# ----------------------------------------------------------------------------


def _np_gram(a):
  a = np.asarray(a, np.float64)
  unrolled = a.reshape(-1, a.shape[-1])
  return unrolled.T @ unrolled


class StyleTransferTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_gram_2x2x2_by_hand(self):
    # Channel 0 = [[1, 2], [3, 4]], channel 1 = [[0, 1], [1, 0]].
    a = np.stack([[[1, 2], [3, 4]], [[0, 1], [1, 0]]], axis=-1).astype(np.float32)
    g = self.variant(losses.gram_matrix)(a)
    chex.assert_shape(g, (2, 2))
    # G00 = 1+4+9+16 = 30; G01 = 1*0 + 2*1 + 3*1 + 4*0 = 5; G11 = 0+1+1+0 = 2.
    np.testing.assert_allclose(g, [[30.0, 5.0], [5.0, 2.0]])

  def test_gram_batched(self):
    a = np.random.default_rng(8).normal(size=(3, 4, 5, 6)).astype(np.float32)
    g = losses.gram_matrix(a)
    chex.assert_shape(g, (3, 6, 6))
    for i in range(3):
      np.testing.assert_allclose(g[i], _np_gram(a[i]), rtol=1e-5, atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_content_loss_by_hand(self):
    rng = np.random.default_rng(9)
    a_c, a_g = rng.normal(size=(2, 4, 3, 5))
    expected = np.sum((a_c - a_g) ** 2) / (4 * 4 * 3 * 5)
    got = self.variant(losses.content_loss)(a_c.astype(np.float32), a_g.astype(np.float32))
    chex.assert_shape(got, ())
    np.testing.assert_allclose(got, expected, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_content_loss_half_sum_of_squares_and_its_gradient(self):
    a_c = np.array([[[1.0], [2.0]], [[3.0], [4.0]]], np.float32)  # (2, 2, 1)
    a_g = np.array([[[0.0], [2.0]], [[1.0], [1.0]]], np.float32)
    half = self.variant(functools.partial(losses.content_loss, norm='half'))
    # 1/2 ((1-0)^2 + 0^2 + (3-1)^2 + (4-1)^2) = 1/2 (1 + 0 + 4 + 9) = 7.
    np.testing.assert_allclose(half(a_c, a_g), 7.0, rtol=1e-6)
    # The default divides by 4 nH nW nC = 16 instead of 2.
    np.testing.assert_allclose(losses.content_loss(a_c, a_g), 14.0 / 16.0, rtol=1e-6)
    # d/da_g 1/2 ||a_c - a_g||^2 = a_g - a_c: (-1, 0, -2, -3).
    grad = jax.grad(lambda g: losses.content_loss(a_c, g, norm='half'))(a_g)
    np.testing.assert_allclose(grad, a_g - a_c, rtol=1e-6)
    np.testing.assert_allclose(grad[..., 0], [[-1.0, 0.0], [-2.0, -3.0]], rtol=1e-6)
    # A batch is the mean over images, so each image's gradient is divided by N.
    batch_c, batch_g = np.stack([a_c, a_c]), np.stack([a_g, a_c])
    np.testing.assert_allclose(half(batch_c, batch_g), 7.0 / 2, rtol=1e-6)
    grad = jax.grad(lambda g: losses.content_loss(batch_c, g, norm='half'))(batch_g)
    np.testing.assert_allclose(grad, (batch_g - batch_c) / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="norm='sum' is not valid; choose one of 4hwc, half"):
      losses.content_loss(a_c, a_g, norm='sum')

  def test_content_loss_batch_is_mean_of_images(self):
    rng = np.random.default_rng(10)
    a_c, a_g = rng.normal(size=(2, 3, 4, 3, 5)).astype(np.float32)
    per_image = [losses.content_loss(a_c[i], a_g[i]) for i in range(3)]
    np.testing.assert_allclose(losses.content_loss(a_c, a_g), np.mean(per_image), rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_style_layer_loss_by_hand(self):
    rng = np.random.default_rng(11)
    a_s, a_g = rng.normal(size=(2, 4, 3, 5))
    expected = np.sum((_np_gram(a_s) - _np_gram(a_g)) ** 2) / (4 * 5**2 * (4 * 3) ** 2)
    got = self.variant(losses.style_layer_loss)(a_s.astype(np.float32), a_g.astype(np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    batched = losses.style_layer_loss(np.stack([a_s, a_g]).astype(np.float32),
                                      np.stack([a_g, a_g]).astype(np.float32))
    np.testing.assert_allclose(batched, expected / 2, rtol=1e-5)

  def test_style_loss_weights(self):
    rng = np.random.default_rng(12)
    layers = [tuple(rng.normal(size=(2, 6, 6, 3)).astype(np.float32)),
              tuple(rng.normal(size=(2, 3, 3, 8)).astype(np.float32))]
    per_layer = [float(losses.style_layer_loss(s, g)) for s, g in layers]
    np.testing.assert_allclose(losses.style_loss(layers), np.mean(per_layer), rtol=1e-6)
    np.testing.assert_allclose(losses.style_loss(layers, weights=[0.2, 0.8]),
                               0.2 * per_layer[0] + 0.8 * per_layer[1], rtol=1e-6)
    jitted = jax.jit(losses.style_loss)(layers)
    np.testing.assert_allclose(jitted, np.mean(per_layer), rtol=1e-5)

  def test_style_and_content_gradients(self):
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=(2, 2, 3, 3, 2))
    _x64_check_grads(losses.content_loss, (a, b))
    _x64_check_grads(losses.style_layer_loss, (a, b), order=2)
    _x64_check_grads(lambda g: losses.style_loss([(a, g), (a[:, :2], g[:, :2])], [0.3, 0.7]),
                     (b,))

  @chex.variants(with_jit=True, without_jit=True)
  def test_total_variation_by_hand(self):
    x = np.array([[1.0, 2.0, 4.0],
                  [0.0, 2.0, 5.0]], np.float32)[..., None]
    # Vertical diffs: -1, 0, 1; horizontal: 1, 2, 2, 3.
    tv = self.variant(losses.total_variation)
    chex.assert_shape(tv(x), ())
    np.testing.assert_allclose(tv(x), 2 + 8)
    np.testing.assert_allclose(self.variant(functools.partial(losses.total_variation, p=2))(x),
                               2 + (1 + 4 + 4 + 9))
    batch = np.stack([x, 2 * x, np.zeros_like(x)])
    got = tv(batch)
    chex.assert_shape(got, (3,))
    np.testing.assert_allclose(got, [10.0, 20.0, 0.0])

  def test_total_variation_sums_channels_and_matches_tf_formula(self):
    x = np.random.default_rng(14).normal(size=(2, 5, 4, 3)).astype(np.float32)
    # tf.image.total_variation, written out.
    ref = (np.abs(np.diff(x, axis=1)).sum(axis=(1, 2, 3)) +
           np.abs(np.diff(x, axis=2)).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(losses.total_variation(x), ref, rtol=1e-5)
    np.testing.assert_allclose(losses.total_variation(x[0]), ref[0], rtol=1e-5)

  def test_total_variation_uint8_does_not_wrap(self):
    x = np.array([[0, 255]], np.uint8)[..., None]
    self.assertEqual(float(losses.total_variation(x)), 255.0)

  def test_total_variation_gradient(self):
    x = np.random.default_rng(15).normal(size=(1, 3, 3, 2))
    _x64_check_grads(functools.partial(losses.total_variation, p=2), (x,))
    _x64_check_grads(lambda y: losses.total_variation(y, p=1).sum(), (x,))

  @parameterized.named_parameters(
      ('content_shape', lambda: losses.content_loss(np.zeros((2, 2, 3)), np.zeros((2, 2, 4))),
       'same shape'),
      ('gram_rank', lambda: losses.gram_matrix(np.zeros((4, 4))), r'\(H, W, C\)'),
      ('style_empty', lambda: losses.style_loss([]), 'at least one'),
      ('style_weights', lambda: losses.style_loss([(np.zeros((2, 2, 1)),) * 2], [1.0, 2.0]),
       'one weight per layer'),
      ('tv_p', lambda: losses.total_variation(np.zeros((2, 2, 1)), p=3), 'p must be 1'),
      ('tv_rank', lambda: losses.total_variation(np.zeros((2, 2))), r'\(H, W, C\)'),
  )
  def test_bad_input(self, call, match):
    with pytest.raises(ValueError, match=match):
      call()


# ----------------------------------------------------------------------------
# YOLO: the course's (YOLO v1) sum-squared-error loss.
# ----------------------------------------------------------------------------


def _np_sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


class YoloCourseLossTest(chex.TestCase):

  def setUp(self):
    super().setUp()
    # Two images on a 2x2 grid, 2 anchors, 2 classes; image 0 holds one object of
    # class 1 in cell (1, 0), anchor 1: centre offset (0.25, 0.6), size (0.6, 0.3)
    # of the image. Image 1 is empty.
    self.anchors = np.array([[0.2, 0.3], [0.5, 0.4]], np.float32)
    target = np.zeros((2, 2, 2, 2, 7), np.float32)
    target[0, 1, 0, 1] = [1, 0.25, 0.6, np.log(0.6 / 0.5), np.log(0.3 / 0.4), 0, 1]
    self.target = target
    self.out = np.random.default_rng(20).normal(size=(2, 2, 2, 2, 7)).astype(np.float32)

  @chex.variants(with_jit=True, without_jit=True)
  def test_by_hand_on_a_tiny_grid(self):
    fn = self.variant(functools.partial(losses.yolo_course_loss, coord_weight=5.0,
                                        noobj_weight=0.5))
    total, parts = fn(self.out, self.target, self.anchors)
    # By hand, in float64, from what boxes.detect decodes at the object's slot.
    out = self.out.astype(np.float64)
    o = out[0, 1, 0, 1]
    p = _np_sigmoid(o[0])
    y, x = _np_sigmoid(o[1:3])
    h, w = self.anchors[1] * np.exp(o[3:5])
    probs = np.exp(o[5:]) / np.exp(o[5:]).sum()
    n = 2  # images: every part is a sum over slots divided by the batch size
    want = {
        'obj': (p - 1.0) ** 2 / n,
        # The 15 empty slots of both images: lambda_noobj * sum p^2.
        'noobj': 0.5 * (np.sum(_np_sigmoid(out[..., 0]) ** 2) - p ** 2) / n,
        'box': 5.0 * ((y - 0.25) ** 2 + (x - 0.6) ** 2 + (np.sqrt(h) - np.sqrt(0.6)) ** 2 +
                      (np.sqrt(w) - np.sqrt(0.3)) ** 2) / n,
        'cls': (probs[0] ** 2 + (probs[1] - 1.0) ** 2) / n,
    }
    for k, v in want.items():
      np.testing.assert_allclose(parts[k], v, rtol=1e-5, err_msg=k)
    np.testing.assert_allclose(total, sum(want.values()), rtol=1e-5)

  def test_exact_prediction_costs_nothing_and_decodes_to_the_target(self):
    from cnn_jax.ops import boxes as box_ops
    # Logits that decode exactly to the target box (the inverse of detect's decoding).
    t = self.target[0, 1, 0, 1]
    out = np.full_like(self.target, -30.0)  # sigmoid(-30) ~ 1e-13: empty slots say "no object"
    out[0, 1, 0, 1, 1:3] = np.log(t[1:3] / (1 - t[1:3]))
    out[0, 1, 0, 1, 3:5] = t[3:5]
    out[0, 1, 0, 1, 0] = 30.0
    out[0, 1, 0, 1, 5:] = [-30.0, 30.0]
    total, parts = losses.yolo_course_loss(out, self.target, self.anchors)
    assert float(total) < 1e-10 and float(parts['box']) < 1e-10
    decoded, _, _ = box_ops.yolo_decode(out[0], self.anchors)
    truth, _, _ = box_ops.yolo_decode(self.target[0], self.anchors, from_logits=False)
    slot = (1 * 2 + 0) * 2 + 1  # (row, col, anchor) order
    np.testing.assert_allclose(decoded[slot], truth[slot], atol=1e-6)
    # A size error costs more on a small box than the same relative error on a big one
    # (the square roots): halve h of the object with a small and with a big anchor.
    small, big = self.anchors.copy(), self.anchors.copy()
    small[1], big[1] = [0.05, 0.4], [0.9, 0.4]
    off = out.copy()
    off[0, 1, 0, 1, 3] -= np.log(2.0)
    box = lambda a: float(losses.yolo_course_loss(off, self.target, a)[1]['box'])
    assert box(small) < box(big)

  def test_gradient_matches_finite_differences(self):
    # Strict promotion: the target takes the (float64) output's dtype.
    _x64_check_grads(lambda o: losses.yolo_course_loss(o, self.target.astype(o.dtype),
                                                       self.anchors)[0], (self.out,))

  def test_bad_anchors(self):
    with pytest.raises(ValueError, match=r'anchors must be \(B, 2\) = \(2, 2\)'):
      losses.yolo_course_loss(self.out, self.target, self.anchors[:1])
