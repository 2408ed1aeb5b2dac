r"""Pictures and a table of a trained detector (training is ``cnn_jax.main``'s).

  python -m cnn_jax.main --config=configs/detect.py --workdir=workdirs/detect
  python -m experiments.detect report workdirs/detect [--which best] [--pictures 8]

Any detection run: YOLO (``configs/detect.py``) and the R-CNN family
(``configs/{rcnn,fast_rcnn,faster_rcnn,mask_rcnn}.py``); a Mask R-CNN run also
gets ``masks.png`` (its instance masks at score >= 0.3 over the images, ground
truth outlines white).

Restores the run's best-mAP checkpoint (``--which latest`` for the last),
evaluates it on the held-out scenes through the task's own evaluator
(per-class NMS, VOC all-point AP at IoU 0.5, COCOeval AP@[.5:.95]) and writes
``results.json``, ``results.md`` (the headline row and a per-class table:
AP50, COCO AP, ground-truth count), ``pr_curves.png`` (precision-recall per
class at IoU 0.5) and ``detections.png`` (predictions solid with class and
score, ground truth dashed) into the workdir.
"""

from __future__ import annotations

import json
import pathlib
import sys

import matplotlib
import numpy as np

from cnn_jax.evaluation.report import per_class_table, plot_pr_curves
from cnn_jax.ops import boxes as box_ops
from cnn_jax.tasks.detection import per_image
from cnn_jax.train.restore import load_run
from experiments.cli import report_main

matplotlib.use('Agg')
import matplotlib.patches as patches  # noqa: E402  (after the backend is chosen)
import matplotlib.pyplot as plt  # noqa: E402


def draw(images: np.ndarray, dets, gts, class_names, path: pathlib.Path,
         min_score: float = 0.3) -> None:
  n = len(images)
  fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6))
  size = images.shape[1]
  colours = plt.cm.tab10.colors
  for ax, img, (db, ds, dc), (gb, gc) in zip(np.atleast_1d(axes), images, dets, gts):
    ax.imshow(img)
    for box, c in zip(gb[gc >= 0], gc[gc >= 0]):
      y0, x0, y1, x1 = box * size
      ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ls='--', lw=1,
                                     ec='white'))
    for box, s, c in zip(db, ds, dc):
      if s < min_score:
        continue
      y0, x0, y1, x1 = np.clip(box, 0, 1) * size
      ax.add_patch(patches.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.5,
                                     ec=colours[int(c) % 10]))
      ax.text(x0, y0, f'{class_names[int(c)]} {s:.2f}', fontsize=6, color='white',
              bbox=dict(fc=colours[int(c) % 10], ec='none', pad=0.5))
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def draw_masks(images: np.ndarray, rows: dict, k: int, path: pathlib.Path,
               min_score: float = 0.3) -> None:
  """Predicted instance masks (rows 'masks' (N, D, H, W)) tinted over the first ``k`` images."""
  colours = np.array(plt.cm.tab10.colors, np.float32)
  fig, axes = plt.subplots(1, k, figsize=(2.2 * k, 2.4))
  for i, ax in enumerate(np.atleast_1d(axes)):
    img = images[i].astype(np.float32) / 255.0
    keep = np.flatnonzero(rows['valid'][i] & (rows['scores'][i] >= min_score))
    for rank, d in enumerate(keep[np.argsort(rows['scores'][i][keep])]):  # most confident last
      m = rows['masks'][i, d]
      img[m] = 0.45 * img[m] + 0.55 * colours[rank % 10]
    ax.imshow(img)
    for g in rows['gt_masks'][i][rows['gt_labels'][i] >= 0]:
      if g.any():
        ax.contour(g, levels=[0.5], colors='white', linewidths=0.7)
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def report(workdir: str | pathlib.Path, which: str = 'best', pictures: int = 8) -> dict:
  """Evaluates the run in ``workdir`` and writes its results and pictures there."""
  run = load_run(workdir, which)
  metrics, rows = run.evaluate()
  names = run.task.class_names
  dets, gts, difficult = per_image(rows)
  curves = box_ops.precision_recall(dets, gts, len(names), ignore=difficult,
                                    iou_threshold=float(run.config.task.ap_iou))
  workdir = pathlib.Path(workdir)
  plot_pr_curves(curves, names, workdir / 'pr_curves.png',
                 title=f'precision-recall at IoU {run.config.task.ap_iou}')
  table = per_class_table({**metrics, **{f'ap_{n}': metrics[f'coco_ap_{n}'] for n in names
                                         if f'coco_ap_{n}' in metrics}},
                          names, gt_counts=[c.n_gt for c in curves])
  results = {'mAP50': metrics['mAP50'],
             'ap50': {n: metrics[f'ap50_{n}'] for n in names},
             'coco': {k[5:]: v for k, v in metrics.items()
                      if k.startswith('coco_') and not k.startswith('coco_ap_')},
             'per_class_table': table,
             'checkpoint': which, 'steps': int(run.config.num_steps),
             'test_images': int(metrics['count']), 'test_objects': int(metrics['objects']),
             'params': run.num_params}
  if hasattr(run.task, 'anchors'):  # YOLO's k-means anchors; the R-CNN family's are a grid
    results['anchors_hw'] = np.asarray(run.task.anchors).round(4).tolist()
  k = min(pictures, len(run.eval))
  draw(run.eval.images[:k], dets[:k], gts[:k], names, workdir / 'detections.png')
  if 'masks' in rows:
    draw_masks(run.eval.images[:k], rows, k, workdir / 'masks.png')
  (workdir / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
  (workdir / 'results.md').write_text(results_table(results) + '\n')
  return results


def results_table(r: dict) -> str:
  head = '| class | ' + ' | '.join(r['ap50']) + ' | **mAP@0.5** |'
  rule = '|---' * (len(r['ap50']) + 2) + '|'
  row = '| AP@0.5 | ' + ' | '.join(f'{v:.3f}' for v in r['ap50'].values()) + \
      f" | **{r['mAP50']:.3f}** |"
  coco = r.get('coco', {})
  coco_line = (f"COCOeval: AP {coco['AP']:.3f}, AP50 {coco['AP50']:.3f}, AP75 "
               f"{coco['AP75']:.3f}." if coco else '')
  return '\n'.join([head, rule, row, '', r.get('per_class_table', ''), coco_line,
                    f"{r['test_images']} test scenes, {r['test_objects']} objects; "
                    f"{r['checkpoint']} checkpoint of {r['steps']} steps; {r['params']:,} params."])



if __name__ == '__main__':
  sys.exit(report_main(__doc__, lambda a: results_table(report(a.workdir, a.which, a.pictures))))
