"""Two-stage detection (R-CNN family) and instance segmentation (Mask R-CNN).

``rcnn``: batch fields as :mod:`cnn_jax.tasks.detection` (``boxes``,
``box_labels``); the model (:mod:`cnn_jax.models.rcnn`) takes its training
targets as a call argument (:meth:`model_inputs`), because proposal sampling
sits between its two stages. It returns predictions and their assigned
targets; the loss is the sum of

* ``rpn_obj`` + ``rpn_box``: :func:`cnn_jax.ops.rcnn.rpn_loss` (Faster/Mask R-CNN),
* ``cls`` + ``box``: :func:`cnn_jax.ops.rcnn.fast_rcnn_loss`,
* ``mask``: :func:`cnn_jax.ops.rcnn.mask_rcnn_loss` (Mask R-CNN),

each times its ``task.*_weight``. Sampling draws from one key per example
(folded from the step's augmentation keys), so resumed runs draw the same
samples. Evaluation is the detection task's: VOC ``mAP50`` per class and
COCOeval box AP.

``instance_segmentation`` adds ``instance_masks`` (B, K, H, W) bool, loaded
with the boxes (synthetic scenes, COCO), mirrored with the image; the
model's ``masks`` (B, D, M, M) are pasted into their boxes at image
resolution (:func:`cnn_jax.ops.roi.paste_masks`, threshold 0.5) and scored by
COCOeval ``segm`` in canvas pixels: ``mask_AP``, ``mask_AP50`` (the headline),
``mask_AP75``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax.evaluation import coco as coco_eval
from cnn_jax.ops import rcnn as rcnn_ops
from cnn_jax.ops import roi
from cnn_jax.tasks.base import augment_annotated
from cnn_jax.tasks.detection import Detection

SAMPLE_KEY = 'sample_key'  # the batch field of the samplers' per-example keys


class TwoStageDetection(Detection):
  name = 'rcnn'
  progress = 'cls'

  @staticmethod
  def defaults() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.rpn_weight = 1.0        # RPN objectness + box terms
    c.box_weight = 1.0        # the RoI head's classification + box terms
    c.mask_weight = 1.0       # Mask R-CNN's mask term
    c.ap_iou = 0.5            # a detection matches a ground-truth box at this IoU
    c.coco_metrics = True     # also COCOeval AP@[.5:.95] etc. (pycocotools)
    return c

  def load_data(self):
    return self.load_annotated()  # no YOLO anchors: the model owns its anchor grid

  def augment(self, keys, batch):
    batch = augment_annotated(self, keys, batch)
    return {**batch, SAMPLE_KEY: jax.vmap(lambda k: jax.random.fold_in(k, 2))(keys)}

  def model_inputs(self, batch, train):
    if not train:
      return {}
    targets = {'boxes': batch['boxes'], 'labels': batch['box_labels'], 'keys': batch[SAMPLE_KEY]}
    if 'instance_masks' in batch:
      targets['masks'] = batch['instance_masks']
    return {'targets': targets}

  def loss(self, out, batch, extras, axis_name):
    del batch, extras, axis_name  # each term is a mean over this batch's samples
    terms = {}
    if 'rpn' in out:
      t = out['rpn_targets']
      terms['rpn_obj'], terms['rpn_box'] = rcnn_ops.rpn_loss(
          out['rpn']['logits'], out['rpn']['deltas'], t['labels'], t['deltas'], t['sampled'])
    t = out['roi_targets']
    terms['cls'], terms['box'] = rcnn_ops.fast_rcnn_loss(
        out['roi']['logits'], out['roi']['deltas'], t['labels'], t['deltas'], t['valid'])
    if 'mask' in out:
      t = out['mask_targets']
      terms['mask'] = rcnn_ops.mask_rcnn_loss(out['mask']['logits'], t['labels'], t['masks'],
                                              t['valid'])
    weight = {'rpn_obj': self.t.rpn_weight, 'rpn_box': self.t.rpn_weight,
              'cls': self.t.box_weight, 'box': self.t.box_weight, 'mask': self.t.mask_weight}
    loss = sum(weight[k] * v for k, v in terms.items())
    fg = out['roi_targets']['labels'] > 0
    return loss, {**terms, 'fg_rois': jnp.mean(jnp.sum(fg, -1).astype(jnp.float32))}

  def detections(self, out):
    return {k: out[k] for k in ('boxes', 'scores', 'classes', 'valid')}


class InstanceSegmentation(TwoStageDetection):
  name = 'instance_segmentation'
  headline = 'mask_AP50'
  fields = ('image', 'boxes', 'box_labels', 'instance_masks')
  wants = ('boxes', 'instance_masks')
  augment_keys = ('flip',)  # the zoom-crop does not move instance masks (yet)

  def flip_fields(self):
    return {**super().flip_fields(), 'instance_masks': lambda m: m[..., ::-1]}

  def eval_outputs(self, out, batch):
    result = super().eval_outputs(out, batch)
    hw = batch['image'].shape[1:3]
    scale = jnp.asarray([hw[0], hw[1], hw[0], hw[1]], jnp.float32)
    paste = jax.vmap(lambda m, b: roi.paste_masks(m, b * scale, hw))
    result['rows']['masks'] = paste(out['masks'], out['boxes']) >= 0.5
    result['rows']['gt_masks'] = batch['instance_masks']
    return result

  def eval_metrics(self, sums, rows):
    out = super().eval_metrics(sums, {k: v for k, v in rows.items()
                                      if k not in ('masks', 'gt_masks')})
    segm = mask_metrics(rows, self.class_names)
    out.update({f'mask_{k}': v for k, v in segm.items()
                if k in ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')})
    return out

  def summary(self, m):
    return (f"mask AP50 {m['mask_AP50']:.4f}, mask AP {m['mask_AP']:.4f}; "
            + super().summary(m))


def mask_metrics(rows: dict[str, np.ndarray], class_names) -> dict[str, Any]:
  """COCOeval ``segm`` of eval rows with pasted ``masks`` (B, D, H, W) and ``gt_masks`` (B, K, H, W).

  In canvas pixels: the letterbox is not undone (the synthetic scenes have none).
  """
  n, hw = len(rows['gt_masks']), rows['gt_masks'].shape[2:]
  image_hw = np.tile(np.asarray(hw, np.int64), (n, 1))
  canvas = int(hw[0])
  gt = coco_eval.to_coco_gt(list(coco_eval.boxes_to_pixels(rows['gt_boxes'], canvas)),
                            list(rows['gt_labels']),
                            instance_masks=list(rows['gt_masks']), image_hw=image_hw,
                            class_names=class_names, crowd=rows.get('box_crowd'))
  res = coco_eval.to_coco_results(list(coco_eval.boxes_to_pixels(rows['boxes'], canvas)),
                                  list(rows['scores']),
                                  list(rows['classes']), list(rows['valid']),
                                  np.arange(n), masks=list(rows['masks']))
  return coco_eval.coco_evaluate(gt, res, iou_type='segm')
