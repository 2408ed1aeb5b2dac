r"""CIFAR-10 speedrun (airbench94-style) in JAX: the dataset on device, one program per epoch.

  python -m experiments.speedrun --config=configs/cifar_speedrun.py \
      --config.root=../shared/data/cifar10-jpeg --workdir=workdirs/speedrun
  python -m experiments.speedrun --config=configs/cifar_speedrun.py:smoke=True --workdir=/tmp/sr

See ``configs/cifar_speedrun.py`` for the recipe. Per seed: every program is
compiled ahead of time (``jit(...).lower(...).compile()``, timed separately);
then the patch-whitening kernel is computed on the device from training
images, the epochs run back to back, the clock stops when the last step's
parameters are ready (``train_s``), and the test set is scored with TTA;
``total_s`` is whitening + training + TTA evaluation, as airbench counts.
Writes ``results.json`` (per seed and mean +- std) and prints a summary line.

``config.loop``: ``'scan'`` compiles each epoch into one ``lax.scan`` (no host
round trip between steps: the GPU/TPU setting); ``'step'`` dispatches one
compiled step per batch from a Python loop, asynchronously. Both run the same
step function on the same device-resident data and random plan, so they
train identically. ``'auto'`` picks ``'step'`` on CPU and ``'scan'``
elsewhere. On CPU a scanned step used to take 15x as long, XLA:CPU running the
convolutions' gradients inside loop bodies through a slow path
(jax-ml/jax#12868); since ``ops.conv``'s lax path gives canonical gradient
convolutions (2026-12-07) both loops take the same time there (8 steps at
widths (32, 128, 128), 2-core Xeon: step 3.18 / 3.47 s, scan 3.21 / 3.12 s),
and ``'auto'`` keeps ``'step'``, the loop the recorded CPU runs used.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from cnn_jax.data import augment
from cnn_jax.data.packed import load_images
from cnn_jax.data.synthetic import load_synthetic
from cnn_jax.dtypes import compute_dtype
from cnn_jax.models.speednet import SpeedNet, whitening_kernel
from cnn_jax.tasks.classification import Classification
from cnn_jax.train.config import default_config
from cnn_jax.train.step import make_update
from cnn_jax.train.xla_cache import enable_compilation_cache
from experiments.sweep import mean_std

LOOPS = ('auto', 'scan', 'step')


@flax.struct.dataclass
class State:
  step: jax.Array      # steps taken
  params: Any
  batch_stats: Any
  opt_state: Any
  ema: Any             # lookahead average of {'params', 'batch_stats'}
  ema_on: jax.Array    # has the average started


def load_data(cfg: Any) -> tuple[Any, Any]:
  """``(train, test)`` ArrayDatasets: the CIFAR-10 folder or the synthetic shapes."""
  if cfg.data == 'synthetic':
    return (load_synthetic('train', num_examples=cfg.num_train),
            load_synthetic('test', num_examples=cfg.num_test))
  if cfg.data != 'folder':
    raise ValueError(f"data={cfg.data!r} is not valid; choose 'folder' or 'synthetic'.")
  if not cfg.root:
    raise ValueError('data=folder needs --config.root=DIR (CIFAR-10 train/ and test/ class '
                     'folders, e.g. ../shared/data/cifar10-jpeg).')
  return (load_images(cfg.root, 'train', image_size=32),
          load_images(cfg.root, 'test', image_size=32))


def normalize(images: jax.Array, dtype) -> jax.Array:
  return augment.normalize(images, augment.CIFAR10_MEAN, augment.CIFAR10_STD).astype(dtype)


def resolve_loop(loop: str) -> str:
  if loop not in LOOPS:
    raise ValueError(f'loop={loop!r} is not valid; choose one of {", ".join(LOOPS)}.')
  if loop == 'auto':
    return 'step' if jax.default_backend() == 'cpu' else 'scan'
  return loop


def triangle(total: int, start: float, peak: float, end: float) -> optax.Schedule:
  """Learning-rate factor: linear ``start -> 1`` until ``peak * total``, then ``-> end``."""
  top = max(1, int(peak * total))
  return optax.join_schedules([optax.linear_schedule(start, 1.0, top),
                               optax.linear_schedule(1.0, end, max(1, total - top))], [top])


def param_labels(params: Any) -> Any:
  """Optimiser group of every leaf: frozen / whiten_bias / bn_bias / default."""
  def label(path, _):
    top, leaf = path[0].key, path[-1].key
    if top == 'whiten':
      return 'frozen'          # set from the data, never trained
    if top == 'whiten_bias':
      return 'whiten_bias'
    if '_bn' in top:
      return 'frozen' if leaf == 'scale' else 'bn_bias'
    return 'default'
  return jax.tree_util.tree_map_with_path(label, params)


def make_optimizer(cfg: Any, total: int, steps_per_epoch: int) -> optax.GradientTransformation:
  """airbench's decoupled hyperparameters, translated to optax on a batch-mean loss.

  airbench sums the loss over the batch and divides ``lr`` by ``1024 (1 + 1/(1 -
  momentum))``; on a mean loss the same steps take ``lr * B / 1024 / (1 + 1/(1 -
  momentum))``. Its weight decay shrinks weights by ``wd * B / 1024 / (1 + 1/(1 -
  momentum))`` per step, whatever the lr, hence ``add_decayed_weights(wd / lr)``
  ahead of the (scheduled) SGD. BN biases take ``bias_lr_scale`` times the lr
  and the same decay.
  """
  schedule = triangle(total, *cfg.schedule)
  lr = cfg.lr * cfg.batch_size / 1024 / (1 + 1 / (1 - cfg.momentum))

  def sgd(scale: float) -> optax.GradientTransformation:
    return optax.chain(
        optax.add_decayed_weights(cfg.weight_decay / cfg.lr / scale),
        optax.sgd(lambda t: lr * scale * schedule(t), momentum=cfg.momentum, nesterov=True))

  whiten_bias_steps = round(cfg.whiten_bias_epochs * steps_per_epoch)
  return optax.multi_transform({
      'default': sgd(1.0),
      'bn_bias': sgd(cfg.bias_lr_scale),
      # Trained for the first epochs only, then held (airbench's whiten_bias_epochs).
      'whiten_bias': optax.chain(sgd(1.0), optax.scale_by_schedule(
          lambda t: (t < whiten_bias_steps).astype(jnp.float32))),
      'frozen': optax.set_to_zero(),
  }, param_labels)


@dataclasses.dataclass(frozen=True)
class Programs:
  """The pure functions of one model and config (compile them with ``jax.jit``)."""
  init_state: Callable       # (key, whiten) -> State
  whiten: Callable           # (uint8 images (M, 32, 32, 3)) -> whitening kernel
  # (key, epoch, base_flip (N,), steps) -> plan: order (steps, B), flips (steps, B), keys
  epoch_plan: Callable
  # (state, images, labels, plan, i) -> (state, loss): step i of an epoch's plan
  train_step: Callable
  # (state, images, labels, plan) -> (state, losses (steps,)): a scanned epoch
  train_epoch: Callable
  # (variables, images, labels) -> (correct with TTA, correct without)
  evaluate: Callable
  batch_size: int
  steps_per_epoch: int
  total_steps: int


def make_programs(model, cfg: Any, num_train: int) -> Programs:
  """The speedrun's pure programs for one model and config."""
  dtype = compute_dtype(cfg.dtype) or jnp.float32
  spe = num_train // cfg.batch_size
  total = max(1, math.ceil(cfg.epochs * spe))
  tx = make_optimizer(cfg, total, spe)
  ema_start = round(cfg.ema_start_epochs * spe)
  # The project's one gradient step; the whitening kernel is frozen (no gradient
  # is ever computed for it, and its leaves stay bit-exact).
  task_config = default_config()
  task_config.optimizer.label_smoothing = cfg.label_smoothing
  update = make_update(model, Classification(task_config), tx,
                       is_frozen=lambda name: name == 'whiten')

  def init_state(key: jax.Array, whiten: jax.Array) -> State:
    variables = model.init(key, jnp.zeros((1, 32, 32, 3), dtype))
    params = {**variables['params'], 'whiten': whiten}
    current = {'params': params, 'batch_stats': variables['batch_stats']}
    return State(step=jnp.zeros((), jnp.int32), params=params,
                 batch_stats=variables['batch_stats'], opt_state=tx.init(params),
                 ema=jax.tree.map(jnp.copy, current), ema_on=jnp.zeros((), jnp.bool_))

  def whiten(images: jax.Array) -> jax.Array:
    return whitening_kernel(normalize(images, jnp.float32))

  def epoch_plan(key: jax.Array, epoch: jax.Array, base_flip: jax.Array, steps: int):
    perm_key, aug_key = jax.random.split(key)
    order = jax.random.permutation(perm_key, num_train)[:steps * cfg.batch_size]
    order = order.reshape(steps, cfg.batch_size)
    # Alternating flips: each image's random flip is inverted every other epoch.
    flips = base_flip[order] ^ (epoch % 2 == 1)
    return order, flips, jax.random.split(aug_key, steps)

  def train_step(state: State, images: jax.Array, labels: jax.Array, plan, i: jax.Array):
    order, flips, keys = plan
    idx = order[i]
    # The gather runs on the device: the whole uint8 training set stays there.
    x = normalize(images[idx], dtype)
    if cfg.flip:
      x = jnp.where(flips[i][:, None, None, None], x[:, :, ::-1], x)
    x = augment.augment_batch(keys[i], x, crop_padding=cfg.translate, crop_mode='reflect')

    params, batch_stats, opt_state, metrics, _ = update(
        state.params, state.batch_stats, state.opt_state,
        {'image': x, 'label': labels[idx]}, keys[i])
    loss = metrics['loss']
    current = {'params': params, 'batch_stats': batch_stats}
    # Lookahead: every ema_every steps from ema_start, average and copy the
    # average back into the net; the decay grows as (t / T)^power.
    step = state.step + 1
    is_ema = (state.step >= ema_start) & (step % cfg.ema_every == 0)
    rho = jnp.where(state.ema_on, cfg.ema_decay ** cfg.ema_every *
                    (step / total) ** cfg.ema_power, 0.0)  # the first one starts at the net
    # As a lerp, leaves the net never changed (the frozen kernel) stay bit-exact.
    ema = jax.tree.map(lambda e, p: jnp.where(is_ema, e + (1 - rho) * (p - e), e),
                       state.ema, current)
    ema_on = state.ema_on | is_ema
    end_of_epoch = (step % spe == 0) | (step == total)
    copy_back = is_ema | (ema_on & end_of_epoch)
    current = jax.tree.map(lambda e, p: jnp.where(copy_back, e, p), ema, current)
    return State(step=step, params=current['params'], batch_stats=current['batch_stats'],
                 opt_state=opt_state, ema=ema, ema_on=ema_on), loss

  def train_epoch(state: State, images: jax.Array, labels: jax.Array, plan):
    steps = plan[0].shape[0]
    return jax.lax.scan(lambda s, i: train_step(s, images, labels, plan, i), state,
                        jnp.arange(steps))

  def evaluate(variables, images: jax.Array, labels: jax.Array):
    x = normalize(images, dtype)
    h, w = x.shape[1:3]
    logits = lambda x: model.apply(variables, x, train=False)
    mirror = lambda x: 0.5 * (logits(x) + logits(x[:, :, ::-1]))
    plain = logits(x)
    if cfg.tta == 0:
      tta = plain
    elif cfg.tta == 1:
      tta = mirror(x)
    else:  # airbench's level 2: flips, and 1-pixel shifts up-left and down-right
      p = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='reflect')
      shifted = 0.5 * (mirror(p[:, :h, :w]) + mirror(p[:, 2:, 2:]))
      tta = 0.5 * mirror(x) + 0.5 * shifted
    count = lambda z: jnp.sum(jnp.argmax(z, -1) == labels)
    return count(tta), count(plain)

  return Programs(init_state=init_state, whiten=whiten, epoch_plan=epoch_plan,
                  train_step=train_step, train_epoch=train_epoch, evaluate=evaluate,
                  batch_size=cfg.batch_size, steps_per_epoch=spe, total_steps=total)


def epoch_lengths(progs: Programs) -> list[int]:
  spe, total = progs.steps_per_epoch, progs.total_steps
  return [spe] * (total // spe) + ([total % spe] if total % spe else [])


def compile_trainer(progs: Programs, loop: str, state: State, images: jax.Array,
                    labels: jax.Array, base_flip: jax.Array) -> Callable:
  """``train(state, epoch_key) -> (state, last_loss)``, every program compiled now.

  ``epoch_key(e)`` is epoch ``e``'s PRNG key. Compiling ahead of time keeps
  compilation out of the timed region.
  """
  key, lengths = jax.random.key(0), epoch_lengths(progs)
  plans = {n: jax.jit(progs.epoch_plan, static_argnums=3).lower(
      key, jnp.int32(0), base_flip, n).compile() for n in sorted(set(lengths))}
  plan_shapes = {n: jax.eval_shape(functools.partial(progs.epoch_plan, steps=n), key, 0,
                                   base_flip) for n in plans}
  if loop == 'scan':
    epochs = {n: jax.jit(progs.train_epoch, donate_argnums=0).lower(
        state, images, labels, plan_shapes[n]).compile() for n in plans}

    def train(state, epoch_key):
      for e, n in enumerate(lengths):
        state, epoch_losses = epochs[n](state, images, labels,
                                        plans[n](epoch_key(e), jnp.int32(e), base_flip))
      return state, epoch_losses[-1]
    return train

  # One compiled step per distinct plan shape; ``i`` is a traced index.
  steps = {n: jax.jit(progs.train_step, donate_argnums=0).lower(
      state, images, labels, plan_shapes[n], jnp.int32(0)).compile() for n in plans}

  def train(state, epoch_key):
    for e, n in enumerate(lengths):
      plan = plans[n](epoch_key(e), jnp.int32(e), base_flip)
      for i in range(n):  # dispatch is asynchronous: the host runs ahead of the device
        state, loss = steps[n](state, images, labels, plan, jnp.int32(i))
    return state, loss
  return train


def run(cfg: Any, workdir: str | pathlib.Path, *, log=print) -> dict:
  enable_compilation_cache(min_compile_secs=0.5)
  workdir = pathlib.Path(workdir)
  if cfg.seeds < 1 or cfg.epochs <= 0:
    raise ValueError(f'seeds and epochs must be positive, got {cfg.seeds} and {cfg.epochs}.')
  if cfg.tta not in (0, 1, 2):
    raise ValueError(f'tta={cfg.tta!r} is not valid; choose 0 (none), 1 (flip) or 2 '
                     '(flip + translate).')
  loop = resolve_loop(cfg.loop)
  train, test = load_data(cfg)
  if len(train) < cfg.batch_size:
    raise ValueError(f'batch_size={cfg.batch_size} exceeds the {len(train)} training images.')
  workdir.mkdir(parents=True, exist_ok=True)
  dtype = compute_dtype(cfg.dtype) or jnp.float32
  model = SpeedNet(widths=tuple(cfg.widths), num_classes=train.num_classes, dtype=dtype,
                   conv_impl=cfg.conv_impl)
  progs = make_programs(model, cfg, len(train))
  images, labels = jax.device_put(train.images), jax.device_put(train.labels)
  test_batches = [(jax.device_put(test.images[s:s + cfg.eval_batch]),
                   jax.device_put(test.labels[s:s + cfg.eval_batch]))
                  for s in range(0, len(test), cfg.eval_batch)]
  n_whiten = min(cfg.whiten_samples, len(train))
  runs = []
  for seed in range(cfg.seeds):
    k_init, k_flip, k_sample, k_data = jax.random.split(jax.random.key(seed), 4)
    sample = jax.random.choice(k_sample, len(train), (n_whiten,), replace=False)
    base_flip = jax.random.bernoulli(k_flip, 0.5, (len(train),))
    t0 = time.perf_counter()
    whiten_fn = jax.jit(progs.whiten).lower(images[sample]).compile()
    c = train.images.shape[-1]
    state = jax.jit(progs.init_state)(k_init, jnp.zeros((2, 2, c, 8 * c)))
    trainer = compile_trainer(progs, loop, state, images, labels, base_flip)
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    eval_fns = {}
    for x, y in test_batches:
      if x.shape not in eval_fns:
        eval_fns[x.shape] = jax.jit(progs.evaluate).lower(variables, x, y).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready((state, base_flip, sample))

    t0 = time.perf_counter()
    whiten = jax.block_until_ready(whiten_fn(images[sample]))
    whiten_s = time.perf_counter() - t0
    # Two copies: the donated state must not hold one buffer twice.
    state = state.replace(
        params={**state.params, 'whiten': whiten},
        ema={**state.ema, 'params': {**state.ema['params'], 'whiten': jnp.copy(whiten)}})
    t0 = time.perf_counter()
    state, last_loss = trainer(state, lambda e: jax.random.fold_in(k_data, e))
    jax.block_until_ready(state.params)
    train_s = time.perf_counter() - t0
    last_loss = float(last_loss)
    if not math.isfinite(last_loss):
      raise FloatingPointError(f'seed {seed}: the loss became {last_loss}; lower --config.lr.')
    t0 = time.perf_counter()
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    counts = [eval_fns[x.shape](variables, x, y) for x, y in test_batches]
    correct, correct_plain = (int(sum(int(c[k]) for c in counts)) for k in (0, 1))
    eval_s = time.perf_counter() - t0
    acc, acc_plain = correct / len(test), correct_plain / len(test)
    runs.append({'seed': seed, 'accuracy': acc, 'accuracy_no_tta': acc_plain,
                 'train_s': train_s, 'total_s': whiten_s + train_s + eval_s,
                 'compile_s': compile_s, 'final_loss': last_loss})
    log(f'seed {seed}: test accuracy {100 * acc:.2f}% ({100 * acc_plain:.2f}% without TTA) '
        f'in {train_s:.2f} s of training, {whiten_s + train_s + eval_s:.2f} s in all '
        f'({progs.total_steps} steps; compile {compile_s:.1f} s)')
  summary = {
      'device': jax.devices()[0].device_kind, 'jax': jax.__version__, 'loop': loop,
      'epochs': cfg.epochs, 'steps': progs.total_steps, 'batch_size': cfg.batch_size,
      'widths': list(cfg.widths), 'dtype': cfg.dtype, 'data': cfg.data, 'tta': cfg.tta,
      'num_train': len(train), 'num_test': len(test),
      'params': int(sum(x.size for x in jax.tree.leaves(state.params))),
      'runs': runs,
  }
  for key in ('accuracy', 'accuracy_no_tta', 'train_s', 'total_s', 'compile_s'):
    summary[f'{key}_mean'], summary[f'{key}_std'] = mean_std(r[key] for r in runs)
  (workdir / 'results.json').write_text(json.dumps(summary, indent=2) + '\n')
  return summary


def summary_line(s: dict) -> str:
  return (f"{len(s['runs'])} seeds on {s['device']}: test accuracy "
          f"{100 * s['accuracy_mean']:.2f} +- {100 * s['accuracy_std']:.2f}% in "
          f"{s['train_s_mean']:.2f} +- {s['train_s_std']:.2f} s of training "
          f"({s['total_s_mean']:.2f} s with whitening and TTA; {s['steps']} steps of "
          f"{s['batch_size']}, {s['dtype']}, loop={s['loop']}; compilation excluded: "
          f"{s['runs'][0]['compile_s']:.1f} s for the first seed, which the others reuse)")


if __name__ == '__main__':
  from experiments.cli import run_script
  run_script('configs/cifar_speedrun.py',
             lambda cfg, d, quiet: run(cfg, d, log=(lambda _: None) if quiet else print),
             summary_line)
