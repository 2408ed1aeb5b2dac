"""The benchmarks run end to end at tiny sizes and write their JSON (no timing is asserted)."""

import importlib.util
import json

import pytest

from benchmarks import conv_impls, train_throughput
from cnn_jax import xla_defaults
from cnn_jax.train import cpu_library


@pytest.mark.slow
def test_train_throughput_writes_ratios(tmp_path):
  out = tmp_path / 'tt.json'
  has_torch = importlib.util.find_spec('torch') is not None  # not a dependency: optional
  # ResNet-8: the smallest of the same family (the flax baseline is built to its depth).
  assert train_throughput.main(['--models', 'resnet8', '--repeats', '1', '--matmul-n', '64',
                                '--batches', '8', '--out', str(out)]
                               + (['--torch'] if has_torch else [])) == 0
  row = json.loads(out.read_text())['rows'][0]
  assert row['model'] == 'resnet8' and row['step_gflops'] > 0
  keys = ['cnn_jax_img_s', 'flax_baseline_img_s', 'ratio_cnn_jax_over_flax_baseline',
          'cnn_jax_mfu', 'matmul_peak_tflops', 'cnn_jax_no_ynn_img_s',
          'ratio_cnn_jax_over_cnn_jax_no_ynn'] + (
              ['torch_img_s', 'ratio_cnn_jax_no_ynn_over_torch'] if has_torch else [])
  for key in keys:
    assert row[key] > 0, key


def test_infer_throughput_times_both_library_choices(tmp_path):
  from benchmarks import infer_throughput
  out = tmp_path / 'i.json'
  has_torch = importlib.util.find_spec('torch') is not None
  assert infer_throughput.main(['--models', 'resnet8', '--batches', '2', '--repeats', '1',
                                '--out', str(out)] + (['--torch'] if has_torch else [])) == 0
  row = json.loads(out.read_text())['rows'][0]
  assert (row['model'], row['batch']) == ('resnet8', 2) and row['forward_gflops'] > 0
  keys = ['cnn_jax_img_s', 'cnn_jax_no_ynn_img_s'] + (
      ['torch_img_s', 'ratio_cnn_jax_over_torch', 'ratio_cnn_jax_no_ynn_over_torch']
      if has_torch else [])
  for key in keys:
    assert row[key] > 0, key
  # The option empties YNNPACK's fusion list for that one program: none is left in it.
  forward, variables, x = infer_throughput.project_forward_fn('resnet8', 2, 'float32')
  lowered = forward.lower(variables, x)
  assert '__ynn_fusion' not in lowered.compile(
      compiler_options=cpu_library.NO_YNNPACK).as_text()
  if xla_defaults.measured_jaxlib():  # where the process's flags give YNNPACK convolutions
    assert '__ynn_fusion' in lowered.compile().as_text()


def test_baseline_resnet_matches_the_zoo_parameter_count():
  import jax
  import jax.numpy as jnp
  from cnn_jax.models import get_model
  base = train_throughput.BaselineResNet(depth=20)
  ours = get_model('cifar_resnet20')
  count = lambda m: sum(x.size for x in jax.tree.leaves(jax.eval_shape(
      lambda: m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False))['params']))
  assert count(base) == count(ours) == 269_722  # the same network on both sides


def test_conv_impls_writes_rows(tmp_path):
  out = tmp_path / 'c.json'
  assert conv_impls.main(['--batch', '2', '--shapes', 'resnet20', '--repeats', '1',
                          '--out', str(out)]) == 0
  rows = json.loads(out.read_text())['rows']
  assert {r['mode'] for r in rows} == {'fwd', 'fwd+bwd'} and len(rows) == 8
  assert all(r['ratio_einsum_over_lax'] > 0 and r['ratio_winograd_over_lax'] > 0 for r in rows)
  # Three ResNet-20 shapes are 3x3 stride 1 (Winograd); the transition is stride 2.
  assert [r['winograd_applies'] for r in rows if r['mode'] == 'fwd'] == [True] * 3 + [False]


def test_conv_in_loop_times_each_impl_at_top_level_and_in_a_scan(tmp_path):
  from benchmarks import conv_in_loop
  out = tmp_path / 'l.json'
  assert conv_in_loop.main(['--batch', '1', '--repeats', '1', '--impls', 'lax,einsum',
                            '--out', str(out)]) == 0
  rows = json.loads(out.read_text())['rows']
  assert [r['shape'] for r in rows] == [s[0] for s in conv_impls.SHAPES['resnet20']]
  for r in rows:
    for impl in ('lax', 'einsum'):
      assert r[f'{impl}_plain_ms'] > 0 and r[f'{impl}_scan_ms'] > 0
      assert r[f'ratio_{impl}_scan_over_plain'] == pytest.approx(
          r[f'{impl}_scan_ms'] / r[f'{impl}_plain_ms'])


def test_scan_body_computes_the_same_gradients():
  """What the benchmark times in a scan is the same computation as at the top level."""
  import jax
  from benchmarks import conv_in_loop
  x, w, ct = conv_impls.operands(2, 8, 4, 4, 3, 1, 'float32')
  fn = conv_in_loop._fwd_bwd('einsum', 1)
  for got, want in zip(jax.jit(conv_in_loop._in_scan(fn))(x, w, ct), jax.jit(fn)(x, w, ct)):
    assert got.shape == want.shape
    assert float(abs(got - want).max()) <= 1e-5


def test_sliding_windows_writes_ratios(tmp_path):
  from benchmarks import sliding_windows
  assert sliding_windows.main(['--sizes', '40', '--repeats', '1',
                               '--out', str(tmp_path / 's.json')]) == 0
  out = json.loads((tmp_path / 's.json').read_text())
  row = out['sizes']['40']
  assert row['windows'] == 9 and row['loop_over_conv'] > 0 and row['batched_over_conv'] > 0



def test_step_breakdown_counts_every_pass(tmp_path):
  from benchmarks import step_breakdown
  out = tmp_path / 'sb.json'
  assert step_breakdown.main(['--models', 'resnet8', '--batch', '2', '--repeats', '1',
                              '--profile', '--out', str(out)]) == 0
  row = json.loads(out.read_text())['rows'][0]
  layers = {p: sum(r['layers'] for r in row['pieces'] if r['pass'] == p)
            for p in step_breakdown.PASSES}
  # ResNet-8: the stem and three blocks of two, 7 convolutions; the stem's
  # input (the image) needs no gradient, so 6 input gradients.
  assert layers == {'fwd': 7, 'dx': 6, 'dw': 7} and row['unmatched_transposes'] == 0
  # XLA's compiled step has the same 20 convolutions, each given a pass and a library.
  counts = row['step_convolutions']
  assert sum(counts.values()) == 20 and not any(k.startswith('?') for k in counts), counts
  assert all(r['ms'] > 0 and r['runs_in'] for r in row['pieces'])
  assert row['xla_rest_ms'] == row['step_ms'] - sum(row['xla_conv_ms_by_pass'].values())
  assert any(r['what'].startswith('conv') for r in row['profile']['rows'])


def test_xla_flags_records_ratios_and_unknown_flags(tmp_path):
  from benchmarks import xla_flags
  out = tmp_path / 'xf.json'
  assert xla_flags.main(['--models', 'resnet8', '--batch', '2', '--repeats', '1', '--rounds', '1',
                         '--candidates', 'default', '--flags', 'bogus=--xla_cpu_no_such_flag=1',
                         '--out', str(out)]) == 0
  cands = json.loads(out.read_text())['trials'][0]['candidates']
  assert cands['bogus']['status'] == 'not a flag in this XLA'
  assert cands['default']['status'] == 'ok' and len(cands['default']['jax_img_s']) == 1
  assert sum(cands['default']['convolutions'].values()) == 20


def test_xla_flags_ratios_are_to_the_bracketing_defaults():
  from benchmarks import xla_flags
  res = {'status': 'ok', 'jax_img_s': 110.0, 'torch_img_s': 200.0}
  xla_flags._ratios(res, {'status': 'ok', 'jax_img_s': 90.0, 'torch_img_s': 180.0},
                    {'status': 'ok', 'jax_img_s': 110.0, 'torch_img_s': 220.0})
  assert res['speedup'] == pytest.approx(1.1)  # 110 / mean(90, 110)
  assert res['torch_normalised'] == pytest.approx((110 / 200) / 0.5)  # both defaults at 0.5x torch
