"""LogTBN compression (log1p(10^a x) + median subtraction, appended), forward + backward:
the reference composition (provider=torch) against the compiled op (provider=cpp, eleaf._C).

    pytest bench/ops/ --benchmark-only                 # groups: one per shape
    pytest bench/ops/ --benchmark-only --bench-device cuda

The paper's LogTBN(a, trainable, per_band, median_filter, append_filtered): x (B, F, T) and
a (F,) both require grad; the output (B, 2, F, T) gets a gradient of ones. CPU threads:
ELEAF_BENCH_THREADS (default 2). Device: ``--bench-device`` of bench/conftest.py (default cuda
when available).
"""
import pytest
import torch

from eleaf.ops import log1p_median_ref
from eleaf.ops.compress import log1p_median_cpp

SHAPES = [(256, 80, 100), (32, 80, 1600)]


@pytest.mark.parametrize('provider', ['torch', 'cpp'])
@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'x'.join(map(str, s)))
def test_logtbn_fwd_bwd(benchmark, op_provider, bench_device, shape, provider):
    fn = op_provider(provider, log1p_median_ref, log1p_median_cpp)
    device = bench_device
    if torch.device(device).type == 'cuda':
        from eleaf.ops.compress import check
        if provider == 'cpp' and check(torch.device(device), torch.float32):
            pytest.skip(check(torch.device(device), torch.float32))
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(shape, generator=gen) * 10).to(device).requires_grad_()
    a = torch.full((shape[1],), 0.5, device=device, requires_grad=True)
    grad = torch.ones((shape[0], 2) + shape[1:], device=device)
    benchmark.group = 'log1p_median fwd+bwd %s' % (shape,)
    benchmark.extra_info.update(provider=provider, threads=torch.get_num_threads(),
                                device=device)

    def step():
        x.grad = a.grad = None
        y = fn(x, a, True, True, True)
        y.backward(grad)
        if torch.device(device).type == 'cuda':
            torch.cuda.synchronize()

    benchmark.pedantic(step, rounds=30, iterations=1, warmup_rounds=3)
