"""cnn_jax.xla_defaults: XLA:CPU flags placed before the user's XLA_FLAGS, never over them."""

import os

import pytest

from cnn_jax import xla_defaults

FLAG = xla_defaults.DEFAULTS[0].split('=', 1)[0]


def test_defaults_go_before_the_users_flags():
  assert xla_defaults.with_defaults('') == ' '.join(xla_defaults.DEFAULTS)
  assert xla_defaults.with_defaults('--xla_dump_to=/tmp/d') == (
      ' '.join(xla_defaults.DEFAULTS) + ' --xla_dump_to=/tmp/d')  # XLA: the later flag wins


def test_a_flag_the_user_names_is_left_to_the_user():
  mine = f'{FLAG}=individual_dot --xla_force_host_platform_device_count=2'
  assert xla_defaults.with_defaults(mine) == mine
  once = xla_defaults.with_defaults('')
  assert xla_defaults.with_defaults(once) == once  # applying twice adds nothing


def test_apply_edits_the_environment_unless_switched_off(monkeypatch):
  monkeypatch.setattr(xla_defaults, 'MEASURED_ON', ('',))  # any jaxlib
  env = {'XLA_FLAGS': '--xla_dump_to=/tmp/d'}
  assert xla_defaults.apply(env) == env['XLA_FLAGS']
  assert env['XLA_FLAGS'].endswith('--xla_dump_to=/tmp/d') and FLAG in env['XLA_FLAGS']
  off = {'XLA_FLAGS': '--xla_dump_to=/tmp/d', xla_defaults.SWITCH: '0'}
  assert xla_defaults.apply(off) == '--xla_dump_to=/tmp/d'
  assert xla_defaults.apply({xla_defaults.SWITCH: '0'}) == ''
  monkeypatch.setattr(xla_defaults, 'MEASURED_ON', ('0.0.',))  # an unmeasured jaxlib: untouched
  assert xla_defaults.apply({'XLA_FLAGS': '--xla_dump_to=/tmp/d'}) == '--xla_dump_to=/tmp/d'


@pytest.mark.skipif(not xla_defaults.measured_jaxlib(), reason='defaults not measured here')
def test_importing_cnn_jax_applied_them_to_this_process():
  # conftest set the device-count flag before cnn_jax was imported; both are there.
  flags = os.environ['XLA_FLAGS']
  assert FLAG in flags and '--xla_force_host_platform_device_count' in flags
