"""The deconvnet (Zeiler & Fergus 2014): hand-computed projections, switches, the ReLU rule,
reading zoo models, and the one-line error for nets that are not a plain chain."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax import models
from cnn_jax.models import deconvnet as D
from cnn_jax.models import explain
from cnn_jax.nn.layers import Conv
from cnn_jax.ops import blocks, pool
from cnn_jax.ops.conv import conv_transpose2d

# The tiny net: one 2x2 conv (padding 0 before, 1 after: 4x4 -> 4x4) -> ReLU -> 2x2 max pool.
X = np.array([[1, 0, 2, 0],
              [0, 3, 0, 2],
              [2, 0, 0, 4],
              [0, 0, 5, 0]], np.float32)
# w = [[1, 0], [0, -1]]: z[i, j] = x[i, j] - x[i + 1, j + 1] (0 outside the image).
W = np.array([[1, 0], [0, -1]], np.float32)
PAD = ((0, 1), (0, 1))
# z = [[-2, 0, 0, 0], [0, 3, -4, 2], [2, -5, 0, 4], [0, 0, 5, 0]], so relu(z) =
RELU_Z = np.array([[0, 0, 0, 0],
                   [0, 3, 0, 2],
                   [2, 0, 0, 4],
                   [0, 0, 5, 0]], np.float32)
# and the 2x2 windows' maxima: 3 at (1, 1), 2 at (1, 3), 2 at (2, 0), 5 at (3, 2).
POOLED = np.array([[3, 2], [2, 5]], np.float32)
SWITCHES = np.array([[1 * 4 + 1, 1 * 4 + 3], [2 * 4 + 0, 3 * 4 + 2]])


def _tiny_chain():
  conv = D.ConvLayer('conv', blocks.Conv(1, 2, padding=PAD, use_bias=False),
                     {'kernel': jnp.asarray(W[:, :, None, None])}, relu=True)
  return (conv, D.MaxPool((2, 2), (2, 2)))


def _image():
  return jnp.asarray(X[None, :, :, None])


def test_forward_records_the_switches_of_the_hand_example():
  fwd = D.forward(_tiny_chain(), _image())
  np.testing.assert_array_equal(fwd.output[0, ..., 0], POOLED)
  np.testing.assert_array_equal(fwd.switches[0][0, ..., 0], SWITCHES)
  assert fwd.in_shapes == ((1, 4, 4, 1), (1, 4, 4, 1))


def test_projection_computed_by_hand():
  chain, x = _tiny_chain(), _image()
  # The transposed conv sends a value v at (i, j) to +v at (i, j) (w[0, 0] = 1) and -v at
  # (i + 1, j + 1) (w[1, 1] = -1), dropped past the last row/column (the padding).
  # 'max': only the pooled 5 at (1, 1) of the map; its switch is (3, 2); (4, 3) is padding.
  expected_max = np.zeros((4, 4), np.float32)
  expected_max[3, 2] = 5
  # 'all': 3 at (1, 1) -> +3 (1, 1), -3 (2, 2); 2 at (1, 3) -> +2 (1, 3);
  #        2 at (2, 0) -> +2 (2, 0), -2 (3, 1); 5 at (3, 2) -> +5 (3, 2).
  expected_all = np.array([[0, 0, 0, 0],
                           [0, 3, 0, 2],
                           [2, 0, -3, 0],
                           [0, -2, 5, 0]], np.float32)
  # (y, x) = (0, 0): the pooled 3, switch (1, 1) -> +3 (1, 1), -3 (2, 2).
  expected_00 = np.zeros((4, 4), np.float32)
  expected_00[1, 1], expected_00[2, 2] = 3, -3
  for location, expected in (('max', expected_max), ('all', expected_all),
                             ((0, 0), expected_00)):
    out = D.deconvnet(chain, x, 0, location=location)
    assert out.shape == x.shape
    np.testing.assert_array_equal(out[0, ..., 0], expected, err_msg=str(location))


def test_transposed_filters_are_conv_transpose2d():
  # A strided 3x3 conv, pad 1, 8x8 -> 4x4: the transpose returns the recorded 8x8 (one of
  # the sizes the conv maps to 4x4), as conv_transpose2d with output_padding 1 does.
  w = jnp.asarray(np.random.default_rng(0).standard_normal((3, 3, 2, 5)), jnp.float32)
  layer = D.ConvLayer('c', blocks.Conv(5, 3, strides=2), {'kernel': w})
  r = jnp.asarray(np.random.default_rng(1).standard_normal((1, 4, 4, 5)), jnp.float32)
  np.testing.assert_allclose(layer.transpose(r, (1, 8, 8, 2)),
                             conv_transpose2d(r, w.swapaxes(2, 3), stride=2, padding=1,
                                              output_padding=1), rtol=1e-5, atol=1e-5)


class _Tiny(nn.Module):
  """The hand example as a Linen model, with a 1x1 identity conv on top to name."""

  @nn.compact
  def __call__(self, x, train=False):
    x = jax.nn.relu(Conv(1, 2, padding=PAD, use_bias=False, name='conv')(x))
    x = pool.max_pool(x, 2)
    return Conv(1, 1, use_bias=False, name='head')(x)


def test_read_chain_of_the_tiny_model_gives_the_hand_projection():
  variables = {'params': {'conv': {'kernel': jnp.asarray(W[:, :, None, None])},
                          'head': {'kernel': jnp.ones((1, 1, 1, 1))}}}
  chain = D.read_chain(_Tiny(), variables, 'head', _image())
  conv, mp, head = chain
  assert (conv.name, conv.relu, head.name, head.relu) == ('conv', True, 'head', False)
  assert mp == D.MaxPool((2, 2), (2, 2), ((0, 0), (0, 0)))  # inferred and checked on the data
  out = D.project_units(_Tiny(), variables, _image(), 'head', [0], location='all')
  np.testing.assert_array_equal(out[0, 0, ..., 0], [[0, 0, 0, 0], [0, 3, 0, 2],
                                                    [2, 0, -3, 0], [0, -2, 5, 0]])


@pytest.mark.parametrize('window,stride,padding', [(2, 2, 'VALID'), (3, 2, 1), (3, 1, 'SAME')])
def test_switches_sit_at_the_argmax_and_unpool_is_the_pool_gradient(window, stride, padding):
  x = np.random.default_rng(0).standard_normal((2, 7, 7, 3)).astype(np.float32)
  r = np.random.default_rng(1).standard_normal((2, 7, 7, 3)).astype(np.float32)

  @jax.jit
  def run(x, r):
    pooled, switches = D.max_pool_switches(x, window, stride, padding)
    r = r[:, :pooled.shape[1], :pooled.shape[2]]
    _, vjp = jax.vjp(lambda v: pool.max_pool(v, window, stride, padding), x)
    return (pooled, pool.max_pool(x, window, stride, padding), switches,
            D.unpool(r, switches, (7, 7)), vjp(r)[0])

  pooled, reference, switches, unpooled, grad = run(x, r)
  np.testing.assert_array_equal(pooled, reference)
  # The input value at each switch is the window's maximum.
  at_switch = np.take_along_axis(x.reshape(2, 49, 3), np.asarray(switches).reshape(2, -1, 3),
                                 axis=1)
  np.testing.assert_array_equal(at_switch.reshape(pooled.shape), pooled)
  # Unpooling puts each value at its switch: exactly max_pool's VJP (overlaps add up).
  np.testing.assert_allclose(unpooled, grad, rtol=1e-6, atol=1e-6)


def test_switches_take_the_first_maximum_on_ties():
  x = jnp.asarray(np.array([[0, 1, 1, 0], [0, 1, 0, 1]], np.float32)[None, :, :, None])
  _, switches = D.max_pool_switches(x, 2)
  np.testing.assert_array_equal(switches[0, ..., 0], [[1, 2]])  # row-major first, as max_pool


def test_relu_rectifies_the_backward_signal_unlike_the_gradient():
  # 1x1 image x = 1; conv1: 1 -> 3 channels, kernel [1, -1, 1], ReLU; conv2: 3 -> 1,
  # kernel [2, 3, -1]. Forward: z1 = [1, -1, 1], relu -> [1, 0, 1], unit = 2 - 1 = 1.
  conv1 = D.ConvLayer('c1', blocks.Conv(3, 1, use_bias=False),
                      {'kernel': jnp.asarray([1., -1., 1.]).reshape(1, 1, 1, 3)}, relu=True)
  conv2 = D.ConvLayer('c2', blocks.Conv(1, 1, use_bias=False),
                      {'kernel': jnp.asarray([2., 3., -1.]).reshape(1, 1, 3, 1)})
  chain, x = (conv1, conv2), jnp.ones((1, 1, 1, 1))
  assert float(D.forward(chain, x).output[0, 0, 0, 0]) == 1.0
  # Gradient: the forward gate relu'(z1) = [1, 0, 1] passes [2, -, -1]: 2 * 1 + (-1) * 1 = 1.
  grad, _ = explain.saliency(lambda v: D.forward(chain, v).output.reshape(1, 1), x,
                             jnp.zeros((1,), jnp.int32))
  assert float(grad[0, 0, 0, 0]) == 1.0
  # Deconvnet: conv2^T gives [2, 3, -1], rectified -> [2, 3, 0] (channel 1 passes though it
  # was off in the forward, channel 2 is cut though it was on); conv1^T: 2 - 3 + 0 = -1.
  assert float(D.deconvnet(chain, x, 0)[0, 0, 0, 0]) == -1.0


def _random_variables(model, x, prefixes=None, var=1.0, gamma=None):
  """Numpy-filled variables (no init to compile): He-scaled kernels, BatchNorm near identity
  with running variance ``var`` (and scale ``gamma`` if given); only the top-level layers
  starting with ``prefixes``."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), x)
  rng = np.random.default_rng(0)

  def fill(path, leaf):
    name, shape = path[-1].key, leaf.shape
    if name == 'var' or (name == 'scale' and gamma is not None):
      return np.full(shape, var if name == 'var' else gamma, np.float32)
    if len(shape) == 1:  # BatchNorm scale (around 1), biases and means (around 0)
      return ((name == 'scale') + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    return (rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[:-1]))).astype(np.float32)

  tree = jax.tree_util.tree_map_with_path(fill, shapes)
  return {col: {k: v for k, v in layers.items() if prefixes is None or k.startswith(prefixes)}
          for col, layers in tree.items()}


def _simple_cnn(**bn):
  model = models.get_model('simple_cnn', widths=(4, 8, 8), num_classes=3)
  x = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  return model, _random_variables(model, x, **bn), x


def test_simple_cnn_chain_and_projection_shapes():
  model, variables, x = _simple_cnn()
  chain = D.read_chain(model, variables, 'conv3', x)
  assert [type(l).__name__ for l in chain] == ['ConvLayer', 'MaxPool', 'ConvLayer', 'MaxPool',
                                               'ConvLayer']
  assert all(l.relu and l.bn is not None for l in chain if isinstance(l, D.ConvLayer))
  out = D.project_units(model, variables, x, 'conv3', [0, 5], chain=chain)
  assert out.shape == (2, 2, 16, 16, 3)
  assert np.isfinite(out).all() and (np.abs(out).reshape(4, -1).max(1) > 0).all()
  with pytest.raises(ValueError, match=r'channel\(s\) \[8\] out of range; the layer has 8'):
    D.project_units(model, variables, x, 'conv3', [8], chain=chain)


def test_without_relus_the_projection_is_the_gradient():
  # Switches and transposed filters are what the gradient uses too: with the ReLUs removed,
  # the deconvnet (BatchNorm as its scale) must equal the gradient of the unit exactly, times
  # the unit's activation (the projection starts from the activation, the gradient from 1).
  model, variables, x = _simple_cnn(var=0.3)
  chain = tuple(dataclasses.replace(l, relu=False) if isinstance(l, D.ConvLayer) else l
                for l in D.read_chain(model, variables, 'conv3', x))
  unit = lambda v: D.forward(chain, v).output[:, 2, 1, 3]
  run = jax.jit(lambda v: (D.deconvnet(chain, v, 3, location=(2, 1)), unit(v),
                           jax.grad(lambda u: unit(u).sum())(v)))
  projection, activation, grad = run(x)
  np.testing.assert_allclose(projection, activation[:, None, None, None] * grad, rtol=1e-4,
                             atol=1e-6)


def test_batch_norm_rule_scale_or_skip():
  # var = 4, gamma = 1: 'scale' multiplies the signal by 1 / sqrt(4 + eps) at each of the
  # three BatchNorms, and a ReLU commutes with a positive factor, so 'scale' is exactly
  # 'skip' times (4 + eps)^-1.5 (both use the same forward pass and switches).
  model, variables, x = _simple_cnn(var=4.0, gamma=1.0)
  chain = D.read_chain(model, variables, 'conv3', x)
  scale = D.project_units(model, variables, x, 'conv3', [1], chain=chain)
  skip = D.project_units(model, variables, x, 'conv3', [1], chain=chain, batch_norm='skip')
  np.testing.assert_allclose(scale, skip / (4 + 1e-5) ** 1.5, rtol=1e-4, atol=1e-7)
  with pytest.raises(ValueError, match='unknown batch_norm rule'):
    D.project_units(model, variables, x, 'conv3', [1], chain=chain, batch_norm='fold')


@pytest.mark.parametrize('name,kwargs,size,layer,expected', [
    ('lenet5', {}, 32, 'conv2', ['conv1+relu', (2, 2), 'conv2']),
    # AlexNet's overlapping 3x3/2 pools, inferred from the data.
    ('alexnet', {}, 67, 'conv3', ['conv1+relu', (3, 2), 'conv2+relu', (3, 2), 'conv3']),
    # VGG-BN: separate BatchNorm modules folded into their convs.
    ('vgg11_bn', {'include_top': False}, 32, 'bn3_1',
     ['conv1_1+bn+relu', (2, 2), 'conv2_1+bn+relu', (2, 2), 'conv3_1+bn']),
])
def test_zoo_chains(name, kwargs, size, layer, expected):
  model = models.get_model(name, **kwargs)
  x = jax.random.normal(jax.random.key(2), (1, size, size, 3))
  # Only the layers up to the named one: reading stops there, the head is never run.
  variables = _random_variables(model, x, ('conv', 'bn'))
  chain = D.read_chain(model, variables, layer, x)
  described = [l.name + '+bn' * (l.bn is not None) + '+relu' * l.relu
               if isinstance(l, D.ConvLayer) else (l.window[0], l.stride[0]) for l in chain]
  assert described == expected
  assert D.project_units(model, variables, x, layer, [0], chain=chain).shape == (1, 1, size,
                                                                                 size, 3)


def test_models_that_are_not_a_plain_chain_raise_one_line_errors():
  cases = [('cifar_resnet20', 'stage1_0',
            r"CifarResNet is not a plain chain up to 'stage1_0': 'stage1_0' is a BasicBlock; "
            r'the deconvnet needs a plain conv -> \(BN\) -> ReLU -> max-pool chain'),
           ('lenet5_classic', 'conv2', r"LeNet5 is not a plain chain up to 'conv2': the input "
            r"of 'conv2' is not a ReLU and/or max pool"),  # tanh and average pooling
           ('lenet5', 'nope', r"no layer 'nope' in LeNet5; its layers are \['conv1', "
            r"'conv2', 'fc1', 'fc2', 'fc3'\]")]
  for name, layer, message in cases:
    model = models.get_model(name)
    size = 32 if name.startswith('lenet') else 16
    x = jax.random.normal(jax.random.key(3), (1, size, size, 3))
    variables = _random_variables(model, x)
    with pytest.raises(ValueError, match=message) as err:
      D.read_chain(model, variables, layer, x)
    assert '\n' not in str(err.value)
