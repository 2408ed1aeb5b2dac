r"""Shortcut option A vs B on CIFAR-10: a preset of the general sweep (experiments/sweep.py).

He et al. (2016) Table 3 compares, on ImageNet ResNet-34, option A (zero-padding
identity shortcuts, no parameters) with option B (1x1 projection shortcuts where
the shape changes, identity elsewhere): 25.03% vs 24.52% top-1 error (10-crop).
This runs the same comparison on the CIFAR-10 ResNets of ``configs/resnet_cifar.py``
(B adds a 1x1 conv + BN at each of the two stage transitions):

  # shortcut x depth x seeds, 1% of the paper's 64k iterations per run
  python -m experiments.ablation_shortcut run --sweep-dir workdirs/shortcut \
      --data-root ../shared/data/cifar10-jpeg --depths 20,56 --seeds 2 --scale 0.01
  # the whole pipeline on synthetic data in under a minute
  python -m experiments.ablation_shortcut run --sweep-dir /tmp/shortcut_smoke --smoke
  # rebuild the table and plots (accuracy vs depth, one line per option)
  python -m experiments.ablation_shortcut report workdirs/shortcut

which is the general sweep

  python -m experiments.sweep run --config=configs/resnet_cifar.py:scale=0.01 \
      --grid model.kwargs.shortcut=A,B --grid model.kwargs.depth=20,56 --seeds 2 \
      --sweep-dir workdirs/shortcut --set data.root=../shared/data/cifar10-jpeg

with ``report.{csv,json,md}``, ``metric_vs_depth.png`` and ``curves_accuracy.png``
written by ``python -m experiments.sweep report``; resumable in the same way.
"""

from __future__ import annotations

import argparse
import sys

from experiments import sweep

# The ablation smoke setting (experiments/ablation_depth.py): 16x16 images, 4 classes, 12 steps.
SMOKE = ['data.num_train=256', 'data.num_eval=100', 'data.num_classes=4', 'data.image_size=16',
         'data.mean=(0.5,0.5,0.5)', 'data.std=(0.25,0.25,0.25)', 'model.kwargs.widths=(4,8,16)',
         'batch_size=32', 'eval_batch_size=64', 'num_steps=12', 'log_every=4', 'eval_every=6',
         'schedule.decay_steps=(8,10)', 'checkpoint_every=6']


def sweep_argv(args: argparse.Namespace) -> list[str]:
  """The ``experiments.sweep run`` command line of this preset."""
  data = 'synthetic' if args.smoke else 'folder'
  argv = ['run', f'--config=configs/resnet_cifar.py:scale={args.scale},data={data}',
          '--grid', 'model.kwargs.shortcut=A,B', '--grid', f'model.kwargs.depth={args.depths}',
          '--seeds', str(args.seeds), '--sweep-dir', args.sweep_dir]
  sets = SMOKE if args.smoke else [f'data.root={args.data_root}'] if args.data_root else []
  for item in sets:
    argv += ['--set', item]
  return argv + (['--verbose'] if args.verbose else [])


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = p.add_subparsers(dest='command', required=True)
  r = sub.add_parser('run', help='run (or resume) the sweep, then report')
  r.add_argument('--sweep-dir', required=True)
  r.add_argument('--data-root', default='', help='CIFAR-10 image folder (train/ and test/)')
  r.add_argument('--depths', default='20,56', help='comma list of 6k+2 depths')
  r.add_argument('--seeds', type=int, default=2)
  r.add_argument('--scale', type=float, default=1.0,
                 help='multiply the 64k steps and the lr boundaries')
  r.add_argument('--smoke', action='store_true', help='synthetic data, 12 steps per run')
  r.add_argument('--verbose', action='store_true', help='progress bars')
  rep = sub.add_parser('report', help='rebuild table and plots from a sweep directory')
  rep.add_argument('sweep_dir')
  args = p.parse_args(argv)
  if args.command == 'report':
    return sweep.main(['report', args.sweep_dir, '--x', 'depth', '--group', 'shortcut'])
  if args.smoke and args.depths == '20,56':
    args.depths = '8'
  return sweep.main(sweep_argv(args))


if __name__ == '__main__':
  sys.exit(main())
