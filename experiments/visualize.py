r"""Visualise what a trained classifier learned (Zeiler & Fergus style), from its workdir.

  python -m cnn_jax.main --config=configs/synthetic_cnn.py --workdir=workdirs/synthetic_cnn
  python -m experiments.visualize --workdir workdirs/synthetic_cnn \
      [--out-dir DIR] [--layers conv1,conv3] [--units 0,1,2,3,4,5] [--image 0] [--top-k 8] \
      [--deconv-layer conv3] [--deconv-units 6] [--deconv-location max|all]

Reads ``config.json`` and the checkpoint (``--which latest|best``) of any
``cnn_jax.main`` run and its eval split, and writes to ``--out-dir`` (default
``WORKDIR/visualize``):

* ``filters.png``: the first conv layer's kernels;
* ``activations_<layer>.png``: every channel of each layer for one input;
* ``top_patches_<layer>.png``: per unit (row), the eval-set crops that
  activate it most, each cropped to the unit's receptive field (computed from
  the architecture by ``cnn_jax.models.introspect.receptive_field``);
* ``saliency.png``: the input and |d logit / d input| for its true class;
* ``occlusion.png``: the input and the true-class probability with a grey
  patch at each position;
* ``deconvnet.png``: the input, its saliency map and, for the
  ``--deconv-units`` channels of ``--deconv-layer`` (default: the last of
  ``--layers``) most active on it, Zeiler & Fergus's deconvnet projection
  back to pixels (:mod:`cnn_jax.models.deconvnet`; grey is zero) of the
  channel's strongest unit (``--deconv-location max``, the paper's) or of its
  whole map (``all``);
* ``visualize.json``: layers, receptive fields, prediction.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data import augment
from cnn_jax.models import deconvnet, explain, introspect
from cnn_jax.train.restore import load_run


def _nested(tree: dict, path: str):
  for key in path.split('/'):
    tree = tree[key]
  return tree


def first_kernel(params: dict, layer_names: list[str]) -> tuple[str, np.ndarray]:
  """The first (in call order) 4-D conv kernel: ``(layer, (kh, kw, C_in, C_out))``."""
  for name in layer_names:
    try:
      sub = _nested(params, name)
    except (KeyError, TypeError):
      continue
    for path, leaf in jax.tree_util.tree_flatten_with_path(sub)[0]:
      if getattr(path[-1], 'key', None) == 'kernel' and np.ndim(leaf) == 4:
        return name, np.asarray(leaf)
  raise ValueError('the model has no 4-D conv kernel to show.')


def _save(img: np.ndarray, path: pathlib.Path, scale: int = 4) -> None:
  from PIL import Image
  img = np.clip(np.asarray(img, np.float32), 0, 1)
  arr = (img * 255).round().astype(np.uint8)
  pil = Image.fromarray(arr if arr.ndim == 2 or arr.shape[-1] == 3 else arr[..., 0])
  pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST).save(path)


def _norm01(x: np.ndarray) -> np.ndarray:
  x = np.asarray(x, np.float32)
  return (x - x.min()) / max(float(x.max() - x.min()), 1e-12)


def _side_by_side(image: np.ndarray, heat: np.ndarray, path: pathlib.Path, title: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, (a, b) = plt.subplots(1, 2, figsize=(6, 3))
  a.imshow(image)
  a.set_title('input')
  im = b.imshow(heat, cmap='inferno')
  b.set_title(title)
  fig.colorbar(im, ax=b, fraction=0.046)
  for ax in (a, b):
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _signed01(p: np.ndarray) -> np.ndarray:
  """A signed projection in [0, 1] with zero at 0.5 (its largest |value| at 0 or 1)."""
  p = np.asarray(p, np.float32)
  return np.clip(0.5 + 0.5 * p / max(float(np.abs(p).max()), 1e-12), 0, 1)


def _deconv_figure(image: np.ndarray, heat: np.ndarray, projections: np.ndarray,
                   titles: list[str], path: pathlib.Path, sal_title: str) -> None:
  """Input, saliency map and one panel per projection (H, W, C), 4 panels a row."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  n = 2 + len(projections)
  cols = min(4, n)
  rows = -(-n // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.5 * rows), squeeze=False)
  axes = axes.ravel()
  axes[0].imshow(image)
  axes[0].set_title('input', fontsize=9)
  axes[1].imshow(heat, cmap='inferno')
  axes[1].set_title(sal_title, fontsize=9)
  for ax, p, title in zip(axes[2:], projections, titles):
    shown = _signed01(p)
    ax.imshow(shown if shown.shape[-1] == 3 else shown[..., 0], cmap='gray', vmin=0, vmax=1)
    ax.set_title(title, fontsize=9)
  for ax in axes:
    ax.axis('off')
  fig.tight_layout()
  fig.savefig(path, dpi=80)
  plt.close(fig)


def run(workdir: str | pathlib.Path, out_dir: str | pathlib.Path | None = None, *,
        layers: list[str] | None = None, units: list[int] | None = None, image: int = 0,
        top_k: int = 8, which: str = 'latest', max_images: int = 2000,
        deconv_layer: str | None = None, deconv_units: int = 6,
        deconv_location: str = 'max') -> dict:

  workdir = pathlib.Path(workdir)
  run_ = load_run(workdir, which)
  out = pathlib.Path(out_dir) if out_dir else workdir / 'visualize'
  out.mkdir(parents=True, exist_ok=True)
  config, model, variables = run_.config, run_.model, run_.variables
  data = run_.eval.take(np.arange(min(len(run_.eval), max_images)))
  if not 0 <= image < len(data):
    raise ValueError(f'--image {image} is out of range; the eval split has {len(data)} images.')
  inputs = np.asarray(augment.normalize(jnp.asarray(data.images), tuple(config.data.mean),
                                        tuple(config.data.std)))
  pictures = data.images.astype(np.float32) / 255.0
  if pictures.shape[-1] == 1:
    pictures = np.repeat(pictures, 3, axis=-1)
  h, w = data.images.shape[1:3]

  rows = introspect.summary(model, (1, h, w, data.images.shape[-1]), print_table=False)
  spatial = [r.name for r in rows if len(r.output_shape) == 4 and '/' not in r.name]
  if layers is None:
    layers = list(dict.fromkeys([spatial[0], spatial[len(spatial) // 2], spatial[-1]]))
  deconv_layer = deconv_layer or layers[-1]
  unknown = [l for l in dict.fromkeys([*layers, deconv_layer]) if l not in spatial]
  if unknown:
    raise ValueError(f'layers {unknown} are not spatial layers of {config.model.name}; '
                     f'choose from {spatial}.')

  kernel_layer, kernel = first_kernel(variables['params'], [r.name for r in rows])
  _save(explain.filter_grid(kernel), out / 'filters.png', scale=8)

  x = jnp.asarray(inputs[image:image + 1])
  maps = introspect.activations(model, variables, x, layers)
  apply_fn = lambda v: model.apply(variables, v, train=False)
  logits = np.asarray(apply_fn(x))[0]
  label = int(data.labels[image])
  fields = {}
  for layer in layers:
    a = np.asarray(maps[layer][0])
    _save(explain.tile(np.stack([_norm01(a[..., c]) for c in range(a.shape[-1])]), pad_value=1.0),
          out / f'activations_{layer}.png', scale=4)
    try:
      field = introspect.receptive_field(model, variables, layer, input_hw=(h, w),
                                         channels=data.images.shape[-1])
    except ValueError:  # too large for this input size: the whole image
      field = introspect.ReceptiveField((h, w), (1, 1), (0, 0))
    fields[layer] = field
    chosen = units if units is not None else list(range(min(6, a.shape[-1])))
    crops = explain.top_patches(model, variables, inputs, pictures, layer, chosen, field,
                                k=top_k)
    side = max(c.shape[0] for unit in crops for c in unit)
    padded = [np.pad(c, ((0, side - c.shape[0]), (0, side - c.shape[1]), (0, 0)),
                     constant_values=1.0) for unit in crops for c in unit]
    _save(explain.tile(np.stack(padded), cols=top_k), out / f'top_patches_{layer}.png',
          scale=max(1, 96 // side))
  _, sal = explain.saliency(apply_fn, x, jnp.asarray([label]))
  _side_by_side(pictures[image], sal[0], out / 'saliency.png', f'saliency, class {label}')
  occ = explain.occlusion(apply_fn, inputs[image], label, patch=max(4, h // 8),
                          stride=max(2, h // 16))
  _side_by_side(pictures[image], occ, out / 'occlusion.png', f'p(class {label}), occluded')
  # Deconvnet: the channels of deconv_layer most active on this image, each
  # projected from its strongest position (raises for a non-chain model).
  chain = deconvnet.read_chain(model, variables, deconv_layer, x)
  fmap = np.asarray(introspect.activations(model, variables, x, [deconv_layer])[deconv_layer][0])
  strength = fmap.max(axis=(0, 1))
  top = [int(c) for c in np.argsort(-strength, kind='stable')[:deconv_units]]
  if deconv_location not in ('max', 'all'):
    raise ValueError(f"--deconv-location must be 'max' or 'all', got {deconv_location!r}.")
  projections = deconvnet.project_units(model, variables, x, deconv_layer, top, chain=chain,
                                        location=deconv_location)[0]
  _deconv_figure(pictures[image], sal[0], projections,
                 [f'{deconv_layer} ch {c}, a={strength[c]:.2f}' for c in top],
                 out / 'deconvnet.png', f'saliency, class {label}')
  summary = {
      'model': config.model.name, 'filters_from': kernel_layer, 'layers': layers,
      'receptive_fields': {l: {'size': f.size, 'stride': f.stride, 'offset': f.offset}
                           for l, f in fields.items()},
      'image': image, 'label': label, 'predicted': int(np.argmax(logits)),
      'deconvnet': {'layer': deconv_layer, 'location': deconv_location, 'units': top,
                    'activations': [round(float(strength[c]), 4) for c in top]},
      'files': sorted(p.name for p in out.glob('*.png')),
  }
  (out / 'visualize.json').write_text(json.dumps(summary, indent=2) + '\n')
  return summary


def main(argv=None) -> int:
  p = argparse.ArgumentParser(prog='python -m experiments.visualize', description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True, help='a cnn_jax.main run directory')
  p.add_argument('--out-dir', default=None)
  p.add_argument('--layers', default=None, help='comma list of module names')
  p.add_argument('--units', default=None, help='comma list of channels for top patches')
  p.add_argument('--image', type=int, default=0, help='eval image to explain')
  p.add_argument('--top-k', type=int, default=8)
  p.add_argument('--which', default='latest', choices=('latest', 'best'))
  p.add_argument('--deconv-layer', default=None,
                 help='layer whose top units the deconvnet projects (default: last of --layers)')
  p.add_argument('--deconv-units', type=int, default=6, help='how many top units to project')
  p.add_argument('--deconv-location', default='max', choices=('max', 'all'),
                 help="project each channel's strongest unit (max) or its whole map (all)")
  args = p.parse_args(argv)
  try:
    summary = run(args.workdir, args.out_dir,
                  layers=args.layers.split(',') if args.layers else None,
                  units=[int(u) for u in args.units.split(',')] if args.units else None,
                  image=args.image, top_k=args.top_k, which=args.which,
                  deconv_layer=args.deconv_layer, deconv_units=args.deconv_units,
                  deconv_location=args.deconv_location)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(json.dumps(summary, indent=2))
  return 0


if __name__ == '__main__':
  sys.exit(main())
