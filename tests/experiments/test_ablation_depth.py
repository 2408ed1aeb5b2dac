"""The depth ablation: smoke sweep end to end, resumable, report from partial sweeps."""

import csv
import json

import pytest

from experiments import ablation_depth as ab


@pytest.fixture(scope='module')
def sweep(tmp_path_factory):
  root = tmp_path_factory.mktemp('ablation')
  assert ab.main(['run', '--sweep-dir', str(root), '--smoke', '--depths', '8', '--seeds',
                  '2']) == 0
  return root


def test_outputs(sweep):
  rows = json.loads((sweep / 'results.json').read_text())
  assert [(r['net'], r['depth'], r['seeds'], r['finished']) for r in rows] == [
      ('plain', 8, 2, 2), ('residual', 8, 2, 2)]
  for r in rows:
    assert 0 <= r['final_test_error_mean'] <= 100 and r['final_test_error_std'] >= 0
    assert r['best_test_error_mean'] <= r['final_test_error_mean'] + 1e-9
    assert r['params'] > 0 and r['img_per_sec_mean'] > 0 and r['steps'] == 12
  # Plain and residual nets have the same parameters (option A shortcuts).
  assert rows[0]['params'] == rows[1]['params']
  with open(sweep / 'results.csv') as f:
    csv_rows = list(csv.DictReader(f))
  assert [r['net'] for r in csv_rows] == ['plain', 'residual']
  assert 'final_test_error_std' in csv_rows[0]
  table = (sweep / 'results.md').read_text()
  assert '| Plain-8 |' in table and '| ResNet-8 |' in table and 'JPEG' in table
  assert (sweep / 'fig6.png').stat().st_size > 5000
  for name in ('plain8_seed0', 'residual8_seed1'):
    assert json.loads((sweep / name / 'result.json').read_text())['steps'] == 12


def test_rerun_skips_finished_and_resumes_interrupted(sweep, capsys):
  before = (sweep / 'plain8_seed0' / 'result.json').read_text()
  (sweep / 'residual8_seed1' / 'result.json').unlink()  # as if killed before it finished
  assert ab.main(['run', '--sweep-dir', str(sweep), '--smoke', '--depths', '8', '--seeds',
                  '2']) == 0
  out = capsys.readouterr().out
  assert out.count('finished, skipped') == 3
  assert 'residual8_seed1: training 12 steps (resuming)' in out
  assert (sweep / 'plain8_seed0' / 'result.json').read_text() == before
  assert json.loads((sweep / 'residual8_seed1' / 'result.json').read_text())[
      'resumed_from'] == 12


def test_report_from_a_partial_sweep(sweep, tmp_path):
  import shutil
  partial = tmp_path / 'partial'
  shutil.copytree(sweep / 'plain8_seed0', partial / 'plain8_seed0')
  shutil.copytree(sweep / 'residual8_seed0', partial / 'residual8_seed0')
  (partial / 'residual8_seed0' / 'result.json').unlink()  # still running
  assert ab.main(['report', str(partial)]) == 0
  rows = json.loads((partial / 'results.json').read_text())
  assert [(r['net'], r['seeds'], r['finished']) for r in rows] == [('plain', 1, 1),
                                                                   ('residual', 1, 0)]
  assert (partial / 'fig6.png').exists()
  with pytest.raises(SystemExit, match='does not exist'):
    ab.main(['report', str(tmp_path / 'nowhere')])


def test_config_follows_the_paper():
  c = ab.make_config(ab.Sweep(data='folder', data_root='/data/cifar10'), 'plain', 56, 1)
  assert (c.model.kwargs.depth, c.model.kwargs.plain, c.model.kwargs.shortcut) == (56, True, 'A')
  assert (c.batch_size, c.optimizer.lr, c.optimizer.momentum, c.optimizer.weight_decay) == (
      128, 0.1, 0.9, 1e-4)
  assert c.num_steps == 64_000 and tuple(c.schedule.decay_steps) == (32_000, 48_000)
  assert c.augment.crop_padding == 4 and c.augment.flip and c.seed == 1
  with pytest.raises(ValueError, match='--data-root DIR is required'):
    ab.make_config(ab.Sweep(data='folder'), 'plain', 20, 0)
  with pytest.raises(SystemExit):
    ab.main(['run', '--sweep-dir', '/tmp/x', '--depths', '21'])
