"""Synthetic faces (landmarks on the pixels they name) and the landmark CSV folder reader."""

import numpy as np
import pytest
from PIL import Image

from cnn_jax.data import synthetic
from cnn_jax.data.landmark_folder import load_landmark_folder, read_landmark_csv


@pytest.fixture(scope='module')
def faces():
  return synthetic.render_faces(40, image_size=48, seed=3)


def _pixel(images, points, k):
  """The (N, 3) pixels under landmark k of each image."""
  size = images.shape[1]
  col, row = (np.floor(points[:, k] * size).astype(int)).T
  return images[np.arange(len(images)), row, col]


def test_faces_are_deterministic_and_in_their_box(faces):
  again = synthetic.render_faces(20, image_size=48, seed=3)
  for key in faces:
    np.testing.assert_array_equal(faces[key][:20], again[key])
  assert faces['images'].dtype == np.uint8 and faces['landmarks'].shape == (40, 5, 2)
  x, y = faces['landmarks'][..., 0], faces['landmarks'][..., 1]
  box = faces['face_box']
  assert np.all((y >= box[:, None, 0]) & (y <= box[:, None, 2]))
  assert np.all((x >= box[:, None, 1]) & (x <= box[:, None, 3]))
  assert np.all(faces['landmarks'][:, 0, 0] < faces['landmarks'][:, 1, 0])  # left eye is left


def test_landmarks_sit_on_the_features_they_name(faces):
  """Pupils are dark (< 70 + noise) on every image; mirrored images keep that after the flip."""
  for images, points in ((faces['images'], faces['landmarks']),
                         (faces['images'][:, :, ::-1],
                          np.stack([1 - faces['landmarks'][..., 0], faces['landmarks'][..., 1]],
                                   -1)[:, [1, 0, 2, 4, 3]])):
    for eye in (0, 1):
      assert _pixel(images, points, eye).max() < 100
    mouth = _pixel(images, points, 3).astype(int)
    assert np.mean(mouth[:, 0] > mouth[:, 1]) > 0.9  # lips are red at the corners


def test_empty_scenes_for_localisation():
  out = synthetic.render_scenes(40, objects_per_image=(0, 1), num_classes=3, seed=2)
  empty = out['labels'] == -1
  assert 5 < empty.sum() < 35
  assert np.all(out['boxes'][empty] == 0) and np.all(out['masks'][empty] == 0)
  with pytest.raises(ValueError, match='0 <= min <= max and max >= 1'):
    synthetic.render_scenes(4, objects_per_image=(0, 0))


def _write_split(root, rows, header='image,a_x,a_y,b_x,b_y'):
  split = root / 'train'
  split.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.full((20, 40, 3), 90, np.uint8)).save(split / 'one.png')
  Image.fromarray(np.full((30, 30, 3), 200, np.uint8)).save(split / 'two.png')
  (split / 'landmarks.csv').write_text('\n'.join([header, *rows]) + '\n')
  return split


def test_landmark_folder_normalises_points(tmp_path):
  _write_split(tmp_path, ['one.png,10,5,30,15', 'two.png,0,30,15,15'])
  ds = load_landmark_folder(tmp_path, 'train', image_size=16)
  assert ds.images.shape == (2, 16, 16, 3) and ds.class_names == ('a', 'b')
  np.testing.assert_allclose(ds.extras['landmarks'],
                             [[[0.25, 0.25], [0.75, 0.75]], [[0.0, 1.0], [0.5, 0.5]]])


@pytest.mark.parametrize('header,rows,match', [
    ('image,a_x,b_y', ['one.png,1,2'], 'the header must be image,<name>_x,<name>_y'),
    ('image,a_x,a_y', ['one.png,1'], r'landmarks.csv:2: 2 fields, the header has 3'),
    ('image,a_x,a_y', ['one.png,1,two'], r'landmarks.csv:2: a coordinate is not a number'),
    ('image,a_x,a_y', ['one.png,41,2'], r'landmarks.csv:2: a landmark of one.png lies outside'),
    ('image,a_x,a_y', ['gone.png,1,2'], r'image file .*gone.png is missing'),
])
def test_landmark_folder_errors_name_file_and_line(tmp_path, header, rows, match):
  _write_split(tmp_path, rows, header)
  with pytest.raises((ValueError, FileNotFoundError), match=match):
    load_landmark_folder(tmp_path, 'train', image_size=16)


def test_landmark_csv_missing_or_not_utf8(tmp_path):
  with pytest.raises(FileNotFoundError, match='landmarks.csv is missing'):
    read_landmark_csv(tmp_path / 'landmarks.csv')
  (tmp_path / 'landmarks.csv').write_bytes(b'image,a_x,a_y\n\xff\xfe,1,2\n')
  with pytest.raises(ValueError, match='is not UTF-8 text'):
    read_landmark_csv(tmp_path / 'landmarks.csv')
