"""XLA:CPU flags on by default, placed before the user's own ``XLA_FLAGS`` so the user's win.

``--xla_cpu_experimental_ynn_fusion_type=+eltwise,+reduce`` lets XLA:CPU give
elementwise work and reductions (BatchNorm's statistics, its backward sums)
to YNNPACK too, not only convolutions and matrix products: ResNet-20's train
step ran 1.22-1.30x faster in three rounds (``benchmarks/xla_flags.py``; the
numbers are in ``benchmarks/README.md``).

XLA reads ``XLA_FLAGS`` once, when its backend starts, so :func:`apply` runs
at ``import cnn_jax``, before any computation; in a process whose JAX backend
started before that import it changes nothing. A default whose flag the
user's ``XLA_FLAGS`` already names is left out, so the user's value wins (its
``+``/``-`` forms then edit XLA's own default, as XLA documents them), and
``CNN_JAX_XLA_DEFAULTS=0`` leaves every flag to the user. The defaults apply
only to the jaxlib versions they were measured on: these flags are
experimental, and XLA aborts on a flag it does not know.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import MutableMapping, Sequence

DEFAULTS: tuple[str, ...] = ('--xla_cpu_experimental_ynn_fusion_type=+eltwise,+reduce',)
MEASURED_ON: tuple[str, ...] = ('0.10.',)  # jaxlib version prefixes
SWITCH = 'CNN_JAX_XLA_DEFAULTS'


def _name(flag: str) -> str:
  return flag.split('=', 1)[0]


def with_defaults(user_flags: str, defaults: Sequence[str] = DEFAULTS) -> str:
  """The ``defaults`` whose flags ``user_flags`` does not name, then ``user_flags``."""
  named = {_name(f) for f in user_flags.split()}
  return ' '.join([f for f in defaults if _name(f) not in named] + user_flags.split())


def measured_jaxlib() -> bool:
  """Whether the installed jaxlib is one the experimental flags here were measured on."""
  try:
    version = importlib.metadata.version('jaxlib')
  except importlib.metadata.PackageNotFoundError:
    return False
  return version.startswith(MEASURED_ON)


def apply(environ: MutableMapping[str, str] = os.environ) -> str:
  """Puts the defaults into ``environ['XLA_FLAGS']`` (see the module doc); returns its value."""
  if environ.get(SWITCH, '1') != '0' and measured_jaxlib():
    flags = with_defaults(environ.get('XLA_FLAGS', ''))
    if flags:
      environ['XLA_FLAGS'] = flags
  return environ.get('XLA_FLAGS', '')
