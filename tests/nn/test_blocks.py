"""Pure blocks vs their Linen wrappers, shortcut options, BN state and dtype policy."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cnn_jax import nn as cnn
from cnn_jax.ops import blocks, norm

X = jax.random.normal(jax.random.key(42), (2, 8, 8, 8))

# (module, pure apply with the same hyper-parameters, expected output shape)
CASES = {
    'basic_A': (cnn.BasicBlock(features=16, strides=2, shortcut='A'),
                lambda p, s, x, t, impl: blocks.residual_block(
                    p, s, x, train=t, stride=2, shortcut='A', impl=impl), (2, 4, 4, 16)),
    'basic_B': (cnn.BasicBlock(features=16, strides=2, shortcut='B'),
                lambda p, s, x, t, impl: blocks.residual_block(
                    p, s, x, train=t, stride=2, shortcut='B', impl=impl), (2, 4, 4, 16)),
    'plain': (cnn.PlainBlock(features=8),
              lambda p, s, x, t, impl: blocks.plain_block(p, s, x, train=t, impl=impl),
              (2, 8, 8, 8)),
    'bottleneck': (cnn.Bottleneck(width=4, strides=2),
                   lambda p, s, x, t, impl: blocks.bottleneck_block(
                       p, s, x, train=t, stride=2, impl=impl), (2, 4, 4, 16)),
    'inception': (cnn.Inception(c1=4, c3_reduce=2, c3=6, c5_reduce=2, c5=3, pool_proj=5),
                  lambda p, s, x, t, impl: blocks.inception_block(p, s, x, train=t, impl=impl),
                  (2, 8, 8, 18)),
    'conv_bn': (cnn.ConvBN(features=6, kernel_size=3, strides=2),
                lambda p, s, x, t, impl: blocks.conv_bn(
                    p, s, x, train=t, stride=2, act=jax.nn.relu, impl=impl), (2, 4, 4, 6)),
}


class BlockEquivalenceTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(case=list(CASES), train=[True, False], impl=['lax', 'einsum'])
  def test_module_equals_pure_function(self, case, train, impl):
    module, pure, out_shape = CASES[case]
    module = module.clone(conv_impl=impl)
    variables = module.init(jax.random.key(0), X, train=False)
    y_mod, updated = self.variant(
        lambda v, x: module.apply(v, x, train=train, mutable=['batch_stats']))(variables, X)
    y_pure, new_state = self.variant(lambda p, s, x: pure(p, s, x, train, impl))(
        variables['params'], variables['batch_stats'], X)
    chex.assert_shape(y_mod, out_shape)
    np.testing.assert_allclose(y_mod, y_pure, atol=1e-6)
    chex.assert_trees_all_close(updated['batch_stats'], new_state, atol=1e-6)
    if train:  # running statistics move in training ...
      assert not np.allclose(jax.tree.leaves(new_state)[0],
                             jax.tree.leaves(variables['batch_stats'])[0])
    else:      # ... and stay put in evaluation
      chex.assert_trees_all_equal(new_state, variables['batch_stats'])

  @parameterized.parameters(*CASES)
  def test_einsum_matches_lax(self, case):
    module, _, _ = CASES[case]
    variables = module.init(jax.random.key(0), X, train=False)
    y = {impl: module.clone(conv_impl=impl).apply(variables, X, train=False)
         for impl in ('lax', 'einsum')}
    np.testing.assert_allclose(y['einsum'], y['lax'], atol=1e-4)


def _n_params(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def test_option_a_is_parameter_free_and_plain_matches_it():
  key = jax.random.key(0)
  pa, _ = blocks.residual_block_init(key, 16, 32, stride=2, shortcut='A')
  pb, _ = blocks.residual_block_init(key, 16, 32, stride=2, shortcut='B')
  pp, _ = blocks.plain_block_init(key, 16, 32, stride=2)
  assert _n_params(pa) == _n_params(pp) == 2 * 0 + (3 * 3 * 16 * 32 + 3 * 3 * 32 * 32) + 4 * 32
  assert _n_params(pb) == _n_params(pa) + 16 * 32 + 2 * 32  # 1x1 projection + its BN
  # Option B adds no projection when the shape is unchanged.
  pb_same, _ = blocks.residual_block_init(key, 16, 16, shortcut='B')
  assert 'proj' not in pb_same


def test_shortcut_a_subsamples_and_zero_pads():
  x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
  y = blocks.shortcut_a(x, 5, 2)
  chex.assert_shape(y, (2, 2, 2, 5))
  np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
  np.testing.assert_array_equal(y[..., 3:], 0)
  with pytest.raises(ValueError, match="cannot reduce channels"):
    blocks.shortcut_a(x, 2, 1)


def test_plain_block_differs_from_residual_by_the_shortcut():
  params, state = blocks.residual_block_init(jax.random.key(1), 8, 8, shortcut='A')
  y_res, _ = blocks.residual_block(params, state, X, train=False, shortcut='A')
  y_plain, _ = blocks.plain_block(params, state, X, train=False)
  assert not np.allclose(y_res, y_plain)
  # With zero weights the body is 0, so residual = relu(x) and plain = 0.
  zero = jax.tree.map(jnp.zeros_like, params)
  np.testing.assert_allclose(blocks.residual_block(zero, state, X, train=False,
                                                   shortcut='A')[0], jax.nn.relu(X))
  np.testing.assert_allclose(blocks.plain_block(zero, state, X, train=False)[0], 0.0)


def test_unknown_shortcut():
  with pytest.raises(ValueError, match=r"unknown shortcut option 'C'.*\('A', 'B'\)"):
    blocks.residual_block_init(jax.random.key(0), 4, 4, shortcut='C')


def test_batch_norm_statistics():
  params, state = norm.batch_norm_init(3)
  x = jax.random.normal(jax.random.key(0), (16, 5, 5, 3)) * 3.0 + 2.0
  y, new_state = norm.batch_norm(params, state, x, train=True, momentum=0.9)
  np.testing.assert_allclose(jnp.mean(y, (0, 1, 2)), 0.0, atol=1e-5)
  np.testing.assert_allclose(jnp.var(y, (0, 1, 2)), 1.0, atol=1e-3)
  np.testing.assert_allclose(new_state['mean'], 0.1 * jnp.mean(x, (0, 1, 2)), rtol=1e-5)
  np.testing.assert_allclose(new_state['var'], 0.9 + 0.1 * jnp.var(x, (0, 1, 2)), rtol=1e-5)
  y_eval, same = norm.batch_norm(params, new_state, x, train=False)
  np.testing.assert_allclose(y_eval, (x - new_state['mean']) / jnp.sqrt(new_state['var'] + 1e-5),
                             rtol=1e-5, atol=1e-5)
  assert same is new_state
  with pytest.raises(ValueError, match='input has 4 channels'):
    norm.batch_norm(params, state, jnp.zeros((1, 2, 2, 4)), train=True)


def test_batch_norm_pmean_matches_global_batch():
  params, state = norm.batch_norm_init(2)
  x = jax.random.normal(jax.random.key(3), (4, 6, 3, 3, 2))  # (devices, per-device batch, ...)
  y_dev, s_dev = jax.vmap(lambda x: norm.batch_norm(params, state, x, train=True,
                                                    axis_name='d'), axis_name='d')(x)
  y_all, s_all = norm.batch_norm(params, state, x.reshape(24, 3, 3, 2), train=True)
  np.testing.assert_allclose(y_dev.reshape(24, 3, 3, 2), y_all, atol=1e-5)
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[0], s_dev), s_all, atol=1e-6)


def test_bfloat16_compute_float32_params():
  module = cnn.BasicBlock(features=8, dtype=jnp.bfloat16)
  variables = module.init(jax.random.key(0), X, train=False)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))
  y, upd = module.apply(variables, X, train=True, mutable=['batch_stats'])
  assert y.dtype == jnp.bfloat16
  assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(upd))
  y32 = module.clone(dtype=None).apply(variables, X, train=False)
  np.testing.assert_allclose(module.apply(variables, X, train=False).astype(jnp.float32), y32,
                             atol=0.1, rtol=0.05)


def test_conv_and_dense_wrappers():
  conv = cnn.Conv(features=4, kernel_size=3, strides=2, use_bias=True)
  v = conv.init(jax.random.key(0), X)
  assert v['params']['kernel'].shape == (3, 3, 8, 4) and v['params']['bias'].shape == (4,)
  chex.assert_shape(conv.apply(v, X), (2, 4, 4, 4))
  dense = cnn.Dense(features=3)
  vd = dense.init(jax.random.key(0), jnp.ones((5, 7)))
  np.testing.assert_allclose(dense.apply(vd, jnp.ones((5, 7))),
                             jnp.ones((5, 7)) @ vd['params']['kernel'] + vd['params']['bias'],
                             atol=1e-6)


def test_bottleneck_strides_on_the_3x3_as_resnet_v1_5():
  params, state = blocks.bottleneck_block_init(jax.random.key(0), 16, 8, stride=2)
  x = jnp.zeros((1, 8, 8, 16))
  jaxpr = jax.make_jaxpr(lambda x: blocks.bottleneck_block(params, state, x, train=False,
                                                           stride=2))(x)
  convs = [(e.invars[1].aval.shape[:2], e.outvars[0].aval.shape)
           for e in jaxpr.jaxpr.eqns if e.primitive.name == 'conv_general_dilated']
  # conv1 1x1 keeps 8x8, conv2 3x3 halves it, conv3 1x1 and the 1x1 projection at 4x4.
  assert convs == [((1, 1), (1, 8, 8, 8)), ((3, 3), (1, 4, 4, 8)), ((1, 1), (1, 4, 4, 32)),
                   ((1, 1), (1, 4, 4, 32))]
