"""VOC AP (cnn_jax.ops.boxes) vs COCOeval (pycocotools) on one mock evaluation pass.

Builds a detection task's eval pass on the host: N images, 1-8 random
ground-truth boxes each (of C classes, K padded to 8), D detections per image
(jittered copies of ground truth, some with the wrong class, and random
boxes; random scores), and times side by side, interleaved:

* ``voc_ap``: :func:`cnn_jax.ops.boxes.average_precision` (all-point VOC
  AP@0.5, vectorised numpy);
* ``coco``: :func:`cnn_jax.evaluation.coco.coco_evaluate` including the
  conversion of the arrays to COCO dicts (``to_coco_gt``, ``to_coco_results``),
  i.e. what an eval step pays.

No time is asserted anywhere; both metrics are written next to the times
(they differ by definition: COCO interpolates at 101 recall points and
averages IoU 0.50:0.95).

  python -m benchmarks.detection_eval --out benchmarks/recorded/detection_eval.json
  python -m benchmarks.detection_eval --smoke          # tiny, seconds
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks import timer
from cnn_jax.evaluation import coco
from cnn_jax.ops import boxes as box_ops

CANVAS = 416  # pixels: the mock pass lives on one square canvas


def mock_pass(images: int, detections: int, classes: int, seed: int = 0) -> dict:
  """The detection task's numpy eval rows (normalised corners) for ``images`` images."""
  rng = np.random.default_rng(seed)
  k = 8
  n_gt = rng.integers(1, k + 1, images)
  lo = rng.uniform(0.0, 0.8, (images, k, 2))
  gt = np.concatenate([lo, lo + rng.uniform(0.03, 0.2, (images, k, 2))], -1).clip(0, 1)
  labels = np.where(np.arange(k)[None] < n_gt[:, None], rng.integers(0, classes, (images, k)),
                    -1)
  # Half the detections copy a ground-truth box with jitter (mostly right class), half are
  # random: a detector of middling quality, so AP is neither 0 nor 1.
  src = rng.integers(0, n_gt[:, None], (images, detections))
  take = np.take_along_axis
  copied = take(gt, src[..., None], 1) + rng.normal(0, 0.02, (images, detections, 4))
  lo = rng.uniform(0.0, 0.8, (images, detections, 2))
  random = np.concatenate([lo, lo + rng.uniform(0.03, 0.2, (images, detections, 2))], -1)
  is_copy = rng.random((images, detections)) < 0.5
  boxes = np.where(is_copy[..., None], copied, random).clip(0, 1).astype(np.float32)
  right = is_copy & (rng.random((images, detections)) < 0.8)
  cls = np.where(right, take(labels, src, 1), rng.integers(0, classes, (images, detections)))
  scores = np.where(is_copy, rng.uniform(0.3, 1.0, (images, detections)),
                    rng.uniform(0.0, 0.7, (images, detections)))
  return {'boxes': boxes, 'scores': scores.astype(np.float32), 'classes': cls.astype(np.int32),
          'valid': np.ones((images, detections), bool), 'gt_boxes': gt.astype(np.float32),
          'gt_labels': labels.astype(np.int32)}


def run(args) -> dict:
  rows = mock_pass(args.images, args.detections, args.classes, args.seed)
  names = tuple(f'c{c}' for c in range(args.classes))
  dets = [(b[v], s[v], c[v]) for b, s, c, v in
          zip(rows['boxes'], rows['scores'], rows['classes'], rows['valid'])]
  gts = list(zip(rows['gt_boxes'], rows['gt_labels']))

  last = {}  # each candidate's latest result: the metrics come from the timed calls

  def voc():
    last['voc'] = box_ops.average_precision(dets, gts, args.classes)[0]

  def coco_pass():
    last['coco'] = coco.coco_evaluate_rows(rows, canvas_size=CANVAS, class_names=names)

  t = timer.time_interleaved({'voc_ap': voc, 'coco': coco_pass}, repeats=args.repeats)
  row = {'images': args.images, 'detections_per_image': args.detections,
         'classes': args.classes, 'gt_boxes': int((rows['gt_labels'] >= 0).sum()),
         'voc_mAP50': last['voc'], 'coco_AP50': last['coco']['AP50'],
         'coco_AP': last['coco']['AP'],
         'ratio_coco_over_voc_ap': t['coco']['median_s'] / t['voc_ap']['median_s']}
  for name, times in t.items():
    row[f'{name}_s'] = times['median_s']
    row[f'{name}_min_s'] = times['min_s']
    row[f'{name}_first_s'] = times['compile_s']  # the first call (imports, caches)
  print(f"{args.images} images x {args.detections} detections, {args.classes} classes: "
        f"voc_ap {row['voc_ap_s']:.3f} s (mAP50 {row['voc_mAP50']:.4f})  "
        f"coco {row['coco_s']:.3f} s (AP50 {row['coco_AP50']:.4f})  "
        f"coco/voc_ap {row['ratio_coco_over_voc_ap']:.1f}", flush=True)
  return {'benchmark': 'detection_eval', 'environment': timer.environment(), 'rows': [row]}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--images', type=int, default=5000)
  p.add_argument('--detections', type=int, default=20, help='per image')
  p.add_argument('--classes', type=int, default=20)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--smoke', action='store_true', help='20 images, 1 repeat: checks it runs')
  p.add_argument('--out', default='benchmarks/results/detection_eval.json')
  args = p.parse_args(argv)
  if args.smoke:
    args.images, args.repeats = 20, 1
  return timer.run_and_write(run, args)


if __name__ == '__main__':
  sys.exit(main())
