"""Batches for the training loop: from a dataset on the device, or streamed.

For datasets that fit (CIFAR, MNIST, the synthetic set) the whole split is
copied to the device once as uint8; every batch is then a gather by indices
on the device, so the host never touches pixels again. The order is a pure
function of ``(seed, epoch)``: a resumed run sees exactly the batches an
uninterrupted one would.

Datasets that do not fit stream through grain (:class:`StreamTrainData`,
``config.data.streaming``) with the same ``batch(step)`` interface.

A batch is a dict: ``image`` (B, H, W, C) uint8 (or the dataset's other
``input_field``: ``tokens`` (B, L) int32 for text), ``label`` (B,) int32, and
one field per array of the dataset's ``extras`` (boxes, label maps, ...), so a
task's annotations travel with its images. Every field is gathered, sharded
and padded along its first axis only, whatever its rank and dtype.

Evaluation never drops examples: the last batch is padded with copies of
row 0 and a ``mask`` marks the real rows, so summed metrics are exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data.dataset import ArrayDataset


@jax.jit
def _gather(arrays: dict[str, jax.Array], idx: jax.Array) -> dict:
  return {k: jnp.take(v, idx, axis=0) for k, v in arrays.items()}


def batch_fields(dataset: ArrayDataset) -> dict[str, np.ndarray]:
  """The dataset as batch fields: its input (``image`` or ``tokens``), label and every extra."""
  return {dataset.input_field: dataset.images, 'label': dataset.labels.astype(np.int32),
          **dataset.extras}


def epoch_permutation(seed: int, epoch: int, n: int) -> np.ndarray:
  """The example order of ``epoch``: (n,) int32, deterministic in (seed, epoch)."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, 0x5EED]))
  return rng.permutation(n).astype(np.int32)


class InMemoryTrainData:
  """Shuffled, fixed-size training batches gathered on the device.

  Args:
    dataset: the training split.
    batch_size: global batch size; the last partial batch of an epoch is
      dropped (each epoch still sees a fresh permutation).
    seed: data-order seed.
    sharding: optional sharding for the batch (data parallel); the dataset
      itself is replicated.
    sampler: optional ``(seed, step) -> (batch_size,) indices`` replacing the
      epoch shuffle (e.g. P identities x K images); it must be a pure function
      of its arguments for resume to be exact.
    num_seeds: K > 1 gives every field a leading seed axis, (K, batch_size, ...):
      row k is the batch that seed ``seed + k`` alone would draw (seeds trained
      together); the dataset is on the device once.
  """

  process_local = False  # global batches: every process holds the whole set

  def __init__(self, dataset: ArrayDataset, batch_size: int, seed: int, sharding=None,
               sampler: Callable[[int, int], np.ndarray] | None = None, num_seeds: int = 1):
    if len(dataset) < batch_size:
      raise ValueError(f'the training set has {len(dataset)} examples, fewer than one batch of '
                       f'{batch_size}; lower batch_size.')
    self.num_examples = len(dataset)
    self.batch_size = batch_size
    self.seed = seed
    self.num_seeds = num_seeds
    self.steps_per_epoch = self.num_examples // batch_size
    self.sharding = sharding
    self.sampler = sampler
    self._arrays = jax.device_put(batch_fields(dataset))
    self._epoch, self._perms = None, None

  def _indices(self, seed: int, step: int) -> np.ndarray:
    if self.sampler is not None:
      idx = np.asarray(self.sampler(seed, step), np.int32)
      if idx.shape != (self.batch_size,):
        raise ValueError(f'the sampler gave indices of shape {idx.shape} for a batch of '
                         f'{self.batch_size}.')
      return idx
    epoch, i = divmod(step, self.steps_per_epoch)
    if epoch != self._epoch:
      self._epoch = epoch
      self._perms = {s: epoch_permutation(s, epoch, self.num_examples)
                     for s in range(self.seed, self.seed + self.num_seeds)}
    return self._perms[seed][i * self.batch_size:(i + 1) * self.batch_size]

  def batch(self, step: int) -> dict:
    """The batch for global ``step`` (random access, so resume is exact)."""
    if self.num_seeds == 1:
      idx = self._indices(self.seed, step)
    else:
      idx = np.stack([self._indices(s, step)
                      for s in range(self.seed, self.seed + self.num_seeds)])
    batch = _gather(self._arrays, jnp.asarray(idx))
    return batch if self.sharding is None else jax.device_put(batch, self.sharding)


def eval_batches(dataset: ArrayDataset, batch_size: int, sharding=None,
                 device_arrays: dict[str, jax.Array] | None = None) -> Iterator[dict]:
  """Every example once, in order; the last batch padded, with a ``mask``.

  Yields dicts with image (B, H, W, C) uint8 (or the dataset's other input
  field), label (B,) int32, the extras, and mask (B,) bool. ``device_arrays``: ``batch_fields(dataset)`` already on
  the device (kept across evaluations).
  """
  n = len(dataset)
  arrays = device_arrays if device_arrays is not None else jax.device_put(
      batch_fields(dataset))
  for start in range(0, n, batch_size):
    idx = np.arange(start, start + batch_size)
    mask = idx < n
    batch = _gather(arrays, jnp.asarray(np.where(mask, idx, 0).astype(np.int32)))
    batch['mask'] = jnp.asarray(mask)
    yield batch if sharding is None else jax.device_put(batch, sharding)


class _EpochBatches:
  """The training batches of one epoch, however many files a pass skips.

  Pass 0 is the epoch's shuffle; if it runs short (a source with
  ``skip_corrupt`` drops undecodable files), pass 1, 2, ... of the same epoch
  (other shuffles) top it up, so every epoch has ``steps_per_epoch`` batches.
  Deterministic, and ``get_state``/``set_state`` cover the pass too.
  """

  def __init__(self, make_pass):
    self._make, self._pass = make_pass, 0
    self._it, self._yielded = make_pass(0), 0

  def __next__(self) -> dict:
    while True:
      try:
        batch = next(self._it)
        self._yielded += 1
        return batch
      except StopIteration:
        if self._yielded == 0:
          raise ValueError('a whole pass over the training data gave no batch: every file '
                           'was skipped as corrupt; check the data folder.') from None
        self._pass, self._yielded = self._pass + 1, 0
        self._it = self._make(self._pass)

  def get_state(self) -> dict:
    return {'pass': self._pass, 'yielded': self._yielded, 'iterator': self._it.get_state()}

  def set_state(self, state: dict) -> None:
    self._pass, self._yielded = int(state['pass']), int(state['yielded'])
    self._it = self._make(self._pass)
    self._it.set_state(state['iterator'])


class StreamTrainData:
  """Training batches decoded on the host by grain threads, one epoch at a time.

  Args:
    source: a random-access source of ``cnn_jax.data.stream`` (image folder
      or tfds) yielding ``{'image', 'label'}``.
    batch_size, seed: as for :class:`InMemoryTrainData`; epoch ``e`` is shuffled
      with ``(seed, e)``, so the order does not depend on where a run started.
    num_threads: grain decode threads.
    process_index, process_count: with several processes each one decodes
      and returns only its rows of every global batch (``process_local``);
      ``DataParallel.put_batch(..., local=True)`` assembles the global array.

  An epoch is ``len(source) // batch_size`` steps even when corrupt files are
  skipped (see :class:`_EpochBatches`).
  """

  def __init__(self, source, batch_size: int, seed: int, sharding=None,
               num_threads: int = 8, process_index: int = 0, process_count: int = 1):
    from cnn_jax.data import stream  # grain is imported only for streaming runs
    self._stream = stream
    self.source = source
    self.batch_size, self.seed, self.sharding = batch_size, seed, sharding
    self.num_threads = num_threads
    self.shard = (process_index, process_count)
    self.steps_per_epoch = len(source) // batch_size
    if self.steps_per_epoch == 0:
      raise ValueError(f'the training set has {len(source)} examples, fewer than one batch of '
                       f'{batch_size}; lower batch_size.')
    self._iter, self._next_step = None, None

  @property
  def process_local(self) -> bool:
    """Whether batches hold only this process's rows (``DataParallel.put_batch(local=)``)."""
    return self.shard[1] > 1

  def _epoch(self, epoch: int) -> _EpochBatches:
    return _EpochBatches(lambda repeat: self._stream.make_stream(
        self.source, batch_size=self.batch_size, seed=self.seed, epoch=epoch,
        num_threads=self.num_threads, repeat=repeat, shard=self.shard))

  def batch(self, step: int) -> dict:
    """The batch for ``step``; steps are read in order (a jump restarts its epoch)."""
    epoch, i = divmod(step, self.steps_per_epoch)
    if self._next_step != step or i == 0:
      self._iter = self._epoch(epoch)
      for _ in range(i):  # fast-forward inside the epoch (decodes, so resume is exact)
        next(self._iter)
    self._next_step = step + 1
    batch = {k: jnp.asarray(v) for k, v in next(self._iter).items()}
    return batch if self.sharding is None else jax.device_put(batch, self.sharding)

  def state(self) -> dict:
    """Where the stream is (for checkpoints): the next step and the iterator state."""
    if self._iter is None:
      return {'next_step': None}
    return {'next_step': self._next_step, 'iterator': self._iter.get_state()}

  def restore(self, state: dict) -> None:
    """Continues exactly where :meth:`state` was taken, without re-decoding the epoch."""
    if state.get('next_step') is None:
      return
    step = state['next_step']
    epoch, i = divmod(step, self.steps_per_epoch)
    if i == 0:
      return  # a fresh epoch starts from scratch anyway
    self._iter = self._epoch(epoch)
    self._iter.set_state(state['iterator'])
    self._next_step = step


def stream_eval_batches(source, batch_size: int, sharding=None,
                        num_threads: int = 8) -> Iterator[dict]:
  """Every example of ``source`` once, in order, the last batch padded and masked."""
  from cnn_jax.data import stream
  for batch in stream.make_stream(source, batch_size=batch_size, seed=0, shuffle=False,
                                  drop_remainder=False, num_threads=num_threads):
    batch = {k: jnp.asarray(v) for k, v in batch.items()}
    yield batch if sharding is None else jax.device_put(batch, sharding)
