"""PCEN forward + backward on the CPU: the reference frame loop (provider=torch,
:func:`eleaf.functional.pcen_ref`) against the compiled op (provider=cpp, ``eleaf._C``,
csrc/pcen.cpp).

    pytest bench/ops/ --benchmark-only -k pcen        # groups: one per shape

LEAF's PCEN (s=0.04, alpha=0.96, delta=2, r=0.5, eps=1e-12, clamp=1e-5) on effective
parameters: x (B, F, T) and the four (F,) parameters require grad; the output gets a gradient
of ones. Shapes (B, F, T): (16, 40, 100) (a batch of 1 s LEAF crops) and (2, 40, 800). CPU
threads: ELEAF_BENCH_THREADS (default 2). CPU only (the compiled PCEN has no CUDA kernels).
"""
import pytest
import torch

from eleaf.functional.pcen import pcen_ref
from eleaf.ops.pcen_cpp import pcen_cpp

SHAPES = [(16, 40, 100), (2, 40, 800)]


@pytest.mark.parametrize('provider', ['torch', 'cpp'])
@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'x'.join(map(str, s)))
def test_pcen_fwd_bwd(benchmark, op_provider, shape, provider):
    fn = op_provider(provider, pcen_ref, pcen_cpp)
    B, F, T = shape
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(shape, generator=gen) * 10).requires_grad_()
    params = [torch.full((F,), v, requires_grad=True) for v in (0.04, 0.96, 2., 0.5)]
    grad = torch.ones(shape)
    benchmark.group = 'pcen fwd+bwd %s' % (shape,)
    benchmark.extra_info.update(provider=provider, threads=torch.get_num_threads(), device='cpu')

    def step():
        x.grad = None
        for p in params:
            p.grad = None
        y = fn(x, *params, 1e-12, 1e-5)
        y.backward(grad)

    rounds = 10 if (provider == 'torch' and T > 200) else 30
    benchmark.pedantic(step, rounds=rounds, iterations=1, warmup_rounds=2)
