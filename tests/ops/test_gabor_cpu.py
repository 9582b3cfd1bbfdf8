"""CPU grouped Gabor filterbank (``backend='cpp'``: eleaf/ops/gabor_cpu.py with the fused
squared-modulus pooling of csrc/modulus_pool.cpp) against the reference (SPEC §2-§5).

Reference: :func:`eleaf.functional.grouped_gabor_filterbank_ref`, run in float64 and in
float32. Output and every gradient (x, center_freqs, bandwidths, pool_widths) must match
within ‖out − ref‖/‖ref‖ ≤ 1e-5 in float32 (1e-10 in float64), for every convolution
algorithm, forced in turn (direct; FFT as the fused op csrc/spectral_pool.cpp; FFT as
separate ops, the path of a PyTorch without oneMKL), single blocks and many blocks with
recomputation in the backward pass. Uninitialised memory is filled with NaN
(``torch.utils.deterministic.fill_uninitialized_memory``), so an element the kernel fails to
write shows up as non-finite.
"""
import pytest
import torch

import eleaf
from eleaf.functional import grouped_gabor_filterbank_ref
from eleaf.functional.gabor import GroupGeometry
from eleaf.ops import BackendUnavailableError
from eleaf.ops.backends import cpp_status, resolve_backend
from tests.ops.gabor_cases import (CPU_METHODS, NAMES, draw_config, force_cpu_method,
                                   leaf_config, make_x, run)
from tests.testing import RTOL, assert_close, rel_err

CPP_OK, CPP_REASON, _ = cpp_status()
pytestmark = pytest.mark.skipif(not CPP_OK, reason=CPP_REASON)

if CPP_OK:
    from eleaf.ops import gabor_cpu


def cost(cfg):
    """Multiply-adds of the direct convolution, a proxy of the test's run time."""
    return sum(cfg['batch'] * ((cfg['L'] - 1) // g.conv_stride + 1) * g.kernel_size
               * g.num_filters for g in cfg['geometry'])


@pytest.fixture(autouse=True)
def _nan_fill(nan_fill):
    """Every test here runs with fresh tensors NaN-filled (tests/ops/conftest.py)."""


def force(monkeypatch, method=None, block_values=None, checkpoint_values=None):
    if method is not None:
        force_cpu_method(monkeypatch, method)
    if block_values is not None:
        monkeypatch.setattr(gabor_cpu, 'BLOCK_VALUES', block_values)
        monkeypatch.setattr(gabor_cpu.plan_blocks, '__defaults__', (block_values, None))
        monkeypatch.setattr(gabor_cpu, 'FFT_BLOCK_SAMPLES', block_values // 2)
    if checkpoint_values is not None:
        monkeypatch.setattr(gabor_cpu, 'CHECKPOINT_VALUES', checkpoint_values)


def compare(cfg, x=None, dtypes=(torch.float32,)):
    x = make_x(cfg) if x is None else x
    ref64 = run(grouped_gabor_filterbank_ref, cfg, x.double(), torch.float64)
    for dtype in dtypes:
        out = run(gabor_cpu.gabor_filterbank_cpu, cfg, x, dtype)
        refs = [ref64] if dtype == torch.float64 else [
            ref64, run(grouped_gabor_filterbank_ref, cfg, x, torch.float32)]
        for ref in refs:
            for name, r, o in zip(NAMES, ref, out):
                if r is None:
                    assert o is None, name
                    continue
                assert o.dtype == dtype, name
                assert_close('%s %s [%s]' % (name, dtype, cfg['desc']), r, o, RTOL[dtype])


@pytest.mark.parametrize('method', CPU_METHODS)
@pytest.mark.parametrize('seed', range(8))
def test_random_configs(monkeypatch, seed, method):
    force(monkeypatch, method)
    compare(draw_config(seed, max_cost=3e6, cost=cost), dtypes=(torch.float32, torch.float64))


@pytest.mark.parametrize('method', CPU_METHODS)
def test_leaf(monkeypatch, method):
    force(monkeypatch, method)
    compare(leaf_config(L=2000, n_filters=12))


@pytest.mark.parametrize('method', CPU_METHODS)
@pytest.mark.parametrize('seed', [2, 7])
@pytest.mark.parametrize('x_grad', [True, False])
def test_blocks_and_recomputation(monkeypatch, seed, method, x_grad):
    # blocks of a few frames (of one example; of all examples for the fused FFT op),
    # recomputed in the backward pass; with and without the input's gradient (the FFT path
    # plans its blocks differently for each)
    force(monkeypatch, method, block_values=2000, checkpoint_values=0)
    cfg = draw_config(seed, max_cost=3e6, cost=cost)
    cfg.update(L=max(cfg['L'], 3000), x_grad=x_grad, desc='blocks ' + cfg['desc'])
    compare(cfg)


@pytest.mark.parametrize('method', CPU_METHODS)
@pytest.mark.parametrize('x_grad', [True, False])
def test_example_blocks_not_dividing_the_batch(monkeypatch, method, x_grad):
    # blocks of 2 whole examples over a batch of 5: the last block holds one example (the
    # direct path convolves whole rows of the padded input there)
    cfg = draw_config(4, max_cost=3e6, cost=cost)
    frames = (cfg['L'] - 1) // (cfg['geometry'][0].conv_stride
                                * cfg['geometry'][0].pool_stride) + 1
    per_example = max(2 * g.num_filters * ((frames - 1) * g.pool_stride + g.window_size)
                      for g in cfg['geometry'])      # as plan_blocks counts them
    force(monkeypatch, method, block_values=2 * per_example + 1, checkpoint_values=0)
    cfg.update(batch=5, x_grad=x_grad, desc='5 examples in blocks of 2+ ' + cfg['desc'])
    plans = [gabor_cpu.plan_blocks(5, frames, g) for g in cfg['geometry']]
    assert (2, frames) in plans and all(p[1] == frames for p in plans), plans
    compare(cfg)


def test_short_inputs(monkeypatch):
    # L = 1 and L shorter than every kernel: one frame; batch of one
    for L in (1, 7):
        cfg = draw_config(11, max_cost=3e6, cost=cost)
        cfg.update(L=L, batch=1, desc='L=%d' % L)
        for method in CPU_METHODS:
            if method == 'fft' and not gabor_cpu.FUSED_FFT:
                continue
            force(monkeypatch, method)
            compare(cfg)


def test_choose_method_fused(monkeypatch):
    # measured per group on the 2-core machine (forward and train step, 16 x 1 s and 2 x 8 s):
    # the fused FFT op wins for LEAF and every EfficientLEAF 4G group, direct for every
    # 8G-opt group
    monkeypatch.setattr(gabor_cpu, 'FUSED_FFT', True)
    leaf = GroupGeometry(0, 40, 1, 160, 401, 401)
    four_g = [GroupGeometry(0, 10, 10, 16, 401, 41), GroupGeometry(0, 10, 4, 40, 221, 101),
              GroupGeometry(0, 10, 2, 80, 123, 201), GroupGeometry(0, 10, 1, 160, 69, 401)]
    eight_g = [GroupGeometry(0, 5, 160, 1, 505, 3), GroupGeometry(0, 5, 40, 4, 209, 11),
               GroupGeometry(0, 5, 16, 10, 65, 25)]
    for B, L in ((16, 16000), (2, 128000)):
        for train in (False, True):
            assert gabor_cpu._GroupPlan.make(B, L, leaf, False, train).method == 'fft'
            assert gabor_cpu._GroupPlan.make(B, L, leaf, True, train).method == 'direct'
            for geom in eight_g:
                assert gabor_cpu._GroupPlan.make(B, L, geom, False, train).method == 'direct'
        for geom in four_g:
            assert gabor_cpu._GroupPlan.make(B, L, geom, False, True).method == 'fft'
    # a short kernel: direct
    assert gabor_cpu.choose_method(16, 16400, GroupGeometry(0, 10, 1, 160, 15, 401)) == 'direct'


def test_fused_plan_stores_nothing(monkeypatch):
    # the fused op recomputes in its backward pass: no checkpointing, all examples per block,
    # blocks of at most FFT_BLOCK_SAMPLES input samples (one frame at least)
    monkeypatch.setattr(gabor_cpu, 'FUSED_FFT', True)
    leaf = GroupGeometry(0, 40, 1, 160, 401, 401)
    plan = gabor_cpu._GroupPlan.make(2, 60 * 16000, leaf, False, True)
    assert (plan.method, plan.examples, plan.recompute) == ('fft', 2, False)
    assert (plan.block - 1) * 160 + 401 + 400 <= gabor_cpu.FFT_BLOCK_SAMPLES
    assert gabor_cpu.fft_block_frames(10, leaf, budget=100) == 1


def test_unfused_fft_path_is_logged_once(monkeypatch, caplog):
    # without the fused op (no oneMKL) the slower separate ops run, and the log says so once
    monkeypatch.setattr(gabor_cpu, 'FUSED_FFT', False)
    monkeypatch.setattr(gabor_cpu, 'FUSED_FFT_REASON', 'no DFT functions (test)')
    monkeypatch.setattr(gabor_cpu, '_warned_unfused', False)
    leaf = GroupGeometry(0, 40, 1, 160, 401, 401)
    with caplog.at_level('WARNING', logger='eleaf'):
        for _ in range(3):
            assert gabor_cpu._GroupPlan.make(16, 16000, leaf, False, True).method == 'fft'
    messages = [r.getMessage() for r in caplog.records if 'separate ops' in r.getMessage()]
    assert len(messages) == 1 and 'no DFT functions (test)' in messages[0]


def test_choose_method_unfused(monkeypatch):
    # the separate FFT ops (no oneMKL): LEAF's 401-tap stride-1 convolution goes through the
    # FFT, small or strided kernels not
    monkeypatch.setattr(gabor_cpu, 'FUSED_FFT', False)
    leaf = GroupGeometry(0, 40, 1, 160, 401, 401)
    assert gabor_cpu.choose_method(16, 16400, leaf) == 'fft'
    assert gabor_cpu.choose_method(16, 16400, leaf, input_grad=True) == 'direct'
    assert gabor_cpu.choose_method(16, 16400, GroupGeometry(0, 10, 1, 160, 15, 401)) == 'direct'
    assert gabor_cpu.choose_method(16, 200, GroupGeometry(0, 5, 80, 2, 281, 5)) == 'direct'
    # training: the FFT's cheaper backward wins for 4G's strided group at 1 s, not for the
    # transforms of ~10^5 points of 8 s blocks
    strided = GroupGeometry(0, 10, 4, 40, 221, 101)
    assert gabor_cpu.choose_method(16, 4141, strided, train=True) == 'fft'
    assert gabor_cpu.choose_method(16, 4141, strided, train=False) == 'direct'
    assert gabor_cpu.choose_method(2, 32061, strided, train=True) == 'direct'
    assert gabor_cpu.choose_method(1, 26000, leaf, train=True) == 'fft'


@pytest.mark.parametrize('s, K', [(160, 505), (16, 65), (40, 421), (4, 221), (1, 5), (3, 3)])
def test_strided_weight_grad_both_forms(monkeypatch, s, K):
    # polyphase (K spans at most _POLYPHASE_MAX = 16 strides) and unfolded-frames forms
    # (copied when small, strided views when large) against torch's conv1d weight gradient,
    # float64
    g = torch.Generator().manual_seed(s + K)
    B, C, N = 3, 4, 37
    Q = -(-K // s)
    x = torch.randn(B, (N + Q - 1) * s, generator=g, dtype=torch.float64)
    grad = torch.randn(B, C, N, generator=g, dtype=torch.float64)
    expect = torch.nn.grad.conv1d_weight(x[:, None, :(N - 1) * s + K], (C, 1, K), grad,
                                         stride=s)[:, 0]
    for im2col_values in (gabor_cpu._IM2COL_VALUES, 0):
        monkeypatch.setattr(gabor_cpu, '_IM2COL_VALUES', im2col_values)
        for xx in (x, x[:, :(N - 1) * s + K]):  # the second is too short for the polyphase form
            out = gabor_cpu._strided_weight_grad(xx, grad, s, K)
            assert torch.allclose(out, expect, rtol=1e-12, atol=1e-12)


def test_fft_size():
    for n in (1, 2, 7, 100, 16400, 16401, 100003):
        size = gabor_cpu.fft_size(n)
        assert size >= n
        m = size
        while m % 2 == 0:
            m //= 2
        assert m in (1, 3, 5, 9), size
        # no smaller admissible length exists
        assert all(c < n for c in range(n, size) if _admissible(c)) or size == n


def _admissible(c):
    while c % 2 == 0:
        c //= 2
    return c in (1, 3, 5, 9)


def test_long_input_memory(monkeypatch):
    """Forward and backward of 2 x 60 s through LEAF keep no full convolution output: the
    tensors autograd saves stay far below the (B, 2F, L) output of the reference."""
    B, F, L = 2, 40, 60 * 16000
    frontend = eleaf.Leaf(n_filters=F, backend='cpp')
    x = torch.randn(B, 1, L)
    saved = {}  # storage address -> bytes: what autograd keeps alive

    def pack(t):
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = frontend.filterbank(x)
    out.sum().backward()
    full = B * 2 * F * L * 4
    assert max(saved.values()) < full / 20, (max(saved.values()), full)
    assert sum(saved.values()) < full / 10, (sum(saved.values()), full)
    assert frontend.filterbank.center_freqs.grad is not None
    assert torch.isfinite(frontend.filterbank.center_freqs.grad).all()


@pytest.mark.parametrize('frontend', ['leaf', 'efficientleaf-4g', 'efficientleaf-8g-opt'])
def test_frontend_backend_cpp(frontend):
    """Whole frontends with backend='cpp' against backend='torch': outputs and the gradients of
    every parameter (the PCEN frontend; LogTBN's median gradient is compared separately)."""
    torch.manual_seed(0)
    kwargs = dict(compression='pcen')
    make = {'leaf': lambda b: eleaf.Leaf(n_filters=16, backend=b),
            'efficientleaf-4g': lambda b: eleaf.EfficientLeaf(
                n_filters=16, conv_win_factor=4.75, backend=b, **kwargs),
            'efficientleaf-8g-opt': lambda b: eleaf.EfficientLeaf(
                n_filters=16, num_groups=8, conv_win_factor=6, stride_factor=16, backend=b,
                **kwargs)}[frontend]
    ref, fast = make('torch'), make('cpp')
    fast.load_state_dict(ref.state_dict())
    x = 0.1 * torch.randn(3, 1, 4000)
    outs = []
    for module in (ref, fast):
        out = module(x)
        out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
        outs.append((out.detach(), {k: p.grad for k, p in module.named_parameters()}))
    assert_close('output', outs[0][0], outs[1][0], RTOL[torch.float32])
    for name, g in outs[0][1].items():
        assert_close(name, g, outs[1][1][name], RTOL[torch.float32])


def test_logtbn_frontend_as_close_to_float64_as_the_reference():
    """EfficientLEAF + LogTBN (learned per-band a, median appended): the gradient of a sums
    terms that nearly cancel (the median subtraction and the batch norm remove the constant
    shift that a causes), so even the float32 reference is only ~3e-4 from float64 there.
    The contract for such a gradient: as close to float64 as the float32 reference (within
    2x), and the filterbank's parameter gradients within 1e-5 of the float32 reference."""
    torch.manual_seed(0)
    make = lambda b: eleaf.EfficientLeaf(n_filters=16, conv_win_factor=4.75, backend=b)
    ref, fast, ref64 = make('torch'), make('cpp'), make('torch').double()
    for module in (fast, ref64):
        module.load_state_dict(ref.state_dict())
    x = 0.1 * torch.randn(3, 1, 8000)
    grads = []
    for module, xx in ((ref, x), (fast, x), (ref64, x.double())):
        out = module(xx)
        out.backward(torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out))
        grads.append({k: p.grad for k, p in module.named_parameters()})
    g32, gfast, g64 = grads
    for name in g64:
        bound = max(RTOL[torch.float32], 2 * rel_err(g32[name], g64[name]))
        assert_close(name + ' vs f64', g64[name], gfast[name], bound)
        if name.startswith('filterbank.'):
            assert_close(name + ' vs f32', g32[name], gfast[name], RTOL[torch.float32])


def test_low_precision_falls_back():
    assert gabor_cpu.check(torch.device('cpu'), torch.float16) is not None
    assert resolve_backend('gabor_filterbank', 'auto', torch.device('cpu'),
                           torch.float16) == 'torch'
    with pytest.raises(BackendUnavailableError, match='float32 and float64'):
        resolve_backend('gabor_filterbank', 'cpp', torch.device('cpu'), torch.bfloat16)


def test_auto_picks_cpp_on_cpu():
    assert resolve_backend('gabor_filterbank', 'auto', torch.device('cpu'),
                           torch.float32) == 'cpp'


def test_modulus_pool_gradcheck_and_opcheck():
    g = torch.Generator().manual_seed(0)
    for interleaved in (False, True):
        shape = (2, 3, 23, 2) if interleaved else (2, 6, 23)
        y = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
        win = torch.rand(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
        args = (4, 2, 20, 5, interleaved)
        torch.autograd.gradcheck(lambda a, b: gabor_cpu.modulus_pool(a, b, *args), (y, win))
        torch.library.opcheck(torch.ops.eleaf.modulus_pool_fwd.default, (y, win) + args)


@pytest.mark.parametrize('W', [1, 5, 8, 9, 25, 32, 33, 64])
def test_modulus_pool_against_definition(W):
    # out[b, f, t] = sum_q win[f, q] (re^2 + im^2)[b, f, t P + q], zero outside [lo, hi), and
    # its gradients by autograd through that definition (float64); the window sizes cover
    # the kernels' paths (tiny <= 8 and short <= 32 taps, long)
    g = torch.Generator().manual_seed(W)
    P, T = 3, 8
    N = (T - 1) * P + W + 2
    lo, hi = 4, N - 5
    y = torch.randn(2, 8, N, generator=g, dtype=torch.float64, requires_grad=True)
    win = torch.rand(4, W, generator=g, dtype=torch.float64, requires_grad=True)
    e = y[:, :4] ** 2 + y[:, 4:] ** 2
    mask = torch.zeros(N, dtype=torch.float64)
    mask[lo:hi] = 1
    e = e * mask
    expect = torch.stack([(e[..., t * P:t * P + W] * win).sum(-1) for t in range(T)], -1)
    out = gabor_cpu.modulus_pool(y, win, P, lo, hi, T, False)
    assert torch.allclose(out, expect, rtol=1e-12, atol=0)
    grad = torch.randn(out.shape, generator=g, dtype=torch.float64)
    expect_grads = torch.autograd.grad(expect, (y, win), grad)
    grads = torch.autograd.grad(out, (y, win), grad)
    for a, b in zip(grads, expect_grads):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    inter = torch.stack([y[:, :4], y[:, 4:]], -1)
    out2 = gabor_cpu.modulus_pool(inter, win, P, lo, hi, T, True)
    assert torch.allclose(out2, expect, rtol=1e-12, atol=0)
    grads2 = torch.autograd.grad(out2, (y, win), grad)
    for a, b in zip(grads2, expect_grads):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize('args, message', [
    ((torch.zeros(2, 5, 30), torch.zeros(2, 7), 3, 0, 30, 8, False), r'\(B, 2n, N\)'),
    ((torch.zeros(2, 4, 30), torch.zeros(3, 7), 3, 0, 30, 8, False), 'win must be'),
    ((torch.zeros(2, 4, 30), torch.zeros(2, 7), 3, 0, 31, 8, False), 'lo <= hi <= N'),
    ((torch.zeros(2, 4, 30), torch.zeros(2, 7), 3, 0, 30, 9, False), 'do not fit'),
    ((torch.zeros(2, 4, 30, dtype=torch.float16), torch.zeros(2, 7, dtype=torch.float16), 3,
      0, 30, 8, False), 'float32 or float64'),
])
def test_modulus_pool_errors(args, message):
    with pytest.raises(RuntimeError, match=message):
        torch.ops.eleaf.modulus_pool_fwd(*args)


def test_torch_compile_runs_the_filterbank_eagerly():
    # torch.compile(frontend) with the CPU filterbank: the filterbank is a graph break (it is
    # not traced, so dynamo warns about nothing inside it); output and gradients as in eager
    import warnings
    torch.manual_seed(0)
    frontend = eleaf.EfficientLeaf(n_filters=16, num_groups=4, conv_win_factor=4,
                                   stride_factor=8, backend='cpp')
    x = torch.randn(2, 4000)
    expect = frontend(x)
    # a random weighting: the plain sum of LogTBN's batch-normalised output is constant, its
    # gradient pure rounding noise
    weights = torch.randn(expect.shape)
    expect_grad = torch.autograd.grad((expect * weights).sum(),
                                      frontend.filterbank.center_freqs)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        compiled = torch.compile(frontend, backend='aot_eager')
        out = compiled(x)
        grad = torch.autograd.grad((out * weights).sum(), frontend.filterbank.center_freqs)[0]
    assert_close('out', expect, out, 1e-6)
    assert_close('dcenter_freqs', expect_grad, grad, 1e-5)
    dynamo = [str(w.message) for w in caught if 'gabor_cpu' in str(w.message)
              or 'Dynamo' in str(w.message)]
    assert not dynamo, dynamo


def test_inference_blocks():
    # without a backward pass, blocks of whole examples hold at most INFERENCE_BLOCK_VALUES
    # convolution outputs (never fewer than one whole example); the output is the same as
    # with the training plan (one block)
    geom = GroupGeometry(0, 10, 16, 10, 127, 25)
    per_example = 2 * 10 * ((100 - 1) * 10 + 25)
    assert gabor_cpu.plan_blocks(16, 100, geom) == (16, 100)
    small = gabor_cpu.plan_blocks(16, 100, geom, example_budget=3 * per_example + 1)
    assert small == (3, 100)
    assert gabor_cpu.plan_blocks(16, 100, geom, example_budget=1) == (1, 100)
    frontend = eleaf.EfficientLeaf(n_filters=80, num_groups=8, conv_win_factor=6,
                                   stride_factor=16, backend='cpp').filterbank
    x = torch.randn(16, 1, 16000, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        inference = frontend(x)
    training = frontend(x)      # parameters require grad: one block per group
    assert_close('out', training.detach(), inference, 1e-6)
