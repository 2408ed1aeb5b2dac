"""``conv_impl='auto'``: per layer shape, the impl that measured fastest on this backend.

The first time a layer shape is traced, :func:`choose` compiles the layer's
forward + backward (the VJP for input and kernel: the training cost) with
every candidate impl, times a few calls of each on random inputs, and records
the fastest in a JSON file; later traces, in this process or another, read the
choice back without measuring. The entry's key names the backend and device
kind, the op, input and kernel shapes, dtype, stride, padding (normalised),
dilation and groups; the value keeps the measured milliseconds next to the
choice, so the file is a small benchmark record too. Edit an entry's
``"impl"`` and it is obeyed (a test checks this).

The cache is ``$CNN_JAX_CONV_AUTO_CACHE`` when set, else
``$CNN_JAX_CACHE/conv_auto.json`` or ``~/.cache/cnn_jax/conv_auto.json``. It
is the one place in :mod:`cnn_jax.ops` with I/O and timing. When no candidate
can be measured, 'lax' is used (and nothing is recorded); an unreadable cache
file counts as empty and is rewritten.

The choice happens at trace time (shapes are static under ``jit``), with
compiled executables called on NumPy inputs, so it works inside ``jit`` and
``grad``. Measurement takes one compilation per candidate per new
shape (a few seconds for a ResNet on CPU), once per cache file; timing noise
can make two runs of an empty cache choose differently where impls are close.
``precision`` is not part of the key.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable, Sequence

import jax
import numpy as np

from cnn_jax.atomic_files import write_json
from cnn_jax.timing import interleaved_ms

REPEATS = 3
FALLBACK = 'lax'
_ENV = 'CNN_JAX_CONV_AUTO_CACHE'


def cache_path() -> pathlib.Path:
  """``$CNN_JAX_CONV_AUTO_CACHE``, else ``$CNN_JAX_CACHE`` or ``~/.cache/cnn_jax``, + conv_auto.json."""
  if os.environ.get(_ENV):
    return pathlib.Path(os.environ[_ENV]).expanduser()
  base = os.environ.get('CNN_JAX_CACHE')
  return (pathlib.Path(base).expanduser() if base else
          pathlib.Path.home() / '.cache' / 'cnn_jax') / 'conv_auto.json'


def read_cache(path: pathlib.Path | None = None) -> dict:
  """The cache's entries ``{key: {'impl', 'ms', ...}}``; {} when missing or unreadable."""
  path = path or cache_path()
  try:
    data = json.loads(path.read_text())
  except (OSError, ValueError):
    return {}
  return data if isinstance(data, dict) else {}


def _write_entry(path: pathlib.Path, key: str, entry: dict) -> None:
  """Adds one entry, re-reading the file first; replaced atomically (concurrent runs)."""
  write_json(path, {**read_cache(path), key: entry})


def _device() -> str:
  """``backend/device kind``, the first field of every key."""
  dev = jax.devices()[0]
  return f'{jax.default_backend()}/{getattr(dev, "device_kind", dev.platform)}'.replace(' ', '')


def cache_key(op: str, x_shape: Sequence[int], w_shape: Sequence[int], dtype, **geometry) -> str:
  """``backend/device|op|x=..|w=..|dtype|name=value...``: what a choice depends on."""
  parts = [_device(), op, 'x=' + 'x'.join(map(str, x_shape)),
           'w=' + 'x'.join(map(str, w_shape)), np.dtype(dtype).name]
  parts += [f'{k}={v}' for k, v in sorted(geometry.items())]
  return '|'.join(parts).replace(' ', '')


def device_entries(path: pathlib.Path | None = None) -> dict:
  """The cache's entries for this backend and device kind (choices with their timings)."""
  prefix = _device() + '|'
  return {k: v for k, v in read_cache(path).items() if k.startswith(prefix)}


def _random(shape, dtype, seed):
  return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def measure(make_fn: Callable[[str], Callable], x_shape, w_shape, dtype,
            candidates: Sequence[str], repeats: int = REPEATS) -> dict[str, float]:
  """Median milliseconds of forward + VJP per candidate; candidates that fail are left out.

  ``make_fn(impl)`` is the layer as a function of ``(x, w)``. Programs are
  compiled ahead of time from shapes and called on NumPy arrays, so nothing
  here is staged into a trace that may be running.
  """
  dtype = np.dtype(dtype)
  x, w = _random(x_shape, dtype, 0), _random(w_shape, dtype, 1)
  spec = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)
  programs = {}
  for impl in candidates:
    try:
      f = make_fn(impl)
      ct = _random(jax.eval_shape(f, spec(x), spec(w)).shape, dtype, 2)
      step = jax.jit(lambda x, w, ct, f=f: jax.vjp(f, x, w)[1](ct))
      prog = step.lower(spec(x), spec(w), spec(ct)).compile()
      jax.block_until_ready(prog(x, w, ct))  # warm-up
      programs[impl] = (prog, ct)
    except Exception:  # noqa: BLE001 -- e.g. out of memory: that impl is not a candidate
      continue
  return interleaved_ms({impl: lambda prog=prog, ct=ct: prog(x, w, ct)
                        for impl, (prog, ct) in programs.items()}, repeats)


def choose(op: str, make_fn: Callable[[str], Callable], x_shape, w_shape, dtype,
           candidates: Sequence[str], **geometry) -> str:
  """The cached impl for this layer, else the fastest measured one (recorded), else 'lax'."""
  path = cache_path()
  key = cache_key(op, x_shape, w_shape, dtype, **geometry)
  entry = read_cache(path).get(key)
  if isinstance(entry, dict) and entry.get('impl') in candidates:
    return entry['impl']
  times = measure(make_fn, x_shape, w_shape, dtype, candidates)
  if not times:
    return FALLBACK
  best = min(times, key=times.get)
  _write_entry(path, key, {'impl': best, 'ms': {k: round(v, 4) for k, v in times.items()},
                           'measured': 'forward + vjp, median of %d' % REPEATS})
  return best
