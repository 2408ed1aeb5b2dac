"""Files written beside their target and renamed over it: a reader (or a crash) never
sees half a file. Shared caches and run records use this (concurrent runs, killed runs)."""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from collections.abc import Callable
from typing import BinaryIO


def write_atomically(path: pathlib.Path, write: Callable[[BinaryIO], None]) -> None:
  """Calls ``write(f)`` on a temporary file beside ``path``, then renames it to ``path``.

  The file is readable by others (mkstemp's 0600 would keep a shared cache or a
  run's record from them); on any failure the temporary file is removed.
  """
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{path.stem}.', suffix='.tmp', dir=path.parent)
  try:
    with os.fdopen(fd, 'wb') as f:
      write(f)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    pathlib.Path(tmp).unlink(missing_ok=True)
    raise


def write_json(path: pathlib.Path, data: dict) -> None:
  """``data`` as indented, key-sorted JSON, written atomically."""
  text = json.dumps(data, indent=1, sort_keys=True)
  write_atomically(path, lambda f: f.write(text.encode()))
