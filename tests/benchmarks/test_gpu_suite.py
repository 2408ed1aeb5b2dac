"""benchmarks.gpu_suite: --smoke writes its JSON and table; failures are recorded, not raised."""

import importlib.util
import json

import pytest

from benchmarks import gpu_suite


@pytest.fixture(scope='module')
def smoke(tmp_path_factory):
  out = tmp_path_factory.mktemp('gpu_suite') / 'suite.json'
  with pytest.MonkeyPatch.context() as mp:  # auto measures afresh, into this run's own cache
    mp.setenv('CNN_JAX_CONV_AUTO_CACHE', str(out.parent / 'conv_auto.json'))
    assert gpu_suite.main(['--smoke', '--out', str(out)]) == 0
  return json.loads(out.read_text()), out.with_suffix('.md').read_text()


@pytest.mark.slow
def test_smoke_writes_every_part(smoke):
  report, md = smoke
  assert report['benchmark'] == 'gpu_suite' and report['smoke']
  assert {'device', 'jax', 'torch', 'date'} <= set(report['environment'])
  parts = report['parts']
  assert list(parts) == list(gpu_suite.PARTS)
  assert all(p['status'] == 'ok' and p['seconds'] > 0 for p in parts.values()), parts

  run = parts['speedrun']['result']
  assert len(run['runs']) == 1 and 0 <= run['accuracy_mean'] <= 1 and run['train_s_mean'] > 0
  assert parts['speedrun']['anchor']['name'] == 'airbench94_muon'

  tp = parts['train_throughput']
  assert set(tp['matmul_peak_tflops']) == {'float32', 'bfloat16'}
  (row,) = tp['rows']
  assert row['model'] == 'resnet8' and row['cnn_jax_img_s'] > 0
  assert row['cnn_jax_mfu'] > 0 and row['cnn_jax_mfu_vs_bf16'] > 0
  if importlib.util.find_spec('torch') is None:  # not a dependency: its absence is recorded
    assert 'torch' in row['torch_error'] and 'torch_img_s' not in row
  else:
    assert row['torch_img_s'] > 0

  conv = parts['conv_impls']
  assert [r['mode'] for r in conv['rows']] == ['fwd', 'fwd+bwd']
  for impl in ('einsum', 'einsum_shifted', 'winograd', 'auto'):
    assert all(r[f'ratio_{impl}_over_lax'] > 0 for r in conv['rows']), impl
  assert conv['conv_auto_cache']  # auto's choice for the shape, with its timings

  # benchmarks/num_seeds.py's rows (its CLI is a loop over seeds_rows)
  (seeds,) = parts['num_seeds']['rows']
  assert (seeds['model'], seeds['num_seeds']) == ('resnet8', 2)
  assert all(seeds[f'speedup_{m}_over_apart'] > 0 for m in ('vmap', 'unroll'))

  assert '| airbench94_muon (quoted in issue 19; not run here) | NVIDIA H100 |' in md
  assert '| cnn_jax speedrun (1.0 epochs, float32, loop=step) | cpu | 1 |' in md
  # One throughput row and one seeds row (K=2), both ResNet-8 at batch 8.
  assert md.count('| resnet8 | 8 | float32 |') == 2
  assert '| r20.s3.3x3 | float32 | fwd |' in md and '| r20.s3.3x3 | float32 | fwd+bwd |' in md
  assert '| resnet8 | 8 | float32 | 2 |' in md


def test_a_failing_unit_is_recorded_and_the_rest_run_while_time_lasts():
  clock = iter([0.0, 1.0, 1.0, 3.0, 3.0, 9.0, 9.0]).__next__  # start, end of each unit

  def boom():
    raise MemoryError('RESOURCE_EXHAUSTED: out of memory\nmore detail')

  out = gpu_suite.run_units([('a', lambda: [{'x': 1}]), ('b', boom), ('c', lambda: [{'x': 2}]),
                             ('d', lambda: [{'x': 3}])], deadline=10.0, clock=clock)
  assert out['rows'] == [{'x': 1}, {'x': 2}]
  assert out['errors'] == [{'unit': 'b', 'error': 'MemoryError: RESOURCE_EXHAUSTED: out of memory'}]
  # 'c' took 6 s, the slowest so far: 'd' could not end by the deadline.
  assert out['skipped'] == ['d'] and out['status'] == 'partial'
  assert gpu_suite.run_units([('a', lambda: [{}])], deadline=-1.0)['status'] == 'skipped'


def test_a_failing_part_is_recorded():
  def part(deadline):
    raise ModuleNotFoundError("No module named 'torch'")

  out = gpu_suite.run_part('train_throughput', part, deadline=0.0)
  assert out['status'] == 'error' and out['seconds'] >= 0
  assert out['error'] == "ModuleNotFoundError: No module named 'torch'"


def test_deadlines_keep_later_parts_shares():
  ends = gpu_suite.deadlines(gpu_suite.PARTS, start=100.0, budget_s=840.0)  # twice the default
  shares = gpu_suite.SHARES
  assert ends['num_seeds'] == pytest.approx(940.0)
  assert ends['conv_impls'] == pytest.approx(940.0 - 2 * shares['num_seeds'])
  assert ends['train_throughput'] == pytest.approx(
      940.0 - 2 * (shares['conv_impls'] + shares['num_seeds']))
  assert ends['speedrun'] == pytest.approx(100.0 + 2 * shares['speedrun'])
  assert gpu_suite.deadlines(('conv_impls',), 0.0, 60.0) == {'conv_impls': 60.0}


def test_speedrun_without_data_is_skipped_with_a_reason(tmp_path):
  out = gpu_suite.speedrun_part(gpu_suite.GPU, str(tmp_path / 'missing'), deadline=0.0)
  assert out['status'] == 'skipped' and 'missing' in out['reason']
  assert gpu_suite.speedrun_part(gpu_suite.GPU, None, 0.0)['status'] == 'skipped'
  report = {'smoke': False, 'environment': {'device': 'NVIDIA H200', 'date': '2026-12-06'},
            'wall_s': 1.0, 'budget_s': 420.0, 'parts': {'speedrun': {**out, 'seconds': 0.1}}}
  md = gpu_suite.markdown(report)
  assert '**skipped**: no CIFAR-10 folder' in md and '| airbench94_muon' in md
