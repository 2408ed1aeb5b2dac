"""One-stage (YOLO-style) object detection: mAP@0.5 after per-class NMS.

Batch fields: ``image`` (B, H, W, C); ``boxes`` (B, K, 4) corners
``(y0, x0, y1, x1)`` in [0, 1], padded to K; ``box_labels`` (B, K) int32,
-1 for padding. The model (``yolo``) maps images to ``(B, S, S, A, 5 + C)``
raw predictions. Targets are encoded inside the step, after the random flip
has moved the boxes with the pixels (:func:`cnn_jax.ops.boxes.yolo_encode`);
the loss is :func:`cnn_jax.ops.losses.yolo_loss` (``task.loss='modern'``) or
the course's sum-squared :func:`cnn_jax.ops.losses.yolo_course_loss`
(``task.loss='course'``). Anchors are k-means
(1 - IoU distance, YOLOv2) of the training boxes' sizes, fitted when the data
loads, so they are the same on every resume.

Evaluation decodes and filters every image on device
(:func:`cnn_jax.ops.boxes.detect`) and computes VOC all-point AP per class on
the host (:func:`cnn_jax.ops.boxes.average_precision`, VOC ``difficult``
boxes ignored): ``mAP50`` and ``ap50_<class>``; with ``task.coco_metrics``
also pycocotools' COCOeval in original-image pixels (crowd regions ignored):
``coco_AP`` (AP@[.5:.95]), ``coco_AP50``, ``coco_AP75``, ``coco_APs/m/l``,
``coco_AR100`` and per class ``coco_ap_<class>``.

Real data (COCO, VOC, tfds; :mod:`cnn_jax.data.annotations`) also carries
``box_crowd``, ``box_difficult``, ``image_id``, ``image_scale`` and
``orig_hw``: evaluation reads them; crowd boxes are dropped from the training
targets (as torchvision's detection references filter ``iscrowd``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.evaluation import coco as coco_eval
from cnn_jax.ops import boxes as box_ops
from cnn_jax.ops import losses
from cnn_jax.tasks.base import Task, augment_annotated, mirror


def anchor_sizes(boxes: np.ndarray, labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
  """``(k, 2)`` anchor ``(h, w)`` by k-means (1 - IoU distance) of the real boxes' sizes.

  Args:
    boxes: (N, K, 4) corners; labels: (N, K), -1 for padding rows.
  """
  hw = (boxes[..., 2:] - boxes[..., :2])[labels >= 0]
  if len(hw) < k:
    raise ValueError(f'{len(hw)} training boxes cannot give {k} anchors; lower '
                     'model.kwargs.num_anchors or add data.')
  rng = np.random.default_rng(seed)
  centres = hw[rng.choice(len(hw), k, replace=False)]
  for _ in range(30):
    inter = np.minimum(hw[:, None, 0], centres[None, :, 0]) * np.minimum(hw[:, None, 1],
                                                                        centres[None, :, 1])
    iou = inter / (hw.prod(1)[:, None] + centres.prod(1)[None] - inter)
    assign = iou.argmax(1)
    centres = np.stack([hw[assign == j].mean(0) if np.any(assign == j) else centres[j]
                        for j in range(k)])
  return centres[np.argsort(centres.prod(1))].astype(np.float32)


def per_image(rows: dict[str, np.ndarray]) -> tuple[list, list, list | None]:
  """The eval rows as :func:`cnn_jax.ops.boxes.average_precision` takes them.

  Returns:
    ``(detections, ground_truth, ignore)``: per image ``(boxes, scores,
    classes)`` of the valid detections, ``(gt_boxes, gt_labels)``, and the
    ``box_difficult`` flags (None without them).
  """
  dets = [(b[v], s[v], c[v]) for b, s, c, v in
          zip(rows['boxes'], rows['scores'], rows['classes'], rows['valid'])]
  gts = list(zip(rows['gt_boxes'], rows['gt_labels']))
  return dets, gts, list(rows['box_difficult']) if 'box_difficult' in rows else None


# What real data adds for evaluation (cnn_jax/data/annotations.py), passed to the host as rows.
EVAL_FIELDS = ('box_crowd', 'box_difficult', 'image_id', 'image_scale', 'orig_hw')


class Detection(Task):
  name = 'detection'
  headline = 'mAP50'
  fields = ('image', 'boxes', 'box_labels')
  wants = ('boxes',)
  progress = 'obj'
  augment_keys = ('flip', 'scale_crop')

  @staticmethod
  def defaults() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # 'modern' (ops.yolo_loss: BCE objectness, softmax CE classes, squared error on
    # offsets and log sizes) or 'course' (ops.yolo_course_loss: YOLO v1's sum-squared
    # error on the decoded objectness, offsets, sqrt sizes and class probabilities).
    c.loss = 'modern'
    c.coord_weight = 5.0      # YOLO's lambda_coord
    c.noobj_weight = 0.5      # YOLO's lambda_noobj
    c.score_threshold = 0.05  # detections kept for AP
    c.iou_threshold = 0.5     # NMS
    c.max_detections = 20     # per image, after NMS
    c.ap_iou = 0.5            # a detection matches a ground-truth box at this IoU
    c.coco_metrics = True     # also COCOeval AP@[.5:.95] etc. (pycocotools)
    return c

  def load_data(self) -> tuple[ArrayDataset, ArrayDataset]:
    train, test = self.load_annotated()
    num_anchors = int(self.config.model.kwargs.get('num_anchors', 2))
    self.anchors = jnp.asarray(anchor_sizes(train.extras['boxes'], train.extras['box_labels'],
                                            num_anchors, self.data_seed))
    return train, test

  def load_annotated(self) -> tuple[ArrayDataset, ArrayDataset]:
    """The splits with the task's fields (test: also :data:`EVAL_FIELDS`); crowd boxes untrained."""
    train, test = super().load_data()
    keep = [f for f in self.fields if f != 'image']
    for ds in (train, test):
      if not all(k in ds.extras for k in keep):
        raise ValueError(f'task {self.name} needs {", ".join(keep)}; data.name='
                         f'{self.config.data.name!r} gives {sorted(ds.extras) or "none"}.')
    labels = train.extras['box_labels']
    if 'box_crowd' in train.extras:
      labels = np.where(train.extras['box_crowd'], -1, labels).astype(np.int32)
    train = ArrayDataset(train.images, train.labels, train.class_names,
                         {**{k: train.extras[k] for k in keep}, 'box_labels': labels})
    test = ArrayDataset(test.images, test.labels, test.class_names,
                        {k: test.extras[k] for k in (*keep, *EVAL_FIELDS) if k in test.extras})
    self.class_names = train.class_names
    return train, test

  def augment(self, keys, batch):
    return augment_annotated(self, keys, batch)  # flip, then augment.scale_crop

  def flip_fields(self):
    return {'image': mirror, 'boxes': box_ops.flip_boxes_lr}

  def loss(self, out, batch, extras, axis_name):
    del extras, axis_name  # both losses average over images: the step's pmean is global
    # .get: a run saved before task.loss existed trained with the modern loss.
    kind = self.t.get('loss', 'modern')
    if kind not in losses.YOLO_LOSSES:
      raise ValueError(f'task.loss={kind!r} is not valid; choose one of '
                       f'{", ".join(losses.YOLO_LOSSES)}.')
    grid_h, grid_w = out.shape[1:3]
    if grid_h != grid_w:
      raise ValueError(f'the detector needs square images (grid {grid_h}x{grid_w}).')
    encode = jax.vmap(lambda b, l: box_ops.yolo_encode(
        b, l, grid=grid_h, anchors=self.anchors, num_classes=out.shape[-1] - 5))
    target = encode(batch['boxes'], batch['box_labels'])
    if kind == 'course':
      return losses.yolo_course_loss(out, target, self.anchors, coord_weight=self.t.coord_weight,
                                     noobj_weight=self.t.noobj_weight)
    return losses.yolo_loss(out, target, coord_weight=self.t.coord_weight,
                            noobj_weight=self.t.noobj_weight)

  def detections(self, out) -> dict[str, jax.Array]:
    """The model's eval outputs -> (B, D) ``boxes`` (normalised), ``scores``, ``classes``, ``valid``."""
    detect = jax.vmap(lambda o: box_ops.detect(
        o, self.anchors, iou_threshold=self.t.iou_threshold,
        score_threshold=self.t.score_threshold, max_outputs=self.t.max_detections))
    return dict(zip(('boxes', 'scores', 'classes', 'valid'), detect(out)))

  def eval_outputs(self, out, batch):
    rows = {**self.detections(out), 'gt_boxes': batch['boxes'], 'gt_labels': batch['box_labels']}
    rows.update({k: batch[k] for k in EVAL_FIELDS if k in batch})
    return {'rows': rows}

  def eval_metrics(self, sums, rows):
    del sums
    dets, gts, difficult = per_image(rows)
    num_classes = len(self.class_names)
    m_ap, ap = box_ops.average_precision(dets, gts, num_classes, ignore=difficult,
                                         iou_threshold=float(self.t.ap_iou))
    out = {'mAP50': float(m_ap)}
    out.update({f'ap50_{n}': float(ap[c]) for c, n in enumerate(self.class_names)})
    if self.t.coco_metrics:
      coco = coco_eval.coco_evaluate_rows(rows, canvas_size=int(self.config.data.image_size),
                                          class_names=self.class_names)
      out.update({f'coco_{k}': float(v) for k, v in coco.items()
                  if not k.startswith(('ap50_', 'gt_'))})
    out['count'] = len(gts)
    out['objects'] = int((rows['gt_labels'] >= 0).sum())
    return out

  def summary(self, m):
    per_class = ', '.join(f'{k[5:]} {v:.3f}' for k, v in m.items() if k.startswith('ap50_'))
    coco = f", COCO AP {m['coco_AP']:.4f} AP50 {m['coco_AP50']:.4f}" if 'coco_AP' in m else ''
    return (f"mAP@0.5 {m['mAP50']:.4f} ({per_class}){coco} on {int(m['count'])} images, "
            f"{int(m['objects'])} objects")
