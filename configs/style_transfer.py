r"""Neural style transfer (Gatys et al. 2015) with VGG-19 features.

  # offline: a generated content scene and a generated style texture, random-weight VGG-19
  python -m experiments.style_transfer --config=configs/style_transfer.py --out_dir=workdirs/style
  # your images, with torchvision's VGG-19 weights saved as safetensors (see README)
  python -m experiments.style_transfer --config=configs/style_transfer.py \
      --config.content=photo.jpg --config.style=starry_night.jpg \
      --config.weights=vgg19.safetensors --config.size=384 --out_dir=workdirs/style_photo

J = content_weight * J_content(conv4_2) + style_weight * sum_l lambda_l J_style(l)
    + tv_weight * TV, with lambda_l = 1/5 for conv1_1, conv2_1, conv3_1, conv4_1,
conv5_1 and the course's normalisations (cnn_jax.ops.losses; ``content_norm='half'``
for the lecture's J_content = 1/2 ||a_C - a_G||^2). Activations are
taken after each conv's ReLU. The generated image starts from the content
image plus uniform noise and is optimised in [0, 1] pixel space.

Arg: none, or ``size=N,steps=N``.

Result (2026-11-24, 2-core CPU dev machine, jax 0.10.2, defaults: generated
inputs, random-weight VGG-19, 128x128, 300 Adam steps): J 99,823 -> 561 (style
cost 2.49 -> 0.0102) in 58 s; the palette and a fine texture transfer, the
strokes do not (random features).
"""

import ml_collections

from cnn_jax.train.config import parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, {'size': 128, 'steps': 300})
  c = ml_collections.ConfigDict()
  c.content = ''               # image file; '' = a generated synthetic scene
  c.style = ''                 # image file; '' = a generated colour-stroke texture
  c.weights = ''               # torchvision VGG-19 .safetensors/.npz; '' = random weights
  c.size = a['size']           # longest side while optimising; the output has the content's size
  c.steps = a['steps']
  c.optimizer = 'adam'         # 'adam' | 'lbfgs'
  c.lr = 0.03                  # Adam, in [0, 1] pixel units
  # VGG's convolutions (cnn_jax.ops.conv.IMPL_CHOICES). 40 L-BFGS steps at 128 px, whose
  # line search runs VGG's gradient inside a while loop (2026-12-07, 2-core Xeon, compiles
  # included): 'lax' 12.8 s ('lax' before its gradients were made canonical convolutions:
  # 24.6 s; benchmarks/README.md, conv_in_loop.py), 'einsum' 15.1-18.4 s.
  c.conv_impl = 'lax'
  c.content_layer = 'conv4_2'
  # J_content's normalisation (cnn_jax.ops.losses.content_loss): '4hwc' divides the sum of
  # squares by 4 nH nW nC (the course's exercise); 'half' is 1/2 ||a_C - a_G||^2 (the
  # course's lecture, Gatys et al. eq. 1), 2 nH nW nC times larger (at conv4_2 of a
  # 128x128 image 2 * 16 * 16 * 512): divide content_weight by that to keep the balance.
  c.content_norm = '4hwc'
  c.style_layers = ('conv1_1', 'conv2_1', 'conv3_1', 'conv4_1', 'conv5_1')
  # alpha, beta: beta is tuned by eye for the random-weight fallback, whose
  # style cost is tiny next to its content cost; with trained weights
  # (--config.weights) start from the course's --config.style_weight=40.
  c.content_weight = 10.0      # alpha
  c.style_weight = 4e4         # beta
  c.tv_weight = 0.01
  c.noise = 0.1                # init = (1 - noise) * content + noise * uniform
  c.save_every = 50            # intermediate images; 0 = final only
  c.seed = 0
  return c
