"""Optimizers and learning-rate schedules from config (optax).

``config.optimizer``:
  name: 'sgd' | 'momentum' | 'nesterov' | 'adam' | 'adamw'
  lr: peak learning rate; momentum (0.9); b1, b2 (Adam)
  weight_decay: L2 on convolution/dense kernels only (BatchNorm scales and
    biases are not decayed); coupled for SGD (added to the gradient, as in He
    et al.), decoupled for 'adamw'
  grad_clip_norm: clip by global norm (0 = off)

``config.schedule``:
  name: 'constant' | 'piecewise' | 'cosine'
  warmup_steps: warmup length (0 = none)
  warmup_mode: 'linear' (from 0 to lr) or 'constant' (lr * warmup_factor, then
    lr: He et al.'s ResNet-110 trains at 0.01 for ~400 steps before 0.1)
  decay_steps: piecewise boundaries in steps, e.g. (32000, 48000) in He et al.
  decay_factor: multiplier at each boundary (0.1)
  decay_factors: one multiplier per boundary, for uneven steps (LeCun et al.'s
    LeNet-5 schedule 5e-4, 2e-4, 1e-4, 5e-5, 1e-5 is factors 0.4, 0.5, 0.5, 0.2);
    empty (the default): ``decay_factor`` at every boundary
  end_factor: cosine decays to lr * end_factor
"""

from __future__ import annotations

from typing import Any

import jax
import optax

OPTIMIZERS = ('sgd', 'momentum', 'nesterov', 'adam', 'adamw')
SCHEDULES = ('constant', 'piecewise', 'cosine')
WARMUP_MODES = ('linear', 'constant')


def make_schedule(cfg: Any, total_steps: int) -> optax.Schedule:
  """The learning rate as a function of the step (peak ``cfg.optimizer.lr``)."""
  lr, sched = float(cfg.optimizer.lr), cfg.schedule
  warmup = int(sched.get('warmup_steps', 0))
  if sched.name == 'constant':
    main = optax.constant_schedule(lr)
  elif sched.name == 'piecewise':
    boundaries = [int(b) - warmup for b in sched.decay_steps]
    if any(b <= 0 for b in boundaries):
      raise ValueError(f'schedule.decay_steps {tuple(sched.decay_steps)} must lie after '
                       f'warmup_steps={warmup}.')
    factors = tuple(sched.get('decay_factors', ())) or (sched.decay_factor,) * len(boundaries)
    if len(factors) != len(boundaries):
      raise ValueError(f'schedule.decay_factors {tuple(factors)} must give one factor per '
                       f'boundary of schedule.decay_steps {tuple(sched.decay_steps)}.')
    main = optax.piecewise_constant_schedule(
        lr, {b: float(f) for b, f in zip(boundaries, factors)})
  elif sched.name == 'cosine':
    main = optax.cosine_decay_schedule(lr, max(total_steps - warmup, 1),
                                       alpha=float(sched.get('end_factor', 0.0)))
  else:
    raise ValueError(f'unknown schedule.name {sched.name!r}; choose one of {SCHEDULES}.')
  if warmup <= 0:
    return main
  mode = sched.get('warmup_mode', 'linear')
  if mode == 'linear':
    head = optax.linear_schedule(0.0, lr, warmup)
  elif mode == 'constant':
    head = optax.constant_schedule(lr * float(sched.get('warmup_factor', 0.1)))
  else:
    raise ValueError(f'unknown schedule.warmup_mode {mode!r}; choose one of {WARMUP_MODES}.')
  return optax.join_schedules([head, main], [warmup])


def kernel_mask(params: Any) -> Any:
  """True for convolution and dense kernels: the leaves weight decay applies to."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params)


def make_optimizer(cfg: Any, schedule: optax.Schedule) -> optax.GradientTransformation:
  opt = cfg.optimizer
  wd = float(opt.get('weight_decay', 0.0))
  parts = []
  if float(opt.get('grad_clip_norm', 0.0)) > 0:
    parts.append(optax.clip_by_global_norm(float(opt.grad_clip_norm)))
  if opt.name in ('sgd', 'momentum', 'nesterov'):
    if wd:
      parts.append(optax.add_decayed_weights(wd, mask=kernel_mask))
    momentum = None if opt.name == 'sgd' else float(opt.get('momentum', 0.9))
    parts.append(optax.sgd(schedule, momentum=momentum, nesterov=opt.name == 'nesterov'))
  elif opt.name == 'adam':
    if wd:
      parts.append(optax.add_decayed_weights(wd, mask=kernel_mask))
    parts.append(optax.adam(schedule, b1=float(opt.get('b1', 0.9)), b2=float(opt.get('b2', 0.999))))
  elif opt.name == 'adamw':
    parts.append(optax.adamw(schedule, b1=float(opt.get('b1', 0.9)),
                             b2=float(opt.get('b2', 0.999)), weight_decay=wd, mask=kernel_mask))
  else:
    raise ValueError(f'unknown optimizer.name {opt.name!r}; choose one of {OPTIMIZERS}.')
  return optax.chain(*parts)
