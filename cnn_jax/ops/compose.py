"""Compose architectures from pure functions, no classes: ``Layer`` = (init, apply).

A :class:`Layer` is a pair of pure functions::

    params, state, out_shape = layer.init(key, in_shape)
    y, new_state = layer.apply(params, state, x, train=False, rng=None)

``in_shape`` includes the batch axis, e.g. ``(1, 32, 32, 3)``. ``state``
carries BatchNorm statistics (empty ``{}`` for stateless layers) and ``rng``
feeds dropout. Combinators (:func:`sequential`, :func:`residual`,
:func:`concat`) build layers from layers. Every parametrised layer is a spec
of :mod:`cnn_jax.ops.blocks` through the one adapter :func:`from_spec` (the
Linen modules of :mod:`cnn_jax.nn` wrap the same specs, so the two cannot
disagree), and the combinators take specs directly. A ResNet-ish CIFAR net
in a few lines::

    net = sequential(
        conv_bn(16, 3), relu,
        residual_block(16), blocks.BasicBlock(32, strides=2, shortcut='A'),
        global_avg_pool, dense(10))
    params, state, _ = net.init(jax.random.key(0), (1, 32, 32, 3))
    logits, state = jax.jit(net.apply, static_argnames='train')(params, state, x, train=True)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from cnn_jax.ops import blocks, pool
from cnn_jax.ops.conv import Impl

Shape = tuple[int, ...]


class Layer(NamedTuple):
  init: Callable[[jax.Array, Shape], tuple[Any, Any, Shape]]
  apply: Callable[..., tuple[jax.Array, Any]]


def _out_shape(apply, params, state, in_shape: Shape) -> Shape:
  x = jax.ShapeDtypeStruct(tuple(in_shape), jnp.float32)
  return tuple(jax.eval_shape(functools.partial(apply, params, state, train=False), x)[0].shape)


def layer(init_fn: Callable[[jax.Array, int], tuple[Any, Any]],
          apply_fn: Callable[..., tuple[jax.Array, Any]]) -> Layer:
  """A Layer from ``init_fn(key, c_in) -> (params, state)`` and a pure apply.

  ``apply_fn(params, state, x, *, train)`` returns ``(y, new_state)``; the
  output shape is inferred with ``jax.eval_shape`` (no FLOPs spent).
  """

  def init(key, in_shape):
    params, state = init_fn(key, in_shape[-1])
    return params, state, _out_shape(apply, params, state, in_shape)

  def apply(params, state, x, *, train=False, rng=None):
    del rng
    return apply_fn(params, state, x, train=train)

  return Layer(init, apply)


def from_spec(spec: blocks.Spec) -> Layer:
  """The Layer of a block spec: its ``init(key, in_shape[-1])`` and ``apply``."""
  return layer(spec.init, spec.apply)


def _as_layer(lyr: Layer | blocks.Spec) -> Layer:
  return from_spec(lyr) if isinstance(lyr, blocks.Spec) else lyr


def stateless(fn: Callable[[jax.Array], jax.Array]) -> Layer:
  """A parameter-free layer from ``fn(x) -> y`` (activations, pooling, reshapes)."""
  return layer(lambda key, c_in: ({}, {}), lambda p, s, x, train: (fn(x), s))


# --------------------------------------------------------------------------- primitives

relu = stateless(jax.nn.relu)
flatten = stateless(lambda x: x.reshape(x.shape[0], -1))
global_avg_pool = stateless(pool.global_avg_pool)
global_max_pool = stateless(pool.global_max_pool)


def max_pool(window, stride=None, padding='VALID') -> Layer:
  return stateless(functools.partial(pool.max_pool, window=window, stride=stride,
                                     padding=padding))


def avg_pool(window, stride=None, padding='VALID') -> Layer:
  return stateless(functools.partial(pool.avg_pool, window=window, stride=stride,
                                     padding=padding))


def conv(c_out: int, kernel: int, *, stride: int = 1, padding=None, bias: bool = True,
         impl: Impl = 'lax') -> Layer:
  """Convolution (pads ``kernel // 2`` by default). (N,H,W,C) -> (N,H',W',c_out)."""
  return from_spec(blocks.Conv(c_out, kernel, stride, padding, bias, conv_impl=impl))


def batch_norm(momentum: float = 0.9, eps: float = 1e-5) -> Layer:
  return from_spec(blocks.BatchNorm(momentum, eps))


def conv_bn(c_out: int, kernel: int, *, stride: int = 1, padding=None,
            impl: Impl = 'lax') -> Layer:
  """Bias-free conv followed by BatchNorm (no activation; add ``relu`` after)."""
  return from_spec(blocks.ConvBN(c_out, kernel, stride, padding, act=None, conv_impl=impl))


def dense(d_out: int, *, bias: bool = True) -> Layer:
  return from_spec(blocks.Dense(d_out, bias))


def dropout(rate: float) -> Layer:
  """Inverted dropout; active only when ``train`` and an ``rng`` is given."""

  def apply(params, state, x, *, train=False, rng=None):
    if not train or rate == 0.0:
      return x, state
    if rng is None:
      raise ValueError('dropout needs an rng when train=True; pass apply(..., rng=key).')
    keep = jax.random.bernoulli(rng, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x)), state

  return Layer(lambda key, in_shape: ({}, {}, tuple(in_shape)), apply)


# --------------------------------------------------------------------------- blocks

def residual_block(c_out: int, *, stride: int = 1, shortcut: str = 'B',
                   impl: Impl = 'lax') -> Layer:
  return from_spec(blocks.BasicBlock(c_out, stride, shortcut, conv_impl=impl))


def plain_block(c_out: int, *, stride: int = 1, impl: Impl = 'lax') -> Layer:
  return from_spec(blocks.PlainBlock(c_out, stride, conv_impl=impl))


def bottleneck_block(width: int, *, stride: int = 1, impl: Impl = 'lax') -> Layer:
  return from_spec(blocks.Bottleneck(width, stride, conv_impl=impl))


def inception_block(c1: int, c3_reduce: int, c3: int, c5_reduce: int, c5: int, pool_proj: int,
                    *, impl: Impl = 'lax') -> Layer:
  return from_spec(blocks.Inception(c1, c3_reduce, c3, c5_reduce, c5, pool_proj,
                                    conv_impl=impl))


# --------------------------------------------------------------------------- combinators

def _split(rng, n):
  return [None] * n if rng is None else list(jax.random.split(rng, n))


def sequential(*layers: Layer | blocks.Spec) -> Layer:
  """Applies ``layers`` in order; params and state are tuples, one entry per layer."""
  layers = tuple(map(_as_layer, layers))

  def init(key, in_shape):
    params, state, shape = [], [], tuple(in_shape)
    for k, lyr in zip(jax.random.split(key, len(layers)), layers):
      p, s, shape = lyr.init(k, shape)
      params.append(p)
      state.append(s)
    return tuple(params), tuple(state), shape

  def apply(params, state, x, *, train=False, rng=None):
    new_state = []
    for lyr, p, s, r in zip(layers, params, state, _split(rng, len(layers))):
      x, s = lyr.apply(p, s, x, train=train, rng=r)
      new_state.append(s)
    return x, tuple(new_state)

  return Layer(init, apply)


def concat(*branches: Layer | blocks.Spec, axis: int = -1) -> Layer:
  """Runs every branch on the same input and concatenates the outputs (Inception)."""
  branches = tuple(map(_as_layer, branches))

  def init(key, in_shape):
    outs = [b.init(k, in_shape) for k, b in zip(jax.random.split(key, len(branches)), branches)]
    shapes = [o[2] for o in outs]
    out_shape = list(shapes[0])
    out_shape[axis] = sum(s[axis] for s in shapes)
    return tuple(o[0] for o in outs), tuple(o[1] for o in outs), tuple(out_shape)

  def apply(params, state, x, *, train=False, rng=None):
    ys, new_state = [], []
    for b, p, s, r in zip(branches, params, state, _split(rng, len(branches))):
      y, s = b.apply(p, s, x, train=train, rng=r)
      ys.append(y)
      new_state.append(s)
    return jnp.concatenate(ys, axis=axis), tuple(new_state)

  return Layer(init, apply)


def residual(body: Layer | blocks.Spec, shortcut: Layer | blocks.Spec | None = None,
             post: Callable[[jax.Array], jax.Array] | None = None) -> Layer:
  """``post(body(x) + shortcut(x))``; the shortcut defaults to the identity.

  Shapes of the two paths must match (use e.g. a strided ``conv_bn`` shortcut
  when the body changes resolution or channels).
  """
  body = _as_layer(body)
  shortcut = stateless(lambda x: x) if shortcut is None else _as_layer(shortcut)

  def init(key, in_shape):
    kb, ks = jax.random.split(key)
    pb, sb, out_b = body.init(kb, in_shape)
    ps, ss, out_s = shortcut.init(ks, in_shape)
    if tuple(out_b) != tuple(out_s):
      raise ValueError(f'residual: body output {out_b} and shortcut output {out_s} differ; '
                       'give the shortcut a projection (e.g. conv_bn(c_out, 1, stride=s)).')
    return {'body': pb, 'shortcut': ps}, {'body': sb, 'shortcut': ss}, tuple(out_b)

  def apply(params, state, x, *, train=False, rng=None):
    rb, rs = _split(rng, 2)
    yb, sb = body.apply(params['body'], state['body'], x, train=train, rng=rb)
    ys, ss = shortcut.apply(params['shortcut'], state['shortcut'], x, train=train, rng=rs)
    y = yb + ys
    return (post(y) if post is not None else y), {'body': sb, 'shortcut': ss}

  return Layer(init, apply)


def count_params(params) -> int:
  """Number of scalars in a parameter pytree."""
  return sum(int(x.size) for x in jax.tree.leaves(params))
