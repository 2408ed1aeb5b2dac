"""Exact resume after SIGKILL (every task), checkpoint on SIGTERM, mismatched configs, NaN."""

import json
import pathlib
import re
import signal
import subprocess
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from cnn_jax.train import loop
from tests.subprocess_env import ROOT, module_command, run_module, subprocess_env
from tests.tasks.configs import STEPS as TASK_STEPS, TASK_CONFIGS, cli_overrides
from tests.train.test_loop import tiny_config

STEPS = 240


def _args(workdir, *extra):
  """``cnn_jax.main``'s flags for the synthetic run."""
  return ['--config=configs/synthetic_cnn.py', f'--workdir={workdir}', '--quiet',
          f'--config.num_steps={STEPS}', '--config.data.num_train=320',
          '--config.data.num_eval=150', '--config.model.kwargs.widths=(8,16)',
          '--config.batch_size=32',
          '--config.checkpoint_every=40', '--config.log_every=20', '--config.eval_every=80',
          *extra]


def _task_args(name, workdir):
  """The shared run's tiny task config (tests/tasks/configs.py) as command-line flags."""
  return [f'--config=configs/{name}.py', f'--workdir={workdir}', '--quiet',
          *cli_overrides(name), '--config.num_devices=1']


def committed_steps(workdir) -> list[int]:
  """The committed checkpoint steps of a run folder (none if it has no checkpoints yet)."""
  folder = pathlib.Path(workdir) / 'checkpoints'
  return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.exists() else []


def _run_until_checkpoint(workdir, sig, min_step=80, args=None, devices=1):
  """Starts ``cnn_jax.main`` and sends ``sig`` once a checkpoint at >= min_step is committed."""
  proc = subprocess.Popen(module_command('cnn_jax.main', *(args or _args(workdir))), cwd=ROOT,
                          env=subprocess_env(devices), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 240
  while time.time() < deadline and proc.poll() is None:
    if any(s >= min_step for s in committed_steps(workdir)):
      break
    time.sleep(0.05)
  assert proc.poll() is None, 'the run finished before it could be interrupted'
  proc.send_signal(sig)
  out, err = proc.communicate(timeout=120)
  return proc.returncode, out, err


def _final_params(workdir, steps=STEPS):
  path = pathlib.Path(workdir) / 'checkpoints' / str(steps) / 'state'
  return ocp.StandardCheckpointer().restore(path.resolve())


def _rows(workdir):
  return [json.loads(line) for line in (pathlib.Path(workdir) / 'metrics.jsonl').read_text()
          .splitlines()]


@pytest.fixture(scope='module')
def uninterrupted(run_once):
  """The reference run, trained once for both xdist workers (its tests only read it)."""

  def train(folder):
    r = run_module('cnn_jax.main', *_args(folder))
    assert r.returncode == 0, r.stderr
    return str(folder)

  return pathlib.Path(run_once('resume-uninterrupted', train))


def _assert_same_run(a, b, steps=STEPS):
  pa, pb = _final_params(a, steps), _final_params(b, steps)
  flat_a, flat_b = (jax_leaves(p) for p in (pa, pb))
  assert len(flat_a) == len(flat_b)
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_array_equal(x, y)  # bit-identical
  eval_a = [r for r in _rows(a) if r['split'] == 'eval']
  eval_b = [r for r in _rows(b) if r['split'] == 'eval']
  assert eval_a == eval_b


def jax_leaves(tree):
  return [np.asarray(x) for x in jax.tree.leaves(tree)]


@pytest.mark.slow
def test_sigterm_then_sigkill_then_same_command_is_bit_identical(uninterrupted, tmp_path):
  """Stopped by SIGTERM (a checkpoint, exit 143), rerun, killed by SIGKILL, rerun: the same run.

  One chain rather than two tests: each interruption costs a run of the CLI.
  """
  code, _, err = _run_until_checkpoint(tmp_path, signal.SIGTERM, min_step=40)
  assert code == 143, err
  assert 'stopped by SIGTERM after step' in err and 'rerun the same command' in err
  stopped_at = int(err.split('after step ')[1].split(';')[0])
  assert stopped_at in committed_steps(tmp_path)
  code, _, err = _run_until_checkpoint(tmp_path, signal.SIGKILL, min_step=stopped_at + 40)
  assert code == -signal.SIGKILL, err
  r = run_module('cnn_jax.main', *_args(tmp_path))
  assert r.returncode == 0, r.stderr
  _assert_same_run(uninterrupted, tmp_path)
  rows = _rows(tmp_path)
  keys = [(r['split'], r['step']) for r in rows]
  assert len(keys) == len(set(keys)), 'metrics.jsonl has duplicated rows after resume'
  assert [r['step'] for r in rows if r['split'] == 'train'] == list(range(20, STEPS + 1, 20))


@pytest.mark.slow
@pytest.mark.parametrize('name', TASK_CONFIGS)
def test_every_task_resumes_bit_identically_after_sigkill(name, task_runs, tmp_path):
  """YOLO, FCN-8s, triplet embeddings, a composed network: kill, rerun, same.

  The uninterrupted run is the shared in-process run of the same config.
  """
  whole, first = task_runs[name]
  killed = tmp_path / 'killed'
  code, _, err = _run_until_checkpoint(killed, signal.SIGKILL, min_step=15,
                                       args=_task_args(name, killed), devices=None)
  assert code == -signal.SIGKILL, err
  r = run_module('cnn_jax.main', *_task_args(name, killed), devices=None, timeout=400)
  assert r.returncode == 0, r.stderr
  assert 'resumed at step' in r.stdout, r.stdout
  _assert_same_run(whole, killed, TASK_STEPS)  # params bit-identical, eval rows equal
  # Both pick the same best step by the task's headline metric.
  headline, step = re.search(r'best (\w+) at step (\d+)', r.stdout).groups()
  assert (headline, int(step)) == (first['headline'], first['best_step'])
  assert headline == {'detect': 'mAP50', 'segment': 'mean_iou', 'face_verify': 'val_auc',
                      'composed_cifar': 'accuracy'}[name]


@pytest.mark.slow
def test_mismatched_config_is_an_error_not_a_reinit(uninterrupted):
  before = committed_steps(uninterrupted)
  config_json = (uninterrupted / 'config.json').read_text()
  r = run_module('cnn_jax.main', *_args(uninterrupted, '--config.data.num_classes=4'))
  assert r.returncode == 2
  assert 'does not match this config' in r.stderr and 'has shape' in r.stderr
  assert re.search(r'params/fc/(bias|kernel) has shape \((16, )?10,?\) in the checkpoint '
                   r'but \((16, )?4,?\) here', r.stderr), r.stderr
  assert len(r.stderr.strip().splitlines()) == 1
  assert committed_steps(uninterrupted) == before
  assert (uninterrupted / 'config.json').read_text() == config_json  # nothing overwritten


def test_nan_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  c = tiny_config()
  c.num_steps, c.checkpoint_every, c.log_every, c.eval_every = 200, 5, 5, 0
  c.schedule.name, c.schedule.warmup_steps = 'constant', 200
  c.optimizer.lr = 1e3  # the warmup ramps it up until the run diverges (step ~15)
  c.optimizer.weight_decay = 0.0
  with pytest.raises(loop.NonFiniteLossError, match=r'(loss|parameters) became .*at step \d+'
                     ) as info:
    loop.train_and_evaluate(c, tmp_path, quiet=True)
  bad_step = int(info.value.args[0].split('at step ')[1].split(';')[0])
  saved = committed_steps(tmp_path)
  assert saved and max(saved) < bad_step
  state = ocp.StandardCheckpointer().restore((tmp_path / 'checkpoints' /
                                              str(max(saved)) / 'state').resolve())
  assert all(np.isfinite(x).all() for x in jax_leaves(state))
