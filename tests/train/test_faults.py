"""Faults the loop survives or names in one line: damaged checkpoints, bad workdirs, models."""

import hashlib
import pathlib
import shutil

import jax
import numpy as np
import pytest

from cnn_jax import models
from cnn_jax.importing import load_object
from cnn_jax.train import loop, optim
from cnn_jax.train.state import create_train_state
from tests.subprocess_env import run_module
from tests.train.test_loop import tiny_config


def _cli(workdir, *extra):
  return run_module(
      'cnn_jax.main', '--config=configs/synthetic_cnn.py',
      f'--workdir={workdir}', '--quiet', '--config.num_steps=30',
      '--config.data.num_train=256', '--config.data.num_eval=64', '--config.data.image_size=16',
      '--config.data.num_classes=4', '--config.model.kwargs.widths=(4,8)',
      '--config.batch_size=32', '--config.eval_batch_size=64', '--config.checkpoint_every=10',
      '--config.log_every=10', '--config.eval_every=0', *extra)


def _damage(step_dir: pathlib.Path, how: str) -> None:
  files = [f for f in (step_dir / 'state').rglob('*') if f.is_file()]
  assert files
  for f in files:
    data = f.read_bytes()
    f.write_bytes(data[:len(data) // 2] if how == 'truncate' else b'\x00garbage' * 8)


def _digest(folder: pathlib.Path) -> dict:
  return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
          for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def twenty_steps(run_once):
  """A 20-step CLI run (checkpoints 10 and 20), trained once; each test damages a copy."""

  def train(folder):
    r = _cli(folder, '--config.num_steps=20')
    assert r.returncode == 0, r.stderr
    return str(folder)

  return pathlib.Path(run_once('faults-twenty-steps', train))


def _copy_run(run: pathlib.Path, to: pathlib.Path) -> pathlib.Path:
  shutil.copytree(run, to, ignore=shutil.ignore_patterns('result.json'))
  return to


@pytest.mark.slow
def test_unreadable_newest_checkpoint_resumes_from_the_one_before(twenty_steps, tmp_path):
  run = _copy_run(twenty_steps, tmp_path / 'run')
  _damage(run / 'checkpoints' / '20', 'truncate')
  r = _cli(run)  # 30 steps: resumes from step 10 and finishes
  assert r.returncode == 0, r.stderr
  out = r.stdout + r.stderr
  warnings = [line for line in out.splitlines() if line.startswith('warning:')]
  assert len(warnings) == 1 and 'checkpoint step 20' in warnings[0], out
  assert 'unreadable' in warnings[0] and 'resumed from step 10' in warnings[0]
  assert 'Traceback' not in out and 'tensorstore' not in out.lower()
  assert 'resumed at step 10' in r.stdout and 'after 30 steps' in r.stdout
  # The damaged files are kept aside, not deleted: nothing already written is lost.
  assert list((run / 'checkpoints').glob('unreadable*/20'))


@pytest.mark.slow
def test_no_readable_checkpoint_is_one_error_line(twenty_steps, tmp_path):
  run = _copy_run(twenty_steps, tmp_path / 'run')
  for step in (10, 20):
    _damage(run / 'checkpoints' / str(step), 'garbage')
  before = _digest(run)
  r = _cli(run)
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: no readable checkpoint in '), r.stderr
  assert str(run / 'checkpoints') in lines[0]
  assert _digest(run) == before  # nothing touched


def test_workdir_that_is_a_file(tmp_path):
  path = tmp_path / 'run'
  path.write_text('notes')
  with pytest.raises(ValueError, match=r'--workdir .*run exists and is not a folder'):
    loop.train_and_evaluate(tiny_config(), path, quiet=True)
  assert path.read_text() == 'notes'


def test_workdir_that_cannot_be_written():
  # /sys refuses new folders even to root (a read-only permission check would not).
  with pytest.raises(ValueError, match=r'--workdir /sys/cnn_jax_test is not writable'):
    loop.train_and_evaluate(tiny_config(), '/sys/cnn_jax_test', quiet=True)


def test_workdir_of_another_model_is_left_alone(tmp_path):
  c = tiny_config()
  c.num_steps, c.eval_every = 10, 0
  loop.train_and_evaluate(c, tmp_path, quiet=True)
  before = _digest(tmp_path)
  other = tiny_config()
  other.model.name = 'lenet5'
  other.model.kwargs = type(other.model.kwargs)()
  with pytest.raises(ValueError, match=r"holds a run of model 'simple_cnn', not 'lenet5'"):
    loop.train_and_evaluate(other, tmp_path, quiet=True)
  wider = tiny_config()
  wider.model.kwargs.widths = (16, 32)
  with pytest.raises(ValueError, match='holds a run of model.kwargs'):
    loop.train_and_evaluate(wider, tmp_path, quiet=True)
  assert _digest(tmp_path) == before


# ---------------------------------------------------------------------------- models by path

NET_FILE = '''
import flax.linen as nn
from cnn_jax.ops import compose


def build(num_classes=10, width=4):
  return compose.sequential(compose.conv_bn(width, 3), compose.relu,
                            compose.global_avg_pool, compose.dense(num_classes))


class Net(nn.Module):
  num_classes: int = 10

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(self.num_classes)(x.mean((1, 2)))


not_a_model = 3
'''


@pytest.fixture()
def user_module(tmp_path, monkeypatch):
  (tmp_path / 'user_nets.py').write_text(NET_FILE)
  monkeypatch.syspath_prepend(str(tmp_path))
  return tmp_path / 'user_nets.py'


@pytest.mark.parametrize('spec', ['user_nets:build', 'user_nets:Net', 'FILE:build'])
def test_a_user_model_by_path_trains(user_module, tmp_path, spec):
  c = tiny_config()
  c.model.name = spec.replace('FILE', str(user_module))
  c.model.kwargs = type(c.model.kwargs)({'width': 4} if spec.endswith('build') else {})
  c.num_steps, c.eval_every, c.num_devices = 4, 0, 1
  result = loop.train_and_evaluate(c, tmp_path / 'run', quiet=True)
  assert result['steps'] == 4 and np.isfinite(result['eval']['loss'])


@pytest.mark.parametrize('spec, message', [
    ('no_such_module:build', "cannot import 'no_such_module'"),
    ('user_nets:missing', "has no attribute 'missing'"),
    ('user_nets:not_a_model', 'not a model class or function'),
    ('/no/such/file.py:build', "file '/no/such/file.py' does not exist"),
])
def test_a_bad_model_path_is_one_line(user_module, spec, message):
  with pytest.raises(ValueError, match=message) as info:
    models.get_model(spec, num_classes=3)
  assert '\n' not in str(info.value)


def test_composed_network_variables_are_its_init():
  from cnn_jax.train.config import load_config
  c = load_config('composed_cifar', 'depth=8')
  model = models.get_model(c.model.name, num_classes=10, depth=8, widths=(4, 8, 16))
  assert isinstance(model, models.Functional)
  tx = optim.make_optimizer(c, optim.make_schedule(c, 10))
  key = jax.random.key(3)
  state = create_train_state(model, tx, key, (1, 32, 32, 3))
  build = load_object(c.model.name, 'model')
  params, batch_stats, _ = build(10, depth=8, widths=(4, 8, 16)).init(key, (1, 32, 32, 3))
  for a, b in ((state.params, params), (state.batch_stats, batch_stats)):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(x, y)
