"""``train_and_evaluate(config, workdir)``: config -> data -> jitted step -> metrics.

One loop for every experiment, readable top to bottom. Keys come from
``(seed, step)`` and the data order from ``(seed, epoch)``, so the state of a
run is fully described by ``TrainState`` and the step number.
"""

from __future__ import annotations

import dataclasses
import math
import pathlib
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from cnn_jax import models
from cnn_jax.data import pipeline
from cnn_jax.data.build import load_split, open_stream_source
from cnn_jax.train import config as config_lib
from cnn_jax.train import optim
from cnn_jax.train.logging import MetricWriter, plot_metrics
from cnn_jax.train.state import TrainState, create_train_state
from cnn_jax.train.step import add_sums, make_eval_step, make_train_step, summarize_eval


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or Inf."""


def build_model(config: ml_collections.ConfigDict, num_classes: int):
  dtype = jnp.bfloat16 if config.dtype == 'bfloat16' else None
  return models.get_model(config.model.name, num_classes=num_classes,
                          conv_impl=config.model.conv_impl, dtype=dtype,
                          **config.model.kwargs.to_dict())


def total_steps(config: ml_collections.ConfigDict, steps_per_epoch: int) -> int:
  if config.num_steps > 0:
    return int(config.num_steps)
  return max(1, math.ceil(config.num_epochs * steps_per_epoch))


@dataclasses.dataclass
class Data:
  """What the loop needs from the input side, for in-memory and streamed data alike."""
  train: Any                        # .batch(step) -> dict, .steps_per_epoch
  eval_batches: Callable[[], Any]   # a fresh pass over the eval split
  num_classes: int
  image_shape: tuple[int, int, int]
  num_train: int
  num_eval: int


def build_data(config: ml_collections.ConfigDict) -> Data:
  d = config.data
  if d.streaming:
    train_src = open_stream_source(d, d.train_split)
    eval_src = open_stream_source(d, d.eval_split)
    threads = d.num_workers or 8
    return Data(
        train=pipeline.StreamTrainData(train_src, config.batch_size, config.seed,
                                       num_threads=threads),
        eval_batches=lambda: pipeline.stream_eval_batches(eval_src, config.eval_batch_size,
                                                          num_threads=threads),
        num_classes=train_src.num_classes, image_shape=(d.image_size, d.image_size, d.channels),
        num_train=len(train_src), num_eval=len(eval_src))
  train_ds = load_split(d, d.train_split, seed=config.seed)
  eval_ds = load_split(d, d.eval_split, seed=config.seed)
  eval_arrays = (jax.device_put(eval_ds.images), jax.device_put(eval_ds.labels))
  return Data(
      train=pipeline.InMemoryTrainData(train_ds, config.batch_size, config.seed),
      eval_batches=lambda: pipeline.eval_batches(eval_ds, config.eval_batch_size,
                                                 device_arrays=eval_arrays),
      num_classes=train_ds.num_classes, image_shape=tuple(train_ds.images.shape[1:]),
      num_train=len(train_ds), num_eval=len(eval_ds))


def evaluate(eval_step, state: TrainState, batches) -> dict[str, float]:
  sums = None
  for batch in batches:
    sums = add_sums(sums, eval_step(state, batch))
  return summarize_eval(jax.device_get(sums))


def _check_finite(losses: np.ndarray, first_step: int) -> None:
  bad = np.flatnonzero(~np.isfinite(losses))
  if bad.size:
    step = first_step + int(bad[0])
    raise NonFiniteLossError(
        f'loss became {losses[bad[0]]} at step {step}; lower optimizer.lr, add '
        'optimizer.grad_clip_norm, or check the data.')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                       quiet: bool = False) -> dict[str, Any]:
  """Trains ``config`` in ``workdir``; returns the final train and eval metrics.

  Writes ``config.json``, ``metrics.jsonl``, TensorBoard events under
  ``tensorboard/`` and ``metrics.png``.
  """
  config_lib.validate(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / 'config.json').write_text(config.to_json_best_effort(indent=2) + '\n')

  data = build_data(config)
  train_data = data.train
  num_steps = total_steps(config, train_data.steps_per_epoch)

  model = build_model(config, data.num_classes)
  schedule = optim.make_schedule(config, num_steps)
  tx = optim.make_optimizer(config, schedule)
  init_key, step_key = jax.random.split(jax.random.key(config.seed))
  input_shape = (1, *data.image_shape)
  state = jax.jit(lambda k: create_train_state(model, tx, k, input_shape))(init_key)

  mean, std = tuple(config.data.mean), tuple(config.data.std)
  train_step = jax.jit(
      make_train_step(model, tx, schedule, mean=mean, std=std,
                      label_smoothing=config.optimizer.label_smoothing,
                      augment={k: v for k, v in config.augment.items() if v}),
      donate_argnums=0)
  eval_step = jax.jit(make_eval_step(model, mean=mean, std=std))
  run_eval = lambda state: evaluate(eval_step, state, data.eval_batches())

  writer = MetricWriter(workdir, total_steps=num_steps, quiet=quiet)
  writer.message(f'{config.model.name}: {sum(x.size for x in jax.tree.leaves(state.params)):,} '
                 f'params; {data.num_train} train / {data.num_eval} eval examples; '
                 f'{num_steps} steps of {config.batch_size}')
  last_train: dict[str, float] = {}
  eval_metrics: dict[str, float] = {}
  window: list[dict] = []
  window_start, t_window = 0, time.perf_counter()
  compile_s = None
  try:
    for step in range(num_steps):
      batch = train_data.batch(step)
      state, metrics = train_step(state, batch, jax.random.fold_in(step_key, step))
      window.append(metrics)
      if compile_s is None:  # the first call traces and compiles
        jax.block_until_ready(metrics)
        compile_s = time.perf_counter() - t_window
        window_start, t_window, window = step + 1, time.perf_counter(), []
        continue
      done = step + 1
      if done % config.log_every == 0 or done == num_steps:
        stacked = jax.device_get(jax.tree.map(lambda *xs: jnp.stack(xs), *window))
        elapsed = time.perf_counter() - t_window
        _check_finite(np.asarray(stacked['loss']), window_start + 1)
        row = {k: float(np.mean(v)) for k, v in stacked.items() if k != 'lr'}
        row['lr'] = float(stacked['lr'][-1])
        row['img_per_sec'] = len(window) * config.batch_size / elapsed
        row['epoch'] = done / train_data.steps_per_epoch
        last_train = writer.write(done, 'train', row)
        writer.progress(done, loss=row['loss'], acc=row['accuracy'],
                        img_s=row['img_per_sec'])
        window_start, t_window, window = done, time.perf_counter(), []
      if config.eval_every and done % config.eval_every == 0 and done != num_steps:
        eval_metrics = writer.write(done, 'eval', run_eval(state))
        writer.message(f'step {done}: eval accuracy {eval_metrics["accuracy"]:.4f}, '
                       f'loss {eval_metrics["loss"]:.4f}')
        t_window = time.perf_counter()  # keep eval time out of img/s
    eval_metrics = writer.write(num_steps, 'eval', run_eval(state))
  finally:
    writer.close()
  plot_metrics(workdir / 'metrics.jsonl', workdir / 'metrics.png')
  return {'steps': num_steps, 'train': last_train, 'eval': eval_metrics,
          'compile_s': compile_s, 'num_params': sum(x.size for x in jax.tree.leaves(state.params))}
