"""Classic edge filters on a generated scene, written as one PNG panel.

  python -m experiments.edges --out out/edges.png [--image photo.jpg] [--impl einsum] \
      [--combine sum]

Without ``--image`` it draws a deterministic scene (a disc, a square and a
triangle on a shaded background), so it runs offline with no data. Each panel
is ``cnn_jax.ops.edge_detect`` with one kernel (VALID padding, so no border artefacts); the signed responses use a
diverging colour map, the Sobel/Scharr magnitudes a sequential one. ``--combine sum``
draws Sobel/Scharr as the course does, the vertical and horizontal responses added
(signed, so with the diverging map) instead of the gradient magnitude (the default).
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

from cnn_jax.ops import filters


def scene(size: int = 128) -> np.ndarray:
  """A (size, size, 3) float32 RGB image in [0, 1] with sharp-edged shapes."""
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  img = np.stack([0.2 + 0.3 * xx, 0.25 + 0.2 * yy, 0.35 * np.ones_like(xx)], axis=-1)
  disc = (xx - 0.3) ** 2 + (yy - 0.32) ** 2 < 0.18 ** 2
  square = (np.abs(xx - 0.7) < 0.15) & (np.abs(yy - 0.3) < 0.15)
  triangle = (yy > 0.55) & (yy < 0.9) & (np.abs(xx - 0.5) < (yy - 0.55))
  for mask, colour in ((disc, (0.95, 0.3, 0.2)), (square, (0.2, 0.8, 0.3)),
                       (triangle, (0.95, 0.9, 0.2))):
    img[mask] = colour
  return img


def load_image(path: str) -> np.ndarray:
  from PIL import Image, UnidentifiedImageError
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert('RGB'), np.float32) / 255.0
  except FileNotFoundError:
    raise SystemExit(f'error: image {path!r} does not exist; pass an existing --image file.')
  except (UnidentifiedImageError, OSError) as e:
    raise SystemExit(f'error: cannot decode image {path!r} ({e}); pass a PNG or JPEG file.')


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description='Edge detection demo (cnn_jax.ops.edge_detect).')
  p.add_argument('--out', default='out/edges.png', help='PNG file to write')
  p.add_argument('--image', default=None, help='optional RGB image; default: a generated scene')
  p.add_argument('--impl', default='lax', choices=('lax', 'einsum'), help='conv implementation')
  p.add_argument('--combine', default='magnitude', choices=filters.COMBINES,
                 help="sobel/scharr panels: 'magnitude' sqrt(gx^2 + gy^2) (default) or "
                      "'sum' gx + gy (the course's added responses)")
  args = p.parse_args(argv)

  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt


  img = scene() if args.image is None else load_image(args.image)
  panels = [('input', img, None)]
  for kind in filters.EDGE_KINDS:
    pair = kind in ('sobel', 'scharr')
    combine = args.combine if pair else 'magnitude'  # single kernels have nothing to combine
    edges = np.asarray(filters.edge_detect(img, kind, impl=args.impl, combine=combine))
    title = f'{kind} (gx + gy)' if pair and combine == 'sum' else kind
    # Magnitudes are non-negative (sequential map); signed responses, sums included, diverge.
    panels.append((title, edges, 'magma' if pair and combine == 'magnitude' else 'RdBu'))

  fig, axes = plt.subplots(3, 3, figsize=(9, 9))
  for ax, (title, data, cmap) in zip(axes.flat, panels):
    if cmap == 'RdBu':  # symmetric limits keep zero response white
      lim = float(np.abs(data).max()) or 1.0
      ax.imshow(data, cmap=cmap, vmin=-lim, vmax=lim)
    else:
      ax.imshow(data, cmap=cmap)
    ax.set_title(title)
    ax.axis('off')
  fig.suptitle(f'cnn_jax.ops.edge_detect (impl={args.impl}, combine={args.combine})')
  fig.tight_layout()
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(out, dpi=80)
  print(f'wrote {out} ({len(panels) - 1} edge maps of a {img.shape[0]}x{img.shape[1]} image)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
