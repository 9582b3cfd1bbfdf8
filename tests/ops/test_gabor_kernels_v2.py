"""The v2 filterbank kernels (issue #23; ``ELEAF_GABOR_KERNELS=v2``, the default) against an
independent float64 reference at the op level, and what distinguishes them from v1.

- The taps' symmetry is folded: the op reads the centre and right half of each tap row, and
  its taps gradient is the gradient with respect to those (left halves zero), i.e. the
  reference gradient folded, ``dh[hk + j] + dh[hk - j]`` (real) and ``dh[hk + j] -
  dh[hk - j]`` (imaginary) for j >= 1, ``dh[hk]`` for the real centre tap.
- No atomic adds: every reduction across programs stores partial sums that the host sums in
  a fixed order, so gradients are bitwise reproducible; under
  ``torch.use_deterministic_algorithms(True)`` the v1 kernels raise on CUDA.

Tolerance: float32 ‖a − b‖/‖b‖ ≤ 1e-5 against float64. Outputs poisoned with NaN."""
import pytest
import torch
import torch.nn.functional as F

from eleaf.functional.gabor import GroupGeometry
from tests.ops.gabor_cases import leaf_config, make_x
from tests.testing import RTOL, assert_close, require_triton_ops

gabor = require_triton_ops('eleaf.ops.gabor')
gabor_plan = require_triton_ops('eleaf.ops.gabor_plan')

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


@pytest.fixture(autouse=True)
def _poison(triton_poison):
    """Every test here runs with poisoned outputs (tests/ops/conftest.py)."""


GEOMETRIES = {
    'leaf': (GroupGeometry(0, 5, 1, 16, 41, 33),),
    'grouped': (GroupGeometry(0, 3, 4, 4, 23, 9), GroupGeometry(3, 7, 2, 8, 13, 17),
                GroupGeometry(7, 9, 16, 1, 61, 3)),
}


def _packed(geometry, seed=0):
    """Packed (taps, windows) of mel-like Gabor filters for ``geometry`` (symmetric taps)."""
    n = geometry[-1].stop
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(n, generator=g) * 2.5 + 0.2
    sigma = torch.rand(n, generator=g) * 3 + 2
    pw = torch.rand(n, generator=g) * 0.3 + 0.1
    geo, layout = gabor.static_geometry(geometry, torch.device(DEVICE))
    taps, windows = gabor.pack_taps_ref(mu.to(DEVICE), sigma.to(DEVICE), pw.to(DEVICE),
                                        geo, layout)
    return taps, windows, geo, layout


def _reference(x, taps, windows, geometry, layout):
    """float64 output of the op by F.conv1d per group (its autograd gives the gradients)."""
    p = gabor_plan.layout_plan(layout, x.device)
    outs = []
    for g, t0, w0 in zip(geometry, p.tap_off, p.win_off):
        n, K, W = g.stop - g.start, g.kernel_size, g.window_size
        h = taps[t0:t0 + 2 * n * K].view(2 * n, 1, K)
        y = F.conv1d(x, h, stride=g.conv_stride, padding=K // 2)
        e = y[:, :n] ** 2 + y[:, n:] ** 2
        w = windows[w0:w0 + n * W].view(n, 1, W)
        outs.append(F.conv1d(e, w, stride=g.pool_stride, padding=W // 2, groups=n))
    return torch.cat(outs, 1)


def _fold(dtaps, geometry, layout):
    """Per group the folded taps gradient [(re (n, hk + 1), im (n, hk))]."""
    p = gabor_plan.layout_plan(layout, dtaps.device)
    out = []
    for g, t0 in zip(geometry, p.tap_off):
        n, K = g.stop - g.start, g.kernel_size
        hk = K // 2
        d = dtaps[t0:t0 + 2 * n * K].view(2, n, K)
        right, left = d[:, :, hk + 1:], d[:, :, :hk].flip(-1)
        re = torch.cat([d[0, :, hk:hk + 1], right[0] + left[0]], 1)
        out.append((re, right[1] - left[1]))
    return out


@pytest.mark.parametrize('name', sorted(GEOMETRIES))
@pytest.mark.parametrize('version', ['v2', 'v1'])
def test_op_against_float64(name, version, monkeypatch):
    monkeypatch.setenv('ELEAF_GABOR_KERNELS', version)
    geometry = GEOMETRIES[name]
    taps, windows, geo, layout = _packed(geometry)
    x = torch.randn(2, 1, 203, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    out = gabor.gabor_fwd(x, taps, windows, geo, layout)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    dx, dtaps, dwin = gabor.gabor_bwd(grad, x, taps, windows, geo, layout, True)

    leaves = [t.detach().double().requires_grad_() for t in (x, taps, windows)]
    ref = _reference(*leaves, geometry, layout)
    ref.backward(grad.double())
    rx, rtaps, rwin = (t.grad for t in leaves)
    tol = RTOL[torch.float32]
    assert_close('out', ref, out, tol)
    assert_close('dx', rx, dx, tol)
    assert_close('dwindows', rwin, dwin, tol)
    for (fr, fi), (rr, ri) in zip(_fold(dtaps, geometry, layout),
                                  _fold(rtaps, geometry, layout)):
        assert_close('folded dtaps re', rr, fr, tol)
        assert_close('folded dtaps im', ri, fi, tol)
    if version == 'v2':   # the gradient lives on the centre and right halves only
        p = gabor_plan.layout_plan(layout, x.device)
        for g, t0 in zip(geometry, p.tap_off):
            n, K = g.stop - g.start, g.kernel_size
            d = dtaps[t0:t0 + 2 * n * K].view(2, n, K)
            assert torch.equal(d[:, :, :K // 2], torch.zeros_like(d[:, :, :K // 2]))
            assert torch.equal(d[1, :, K // 2], torch.zeros_like(d[1, :, K // 2]))
    else:   # v1: the unfolded gradient itself
        assert_close('dtaps', rtaps, dtaps, tol)


@pytest.mark.skipif(torch.cuda.is_available(), reason='patches the Triton interpreter')
def test_v2_uses_no_atomics(monkeypatch):
    # in the interpreter the kernels call tl.atomic_add at run time: make it fail
    import triton.language as tl

    def no_atomics(*args, **kwargs):
        raise AssertionError('atomic add')
    monkeypatch.setattr(tl, 'atomic_add', no_atomics)
    cfg = leaf_config(L=300, n_filters=4, batch=2)
    x = make_x(cfg).to(DEVICE)
    taps, windows, geo, layout = _packed(GEOMETRIES['grouped'])
    out = gabor.gabor_fwd(x, taps, windows, geo, layout)
    gabor.gabor_bwd(torch.ones_like(out), x, taps, windows, geo, layout, True)
    monkeypatch.setenv('ELEAF_GABOR_KERNELS', 'v1')   # the test can fail: v1 adds atomically
    with pytest.raises(Exception, match='atomic add'):   # wrapped by the interpreter
        gabor.gabor_bwd(torch.ones_like(out), x, taps, windows, geo, layout, True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='run order on a GPU (the '
                    'interpreter runs programs one by one)')
@pytest.mark.parametrize('name', sorted(GEOMETRIES))
def test_v2_gradients_bitwise_reproducible(name):
    geometry = GEOMETRIES[name]
    taps, windows, geo, layout = _packed(geometry)
    x = torch.randn(8, 1, 4000, generator=torch.Generator().manual_seed(3)).to(DEVICE)
    out = gabor.gabor_fwd(x, taps, windows, geo, layout)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    first = gabor.gabor_bwd(grad, x, taps, windows, geo, layout, True)
    for _ in range(3):
        again = gabor.gabor_bwd(grad, x, taps, windows, geo, layout, True)
        assert all(torch.equal(a, b) for a, b in zip(first, again))


class _FakeCuda:
    is_cuda = True


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_deterministic_algorithms(version):
    taps, windows, geo, layout = _packed(GEOMETRIES['leaf'])
    p = gabor_plan.plan(layout, torch.device('cpu'), 'cuda_tf32', version)
    old = torch.are_deterministic_algorithms_enabled()
    try:
        gabor._check_deterministic(_FakeCuda(), p, 'ELEAF_GABOR_KERNELS=v1')   # not enabled
        torch.use_deterministic_algorithms(True)
        if version == 'v1':
            with pytest.raises(RuntimeError, match='not bitwise reproducible'):
                gabor._check_deterministic(_FakeCuda(), p, 'ELEAF_GABOR_KERNELS=v1')
            torch.use_deterministic_algorithms(True, warn_only=True)
            with pytest.warns(UserWarning, match='atomic adds'):
                gabor._check_deterministic(_FakeCuda(), p, 'ELEAF_GABOR_KERNELS=v1')
        # CPU tensors (the interpreter) never raise; the v2 backward runs
        x = torch.randn(1, 1, 100).to(DEVICE)
        out = gabor.gabor_fwd(x, taps, windows, geo, layout)
        if not x.is_cuda or version == 'v2':
            gabor.gabor_bwd(torch.ones_like(out), x, taps, windows, geo, layout, False)
    finally:
        torch.use_deterministic_algorithms(old)


def test_kernel_version_switch(monkeypatch):
    monkeypatch.delenv('ELEAF_GABOR_KERNELS', raising=False)
    assert gabor.kernel_version() == 'v2'
    monkeypatch.setenv('ELEAF_GABOR_KERNELS', ' V1 ')
    assert gabor.kernel_version() == 'v1'
    monkeypatch.setenv('ELEAF_GABOR_KERNELS', 'v3')
    with pytest.raises(ValueError, match="'v1' or 'v2'"):
        gabor.kernel_version()


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
@pytest.mark.parametrize('L', [1, 2, 37, 160])
def test_x_planes(L, dtype):
    x = torch.randn(3, 1, L, generator=torch.Generator().manual_seed(L)).to(dtype)
    xo = gabor.x_planes(x, 41, 16, block=64)
    planes, xplane, xrev, A = xo.t, xo.plane, xo.rev, xo.align
    assert xo.fold and xo.stride_b == planes.stride(0)
    assert A * x.element_size() == 8   # 8-byte vectors
    assert planes.shape == (3, 2 * A, xplane) and xplane % 16 == 0
    assert planes.dtype == dtype
    ref = torch.zeros(3, 2 * A, xplane, dtype=dtype)
    for a in range(A):
        for i in range(xplane):
            if 0 <= i + a < L:
                ref[:, a, i] = x[:, 0, i + a]
            if 0 <= xrev - a - i < L:
                ref[:, A + a, i] = x[:, 0, xrev - a - i]
    assert torch.equal(planes, ref)
    # room for the taps: a row centred on the last sample reads hk + BLOCK_K - 1 further
    assert xplane >= max(L, xrev + 1) + 41 // 2 + 16


def test_fit_block_f():
    fit = gabor_plan.fit_block_f
    assert fit([10] * 8, 64) == 16      # 8G-opt: 10 filters in 16 columns
    assert fit([40], 64) == 16          # LEAF: 48 columns (3 blocks), not 64
    assert fit([20], 64) == 32          # 32 columns either way: the larger block
    assert fit([64], 64) == 64
    assert fit([96], 32) == 32          # 96 columns either way, at most max_block_f
    assert fit([100], 32) == 16         # 112 columns against 128
    assert fit([3, 70], 64) == 16       # 16 + 80 columns against 64 + 128
