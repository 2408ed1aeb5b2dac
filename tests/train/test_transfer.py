"""Transfer learning: freezing (params, BN statistics, eval mode), loading, few-shot data."""

import pathlib
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from cnn_jax.data.dataset import ArrayDataset, few_shot, select_classes
from cnn_jax.models import get_model
from cnn_jax.tasks import Classification
from cnn_jax.train import loop, transfer
from cnn_jax.train.config import default_config
from cnn_jax.train.state import create_train_state
from cnn_jax.train.step import make_train_step

TASK = Classification(default_config())

NAMES = ['stem', 'stage1_0', 'stage1_1', 'stage10_0', 'stage2_0', 'fc']


def test_patterns_match_whole_module_names():
  frozen = transfer.frozen_predicate(('stem', 'stage1'))
  assert [n for n in NAMES if frozen(n)] == ['stem', 'stage1_0', 'stage1_1']
  everything = transfer.frozen_predicate(('*',), exclude=('fc',))
  assert [n for n in NAMES if not everything(n)] == ['fc']
  assert transfer.frozen_predicate(()) is None
  params = {n: {'w': 0} for n in NAMES}
  transfer.check_patterns(params, ('stage2', '*'), 'transfer.freeze')
  with pytest.raises(ValueError, match=r"transfer.freeze pattern 'stage3' matches no module"):
    transfer.check_patterns(params, ('stage3',), 'transfer.freeze')


def _model_and_state(tx):
  model = get_model('cifar_resnet', depth=8, widths=(4, 8, 8), num_classes=3)
  state = create_train_state(model, tx, jax.random.key(0), (1, 16, 16, 3))
  return model, state


def _batch(seed=0, n=8):
  rng = np.random.default_rng(seed)
  return {'image': jnp.asarray(rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)),
          'label': jnp.asarray(rng.integers(0, 3, n, dtype=np.int32))}


def test_frozen_params_and_batch_stats_stay_bit_identical():
  is_frozen = transfer.frozen_predicate(('stem', 'stage1'))
  tx = transfer.freeze_optimizer(optax.sgd(0.1, momentum=0.9), is_frozen)
  model, state0 = _model_and_state(tx)
  step = jax.jit(make_train_step(model, TASK, tx, optax.constant_schedule(0.1), mean=(0.5,) * 3,
                                 std=(0.25,) * 3, is_frozen=is_frozen))
  state = state0
  for i in range(3):
    state, metrics = step(state, _batch(i), jax.random.key(i))
  assert np.isfinite(float(metrics['loss']))
  for name in ('stem', 'stage1_0'):
    chex.assert_trees_all_equal(state.params[name], state0.params[name])
    chex.assert_trees_all_equal(state.batch_stats[name], state0.batch_stats[name])
  for name in ('stage2_0', 'stage3_0', 'fc'):
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))),
                                         state.params[name], state0.params[name]))
    assert min(diffs) > 0, name
  for name in ('stage2_0', 'stage3_0'):
    before = jax.tree.leaves(state0.batch_stats[name])
    after = jax.tree.leaves(state.batch_stats[name])
    assert any(not np.array_equal(a, b) for a, b in zip(before, after)), name
  # set_to_zero keeps no optimizer state (momentum) for the frozen leaves.
  n_state = sum(x.size for x in jax.tree.leaves(state.opt_state))
  n_trainable = sum(x.size for n, sub in state.params.items() if not is_frozen(n)
                    for x in jax.tree.leaves(sub))
  assert n_state == n_trainable


def test_frozen_modules_run_in_eval_mode():
  model, state = _model_and_state(optax.sgd(0.1))
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  x = jax.random.normal(jax.random.key(1), (4, 16, 16, 3))
  with transfer.frozen_in_eval_mode(lambda name: True):
    y_train, _ = model.apply(variables, x, train=True, mutable=['batch_stats'])
  y_eval = model.apply(variables, x, train=False)
  chex.assert_trees_all_close(y_train, y_eval, atol=1e-6)
  y_batch_stats, _ = model.apply(variables, x, train=True, mutable=['batch_stats'])
  assert float(jnp.max(jnp.abs(y_batch_stats - y_eval))) > 1e-3


def _count_convs(is_frozen):
  tx = transfer.freeze_optimizer(optax.sgd(0.1), is_frozen)
  model, state = _model_and_state(tx)
  step = make_train_step(model, TASK, tx, optax.constant_schedule(0.1), mean=(0.5,) * 3,
                         std=(0.25,) * 3, is_frozen=is_frozen)
  _, metrics = jax.jit(step)(state, _batch(), jax.random.key(0))  # one compile, not per op
  assert float(metrics['grad_norm']) > 0
  return str(jax.make_jaxpr(step)(state, _batch(), jax.random.key(0))).count(
      'conv_general_dilated')


def test_feature_extraction_has_no_backbone_backward_pass():
  # ResNet-8 with option A shortcuts has 7 convs: the stem and 2 per block.
  assert _count_convs(transfer.frozen_predicate(('*',), exclude=('fc',))) == 7
  # Trained end to end: 7 forward, 7 weight gradients, 6 input gradients.
  assert _count_convs(None) == 20


def _tiny(classes, steps=30):
  c = default_config()
  c.model.name = 'cifar_resnet'
  c.model.kwargs.depth = 8
  c.model.kwargs.widths = (4, 8, 8)
  c.data.num_train, c.data.num_eval, c.data.image_size = 400, 200, 16
  c.data.classes = classes
  c.batch_size, c.eval_batch_size, c.num_steps, c.log_every = 32, 100, steps, 10
  c.keep_best = False
  c.num_devices = 1
  return c


@pytest.fixture(scope='module')
def source_run(run_once):
  """``(workdir, final variables)`` of one source run, trained once for all workers.

  The final state is written beside the run (msgpack) so that every worker
  compares the checkpoint against what training really ended with.
  """
  def train(folder):
    result = loop.train_and_evaluate(_tiny((0, 1, 2, 3)), folder / 'run', quiet=True)
    state = {'params': result['state'].params, 'batch_stats': result['state'].batch_stats}
    (folder / 'final.msgpack').write_bytes(serialization.msgpack_serialize(
        jax.device_get(state)))
    return {'workdir': str(folder / 'run'), 'final': str(folder / 'final.msgpack')}

  shared = run_once('transfer_source', train)
  final = serialization.msgpack_restore(pathlib.Path(shared['final']).read_bytes())
  return pathlib.Path(shared['workdir']), types.SimpleNamespace(**final)


def test_load_variables_reads_a_run(source_run):
  workdir, state = source_run
  loaded = transfer.load_variables(workdir)
  chex.assert_trees_all_equal(loaded['params'], jax.device_get(state.params))
  chex.assert_trees_all_equal(loaded['batch_stats'], jax.device_get(state.batch_stats))
  with pytest.raises(FileNotFoundError, match='no checkpoint under'):
    transfer.load_variables(workdir / 'tensorboard')


def test_transplant_errors_name_the_module(source_run):
  _, state = source_run
  params = jax.device_get(state.params)
  with pytest.raises(ValueError, match=r'params/fc differs between'):
    wide = dict(params, fc={'kernel': np.zeros((8, 7), np.float32),
                            'bias': np.zeros(7, np.float32)})
    transfer.transplant(wide, params)
  with pytest.raises(ValueError, match=r'params/extra is not in the source checkpoint'):
    transfer.transplant(dict(params, extra={'w': np.zeros(1)}), params, exclude=('fc',))
  out, copied = transfer.transplant(params, params, exclude=('fc',))
  assert 'fc' not in copied and len(copied) == len(params) - 1


@pytest.mark.slow
def test_transfer_run_keeps_frozen_backbone(source_run, tmp_path):
  workdir, source = source_run
  c = _tiny((4, 5, 6), steps=10)  # a different 3-class task: the head is new
  c.data.examples_per_class = 5
  c.batch_size = 15
  c.transfer.init_from = str(workdir)
  c.transfer.freeze = ('*',)
  result = loop.train_and_evaluate(c, tmp_path, quiet=True)
  params = result['state'].params
  for name in ('stem', 'stage1_0', 'stage3_0'):
    chex.assert_trees_all_equal(params[name], jax.device_get(source.params[name]))
    chex.assert_trees_all_equal(result['state'].batch_stats[name],
                                jax.device_get(source.batch_stats[name]))
  assert params['fc']['kernel'].shape == (8, 3)
  with pytest.raises(ValueError, match='matches no module'):
    c.transfer.freeze = ('layer1',)
    loop.train_and_evaluate(c, tmp_path / 'bad', quiet=True)


def _dataset():
  labels = np.array([0, 1, 2, 0, 1, 2, 2, 0], np.int32)
  images = np.arange(8, dtype=np.uint8).reshape(8, 1, 1, 1)
  return ArrayDataset(images, labels, ('a', 'b', 'c'))


def test_select_classes_relabels_in_given_order():
  ds = select_classes(_dataset(), (2, 0))
  np.testing.assert_array_equal(ds.labels, [1, 0, 1, 0, 0, 1])
  np.testing.assert_array_equal(ds.images[:, 0, 0, 0], [0, 2, 3, 5, 6, 7])
  assert ds.class_names == ('c', 'a')
  with pytest.raises(ValueError, match=r'must be distinct class ids in \[0, 3\)'):
    select_classes(_dataset(), (0, 3))


def test_few_shot_takes_n_per_class():
  ds = few_shot(_dataset(), 2, seed=0)
  assert sorted(np.bincount(ds.labels).tolist()) == [2, 2, 2]
  assert few_shot(_dataset(), 2, seed=0).images.tobytes() == ds.images.tobytes()
  with pytest.raises(ValueError, match=r'examples_per_class=3 but classes \[1\]'):
    few_shot(_dataset(), 3, seed=0)
