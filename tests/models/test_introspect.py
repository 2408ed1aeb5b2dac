"""summary(): per-layer table with the seed's LeNet-5 counts; FLOPs vs XLA."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax import models
from cnn_jax.models import introspect as S


def test_lenet5_table_shows_the_seed_counts(capsys):
  rows = models.summary(models.get_model('lenet5'), (1, 32, 32, 3))
  table = capsys.readouterr().out
  assert [r.name for r in rows] == ['conv1', 'conv2', 'fc1', 'fc2', 'fc3']
  assert [r.params for r in rows] == [456, 2_416, 48_120, 10_164, 850]
  assert [r.output_shape for r in rows] == [(1, 28, 28, 6), (1, 10, 10, 16), (1, 120), (1, 84),
                                            (1, 10)]
  # conv1: 28*28*6 outputs x 5*5*3 taps; conv2: 10*10*16 x 5*5*6; dense: d_in * d_out.
  assert [r.multiplies for r in rows] == [352_800, 240_000, 48_000, 10_080, 840]
  for text in ('456', '2,416', '48,120', '10,164', '850', '62,006'):
    assert text in table


def test_multiplies_are_per_example_and_impl_independent():
  rows1 = models.summary(models.get_model('cifar_resnet20'), (1, 32, 32, 3), print_table=False)
  rows4 = models.summary(models.get_model('cifar_resnet20', conv_impl='einsum'), (4, 32, 32, 3),
                         print_table=False)
  assert [r.multiplies for r in rows1] == [r.multiplies for r in rows4]
  assert sum(r.params for r in rows1) == 269_722
  assert sum(r.multiplies for r in rows1) == 40_551_040  # ~41M mult-adds, as usually quoted


def _train_step(model, x, y):
  variables = model.init(jax.random.key(0), x)
  tx = optax.sgd(0.1)

  def step(params, batch_stats, opt_state, x, y):
    def loss_fn(p):
      logits, upd = model.apply({'params': p, 'batch_stats': batch_stats}, x, train=True,
                                mutable=['batch_stats'])
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), upd
    grads, upd = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), upd, opt_state

  params = variables['params']
  args = (params, variables.get('batch_stats', {}), tx.init(params), x, y)
  return step, args


@pytest.mark.parametrize('name', ['lenet5', 'cifar_resnet20'])
def test_train_step_flops_from_xla_match_the_analytic_count(name):
  model = models.get_model(name)
  x, y = jnp.zeros((8, 32, 32, 3)), jnp.zeros((8,), jnp.int32)
  forward = S.count_multiplies(lambda v, x: model.apply(v, x), model.init(jax.random.key(0), x),
                               x)
  step, args = _train_step(model, x, y)
  analytic = S.count_multiplies(step, *args)
  # Backward = input and weight gradients: two more contractions of the forward's size,
  # minus the first layer's input gradient, which nobody needs.
  assert 2 * forward < analytic <= 3 * forward
  flops = S.xla_flops(step, *args)
  if flops is None:
    pytest.skip('this backend gives no XLA cost analysis')
  # XLA counts 2 FLOPs per multiply-add, plus elementwise work, minus taps in padding.
  assert 0.8 < flops / (2 * analytic) < 1.4, (flops, analytic)


def test_activations_of_named_layers():
  from cnn_jax.models.introspect import activations
  from cnn_jax.ops import blocks
  model = models.get_model('vgg11', include_top=False)
  x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.key(1), x)  # one compile, not one per op
  out = activations(model, variables, x, ['conv2_1', 'conv1_1'])
  assert list(out) == ['conv2_1', 'conv1_1']
  np.testing.assert_allclose(out['conv1_1'], blocks.conv(variables['params']['conv1_1'], x),
                             rtol=1e-5, atol=1e-5)
  assert out['conv2_1'].shape == (2, 16, 16, 128)
  # include_top=False: the pool5 map.
  assert jax.eval_shape(model.apply, variables, x).shape == (2, 1, 1, 512)
  # Differentiable through the capture, as style transfer needs.
  g = jax.jit(jax.grad(
      lambda x: jnp.sum(activations(model, variables, x, ['conv2_1'])['conv2_1'])))(x)
  assert g.shape == x.shape and float(jnp.abs(g).sum()) > 0
  with pytest.raises(ValueError, match=r"no layer named \['conv9_9'\] in VGG"):
    activations(model, variables, x, ['conv9_9'])


def test_receptive_field_hand_values():
  from cnn_jax.models.introspect import receptive_field
  lenet = models.get_model('lenet5')
  v = lenet.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  # conv1: 5x5. conv2 after a 2x2 pool: 5 + (2 - 1) * 1 + (5 - 1) * 2 = 14, stride 2.
  assert receptive_field(lenet, v, 'conv1', input_hw=(32, 32)) == S.ReceptiveField(
      (5, 5), (1, 1), (0, 0))
  assert receptive_field(lenet, v, 'conv2', input_hw=(32, 32)) == S.ReceptiveField(
      (14, 14), (2, 2), (0, 0))
  classic = models.get_model('lenet5_classic')  # tanh + average pooling: same field
  vc = classic.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
  assert receptive_field(classic, vc, 'conv2', input_hw=(32, 32), channels=1).size == (14, 14)
  # ResNet-20, stage 1: stem 3x3 then 3 blocks of two 3x3 convs: 3 + 6 * 2 = 15 (padding 7).
  # stage2_0: a stride-2 3x3 (+2) then a 3x3 at stride 2 (+4): 21, stride 2.
  r20 = models.get_model('cifar_resnet20')
  v = r20.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert receptive_field(r20, v, 'stage1_2', input_hw=(64, 64)) == S.ReceptiveField(
      (15, 15), (1, 1), (-7, -7))
  assert receptive_field(r20, v, 'stage2_0', input_hw=(64, 64)) == S.ReceptiveField(
      (21, 21), (2, 2), (-10, -10))
  field = S.ReceptiveField((21, 21), (2, 2), (-10, -10))
  assert field.box(0, 0, (32, 32)) == (0, 0, 11, 11) and field.box(8, 8, (32, 32)) == (
      6, 6, 27, 27)
  with pytest.raises(ValueError, match='reaches the input border'):
    receptive_field(r20, v, 'stage3_2', input_hw=(32, 32))
