"""AlexNet and VGG: exact parameter counts and shapes via eval_shape, one cheap real forward."""

import functools

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cnn_jax.models.alexnet import AlexNet
from cnn_jax.models.vgg import VGG
from tests.models.model_utils import abstract_variables, param_count, random_variables

IMAGENET = (1, 224, 224, 3)

# torchvision's numbers for 1000 classes (vgg*_bn count BN scale and bias).
VGG_COUNTS = [
    (11, False, 132_863_336), (11, True, 132_868_840),
    (13, False, 133_047_848), (13, True, 133_053_736),
    (16, False, 138_357_544), (16, True, 138_365_992),
    (19, False, 143_667_240), (19, True, 143_678_248),
]


def _abstract_apply(model, variables, shape, dtype=jnp.float32, train=False, **kwargs):
  apply = functools.partial(model.apply, train=train, **kwargs)
  return jax.eval_shape(apply, variables, jax.ShapeDtypeStruct(shape, dtype))


class AlexNetTest(parameterized.TestCase):

  def test_parameter_count(self):
    self.assertEqual(param_count(AlexNet(), IMAGENET), 61_100_840)

  def test_layers_and_output_shape(self):
    variables = abstract_variables(AlexNet(), IMAGENET)
    self.assertEqual(set(variables), {'params'})
    self.assertEqual(tuple(variables['params']),
                     ('conv1', 'conv2', 'conv3', 'conv4', 'conv5', 'fc1', 'fc2', 'fc3'))
    chex.assert_shape(variables['params']['conv1']['kernel'], (11, 11, 3, 64))
    chex.assert_shape(variables['params']['fc1']['kernel'], (6 * 6 * 256, 4096))
    out = _abstract_apply(AlexNet(), variables, (2, 224, 224, 3))
    chex.assert_shape(out, (2, 1000))
    chex.assert_type(out, jnp.float32)

  @parameterized.parameters((63, 63), (96, 128), (320, 320))
  def test_adaptive_pool_makes_count_resolution_free(self, h, w):
    model = AlexNet(num_classes=10)
    self.assertEqual(param_count(model, (1, h, w, 3)), param_count(model, (1, 224, 224, 3)))
    out = _abstract_apply(model, abstract_variables(model, (1, h, w, 3)), (1, h, w, 3))
    chex.assert_shape(out, (1, 10))

  def test_einsum_impl_and_bfloat16(self):
    model = AlexNet(conv_impl='einsum', dtype=jnp.bfloat16)
    self.assertEqual(param_count(model, IMAGENET), 61_100_840)
    variables = abstract_variables(model, IMAGENET)
    chex.assert_type(variables['params']['conv1']['kernel'], jnp.float32)
    out = _abstract_apply(model, variables, IMAGENET, train=True,
                          rngs={'dropout': jax.random.key(0)})
    chex.assert_type(out, jnp.float32)

  def test_real_forward_at_minimum_size(self):
    # At 63x63 the last max pool leaves 1x1, which the adaptive pool repeats into 6x6.
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 63, 63, 3)), jnp.float32)
    model = AlexNet(num_classes=10)
    variables = random_variables(abstract_variables(model, x.shape))
    logits = jax.jit(model.apply)(variables, x)
    chex.assert_shape(logits, (2, 10))
    chex.assert_tree_all_finite(logits)
    self.assertFalse(np.allclose(logits[0], logits[1]))
    # Dropout is active in training (it needs an rng) and off in evaluation.
    train = jax.jit(functools.partial(model.apply, train=True))
    dropped = train(variables, x, rngs={'dropout': jax.random.key(1)})
    self.assertFalse(np.allclose(dropped, logits))
    with pytest.raises(flax.errors.InvalidRngError, match='dropout'):
      model.apply(variables, x, train=True)


class VGGTest(parameterized.TestCase):

  @parameterized.parameters(*VGG_COUNTS)
  def test_parameter_count(self, depth, batch_norm, want):
    self.assertEqual(param_count(VGG(depth=depth, batch_norm=batch_norm), IMAGENET), want)

  @parameterized.parameters(11, 16)
  def test_batch_norm_variables(self, depth):
    plain = abstract_variables(VGG(depth=depth), IMAGENET)
    bn = abstract_variables(VGG(depth=depth, batch_norm=True), IMAGENET)
    self.assertEqual(set(plain), {'params'})
    self.assertEqual(set(bn), {'params', 'batch_stats'})
    convs = [k for k in plain['params'] if k.startswith('conv')]
    self.assertLen(convs, depth - 3)
    self.assertEqual(sorted(bn['batch_stats']), sorted(k.replace('conv', 'bn') for k in convs))
    # torchvision's vgg*_bn keeps the conv bias.
    self.assertIn('bias', bn['params']['conv1_1'])
    chex.assert_shape(bn['batch_stats']['bn5_1']['mean'], (512,))

  def test_output_shape_and_train_mode(self):
    model = VGG(depth=16, batch_norm=True, num_classes=10)
    variables = abstract_variables(model, IMAGENET)
    chex.assert_shape(variables['params']['fc1']['kernel'], (7 * 7 * 512, 4096))
    out, updates = _abstract_apply(model, variables, (2, 224, 224, 3), train=True,
                                   mutable=['batch_stats'],
                                   rngs={'dropout': jax.random.key(0)})
    chex.assert_shape(out, (2, 10))
    chex.assert_type(out, jnp.float32)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates['batch_stats'],
                                                  variables['batch_stats'])

  @parameterized.parameters((32, 32), (64, 96))
  def test_small_inputs(self, h, w):
    # Five 2x2 pools leave 1x1 (or 2x3) maps; the adaptive pool restores 7x7.
    model = VGG(depth=11, num_classes=10)
    variables = abstract_variables(model, (1, h, w, 3))
    self.assertEqual(param_count(model, (1, h, w, 3)), param_count(model, IMAGENET))
    chex.assert_shape(_abstract_apply(model, variables, (3, h, w, 3)), (3, 10))

  def test_einsum_impl_and_bfloat16(self):
    model = VGG(depth=19, batch_norm=True, conv_impl='einsum', dtype=jnp.bfloat16)
    self.assertEqual(param_count(model, IMAGENET), 143_678_248)
    out = _abstract_apply(model, abstract_variables(model, IMAGENET), IMAGENET)
    chex.assert_type(out, jnp.float32)

  def test_unknown_depth(self):
    with pytest.raises(ValueError, match='unknown VGG depth 18'):
      abstract_variables(VGG(depth=18), IMAGENET)
