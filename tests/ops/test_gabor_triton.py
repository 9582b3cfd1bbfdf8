"""Fused Triton grouped Gabor filterbank against the reference (SPEC §2-§5).

Reference: :func:`eleaf.functional.grouped_gabor_filterbank_ref`, run in float64 on detached
clones and in float32; the Triton op (interpreter on CPU without CUDA) must match the output
and every gradient (x, center_freqs, bandwidths, pool_widths) within ‖out − ref‖/‖ref‖ ≤ 1e-5
in float32. Outputs and scratch are poisoned with NaN (``ELEAF_DEBUG_POISON=1``), so an
element a kernel fails to write shows up as non-finite.
"""
import os

import pytest
import torch

from eleaf.functional import grouped_gabor_filterbank_ref
from eleaf.functional.gabor import GroupGeometry
from eleaf.ops import backends as B
from tests.ops import gabor_cases as cases
from tests.ops.gabor_cases import NAMES, leaf_config, make_x
from tests.testing import RTOL, assert_close, require_triton_ops

gabor = require_triton_ops('eleaf.ops.gabor')
gabor_plan = require_triton_ops('eleaf.ops.gabor_plan')

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


@pytest.fixture(autouse=True)
def _poison(triton_poison):
    """Every test here runs with poisoned outputs (tests/ops/conftest.py)."""


def interpreter_cost(cfg):
    """Rough count of kernel loop iterations, a proxy of the Triton interpreter's run time."""
    c = 0
    for g in cfg['geometry']:
        blocks = -(-(g.stop - g.start) // 16)
        n = (cfg['L'] - 1) // g.conv_stride + 1
        chunks = -(-g.kernel_size // 256)
        dx = -(-cfg['L'] // 1024) * -(-g.kernel_size // g.conv_stride) if cfg['x_grad'] else 0
        c += cfg['batch'] * blocks * (g.pool_stride * chunks + g.window_size
                                      + -(-n // 64) * chunks + dx)
    return c


def draw_config(seed, max_cost=None):
    return cases.draw_config(seed, max_cost, interpreter_cost)


def run(fn, cfg, x, dtype, grad_seed=0):
    return cases.run(fn, cfg, x, dtype, grad_seed, DEVICE)


def compare(cfg, x=None, ratio=RTOL[torch.float32]):
    x = make_x(cfg) if x is None else x
    ref64 = run(grouped_gabor_filterbank_ref, cfg, x.double(), torch.float64)
    ref32 = run(grouped_gabor_filterbank_ref, cfg, x, torch.float32)
    out = run(gabor.gabor_filterbank_triton, cfg, x, torch.float32)
    for name, r64, r32, o in zip(NAMES, ref64, ref32, out):
        if r64 is None:
            assert o is None, name
            continue
        assert o.dtype == torch.float32, name
        assert_close(name + ' vs f64 [%s]' % cfg['desc'], r64, o, ratio)
        assert_close(name + ' vs f32 [%s]' % cfg['desc'], r32, o, ratio)


@pytest.mark.parametrize('seed', range(16))
def test_random_configs(seed):
    compare(draw_config(seed, max_cost=1500))


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get('ELEAF_SLOW_TESTS'),
                    reason='set ELEAF_SLOW_TESTS=1 for the larger sweep')
@pytest.mark.parametrize('seed', range(16, 40))
def test_random_configs_slow(seed):
    compare(draw_config(seed))


def test_leaf():
    compare(leaf_config())


def test_pooling_shifts():
    # windows spanning 1, 2, 9 and 5 hops (Q = cdiv(W, P) pooling shifts): the forward keeps
    # at most 4 shift accumulators, so Q = 9 and Q = 5 take 3 and 2 passes over the phases
    mu = torch.linspace(0.2, 2.8, 16, dtype=torch.float64)
    sigma = torch.linspace(2., 6., 16, dtype=torch.float64)
    pw = torch.linspace(0.1, 0.5, 16, dtype=torch.float64)
    geometry = (GroupGeometry(0, 4, 4, 4, 15, 3), GroupGeometry(4, 8, 1, 16, 61, 17),
                GroupGeometry(8, 12, 2, 8, 31, 65), GroupGeometry(12, 16, 8, 2, 9, 9))
    assert [-(-g.window_size // g.pool_stride) for g in geometry] == [1, 2, 9, 5]
    for L in (37, 300):
        compare(dict(mu=mu, sigma=sigma, pw=pw, geometry=geometry, L=L, batch=2,
                     x_grad=True, noncontig=L > 100, desc='shifts L=%d' % L))


def test_minimal_and_chunked(monkeypatch):
    # L = 1 (one frame, one convolution step), then a backward split into batch chunks of 1
    cfg = draw_config(3, max_cost=800)
    cfg.update(L=1, batch=2, desc='L=1')
    compare(cfg)
    monkeypatch.setenv('ELEAF_GABOR_SCRATCH_MB', '1e-6')
    cfg = draw_config(5, max_cost=800)
    cfg.update(batch=3, x_grad=True, desc='chunked ' + cfg['desc'])
    compare(cfg)


def test_through_the_custom_ops(monkeypatch):
    # eager mode normally calls the kernels through autograd.Functions (less host time);
    # ELEAF_CUSTOM_OPS=1 takes the registered ops eleaf::gabor_pack / gabor_pool, which
    # torch.compile traces: same numbers
    monkeypatch.setenv('ELEAF_CUSTOM_OPS', '1')
    assert gabor.use_custom_ops()
    cfg = draw_config(7, max_cost=800)
    cfg.update(x_grad=True, desc='custom ops ' + cfg['desc'])
    compare(cfg)


@pytest.mark.parametrize('key', ['cuda', 'cuda_tf32'])
def test_gpu_launch_settings(monkeypatch, key):
    # the interpreter normally runs larger chunks; here it runs the GPU's block sizes (of
    # full-fp32 and of TF32 launches, with fp32 dots), with the taps-gradient reduction split
    # into several row ranges per batch element
    settings = dict(gabor.LAUNCH[key], taps_rows=64)
    monkeypatch.setitem(gabor.LAUNCH, 'interpreter', settings)
    monkeypatch.setattr(gabor_plan, '_PLANS', type(gabor_plan._PLANS)())
    cfg = draw_config(6, max_cost=600)
    cfg.update(x_grad=True, desc='GPU settings ' + cfg['desc'])
    compare(cfg)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    cfg = draw_config(1, max_cost=800)
    x = make_x(cfg).to(dtype)
    ref = run(grouped_gabor_filterbank_ref, cfg, x.double(), torch.float64)
    xs = x.to(DEVICE).requires_grad_()
    params = [t.to(DEVICE).requires_grad_() for t in (cfg['mu'], cfg['sigma'], cfg['pw'])]
    out = gabor.gabor_filterbank_triton(xs, *params, cfg['geometry'])
    assert out.dtype == dtype
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    out.backward(g.to(DEVICE, dtype))
    assert xs.grad.dtype == dtype
    for name, r, o in zip(NAMES, ref, [out, xs.grad] + [p.grad for p in params]):
        assert_close(name, r, o, RTOL[dtype])


def test_tf32_switch():
    cfg = draw_config(2, max_cost=800)
    old = torch.get_float32_matmul_precision()
    try:
        torch.set_float32_matmul_precision('high')
        assert gabor._precision() == 'tf32'
        compare(cfg, ratio=1e-2)
    finally:
        torch.set_float32_matmul_precision(old)
    assert gabor._precision() == ('ieee' if old == 'highest' else 'tf32')


def test_opcheck():
    cfg = leaf_config(L=200, n_filters=4, batch=1)
    cfg['geometry'] = (GroupGeometry(0, 2, 2, 16, 21, 17), GroupGeometry(2, 4, 4, 8, 9, 9))
    x = make_x(cfg).to(DEVICE).requires_grad_()
    geo, layout = gabor.static_geometry(cfg['geometry'], DEVICE)
    taps, windows = gabor.pack_taps(*(cfg[k].to(DEVICE) for k in ('mu', 'sigma', 'pw')),
                                    geo, layout)
    taps = taps.detach().requires_grad_()
    windows = windows.detach().requires_grad_()
    torch.library.opcheck(torch.ops.eleaf.gabor_pool.default, (x, taps, windows, geo, layout))


def test_compile_fullgraph():
    cfg = draw_config(4, max_cost=800)
    geometry = cfg['geometry']

    def f(x, mu, sigma, pw):
        return gabor.gabor_filterbank_triton(x, mu, sigma, pw, geometry).square().sum()

    cf = torch.compile(f, fullgraph=True, backend='aot_eager')
    x = make_x(cfg).to(DEVICE)
    args = [t.to(DEVICE).requires_grad_() for t in (cfg['mu'], cfg['sigma'], cfg['pw'])]
    ref_args = [t.detach().clone().requires_grad_() for t in args]
    cf(x, *args).backward()
    f(x, *ref_args).backward()
    for a, r in zip(args, ref_args):
        assert_close('compiled grad', r.grad, a.grad, 1e-6)


def test_registry():
    fn = B._REGISTRY['gabor_filterbank']['triton'].fn
    assert fn is gabor.gabor_filterbank_triton
    assert B.resolve_backend('gabor_filterbank', 'triton', torch.device(DEVICE),
                             torch.float32) == 'triton'
    check = B._REGISTRY['gabor_filterbank']['triton'].check
    assert 'float64' in check(torch.device(DEVICE), torch.float64)
    assert check(torch.device(DEVICE), torch.int32) is not None
    for dt in (torch.float32, torch.float16, torch.bfloat16):
        assert check(torch.device(DEVICE), dt) is None


def test_bad_inputs():
    cfg = draw_config(0, max_cost=800)
    with pytest.raises(ValueError):
        gabor.gabor_filterbank_triton(torch.zeros(2, 5), cfg['mu'], cfg['sigma'], cfg['pw'],
                                      cfg['geometry'])
    with pytest.raises(ValueError):
        gabor.gabor_fwd(torch.zeros(1, 1, 10), torch.zeros(3), torch.zeros(3),
                        torch.zeros(1, 4, dtype=torch.int32), [0, 1, 2, 3, 4])
