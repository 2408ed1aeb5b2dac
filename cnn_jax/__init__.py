"""cnn_jax: a functional JAX research codebase for convolutional networks."""

__version__ = '0.1.0'
