r"""LeNet-5 (the course's version: ReLU, max pooling) on MNIST, padded to 32x32.

  python -m cnn_jax.main --config=configs/lenet5_mnist.py \
      --config.data.data_dir=~/tensorflow_datasets --workdir=workdirs/lenet5_mnist

Data: tfds 'mnist' read with tfds.data_source (no TensorFlow). It must already
be prepared in data.data_dir (``tfds build mnist`` on a machine with network);
``data=folder`` reads an image folder (root/train/<digit>/*.png) instead.
Args: ``data='tfds'|'folder'``, ``classic=False`` (tanh + average pooling).

Result: not run here (no MNIST copy on this machine; tests use tfds mock data).
"""

import ml_collections

from cnn_jax.train.config import default_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, {'data': 'tfds', 'classic': False})
  c = default_config()
  c.model.name = 'lenet5_classic' if args['classic'] else 'lenet5'
  if args['data'] == 'tfds':
    c.data.name = 'tfds'
    c.data.tfds_name = 'mnist'
  else:
    c.data.name = 'image_folder'
  c.data.image_size = 32
  c.data.channels = 1
  c.data.mean, c.data.std = (0.1307,), (0.3081,)
  c.batch_size = 128
  c.num_steps = 0
  c.num_epochs = 5.0
  c.log_every = 100
  c.optimizer.name = 'adam'
  c.optimizer.lr = 1e-3
  c.optimizer.weight_decay = 0.0
  c.schedule.name = 'cosine'
  return c
