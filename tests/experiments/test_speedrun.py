"""Speedrun: whitening, Dirac init, optimiser groups, lookahead, both loops, smoke run."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models.speednet import SpeedNet, dirac_uniform_init, whitening_kernel
from cnn_jax.ops import conv
from cnn_jax.train.config import load_config
from experiments import speedrun


def test_whitening_kernel_whitens_patches():
  rng = np.random.default_rng(0)
  # Correlated channels and neighbouring pixels.
  base = rng.normal(size=(64, 17, 17, 1))
  images = np.concatenate([base, base + 0.3 * rng.normal(size=base.shape),
                           np.roll(base, 1, axis=2) + 0.5 * rng.normal(size=base.shape)],
                          axis=-1)[:, :16, :16]
  k = np.asarray(whitening_kernel(images, eps=0.0))
  assert k.shape == (2, 2, 3, 24)
  np.testing.assert_allclose(k[..., 12:], -k[..., :12])
  out = np.asarray(conv.conv2d(jnp.asarray(images, jnp.float32), jnp.asarray(k[..., :12])))
  cov = np.cov(out.reshape(-1, 12), rowvar=False)
  np.testing.assert_allclose(cov, np.eye(12), atol=0.05)


def test_dirac_init_is_an_identity_on_the_first_channels():
  w = dirac_uniform_init(jax.random.key(0), (3, 3, 4, 6))
  x = jax.random.normal(jax.random.key(1), (1, 5, 5, 4))
  y = conv.conv2d(x, w, padding='SAME')
  np.testing.assert_allclose(y[..., :4], x, atol=1e-6)  # channels 0..3 pass through
  bound = 1 / np.sqrt(3 * 3 * 4)
  rest = np.asarray(w[..., 4:])
  assert np.all(np.abs(rest) <= bound) and rest.std() > bound / 3  # PyTorch's uniform


def _tiny_problem(**overrides):
  cfg = load_config('cifar_speedrun', 'smoke=True')
  cfg.batch_size, cfg.widths, cfg.epochs = 32, (8, 8, 8), 3.0
  cfg.whiten_bias_epochs, cfg.ema_start_epochs = 1.0, 1.0
  for k, v in overrides.items():
    cfg[k] = v
  model = SpeedNet(widths=cfg.widths, num_classes=4)
  progs = speedrun.make_programs(model, cfg, num_train=128)
  rng = np.random.default_rng(0)
  labels = jnp.asarray(rng.integers(0, 4, 128), jnp.int32)
  images = jnp.asarray(np.clip(labels[:, None, None, None] * 60 +
                               rng.integers(0, 30, (128, 32, 32, 3)), 0, 255), jnp.uint8)
  whiten = progs.whiten(images)
  state = progs.init_state(jax.random.key(0), whiten)
  base_flip = jax.random.bernoulli(jax.random.key(2), 0.5, (128,))
  return progs, images, labels, state, base_flip


def test_param_groups():
  _, _, _, state, _ = _tiny_problem()
  labels = speedrun.param_labels(state.params)
  assert labels['whiten'] == 'frozen' and labels['whiten_bias'] == 'whiten_bias'
  assert labels['group1_bn1'] == {'scale': 'frozen', 'bias': 'bn_bias'}
  assert labels['group2_conv1'] == labels['head']['kernel'] == 'default'


def test_triangle_schedule():
  f = speedrun.triangle(100, 0.2, 0.23, 0.07)
  np.testing.assert_allclose([f(0), f(23), f(100)], [0.2, 1.0, 0.07], rtol=1e-6)
  assert f(10) < f(20) and f(50) > f(90)


def test_scanned_epochs_train_with_frozen_parts_and_lookahead():
  progs, images, labels, state, base_flip = _tiny_problem()
  assert progs.steps_per_epoch == 4 and progs.total_steps == 12
  init = state
  plan = jax.jit(progs.epoch_plan, static_argnums=3)
  epoch = jax.jit(progs.train_epoch)
  epoch_losses, after = [], []
  for e in range(3):
    state, l = epoch(state, images, labels, plan(jax.random.key(e), e, base_flip, 4))
    epoch_losses.append(float(l.mean()))
    after.append(state)
  assert epoch_losses[-1] < epoch_losses[0]
  assert int(state.step) == 12
  np.testing.assert_array_equal(state.params['whiten'], init.params['whiten'])
  np.testing.assert_array_equal(state.params['group1_bn1']['scale'], 1.0)  # not trained
  assert not np.allclose(state.params['group1_bn1']['bias'], 0.0)
  # The whitening bias trains during epoch 0 only (whiten_bias_epochs=1).
  wb = [s.params['whiten_bias'] for s in after]
  assert not np.allclose(wb[0], init.params['whiten_bias'])
  np.testing.assert_array_equal(wb[1], wb[0])
  np.testing.assert_array_equal(wb[2], wb[0])
  # Lookahead starts in epoch 1 and, at each epoch end, the net is the average.
  assert not bool(after[0].ema_on) and bool(after[1].ema_on)
  chex.assert_trees_all_equal(state.params, state.ema['params'])
  chex.assert_trees_all_equal(state.batch_stats, state.ema['batch_stats'])
  correct, correct_plain = progs.evaluate(
      {'params': state.params, 'batch_stats': state.batch_stats}, images, labels)
  assert 0 <= int(correct) <= 128 and 0 <= int(correct_plain) <= 128


def test_alternating_flips():
  progs, _, _, _, base_flip = _tiny_problem()
  order0, flips0, _ = progs.epoch_plan(jax.random.key(0), 0, base_flip, 4)
  order1, flips1, _ = progs.epoch_plan(jax.random.key(0), 1, base_flip, 4)
  np.testing.assert_array_equal(order0, order1)  # same key: same order, so
  np.testing.assert_array_equal(flips1, ~flips0)  # every image's flip is inverted
  np.testing.assert_array_equal(flips0, np.asarray(base_flip)[np.asarray(order0)])


@pytest.mark.parametrize('tta', [0, 1, 2])
def test_tta_of_a_flip_and_shift_invariant_net_is_the_plain_prediction(tta):
  progs, images, labels, state, _ = _tiny_problem(tta=tta)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  # A constant image is its own flip and (reflect-padded) shift.
  flat = jnp.full_like(images, 128)
  correct, correct_plain = progs.evaluate(variables, flat, labels)
  assert int(correct) == int(correct_plain)


def test_scan_and_step_loops_run_the_same_training():
  progs, images, labels, state, base_flip = _tiny_problem(epochs=1.5)  # epochs of 4 and 2
  assert speedrun.epoch_lengths(progs) == [4, 2]
  out = {}
  for loop in ('scan', 'step'):
    train = speedrun.compile_trainer(progs, loop, state, images, labels, base_flip)
    out[loop], last_loss = train(jax.tree.map(jnp.copy, state),
                                 lambda e: jax.random.fold_in(jax.random.key(1), e))
    assert np.isfinite(float(last_loss)) and int(out[loop].step) == 6
  chex.assert_trees_all_close(out['scan'].params, out['step'].params, atol=1e-5, rtol=1e-5)
  chex.assert_trees_all_close(out['scan'].ema, out['step'].ema, atol=1e-5, rtol=1e-5)


def test_config_args_and_loop_choice():
  with pytest.raises(ValueError, match="bad config argument 'epoch=3'"):
    load_config('cifar_speedrun', 'epoch=3')
  cfg = load_config('cifar_speedrun', 'width=0.25,seeds=2')
  assert cfg.widths == (16, 64, 64) and cfg.seeds == 2 and cfg.batch_size == 1024
  assert load_config('cifar_speedrun').epochs == 9.9
  with pytest.raises(AttributeError):
    cfg.lrr = 1.0  # locked: a misspelt key is refused
  assert speedrun.resolve_loop('auto') == 'step'  # the tests run on CPU
  with pytest.raises(ValueError, match="loop='while' is not valid; choose one of auto"):
    speedrun.resolve_loop('while')


def test_smoke_run(tmp_path):
  # The GPU suite's smoke run (tests/benchmarks/test_gpu_suite.py) trains this
  # config too, one seed: the same programs, compiled once for both.
  cfg = load_config('cifar_speedrun', 'smoke=True,epochs=1.0')
  summary = speedrun.run(cfg, tmp_path, log=lambda _: None)
  assert len(summary['runs']) == 2 and summary['steps'] == 4 and summary['loop'] == 'step'
  for r in summary['runs']:
    assert 0 <= r['accuracy'] <= 1 and 0 < r['train_s'] < r['total_s']
    assert np.isfinite(r['final_loss'])
  assert json.loads((tmp_path / 'results.json').read_text())['accuracy_mean'] == pytest.approx(
      summary['accuracy_mean'])
  with pytest.raises(ValueError, match='needs --config.root=DIR'):
    speedrun.run(load_config('cifar_speedrun'), tmp_path / 'bad')
  cfg.tta = 3
  with pytest.raises(ValueError, match='tta=3 is not valid'):
    speedrun.run(cfg, tmp_path / 'bad')
