"""Seeds trained together (``config.num_seeds``): each one equals its own run, resumes exactly."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.train import loop
from cnn_jax.train import seeds as seeds_lib
from cnn_jax.train.config import validate
from cnn_jax.train.logging import read_metrics
from tests.train.test_loop import tiny_config
from tests.train.test_resume import committed_steps

SEEDS = (3, 4)


def seeds_config(seed: int = SEEDS[0], num_seeds: int = 1):
  c = tiny_config()
  c.data.num_train, c.data.num_eval = 128, 64  # 4 steps an epoch: step 5 draws a new order
  c.num_steps, c.log_every, c.eval_every, c.checkpoint_every = 6, 3, 3, 3
  c.data.seed = SEEDS[0]  # the same synthetic set for every seed, as when trained together
  c.seed, c.num_seeds = seed, num_seeds
  return c


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('num_seeds')
  together = loop.train_and_evaluate(seeds_config(num_seeds=len(SEEDS)), root / 'together',
                                     quiet=True)
  apart = [loop.train_and_evaluate(seeds_config(seed=s), root / f'seed{s}', quiet=True)
           for s in SEEDS]
  return root, together, apart


def test_each_seed_equals_its_own_run(runs):
  _, together, apart = runs
  for k, alone in enumerate(apart):
    mine = jax.tree.map(lambda x, k=k: np.asarray(x)[k], together['state'])
    for name in ('params', 'batch_stats', 'opt_state'):
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5,
                                                           atol=1e-6),
                   getattr(mine, name), getattr(alone['state'], name))
    assert int(mine.step) == 6
    seed = together['seeds'][k]
    assert seed['seed'] == SEEDS[k]
    assert seed['eval']['accuracy'] == pytest.approx(alone['eval']['accuracy'], abs=1 / 64)
    assert seed['eval']['loss'] == pytest.approx(alone['eval']['loss'], rel=1e-3)
  # The two seeds really differ (own init, own data order).
  a, b = (jax.tree.leaves(jax.tree.map(lambda x, k=k: np.asarray(x)[k],
                                       together['state'].params)) for k in (0, 1))
  assert not all(np.allclose(x, y) for x, y in zip(a, b))
  assert together['num_params'] == apart[0]['num_params']


def test_vmap_mode_equals_unroll(runs, tmp_path):
  _, together, _ = runs  # seeds_mode='auto': unroll on CPU
  c = seeds_config(num_seeds=len(SEEDS))
  c.seeds_mode = 'vmap'
  vmapped = loop.train_and_evaluate(c, tmp_path, quiet=True)
  for x, y in zip(jax.tree.leaves(vmapped['state']), jax.tree.leaves(together['state'])):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('mode', ['vmap', 'unroll'])
def test_over_seeds_lifts_a_function(mode):
  fn = lambda tree, shared: {'y': tree['w'] @ shared + tree['b'], 'n': jnp.sum(shared)}
  trees = {'w': jnp.arange(12.).reshape(2, 2, 3), 'b': jnp.arange(4.).reshape(2, 2)}
  shared = jnp.array([1., -1., 2.])
  out = seeds_lib.over_seeds(fn, 2, mode, in_axes=(0, None))(trees, shared)
  for k in range(2):
    want = fn(jax.tree.map(lambda x, k=k: x[k], trees), shared)
    np.testing.assert_allclose(out['y'][k], want['y'])
    assert out['n'][k] == want['n']  # outputs get the seed axis, also unbatched ones
  assert seeds_lib.over_seeds(fn, 1, mode) is fn
  assert seeds_lib.resolve_mode('auto', 'cpu') == 'unroll'
  assert seeds_lib.resolve_mode('auto', 'gpu') == 'vmap'
  with pytest.raises(ValueError, match="seeds_mode='x' is not valid"):
    seeds_lib.resolve_mode('x')


def test_rows_per_seed_and_their_mean(runs):
  root, together, _ = runs
  run = root / 'together'
  per_seed = [read_metrics(run / 'seeds' / str(s) / 'metrics.jsonl') for s in SEEDS]
  mean = read_metrics(run / 'metrics.jsonl')
  for rows in (*per_seed, mean):
    assert [r['step'] for r in rows['train']] == [3, 6]
    assert [r['step'] for r in rows['eval']] == [3, 6]
  for i, row in enumerate(mean['eval']):
    assert row['accuracy'] == pytest.approx(np.mean([p['eval'][i]['accuracy'] for p in per_seed]))
  # img/s of the run counts every seed's images.
  assert mean['train'][-1]['img_per_sec'] == pytest.approx(
      len(SEEDS) * per_seed[0]['train'][-1]['img_per_sec'])
  assert (run / 'seeds' / str(SEEDS[1]) / 'metrics.png').exists()
  # Each seed's best step is the best of its own eval rows (ties: the newer).
  for s, rows, info in zip(SEEDS, per_seed, together['seeds']):
    accs = {r['step']: r['accuracy'] for r in rows['eval']}
    best = max(accs.values())
    assert info['best_step'] == max(step for step, a in accs.items() if a == best), s


def test_resume_is_exact(runs, tmp_path):
  root, together, _ = runs
  run = tmp_path / 'resumed'
  shutil.copytree(root / 'together', run)
  kept = committed_steps(run)
  assert kept == [3, 6]
  shutil.rmtree(run / 'checkpoints' / '6')  # as if killed after the step-3 checkpoint
  again = loop.train_and_evaluate(seeds_config(num_seeds=len(SEEDS)), run, quiet=True)
  assert again['resumed_from'] == 3
  for x, y in zip(jax.tree.leaves(again['state']), jax.tree.leaves(together['state'])):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  rows = read_metrics(run / 'seeds' / str(SEEDS[1]) / 'metrics.jsonl')
  assert [r['step'] for r in rows['eval']] == [3, 6]
  assert json.loads((run / 'config.json').read_text())['num_seeds'] == len(SEEDS)


def test_nan_guard_names_the_seed(tmp_path):
  c = seeds_config(num_seeds=2)
  c.optimizer.lr = 1e12
  c.schedule.name = 'constant'
  with pytest.raises(loop.NonFiniteLossError,
                     match=r'(loss became (nan|inf)|parameters became non-finite) '
                           r'at step \d+ \(seed [34]\);'):
    loop.train_and_evaluate(c, tmp_path, quiet=True)


@pytest.mark.parametrize('key,value,match', [
    ('parallel', 'pmap', 'parallel=pmap'),
    ('data.streaming', True, 'data.streaming'),
    ('transfer.init_from', '/some/run', 'transfer.init_from'),
])
def test_what_does_not_combine_is_one_line(key, value, match):
  c = seeds_config(num_seeds=2)
  *path, last = key.split('.')
  node = c
  for part in path:
    node = node[part]
  node[last] = value
  if key == 'data.streaming':
    c.data.image_size = 16
  with pytest.raises(ValueError, match=f'num_seeds=2 .* {match}') as e:
    validate(c)
  assert '\n' not in str(e.value)
  c = seeds_config()
  c.num_seeds = 0
  with pytest.raises(ValueError, match='num_seeds must be >= 1'):
    validate(c)


def test_finite_check_is_per_seed():
  """The guard on the state names the seed whose slice went non-finite, not the first one."""
  tree = {'w': jnp.array([[1.0, 2.0], [jnp.nan, 1.0], [3.0, 4.0]]),
          'b': jnp.array([0.0, 0.0, jnp.inf]), 'step': jnp.array([1, 1, 1])}
  np.testing.assert_array_equal(loop._finite_per_seed(tree, 3), [True, False, False])
  np.testing.assert_array_equal(loop._finite_per_seed({'w': jnp.ones((2, 2))}, 1), [True])
