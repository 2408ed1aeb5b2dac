"""Loading external (e.g. torchvision) weights into our variables, and exporting them back.

A checkpoint from another framework is read as a flat ``{key: array}`` dict
(:func:`load_flat`, from ``.safetensors`` or ``.npz``) and copied into a
variables pytree through a *name mapping* ``{our_path: file_key}``, where
``our_path`` joins the variable tree's keys with ``'/'``::

    'params/layer1_0/conv1/kernel'       <- 'layer1.0.conv1.weight'
    'params/layer2_0/proj/bn/scale'      <- 'layer2.0.downsample.1.weight'
    'batch_stats/stem/bn/mean'           <- 'bn1.running_mean'
    'params/conv5_2/kernel' (VGG-11)     <- 'features.18.weight'

:func:`torchvision_resnet_names`, :func:`torchvision_vgg_names` and
:func:`torchvision_alexnet_names` (and the GoogLeNet, Inception-v3 and
R-CNN ones) derive the mapping from the variable tree itself, so they work for every depth, width, ``num_classes`` and for the
``*_bn`` VGGs; :func:`load_pretrained` picks one by model name.

Layout conversion (torch -> ours; :func:`export_flat` applies the inverse):

* conv weight ``(O, I, kh, kw)`` (OIHW) -> kernel ``(kh, kw, I, O)`` (HWIO):
  ``transpose(2, 3, 1, 0)``. Grouped convs convert the same way.
* linear weight ``(out, in)`` -> dense kernel ``(in, out)``: ``.T``.
* BatchNorm ``weight -> scale``, ``bias -> bias``, ``running_mean -> mean``,
  ``running_var -> var``; biases and all 1-D arrays are copied as they are.
  ``num_batches_tracked`` has no counterpart and is ignored.
* The first linear layer after a flatten (VGG's ``classifier.0``, AlexNet's
  ``classifier.1``) sees a (C, H, W)-ordered vector in torch but an (H, W, C)
  one here (NHWC). Its mapping value is a :class:`TorchKey` carrying ``chw``
  (``(512, 7, 7)`` for VGG after the adaptive pool, ``(256, 6, 6)`` for
  AlexNet), and the weight's input axis is permuted: ``w.reshape(out, C, H,
  W).transpose(0, 2, 3, 1).reshape(out, -1).T``.

Every value is cast to the dtype of the leaf it replaces. Typical use::

    model = get_model('resnet50')
    abstract = jax.eval_shape(functools.partial(model.init, train=False),
                              jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    variables = load_pretrained('resnet50', abstract, 'resnet50.safetensors')

The ``.safetensors`` file comes from torch with
``safetensors.torch.save_file(tv_model.state_dict(), 'resnet50.safetensors')``
(torch is not needed here). To fine-tune on another number of classes, drop
the classifier from the mapping and keep the freshly initialised one::

    names = {k: v for k, v in torchvision_resnet_names(variables).items()
             if not k.startswith('params/fc/')}
    variables = load_into(variables, load_flat(path), names, strict=True)
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from cnn_jax.pytree import leaf_paths

Variables = Any  # A (nested dict) variables pytree: {'params': ..., 'batch_stats': ...}.
Flat = dict[str, np.ndarray]

_FORMATS = ('.npz', '.safetensors')
_IGNORED_SUFFIXES = ('num_batches_tracked',)
# Leaf name -> torch attribute, per collection.
_LEAF_NAMES = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
               'var': 'running_var'}


# Special layouts a TorchKey can mark: 'deltas', outputs in groups of 4 box deltas
# (torchvision's dx, dy, dw, dh; ours dy, dx, dh, dw); 'conv_transpose', a
# ConvTranspose2d weight (I, O, kh, kw) for our (kh, kw, I, O).
LAYOUTS = (None, 'deltas', 'conv_transpose')
_DELTA_SWAP = np.array([1, 0, 3, 2])


class TorchKey(str):
  """A file key (a plain ``str``) that can carry the (C, H, W) order of a linear layer's input.

  ``TorchKey('classifier.0.weight', chw=(512, 7, 7))`` marks a torch linear
  weight of shape ``(out, C * H * W)`` that follows a flatten of a (C, H, W)
  feature map; loading permutes its input axis into our (H, W, C) order.
  """
  chw: tuple[int, int, int] | None
  layout: str | None

  def __new__(cls, key: str, chw: tuple[int, int, int] | None = None,
              layout: str | None = None) -> TorchKey:
    if layout not in LAYOUTS:
      raise ValueError(f'TorchKey layout must be one of {LAYOUTS}, got {layout!r}.')
    self = super().__new__(cls, key)
    self.chw = None if chw is None else tuple(int(d) for d in chw)
    self.layout = layout
    return self

  def __repr__(self) -> str:
    return f'TorchKey({str(self)!r}, chw={self.chw}, layout={self.layout})'


# --------------------------------------------------------------------------- files

def load_flat(path: str | os.PathLike) -> Flat:
  """Reads a flat ``{key: array}`` checkpoint from ``.npz`` or ``.safetensors``."""
  path = os.fspath(path)
  ext = os.path.splitext(path)[1].lower()
  if ext not in _FORMATS:
    raise ValueError(f'cannot read weights from {path!r}: unknown extension {ext!r}; use one '
                     f'of {_FORMATS} (from torch: safetensors.torch.save_file(state_dict, ...)).')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'weights file {path!r} does not exist.')
  if ext == '.npz':
    with np.load(path, allow_pickle=False) as f:
      return {k: f[k] for k in f.files}
  from safetensors.numpy import load_file  # pylint: disable=import-outside-toplevel
  return dict(load_file(path))


def save_flat(flat: Mapping[str, np.ndarray], path: str | os.PathLike) -> None:
  """Writes a flat ``{key: array}`` dict as ``.npz`` or ``.safetensors`` (by extension)."""
  path = os.fspath(path)
  ext = os.path.splitext(path)[1].lower()
  arrays = {k: np.ascontiguousarray(v) for k, v in flat.items()}
  if ext == '.npz':
    np.savez(path, **arrays)
  elif ext == '.safetensors':
    from safetensors.numpy import save_file  # pylint: disable=import-outside-toplevel
    save_file(arrays, path)
  else:
    raise ValueError(f'cannot write weights to {path!r}: unknown extension {ext!r}; use one of '
                     f'{_FORMATS}.')


# --------------------------------------------------------------------------- variable paths

def flat_paths(variables: Variables) -> dict[str, Any]:
  """``{'params/layer1_0/conv1/kernel': leaf, ...}`` for every leaf of ``variables``."""
  return leaf_paths(variables)


def _leaf_name(collection: str, leaf: str, path: str) -> str:
  # A frozen BatchNorm keeps scale and bias with its statistics (as torchvision's buffers).
  frozen_affine = collection == 'batch_stats' and leaf in ('scale', 'bias')
  if ((collection == 'batch_stats') != (leaf in ('mean', 'var')) and not frozen_affine
      or leaf not in _LEAF_NAMES):
    raise ValueError(f'no torchvision name for variable {path!r}: unexpected leaf {leaf!r} in '
                     f'collection {collection!r}; pass your own names mapping to load_into.')
  return _LEAF_NAMES[leaf]


# --------------------------------------------------------------------------- name mappings

_RESNET_BLOCK = re.compile(r'layer(\d+)_(\d+)$')
_RESNET_UNIT = re.compile(r'(conv|bn)(\d+)$')


def torchvision_resnet_names(variables: Variables) -> dict[str, str]:
  """Maps the variables of :class:`~cnn_jax.models.resnet.ResNet` (any depth) to torchvision keys.

  ``stem/conv`` -> ``conv1``, ``stem/bn`` -> ``bn1``, ``layer{i}_{j}/conv{k}`` ->
  ``layer{i}.{j}.conv{k}`` (likewise ``bn{k}``), ``layer{i}_{j}/proj/conv`` ->
  ``layer{i}.{j}.downsample.0``, ``.../proj/bn`` -> ``downsample.1``, ``fc`` -> ``fc``.

  Args:
    variables: ResNet variables (arrays or ``jax.ShapeDtypeStruct``), with
      ``'params'`` and ``'batch_stats'``.

  Returns:
    ``{our_path: torch_key}``, e.g. ``'batch_stats/layer2_0/proj/bn/var' ->
    'layer2.0.downsample.1.running_var'``.
  """
  names = {}
  for path in flat_paths(variables):
    collection, *modules, leaf = path.split('/')
    attr = _leaf_name(collection, leaf, path)
    if modules == ['stem', 'conv'] or modules == ['stem', 'bn']:
      prefix = 'conv1' if modules[1] == 'conv' else 'bn1'
    elif modules == ['fc']:
      prefix = 'fc'
    elif modules and (block := _RESNET_BLOCK.match(modules[0])):
      head = f'layer{block[1]}.{block[2]}'
      if len(modules) == 2 and _RESNET_UNIT.match(modules[1]):
        prefix = f'{head}.{modules[1]}'
      elif modules[1:] in (['proj', 'conv'], ['proj', 'bn']):
        prefix = f'{head}.downsample.{0 if modules[2] == "conv" else 1}'
      else:
        prefix = None
    else:
      prefix = None
    if prefix is None:
      raise ValueError(f'variable {path!r} is not part of an ImageNet ResNet (cnn_jax.models.'
                       'ResNet); torchvision names exist only for that layout.')
    names[path] = f'{prefix}.{attr}'
  return names


def _fc_chw(params: Mapping[str, Any], last_conv: str, fc: str) -> tuple[int, int, int]:
  """(C, H, W) of the feature map flattened into ``fc``, from the last conv's width."""
  c = params[last_conv]['kernel'].shape[-1]
  d_in = params[fc]['kernel'].shape[0]
  side = math.isqrt(d_in // c)
  if side * side * c != d_in:
    raise ValueError(f'{fc} takes {d_in} inputs, not a square map of {last_conv}\'s {c} '
                     'channels; pass your own names mapping with TorchKey(..., chw=...).')
  return c, side, side


def torchvision_vgg_names(variables: Variables) -> dict[str, str]:
  """Maps the variables of :class:`~cnn_jax.models.vgg.VGG` (any depth, +-BN) to torchvision keys.

  Convs get ``features.{idx}`` with torchvision's ``nn.Sequential`` index,
  which also counts its ReLU, MaxPool and BatchNorm entries (VGG-11:
  ``features.0, 3, 6, 8, 11, 13, 16, 18``; VGG-11-BN: conv ``0`` and BN ``1``,
  conv ``4`` and BN ``5``, ...). ``fc1/fc2/fc3 -> classifier.0/3/6``;
  ``classifier.0`` is a :class:`TorchKey` with ``chw=(C, 7, 7)``. A VGG built
  with ``include_top=False`` maps its convs only (the file's classifier is
  then reported unused).
  """
  params = variables['params']
  convs = sorted((tuple(int(n) for n in name[4:].split('_')), name) for name in params
                 if re.fullmatch(r'conv\d+_\d+', name))
  fcs = {'fc1', 'fc2', 'fc3'} & set(params)
  if not convs or fcs not in (set(), {'fc1', 'fc2', 'fc3'}):
    raise ValueError(f'variables are not a VGG (params {sorted(params)[:6]}...); expected '
                     'conv{stage}_{i} and fc1..fc3 from cnn_jax.models.VGG.')
  modules: dict[str, str] = {}
  idx, stage = 0, convs[0][0][0]
  for (s, i), name in convs:
    if s != stage:
      idx, stage = idx + 1, s  # The MaxPool that ends the previous stage.
    modules[name] = f'features.{idx}'
    idx += 1
    bn = f'bn{s}_{i}'
    if bn in params:
      modules[bn] = f'features.{idx}'
      idx += 1
    idx += 1  # ReLU.
  if not fcs:
    return _module_names(variables, modules, {}, 'VGG')
  chw = _fc_chw(params, convs[-1][1], 'fc1')
  modules.update(fc1='classifier.0', fc2='classifier.3', fc3='classifier.6')
  return _module_names(variables, modules, {'fc1': chw}, 'VGG')


def torchvision_alexnet_names(variables: Variables) -> dict[str, str]:
  """Maps :class:`~cnn_jax.models.alexnet.AlexNet` to torchvision keys.

  ``conv1..conv5 -> features.0/3/6/8/10``, ``fc1/fc2/fc3 -> classifier.1/4/6``;
  ``classifier.1`` is a :class:`TorchKey` with ``chw=(256, 6, 6)``.
  """
  params = variables['params']
  modules = {'conv1': 'features.0', 'conv2': 'features.3', 'conv3': 'features.6',
             'conv4': 'features.8', 'conv5': 'features.10', 'fc1': 'classifier.1',
             'fc2': 'classifier.4', 'fc3': 'classifier.6'}
  if set(params) != set(modules):
    raise ValueError(f'variables are not an AlexNet (params {sorted(params)}); expected '
                     f'{sorted(modules)} from cnn_jax.models.AlexNet.')
  return _module_names(variables, modules, {'fc1': _fc_chw(params, 'conv5', 'fc1')}, 'AlexNet')


def _module_names(variables: Variables, modules: Mapping[str, str],
                  chw: Mapping[str, tuple[int, int, int]], family: str) -> dict[str, str]:
  names = {}
  for path in flat_paths(variables):
    collection, *mods, leaf = path.split('/')
    if len(mods) != 1 or mods[0] not in modules:
      raise ValueError(f'variable {path!r} has no torchvision name in a {family}; pass your own '
                       'names mapping to load_into.')
    key = f'{modules[mods[0]]}.{_leaf_name(collection, leaf, path)}'
    names[path] = TorchKey(key, chw[mods[0]]) if leaf == 'kernel' and mods[0] in chw else key
  return names


# GoogLeNet's inception branches -> torchvision's (BasicConv2d or Sequential index).
_GOOGLENET_BRANCHES = {'b1': 'branch1', 'b2_reduce': 'branch2.0', 'b2': 'branch2.1',
                       'b3_reduce': 'branch3.0', 'b3': 'branch3.1', 'b4': 'branch4.1'}
_GOOGLENET_AUX = re.compile(r'aux_head(\d)$')


def torchvision_googlenet_names(variables: Variables) -> dict[str, str]:
  """Maps :class:`~cnn_jax.models.googlenet.GoogLeNet` to torchvision's ``googlenet`` keys.

  ``conv1..3/{conv,bn}`` keep their names; ``inception{k}/b1`` -> ``inception{k}.branch1``,
  ``b2_reduce``/``b2`` -> ``branch2.0``/``branch2.1`` (``b3`` likewise), ``b4`` ->
  ``branch4.1`` (``branch4.0`` is the max pool); ``aux_head{i}`` -> ``aux{i}`` with
  ``conv``, ``fc1`` (a :class:`TorchKey`: its input is torch's (128, 4, 4) flatten) and
  ``fc2``; ``fc`` -> ``fc``.
  """
  names = {}
  for path in flat_paths(variables):
    collection, *mods, leaf = path.split('/')
    attr = _leaf_name(collection, leaf, path)
    head = mods[0] if mods else ''
    if re.fullmatch(r'conv[123]', head) and len(mods) == 2:
      prefix = f'{head}.{mods[1]}'
    elif head.startswith('inception') and len(mods) == 3 and mods[1] in _GOOGLENET_BRANCHES:
      prefix = f'{head}.{_GOOGLENET_BRANCHES[mods[1]]}.{mods[2]}'
    elif (aux := _GOOGLENET_AUX.match(head)) and mods[1:] in (['conv', 'conv'], ['conv', 'bn'],
                                                              ['fc1'], ['fc2']):
      prefix = '.'.join([f'aux{aux[1]}', *mods[1:]])
    elif mods == ['fc']:
      prefix = 'fc'
    else:
      raise ValueError(f'variable {path!r} has no torchvision name in a GoogLeNet; pass your '
                       'own names mapping to load_into.')
    key = f'{prefix}.{attr}'
    names[path] = TorchKey(key, (128, 4, 4)) if mods[1:] == ['fc1'] and leaf == 'kernel' else key
  return names


def torchvision_inception_v3_names(variables: Variables) -> dict[str, str]:
  """Maps :class:`~cnn_jax.models.inception_v3.InceptionV3` to torchvision's ``inception_v3`` keys.

  The module tree already has torchvision's names (``Conv2d_1a_3x3``,
  ``Mixed_5b/branch5x5_1``, ``AuxLogits/conv0``, ``fc``), so a path's modules
  join with dots: ``params/Mixed_6e/branch7x7_2/conv/kernel`` ->
  ``Mixed_6e.branch7x7_2.conv.weight``; ``batch_stats/.../bn/var`` ->
  ``....bn.running_var``. The auxiliary ``fc`` follows a global average, so no
  input reordering is needed.
  """
  params = variables['params']
  if 'Mixed_5b' not in params or 'Conv2d_1a_3x3' not in params:
    raise ValueError(f'variables are not an Inception-v3 (params {sorted(params)[:6]}...); '
                     'expected Conv2d_1a_3x3, Mixed_5b, ... from cnn_jax.models.InceptionV3.')
  names = {}
  for path in flat_paths(variables):
    collection, *mods, leaf = path.split('/')
    names[path] = '.'.join([*mods, _leaf_name(collection, leaf, path)])
  return names


_RCNN_MODULES = {
    ('rpn_head', 'conv'): 'rpn.head.conv.0.0', ('rpn_head', 'cls_logits'): 'rpn.head.cls_logits',
    ('rpn_head', 'bbox_pred'): 'rpn.head.bbox_pred',
    ('box_head', 'fc6'): 'roi_heads.box_head.fc6', ('box_head', 'fc7'): 'roi_heads.box_head.fc7',
    ('box_predictor', 'cls_score'): 'roi_heads.box_predictor.cls_score',
    ('box_predictor', 'bbox_pred'): 'roi_heads.box_predictor.bbox_pred',
    ('mask_predictor', 'conv5_mask'): 'roi_heads.mask_predictor.conv5_mask',
    ('mask_predictor', 'mask_logits'): 'roi_heads.mask_predictor.mask_logits',
}
_RCNN_NUMBERED = {'fpn': re.compile(r'(inner_blocks|layer_blocks)_(\d+)$'),
                  'mask_head': re.compile(r'mask_fcn(\d+)$')}


def torchvision_rcnn_names(variables: Variables) -> dict[str, str]:
  """Maps :class:`~cnn_jax.models.rcnn.TwoStageDetector` (ResNet backbone) to torchvision keys.

  The keys of ``fasterrcnn_resnet50_fpn`` / ``maskrcnn_resnet50_fpn`` state
  dicts (torchvision >= 0.13): ``backbone/...`` -> ``backbone.body.`` + the
  ResNet names (:func:`torchvision_resnet_names`; frozen BatchNorm affines are
  ``batch_stats``, as torchvision's buffers), ``fpn/inner_blocks_i`` ->
  ``backbone.fpn.inner_blocks.i.0`` (``layer_blocks`` likewise),
  ``rpn_head/conv`` -> ``rpn.head.conv.0.0``, ``rpn_head/{cls_logits,bbox_pred}``,
  ``box_head/{fc6,fc7}`` (fc6's input in torch's (C, 7, 7) flatten order),
  ``box_predictor/{cls_score,bbox_pred}``, ``mask_head/mask_fcn{i}`` ->
  ``roi_heads.mask_head.{i-1}.0``, ``mask_predictor/{conv5_mask,mask_logits}``.
  Box-delta outputs are reordered from torchvision's (dx, dy, dw, dh) to ours
  and the transposed conv's (I, O, kh, kw) weight to ours.
  """
  names = {}
  body = {c: v['backbone'] for c, v in variables.items() if 'backbone' in v}
  for path, key in torchvision_resnet_names(body).items():
    collection, rest = path.split('/', 1)
    names[f'{collection}/backbone/{rest}'] = f'backbone.body.{key}'
  params = variables['params']
  for path in flat_paths({'params': {k: v for k, v in params.items() if k != 'backbone'}}):
    _, top, *mods, leaf = path.split('/')
    attr = _leaf_name('params', leaf, path)
    if top in _RCNN_NUMBERED and len(mods) == 1 and (m := _RCNN_NUMBERED[top].match(mods[0])):
      prefix = (f'backbone.fpn.{m[1]}.{m[2]}.0' if top == 'fpn'
                else f'roi_heads.mask_head.{int(m[1]) - 1}.0')
    elif len(mods) == 1 and (top, mods[0]) in _RCNN_MODULES:
      prefix = _RCNN_MODULES[top, mods[0]]
    else:
      raise ValueError(f'variable {path!r} has no torchvision name in a two-stage detector; '
                       'pass your own names mapping to load_into.')
    layout = ('deltas' if mods[0] == 'bbox_pred' else
              'conv_transpose' if mods[0] == 'conv5_mask' and leaf == 'kernel' else None)
    chw = None
    if (top, mods[0]) == ('box_head', 'fc6') and leaf == 'kernel':
      c = params['fpn']['layer_blocks_0']['kernel'].shape[-1] if 'fpn' in params else None
      if c is None:
        raise ValueError('torchvision names exist for the FPN detectors only (fc6 follows a '
                         'flatten of the FPN channels); pass your own names mapping.')
      side = math.isqrt(params['box_head']['fc6']['kernel'].shape[0] // c)
      chw = (c, side, side)
    key = f'{prefix}.{attr}'
    names[path] = TorchKey(key, chw, layout) if chw or layout else key
  return names


# --------------------------------------------------------------------------- layouts

def _chw(key: str) -> tuple[int, int, int] | None:
  return getattr(key, 'chw', None)


def _layout(key: str) -> str | None:
  return getattr(key, 'layout', None)


def _delta_order(n: int) -> np.ndarray:
  """The (self-inverse) permutation of n outputs between torchvision's and our delta order."""
  return (np.arange(n).reshape(-1, 4)[:, _DELTA_SWAP]).reshape(-1)


def to_torch_layout(ours: np.ndarray, key: str = '') -> np.ndarray:
  """Our layout -> torch's (a C-contiguous copy for 2-D and 4-D arrays).

  HWIO ``(kh, kw, I, O)`` -> OIHW ``(O, I, kh, kw)``; dense ``(in, out)`` ->
  ``(out, in)``, where a ``key`` with ``chw = (C, H, W)`` also reorders ``in``
  from our (H, W, C) flatten order to torch's (C, H, W). Others are returned as is.
  """
  ours = np.asarray(ours)
  if _layout(key) == 'deltas':  # output axis: last of ours
    ours = ours[..., _delta_order(ours.shape[-1])]
  if ours.ndim == 4 and _layout(key) == 'conv_transpose':
    return np.ascontiguousarray(ours.transpose(2, 3, 0, 1))
  if ours.ndim == 4:
    return np.ascontiguousarray(ours.transpose(3, 2, 0, 1))
  if ours.ndim == 2 and (chw := _chw(key)) is not None:
    c, h, w = chw
    d_out = ours.shape[1]
    return ours.reshape(h, w, c, d_out).transpose(3, 2, 0, 1).reshape(d_out, c * h * w)
  if ours.ndim == 2:
    return np.ascontiguousarray(ours.T)
  return ours


def from_torch_layout(theirs: np.ndarray, key: str = '') -> np.ndarray:
  """Torch's layout -> ours, the inverse of :func:`to_torch_layout` (possibly a view)."""
  theirs = np.asarray(theirs)
  if _layout(key) == 'deltas':  # output axis: first of theirs
    theirs = theirs[_delta_order(theirs.shape[0])]
  if theirs.ndim == 4 and _layout(key) == 'conv_transpose':
    return theirs.transpose(2, 3, 0, 1)
  if theirs.ndim == 4:
    return theirs.transpose(2, 3, 1, 0)
  if theirs.ndim == 2 and (chw := _chw(key)) is not None:
    c, h, w = chw
    d_out = theirs.shape[0]
    return theirs.reshape(d_out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, d_out)
  if theirs.ndim == 2:
    return theirs.T
  return theirs


def _torch_shape(shape: tuple[int, ...], key: str = '') -> tuple[int, ...]:
  if len(shape) == 4 and _layout(key) == 'conv_transpose':
    return (shape[2], shape[3], shape[0], shape[1])
  if len(shape) == 4:
    return (shape[3], shape[2], shape[0], shape[1])
  if len(shape) == 2:
    return (shape[1], shape[0])
  return tuple(shape)


# --------------------------------------------------------------------------- load / export

def unused_keys(flat: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
  """File keys no variable maps to (``num_batches_tracked`` excluded), sorted."""
  used = {str(v) for v in names.values()}
  return sorted(k for k in flat if k not in used and not k.endswith(_IGNORED_SUFFIXES))


def load_into(variables: Variables, flat: Mapping[str, np.ndarray], names: Mapping[str, str], *,
              strict: bool = True) -> Variables:
  """Returns ``variables`` with every mapped leaf replaced by the converted file array.

  Args:
    variables: the template pytree; its leaves may be arrays or
      ``jax.ShapeDtypeStruct`` (e.g. from ``jax.eval_shape(model.init, ...)``),
      and only their shapes and dtypes are used for mapped leaves.
    flat: ``{file_key: array}`` in torch layout, e.g. from :func:`load_flat`.
    names: ``{our_path: file_key}``, e.g. from :func:`torchvision_resnet_names`;
      a :class:`TorchKey` with ``chw`` marks a linear layer after a flatten.
    strict: a mapped key missing from ``flat`` is an error; with ``False`` the
      leaf keeps its value (an abstract leaf stays abstract).

  Returns:
    A new pytree of the same structure; replaced leaves are ``jax.Array`` in
    the template leaf's dtype. File keys nothing maps to (other than
    ``num_batches_tracked``) are reported with a ``UserWarning``; see
    :func:`unused_keys`.

  Raises:
    ValueError: a path in ``names`` is not a variable; a file array's shape
      does not match (after layout conversion) the variable's; or, with
      ``strict``, keys are missing from the file.
  """
  paths = flat_paths(variables)
  unknown = sorted(set(names) - set(paths))
  if unknown:
    raise ValueError(f'names maps {len(unknown)} path(s) that are not variables of this model, '
                     f'e.g. {unknown[:3]}; build the mapping from these variables.')
  missing = [f'{key} (for {path})' for path, key in names.items() if key not in flat]
  if missing and strict:
    raise ValueError(f'{len(missing)} key(s) missing from the weights file, e.g. '
                     f'{missing[:5]}; check the model/depth, or pass strict=False to keep them.')
  new = {}
  for path, key in names.items():
    if key not in flat:
      continue
    leaf = paths[path]
    want = tuple(leaf.shape)
    theirs = np.asarray(flat[key])
    expected = _torch_shape(want, key)
    chw = _chw(key)
    if theirs.shape != expected or (chw is not None and math.prod(chw) != want[0]):
      extra = f' with chw={chw}' if chw is not None else ''
      raise ValueError(f'shape mismatch for {path} <- {key!r}{extra}: file has {theirs.shape}, '
                       f'expected {expected} (ours {want}); is the model built with the same '
                       'depth/width/num_classes? Drop the key from names to keep ours.')
    # device_put, not jnp.asarray: the latter compiles a program per shape (about 20 ms each).
    new[path] = jax.device_put(from_torch_layout(theirs, key).astype(leaf.dtype, copy=False))
  unused = unused_keys(flat, names)
  if unused:
    warnings.warn(f'{len(unused)} key(s) of the weights file were not loaded, e.g. '
                  f'{unused[:5]}.', stacklevel=2)
  leaves, treedef = jax.tree_util.tree_flatten(variables)
  return jax.tree_util.tree_unflatten(
      treedef, [new.get(path, leaf) for path, leaf in zip(paths, leaves)])


def export_flat(variables: Variables, names: Mapping[str, str]) -> Flat:
  """The inverse of :func:`load_into`: ``{file_key: numpy array in torch layout}``.

  Write it with :func:`save_flat` (or load it into torch with
  ``model.load_state_dict({k: torch.from_numpy(v) ...}, strict=False)``;
  ``num_batches_tracked`` is not exported).
  """
  paths = flat_paths(variables)
  unknown = sorted(set(names) - set(paths))
  if unknown:
    raise ValueError(f'names maps {len(unknown)} path(s) that are not variables of this model, '
                     f'e.g. {unknown[:3]}; build the mapping from these variables.')
  out = {}
  for path, key in names.items():
    leaf = paths[path]
    if isinstance(leaf, jax.ShapeDtypeStruct):
      raise ValueError(f'cannot export abstract variable {path!r}; pass concrete arrays.')
    out[str(key)] = to_torch_layout(np.asarray(jax.device_get(leaf)), key)
  return out


# --------------------------------------------------------------------------- by model name

_FAMILIES = {'resnet': torchvision_resnet_names, 'vgg': torchvision_vgg_names,
             'alexnet': torchvision_alexnet_names, 'googlenet': torchvision_googlenet_names,
             'inception_v3': torchvision_inception_v3_names,
             'faster_rcnn': torchvision_rcnn_names, 'mask_rcnn': torchvision_rcnn_names}


def names_for(model_name: str, variables: Variables) -> dict[str, str]:
  """The torchvision name mapping for a registry model name (``resnet*``, ``vgg*``, ...)."""
  for prefix, fn in _FAMILIES.items():
    if model_name.startswith(prefix):
      return fn(variables)
  raise ValueError(f'no torchvision weight mapping for model {model_name!r}; supported: '
                   f'{", ".join(p + "*" for p in _FAMILIES)}.')


def load_pretrained(model_name: str, variables: Variables, path: str | os.PathLike, *,
                    strict: bool = True) -> Variables:
  """Loads a torchvision-layout ``.safetensors``/``.npz`` file into ``variables``.

  Args:
    model_name: registry name, e.g. ``'resnet50'``, ``'vgg16_bn'``, ``'alexnet'``.
    variables: the model's variables (arrays or ``jax.ShapeDtypeStruct``).
    path: the weights file (see :func:`load_flat`).
    strict: see :func:`load_into`.

  Returns:
    The new variables pytree.
  """
  names = names_for(model_name, variables)
  return load_into(variables, load_flat(path), names, strict=strict)
