"""LeNet-5: exact parameter counts, real forward passes, conv impls and dtypes."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cnn_jax.models.lenet import LeNet5
from tests.models.model_utils import (abstract_variables, count, param_count,
                                      random_variables)

LAYERS = ('conv1', 'conv2', 'fc1', 'fc2', 'fc3')
# (variant, input channels, per-layer parameter counts in LAYERS order, total).
CASES = [
    ('seed', 3, (456, 2_416, 48_120, 10_164, 850), 62_006),
    ('classic', 1, (156, 2_416, 48_120, 10_164, 850), 61_706),
]


def _x(channels, n=2, seed=0):
  return jnp.asarray(np.random.default_rng(seed).normal(size=(n, 32, 32, channels)),
                     jnp.float32)


@functools.cache
def _variables(variant='seed', num_classes=10):
  """Random variables of the right shapes; skips compiling an init per test."""
  channels = 3 if variant == 'seed' else 1
  model = LeNet5(num_classes=num_classes, variant=variant)
  return random_variables(abstract_variables(model, (1, 32, 32, channels)))


class LeNetTest(parameterized.TestCase):

  @parameterized.parameters(*CASES)
  def test_parameter_counts(self, variant, channels, per_layer, total):
    params = abstract_variables(LeNet5(variant=variant), (1, 32, 32, channels))['params']
    self.assertEqual(tuple(params), LAYERS)
    self.assertEqual(tuple(count(params[name]) for name in LAYERS), per_layer)
    self.assertEqual(param_count(LeNet5(variant=variant), (1, 32, 32, channels)), total)
    self.assertEqual(sum(per_layer), total)

  @parameterized.parameters(*CASES)
  def test_forward_and_conv_impls_agree(self, variant, channels, per_layer, total):
    del per_layer, total
    x = _x(channels)
    variables = _variables(variant, num_classes=7)
    self.assertEqual(set(variables), {'params'})  # No BatchNorm, no state.
    # The same variables drive both convolution implementations.
    logits = {impl: jax.jit(LeNet5(num_classes=7, variant=variant, conv_impl=impl).apply)(
        variables, x) for impl in ('lax', 'einsum')}
    chex.assert_shape(logits['lax'], (2, 7))
    chex.assert_type(logits['lax'], jnp.float32)
    chex.assert_tree_all_finite(logits)
    np.testing.assert_allclose(logits['einsum'], logits['lax'], rtol=1e-4, atol=1e-4)
    # No dropout or BatchNorm: train mode computes the same function.
    train = jax.jit(functools.partial(LeNet5(num_classes=7, variant=variant).apply, train=True))
    np.testing.assert_allclose(train(variables, x), logits['lax'], rtol=1e-6, atol=1e-6)

  def test_init(self):
    x = _x(3)
    variables = LeNet5().init(jax.random.key(0), x)
    chex.assert_trees_all_equal_shapes_and_dtypes(
        variables, abstract_variables(LeNet5(), x.shape))
    chex.assert_shape(LeNet5().apply(variables, x), (2, 10))

  def test_variants_differ_only_in_nonlinearities(self):
    x = _x(3)
    variables = _variables()
    seed = jax.jit(LeNet5(variant='seed').apply)(variables, x)
    classic = jax.jit(LeNet5(variant='classic').apply)(variables, x)
    self.assertFalse(np.allclose(seed, classic))

  def test_bfloat16_compute_returns_float32_logits(self):
    x = _x(3)
    variables = _variables()
    want = jax.jit(LeNet5().apply)(variables, x)
    got = jax.jit(LeNet5(dtype=jnp.bfloat16).apply)(variables, x)
    chex.assert_type(got, jnp.float32)
    chex.assert_type(variables['params']['fc3']['kernel'], jnp.float32)
    np.testing.assert_allclose(got, want, rtol=5e-2, atol=5e-2)
    # bfloat16 really is used inside: the logits are not bit-identical.
    self.assertFalse(np.array_equal(got, want))

  def test_gradients_reach_every_parameter(self):
    x = _x(3)
    variables = _variables()
    labels = jnp.arange(2)

    def loss(params):
      logits = LeNet5().apply({'params': params}, x)
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

    grads = jax.jit(jax.grad(loss))(variables['params'])
    chex.assert_trees_all_equal_shapes(grads, variables['params'])
    chex.assert_tree_all_finite(grads)
    for name in LAYERS:
      self.assertGreater(float(jnp.abs(grads[name]['kernel']).sum()), 0.0, msg=name)

  def test_unknown_variant(self):
    with pytest.raises(ValueError, match="unknown LeNet5 variant 'modern'"):
      abstract_variables(LeNet5(variant='modern'), (1, 32, 32, 3))
