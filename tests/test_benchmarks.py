"""The benchmarks run end to end at tiny sizes and write their JSON (no timing is asserted)."""

import importlib.util
import json

import pytest

from benchmarks import conv_impls, train_throughput


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
          'cnn_jax_mfu', 'matmul_peak_tflops'] + (['torch_img_s'] if has_torch else [])
  for key in keys:
    assert row[key] > 0, key


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


def test_sliding_windows_writes_ratios(tmp_path):
  from benchmarks import sliding_windows
  assert sliding_windows.main(['--sizes', '40', '--repeats', '1',
                               '--out', str(tmp_path / 's.json')]) == 0
  out = json.loads((tmp_path / 's.json').read_text())
  row = out['sizes']['40']
  assert row['windows'] == 9 and row['loop_over_conv'] > 0 and row['batched_over_conv'] > 0

