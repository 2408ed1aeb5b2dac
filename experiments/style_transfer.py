r"""Neural style transfer (Gatys et al. 2015): optimise an image's pixels with optax.

  python -m experiments.style_transfer --config=configs/style_transfer.py --out_dir=workdirs/style
  python -m experiments.style_transfer --config=configs/style_transfer.py:size=256,steps=500 \
      --config.content=photo.jpg --config.style=painting.jpg \
      --config.weights=vgg19.safetensors --out_dir=workdirs/style_photo

Features are VGG-19's (``cnn_jax.models.VGG(depth=19, include_top=False)``).
With ``--config.weights`` they are torchvision's ImageNet weights, loaded by
``cnn_jax.models.weights`` from a file made with::

    import torchvision, safetensors.torch
    m = torchvision.models.vgg19(weights='IMAGENET1K_V1')
    safetensors.torch.save_file(m.state_dict(), 'vgg19.safetensors')

Without weights the network is randomly initialised (He-normal, fixed seed):
random deep features still carry texture statistics (Ustyuzhaninov et al.
2016; He, Wang & Hopcroft 2016), so the command always runs, but the result
is rougher than with trained features. Writes ``content.png``, ``style.png``,
``step_XXXXX.png`` every ``save_every`` steps, ``output.png`` (the content
image's size), ``losses.png`` and ``losses.json``.
"""

from __future__ import annotations

import json
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from cnn_jax.data.image_folder import decode_image
from cnn_jax.dtypes import standard_promotion
from cnn_jax.models import get_model
from cnn_jax.models import weights as weights_lib
from cnn_jax.models.introspect import activations
from cnn_jax.ops import losses
from experiments.edges import scene

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------- images

def style_texture(size: int, seed: int = 0) -> np.ndarray:
  """A (size, size, 3) float32 [0, 1] texture of bold, coloured diagonal strokes."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  img = np.zeros((size, size, 3), np.float32)
  palette = np.array([[0.95, 0.75, 0.1], [0.1, 0.25, 0.7], [0.9, 0.2, 0.15], [0.05, 0.05, 0.1]],
                     np.float32)
  for k in range(4):
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(6, 14)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase
                  + 2.0 * np.sin(9.0 * yy + k))
    img += np.clip(wave, 0, 1)[..., None] * palette[k]
  return np.clip(img, 0, 1)


def load_rgb(path: str) -> np.ndarray:
  """(H, W, 3) float32 in [0, 1]; a one-line error for a missing or corrupt file."""
  if not pathlib.Path(path).is_file():
    raise FileNotFoundError(f'image {path!r} does not exist; pass an existing PNG/JPEG file.')
  return decode_image(path, None, 3).astype(np.float32) / 255.0


def resize(img: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
  from PIL import Image
  if img.shape[:2] == tuple(hw):
    return img
  pil = Image.fromarray(np.clip(np.round(img * 255), 0, 255).astype(np.uint8))
  return np.asarray(pil.resize((hw[1], hw[0]), Image.Resampling.BICUBIC),
                    np.float32) / 255.0


def working_size(hw: tuple[int, int], longest: int) -> tuple[int, int]:
  """``hw`` scaled so that its longest side is ``longest`` (at least 32 px each side)."""
  scale = longest / max(hw)
  return tuple(max(32, int(round(s * scale))) for s in hw)  # type: ignore[return-value]


def save_png(img: np.ndarray, path: pathlib.Path) -> None:
  from PIL import Image
  Image.fromarray(np.clip(np.round(np.asarray(img) * 255), 0, 255).astype(np.uint8)).save(path)


# ----------------------------------------------------------------------------- features

def vgg19_features(weights: str = '', seed: int = 0,
                   conv_impl: str = 'lax') -> tuple[Any, Any]:
  """``(model, variables)``: VGG-19 without classifier, torchvision weights or random."""
  model = get_model('vgg19', include_top=False, conv_impl=conv_impl)
  variables = model.init(jax.random.key(seed), jnp.zeros((1, 32, 32, 3)))
  if weights:
    flat = {k: v for k, v in weights_lib.load_flat(weights).items()
            if k.startswith('features.')}
    variables = weights_lib.load_pretrained('vgg19', variables, weights) if not flat else \
        weights_lib.load_into(variables, flat, weights_lib.names_for('vgg19', variables))
  return model, variables


def make_feature_fn(model, layers: Sequence[str]) -> Callable[[Any, jax.Array], dict]:
  """``(variables, image (H, W, 3) in [0, 1]) -> {layer: ReLU activations (1, h, w, c)}``."""
  mean, std = jnp.asarray(IMAGENET_MEAN), jnp.asarray(IMAGENET_STD)

  def features(variables: Any, image: jax.Array) -> dict:
    x = ((image - mean) / std)[None]
    return {k: jax.nn.relu(v) for k, v in activations(model, variables, x, layers).items()}

  return features


def compute_targets(features: Callable, variables: Any, content: jax.Array, style: jax.Array,
                    cfg: Any) -> dict:
  """The content layer's activations of ``content`` and the style layers' of ``style``."""
  c, s = features(variables, content), features(variables, style)
  return {'content': c[cfg.content_layer], 'style': {l: s[l] for l in cfg.style_layers}}


def make_loss(features: Callable, cfg: Any) -> Callable[..., tuple[jax.Array, dict]]:
  """``J(generated, variables, targets) -> (total, parts)``.

  ``targets`` (from :func:`compute_targets`) must come from a style image of
  the generated image's size: the course's normalisation of the Gram cost
  assumes one ``nH nW`` for both. Network and targets are arguments, not
  closures, so that jit does not bake (and constant-fold) them into the program.
  """
  style_layers = tuple(cfg.style_layers)
  # .get: configs written before content_norm existed meant the default normalisation.
  content_norm = cfg.get('content_norm', '4hwc')
  if content_norm not in losses.CONTENT_NORMS:  # here, not at the first traced step
    raise ValueError(f'content_norm={content_norm!r} is not valid; choose one of '
                     f'{", ".join(losses.CONTENT_NORMS)}.')

  def loss(gen: jax.Array, variables: Any, targets: dict) -> tuple[jax.Array, dict]:
    feats = features(variables, gen)
    j_content = losses.content_loss(targets['content'], feats[cfg.content_layer],
                                    norm=content_norm)
    j_style = losses.style_loss([(targets['style'][l], feats[l]) for l in style_layers])
    j_tv = losses.total_variation(gen)
    total = cfg.content_weight * j_content + cfg.style_weight * j_style + cfg.tv_weight * j_tv
    return total, {'total': total, 'content': j_content, 'style': j_style, 'tv': j_tv}

  return loss


def make_optimizer(cfg: Any, loss: Callable) -> tuple[Callable, Callable]:
  """``(init, step)``: ``init(image) -> opt_state`` and
  ``step(image, opt_state, variables, targets) -> (image, opt_state, parts)``.

  Adam steps are projected back into [0, 1]; L-BFGS (``optax.lbfgs`` with its
  zoom line search) runs unconstrained and the image is clipped when saved.
  ``init`` gives every state leaf a fixed dtype: the line search's initial
  state holds weakly typed scalars that its first update makes strong, and the
  jitted step would otherwise compile a second time at step 2 (optax#1108).
  """
  if cfg.optimizer == 'adam':
    tx = optax.adam(cfg.lr)

    @jax.jit
    def step(image, opt_state, variables, targets):
      (_, parts), grad = jax.value_and_grad(loss, has_aux=True)(image, variables, targets)
      with standard_promotion():
        updates, opt_state = tx.update(grad, opt_state, image)
      return jnp.clip(optax.apply_updates(image, updates), 0.0, 1.0), opt_state, parts
  elif cfg.optimizer == 'lbfgs':
    tx = optax.lbfgs()

    @jax.jit
    def step(image, opt_state, variables, targets):
      value = lambda g: loss(g, variables, targets)[0]
      with standard_promotion():
        total, grad = optax.value_and_grad_from_state(value)(image, state=opt_state)
        updates, opt_state = tx.update(grad, opt_state, image, value=total, grad=grad,
                                       value_fn=value)
      image = optax.apply_updates(image, updates)
      return image, opt_state, loss(image, variables, targets)[1]
  else:
    raise ValueError(f"optimizer={cfg.optimizer!r} is not valid; choose 'adam' or 'lbfgs'.")

  def init(image: jax.Array) -> Any:
    return jax.tree.map(lambda x: jnp.asarray(x, x.dtype), tx.init(image))

  return init, step


def initial_image(content: np.ndarray, noise: float, seed: int) -> jax.Array:
  rng = np.random.default_rng(seed)
  return jnp.asarray((1 - noise) * content + noise * rng.uniform(0, 1, content.shape),
                     jnp.float32)


def plot_losses(history: list[dict], path: pathlib.Path) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  steps = [h['step'] for h in history]
  for key in ('total', 'content', 'style', 'tv'):
    values = [h[key] for h in history]
    if any(v > 0 for v in values):
      ax.plot(steps, values, label=key)
  ax.set_yscale('log')
  ax.set_xlabel('step')
  ax.set_ylabel('loss (unweighted parts)')
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def run(cfg: Any, out_dir: str | pathlib.Path, *, quiet: bool = False) -> dict:
  """Runs the optimisation; returns ``{'first': parts, 'last': parts, 'output': path, ...}``."""
  from tqdm import tqdm
  out = pathlib.Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  for key in ('steps', 'size'):
    if cfg[key] <= 0:
      raise ValueError(f'{key} must be positive, got {cfg[key]}.')
  content_full = load_rgb(cfg.content) if cfg.content else scene(cfg.size)
  hw = working_size(content_full.shape[:2], cfg.size)
  content = resize(content_full, hw)
  style_full = load_rgb(cfg.style) if cfg.style else style_texture(max(hw), cfg.seed)
  style = resize(style_full, hw)
  save_png(content, out / 'content.png')
  save_png(style, out / 'style.png')

  model, variables = vgg19_features(cfg.weights, cfg.seed, cfg.conv_impl)
  layers = tuple(dict.fromkeys((cfg.content_layer, *cfg.style_layers)))
  features = make_feature_fn(model, layers)
  targets = jax.jit(lambda v, c, s: compute_targets(features, v, c, s, cfg))(
      variables, jnp.asarray(content), jnp.asarray(style))
  init, step = make_optimizer(cfg, make_loss(features, cfg))
  image = initial_image(content, cfg.noise, cfg.seed)
  opt_state = init(image)

  history, t0 = [], time.perf_counter()
  bar = tqdm(range(1, cfg.steps + 1), disable=quiet, desc='style transfer')
  for i in bar:
    image, opt_state, parts = step(image, opt_state, variables, targets)
    parts = {k: float(v) for k, v in parts.items()}
    if not np.isfinite(parts['total']):
      raise FloatingPointError(f'loss became {parts["total"]} at step {i}; lower --config.lr '
                               'or the loss weights.')
    history.append({'step': i, **parts})
    bar.set_postfix(loss=f"{parts['total']:.4g}")
    if cfg.save_every and i % cfg.save_every == 0:
      save_png(np.clip(image, 0, 1), out / f'step_{i:05d}.png')
  seconds = time.perf_counter() - t0
  result_img = resize(np.clip(np.asarray(image), 0, 1), content_full.shape[:2])
  save_png(result_img, out / 'output.png')
  plot_losses(history, out / 'losses.png')
  summary = {'first': history[0], 'last': history[-1], 'seconds': seconds,
             'working_size': list(hw), 'output_size': list(result_img.shape[:2]),
             'weights': cfg.weights or 'random', 'optimizer': cfg.optimizer,
             'conv_impl': cfg.conv_impl,
             'output': str(out / 'output.png')}
  (out / 'losses.json').write_text(json.dumps({'summary': summary, 'history': history},
                                              indent=1) + '\n')
  return summary


def summary_line(summary: dict) -> str:
  f, l = summary['first'], summary['last']
  return (f"loss {f['total']:.4g} -> {l['total']:.4g} (content {l['content']:.4g}, style "
          f"{l['style']:.4g}) in {summary['seconds']:.1f} s at {summary['working_size']}; "
          f"weights: {summary['weights']}; wrote {summary['output']}")


if __name__ == '__main__':
  from experiments.cli import run_script
  run_script('configs/style_transfer.py', lambda cfg, d, quiet: run(cfg, d, quiet=quiet),
             summary_line, dir_flag='out_dir')
