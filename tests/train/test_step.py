"""The pure train/eval steps: no retracing, learning, exact padded eval, aux losses, top-k."""

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.data import pipeline, synthetic
from cnn_jax.models import SimpleCNN
from cnn_jax.ops import losses
from cnn_jax.tasks import Classification
from cnn_jax.train import optim
from cnn_jax.train.config import default_config
from cnn_jax.train.state import create_train_state
from cnn_jax.train.step import evaluate, make_eval_step, make_train_step

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
AUX_LOSS_WEIGHT = default_config().task.aux_loss_weight  # torchvision's 0.3


def _task(label_smoothing=0.0, **augment):
  cfg = default_config()
  cfg.optimizer.label_smoothing = label_smoothing
  cfg.augment.update(augment)
  return Classification(cfg)


def _setup(model, steps=100, lr=0.05):
  cfg = default_config()
  cfg.optimizer.lr, cfg.schedule.name = lr, 'constant'
  schedule = optim.make_schedule(cfg, steps)
  tx = optim.make_optimizer(cfg, schedule)
  state = create_train_state(model, tx, jax.random.key(0), (1, 16, 16, 3))
  return tx, schedule, state


@pytest.fixture(scope='module')
def data():
  return synthetic.load_synthetic('train', num_examples=320, image_size=16, num_classes=4)


def test_no_retracing_and_loss_goes_down(data):
  model = SimpleCNN(widths=(8, 16), num_classes=4)
  tx, schedule, state = _setup(model)
  step = jax.jit(chex.assert_max_traces(
      make_train_step(model, _task(flip=True), tx, schedule, mean=MEAN, std=STD), n=1),
                 donate_argnums=0)
  batches = pipeline.InMemoryTrainData(data, 32, seed=0)
  losses_seen = []
  for i in range(60):
    state, metrics = step(state, batches.batch(i), jax.random.key(i))
    losses_seen.append(float(metrics['loss']))
  assert int(state.step) == 60
  assert set(metrics) == {'loss', 'accuracy', 'grad_norm', 'lr'}
  assert float(metrics['lr']) == pytest.approx(0.05)
  assert np.mean(losses_seen[-10:]) < 0.8 * np.mean(losses_seen[:10])


def test_eval_is_exact_with_a_padded_last_batch(data):
  model = SimpleCNN(widths=(8,), num_classes=4)
  _, _, state = _setup(model)
  task = _task()
  eval_step = jax.jit(make_eval_step(model, task, mean=MEAN, std=STD))
  ds = data.take(np.arange(77))  # 77 = 2 x 32 + 13
  got = evaluate(eval_step, state, pipeline.eval_batches(ds, 32), task)
  x = (ds.images.astype(np.float32) / 255 - np.array(MEAN)) / np.array(STD)
  logits = model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                       jnp.asarray(x, jnp.float32))
  assert got['count'] == 77
  assert got['accuracy'] == pytest.approx(float(np.mean(np.argmax(logits, -1) == ds.labels)))
  assert got['loss'] == pytest.approx(float(losses.softmax_cross_entropy(logits, ds.labels)),
                                      rel=1e-5)
  top2 = np.argsort(-np.asarray(logits), -1)[:, :2]
  task = _task()
  task.t.top_k = 2
  eval_step = jax.jit(make_eval_step(model, task, mean=MEAN, std=STD))
  got = evaluate(eval_step, state, pipeline.eval_batches(ds, 32), task)
  assert got['top2_accuracy'] == pytest.approx(float(np.mean(np.any(
      top2 == ds.labels[:, None], -1))))


class _AuxNet(nn.Module):
  """Sows an auxiliary head like GoogLeNet, to check the loss weighting."""

  @nn.compact
  def __call__(self, x, train=False):
    h = x.mean(axis=(1, 2))
    logits = nn.Dense(3, name='main')(h)
    if train and not self.is_initializing():
      self.sow('aux_logits', 'aux1', nn.Dense(3, name='aux')(h))
    elif self.is_initializing():
      nn.Dense(3, name='aux')(h)
    return logits


def test_auxiliary_losses_are_weighted_in():
  model = _AuxNet()
  tx, schedule, state = _setup(model, lr=0.0)
  step = jax.jit(make_train_step(model, _task(), tx, schedule, mean=MEAN, std=STD))
  batch = {'image': jnp.full((4, 16, 16, 3), 100, jnp.uint8),
           'label': jnp.array([0, 1, 2, 1], jnp.int32)}
  _, metrics = step(state, batch, jax.random.key(0))
  h = ((100 / 255 - 0.5) / 0.25) * jnp.ones((4, 3))
  p = state.params
  main = losses.softmax_cross_entropy(h @ p['main']['kernel'] + p['main']['bias'], batch['label'])
  aux = losses.softmax_cross_entropy(h @ p['aux']['kernel'] + p['aux']['bias'], batch['label'])
  assert float(metrics['loss']) == pytest.approx(float(main + AUX_LOSS_WEIGHT * aux), rel=1e-5)


def test_bfloat16_compute_keeps_float32_params(data):
  model = SimpleCNN(widths=(8,), num_classes=4, dtype=jnp.bfloat16)
  tx, schedule, state = _setup(model)
  step = jax.jit(make_train_step(model, _task(label_smoothing=0.1), tx, schedule, mean=MEAN,
                                 std=STD))
  batches = pipeline.InMemoryTrainData(data, 32, seed=0)
  state, metrics = step(state, batches.batch(0), jax.random.key(0))
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((state.params,
                                                              state.batch_stats)))
  assert np.isfinite(float(metrics['loss']))
  # ... while the convolutions really run in bf16 (forward and backward).
  jaxpr = jax.make_jaxpr(step)(state, batches.batch(1), jax.random.key(1))
  text = str(jaxpr)
  conv_lines = [line for line in text.splitlines() if 'conv_general_dilated' in line]
  assert conv_lines and all('bf16[' in line for line in conv_lines)


def test_label_smoothing_reaches_the_loss():
  model = _AuxNet()
  tx, schedule, state = _setup(model, lr=0.0)
  batch = {'image': jnp.full((4, 16, 16, 3), 100, jnp.uint8),
           'label': jnp.array([0, 1, 2, 1], jnp.int32)}
  h = ((100 / 255 - 0.5) / 0.25) * jnp.ones((4, 3))
  p = state.params
  logits = h @ p['main']['kernel'] + p['main']['bias']
  aux = h @ p['aux']['kernel'] + p['aux']['bias']
  for eps in (0.0, 0.3):
    step = jax.jit(make_train_step(model, _task(label_smoothing=eps), tx, schedule, mean=MEAN,
                                   std=STD))  # as the loop runs it: one compile, not one per op
    _, metrics = step(state, batch, jax.random.key(0))
    want = (losses.softmax_cross_entropy(logits, batch['label'], label_smoothing=eps) +
            AUX_LOSS_WEIGHT * losses.softmax_cross_entropy(aux, batch['label'],
                                                           label_smoothing=eps))
    assert float(metrics['loss']) == pytest.approx(float(want), rel=1e-5)
