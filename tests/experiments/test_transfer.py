"""experiments/transfer.py: the smoke run writes the table, reruns skip, report rebuilds."""

import json

from experiments import transfer as tl


def test_smoke_run_and_report(tmp_path, capsys):
  args = ['run', '--out-dir', str(tmp_path), '--smoke', '--pretrain-steps', '10', '--steps',
          '5', '--seeds', '1', '--shots', '4']
  assert tl.main(args) == 0
  results = json.loads((tmp_path / 'results.json').read_text())
  assert [r['mode'] for r in results['target']] == list(tl.MODES)
  by_mode = {r['mode']: r for r in results['target']}
  total = by_mode['scratch']['params']
  assert by_mode['scratch']['trainable_params'] == by_mode['finetune']['trainable_params'] == total
  # Feature extraction trains only the head: 16 features x 5 classes + 5 biases.
  assert by_mode['features']['trainable_params'] == 16 * 5 + 5
  assert 0 < by_mode['partial']['trainable_params'] < total
  for r in results['target']:
    assert 0 <= r['accuracy_mean'] <= 100 and r['steps'] == 5
  assert results['pretrain']['steps'] == 10
  table = (tmp_path / 'results.md').read_text()
  assert '4 labelled images per class' in table and '(a) feature extraction' in table
  capsys.readouterr()
  assert tl.main(args) == 0
  assert capsys.readouterr().out.count('finished, skipped') == 5
  assert tl.main(['report', str(tmp_path)]) == 0
  assert tl.main(['report', str(tmp_path / 'missing')]) == 2
  assert 'no finished run under' in capsys.readouterr().err
