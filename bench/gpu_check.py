#!/usr/bin/env python
"""GPU check-and-benchmark: parity of every fast backend with the reference at real sizes,
``torch.compile``, and the paper's frontend benchmark (SPEC §10), in one run.

    python bench/gpu_check.py [--out DIR] [--quick] [--tf32]
    python bench/gpu_check.py --smoke --out DIR   # CPU, Triton interpreter, tiny sizes

For each frontend configuration and size it
1. checks the fast path against the reference modules on the same parameters and input:
   output, input gradient and every parameter gradient, ‖a−b‖/‖b‖ (full fp32 matmuls,
   ``torch.backends.cuda.matmul.allow_tf32 = False``), and that every output element is
   finite;
2. times forward (eval, no grad) and forward+backward (train mode,
   ``frontend(x).sum().backward()``) of the reference and every fast backend, each in
   alternating blocks of calls with the mel baseline on the same input
   (:func:`eleaf.bench.paired_times`: a drift of the machine moves both), after warm-up, with
   CUDA events around each call; "x mel" divides the two medians;
3. records peak memory (``torch.cuda.max_memory_allocated``) of one forward+backward;
4. profiles the Triton train step of EfficientLeaf 8G-opt 80 and Leaf (wall, host and GPU
   kernel time per step, the top kernels): whether a step is bound by host work or kernels;
5. times every case (and the mel baseline) a second time as a CUDA graph replay of the same
   step (eleaf.graphs; the geometry is data on the device, so the step captures), and
   counts the host synchronisations of an eager step (torch.cuda.set_sync_debug_mode);
6. times the Triton filterbank kernels v1 (old) against v2 (new), ``ELEAF_GABOR_KERNELS`` set
   around each call, side by side in alternating blocks: the filterbank alone (forward,
   forward+backward), the train step of 8G-opt 80, 4G, Leaf and TFLeaf, GPU time per step of
   each ``_gabor…``/``_pcen…`` kernel (torch.profiler), and whether repeated forward+backward
   runs give bitwise equal gradients under each (reported, not asserted).

Writes ``gpu_<device>_<date>.json`` and ``.md`` (device, versions, date, all figures) to
``--out`` (default: bench/results, and $OUT when set). Needs a CUDA device, except with
``--smoke``: the same code on CPU tensors at tiny sizes (Triton kernels in the interpreter),
which the CPU test suite runs so that the script works when a GPU is lent.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import sys
import time
import traceback

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import eleaf  # noqa: E402
# timing and memory helpers shared with `eleaf bench` and bench/bench_frontends.py
from eleaf.bench import cuda_peak, make_step, paired_times, time_step  # noqa: E402
from eleaf.bench import loudness_normalised as _loudness_normalised  # noqa: E402
from eleaf.graphs import capture, count_syncs, make_train_step  # noqa: E402

#: where everything runs: 'cuda', or 'cpu' with --smoke
DEVICE = 'cuda'
#: --smoke: every timing is one call without warm-up (the script's test, not a measurement)
SMOKE = False

CONFIGS = {
    'EfficientLeaf 8G-opt 80 + LogTBN': lambda b: eleaf.EfficientLeaf(
        n_filters=80, num_groups=8, conv_win_factor=6, stride_factor=16, backend=b),
    'EfficientLeaf 8G-opt 40 + LogTBN': lambda b: eleaf.EfficientLeaf(
        n_filters=40, num_groups=8, conv_win_factor=6, stride_factor=16, backend=b),
    'EfficientLeaf 4G wf4.75 + LogTBN': lambda b: eleaf.EfficientLeaf(
        conv_win_factor=4.75, backend=b),
    'EfficientLeaf 4G wf4.75 + PCEN': lambda b: eleaf.EfficientLeaf(
        conv_win_factor=4.75, compression='pcen', backend=b),
    'Leaf + PCEN': lambda b: eleaf.Leaf(backend=b),
    # the TF LEAF port: on 'triton' its filterbank and PCEN run on the Triton kernels
    # (eleaf.ops.tf_gabor_triton, eleaf.ops.tf_pcen)
    'TFLeaf (TF LEAF port)': lambda b: eleaf.TFLeaf(backend=b),
}
SIZES = [(256, 1), (32, 8), (16, 16)]
#: --smoke: (batch, seconds) small enough for the Triton interpreter
SMOKE_SIZES = [(2, 0.05)]


def rel(a, b):
    a, b = a.detach().double(), b.detach().double()
    den = b.norm().item()
    return (a - b).norm().item() / den if den > 0 else (a - b).norm().item()


def loudness_normalised(batch, seconds, seed=0):
    """(batch, seconds · 16000) loudness-normalised noisy tones on DEVICE."""
    return _loudness_normalised(batch, seconds, seed, device=DEVICE)


def median_time(fn, warmup, repeats):
    """Median seconds per call of ``fn`` on DEVICE (CUDA events there), after warm-up."""
    if SMOKE:
        warmup, repeats = 0, 1
    return statistics.median(time_step(fn, DEVICE, warmup, repeats))


def measure(frontend, x, train, warmup, repeats, mel=None):
    """(median seconds, peak bytes or None on CPU, paired mel median or None) of one
    workload; with ``mel`` (the baseline module) timed in alternating blocks with it."""
    if SMOKE:
        warmup, repeats = 0, 1
    step = make_step(frontend, x, 'train' if train else 'inference')
    if mel is None:
        return median_time(step, warmup, repeats), _peak(step), None
    mel_step = make_step(mel, x, 'train' if train else 'inference')
    for _ in range(warmup):
        mel_step()
        step()
    times, mel_times = paired_times(step, mel_step, DEVICE, repeats)
    return statistics.median(times), _peak(step), statistics.median(mel_times)


def graph_step(module, x, train):
    """The workload of :func:`eleaf.bench.make_step` captured in a CUDA graph: a no-argument
    replay (train: gradients reset inside the graph, ``module(x).sum().backward()``)."""
    if train:
        module.train()
        replay, _ = capture(make_train_step(module, x, None))
        return replay
    module.eval()

    def infer():
        with torch.no_grad():
            return module(x)
    replay, _ = capture(infer)
    return replay


def measure_graph(frontend, x, train, repeats, mel):
    """(median seconds, paired mel median) of the workload replayed as a CUDA graph, the
    frontend's and the mel baseline's graphs alternating; None without CUDA (--smoke)."""
    if DEVICE != 'cuda':
        return None, None
    step, mel_step = graph_step(frontend, x, train), graph_step(mel, x, train)
    times, mel_times = paired_times(step, mel_step, DEVICE, repeats)
    return statistics.median(times), statistics.median(mel_times)


def syncs_per_step(frontend, x, train, steps=3):
    """Host synchronisations per eager step (torch.cuda.set_sync_debug_mode; 0 on CPU)."""
    step = make_step(frontend, x, 'train' if train else 'inference')
    step()
    return count_syncs(step, steps) / steps


def _peak(step):
    return cuda_peak(step) if DEVICE == 'cuda' else None


def mib(nbytes):
    return '%.1f' % (nbytes / 2 ** 20) if nbytes is not None else '-'


class full_fp32:
    """Context: matmuls and cuDNN convolutions in full fp32 (no TF32)."""

    def __enter__(self):
        self.saved = (torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32)
        torch.set_float32_matmul_precision('highest')
        torch.backends.cudnn.allow_tf32 = False

    def __exit__(self, *args):
        torch.set_float32_matmul_precision(self.saved[0])
        torch.backends.cudnn.allow_tf32 = self.saved[1]


def _run_train(module, x, g=None, seed=0):
    """Output and gradients {name: tensor} of ``(module(x) * g).sum()`` in train mode, with
    g a seeded standard normal like the output when not given."""
    module.train()
    x = x.clone().requires_grad_(True)
    y = module(x)
    if g is None:
        g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y)
    (y * g.to(y)).sum().backward()
    out = {'output': y.detach(), 'grad_input': x.grad}
    out.update({'grad ' + n: p.grad for n, p in module.named_parameters()})
    return out, g


def parity(make, backend, x):
    """Fast path (in the run's precision mode) against the reference in full fp32 and in
    float64, output and every gradient, ‖a−b‖/‖b‖:

    - ``vs_ref32``: fast against the fp32 reference;
    - ``vs_f64`` / ``ref32_vs_f64``: fast and the fp32 reference against float64, which shows
      whether a large ``vs_ref32`` is the fast path's error or an ill-conditioned quantity
      (e.g. the gradient of LogTBN's ``a``, a sum that the median and the batch norm nearly
      cancel) where float32 itself is that far from the truth;
    - ``worse_than_ref``: quantities whose ``vs_f64`` exceeds 2 ``ref32_vs_f64`` + 1e-5.
    """
    ref, fast = make('torch').to(DEVICE), make(backend).to(DEVICE)
    ref64 = make('torch').to(DEVICE).double()
    state = ref.state_dict()
    fast.load_state_dict(state)
    ref64.load_state_dict(state)
    with full_fp32():
        r32, g = _run_train(ref, x)
        r64, _ = _run_train(ref64, x.double(), g.double())
    f32, _ = _run_train(fast, x, g)
    vs_ref32 = {k: rel(f32[k], r32[k]) for k in r32}
    vs_f64 = {k: rel(f32[k], r64[k]) for k in r64}
    ref32_vs_f64 = {k: rel(r32[k], r64[k]) for k in r64}
    return {'finite': bool(torch.isfinite(f32['output']).all()), 'vs_ref32': vs_ref32,
            'vs_f64': vs_f64, 'ref32_vs_f64': ref32_vs_f64,
            'worse_than_ref': [k for k in vs_f64 if vs_f64[k] > 2 * ref32_vs_f64[k] + 1e-5]}


def op_checks(fast, quick, smoke=False):
    """Op-level parity (against the fp32 reference, and both against a float64 reference:
    ``f64`` per quantity (fast vs f64, fp32 reference vs f64)) and forward+backward timing."""
    from eleaf.functional.pcen import pcen_parameters
    from eleaf.ops.backends import select_impl
    rows = []
    if 'triton' in fast:
        shapes = [(256, 40, 101), (16, 40, 1601)] + ([] if quick else [(2, 40, 6001)])
        for shape in ([(2, 8, 41)] if smoke else shapes):
            for learn_logs in (False, True):
                F = shape[1]
                init = (0.04, 0.96, 2., 2.) if not learn_logs else tuple(
                    float(v) for v in torch.log(torch.tensor([0.04, 0.96, 2., 0.5])))
                x = (torch.rand(shape, device=DEVICE)
                     * 10 ** torch.empty(shape, device=DEVICE).uniform_(-6, 1))
                res = {}
                for backend in ('torch', 'triton'):
                    _, fn = select_impl('pcen', backend, x.device, x.dtype)
                    stored = [torch.full((F,), v, device=DEVICE, requires_grad=True)
                              for v in init]
                    xi = x.clone().requires_grad_(True)

                    def step():
                        for p in stored + [xi]:
                            p.grad = None
                        y = fn(xi, *pcen_parameters(*stored, learn_logs), 1e-12, 1e-5)
                        y.backward(torch.ones_like(y))
                        return y
                    y = step()
                    res[backend] = (y.detach(), xi.grad.clone(), [p.grad.clone() for p in stored])
                    slow = backend == 'torch'
                    res[backend + '_t'] = median_time(step, 1, 3 if slow else 20)
                # float64 reference on the same input and parameters (not timed)
                _, fn64 = select_impl('pcen', 'torch', x.device, torch.float64)
                stored64 = [torch.full((F,), v, device=DEVICE, dtype=torch.float64,
                                       requires_grad=True) for v in init]
                x64 = x.double().requires_grad_(True)
                y64 = fn64(x64, *pcen_parameters(*stored64, learn_logs), 1e-12, 1e-5)
                y64.backward(torch.ones_like(y64))
                names = ['output', 'grad_x'] + ['grad_' + n for n in 's alpha delta r'.split()]
                flat = {b: [res[b][0], res[b][1]] + res[b][2] for b in ('torch', 'triton')}
                flat64 = [y64.detach(), x64.grad] + [p.grad for p in stored64]
                errs = {n: rel(a, b) for n, a, b in zip(names, flat['triton'], flat['torch'])}
                f64 = {n: (rel(a, c), rel(b, c))
                       for n, a, b, c in zip(names, flat['triton'], flat['torch'], flat64)}
                yt = res['triton'][0]
                row = dict(op='pcen', shape=shape, learn_logs=learn_logs, parity=errs, f64=f64,
                           finite=bool(torch.isfinite(yt).all()),
                           ref_ms=1e3 * res['torch_t'], fast_ms=1e3 * res['triton_t'],
                           speedup=res['torch_t'] / res['triton_t'])
                rows.append(row)
                print('pcen %-15s logs=%d  ref %8.2f ms  triton %7.3f ms  x%6.1f  worst err %.1e' % (
                    shape, learn_logs, row['ref_ms'], row['fast_ms'], row['speedup'], max(errs.values())))
    if 'cpp' in fast:
        for shape in ([(2, 8, 30)] if smoke else [(256, 80, 100), (32, 80, 1600)]):
            x = torch.rand(shape, device=DEVICE)
            res = {}
            for backend in ('torch', 'cpp'):
                _, fn = select_impl('log1p_median', backend, x.device, x.dtype)
                a = torch.full((shape[1],), 5., device=DEVICE, requires_grad=True)
                xi = x.clone().requires_grad_(True)

                def step():
                    a.grad = xi.grad = None
                    y = fn(xi, a, True, True, True)
                    y.backward(torch.ones_like(y))
                    return y
                y = step()
                res[backend] = (y.detach(), xi.grad.clone(), a.grad.clone())
                res[backend + '_t'] = median_time(step, 3, 20)
            _, fn64 = select_impl('log1p_median', 'torch', x.device, torch.float64)
            a64 = torch.full((shape[1],), 5., device=DEVICE, dtype=torch.float64,
                             requires_grad=True)
            x64 = x.double().requires_grad_(True)
            y64 = fn64(x64, a64, True, True, True)
            y64.backward(torch.ones_like(y64))
            names = ('output', 'grad_x', 'grad_a')
            errs = {n: rel(a, b) for n, a, b in zip(names, res['cpp'], res['torch'])}
            f64 = {n: (rel(a, c), rel(b, c)) for n, a, b, c in
                   zip(names, res['cpp'], res['torch'], (y64.detach(), x64.grad, a64.grad))}
            row = dict(op='log1p_median', shape=shape, parity=errs, f64=f64,
                       ref_ms=1e3 * res['torch_t'],
                       fast_ms=1e3 * res['cpp_t'], speedup=res['torch_t'] / res['cpp_t'])
            rows.append(row)
            print('log1p_median %-15s ref %7.3f ms  cpp %7.3f ms  x%5.1f  worst err %.1e' % (
                shape, row['ref_ms'], row['fast_ms'], row['speedup'], max(errs.values())))
    return rows


def filterbank_checks(fast, sizes, select=lambda name: True):
    """The filterbank alone (no compression), forward+backward, reference vs triton."""
    rows = []
    if 'triton' not in fast:
        return rows
    makes = {'EfficientLeaf 8G-opt 80': lambda b: eleaf.EfficientLeaf(
        n_filters=80, num_groups=8, conv_win_factor=6, stride_factor=16, backend=b).filterbank,
        'EfficientLeaf 4G wf4.75': lambda b: eleaf.EfficientLeaf(conv_win_factor=4.75, backend=b).filterbank,
        'Leaf': lambda b: eleaf.Leaf(backend=b).filterbank}
    makes = {k: v for k, v in makes.items() if select(k)}
    for batch, seconds in sizes:
        x = loudness_normalised(batch, seconds)[:, None]
        for name, make in makes.items():
            try:
                times = {}
                for backend in ('torch', 'triton'):
                    fb = make(backend).to(DEVICE)
                    slow = backend == 'torch' and (name == 'Leaf' or seconds > 1)
                    times[backend] = measure(fb, x, True, 1 if slow else 3, 3 if slow else 10)
                row = dict(op='filterbank', frontend=name, batch=batch, seconds=seconds,
                           ref_ms=1e3 * times['torch'][0], fast_ms=1e3 * times['triton'][0],
                           speedup=times['torch'][0] / times['triton'][0],
                           ref_peak=times['torch'][1], fast_peak=times['triton'][1])
                rows.append(row)
                print('filterbank %-24s %3dx%2gs  ref %8.2f ms  triton %7.3f ms  x%6.1f  '
                      'peak %s -> %s MiB' % (name, batch, seconds, row['ref_ms'], row['fast_ms'],
                                             row['speedup'], mib(row['ref_peak']),
                                             mib(row['fast_peak'])))
            except Exception as exc:
                traceback.print_exc()
                rows.append(dict(op='filterbank', frontend=name, batch=batch, seconds=seconds,
                                 error='%s: %s' % (type(exc).__name__, exc)))
            if DEVICE == 'cuda':
                torch.cuda.empty_cache()
    return rows


#: section 'profile': frontends whose Triton train step is profiled, at the first size
PROFILE_CONFIGS = ('EfficientLeaf 8G-opt 80 + LogTBN', 'Leaf + PCEN')


def profile_checks(fast, size, select=lambda name: True, steps=20, top=12):
    """Where a train step's time goes, per frontend on 'triton' at ``size``: wall time per
    step of ``steps`` back-to-back steps (one synchronisation at the end), the host's time to
    issue them (the loop before that synchronisation), and, from ``torch.profiler``, the
    device time of every GPU kernel per step (on CPU: torch ops by self CPU time). Device
    time well below the wall time means the step is bound by host work, not by kernels."""
    from torch.profiler import ProfilerActivity, profile
    rows = []
    if 'triton' not in fast:
        return rows
    batch, seconds = size
    x = loudness_normalised(batch, seconds)
    sync = torch.cuda.synchronize if DEVICE == 'cuda' else (lambda: None)
    if SMOKE:
        steps = 2
    for name in PROFILE_CONFIGS:
        if not select(name):
            continue
        try:
            step = make_step(CONFIGS[name]('triton').to(DEVICE), x, 'train')
            for _ in range(0 if SMOKE else 3):
                step()
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            t1 = time.perf_counter()
            sync()
            t2 = time.perf_counter()
            acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == 'cuda' else [])
            with profile(activities=acts) as prof:
                for _ in range(steps):
                    step()
                sync()
            per = {}
            if DEVICE == 'cuda':
                for e in prof.events():
                    if e.device_type == torch.autograd.DeviceType.CUDA:
                        calls, us = per.get(e.name, (0, 0.))
                        per[e.name] = (calls + 1, us + e.time_range.elapsed_us())
            else:
                for e in prof.key_averages():
                    per[e.key] = (e.count, e.self_cpu_time_total)
            kernels = sorted(((k, c / steps, us / steps) for k, (c, us) in per.items()),
                             key=lambda r: -r[2])
            row = dict(frontend=name, backend='triton', batch=batch, seconds=seconds,
                       steps=steps, wall_ms=1e3 * (t2 - t0) / steps,
                       host_ms=1e3 * (t1 - t0) / steps,
                       device_ms=(sum(r[2] for r in kernels) / 1e3
                                  if DEVICE == 'cuda' and kernels else None),
                       timed='GPU kernels' if DEVICE == 'cuda' else 'torch ops, self CPU time',
                       top=[dict(name=k[:120], calls=c, us=us) for k, c, us in kernels[:top]])
            rows.append(row)
            print('profile %-34s %3dx%2gs  wall %.3f ms/step  host %.3f ms  device %s ms' % (
                name, batch, seconds, row['wall_ms'], row['host_ms'],
                '%.3f' % row['device_ms'] if row['device_ms'] is not None else '-'))
        except Exception as exc:
            traceback.print_exc()
            rows.append(dict(frontend=name, backend='triton', batch=batch, seconds=seconds,
                             error='%s: %s' % (type(exc).__name__, exc)))
    return rows


GEOMETRY_AB_CONFIGS = ('EfficientLeaf 8G-opt 80 + LogTBN', 'EfficientLeaf 8G-opt 40 + LogTBN',
                       'EfficientLeaf 4G wf4.75 + PCEN')


def geometry_ab_checks(fast, size, select=lambda name: True, repeats=10):
    """Old against new, side by side (issue #21): EfficientLEAF's Triton train step with the
    group geometry as data on the device (new) and copied to the host every step
    (``ELEAF_HOST_GEOMETRY=1``, old), timed in alternating blocks on the same input, with the
    host synchronisations per step of each."""
    from eleaf.ops import gabor as gabor_ops
    rows = []
    if 'triton' not in fast:
        return rows
    batch, seconds = size
    x = loudness_normalised(batch, seconds)
    for name in GEOMETRY_AB_CONFIGS:
        if not select(name):
            continue
        try:
            new = make_step(CONFIGS[name]('triton').to(DEVICE), x, 'train')
            old_module = CONFIGS[name]('triton').to(DEVICE)
            old_step = make_step(old_module, x, 'train')

            def old():
                os.environ['ELEAF_HOST_GEOMETRY'] = '1'
                try:
                    old_step()
                finally:
                    os.environ.pop('ELEAF_HOST_GEOMETRY', None)
            for _ in range(0 if SMOKE else 3):
                new(), old()
            t_new, t_old = paired_times(new, old, DEVICE, 1 if SMOKE else repeats)
            row = dict(frontend=name, batch=batch, seconds=seconds,
                       new_ms=1e3 * statistics.median(t_new), old_ms=1e3 * statistics.median(t_old),
                       new_syncs=count_syncs(new, 3) / 3, old_syncs=count_syncs(old, 3) / 3)
            row['speedup'] = row['old_ms'] / row['new_ms']
            rows.append(row)
            print('geometry A/B %-34s %3dx%2gs  device geometry %.3f ms (%g syncs/step)  host '
                  'geometry %.3f ms (%g syncs/step)' % (name, batch, seconds, row['new_ms'],
                                                       row['new_syncs'], row['old_ms'],
                                                       row['old_syncs']))
        except Exception as exc:
            traceback.print_exc()
            rows.append(dict(frontend=name, batch=batch, seconds=seconds,
                             error='%s: %s' % (type(exc).__name__, exc)))
    assert gabor_ops.host_geometry() is False
    return rows


#: section 'kernels_ab': frontends whose Triton filterbank kernels are timed v1 against v2
KERNELS_AB_CONFIGS = ('EfficientLeaf 8G-opt 80 + LogTBN', 'EfficientLeaf 4G wf4.75 + LogTBN',
                      'Leaf + PCEN', 'TFLeaf (TF LEAF port)')
#: --smoke: the same frontends with 16 filters (a Triton call in the interpreter takes seconds)
SMOKE_KERNELS_AB = {
    'EfficientLeaf 8G-opt 80 + LogTBN': lambda b: eleaf.EfficientLeaf(
        n_filters=16, num_groups=8, conv_win_factor=6, stride_factor=16, backend=b),
    'EfficientLeaf 4G wf4.75 + LogTBN': lambda b: eleaf.EfficientLeaf(
        n_filters=16, conv_win_factor=4.75, backend=b),
    'Leaf + PCEN': lambda b: eleaf.Leaf(n_filters=16, backend=b),
    'TFLeaf (TF LEAF port)': lambda b: eleaf.TFLeaf(n_filters=16, backend=b),
}
#: the variable the host code reads at every call to pick the Triton filterbank kernels
KERNELS_ENV = 'ELEAF_GABOR_KERNELS'
KERNEL_VERSIONS = ('v1', 'v2')
#: profiler events counted per name in 'kernels_ab' (the Triton kernels' names start so)
KERNEL_PREFIXES = ('_gabor', '_pcen', '_group_geometry')


class gabor_kernels:
    """Context: ``ELEAF_GABOR_KERNELS=version`` (v1: old kernels, v2: new), restored after."""

    def __init__(self, version):
        self.version = version

    def __enter__(self):
        self.saved = os.environ.get(KERNELS_ENV)
        os.environ[KERNELS_ENV] = self.version

    def __exit__(self, *args):
        if self.saved is None:
            os.environ.pop(KERNELS_ENV, None)
        else:
            os.environ[KERNELS_ENV] = self.saved


def under(version, fn):
    """``fn`` (no arguments) run with the Triton filterbank kernels ``version`` at each call."""
    def call():
        with gabor_kernels(version):
            return fn()
    return call


def reported_kernel_version():
    """What ``eleaf.ops.gabor.kernel_version()`` says now; None where the host code has none."""
    from eleaf.ops import gabor as gabor_ops
    fn = getattr(gabor_ops, 'kernel_version', None)
    return fn() if fn is not None else None


class FilterbankOnly(torch.nn.Module):
    """A frontend's filterbank alone, (B, 1, L) -> (B, F, T) (TFLeaf's is a method)."""

    def __init__(self, frontend):
        super().__init__()
        self.frontend = frontend

    def forward(self, x):
        return self.frontend.filterbank(x)


def filterbank_of(frontend):
    fb = frontend.filterbank
    return fb if isinstance(fb, torch.nn.Module) else FilterbankOnly(frontend)


def ab_times(modules, x, workload, repeats):
    """{version: median ms} of ``workload`` (:func:`make_step`) on ``modules[version]`` under
    its kernels, after warm-up, v1 and v2 timed in alternating blocks on ``x``."""
    v1 = under('v1', make_step(modules['v1'], x, workload))
    v2 = under('v2', make_step(modules['v2'], x, workload))
    for _ in range(0 if SMOKE else 3):
        v1(), v2()
    t2, t1 = paired_times(v2, v1, DEVICE, 1 if SMOKE else repeats)
    return {'v1': 1e3 * statistics.median(t1), 'v2': 1e3 * statistics.median(t2)}


def kernel_times(step, steps):
    """({name: {calls, us}} per step of the profiler events named ``KERNEL_PREFIXES``…: GPU
    kernels on CUDA (none on CPU, where the interpreter runs them), µs of all GPU kernels per
    step or None on CPU), over ``steps`` calls of ``step`` (warmed up before)."""
    from torch.profiler import ProfilerActivity, profile
    sync = torch.cuda.synchronize if DEVICE == 'cuda' else (lambda: None)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if DEVICE == 'cuda' else [])
    sync()
    with profile(activities=acts) as prof:
        for _ in range(steps):
            step()
        sync()
    per, total = {}, 0.
    for e in prof.events():
        if DEVICE == 'cuda' and e.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = e.time_range.elapsed_us()
        total += us
        if e.name.startswith(KERNEL_PREFIXES):
            calls, t = per.get(e.name, (0, 0.))
            per[e.name] = (calls + 1, t + us)
    return ({k: dict(calls=c / steps, us=t / steps) for k, (c, t) in sorted(per.items())},
            total / steps if DEVICE == 'cuda' else None)


def determinism(fbs, x, runs):
    """Per version, whether ``runs`` forward+backward runs of the filterbank on the same input
    and output gradient give bitwise equal output, input and parameter gradients
    (``torch.equal``), the quantities that differ, and ‖v2 − v1‖/‖v1‖ of each (first runs)."""
    out = dict(bitwise_equal={}, differs={})
    first = {}
    for v in KERNEL_VERSIONS:
        got, g = [], None
        for _ in range(runs):
            fbs[v].zero_grad(set_to_none=True)
            with gabor_kernels(v):
                r, g = _run_train(fbs[v], x, g)
            got.append({k: t.detach().clone() for k, t in r.items() if t is not None})
        differs = sorted(k for k in got[0] if any(not torch.equal(r[k], got[0][k])
                                                  for r in got[1:]))
        out['bitwise_equal'][v], out['differs'][v] = not differs, differs
        first[v] = got[0]
    out['v2_vs_v1'] = {k: rel(first['v2'][k], first['v1'][k])
                       for k in first['v1'] if k in first['v2']}
    return out


def kernels_ab_checks(fast, size, select=lambda name: True, repeats=10, steps=3, runs=3):
    """Old against new, side by side: the Triton filterbank kernels v1 (today's, atomic
    gradient sums) and v2 (folded tap symmetry, deterministic gradients), picked by
    ``ELEAF_GABOR_KERNELS`` around every call. Per frontend at ``size``: the filterbank alone,
    forward and forward+backward, and the frontend's train step, each v1 and v2 in alternating
    blocks on the same input (v1/v2: ratio of the medians); GPU µs per train step of every
    ``_gabor…``/``_pcen…`` kernel (torch.profiler, ``steps`` steps); whether ``runs``
    forward+backward runs of the filterbank give bitwise equal gradients (reported only)."""
    rows = []
    if 'triton' not in fast:
        return rows
    batch, seconds = size
    x = loudness_normalised(batch, seconds)
    saved = os.environ.get(KERNELS_ENV)
    if SMOKE:
        steps, runs = 1, 2
    for name in KERNELS_AB_CONFIGS:
        if not select(name):
            continue
        row = dict(frontend=name, batch=batch, seconds=seconds)
        make = CONFIGS[name]
        if SMOKE:
            make, row['smoke_n_filters'] = SMOKE_KERNELS_AB[name], 16
        try:
            fronts = {v: make('triton').to(DEVICE) for v in KERNEL_VERSIONS}
            fronts['v1'].load_state_dict(fronts['v2'].state_dict())
            row['reported'] = {v: under(v, reported_kernel_version)() for v in KERNEL_VERSIONS}
            fbs = {v: filterbank_of(f) for v, f in fronts.items()}
            for key, modules, xin, workload in (('fb_fwd', fbs, x[:, None], 'inference'),
                                                ('fb_train', fbs, x[:, None], 'train'),
                                                ('step', fronts, x, 'train')):
                row[key + '_ms'] = ab_times(modules, xin, workload, repeats)
                row[key + '_ratio'] = row[key + '_ms']['v1'] / row[key + '_ms']['v2']
            row['kernels'], row['device_us'] = {}, {}
            for v in KERNEL_VERSIONS:
                step = under(v, make_step(fronts[v], x, 'train'))
                row['kernels'][v], row['device_us'][v] = kernel_times(step, steps)
            row.update(determinism(fbs, x[:, None], runs))
            print('kernels A/B %-34s %3dx%2gs  v1 -> v2: filterbank fwd %.3f -> %.3f ms, '
                  'fwd+bwd %.3f -> %.3f ms, train step %.3f -> %.3f ms (v1/v2 %.2f); '
                  'bitwise-deterministic v1 %s, v2 %s' % (
                      name, batch, seconds, row['fb_fwd_ms']['v1'], row['fb_fwd_ms']['v2'],
                      row['fb_train_ms']['v1'], row['fb_train_ms']['v2'],
                      row['step_ms']['v1'], row['step_ms']['v2'], row['step_ratio'],
                      row['bitwise_equal']['v1'], row['bitwise_equal']['v2']))
        except Exception as exc:
            traceback.print_exc()
            row['error'] = '%s: %s' % (type(exc).__name__, exc)
        rows.append(row)
        if DEVICE == 'cuda':
            torch.cuda.empty_cache()
    assert os.environ.get(KERNELS_ENV) == saved
    return rows


def main(argv=None):
    global DEVICE, SMOKE
    parser = argparse.ArgumentParser()
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), 'results'))
    parser.add_argument('--quick', action='store_true', help='one size, fewer repeats')
    parser.add_argument('--configs', default='',
                        help='comma-separated substrings selecting frontends and filterbanks')
    parser.add_argument('--tf32', action='store_true',
                        help='TF32 matmuls/convolutions everywhere (timings); parity is always '
                             'against the reference in full fp32')
    parser.add_argument('--only',
                        default='ops,kernels_ab,filterbank,geometry_ab,profile,frontends',
                        help='which sections to run (default: %(default)s)')
    parser.add_argument('--smoke', action='store_true',
                        help='no GPU: CPU tensors, tiny sizes, Triton in its interpreter (a test '
                             'of this script, not a measurement)')
    args = parser.parse_args(argv)
    if args.smoke:
        DEVICE, SMOKE = 'cpu', True
        os.environ.setdefault('TRITON_INTERPRET', '1')
    elif not torch.cuda.is_available():
        sys.exit('gpu_check needs a CUDA device (or --smoke to test the script on CPU)')
    if args.tf32:  # TF32 for everything: cuBLAS, cuDNN (mel, reference) and the Triton dots
        torch.set_float32_matmul_precision('high')
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.set_float32_matmul_precision('highest')
        torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    table = eleaf.backends()
    fast = [b for b in ('triton', 'cpp') if table[b]['available']]
    import triton
    meta = {
        'date': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        'device': torch.cuda.get_device_name() if DEVICE == 'cuda' else 'smoke-test-cpu',
        'torch': torch.__version__, 'cuda': torch.version.cuda, 'triton': triton.__version__,
        'python': platform.python_version(), 'cpu_threads': torch.get_num_threads(),
        'backends': table, 'smoke': bool(args.smoke),
        'method': 'each case timed in alternating blocks of %d calls with the mel baseline on '
                  'the same input (x mel: ratio of the two medians), CUDA events around each '
                  'call, after warm-up; train step = frontend(x).sum().backward() in train '
                  'mode; float32 inputs; %s; parity against the reference in full fp32' % (
                      eleaf.bench.PAIR_BLOCK,
                      'TF32 on for cuBLAS, cuDNN and the Triton dots' if args.tf32 else
                      'TF32 off everywhere'),
        'tf32': bool(args.tf32),
    }
    print(json.dumps({k: v for k, v in meta.items() if k != 'backends'}, indent=1))
    print('fast backends available:', fast)
    results = []
    sizes = SMOKE_SIZES if args.smoke else SIZES[:1] if args.quick else SIZES
    sections = args.only.split(',')
    if 'ops' in sections:
        meta['ops'] = op_checks(fast, args.quick, args.smoke)
        write(meta, results, args.out)

    def select(name):
        return not args.configs or any(s in name for s in args.configs.split(','))
    if 'kernels_ab' in sections:
        meta['kernels_ab'] = kernels_ab_checks(fast, sizes[0], select)
        write(meta, results, args.out)
    if 'filterbank' in sections:
        meta['filterbank'] = filterbank_checks(fast, sizes, select)
        write(meta, results, args.out)
    if 'geometry_ab' in sections:
        meta['geometry_ab'] = geometry_ab_checks(fast, sizes[0], select)
        write(meta, results, args.out)
    if 'profile' in sections:
        meta['profile'] = profile_checks(fast, sizes[0], select)
        write(meta, results, args.out)
    if 'frontends' not in sections:
        sizes = []
    configs = {k: v for k, v in CONFIGS.items() if select(k)}
    for batch, seconds in sizes:
        x = loudness_normalised(batch, seconds)
        mel = eleaf.Mel().to(DEVICE)
        for train in (False, True):
            t, peak, _ = measure(mel, x, train, 3, 10)
            mel_graph = eleaf.Mel().to(DEVICE)
            gt, _ = measure_graph(mel_graph, x, train, 10, eleaf.Mel().to(DEVICE))
            results.append(dict(frontend='Mel baseline', backend='torch', batch=batch,
                                seconds=seconds, workload='train' if train else 'inference',
                                time_s=t, peak_bytes=peak, graph_time_s=gt,
                                syncs_per_step=syncs_per_step(mel, x, train)))
            print('%-34s %-6s %3dx%2gs %-9s %9.3f ms' % ('Mel baseline', 'torch', batch, seconds,
                                                         'train' if train else 'infer', 1e3 * t))
        for name, make in configs.items():
            for backend in ['torch'] + fast:
                entry = dict(frontend=name, backend=backend, batch=batch, seconds=seconds)
                try:
                    if backend != 'torch':
                        entry['parity'] = parity(make, backend, x)
                    frontend = make(backend).to(DEVICE)
                    slow = backend == 'torch' and (name.startswith('Leaf') or seconds > 1)
                    for train in (False, True):
                        t, peak, mel_t = measure(frontend, x, train, 1 if slow else 3,
                                                 3 if slow else 10, mel=mel)
                        syncs = syncs_per_step(frontend, x, train)
                        gt = gmel_t = None
                        if backend != 'torch' or not slow:
                            try:   # a fresh module: the eager one's grads stay out of the graph
                                gt, gmel_t = measure_graph(make(backend).to(DEVICE), x, train,
                                                           10, eleaf.Mel().to(DEVICE))
                            except Exception as exc:   # e.g. a path that syncs cannot capture
                                entry['graph_error'] = '%s: %s' % (type(exc).__name__, exc)
                        results.append(dict(entry, workload='train' if train else 'inference',
                                            time_s=t, mel_time_s=mel_t, peak_bytes=peak,
                                            graph_time_s=gt, graph_mel_time_s=gmel_t,
                                            syncs_per_step=syncs))
                        print('%-34s %-6s %3dx%2gs %-9s %9.3f ms  x mel %6.3f  peak %7s MiB  '
                              'graph %s  syncs/step %g' % (
                                  name, backend, batch, seconds, 'train' if train else 'infer',
                                  1e3 * t, mel_t / t, mib(peak),
                                  '%.3f ms x mel %.3f' % (1e3 * gt, gmel_t / gt) if gt else '-',
                                  syncs))
                    if 'parity' in entry:
                        p = entry['parity']
                        print('    parity: vs fp32 ref %.1e, vs f64 %.1e (fp32 ref %.1e), '
                              'worse than the reference: %s' % (
                                  max(p['vs_ref32'].values()), max(p['vs_f64'].values()),
                                  max(p['ref32_vs_f64'].values()),
                                  p['worse_than_ref'] or 'none'))
                except Exception as exc:
                    traceback.print_exc()
                    results.append(dict(entry, error='%s: %s' % (type(exc).__name__, exc)))
                if DEVICE == 'cuda':
                    torch.cuda.empty_cache()
            write(meta, results, args.out, echo=False)  # a cut-off run keeps its figures
        write(meta, results, args.out)
    failed = [r for r in results + meta.get('filterbank', []) + meta.get('profile', [])
              + meta.get('geometry_ab', []) + meta.get('kernels_ab', []) if 'error' in r]
    return 1 if failed else 0


def add_ratios(results):
    """Throughput, and ratios to mel (the paired mel times where a result has them, else the
    mel baseline's own result) and to the reference from the same run."""
    by_key = {(r['frontend'], r['backend'], r['batch'], r['seconds'], r['workload']): r
              for r in results if 'time_s' in r}
    for r in results:
        if 'time_s' not in r:
            continue
        m = by_key.get(('Mel baseline', 'torch', r['batch'], r['seconds'], r['workload']))
        ref = by_key.get((r['frontend'], 'torch', r['batch'], r['seconds'], r['workload']))
        r['examples_per_s'] = r['batch'] / r['time_s']
        r['audio_s_per_s'] = r['batch'] * r['seconds'] / r['time_s']
        mel_t = r.get('mel_time_s') or (m['time_s'] if m else None)
        r['throughput_vs_mel'] = mel_t / r['time_s'] if mel_t else None
        r['speedup_vs_reference'] = ref['time_s'] / r['time_s'] if ref else None
        gmel_t = r.get('graph_mel_time_s') or (m.get('graph_time_s') if m else None)
        r['graph_throughput_vs_mel'] = (gmel_t / r['graph_time_s']
                                        if gmel_t and r.get('graph_time_s') else None)


def kernels_ab_lines(rows):
    """The markdown section of 'kernels_ab' (a row's figures that exist, and its error)."""
    def ab(r, key, fmt='%.3f'):
        d = r.get(key)
        return (fmt + ' → ' + fmt) % (d['v1'], d['v2']) if d else '-'

    def per_kernel(r):
        k = r.get('kernels')
        if not k:
            return '-'
        def us(v, n):
            return '%.0f' % k[v][n]['us'] if n in k[v] else '-'
        names = sorted(set(k['v1']) | set(k['v2']))
        each = ['%s %s → %s' % (n[:-7] if n.endswith('_kernel') else n, us('v1', n),
                                us('v2', n)) for n in names]
        total = r.get('device_us') or {}
        if total.get('v1') is not None and total.get('v2') is not None:
            each.insert(0, 'all GPU %.0f → %.0f' % (total['v1'], total['v2']))
        return '; '.join(each) or 'none profiled'

    lines = ['', '## Triton filterbank kernels v1 (old, ELEAF_GABOR_KERNELS=v1) against v2 '
             '(new): filterbank alone and train step', '',
             'Each pair timed in alternating blocks on the same input (ms, median); v1 / v2: '
             'ratio of the train step medians (above 1: v2 is faster). Kernel µs: GPU time per '
             'train step of each `_gabor…`/`_pcen…` kernel (torch.profiler), v1 → v2. '
             'Bitwise: repeated forward+backward runs of the filterbank alone on the same '
             'input give bitwise equal output and gradients (torch.equal), v1 / v2. v2 vs v1: '
             'worst ‖v2−v1‖/‖v1‖ over the output and gradients. Host: what '
             'eleaf.ops.gabor.kernel_version() reported under each setting.', '',
             '| frontend | batch × s | filterbank fwd ms | filterbank fwd+bwd ms | train step '
             'v1 ms | train step v2 ms | v1 / v2 | kernel µs per step v1 → v2 | '
             'bitwise v1 / v2 | v2 vs v1 | host |', '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in rows:
        step, bits, err = r.get('step_ms'), r.get('bitwise_equal'), r.get('v2_vs_v1')
        if 'fb_fwd_ms' in r:
            lines.append('| %s | %d × %g | %s | %s | %s | %s | %s | %s | %s | %s | %s |' % (
                r['frontend'], r['batch'], r['seconds'], ab(r, 'fb_fwd_ms'),
                ab(r, 'fb_train_ms'), '%.3f' % step['v1'] if step else '-',
                '%.3f' % step['v2'] if step else '-', '%.2f' % r['step_ratio'] if step else '-',
                per_kernel(r), '%s / %s' % (bits['v1'], bits['v2']) if bits else '-',
                '%.1e' % max(err.values()) if err else '-',
                '%s / %s' % (r['reported']['v1'], r['reported']['v2'])))
        if 'error' in r:
            lines.append('| %s | %d × %g | error: %s | | | | | | | | |' % (
                r['frontend'], r['batch'], r['seconds'], r['error'][:80].replace('|', '/')))
    return lines


def write(meta, results, out_dir, echo=True):
    """The JSON and markdown files (and copies in $OUT); ``echo``: print the markdown."""
    add_ratios(results)
    stamp = meta['date'][:10]
    dev = meta['device'].replace(' ', '_').replace('/', '_')
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, 'gpu_%s_%s' % (dev, stamp))
    with open(base + '.json', 'w') as f:
        json.dump({'meta': meta, 'results': results}, f, indent=1, default=str)
    lines = ['# GPU check and benchmark', '',
             '%s, torch %s (CUDA %s), Triton %s, %s' % (meta['device'], meta['torch'],
                                                        meta['cuda'], meta['triton'],
                                                        meta['date']), '',
             meta['method'], '',
             'Eager: each step issued from Python; graph: the same step captured once in a CUDA '
             'graph and replayed (eleaf.graphs.capture; train: gradients reset inside the '
             'graph). × mel: the mel baseline\'s time over the frontend\'s in the same mode '
             '(throughput ratio, higher is better). Syncs: host synchronisations per eager '
             'step (torch.cuda.set_sync_debug_mode).', '',
             '| frontend | backend | batch × s | workload | eager ms | mel ms (paired) | '
             'examples/s | × mel eager | graph ms | × mel graph | syncs/step | × reference | '
             'peak MiB |',
             '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    for r in results:
        if 'time_s' not in r:
            lines.append('| %s | %s | %d × %g | - | error: %s | | | | | | | | |' % (
                r['frontend'], r['backend'], r['batch'], r['seconds'], r['error'][:80]))
            continue
        lines.append('| %s | %s | %d × %g | %s | %.3f | %s | %.0f | %s | %s | %s | %s | %s | '
                     '%s |' % (
            r['frontend'], r['backend'], r['batch'], r['seconds'], r['workload'],
            1e3 * r['time_s'], '%.3f' % (1e3 * r['mel_time_s']) if r.get('mel_time_s') else '-',
            r['examples_per_s'],
            '%.3g' % r['throughput_vs_mel'] if r.get('throughput_vs_mel') else '-',
            '%.3f' % (1e3 * r['graph_time_s']) if r.get('graph_time_s') else '-',
            '%.3g' % r['graph_throughput_vs_mel'] if r.get('graph_throughput_vs_mel') else '-',
            '%g' % r['syncs_per_step'] if r.get('syncs_per_step') is not None else '-',
            '%.3g' % r['speedup_vs_reference'] if r.get('speedup_vs_reference') else '-',
            mib(r['peak_bytes'])))
    parities = [r for r in results if 'parity' in r]
    if parities:
        lines += ['', '## Parity: fast path (%s) against the reference, ‖a−b‖/‖b‖, output and '
                  'every gradient' % ('TF32, as timed' if meta.get('tf32') else 'full fp32'), '',
                  'Worst over the output and all gradients: fast vs the fp32 reference; fast '
                  'vs float64; the fp32 reference vs float64. Last column: quantities where '
                  'fast is further from float64 than 2 × the fp32 reference + 1e-5.', '',
                  '| frontend | backend | batch × s | finite | vs fp32 ref | fast vs f64 | '
                  'fp32 ref vs f64 | worse than the reference |', '|---|---|---|---|---|---|---|---|']
        seen = set()
        for r in parities:
            key = (r['frontend'], r['backend'], r['batch'], r['seconds'])
            if key in seen:
                continue
            seen.add(key)
            p = r['parity']
            lines.append('| %s | %s | %d × %g | %s | %.1e | %.1e | %.1e | %s |' % (
                key + (p['finite'], max(p['vs_ref32'].values()), max(p['vs_f64'].values()),
                       max(p['ref32_vs_f64'].values()),
                       ', '.join(p['worse_than_ref']) or 'none')))
    if meta.get('ops'):
        lines += ['', '## Ops: fast backend vs reference, forward+backward', '',
                  'Worst ‖a−b‖/‖b‖ over the output and all gradients: fast vs the fp32 '
                  'reference, fast vs float64, the fp32 reference vs float64.', '',
                  '| op | shape | variant | reference ms | fast ms | speed-up | vs fp32 ref | '
                  'fast vs f64 | fp32 ref vs f64 |', '|---|---|---|---|---|---|---|---|---|']
        for r in meta['ops']:
            f64 = r.get('f64', {})
            lines.append('| %s | %s | %s | %.3f | %.3f | %.1f | %.1e | %s | %s |' % (
                r['op'], 'x'.join(map(str, r['shape'])),
                ('learn_logs=%s' % r['learn_logs']) if 'learn_logs' in r else 'append, per-band a',
                r['ref_ms'], r['fast_ms'], r['speedup'], max(r['parity'].values()),
                '%.1e' % max(v[0] for v in f64.values()) if f64 else '-',
                '%.1e' % max(v[1] for v in f64.values()) if f64 else '-'))
    if meta.get('filterbank'):
        lines += ['', '## Filterbank alone, train step (forward+backward)', '',
                  '| filterbank | batch × s | reference ms | triton ms | speed-up | peak MiB ref → triton |',
                  '|---|---|---|---|---|---|']
        for r in meta['filterbank']:
            if 'error' in r:
                lines.append('| %s | %d × %g | error: %s | | | |' % (r['frontend'], r['batch'],
                                                                   r['seconds'], r['error'][:80]))
                continue
            lines.append('| %s | %d × %g | %.3f | %.3f | %.1f | %s → %s |' % (
                r['frontend'], r['batch'], r['seconds'], r['ref_ms'], r['fast_ms'], r['speedup'],
                mib(r['ref_peak']), mib(r['fast_peak'])))
    if meta.get('geometry_ab'):
        lines += ['', '## Group geometry on the device (new) against copied to the host '
                  '(old, ELEAF_HOST_GEOMETRY=1): Triton train step', '',
                  '| frontend | batch × s | device geometry ms | syncs/step | host geometry ms '
                  '| syncs/step | old / new |', '|---|---|---|---|---|---|---|']
        for r in meta['geometry_ab']:
            if 'error' in r:
                lines.append('| %s | %d × %g | error: %s | | | | |' % (
                    r['frontend'], r['batch'], r['seconds'], r['error'][:80]))
                continue
            lines.append('| %s | %d × %g | %.3f | %g | %.3f | %g | %.2f |' % (
                r['frontend'], r['batch'], r['seconds'], r['new_ms'], r['new_syncs'],
                r['old_ms'], r['old_syncs'], r['speedup']))
    if meta.get('kernels_ab'):
        lines += kernels_ab_lines(meta['kernels_ab'])
    for r in meta.get('profile') or []:
        if 'error' in r:
            lines += ['', '## Profile of %s (triton): error: %s' % (r['frontend'], r['error'])]
            continue
        lines += ['', '## Profile of a train step: %s (triton), %d × %g s' % (
            r['frontend'], r['batch'], r['seconds']), '',
            'Per step, %d back-to-back steps: wall %.3f ms, host issuing them %.3f ms, GPU '
            'kernels %s ms (torch.profiler). Top %s per step:' % (
                r['steps'], r['wall_ms'], r['host_ms'],
                '%.3f' % r['device_ms'] if r['device_ms'] is not None else '-', r['timed']),
            '', '| name | calls | µs |', '|---|---|---|']
        lines += ['| `%s` | %g | %.1f |' % (k['name'].replace('|', '/'), k['calls'], k['us'])
                  for k in r['top']]
    with open(base + '.md', 'w') as f:
        f.write('\n'.join(lines) + '\n')
    if echo:
        print('\n'.join(lines))
    out = os.environ.get('OUT')
    if out and os.path.abspath(out) != os.path.abspath(out_dir):
        for ext in ('.json', '.md'):
            shutil.copy(base + ext, out)


if __name__ == '__main__':
    sys.exit(main())
