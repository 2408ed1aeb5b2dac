r"""Transfer learning: feature extraction, partial freezing and fine-tuning vs from scratch.

A CIFAR ResNet learns classes 0-4 with all their images (the source task), then
classes 5-9 with only ``--shots`` labelled images per class (the target task)
in four ways (``configs/transfer.py``):

  scratch   random init (the baseline)
  features  (a) frozen backbone (BN statistics too), new head
  partial   (b) stem + first stage frozen, the rest trained at lr x 0.1
  finetune  (c) all trained from the source weights at lr x 0.1

  # synthetic shapes (offline, about 2 minutes on 2 CPU cores)
  python -m experiments.transfer run --out-dir workdirs/transfer
  # CIFAR-10: classes 0-4 -> 5-9 (airplane..deer -> dog..truck)
  python -m experiments.transfer run --out-dir workdirs/transfer_cifar \
      --data folder --data-root ../shared/data/cifar10-jpeg --pretrain-steps 2000
  python -m experiments.transfer report workdirs/transfer

Writes ``results.json`` and ``results.md`` (accuracy on the target task's
whole test split, mean +- std over ``--seeds`` few-shot draws). Finished runs
are skipped when the command is repeated.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import jax.numpy as jnp

from cnn_jax.train import transfer
from cnn_jax.train.config import load_config
from cnn_jax.train.loop import build_model
from cnn_jax.train.xla_cache import enable_compilation_cache
from experiments.cli import exit_code
from experiments.sweep import mean_std, run_or_skip

MODES = ('scratch', 'features', 'partial', 'finetune')
DESCRIPTIONS = {
    'scratch': 'from scratch (random init)',
    'features': '(a) feature extraction: backbone frozen, new head',
    'partial': '(b) stem + stage 1 frozen, rest trained, lr x 0.1',
    'finetune': '(c) full fine-tune, lr x 0.1',
}


def make_config(mode: str, args: argparse.Namespace, out: pathlib.Path, seed: int = 0):
  arg = f'mode={mode},shots={args.shots},data={args.data},root={args.data_root}'
  if mode == 'pretrain':
    arg += f',steps={args.pretrain_steps}'
  else:
    arg += f',steps={args.steps},source={out / "pretrain"}'
  c = load_config('transfer', arg)
  c.seed = seed
  if args.smoke:  # the pipeline, not the result, is under test
    c.data.num_train, c.data.num_eval, c.data.image_size = 400, 200, 16
    c.model.kwargs.widths = (4, 8, 16)
    c.eval_batch_size = 100
    c.log_every = 5
    c.num_devices = 1  # batch 50 need not divide the test suite's 8 simulated devices
  return c


def trainable_params(config) -> int:
  """Parameters the optimizer updates under ``config.transfer.freeze``."""
  model = build_model(config, {'num_classes': len(config.data.classes)})
  shape = (1, config.data.image_size, config.data.image_size, config.data.channels)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))['params']
  is_frozen = transfer.frozen_predicate(config.transfer.freeze, config.transfer.exclude)
  if is_frozen is None:
    return sum(x.size for x in jax.tree.leaves(params))
  mask = transfer.frozen_mask(params, is_frozen)
  return sum(x.size for x, f in zip(jax.tree.leaves(params), jax.tree.leaves(mask)) if not f)


def run(args: argparse.Namespace) -> list[dict]:
  enable_compilation_cache(min_compile_secs=0.5)
  out = pathlib.Path(args.out_dir).absolute()
  out.mkdir(parents=True, exist_ok=True)
  (out / 'args.json').write_text(json.dumps(vars(args), indent=2) + '\n')
  run_or_skip(make_config('pretrain', args, out), out / 'pretrain', {'mode': 'pretrain'})
  for seed in range(args.seeds):
    for mode in MODES:
      config = make_config(mode, args, out, seed)
      run_or_skip(config, out / f'{mode}_seed{seed}',
                  {'mode': mode, 'seed': seed, 'trainable_params': trainable_params(config)})
  return report(out)


def report(out: pathlib.Path) -> list[dict]:
  """Rebuilds ``results.json`` / ``results.md`` from the finished runs under ``out``."""
  out = pathlib.Path(out)
  results = {p.parent.name: json.loads(p.read_text()) for p in sorted(out.glob('*/result.json'))}
  if not results:
    raise FileNotFoundError(f'no finished run under {out}; run '
                            '`python -m experiments.transfer run --out-dir DIR` first.')
  rows = []
  for mode in MODES:
    runs = [r for r in results.values() if r.get('mode') == mode]
    if not runs:
      continue
    acc_mean, acc_std = mean_std(100 * r['eval_accuracy'] for r in runs)
    rows.append({'mode': mode, 'description': DESCRIPTIONS[mode], 'seeds': len(runs),
                 'accuracy_mean': acc_mean, 'accuracy_std': acc_std,
                 'trainable_params': runs[0]['trainable_params'], 'params': runs[0]['params'],
                 'steps': runs[0]['steps'],
                 'wall_s_mean': mean_std(r['wall_s'] for r in runs)[0]})
  pre = results.get('pretrain')
  args = json.loads((out / 'args.json').read_text()) if (out / 'args.json').exists() else {}
  shots = f", {args['shots']} labelled images per class" if 'shots' in args else ''
  lines = [f'| target task (classes 5-9{shots}) | test accuracy % | trained params | steps | wall s |',
           '|---|---|---|---|---|']
  for r in rows:
    lines.append(f"| {r['description']} | {r['accuracy_mean']:.2f} ± {r['accuracy_std']:.2f} "
                 f"(n={r['seeds']}) | {r['trainable_params']:,} of {r['params']:,} | "
                 f"{r['steps']} | {r['wall_s_mean']:.0f} |")
  if pre:
    lines.append('')
    lines.append(f"Source task (classes 0-4, all images): {100 * pre['eval_accuracy']:.2f}% "
                 f"test accuracy after {pre['steps']} steps ({pre['wall_s']:.0f} s).")
  (out / 'results.json').write_text(json.dumps({'pretrain': pre, 'target': rows}, indent=2)
                                    + '\n')
  (out / 'results.md').write_text('\n'.join(lines) + '\n')
  print('\n'.join(lines))
  return rows


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m experiments.transfer', description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest='command', required=True)
  r = sub.add_parser('run', help='pretrain, transfer four ways, write the table')
  r.add_argument('--out-dir', required=True)
  r.add_argument('--data', default='synthetic', choices=('synthetic', 'folder'))
  r.add_argument('--data-root', default='', help='CIFAR-10 image folder for --data folder')
  r.add_argument('--shots', type=int, default=20, help='labelled target images per class')
  r.add_argument('--seeds', type=int, default=2, help='few-shot draws / inits per mode')
  r.add_argument('--pretrain-steps', type=int, default=600)
  r.add_argument('--steps', type=int, default=200, help='target-task steps')
  r.add_argument('--smoke', action='store_true', help='tiny sizes: the CI test')
  rep = sub.add_parser('report', help='rebuild the table from finished runs')
  rep.add_argument('out_dir')
  args = parser.parse_args(argv)

  def command() -> None:
    if args.command == 'report':
      report(pathlib.Path(args.out_dir))
      return
    if args.data == 'folder' and not args.data_root:
      raise ValueError('--data folder needs --data-root DIR (train/ and test/ class folders).')
    run(args)

  return exit_code(command)


if __name__ == '__main__':
  sys.exit(main())
