"""The experiment scripts' shared command line: one-line errors, exit status 2."""

import pytest

from tests.subprocess_env import run_module


def script(module, *args):
  return run_module(module, *args, timeout=120)


@pytest.mark.parametrize('module,args,message', [
    ('experiments.speedrun', ['--config=configs/cifar_speedrun.py', '--workdir=WORK'],
     'error: data=folder needs --config.root=DIR'),
    ('experiments.detect', ['report', 'WORK/nothing'],
     'error: WORK/nothing has no config.json; pass the --workdir of a cnn_jax.main'),
    ('experiments.segment', ['report', 'WORK'], 'error: no training run in WORK'),
    ('experiments.face_verify', ['report', 'WORK'], 'error: WORK has no config.json'),
    ('experiments.style_transfer', ['--config=configs/style_transfer.py'],
     'error: both --config=configs/style_transfer.py and --out_dir=DIR are required.'),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, module, args, message):
  r = script(module, *(a.replace('WORK', str(tmp_path)) for a in args))
  assert r.returncode == 2, r.stderr
  lines = r.stderr.strip().splitlines()
  message = message.replace('WORK', str(tmp_path))
  assert len(lines) == 1 and lines[0].startswith(message), r.stderr
