"""GoogLeNet: exact parameter counts, aux heads via sow, ceil-mode pooling, one real step."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from cnn_jax.models import googlenet
from cnn_jax.models.googlenet import GoogLeNet
from tests.models.model_utils import abstract_variables, count, param_count, random_variables

IMAGENET = (1, 224, 224, 3)
TRAIN_COLLECTIONS = ['batch_stats', 'aux_logits']


def _abstract_apply(model, variables, shape, train=False, **kwargs):
  apply = functools.partial(model.apply, train=train, **kwargs)
  return jax.eval_shape(apply, variables, jax.ShapeDtypeStruct(shape, jnp.float32))


@functools.cache
def _abstract(shape=IMAGENET, **fields):
  """Cached eval_shape of init: each GoogLeNet trace costs about a second."""
  model = GoogLeNet(**fields)
  return model, abstract_variables(model, shape)


def _train_kwargs():
  return dict(train=True, mutable=TRAIN_COLLECTIONS, rngs={'dropout': jax.random.key(0)})


class ParameterCountTest(parameterized.TestCase):

  @parameterized.parameters(
      (False, 3, 6_624_904),   # torchvision's googlenet(aux_logits=False)
      (True, 3, 13_004_888),   # ... with both auxiliary heads
      (False, 5, 7_005_832),   # the paper's 5x5 branch
      (True, 5, 13_385_816),
  )
  def test_counts(self, aux_logits, c5_kernel, want):
    model = GoogLeNet(aux_logits=aux_logits, c5_kernel=c5_kernel)
    self.assertEqual(param_count(model, IMAGENET), want)

  def test_aux_heads_add_torchvision_inception_aux(self):
    params = _abstract()[1]['params']
    # conv 1x1 (no bias) + BN scale/bias, fc1 2048 -> 1024, fc2 1024 -> 1000.
    head = lambda c_in: c_in * 128 + 2 * 128 + 2048 * 1024 + 1024 + 1024 * 1000 + 1000
    self.assertEqual(count(params['aux_head1']), head(512))
    self.assertEqual(count(params['aux_head2']), head(528))

  def test_c5_kernel_difference(self):
    extra = 16 * sum(c5r * c5 for _, _, _, c5r, c5, _ in googlenet.INCEPTION.values())
    self.assertEqual(extra, 380_928)
    params = _abstract(c5_kernel=5)[1]['params']
    chex.assert_shape(params['inception3a']['b3']['conv']['kernel'], (5, 5, 16, 32))

  def test_count_is_resolution_free(self):
    model = GoogLeNet(num_classes=10)
    self.assertEqual(param_count(model, (1, 96, 128, 3)), param_count(model, IMAGENET))


class AuxLogitsTest(parameterized.TestCase):

  def test_aux_params_exist_after_init(self):
    _, variables = _abstract(num_classes=10)
    self.assertEqual(set(variables), {'params', 'batch_stats'})  # Nothing sown at init.
    for name in ('aux_head1', 'aux_head2'):
      self.assertIn(name, variables['params'])
      self.assertIn(name, variables['batch_stats'])
      chex.assert_shape(variables['params'][name]['fc2']['kernel'], (1024, 10))
    _, no_aux = _abstract(num_classes=10, aux_logits=False)
    self.assertNotIn('aux_head1', no_aux['params'])

  @parameterized.parameters((IMAGENET,), ((2, 96, 96, 3),), ((1, 65, 81, 3),))
  def test_train_sows_aux_logits(self, shape):
    model, variables = _abstract(shape, num_classes=10)
    logits, updates = _abstract_apply(model, variables, shape, **_train_kwargs())
    chex.assert_shape(logits, (shape[0], 10))
    self.assertEqual(set(updates), {'batch_stats', 'aux_logits'})
    self.assertEqual(set(updates['aux_logits']), {'aux1', 'aux2'})
    for name in ('aux1', 'aux2'):
      (aux,) = updates['aux_logits'][name]  # sow stores a tuple.
      chex.assert_shape(aux, (shape[0], 10))
      chex.assert_type(aux, jnp.float32)
    chex.assert_trees_all_equal_shapes_and_dtypes(updates['batch_stats'],
                                                  variables['batch_stats'])

  def test_eval_skips_aux_heads(self):
    model, variables = _abstract(num_classes=10)
    logits, updates = _abstract_apply(model, variables, IMAGENET, mutable=['aux_logits'])
    chex.assert_shape(logits, (1, 10))
    self.assertEqual(dict(updates), {})
    # Evaluation never reads the heads' variables, so they can be dropped.
    pruned = {col: {k: v for k, v in tree.items() if not k.startswith('aux_head')}
              for col, tree in variables.items()}
    chex.assert_shape(_abstract_apply(model, pruned, IMAGENET), (1, 10))

  def test_without_aux_nothing_is_sown(self):
    model, variables = _abstract(num_classes=10, aux_logits=False)
    _, updates = _abstract_apply(model, variables, IMAGENET, **_train_kwargs())
    self.assertNotIn('aux_logits', updates)

  @pytest.mark.slow
  def test_real_train_step(self):
    # One real forward in training mode at a small size: random variables (an
    # init would mostly spend compile time), batch statistics and dropout on.
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 64, 64, 3)), jnp.float32)
    model = GoogLeNet(num_classes=10)
    variables = random_variables(abstract_variables(model, x.shape))
    step = jax.jit(lambda v, x, key: model.apply(
        v, x, train=True, mutable=TRAIN_COLLECTIONS, rngs={'dropout': key}))
    logits, updates = step(variables, x, jax.random.key(1))
    chex.assert_shape(logits, (2, 10))
    chex.assert_shape([updates['aux_logits']['aux1'][0], updates['aux_logits']['aux2'][0]],
                      (2, 10))
    chex.assert_tree_all_finite((logits, updates))
    # Running statistics moved away from their (0, 1) initial values.
    stats = updates['batch_stats']['conv1']['bn']
    self.assertGreater(float(jnp.abs(stats['mean']).sum()), 0.0)


class ConvImplAndDtypeTest(parameterized.TestCase):

  def test_einsum_impl(self):
    model = GoogLeNet(conv_impl='einsum')
    self.assertEqual(param_count(model, IMAGENET), 13_004_888)
    chex.assert_shape(_abstract_apply(model, abstract_variables(model, IMAGENET), IMAGENET),
                      (1, 1000))

  def test_bfloat16_returns_float32_logits(self):
    model, variables = _abstract(num_classes=10, dtype=jnp.bfloat16)
    chex.assert_type(variables['params']['fc']['kernel'], jnp.float32)
    logits, updates = _abstract_apply(model, variables, IMAGENET, **_train_kwargs())
    chex.assert_type([logits, updates['aux_logits']['aux1'][0]], jnp.float32)
    chex.assert_type(updates['batch_stats']['conv1']['bn']['mean'], jnp.float32)


def _ref_max_pool_ceil(x, window, stride):
  """PyTorch ceil_mode: windows start every ``stride`` inside the input, clipped at the edge."""
  n, h, w, c = x.shape
  out_hw = []
  for size in (h, w):
    out = math.ceil((size - window) / stride) + 1
    if (out - 1) * stride >= size:
      out -= 1
    out_hw.append(out)
  y = np.empty((n, *out_hw, c), x.dtype)
  for i in range(out_hw[0]):
    for j in range(out_hw[1]):
      win = x[:, i * stride:i * stride + window, j * stride:j * stride + window]
      y[:, i, j] = win.max(axis=(1, 2))
  return y


class CeilModePoolTest(parameterized.TestCase):

  @parameterized.parameters((112, 3, 2), (57, 3, 2), (8, 3, 2), (14, 2, 2), (7, 2, 2), (3, 3, 2))
  def test_matches_pytorch_ceil_mode(self, size, window, stride):
    x = np.random.default_rng(size).normal(size=(1, size, size + 1, 2)).astype(np.float32)
    y = googlenet._max_pool_ceil(jnp.asarray(x), window, stride)
    np.testing.assert_array_equal(y, _ref_max_pool_ceil(x, window, stride))


def test_torchvision_names_and_round_trip(tmp_path):
  from cnn_jax.models import weights
  _, abstract = _abstract()
  v = random_variables(abstract)
  names = weights.names_for('googlenet', v)
  # torchvision's 364 state_dict entries minus 59 num_batches_tracked (one per BasicConv2d).
  assert len(names) == 305 == len(set(names.values()))
  for ours, theirs in [
      ('params/conv1/conv/kernel', 'conv1.conv.weight'),
      ('batch_stats/conv3/bn/mean', 'conv3.bn.running_mean'),
      ('params/inception3a/b1/conv/kernel', 'inception3a.branch1.conv.weight'),
      ('params/inception4b/b2_reduce/bn/scale', 'inception4b.branch2.0.bn.weight'),
      ('params/inception5b/b3/conv/kernel', 'inception5b.branch3.1.conv.weight'),
      ('batch_stats/inception4e/b4/bn/var', 'inception4e.branch4.1.bn.running_var'),
      ('params/aux_head1/conv/conv/kernel', 'aux1.conv.conv.weight'),
      ('params/aux_head2/fc2/bias', 'aux2.fc2.bias'), ('params/fc/kernel', 'fc.weight')]:
    assert names[ours] == theirs
  assert names['params/aux_head1/fc1/kernel'].chw == (128, 4, 4)  # torch flattens (C, H, W)
  flat = weights.export_flat(v, names)
  assert flat['aux1.fc1.weight'].shape == (1024, 2048)
  weights.save_flat(flat, tmp_path / 'googlenet.safetensors')
  loaded = weights.load_pretrained('googlenet', jax.tree.map(jnp.zeros_like, v),
                                   tmp_path / 'googlenet.safetensors')
  for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(a, b)
