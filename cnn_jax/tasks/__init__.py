"""Tasks: what differs between kinds of training (see :mod:`cnn_jax.tasks.base`).

    task = get_task(config)          # config.task.name: a registry name or 'pkg.mod:Class'

A new task is one file with one :class:`Task` subclass: register it with
:func:`register`, or name it by path in the config without editing the package.
"""

from __future__ import annotations

import ml_collections

from cnn_jax.importing import is_path, load_object
from cnn_jax.tasks.base import Task, gather_batch, global_mean, scale_gradient_for_pmean
from cnn_jax.tasks.captioning import Captioning
from cnn_jax.tasks.classification import Classification
from cnn_jax.tasks.detection import Detection
from cnn_jax.tasks.landmarks import Landmarks
from cnn_jax.tasks.localisation import Localisation
from cnn_jax.tasks.metric_learning import MetricLearning
from cnn_jax.tasks.rcnn import InstanceSegmentation, TwoStageDetection
from cnn_jax.tasks.segmentation import Segmentation
from cnn_jax.tasks.text_classification import TextClassification

_TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
  """Adds a task class under ``cls.name`` (usable as a decorator)."""
  if not cls.name or cls.name in _TASKS:
    raise ValueError(f'task name {cls.name!r} is empty or already registered.')
  _TASKS[cls.name] = cls
  return cls


for _cls in (Classification, Detection, Segmentation, MetricLearning, TwoStageDetection,
             InstanceSegmentation, Localisation, Landmarks, TextClassification, Captioning):
  register(_cls)


def list_tasks() -> list[str]:
  return sorted(_TASKS)


def task_class(name: str) -> type[Task]:
  """The task class of a registry name or a ``module:Class`` path."""
  if is_path(name):
    cls = load_object(name, 'task')
    if not (isinstance(cls, type) and issubclass(cls, Task)):
      raise ValueError(f'task path {name!r} names {cls!r}, not a subclass of '
                       'cnn_jax.tasks.Task.')
    return cls
  try:
    return _TASKS[name]
  except KeyError:
    raise ValueError(f'unknown task {name!r}; known tasks: {", ".join(list_tasks())} '
                     '(or a path, package.module:Class).') from None


def task_section(name: str) -> ml_collections.ConfigDict:
  """The config's ``task`` section for task ``name``: its name and its own keys."""
  c = ml_collections.ConfigDict({'name': name})
  c.update(task_class(name).defaults())
  return c


def get_task(config: ml_collections.ConfigDict) -> Task:
  return task_class(config.task.name)(config)
