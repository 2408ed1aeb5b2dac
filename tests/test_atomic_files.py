"""Atomic writes: the old file survives a failed write, no temporary is left, others may read."""

import json
import stat

import pytest

from cnn_jax.atomic_files import write_atomically, write_json


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
  path = tmp_path / 'deep' / 'record.json'
  write_json(path, {'b': 1, 'a': [2]})
  assert json.loads(path.read_text()) == {'a': [2], 'b': 1}
  assert stat.S_IMODE(path.stat().st_mode) == 0o644

  def half_then_fail(f):
    f.write(b'{"a": ')
    raise OSError('disk full')

  with pytest.raises(OSError, match='disk full'):
    write_atomically(path, half_then_fail)
  assert json.loads(path.read_text()) == {'a': [2], 'b': 1}
  assert [p.name for p in path.parent.iterdir()] == ['record.json']
