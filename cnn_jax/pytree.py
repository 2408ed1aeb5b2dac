"""Text names for pytree leaves, one spelling for the whole codebase.

A leaf's name is its path with ``/`` between the elements: dict keys as
written, dataclass and namedtuple fields by name, sequence positions as
numbers, e.g. ``'params/conv1/kernel'``, ``'opt_state/0/trace/fc/bias'``.

The same spelling for a dict key, an attribute and an index matters: orbax
saves custom nodes (``TrainState``, optax namedtuples) as dicts and lists, so
``state.opt_state[0].trace`` in a live tree and ``opt_state/0/trace`` in a
checkpoint's metadata get the same name and the two trees can be compared
leaf by leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

KeyPath = tuple[Any, ...]  # of jax.tree_util key entries (DictKey, GetAttrKey, SequenceKey...)


def path_str(path: KeyPath) -> str:
  """``'params/conv1/kernel'`` for a key path of ``jax.tree_util.tree_flatten_with_path``."""
  return jax.tree_util.keystr(path, simple=True, separator='/')


def leaf_paths(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> dict[str, Any]:
  """``{path_str(path): leaf}`` for every leaf of ``tree``, in its leaf order.

  ``None`` is an empty subtree (no entry), as everywhere in ``jax.tree``.
  """
  flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
  return {path_str(path): leaf for path, leaf in flat}
