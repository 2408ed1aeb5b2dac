r"""Classification with localisation (the course's y = [p_c, b_x, b_y, b_h, b_w, c_1, c_2, c_3]).

  python -m cnn_jax.main --config=configs/localise.py --workdir=workdirs/localise
  python -m cnn_jax.main --config=configs/localise.py:loss=course --workdir=workdirs/localise_course
  python -m experiments.localise report workdirs/localise     # localisation.png

Synthetic 64x64 scenes with one object of 3 kinds (disc, square, triangle)
or none (``data.objects_per_image = (0, 1)``: half are background, the
course's ``p_c = 0``). Task ``localisation``: the model (``regressor``: the
small CNN's last 8x8 feature map, flattened so it keeps where things are,
then a 128-unit dense layer) predicts the 8-vector; ``loss=course`` is the
course's squared error exactly as written, ``loss=modern`` BCE for ``p_c``,
CE for the class and L1 + (1 - IoU) for the box. The headline,
``accuracy_iou50``, counts an image right when a background image gets
"no object" and an object gets its class and a box of IoU >= 0.5.
Real boxes: ``--config.data.name=coco|voc|tfds ...`` (each image's largest object).

Args: ``steps=1500,loss='modern'|'course'``.

Result (2026-12-06, 2-core AMD EPYC, jax 0.10.2, the commands above, CPU shared with
other jobs), 500 test scenes of which 257 hold an object, best checkpoint = the last:

  loss=modern: accuracy at IoU >= 0.5 0.992, accuracy 0.992, class accuracy 0.984,
               mean IoU 0.879, presence accuracy 1.000 (194 s wall)
  loss=course: accuracy at IoU >= 0.5 0.886, accuracy 0.992, class accuracy 0.984,
               mean IoU 0.631, presence accuracy 1.000 (657 s wall, CPU busier)
"""

import ml_collections

from cnn_jax.train.config import default_config, parse_arg
from configs.detect import adam_recipe


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  a = parse_arg(arg, {'steps': 1500, 'loss': 'modern'})
  c = default_config('localisation')
  c.task.loss = a['loss']
  c.model.name = 'regressor'
  c.model.kwargs = ml_collections.ConfigDict({
      'backbone': 'simple_cnn', 'backbone_kwargs': {'widths': (16, 32, 64)}, 'hidden': 128})
  c.data.name = 'synthetic'
  c.data.image_size = 64
  c.data.num_classes = 3
  c.data.objects_per_image = (0, 1)
  c.data.num_train = 4000
  c.data.num_eval = 500
  adam_recipe(c, a['steps'])
  c.augment.flip = True           # boxes are flipped with the pixels
  return c
