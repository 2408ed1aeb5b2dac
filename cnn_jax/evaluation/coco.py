"""COCO-style detection and instance-segmentation metrics, computed by pycocotools' COCOeval.

COCOeval is the reference implementation of the COCO metrics (AP averaged
over IoU 0.50:0.05:0.95 with 101-point interpolated precision, the
small/medium/large split at 32² and 96² pixels of area, crowd regions
ignored), so this module only converts arrays to its format and reads its
results back; it re-implements nothing. Everything stays in memory: the COCO
objects are built from dicts (``COCO()``, ``.dataset = ...``,
``.createIndex()``), no JSON files are written.

Box conventions: the inputs are corners ``(y0, x0, y1, x1)`` in pixels of the
original images (:func:`detections_to_pixels` converts the detection task's
normalised canvas rows); COCO's ``bbox`` is ``[x, y, w, h]``. Class label
``c`` is COCO category ``c + 1`` unless a ``category_ids`` map is given.

Typical use::

  px = detections_to_pixels(rows, canvas_size=S)
  gt = to_coco_gt(px['gt_boxes'], rows['gt_labels'], crowd=rows.get('box_crowd'),
                  image_ids=px['image_id'], image_hw=px['image_hw'], class_names=names)
  res = to_coco_results(px['boxes'], rows['scores'], rows['classes'], rows['valid'],
                        px['image_id'])
  metrics = coco_evaluate(gt, res)   # or coco_evaluate_rows(rows, canvas_size=S, ...)
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# COCOeval.stats, in its order.
SUMMARY_KEYS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl', 'AR1', 'AR10', 'AR100', 'ARs',
                'ARm', 'ARl')
IOU_TYPES = ('bbox', 'segm')


# ----------------------------------------------------------------------------- conversion


def boxes_to_pixels(boxes: np.ndarray, canvas_size: int,
                    image_scale: np.ndarray | None = None) -> np.ndarray:
  """Normalised canvas corners ``(N, K, 4)`` -> pixel corners ``(N, K, 4)`` float64.

  ``pixel = normalised * canvas_size * image_scale[n]``: the canvas is the
  letterboxed square of side ``canvas_size`` with the image at its top-left
  corner, and ``image_scale`` (N,) is original pixels per canvas pixel
  (:mod:`cnn_jax.data.annotations`). Without it, canvas pixels.
  """
  px = np.asarray(boxes, np.float64) * float(canvas_size)
  if image_scale is not None:
    px = px * np.asarray(image_scale, np.float64).reshape((-1,) + (1,) * (px.ndim - 1))
  return px


def detections_to_pixels(rows: Mapping[str, np.ndarray], canvas_size: int) -> dict:
  """The detection task's eval rows in pixels of the original images.

  Args:
    rows: numpy ``boxes`` (B, D, 4) and ``gt_boxes`` (B, K, 4) normalised
      canvas corners; optional ``image_scale`` (B,), ``orig_hw`` (B, 2),
      ``image_id`` (B,) (the fields of :mod:`cnn_jax.data.annotations`).
      Other keys pass through unchanged.
    canvas_size: the canvas side S (``config.data.image_size``).

  Returns:
    A new dict: ``rows`` with ``boxes`` and ``gt_boxes`` in pixels (of the
    original image when ``image_scale`` is present, else of the canvas), plus
    ``image_hw`` (B, 2) int (``orig_hw``, else the canvas side times the
    scale) and ``image_id`` (B,) int (given, else ``0 .. B-1``).
  """
  scale = rows.get('image_scale')
  out = dict(rows)
  out['boxes'] = boxes_to_pixels(rows['boxes'], canvas_size, scale)
  out['gt_boxes'] = boxes_to_pixels(rows['gt_boxes'], canvas_size, scale)
  n = len(out['gt_boxes'])
  if 'orig_hw' in rows:
    out['image_hw'] = np.asarray(rows['orig_hw'], np.int64).reshape(n, 2)
  else:
    side = canvas_size * (np.ones(n) if scale is None else np.asarray(scale, np.float64))
    out['image_hw'] = np.repeat(np.round(side).astype(np.int64)[:, None], 2, axis=1)
  out['image_id'] = (np.asarray(rows['image_id'], np.int64).reshape(n) if 'image_id' in rows
                     else np.arange(n, dtype=np.int64))
  return out


def encode_masks(masks: np.ndarray) -> list[dict]:
  """``(N, H, W)`` bool -> N COCO RLE dicts (pycocotools wants Fortran uint8 (H, W, N))."""
  m = np.asarray(masks, bool)
  if m.ndim == 2:
    m = m[None]
  if m.ndim != 3:
    raise ValueError(f'masks must be (N, H, W), got shape {m.shape}.')
  if not len(m):
    return []
  return mask_utils.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8)))


def _xywh(corners: np.ndarray) -> list[float]:
  y0, x0, y1, x1 = (float(v) for v in corners)
  return [x0, y0, x1 - x0, y1 - y0]


def _category_map(num_classes: int, category_ids: Sequence[int] | None) -> list[int]:
  ids = list(range(1, num_classes + 1)) if category_ids is None else [int(i) for i in
                                                                       category_ids]
  if len(ids) < num_classes or len(set(ids)) != len(ids):
    raise ValueError(f'category_ids must give {num_classes} distinct ids (one per label), '
                     f'got {ids}.')
  return ids


def to_coco_gt(gt_boxes: Sequence[np.ndarray], gt_labels: Sequence[np.ndarray], *,
               class_names: Sequence[str], crowd: Sequence[np.ndarray] | None = None,
               image_ids: Sequence[int] | None = None,
               image_hw: Sequence[tuple[int, int]] | None = None,
               instance_masks: Sequence[np.ndarray] | None = None,
               category_ids: Sequence[int] | None = None) -> dict:
  """Padded ground-truth arrays -> a COCO ground-truth dataset dict.

  Args:
    gt_boxes: (N, K, 4) pixel corners ``(y0, x0, y1, x1)`` (or N ragged (K_i, 4)).
    gt_labels: (N, K) int labels in ``[0, len(class_names))``, -1 for padding.
    class_names: the categories' names, label order.
    crowd: optional (N, K) bool, COCO ``iscrowd`` (COCOeval ignores these
      regions: a detection on one is neither a true nor a false positive).
    image_ids: (N,) distinct ints; default ``0 .. N-1``.
    image_hw: (N, 2) image heights and widths (segm needs them to decode
      masks); default the masks' shape, else the boxes' extent.
    instance_masks: optional, per image (K, H, W) bool, one per box row: adds
      RLE ``segmentation`` for ``iou_type='segm'``, and ``area`` is then the
      mask's pixel count (as in COCO's own files, for both iou types),
      else the box's.
    category_ids: optional COCO category id per label; default ``label + 1``.

  Returns:
    ``{'images', 'annotations', 'categories'}``; annotation ids start at 1
    (COCOeval treats id 0 as "unmatched").
  """
  n = len(gt_boxes)
  if len(gt_labels) != n:
    raise ValueError(f'{n} images of gt_boxes but {len(gt_labels)} of gt_labels.')
  ids = list(range(n)) if image_ids is None else [int(i) for i in image_ids]
  if len(ids) != n or len(set(ids)) != n:
    raise ValueError(f'image_ids must be {n} distinct ids, got {len(set(ids))} distinct of '
                     f'{len(ids)}.')
  cats = _category_map(len(class_names), category_ids)
  images, anns = [], []
  for i in range(n):
    boxes = np.asarray(gt_boxes[i], np.float64).reshape(-1, 4)
    labels = np.asarray(gt_labels[i]).reshape(-1)
    flags = np.zeros(len(labels), bool) if crowd is None else np.asarray(crowd[i], bool)
    masks = None if instance_masks is None else np.asarray(instance_masks[i], bool)
    if image_hw is not None:
      h, w = (int(v) for v in image_hw[i])
    elif masks is not None:
      h, w = masks.shape[1:]
    else:
      h, w = (max(1, int(np.ceil(boxes[labels >= 0, k].max(initial=0)))) for k in (2, 3))
    images.append({'id': ids[i], 'height': h, 'width': w})
    keep = np.flatnonzero(labels >= 0)
    rles = encode_masks(masks[keep]) if masks is not None else None
    for r, k in enumerate(keep):
      bbox = _xywh(boxes[k])
      ann = {'id': len(anns) + 1, 'image_id': ids[i], 'category_id': cats[int(labels[k])],
             'bbox': bbox, 'iscrowd': int(flags[k]),
             'area': float(mask_utils.area(rles[r])) if rles else bbox[2] * bbox[3]}
      if rles:
        ann['segmentation'] = rles[r]
      anns.append(ann)
  categories = [{'id': cats[c], 'name': str(name)} for c, name in enumerate(class_names)]
  return {'images': images, 'annotations': anns, 'categories': categories}


def to_coco_results(boxes: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                    classes: Sequence[np.ndarray], valid: Sequence[np.ndarray] | None,
                    image_ids: Sequence[int], *, masks: Sequence[np.ndarray] | None = None,
                    category_ids: Sequence[int] | None = None) -> list[dict]:
  """Padded detections -> COCO results (``image_id``, ``category_id``, ``bbox``, ``score``).

  Args:
    boxes: (N, D, 4) pixel corners ``(y0, x0, y1, x1)``.
    scores: (N, D); classes: (N, D) int labels; valid: (N, D) bool (None:
      every row).
    image_ids: (N,) the ids given to :func:`to_coco_gt`.
    masks: optional, per image (D, H, W) bool predicted masks, one per row:
      adds RLE ``segmentation`` for ``iou_type='segm'``.
    category_ids: optional COCO category id per label; default ``label + 1``.

  Returns:
    One dict per valid detection, ``bbox`` as ``[x, y, w, h]`` pixels.
  """
  if not (len(boxes) == len(scores) == len(classes) == len(image_ids)):
    raise ValueError(f'boxes, scores, classes and image_ids disagree on the number of images: '
                     f'{len(boxes)}, {len(scores)}, {len(classes)}, {len(image_ids)}.')
  cat_of = None if category_ids is None else np.asarray(_category_map(len(category_ids),
                                                                    category_ids))
  results = []
  for i in range(len(boxes)):
    cls = np.asarray(classes[i]).reshape(-1)
    keep = (np.arange(len(cls)) if valid is None
            else np.flatnonzero(np.asarray(valid[i], bool).reshape(-1)))
    labels = cls[keep].astype(np.int64)
    if labels.size and (labels.min() < 0 or (cat_of is not None and labels.max() >= len(cat_of))):
      raise ValueError(f'image {i}: detection labels {sorted(set(labels.tolist()))} outside '
                       f'[0, {len(cat_of) if cat_of is not None else "C"}).')
    cat = labels + 1 if cat_of is None else cat_of[labels]
    b = np.asarray(boxes[i], np.float64).reshape(-1, 4)
    s = np.asarray(scores[i], np.float64).reshape(-1)
    rles = encode_masks(np.asarray(masks[i], bool)[keep]) if masks is not None else None
    for r, k in enumerate(keep):
      res = {'image_id': int(image_ids[i]), 'category_id': int(cat[r]), 'bbox': _xywh(b[k]),
             'score': float(s[k])}
      if rles is not None:
        res['segmentation'] = rles[r]
      results.append(res)
  return results


# ----------------------------------------------------------------------------- evaluation


def _nan_if_missing(value: float) -> float:
  # COCOeval writes -1 where nothing was there to measure (no ground truth of
  # that class or area range); NaN keeps that out of means.
  return float('nan') if value <= -1 else float(value)


def coco_evaluate(gt: dict, results: Sequence[dict], *, iou_type: str = 'bbox',
                  masks: Sequence[np.ndarray] | None = None) -> dict[str, float]:
  """COCOeval's metrics for ``results`` against ``gt``, its printing silenced.

  Args:
    gt: from :func:`to_coco_gt` (or any COCO ground-truth dict; not modified).
    results: from :func:`to_coco_results` (not modified).
    iou_type: ``'bbox'`` or ``'segm'`` (needs ``segmentation`` in the ground
      truth and in every result, or ``masks``).
    masks: optional, one (H, W) bool predicted mask per entry of
      ``results``, in order; encoded to their ``segmentation``.

  Returns:
    ``AP`` (IoU 0.50:0.95), ``AP50``, ``AP75``, ``APs``/``APm``/``APl``
    (areas < 32², 32²..96², > 96² pixels), ``AR1``/``AR10``/``AR100`` (and
    ``ARs``/``ARm``/``ARl``), then per category ``ap_<name>`` (0.50:0.95),
    ``ap50_<name>`` (both read from ``eval['precision']`` at all areas and
    100 detections) and ``gt_<name>`` (its non-crowd ground-truth count).
    Values COCOeval cannot define (-1: no ground truth there) are NaN.
    Empty ``results`` (pycocotools' ``loadRes`` cannot load an empty list)
    give 0.0 for every metric (NaN per class without ground truth) and a
    one-line warning, instead of an error.
  """
  if iou_type not in IOU_TYPES:
    raise ValueError(f'iou_type must be one of {IOU_TYPES}, got {iou_type!r}.')
  results = [dict(r) for r in results]  # COCO's loadRes writes into the dicts
  if masks is not None:
    if len(masks) != len(results):
      raise ValueError(f'{len(masks)} masks for {len(results)} results.')
    for r, m in zip(results, masks):  # one at a time: images differ in size
      r['segmentation'] = encode_masks(m)[0]
  if iou_type == 'segm':
    if any('segmentation' not in r for r in results):
      raise ValueError("iou_type='segm' needs a 'segmentation' in every result (pass masks).")
    for r in results:
      # With a bbox present loadRes takes the box's area for the mask, which
      # moves detections across the small/medium/large split (detectron2 drops it too).
      r.pop('bbox', None)
  names = {c['id']: str(c['name']) for c in gt['categories']}
  counts = {cid: 0 for cid in names}
  for a in gt['annotations']:
    if not a.get('iscrowd', 0):
      counts[a['category_id']] += 1
  out = {f'gt_{names[cid]}': float(counts[cid]) for cid in names}

  if not results:
    warnings.warn('coco_evaluate: no detections to evaluate; every AP/AR is reported as 0.',
                  stacklevel=2)
    out.update({k: 0.0 for k in SUMMARY_KEYS})
    for cid, name in names.items():
      out[f'ap_{name}'] = out[f'ap50_{name}'] = 0.0 if counts[cid] else float('nan')
    return out

  with contextlib.redirect_stdout(io.StringIO()):
    coco_gt = COCO()
    # COCOeval writes an 'ignore' into every ground-truth annotation: copies.
    coco_gt.dataset = dict(gt, annotations=[dict(a) for a in gt['annotations']])
    coco_gt.createIndex()
    coco_dt = coco_gt.loadRes(results)
    ev = COCOeval(coco_gt, coco_dt, iouType=iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
  out.update({k: _nan_if_missing(v) for k, v in zip(SUMMARY_KEYS, ev.stats)})
  # precision: (IoU thresholds T, 101 recall points, categories K, areas, max dets).
  precision = ev.eval['precision']
  t50 = int(np.argmin(np.abs(ev.params.iouThrs - 0.5)))
  for k, cid in enumerate(ev.params.catIds):
    p = precision[:, :, k, 0, -1]
    name = names[cid]
    out[f'ap_{name}'] = float(p[p > -1].mean()) if np.any(p > -1) else float('nan')
    p50 = p[t50]
    out[f'ap50_{name}'] = float(p50[p50 > -1].mean()) if np.any(p50 > -1) else float('nan')
  return out


def coco_evaluate_rows(rows: Mapping[str, np.ndarray], *, canvas_size: int,
                       class_names: Sequence[str]) -> dict[str, float]:
  """COCO box metrics of the detection task's eval rows, in original-image pixels.

  Uses ``box_crowd``, ``image_id``, ``image_scale`` and ``orig_hw`` from
  ``rows`` when present (see :func:`detections_to_pixels`); boxes only.
  """
  px = detections_to_pixels(rows, canvas_size)
  gt = to_coco_gt(px['gt_boxes'], rows['gt_labels'], crowd=rows.get('box_crowd'),
                  image_ids=px['image_id'], image_hw=px['image_hw'], class_names=class_names)
  res = to_coco_results(px['boxes'], rows['scores'], rows['classes'], rows['valid'],
                        px['image_id'])
  return coco_evaluate(gt, res)
