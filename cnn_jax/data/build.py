"""From ``config.data`` to an in-memory split: the one place that picks a loader."""

from __future__ import annotations

from typing import Any

from cnn_jax.data.dataset import ArrayDataset, few_shot, select_classes

# Text corpora (tokenised documents; a vocabulary of the train split turns them into ids):
# read by load_text_split for task text_classification. data.name='tfds' with a text set
# (imdb_reviews) is text too when that task asks.
TEXT_DATASETS = ('synthetic_sentiment', 'text_folder')


def load_split(data: Any, split: str, *, seed: int = 0,
               wants: tuple[str, ...] = ()) -> ArrayDataset:
  """Loads ``split`` of ``config.data``, restricted to ``data.classes`` if set.

  ``data.examples_per_class`` (> 0) then keeps that many per class of the
  train split only (the eval split stays whole).

  Args:
    data: the ``config.data`` ConfigDict (see :mod:`cnn_jax.train.config`).
    split: split name, e.g. ``data.train_split``.
    seed: the synthetic set's generation seed and the few-shot draw's seed.
    wants: the annotations the task reads, ``'boxes'``, ``'masks'`` and/or
      ``'instance_masks'`` (a task's ``wants``): what a reader of annotated
      data loads (VOC's detection or segmentation lists; tfds detection or
      segmentation sets; one mask per box from COCO and the synthetic scenes).
  """
  return restrict(_load(data, split, seed, tuple(wants)), data, split, seed)


def restrict(ds: ArrayDataset, data: Any, split: str, seed: int = 0) -> ArrayDataset:
  """``ds`` cut to ``data.classes`` and (train split) ``data.examples_per_class``."""
  if data.get('classes'):
    ds = select_classes(ds, tuple(data.classes))
  if data.get('examples_per_class', 0) > 0 and split == data.train_split:
    ds = few_shot(ds, int(data.examples_per_class), seed)
  return ds


def load_text_split(data: Any, split: str, *, seed: int = 0, text_key: str = 'text',
                    label_key: str = 'label'):
  """Tokenised documents of ``split`` (a :class:`cnn_jax.data.text.TextSplit`).

  ``data.name``: ``synthetic_sentiment`` (``data.num_train`` / ``num_eval``
  reviews generated from ``seed``), ``text_folder`` (``data.root/<split>/<class>/*.txt``)
  or ``tfds`` (a prepared text set, ``data.tfds_name='imdb_reviews'``, its
  ``text_key`` / ``label_key`` features). ``data.skip_corrupt`` skips
  non-UTF-8 and empty reviews instead of stopping at the first.
  """
  from cnn_jax.data import text
  if data.name == 'synthetic_sentiment':
    is_train = split == data.train_split
    return text.synthetic_sentiment(data.num_train if is_train else data.num_eval, seed=seed,
                                    train=is_train)
  if data.name == 'text_folder':
    return text.read_text_folder(data.root, split, skip_corrupt=data.skip_corrupt)
  if data.name == 'tfds':
    return text.read_tfds_text(data.tfds_name, split, data_dir=data.data_dir or None,
                               text_key=text_key, label_key=label_key,
                               skip_corrupt=data.skip_corrupt)
  raise ValueError(f'data.name={data.name!r} is not text; text_classification reads '
                   f'{", ".join(TEXT_DATASETS)} or tfds (e.g. --config.data.name=tfds '
                   '--config.data.tfds_name=imdb_reviews).')


def _load(data: Any, split: str, seed: int, wants: tuple[str, ...]) -> ArrayDataset:
  if data.name in TEXT_DATASETS:
    raise ValueError(f'data.name={data.name!r} is text: train it with task text_classification '
                     '(configs/text_cnn.py), not an image task.')
  if data.name == 'synthetic':
    from cnn_jax.data.synthetic import load_synthetic
    is_train = split == data.train_split
    return load_synthetic('train' if is_train else 'test',
                          num_examples=data.num_train if is_train else data.num_eval,
                          image_size=data.image_size, num_classes=data.num_classes, seed=seed,
                          objects_per_image=_objects(data.get('objects_per_image', (1, 1))),
                          instance_masks=data.instance_masks or 'instance_masks' in wants)
  if data.name == 'synthetic_faces':
    from cnn_jax.data.synthetic import load_faces
    is_train = split == data.train_split
    return load_faces('train' if is_train else 'test',
                      num_examples=data.num_train if is_train else data.num_eval,
                      image_size=data.image_size, seed=seed)
  if data.name == 'synthetic_captions':
    from cnn_jax.data.captions import load_synthetic_captions
    is_train = split == data.train_split
    return load_synthetic_captions('train' if is_train else 'test',
                                   num_examples=data.num_train if is_train else data.num_eval,
                                   image_size=data.image_size, num_classes=data.num_classes,
                                   seed=seed, objects_per_image=_objects(data.objects_per_image))
  if data.name == 'coco_captions':
    from cnn_jax.data.captions import load_coco_captions
    return load_coco_captions(data.root, split, ann_file=_ann_file(data, split) or None,
                              image_size=int(data.image_size), channels=data.channels,
                              skip_corrupt=data.skip_corrupt)
  if data.name == 'image_folder':
    from cnn_jax.data.packed import load_images  # a folder, or a pack file of one
    return load_images(data.root, split, image_size=data.image_size or None,
                       channels=data.channels, cache_dir=data.cache_dir or None,
                       skip_corrupt=data.skip_corrupt, num_workers=data.num_workers or None)
  common = dict(image_size=int(data.image_size), max_boxes=int(data.max_boxes),
                channels=data.channels, skip_corrupt=data.skip_corrupt)
  if data.name == 'coco':
    from cnn_jax.data.coco import load_coco
    return load_coco(data.root, split, ann_file=_ann_file(data, split) or None,
                     masks='masks' in wants,
                     instance_masks=data.instance_masks or 'instance_masks' in wants, **common)
  if data.name == 'voc':
    from cnn_jax.data.voc import load_voc
    return load_voc(data.root, split, segmentation='masks' in wants and 'boxes' not in wants,
                    **common)
  if data.name == 'mask_folder':
    from cnn_jax.data.mask_folder import load_mask_folder
    return load_mask_folder(data.root, split, **common)
  if data.name == 'landmark_folder':
    from cnn_jax.data.landmark_folder import load_landmark_folder
    return load_landmark_folder(data.root, split, image_size=int(data.image_size),
                                channels=data.channels, skip_corrupt=data.skip_corrupt)
  if data.name == 'tfds' and wants:
    from cnn_jax.data.tfds_annotated import load_tfds_annotated
    return load_tfds_annotated(data.tfds_name, split, data_dir=data.data_dir or None,
                               wants=wants, **common)
  if data.name == 'tfds':
    from cnn_jax.data.tfds import load_tfds
    return load_tfds(data.tfds_name, split, data_dir=data.data_dir or None,
                     image_size=data.image_size or None, channels=data.channels)
  raise ValueError(f"unknown data.name {data.name!r}; choose synthetic, synthetic_faces, "
                   "image_folder, tfds, coco, voc, mask_folder, landmark_folder, "
                   "synthetic_captions or coco_captions (text: synthetic_sentiment, "
                   "text_folder).")


def _ann_file(data: Any, split: str) -> str:
  return data.train_ann if split == data.train_split else data.eval_ann


def open_stream_source(data: Any, split: str):
  """A random-access source for streaming ``split`` (``config.data.streaming``)."""
  from cnn_jax.data import stream
  from cnn_jax.data.packed import is_pack
  if data.name == 'image_folder' and is_pack(data.root):
    raise ValueError(f'data.streaming reads image folders, not the pack file {data.root}; set '
                     '--config.data.streaming=False (a pack is decoded into memory).')
  if data.name == 'image_folder':
    return stream.ImageFolderSource(data.root, split, data.image_size or None,
                                    data.channels, skip_corrupt=data.skip_corrupt)
  if data.name == 'tfds':
    return stream.TfdsSource(data.tfds_name, split, data_dir=data.data_dir or None,
                             image_size=data.image_size or None, channels=data.channels)
  raise ValueError(f'data.streaming supports image_folder and tfds, not {data.name!r}; '
                   'set --config.data.streaming=False.')


def _objects(value) -> int | tuple[int, int]:
  """``data.objects_per_image`` as ``load_synthetic`` takes it (JSON gives lists)."""
  return value if isinstance(value, int) else tuple(int(v) for v in value)
