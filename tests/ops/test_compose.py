"""Functional composition: a new architecture from pure layers, trained a few steps."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.ops import blocks, compose as C, losses


def small_net():
  """A new architecture in a few lines: stem, a residual and an inception stage, head."""
  return C.sequential(
      C.conv_bn(8, 3), C.relu,
      C.residual_block(8),
      C.residual(C.sequential(C.conv_bn(16, 3, stride=2), C.relu, C.conv_bn(16, 3)),
                 shortcut=C.conv_bn(16, 1, stride=2, padding=0), post=jax.nn.relu),
      C.inception_block(4, 4, 8, 2, 4, 4),
      C.global_avg_pool, C.dropout(0.1), C.dense(3))


def test_shapes_and_parameter_structure():
  net = small_net()
  params, state, out_shape = net.init(jax.random.key(0), (1, 16, 16, 3))
  assert out_shape == (1, 3)
  y, new_state = net.apply(params, state, jnp.zeros((5, 16, 16, 3)))
  chex.assert_shape(y, (5, 3))
  chex.assert_trees_all_equal_structs(state, new_state)
  # The residual_block layer holds exactly the pure block's parameters.
  ref, _ = blocks.BasicBlock(8).init(jax.random.key(0), 8)
  chex.assert_trees_all_equal_shapes(params[2], ref)


def test_new_architecture_trains_under_jit():
  """A 3-class toy task (mean colour channel) learnt by the composed net."""
  net = small_net()
  key = jax.random.key(0)
  params, state, _ = net.init(key, (1, 16, 16, 3))
  labels = jnp.arange(24) % 3
  x = jax.random.normal(jax.random.key(1), (24, 16, 16, 3)) * 0.3
  x = x + 1.5 * jax.nn.one_hot(labels, 3)[:, None, None, :]
  opt = optax.adam(3e-3)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, state, opt_state, rng):
    def loss_fn(p):
      logits, new_state = net.apply(p, state, x, train=True, rng=rng)
      return losses.softmax_cross_entropy(logits, labels), new_state
    (loss, new_state), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    # optax mixes its int32 step count with float hyper-parameters, which the
    # suite's strict promotion rejects; cnn_jax's own code stays strict.
    with jax.numpy_dtype_promotion('standard'):
      updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_state, opt_state, loss

  history = []
  for i in range(30):
    params, state, opt_state, loss = step(params, state, opt_state, jax.random.key(i))
    history.append(float(loss))
  assert history[-1] < 0.5 * history[0], history
  logits, _ = net.apply(params, state, x, train=False)
  assert float(jnp.mean(jnp.argmax(logits, -1) == labels)) > 0.9


def test_concat_and_residual_errors():
  branches = C.concat(C.conv(3, 1), C.conv(5, 3), C.max_pool(3, 1, padding=1))
  params, state, shape = branches.init(jax.random.key(0), (2, 8, 8, 4))
  assert shape == (2, 8, 8, 3 + 5 + 4)
  with pytest.raises(ValueError, match='body output .* and shortcut output .* differ'):
    C.residual(C.conv(8, 3, stride=2)).init(jax.random.key(0), (1, 8, 8, 4))
  drop = C.dropout(0.5)
  p, s, _ = drop.init(jax.random.key(0), (2, 4))
  with pytest.raises(ValueError, match='dropout needs an rng'):
    drop.apply(p, s, jnp.ones((2, 4)), train=True)
  np.testing.assert_array_equal(drop.apply(p, s, jnp.ones((2, 4)))[0], 1.0)


def test_specs_compose_directly():
  """A block spec is a layer: the named layers are the specs, so both build the same net."""
  named = C.sequential(C.conv_bn(8, 3), C.relu, C.residual_block(8, shortcut='A'),
                       C.residual(C.conv(8, 3), shortcut=C.conv_bn(8, 1)),
                       C.global_avg_pool, C.dense(3))
  specs = C.sequential(blocks.ConvBN(8, 3, act=None), C.relu, blocks.BasicBlock(8, shortcut='A'),
                       C.residual(blocks.Conv(8, 3), shortcut=blocks.ConvBN(8, 1, act=None)),
                       C.global_avg_pool, blocks.Dense(3))
  key, x = jax.random.key(0), jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
  (pa, sa, shape_a), (pb, sb, shape_b) = named.init(key, x.shape), specs.init(key, x.shape)
  assert shape_a == shape_b == (2, 3)
  chex.assert_trees_all_equal((pa, sa), (pb, sb))
  chex.assert_trees_all_equal(named.apply(pa, sa, x, train=True),
                              specs.apply(pb, sb, x, train=True))
