"""Data parallelism for the one pure train step: jit with NamedSharding, or pmap.

* ``'jit'`` (default): a 1-D mesh over every device (of every process) with axis
  ``'data'``; the batch is sharded along it and the state replicated. The step
  is the single-device step: XLA's SPMD partitioner turns the batch means
  (loss, BatchNorm statistics) into all-reduces, so results equal one device's.
* ``'pmap'``: the same step built with ``axis_name='batch'``; gradients,
  metrics and BatchNorm statistics are averaged with ``lax.pmean`` over it.

Multi-host: every process computes the same global batch indices and feeds only
its own slice (``jax.make_array_from_process_local_data``); call
:func:`initialize_distributed` before anything touches the devices.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

MODES = ('jit', 'pmap')
DATA_AXIS = 'data'
PMAP_AXIS = 'batch'


def initialize_distributed(coordinator_address: str = '', num_processes: int = 0,
                           process_id: int = -1) -> bool:
  """Starts multi-host JAX when configured; returns whether it did.

  Arguments fall back to the environment (``JAX_COORDINATOR_ADDRESS``,
  ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``); with no coordinator address the
  run is single-process (on TPU pods and SLURM, ``jax.distributed.initialize()``
  can also discover everything itself: set the address to 'auto').
  """
  address = coordinator_address or os.environ.get('JAX_COORDINATOR_ADDRESS', '')
  if not address:
    return False
  if address == 'auto':
    jax.distributed.initialize()
    return True
  num = num_processes or int(os.environ.get('JAX_NUM_PROCESSES', '0'))
  pid = process_id if process_id >= 0 else int(os.environ.get('JAX_PROCESS_ID', '-1'))
  if num <= 0 or pid < 0:
    raise ValueError(f'multi-host run at {address} needs distributed.num_processes and '
                     'distributed.process_id (or JAX_NUM_PROCESSES / JAX_PROCESS_ID).')
  jax.distributed.initialize(address, num_processes=num, process_id=pid)
  return True


def check_divisible(size: int, devices: int, name: str) -> None:
  if size % devices:
    up = -(-size // devices) * devices
    raise ValueError(f'{name}={size} is not divisible by the {devices} devices; use a multiple '
                     f'of {devices}, e.g. --config.{name}={up}.')


def host_value(x: Any) -> np.ndarray:
  """The host value of a replicated array, also of a global one spanning processes."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    return np.asarray(x.addressable_data(0))
  return np.asarray(x)


def first_replica(x: jax.Array) -> jax.Array:
  """Replica 0 of a pmap output (D, ...) as a (...) array on this process's first device.

  Slices the local shard instead of indexing ``x``: ``x[0]`` is a gather over
  all D devices, whose collective aborted test workers on a loaded 2-core
  machine (8 simulated devices), and it is needless work for a copy we already hold.
  """
  local = x.addressable_shards[0].data
  return local[0] if local.ndim == x.ndim else local


class DataParallel:
  """Placement of state and batches, and compilation of the steps, for one mode.

  Args:
    mode: 'jit' or 'pmap'.
    devices: defaults to every device of every process.
    num_seeds: K > 1: seeds trained together; the state and the train batch have a
      leading seed axis (jit only, one process), and the batch is sharded along
      its second axis, so each device holds every seed's slice of the batch.
  """

  def __init__(self, mode: str = 'jit', devices=None, num_seeds: int = 1):
    if mode not in MODES:
      raise ValueError(f'unknown parallel mode {mode!r}; choose one of {MODES}.')
    if num_seeds > 1 and mode != 'jit':
      raise ValueError(f'num_seeds={num_seeds} needs --config.parallel=jit.')
    self.mode = mode
    self.num_seeds = num_seeds
    self.devices = list(devices) if devices is not None else jax.devices()
    self.mesh = Mesh(np.asarray(self.devices), (DATA_AXIS,))
    self.replicated = NamedSharding(self.mesh, P())
    self.batch_sharding = NamedSharding(self.mesh, P(DATA_AXIS))
    self.train_sharding = (NamedSharding(self.mesh, P(None, DATA_AXIS)) if num_seeds > 1
                           else self.batch_sharding)
    self.process_index, self.process_count = jax.process_index(), jax.process_count()
    self.local_devices = [d for d in self.devices if d.process_index == self.process_index]
    if num_seeds > 1 and self.process_count > 1:
      raise ValueError(f'num_seeds={num_seeds} runs in one process; start one run per seed '
                       'group on each host instead.')

  @property
  def num_devices(self) -> int:
    return len(self.devices)

  @property
  def axis_name(self) -> str | None:
    """What models and steps must reduce over: only pmap needs it spelled out."""
    return PMAP_AXIS if self.mode == 'pmap' else None

  # -- state ------------------------------------------------------------------

  def _replicate_global(self, state: Any) -> Any:
    """Every process holds the same values: build each one's shards of a global array."""
    return jax.tree.map(lambda x: jax.make_array_from_callback(
        x.shape, self.replicated, lambda idx, x=host_value(x): x[idx]), state)

  def put_state(self, state: Any) -> Any:
    if self.mode == 'pmap':  # one stacked copy per local device
      n = len(self.local_devices)
      stacked = NamedSharding(Mesh(np.asarray(self.local_devices), (PMAP_AXIS,)), P(PMAP_AXIS))
      return jax.device_put(
          jax.tree.map(lambda x: np.broadcast_to(host_value(x), (n, *x.shape)), state),
          stacked)
    if self.process_count > 1:
      return self._replicate_global(state)
    return jax.device_put(state, self.replicated)

  def get_state(self, placed: Any) -> Any:
    """One copy of the state (for checkpoints and evaluation on the host)."""
    if self.mode == 'jit':
      return placed
    one = jax.tree.map(first_replica, placed)
    # orbax saves only global arrays when several processes take part.
    return self._replicate_global(one) if self.process_count > 1 else one

  def abstract_state(self, state: Any) -> Any:
    """Shapes, dtypes and shardings that a checkpoint restores into."""
    sharding = self.replicated if self.mode == 'jit' or self.process_count > 1 else None
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding),
                        state)

  # -- batches ----------------------------------------------------------------

  def put_batch(self, batch: dict, local: bool = False, train: bool = False) -> dict:
    """Places a batch for the step.

    ``batch`` is the global batch (the same on every process; each keeps only
    its own rows), or with ``local=True`` this process's rows already (a
    sharded stream). Under pmap the local rows are split into one slice per
    local device. ``train``: a train batch, (K, B, ...) when seeds train together.
    """
    if train and self.num_seeds > 1:
      return jax.device_put(batch, self.train_sharding)
    rows = batch
    if self.process_count > 1 and not local:
      n = next(iter(batch.values())).shape[0] // self.process_count
      lo = self.process_index * n
      rows = jax.tree.map(lambda x: np.asarray(x[lo:lo + n]), batch)
    if self.mode == 'pmap':
      d = len(self.local_devices)
      return jax.tree.map(lambda x: jnp.reshape(x, (d, x.shape[0] // d, *x.shape[1:])), rows)
    if self.process_count > 1:
      return jax.tree.map(
          lambda x: jax.make_array_from_process_local_data(self.batch_sharding, x), rows)
    return jax.device_put(rows, self.batch_sharding)

  # -- steps ------------------------------------------------------------------

  def _check_options(self, compiler_options: dict | None) -> None:
    if compiler_options and self.mode != 'jit':
      raise ValueError('compiler options are set per jit program; use parallel=jit.')

  def compile_train(self, train_step: Callable, compiler_options: dict | None = None
                    ) -> Callable:
    """``(state, batch, rng) -> (state, metrics)`` with metrics as scalars.

    ``compiler_options``: XLA options for this program (jit only), e.g.
    :data:`cnn_jax.train.cpu_library.NO_YNNPACK`.
    """
    self._check_options(compiler_options)
    if self.mode == 'jit':
      return jax.jit(train_step, donate_argnums=0,
                     in_shardings=(self.replicated, self.train_sharding, self.replicated),
                     out_shardings=(self.replicated, self.replicated),
                     compiler_options=compiler_options)
    # Every process passes the same global device list (pmap's contract), so
    # the pmean spans all hosts; each process still feeds only its local shards.
    step = jax.pmap(train_step, axis_name=PMAP_AXIS, in_axes=(0, 0, None), donate_argnums=0,
                    devices=self.devices)

    def run(state, batch, rng):
      state, metrics = step(state, batch, rng)
      return state, jax.tree.map(first_replica, metrics)  # pmean'd: equal on every device

    return run

  def compile_eval(self, eval_step: Callable, compiler_options: dict | None = None
                   ) -> Callable:
    """``(state, batch) -> sums`` over the whole global batch; options as for train."""
    self._check_options(compiler_options)
    if self.mode == 'jit':
      return jax.jit(eval_step, in_shardings=(self.replicated, self.batch_sharding),
                     out_shardings=self.replicated, compiler_options=compiler_options)
    step = jax.pmap(eval_step, axis_name=PMAP_AXIS, devices=self.devices)
    return lambda state, batch: jax.tree.map(first_replica, step(state, batch))
