"""Localisation and landmark tasks: metrics by hand, flips that keep labels true, bad config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import tasks
from cnn_jax.data import synthetic
from cnn_jax.tasks.localisation import largest_object
from cnn_jax.train.logging import read_metrics
from tests.tasks.configs import tiny


def _task(name, **task_keys):
  config = tiny(name)
  config.task.update(task_keys)
  return tasks.get_task(config)


def _evaluate(task, out, batch):
  sums = task.eval_outputs(jnp.asarray(out), {k: jnp.asarray(v) for k, v in batch.items()})
  return task.eval_metrics({k: np.asarray(v) for k, v in sums['sums'].items()}, {})


@pytest.mark.parametrize('loss', ['course', 'modern'])
def test_localisation_metrics_by_hand(loss):
  """Four images: background said empty (right), a perfect box, a poor box, a false alarm."""
  task = _task('localise', loss=loss)
  boxes = np.array([[[0, 0, 0, 0]], [[.2, .2, .6, .6]], [[.2, .2, .6, .6]], [[0, 0, 0, 0]]],
                   np.float32)
  labels = np.array([[-1], [2], [0], [-1]])
  yes, no = (5.0, -5.0) if loss == 'modern' else (1.0, 0.0)

  def box(cy, cx, h, w):  # the outputs that decode to this box
    v = np.array([cx, cy, h, w])
    return np.log(v / (1 - v)) if loss == 'modern' else v

  cls = lambda c: np.eye(3)[c] * 4
  out = np.stack([np.r_[no, box(.5, .5, .2, .2), cls(0)],
                  np.r_[yes, box(.4, .4, .4, .4), cls(2)],        # IoU 1
                  np.r_[yes, box(.6, .6, .4, .4), cls(0)],        # IoU (.2*.2)/(.32-.04) = 1/7
                  np.r_[yes, box(.5, .5, .2, .2), cls(1)]]).astype(np.float32)
  m = _evaluate(task, out, {'boxes': boxes, 'box_labels': labels, 'mask': np.ones(4, bool)})
  assert m['accuracy_iou50'] == 0.5 and m['accuracy'] == 0.75
  assert m['presence_accuracy'] == 0.75 and m['class_accuracy'] == 1.0
  assert m['mean_iou'] == pytest.approx((1 + 1 / 7) / 2, rel=1e-5)
  assert (m['count'], m['objects']) == (4, 2)
  value, train = task.loss(jnp.asarray(out), {'boxes': boxes, 'box_labels': labels}, {}, None)
  assert np.isfinite(float(value)) and float(train['accuracy']) == 0.75


def test_largest_object_and_bad_loss_name():
  boxes = np.array([[[0, 0, .1, .1], [0, 0, .5, .5], [0, 0, .9, .9]],
                    [[0, 0, .2, .2], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
  labels = np.array([[3, 1, -1], [-1, -1, -1]])  # the biggest row is padding
  b, l = largest_object(boxes, labels)
  np.testing.assert_allclose(b[:, 0], [[0, 0, .5, .5], [0, 0, 0, 0]])
  np.testing.assert_array_equal(l[:, 0], [1, -1])
  with pytest.raises(ValueError, match="unknown task.loss 'mse'; choose one of course, modern"):
    _task('localise', loss='mse')


def test_landmark_metrics_by_hand():
  task = _task('landmarks')
  faces = synthetic.render_faces(3, image_size=32, seed=1)
  target = faces['landmarks']
  shift = np.zeros_like(target)
  shift[0, 2, 0] = 0.02   # image 0: the nose tip 0.02 to the right
  shift[1] = 0.05         # image 1: every point off by (0.05, 0.05)
  out = (target + shift).reshape(3, -1)
  batch = {'landmarks': target, 'face_box': faces['face_box'], 'mask': np.array([1, 1, 0], bool)}
  m = _evaluate(task, out, batch)
  iod = np.linalg.norm(target[:, 0] - target[:, 1], axis=-1)
  per_image = np.linalg.norm(shift, axis=-1) / iod[:, None]
  assert m['nme'] == pytest.approx(per_image[:2].mean(), rel=1e-5)
  assert m['nme_nose_tip'] == pytest.approx(per_image[:2, 2].mean(), rel=1e-5)
  size = np.maximum(*(faces['face_box'][:, 2:] - faces['face_box'][:, :2]).T)
  for alpha, key in ((0.05, 'pck05'), (0.1, 'pck10')):
    within = np.linalg.norm(shift, axis=-1)[:2] <= alpha * size[:2, None]
    assert m[key] == pytest.approx(within.mean())
  assert m['count'] == 2


def test_landmark_flip_keeps_each_name_on_its_feature():
  """The task's flip moves pixels, points and box together: pupils stay under the eye points."""
  task = _task('landmarks')
  faces = synthetic.render_faces(16, image_size=32, seed=4)
  batch = {'image': jnp.asarray(faces['images']), 'landmarks': jnp.asarray(faces['landmarks']),
           'face_box': jnp.asarray(faces['face_box'])}
  keys = jax.random.split(jax.random.key(0), 16)
  out = jax.tree.map(np.asarray, task.augment(keys, batch))
  flipped = np.any(out['image'] != faces['images'], axis=(1, 2, 3))
  assert 2 < flipped.sum() < 14
  pts = out['landmarks']
  assert np.all(pts[:, 0, 0] < pts[:, 1, 0])  # still left eye left of right eye
  rows, cols = np.floor(pts[..., 1] * 32).astype(int), np.floor(pts[..., 0] * 32).astype(int)
  pupils = out['image'][np.arange(16)[:, None], rows[:, :2], cols[:, :2]]
  assert pupils.max() < 100
  np.testing.assert_allclose(out['face_box'][flipped][:, [1, 3]],
                             1 - faces['face_box'][flipped][:, [3, 1]], atol=1e-6)


def test_landmark_count_must_match_names():
  task = _task('landmarks', names=('a', 'b', 'c'), flip_pairs=((0, 1),))
  with pytest.raises(ValueError, match='the data has 5 landmarks but task.names lists 3'):
    task.load_data()


@pytest.mark.parametrize('name,picture', [('localise', 'localisation.png'),
                                          ('landmarks', 'landmarks.png')])
def test_report_reevaluates_the_best_checkpoint(task_runs, name, picture):
  from experiments import localise
  workdir, result = task_runs[name]
  r = localise.report(workdir, 'best', pictures=3)
  evals = {e['step']: e[result['headline']]
           for e in read_metrics(workdir / 'metrics.jsonl')['eval']}
  assert r['metrics'][result['headline']] == pytest.approx(evals[result['best_step']], abs=1e-6)
  assert (workdir / picture).stat().st_size > 3000
  assert result['headline'] in (workdir / 'results.md').read_text()
  with pytest.raises(ValueError, match='is a detection run; this report is for localisation'):
    localise.report(task_runs['detect'][0])
