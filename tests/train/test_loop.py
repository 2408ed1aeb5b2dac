"""train_and_evaluate end to end on tiny data: outputs, exact eval, streaming, NaN."""

import json

import numpy as np
import pytest
from PIL import Image

from cnn_jax.train import loop
from cnn_jax.train.config import default_config
from cnn_jax.train.logging import read_metrics


def tiny_config():
  c = default_config()
  c.model.kwargs.widths = (8, 16)
  c.data.num_train, c.data.num_eval = 512, 300  # 300 is not a multiple of 128
  c.data.num_classes = 4
  c.data.image_size = 16
  c.batch_size = 32
  c.eval_batch_size = 128
  c.num_steps = 40
  c.log_every = 10
  c.eval_every = 20
  c.optimizer.lr = 0.05
  c.augment.flip = True
  return c


def test_synthetic_run_writes_every_output(tmp_path):
  result = loop.train_and_evaluate(tiny_config(), tmp_path, quiet=True)
  assert result['steps'] == 40 and result['eval']['count'] == 300
  assert result['eval']['accuracy'] > 0.4  # 4 classes: chance is 0.25
  assert json.loads((tmp_path / 'config.json').read_text())['num_steps'] == 40
  rows = read_metrics(tmp_path / 'metrics.jsonl')
  assert [r['step'] for r in rows['train']] == [10, 20, 30, 40]
  assert [r['step'] for r in rows['eval']] == [20, 40]
  for key in ('loss', 'accuracy', 'lr', 'grad_norm', 'img_per_sec', 'epoch'):
    assert np.isfinite(rows['train'][-1][key])
  assert list((tmp_path / 'tensorboard').glob('events.out.tfevents.*'))
  assert (tmp_path / 'metrics.png').stat().st_size > 1000


def test_streamed_image_folder_run(tmp_path):
  root = tmp_path / 'data'
  rng = np.random.default_rng(0)
  for split, n in (('train', 24), ('test', 10)):
    for k, colour in enumerate(((250, 20, 20), (20, 20, 250))):
      folder = root / split / f'class{k}'
      folder.mkdir(parents=True)
      for i in range(n):
        img = np.clip(rng.normal(colour, 20, (12, 12, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f'{i}.png')
  c = tiny_config()
  c.data.name, c.data.root, c.data.streaming = 'image_folder', str(root), True
  c.data.num_workers = 2
  c.batch_size, c.num_steps, c.eval_every, c.log_every = 8, 12, 0, 6
  result = loop.train_and_evaluate(c, tmp_path / 'run', quiet=True)
  assert result['eval']['count'] == 20
  assert result['eval']['accuracy'] >= 0.9  # red vs blue


def test_nan_loss_stops_with_the_step(tmp_path):
  c = tiny_config()
  c.optimizer.lr = 1e12
  c.schedule.name = 'constant'
  with pytest.raises(loop.NonFiniteLossError, match=r'loss became (nan|inf) at step \d+'):
    loop.train_and_evaluate(c, tmp_path, quiet=True)


def test_tfds_run_through_the_loop_with_mock_data(tmp_path, capsys):
  """The lenet5_mnist config's data path end to end (tfds.data_source, mocked records)."""
  tfds = pytest.importorskip('tensorflow_datasets')
  from cnn_jax.train.config import load_config
  c = load_config('lenet5_mnist')
  c.num_steps, c.log_every, c.eval_every, c.batch_size, c.eval_batch_size = 4, 2, 0, 16, 16
  with tfds.testing.mock_data(num_examples=48):
    result = loop.train_and_evaluate(c, tmp_path, quiet=False)
  assert result['steps'] == 4 and result['eval']['count'] == 48
  assert np.isfinite(result['eval']['loss'])
  bar = capsys.readouterr().err  # the progress bar (quiet=False): steps, ETA, img/s
  assert '4/4' in bar and 'img_s=' in bar
