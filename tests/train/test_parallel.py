"""Data parallel on 8 simulated CPU devices: jit-sharded, pmap and one device agree."""

import chex
import jax
import pytest

from cnn_jax.train import loop
from cnn_jax.train.parallel import DataParallel, check_divisible
from tests.train.test_loop import tiny_config


def run(tmp_path, name, *, parallel, num_devices, flip=False):
  c = tiny_config()
  c.parallel, c.num_devices = parallel, num_devices
  c.num_steps, c.eval_every, c.log_every = 12, 0, 4
  c.augment.flip = flip
  c.checkpoint_every = 1000
  return loop.train_and_evaluate(c, tmp_path / name, quiet=True)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  assert jax.device_count() == 8, 'conftest simulates 8 CPU devices'
  tmp = tmp_path_factory.mktemp('parallel')
  return {name: run(tmp, name, parallel=p, num_devices=n)
          for name, (p, n) in {'single': ('jit', 1), 'jit8': ('jit', 8),
                               'pmap8': ('pmap', 8)}.items()}


@pytest.mark.parametrize('name', ['jit8', 'pmap8'])
def test_same_params_loss_and_batch_stats_as_one_device(runs, name):
  ref, got = runs['single'], runs[name]
  # BatchNorm statistics are global in all three (pmean under pmap), so the
  # runs differ only by the order of floating-point reductions.
  chex.assert_trees_all_close(got['state'].params, ref['state'].params, atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(got['state'].batch_stats, ref['state'].batch_stats, atol=1e-5,
                              rtol=1e-5)
  assert got['train']['loss'] == pytest.approx(ref['train']['loss'], abs=1e-5)
  assert got['eval']['loss'] == pytest.approx(ref['eval']['loss'], abs=1e-5)
  assert got['eval']['count'] == ref['eval']['count'] == 300


def test_jit_sharding_keeps_augmentation_identical(tmp_path):
  a = run(tmp_path, 'a', parallel='jit', num_devices=1, flip=True)
  b = run(tmp_path, 'b', parallel='jit', num_devices=8, flip=True)
  chex.assert_trees_all_close(a['state'].params, b['state'].params, atol=1e-5, rtol=1e-5)


def test_batch_not_divisible_by_devices(tmp_path):
  with pytest.raises(ValueError, match=r'batch_size=30 is not divisible by the 8 devices; use a '
                                       r'multiple of 8, e.g. --config.batch_size=32'):
    check_divisible(30, 8, 'batch_size')
  c = tiny_config()
  c.batch_size = 36
  with pytest.raises(ValueError, match='batch_size=36 is not divisible'):
    loop.train_and_evaluate(c, tmp_path, quiet=True)
  c = tiny_config()
  c.num_devices = 9
  with pytest.raises(ValueError, match='num_devices=9 but only 8 devices'):
    loop.train_and_evaluate(c, tmp_path, quiet=True)


def test_unknown_mode():
  with pytest.raises(ValueError, match="unknown parallel mode 'pjit'"):
    DataParallel('pjit')
