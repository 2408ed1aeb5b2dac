"""config.xla_cpu_ynnpack: YNNPACK per compiled step, and auto's recorded choice for resume."""

import json
import shutil

import jax
import numpy as np
import pytest

from cnn_jax.timing import interleaved_ms
from cnn_jax.train import config as config_lib
from cnn_jax.train import cpu_library, loop
from cnn_jax.train.parallel import DataParallel
from cnn_jax.train.restore import load_run
from tests.train.test_loop import tiny_config
from tests.train.test_resume import _final_params, jax_leaves

STEPS = 4


def _config(setting: str):
  c = tiny_config()
  c.model.kwargs.widths = (24, 32)  # over 16 channels: YNNPACK takes the convolutions
  c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = STEPS, 2, 0, 2
  c.data.num_eval = 128
  c.num_devices = 1
  c.xla_cpu_ynnpack = setting
  return c


def _params(workdir):
  return jax_leaves(_final_params(workdir, STEPS))


@pytest.mark.skipif(not cpu_library.applies(), reason='XLA:CPU on a measured jaxlib only')
def test_auto_records_its_choice_and_a_resume_compiles_the_same_program(tmp_path, capsys,
                                                                         monkeypatch):
  """Measured at the first step, written down, and read back by a resumed run.

  The timings are measured, then reported as YNNPACK off winning, so the
  choice does not depend on this machine (off is the one that changes the
  program). The run loses its last checkpoint and is run again, so it resumes
  at step 2. A straight ``off`` run is the reference: bit-identical parameters
  and eval rows; a ``flags`` run's parameters differ, so the comparison can
  tell which program ran the train steps. The eval step is checked by the
  options it was compiled with (its rows may round alike either way).
  """
  measured, eval_options = [], []

  def off_wins(calls, repeats, setup=None):
    measured.append(interleaved_ms(calls, repeats, setup))
    return {'flags': 2.0, 'off': 1.0}

  compile_eval = DataParallel.compile_eval

  def spy(self, eval_step, compiler_options=None):
    eval_options.append(compiler_options)
    return compile_eval(self, eval_step, compiler_options)

  monkeypatch.setattr(cpu_library, 'interleaved_ms', off_wins)
  monkeypatch.setattr(DataParallel, 'compile_eval', spy)
  auto = tmp_path / 'auto'
  loop.train_and_evaluate(_config('auto'), auto, quiet=True)
  (timings,) = measured
  assert set(timings) == {'flags', 'off'} and min(timings.values()) > 0
  record = json.loads((auto / cpu_library.RECORD).read_text())
  assert record['choice'] == 'off' and record['backend'] == 'cpu'
  assert record['ms'] == {'flags': 2.0, 'off': 1.0}
  assert 'xla_cpu_ynnpack=auto: off (train step 2.0 ms with the flags' in capsys.readouterr().out

  shutil.rmtree(auto / 'checkpoints' / str(STEPS))
  loop.train_and_evaluate(_config('auto'), auto, quiet=True)
  out = capsys.readouterr().out
  assert 'resumed at step 2' in out and 'xla_cpu_ynnpack=auto: off, as recorded' in out
  assert len(measured) == 1  # the resumed part did not measure
  assert eval_options == [cpu_library.NO_YNNPACK] * 2  # both parts' eval steps follow the choice

  for setting in ('off', 'flags'):
    loop.train_and_evaluate(_config(setting), tmp_path / setting, quiet=True)
  for x, y in zip(_params(auto), _params(tmp_path / 'off'), strict=True):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, y)
             for x, y in zip(_params(auto), _params(tmp_path / 'flags'), strict=True))
  evals = lambda d: [r for r in map(json.loads, (d / 'metrics.jsonl').read_text().splitlines())
                     if r['split'] == 'eval']
  assert evals(auto) == evals(tmp_path / 'off')
  assert eval_options[2:] == [cpu_library.NO_YNNPACK, None]  # the straight runs, as asked
  # Reports rebuilt from the run compile with its choice too.
  assert load_run(auto, 'latest').compiler_options == cpu_library.NO_YNNPACK


@pytest.mark.skipif(not cpu_library.applies(), reason='XLA:CPU on a measured jaxlib only')
def test_off_compiles_the_step_without_ynnpack():
  dp = DataParallel('jit', jax.devices()[:1])
  f = lambda x: jax.nn.relu(jax.lax.conv_general_dilated(
      x, np.ones((3, 3, 32, 32), np.float32), (1, 1), 'SAME',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
  x = np.ones((2, 8, 8, 32), np.float32)
  hlo = lambda options: dp.compile_eval(lambda s, b: f(b), options).lower(0.0, x).compile(
      ).as_text()
  assert '__ynn_fusion' in hlo(None)
  assert '__ynn_fusion' not in hlo(cpu_library.NO_YNNPACK)


def test_a_resume_keeps_the_record_and_a_fresh_run_measures_again(tmp_path):
  notes = []
  path = tmp_path / cpu_library.RECORD
  path.write_text(json.dumps({'choice': 'off', 'ms': {'flags': 2.0, 'off': 1.0}}))
  lib = cpu_library.Library('auto', path, notes.append, resumed=True)
  if cpu_library.applies():
    assert lib.choice == 'off' and lib.options == cpu_library.NO_YNNPACK
    assert notes == [f'xla_cpu_ynnpack=auto: off, as recorded in {path}']
    # A fresh run in the same folder (other settings, maybe) measures for itself.
    assert cpu_library.Library('auto', path, notes.append).choice is None
    path.write_text('{"choice": "sometimes"')
    notes.clear()
    assert cpu_library.Library('auto', path, notes.append, resumed=True).choice is None
    assert notes == [f"warning: {path} is unreadable, so the first part's program is unknown; "
                     'auto chooses again at the next train step (the rest of the run may round '
                     'differently).']
  else:  # a GPU, another jaxlib: the process flags, said once
    assert lib.choice == 'flags' and 'uses the process flags' in notes[0]
  with pytest.raises(ValueError, match="xla_cpu_ynnpack='fast' is not valid; choose one of"):
    cpu_library.Library('fast', path, notes.append)


def test_config_rejects_pmap_and_unknown_settings():
  c = config_lib.default_config()
  c.xla_cpu_ynnpack, c.parallel = 'off', 'pmap'
  with pytest.raises(ValueError, match='xla_cpu_ynnpack=off sets compiler options per jit '
                                       'program; it needs --config.parallel=jit'):
    config_lib.validate(c)
  c.xla_cpu_ynnpack, c.parallel = 'always', 'jit'
  with pytest.raises(ValueError, match="xla_cpu_ynnpack='always' is not valid; choose one of "
                                       'flags, off, auto'):
    config_lib.validate(c)
