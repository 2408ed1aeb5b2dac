"""Sliding windows: a dense layer as a convolution, and LeNet-5's one pass vs its crop loop."""

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models.lenet import LeNet5
from cnn_jax.ops import blocks, conv, sliding
from tests.arrays import normal


@hypothesis.settings(max_examples=12, deadline=None)
@hypothesis.given(h=st.integers(1, 4), w=st.integers(1, 4), c=st.integers(1, 3),
                  d=st.integers(1, 5), extra=st.integers(0, 3))
def test_dense_as_conv_is_the_dense_layer_at_every_window(h, w, c, d, extra):
  kernel = normal(0, (h * w * c, d))
  x = normal(1, (2, h + extra, w + extra, c))
  out = np.asarray(conv.conv2d(x, conv.dense_as_conv(kernel, (h, w, c))))
  x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)  # the numpy reference
  for i in range(extra + 1):
    for j in range(extra + 1):
      window = x[:, i:i + h, j:j + w].reshape(2, -1)  # NHWC flatten, as models do
      np.testing.assert_allclose(out[:, i, j], window @ kernel, rtol=1e-5, atol=1e-5)


def test_dense_as_conv_names_the_window_it_needs():
  with pytest.raises(ValueError, match=r'does not take flattened 5x5x16 maps \(needs \(400, D\)\)'):
    conv.dense_as_conv(jnp.zeros((300, 10)), (5, 5, 16))


def test_dense_spec_window_has_the_dense_parameters():
  key = jax.random.key(0)
  flat, _ = blocks.Dense(7).init(key, 5 * 5 * 3)
  windowed, _ = blocks.Dense(7, window=(5, 5)).init(key, 3)
  assert jax.tree.map(jnp.shape, flat) == jax.tree.map(jnp.shape, windowed)


@pytest.fixture(scope='module')
def lenet():
  model = LeNet5(num_classes=4)
  variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  variables = jax.tree.map(lambda v: v + 0.01, variables)  # non-zero biases too
  images = jax.random.normal(jax.random.key(1), (2, 40, 36, 3))
  return model, variables, images


@pytest.mark.parametrize('impl', conv.IMPLS)
def test_one_convolutional_pass_equals_the_crop_loop(lenet, impl):
  model, variables, images = lenet
  classify = jax.jit(lambda x: model.apply(variables, x))
  loop = sliding.crop_by_crop(classify, images, 32, 4)
  one_pass = jax.jit(LeNet5(num_classes=4, conv_impl=impl, fully_convolutional=True).apply)(
      variables, images)
  assert loop.shape == one_pass.shape == (2, 3, 2, 4)
  np.testing.assert_allclose(one_pass, loop, atol=1e-5, rtol=1e-5)


def test_gradients_of_the_two_agree(lenet):
  # Sum of every window's logit of class 0: the conv pass shares overlapping work,
  # and its parameter gradient is still the sum of the per-crop gradients.
  model, variables, images = lenet
  conv_model = model.clone(fully_convolutional=True)
  g_conv = jax.jit(jax.grad(lambda v: conv_model.apply(v, images)[..., 0].sum()))(variables)
  g_loop = jax.jit(jax.grad(lambda v: sliding.crop_by_crop(
      lambda x: model.apply(v, x), images, 32, 4)[..., 0].sum()))(variables)
  for a, b in zip(jax.tree.leaves(g_conv), jax.tree.leaves(g_loop)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_crops_and_grid_errors():
  x = jnp.arange(40 * 36 * 2, dtype=jnp.float32).reshape(1, 40, 36, 2)
  c = sliding.crops(x, 32, 4)
  assert c.shape == (1, 3, 2, 32, 32, 2)
  np.testing.assert_array_equal(c[0, 2, 1], x[0, 8:40, 4:36])
  with pytest.raises(ValueError, match='do not tile 38 pixels; use a size of 32 \\+ k \\* 4'):
    sliding.crops(jnp.zeros((1, 38, 32, 1)), 32, 4)
