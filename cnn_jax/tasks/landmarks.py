"""Landmark detection: regress K ``(x, y)`` points per image (the course's face landmarks).

Batch fields: ``image``; ``landmarks`` (B, K, 2) ``(x, y)`` in [0, 1];
``face_box`` (B, 4) corners of the object the points belong to (the PCK
scale). The model (any zoo network with ``2 K`` outputs; ``regressor``
keeps where things are) predicts the points in the same units, read as
``(B, K, 2)``. A flip mirrors ``x`` and swaps each pair in
``task.flip_pairs`` (left eye <-> right eye), so the labels stay true.

Evaluation (sums, so pmap needs nothing more):

* ``nme`` (headline, lower is better): mean point error over the
  inter-ocular distance (landmarks ``task.eyes``), as 300-W reports it;
  ``nme_<name>`` per landmark;
* ``pck05``, ``pck10``: fraction of points within 0.05 / 0.1 of the face
  box's size (``max(h, w)``).

Data: ``data.name='synthetic_faces'`` (rendered faces with known eyes, nose
tip and mouth corners) or ``'landmark_folder'`` (``root/<split>/landmarks.csv``
beside its images; :mod:`cnn_jax.data.landmark_folder`).
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.data.synthetic import FACE_FLIP_PAIRS, FACE_LANDMARKS
from cnn_jax.ops import boxes as box_ops
from cnn_jax.ops import landmarks as lm
from cnn_jax.tasks.base import Task, mirror

PCK_ALPHAS = (0.05, 0.1)


class Landmarks(Task):
  name = 'landmarks'
  headline = 'nme'
  headline_mode = 'min'
  fields = ('image', 'landmarks', 'face_box')
  progress = 'nme'
  augment_keys = ('flip',)
  wants = ('landmarks',)

  @staticmethod
  def defaults() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.loss = 'l1'                   # or 'l2' (squared): per-coordinate error, summed over points
    c.names = FACE_LANDMARKS        # one name per landmark, in the data's order
    c.flip_pairs = FACE_FLIP_PAIRS  # left/right pairs a mirror swaps
    c.eyes = (0, 1)                 # NME's inter-ocular distance is between these two
    return c

  def __init__(self, config):
    super().__init__(config)
    if self.t.loss not in lm.LOSSES:
      raise ValueError(f'unknown task.loss {self.t.loss!r}; choose one of '
                       f'{", ".join(lm.LOSSES)}.')
    self.order = lm.flip_permutation(len(self.t.names), self.t.flip_pairs)

  def load_data(self) -> tuple[ArrayDataset, ArrayDataset]:
    return tuple(self._check(ds) for ds in super().load_data())

  def _check(self, ds: ArrayDataset) -> ArrayDataset:
    if 'landmarks' not in ds.extras:
      raise ValueError(f'task landmarks needs landmarks; data.name={self.config.data.name!r} '
                       'gives none (use synthetic_faces or landmark_folder).')
    points = ds.extras['landmarks']
    if points.shape[1] != len(self.t.names):
      raise ValueError(f'the data has {points.shape[1]} landmarks but task.names lists '
                       f'{len(self.t.names)}; set task.names, task.flip_pairs and task.eyes '
                       'for this data.')
    extras = dict(ds.extras)
    if 'face_box' not in extras:  # the points' own box as the PCK scale
      extras['face_box'] = np.concatenate([points.min(1)[:, ::-1], points.max(1)[:, ::-1]], -1)
    return ArrayDataset(ds.images, ds.labels, ds.class_names, extras)

  def model_kwargs(self, num_classes):
    del num_classes
    return {'num_classes': 2 * len(self.t.names)}

  def flip_fields(self):
    return {'image': mirror, 'face_box': box_ops.flip_boxes_lr,
            'landmarks': lambda p: lm.flip_landmarks(p, self.t.flip_pairs)}

  def _errors(self, out, batch):
    pred = out.reshape(out.shape[0], -1, 2)
    target = batch['landmarks']
    return pred, {
        'nme': lm.normalised_error(pred, target, lm.interocular(target, self.t.eyes)),
        'box': lm.normalised_error(pred, target, lm.box_size(batch['face_box']))}

  def loss(self, out, batch, extras, axis_name):
    del extras, axis_name  # a mean over images: the step's pmean makes it global
    pred, err = self._errors(out, batch)
    return lm.loss(pred, batch['landmarks'], self.t.loss), {'nme': jnp.mean(err['nme'])}

  def eval_outputs(self, out, batch):
    _, err = self._errors(out, batch)
    mask = batch['mask'][:, None]
    sums = {'count': jnp.sum(batch['mask'], dtype=jnp.int32),
            'nme_sum': jnp.sum(jnp.where(mask, err['nme'], 0.0), 0)}
    for alpha in PCK_ALPHAS:
      sums[f'pck_{alpha:g}'] = jnp.sum((err['box'] <= alpha) & mask, 0, dtype=jnp.int32)
    return {'sums': sums}

  def eval_metrics(self, sums, rows):
    del rows
    n = max(int(sums['count']), 1)
    per_point = np.asarray(sums['nme_sum'], np.float64) / n
    out = {'nme': float(per_point.mean())}
    for alpha in PCK_ALPHAS:
      out[f'pck{round(alpha * 100):02d}'] = float(np.mean(sums[f'pck_{alpha:g}']) / n)
    out.update({f'nme_{name}': float(v) for name, v in zip(self.t.names, per_point)})
    out['count'] = int(sums['count'])
    return out

  def summary(self, m):
    return (f"NME {m['nme']:.4f} (inter-ocular), PCK@0.05 {m['pck05']:.4f}, PCK@0.1 "
            f"{m['pck10']:.4f} (of the face box) on {int(m['count'])} images")
