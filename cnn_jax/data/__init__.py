"""Datasets and input pipelines: synthetic shapes, image folders, tfds, grain streams.

Loaders import their heavy dependencies (Pillow, tensorflow_datasets, grain)
lazily, so ``import cnn_jax.data`` stays light.
"""

from cnn_jax.data.dataset import ArrayDataset
