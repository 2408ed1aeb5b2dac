r"""Instance vs semantic segmentation: Mask R-CNN against FCN-8s on the same test scenes.

  python -m cnn_jax.main --config=configs/mask_rcnn.py --workdir=workdirs/mask_rcnn
  python -m cnn_jax.main --config=configs/segment.py:variant=8s --workdir=workdirs/segment/8s
  python -m experiments.instances compare workdirs/mask_rcnn workdirs/segment/8s \
      [--out workdirs/instances] [--pictures 6]

Both runs are scored on the Mask R-CNN run's held-out scenes, in both
currencies:

* **semantic** (mean IoU over background + classes): Mask R-CNN's instance
  masks (score >= ``min_score``) are painted into one label map, the most
  confident last;
* **instance** (COCOeval ``segm`` AP and AP50): FCN's label map is cut into
  connected components per class (8-connectivity), each one instance scored by
  its mean class probability, which is what a semantic model can offer;
* **touching pairs**: ground-truth pairs of one class whose visible masks touch
  (4-neighbours): the fraction a model separates, i.e. each of the two has its
  own predicted instance at mask IoU >= 0.5. A semantic model can only merge
  them into one blob.

The ground-truth label map is made from the instance masks (no void border), so
both models are scored against the same pixels. Writes ``results.json``,
``results.md`` and ``instances.png`` (rows: image, ground-truth instances, FCN
classes, FCN's components, Mask R-CNN instances; columns: test scenes with a
touching pair first) into ``--out`` (default: the Mask R-CNN workdir).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np
from PIL import Image
from scipy import ndimage, special

from cnn_jax.models import explain
from cnn_jax.ops import metrics as metric_ops
from cnn_jax.tasks.rcnn import mask_metrics
from cnn_jax.train.restore import load_run
from experiments.cli import exit_code
from experiments.segment import overlay

_EIGHT = np.ones((3, 3), bool)


def semantic_from_instances(masks: np.ndarray, classes: np.ndarray,
                            keep: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """Instance masks (N, D, H, W) bool -> label maps (N, H, W): class + 1, 0 background.

  Only instances with ``keep`` (N, D) are painted, in ascending ``scores`` so
  the most confident one owns a pixel two instances claim.
  """
  out = np.zeros(masks.shape[:1] + masks.shape[2:], np.int32)
  for i in range(len(masks)):
    for d in np.argsort(np.where(keep[i], scores[i], -np.inf)):
      if keep[i, d]:
        out[i][masks[i, d]] = classes[i, d] + 1
  return out


def instances_from_semantic(probs: np.ndarray) -> dict[str, np.ndarray]:
  """Class probabilities (N, H, W, 1 + C) -> connected components as detection rows.

  Returns ``masks`` (N, D, H, W) bool, ``boxes`` (N, D, 4) normalised
  (y0, x0, y1, x1), ``scores`` (N, D) (mean class probability over the
  component), ``classes`` (N, D) (0-based, background excluded) and ``valid``
  (N, D); D is the largest component count of any image.
  """
  n, h, w, _ = probs.shape
  labels = probs.argmax(-1)
  found = []
  for i in range(n):
    blobs = []
    for c in np.unique(labels[i]):
      if c == 0:
        continue
      parts, count = ndimage.label(labels[i] == c, structure=_EIGHT)
      for j in range(1, count + 1):
        m = parts == j
        ys, xs = np.nonzero(m)
        box = np.array([ys.min() / h, xs.min() / w, (ys.max() + 1) / h, (xs.max() + 1) / w])
        blobs.append((m, box, float(probs[i][..., c][m].mean()), c - 1))
    found.append(blobs)
  d = max(1, max(len(b) for b in found))
  rows = {'masks': np.zeros((n, d, h, w), bool), 'boxes': np.zeros((n, d, 4), np.float32),
          'scores': np.zeros((n, d), np.float32), 'classes': np.zeros((n, d), np.int32),
          'valid': np.zeros((n, d), bool)}
  for i, blobs in enumerate(found):
    for k, (m, box, score, c) in enumerate(blobs):
      rows['masks'][i, k], rows['boxes'][i, k], rows['scores'][i, k] = m, box, score
      rows['classes'][i, k], rows['valid'][i, k] = c, True
  return rows


def touching_pairs(gt_masks: np.ndarray, gt_labels: np.ndarray) -> list[tuple[int, int, int]]:
  """``(image, a, b)`` for ground-truth instances of one class whose masks touch."""
  pairs = []
  for i in range(len(gt_masks)):
    for a in range(gt_masks.shape[1]):
      if gt_labels[i, a] < 0 or not gt_masks[i, a].any():
        continue
      grown = ndimage.binary_dilation(gt_masks[i, a])
      for b in range(a + 1, gt_masks.shape[1]):
        if gt_labels[i, b] == gt_labels[i, a] and (grown & gt_masks[i, b]).any():
          pairs.append((i, a, b))
  return pairs


def _mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """IoU of one mask (H, W) against masks (D, H, W): (D,)."""
  inter = (a & b).sum((-2, -1))
  union = (a | b).sum((-2, -1))
  return inter / np.maximum(union, 1)


def separated(pairs, gt_masks, rows, keep, iou: float = 0.5) -> float:
  """Fraction of ``pairs`` whose two instances each have their own prediction at IoU >= iou."""
  hits = 0
  for i, a, b in pairs:
    pred = rows['masks'][i][keep[i]]
    if not len(pred):
      continue
    ia, ib = _mask_iou(gt_masks[i, a], pred), _mask_iou(gt_masks[i, b], pred)
    hits += bool(ia.max() >= iou and ib.max() >= iou and ia.argmax() != ib.argmax())
  return hits / max(len(pairs), 1)


def _instance_colours(masks: np.ndarray, keep: np.ndarray, scores: np.ndarray) -> np.ndarray:
  """One image's instances (D, H, W) -> RGB (H, W, 3): a colour per instance, by confidence."""
  palette = np.array([(0.9, 0.2, 0.2), (0.2, 0.6, 1.0), (1.0, 0.8, 0.1), (0.3, 0.9, 0.3),
                      (0.8, 0.3, 0.9), (1.0, 0.5, 0.0), (0.0, 0.9, 0.9), (0.6, 0.6, 0.6)])
  ranked = [d for d in np.argsort(-np.where(keep, scores, -np.inf)) if keep[d]]
  out = np.zeros(masks.shape[1:] + (3,), np.float32)
  for rank in reversed(range(len(ranked))):  # the most confident painted last
    out[masks[ranked[rank]]] = palette[rank % len(palette)]
  return out


def compare(mask_workdir: str | pathlib.Path, fcn_workdir: str | pathlib.Path,
            out: str | pathlib.Path | None = None, pictures: int = 6,
            min_score: float = 0.5, which: str = 'best') -> dict:
  """Scores both runs on the Mask R-CNN run's test scenes; writes the table and picture."""
  inst, sem = load_run(mask_workdir, which), load_run(fcn_workdir, which)
  if inst.config.task.name != 'instance_segmentation':
    raise ValueError(f'{mask_workdir} is a {inst.config.task.name!r} run; pass a '
                     'configs/mask_rcnn.py run first.')
  if sem.config.task.name != 'segmentation':
    raise ValueError(f'{fcn_workdir} is a {sem.config.task.name!r} run; pass a '
                     'configs/segment.py run second.')
  names = inst.task.class_names
  if list(sem.task.label_names[1:]) != list(names):
    raise ValueError(f'the runs label different classes: {list(names)} vs '
                     f'{list(sem.task.label_names[1:])}; train both on the same scenes.')
  out = pathlib.Path(out or mask_workdir)
  out.mkdir(parents=True, exist_ok=True)
  inst_metrics, rows = inst.evaluate()
  gt_masks, gt_labels = rows['gt_masks'], rows['gt_labels']
  truth = semantic_from_instances(gt_masks, gt_labels, gt_labels >= 0,
                                  np.zeros(gt_labels.shape, np.float32))
  keep = rows['valid'] & (rows['scores'] >= min_score)
  inst_map = semantic_from_instances(rows['masks'], rows['classes'], keep, rows['scores'])

  probs = special.softmax(sem.predict(inst.eval.images), axis=-1)
  blobs = instances_from_semantic(probs)
  blob_rows = {**{k: rows[k] for k in ('gt_boxes', 'gt_labels', 'gt_masks')}, **blobs}
  if 'box_crowd' in rows:
    blob_rows['box_crowd'] = rows['box_crowd']
  fcn_segm = mask_metrics(blob_rows, names)
  pairs = touching_pairs(gt_masks, gt_labels)

  def semantic(label_map):
    miou, iou = metric_ops.mean_iou(label_map, truth, len(names) + 1)
    return float(miou), [float(x) for x in np.asarray(iou)]

  results = {'test_images': len(truth), 'touching_pairs': len(pairs), 'min_score': min_score,
             'classes': list(names), 'checkpoint': which}
  for key, run, label_map, ap, r, k in (
      ('mask_rcnn', inst, inst_map, (inst_metrics['mask_AP'], inst_metrics['mask_AP50']), rows,
       keep),
      ('fcn', sem, probs.argmax(-1), (fcn_segm['AP'], fcn_segm['AP50']), blobs, blobs['valid'])):
    miou, iou = semantic(label_map)
    results[key] = {'model': run.config.model.name, 'params': run.num_params,
                    'steps': int(run.config.num_steps), 'mean_iou': miou, 'iou': iou,
                    'mask_AP': float(ap[0]), 'mask_AP50': float(ap[1]),
                    'separated': separated(pairs, gt_masks, r, k)}
  order = sorted({i for i, _, _ in pairs}) + [i for i in range(len(truth))
                                               if i not in {p[0] for p in pairs}]
  shown = order[:min(pictures, len(truth))]
  panels = [inst.eval.images[shown].astype(np.float32) / 255.0,
            np.stack([_instance_colours(gt_masks[i], gt_labels[i] >= 0,
                                        -np.arange(gt_labels.shape[1], dtype=np.float32))
                      for i in shown]),
            overlay(probs[shown].argmax(-1), len(names) + 1),
            np.stack([_instance_colours(blobs['masks'][i], blobs['valid'][i], blobs['scores'][i])
                      for i in shown]),
            np.stack([_instance_colours(rows['masks'][i], keep[i], rows['scores'][i])
                      for i in shown])]
  grid = explain.tile(np.concatenate(panels), cols=len(shown), pad=2)
  Image.fromarray((np.clip(grid, 0, 1) * 255).astype(np.uint8)).resize(
      (grid.shape[1] * 3, grid.shape[0] * 3), Image.Resampling.NEAREST).save(out / 'instances.png')
  (out / 'results.json').write_text(json.dumps(results, indent=2) + '\n')
  (out / 'results.md').write_text(results_table(results) + '\n')
  return results


def results_table(r: dict) -> str:
  lines = ['| model | kind | mask AP50 | mask AP | mean IoU | touching pairs separated | params |',
           '|---|---|---|---|---|---|---|']
  for key, kind in (('mask_rcnn', 'instance'), ('fcn', 'semantic')):
    m = r[key]
    lines.append(f"| {m['model']} | {kind} | {m['mask_AP50']:.3f} | {m['mask_AP']:.3f} | "
                 f"{m['mean_iou']:.3f} | {100 * m['separated']:.0f}% | {m['params']:,} |")
  lines.append(f"\n{r['test_images']} test scenes, {r['touching_pairs']} touching same-class "
               f"pairs; Mask R-CNN instances at score >= {r['min_score']}.")
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawTextHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  cmp = sub.add_parser('compare', help='score a Mask R-CNN and an FCN run on the same scenes')
  cmp.add_argument('mask_workdir', help='the --workdir of a configs/mask_rcnn.py run')
  cmp.add_argument('fcn_workdir', help='the --workdir of a configs/segment.py run')
  cmp.add_argument('--out', default=None, help='output folder (default: mask_workdir)')
  cmp.add_argument('--pictures', type=int, default=6, help='scenes drawn')
  cmp.add_argument('--which', default='best', choices=('best', 'latest'))
  args = parser.parse_args(argv)
  return exit_code(lambda: print(results_table(compare(
      args.mask_workdir, args.fcn_workdir, args.out, args.pictures, which=args.which))))


if __name__ == '__main__':
  sys.exit(main())
