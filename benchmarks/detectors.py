"""Inference speed of trained detectors side by side (YOLO, R-CNN, Fast/Faster/Mask R-CNN).

Restores each run's best checkpoint (:func:`cnn_jax.train.restore.load_run`)
and times its jitted inference (``model.apply(..., train=False)``: for the
R-CNN family proposals, RoI heads, NMS and, for Mask R-CNN, the mask head) on
the same ``--batch`` eval images, interleaved; prints img/s, parameters and
the run's last eval metrics, and writes JSON. No time is asserted anywhere.

  python -m benchmarks.detectors workdirs/rcnn workdirs/fast_rcnn workdirs/faster_rcnn \
      workdirs/mask_rcnn workdirs/detect --out benchmarks/recorded/detectors_cpu.json
"""

from __future__ import annotations

import argparse
import pathlib

import jax

from benchmarks import timer
from cnn_jax.data import augment
from cnn_jax.train.logging import read_metrics
from cnn_jax.train.restore import load_run

HEADLINES = ('mAP50', 'coco_AP', 'coco_AP50', 'mask_AP50', 'mask_AP')


def main(argv=None) -> dict:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('workdirs', nargs='+')
  p.add_argument('--batch', type=int, default=20)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--out', default='')
  a = p.parse_args(argv)
  fns, info = {}, {}
  for wd in a.workdirs:
    run = load_run(wd)
    c = run.config
    name = pathlib.Path(wd).name
    x = run.eval.images[:a.batch]
    fn = jax.jit(lambda v, x, run=run, c=c: run.model.apply(
        v, augment.normalize(x, tuple(c.data.mean), tuple(c.data.std)), train=False))
    fns[name] = lambda fn=fn, run=run, x=x: fn(run.variables, x)
    evals = read_metrics(pathlib.Path(wd) / 'metrics.jsonl')['eval']
    info[name] = {'model': c.model.name, 'params': run.num_params, 'steps': c.num_steps,
                  **{k: evals[-1][k] for k in HEADLINES if k in evals[-1]}}
  times = timer.time_interleaved(fns, a.repeats)
  for name, t in times.items():
    info[name].update(t, img_per_s=a.batch / t['median_s'])
    m = ', '.join(f'{k} {info[name][k]:.3f}' for k in HEADLINES if k in info[name])
    print(f"{name:14s} {info[name]['model']:12s} {info[name]['params']:>10,d} params "
          f"{info[name]['img_per_s']:8.1f} img/s  {m}")
  out = {'env': timer.environment(), 'batch': a.batch, 'runs': info}
  if a.out:
    timer.write_json(a.out, out)
  return out


if __name__ == '__main__':
  main()
