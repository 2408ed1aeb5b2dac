"""Inception-v3: torchvision's parameter counts and names, shapes, the auxiliary head, a forward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import get_model, weights
from cnn_jax.models import inception_v3
from cnn_jax.models.inception_v3 import InceptionV3
from cnn_jax.ops import conv
from cnn_jax.ops.blocks import ConvBN
from tests.models.model_utils import abstract_variables, param_count, random_variables

REFERENCE = (1, 299, 299, 3)


@pytest.mark.parametrize('aux,count', [(True, 27_161_264), (False, 23_834_568)])
def test_parameter_counts_are_torchvisions(aux, count):
  assert param_count(InceptionV3(aux_logits=aux), REFERENCE) == count


def test_feature_map_sizes_at_299():
  model = InceptionV3(num_classes=5)
  v = abstract_variables(model, REFERENCE)
  logits, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats', 'aux_logits'],
                               rngs={'dropout': jax.random.key(0)}),
      v, jax.ShapeDtypeStruct((2, 299, 299, 3), jnp.float32))
  assert logits.shape == (2, 5) and state['aux_logits']['aux1'][0].shape == (2, 5)
  # Mixed_6e's input has 768 channels, Mixed_7c's output 2048 (the fc's input).
  assert v['params']['Mixed_6e']['branch1x1']['conv']['kernel'].shape == (1, 1, 768, 192)
  assert v['params']['fc']['kernel'].shape == (2048, 5)
  assert v['params']['Mixed_6b']['branch7x7_2']['conv']['kernel'].shape == (1, 7, 128, 128)
  assert v['params']['Mixed_6b']['branch7x7_3']['conv']['kernel'].shape == (7, 1, 128, 192)


def test_torchvision_names_and_round_trip(tmp_path):
  v = random_variables(abstract_variables(InceptionV3(), REFERENCE))
  names = weights.names_for('inception_v3', v)
  # torchvision's 580 state_dict entries minus 96 num_batches_tracked (one per BasicConv2d).
  assert len(names) == 484 == len(set(names.values()))
  for ours, theirs in [
      ('params/Conv2d_1a_3x3/conv/kernel', 'Conv2d_1a_3x3.conv.weight'),
      ('params/Mixed_5b/branch5x5_2/bn/scale', 'Mixed_5b.branch5x5_2.bn.weight'),
      ('batch_stats/Mixed_6e/branch7x7dbl_5/bn/var', 'Mixed_6e.branch7x7dbl_5.bn.running_var'),
      ('params/Mixed_7b/branch3x3_2a/conv/kernel', 'Mixed_7b.branch3x3_2a.conv.weight'),
      ('params/Mixed_7c/branch3x3dbl_3b/conv/kernel', 'Mixed_7c.branch3x3dbl_3b.conv.weight'),
      ('params/Mixed_7a/branch7x7x3_4/conv/kernel', 'Mixed_7a.branch7x7x3_4.conv.weight'),
      ('params/AuxLogits/conv1/conv/kernel', 'AuxLogits.conv1.conv.weight'),
      ('params/AuxLogits/fc/kernel', 'AuxLogits.fc.weight'), ('params/fc/bias', 'fc.bias')]:
    assert names[ours] == theirs
  flat = weights.export_flat(v, names)
  assert flat['Mixed_6b.branch7x7_2.conv.weight'].shape == (128, 128, 1, 7)  # OIHW
  weights.save_flat(flat, tmp_path / 'inception_v3.safetensors')
  loaded = weights.load_pretrained('inception_v3', jax.tree.map(jnp.zeros_like, v),
                                   tmp_path / 'inception_v3.safetensors')
  for a, b in zip(jax.tree.leaves(v), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(a, b)


def test_a_forward_pass_and_its_input_rules():
  model = get_model('inception_v3', num_classes=3, aux_logits=False)
  v = random_variables(abstract_variables(model, (1, 75, 75, 3)))
  x = jax.random.normal(jax.random.key(0), (2, 75, 75, 3))
  logits = jax.jit(lambda v, x: model.apply(v, x))(v, x)
  assert logits.shape == (2, 3) and logits.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  with pytest.raises(ValueError, match='needs images of at least 75x75.*got 64x64'):
    jax.eval_shape(lambda v: model.apply(v, jnp.zeros((1, 64, 64, 3))), v)


def test_transform_input_is_torchvisions():
  # torchvision's _transform_input: x_c * (std_c / 0.5) + (mean_c - 0.5) / 0.5 per channel.
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  want = jnp.stack([x[..., c] * (s / 0.5) + (m - 0.5) / 0.5 for c, (m, s) in
                    enumerate(((0.485, 0.229), (0.456, 0.224), (0.406, 0.225)))], -1)
  np.testing.assert_allclose(inception_v3.transform_input(x), want, rtol=1e-6, atol=1e-6)


def test_rectangular_kernels_pad_each_axis():
  unit = ConvBN(features=2, kernel_size=(1, 7))
  params, state = unit.init(jax.random.key(0), 3)
  x = jax.random.normal(jax.random.key(1), (1, 9, 9, 3))
  y, _ = unit.apply(params, state, x, train=False)
  want = conv.conv2d(x, params['conv']['kernel'], padding=((0, 0), (3, 3)))
  want = jax.nn.relu((want - state['bn']['mean']) / jnp.sqrt(state['bn']['var'] + 1e-5)
                     * params['bn']['scale'] + params['bn']['bias'])
  assert y.shape == (1, 9, 9, 2)
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
