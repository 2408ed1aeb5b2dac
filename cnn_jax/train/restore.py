"""A finished (or running) training run, restored for reports and pictures.

    run = load_run('workdirs/detect')             # best checkpoint by the task's headline
    metrics, rows = run.evaluate()                # the task's eval metrics and per-image rows
    logits = run.predict(run.eval.images)         # raw model outputs, batched

Everything is rebuilt from the run's own ``config.json`` through the same
task, data and model code the trainer used, so a report can never evaluate a
different model than the one that was trained.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

import jax
import ml_collections
import numpy as np

from cnn_jax import tasks
from cnn_jax.data import pipeline
from cnn_jax.data.dataset import ArrayDataset
from cnn_jax.models.introspect import predict_batches
from cnn_jax.ops.compose import count_params
from cnn_jax.tasks.base import Task
from cnn_jax.train import cpu_library, transfer
from cnn_jax.train.loop import build_model
from cnn_jax.train.state import TrainState
from cnn_jax.train.step import collect, make_eval_step


@dataclasses.dataclass
class Run:
  """A restored run: its config, task, model, variables and data splits."""
  workdir: pathlib.Path
  config: ml_collections.ConfigDict
  task: Task
  model: Any
  variables: dict[str, Any]
  train: ArrayDataset
  eval: ArrayDataset
  # The XLA options the run's steps were compiled with (config.xla_cpu_ynnpack), so
  # a report evaluates with the training run's own program.
  compiler_options: dict | None = None

  @property
  def num_params(self) -> int:
    return count_params(self.variables['params'])

  def evaluate(self, batch_size: int | None = None) -> tuple[dict[str, Any], dict]:
    """``(metrics, rows)`` of the eval split, on the default device."""
    c = self.config
    step = jax.jit(make_eval_step(self.model, self.task, mean=tuple(c.data.mean),
                                  std=tuple(c.data.std)),
                   compiler_options=self.compiler_options)
    state = TrainState(step=np.int32(0), params=self.variables['params'],
                       batch_stats=self.variables['batch_stats'], opt_state=())
    sums, rows = collect(step, state, pipeline.eval_batches(
        self.eval, batch_size or c.eval_batch_size))
    return self.task.eval_metrics(sums, rows), rows

  def predict(self, images: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Raw model outputs of raw inputs, in inference mode, as numpy.

    ``images``: what the data gives, uint8 images (N, H, W, C) or a text
    task's (N, L) int32 token ids; the task's ``preprocess`` prepares them.
    """
    c = self.config
    field, mean, std = self.task.input_field, tuple(c.data.mean), tuple(c.data.std)
    fn = jax.jit(lambda v, x: self.model.apply(
        v, self.task.preprocess({field: x}, mean, std)[field], train=False),
        compiler_options=self.compiler_options)
    return predict_batches(lambda x: fn(self.variables, x), images, batch_size)


def load_run(workdir: str | pathlib.Path, which: str = 'best') -> Run:
  """Restores the run in ``workdir`` (``which``: 'best' or 'latest' checkpoint)."""
  workdir = pathlib.Path(workdir)
  path = workdir / 'config.json'
  if not path.is_file():
    raise FileNotFoundError(f'{workdir} has no config.json; pass the --workdir of a '
                            'cnn_jax.main training run.')
  config = ml_collections.ConfigDict(json.loads(path.read_text()))
  task = tasks.get_task(config)
  train, ev = task.load_data()
  model = build_model(config, task.model_kwargs(train.num_classes))
  variables = transfer.load_variables(workdir, which=which, best_metric=task.headline,
                                      best_mode=task.headline_mode)
  return Run(workdir, config, task, model, jax.tree.map(np.asarray, variables), train, ev,
             cpu_library.run_options(config.get('xla_cpu_ynnpack', 'flags'), workdir))
