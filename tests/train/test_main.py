"""The CLI: a real run, and one-line errors with a non-zero exit for bad input."""

import re

import pytest

from tests.subprocess_env import run_module


def cli(*args, timeout=240):
  return run_module('cnn_jax.main', *args, timeout=timeout)


def test_tiny_run_end_to_end(tmp_path):
  r = cli('--config=configs/synthetic_cnn.py:steps=20', f'--workdir={tmp_path}', '--quiet',
          '--config.data.num_train=512', '--config.data.num_eval=200',
          '--config.model.kwargs.widths=(8,)', '--config.eval_every=0',
          '--config.log_every=10')
  assert r.returncode == 0, r.stderr
  assert 'final eval accuracy' in r.stdout and 'on 200 examples after 20 steps' in r.stdout
  for name in ('config.json', 'metrics.jsonl', 'metrics.png'):
    assert (tmp_path / name).exists()


@pytest.mark.parametrize('args,message', [
    (['--config.optimizer.lrr=0.1'],
     r"unknown config key 'optimizer.lrr'; did you mean 'optimizer.lr'\?; valid keys of "
     r"optimizer: b1, b2, .*weight_decay\."),
    (['--config.nope=1'], r"unknown config key 'nope'; valid keys of the config: augment, "),
    (['--config.seed.x=1'], r"unknown config key 'seed.x': 'seed' is a value, not a section"),
    # (Small data: the model is built after the data, and the error needs no 12,000 images.)
    (['--config.data.num_train=128', '--config.data.num_eval=16',
      '--config.model.kwargs.widths=abc'],
     r"model 'simple_cnn' cannot be built with model.kwargs=\{'widths': \('abc',\)\}.*TypeError"),
    (['--config.batch_size=abc'], r"--config.batch_size=abc: invalid literal"),
    (['--config.model.name=resnet7'], r"model.name='resnet7' is not valid; choose one of"),
    (['--config.data.name=image_folder', '--config.data.root=/nonexistent/cifar'],
     r'/nonexistent/cifar does not exist'),
])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, args, message):
  r = cli('--config=configs/synthetic_cnn.py', f'--workdir={tmp_path}', *args)
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), r.stderr
  assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize('config,message', [
    ('configs/nope.py', r"config file 'configs/nope.py' does not exist"),
    ('configs/resnet_cifar.py:dept=3', r"bad config argument 'dept=3'.*'depth'"),
])
def test_bad_config_file_or_argument(tmp_path, config, message):
  r = cli(f'--config={config}', f'--workdir={tmp_path}')
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1, r.stderr
  assert re.search(message, lines[0]), lines[0]
