r"""Train and evaluate one experiment config.

  python -m cnn_jax.main --config=configs/synthetic_cnn.py --workdir=workdirs/synthetic
  python -m cnn_jax.main --config=configs/resnet_cifar.py:depth=56,plain=True \
      --config.data.root=../shared/data/cifar10-jpeg --config.optimizer.lr=0.05 \
      --workdir=workdirs/plain56

Bad input (an unknown config key or value, an unknown model or dataset, a
missing data folder, a NaN loss) ends with one line on stderr that names the
problem and the fix, and exit status 2 (1 for a diverged run; 143 after SIGTERM,
once a checkpoint is saved: the same command resumes).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from cnn_jax.train.config import load_config, unknown_key_error
from cnn_jax.train.gc_tuning import tune_gc
from cnn_jax.train.loop import NonFiniteLossError, Preempted, train_and_evaluate
from cnn_jax.train.xla_cache import enable_compilation_cache

_CONFIG = config_flags.DEFINE_config_file(
    'config', None, 'Experiment config file, optionally with an argument: FILE[:ARG].',
    lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and metrics.')
_QUIET = flags.DEFINE_bool('quiet', False, 'No progress bar.')


def fail(message: str, code: int = 2):
  print(f'error: {message}', file=sys.stderr)
  sys.exit(code)


def one_line(error: BaseException) -> str:
  """The line of an exception that names the problem, without tracebacks."""
  # AttributeError(KeyError(...)) shows the repr of a string: undo its escapes.
  text = str(error).replace('\\n', '\n').replace("\\'", "'")
  if len(text) > 1 and text[0] == text[-1] and text[0] in '"\'':
    text = text[1:-1]
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if any(line.startswith('Traceback') for line in lines):
    return lines[-1]  # config files that raise are reported with their traceback inside
  return ' '.join(lines)


def main(argv) -> None:
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}; pass options as --flag=value.')
  try:
    config = _CONFIG.value
    if config is not None:
      config.keys()  # the flag loads lazily: surface a missing or broken file here
  except OSError as e:
    name = config_flags.get_config_filename(flags.FLAGS['config'])
    if not os.path.exists(name):
      fail(f'config file {name!r} does not exist; pass --config=configs/NAME.py[:ARG].')
    fail(f'cannot load config file {name!r}: {one_line(e)}')
  if config is None or not _WORKDIR.value:
    fail('both --config=configs/NAME.py[:ARG] and --workdir=DIR are required.')
  logging.set_verbosity(logging.WARNING)
  enable_compilation_cache()
  tune_gc()
  try:
    result = train_and_evaluate(config, _WORKDIR.value, quiet=_QUIET.value)
  except NonFiniteLossError as e:
    fail(str(e), code=1)
  except Preempted as e:
    fail(str(e), code=143)  # 128 + SIGTERM: schedulers read it as "requeue me"
  except (ValueError, FileNotFoundError, NotADirectoryError, KeyError) as e:
    fail(one_line(e))
  tr = result['train']
  print(f"final eval {result['summary']} after {result['steps']} steps; best "
        f"{result['headline']} at step {result['best_step']}; train "
        f"{tr.get('img_per_sec', 0):.0f} img/s, compile {result['compile_s']:.1f} s; outputs "
        f"in {_WORKDIR.value}")


def unknown_key_message(argv: list[str]) -> str | None:
  """Names the first ``--config.a.b=...`` override whose key the config lacks.

  Returns e.g. ``unknown config key 'optimizer.lrr'; did you mean 'optimizer.lr'?
  valid keys of optimizer: b1, b2, ...``, or None if no override is at fault.
  """
  spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if spec is None:
    return None
  path, _, arg = spec.partition(':')
  try:
    config = load_config(path, arg or None)
  except Exception:  # noqa: BLE001 - the file's own error is reported elsewhere
    return None
  for a in argv:
    if not a.startswith('--config.'):
      continue
    message = unknown_key_error(config, a[len('--config.'):].split('=', 1)[0])
    if message:
      return message
  return None


def _parse_flags(argv: list[str]) -> list[str]:
  # absl reports flag errors (e.g. an unknown --config.key) with a long usage
  # text; keep the line that names the problem.
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    fail(one_line(e))
  except (AttributeError, KeyError) as e:  # an override of a key the config lacks
    fail(unknown_key_message(argv) or f'unknown config key {one_line(e)}.')


def run() -> None:
  app.run(main, flags_parser=_parse_flags)


if __name__ == '__main__':
  run()
