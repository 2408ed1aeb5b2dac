"""The model registry: every name builds, errors list the valid choices."""

import functools
import pathlib
import re

import jax
import jax.numpy as jnp
import pytest

from cnn_jax import models
from cnn_jax.models import registry
from cnn_jax.models.introspect import iter_eqns
from cnn_jax.ops import conv


def _input_shape(name):
  if name == 'lenet5_classic':
    return (1, 32, 32, 1)
  if name == 'inception_v3':  # its auxiliary head needs the reference size
    return (1, 299, 299, 3)
  return ((1, 32, 32, 3) if name.startswith(('cifar', 'lenet', 'speednet', 'regressor'))
          else (1, 224, 224, 3))


def _one_per_code_path(names):
  """One model per builder and non-depth defaults: deeper siblings trace the same code.

  ResNet keeps two (its depth picks the block: 18 basic, 50 bottleneck).
  """
  seen, keep = set(), []
  for name in sorted(names, key=lambda n: registry._lookup(n)[1].get('depth', 0)):
    builder, defaults = registry._lookup(name)
    rest = tuple(sorted((k, repr(v)) for k, v in defaults.items() if k != 'depth'))
    block = 'bottleneck' if builder is registry.ResNet and defaults['depth'] >= 50 else ''
    if (builder, rest, block) not in seen:
      seen.add((builder, rest, block))
      keep.append(name)
  return keep


def _input(name):
  """A zero input: token ids (N, L) int32 for the text CNN, an image batch otherwise."""
  if name == 'text_cnn':
    return jnp.zeros((1, 12), jnp.int32)
  return jnp.zeros(_input_shape(name))


@functools.lru_cache(maxsize=None)
def _abstract_variables(name):
  """Shapes of a model's variables; every conv impl declares the same ones."""
  model = models.get_model(name)
  rngs = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}
  return jax.eval_shape(lambda: model.init_with_output(rngs, _input(name)))


def test_every_registered_model_initialises():
  for name in models.list_models():
    out, _ = _abstract_variables(name)
    # Classifiers give (N, classes); FCNs (N, H, W, classes); YOLO (N, S, S, B, 5 + C);
    # the R-CNN family padded detections (N, D, 4); the captioner greedy captions (N, L - 1).
    if isinstance(out, dict) and 'tokens' in out:
      assert out['tokens'].ndim == 2 and out['scores'].shape == out['tokens'].shape[:1], name
      continue
    if isinstance(out, dict):
      assert out['boxes'].ndim == 3 and out['valid'].shape == out['boxes'].shape[:2], name
      continue
    expected = 4 if name.startswith('fcn') else 5 if name == 'yolo' else 2
    assert out.ndim == expected, name


def _primitives(jaxpr) -> set[str]:
  """Names of the primitives in a (closed) jaxpr and its sub-jaxprs.

  Walked rather than printed: the einsum impls' jaxprs of the large models run to
  megabytes of text, and printing them took longer than tracing them.
  """
  return {eqn.primitive.name for eqn in iter_eqns(jaxpr)}


def _assert_no_conv_primitive(name, impl, backward):
  """Traces ``name`` with ``conv_impl=impl`` (and its gradient) and finds no lax convolution."""
  model = models.get_model(name, conv_impl=impl)
  x = _input(name)
  variables = _abstract_variables(name)[1]
  jaxpr = jax.make_jaxpr(lambda v: model.apply(v, x, train=False))(variables)
  assert 'conv_general_dilated' not in _primitives(jaxpr), (name, impl)
  if backward:
    grad = jax.make_jaxpr(jax.grad(lambda v: jnp.sum(model.apply(
        v, x, train=True, rngs={'dropout': jax.random.key(2)},
        mutable=['batch_stats'])[0])))(variables)
    assert 'conv_general_dilated' not in _primitives(grad), (name, impl)


# Models whose backward pass is traced too; also the models every impl is traced with.
_BACKWARD = ('lenet5', 'cifar_resnet20', 'fcn8s', 'speednet')


def test_conv_impl_reaches_every_conv_of_every_model():
  """Every model hands its ``conv_impl`` to every convolution.

  Traced with 'einsum' only: models pass the name through to ``ops.conv`` and
  never branch on it (the next test checks their source), so one from-scratch
  impl shows the wiring; each impl in whole networks is the test after. (Every
  model with every impl traced in 33 s, most of it einsum_shifted's and
  winograd's many small ops.)
  """
  names = _one_per_code_path(models.list_models())
  assert {'vgg11', 'vgg11_bn', 'resnet18', 'resnet50', 'cifar_resnet', 'cifar_plain20',
          'googlenet', 'inception_v3', 'faster_rcnn', 'mask_rcnn'} <= set(names)
  assert 'resnet152' not in names and 'vgg19_bn' not in names
  for name in names:
    _assert_no_conv_primitive(name, 'einsum', backward=name in _BACKWARD)


def test_models_never_branch_on_the_conv_impl():
  """What lets the test above trace one impl: no ``impl == ...``, ``impl in ...`` or
  ``{...}[conv_impl]`` in the models' or layers' code."""
  branch = re.compile(r'\b(conv_)?impl\s*(==|!=|in\b|not in\b)|\[(self\.)?conv_impl\]')
  root = pathlib.Path(models.__file__).parents[1]
  for path in sorted([*root.glob('models/*.py'), *root.glob('nn/*.py')]):
    for number, line in enumerate(path.read_text().splitlines(), 1):
      assert not branch.search(line), f'{path.name}:{number}: {line.strip()}'


@pytest.mark.parametrize('impl', conv.IMPLS[1:])
def test_every_from_scratch_impl_leaves_no_lax_conv_in_a_network(impl):
  """Plain, strided and 1x1 convolutions, transposed ones (FCN-8s) and 1-D ones (the text
  CNN), forward and backward: no impl falls back to lax anywhere."""
  for name in (*_BACKWARD, 'text_cnn'):
    _assert_no_conv_primitive(name, impl, backward=name in _BACKWARD)


def test_primitives_sees_inside_nested_jaxprs():
  jaxpr = jax.make_jaxpr(lambda x: jax.jit(lambda y: jax.lax.conv_general_dilated(
      y, y, (1, 1), 'SAME'))(x))(jnp.zeros((1, 1, 3, 3)))
  assert 'conv_general_dilated' in _primitives(jaxpr)
  assert 'conv_general_dilated' in str(jaxpr)  # what the walk stands in for


def test_overrides_and_defaults():
  m = models.get_model('cifar_plain56', num_classes=100, conv_impl='einsum')
  assert (m.depth, m.plain, m.num_classes, m.conv_impl) == (56, True, 100, 'einsum')
  assert models.get_model('vgg16_bn').batch_norm


def test_unknown_name_lists_known_models():
  with pytest.raises(ValueError, match=r"unknown model 'resnet1000'; known models: .*resnet50"):
    models.get_model('resnet1000')


def test_unknown_argument_lists_valid_ones():
  with pytest.raises(ValueError, match=r"model 'resnet18' has no argument\(s\) \['widht'\]; "
                                       r'valid: .*width'):
    models.get_model('resnet18', widht=32)


def test_register_new_model_and_duplicate(monkeypatch):
  monkeypatch.setattr(registry, '_MODELS', dict(registry._MODELS))  # leave the zoo as it was
  models.register('tiny_cifar_resnet_test', models.CifarResNet, depth=8)
  assert models.get_model('tiny_cifar_resnet_test').depth == 8
  with pytest.raises(ValueError, match='already registered'):
    models.register('tiny_cifar_resnet_test', models.CifarResNet)
