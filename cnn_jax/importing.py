"""Objects named in a config by a Python path: ``pkg.module:attr`` or ``path/file.py:attr``.

This is how a config reaches code outside the package (a user's model or
task) without an edit of ``cnn_jax``: ``--config.model.name=mynets.resnet:build``.
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import sys
from typing import Any


def is_path(name: str) -> bool:
  """Whether ``name`` is a ``module:attr`` path rather than a registry name."""
  return ':' in name


def load_object(spec: str, what: str) -> Any:
  """The object ``spec`` names; ``what`` ('model', 'task') words the errors.

  Raises:
    ValueError: one line naming the module or attribute that could not be found.
  """
  module_name, _, attr = spec.rpartition(':')
  if not module_name or not attr:
    raise ValueError(f'{what} path {spec!r} must look like package.module:name or '
                     'path/to/file.py:name.')
  if module_name.endswith('.py'):
    path = pathlib.Path(module_name)
    if not path.is_file():
      raise ValueError(f'{what} path {spec!r}: file {module_name!r} does not exist.')
    key = f'cnn_jax_user_{path.resolve().as_posix().replace("/", "_").replace(".", "_")}'
    module = sys.modules.get(key)
    if module is None:
      loader_spec = importlib.util.spec_from_file_location(key, path)
      module = importlib.util.module_from_spec(loader_spec)
      sys.modules[key] = module  # before exec: dataclasses and pickling look it up
      try:
        loader_spec.loader.exec_module(module)
      except Exception as e:
        del sys.modules[key]
        raise ValueError(f'{what} path {spec!r}: importing {module_name} failed: '
                         f'{type(e).__name__}: {e}') from e
  else:
    try:
      module = importlib.import_module(module_name)
    except ImportError as e:
      raise ValueError(f'{what} path {spec!r}: cannot import {module_name!r} ({e}); check it '
                       'is on PYTHONPATH (or give a file path, path/to/file.py:name).') from e
  try:
    return getattr(module, attr)
  except AttributeError:
    raise ValueError(f'{what} path {spec!r}: module {module_name!r} has no attribute '
                     f'{attr!r}.') from None
