"""The general sweep: grid expansion, bad input, skip and resume, report arithmetic, plots."""

import csv
import json
import pathlib
import shutil
import statistics

import pytest

from experiments import sweep as sw
from tests.subprocess_env import run_module

# A tiny simple_cnn on synthetic shapes: 4 steps, a checkpoint and an evaluation every 2.
TINY = ['--set', 'data.num_train=64', '--set', 'data.num_eval=32', '--set', 'batch_size=16',
        '--set', 'eval_batch_size=32', '--set', 'model.kwargs.widths=(4,8)', '--set',
        'num_steps=4', '--set', 'eval_every=2', '--set', 'log_every=2', '--set',
        'checkpoint_every=2', '--set', 'schedule.warmup_steps=0']
RUN = ['run', '--config=configs/synthetic_cnn.py', '--grid', 'optimizer.lr=0.05,0.1',
       '--seeds', '1', *TINY]


@pytest.fixture(scope='module')
def tiny_sweep(run_once):
  def run(root):
    assert sw.main([*RUN, '--sweep-dir', str(root)]) == 0
    return str(root)

  return pathlib.Path(run_once('general_sweep', run))


def test_grid_expansion_order_and_names():
  axes = [sw.parse_axis('model.kwargs.depth=20,56'), sw.parse_axis('model.kwargs.plain=True,False')]
  assert axes[0] == ('model.kwargs.depth', [20, 56])
  assert axes[1] == ('model.kwargs.plain', [True, False])
  runs = sw.expand(axes, seeds=2)
  assert [r['name'] for r in runs] == [
      'depth20_plainTrue_seed0', 'depth20_plainFalse_seed0', 'depth56_plainTrue_seed0',
      'depth56_plainFalse_seed0', 'depth20_plainTrue_seed1', 'depth20_plainFalse_seed1',
      'depth56_plainTrue_seed1', 'depth56_plainFalse_seed1']
  assert runs[1]['cell'] == {'model.kwargs.depth': 20, 'model.kwargs.plain': False}
  assert runs[-1]['seed'] == 1
  key, values = sw.parse_axis('model.kwargs.widths=(4,8,16),(8,16,32)')
  assert values == [(4, 8, 16), (8, 16, 32)]
  assert sw.expand([(key, values)], 1)[0]['name'] == 'widths4x8x16_seed0'
  assert sw.parse_axis('x=0.1,1e-3,A,adam')[1] == [0.1, 1e-3, 'A', 'adam']
  with pytest.raises(ValueError, match='given twice'):
    sw.expand([axes[0], axes[0]], 1)


def test_seeds_trained_together_are_grouped():
  runs = sw.expand([('optimizer.lr', [0.1, 0.2])], seeds=3, num_seeds=2)
  assert [(r['name'], r['group'], r['dir']) for r in runs] == [
      ('lr0.1_seed0', 'lr0.1_seeds0-1', 'lr0.1_seeds0-1/seeds/0'),
      ('lr0.1_seed1', 'lr0.1_seeds0-1', 'lr0.1_seeds0-1/seeds/1'),
      ('lr0.2_seed0', 'lr0.2_seeds0-1', 'lr0.2_seeds0-1/seeds/0'),
      ('lr0.2_seed1', 'lr0.2_seeds0-1', 'lr0.2_seeds0-1/seeds/1'),
      ('lr0.1_seed2', 'lr0.1_seed2', 'lr0.1_seed2'),  # the rest: one seed, a plain run
      ('lr0.2_seed2', 'lr0.2_seed2', 'lr0.2_seed2')]
  assert [r['dir'] for r in sw.expand([('x', [1])], seeds=2)] == ['x1_seed0', 'x1_seed1']
  with pytest.raises(ValueError, match='--num-seeds must be >= 1'):
    sw.expand([], seeds=1, num_seeds=0)


def test_sweep_with_seeds_trained_together(tmp_path):
  root = tmp_path / 'together'
  assert sw.main(['run', '--config=configs/synthetic_cnn.py', '--grid', 'optimizer.lr=0.1',
                  '--seeds', '2', '--num-seeds', '2', *TINY, '--sweep-dir', str(root)]) == 0
  group = root / 'lr0.1_seeds0-1'
  seeds = [json.loads((group / 'seeds' / str(s) / 'result.json').read_text()) for s in (0, 1)]
  assert [r['seed'] for r in seeds] == [0, 1]
  assert seeds[0]['eval_loss'] != seeds[1]['eval_loss']  # two different runs
  row = json.loads((root / 'report.json').read_text())['rows'][0]
  assert (row['seeds'], row['finished'], row['steps']) == (2, 2, 4)
  assert row['accuracy_mean'] == pytest.approx(
      statistics.mean(r['eval_accuracy'] for r in seeds))
  assert json.loads((group / 'result.json').read_text())['eval_accuracy'] == pytest.approx(
      row['accuracy_mean'])


def test_config_of_a_run():
  c = sw.make_config('configs/resnet_cifar.py:data=synthetic', [('optimizer.lr', 1)],
                     {'model.kwargs.shortcut': 'B', 'model.kwargs.depth': 32}, seed=3)
  assert (c.model.kwargs.shortcut, c.model.kwargs.depth, c.seed) == ('B', 32, 3)
  assert c.optimizer.lr == 1.0 and isinstance(c.optimizer.lr, float)


@pytest.mark.parametrize('axis, message', [
    ('model.kwargs.dpth=8', "unknown config key 'model.kwargs.dpth'; did you mean "
                            "'model.kwargs.depth'?; valid keys of model.kwargs: depth, plain, "
                            'shortcut, widths.'),
    ('model.kwargs.depth=x', 'bad value model.kwargs.depth=\'x\': model.kwargs.depth is an int '
                             '(now 20); valid keys of model.kwargs: depth, plain, shortcut, '
                             'widths.'),
    ('model.kwargs.plain=1', 'model.kwargs.plain is a bool'),
    ('optimizer=1', "'optimizer' is a section, not a value; its keys: b1, b2,"),
])
def test_bad_axis_is_one_line_naming_the_valid_keys(axis, message, tmp_path, capsys):
  assert sw.main(['run', '--config=configs/resnet_cifar.py:data=synthetic', '--grid', axis,
                  '--sweep-dir', str(tmp_path / 's')]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and message in err and err.count('\n') == 1
  assert not (tmp_path / 's').exists()  # nothing written, nothing trained


def test_cli_exit_2_on_bad_input(tmp_path, capsys):
  assert sw.main(['run', '--config=configs/nope.py', '--grid', 'seed=1',
                  '--sweep-dir', str(tmp_path)]) == 2
  assert sw.main(['run', '--config=configs/synthetic_cnn.py', '--grid', 'optimizer.lr',
                  '--sweep-dir', str(tmp_path)]) == 2
  assert sw.main(['run', '--config=configs/synthetic_cnn.py', '--set', 'num_steps=-1',
                  '--sweep-dir', str(tmp_path / 'x')]) == 2  # the config's own validation
  assert sw.main(['report', str(tmp_path / 'nowhere')]) == 2
  err = capsys.readouterr().err.splitlines()
  assert len(err) == 4 and all(line.startswith('error: ') for line in err)
  with pytest.raises(SystemExit) as e:
    sw.main(['run', '--grid', 'seed=1'])  # argparse: --config and --sweep-dir missing
  assert e.value.code == 2


def test_sweep_outputs(tiny_sweep):
  spec = json.loads((tiny_sweep / 'sweep.json').read_text())
  assert spec['grid'] == [['optimizer.lr', [0.05, 0.1]]] and spec['seeds'] == 1
  assert [r['name'] for r in spec['runs']] == ['lr0.05_seed0', 'lr0.1_seed0']
  result = json.loads((tiny_sweep / 'lr0.1_seed0' / 'result.json').read_text())
  assert result['headline'] == 'accuracy' and result['steps'] == 4
  assert result['optimizer.lr'] == 0.1 and 0 <= result['eval_accuracy'] <= 1
  rows = json.loads((tiny_sweep / 'report.json').read_text())['rows']
  assert [(r['optimizer.lr'], r['seeds'], r['finished'], r['steps']) for r in rows] == [
      (0.05, 1, 1, 4), (0.1, 1, 1, 4)]
  assert rows[1]['accuracy_mean'] == pytest.approx(result['eval_accuracy'])
  for name in ('report.csv', 'report.md', 'metric_vs_lr.png', 'curves_accuracy.png'):
    assert (tiny_sweep / name).stat().st_size > 100


def test_rerun_skips_finished_and_resumes_interrupted(tiny_sweep, tmp_path, capsys):
  root = pathlib.Path(shutil.copytree(tiny_sweep, tmp_path / 'sweep'))
  before = (root / 'lr0.05_seed0' / 'result.json').read_text()
  (root / 'lr0.1_seed0' / 'result.json').unlink()  # killed after its last checkpoint
  assert sw.main([*RUN, '--sweep-dir', str(root)]) == 0
  out = capsys.readouterr().out
  assert 'lr0.05_seed0: finished, skipped' in out
  assert 'lr0.1_seed0: training 4 steps (resuming)' in out
  assert (root / 'lr0.05_seed0' / 'result.json').read_text() == before
  assert json.loads((root / 'lr0.1_seed0' / 'result.json').read_text())['resumed_from'] == 4


def _fake_sweep(root: pathlib.Path, evals: dict) -> None:
  """A sweep.json over depth x plain and hand-written metrics.jsonl files."""
  axes = [('model.kwargs.depth', [20, 56]), ('model.kwargs.plain', [True, False])]
  runs = sw.expand(axes, seeds=3)
  root.mkdir()
  (root / 'sweep.json').write_text(json.dumps(
      {'config': 'configs/resnet_cifar.py', 'grid': [[k, v] for k, v in axes], 'seeds': 3,
       'set': [], 'runs': runs}))
  for run in runs:
    rows = evals.get(run['name'])
    if rows is None:
      continue
    (root / run['name']).mkdir()
    with open(root / run['name'] / 'metrics.jsonl', 'w') as f:
      f.write(json.dumps({'split': 'train', 'step': 10, 'loss': 9.0, 'accuracy': 0.01}) + '\n')
      for step, acc, loss in rows:
        f.write(json.dumps({'split': 'eval', 'step': step, 'accuracy': acc, 'loss': loss}) + '\n')
    (root / run['name'] / 'result.json').write_text(json.dumps({'headline': 'accuracy'}))


def test_report_is_mean_and_std_over_seeds(tmp_path):
  root = tmp_path / 'fake'
  evals = {  # (step, accuracy, loss); depth56_plainTrue ran one seed only, plainFalse none
      'depth20_plainTrue_seed0': [(10, 0.30, 2.0), (20, 0.50, 1.5), (30, 0.45, 1.6)],
      'depth20_plainTrue_seed1': [(10, 0.20, 2.1), (20, 0.60, 1.2), (30, 0.55, 1.3)],
      'depth20_plainTrue_seed2': [(10, 0.25, 2.2), (20, 0.40, 1.7), (30, 0.70, 1.1)],
      'depth20_plainFalse_seed0': [(10, 0.35, 1.9), (20, 0.65, 1.0), (30, 0.75, 0.9)],
      'depth20_plainFalse_seed1': [(10, 0.40, 1.8), (20, 0.70, 0.8), (30, 0.80, 0.7)],
      'depth56_plainTrue_seed2': [(10, 0.10, 2.3), (20, 0.15, 2.2)],
  }
  _fake_sweep(root, evals)
  assert sw.main(['report', str(root)]) == 0  # headline (accuracy), final
  rows = json.loads((root / 'report.json').read_text())['rows']
  assert [(r['model.kwargs.depth'], r['model.kwargs.plain'], r['seeds']) for r in rows] == [
      (20, True, 3), (20, False, 2), (56, True, 1)]
  finals = [0.45, 0.55, 0.70]
  assert rows[0]['accuracy_mean'] == pytest.approx(statistics.mean(finals))
  assert rows[0]['accuracy_std'] == pytest.approx(statistics.stdev(finals))
  assert rows[1]['accuracy_mean'] == pytest.approx(0.775)
  assert rows[1]['accuracy_std'] == pytest.approx(statistics.stdev([0.75, 0.80]))
  assert (rows[2]['accuracy_mean'], rows[2]['accuracy_std'], rows[2]['steps']) == (0.15, 0.0, 20)
  with open(root / 'report.csv') as f:
    csv_rows = list(csv.DictReader(f))
  assert float(csv_rows[0]['accuracy_std']) == pytest.approx(statistics.stdev(finals))
  md = (root / 'report.md').read_text()
  assert '| 20 | True | 3/3 | 30 | 0.5667 ± 0.1258 |' in md
  assert (root / 'metric_vs_depth.png').exists() and (root / 'curves_accuracy.png').exists()

  # best loss is the minimum; at a step, runs without that step are left out
  assert sw.main(['report', str(root), '--metric', 'loss', '--at', 'best', '--x', 'plain',
                  '--group', 'depth']) == 0
  rows = json.loads((root / 'report.json').read_text())['rows']
  assert rows[0]['loss_mean'] == pytest.approx(statistics.mean([1.5, 1.2, 1.1]))
  assert (root / 'metric_vs_plain.png').exists() and (root / 'curves_loss.png').exists()
  assert sw.main(['report', str(root), '--at', '30']) == 0
  rows = json.loads((root / 'report.json').read_text())['rows']
  assert [r['seeds'] for r in rows] == [3, 2]
  assert sw.main(['report', str(root), '--at', 'best']) == 0
  rows = json.loads((root / 'report.json').read_text())['rows']
  assert rows[0]['accuracy_mean'] == pytest.approx(statistics.mean([0.50, 0.60, 0.70]))


def test_report_bad_flags(tmp_path, capsys):
  root = tmp_path / 'fake'
  _fake_sweep(root, {'depth20_plainTrue_seed0': [(10, 0.3, 2.0)]})
  assert sw.main(['report', str(root), '--metric', 'mAP50']) == 2
  assert sw.main(['report', str(root), '--x', 'width']) == 2
  assert sw.main(['report', str(root), '--at', 'last']) == 2
  err = capsys.readouterr().err.splitlines()
  assert err == ["error: no eval metric 'mAP50' recorded; recorded: accuracy, loss.",
                 "error: --x 'width' is not a sweep axis; axes: model.kwargs.depth, "
                 'model.kwargs.plain.',
                 "error: --at 'last': use final, best or a step number."]


def test_shortcut_preset_smoke(tmp_path):
  from experiments import ablation_shortcut
  root = tmp_path / 'shortcut'
  assert ablation_shortcut.main(['run', '--sweep-dir', str(root), '--smoke', '--seeds', '1']) == 0
  rows = json.loads((root / 'report.json').read_text())['rows']
  assert [(r['model.kwargs.shortcut'], r['model.kwargs.depth'], r['steps']) for r in rows] == [
      ('A', 8, 12), ('B', 8, 12)]
  a, b = (json.loads((root / f'shortcut{o}_depth8_seed0' / 'result.json').read_text())
          for o in 'AB')
  assert b['params'] > a['params']  # B's 1x1 projections at the stage transitions
  assert ablation_shortcut.main(['report', str(root)]) == 0
  assert (root / 'metric_vs_depth.png').exists()


def test_general_report_reads_a_depth_ablation_sweep(tmp_path, monkeypatch):
  from experiments import ablation_depth as ab
  monkeypatch.setattr(ab, 'run_or_skip', lambda *a, **k: None)  # no training: the files only
  monkeypatch.setattr(ab, 'report', lambda root: None)
  monkeypatch.setattr(ab, 'enable_compilation_cache', lambda **k: None)
  root = tmp_path / 'ablation'
  ab.run_sweep(ab.Sweep(depths=(8,), seeds=2, data='synthetic', smoke=True), root)
  accs = {'plain8_seed0': 0.2, 'plain8_seed1': 0.4, 'residual8_seed0': 0.5,
          'residual8_seed1': 0.7}
  for name, acc in accs.items():
    (root / name).mkdir()
    (root / name / 'metrics.jsonl').write_text(
        json.dumps({'split': 'eval', 'step': 12, 'accuracy': acc, 'loss': 1.0}) + '\n')
  assert sw.main(['report', str(root), '--metric', 'accuracy']) == 0
  rows = json.loads((root / 'report.json').read_text())['rows']
  assert [(r['model.kwargs.plain'], r['seeds']) for r in rows] == [(True, 2), (False, 2)]
  assert rows[0]['accuracy_mean'] == pytest.approx(0.3)
  assert rows[1]['accuracy_std'] == pytest.approx(statistics.stdev([0.5, 0.7]))


def test_command_line_exit_status(tmp_path):
  proc = run_module('experiments.sweep', 'run', '--config=configs/synthetic_cnn.py',
                    '--grid', 'optimizer.lrr=0.1,0.2', '--sweep-dir', str(tmp_path / 's'),
                    timeout=120)
  assert proc.returncode == 2
  assert proc.stderr == ("error: unknown config key 'optimizer.lrr'; did you mean "
                         "'optimizer.lr'?; valid keys of optimizer: b1, b2, grad_clip_norm, "
                         'label_smoothing, lr, momentum, name, weight_decay.\n')
