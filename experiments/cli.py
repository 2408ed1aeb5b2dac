"""The command lines shared by the experiment scripts.

    python -m experiments.speedrun --config=configs/cifar_speedrun.py[:ARG] --workdir=DIR
    python -m experiments.detect report WORKDIR [--which best|latest] [--pictures N]

Config-driven scripts call :func:`run_script` and report scripts over a
trained run call :func:`report_main`, both under ``if __name__ == '__main__'``
(so importing a script, in tests or notebooks, defines no flags that could
clash with ``cnn_jax.main``'s). Bad input ends with one ``error: ...`` line
and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from cnn_jax.train.gc_tuning import tune_gc

# What a script's run() raises for bad input, as opposed to a bug.
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)


def exit_code(action: Callable[[], Any]) -> int:
  """Runs ``action()``: 0, or 2 after one ``error: ...`` line when it raises a user error."""
  try:
    action()
  except USER_ERRORS as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


def run_script(config_file: str, run: Callable[[Any, str, bool], Any],
               report: Callable[[Any], str], *, dir_flag: str = 'workdir') -> None:
  """Parses ``--config``, ``--<dir_flag>`` and ``--quiet``, runs, prints ``report(result)``.

  Args:
    config_file: the default config path shown in ``--help``, e.g. 'configs/detect.py'.
    run: ``(config, out_dir, quiet) -> result``.
    report: the summary printed on success.
    dir_flag: the output folder's flag name.
  """
  from absl import app, flags
  from ml_collections import config_flags
  config = config_flags.DEFINE_config_file('config', None, f'{config_file}[:ARG]',
                                           lock_config=True)
  out_dir = flags.DEFINE_string(dir_flag, None, 'output folder')
  quiet = flags.DEFINE_bool('quiet', False, 'no progress bar')

  def main(argv):
    del argv
    if config.value is None or not out_dir.value:
      print(f'error: both --config={config_file} and --{dir_flag}=DIR are required.',
            file=sys.stderr)
      sys.exit(2)
    tune_gc()
    code = exit_code(lambda: print(report(run(config.value, out_dir.value, quiet.value))))
    if code:
      sys.exit(code)

  app.run(main)


def report_main(doc: str, report: Callable[[argparse.Namespace], str],
                argv: list[str] | None = None) -> int:
  """``report WORKDIR [--which best|latest] [--pictures N]``: prints ``report(args)``."""
  parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  rep = sub.add_parser('report', help='evaluate a trained run, write results and pictures')
  rep.add_argument('workdir', help='the --workdir of a cnn_jax.main run')
  rep.add_argument('--which', default='best', choices=('best', 'latest'),
                   help='checkpoint to evaluate (default: best by the task headline metric)')
  rep.add_argument('--pictures', type=int, default=8, help='examples drawn')
  args = parser.parse_args(argv)
  return exit_code(lambda: print(report(args)))
