"""ResNet parameter counts (torchvision, He et al. Table 6), shapes and conv impls."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import get_model
from cnn_jax.models.resnet import CifarResNet, ResNet
from tests.models.model_utils import abstract_variables, count


def n_params(model, shape):
  variables = abstract_variables(model, shape)
  return count(variables['params']), variables


@pytest.mark.parametrize('depth,expected', [
    (18, 11_689_512), (34, 21_797_672), (50, 25_557_032), (101, 44_549_160),
    (152, 60_192_808)])
def test_imagenet_resnet_counts_match_torchvision(depth, expected):
  model = ResNet(depth=depth)
  count, _ = n_params(model, (1, 224, 224, 3))
  assert count == expected
  out = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((2, 224, 224, 3)))[0])
  assert out.shape == (2, 1000) and out.dtype == jnp.float32


# He et al. 2016, Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M.
@pytest.mark.parametrize('depth,exact,paper', [
    (20, 269_722, '0.27'), (32, 464_154, '0.46'), (44, 658_586, '0.66'),
    (56, 853_018, '0.85'), (110, 1_727_962, '1.7')])
def test_cifar_resnet_and_plain_counts(depth, exact, paper):
  res, variables = n_params(CifarResNet(depth=depth), (1, 32, 32, 3))
  plain, _ = n_params(CifarResNet(depth=depth, plain=True), (1, 32, 32, 3))
  assert res == plain == exact
  assert f'{exact / 1e6:.{len(paper.split(".")[1])}f}' == paper
  # BN statistics are state, not parameters: a mean and a var per BN channel
  # (stem 16, then two BNs per block, n blocks per stage of 16/32/64 channels).
  n = (depth - 2) // 6
  n_stats = sum(x.size for x in jax.tree.leaves(variables['batch_stats']))
  assert n_stats == 2 * (16 + 2 * n * (16 + 32 + 64))


def test_cifar_option_b_adds_projections():
  a, _ = n_params(CifarResNet(depth=20, shortcut='A'), (1, 32, 32, 3))
  b, _ = n_params(CifarResNet(depth=20, shortcut='B'), (1, 32, 32, 3))
  assert b - a == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_bad_depth_errors():
  with pytest.raises(ValueError, match=r'6k\+2.*got 21'):
    CifarResNet(depth=21).init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  with pytest.raises(ValueError, match=r'one of \[18, 34, 50, 101, 152\], got 19'):
    ResNet(depth=19).init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))


def test_cifar_forward_train_and_impls_agree():
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
  model = CifarResNet(depth=8)
  # Jitted: one compile per program instead of one per op.
  variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(0), x)
  logits = jax.jit(model.apply)(variables, x)
  chex.assert_shape(logits, (2, 10))
  logits_ein = jax.jit(model.clone(conv_impl='einsum').apply)(variables, x)
  np.testing.assert_allclose(logits_ein, logits, atol=1e-4)
  y, updated = jax.jit(functools.partial(model.apply, train=True, mutable=['batch_stats']))(
      variables, x)
  chex.assert_trees_all_equal_structs(updated['batch_stats'], variables['batch_stats'])
  plain = CifarResNet(depth=8, plain=True)
  assert not np.allclose(jax.jit(plain.apply)(variables, x), logits)  # same params, no shortcuts


def test_init_works_for_both_impls_in_every_resnet():
  for name in ('resnet18', 'resnet50', 'cifar_resnet56', 'cifar_plain110'):
    for impl in ('lax', 'einsum'):
      model = get_model(name, conv_impl=impl)
      shape = (1, 32, 32, 3) if name.startswith('cifar') else (1, 224, 224, 3)
      out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), jnp.zeros(shape))[0])
      assert out.shape[-1] == (10 if name.startswith('cifar') else 1000)
