"""Box ops: IoU by hand, NMS vs a numpy reference, YOLO encode/decode, AP by hand."""

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.ops import boxes as B
from cnn_jax.ops import losses


class IouTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_hand_values(self):
    a = jnp.array([[0.0, 0.0, 2.0, 2.0]])
    b = jnp.array([[1.0, 1.0, 3.0, 3.0],    # overlap 1, union 7
                   [3.0, 3.0, 4.0, 4.0],    # disjoint
                   [0.5, 0.5, 1.0, 1.5],    # contained: 0.5 / 4
                   [0.0, 0.0, 2.0, 2.0],    # identical
                   [2.0, 0.0, 3.0, 2.0]])   # touching edge: 0
    iou = self.variant(B.box_iou)(a, b)
    np.testing.assert_allclose(iou, [[1 / 7, 0.0, 0.125, 1.0, 0.0]], rtol=1e-6)

  def test_centre_format_and_empty_boxes(self):
    a = jnp.array([[1.0, 1.0, 2.0, 2.0]])  # centre (1, 1), size 2: corners (0, 0, 2, 2)
    b = jnp.array([[2.0, 2.0, 2.0, 2.0]])
    assert float(B.box_iou(a, b, fmt='centers')[0, 0]) == pytest.approx(1 / 7)
    np.testing.assert_allclose(B.corners_to_centers(B.centers_to_corners(a)), a)
    empty = jnp.zeros((1, 4))
    assert float(B.box_iou(empty, empty)[0, 0]) == 0.0
    with pytest.raises(ValueError, match='last axis of 4'):
      B.box_iou(jnp.zeros((2, 3)), empty)


def _nms_reference(boxes, scores, thr, score_thr, classes=None):
  order = np.argsort(-scores, kind='stable')
  keep = []
  iou = np.asarray(B.box_iou(boxes, boxes))
  for i in order:
    if scores[i] <= score_thr:
      continue
    if all(iou[i, j] <= thr or (classes is not None and classes[i] != classes[j])
           for j in keep):
      keep.append(i)
  return keep


def test_nms_hand_set():
  boxes = jnp.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 20, 10, 30], [50, 50, 60, 60],
                     [0.5, 0.5, 10, 10]], jnp.float32)
  scores = jnp.array([0.9, 0.8, 0.7, 0.05, 0.95])
  idx, valid = jax.jit(B.nms, static_argnames=('max_outputs',))(
      boxes, scores, iou_threshold=0.5, score_threshold=0.1, max_outputs=6)
  # 4 beats 0 and 1 (IoU > 0.5), 2 is apart, 3 is below the score threshold.
  assert idx[valid].tolist() == [4, 2]
  assert valid.tolist() == [True, True, False, False, False, False]
  # Per class: box 1 survives when its class differs from box 4's.
  idx, valid = B.nms(boxes, scores, iou_threshold=0.5, score_threshold=0.1, max_outputs=3,
                     classes=jnp.array([0, 1, 0, 0, 0]))
  assert idx[valid].tolist() == [4, 1, 2]


_nms_jit = jax.jit(B.nms, static_argnames=('max_outputs',))


@hypothesis.given(st.integers(0, 10_000), st.floats(0.1, 0.9))
def test_nms_matches_numpy_greedy(seed, thr):
  rng = np.random.default_rng(seed)
  lo = rng.uniform(0, 0.8, (12, 2))
  boxes = np.concatenate([lo, lo + rng.uniform(0.05, 0.3, (12, 2))], 1).astype(np.float32)
  scores = rng.uniform(0, 1, 12).astype(np.float32)
  classes = rng.integers(0, 2, 12)
  for cls in (None, classes):
    # Jitted with the threshold traced: one program for every example, as a detector uses it.
    idx, valid = _nms_jit(jnp.asarray(boxes), jnp.asarray(scores), iou_threshold=thr,
                          score_threshold=0.2, max_outputs=12,
                          classes=None if cls is None else jnp.asarray(cls))
    assert idx[valid].tolist() == _nms_reference(boxes, scores, thr, 0.2, cls)


def test_yolo_encode_decode_round_trip():
  anchors = jnp.array([[0.1, 0.1], [0.4, 0.25]])
  boxes = jnp.array([[0.05, 0.05, 0.2, 0.15],   # small: anchor 0, cell (0, 0)
                     [0.3, 0.5, 0.7, 0.8],       # large: anchor 1, cell (2, 2)
                     [0.0, 0.0, 0.0, 0.0]])      # padding
  labels = jnp.array([2, 0, -1])
  target = jax.jit(B.yolo_encode, static_argnames=('grid', 'num_classes'))(
      boxes, labels, grid=4, anchors=anchors, num_classes=3)
  chex.assert_shape(target, (4, 4, 2, 8))
  assert float(target[..., 0].sum()) == 2.0
  assert float(target[0, 0, 0, 0]) == 1.0 and float(target[2, 2, 1, 0]) == 1.0
  np.testing.assert_allclose(target[2, 2, 1, 1:5], [0.0, 0.6, 0.0, np.log(0.3 / 0.25)],
                             atol=1e-6)
  decoded, obj, cls = B.yolo_decode(target, anchors, from_logits=False)
  kept = np.asarray(obj) > 0
  np.testing.assert_allclose(np.asarray(decoded)[kept], boxes[:2], atol=1e-6)
  assert np.argmax(np.asarray(cls)[kept], -1).tolist() == [2, 0]


def test_yolo_loss_by_hand():
  target = jnp.zeros((2, 3, 3, 2, 7))
  total, parts = losses.yolo_loss(jnp.zeros((2, 3, 3, 2, 7)), target, noobj_weight=0.5)
  # No objects: only the no-object BCE at logit 0 (log 2) over 18 slots per image.
  assert float(total) == pytest.approx(0.5 * 18 * np.log(2), rel=1e-6)
  assert float(parts['box']) == float(parts['cls']) == float(parts['obj']) == 0.0
  one = target.at[0, 1, 1, 0, 0].set(1.0).at[0, 1, 1, 0, 1:3].set(0.5).at[0, 1, 1, 0, 5].set(1.0)
  _, parts = losses.yolo_loss(jnp.zeros((2, 3, 3, 2, 7)), one)
  # sigmoid(0) = 0.5 matches the offsets, log-sizes 0 match: no box loss; class CE = log 2.
  assert float(parts['box']) == 0.0
  assert float(parts['cls']) == pytest.approx(np.log(2) / 2, rel=1e-6)
  assert float(parts['obj']) == pytest.approx(np.log(2) / 2, rel=1e-6)
  g = jax.grad(lambda o: losses.yolo_loss(o, one)[0])(jnp.zeros((2, 3, 3, 2, 7)))
  chex.assert_tree_all_finite(g)


def test_average_precision():
  gt = [(np.array([[0, 0, .5, .5], [.5, .5, 1, 1]]), np.array([0, 0]))]
  perfect = [(gt[0][0], np.array([0.9, 0.8]), np.array([0, 0]))]
  m, ap = B.average_precision(perfect, gt, num_classes=2)
  assert m == 1.0 and ap[0] == 1.0 and np.isnan(ap[1])  # class 1 has no ground truth
  # Ranked: TP (0.9), FP (0.8, misplaced), TP (0.7): precision 1 at recall 0.5, 2/3 at 1.
  dets = [(np.array([[0, 0, .5, .5], [0, .5, .4, 1], [.5, .5, 1, 1]]),
           np.array([0.9, 0.8, 0.7]), np.array([0, 0, 0]))]
  m, ap = B.average_precision(dets, gt, num_classes=1)
  assert m == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
  # A duplicate of a matched box is a false positive.
  dup = [(np.array([[0, 0, .5, .5], [0, 0, .5, .5]]), np.array([0.9, 0.8]), np.array([0, 0]))]
  assert B.average_precision(dup, gt, num_classes=1)[0] == pytest.approx(0.5)


def test_average_precision_difficult_rule():
  a, b = [0, 0, .5, .5], [.5, .5, 1, 1]
  gt = [(np.array([a, b]), np.array([0, 0]))]
  dets = [(np.array([b, b, a, [0, .5, .4, 1]]), np.array([0.95, 0.9, 0.8, 0.7]),
           np.zeros(4, int))]
  # Box b is difficult: the two detections on it (a duplicate included) are
  # neither TP nor FP and b is not counted: TP then FP, precision 1 at recall 1.
  curve = B.precision_recall(dets, gt, 1, ignore=[np.array([False, True])])[0]
  assert curve.n_gt == 1 and curve.ap == 1.0
  np.testing.assert_allclose(curve.precision, [1.0, 0.5])
  np.testing.assert_allclose(curve.recall, [1.0, 1.0])
  np.testing.assert_allclose(curve.scores, [0.8, 0.7])
  # Not difficult: TP, FP (duplicate), TP, FP: 1/2 x 1 + 1/2 x 2/3.
  assert B.average_precision(dets, gt, 1)[0] == pytest.approx(5 / 6)
  # Only difficult boxes: the class has no ground truth (NaN), as in VOC.
  m, ap = B.average_precision(dets, gt, 1, ignore=[np.array([True, True])])
  assert np.isnan(m) and np.isnan(ap[0])
  with pytest.raises(ValueError, match='1 flags for 2'):
    B.average_precision(dets, gt, 1, ignore=[np.array([True])])


def _iou_scalar(p, q):
  p, q = np.asarray(p, np.float32), np.asarray(q, np.float32)
  h = max(min(p[2], q[2]) - max(p[0], q[0]), np.float32(0))
  w = max(min(p[3], q[3]) - max(p[1], q[1]), np.float32(0))
  area = lambda r: max(r[2] - r[0], np.float32(0)) * max(r[3] - r[1], np.float32(0))
  union = area(p) + area(q) - h * w
  return h * w / union if union > 0 else np.float32(0)


def _ap_reference(dets, gts, num_classes, thr, ignore):
  """VOC AP the slow way: one class, one detection, one ground-truth box at a time."""
  ap = np.full(num_classes, np.nan)
  for c in range(num_classes):
    ranked, n_gt = [], 0
    for img, ((_, ds, dc), (_, gc)) in enumerate(zip(dets, gts)):
      n_gt += int(np.sum((gc == c) & ~ignore[img]))
      ranked += [(-float(ds[k]), img, k) for k in range(len(dc)) if dc[k] == c]
    if n_gt == 0:
      continue
    ranked.sort()  # by score, then image, then row: a stable sort's ties
    used, tp = set(), []
    for _, img, k in ranked:
      gb, gc = gts[img]
      best, j = -1.0, None
      for g in range(len(gc)):  # the first best unmatched box of the class
        if gc[g] == c and (img, g) not in used and _iou_scalar(dets[img][0][k], gb[g]) > best:
          best, j = _iou_scalar(dets[img][0][k], gb[g]), g
      if j is not None and best >= thr:
        if ignore[img][j]:
          continue  # a difficult box: neither TP nor FP, never used up
        used.add((img, j))
        tp.append(1.0)
      else:
        tp.append(0.0)
    cum = np.cumsum(tp)
    recall, precision = cum / n_gt, cum / np.arange(1, len(tp) + 1)
    ap[c] = sum((recall[i] - (recall[i - 1] if i else 0.0)) * max(precision[i:])
                for i in range(len(tp)))
  return ap


def _random_eval_set(seed, num_classes):
  rng = np.random.default_rng(seed)
  dets, gts, ignore = [], [], []
  for _ in range(rng.integers(1, 12)):
    g = int(rng.integers(0, 6))
    lo = rng.uniform(0, 0.7, (g, 2))
    gb = np.concatenate([lo, lo + rng.uniform(0.05, 0.3, (g, 2))], 1)
    gc = rng.integers(0, num_classes, g)
    pad = int(rng.integers(0, 3))  # padding rows, label -1
    gb, gc = np.concatenate([gb, np.zeros((pad, 4))]), np.concatenate([gc, -np.ones(pad, int)])
    d = int(rng.integers(0, 9))
    src = rng.integers(0, max(len(gb), 1), d)
    near = gb[src] if len(gb) else rng.uniform(0, 0.5, (d, 4))
    db = near + rng.normal(0, 0.02, (d, 4)) * rng.integers(0, 2, (d, 1))  # some exact copies
    lo = rng.uniform(0, 0.7, (d, 2))
    far = rng.random(d) < 0.3
    db[far] = np.concatenate([lo, lo + rng.uniform(0.05, 0.3, (d, 2))], 1)[far]
    dc = rng.integers(0, num_classes, d)
    right = (rng.random(d) < 0.7) & (gc[src] >= 0 if len(gc) else False)
    dc[right] = gc[src][right] if len(gc) else dc[right]
    dets.append((db.astype(np.float32), np.round(rng.random(d), 1), dc))  # score ties on purpose
    gts.append((gb.astype(np.float32), gc))
    ignore.append(rng.random(len(gc)) < 0.25)
  return dets, gts, ignore


@hypothesis.given(st.integers(0, 2**32 - 1), st.sampled_from([0.3, 0.5, 0.7]), st.booleans())
def test_average_precision_matches_the_slow_reference(seed, thr, difficult):
  dets, gts, ignore = _random_eval_set(seed, num_classes=3)
  if not difficult:
    ignore = [np.zeros_like(i) for i in ignore]
  m, ap = B.average_precision(dets, gts, 3, iou_threshold=thr,
                              ignore=ignore if difficult else None)
  ref = _ap_reference(dets, gts, 3, thr, ignore)
  np.testing.assert_allclose(ap, ref, rtol=1e-12, atol=1e-15)  # NaN where no ground truth
  assert np.isnan(m) if np.all(np.isnan(ref)) else m == pytest.approx(np.nanmean(ref))


def test_average_precision_is_the_same_in_any_chunking(monkeypatch):
  dets, gts, ignore = _random_eval_set(7, num_classes=4)
  whole = B.precision_recall(dets, gts, 4, ignore=ignore)
  monkeypatch.setattr(B, '_MATCH_BLOCK', 1)  # one image per chunk
  for a, b in zip(whole, B.precision_recall(dets, gts, 4, ignore=ignore)):
    np.testing.assert_array_equal(a.precision, b.precision)
    np.testing.assert_array_equal(a.recall, b.recall)
    assert a.n_gt == b.n_gt and (a.ap == b.ap or np.isnan(a.ap) and np.isnan(b.ap))
