"""The fused frequency-domain op of the CPU filterbank (csrc/spectral_pool.cpp) against its
definition written with plain torch ops in float64.

Definition: block k holds frames [k fb, min(T, (k + 1) fb)); its segment is
x[b, o_k : o_k + N], o_k = start + k fb P s, with spectrum X = fft_N(segment); with
M = N / s, z = ifft_M(sum_{j < s} X[q + j M] h[f, q + j M]), e = |z|^2 at the block's steps
g = first_step + k fb P + p inside [0, steps_total) and 0 elsewhere, and
out[b, f, k fb + t] = sum_w win[f, w] e[t P + w].
Output and the gradients to x, h and win (torch autograd through the definition) must match
within ‖a − b‖/‖b‖ ≤ 1e-10 in float64 and 1e-5 in float32, on random geometries (strides 1 to
5, one to several blocks with a short last one, padding at both ends, windows wider and
narrower than the stride, one frame, one example). Fresh tensors are NaN-filled while the op
runs, so an element it fails to write shows up.
"""
import random

import pytest
import torch

from eleaf.ops.backends import cpp_status
from tests.testing import RTOL, assert_close

CPP_OK, CPP_REASON, _ = cpp_status()
pytestmark = pytest.mark.skipif(not CPP_OK, reason=CPP_REASON)

if CPP_OK:
    from eleaf.ops import gabor_cpu

    if not gabor_cpu.FUSED_FFT:
        pytestmark = pytest.mark.skip(reason=gabor_cpu.FUSED_FFT_REASON)


@pytest.fixture(autouse=True)
def _nan_fill(nan_fill):
    """Every test here runs with fresh tensors NaN-filled (tests/ops/conftest.py)."""


def definition(x, h, win, s, P, fb, start, first_step, steps_total, T):
    """The op's result from torch ops (x (B, L), h (n, N, 2), win (n, W))."""
    hc = torch.view_as_complex(h)
    B, n, N, W = x.shape[0], hc.shape[0], hc.shape[1], win.shape[1]
    M = N // s
    outs = []
    for k in range(-(-T // fb)):
        o = start + k * fb * P * s
        X = torch.fft.fft(x[:, o:o + N])
        z = torch.fft.ifft((X[:, None] * hc[None]).view(B, n, s, M).sum(2))
        steps = first_step + k * fb * P + torch.arange(M)
        e = (z.real ** 2 + z.imag ** 2) * ((steps >= 0) & (steps < steps_total))
        frames = e.unfold(-1, W, P)[:, :, :min(fb, T - k * fb)]    # (B, n, T_k, W)
        outs.append((frames * win[None, :, None]).sum(-1))
    return torch.cat(outs, -1)


def draw(seed):
    rng = random.Random(seed)
    s = rng.choice([1, 1, 2, 3, 5])
    M = rng.randint(8, 90)
    W = rng.randint(1, M)
    P = rng.randint(1, 12)
    fb = rng.randint(1, (M - W) // P + 1)
    T = rng.randint(1, 4 * fb)
    blocks = -(-T // fb)
    first_step = -rng.randint(0, W)
    covered = first_step + (T - 1) * P + W
    steps_total = rng.randint(max(1, covered - W), covered + 3)
    start = rng.randint(0, 5)
    L = start + (blocks - 1) * fb * P * s + M * s + rng.randint(0, 4)
    return dict(B=rng.randint(1, 4), n=rng.randint(1, 5), s=s, M=M, W=W, P=P, fb=fb, T=T,
                start=start, first_step=first_step, steps_total=steps_total, L=L)


def geometry(c):
    return (c['s'], c['P'], c['fb'], c['start'], c['first_step'], c['steps_total'])


#: chunk_values of the op (complex values of segment spectra held at once): one block at a
#: time, or all
ONE_BLOCK, ALL = 1, 1 << 30


def tensors(c, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(c['B'], c['L'], generator=g, dtype=torch.float64)
    h = torch.randn(c['n'], c['M'] * c['s'], 2, generator=g, dtype=torch.float64)
    win = torch.rand(c['n'], c['W'], generator=g, dtype=torch.float64)
    grad = torch.randn(c['B'], c['n'], c['T'], generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (x, h, win, grad)]


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('seed', range(16))
def test_against_definition(seed, dtype):
    chunk = ONE_BLOCK if seed % 2 else ALL
    c = draw(seed)
    x, h, win, grad = tensors(c, dtype, seed)
    ref_in = [t.detach().double().requires_grad_() for t in (x, h, win)]
    ref = definition(*ref_in, *geometry(c), c['T'])
    ref_grads = torch.autograd.grad(ref, ref_in, grad.double())
    ins = [t.detach().requires_grad_() for t in (x, h, win)]
    out = torch.ops.eleaf.spectral_pool_fwd(*ins, *geometry(c), c['T'], chunk)
    grads = torch.autograd.grad(out, ins, grad)
    desc = '%s %s' % (c, dtype)
    assert_close('out ' + desc, ref, out, RTOL[dtype])
    for name, r, o in zip(('x', 'h', 'win'), ref_grads, grads):
        assert o.dtype == dtype
        assert_close('grad %s %s' % (name, desc), r, o, RTOL[dtype])


def test_gradients_only_where_needed():
    c = draw(3)
    x, h, win, grad = tensors(c, torch.float64, 3)
    full = torch.ops.eleaf.spectral_pool_bwd(grad, x, h, win, *geometry(c), ALL, True, True,
                                             True)
    for need in [(True, False, False), (False, True, False), (False, False, True)]:
        part = torch.ops.eleaf.spectral_pool_bwd(grad, x, h, win, *geometry(c), ALL, *need)
        for wanted, p, f in zip(need, part, full):
            if wanted:
                assert torch.equal(p, f)
            else:
                assert p.numel() == 0


def test_matches_the_separate_ops():
    # one block: what torch.fft.fft + spectral_fold_fwd + torch.fft.ifft + modulus_pool_fwd
    # (the path without oneMKL) give
    c = dict(B=3, n=4, s=2, M=64, W=9, P=4, fb=14, T=14, start=0, first_step=-3,
             steps_total=57, L=128)
    x, h, win, _ = tensors(c, torch.float32, 0)
    spectrum = torch.view_as_real(torch.fft.fft(x))
    z = torch.ops.eleaf.spectral_fold_fwd(spectrum, h, 2)
    y = torch.view_as_real(torch.fft.ifft(torch.view_as_complex(z)))
    separate = gabor_cpu.modulus_pool(y, win, 4, 3, 60, 14, True)
    fused = torch.ops.eleaf.spectral_pool_fwd(x, h, win, *geometry(c), 14, ALL)
    assert_close('fused vs separate', separate, fused, 1e-6)


def test_opcheck_and_gradcheck():
    c = dict(B=2, n=2, s=2, M=12, W=5, P=3, fb=2, T=3, start=1, first_step=-2,
             steps_total=8, L=40)
    x, h, win, _ = tensors(c, torch.float64, 1)
    args = (x.requires_grad_(), h.requires_grad_(), win.requires_grad_()) + geometry(c) + (3, 40)
    torch.library.opcheck(torch.ops.eleaf.spectral_pool_fwd.default, args)
    torch.autograd.gradcheck(lambda a, b, w: torch.ops.eleaf.spectral_pool_fwd(
        a, b, w, *args[3:]), args[:3])


#: x (B, L), h (n, N, 2), win (n, W); then stride, P, block_frames, start, first_step,
#: steps_total, frames, chunk_values
_OK = ((2, 40), (3, 12, 2), (3, 5)), (1, 2, 2, 0, -2, 30, 5, 100)


@pytest.mark.parametrize('shapes, ints, message', [
    (((2, 40, 1),) + _OK[0][1:], _OK[1], r'x must be \(B, L\)'),
    ((_OK[0][0], (3, 12), _OK[0][2]), _OK[1], r'h must be \(n, N, 2\)'),
    (_OK[0][:2] + ((2, 5),), _OK[1], r'win must be \(n, W\)'),
    (_OK[0], (5,) + _OK[1][1:], 'multiple of the stride'),
    (_OK[0], (1, 2, 5, 0, -2, 30, 5, 100), 'do not fit in M'),
    (_OK[0], (1, 2, 2, 0, -2, 30, 40, 100), 'do not fit in x'),
    (_OK[0], (1, 2, 2, -1, -2, 30, 5, 100), 'do not fit in x'),
    (_OK[0], (1, 0, 2, 0, -2, 30, 5, 100), 'must be >= 1'),
])
def test_errors(shapes, ints, message):
    x, h, win = (torch.zeros(s) for s in shapes)
    torch.ops.eleaf.spectral_pool_fwd(*(torch.zeros(s) for s in _OK[0]), *_OK[1])  # valid
    with pytest.raises(RuntimeError, match=message):
        torch.ops.eleaf.spectral_pool_fwd(x, h, win, *ints)


def test_dtype_error():
    x, h = torch.zeros(2, 8, dtype=torch.float16), torch.zeros(1, 8, 2, dtype=torch.float16)
    with pytest.raises(RuntimeError, match='float32 or all float64'):
        torch.ops.eleaf.spectral_pool_fwd(x, h, torch.zeros(1, 3, dtype=torch.float16),
                                          1, 1, 2, 0, 0, 8, 2, 100)


def test_threads_do_not_change_the_result():
    # each output element is written by one thread in a fixed order
    c = dict(B=5, n=7, s=1, M=300, W=41, P=16, fb=14, T=40, start=3, first_step=-20,
             steps_total=620, L=1000)
    x, h, win, grad = tensors(c, torch.float32, 2)
    old = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append((torch.ops.eleaf.spectral_pool_fwd(x, h, win, *geometry(c), 40,
                                                              ALL),)
                           + torch.ops.eleaf.spectral_pool_bwd(grad, x, h, win, *geometry(c),
                                                               ALL, True, True, True))
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_chunks_do_not_change_the_result():
    # the segment spectra held one block at a time or all at once: the same sums in the
    # same order, bit for bit
    c = dict(B=3, n=4, s=2, M=64, W=9, P=4, fb=5, T=23, start=2, first_step=-4,
             steps_total=90, L=300)
    x, h, win, grad = tensors(c, torch.float32, 4)
    results = []
    for chunk in (ONE_BLOCK, 2 * c['B'] * c['M'] * c['s'], ALL):
        results.append((torch.ops.eleaf.spectral_pool_fwd(x, h, win, *geometry(c), 23, chunk),)
                       + torch.ops.eleaf.spectral_pool_bwd(grad, x, h, win, *geometry(c), chunk,
                                                           True, True, True))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)
