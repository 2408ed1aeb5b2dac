"""COCO metrics by hand through pycocotools' COCOeval, VOC AP on the same cases, reports.

Every case is one or two images in pixels. COCO's AP: per IoU threshold,
precision is made monotone (max over higher recall), then read at the 101
recall points r = 0, 0.01, ..., 1 (the first ranked detection with recall
>= r; 0 where recall never reaches r) and averaged; AP averages that over
IoU 0.50:0.05:0.95. VOC's all-point AP is the exact area under the monotone
step curve.
"""

import json

import numpy as np
import pytest
from PIL import Image

from cnn_jax.evaluation import coco, report
from cnn_jax.ops import boxes as box_ops

A, B = [10, 10, 60, 60], [100, 100, 180, 150]   # pixel corners (y0, x0, y1, x1)
FAR = [120, 120, 170, 170]                        # overlaps neither
# COCOeval's means of 101 x 10 ones round to 1 - 2e-16.
ONE = pytest.approx(1.0, rel=1e-12)


def _evaluate(gt_boxes, gt_labels, det_boxes, det_scores, det_classes, *, names=('a',),
              crowd=None, iou_type='bbox', gt_masks=None, det_masks=None):
  """One image through to_coco_gt / to_coco_results / coco_evaluate."""
  gt = coco.to_coco_gt(np.asarray([gt_boxes], float), np.asarray([gt_labels]),
                       crowd=None if crowd is None else np.asarray([crowd]),
                       image_ids=[7], image_hw=[(200, 200)], class_names=names,
                       instance_masks=None if gt_masks is None else [gt_masks])
  res = coco.to_coco_results(np.asarray([det_boxes], float), np.asarray([det_scores]),
                             np.asarray([det_classes]), None, [7],
                             masks=None if det_masks is None else [det_masks])
  return coco.coco_evaluate(gt, res, iou_type=iou_type)


def _voc(gt_boxes, gt_labels, det_boxes, det_scores, det_classes, num_classes=1, ignore=None):
  dets = [(np.asarray(det_boxes, float), np.asarray(det_scores), np.asarray(det_classes))]
  gts = [(np.asarray(gt_boxes, float), np.asarray(gt_labels))]
  return box_ops.average_precision(dets, gts, num_classes,
                                   ignore=None if ignore is None else [np.asarray(ignore)])


def test_perfect_detector_scores_one():
  m = _evaluate([A, B], [0, 1], [A, B], [0.9, 0.8], [0, 1], names=('a', 'b'))
  for key in ('AP', 'AP50', 'AP75', 'ap_a', 'ap_b', 'ap50_a', 'ap50_b', 'AR100'):
    assert m[key] == ONE, key
  assert m['gt_a'] == m['gt_b'] == 1.0
  assert _voc([A, B], [0, 1], [A, B], [0.9, 0.8], [0, 1], num_classes=2)[0] == 1.0


def test_false_positive_above_the_one_true_positive():
  # Ranked: FP (0.9) -> precision 0, recall 0; TP (0.8) -> precision 1/2, recall 1.
  # Monotone precision: [max(0, 1/2), 1/2] = [1/2, 1/2]. COCO: every recall point
  # r in 0..1 finds a detection with recall >= r (r = 0 the first, r > 0 the
  # second), each at precision 1/2: AP50 = 101 * 0.5 / 101 = 0.5, and the TP is
  # exact, so every IoU threshold gives the same: AP = AP75 = 0.5.
  m = _evaluate([A], [0], [FAR, A], [0.9, 0.8], [0, 0])
  assert m['AP50'] == pytest.approx(0.5) and m['AP'] == pytest.approx(0.5)
  assert m['AP75'] == pytest.approx(0.5) and m['ap50_a'] == pytest.approx(0.5)
  # VOC all-point: recall steps [0, 1] x envelope [1/2, 1/2] = 0.5: the same here.
  assert _voc([A], [0], [FAR, A], [0.9, 0.8], [0, 0])[0] == pytest.approx(0.5)


def test_two_ground_truth_one_found():
  # One TP: precision 1 at recall 1/2, and recall never exceeds 1/2. COCO: the
  # recall points 0, 0.01, ..., 0.50 (51 of them) read precision 1, the other 50
  # read 0: AP50 = 51 / 101 = 0.50495... (not 0.5: 101 points include both ends).
  m = _evaluate([A, B], [0, 0], [A], [0.9], [0])
  assert m['AP50'] == pytest.approx(51 / 101) and m['AP'] == pytest.approx(51 / 101)
  assert m['AR100'] == pytest.approx(0.5)
  # VOC all-point: the area 1/2 x 1 = 0.5 exactly.
  assert _voc([A, B], [0, 0], [A], [0.9], [0])[0] == pytest.approx(0.5)


def test_crowd_region_is_ignored():
  crowd_box, on_crowd = [100, 100, 190, 190], [110, 110, 150, 150]
  gt, dets, scores = [A, crowd_box], [A, on_crowd], [0.8, 0.9]
  # The higher-scored detection lies inside the crowd region: COCO's crowd IoU
  # (intersection / detection area) is 1, so it is ignored, not a false positive.
  m = _evaluate(gt, [0, 0], dets, scores, [0, 0], crowd=[False, True])
  assert m['AP'] == ONE and m['AP50'] == ONE and m['gt_a'] == 1.0
  # Without the flag it is an FP (plain IoU 40²/90² < 0.5) above the TP, and the
  # second box is a missed GT: precision 1/2 for the 51 recall points <= 1/2.
  m = _evaluate(gt, [0, 0], dets, scores, [0, 0], crowd=[False, False])
  assert m['AP50'] == pytest.approx(0.5 * 51 / 101)


def test_small_medium_large_split_by_pixel_area():
  small, medium, large = [0, 0, 20, 20], [30, 0, 80, 50], [80, 80, 200, 200]
  # Areas 400 < 32², 32² < 2500 < 96², 14400 > 96². The medium box is missed.
  m = _evaluate([small, medium, large], [0, 0, 0], [small, large], [0.9, 0.8], [0, 0])
  assert m['APs'] == ONE and m['APl'] == ONE
  assert m['APm'] == 0.0  # a medium GT and no medium detection (the others are out of range)
  # All areas: precision 1 up to recall 2/3; the points 0..0.66 (67) read 1.
  assert m['AP50'] == pytest.approx(67 / 101) and m['AR100'] == pytest.approx(2 / 3)
  # No small ground truth at all: COCO's -1 becomes NaN.
  m = _evaluate([medium], [0], [medium], [0.9], [0])
  assert np.isnan(m['APs']) and m['APm'] == ONE and np.isnan(m['APl'])


def _rect(r0, r1, c0, c1, hw=(200, 200)):
  m = np.zeros(hw, bool)
  m[r0:r1, c0:c1] = True
  return m


def test_segm_ap_on_hand_made_masks():
  gt_masks = np.stack([_rect(5, 15, 5, 25), _rect(20, 35, 20, 35)])
  boxes = [[5, 5, 15, 25], [20, 20, 35, 35]]
  m = _evaluate(boxes, [0, 0], boxes, [0.9, 0.8], [0, 0], iou_type='segm', gt_masks=gt_masks,
                det_masks=gt_masks)
  assert m['AP'] == ONE and m['AP50'] == ONE and m['AP75'] == ONE
  # Half of the first mask (100 of 200 pixels, inside it): mask IoU exactly 0.5,
  # a match at IoU 0.50 only. AP50 = 1; at the nine thresholds 0.55..0.95 one
  # of two objects is found by the second-ranked detection after an FP: precision
  # 1/2 for recall points <= 1/2, so AP = (1 + 9 * 0.5 * 51 / 101) / 10.
  half = np.stack([_rect(5, 15, 5, 15), gt_masks[1]])
  m = _evaluate(boxes, [0, 0], boxes, [0.9, 0.8], [0, 0], iou_type='segm', gt_masks=gt_masks,
                det_masks=half)
  assert m['AP50'] == ONE
  assert m['AP75'] == pytest.approx(0.5 * 51 / 101)
  assert m['AP'] == pytest.approx((1 + 9 * 0.5 * 51 / 101) / 10)
  # The boxes are untouched by the masks: bbox AP of the same results is 1.
  assert _evaluate(boxes, [0, 0], boxes, [0.9, 0.8], [0, 0], gt_masks=gt_masks,
                   det_masks=half)['AP'] == ONE


def test_masks_argument_and_segm_errors():
  gt = coco.to_coco_gt([[[5, 5, 15, 25]]], [[0]], class_names=('a',),
                       instance_masks=[_rect(5, 15, 5, 25)[None]])
  assert gt['images'][0]['height'] == 200 and gt['annotations'][0]['area'] == 200.0
  res = coco.to_coco_results([[[5, 5, 15, 25]]], [[0.5]], [[0]], None, [0])
  with pytest.raises(ValueError, match='segmentation'):
    coco.coco_evaluate(gt, res, iou_type='segm')
  m = coco.coco_evaluate(gt, res, iou_type='segm', masks=[_rect(5, 15, 5, 25)])
  assert m['AP'] == ONE and 'segmentation' not in res[0]  # the caller's dicts unchanged
  with pytest.raises(ValueError, match='iou_type'):
    coco.coco_evaluate(gt, res, iou_type='keypoints')


def test_empty_results_give_zeros_with_a_warning():
  gt = coco.to_coco_gt([[A, B]], [[0, -1]], class_names=('a', 'b'))
  with pytest.warns(UserWarning, match='no detections'):
    m = coco.coco_evaluate(gt, [])
  assert all(m[k] == 0.0 for k in coco.SUMMARY_KEYS)
  assert m['ap_a'] == m['ap50_a'] == 0.0 and np.isnan(m['ap_b']) and m['gt_b'] == 0.0


def test_conversions_to_coco_and_pixels():
  rows = {'boxes': np.array([[[0.1, 0.2, 0.5, 0.6], [0, 0, 0, 0]]], np.float32),
          'scores': np.array([[0.7, 0.1]]), 'classes': np.array([[2, 0]]),
          'valid': np.array([[True, False]]),
          'gt_boxes': np.array([[[0.0, 0.0, 0.25, 0.5]]], np.float32),
          'gt_labels': np.array([[1]]), 'image_scale': np.array([2.0], np.float32),
          'image_id': np.array([42])}
  px = coco.detections_to_pixels(rows, canvas_size=100)
  # normalised * S * image_scale: 0.1 * 100 * 2 = 20, ...
  np.testing.assert_allclose(px['boxes'][0, 0], [20, 40, 100, 120], rtol=1e-6)
  np.testing.assert_allclose(px['gt_boxes'][0, 0], [0, 0, 50, 100])
  assert px['image_hw'].tolist() == [[200, 200]] and px['image_id'].tolist() == [42]
  assert rows['boxes'][0, 0, 0] == pytest.approx(0.1)  # the input is not modified
  canvas = coco.detections_to_pixels({k: v for k, v in rows.items() if k != 'image_scale'}, 100)
  np.testing.assert_allclose(canvas['gt_boxes'][0, 0], [0, 0, 25, 50])
  res = coco.to_coco_results(px['boxes'], rows['scores'], rows['classes'], rows['valid'],
                             px['image_id'])
  assert len(res) == 1 and res[0]['category_id'] == 3 and res[0]['image_id'] == 42
  np.testing.assert_allclose(res[0]['bbox'], [40, 20, 80, 80], rtol=1e-6)  # x, y, w, h
  mapped = coco.to_coco_results(px['boxes'], rows['scores'], rows['classes'], rows['valid'],
                                px['image_id'], category_ids=[1, 5, 90])
  assert mapped[0]['category_id'] == 90
  gt = coco.to_coco_gt(px['gt_boxes'], rows['gt_labels'], image_ids=px['image_id'],
                       class_names=('x', 'y', 'z'), category_ids=[1, 5, 90])
  assert gt['annotations'] == [{'id': 1, 'image_id': 42, 'category_id': 5,
                                'bbox': [0.0, 0.0, 100.0, 50.0], 'iscrowd': 0, 'area': 5000.0}]
  assert [c['id'] for c in gt['categories']] == [1, 5, 90]
  json.dumps(gt)  # a plain-Python dict (COCO's own format)
  with pytest.raises(ValueError, match='distinct'):
    coco.to_coco_gt([[A], [A]], [[0], [0]], image_ids=[3, 3], class_names=('a',))


def test_evaluate_rows_uses_the_original_image_scale():
  # A 0.1-wide box on a 64-pixel canvas is 6.4 px (small); at image_scale 10 it is
  # 64 px in the original image (medium), where COCO's area split must see it.
  box = np.array([[[0.2, 0.2, 0.3, 0.3]]], np.float32)
  rows = {'boxes': box, 'scores': np.array([[0.9]]), 'classes': np.array([[0]]),
          'valid': np.array([[True]]), 'gt_boxes': box, 'gt_labels': np.array([[0]])}
  canvas = coco.coco_evaluate_rows(rows, canvas_size=64, class_names=('a',))
  assert canvas['APs'] == ONE and np.isnan(canvas['APm'])
  original = coco.coco_evaluate_rows(dict(rows, image_scale=np.array([10.0])), canvas_size=64,
                                     class_names=('a',))
  assert np.isnan(original['APs']) and original['APm'] == ONE and original['AP'] == ONE


def test_per_class_table():
  m = {'ap50_cat': 0.5, 'ap_cat': 0.25, 'gt_cat': 4.0, 'ap50_dog': float('nan'),
       'ap_dog': float('nan'), 'gt_dog': 0.0}
  assert report.per_class_table(m, ('cat', 'dog')) == (
      '| class | AP50 | AP | #GT |\n'
      '|---|---:|---:|---:|\n'
      '| cat | 0.500 | 0.250 | 4 |\n'
      '| dog | - | - | 0 |\n'
      '| **mean** | 0.500 | 0.250 | 4 |\n')
  # The detection task's metrics (VOC AP50 only), counts given separately.
  table = report.per_class_table({'ap50_cat': 1.0, 'ap50_dog': 0.5}, ('cat', 'dog'),
                                 gt_counts=[3, 2])
  assert table.splitlines()[0] == '| class | AP50 | #GT |'
  assert table.splitlines()[-1] == '| **mean** | 0.750 | 5 |'


def test_plot_pr_curves_writes_a_png(tmp_path):
  dets = [(np.array([A, FAR, B], float), np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]))]
  gts = [(np.array([A, B], float), np.array([0, 0]))]
  curves = box_ops.precision_recall(dets, gts, 3)
  # Class 0: TP then FP -> precision [1, 1/2] at recall 1/2; class 1 has no GT.
  np.testing.assert_allclose(curves[0].precision, [1.0, 0.5])
  np.testing.assert_allclose(curves[0].recall, [0.5, 0.5])
  assert curves[0].n_gt == 2 and curves[0].ap == 0.5 and np.isnan(curves[1].ap)
  path = report.plot_pr_curves(curves, ('a', 'b', 'c'), tmp_path / 'sub' / 'pr.png')
  with Image.open(path) as img:
    assert img.format == 'PNG' and img.size == (640, 480)
  pairs = [(c.precision, c.recall) for c in curves]
  with Image.open(report.plot_pr_curves(pairs, ('a', 'b', 'c'), tmp_path / 'p.png')) as img:
    assert img.format == 'PNG'


def test_detection_eval_benchmark_smoke(tmp_path):
  from benchmarks import detection_eval
  out = tmp_path / 'de.json'
  assert detection_eval.main(['--smoke', '--out', str(out)]) == 0
  row = json.loads(out.read_text())['rows'][0]
  assert row['images'] == 20 and row['voc_ap_s'] > 0 and row['coco_s'] > 0
  assert 0 < row['voc_mAP50'] < 1 and 0 < row['coco_AP50'] < 1
