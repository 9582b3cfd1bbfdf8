"""The fused frequency-domain op of the CPU filterbank (csrc/spectral_pool.cpp) against its
definition written with plain torch ops in float64.

Definition (M = N / s):  z[b, f] = ifft_M(sum_{j < s} x[b, k + j M] h[f, k + j M]),
e = |z|^2 on steps [lo, hi) and 0 elsewhere, out[b, f, t] = sum_q win[f, q] e[t P + q].
Output and the gradients to x, h and win (torch autograd through the definition) must match
within ‖a − b‖/‖b‖ ≤ 1e-10 in float64 and 1e-5 in float32, on random shapes (strides 1 to 5,
windows wider than the stride and narrower, padding at both ends, one frame, one example).
Fresh tensors are NaN-filled while the op runs, so an element it fails to write shows up.
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
def _nan_fill():
    old = (torch.are_deterministic_algorithms_enabled(),
           torch.utils.deterministic.fill_uninitialized_memory)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(old[0])
    torch.utils.deterministic.fill_uninitialized_memory = old[1]


def definition(x, h, win, s, P, lo, hi, T):
    """The op's result from torch ops (x (B, N, 2), h (n, N, 2), win (n, W))."""
    xc, hc = torch.view_as_complex(x), torch.view_as_complex(h)
    B, N = xc.shape
    n, M, W = hc.shape[0], N // s, win.shape[1]
    z = torch.fft.ifft((xc[:, None] * hc[None]).view(B, n, s, M).sum(2))
    e = z.real ** 2 + z.imag ** 2
    mask = torch.zeros(M, dtype=e.dtype)
    mask[lo:hi] = 1
    e = e * mask
    frames = e.unfold(-1, W, P)[:, :, :T]                     # (B, n, T, W)
    return (frames * win[None, :, None]).sum(-1)


def draw(seed):
    rng = random.Random(seed)
    s = rng.choice([1, 1, 2, 3, 5])
    M = rng.randint(8, 90)
    W = rng.randint(1, M)
    P = rng.randint(1, 12)
    T = rng.randint(1, (M - W) // P + 1)
    lo = rng.randint(0, M // 3)
    hi = rng.randint(max(lo, M - M // 3), M)
    return dict(B=rng.randint(1, 4), n=rng.randint(1, 5), s=s, M=M, W=W, P=P, T=T, lo=lo,
                hi=hi)


def tensors(c, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    N = c['M'] * c['s']
    x = torch.randn(c['B'], N, 2, generator=g, dtype=torch.float64)
    h = torch.randn(c['n'], N, 2, generator=g, dtype=torch.float64)
    win = torch.rand(c['n'], c['W'], generator=g, dtype=torch.float64)
    grad = torch.randn(c['B'], c['n'], c['T'], generator=g, dtype=torch.float64)
    return [t.to(dtype) for t in (x, h, win, grad)]


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('seed', range(12))
def test_against_definition(seed, dtype):
    c = draw(seed)
    geometry = (c['s'], c['P'], c['lo'], c['hi'])
    x, h, win, grad = tensors(c, dtype, seed)
    ref_in = [t.detach().double().requires_grad_() for t in (x, h, win)]
    ref = definition(*ref_in, *geometry, c['T'])
    ref_grads = torch.autograd.grad(ref, ref_in, grad.double())
    ins = [t.detach().requires_grad_() for t in (x, h, win)]
    out = torch.ops.eleaf.spectral_pool_fwd(*ins, *geometry, c['T'])
    grads = torch.autograd.grad(out, ins, grad)
    desc = '%s %s' % (c, dtype)
    assert_close('out ' + desc, ref, out, RTOL[dtype])
    for name, r, o in zip(('x', 'h', 'win'), ref_grads, grads):
        assert o.dtype == dtype
        assert_close('grad %s %s' % (name, desc), r, o, RTOL[dtype])


def test_gradients_only_where_needed():
    c = draw(3)
    x, h, win, grad = tensors(c, torch.float64, 3)
    geometry = (c['s'], c['P'], c['lo'], c['hi'])
    full = torch.ops.eleaf.spectral_pool_bwd(grad, x, h, win, *geometry, True, True, True)
    for need in [(True, False, False), (False, True, False), (False, False, True)]:
        part = torch.ops.eleaf.spectral_pool_bwd(grad, x, h, win, *geometry, *need)
        for wanted, p, f in zip(need, part, full):
            if wanted:
                assert torch.equal(p, f)
            else:
                assert p.numel() == 0


def test_matches_the_separate_ops():
    # the fused op computes what spectral_fold_fwd + torch.fft.ifft + modulus_pool_fwd give
    c = dict(B=3, n=4, s=2, M=64, W=9, P=4, T=14, lo=3, hi=60)
    x, h, win, _ = tensors(c, torch.float32, 0)
    z = torch.ops.eleaf.spectral_fold_fwd(x, h, 2)
    y = torch.view_as_real(torch.fft.ifft(torch.view_as_complex(z)))
    separate = gabor_cpu.modulus_pool(y, win, 4, 3, 60, 14, True)
    fused = torch.ops.eleaf.spectral_pool_fwd(x, h, win, 2, 4, 3, 60, 14)
    assert_close('fused vs separate', separate, fused, 1e-6)


def test_opcheck_and_gradcheck():
    c = dict(B=2, n=2, s=2, M=12, W=5, P=3, T=3, lo=1, hi=11)
    x, h, win, _ = tensors(c, torch.float64, 1)
    args = (x.requires_grad_(), h.requires_grad_(), win.requires_grad_(), 2, 3, 1, 11, 3)
    torch.library.opcheck(torch.ops.eleaf.spectral_pool_fwd.default, args)
    torch.autograd.gradcheck(lambda a, b, w: torch.ops.eleaf.spectral_pool_fwd(
        a, b, w, *args[3:]), args[:3])


@pytest.mark.parametrize('shapes, geometry, message', [
    (((2, 30), (3, 30, 2), (3, 5)), (1, 2, 0, 30, 5), r'x must be \(B, N, 2\)'),
    (((2, 30, 2), (3, 31, 2), (3, 5)), (1, 2, 0, 30, 5), r'h must be \(n, N, 2\)'),
    (((2, 30, 2), (3, 30, 2), (2, 5)), (1, 2, 0, 30, 5), r'win must be \(n, W\)'),
    (((2, 30, 2), (3, 30, 2), (3, 5)), (4, 2, 0, 7, 1), 'multiple of the stride'),
    (((2, 30, 2), (3, 30, 2), (3, 5)), (1, 2, 0, 31, 5), 'lo <= hi <= M'),
    (((2, 30, 2), (3, 30, 2), (3, 5)), (1, 2, 0, 30, 14), 'do not fit'),
    (((2, 30, 2), (3, 30, 2), (3, 31)), (1, 2, 0, 30, 1), 'window size'),
])
def test_errors(shapes, geometry, message):
    x, h, win = (torch.zeros(s) for s in shapes)
    with pytest.raises(RuntimeError, match=message):
        torch.ops.eleaf.spectral_pool_fwd(x, h, win, *geometry)


def test_dtype_error():
    x, h = torch.zeros(2, 8, 2, dtype=torch.float16), torch.zeros(1, 8, 2, dtype=torch.float16)
    with pytest.raises(RuntimeError, match='float32 or all float64'):
        torch.ops.eleaf.spectral_pool_fwd(x, h, torch.zeros(1, 3, dtype=torch.float16),
                                          1, 1, 0, 8, 2)


def test_threads_do_not_change_the_result():
    # each output element is written by one thread in a fixed order
    c = dict(B=5, n=7, s=1, M=300, W=41, P=16, T=17, lo=20, hi=280)
    x, h, win, grad = tensors(c, torch.float32, 2)
    geometry = (1, 16, 20, 280)
    old = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append((torch.ops.eleaf.spectral_pool_fwd(x, h, win, *geometry, 17),)
                           + torch.ops.eleaf.spectral_pool_bwd(grad, x, h, win, *geometry,
                                                               True, True, True))
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*results):
        assert torch.equal(a, b)
