"""Schedules and optimizers built from config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.train import optim
from cnn_jax.train.config import default_config


def _cfg(**schedule):
  c = default_config()
  c.optimizer.lr = 0.1
  for k, v in schedule.items():
    c.schedule[k] = v
  return c


def _lr(schedule, step):
  with jax.numpy_dtype_promotion('standard'):
    return float(schedule(jnp.asarray(step, jnp.int32)))


def test_piecewise_as_in_he_et_al():
  s = optim.make_schedule(_cfg(name='piecewise', decay_steps=(32_000, 48_000)), 64_000)
  assert [_lr(s, t) for t in (0, 31_999, 32_000, 47_999, 48_000, 63_999)] == pytest.approx(
      [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


def test_piecewise_with_one_factor_per_boundary():
  c = _cfg(name='piecewise', decay_steps=(2, 5, 8), decay_factors=(0.4, 0.5, 0.2))
  s = optim.make_schedule(c, 10)
  assert [_lr(s, t) for t in (0, 1, 2, 4, 5, 7, 8, 9)] == pytest.approx(
      [0.1, 0.1, 0.04, 0.04, 0.02, 0.02, 0.004, 0.004])
  c.schedule.decay_factors = (0.4, 0.5)
  with pytest.raises(ValueError, match=r'decay_factors \(0.4, 0.5\) must give one factor per '
                     r'boundary of schedule.decay_steps \(2, 5, 8\)'):
    optim.make_schedule(c, 10)


def test_warmup_then_cosine():
  s = optim.make_schedule(_cfg(name='cosine', warmup_steps=10), 110)
  assert _lr(s, 0) == pytest.approx(0.0)
  assert _lr(s, 5) == pytest.approx(0.05)
  assert _lr(s, 10) == pytest.approx(0.1)
  assert _lr(s, 60) == pytest.approx(0.05, abs=1e-6)
  assert _lr(s, 110) == pytest.approx(0.0, abs=1e-7)


def test_weight_decay_only_on_kernels():
  params = {'conv': {'kernel': jnp.ones((3,))}, 'bn': {'scale': jnp.ones((3,)),
                                                       'bias': jnp.ones((3,))}}
  assert optim.kernel_mask(params) == {'conv': {'kernel': True},
                                       'bn': {'scale': False, 'bias': False}}
  c = _cfg(name='constant')
  c.optimizer.name, c.optimizer.weight_decay = 'sgd', 0.5
  tx = optim.make_optimizer(c, optim.make_schedule(c, 10))
  zero = jax.tree.map(jnp.zeros_like, params)
  with jax.numpy_dtype_promotion('standard'):
    updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates['conv']['kernel'], -0.1 * 0.5)  # -lr * wd * w
  np.testing.assert_allclose(updates['bn']['scale'], 0.0)


@pytest.mark.parametrize('name', optim.OPTIMIZERS)
def test_every_optimizer_reduces_a_quadratic(name):
  c = _cfg(name='constant')
  c.optimizer.name, c.optimizer.lr, c.optimizer.grad_clip_norm = name, 0.05, 1.0
  tx = optim.make_optimizer(c, optim.make_schedule(c, 100))
  params = {'kernel': jnp.full((4,), 3.0)}
  state = tx.init(params)
  loss = lambda p: jnp.sum(p['kernel'] ** 2)
  with jax.numpy_dtype_promotion('standard'):
    for _ in range(50):
      updates, state = tx.update(jax.grad(loss)(params), state, params)
      params = jax.tree.map(jnp.add, params, updates)
  assert float(loss(params)) < 36.0 * 0.5


def test_unknown_names():
  c = _cfg(name='exponential')
  with pytest.raises(ValueError, match="unknown schedule.name 'exponential'"):
    optim.make_schedule(c, 10)
  c = _cfg(name='constant')
  c.optimizer.name = 'lion'
  with pytest.raises(ValueError, match="unknown optimizer.name 'lion'.*adamw"):
    optim.make_optimizer(c, optim.make_schedule(c, 10))
