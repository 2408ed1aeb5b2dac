"""Recurrent cells as pure functions, and a masked scan of a cell over time.

A cell is ``cell(params, carry, x) -> (new_carry, output)``: ``x`` is one time
step ``(N, D)`` of a batch, ``params`` a plain dict of arrays and ``carry`` the
recurrent state (an ``(h, c)`` pair for the LSTM, ``h`` for the GRU). That is
exactly the step function ``lax.scan`` wants, and :func:`scan_rnn` runs one over
``(N, T, D)`` sequences, holding the state through padding.

The gate equations and gate order are PyTorch's (``torch.nn.LSTM`` /
``torch.nn.GRU``, one layer), so trained torch weights map one to one. The
parameter layout is ``(in, out)`` like every other kernel in this codebase,
i.e. the transpose of torch's ``(out, in)``::

    params['w_ih'] = weight_ih_l0.T   # (D, G * H)
    params['w_hh'] = weight_hh_l0.T   # (H, G * H)
    params['b_ih'] = bias_ih_l0       # (G * H,)
    params['b_hh'] = bias_hh_l0       # (G * H,)

with ``G = 4`` gate blocks ``[i | f | g | o]`` for the LSTM and ``G = 3``
blocks ``[r | z | n]`` for the GRU, each ``H`` wide, in that order along the
last axis. Both biases are kept (torch has two; the GRU's ``b_hn`` sits inside
the reset gate's product, so it is not redundant there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

Params = dict[str, jax.Array]
LSTMCarry = tuple[jax.Array, jax.Array]
Carry = Any  # a pytree of (N, ...) arrays: LSTMCarry, or h for the GRU
Cell = Callable[[Params, Carry, jax.Array], tuple[Carry, jax.Array]]

_PARAM_KEYS = ('w_ih', 'w_hh', 'b_ih', 'b_hh')


def _init(key: jax.Array, input_dim: int, hidden: int, gates: int, dtype,
          name: str) -> Params:
  if input_dim < 1 or hidden < 1:
    raise ValueError(f'{name}: input_dim and hidden must be positive, got {input_dim} and '
                     f'{hidden}.')
  # PyTorch's init: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H)).
  bound = 1.0 / math.sqrt(hidden)
  shapes = {'w_ih': (input_dim, gates * hidden), 'w_hh': (hidden, gates * hidden),
            'b_ih': (gates * hidden,), 'b_hh': (gates * hidden,)}
  keys = jax.random.split(key, len(_PARAM_KEYS))
  return {param: jax.random.uniform(k, shapes[param], dtype, -bound, bound)
          for param, k in zip(_PARAM_KEYS, keys)}


def init_lstm(key: jax.Array, input_dim: int, hidden: int, dtype=jnp.float32) -> Params:
  """LSTM parameters ``{'w_ih': (D, 4H), 'w_hh': (H, 4H), 'b_ih': (4H,), 'b_hh': (4H,)}``.

  Gate blocks ``[i | f | g | o]``; every entry ``~ U(-1/sqrt(H), 1/sqrt(H))``
  as in PyTorch (no forget-gate bias offset).
  """
  return _init(key, input_dim, hidden, 4, dtype, 'init_lstm')


def init_gru(key: jax.Array, input_dim: int, hidden: int, dtype=jnp.float32) -> Params:
  """GRU parameters ``{'w_ih': (D, 3H), 'w_hh': (H, 3H), 'b_ih': (3H,), 'b_hh': (3H,)}``.

  Gate blocks ``[r | z | n]``; every entry ``~ U(-1/sqrt(H), 1/sqrt(H))`` as in PyTorch.
  """
  return _init(key, input_dim, hidden, 3, dtype, 'init_gru')


def lstm_zero_carry(batch_size: int, hidden: int, dtype=jnp.float32) -> LSTMCarry:
  """The all-zero LSTM state ``(h, c)``, each ``(N, H)``."""
  return jnp.zeros((batch_size, hidden), dtype), jnp.zeros((batch_size, hidden), dtype)


def gru_zero_carry(batch_size: int, hidden: int, dtype=jnp.float32) -> jax.Array:
  """The all-zero GRU state ``h``, ``(N, H)``."""
  return jnp.zeros((batch_size, hidden), dtype)


def _check_step(name: str, params: Params, h: jax.Array, x: jax.Array, gates: int) -> None:
  """Validates one step's shapes at trace time, so a wrong one is a one-line error."""
  missing = [k for k in _PARAM_KEYS if k not in params]
  if missing:
    raise ValueError(f'{name}: params lack {missing}; build them with init_'
                     f'{name.split("_")[0]}(key, input_dim, hidden).')
  w_ih = params['w_ih']
  if w_ih.ndim != 2 or w_ih.shape[1] % gates:
    raise ValueError(f'{name}: w_ih must be (D, {gates}H), got {tuple(w_ih.shape)}.')
  d, hidden = w_ih.shape[0], w_ih.shape[1] // gates
  if x.ndim != 2 or x.shape[1] != d:
    raise ValueError(f'{name}: x must be one time step (N, D={d}), got {tuple(x.shape)}; '
                     'run sequences (N, T, D) through scan_rnn.')
  if h.shape != (x.shape[0], hidden):
    raise ValueError(f'{name}: state h must be (N, H) = {(x.shape[0], hidden)}, got '
                     f'{tuple(h.shape)}.')


def _gate_inputs(params: Params, h: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(x W_ih + b_ih, h W_hh + b_hh)``: every gate's pre-activations, ``(N, G H)`` each."""
  return x @ params['w_ih'] + params['b_ih'], h @ params['w_hh'] + params['b_hh']


def lstm_cell(params: Params, carry: LSTMCarry, x: jax.Array) -> tuple[LSTMCarry, jax.Array]:
  """One LSTM step (Hochreiter & Schmidhuber 1997; PyTorch's equations and gate order).

  With ``sigma`` the logistic sigmoid and ``*`` elementwise::

      i  = sigma(x W_ii + b_ii + h W_hi + b_hi)     input gate
      f  = sigma(x W_if + b_if + h W_hf + b_hf)     forget gate
      g  = tanh (x W_ig + b_ig + h W_hg + b_hg)     candidate cell
      o  = sigma(x W_io + b_io + h W_ho + b_ho)     output gate
      c' = f * c + i * g
      h' = o * tanh(c')

  where ``W_i* = params['w_ih'][:, k H:(k + 1) H]`` for the k-th block of
  ``[i, f, g, o]`` (likewise ``w_hh``, ``b_ih``, ``b_hh``).

  Args:
    params: from :func:`init_lstm` (layout in the module docstring).
    carry: ``(h, c)``, each ``(N, H)``.
    x: ``(N, D)``, one time step.

  Returns:
    ``((h', c'), h')``: the new state, and ``h'`` again as the step's output.
  """
  h, c = carry
  _check_step('lstm_cell', params, h, x, 4)
  xg, hg = _gate_inputs(params, h, x)
  i, f, g, o = jnp.split(xg + hg, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return (h, c), h


def gru_cell(params: Params, carry: jax.Array, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """One GRU step (Cho et al. 2014) with PyTorch's equations and gate order::

      r  = sigma(x W_ir + b_ir + h W_hr + b_hr)          reset gate
      z  = sigma(x W_iz + b_iz + h W_hz + b_hz)          update gate
      n  = tanh (x W_in + b_in + r * (h W_hn + b_hn))    candidate state
      h' = (1 - z) * n + z * h

  The reset gate multiplies ``h W_hn + b_hn`` (PyTorch's and cuDNN's variant),
  not ``h`` before the product as in the original paper.

  Args:
    params: from :func:`init_gru`; blocks ``[r, z, n]``.
    carry: ``h``, ``(N, H)``.
    x: ``(N, D)``, one time step.

  Returns:
    ``(h', h')``: the new state, and the same as the step's output.
  """
  h = carry
  _check_step('gru_cell', params, h, x, 3)
  xg, hg = _gate_inputs(params, h, x)
  x_r, x_z, x_n = jnp.split(xg, 3, axis=-1)
  h_r, h_z, h_n = jnp.split(hg, 3, axis=-1)
  r = jax.nn.sigmoid(x_r + h_r)
  z = jax.nn.sigmoid(x_z + h_z)
  n = jnp.tanh(x_n + r * h_n)
  h = (1 - z) * n + z * h
  return h, h


def scan_rnn(cell: Cell, params: Params, carry0: Carry, xs: jax.Array,
             mask: jax.Array | None = None, *, reverse: bool = False,
             unroll: int = 1) -> tuple[Carry, jax.Array]:
  """Runs ``cell`` over the time axis of a batch of (padded) sequences with ``lax.scan``.

  At a step with ``mask[n, t] == False`` (padding) sequence ``n`` keeps its
  previous state and outputs zeros, so the final state of a padded sequence is
  the state after its last real step, wherever the padding is (right-padded,
  left-padded or holes), and what the padding holds never matters.

  Args:
    cell: ``cell(params, carry, x_t) -> (new_carry, y_t)``, e.g. :func:`lstm_cell`.
    params: the cell's parameters.
    carry0: the initial state, a pytree of ``(N, ...)`` arrays (e.g.
      ``lstm_zero_carry(N, H)``, or a state computed from image features).
    xs: ``(N, T, D)`` inputs, batch first.
    mask: optional ``(N, T)`` bool, True at real steps; None means all real.
    reverse: scan from the last step to the first (the backward half of a
      bidirectional RNN); outputs stay aligned with the inputs.
    unroll: passed to ``lax.scan``.

  Returns:
    ``(final_carry, ys)`` with ``ys`` ``(N, T, H)`` (zero at padded steps).
  """
  xs = jnp.asarray(xs)
  if xs.ndim != 3:
    raise ValueError(f'scan_rnn expects batch-first inputs (N, T, D), got shape '
                     f'{tuple(xs.shape)}; add a batch axis with xs[None].')
  n, t = xs.shape[:2]
  bad = [tuple(leaf.shape) for leaf in jax.tree.leaves(carry0)
         if leaf.ndim < 1 or leaf.shape[0] != n]
  if bad:
    raise ValueError(f'scan_rnn: carry0 leaves must have batch size N={n} first, got {bad}.')
  if mask is not None:
    mask = jnp.asarray(mask)
    if mask.dtype != jnp.bool_ or mask.shape != (n, t):
      raise ValueError(f'scan_rnn: mask must be bool (N, T) = {(n, t)}, got {mask.dtype} '
                       f'{tuple(mask.shape)}; pass e.g. `tokens != pad_id`.')

  def step(carry, inputs):
    x, m = inputs
    new_carry, y = cell(params, carry, x)
    if m is None:
      return new_carry, y

    def keep(new, old):  # padded rows keep the old value
      return jnp.where(m.reshape((n,) + (1,) * (new.ndim - 1)), new, old)

    new_carry = jax.tree.map(keep, new_carry, carry)
    return new_carry, keep(y, jnp.zeros_like(y))

  time_major = (jnp.swapaxes(xs, 0, 1), None if mask is None else mask.T)
  carry, ys = lax.scan(step, carry0, time_major, reverse=reverse, unroll=unroll)
  return carry, jnp.swapaxes(ys, 0, 1)
