r"""Face landmark detection: regress eyes, nose tip and mouth corners (K = 5 (x, y) points).

  python -m cnn_jax.main --config=configs/landmarks.py --workdir=workdirs/landmarks
  python -m experiments.localise report workdirs/landmarks     # landmarks.png
  # your own images: DIR/<split>/landmarks.csv (image,<name>_x,<name>_y,...) beside them
  python -m cnn_jax.main --config=configs/landmarks.py --config.data.name=landmark_folder \
      --config.data.root=DIR --config.task.names="('left_eye','right_eye',...)" \
      --config.task.flip_pairs="((0,1),)" --workdir=workdirs/landmarks_own

Synthetic 64x64 faces (``data.name='synthetic_faces'``): an ellipse of random
size, colour, position and roll on a textured background, with eyes, a nose
and a mouth whose positions inside the face vary too, so the 10 numbers must
be read off the pixels. Task ``landmarks``: the model (``regressor``: the
small CNN's 8x8 map flattened, a 128-unit dense layer, 10 outputs) is
trained with L1 error on the normalised coordinates (``loss=l2``: squared); a flip mirrors
``x`` and swaps left/right eyes and mouth corners. Metrics: NME over the
inter-ocular distance (the headline, lower is better) and PCK@0.05 / 0.1 of
the face box size.

Args: ``steps=1500,loss='l1'|'l2'``.

Result (2026-12-06, 2-core AMD EPYC, jax 0.10.2, the first command, CPU shared with
other jobs), 500 test faces, best checkpoint = the last: NME 0.134 (inter-ocular),
PCK@0.05 0.731, PCK@0.1 0.977 (368 s wall). ``loss=l2``: NME 0.208, PCK@0.05 0.442,
PCK@0.1 0.861 (595 s wall, CPU busier).
"""

import ml_collections

from cnn_jax.train.config import default_config, parse_arg
from configs.detect import adam_recipe


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, {'steps': 1500, 'loss': 'l1'})
  c = default_config('landmarks')
  c.task.loss = a['loss']
  c.model.name = 'regressor'
  c.model.kwargs = ml_collections.ConfigDict({
      'backbone': 'simple_cnn', 'backbone_kwargs': {'widths': (16, 32, 64)}, 'hidden': 128})
  c.data.name = 'synthetic_faces'
  c.data.image_size = 64
  c.data.num_train = 4000
  c.data.num_eval = 500
  adam_recipe(c, a['steps'])
  c.augment.flip = True           # landmarks are mirrored and left/right pairs swapped
  return c
