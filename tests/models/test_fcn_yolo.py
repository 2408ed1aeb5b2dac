"""FCN heads (bilinear upsampling, any input size) and the YOLO detector's output grid."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import get_model
from cnn_jax.models.fcn import FCN
from cnn_jax.ops import conv


class UpsampleTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_bilinear_transposed_conv_keeps_a_constant_map(self):
    x = jnp.full((1, 3, 5, 2), 0.7)
    for factor in (2, 8, 32):
      y = self.variant(lambda x, w, f=factor: conv.upsample_transposed(x, w, f))(
          x, conv.bilinear_kernel(factor, 2))
      chex.assert_shape(y, (1, 3 * factor, 5 * factor, 2))
      np.testing.assert_allclose(y, 0.7, rtol=1e-6)  # borders included

  def test_equals_bilinear_resize_and_einsum_impl(self):
    x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3))
    w = conv.bilinear_kernel(4, 3)
    y = conv.upsample_transposed(x, w, 4)
    np.testing.assert_allclose(y, jax.image.resize(x, (2, 16, 24, 3), 'bilinear'), atol=1e-5)
    np.testing.assert_allclose(conv.upsample_transposed(x, w, 4, impl='einsum'), y, atol=1e-5)
    with pytest.raises(ValueError, match=r'needs a \(8, 8, C, C_out\) kernel'):
      conv.upsample_transposed(x, conv.bilinear_kernel(2, 3), 4)


@pytest.mark.parametrize('variant', ['32s', '16s', '8s'])
@pytest.mark.parametrize('backbone,kwargs', [('resnet18', {'width': 4}), ('vgg11', {})])
def test_fcn_output_size_equals_input_size(variant, backbone, kwargs):
  model = get_model(f'fcn{variant}', num_classes=3, backbone=backbone, backbone_kwargs=kwargs)
  for h, w in ((50, 70), (33, 47)):  # not multiples of 32
    out = jax.eval_shape(lambda x: model.init_with_output(jax.random.key(0), x)[0],
                         jax.ShapeDtypeStruct((2, h, w, 3), jnp.float32))
    assert out.shape == (2, h, w, 3)


def test_fcn8s_skips_start_at_zero_and_learn():
  # Zero-initialised skip scores: at init 8s predicts from the stride-32 scores alone.
  x = jax.random.normal(jax.random.key(1), (1, 64, 64, 3))
  m8 = get_model('fcn8s', num_classes=3, backbone='resnet18', backbone_kwargs={'width': 4})
  v8 = jax.jit(m8.init)(jax.random.key(0), x)  # jitted: one compile, not one per op
  for name in ('score8', 'score16'):
    assert not np.any(v8['params'][name]['kernel']) and not np.any(v8['params'][name]['bias'])
  grads = jax.jit(jax.grad(lambda p: jnp.sum(m8.apply({**v8, 'params': p}, x) ** 2)))(
      v8['params'])
  assert float(jnp.abs(grads['score8']['kernel']).sum()) > 0
  np.testing.assert_array_equal(v8['params']['up8']['kernel'], conv.bilinear_kernel(8, 3))


def test_fcn_takes_a_backbone_module_and_its_taps():
  x = jnp.zeros((1, 32, 32, 3))
  # The head never looks a backbone up by name: any features_only module with taps works.
  googlenet = get_model('googlenet', num_classes=3)
  with pytest.raises(ValueError, match='FCN needs taps=.* for a GoogLeNet backbone'):
    FCN(backbone=googlenet).init(jax.random.key(0), x)
  resnet = get_model('resnet18', features_only=True, width=4)
  with pytest.raises(ValueError, match="unknown FCN variant '4s'"):
    FCN(backbone=resnet, variant='4s').init(jax.random.key(0), x)
  tapped = FCN(backbone=resnet, num_classes=2, taps=('layer2', 'layer3', 'layer4'))
  default = FCN(backbone=resnet, num_classes=2)
  v = tapped.init(jax.random.key(0), x)
  np.testing.assert_array_equal(tapped.apply(v, x), default.apply(v, x))
  assert set(v['params']) >= {'backbone', 'score8', 'up8'}


def test_yolo_grid_and_conv_impls_agree():
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  lax_model = get_model('yolo', num_classes=3, num_anchors=2, widths=(4, 8))
  variables = jax.jit(lax_model.init)(jax.random.key(1), x)  # jitted: not one compile per op
  out = jax.jit(lax_model.apply)(variables, x)
  chex.assert_shape(out, (2, 8, 8, 2, 8))
  einsum_out = jax.jit(get_model('yolo', num_classes=3, num_anchors=2, widths=(4, 8),
                                 conv_impl='einsum').apply)(variables, x)
  np.testing.assert_allclose(einsum_out, out, atol=1e-4)
