"""Transfer learning: start from another run's weights, freeze part of the network.

Freezing is by top-level module name (``stem``, ``stage1_0``, ``layer3_2``,
``conv4_1``, ``fc``...; see ``model.init(...)['params'].keys()``). A pattern
``p`` matches a module named ``p`` or ``p_<anything>``, so ``stage1`` is the
whole first stage of a CIFAR ResNet and ``conv4`` the fourth VGG stage; ``'*'``
matches every module that is not re-initialised (``exclude``: the new head).

A frozen module is frozen three ways, as Keras does it and as fine-tuning
recipes expect:

* its parameters get no update: ``optax.multi_transform`` gives them
  ``optax.set_to_zero()`` (no optimizer state either), and the step keeps the
  old leaves, so they stay bit-identical;
* no gradient is computed for them (``lax.stop_gradient``; with the whole
  backbone frozen XLA drops its backward pass: feature extraction costs one
  forward);
* it runs in inference mode (``train=False``): BatchNorm normalises with, and
  keeps, the source task's running statistics, and dropout is off.
"""

from __future__ import annotations

import contextlib
import inspect
import pathlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax

from cnn_jax.pytree import leaf_paths
from cnn_jax.train import checkpoint

Predicate = Callable[[str], bool]


def _matches(name: str, pattern: str) -> bool:
  return name == pattern or name.startswith(pattern + '_')


def frozen_predicate(freeze: Sequence[str], exclude: Sequence[str] = ()) -> Predicate | None:
  """``name -> frozen?`` for top-level module names; None when nothing is frozen.

  Args:
    freeze: module patterns to freeze; ``'*'`` means every module not in ``exclude``.
    exclude: the modules that are re-initialised (never frozen by ``'*'``).
  """
  freeze, exclude = tuple(freeze), tuple(exclude)
  if not freeze:
    return None
  if '*' in freeze:
    return lambda name: not any(_matches(name, p) for p in exclude)
  return lambda name: any(_matches(name, p) for p in freeze)


def frozen_mask(params: Any, is_frozen: Predicate) -> Any:
  """A pytree like ``params`` of Python bools: True under a frozen top-level module."""
  return {name: jax.tree.map(lambda _, f=is_frozen(name): f, sub)
          for name, sub in params.items()}


def check_patterns(params: Any, patterns: Sequence[str], key: str) -> None:
  """One-line error for a pattern that names no module (a typo would freeze nothing)."""
  names = list(params)
  for p in patterns:
    if p != '*' and not any(_matches(n, p) for n in names):
      raise ValueError(f'{key} pattern {p!r} matches no module; the model has {names}.')


def freeze_optimizer(tx: optax.GradientTransformation, is_frozen: Predicate | None
                     ) -> optax.GradientTransformation:
  """``tx`` for trainable parameters, ``set_to_zero`` (and no state) for frozen ones."""
  if is_frozen is None:
    return tx
  labels = lambda params: jax.tree.map(lambda f: 'frozen' if f else 'trainable',
                                       frozen_mask(params, is_frozen))
  return optax.multi_transform({'trainable': tx, 'frozen': optax.set_to_zero()}, labels)


def stop_frozen_gradients(params: Any, is_frozen: Predicate) -> Any:
  return {name: jax.lax.stop_gradient(sub) if is_frozen(name) else sub
          for name, sub in params.items()}


def keep_frozen(old: Any, new: Any, is_frozen: Predicate) -> Any:
  """``new`` with every frozen module's leaves taken from ``old`` (exactly)."""
  return {name: old[name] if is_frozen(name) else sub for name, sub in new.items()}


@contextlib.contextmanager
def frozen_in_eval_mode(is_frozen: Predicate | None) -> Iterator[None]:
  """Within it, frozen top-level modules are called with ``train=False``.

  Uses ``flax.linen.intercept_methods``; only modules whose ``__call__`` has a
  ``train`` argument are affected (their children inherit the flag).
  """
  if is_frozen is None:
    yield
    return

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if (context.method_name == '__call__' and len(module.path) == 1
        and is_frozen(module.path[0])):
      names = list(inspect.signature(type(module).__call__).parameters)[1:]
      if 'train' in kwargs:
        kwargs = {**kwargs, 'train': False}
      elif 'train' in names and names.index('train') < len(args):
        i = names.index('train')
        args = (*args[:i], False, *args[i + 1:])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(interceptor):
    yield


def load_variables(path: str | pathlib.Path, *, which: str = 'latest',
                   best_metric: str = 'accuracy', best_mode: str = 'max') -> dict[str, Any]:
  """``{'params', 'batch_stats'}`` (numpy) of a run's checkpoint, any optimizer.

  Args:
    path: a training workdir or its ``checkpoints/`` folder.
    which: ``'latest'`` (the newest step) or ``'best'`` (the step with the best
      eval ``best_metric``, ``Checkpointer.best_step``; a task's headline metric).
  """
  if which not in ('latest', 'best'):
    raise ValueError(f"which must be 'latest' or 'best', got {which!r}.")
  path = pathlib.Path(path).absolute()
  for candidate in (path / 'checkpoints', path):
    if candidate.is_dir() and any(p.name.isdigit() for p in candidate.iterdir()):
      break
  else:
    raise FileNotFoundError(f'no checkpoint under {path}; point transfer.init_from at the '
                            'workdir of a finished training run.')
  # No target: the tree comes back as saved (nested dicts), whatever the
  # optimizer was; only params and batch_stats are kept.
  _, state = checkpoint.load_tree(candidate, which=which, best_metric=best_metric,
                                  best_mode=best_mode)
  return {'params': jax.tree.map(np.asarray, state['params']),
          'batch_stats': jax.tree.map(np.asarray, state.get('batch_stats') or {})}


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  return {path: tuple(np.shape(x)) for path, x in leaf_paths(tree).items()}


def transplant(target: Any, source: Any, exclude: Sequence[str] = (), *, what: str = 'params'
               ) -> tuple[Any, list[str]]:
  """Copies ``source``'s top-level modules into ``target`` except the ``exclude``\\ d ones.

  Returns ``(new_target, copied_module_names)``. Raises ValueError naming the
  module when shapes differ or a needed module is missing from ``source``.
  """
  out, copied = dict(target), []
  for name, sub in target.items():
    if any(_matches(name, p) for p in exclude):
      continue
    if name not in source:
      raise ValueError(f'{what}/{name} is not in the source checkpoint (it has '
                       f'{sorted(source)}); add it to transfer.exclude to train it from scratch.')
    want, have = _shapes(sub), _shapes(source[name])
    if want != have:
      raise ValueError(f'{what}/{name} differs between the source checkpoint ({have}) and this '
                       f'model ({want}); add it to transfer.exclude or use the same architecture.')
    out[name] = jax.tree.map(lambda t, s: np.asarray(s, dtype=t.dtype), sub, source[name])
    copied.append(name)
  return out, copied
