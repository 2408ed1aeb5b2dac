"""Two processes on localhost (2 CPU devices each) train, checkpoint and resume."""

import json
import re
import signal
import socket
import subprocess
import time

import numpy as np
import pytest
from PIL import Image

from tests.subprocess_env import ROOT, module_command, subprocess_env
from tests.train.test_resume import committed_steps


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _start(workdir, steps, parallel='jit', processes=2, extra=()):
  """Starts ``processes`` processes with 4 // processes CPU devices each: 4 devices in all."""
  port = _free_port()
  env = subprocess_env(devices=4 // processes)
  common = ['--config=configs/synthetic_cnn.py', f'--workdir={workdir}', '--quiet',
            f'--config.num_steps={steps}', '--config.data.num_train=256',
            '--config.data.num_eval=100', '--config.model.kwargs.widths=(8,)',
            '--config.batch_size=32', '--config.eval_batch_size=40',
            '--config.checkpoint_every=10', '--config.log_every=5', '--config.eval_every=0',
            f'--config.parallel={parallel}', *extra]
  if processes > 1:
    common += [f'--config.distributed.coordinator_address=localhost:{port}',
               f'--config.distributed.num_processes={processes}']
  procs = [subprocess.Popen(module_command('cnn_jax.main', *common) +
                            ([f'--config.distributed.process_id={i}'] if processes > 1 else []),
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
           for i in range(processes)]
  return procs


def _launch(workdir, steps, parallel='jit', processes=2, extra=()):
  procs = _start(workdir, steps, parallel, processes, extra)
  outs = [p.communicate(timeout=240) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-2000:]
  return [o[0] for o in outs]


def _train_losses(workdir):
  rows = [json.loads(line) for line in (workdir / 'metrics.jsonl').read_text().splitlines()]
  return [r['loss'] for r in rows if r['split'] == 'train']


def _image_folder(root):
  rng = np.random.default_rng(0)
  for split, n in (('train', 40), ('test', 10)):
    for k in range(4):
      folder = root / split / f'class{k}'
      folder.mkdir(parents=True)
      for i in range(n):
        img = np.clip(rng.normal(60 * k + 30, 30, (8, 8, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f'{i}.png')
  return root


@pytest.mark.slow
def test_two_processes_under_pmap_match_one_process(tmp_path):
  """Streamed data, each process decoding only its rows; pmap's BatchNorm and
  gradient pmeans must span both hosts, not each host.

  Augmentation is off: pmap draws each device's flips from its own key
  (``fold_in(axis_index)``), so only the jit path reproduces one device's draws.
  """
  root = _image_folder(tmp_path / 'data')
  extra = ['--config.augment.flip=False', '--config.data.name=image_folder',
           f'--config.data.root={root}', '--config.data.streaming=True',
           '--config.data.image_size=8', '--config.data.num_workers=2']
  _launch(tmp_path / 'one', steps=10, processes=1, extra=extra)
  reference = _train_losses(tmp_path / 'one')
  # pmap: the harder path (jit's SPMD partitioner spans hosts by construction;
  # test_two_processes_train_checkpoint_and_resume runs it on two processes).
  out = _launch(tmp_path / 'pmap', steps=10, parallel='pmap', extra=extra)
  assert 'after 10 steps' in out[0] and 'on 40 examples' in out[0]
  np.testing.assert_allclose(_train_losses(tmp_path / 'pmap'), reference, rtol=1e-4)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_then_both_resume(tmp_path):
  """A preempted host must not leave the other one alone in the collective save; the
  same command on both hosts then resumes from that checkpoint and finishes."""
  procs = _start(tmp_path, steps=100_000)  # long enough never to finish
  metrics = tmp_path / 'metrics.jsonl'
  deadline = time.time() + 180
  while time.time() < deadline and not (metrics.exists() and metrics.read_text().strip()):
    assert all(p.poll() is None for p in procs), procs[0].communicate()[1][-2000:]
    time.sleep(0.1)
  procs[1].send_signal(signal.SIGTERM)  # only process 1 is told
  outs = [p.communicate(timeout=120) for p in procs]
  assert [p.returncode for p in procs] == [143, 143], [o[1][-1000:] for o in outs]
  stopped = {int(re.search(r'after step (\d+)', o[1]).group(1)) for o in outs}
  assert len(stopped) == 1  # both stopped after the same step, and saved it
  step = stopped.pop()
  assert step % 5 == 0  # the flag is exchanged every log_every steps
  assert step in committed_steps(tmp_path)

  out = _launch(tmp_path, steps=step + 10)  # a shorter run: resumes at `step`, ends at +10
  assert all('final eval accuracy' in o for o in out)
  assert f'on 100 examples after {step + 10} steps' in out[0]
  assert committed_steps(tmp_path)[-1] == step + 10
  rows = [json.loads(line) for line in metrics.read_text().splitlines()]
  assert [r['step'] for r in rows if r['split'] == 'train'] == list(range(5, step + 11, 5))
