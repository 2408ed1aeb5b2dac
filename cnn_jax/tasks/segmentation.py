"""Semantic segmentation: per-pixel cross entropy; pixel accuracy, mIoU, per-class IoU.

Batch fields: ``image`` (B, H, W, C) and ``segmentation`` (B, H, W) int32
labels, 0 = background, ``ignore_index`` (255, as PASCAL VOC) = not
scored; eval batches also carry ``edge`` (B, H, W) bool, the pixels within
``edge_radius`` of an object boundary (where FCN's finer skips should help).
The model (``fcn32s``/``fcn16s``/``fcn8s``) maps images to ``(B, H, W, L)``
logits, ``L = num_classes + 1``.

The loss is the mean over every valid pixel of the global batch (not a mean
of per-device means); evaluation sums a confusion matrix on device, so the
metrics are exact over the whole split.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.ops import losses, metrics as metrics_lib
from cnn_jax.tasks.base import Task, augment_annotated, global_mean, mirror


def edge_band(masks: np.ndarray, radius: int) -> np.ndarray:
  """(N, H, W) bool: pixels within ``radius`` (Chebyshev) of a label change."""
  m = np.asarray(masks)
  edge = np.zeros(m.shape, bool)
  edge[:, 1:, :] |= m[:, 1:, :] != m[:, :-1, :]
  edge[:, :-1, :] |= m[:, 1:, :] != m[:, :-1, :]
  edge[:, :, 1:] |= m[:, :, 1:] != m[:, :, :-1]
  edge[:, :, :-1] |= m[:, :, 1:] != m[:, :, :-1]
  band = edge.copy()
  for _ in range(radius - 1):
    grown = band.copy()
    grown[:, 1:] |= band[:, :-1]
    grown[:, :-1] |= band[:, 1:]
    grown[:, :, 1:] |= band[:, :, :-1]
    grown[:, :, :-1] |= band[:, :, 1:]
    band = grown
  return band


class Segmentation(Task):
  name = 'segmentation'
  headline = 'mean_iou'
  fields = ('image', 'segmentation')
  wants = ('masks',)
  progress = 'pixel_accuracy'
  augment_keys = ('flip', 'scale_crop')

  @staticmethod
  def defaults() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.ignore_index = 255
    c.void_border = True   # label 1-px object borders ignore_index, as VOC does
    c.edge_radius = 2      # eval: accuracy on pixels this close to an object edge
    return c

  def load_data(self) -> tuple[ArrayDataset, ArrayDataset]:
    train, test = super().load_data()
    out = []
    for ds, is_eval in ((train, False), (test, True)):
      if 'masks' not in ds.extras:
        raise ValueError(f'task segmentation needs label masks; data.name='
                         f'{self.config.data.name!r} gives {sorted(ds.extras) or "none"}.')
      masks = ds.extras['masks'].astype(np.int32)
      extras = {}
      if is_eval:  # the band around true object edges, void borders excluded
        extras['edge'] = edge_band(masks, int(self.t.edge_radius))
      if self.t.void_border:
        masks = np.where(edge_band(masks, 1), int(self.t.ignore_index), masks)
      if is_eval:
        extras['edge'] &= masks != self.t.ignore_index
      extras['segmentation'] = masks
      out.append(ArrayDataset(ds.images, ds.labels, ds.class_names, extras))
    self.label_names = ('background', *train.class_names)
    return out[0], out[1]

  def model_kwargs(self, num_classes: int) -> dict:
    return {'num_classes': num_classes + 1}  # + background

  def augment(self, keys, batch):  # flip, then augment.scale_crop (padding -> ignore_index)
    return augment_annotated(self, keys, batch, ignore_index=int(self.t.ignore_index))

  def flip_fields(self):
    return {'image': mirror, 'segmentation': mirror}

  def loss(self, logits, batch, extras, axis_name):
    del extras
    labels = batch['segmentation']
    valid = labels != self.t.ignore_index
    per_pixel = losses.softmax_cross_entropy(logits, jnp.where(valid, labels, 0),
                                             reduction='none')
    loss = global_mean(jnp.sum(jnp.where(valid, per_pixel, 0.0)),
                       jnp.sum(valid, dtype=jnp.int32), axis_name)
    acc = metrics_lib.pixel_accuracy(jnp.argmax(logits, -1), labels, self.t.ignore_index)
    return loss, {'pixel_accuracy': acc}

  def eval_outputs(self, logits, batch):
    pred = jnp.argmax(logits, -1)
    labels = batch['segmentation']
    rows = batch['mask'][:, None, None]
    cm = metrics_lib.confusion_matrix(pred, labels, logits.shape[-1],
                                      where=jnp.broadcast_to(rows, labels.shape),
                                      ignore_index=int(self.t.ignore_index))
    edge = batch['edge'] & rows
    return {'sums': {'confusion': cm.astype(jnp.int32),
                     'edge_correct': jnp.sum(edge & (pred == labels), dtype=jnp.int32),
                     'edge_count': jnp.sum(edge, dtype=jnp.int32),
                     'count': jnp.sum(batch['mask'], dtype=jnp.int32)}}

  def eval_metrics(self, sums, rows):
    del rows
    cm = np.asarray(sums['confusion'], np.int64)
    miou, iou = metrics_lib.iou_from_confusion_matrix(jnp.asarray(cm, jnp.float32))
    out = {'mean_iou': float(miou), 'pixel_accuracy': float(np.trace(cm) / max(cm.sum(), 1)),
           # NaN when every edge pixel is ignored (void borders wider than the band).
           'edge_accuracy': (float(sums['edge_correct']) / int(sums['edge_count'])
                             if int(sums['edge_count']) else float('nan'))}
    out.update({f'iou_{n}': float(v) for n, v in zip(self.label_names, np.asarray(iou))})
    out['count'] = int(sums['count'])
    return out

  def summary(self, m):
    return (f"mIoU {m['mean_iou']:.4f}, pixel accuracy {m['pixel_accuracy']:.4f}, edge-band "
            f"accuracy {m['edge_accuracy']:.4f} on {int(m['count'])} images")
