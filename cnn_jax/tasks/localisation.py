"""Classification with localisation: one object (or none) per image, the course's 8-vector.

Batch fields: ``image``; ``boxes`` (B, 1, 4) corners in [0, 1] and
``box_labels`` (B, 1), -1 for an image without an object. The model (any
zoo network with ``5 + C`` outputs; ``regressor`` keeps where things are)
predicts ``[p_c, b_x, b_y, b_h, b_w, c_1..c_C]`` (:mod:`cnn_jax.ops.localisation`).
``task.loss``: ``'course'`` (squared error on all terms if ``p_c = 1``, on
``p_c`` alone if not) or ``'modern'`` (BCE, CE, L1 + 1 - IoU).

Evaluation (sums over the eval split, so it runs under pmap unchanged):

* ``accuracy_iou50`` (headline): an image is right if the model says "no
  object" for a background image, or finds the object with the right class
  and a box of IoU >= ``task.iou`` with the true one;
* ``accuracy``: background counted as one more class, no box condition;
* ``class_accuracy``, ``mean_iou``: over images with an object;
* ``presence_accuracy``: ``p > task.threshold`` agrees with ``p_c``.

Data: the synthetic scenes with ``data.objects_per_image = (0, 1)`` by
default; any detection reader (COCO, VOC, tfds) gives real boxes, of which
each image keeps its largest object (the synthetic scenes' slot 0 already is).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.ops import localisation as loc
from cnn_jax.tasks.detection import Detection


def largest_object(boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Each image's largest labelled box: (N, K, 4), (N, K) -> (N, 1, 4), (N, 1); -1 if none."""
  area = np.where(labels >= 0, np.prod(boxes[..., 2:] - boxes[..., :2], -1), -1.0)
  k = np.argmax(area, 1)
  rows = np.arange(len(boxes))
  has = area[rows, k] >= 0
  box = np.where(has[:, None], boxes[rows, k], 0.0).astype(np.float32)
  return box[:, None], np.where(has, labels[rows, k], -1).astype(np.int32)[:, None]


class Localisation(Detection):
  name = 'localisation'
  headline = 'accuracy_iou50'
  progress = 'iou'
  augment_keys = ('flip',)  # a crop could cut the one object out

  @staticmethod
  def defaults() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.loss = 'modern'       # or 'course': squared error on the 8-vector, as the course writes it
    c.box_weight = 1.0      # modern loss: weight of L1 + (1 - IoU)
    c.threshold = 0.5       # p_c above it: "there is an object"
    c.iou = 0.5             # a box is right at this IoU
    return c

  def __init__(self, config):
    super().__init__(config)
    if self.t.loss not in loc.LOSSES:
      raise ValueError(f'unknown task.loss {self.t.loss!r}; choose one of '
                       f'{", ".join(loc.LOSSES)}.')

  def load_data(self) -> tuple[ArrayDataset, ArrayDataset]:
    train, test = self.load_annotated()

    def one(ds):
      boxes, labels = largest_object(ds.extras['boxes'], ds.extras['box_labels'])
      return ArrayDataset(ds.images, labels[:, 0], ds.class_names,
                          {'boxes': boxes, 'box_labels': labels})

    return one(train), one(test)

  def model_kwargs(self, num_classes):
    return {'num_classes': 5 + num_classes}

  def _decode(self, out, batch):
    target = loc.encode(batch['boxes'], batch['box_labels'], out.shape[-1] - 5)
    p, box, cls = loc.decode(out, self.t.loss)
    has = target[:, 0] > 0.5
    iou = loc.pair_iou(box, loc.box_corners(target, 'course'))
    cls_ok = cls == batch['box_labels'][:, 0]
    present = p > self.t.threshold
    return target, {
        'has': has, 'iou': iou, 'cls_ok': cls_ok, 'present_ok': present == has,
        'right': jnp.where(has, present & cls_ok, ~present),
        'right_iou': jnp.where(has, present & cls_ok & (iou >= self.t.iou), ~present)}

  def loss(self, out, batch, extras, axis_name):
    del extras, axis_name  # means over images: the step's pmean makes them global
    target, d = self._decode(out, batch)
    value = loc.loss(out, target, self.t.loss, box_weight=self.t.box_weight)
    n_obj = jnp.maximum(jnp.sum(d['has'], dtype=jnp.float32), 1.0)
    return value, {'iou': jnp.sum(jnp.where(d['has'], d['iou'], 0.0)) / n_obj,
                   'accuracy': jnp.mean(d['right'].astype(jnp.float32))}

  def eval_outputs(self, out, batch):
    _, d = self._decode(out, batch)
    mask = batch['mask']
    obj = mask & d['has']
    count = lambda x: jnp.sum(x & mask, dtype=jnp.int32)
    return {'sums': {
        'count': jnp.sum(mask, dtype=jnp.int32), 'objects': jnp.sum(obj, dtype=jnp.int32),
        'right': count(d['right']), 'right_iou': count(d['right_iou']),
        'present_ok': count(d['present_ok']), 'cls_ok': count(d['cls_ok'] & d['has']),
        'iou_sum': jnp.sum(jnp.where(obj, d['iou'], 0.0))}}

  def eval_metrics(self, sums, rows):
    del rows
    n, n_obj = max(int(sums['count']), 1), max(int(sums['objects']), 1)
    return {'accuracy_iou50': int(sums['right_iou']) / n, 'accuracy': int(sums['right']) / n,
            'class_accuracy': int(sums['cls_ok']) / n_obj,
            'mean_iou': float(sums['iou_sum']) / n_obj,
            'presence_accuracy': int(sums['present_ok']) / n,
            'count': int(sums['count']), 'objects': int(sums['objects'])}

  def summary(self, m):
    return (f"accuracy at IoU>={self.t.iou:g} {m['accuracy_iou50']:.4f} (accuracy "
            f"{m['accuracy']:.4f}, class accuracy {m['class_accuracy']:.4f}, mean IoU "
            f"{m['mean_iou']:.4f}, presence {m['presence_accuracy']:.4f}) on {int(m['count'])} "
            f"images, {int(m['objects'])} with an object")
