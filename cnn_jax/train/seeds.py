"""Seeds trained together: one function of one seed's state made a function of K seeds' states.

``config.num_seeds=K`` gives every leaf of the state (parameters, optimizer and
BatchNorm state, step) a leading (K,) axis and the train batch a (K, B, ...)
shape; the train, eval and init functions are lifted over that axis by
:func:`over_seeds`, in one of two ways that compute the same thing:

* ``'vmap'``: ``jax.vmap``. A convolution whose kernel is batched becomes one
  grouped convolution over the K seeds, which GPUs and TPUs run well and which
  XLA:CPU runs several times slower than K plain ones (``benchmarks/num_seeds.py``).
* ``'unroll'``: K copies of the one-seed computation side by side in the same
  compiled program (no grouped convolutions; compile time grows with K).

``'auto'`` (the default) picks ``'unroll'`` on CPU and ``'vmap'`` elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

MODES = ('auto', 'vmap', 'unroll')


def resolve_mode(mode: str, backend: str | None = None) -> str:
  """``'vmap'`` or ``'unroll'`` for ``mode`` on ``backend`` (default: JAX's default backend)."""
  if mode not in MODES:
    raise ValueError(f'seeds_mode={mode!r} is not valid; choose one of {", ".join(MODES)}.')
  if mode != 'auto':
    return mode
  return 'unroll' if (backend or jax.default_backend()) == 'cpu' else 'vmap'


def over_seeds(fn: Callable, num_seeds: int, mode: str = 'auto',
               in_axes: int | None | Sequence[int | None] = 0) -> Callable:
  """``fn`` lifted over a leading (num_seeds,) axis of the arguments ``in_axes`` marks (0).

  Arguments marked ``None`` are shared by every seed; every output gets the seed
  axis. ``num_seeds == 1`` returns ``fn`` itself (no seed axis anywhere).
  """
  if num_seeds == 1:
    return fn
  if resolve_mode(mode) == 'vmap':
    return jax.vmap(fn, in_axes=in_axes)

  def unrolled(*args: Any):
    axes = in_axes if isinstance(in_axes, (tuple, list)) else (in_axes,) * len(args)
    outs = [fn(*[a if ax is None else jax.tree.map(lambda x, k=k: x[k], a)
                 for a, ax in zip(args, axes)]) for k in range(num_seeds)]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

  return unrolled
