"""Two processes on localhost (2 CPU devices each) train, checkpoint and resume."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).parents[2]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _launch(workdir, steps):
  port = _free_port()
  env = dict(os.environ, JAX_PLATFORMS='cpu',
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  common = ['--config=configs/synthetic_cnn.py', f'--workdir={workdir}', '--quiet',
            f'--config.num_steps={steps}', '--config.data.num_train=256',
            '--config.data.num_eval=100', '--config.model.kwargs.widths=(8,)',
            '--config.batch_size=32', '--config.eval_batch_size=40',
            '--config.checkpoint_every=10', '--config.log_every=5', '--config.eval_every=0',
            f'--config.distributed.coordinator_address=localhost:{port}',
            '--config.distributed.num_processes=2']
  procs = [subprocess.Popen([sys.executable, '-m', 'cnn_jax.main', *common,
                             f'--config.distributed.process_id={i}'], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=240) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  return [o[0] for o in outs]


@pytest.mark.slow
def test_two_processes_train_checkpoint_and_resume(tmp_path):
  out = _launch(tmp_path, steps=20)
  assert all('final eval accuracy' in o for o in out)
  assert 'on 100 examples after 20 steps' in out[0]
  steps = sorted(int(p.name) for p in (tmp_path / 'checkpoints' / 'latest').iterdir()
                 if p.name.isdigit())
  assert steps[-1] == 20
  # Only process 0 writes logs: one row per (split, step).
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in rows if r['split'] == 'train'] == [5, 10, 15, 20]
  # The same command with more steps resumes from step 20 on both processes.
  _launch(tmp_path, steps=30)
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [r['step'] for r in rows if r['split'] == 'train'] == [5, 10, 15, 20, 25, 30]
