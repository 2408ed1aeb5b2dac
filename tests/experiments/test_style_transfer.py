"""Neural style transfer: hand-computed costs, the loss decreases, outputs, weights, errors."""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from cnn_jax.models import weights as weights_lib
from cnn_jax.train.config import load_config
from experiments import style_transfer as st
from tests.subprocess_env import run_module


def _tiny_cfg(**overrides):
  c = load_config('style_transfer', 'size=32,steps=6')
  c.save_every = 3
  c.update(overrides)
  return c


def test_costs_equal_hand_computation():
  # An identity "network": the image itself is the only layer's activation.
  features = lambda variables, image: {'a': image[None]}
  cfg = ml_collections.ConfigDict({'content_layer': 'a', 'style_layers': ('a',),
                                   'content_weight': 10.0, 'style_weight': 40.0,
                                   'tv_weight': 0.5})
  content = jnp.array([[[1.0], [2.0]], [[3.0], [4.0]]])          # (2, 2, 1)
  style = jnp.array([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [0.0, 0.0]]])  # (2, 2, 2)
  gen1 = jnp.zeros((2, 2, 1))
  targets = st.compute_targets(features, None, content, content, cfg)
  total, parts = st.make_loss(features, cfg)(gen1, None, targets)
  # content: sum (c - g)^2 / (4 nH nW nC) = (1 + 4 + 9 + 16) / 16
  assert float(parts['content']) == pytest.approx(30 / 16)
  # style: G_s = 30 (sum of squares), G_g = 0: 30^2 / (4 * 1^2 * 4^2)
  assert float(parts['style']) == pytest.approx(900 / 64)
  assert float(parts['tv']) == 0.0
  assert float(total) == pytest.approx(10 * 30 / 16 + 40 * 900 / 64)
  # Two channels: G_s = A^T A with A rows (1,0), (0,1), (1,1), (0,0) -> [[2, 1], [1, 2]].
  gen2 = jnp.ones((2, 2, 2))  # G_g = [[4, 4], [4, 4]]
  targets2 = st.compute_targets(features, None, style, style, cfg)
  _, parts2 = st.make_loss(features, cfg)(gen2, None, targets2)
  assert float(parts2['style']) == pytest.approx((4 + 9 + 9 + 4) / (4 * 4 * 16))
  # TV of gen2 is 0; of the content image: |3-1| + |4-2| + |2-1| + |4-3| = 6.
  _, parts3 = st.make_loss(features, cfg)(content, None, targets)
  assert float(parts3['tv']) == pytest.approx(6.0) and float(parts3['content']) == 0.0


def test_content_norm_half_is_the_lectures_cost():
  features = lambda variables, image: {'a': image[None]}
  cfg = ml_collections.ConfigDict({'content_layer': 'a', 'style_layers': ('a',),
                                   'content_weight': 1.0, 'style_weight': 0.0,
                                   'tv_weight': 0.0, 'content_norm': 'half'})
  content = jnp.array([[[1.0], [2.0]], [[3.0], [4.0]]])
  targets = st.compute_targets(features, None, content, content, cfg)
  _, parts = st.make_loss(features, cfg)(jnp.zeros((2, 2, 1)), None, targets)
  assert float(parts['content']) == pytest.approx(30 / 2)  # 1/2 (1 + 4 + 9 + 16)
  assert load_config('style_transfer').content_norm == '4hwc'  # the default is unchanged
  cfg.content_norm = 'l2'
  with pytest.raises(ValueError, match="content_norm='l2' is not valid; choose one of 4hwc, half"):
    st.make_loss(features, cfg)


@pytest.mark.parametrize('optimizer', ['adam', 'lbfgs'])
def test_optimizer_state_keeps_its_types_so_the_step_compiles_once(optimizer):
  """optax's zoom line search starts with weakly typed scalars its first update makes
  strong; ``init`` fixes them, or the jitted step would compile again at step 2."""
  features = lambda variables, image: {'a': image[None]}
  cfg = ml_collections.ConfigDict({'content_layer': 'a', 'style_layers': ('a',),
                                   'content_weight': 1.0, 'style_weight': 1.0,
                                   'tv_weight': 0.1, 'optimizer': optimizer, 'lr': 0.1})
  content = jnp.linspace(0, 1, 12).reshape(2, 2, 3)
  targets = st.compute_targets(features, None, content, content[::-1], cfg)
  init, step = st.make_optimizer(cfg, st.make_loss(features, cfg))
  image = jnp.full_like(content, 0.5)
  state = init(image)
  types = jax.tree.map(jax.typeof, state)
  assert not any(t.weak_type for t in jax.tree.leaves(types))
  for _ in range(2):
    image, state, _ = step(image, state, None, targets)
    assert jax.tree.map(jax.typeof, state) == types


@pytest.fixture(scope='module')
def content_file(tmp_path_factory):
  path = tmp_path_factory.mktemp('img') / 'content.png'
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(path)
  return path


@pytest.mark.parametrize('optimizer', ['adam', 'lbfgs'])
def test_loss_decreases_and_outputs_are_written(tmp_path, content_file, optimizer):
  cfg = _tiny_cfg(content=str(content_file), optimizer=optimizer)
  summary = st.run(cfg, tmp_path, quiet=True)
  assert summary['last']['total'] < 0.9 * summary['first']['total']
  with Image.open(tmp_path / 'output.png') as out:
    assert out.size == (52, 40)  # the content image's size, not the working size
  assert summary['working_size'] == [32, 32] or max(summary['working_size']) == 32
  assert (tmp_path / 'step_00003.png').exists() and (tmp_path / 'step_00006.png').exists()
  assert (tmp_path / 'losses.png').stat().st_size > 1000
  history = json.loads((tmp_path / 'losses.json').read_text())['history']
  assert len(history) == 6 and all(np.isfinite(h['total']) for h in history)


def test_generated_inputs_run_offline(tmp_path):
  # The einsum convolutions here (the other runs: lax): config.conv_impl reaches VGG.
  summary = st.run(_tiny_cfg(steps=2, save_every=0, conv_impl='einsum'), tmp_path, quiet=True)
  assert summary['weights'] == 'random' and summary['output_size'] == [32, 32]
  assert summary['conv_impl'] == 'einsum' and np.isfinite(summary['last']['total'])
  with Image.open(tmp_path / 'style.png') as style:
    assert style.size == (32, 32)


def test_vgg19_weights_load_from_a_torchvision_named_file(tmp_path):
  model, ours = st.vgg19_features(seed=1)
  path = tmp_path / 'vgg19.safetensors'
  flat = weights_lib.export_flat(ours, weights_lib.names_for('vgg19', ours))
  assert sorted(flat)[:2] == ['features.0.bias', 'features.0.weight'] and len(flat) == 32
  flat['classifier.0.weight'] = np.zeros((2, 2), np.float32)  # a full torchvision file
  weights_lib.save_flat(flat, path)
  _, loaded = st.vgg19_features(str(path), seed=2)
  jax.tree.map(np.testing.assert_array_equal, loaded, ours)


def test_bad_inputs_give_one_line_errors(tmp_path):
  bad = tmp_path / 'bad.jpg'
  bad.write_bytes(b'not an image')
  with pytest.raises(ValueError, match='bad.jpg'):
    st.run(_tiny_cfg(content=str(bad)), tmp_path / 'a', quiet=True)
  with pytest.raises(FileNotFoundError, match='missing.png.*does not exist'):
    st.run(_tiny_cfg(style=str(tmp_path / 'missing.png')), tmp_path / 'b', quiet=True)
  with pytest.raises(ValueError, match="optimizer='sgd' is not valid"):
    st.run(_tiny_cfg(optimizer='sgd'), tmp_path / 'c', quiet=True)


def test_cli_reports_a_missing_image_in_one_line(tmp_path):
  proc = run_module('experiments.style_transfer',
                    '--config=configs/style_transfer.py:size=32,steps=1',
                    f'--config.content={tmp_path / "nope.jpg"}', f'--out_dir={tmp_path / "out"}')
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].startswith("error: image '")
  assert 'does not exist' in proc.stderr
