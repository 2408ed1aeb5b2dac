"""Tests for cnn_jax.ops.metrics against hand counts and numpy references."""

import functools

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cnn_jax.ops import metrics

LOGITS = np.array([[0.1, 2.0, 0.3, -1.0],   # pred 1, ranking 1 2 0 3
                   [3.0, 0.0, 1.0, 2.0],    # pred 0, ranking 0 3 2 1
                   [0.0, 0.5, 1.0, 1.5],    # pred 3, ranking 3 2 1 0
                   [1.0, 0.9, 0.8, 0.7]],   # pred 0, ranking 0 1 2 3
                  np.float32)
LABELS = np.array([1, 3, 1, 3], np.int32)


def _np_confusion(preds, labels, k, mask=None):
  cm = np.zeros((k, k), np.int64)
  mask = np.ones(labels.shape, bool) if mask is None else mask
  for p, t, m in zip(preds.ravel(), labels.ravel(), mask.ravel()):
    if m and 0 <= p < k and 0 <= t < k:
      cm[t, p] += 1
  return cm


class AccuracyTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_top1(self):
    acc = self.variant(metrics.accuracy)(LOGITS, LABELS)
    chex.assert_shape(acc, ())
    chex.assert_type(acc, jnp.float32)
    self.assertAlmostEqual(float(acc), 0.25)

  @chex.variants(with_jit=True, without_jit=True)
  def test_one_hot_labels_match_integer_labels(self):
    one_hot = jax.nn.one_hot(LABELS, 4)
    fn = self.variant(metrics.accuracy)
    self.assertAlmostEqual(float(fn(LOGITS, one_hot)), float(fn(LOGITS, LABELS)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_where_counts_only_masked_in(self):
    where = np.array([True, True, False, False])
    acc = self.variant(metrics.accuracy)(LOGITS, LABELS, where)
    self.assertAlmostEqual(float(acc), 0.5)

  def test_all_masked_is_nan(self):
    acc = metrics.accuracy(LOGITS, LABELS, np.zeros(4, bool))
    self.assertTrue(np.isnan(acc))

  def test_spatial(self):
    logits = np.zeros((2, 3, 3, 4), np.float32)
    logits[..., 2] = 1.0
    labels = np.full((2, 3, 3), 2, np.int32)
    labels[0, 0, 0] = 1
    self.assertAlmostEqual(float(metrics.accuracy(logits, labels)), 17 / 18, places=6)

  @parameterized.parameters((1, 0.25), (2, 0.5), (3, 0.75), (4, 1.0))
  def test_top_k_by_hand(self, k, expected):
    # Label ranks per row: row0 label 1 rank 1; row1 label 3 rank 2;
    # row2 label 1 rank 3; row3 label 3 rank 4.
    acc = jax.jit(functools.partial(metrics.top_k_accuracy, k=k))(LOGITS, LABELS)
    self.assertAlmostEqual(float(acc), expected)

  @chex.variants(with_jit=True, without_jit=True)
  def test_top_k_one_hot_and_where(self):
    fn = self.variant(functools.partial(metrics.top_k_accuracy, k=2))
    where = np.array([False, True, True, True])
    self.assertAlmostEqual(float(fn(LOGITS, jax.nn.one_hot(LABELS, 4), where=where)), 1 / 3,
                           places=6)

  def test_top_1_equals_accuracy(self):
    logits = jax.random.normal(jax.random.key(0), (64, 10))
    labels = jax.random.randint(jax.random.key(1), (64,), 0, 10)
    np.testing.assert_allclose(metrics.top_k_accuracy(logits, labels, k=1),
                               metrics.accuracy(logits, labels))

  def test_bad_input(self):
    with pytest.raises(ValueError, match=r'k must be in \[1, 4\]'):
      metrics.top_k_accuracy(LOGITS, LABELS, k=5)
    with pytest.raises(ValueError, match='labels must have shape'):
      metrics.accuracy(LOGITS, LABELS[:3])
    with pytest.raises(ValueError, match='integer class ids'):
      metrics.accuracy(LOGITS, LABELS.astype(np.float32))
    with pytest.raises(ValueError, match='boolean mask'):
      metrics.accuracy(LOGITS, LABELS, np.ones(4, np.int32))


class ConfusionMatrixTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_by_hand(self):
    preds = np.array([0, 1, 1, 2, 2, 2], np.int32)
    labels = np.array([0, 1, 2, 2, 2, 0], np.int32)
    cm = self.variant(functools.partial(metrics.confusion_matrix, num_classes=3))(preds, labels)
    chex.assert_shape(cm, (3, 3))
    chex.assert_type(cm, jnp.int32)
    # Rows are true classes, columns predictions.
    np.testing.assert_array_equal(cm, [[1, 0, 1],
                                       [0, 1, 0],
                                       [0, 1, 2]])

  @chex.variants(with_jit=True, without_jit=True)
  def test_where_and_ignore_index(self):
    preds = np.array([[0, 1], [2, 0]], np.int32)
    labels = np.array([[0, 255], [2, 1]], np.int32)
    fn = self.variant(functools.partial(metrics.confusion_matrix, num_classes=3,
                                        ignore_index=255))
    np.testing.assert_array_equal(fn(preds, labels), _np_confusion(preds, labels, 3))
    where = np.array([[True, True], [True, False]])
    expected = np.diag([1, 0, 1])
    np.testing.assert_array_equal(fn(preds, labels, where=where), expected)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(preds, labels, 3, where=labels != 255), fn(preds, labels))

  def test_out_of_range_ids_do_not_alias(self):
    # label 0, pred 4 would land on flat index 4 = cell (1, 1) if not masked.
    cm = metrics.confusion_matrix(np.array([4, -1]), np.array([0, 1]), 3)
    np.testing.assert_array_equal(cm, np.zeros((3, 3)))

  @hypothesis.given(seed=st.integers(0, 2**31 - 1))
  def test_matches_numpy_reference(self, seed):
    rng = np.random.default_rng(seed)
    preds = rng.integers(0, 5, size=(2, 6, 6)).astype(np.int32)
    labels = rng.integers(0, 5, size=(2, 6, 6)).astype(np.int32)
    mask = rng.random((2, 6, 6)) < 0.8
    cm = _jit_confusion(preds, labels, where=mask)
    np.testing.assert_array_equal(cm, _np_confusion(preds, labels, 5, mask))
    assert int(cm.sum()) == int(mask.sum())

  def test_bad_input(self):
    with pytest.raises(ValueError, match='same shape'):
      metrics.confusion_matrix(np.zeros(3, np.int32), np.zeros(4, np.int32), 2)
    with pytest.raises(ValueError, match='integer class ids'):
      metrics.confusion_matrix(np.zeros(3, np.float32), np.zeros(3, np.int32), 2)


_jit_confusion = jax.jit(functools.partial(metrics.confusion_matrix, num_classes=5))


class SegmentationTest(chex.TestCase):

  # Two 3x3 masks; 255 is void, class 3 appears nowhere.
  PRED = np.array([[[0, 0, 1],
                    [0, 1, 1],
                    [2, 2, 1]],
                   [[0, 0, 0],
                    [2, 2, 2],
                    [1, 1, 0]]], np.int32)
  LABEL = np.array([[[0, 0, 0],
                     [0, 1, 1],
                     [2, 2, 255]],
                    [[0, 0, 255],
                     [2, 2, 1],
                     [1, 1, 0]]], np.int32)

  @chex.variants(with_jit=True, without_jit=True)
  def test_pixel_accuracy(self):
    fn = self.variant(functools.partial(metrics.pixel_accuracy, ignore_index=255))
    # 16 counted pixels; wrong: (0,0,2) and (1,1,2).
    self.assertAlmostEqual(float(fn(self.PRED, self.LABEL)), 14 / 16, places=6)
    self.assertAlmostEqual(float(metrics.pixel_accuracy(self.PRED, self.LABEL)), 14 / 18,
                           places=6)

  def test_pixel_accuracy_all_ignored_is_nan(self):
    label = np.full((1, 2, 2), 255, np.int32)
    self.assertTrue(np.isnan(metrics.pixel_accuracy(label, label, ignore_index=255)))

  @chex.variants(with_jit=True, without_jit=True)
  def test_mean_iou_by_hand(self):
    fn = self.variant(functools.partial(metrics.mean_iou, num_classes=4, ignore_index=255))
    miou, per_class = fn(self.PRED, self.LABEL)
    chex.assert_shape(per_class, (4,))
    # Counted pixels only (void dropped, so the pred 1 / pred 0 there vanish):
    # class 0: TP 6, FP 0, FN 1 (a label 0 predicted 1)  -> 6/7
    # class 1: TP 4, FP 1, FN 1 (a label 1 predicted 2)  -> 4/6
    # class 2: TP 4, FP 1, FN 0                          -> 4/5
    # class 3: absent from both                          -> NaN, left out
    expected = np.array([6 / 7, 4 / 6, 4 / 5, np.nan])
    np.testing.assert_allclose(per_class, expected, rtol=1e-6)
    self.assertAlmostEqual(float(miou), np.mean(expected[:3]), places=6)

  def test_class_only_predicted_has_zero_iou(self):
    pred = np.array([[0, 1]], np.int32)
    label = np.array([[0, 0]], np.int32)
    miou, per_class = metrics.mean_iou(pred, label, 3)
    np.testing.assert_allclose(per_class, [0.5, 0.0, np.nan])
    self.assertAlmostEqual(float(miou), 0.25)

  def test_iou_from_summed_confusion_matrices(self):
    # Aggregating a data set: sum the per-batch matrices, then take IoU.
    cm = sum(metrics.confusion_matrix(p[None], l[None], 4, ignore_index=255)
             for p, l in zip(self.PRED, self.LABEL))
    np.testing.assert_allclose(metrics.iou_from_confusion_matrix(cm)[1],
                               metrics.mean_iou(self.PRED, self.LABEL, 4, 255)[1])

  def test_perfect_prediction(self):
    label = np.array([[0, 1], [2, 2]], np.int32)
    miou, per_class = metrics.mean_iou(label, label, 3)
    np.testing.assert_allclose(per_class, [1.0, 1.0, 1.0])
    self.assertEqual(float(miou), 1.0)

  def test_bad_input(self):
    with pytest.raises(ValueError, match='same shape'):
      metrics.pixel_accuracy(self.PRED, self.LABEL[0])
    with pytest.raises(ValueError, match='square'):
      metrics.iou_from_confusion_matrix(np.zeros((2, 3)))


# --------------------------------------------------------------------------- verification


def _auc_brute_force(scores, positive):
  pos, neg = scores[positive], scores[~positive]
  wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
  return wins / (len(pos) * len(neg))


@hypothesis.given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2,
                           max_size=30))
def test_roc_auc_equals_pairwise_count_with_ties(rows):
  scores = np.array([r[0] for r in rows], np.float32)  # small ints: many ties
  positive = np.array([r[1] for r in rows])
  got = float(jax.jit(metrics.roc_auc)(scores, positive))
  if positive.all() or not positive.any():
    assert np.isnan(got)
  else:
    assert got == pytest.approx(_auc_brute_force(scores, positive), abs=1e-6)


def test_roc_auc_hand_cases():
  assert float(metrics.roc_auc(jnp.array([0.1, 0.4, 0.35, 0.8]),
                               jnp.array([False, False, True, True]))) == 0.75
  assert float(metrics.roc_auc(jnp.array([3.0, 2.0, 1.0]), jnp.array([True, False, False]))) == 1


def test_best_threshold_and_accuracy():
  d = jnp.array([0.1, 0.3, 0.2, 0.9, 0.25, 1.2])
  same = jnp.array([True, True, False, False, True, False])
  t, acc = jax.jit(metrics.best_threshold)(d, same)
  # Thresholds 0.1 / 0.2 / 0.25 / 0.3 classify 4, 3, 4, 5 of 6 right: 0.3 is best.
  assert float(t) == pytest.approx(0.3) and float(acc) == pytest.approx(5 / 6)
  assert float(metrics.verification_accuracy(d, same, 0.1)) == pytest.approx(4 / 6)
  with pytest.raises(ValueError, match=r'need scores \(N,\) and positive \(N,\)'):
    metrics.best_threshold(d, same[:3])
