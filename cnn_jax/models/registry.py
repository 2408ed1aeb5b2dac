"""The model zoo's one registry: ``get_model(name, **kwargs)``.

Each entry is a builder (a Linen module class, or a function that assembles a
head on a backbone it builds from the registry) plus the defaults that make
the named variant; ``kwargs`` override them (e.g. ``num_classes``,
``conv_impl``, ``dtype``). Unknown names and unknown arguments raise a
one-line ``ValueError`` that lists the valid choices.

A name with a colon is a Python path to a model outside the package
(``'mynets.resnet:build'`` or ``'path/to/file.py:Net'``): a Linen module
class, or a function returning a Linen module or a compose ``Layer`` (wrapped
in :class:`~cnn_jax.models.functional.Functional`). Each is given the
keyword arguments it declares.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn

from cnn_jax.importing import is_path, load_object
from cnn_jax.models.alexnet import AlexNet
from cnn_jax.models.captioner import Captioner
from cnn_jax.models.embedding import Embedding
from cnn_jax.models.fcn import FCN
from cnn_jax.models.functional import Functional
from cnn_jax.models.googlenet import GoogLeNet
from cnn_jax.models.inception_v3 import InceptionV3
from cnn_jax.models.lenet import LeNet5
from cnn_jax.models.rcnn import RCNN, TwoStageDetector
from cnn_jax.models.regressor import Regressor
from cnn_jax.models.resnet import IMAGENET_STAGES, CifarResNet, ResNet
from cnn_jax.models.simple import SimpleCNN
from cnn_jax.models.speednet import SpeedNet
from cnn_jax.models.text_cnn import TextCNN
from cnn_jax.models.vgg import VGG
from cnn_jax.models.yolo import YOLO
from cnn_jax.ops.compose import Layer


def fcn(variant: str = '8s', backbone: str = 'resnet18',
        backbone_kwargs: Mapping[str, Any] | None = None, num_classes: int = 21,
        conv_impl: str = 'lax', dtype: Any = None, axis_name: str | None = None) -> FCN:
  """FCN-``variant`` on the zoo's ``backbone`` (``features_only``, ``backbone_kwargs``)."""
  net = get_model(backbone, features_only=True, conv_impl=conv_impl, dtype=dtype,
                  axis_name=axis_name, **dict(backbone_kwargs or {}))
  return FCN(backbone=net, num_classes=num_classes, variant=variant, conv_impl=conv_impl,
             dtype=dtype)


def embedding(backbone: str = 'cifar_resnet', dim: int = 128,
              backbone_kwargs: Mapping[str, Any] | None = None, conv_impl: str = 'lax',
              dtype: Any = None, axis_name: str | None = None) -> Embedding:
  """L2-normalised ``dim``-d embeddings from the zoo classifier ``backbone``."""
  net = get_model(backbone, num_classes=dim, conv_impl=conv_impl, dtype=dtype,
                  axis_name=axis_name, **dict(backbone_kwargs or {}))
  return Embedding(backbone=net)


def regressor(backbone: str = 'simple_cnn', backbone_kwargs: Mapping[str, Any] | None = None,
              num_classes: int = 10, hidden: int = 256, tap: str | None = None,
              dropout: float = 0.0, conv_impl: str = 'lax', dtype: Any = None,
              axis_name: str | None = None) -> Regressor:
  """A flattened feature map of the zoo's ``backbone`` -> ``num_classes`` numbers (boxes, landmarks)."""
  net = get_model(backbone, features_only=True, conv_impl=conv_impl, dtype=dtype,
                  axis_name=axis_name, **dict(backbone_kwargs or {}))
  return Regressor(backbone=net, num_classes=num_classes, hidden=hidden, tap=tap,
                   dropout=dropout, dtype=dtype)


def captioner(backbone: str = 'simple_cnn', backbone_kwargs: Mapping[str, Any] | None = None,
              vocab_size: int = 32, max_len: int = 16, embed_dim: int = 128, hidden: int = 256,
              pool: str = 'mean', tap: str | None = None, dropout: float = 0.0,
              attention: bool = False, conv_impl: str = 'lax', dtype: Any = None,
              axis_name: str | None = None) -> Captioner:
  """Show and Tell on the zoo's ``backbone`` (``features_only``): an LSTM decoder."""
  net = get_model(backbone, features_only=True, conv_impl=conv_impl, dtype=dtype,
                  axis_name=axis_name, **dict(backbone_kwargs or {}))
  return Captioner(backbone=net, vocab_size=vocab_size, max_len=max_len, embed_dim=embed_dim,
                   hidden=hidden, pool=pool, tap=tap, dropout=dropout, attention=attention,
                   dtype=dtype)


def two_stage(backbone: str = 'resnet50', backbone_kwargs: Mapping[str, Any] | None = None,
              num_classes: int = 90, conv_impl: str = 'lax', dtype: Any = None,
              axis_name: str | None = None, **detector: Any) -> TwoStageDetector:
  """Fast / Faster / Mask R-CNN on the zoo's ``backbone`` (``features_only``, ``backbone_kwargs``).

  ``detector``: any :class:`~cnn_jax.models.rcnn.TwoStageDetector` field.
  """
  net = get_model(backbone, features_only=True, conv_impl=conv_impl, dtype=dtype,
                  axis_name=axis_name, **dict(backbone_kwargs or {}))
  return TwoStageDetector(backbone=net, num_classes=num_classes, conv_impl=conv_impl,
                          dtype=dtype, **detector)


def rcnn(backbone: str = 'alexnet', backbone_kwargs: Mapping[str, Any] | None = None,
         num_classes: int = 20, conv_impl: str = 'lax', dtype: Any = None,
         axis_name: str | None = None, **detector: Any) -> RCNN:
  """R-CNN: the zoo classifier ``backbone`` scores each warped proposal (5 (C + 1) outputs).

  ``detector``: any :class:`~cnn_jax.models.rcnn.RCNN` field.
  """
  extra = {'axis_name': axis_name} if 'axis_name' in model_fields(backbone) else {}
  net = get_model(backbone, num_classes=5 * (num_classes + 1), conv_impl=conv_impl, dtype=dtype,
                  **extra, **dict(backbone_kwargs or {}))
  return RCNN(classifier=net, num_classes=num_classes, dtype=dtype, **detector)


# A builder's **kwargs go to this module class: its fields are the builder's arguments too.
two_stage.passes_to = TwoStageDetector
rcnn.passes_to = RCNN

_MODELS: dict[str, tuple[Callable[..., Any], dict[str, Any]]] = {
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
    'inception_v3': (InceptionV3, {}),
    'simple_cnn': (SimpleCNN, {}),
    'speednet': (SpeedNet, {}),
    'yolo': (YOLO, {}),
    **{f'fcn{v}': (fcn, {'variant': v}) for v in ('32s', '16s', '8s')},
    'embedding': (embedding, {}),
    'regressor': (regressor, {}),
    'captioner': (captioner, {}),
    'faster_rcnn': (two_stage, {}),
    'mask_rcnn': (two_stage, {'masks': True}),
    # Girshick 2015: VGG-16's stride-16 map, RoIPool, external proposals (here the fixed grid).
    'fast_rcnn': (two_stage, {'backbone': 'vgg16', 'taps': ('pool4',), 'fpn_channels': 0,
                              'proposals': 'fixed', 'roi_op': 'pool',
                              'anchor_sizes': ((64, 128, 256),), 'representation': 4096}),
    'rcnn': (rcnn, {'crop_size': 227}),
    'text_cnn': (TextCNN, {}),  # Kim 2014; (N, L) token ids, task text_classification
}


def register(name: str, builder: Callable[..., Any], **defaults: Any) -> None:
  """Adds a model (a Linen class or a builder function); re-registering a name is an error."""
  if name in _MODELS:
    raise ValueError(f'model {name!r} is already registered.')
  _MODELS[name] = (builder, defaults)


def list_models() -> list[str]:
  return sorted(_MODELS)


def _fields(builder: Callable[..., Any]) -> list[str]:
  if dataclasses.is_dataclass(builder):
    return [f.name for f in dataclasses.fields(builder)
            if f.init and f.name not in ('parent', 'name')]
  params = inspect.signature(builder).parameters.values()
  names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
  if hasattr(builder, 'passes_to'):  # the module class its **kwargs build
    names += [f for f in _fields(builder.passes_to)
              if f not in names and f not in ('backbone', 'classifier')]
  return names


def _lookup(name: str) -> tuple[Callable[..., Any], dict[str, Any]]:
  if is_path(name):
    builder = load_object(name, 'model')
    if not callable(builder):
      raise ValueError(f'model path {name!r} names {builder!r}, which is not a model class or '
                       'function.')
    return builder, {}
  try:
    return _MODELS[name]
  except KeyError:
    raise ValueError(f'unknown model {name!r}; known models: {", ".join(list_models())} '
                     '(or a path, package.module:attr).') from None


def model_fields(name: str) -> list[str]:
  """Constructor arguments a model accepts."""
  return _fields(_lookup(name)[0])


def get_model(name: str, **kwargs: Any) -> nn.Module | Functional:
  """Builds the named model; ``kwargs`` override its defaults.

  ``module_name`` (optional) names the instance when it is built inside another
  module's ``@nn.compact`` method, e.g. ``get_model('cifar_resnet',
  module_name='backbone')`` puts its variables under ``backbone/``. For a
  path model, ``conv_impl``, ``dtype`` and ``axis_name`` are passed only if it
  declares them (a compose network gets its ``dtype`` from ``Functional``).
  """
  builder, defaults = _lookup(name)
  fields = _fields(builder)
  module_name = kwargs.pop('module_name', None)
  if module_name is not None:
    kwargs['name'] = module_name
  dtype = None
  if is_path(name):  # the loop always passes these; a user's model may not declare them
    if 'conv_impl' not in fields and kwargs.get('conv_impl') == 'lax':
      kwargs.pop('conv_impl')
    if 'axis_name' not in fields and kwargs.get('axis_name') is None:
      kwargs.pop('axis_name', None)
    if 'dtype' not in fields:  # applied by Functional if the builder returns a Layer
      dtype = kwargs.pop('dtype', None)
  unknown = sorted(set(kwargs) - set(fields) - {'name'})
  if unknown:
    raise ValueError(f'model {name!r} has no argument(s) {unknown}; valid: '
                     f'{", ".join(fields)}.')
  model = builder(**{**defaults, **kwargs})
  if isinstance(model, Layer):
    return Functional(model, dtype=dtype)
  if isinstance(model, nn.Module) and dtype is None:
    return model
  if isinstance(model, nn.Module):
    raise ValueError(f'model {name!r} has no dtype argument, so it cannot compute in '
                     f'{dtype}; add a dtype field or use --config.dtype=float32.')
  raise ValueError(f'model {name!r} built {type(model).__name__}, not a model; return a Linen '
                   'module or a cnn_jax.ops.compose Layer (init, apply).')
