"""TFDS loading through ``tfds.data_source`` without TensorFlow and without network.

Two kinds of data: ``tfds.testing.mock_data`` (random records shaped like the
real MNIST/CIFAR-10, ArrayRecord source mocked), and a tiny dataset really
prepared as ArrayRecord in tmp_path so the on-disk read path runs too.
"""

import subprocess
import sys

import numpy as np
import pytest

tfds = pytest.importorskip('tensorflow_datasets')

from cnn_jax.data import tfds as T  # noqa: E402

class CnnJaxTinyTfds(tfds.core.GeneratorBasedBuilder):
  """Image ``i`` is filled with ``40 * i``, label ``i % 2``.

  The image is a ``Tensor`` feature because encoding an ``Image`` feature (to
  PNG) needs TensorFlow; decoding one does not.
  """
  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Tensor(shape=(6, 6, 3), dtype=np.uint8),
        'label': tfds.features.ClassLabel(names=['even', 'odd'])}))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples(5), 'test': self._generate_examples(3)}

  def _generate_examples(self, n):
    for i in range(n):
      yield i, {'image': np.full((6, 6, 3), 40 * i, np.uint8), 'label': i % 2}


def test_mock_mnist_stays_one_channel():
  with tfds.testing.mock_data(num_examples=7):
    ds = T.load_tfds('mnist', 'train')
    rgb = T.load_tfds('mnist', 'test', channels=3)
  assert ds.images.shape == (7, 28, 28, 1) and ds.images.dtype == np.uint8
  assert ds.labels.dtype == np.int32 and ds.labels.shape == (7,)
  assert ((ds.labels >= 0) & (ds.labels < 10)).all()
  assert ds.class_names == tuple(str(i) for i in range(10))
  assert rgb.images.shape == (7, 28, 28, 3)
  # mock_data yields the same records for every split: channels=3 repeats exactly.
  np.testing.assert_array_equal(rgb.images, np.repeat(ds.images, 3, axis=-1))


def test_mock_cifar10_names_resize_and_gray():
  with tfds.testing.mock_data(num_examples=5):
    ds = T.load_tfds('cifar10', 'train')
    small = T.load_tfds('cifar10', 'test', image_size=16, channels=1)
  assert ds.images.shape == (5, 32, 32, 3)
  # CIFAR-10's names come from the downloaded files and live in the prepared
  # dataset_info.json; the mock has only the code's ClassLabel(num_classes=10).
  assert ds.class_names == tuple(str(i) for i in range(10))
  assert small.images.shape == (5, 16, 16, 1)
  np.testing.assert_array_equal(small.labels, ds.labels)


def test_feature_key_errors():
  with tfds.testing.mock_data(num_examples=2):
    with pytest.raises(ValueError, match=r"image_key 'img' is not a feature.*\['image', 'label'\]"):
      T.load_tfds('mnist', image_key='img')


def test_not_prepared_explains_offline_build(tmp_path):
  with pytest.raises(FileNotFoundError, match=r"'mnist' is not prepared in .*cannot be "
                     r'downloaded.*tfds build mnist --data_dir DIR --file_format array_record'):
    T.load_tfds('mnist', data_dir=tmp_path)


def test_unknown_dataset(tmp_path):
  with pytest.raises(ValueError, match="unknown TFDS dataset 'no_such_set_xyz'"):
    T.load_tfds('no_such_set_xyz', data_dir=tmp_path)


@pytest.fixture(scope='module')
def prepared_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp('tfds')
  CnnJaxTinyTfds(data_dir=str(data_dir), file_format='array_record').download_and_prepare()
  return data_dir


def test_prepared_array_record_dataset(prepared_dir):
  ds = T.load_tfds('cnn_jax_tiny_tfds', 'train', data_dir=prepared_dir)
  assert ds.images.shape == (5, 6, 6, 3) and ds.class_names == ('even', 'odd')
  index = ds.images[:, 0, 0, 0].astype(int) // 40
  assert sorted(index) == [0, 1, 2, 3, 4]
  np.testing.assert_array_equal(ds.labels, index % 2)
  assert (ds.images == ds.images[:, :1, :1, :1]).all()
  gray = T.load_tfds('cnn_jax_tiny_tfds', 'test', data_dir=prepared_dir, channels=1,
                     image_size=(3, 2))
  assert gray.images.shape == (3, 3, 2, 1)
  assert 'tensorflow' not in sys.modules


def test_import_is_light():
  code = ('import sys, cnn_jax.data.tfds, cnn_jax.data.image_folder, cnn_jax.data.stream; '
          "heavy = [m for m in ('tensorflow_datasets', 'grain', 'jax', 'tensorflow') "
          'if m in sys.modules]; assert not heavy, heavy')
  subprocess.run([sys.executable, '-c', code], check=True)
