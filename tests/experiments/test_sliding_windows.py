"""The sliding-window report on a few steps of configs/sliding_windows.py."""

import json

import numpy as np
import pytest

from cnn_jax.train import loop
from cnn_jax.train.config import load_config
from experiments import sliding_windows


def test_mosaics_tile_images_row_major():
  images = np.arange(18 * 2 * 2 * 1, dtype=np.uint8).reshape(18, 2, 2, 1)
  m, labels = sliding_windows.mosaics(images, np.arange(18))
  assert m.shape == (2, 6, 6, 1) and labels.shape == (2, 3, 3)
  np.testing.assert_array_equal(m[1, 2:4, 4:6], images[9 + 5])  # mosaic 1, row 1, column 2
  assert labels[1, 1, 2] == 14


def test_report_agrees_with_the_loop_and_draws(tmp_path):
  c = load_config('sliding_windows', 'steps=4')
  c.data.num_train, c.data.num_eval, c.batch_size = 64, 18, 16
  c.log_every, c.eval_every, c.checkpoint_every, c.num_devices = 1, 4, 4, 1
  loop.train_and_evaluate(c, tmp_path, quiet=True)
  r = sliding_windows.report(tmp_path, 'latest', pictures=2)
  assert r['mosaics'] == 2 and r['windows_per_mosaic'] == 17 * 17
  assert r['max_abs_diff'] <= 1e-4 * max(1.0, r['max_abs_logit'])
  assert 0.0 <= r['tile_window_accuracy'] <= 1.0
  assert (tmp_path / 'sliding_windows.png').stat().st_size > 3000
  assert json.loads((tmp_path / 'results.json').read_text()) == pytest.approx(r)
