"""Checkpointer: bit-identical round trips, cadence, retention, best-by-metric, mismatch errors,
and resuming past a damaged newest step."""

from __future__ import annotations

import gc
import logging
import pathlib
import re
import shutil
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cnn_jax.models import SimpleCNN
from cnn_jax.pytree import leaf_paths
from cnn_jax.train.checkpoint import CheckpointError, Checkpointer, load_tree
from cnn_jax.train.state import TrainState, create_train_state

_INPUT = (2, 8, 8, 3)
# The suffix orbax gives a step folder while it is being written (renamed on commit).
_TMP_SUFFIX = '.orbax-checkpoint-tmp'


def _make_state(widths=(4,), seed: int = 0) -> TrainState:
  """A state with nothing at its init value: non-zero step, momentum and batch stats."""
  model = SimpleCNN(widths=widths, num_classes=3)
  tx = optax.sgd(0.1, momentum=0.9)
  state = create_train_state(model, tx, jax.random.key(seed), _INPUT)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  stats = jax.tree.map(lambda s: s + 0.25, state.batch_stats)
  return state.replace(step=jnp.asarray(7 + seed, jnp.int32),
                       params=optax.apply_updates(state.params, updates),
                       batch_stats=stats, opt_state=opt_state)


@pytest.fixture(scope='module')
def state() -> TrainState:
  return _make_state()


@pytest.fixture(scope='module')
def other_state() -> TrainState:
  return _make_state(seed=1)


def _abstract(state):
  return jax.eval_shape(lambda: state)


def _assert_identical(a, b) -> None:
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for (path, x), y in zip(leaf_paths(a).items(), jax.tree.leaves(b)):
    assert x.dtype == y.dtype and x.shape == y.shape, path
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=path)


def _step_folders(directory: pathlib.Path) -> list[int]:
  return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


# ---- round trips, cadence, retention ----------------------------------------

def test_latest_step_is_none_on_an_empty_directory(tmp_path, state):
  ckpt = Checkpointer(tmp_path / 'ckpt', save_every=10)
  assert ckpt.latest_step() is None and ckpt.best_step() is None
  assert ckpt.best_metrics() is None and ckpt.all_steps() == []
  with pytest.raises(FileNotFoundError, match='no checkpoint in'):
    ckpt.restore(_abstract(state))
  with pytest.raises(FileNotFoundError, match='no best checkpoint'):
    ckpt.restore_best(_abstract(state))
  ckpt.close()


def test_roundtrip_is_bit_identical_with_data_state(tmp_path, state, other_state):
  data_state = {'next_step': 11, 'iterator': {'epoch': 3, 'position': [1, 2, 3]}}
  with Checkpointer(tmp_path, save_every=10) as ckpt:
    assert ckpt.save(10, state, data_state=data_state)
  assert _step_folders(tmp_path) == [10]  # step folders sit directly in the directory
  with Checkpointer(tmp_path, save_every=10) as ckpt:  # a new process would see the same
    assert ckpt.latest_step() == 10
    restored, restored_data = ckpt.restore(_abstract(state))
    assert ckpt.restore_warning is None
    # Concrete arrays (here of a different state) also serve as the target.
    restored2, _ = ckpt.restore(other_state)
  assert isinstance(restored, TrainState)
  assert isinstance(restored.opt_state[0], optax.TraceState)
  assert restored.step.dtype == jnp.int32 and int(restored.step) == 7
  _assert_identical(restored, state)
  _assert_identical(restored2, state)
  assert restored_data == data_state


def test_save_every_cadence_force_and_metrics(tmp_path, state):
  with Checkpointer(tmp_path, save_every=5, async_save=False) as ckpt:
    assert ckpt.should_save(0) and ckpt.should_save(5) and not ckpt.should_save(3)
    assert not ckpt.save(3, state)
    assert ckpt.save(5, state)
    assert ckpt.save(7, state, force=True)
    assert not ckpt.save(7, state, force=True)  # already there: orbax never overwrites
    assert not ckpt.save(6, state, force=True)  # behind the newest step
    assert ckpt.save(8, state, metrics={'accuracy': 0.5})  # an eval step: written anyway
    assert not ckpt.save(8, state)  # the periodic save of the same step is a no-op
    assert ckpt.save(10, state)
    assert ckpt.all_steps() == [7, 8, 10] and ckpt.latest_step() == 10
    restored, data_state = ckpt.restore(_abstract(state), step=7)
  _assert_identical(restored, state)
  assert data_state is None


def test_max_to_keep_keeps_the_last_steps(tmp_path, state):
  with Checkpointer(tmp_path, save_every=1, max_to_keep=2) as ckpt:
    for step in range(1, 5):
      assert ckpt.save(step, state, data_state={'step': step})
    ckpt.wait()
    assert ckpt.all_steps() == [3, 4]
    _, data_state = ckpt.restore(_abstract(state), step=3)
    assert data_state == {'step': 3}
    with pytest.raises(FileNotFoundError, match=r'step 1 .*available steps: \[3, 4\]'):
      ckpt.restore(_abstract(state), step=1)
  assert _step_folders(tmp_path) == [3, 4]


# ---- best by metric -----------------------------------------------------------

def test_best_survives_when_older_than_the_latest_steps(tmp_path, state, other_state):
  with Checkpointer(tmp_path, save_every=10, max_to_keep=2) as ckpt:
    assert ckpt.save(10, state, metrics={'accuracy': 0.5, 'loss': 1.0})
    assert ckpt.save(20, other_state, metrics={'accuracy': jnp.float32(0.875), 'loss': 0.7})
    assert ckpt.save(30, state)
    assert ckpt.save(40, state)
    assert ckpt.save(50, state, metrics={'accuracy': np.float32(0.625), 'loss': 0.9})
    assert ckpt.save(60, state)
    ckpt.wait()
    assert ckpt.all_steps() == [20, 50, 60]  # the newest two and the best
    assert ckpt.best_step() == 20 and ckpt.latest_step() == 60
    with pytest.raises(KeyError, match="metrics\\['accuracy'\\]"):
      ckpt.save(70, state, metrics={'loss': 0.1})
  assert _step_folders(tmp_path) == [20, 50, 60]

  with Checkpointer(tmp_path, save_every=10, max_to_keep=2) as ckpt:  # a restart
    assert ckpt.best_step() == 20
    assert ckpt.best_metrics() == {'accuracy': 0.875, 'loss': 0.7}
    restored, metrics = ckpt.restore_best(_abstract(state))
    _assert_identical(restored, other_state)
    assert metrics == {'accuracy': 0.875, 'loss': 0.7}
    restored, _ = ckpt.restore(_abstract(state))  # resuming takes the newest, not the best
    _assert_identical(restored, state)
    # A better eval step replaces the old best, which then goes as any old step.
    assert ckpt.save(70, other_state, metrics={'accuracy': 0.9375, 'loss': 0.5})
    assert ckpt.save(80, state)
    ckpt.wait()
    assert ckpt.all_steps() == [70, 80] and ckpt.best_step() == 70
    assert ckpt.best_metrics() == {'accuracy': 0.9375, 'loss': 0.5}


def test_best_mode_min_ignores_nan(tmp_path, state, other_state):
  with Checkpointer(tmp_path, save_every=100, max_to_keep=1, best_metric='loss',
                    best_mode='min', async_save=False) as ckpt:
    assert ckpt.save(1, state, metrics={'loss': 2.0})
    assert ckpt.save(2, other_state, metrics={'loss': 1.0})
    assert ckpt.save(3, state, metrics={'loss': 3.0})
    assert ckpt.save(4, state, metrics={'loss': float('nan')})
    assert ckpt.best_step() == 2 and ckpt.all_steps() == [2, 4]
    restored, metrics = ckpt.restore_best(_abstract(state))
  _assert_identical(restored, other_state)
  assert metrics == {'loss': 1.0}
  with Checkpointer(tmp_path / 'nan', save_every=1, best_metric='loss', best_mode='min') as ckpt:
    assert ckpt.save(1, state, metrics={'loss': float('nan')})
    assert ckpt.best_step() is None and ckpt.best_metrics() is None
  with Checkpointer(tmp_path / 'nan', save_every=1, best_metric='loss', best_mode='min') as ckpt:
    assert ckpt.best_step() is None  # NaN read back from disk does not count either
    assert ckpt.save(2, state, metrics={'loss': 4.0})
    assert ckpt.best_step() == 2


def test_keep_best_off_keeps_only_the_latest(tmp_path, state):
  with Checkpointer(tmp_path, save_every=1, max_to_keep=1, keep_best=False,
                    async_save=False) as ckpt:
    assert ckpt.save(1, state, metrics={'accuracy': 1.0})
    assert ckpt.save(2, state, metrics={'loss': 0.5})  # no best_metric needed
    assert ckpt.save(3, state)
    assert ckpt.all_steps() == [3] and ckpt.best_step() is None
    with pytest.raises(FileNotFoundError, match='no best checkpoint'):
      ckpt.restore_best(_abstract(state))


def test_changing_best_metric_starts_a_new_best(tmp_path, state, other_state):
  with Checkpointer(tmp_path, save_every=1) as ckpt:
    assert ckpt.save(1, state, metrics={'accuracy': 0.9})
  with Checkpointer(tmp_path, save_every=1, best_metric='loss', best_mode='min') as ckpt:
    assert ckpt.best_step() is None and ckpt.best_metrics() is None
    assert ckpt.save(2, other_state, metrics={'loss': 5.0})
    ckpt.wait()
    assert ckpt.best_step() == 2 and ckpt.best_metrics() == {'loss': 5.0}
    restored, metrics = ckpt.restore_best(_abstract(state))
  assert metrics == {'loss': 5.0}
  _assert_identical(restored, other_state)


def test_load_tree_reads_latest_or_best_without_a_target(tmp_path, state, other_state):
  with Checkpointer(tmp_path, save_every=10, async_save=False) as ckpt:
    assert ckpt.save(10, other_state, metrics={'accuracy': 0.75})
    assert ckpt.save(20, state, metrics={'accuracy': 0.5})
  stray = tmp_path / f'30{_TMP_SUFFIX}'  # a save in progress of a run still training
  stray.mkdir()
  step, tree = load_tree(tmp_path)
  assert step == 20 and isinstance(tree, dict)
  np.testing.assert_array_equal(tree['params']['fc']['kernel'], state.params['fc']['kernel'])
  step, tree = load_tree(tmp_path, which='best')
  assert step == 10
  np.testing.assert_array_equal(tree['params']['fc']['kernel'],
                                other_state.params['fc']['kernel'])
  assert stray.exists()  # read-only: another run's folder is left as it is
  with Checkpointer(tmp_path / 'plain', save_every=1, async_save=False) as ckpt:
    ckpt.save(1, state)
  with pytest.raises(FileNotFoundError, match="no best checkpoint in .* saved with eval "
                                              "'accuracy'"):
    load_tree(tmp_path / 'plain', which='best')
  with pytest.raises(ValueError, match="which must be 'latest' or 'best'"):
    load_tree(tmp_path, which='newest')


# ---- restoring onto another config or device layout --------------------------

def test_mismatched_config_names_the_leaf_and_both_shapes(tmp_path, state):
  with Checkpointer(tmp_path, save_every=200) as ckpt:
    ckpt.save(200, state)
  wider = _abstract(_make_state(widths=(8,)))
  deeper = _abstract(_make_state(widths=(4, 4)))
  with Checkpointer(tmp_path, save_every=200) as ckpt:
    with pytest.raises(ValueError) as err:
      ckpt.restore(wider)
    assert not isinstance(err.value, CheckpointError)
    message = str(err.value)
    assert message == (
        f'checkpoint at {tmp_path} step 200 does not match this config: '
        'params/conv1/bn/bias has shape (4,) in the checkpoint but (8,) here; use a new '
        '--workdir or the config the checkpoint was made with.')
    with pytest.raises(ValueError, match=re.escape('params/conv2/bn/bias (4,) is missing from '
                                                   'the checkpoint')):
      ckpt.restore(deeper)
    bf16 = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.bfloat16)
                        if x.dtype == jnp.float32 else x, _abstract(state))
    with pytest.raises(ValueError, match='has dtype float32 in the checkpoint but bfloat16 here'):
      ckpt.restore(bf16)


def test_restore_onto_a_sharded_abstract_state(tmp_path, state):
  mesh = Mesh(np.array(jax.devices()), ('data',))
  replicated = NamedSharding(mesh, P())
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
                          state)
  with Checkpointer(tmp_path, save_every=1) as ckpt:
    ckpt.save(1, state)  # saved from a single device, restored onto all of them
    restored, _ = ckpt.restore(abstract)
  assert len(jax.devices()) == 8
  for x in jax.tree.leaves(restored):
    assert x.sharding.is_equivalent_to(replicated, x.ndim)
  _assert_identical(restored, state)


def test_host_state_restores_onto_the_first_device_without_shardings(tmp_path, state):
  host = jax.device_get(state)  # numpy leaves, as a pmap loop's host copy would be
  with Checkpointer(tmp_path, save_every=1, async_save=False) as ckpt:
    ckpt.save(1, host)
    restored, _ = ckpt.restore(_abstract(state))  # eval_shape: no shardings
  for x in jax.tree.leaves(restored):
    assert isinstance(x, jax.Array) and x.devices() == {jax.local_devices()[0]}
  _assert_identical(restored, state)


# ---- crash safety ------------------------------------------------------------

def test_async_save_survives_donation_then_wait_then_restore(tmp_path, state):
  # The training loop donates the state right after saving it.
  mine = jax.tree.map(jnp.copy, state)
  expected = jax.device_get(mine)
  with Checkpointer(tmp_path, save_every=1, async_save=True) as ckpt:
    assert ckpt.save(1, mine, data_state={'epoch': 0}, metrics={'accuracy': 0.25})
    for x in jax.tree.leaves(mine):
      x.delete()
    assert ckpt.best_step() == 1  # known before the async save is committed
    ckpt.wait()
    assert ckpt.latest_step() == 1
    restored, data_state = ckpt.restore(_abstract(state))
  _assert_identical(restored, expected)
  assert data_state == {'epoch': 0}


def test_an_unfinished_save_is_ignored_and_cleaned_up(tmp_path, state, other_state):
  # What a process killed mid-save leaves behind: a step folder under its
  # temporary name, never renamed.
  with Checkpointer(tmp_path, save_every=10, async_save=False) as ckpt:
    ckpt.save(10, state)
  for step in (15, 20):
    stray = tmp_path / f'{step}{_TMP_SUFFIX}'
    (stray / 'state').mkdir(parents=True)
    (stray / 'state' / 'garbage').write_bytes(b'\0' * 16)
  with Checkpointer(tmp_path, save_every=10, async_save=False) as ckpt:
    assert ckpt.latest_step() == 10
    restored, _ = ckpt.restore(_abstract(state))
    _assert_identical(restored, state)
    assert ckpt.save(20, other_state)  # the same step, redone after the restart
    assert ckpt.all_steps() == [10, 20]
    restored, _ = ckpt.restore(_abstract(state))
  _assert_identical(restored, other_state)
  assert not any(_TMP_SUFFIX in p.name for p in tmp_path.iterdir())


def test_bad_arguments_fail_with_a_clear_message(tmp_path, state):
  with pytest.raises(ValueError, match='save_every must be a positive'):
    Checkpointer(tmp_path, save_every=0)
  with pytest.raises(ValueError, match="best_mode must be 'max' or 'min'"):
    Checkpointer(tmp_path, save_every=1, best_mode='maximum')
  with Checkpointer(tmp_path, save_every=1) as ckpt:
    with pytest.raises(TypeError, match='data_state must be JSON-serialisable'):
      ckpt.save(1, state, data_state={'rng': np.zeros(2)})
    with pytest.raises(TypeError, match=r"metrics\['accuracy'\] must be a scalar"):
      ckpt.save(1, state, metrics={'accuracy': np.zeros(2)})
    assert ckpt.latest_step() is None


# ---- a damaged newest step ---------------------------------------------------

_STEPS = (10, 20, 30)


@pytest.fixture
def three_steps(tmp_path) -> tuple[pathlib.Path, dict[int, TrainState]]:
  """Steps 10, 20, 30 of different states (real arrays, committed), each with data_state."""
  states = {step: _make_state(seed=i) for i, step in enumerate(_STEPS)}
  with Checkpointer(tmp_path, save_every=10, async_save=False) as ckpt:
    for step, s in states.items():
      assert ckpt.save(step, s, data_state={'step': step},
                       metrics={'accuracy': step / 100} if step == 20 else None)
  return tmp_path, states


def _array_files(step_dir: pathlib.Path) -> list[pathlib.Path]:
  """The files of a step's ``state`` item that hold array data (ocdbt data files)."""
  files = [p for p in (step_dir / 'state').rglob('*') if p.is_file() and p.parent.name == 'd']
  assert files, sorted(p.relative_to(step_dir) for p in step_dir.rglob('*'))
  return files


def _truncate(step_dir: pathlib.Path) -> None:
  for p in _array_files(step_dir):
    data = p.read_bytes()
    p.write_bytes(data[:len(data) // 2])


def _overwrite(step_dir: pathlib.Path) -> None:
  rng = np.random.default_rng(0)
  for p in _array_files(step_dir):
    p.write_bytes(rng.bytes(p.stat().st_size))


def _remove_metadata(step_dir: pathlib.Path) -> None:
  (step_dir / 'state' / '_METADATA').unlink()


def _garble_metadata(step_dir: pathlib.Path) -> None:
  (step_dir / 'state' / '_METADATA').write_text('{"tree_metadata": ')


def _remove_state(step_dir: pathlib.Path) -> None:
  shutil.rmtree(step_dir / 'state')


def _remove_data(step_dir: pathlib.Path) -> None:
  shutil.rmtree(step_dir / 'data')


@pytest.fixture
def console(capfd, caplog, monkeypatch):
  """Checks that nothing of orbax's, tensorstore's or asyncio's failure reports got out.

  Yields a function to call at the end of the test. Exceptions nobody could
  catch (asyncio callbacks into a closed event loop) are recorded through
  ``sys.unraisablehook``, which pytest would otherwise turn into a warning.
  """
  unraisable = []
  monkeypatch.setattr(sys, 'unraisablehook', unraisable.append)
  caplog.set_level(logging.INFO)
  capfd.readouterr()

  def check() -> None:
    time.sleep(0.2)  # reads orbax abandoned may still call back
    gc.collect(1)  # they are young; a full collection takes seconds late in the suite
    err = capfd.readouterr().err
    assert 'Traceback' not in err and 'tensorstore' not in err and 'ERROR' not in err, err
    loud = [f'{r.name} {r.levelname}: {r.getMessage()[:200]}' for r in caplog.records
            if r.levelno >= logging.WARNING and r.name in ('absl', 'asyncio')]
    assert not loud, loud
    assert not unraisable, [(u.exc_type, u.exc_value) for u in unraisable]

  return check


@pytest.mark.parametrize('damage', [_truncate, _overwrite, _remove_metadata, _garble_metadata,
                                    _remove_state, _remove_data])
def test_an_unreadable_newest_step_falls_back_to_the_previous(three_steps, damage, console):
  directory, states = three_steps
  damage(directory / '30')
  with Checkpointer(directory, save_every=10, async_save=False) as ckpt:
    assert ckpt.latest_step() == 30 and ckpt.all_steps() == list(_STEPS)
    assert ckpt.best_step() == 20
    restored, data_state = ckpt.restore(_abstract(states[30]))
    warning = ckpt.restore_warning
    # The damaged step is set aside (kept, never deleted), so saving can go on past it.
    assert ckpt.all_steps() == [10, 20] and ckpt.save(30, states[20])
  _assert_identical(restored, states[20])
  assert data_state == {'step': 20}
  assert re.fullmatch(rf'checkpoint step 30 in {re.escape(str(directory))} is unreadable '
                      r'\([^\n]+\); resumed from step 20 \(the damaged step moved to '
                      rf'{re.escape(str(directory))}/unreadable-[0-9-]+\)', warning), warning
  assert len(list(directory.glob('unreadable-*/30'))) == 1
  assert 'tensorstore_spec' not in warning and len(warning) < 500, warning
  console()


def test_an_unreadable_step_asked_for_by_number_is_an_error(three_steps):
  directory, states = three_steps
  _truncate(directory / '30')
  with Checkpointer(directory, save_every=10, async_save=False) as ckpt:
    with pytest.raises(CheckpointError, match=r'^checkpoint step 30 in .* is unreadable'):
      ckpt.restore(_abstract(states[30]), step=30)
    assert ckpt.all_steps() == list(_STEPS)  # nothing is moved for an explicit request


def test_skipped_steps_are_all_named_and_training_goes_on(three_steps):
  directory, states = three_steps
  _truncate(directory / '30')
  _overwrite(directory / '20')
  with Checkpointer(directory, save_every=10, async_save=False) as ckpt:
    restored, _ = ckpt.restore(_abstract(states[30]))
    assert ckpt.restore_warning.startswith(f'checkpoint step 30 in {directory} is unreadable (')
    assert '; step 20 too); resumed from step 10 (the damaged steps moved to' in (
        ckpt.restore_warning)
    _assert_identical(restored, states[10])
    # A resumed run saves past the damaged steps; the newest then reads again.
    assert ckpt.save(40, states[10])
    restored, _ = ckpt.restore(_abstract(states[30]))
    assert ckpt.restore_warning is None
  _assert_identical(restored, states[10])


def test_no_readable_step_is_one_line_error(three_steps, console):
  directory, states = three_steps
  for step in _STEPS:
    (_truncate if step != 20 else _overwrite)(directory / str(step))
  with Checkpointer(directory, save_every=10, async_save=False) as ckpt:
    assert ckpt.latest_step() == 30
    with pytest.raises(CheckpointError) as err:
      ckpt.restore(_abstract(states[30]))
  message = str(err.value)
  assert isinstance(err.value, ValueError) and '\n' not in message
  assert message.startswith(f'no readable checkpoint in {directory} (newest step 30: ')
  assert message.endswith('); delete the folder or use a new --workdir')
  assert 'tensorstore_spec' not in message and len(message) < 500, message
  console()


def test_a_mismatch_is_not_taken_for_damage(three_steps):
  directory, _ = three_steps
  wider = _abstract(_make_state(widths=(8,)))
  with Checkpointer(directory, save_every=10, async_save=False) as ckpt:
    with pytest.raises(ValueError, match='step 30 does not match this config') as err:
      ckpt.restore(wider)
    assert not isinstance(err.value, CheckpointError)
  # Behind a damaged newest step the first readable one is checked the same way.
  _truncate(directory / '30')
  with Checkpointer(directory, save_every=10, async_save=False) as ckpt:
    with pytest.raises(ValueError, match='step 20 does not match this config') as err:
      ckpt.restore(wider)
    assert not isinstance(err.value, CheckpointError)


def test_garbled_metrics_do_not_stop_the_directory_from_opening(three_steps):
  directory, states = three_steps
  (directory / '20' / 'metrics' / 'metrics').write_text('{"accuracy": ')
  with Checkpointer(directory, save_every=10, async_save=False) as ckpt:
    assert ckpt.all_steps() == list(_STEPS) and ckpt.latest_step() == 30
    assert ckpt.best_step() is None  # its metrics are lost, the step is a plain one now
    restored, _ = ckpt.restore(_abstract(states[30]))
    assert ckpt.restore_warning is None
  _assert_identical(restored, states[30])
