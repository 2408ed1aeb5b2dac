"""The model zoo's one registry: ``get_model(name, **kwargs)``.

Each entry is a Linen module class plus the defaults that make the named
variant; ``kwargs`` override them (e.g. ``num_classes``, ``conv_impl``,
``dtype``). Unknown names and unknown arguments raise a one-line
``ValueError`` that lists the valid choices.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn

from cnn_jax.models.alexnet import AlexNet
from cnn_jax.models.fcn import FCN
from cnn_jax.models.googlenet import GoogLeNet
from cnn_jax.models.lenet import LeNet5
from cnn_jax.models.resnet import IMAGENET_STAGES, CifarResNet, ResNet
from cnn_jax.models.simple import SimpleCNN
from cnn_jax.models.speednet import SpeedNet
from cnn_jax.models.vgg import VGG
from cnn_jax.models.yolo import YOLO

_MODELS: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    'lenet5': (LeNet5, {'variant': 'seed'}),
    'lenet5_classic': (LeNet5, {'variant': 'classic'}),
    'alexnet': (AlexNet, {}),
    **{f'vgg{d}': (VGG, {'depth': d}) for d in (11, 13, 16, 19)},
    **{f'vgg{d}_bn': (VGG, {'depth': d, 'batch_norm': True}) for d in (11, 13, 16, 19)},
    **{f'resnet{d}': (ResNet, {'depth': d}) for d in IMAGENET_STAGES},
    'cifar_resnet': (CifarResNet, {}),
    **{f'cifar_resnet{d}': (CifarResNet, {'depth': d}) for d in (20, 32, 44, 56, 110)},
    **{f'cifar_plain{d}': (CifarResNet, {'depth': d, 'plain': True})
       for d in (20, 32, 44, 56, 110)},
    'googlenet': (GoogLeNet, {}),
    'simple_cnn': (SimpleCNN, {}),
    'speednet': (SpeedNet, {}),
    'yolo': (YOLO, {}),
    **{f'fcn{v}': (FCN, {'variant': v}) for v in ('32s', '16s', '8s')},
}


def register(name: str, cls: type[nn.Module], **defaults: Any) -> None:
  """Adds a model (e.g. from an experiment); re-registering a name is an error."""
  if name in _MODELS:
    raise ValueError(f'model {name!r} is already registered.')
  _MODELS[name] = (cls, defaults)


def list_models() -> list[str]:
  return sorted(_MODELS)


def model_fields(name: str) -> list[str]:
  """Constructor arguments a model accepts."""
  cls, _ = _lookup(name)
  return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in ('parent', 'name')]


def _lookup(name: str):
  try:
    return _MODELS[name]
  except KeyError:
    raise ValueError(f'unknown model {name!r}; known models: {", ".join(list_models())}.') from None


def get_model(name: str, **kwargs: Any) -> nn.Module:
  """Builds the named model; ``kwargs`` override its defaults.

  ``module_name`` (optional) names the instance when it is built inside another
  module's ``@nn.compact`` method, e.g. ``get_model('cifar_resnet',
  module_name='backbone')`` puts its variables under ``backbone/``.
  """
  cls, defaults = _lookup(name)
  module_name = kwargs.pop('module_name', None)
  if module_name is not None:
    kwargs['name'] = module_name
  unknown = sorted(set(kwargs) - set(model_fields(name)) - {'name'})
  if unknown:
    raise ValueError(f'model {name!r} has no argument(s) {unknown}; valid: '
                     f'{", ".join(model_fields(name))}.')
  return cls(**{**defaults, **kwargs})
