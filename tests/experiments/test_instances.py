"""Instance vs semantic: label maps from instances, components from label maps, touching pairs."""

import numpy as np

from experiments import instances


def _square(y0, x0, y1, x1, size=8):
  m = np.zeros((size, size), bool)
  m[y0:y1, x0:x1] = True
  return m


def test_most_confident_instance_owns_the_contested_pixels():
  masks = np.stack([_square(0, 0, 4, 4), _square(2, 2, 6, 6), _square(6, 6, 8, 8)])[None]
  out = instances.semantic_from_instances(masks, np.array([[0, 2, 1]]),
                                          np.array([[True, True, False]]),
                                          np.array([[0.9, 0.6, 0.99]]))
  expected = np.zeros((8, 8), np.int32)
  expected[2:6, 2:6] = 3
  expected[0:4, 0:4] = 1  # class 0 at 0.9 is painted after class 2 at 0.6
  np.testing.assert_array_equal(out[0], expected)  # the dropped third instance is absent


def test_components_of_a_label_map_are_instances():
  probs = np.zeros((1, 8, 8, 3), np.float32)
  probs[..., 0] = 1.0
  for (y0, x0, y1, x1), p in (((0, 0, 2, 3), 0.8), ((5, 5, 8, 8), 0.6)):
    probs[0, y0:y1, x0:x1] = [0.1, 0.0, 0.0]
    probs[0, y0:y1, x0:x1, 1] = p
  probs[0, 3, 3, 2], probs[0, 3, 3, 0] = 0.7, 0.0  # one pixel of class 1 (0-based)
  rows = instances.instances_from_semantic(probs)
  assert rows['valid'].sum() == 3
  got = sorted((int(c), round(float(s), 4), tuple(b.round(4)))
               for c, s, b, v in zip(rows['classes'][0], rows['scores'][0], rows['boxes'][0],
                                     rows['valid'][0]) if v)
  assert got == [(0, 0.6, (0.625, 0.625, 1.0, 1.0)), (0, 0.8, (0.0, 0.0, 0.25, 0.375)),
                 (1, 0.7, (0.375, 0.375, 0.5, 0.5))]
  assert rows['masks'][0].sum() == 6 + 9 + 1


def test_touching_pairs_need_one_class_and_contact():
  gt = np.stack([_square(0, 0, 4, 4), _square(0, 4, 4, 8), _square(5, 0, 8, 4),
                 _square(6, 6, 8, 8)])[None]
  labels = np.array([[1, 1, 1, 2]])
  # 0-1 share an edge; 0-2 are a row apart; 1-3 differ in class.
  assert instances.touching_pairs(gt, labels) == [(0, 0, 1)]
  # One blob over both is not a separation; two predictions are.
  merged = {'masks': (gt[:, :1] | gt[:, 1:2])}
  split = {'masks': gt[:, :2]}
  keep = np.ones((1, 1), bool)
  assert instances.separated([(0, 0, 1)], gt, merged, keep) == 0.0
  assert instances.separated([(0, 0, 1)], gt, split, np.ones((1, 2), bool)) == 1.0
