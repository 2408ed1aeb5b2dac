"""Image classification: softmax cross entropy; accuracy and top-5 accuracy.

Batch fields: ``image`` (B, H, W, C), ``label`` (B,) int32. The model maps
images to ``(B, num_classes)`` logits. Models with auxiliary classifiers
(GoogLeNet, ``aux_logits=True``) return them in the ``aux_logits``
collection during training; their loss is added here with torchvision's
weight 0.3, and they play no part in evaluation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from cnn_jax.data import augment as augment_lib
from cnn_jax.ops import losses, metrics as metrics_lib
from cnn_jax.tasks.base import Batch, Task


class Classification(Task):
  name = 'classification'
  headline = 'accuracy'
  collections = ('aux_logits',)
  augment_keys = ('crop_padding', 'flip', 'rotation', 'shift', 'zoom', 'shear')
  streaming = True

  @staticmethod
  def defaults() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.aux_loss_weight = 0.3   # torchvision's weight of GoogLeNet's auxiliary losses
    c.top_k = 5               # top-k accuracy in evaluation (min(k, classes))
    return c

  def augment(self, keys: jax.Array, batch: Batch) -> Batch:
    kw = {k: v for k, v in self.config.augment.items() if v}
    if not kw:
      return batch
    return {**batch, 'image': augment_lib.augment_batch(keys, batch['image'], **kw)}

  def _ce(self, logits, labels, reduction='mean'):
    return losses.softmax_cross_entropy(
        logits, labels, label_smoothing=self.config.optimizer.label_smoothing,
        reduction=reduction)

  def loss(self, logits, batch, extras, axis_name):
    del axis_name  # a mean over examples: the step's pmean makes it global
    loss = self._ce(logits, batch['label'])
    for (aux,) in extras.get('aux_logits', {}).values():
      loss = loss + self.t.aux_loss_weight * self._ce(aux, batch['label'])
    return loss, {'accuracy': metrics_lib.accuracy(logits, batch['label'])}

  def eval_outputs(self, logits, batch):
    mask, labels = batch['mask'], batch['label']
    k = min(int(self.t.top_k), logits.shape[-1])
    per_example = losses.softmax_cross_entropy(logits, labels, reduction='none')
    top_k = jax.lax.top_k(logits, k)[1]
    return {'sums': {
        'loss_sum': jnp.sum(jnp.where(mask, per_example, 0.0)),
        'correct': jnp.sum((jnp.argmax(logits, -1) == labels) & mask, dtype=jnp.int32),
        'correct_top_k': jnp.sum(jnp.any(top_k == labels[:, None], -1) & mask,
                                 dtype=jnp.int32),
        'count': jnp.sum(mask, dtype=jnp.int32)}}

  def eval_metrics(self, sums, rows):
    del rows
    count = max(int(sums['count']), 1)
    return {'accuracy': float(sums['correct']) / count,
            f'top{int(self.t.top_k)}_accuracy': float(sums['correct_top_k']) / count,
            'loss': float(sums['loss_sum']) / count, 'count': int(sums['count'])}

  def summary(self, m):
    return (f"accuracy {m['accuracy']:.4f} (top-{int(self.t.top_k)} "
            f"{m[f'top{int(self.t.top_k)}_accuracy']:.4f}, loss {m['loss']:.4f}) on "
            f"{int(m['count'])} examples")

