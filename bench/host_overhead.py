#!/usr/bin/env python
"""Host-side cost of a training step on the Triton path, measured without a GPU.

    python bench/host_overhead.py [--json FILE] [--configs SUBSTRINGS]

On a GPU, a small frontend's eager step can be bound by what the host does per step (Python,
autograd, one launch per torch op) rather than by the kernels; the CPU cannot time GPU kernels,
but it can measure that host side. For each frontend with ``backend='triton'`` (CPU tensors,
``TRITON_INTERPRET=1``, a tiny input) this script

1. counts the torch ops a train step (``frontend(x).sum().backward()``, and with
   ``--optimizer adam`` an ``Adam(fused=True).step()`` as well) dispatches, forward and
   backward (a ``TorchDispatchMode``; views, detaches and allocations counted apart, since
   they launch nothing), and the Triton launches;
2. times the step with every Triton launch replaced by a no-op (from the start: the kernels
   compute nothing, the outputs are uninitialised), so that what remains is the host's work
   (median of repeats, one torch thread).

A GPU adds a launch cost to every counted op and Triton launch (a few microseconds each), so
these are lower bounds of the GPU step's host time. Nothing here is a GPU figure.
"""
import argparse
import collections
import json
import os
import statistics
import sys
import time

os.environ.setdefault('TRITON_INTERPRET', '1')

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
import eleaf  # noqa: E402
from eleaf.bench import machine_info  # noqa: E402

#: ops that only make views, allocate, compute metadata or mark profiler ranges (no kernel
#: launch on a GPU)
NO_LAUNCH_OPS = ('view', 'slice', 'select', 'expand', 'unsqueeze', 'squeeze', 'detach',
                 'alias', 'transpose', 'permute', 'as_strided', '_reshape_alias', 'unbind',
                 't.default', '_unsafe_view', 'split', 'promote_types', 'aten.empty',
                 'aten.new_empty', 'profiler.')
CONFIGS = {
    'EfficientLeaf 8G-opt 80 + LogTBN': lambda: eleaf.EfficientLeaf(
        n_filters=80, num_groups=8, conv_win_factor=6, stride_factor=16, backend='triton'),
    'EfficientLeaf 8G-opt 40 + LogTBN': lambda: eleaf.EfficientLeaf(
        n_filters=40, num_groups=8, conv_win_factor=6, stride_factor=16, backend='triton'),
    'EfficientLeaf 4G wf4.75 + PCEN': lambda: eleaf.EfficientLeaf(
        conv_win_factor=4.75, compression='pcen', backend='triton'),
    'Leaf + PCEN': lambda: eleaf.Leaf(backend='triton'),
}


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[str(func)] += 1
        return func(*args, **(kwargs or {}))


class _NullLaunch:
    """Stands for a Triton kernel: ``kernel[grid](...)`` counts and does nothing."""

    def __init__(self, tally, name):
        self.tally, self.name = tally, name

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.tally[self.name] += 1
        return launch


def patch_triton_launches(tally):
    """Replace every Triton kernel the eleaf.ops modules launch by a counting no-op."""
    import importlib
    for module_name in ('eleaf.ops.gabor', 'eleaf.ops.gabor_pack', 'eleaf.ops.pcen'):
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an older checkout, for a comparison
            continue
        for name in dir(module):
            if name.startswith('_') and name.endswith('_kernel'):
                setattr(module, name, _NullLaunch(tally, name))


def make_optimizer(name, params):
    """None, or the optimizer a training step on a GPU would use: Adam with its fused
    kernel (one launch for all parameters; ``capturable`` for CUDA-graph capture)."""
    if name == 'none':
        return None
    return torch.optim.Adam(params, lr=1e-3, fused=True)


def measure(make, launches, samples=1600, batch=2, repeats=9, calls=100, optimizer='none'):
    """Op counts and host time of one frontend's train step; ``launches``: the tally of
    :func:`patch_triton_launches`."""
    frontend = make()
    frontend.train()
    x = torch.randn(batch, samples)
    opt = make_optimizer(optimizer, frontend.parameters())

    def step():
        frontend.zero_grad(set_to_none=True)
        frontend(x).sum().backward()
        if opt is not None:
            opt.step()
    for _ in range(20):
        step()
    counter = OpCounter()
    with counter:
        step()
    launches.clear()
    step()
    n_launches = sum(launches.values())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            step()
        times.append((time.perf_counter() - t0) / calls)
    quiet = sum(n for op, n in counter.counts.items() if any(v in op for v in NO_LAUNCH_OPS))
    total = sum(counter.counts.values())
    return dict(ops=total, no_launch_ops=quiet, launching_ops=total - quiet,
                triton_launches=n_launches, host_us=1e6 * statistics.median(times),
                host_us_min=1e6 * min(times), op_counts=dict(counter.counts.most_common()))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--configs', default='', help='comma-separated substrings to select')
    parser.add_argument('--repeats', type=int, default=9)
    parser.add_argument('--optimizer', choices=('none', 'adam'), default='adam',
                        help="'adam': each step ends in Adam(fused=True).step() (the geometry "
                             "of EfficientLEAF changes with the parameters); 'none': forward "
                             "and backward only")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if not eleaf.backends()['triton']['available']:
        sys.exit('needs Triton (pip install triton): %s' % eleaf.backends()['triton']['reason'])
    configs = {k: v for k, v in CONFIGS.items()
               if not args.configs or any(s in k for s in args.configs.split(','))}
    launches = collections.Counter()
    patch_triton_launches(launches)
    results = {}
    print('%-34s %5s %9s %8s %9s' % ('frontend (backend=triton)', 'ops', 'launching',
                                     'triton', 'host us'))
    for name, make in configs.items():
        r = results[name] = measure(make, launches, repeats=args.repeats,
                                    optimizer=args.optimizer)
        print('%-34s %5d %9d %8d %9.0f' % (name, r['ops'], r['launching_ops'],
                                           r['triton_launches'], r['host_us']))
    if args.json:
        meta = dict(machine_info('cpu'), method=__doc__.split('\n\n', 2)[2].strip(),
                    input='train step, batch 2 x 1600 samples, one torch thread',
                    optimizer=args.optimizer)
        with open(args.json, 'w') as f:
            json.dump({'meta': meta, 'results': results}, f, indent=1, default=str)
    return 0


if __name__ == '__main__':
    sys.exit(main())
