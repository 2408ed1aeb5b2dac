"""The GPU launcher of the depth ablation: its smoke run end to end, the split, the time limit."""

import json
import pathlib
import sys
import tarfile

import pytest

from experiments import ablation_gpu as G


@pytest.mark.slow  # two training processes: about 25 s on 2 CPUs
def test_smoke_runs_concurrent_parts_on_a_jpeg_pack_then_reports(tmp_path, capsys):
  root, out = tmp_path / 'sweep', tmp_path / 'out'
  # --set is ablation_depth's option: the launcher passes it through untouched.
  assert G.main(['--sweep-dir', str(root), '--smoke', '--depths', '8', '--out', str(out),
                 '--set', 'optimizer.lr=0.05']) == 0
  printed = capsys.readouterr().out
  assert 'part 0: plain8 x 1 seed(s)' in printed and 'part 1: residual8 x 1 seed(s)' in printed
  rows = json.loads((root / 'results.json').read_text())
  assert [(r['net'], r['depth'], r['finished'], r['steps']) for r in rows] == [
      ('plain', 8, 1, 12), ('residual', 8, 1, 12)]
  config = json.loads((root / 'plain8_seed0' / 'config.json').read_text())
  assert config['data']['root'] == str(root / 'smoke.pack') and config['optimizer']['lr'] == 0.05
  assert 'JPEG cost: not measured' in (root / 'results.md').read_text()
  sweep = json.loads((root / 'sweep.json').read_text())  # the whole sweep, not a part's
  assert [r['name'] for r in sweep['runs']] == ['plain8_seed0', 'residual8_seed0']
  assert sorted(p.name for p in out.iterdir()) == sorted([*G.RESULT_FILES, 'runs.tar.gz'])
  with tarfile.open(out / 'runs.tar.gz') as tar:
    names = tar.getnames()
  assert 'residual8_seed0/metrics.jsonl' in names and 'logs/part1.log' in names
  assert 'sweep.json' in names and not any('checkpoints' in n for n in names)


def test_cells_are_split_by_cost_shallowest_first():
  cells = [(net, d) for d in (20, 32, 44, 56) for net in ('plain', 'residual')]
  assert G.split_cells(cells, 4) == [['plain20', 'plain56'], ['residual20', 'residual56'],
                                     ['plain32', 'plain44'], ['residual32', 'residual44']]
  assert G.split_cells(cells[:2], 4) == [['plain20'], ['residual20']]
  assert G.split_cells(cells, 1) == [[c for d in (20, 32, 44, 56)
                                      for c in (f'plain{d}', f'residual{d}')]]


def test_time_limit_stops_parts_then_kills_the_stubborn(tmp_path):
  py = [sys.executable, '-c']
  polite = 'import signal,sys,time; signal.signal(15, lambda *a: sys.exit(143)); time.sleep(60)'
  stubborn = 'import signal,time; signal.signal(15, signal.SIG_IGN); time.sleep(60)'
  codes = G.run_parts([py + [polite], py + [stubborn], py + ['print("done")']], {},
                      tmp_path / 'logs', time_limit=2, grace=1)
  assert codes == [143, -9, 0]
  assert (tmp_path / 'logs' / 'part2.log').read_text() == 'done\n'


def test_part_environment_caps_memory_and_finds_the_repo():
  env = G.part_env({'PYTHONPATH': '/tmp/site'}, 0.225, smoke=False)
  assert env['XLA_PYTHON_CLIENT_MEM_FRACTION'] == env['XLA_CLIENT_MEM_FRACTION'] == '0.225'
  assert env['XLA_PYTHON_CLIENT_PREALLOCATE'] == 'false' and 'JAX_PLATFORMS' not in env
  assert env['PYTHONPATH'] == f'{G.REPO}:/tmp/site'
  assert G.part_env({}, 0.5, smoke=True)['JAX_PLATFORMS'] == 'cpu'


def test_bad_input_is_one_line_before_anything_runs(tmp_path, capsys):
  root = tmp_path / 'sweep'
  assert G.main(['--sweep-dir', str(root), '--data-root', str(tmp_path / 'no.pack')]) == 2
  assert 'does not exist; pack the image folder first' in capsys.readouterr().err
  assert G.main(['--sweep-dir', str(root), '--data', 'synthetic', '--set', 'nope=1']) == 2
  assert "error: unknown config key 'nope'" in capsys.readouterr().err.replace('"', "'")
  assert not root.exists()
  with pytest.raises(SystemExit):
    G.main(['--sweep-dir', str(root), '--only', 'plain20'])
  with pytest.raises(SystemExit):
    G.main(['--sweep-dir', str(root), '--no-such-option'])
  assert not pathlib.Path(root).exists()
