"""Block specs vs their Linen modules and compose layers, shortcut options, BN state, dtypes."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cnn_jax import nn as cnn
from cnn_jax.models.introspect import iter_eqns
from cnn_jax.ops import blocks, compose, norm

X = jax.random.normal(jax.random.key(42), (2, 8, 8, 8))

# (Linen module, the spec built independently with the same hyper-parameters, output shape)
CASES = {
    'basic_A': (cnn.BasicBlock(features=16, strides=2, shortcut='A'),
                blocks.BasicBlock(16, 2, 'A'), (2, 4, 4, 16)),
    'basic_B': (cnn.BasicBlock(features=16, strides=2, shortcut='B'),
                blocks.BasicBlock(16, 2, 'B'), (2, 4, 4, 16)),
    'plain': (cnn.PlainBlock(features=8), blocks.PlainBlock(8), (2, 8, 8, 8)),
    'bottleneck': (cnn.Bottleneck(width=4, strides=2), blocks.Bottleneck(4, 2), (2, 4, 4, 16)),
    'inception': (cnn.Inception(c1=4, c3_reduce=2, c3=6, c5_reduce=2, c5=3, pool_proj=5),
                  blocks.Inception(4, 2, 6, 2, 3, 5), (2, 8, 8, 18)),
    'conv_bn': (cnn.ConvBN(features=6, kernel_size=3, strides=2),
                blocks.ConvBN(6, 3, 2, act=jax.nn.relu), (2, 4, 4, 6)),
    'batch_norm': (cnn.BatchNorm(momentum=0.8), blocks.BatchNorm(0.8), (2, 8, 8, 8)),
}
STATELESS = {
    'conv': (cnn.Conv(5, 3, strides=2, groups=1), blocks.Conv(5, 3, 2), (2, 4, 4, 5)),
    'dense': (cnn.Dense(3, use_bias=False), blocks.Dense(3, False), (2, 8, 8, 3)),
}
LINEN = (cnn.Conv, cnn.Dense, cnn.BatchNorm, cnn.ConvBN, cnn.BasicBlock, cnn.PlainBlock,
         cnn.Bottleneck, cnn.Inception)


class BlockEquivalenceTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(case=list(CASES), train=[True, False], impl=['lax', 'einsum'])
  def test_module_equals_spec(self, case, train, impl):
    module, spec, out_shape = CASES[case]
    if 'conv_impl' in module.spec_type.__dataclass_fields__:
      module, spec = module.clone(conv_impl=impl), dataclasses.replace(spec, conv_impl=impl)
    assert module.spec() == spec
    variables = module.init(jax.random.key(0), X, train=False)
    y_mod, updated = self.variant(
        lambda v, x: module.apply(v, x, train=train, mutable=['batch_stats']))(variables, X)
    y_pure, new_state = self.variant(lambda p, s, x: spec.apply(p, s, x, train=train))(
        variables['params'], variables['batch_stats'], X)
    chex.assert_shape(y_mod, out_shape)
    np.testing.assert_allclose(y_mod, y_pure, atol=1e-6)
    chex.assert_trees_all_close(updated['batch_stats'], new_state, atol=1e-6)
    if train:  # running statistics move in training ...
      assert not np.allclose(jax.tree.leaves(new_state)[0],
                             jax.tree.leaves(variables['batch_stats'])[0])
    else:      # ... and stay put in evaluation
      chex.assert_trees_all_equal(new_state, variables['batch_stats'])

  @parameterized.parameters(*CASES, *STATELESS)
  def test_module_and_compose_layer_agree(self, case):
    """One spec, two front ends: same variable tree, same outputs and states."""
    module, spec, out_shape = {**CASES, **STATELESS}[case]
    variables = module.init(jax.random.key(0), X, train=False)
    lyr = compose.from_spec(module.spec())
    params, state, shape = lyr.init(jax.random.key(1), X.shape)
    assert shape == out_shape
    chex.assert_trees_all_equal_shapes_and_dtypes(params, variables['params'])
    chex.assert_trees_all_equal_shapes_and_dtypes(state, variables.get('batch_stats', {}))
    for train in (True, False):
      y_mod, upd = module.apply(variables, X, train=train, mutable=['batch_stats'])
      y_lyr, new_state = lyr.apply(variables['params'], variables.get('batch_stats', {}), X,
                                   train=train)
      np.testing.assert_array_equal(y_mod, y_lyr)
      chex.assert_trees_all_equal(upd.get('batch_stats', {}), new_state)

  @parameterized.parameters(*CASES)
  def test_einsum_matches_lax(self, case):
    module, _, _ = CASES[case]
    if 'conv_impl' not in module.spec_type.__dataclass_fields__:
      self.skipTest('no convolution')
    variables = module.init(jax.random.key(0), X, train=False)
    y = {impl: module.clone(conv_impl=impl).apply(variables, X, train=False)
         for impl in ('lax', 'einsum')}
    np.testing.assert_allclose(y['einsum'], y['lax'], atol=1e-4)


@pytest.mark.parametrize('cls', LINEN, ids=lambda c: c.__name__)
def test_linen_fields_are_the_spec_fields(cls):
  """A spec field is a module field (same default), so an option is one edit."""
  spec_fields = {f.name: f.default for f in dataclasses.fields(cls.spec_type) if f.init}
  module_fields = {f.name: f.default for f in dataclasses.fields(cls)
                   if f.name not in ('parent', 'name')}
  assert module_fields == spec_fields
  assert cls.__name__ == cls.spec_type.__name__  # Flax's auto names and introspect's kinds


def test_plain_block_has_no_shortcut_option():
  assert 'shortcut' not in {f.name for f in dataclasses.fields(cnn.PlainBlock)}
  assert blocks.PlainBlock(8).shortcut is None
  with pytest.raises(TypeError):
    blocks.PlainBlock(8, shortcut='A')


def test_stateful_module_needs_train():
  module = cnn.ConvBN(features=4)
  variables = module.init(jax.random.key(0), X, train=False)
  with pytest.raises(TypeError, match='call it with train=True or train=False'):
    module.apply(variables, X)
  conv = cnn.Conv(4)  # stateless: train is optional
  chex.assert_shape(conv.apply(conv.init(jax.random.key(0), X), X), (2, 8, 8, 4))


def _n_params(tree):
  return sum(x.size for x in jax.tree.leaves(tree))


def test_option_a_is_parameter_free_and_plain_matches_it():
  key = jax.random.key(0)
  pa, _ = blocks.BasicBlock(32, 2, 'A').init(key, 16)
  pb, _ = blocks.BasicBlock(32, 2, 'B').init(key, 16)
  pp, _ = blocks.PlainBlock(32, 2).init(key, 16)
  assert _n_params(pa) == _n_params(pp) == 2 * 0 + (3 * 3 * 16 * 32 + 3 * 3 * 32 * 32) + 4 * 32
  assert _n_params(pb) == _n_params(pa) + 16 * 32 + 2 * 32  # 1x1 projection + its BN
  # Option B adds no projection when the shape is unchanged.
  pb_same, _ = blocks.BasicBlock(16, shortcut='B').init(key, 16)
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
  res, plain = blocks.BasicBlock(8, shortcut='A'), blocks.PlainBlock(8)
  params, state = res.init(jax.random.key(1), 8)
  y_res, _ = res.apply(params, state, X, train=False)
  y_plain, _ = plain.apply(params, state, X, train=False)
  assert not np.allclose(y_res, y_plain)
  # With zero weights the body is 0, so residual = relu(x) and plain = 0.
  zero = jax.tree.map(jnp.zeros_like, params)
  np.testing.assert_allclose(res.apply(zero, state, X, train=False)[0], jax.nn.relu(X))
  np.testing.assert_allclose(plain.apply(zero, state, X, train=False)[0], 0.0)


def test_unknown_shortcut():
  with pytest.raises(ValueError, match=r"unknown shortcut option 'C'.*\('A', 'B'\)"):
    blocks.BasicBlock(4, shortcut='C')
  with pytest.raises(ValueError, match='unknown shortcut option'):
    cnn.BasicBlock(features=4, shortcut='C').init(jax.random.key(0), X, train=False)


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
  spec = blocks.Bottleneck(8, 2)
  params, state = spec.init(jax.random.key(0), 16)
  x = jnp.zeros((1, 8, 8, 16))
  jaxpr = jax.make_jaxpr(lambda x: spec.apply(params, state, x, train=False))(x)
  convs = [(e.invars[1].aval.shape[:2], e.outvars[0].aval.shape)
           for e in iter_eqns(jaxpr) if e.primitive.name == 'conv_general_dilated']
  # conv1 1x1 keeps 8x8, conv2 3x3 halves it, conv3 1x1 and the 1x1 projection at 4x4.
  assert convs == [((1, 1), (1, 8, 8, 8)), ((3, 3), (1, 4, 4, 8)), ((1, 1), (1, 4, 4, 32)),
                   ((1, 1), (1, 4, 4, 32))]
