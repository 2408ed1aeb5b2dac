"""Kim's text CNN: padding invariance, conv_impl agreement, pretrained init, edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import models
from cnn_jax.data.text import Pretrained
from cnn_jax.models.text_cnn import EMBED_INIT_SCALE, TextCNN, window_mask

V, D = 30, 6


def _model(**kw):
  return models.get_model('text_cnn', vocab_size=V, embed_dim=D, features=5, num_classes=3, **kw)


def _tokens():
  rng = np.random.default_rng(0)
  tokens = rng.integers(1, V, (4, 9)).astype(np.int32)
  for row, length in enumerate((9, 5, 2, 1)):  # lengths 9, 5, 2 (shorter than a filter), 1
    tokens[row, length:] = 0
  return jnp.asarray(tokens)


@pytest.fixture(scope='module')
def variables():
  return jax.jit(_model().init)(jax.random.key(0), _tokens())


def test_appending_padding_does_not_change_the_logits(variables):
  x = _tokens()
  apply = jax.jit(_model().apply)  # op by op, every small op would compile on its own
  logits = apply(variables, x)
  assert logits.shape == (4, 3) and logits.dtype == jnp.float32
  for extra in (1, 4, 31):
    longer = jnp.pad(x, ((0, 0), (0, extra)))
    np.testing.assert_allclose(apply(variables, longer), logits, rtol=1e-6, atol=1e-6)
  # ...whereas a real token in the same place does change them.
  changed = x.at[1, 5].set(7)
  assert not np.allclose(apply(variables, changed)[1], logits[1], atol=1e-4)


def test_window_mask_by_hand():
  mask = jnp.array([[True, True, False, False]])
  # width 2: windows t-1..t for t = 0..4 over steps -1..4; those touching steps 0 or 1.
  np.testing.assert_array_equal(window_mask(mask, 2), [[True, True, True, False, False]])
  np.testing.assert_array_equal(window_mask(mask, 1), mask)


@pytest.mark.parametrize('impl', ['einsum', 'einsum_shifted'])
def test_conv_impl_einsum_equals_lax(variables, impl):
  x = _tokens()
  lax_model, other = _model(), _model(conv_impl=impl)
  np.testing.assert_allclose(jax.jit(other.apply)(variables, x),
                             jax.jit(lax_model.apply)(variables, x), rtol=1e-5, atol=1e-5)

  def loss(model, v):
    return jnp.sum(model.apply(v, x, train=True, rngs={'dropout': jax.random.key(1)}) ** 2)

  g_lax = jax.jit(jax.grad(lambda v: loss(lax_model, v)))(variables)
  g_other = jax.jit(jax.grad(lambda v: loss(other, v)))(variables)
  for a, b in zip(jax.tree.leaves(g_lax), jax.tree.leaves(g_other)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_variables_and_parameter_count(variables):
  p = variables['params']
  assert set(p) == {'embed', 'conv3', 'conv4', 'conv5', 'fc'}
  assert p['conv4']['kernel'].shape == (4, D, 5) and p['fc']['kernel'].shape == (15, 3)
  emb = np.asarray(p['embed']['embedding'])
  assert emb.shape == (V, D) and np.abs(emb).max() <= EMBED_INIT_SCALE
  n = sum(x.size for x in jax.tree.leaves(p))
  assert n == V * D + sum(k * D * 5 + 5 for k in (3, 4, 5)) + 15 * 3 + 3


def test_empty_sentence_gives_the_bias(variables):
  logits = jax.jit(_model().apply)(variables, jnp.zeros((2, 7), jnp.int32))
  np.testing.assert_allclose(logits, np.broadcast_to(variables['params']['fc']['bias'], (2, 3)))


def test_pretrained_rows_start_from_their_vectors():
  vectors = np.zeros((V, D), np.float32)
  found = np.zeros(V, bool)
  vectors[[2, 5]] = [[9.0] * D, [-9.0] * D]
  found[[2, 5]] = True
  model = _model(pretrained=Pretrained(vectors, found))
  emb = np.asarray(jax.jit(model.init)(jax.random.key(0), _tokens())['params']['embed'][
      'embedding'])
  np.testing.assert_array_equal(emb[[2, 5]], vectors[[2, 5]])
  others = np.delete(emb, [2, 5], axis=0)
  assert np.abs(others).max() <= EMBED_INIT_SCALE and np.abs(others).min() > 0
  with pytest.raises(ValueError, match=r'pretrained embeddings of shape \(30, 6\) do not fit an '
                     r'embedding of \(30, 4\)'):
    models.get_model('text_cnn', vocab_size=V, embed_dim=4,
                     pretrained=Pretrained(vectors, found)).init(jax.random.key(0), _tokens())


def test_bad_inputs():
  with pytest.raises(ValueError, match=r'TextCNN takes \(N, L\) integer token ids'):
    TextCNN(vocab_size=V).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  with pytest.raises(ValueError, match='distinct filter widths'):
    TextCNN(vocab_size=V, widths=(3, 3)).init(jax.random.key(0), _tokens())


def test_bfloat16_compute_keeps_float32_params_and_logits():
  model = _model(dtype=jnp.bfloat16)
  v = jax.jit(model.init)(jax.random.key(0), _tokens())
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v))
  out = jax.jit(model.apply)(v, _tokens())
  assert out.dtype == jnp.float32
  np.testing.assert_allclose(out, jax.jit(_model().apply)(v, _tokens()), atol=0.05)
