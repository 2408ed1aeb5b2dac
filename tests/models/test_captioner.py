"""Show and Tell captioner: variables, teacher forcing, decoding consistent with it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.data.captions import BOS_ID, EOS_ID, PAD_ID
from cnn_jax.models import get_model
from cnn_jax.models.captioner import Captioner

V, L = 12, 7


def _model(**kw):
  kw = {'vocab_size': V, 'max_len': L, 'embed_dim': 8, 'hidden': 16,
        'backbone_kwargs': {'widths': (4, 8)}, **kw}
  return get_model('captioner', **kw)


@pytest.fixture(scope='module', params=[False, True], ids=['show_and_tell', 'attention'])
def built(request):
  """A model with random weights and images of different colours (so captions differ)."""
  model = _model(attention=request.param)
  x = (2.0 * jax.random.normal(jax.random.key(5), (4, 1, 1, 3))
       + 0.3 * jax.random.normal(jax.random.key(0), (4, 16, 16, 3)))
  variables = jax.jit(model.init)(jax.random.key(1), x)
  # <eos> made the twin of a word the first caption says (just ahead of it): captions end.
  twin = int(jax.jit(model.apply)(variables, x)['tokens'][0, 2])
  params = dict(variables['params'])
  kernel, bias = params['out']['kernel'], params['out']['bias']
  params['out'] = {'kernel': kernel.at[:, EOS_ID].set(kernel[:, twin]),
                   'bias': bias.at[EOS_ID].set(bias[twin] + 0.01)}
  return model, {**variables, 'params': params}, x


def test_variables_and_shapes(built):
  model, variables, x = built
  assert isinstance(model, Captioner)
  p = variables['params']
  assert p['embed'].shape == (V, 8) and p['out']['kernel'].shape == (16, V)
  assert p['project']['kernel'].shape == (8, 8)  # pool='mean' / attention: the map's channels
  if model.attention:  # the LSTM reads the word and the context
    assert set(p) == {'backbone', 'project', 'embed', 'lstm', 'out', 'attention', 'init_h',
                      'init_c'}
    assert p['lstm']['w_ih'].shape == (16, 64) and p['attention']['w_h'].shape == (16, 8)
  else:
    assert set(p) == {'backbone', 'project', 'embed', 'lstm', 'out'}
    assert p['lstm']['w_ih'].shape == (8, 64) and p['lstm']['w_hh'].shape == (16, 64)
  tokens = jnp.array([[BOS_ID, 5, 6, EOS_ID, 0, 0, 0]] * 4)
  out = jax.jit(lambda v, x, t: model.apply(v, x, tokens=t))(variables, x, tokens)
  assert out['logits'].shape == (4, L - 1, V) and out['logits'].dtype == jnp.float32
  assert out['tokens'].shape == (4, L - 1) and out['scores'].shape == (4,)
  train, _ = model.apply(variables, x, train=True, tokens=tokens, mutable=['batch_stats'])
  assert set(train) == {'logits'}
  flat = jax.eval_shape(_model(pool='flatten').init, jax.random.key(1), x)['params']
  assert flat['project']['kernel'].shape == (4 * 4 * 8, 8)
  with pytest.raises(ValueError, match='needs tokens='):
    model.apply(variables, x, train=True, mutable=['batch_stats'])
  with pytest.raises(ValueError, match="pool='max'"):
    _model(pool='max').init(jax.random.key(1), x)


def test_greedy_decoding_is_the_argmax_of_teacher_forcing(built):
  """Feeding the greedy caption back with teacher forcing: each token is its step's argmax."""
  model, variables, x = built
  out = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
  greedy, scores = np.asarray(out['tokens']), np.asarray(out['scores'])
  assert len({tuple(r) for r in greedy}) > 1  # the images get different captions
  assert (greedy == EOS_ID).any()
  tokens = np.concatenate([np.full((4, 1), BOS_ID), greedy], 1).astype(np.int32)
  logp = jax.nn.log_softmax(model.apply(variables, x, tokens=jnp.asarray(tokens))['logits'])
  logp = np.asarray(logp)
  for n in range(4):
    total, ended = 0.0, False
    for t in range(L - 1):
      if ended:
        assert greedy[n, t] == PAD_ID
        continue
      assert greedy[n, t] == np.argmax(logp[n, t])
      total += logp[n, t, greedy[n, t]]
      ended = greedy[n, t] == EOS_ID
    assert scores[n] == pytest.approx(total, rel=1e-4, abs=1e-4)


def _teacher_forced_score(model, variables, x, decoded):
  """Sum of the log-probabilities of ``decoded`` (N, L-1) up to its <eos>, by teacher forcing."""
  tokens = jnp.concatenate([jnp.full((len(decoded), 1), BOS_ID), decoded], 1).astype(jnp.int32)
  logp = jax.nn.log_softmax(model.apply(variables, x, tokens=tokens)['logits'])
  picked = jnp.take_along_axis(logp, decoded[..., None], -1)[..., 0]
  eos = (decoded == EOS_ID).astype(jnp.int32)
  live = jnp.cumsum(eos, 1) - eos == 0  # up to and with the first <eos>
  return np.asarray(jnp.sum(jnp.where(live, picked, 0.0), 1)), np.asarray(live)


def test_beam_search_under_jit_scores_its_own_caption(built):
  model, variables, x = built
  beam = jax.jit(lambda v, x: model.apply(v, x, beam_size=4))(variables, x)
  tokens = np.asarray(beam['tokens'])
  assert tokens.shape == (4, L - 1)
  score, live = _teacher_forced_score(model, variables, x, jnp.asarray(tokens))
  np.testing.assert_allclose(beam['scores'], score, rtol=1e-4, atol=1e-4)
  assert np.all(tokens[~live] == PAD_ID)  # pad after <eos>
  one = jax.jit(lambda v, x: model.apply(v, x, beam_size=1))(variables, x)
  np.testing.assert_array_equal(one['tokens'], jax.jit(model.apply)(variables, x)['tokens'])
