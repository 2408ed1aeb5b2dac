"""External (torchvision-layout) weights: name mappings, layouts, file round trips and errors.

No torch: the "torchvision" files are written from our own random variables
with ``export_flat``, and the layout conventions are checked against numpy
re-implementations of torch's conv2d and flatten + linear.
"""

from __future__ import annotations

import functools
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cnn_jax.models import weights
from cnn_jax.models.alexnet import AlexNet
from cnn_jax.models.resnet import ResNet
from cnn_jax.models.vgg import VGG
from cnn_jax.ops import blocks
from tests.models.model_utils import abstract_variables

IMAGENET = (1, 224, 224, 3)


@functools.cache
def _abstract(kind: str, depth: int, **kwargs):
  if kind == 'resnet':
    return abstract_variables(ResNet(depth=depth, **kwargs), IMAGENET)
  if kind == 'vgg':  # The classifier does not depend on the input size (adaptive 7x7 pool).
    return abstract_variables(VGG(depth=depth, **kwargs), (1, 32, 32, 3))
  return abstract_variables(AlexNet(**kwargs), (1, 63, 63, 3))


def _random(abstract, seed: int = 0):
  """Distinct random values in every leaf (BN variances positive), as numpy float32."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    x = rng.random(leaf.shape, dtype=np.float32) - np.float32(0.5)
    return np.abs(x) + np.float32(0.5) if path[-1].key == 'var' else x

  return jax.tree_util.tree_map_with_path(fill, abstract)


def _zeros(abstract):
  """A concrete template (numpy: jnp.zeros would compile one program per leaf shape)."""
  return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), abstract)


def _assert_identical(a, b):
  chex.assert_trees_all_equal_structs(a, b)
  for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree.leaves(b)):
    assert x.dtype == y.dtype and np.array_equal(np.asarray(x), np.asarray(y)), path


# --------------------------------------------------------------------------- names

def test_resnet18_names_match_torchvision():
  abstract = _abstract('resnet', 18)
  names = weights.torchvision_resnet_names(abstract)
  assert len(names) == 102  # torchvision's 122 state_dict entries minus 20 num_batches_tracked.
  assert names['params/stem/conv/kernel'] == 'conv1.weight'
  assert names['params/stem/bn/scale'] == 'bn1.weight'
  assert names['batch_stats/stem/bn/mean'] == 'bn1.running_mean'
  assert names['batch_stats/layer3_1/bn2/var'] == 'layer3.1.bn2.running_var'
  assert names['params/layer1_0/conv1/kernel'] == 'layer1.0.conv1.weight'
  assert names['params/layer2_0/proj/conv/kernel'] == 'layer2.0.downsample.0.weight'
  assert names['params/layer2_0/proj/bn/scale'] == 'layer2.0.downsample.1.weight'
  assert names['batch_stats/layer2_0/proj/bn/mean'] == 'layer2.0.downsample.1.running_mean'
  assert names['params/fc/kernel'] == 'fc.weight' and names['params/fc/bias'] == 'fc.bias'
  values = set(names.values())
  assert not any(v.startswith('layer1.0.downsample') for v in values)
  assert {f'layer{i}.0.downsample.1.running_var' for i in (2, 3, 4)} <= values
  assert len(values) == len(names)


def test_resnet50_names_and_torch_shapes():
  abstract = _abstract('resnet', 50)
  names = weights.torchvision_resnet_names(abstract)
  assert len(names) == 267  # torchvision's 320 minus 53 num_batches_tracked.
  assert names['params/layer4_2/conv3/kernel'] == 'layer4.2.conv3.weight'
  assert 'layer1.0.downsample.0.weight' in names.values()  # 64 -> 256 channels.
  flat = weights.export_flat(_random(abstract), names)
  assert flat['layer4.2.conv3.weight'].shape == (2048, 512, 1, 1)
  assert flat['layer4.0.conv2.weight'].shape == (512, 512, 3, 3)
  assert flat['conv1.weight'].shape == (64, 3, 7, 7)
  assert flat['fc.weight'].shape == (1000, 2048)
  assert flat['layer4.0.downsample.1.running_var'].shape == (2048,)


@pytest.mark.parametrize('depth, batch_norm, convs', [
    (11, False, [0, 3, 6, 8, 11, 13, 16, 18]),
    (11, True, [0, 4, 8, 11, 15, 18, 22, 25]),
    (16, False, [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]),
    (16, True, [0, 3, 7, 10, 14, 17, 20, 24, 27, 30, 34, 37, 40]),
])
def test_vgg_names_use_torchvision_sequential_indices(depth, batch_norm, convs):
  names = weights.torchvision_vgg_names(_abstract('vgg', depth, batch_norm=batch_norm))
  conv_keys = sorted(int(v.split('.')[1]) for k, v in names.items()
                     if k.startswith('params/conv') and k.endswith('kernel'))
  assert conv_keys == convs
  per_conv = 6 if batch_norm else 2  # weight, bias (+ BN weight, bias, running mean, var).
  assert len(names) == per_conv * len(convs) + 6
  assert names['params/conv1_1/kernel'] == 'features.0.weight'
  if batch_norm:
    assert names['params/bn1_1/scale'] == 'features.1.weight'
    assert names['batch_stats/bn1_1/var'] == 'features.1.running_var'
  assert [names[f'params/fc{i}/kernel'] for i in (1, 2, 3)] == [
      'classifier.0.weight', 'classifier.3.weight', 'classifier.6.weight']
  assert names['params/fc1/kernel'].chw == (512, 7, 7)


def test_alexnet_names():
  names = weights.torchvision_alexnet_names(_abstract('alexnet', 0))
  assert names['params/conv5/kernel'] == 'features.10.weight'
  assert names['params/fc1/kernel'] == 'classifier.1.weight'
  assert names['params/fc1/kernel'].chw == (256, 6, 6)
  assert names['params/fc3/bias'] == 'classifier.6.bias'


def test_mapping_for_the_wrong_family_is_an_error():
  with pytest.raises(ValueError, match='not part of an ImageNet ResNet'):
    weights.torchvision_resnet_names(_abstract('vgg', 11))
  with pytest.raises(ValueError, match='not a VGG'):
    weights.torchvision_vgg_names(_abstract('resnet', 18))
  with pytest.raises(ValueError, match=r"supported: resnet\*, vgg\*, alexnet\*"):
    weights.names_for('cifar_resnet20', _abstract('resnet', 18))


# --------------------------------------------------------------------------- layouts

def _torch_conv2d(x_nchw, w_oihw, b, padding):
  """torch.nn.functional.conv2d (cross-correlation, stride 1) in numpy."""
  n, c, h, w = x_nchw.shape
  o, _, kh, kw = w_oihw.shape
  xp = np.pad(x_nchw, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
  ho, wo = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
  y = np.zeros((n, o, ho, wo), np.float64)
  for i in range(kh):
    for j in range(kw):
      y += np.einsum('nchw,oc->nohw', xp[:, :, i:i + ho, j:j + wo], w_oihw[:, :, i, j])
  return y + b[None, :, None, None]


def test_conv_layout_matches_torch_semantics():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)  # NCHW.
  w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)  # OIHW, asymmetric in every axis.
  b = rng.standard_normal(4).astype(np.float32)
  expected = _torch_conv2d(x, w, b, padding=1)
  kernel = weights.from_torch_layout(w)
  assert kernel.shape == (3, 3, 3, 4)
  y = blocks.conv({'kernel': jnp.asarray(kernel), 'bias': jnp.asarray(b)},
                  jnp.asarray(x.transpose(0, 2, 3, 1)))
  np.testing.assert_allclose(np.asarray(y).transpose(0, 3, 1, 2), expected, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(weights.to_torch_layout(kernel), w)


def test_fc_after_flatten_permutes_chw_to_hwc():
  rng = np.random.default_rng(2)
  c, h, w, out = 3, 2, 4, 5
  t = rng.standard_normal((c, h, w))  # One feature map in torch's (C, H, W).
  w_torch = rng.standard_normal((out, c * h * w))  # nn.Linear weight (out, in).
  expected = w_torch @ t.reshape(-1)  # torch: flatten in (C, H, W) order.
  key = weights.TorchKey('classifier.0.weight', chw=(c, h, w))
  kernel = weights.from_torch_layout(w_torch, key)
  assert kernel.shape == (c * h * w, out)
  ours = t.transpose(1, 2, 0).reshape(-1) @ kernel  # Ours: NHWC flatten, (in, out) kernel.
  np.testing.assert_allclose(ours, expected, rtol=1e-12)
  plain = t.transpose(1, 2, 0).reshape(-1) @ weights.from_torch_layout(w_torch)
  assert not np.allclose(plain, expected)  # Without the permutation the output is wrong.
  np.testing.assert_array_equal(weights.to_torch_layout(kernel, key), w_torch)


# --------------------------------------------------------------------------- round trips

@pytest.mark.parametrize('kind, depth, kwargs, ext', [
    ('resnet', 18, {}, '.npz'),
    ('resnet', 18, {}, '.safetensors'),
    ('resnet', 50, {}, '.safetensors'),
    ('vgg', 11, {'batch_norm': True, 'num_classes': 10}, '.safetensors'),
])
def test_file_round_trip_is_bit_identical(tmp_path, kind, depth, kwargs, ext):
  abstract = _abstract(kind, depth, **kwargs)
  names = weights.names_for(f'{kind}{depth}', abstract)
  original = jax.device_put(_random(abstract))
  path = tmp_path / f'w{ext}'
  weights.save_flat(weights.export_flat(original, names), path)
  flat = weights.load_flat(path)
  assert set(flat) == set(map(str, names.values()))
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    loaded = weights.load_into(_zeros(abstract), flat, names)
  _assert_identical(original, loaded)


def test_loading_into_abstract_variables_and_dtype_cast(tmp_path):
  abstract = _abstract('resnet', 18, width=8, num_classes=5)
  original = _random(abstract)
  path = tmp_path / 'r18.npz'
  weights.save_flat(weights.export_flat(original, weights.names_for('resnet18', abstract)), path)
  loaded = weights.load_pretrained('resnet18', abstract, path)  # ShapeDtypeStruct template.
  _assert_identical(jax.device_put(original), loaded)
  bf16 = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, jnp.bfloat16), abstract)
  loaded = weights.load_pretrained('resnet18', bf16, path)
  chex.assert_trees_all_equal_dtypes(loaded, bf16)
  np.testing.assert_array_equal(loaded['params']['fc']['kernel'],
                                original['params']['fc']['kernel'].astype(jnp.bfloat16))


def test_tiny_resnet_gives_the_same_logits_after_export_and_reload(tmp_path):
  model = ResNet(depth=18, width=8, num_classes=5)
  x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 32, 32, 3)), jnp.float32)
  abstract = abstract_variables(model, x.shape)
  original = jax.device_put(_random(abstract, seed=4))
  path = tmp_path / 'tiny.safetensors'
  weights.save_flat(weights.export_flat(original, weights.names_for('resnet18', abstract)), path)
  loaded = weights.load_pretrained('resnet18', _zeros(abstract), path)
  apply = jax.jit(model.apply)
  logits = apply(original, x)
  np.testing.assert_array_equal(apply(loaded, x), logits)
  assert not np.allclose(logits[0], logits[1])


# --------------------------------------------------------------------------- errors

@pytest.fixture(name='r18')
def _r18():
  abstract = _abstract('resnet', 18, width=8, num_classes=5)
  names = weights.torchvision_resnet_names(abstract)
  return abstract, names, weights.export_flat(_random(abstract), names)


def test_shape_mismatch_names_path_key_and_shapes(r18):
  abstract, names, flat = r18
  flat['layer2.0.conv1.weight'] = np.zeros((16, 8, 3, 1), np.float32)
  with pytest.raises(ValueError, match=r"params/layer2_0/conv1/kernel <- 'layer2\.0\.conv1\."
                     r"weight': file has \(16, 8, 3, 1\), expected \(16, 8, 3, 3\) "
                     r'\(ours \(3, 3, 8, 16\)\)'):
    weights.load_into(abstract, flat, names)
  flat['layer2.0.conv1.weight'] = np.zeros((16, 8, 3, 3), np.float32)
  flat['fc.weight'] = np.zeros((1000, 64), np.float32)  # Another num_classes.
  with pytest.raises(ValueError, match=r'fc/kernel.*\(1000, 64\).*\(5, 64\)'):
    weights.load_into(abstract, flat, names)
  keep_fc = {k: v for k, v in names.items() if not k.startswith('params/fc/')}
  with pytest.warns(UserWarning, match=r"2 key\(s\).*\['fc\.bias', 'fc\.weight'\]"):
    loaded = weights.load_into(abstract, flat, keep_fc)
  assert isinstance(loaded['params']['fc']['kernel'], jax.ShapeDtypeStruct)


def test_missing_keys_strict_and_not_strict(r18):
  abstract, names, flat = r18
  del flat['layer3.1.bn2.running_var'], flat['fc.bias']
  with pytest.raises(ValueError, match=r"2 key\(s\) missing.*layer3\.1\.bn2\.running_var "
                     r'\(for batch_stats/layer3_1/bn2/var\)'):
    weights.load_into(abstract, flat, names)
  zeros = _zeros(abstract)
  loaded = weights.load_into(zeros, flat, names, strict=False)
  assert loaded['params']['fc']['bias'] is zeros['params']['fc']['bias']
  np.testing.assert_array_equal(loaded['params']['fc']['kernel'],
                                flat['fc.weight'].T)


def test_unused_keys_warn_but_num_batches_tracked_does_not(r18):
  abstract, names, flat = r18
  flat['bn1.num_batches_tracked'] = np.array(7, np.int64)
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    weights.load_into(abstract, flat, names)
  flat['module.extra'] = np.zeros(3, np.float32)
  with pytest.warns(UserWarning, match=r"1 key\(s\).*not loaded.*'module\.extra'"):
    weights.load_into(abstract, flat, names)
  assert weights.unused_keys(flat, names) == ['module.extra']


def test_names_for_paths_that_are_not_variables(r18):
  abstract, names, flat = r18
  with pytest.raises(ValueError, match=r"1 path\(s\) that are not variables.*params/nope/kernel"):
    weights.load_into(abstract, flat, {**names, 'params/nope/kernel': 'x.weight'})


def test_file_errors(tmp_path):
  with pytest.raises(ValueError, match=r"unknown extension '\.pth'.*\.npz"):
    weights.load_flat(tmp_path / 'model.pth')
  with pytest.raises(FileNotFoundError, match='does not exist'):
    weights.load_flat(tmp_path / 'missing.safetensors')
  with pytest.raises(ValueError, match='unknown extension'):
    weights.save_flat({}, tmp_path / 'model.pt')
  with pytest.raises(ValueError, match=r'supported: resnet\*, vgg\*'):
    weights.load_pretrained('lenet5', {}, tmp_path / 'w.npz')
