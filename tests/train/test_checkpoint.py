"""Checkpointer: bit-identical round trips, cadence, retention, best-by-metric, mismatch errors."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from cnn_jax.models import SimpleCNN
from cnn_jax.train.checkpoint import Checkpointer
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
  for path, x, y in zip(*(
      [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(a)[0]],
      jax.tree.leaves(a), jax.tree.leaves(b))):
    assert x.dtype == y.dtype and x.shape == y.shape, path
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=path)


def test_latest_step_is_none_on_an_empty_directory(tmp_path, state):
  ckpt = Checkpointer(tmp_path / 'ckpt', save_every=10)
  assert ckpt.latest_step() is None and ckpt.best_step() is None and ckpt.best_value is None
  with pytest.raises(FileNotFoundError, match='no checkpoint in'):
    ckpt.restore(_abstract(state))
  with pytest.raises(FileNotFoundError, match='no best checkpoint'):
    ckpt.restore_best(_abstract(state))
  ckpt.close()


def test_roundtrip_is_bit_identical_with_data_state(tmp_path, state, other_state):
  data_state = {'next_step': 11, 'iterator': {'epoch': 3, 'position': [1, 2, 3]}}
  with Checkpointer(tmp_path, save_every=10) as ckpt:
    assert ckpt.save(10, state, data_state=data_state)
  with Checkpointer(tmp_path, save_every=10) as ckpt:  # a new process would see the same
    assert ckpt.latest_step() == 10
    restored, restored_data = ckpt.restore(_abstract(state))
    # Concrete arrays (here of a different state) also serve as the target.
    restored2, _ = ckpt.restore(other_state)
  assert isinstance(restored, TrainState)
  assert isinstance(restored.opt_state[0], optax.TraceState)
  assert restored.step.dtype == jnp.int32 and int(restored.step) == 7
  _assert_identical(restored, state)
  _assert_identical(restored2, state)
  assert restored_data == data_state


def test_save_every_cadence_and_force(tmp_path, state):
  with Checkpointer(tmp_path, save_every=5, async_save=False) as ckpt:
    assert ckpt.should_save(0) and ckpt.should_save(5) and not ckpt.should_save(3)
    assert not ckpt.save(3, state)
    assert ckpt.save(5, state)
    assert ckpt.save(7, state, force=True)
    assert not ckpt.save(7, state, force=True)  # already there: orbax never overwrites
    assert not ckpt.save(6, state, force=True)  # behind the newest step
    assert ckpt.save(10, state)
    assert ckpt.all_steps() == [5, 7, 10] and ckpt.latest_step() == 10
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
  assert sorted(p.name for p in (tmp_path / 'latest').iterdir() if p.name.isdigit()) == ['3', '4']


def test_best_checkpoint_follows_the_metric_and_survives_a_restart(tmp_path, state, other_state):
  with Checkpointer(tmp_path, save_every=100) as ckpt:
    assert ckpt.save_best(10, state, {'accuracy': 0.5, 'loss': 1.0})
    assert not ckpt.save_best(20, other_state, {'accuracy': np.float32(0.4), 'loss': 0.9})
    assert ckpt.save_best(30, state, {'accuracy': jnp.float32(0.75), 'loss': 0.8})
    with pytest.raises(KeyError, match="metrics\\['accuracy'\\]"):
      ckpt.save_best(40, state, {'loss': 0.1})
  assert [p.name for p in (tmp_path / 'best').iterdir() if p.name.isdigit()] == ['30']

  with Checkpointer(tmp_path, save_every=100) as ckpt:
    assert ckpt.best_step() == 30 and ckpt.best_value == 0.75
    assert not ckpt.save_best(40, other_state, {'accuracy': 0.6, 'loss': 0.5})
    assert ckpt.save_best(50, other_state, {'accuracy': 0.875, 'loss': 0.7})
    restored, metrics = ckpt.restore_best(_abstract(state))
    assert ckpt.latest_step() is None  # best saves do not count as periodic ones
  assert metrics == {'accuracy': 0.875, 'loss': 0.7}
  _assert_identical(restored, other_state)


def test_best_mode_min_and_keep_best_off(tmp_path, state):
  with Checkpointer(tmp_path / 'a', save_every=1, best_metric='loss', best_mode='min',
                    async_save=False) as ckpt:
    assert ckpt.save_best(1, state, {'loss': 2.0})
    assert not ckpt.save_best(2, state, {'loss': 3.0})
    assert not ckpt.save_best(3, state, {'loss': float('nan')})
    assert ckpt.save_best(4, state, {'loss': 1.0})
    assert ckpt.best_step() == 4
  with Checkpointer(tmp_path / 'b', save_every=1, keep_best=False) as ckpt:
    assert not ckpt.save_best(1, state, {'accuracy': 1.0})
    assert not (tmp_path / 'b' / 'best').exists()


def test_mismatched_config_names_the_leaf_and_both_shapes(tmp_path, state):
  with Checkpointer(tmp_path, save_every=200) as ckpt:
    ckpt.save(200, state)
  wider = _abstract(_make_state(widths=(8,)))
  deeper = _abstract(_make_state(widths=(4, 4)))
  with Checkpointer(tmp_path, save_every=200) as ckpt:
    with pytest.raises(ValueError) as err:
      ckpt.restore(wider)
    message = str(err.value)
    assert message == (
        f'checkpoint at {tmp_path / "latest"} step 200 does not match this config: '
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


def test_async_save_survives_donation_then_wait_then_restore(tmp_path, state):
  # The training loop donates the state right after saving it.
  mine = jax.tree.map(jnp.copy, state)
  expected = jax.device_get(mine)
  with Checkpointer(tmp_path, save_every=1, async_save=True) as ckpt:
    assert ckpt.save(1, mine, data_state={'epoch': 0})
    for x in jax.tree.leaves(mine):
      x.delete()
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
    stray = tmp_path / 'latest' / f'{step}{_TMP_SUFFIX}'
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
  assert not any(_TMP_SUFFIX in p.name for p in (tmp_path / 'latest').iterdir())


def test_bad_arguments_fail_with_a_clear_message(tmp_path, state):
  with pytest.raises(ValueError, match='save_every must be a positive'):
    Checkpointer(tmp_path, save_every=0)
  with pytest.raises(ValueError, match="best_mode must be 'max' or 'min'"):
    Checkpointer(tmp_path, save_every=1, best_mode='maximum')
  with Checkpointer(tmp_path, save_every=1) as ckpt:
    with pytest.raises(TypeError, match='data_state must be JSON-serialisable'):
      ckpt.save(1, state, data_state={'rng': np.zeros(2)})
    assert ckpt.latest_step() is None


def test_changing_best_metric_starts_a_new_best(tmp_path, state, other_state):
  with Checkpointer(tmp_path, save_every=1) as ckpt:
    assert ckpt.save_best(1, state, {'accuracy': 0.9})
  with Checkpointer(tmp_path, save_every=1, best_metric='loss', best_mode='min') as ckpt:
    assert ckpt.best_value is None
    assert ckpt.save_best(2, other_state, {'loss': 5.0})
    ckpt.wait()
    assert ckpt.best_step() == 2 and ckpt.best_value == 5.0
    restored, metrics = ckpt.restore_best(_abstract(state))
  assert metrics == {'loss': 5.0}
  _assert_identical(restored, other_state)
