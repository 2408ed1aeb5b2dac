r"""ResNet-50 on an ImageNet-style image folder, streamed with grain.

  python -m cnn_jax.main --config=configs/resnet50_imagenet.py \
      --config.data.root=/data/imagenet --workdir=workdirs/r50

Standard recipe (Goyal et al. 2017): SGD momentum 0.9, lr 0.1 x batch/256 with
5 warmup epochs then cosine, weight decay 1e-4 on kernels, label smoothing 0.1,
90 epochs, bfloat16 compute with float32 parameters. Images are decoded and
resized to 224x224 by grain worker threads; augmentation (flip, zoom, shift)
runs on device. Arg: ``epochs=90``, ``batch=256``.

Result: not run here (no ImageNet copy; a GPU/TPU pod slice is the target).
"""

import ml_collections

from cnn_jax.train.config import default_config, parse_arg


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = parse_arg(arg, {'epochs': 90.0, 'batch': 256})
  c = default_config()
  c.model.name = 'resnet50'
  c.dtype = 'bfloat16'
  c.data.name = 'image_folder'
  c.data.streaming = True
  c.data.train_split = 'train'
  c.data.eval_split = 'val'
  c.data.image_size = 224
  c.data.mean, c.data.std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
  c.batch_size = args['batch']
  c.eval_batch_size = 256
  c.num_steps = 0
  c.num_epochs = args['epochs']
  c.log_every = 100
  c.optimizer.name = 'momentum'
  c.optimizer.lr = 0.1 * args['batch'] / 256
  c.optimizer.weight_decay = 1e-4
  c.optimizer.label_smoothing = 0.1
  c.schedule.name = 'cosine'
  c.schedule.warmup_steps = 5 * 1_281_167 // args['batch']
  c.augment.flip = True
  c.augment.zoom = 0.15
  c.augment.shift = 0.1
  return c
