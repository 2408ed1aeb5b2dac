"""cnn_jax.train.xla_cache: the environment's folder and threshold win over the arguments."""

import jax
import pytest

from cnn_jax.train.xla_cache import enable_compilation_cache


@pytest.fixture
def restore_cache_config():
  keys = ('jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs')
  saved = {k: getattr(jax.config, k) for k in keys}
  yield
  for k, v in saved.items():
    jax.config.update(k, v)


def test_arguments_then_environment_win(monkeypatch, tmp_path, restore_cache_config):
  monkeypatch.delenv('CNN_JAX_COMPILATION_CACHE', raising=False)
  monkeypatch.delenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', raising=False)
  monkeypatch.setenv('HOME', str(tmp_path))
  assert enable_compilation_cache() == str(tmp_path / '.cache' / 'cnn_jax' / 'xla')
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 1.0
  assert enable_compilation_cache(str(tmp_path / 'mine'), min_compile_secs=0.5) == str(
      tmp_path / 'mine')
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'mine')
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.5
  # The environment wins over what an experiment asks for.
  monkeypatch.setenv('CNN_JAX_COMPILATION_CACHE', str(tmp_path / 'env'))
  monkeypatch.setenv('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
  assert enable_compilation_cache(str(tmp_path / 'mine'), min_compile_secs=0.5) == str(
      tmp_path / 'env')
  assert jax.config.jax_compilation_cache_dir == str(tmp_path / 'env')
  assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
