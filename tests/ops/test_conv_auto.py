"""conv_impl='auto': the choice is measured once, written to the cache, read back and obeyed.

No timing is asserted: which impl wins is the machine's business.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.ops import conv, conv_auto
from tests.arrays import normal


@pytest.fixture
def cache(tmp_path, monkeypatch):
  path = tmp_path / 'sub' / 'conv_auto.json'
  monkeypatch.setenv('CNN_JAX_CONV_AUTO_CACHE', str(path))
  return path


def _no_measuring(*args, **kwargs):
  raise AssertionError('measured although the cache holds the answer')


def _jaxpr(impl, x, w, **kwargs):
  return str(jax.make_jaxpr(lambda x, w: conv.conv2d(x, w, impl=impl, **kwargs))(x, w))


def test_auto_measures_once_writes_reads_back_and_obeys_the_cache(cache, monkeypatch):
  x, w = normal(0, (2, 6, 5, 3)), normal(1, (3, 3, 3, 4))
  assert conv_auto.cache_path() == cache and not cache.exists()
  # First use, inside jit and grad: measured, and the choice written down.
  y = jax.jit(lambda x, w: conv.conv2d(x, w, padding='SAME', impl='auto'))(x, w)
  np.testing.assert_allclose(y, conv.conv2d(x, w, padding='SAME'), atol=1e-4)
  entries = json.loads(cache.read_text())
  assert len(entries) == 1
  (key, entry), = entries.items()
  assert key.startswith('cpu/') and '|conv2d|x=2x6x5x3|w=3x3x3x4|float32|' in key
  assert 'padding=((1,1),(1,1))' in key and 'stride=(1,1)' in key
  # A 3x3 stride-1 layer: every impl, Winograd included, was a candidate.
  assert set(entry['ms']) == set(conv.IMPLS) and entry['impl'] in conv.IMPLS
  assert all(ms > 0 for ms in entry['ms'].values())

  # Read back: no second measurement, for the same layer in a new trace.
  monkeypatch.setattr(conv_auto, 'measure', _no_measuring)
  assert _jaxpr('auto', x, w, padding='SAME') == _jaxpr(entry['impl'], x, w, padding='SAME')
  jax.grad(lambda x: conv.conv2d(x, w, padding='SAME', impl='auto').sum())(x)

  # Obeyed: whatever the file says is what runs.
  for forced in ('einsum_shifted', 'lax', 'winograd'):
    cache.write_text(json.dumps({key: dict(entry, impl=forced)}))
    assert _jaxpr('auto', x, w, padding='SAME') == _jaxpr(forced, x, w, padding='SAME')
  assert 'conv_general_dilated' not in _jaxpr('auto', x, w, padding='SAME')


def test_auto_keys_differ_by_stride_and_winograd_is_no_candidate_where_it_cannot_run(cache):
  x, w = normal(0, (1, 6, 6, 2)), normal(1, (3, 3, 2, 2))
  conv.conv2d(x, w, stride=2, impl='auto')
  conv.conv1d(x[:, 0], w[0], impl='auto')
  entries = json.loads(cache.read_text())
  assert len(entries) == 2
  for key, entry in entries.items():
    assert set(entry['ms']) == {'lax', 'einsum', 'einsum_shifted'}, key
  assert any('|conv1d|' in k for k in entries) and any('stride=(2,2)' in k for k in entries)


def test_auto_falls_back_to_lax_when_nothing_measures(cache, monkeypatch):
  monkeypatch.setattr(conv_auto, 'measure', lambda *a, **k: {})
  x, w = normal(0, (1, 5, 5, 2)), normal(1, (3, 3, 2, 2))
  assert 'conv_general_dilated' in _jaxpr('auto', x, w)
  assert not cache.exists()  # a fallback is not a measurement: nothing recorded
  cache.parent.mkdir(parents=True)
  cache.write_text('{not json')  # an unreadable cache is an empty one
  assert conv_auto.read_cache() == {}
  assert 'conv_general_dilated' in _jaxpr('auto', x, w)


def test_auto_transposed_conv_matches_lax(cache):
  x, w = normal(0, (1, 4, 4, 2)), normal(1, (3, 3, 2, 3))
  y = conv.conv_transpose2d(x, w, stride=2, padding='SAME', impl='auto')
  np.testing.assert_allclose(y, conv.conv_transpose2d(x, w, stride=2, padding='SAME'),
                             atol=1e-4)
  (key,) = json.loads(cache.read_text())
  assert '|conv_transpose2d|' in key


def test_auto_is_a_config_choice_but_not_an_impl():
  from cnn_jax.train import config
  assert 'auto' in config.CONV_IMPLS and 'auto' not in conv.IMPLS
  with pytest.raises(ValueError, match=r"unknown conv impl 'fastest'.*'winograd', 'auto'"):
    conv.conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 1)), impl='fastest')
