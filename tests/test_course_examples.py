"""The course's worked examples, each asserted through the project's own ops and models.

Each test's docstring quotes the example it checks. Where the course's own
number is wrong, the test asserts the right value and says why.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.nn.blocks import Inception
from cnn_jax.ops import boxes as box_ops
from cnn_jax.ops import conv, cost
from cnn_jax.ops.shapes import conv_output_size


@pytest.mark.parametrize('impl', conv.IMPLS)
def test_1d_backprop_jacobians(impl):
  """Backprop through a 1-D convolution: ``O1 = I1 W1 + I2 W2 + I3 W3``, ``O2 = I2 W1 + I3 W2 +
  I4 W3``, so dO/dI = [[W1, W2, W3, 0], [0, W1, W2, W3]] and dO/dW = [[I1, I2, I3], [I2, I3, I4]].
  """
  i = jnp.array([1.0, 2.0, 3.0, 4.0])
  w = jnp.array([0.5, -1.0, 2.0])
  f = lambda i, w: conv.conv2d(i.reshape(1, 1, 4, 1), w.reshape(1, 3, 1, 1), impl=impl).ravel()
  np.testing.assert_allclose(f(i, w), [i[0] * w[0] + i[1] * w[1] + i[2] * w[2],
                                       i[1] * w[0] + i[2] * w[1] + i[3] * w[2]])
  d_in, d_w = jax.jacobian(f, argnums=(0, 1))(i, w)
  np.testing.assert_allclose(d_in, [[w[0], w[1], w[2], 0], [0, w[0], w[1], w[2]]])
  np.testing.assert_allclose(d_w, [[i[0], i[1], i[2]], [i[1], i[2], i[3]]])


@pytest.mark.parametrize('impl', conv.IMPLS)
def test_rgb_kernel_channels_sum_with_the_bias(impl):
  """One 3x3x3 filter on an RGB patch: the three kernel channels give 308, -498 and 164, and
  with bias 1 the output pixel is 308 - 498 + 164 + 1 = -25.

  The course's pixel values are a figure, not text here; this builds one integer patch
  and kernel per channel with those partial sums, and checks that the convolution of all
  three channels is their sum plus the bias, and that a depthwise pass yields the parts.
  """
  patch = np.zeros((3, 3, 3), np.float32)
  kernel = np.zeros((3, 3, 3), np.float32)
  patch[..., 0], kernel[..., 0] = 154, np.diag([1, 1, 0])            # 154 + 154 = 308
  patch[..., 1], kernel[..., 1] = 166, -np.diag([1, 1, 1])           # -3 * 166 = -498
  patch[..., 2], kernel[..., 2] = 82, np.eye(3)[::-1] * [1, 1, 0]    # 82 + 82 = 164
  x = jnp.asarray(patch)[None]
  full = conv.conv2d(x, jnp.asarray(kernel)[..., None], jnp.ones(1), impl=impl)
  assert full.shape == (1, 1, 1, 1) and float(full[0, 0, 0, 0]) == -25.0
  parts = conv.conv2d(x, jnp.asarray(kernel)[:, :, None, :], groups=3, impl=impl)
  np.testing.assert_array_equal(parts.ravel(), [308.0, -498.0, 164.0])


@pytest.mark.parametrize('impl', conv.IMPLS)
def test_5x5_binary_image_and_3x3_filter(impl):
  """The 5x5 binary image convolved with the 3x3 "x" filter [[1,0,1],[0,1,0],[1,0,1]]: the
  first output is 4, and the whole 3x3 feature map is [[4,3,4],[2,4,3],[2,3,4]]."""
  image = jnp.array([[1, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 0],
                     [0, 1, 1, 0, 0]], jnp.float32)
  kernel = jnp.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], jnp.float32)
  out = conv.conv2d(image[None, :, :, None], kernel[:, :, None, None], impl=impl)[0, :, :, 0]
  assert float(out[0, 0]) == 4.0
  np.testing.assert_array_equal(out, [[4, 3, 4], [2, 4, 3], [2, 3, 4]])


def test_28x28_with_a_5x5_field_gives_24x24():
  """A 28x28 input and a 5x5 local receptive field (stride 1, no padding): 28 - 5 + 1 = 24."""
  assert conv_output_size(28, 5) == 24
  out = conv.conv2d(jnp.zeros((1, 28, 28, 1)), jnp.zeros((5, 5, 1, 3)))
  assert out.shape == (1, 24, 24, 3)


def test_two_3x3x3_filters_have_56_parameters():
  """Two 3x3 filters on a 3-channel input: 2 x (3 x 3 x 3 + 1 bias) = 56 parameters."""
  assert cost.conv_params(3, 3, 3, 2) == 56


def test_inception_block_output_is_28x28x256():
  """Inception 3a on a 28x28x192 input: 64 (1x1) + 128 (3x3) + 32 (5x5) + 32 (pool proj)
  channels concatenated: 28x28x256."""
  block = Inception(c1=64, c3_reduce=96, c3=128, c5_reduce=16, c5=32, pool_proj=32,
                    c5_kernel=5)
  out = jax.eval_shape(lambda: block.init_with_output(jax.random.key(0),
                                                      jnp.zeros((1, 28, 28, 192)), train=False)[0])
  assert out.shape == (1, 28, 28, 256)


def test_fully_connected_input_sizes():
  """Why convolutions: a 64x64 RGB image is 12,288 inputs to a dense layer, a 1000x1000 one
  3 million, so a 1,000-unit dense layer on it has 3 billion weights."""
  assert math.prod((64, 64, 3)) == 12_288
  assert math.prod((1000, 1000, 3)) == 3_000_000
  assert cost.dense_params(3_000_000, 1000, bias=False) == 3_000_000_000


def test_two_objects_in_one_cell_take_two_anchors():
  """A pedestrian (tall) and a car (wide) centred in the same grid cell: each is assigned to
  the anchor whose shape fits it best, so the cell's target holds both."""
  anchors = jnp.array([[0.4, 0.15], [0.15, 0.4]])   # (h, w): tall, wide
  boxes = box_ops.centers_to_corners(jnp.array([[0.5, 0.5, 0.45, 0.12],     # pedestrian
                                                 [0.52, 0.48, 0.14, 0.42]]))  # car
  target = box_ops.yolo_encode(boxes, jnp.array([0, 1]), grid=3, anchors=anchors,
                               num_classes=3)
  cell = target[1, 1]
  np.testing.assert_array_equal(cell[:, 0], [1, 1])           # p_c of both anchors
  np.testing.assert_array_equal(cell[:, 5:], [[1, 0, 0], [0, 1, 0]])
  assert float(target[..., 0].sum()) == 2                     # nothing elsewhere


def test_lenet_table_with_the_courses_errors_corrected():
  """The course's LeNet-5 table (32x32x3 input, CONV1 8 filters 5x5, POOL, CONV2 16 filters
  5x5, POOL, FC3 120, FC4 84, softmax 10) lists parameters 208, 416, 48,001, 10,081 and 841.

  Those miscount: CONV1 has 5*5*3 weights per filter, so (75 + 1) * 8 = 608 (208 is the
  1-channel count); CONV2 sees 8 channels, (5*5*8 + 1) * 16 = 3,216 (416 forgets them);
  the dense layers have a bias per output, 400*120 + 120 = 48,120, 120*84 + 84 = 10,164 and
  84*10 + 10 = 850. The activation sizes 3,072 / 6,272 / 1,568 / 1,600 / 400 / 120 / 84 / 10
  are right.
  """
  assert [cost.conv_params(5, 5, 3, 8), cost.conv_params(5, 5, 8, 16)] == [608, 3216]
  assert [cost.dense_params(400, 120), cost.dense_params(120, 84),
          cost.dense_params(84, 10)] == [48_120, 10_164, 850]
  sizes = [32 * 32 * 3]
  for hw, c in ((conv_output_size(32, 5), 8), (14, 8), (conv_output_size(14, 5), 16), (5, 16)):
    sizes.append(hw * hw * c)
  assert sizes + [120, 84, 10] == [3072, 6272, 1568, 1600, 400, 120, 84, 10]
