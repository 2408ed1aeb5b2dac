"""The depth ablation: smoke sweep end to end, resumable, report from partial sweeps."""

import csv
import json
import pathlib
import shutil

import pytest

from experiments import ablation_depth as ab


@pytest.fixture(scope='module')
def sweep(run_once):
  """The smoke sweep, run once for all workers; tests that change it work on a copy."""

  def run(root):
    assert ab.main(['run', '--sweep-dir', str(root), '--smoke', '--depths', '8', '--seeds',
                    '2']) == 0
    return str(root)

  return pathlib.Path(run_once('ablation_sweep', run))


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


def test_seeds_trained_together(tmp_path):
  """--num-seeds: groups of seeds share a workdir; the report reads each seed's folder.

  (The training itself is tests/train/test_num_seeds.py's and the general sweep's.)"""
  from experiments import sweep as sw
  sweep = ab.Sweep(depths=(8,), seeds=3, num_seeds=2, data='synthetic', smoke=True)
  assert sweep.groups() == [('plain', 8, (0, 1)), ('residual', 8, (0, 1)),
                            ('plain', 8, (2,)), ('residual', 8, (2,))]
  assert [ab.group_name(n, d, s) for n, d, s in sweep.groups()[1:3]] == [
      'residual8_seeds0-1', 'plain8_seed2']
  root = tmp_path / 'together'
  ab.write_sweep_file(sweep, root)
  runs = json.loads((root / 'sweep.json').read_text())['runs']
  assert [r['dir'] for r in runs if r['cell']['model.kwargs.plain']] == [
      'plain8_seeds0-1/seeds/0', 'plain8_seeds0-1/seeds/1', 'plain8_seed2']
  accuracy = {0: 0.5, 1: 0.7, 2: 0.9}
  for r in runs:  # what the loop and run_or_skip leave behind, by hand
    folder = root / r['dir']
    folder.mkdir(parents=True)
    group = root / r['group']
    (group / 'config.json').write_text(json.dumps({'batch_size': 32}))
    rows = [{'split': 'train', 'step': 12, 'accuracy': 0.4, 'loss': 1.0, 'img_per_sec': 100.0},
            {'split': 'eval', 'step': 12, 'accuracy': accuracy[r['seed']], 'loss': 1.0}]
    (folder / 'metrics.jsonl').write_text(''.join(json.dumps(x) + '\n' for x in rows))
    (folder / 'result.json').write_text(json.dumps({'params': 1000, 'headline': 'accuracy'}))
  rows = ab.report(root)
  assert [(r['net'], r['seeds'], r['finished'], r['steps']) for r in rows] == [
      ('plain', 3, 3, 12), ('residual', 3, 3, 12)]
  assert rows[0]['final_test_error_mean'] == pytest.approx(30.0)  # errors 50, 30, 10 %
  assert rows[0]['train_time_s_mean'] == pytest.approx(12 * 32 / 100.0)  # the group's batch
  general = sw.report(root, metric='accuracy')  # the general report reads the same folders
  assert [(r['model.kwargs.plain'], r['seeds']) for r in general] == [(True, 3), (False, 3)]
  assert general[0]['accuracy_mean'] == pytest.approx(0.7)


def test_rerun_skips_finished_and_resumes_interrupted(sweep, tmp_path, capsys):
  sweep = pathlib.Path(shutil.copytree(sweep, tmp_path / 'sweep'))
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


def test_table_puts_the_paper_next_to_ours():
  row = {'net': 'residual', 'depth': 20, 'params': 269_722, 'finished': 2, 'seeds': 2,
         'steps': 64_000, 'final_test_error_mean': 8.9, 'final_test_error_std': 0.2,
         'best_test_error_mean': 8.7, 'best_test_error_std': 0.1, 'paper_test_error': 8.75,
         'img_per_sec_mean': 5000.0, 'train_time_s_mean': 1800.0}
  plain = {**row, 'net': 'plain', 'depth': 56, 'paper_test_error': None}
  lines = ab.markdown_table([row, plain]).splitlines()
  assert lines[2] == ('| ResNet-20 | 20 | 0.27M | 2/2 | 64000 | 8.90 ± 0.20 | 8.70 ± 0.10 | '
                      '8.75 | 5000 | 30.0 |')
  assert lines[3].startswith('| Plain-56 | 56 |') and '| - |' in lines[3]


def test_train_time_counts_each_step_once_across_resumes():
  rows = [{'step': 10, 'img_per_sec': 100.0}, {'step': 20, 'img_per_sec': 200.0}]
  assert ab._train_seconds(rows, batch_size=10) == pytest.approx(10 * 10 / 100 + 10 * 10 / 200)


def test_resnet110_warmup_and_holdout_options():
  from cnn_jax.train import optim
  c = ab.make_config(ab.Sweep(data='folder', data_root='/d', holdout=5000), 'residual', 110, 0)
  assert c.data.holdout == 5000
  assert (c.schedule.warmup_steps, c.schedule.warmup_mode) == (400, 'constant')
  lr = optim.make_schedule(c, c.num_steps)
  assert [float(lr(s)) for s in (0, 399, 400, 31_999, 32_000, 48_000)] == pytest.approx(
      [0.01, 0.01, 0.1, 0.1, 0.01, 0.001])
  assert ab.make_config(ab.Sweep(data='folder', data_root='/d'), 'residual', 56,
                        0).schedule.warmup_steps == 0


def test_only_trains_those_cells_and_set_changes_every_run(tmp_path, monkeypatch):
  trained = []
  monkeypatch.setattr(ab, 'run_or_skip', lambda config, workdir, meta, quiet: trained.append(
      (workdir.name, config.optimizer.lr, config.dtype)))
  assert ab.main(['run', '--sweep-dir', str(tmp_path), '--smoke', '--depths', '8,14',
                  '--only', 'residual14,plain8', '--set', 'optimizer.lr=0.05',
                  '--set', 'dtype=bfloat16']) == 0
  assert trained == [('plain8_seed0', 0.05, 'bfloat16'), ('residual14_seed0', 0.05, 'bfloat16'),
                     ('plain8_seed1', 0.05, 'bfloat16'), ('residual14_seed1', 0.05, 'bfloat16')]
  assert not (tmp_path / 'sweep.json').exists()  # a part: its launcher writes sweep and report
  with pytest.raises(SystemExit):
    ab.main(['run', '--sweep-dir', str(tmp_path), '--smoke', '--only', 'plain20'])
  assert ab.main(['run', '--sweep-dir', str(tmp_path), '--smoke', '--set', 'nope=1']) == 2


def test_sigterm_stop_is_exit_143(tmp_path, monkeypatch, capsys):
  def preempted(*args, **kw):
    raise ab.Preempted('stopped by SIGTERM after step 5; checkpoint saved')

  monkeypatch.setattr(ab, 'run_or_skip', preempted)
  assert ab.main(['run', '--sweep-dir', str(tmp_path), '--smoke', '--depths', '8']) == 143
  assert capsys.readouterr().err.startswith('stopped: stopped by SIGTERM after step 5')


def test_jpeg_cost_needs_resnet20_at_the_full_recipe():
  row = {'net': 'residual', 'depth': 20, 'seeds': 2, 'finished': 2, 'steps': 64_000,
         'final_test_error_mean': 9.65, 'best_test_error_mean': 9.40}
  assert ab.jpeg_cost([row]) == (
      "JPEG cost: ResNet-20 at the paper's recipe (64000 iterations, 2 run(s)) reaches 9.65% "
      "final test error on this JPEG-compressed copy against He et al.'s 8.75% on the original "
      'images: +0.90 points (9.40% at its best evaluation).')
  assert 'ran 192 of the paper' in ab.jpeg_cost([{**row, 'steps': 192}])
  assert '1/2 runs finished' in ab.jpeg_cost([{**row, 'finished': 1}])
  assert 'held-out' in ab.jpeg_cost([row], holdout=5000)
  assert 'no ResNet-20 run' in ab.jpeg_cost([{**row, 'net': 'plain'}])
