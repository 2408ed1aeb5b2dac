"""Flax Linen forms of the specs of :mod:`cnn_jax.ops.blocks`, through one adapter.

:class:`Block` is the only Linen code: ``class ConvBN(Block, spec=blocks.ConvBN)``
gives the module exactly the spec's constructor fields (same names, defaults
and order), and calling it ``(x, train)`` builds the spec from them, declares
its ``init``'s params and state as Linen ``'params'`` and ``'batch_stats'``,
runs its ``apply`` and stores the new BatchNorm statistics. So
``variables['params'][module]`` is exactly the pytree the spec takes, and a
new block option is a field of the spec alone.

The dtype policy, ``conv_impl`` and ``axis_name`` are spec fields too (see
:mod:`cnn_jax.ops.blocks`): parameters in ``param_dtype`` (float32), compute
in ``dtype`` when set.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax.linen as nn
import jax

from cnn_jax.nn.variables import declare, read_state, update_state
from cnn_jax.ops import blocks
from cnn_jax.ops.blocks import Spec, cast  # noqa: F401  (cast: the models' input cast)


class Block(nn.Module):
  """Linen module around a :class:`~cnn_jax.ops.blocks.Spec`; subclass with ``spec=``.

  ``__call__(x, train)``: (N, H, W, C_in) (or (..., d_in) for Dense) -> the
  spec's output. ``train`` may be omitted for blocks without state.
  """
  spec_type: ClassVar[type[Spec] | None] = None

  def __init_subclass__(cls, spec: type[Spec] | None = None, **kwargs: Any):
    if spec is not None:
      # Before Flax turns the class into a dataclass: the spec's fields become
      # the module's, so the two can never disagree.
      annotations = {}
      for f in dataclasses.fields(spec):
        if not f.init:
          continue
        annotations[f.name] = f.type
        setattr(cls, f.name, dataclasses.field(default=f.default, kw_only=f.kw_only,
                                               default_factory=f.default_factory))
      cls.__annotations__ = {**annotations, **cls.__dict__.get('__annotations__', {})}
      cls.spec_type = spec
      if cls.__doc__ is None:
        cls.__doc__ = spec.__doc__
    super().__init_subclass__(**kwargs)

  @nn.nowrap
  def spec(self) -> Spec:
    """The spec with this module's field values."""
    return self.spec_type(**{f.name: getattr(self, f.name)
                             for f in dataclasses.fields(self.spec_type) if f.init})

  @nn.compact
  def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
    spec = self.spec()
    params, state = declare(self, lambda key: spec.init(key, x.shape[-1]))
    if train is None:
      if state:
        raise TypeError(f'{type(self).__name__} has BatchNorm statistics: call it with '
                        'train=True or train=False.')
      train = False
    y, new_state = spec.apply(params, read_state(state), x, train=train)
    update_state(self, state, new_state, train)
    return y


class Conv(Block, spec=blocks.Conv):
  pass


class Dense(Block, spec=blocks.Dense):
  pass


class BatchNorm(Block, spec=blocks.BatchNorm):
  pass


class ConvBN(Block, spec=blocks.ConvBN):
  pass

