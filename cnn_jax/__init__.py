"""cnn_jax: a functional JAX research codebase for convolutional networks."""

from cnn_jax import xla_defaults

# Before any computation starts XLA's backend, which reads XLA_FLAGS once.
xla_defaults.apply()

__version__ = '0.1.0'
