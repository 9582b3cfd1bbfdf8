"""The CPU filterbank's convolution algorithms, forward + backward: the FFT path as the fused
op (provider=fused, ``eleaf::spectral_pool_fwd/_bwd``, csrc/spectral_pool.cpp) and as
separate ops (provider=separate: torch.fft + ``eleaf::spectral_fold_*`` +
``eleaf::modulus_pool_*``, what runs without oneMKL), the direct convolution folded on the
taps' symmetry (provider=direct, ``eleaf::gabor_fold_*``, csrc/gabor_fold.cpp) and as
oneDNN's ``conv1d`` (provider=direct-conv1d).

    pytest bench/ops/ --benchmark-only -k gabor       # groups: one per configuration

Configurations: LEAF's filterbank (40 filters, 401 taps, stride 1), EfficientLEAF 4G wf 4.75
(40 filters in 4 groups) and 8G-opt with 80 filters (direct providers only: the FFT path was
1.2-2.6x slower for its groups), on 16 x 1 s and 2 x 8 s; the parameters require grad, the
input not (the train step of a frontend). CPU threads: ELEAF_BENCH_THREADS (default 2).
"""
import pytest
import torch

import eleaf
from eleaf.ops.backends import cpp_status

CPP_OK, CPP_REASON, _ = cpp_status()
pytestmark = pytest.mark.skipif(not CPP_OK, reason=CPP_REASON)

FRONTENDS = {'leaf': lambda: eleaf.Leaf(n_filters=40, backend='cpp'),
             '4g': lambda: eleaf.EfficientLeaf(n_filters=40, conv_win_factor=4.75,
                                               backend='cpp'),
             '8g-opt-80': lambda: eleaf.EfficientLeaf(n_filters=80, num_groups=8,
                                                      conv_win_factor=6, stride_factor=16,
                                                      backend='cpp')}
SIZES = [(16, 1), (2, 8)]


@pytest.mark.parametrize('provider', ['fused', 'separate', 'direct', 'direct-conv1d'])
@pytest.mark.parametrize('size', SIZES, ids=lambda s: '%dx%ds' % s)
@pytest.mark.parametrize('frontend', sorted(FRONTENDS))
def test_filterbank_fwd_bwd(benchmark, monkeypatch, frontend, size, provider):
    from eleaf.ops import gabor_cpu
    if frontend == '8g-opt-80' and provider in ('fused', 'separate'):
        pytest.skip('the FFT path is not a candidate for 8G-opt groups')
    if provider == 'direct' and not gabor_cpu.FOLD:
        pytest.skip(gabor_cpu.FOLD_REASON)
    if provider == 'direct-conv1d':
        monkeypatch.setattr(gabor_cpu, 'FOLD', False)
    if provider == 'fused' and not gabor_cpu.FUSED_FFT:
        pytest.skip(gabor_cpu.FUSED_FFT_REASON)
    if provider == 'separate':
        monkeypatch.setattr(gabor_cpu, 'FUSED_FFT', False)
        monkeypatch.setattr(gabor_cpu, '_warned_unfused', True)
    method = 'direct' if provider.startswith('direct') else 'fft'
    monkeypatch.setattr(gabor_cpu, 'choose_method', lambda *args: method)
    filterbank = FRONTENDS[frontend]().filterbank
    B, seconds = size
    x = 0.1 * torch.randn(B, 1, 16000 * seconds, generator=torch.Generator().manual_seed(0))
    benchmark.group = 'gabor filterbank fwd+bwd %s %d x %d s' % (frontend, B, seconds)
    benchmark.extra_info.update(provider=provider, threads=torch.get_num_threads(),
                                device='cpu')

    def step():
        filterbank.zero_grad(set_to_none=True)
        filterbank(x).sum().backward()

    slow = provider.startswith('direct') and frontend == 'leaf'
    benchmark.pedantic(step, rounds=3 if slow else 15, iterations=1, warmup_rounds=1)
