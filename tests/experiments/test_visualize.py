"""experiments/visualize.py on a tiny trained run: every picture, receptive fields, errors."""

import json

import numpy as np
import pytest

from cnn_jax.models import explain
from cnn_jax.train import loop
from cnn_jax.train.config import default_config
from experiments import visualize


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('run')
  c = default_config()
  c.model.kwargs.widths = (4, 8, 8)
  c.data.num_train, c.data.num_eval, c.data.num_classes, c.data.image_size = 128, 40, 4, 32
  c.batch_size, c.eval_batch_size, c.num_steps, c.log_every = 32, 40, 4, 2
  c.num_devices = 1
  loop.train_and_evaluate(c, workdir, quiet=True)
  return workdir


def test_visualize_writes_every_picture(run_dir, tmp_path):
  summary = visualize.run(run_dir, tmp_path, units=[0, 1], top_k=3, image=2)
  assert summary['layers'] == ['conv1', 'conv2', 'conv3']
  assert summary['receptive_fields']['conv1'] == {'size': (3, 3), 'stride': (1, 1),
                                                  'offset': (-1, -1)}
  # conv3 after two 2x2 pools: 3 + 1 + 2*2 + 2*2 + 2*4 = 18, stride 4.
  assert summary['receptive_fields']['conv3']['size'] == (18, 18)
  for name in ('filters.png', 'saliency.png', 'occlusion.png', 'top_patches_conv2.png',
               'activations_conv3.png', 'deconvnet.png'):
    assert (tmp_path / name).stat().st_size > 200, name
  # The deconvnet panel: conv3's 6 most active channels on this image, strongest first.
  deconv = summary['deconvnet']
  assert deconv['layer'] == 'conv3' and deconv['location'] == 'max'
  assert len(deconv['units']) == 6 and len(set(deconv['units'])) == 6
  assert deconv['activations'] == sorted(deconv['activations'], reverse=True)
  assert json.loads((tmp_path / 'visualize.json').read_text())['label'] == summary['label']


def test_saliency_has_the_input_shape():
  x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
  w = np.random.default_rng(1).normal(size=(8 * 8 * 3, 4)).astype(np.float32)
  apply_fn = lambda x: x.reshape(x.shape[0], -1) @ w
  grad, smap = explain.saliency(apply_fn, x, np.array([1, 3]))
  assert grad.shape == x.shape and smap.shape == (2, 8, 8)
  np.testing.assert_allclose(grad[0], w[:, 1].reshape(8, 8, 3), rtol=1e-6)  # linear model


def test_filter_grid_and_tile():
  grid = explain.filter_grid(np.random.default_rng(0).normal(size=(3, 3, 3, 5)))
  assert grid.shape == (3 * 2 + 1, 3 * 3 + 2, 3) and grid.min() >= 0 and grid.max() <= 1
  grey = explain.filter_grid(np.ones((5, 5, 1, 4)))
  assert grey.shape == (11, 11)


def test_bad_input_errors(run_dir, tmp_path):
  with pytest.raises(FileNotFoundError, match='has no config.json'):
    visualize.run(tmp_path, tmp_path / 'o')
  with pytest.raises(ValueError, match=r"layers \['fc'\] are not spatial layers"):
    visualize.run(run_dir, tmp_path / 'o', layers=['fc'])
  with pytest.raises(ValueError, match=r"layers \['fc'\] are not spatial layers"):
    visualize.run(run_dir, tmp_path / 'o', layers=['conv1'], deconv_layer='fc')
  assert visualize.main(['--workdir', str(run_dir), '--image', '999',
                         '--out-dir', str(tmp_path / 'o')]) == 2
