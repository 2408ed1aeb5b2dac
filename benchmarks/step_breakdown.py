r"""Where XLA:CPU spends the train step: its convolutions by pass, beside the whole step.

Two views of the project's train step (``train_throughput.project_step_fn``,
what ``cnn_jax.main`` runs):

* Timed pieces. Every convolution in the step's jaxpr is a forward (one per
  layer) or one of autodiff's two transposes: the input gradient (``dx``) and
  the weight gradient (``dw``), told apart by their operand shapes. Per
  distinct forward convolution (input, kernel, stride, padding) each pass is
  compiled alone (the forward; ``jax.linear_transpose`` of it in the input and
  in the kernel, the very programs autodiff puts in the step) and timed
  interleaved with the whole step. Each time x the number of layers with that
  shape, summed, is set against the step; the remainder is BN, elementwise
  work, layout copies, the optimizer and augmentation. ``--torch`` adds the
  same passes in PyTorch (channels_last; ``aten.convolution_backward`` for
  each gradient alone) and PyTorch's whole step to the same loop, so each row
  says how far XLA:CPU is behind oneDNN on that convolution.
* XLA's own view. The compiled step's HLO says which library runs each
  convolution: a ``__ynn_fusion`` is YNNPACK, a plain ``convolution`` XLA's
  convolution thunk (Eigen); oneDNN and XNNPACK would show as their own
  fusions or custom calls. ``--profile`` compiles the step once more with
  ``xla_cpu_enable_xprof_traceme`` and runs it under ``jax.profiler.trace``:
  the per-thunk times of the Perfetto trace, joined with that HLO, give XLA's
  own time per convolution pass and library, for the transposes (moving the
  weight gradients' operands to batch-minor layouts) and for the rest. Eigen's
  convolution thunk returns at once and finishes on the thread pool, so its
  event times only the launch: for those convolutions read the timed pieces.
  The thunk executor also runs independent thunks concurrently, so the sums
  are not a partition of the step's wall time.

  python -m benchmarks.step_breakdown --torch --profile \
      --out benchmarks/recorded/step_breakdown_cpu_2026-12-06.json
  python -m benchmarks.step_breakdown --models resnet8 --batch 8 --repeats 1   # smoke
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping

import jax
from jax import lax

from benchmarks import timer
from benchmarks.train_throughput import MODELS, _Stateful, project_step_fn, torch_step_fn
from cnn_jax.models.introspect import iter_eqns

PASSES = ('fwd', 'dx', 'dw')
# fusion kind / custom-call target -> the library that runs the convolution.
_LIBRARIES = {'__ynn_fusion': 'ynnpack', '__xnn_fusion': 'xnnpack', '__onednn_fusion': 'onednn'}


# ----------------------------------------------------------------------------- convolutions

@dataclasses.dataclass(frozen=True)
class ConvSig:
  """One distinct convolution: operand shapes, dtype and the primitive's parameters."""
  x_shape: tuple[int, ...]
  w_shape: tuple[int, ...]
  out_shape: tuple[int, ...]
  dtype: str
  params: tuple  # sorted (name, value) pairs of conv_general_dilated's parameters

  @property
  def label(self) -> str:
    """``'32x32x16 3x3/1 -> 16'``: input H x W x C, kernel / stride, output channels."""
    p = dict(self.params)
    lhs, rhs, _ = p['dimension_numbers']
    spatial = 'x'.join(str(self.x_shape[d]) for d in lhs[2:])
    kernel = 'x'.join(str(self.w_shape[d]) for d in rhs[2:])
    stride = 'x'.join(sorted({str(s) for s in p['window_strides']}))
    return f'{spatial}x{self.x_shape[lhs[1]]} {kernel}/{stride} -> {self.w_shape[rhs[0]]}'

  def conv(self, x: jax.Array, w: jax.Array) -> jax.Array:
    return lax.conv_general_dilated_p.bind(x, w, **dict(self.params))


def _sig(eqn) -> ConvSig:
  (x, w), (out,) = eqn.invars, eqn.outvars
  return ConvSig(tuple(x.aval.shape), tuple(w.aval.shape), tuple(out.aval.shape),
                 str(x.aval.dtype), tuple(sorted(eqn.params.items())))


def conv_passes(jaxpr) -> tuple[dict[ConvSig, collections.Counter], int]:
  """``({signature: Counter(fwd=, dx=, dw=)}, unmatched)`` over a train step's jaxpr.

  Forward convolutions are those outside autodiff's ``transpose`` name scope;
  a transposed one is the weight gradient of the forward whose (input,
  output-cotangent) shapes it takes and whose kernel shape it returns, or the
  input gradient of the one whose (cotangent, kernel) it takes and whose input
  shape it returns. Shapes are compared up to the order of their axes: the
  gradients of ``ops.conv``'s lax path take and give transposed layouts
  (``ops.conv._conv2d_lax``). ``unmatched`` counts transposes matching no
  forward (e.g. grouped convolutions, whose transposes reshape the kernel).
  """
  eqns = [e for e in iter_eqns(jaxpr) if e.primitive.name == 'conv_general_dilated']
  backward = [e for e in eqns if 'transpose' in str(e.source_info.name_stack)]
  counts: dict[ConvSig, collections.Counter] = {}
  for e in eqns:
    if e not in backward:
      counts.setdefault(_sig(e), collections.Counter())['fwd'] += 1
  unmatched = 0
  dims = lambda shape: tuple(sorted(shape))
  for e in backward:
    shapes = sorted(dims(v.aval.shape) for v in e.invars)
    out = dims(e.outvars[0].aval.shape)
    for sig, c in counts.items():
      if out == dims(sig.w_shape) and shapes == sorted([dims(sig.x_shape),
                                                        dims(sig.out_shape)]):
        c['dw'] += 1
        break
      if out == dims(sig.x_shape) and shapes == sorted([dims(sig.out_shape),
                                                        dims(sig.w_shape)]):
        c['dx'] += 1
        break
    else:
      unmatched += 1
  return counts, unmatched


# ----------------------------------------------------------------------------- XLA's HLO

_HEADER = re.compile(r'^(?:ENTRY )?%([\w.\-]+) .*\{\s*$')
_INSTRUCTION = re.compile(r'^\s+(?:ROOT )?%([\w.\-]+) = (\w+)\[([\d,]*)\]\S* ([\w\-]+)\(')


def _field(pattern: str, line: str) -> str:
  m = re.search(pattern, line)
  return m.group(1) if m else ''


def parse_hlo(text: str) -> dict[str, dict]:
  """Per instruction of an HLO module's text: computation, opcode, dims, op_name, callee, kind."""
  insts, comp = {}, ''
  for line in text.splitlines():
    header = _HEADER.match(line)
    if header:
      comp = header.group(1)
      continue
    m = _INSTRUCTION.match(line)
    if not m:
      continue  # tuple-shaped results and closing braces: never a convolution
    field = lambda pattern: _field(pattern, line)
    insts[m.group(1)] = {
        'computation': comp, 'opcode': m.group(4),
        'dims': tuple(int(d) for d in m.group(3).split(',') if d),
        'op_name': field(r'op_name="([^"]*)"'), 'calls': field(r'calls=%([\w.\-]+)'),
        'kind': field(r'"kind":"(\w+)"') or field(r'custom_call_target="([^"]+)"'),
        'window': field(r'window=\{([^}]*)\}')}
  return insts


def _hlo_pass(op_name: str, dims: tuple[int, ...], weight_dims: set) -> str:
  # XLA drops the metadata of the weight gradients it rewrites (a convolution
  # over the batch with the feature map as its window), so those are known by
  # their kernel-shaped result; forward and input gradient keep jax's op_name.
  if op_name and 'transpose(' not in op_name:
    return 'fwd'
  if tuple(sorted(dims)) in weight_dims:
    return 'dw'
  return 'dx' if op_name else '?'


def hlo_convolutions(text: str, weight_shapes: Iterable[tuple[int, ...]]) -> list[dict]:
  """Each convolution of a compiled module: the thunk that runs it, its library, pass and shape.

  ``weight_shapes``: the kernels' shapes, which tell weight gradients apart.
  A convolution inside a library fusion (or a convolution custom call) runs in
  that library; one left as a plain ``convolution`` in its computation runs
  in XLA's convolution thunk (Eigen).
  """
  insts = parse_hlo(text)
  weight_dims = {tuple(sorted(s)) for s in weight_shapes}
  convs = {i['computation']: (n, i) for n, i in insts.items() if i['opcode'] == 'convolution'}
  fused = {i['calls'] for i in insts.values() if i['calls']}
  rows = []
  for name, inst in insts.items():
    if inst['calls'] in convs:
      _, conv = convs[inst['calls']]
      library = _LIBRARIES.get(inst['kind'], inst['kind'] or inst['opcode'])
    elif inst['opcode'] == 'convolution' and inst['computation'] not in fused:
      conv, library = inst, 'eigen'
    elif inst['opcode'] == 'custom-call' and 'conv' in inst['kind'].lower():
      conv, library = inst, inst['kind']
    else:
      continue
    op_name = conv['op_name'] or inst['op_name']
    rows.append({'thunk': name, 'library': library, 'pass': _hlo_pass(op_name, conv['dims'],
                                                                      weight_dims),
                 'out': list(conv['dims']), 'window': conv['window']})
  return rows


def census(rows: Iterable[dict]) -> dict[str, int]:
  """``{'fwd ynnpack': n, ...}``: how many convolutions of each pass each library runs."""
  return dict(sorted(collections.Counter(f"{r['pass']} {r['library']}" for r in rows).items()))


def _transposes(inst: dict, insts: Mapping[str, dict]) -> bool:
  # A transpose, alone or in a fusion (where XLA often recomputes BN and ReLU
  # on the way: the weight gradients' operands, moved to batch-minor layouts).
  return inst['opcode'] == 'transpose' or any(
      i['opcode'] == 'transpose' for i in insts.values() if i['computation'] == inst['calls'])


# ----------------------------------------------------------------------------- profile

def thunk_seconds(trace_dir: str) -> dict[str, float]:
  """Summed duration of every complete event in the newest Perfetto trace under ``trace_dir``."""
  paths = sorted(glob.glob(os.path.join(trace_dir, '**', 'perfetto_trace.json.gz'),
                           recursive=True), key=os.path.getmtime)
  if not paths:
    raise FileNotFoundError(f'no perfetto_trace.json.gz under {trace_dir}')
  with gzip.open(paths[-1]) as f:
    trace = json.load(f)
  events = trace['traceEvents'] if isinstance(trace, dict) else trace
  out = collections.Counter()
  for e in events:
    if e.get('ph') == 'X':
      out[e['name']] += e.get('dur', 0) / 1e6
  return dict(out)


def profile_step(step, state, args, weight_shapes, steps: int = 3) -> dict:
  """XLA's own per-thunk view of ``steps`` calls: ms per step by conv pass and library.

  ``step`` is the jitted train step, ``state`` a live state (donated and
  replaced here), ``args`` its other arguments.
  """
  compiled = step.lower(state, *args).compile(
      compiler_options={'xla_cpu_enable_xprof_traceme': True})
  text = compiled.as_text()
  insts = parse_hlo(text)
  convs = {r['thunk']: r for r in hlo_convolutions(text, weight_shapes)}
  state = timer.block(compiled(state, *args))[0]
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    with jax.profiler.trace(tmp, create_perfetto_trace=True):
      for _ in range(steps):
        state = timer.block(compiled(state, *args))[0]
    wall = (time.perf_counter() - t0) / steps
    seconds = thunk_seconds(tmp)
  groups = collections.defaultdict(lambda: {'ms': 0.0, 'thunks': 0})
  for name, s in seconds.items():
    if name in convs:
      r = convs[name]
      # Eigen's convolution thunk returns at once and completes on the thread
      # pool, so its trace event times the launch, not the work.
      library = 'eigen (launch only)' if r['library'] == 'eigen' else r['library']
      key = (f"conv {r['pass']}", library, 'x'.join(map(str, r['out'])), r['window'])
    elif name in insts:
      # The rest by kind of thunk, its name without the number (e.g. 'add_rsqrt_fusion').
      key = ('transposes' if _transposes(insts[name], insts) else 'other',
             re.sub(r'\.\d+$', '', name), '', '')
    else:
      continue  # Python, runtime and profiler events
    groups[key]['ms'] += 1e3 * s / steps
    groups[key]['thunks'] += 1
  rows = [{'what': k[0], 'library': k[1], 'out': k[2], 'window': k[3],
           'thunks': v['thunks'], 'ms_per_step': v['ms']} for k, v in groups.items()]
  rows.sort(key=lambda r: -r['ms_per_step'])
  return {'wall_ms_per_step_traced': 1e3 * wall, 'steps': steps, 'rows': rows,
          'thunk_ms_sum': sum(r['ms_per_step'] for r in rows)}


# ----------------------------------------------------------------------------- timed pieces

def _compiled_call(fn: Callable, *args) -> tuple[Callable[[], object], str]:
  """``(zero-argument call, optimized HLO text)`` of ``jit(fn)(*args)``, compiled once."""
  compiled = jax.jit(fn).lower(*args).compile()
  return lambda: compiled(*args), compiled.as_text()


def pass_calls(sig: ConvSig, seed: int = 0) -> dict[str, tuple[Callable[[], object], str]]:
  """``{pass: (call, HLO text)}``: the forward and its two transposes, each compiled alone."""
  kx, kw, kg = jax.random.split(jax.random.key(seed), 3)
  x = jax.random.normal(kx, sig.x_shape, sig.dtype)
  w = jax.random.normal(kw, sig.w_shape, sig.dtype)
  g = jax.random.normal(kg, sig.out_shape, sig.dtype)
  x_spec, w_spec = jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(w.shape, w.dtype)
  return {
      'fwd': _compiled_call(sig.conv, x, w),
      'dx': _compiled_call(lambda w, g: jax.linear_transpose(
          lambda x: sig.conv(x, w), x_spec)(g)[0], w, g),
      'dw': _compiled_call(lambda x, g: jax.linear_transpose(
          lambda w: sig.conv(x, w), w_spec)(g)[0], x, g),
  }


def torch_pass_calls(sig: ConvSig) -> dict[str, Callable[[], object]]:
  """The same three passes in PyTorch on CPU (channels_last, as ``torch_step_fn``)."""
  import torch
  p = dict(sig.params)
  nhwc = lax.conv_dimension_numbers(sig.x_shape, sig.w_shape, ('NHWC', 'HWIO', 'NHWC'))
  if (p['dimension_numbers'] != nhwc or p['batch_group_count'] != 1
      or set(p['lhs_dilation']) != {1} or any(lo != hi for lo, hi in p['padding'])):
    raise ValueError(f'no PyTorch counterpart written for {sig.label} ({p})')
  cl = torch.channels_last
  n, h, w, c = sig.x_shape
  kh, kw, ci, co = sig.w_shape
  _, ho, wo, _ = sig.out_shape
  x = torch.randn(n, c, h, w).to(memory_format=cl)
  k = torch.randn(co, ci, kh, kw).to(memory_format=cl)
  g = torch.randn(n, co, ho, wo).to(memory_format=cl)
  geometry = (list(p['window_strides']), [lo for lo, _ in p['padding']],
              list(p['rhs_dilation']))
  groups = p['feature_group_count']

  def backward(mask):
    return lambda: torch.ops.aten.convolution_backward(g, x, k, None, *geometry, False, [0, 0],
                                                       groups, mask)

  return {'fwd': lambda: torch.nn.functional.conv2d(x, k, None, *geometry, groups),
          'dx': backward([True, False, False]), 'dw': backward([False, True, False])}


def compile_step(step, state, *args):
  """``(compiled, conv_passes counts, unmatched, hlo_convolutions rows)`` of a jitted step."""
  counts, unmatched = conv_passes(jax.make_jaxpr(step)(state, *args))
  compiled = step.lower(state, *args).compile()
  rows = hlo_convolutions(compiled.as_text(), [sig.w_shape for sig in counts])
  return compiled, counts, unmatched, rows


def breakdown(name: str, batch: int, repeats: int, with_torch: bool = False,
              profile: bool = False) -> dict:
  """One model's step beside its convolutions' passes (and PyTorch's), as one JSON row."""
  state, _, (step, arrays, key) = project_step_fn(name, batch, 'float32')
  compiled, counts, unmatched, step_convs = compile_step(step, state, arrays, key)
  weight_shapes = [sig.w_shape for sig in counts]
  cands = {'step': _Stateful(state, lambda s: compiled(s, arrays, key))}
  pieces, errors = [], {}
  for sig, n in counts.items():
    calls = pass_calls(sig)
    torch_calls = {}
    if with_torch:
      try:
        torch_calls = torch_pass_calls(sig)
      except (ImportError, ValueError) as e:
        errors[sig.label] = timer.one_line(e)
    for p in PASSES:
      if n[p]:
        cands[f'{p} {sig.label}'] = calls[p][0]
        if p in torch_calls:
          cands[f'torch {p} {sig.label}'] = torch_calls[p]
        libs = census(hlo_convolutions(calls[p][1], weight_shapes))
        pieces.append({'conv': sig.label, 'pass': p, 'layers': n[p], 'runs_in': libs})
  if with_torch:
    try:
      cands['torch step'] = _Stateful(*torch_step_fn(name, batch, 'float32'))
    except ImportError as e:
      errors['torch step'] = timer.one_line(e)
  t = timer.time_interleaved(cands, repeats=repeats, warmup=2)
  ms = {k: 1e3 * v['median_s'] for k, v in t.items()}
  for r in pieces:
    r['ms'] = ms[f"{r['pass']} {r['conv']}"]
    r['ms_x_layers'] = r['ms'] * r['layers']
    if f"torch {r['pass']} {r['conv']}" in ms:
      r['torch_ms'] = ms[f"torch {r['pass']} {r['conv']}"]
      r['torch_ms_x_layers'] = r['torch_ms'] * r['layers']
      r['xla_over_torch'] = r['ms'] / r['torch_ms']
  row = {'model': name, 'batch': batch, 'dtype': 'float32', 'repeats': repeats,
         'step_ms': ms['step'], 'step_img_s': batch / t['step']['median_s'],
         'step_compile_s': t['step']['compile_s'], 'unmatched_transposes': unmatched,
         'step_convolutions': census(step_convs), 'pieces': pieces, 'errors': errors}
  for side, prefix in (('xla', ''), ('torch', 'torch_')):
    if side == 'torch' and 'torch step' not in ms:
      continue
    by_pass = {p: sum(r.get(f'{prefix}ms_x_layers', 0.0) for r in pieces if r['pass'] == p)
               for p in PASSES}
    total = ms['step' if side == 'xla' else 'torch step']
    row[f'{side}_conv_ms_by_pass'] = by_pass
    row[f'{side}_step_ms'] = total
    row[f'{side}_rest_ms'] = total - sum(by_pass.values())
  if 'torch step' in ms:
    row['step_over_torch_step'] = ms['step'] / ms['torch step']
  if profile:
    row['profile'] = profile_step(step, cands['step'].state, (arrays, key), weight_shapes)
  return row


# ----------------------------------------------------------------------------- report

def format_row(row: Mapping, top: int = 25) -> str:
  """The markdown tables of one ``breakdown`` row: pieces, totals, the profile's ``top`` rows."""
  torch = 'torch_step_ms' in row
  lines = [f"### {row['model']}, batch {row['batch']}, {row['dtype']}: step "
           f"{row['step_ms']:.1f} ms ({row['step_img_s']:.1f} img/s)", '',
           '| conv (input, kernel/stride -> C_out) | pass | layers | runs in | XLA ms | x layers |'
           + (' torch ms | x layers | XLA / torch |' if torch else ''),
           '|---|---|---:|---|---:|---:|' + ('---:|---:|---:|' if torch else '')]
  for r in row['pieces']:
    line = (f"| {r['conv']} | {r['pass']} | {r['layers']} | "
            f"{', '.join(k.split(' ', 1)[1] for k in r['runs_in'])} | {r['ms']:.2f} | "
            f"{r['ms_x_layers']:.1f} |")
    if torch:
      line += (f" {r['torch_ms']:.2f} | {r['torch_ms_x_layers']:.1f} | "
               f"**{r['xla_over_torch']:.2f}** |" if 'torch_ms' in r else ' - | - | - |')
    lines.append(line)
  lines += ['', '| | ' + ' | '.join(PASSES) + ' | all convs | rest | step |',
            '|---|' + '---:|' * (len(PASSES) + 3)]
  for side in ('xla', 'torch'):
    if f'{side}_step_ms' in row:
      by = row[f'{side}_conv_ms_by_pass']
      lines.append(f'| {side} ms | ' + ' | '.join(f'{by[p]:.1f}' for p in PASSES)
                   + f" | {sum(by.values()):.1f} | {row[f'{side}_rest_ms']:.1f} | "
                   f"{row[f'{side}_step_ms']:.1f} |")
  if 'profile' in row:
    prof = row['profile']
    lines += ['', f"XLA's trace: {prof['wall_ms_per_step_traced']:.1f} ms per traced step, "
              f"thunks sum to {prof['thunk_ms_sum']:.1f} ms", '',
              '| what | library or thunk | output | window | thunks | ms per step |',
              '|---|---|---|---|---:|---:|']
    shown = prof['rows'][:top]
    lines += [f"| {r['what']} | {r['library']} | {r['out']} | {r['window']} | {r['thunks']} | "
              f"{r['ms_per_step']:.1f} |" for r in shown]
    rest = prof['rows'][top:]
    if rest:
      lines.append(f"| {len(rest)} more kinds | | | | {sum(r['thunks'] for r in rest)} | "
                   f"{sum(r['ms_per_step'] for r in rest):.1f} |")
  return '\n'.join(lines)


def run(args) -> dict:
  rows = []
  for name in args.models.split(','):
    rows.append(breakdown(name, args.batch, args.repeats, args.torch, args.profile))
    print(format_row(rows[-1]), flush=True)
  return {'benchmark': 'step_breakdown', 'environment': timer.environment(),
          'xla_flags': os.environ.get('XLA_FLAGS', ''), 'rows': rows}


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--models', default='resnet20,resnet56')
  p.add_argument('--batch', type=int, default=128)
  p.add_argument('--repeats', type=int, default=10)
  p.add_argument('--torch', action='store_true', help='the same passes and step in PyTorch')
  p.add_argument('--profile', action='store_true', help="XLA's per-thunk times from a trace")
  p.add_argument('--out', default='benchmarks/results/step_breakdown.json')
  return timer.run_over_models(p, argv, run, MODELS)


if __name__ == '__main__':
  sys.exit(main())
