"""The compiled op ``log1p_median`` (``eleaf._C``: csrc/compress.cpp, csrc/compress_cuda.cu)
against the reference ``eleaf.ops.log1p_median_ref`` (SPEC §6).

- The median is an exact selection: on the op's own log values it is bit-identical to
  ``torch.median`` (values and, with ties, the index CPU torch.median returns).
- Outputs and gradients (x and a) are compared with a float64 reference that subtracts the
  median at the op's index (two values within float32 rounding of each other may swap order
  between a float32 and a float64 computation, which would move the median's gradient to
  another element); rows with ties are also compared with the unmodified reference.
- gradcheck (float64), opcheck, torch.compile, the fallback to 'torch' without the extension,
  a build without a compiler, and the nvcc compile check of the CUDA source.
CUDA devices are tested too where the extension was built with CUDA kernels.
"""
import os
import random
import shutil
import subprocess
import sys

import pytest
import torch

from eleaf.functional import log1p_ref
from eleaf.ops import BackendUnavailableError, log1p_median_ref
from eleaf.ops import backends as backends_mod
from eleaf.ops.backends import cpp_status, resolve_backend, select_impl

try:
    from tests.testing import RTOL, assert_close
except ImportError:  # tests/ is not a package: conftest puts it on sys.path
    from testing import RTOL, assert_close

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CPP_OK, CPP_REASON, CPP_INFO = cpp_status()
needs_cpp = pytest.mark.skipif(not CPP_OK, reason=CPP_REASON)

if CPP_OK:
    from eleaf.ops.compress import log1p_median_cpp
    fwd_op = torch.ops.eleaf.log1p_median_fwd

DEVICES = ['cpu'] + (['cuda'] if CPP_OK and torch.cuda.is_available() and 'cuda' in CPP_INFO
                     else [])


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def ref_at_index(x, a, per_band, median_filter, append, idx):
    """log1p_median_ref with the median taken at ``idx`` (x.shape[:-1]) instead of selected."""
    lg = log1p_ref(x, a, per_band)
    if not median_filter:
        return lg
    if append and lg.ndim == 3:
        lg, idx = lg[:, None], idx[:, None]
    m = lg.gather(-1, idx[..., None])
    return torch.cat((lg, lg - m), dim=1) if append else lg - m


def check_selection(x, a, per_band, append, y, idx):
    """idx and y of the op are torch.median's on the op's own log values, bit for bit
    (float16/bfloat16: on its float32 log values, y rounded once)."""
    out_dtype = y.dtype
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
        a = a.float() if a is not None and a.dtype in (torch.float16, torch.bfloat16) else a
    lg, _ = fwd_op(x, a, per_band, False, False)
    lg = lg.cpu()
    med = torch.median(lg, dim=-1)
    idx = idx.cpu()
    assert torch.equal(idx, med.indices), 'median indices differ from torch.median'
    m = lg.gather(-1, idx[..., None])
    assert torch.equal(m.squeeze(-1), med.values) or torch.equal(
        torch.isnan(m.squeeze(-1)), torch.isnan(med.values)), 'median values differ'
    if append and lg.ndim == 3:
        lg, m = lg[:, None], m[:, None]
    expect = (torch.cat((lg, lg - m), dim=1) if append else lg - m).to(out_dtype)
    assert torch.equal(y.cpu(), expect) or torch.allclose(y.cpu(), expect, equal_nan=True,
                                                          rtol=0, atol=0), 'y != l - m bitwise'


def make_a(mode, F, dtype, device, gen):
    if mode is None:
        return None
    if mode == 'scalar':
        return (torch.rand((), generator=gen, dtype=torch.float64) * 2 - 1).to(dtype).to(device)
    return (torch.rand(F, generator=gen, dtype=torch.float64) * 2 - 1).to(dtype).to(device)


def random_case(seed):
    rnd = random.Random(seed)
    B = rnd.randint(1, 8)
    C = rnd.choice([None, 1, 2])  # None: a 3-D input
    F = rnd.randint(20, 128)
    u = rnd.random()
    T = rnd.randint(1, 3) if u < 0.2 else rnd.randint(4, 200) if u < 0.5 else rnd.randint(200, 2000)
    while B * (C or 1) * F * T > 600_000 and B > 1:  # keep the float64 reference quick
        B -= 1
    return dict(B=B, C=C, F=F, T=T, a=rnd.choice([None, 'scalar', 'band']),
                median_filter=rnd.random() < 0.85, append=rnd.random() < 0.5,
                noncontig=rnd.choice([None, None, 'transposed', 'strided']))


def make_x(case, dtype, device, gen):
    shape = (case['B'],) + ((case['C'],) if case['C'] else ()) + (case['F'], case['T'])
    # magnitudes over five decades, some exact zeros (silence) and repeated values
    base = torch.rand(shape, generator=gen, dtype=torch.float64)
    scale = 10 ** (torch.rand(shape[:-1] + (1,), generator=gen, dtype=torch.float64) * 5 - 3)
    x = base * scale
    x[..., : case['T'] // 7] = 0
    x = x.to(dtype).to(device)
    if case['noncontig'] == 'transposed':  # time is not the innermost axis in memory
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif case['noncontig'] == 'strided':   # time stride 2
        x = torch.stack([x, x], dim=-1).flatten(-2)[..., ::2]
    return x


# ---------------------------------------------------------------------------------------
# parity
# ---------------------------------------------------------------------------------------

@needs_cpp
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('seed', range(20))
def test_parity_random(seed, device):
    case = random_case(seed)
    gen = torch.Generator().manual_seed(seed)
    per_band = case['a'] == 'band'
    mf, ap = case['median_filter'], case['append']
    x = make_x(case, torch.float32, device, gen)
    a = make_a(case['a'], case['F'], torch.float32, device, gen)
    x_ = x.detach().clone().requires_grad_()
    a_ = a.detach().clone().requires_grad_() if a is not None else None
    y, idx = fwd_op(x_, a_, per_band, mf, ap)
    out = log1p_median_cpp(x_, a_, per_band, mf, ap)
    assert torch.equal(out, y)
    if mf:
        check_selection(x, a, per_band, ap, y.detach(), idx)
    # float64 reference with the op's medians
    x64 = x.detach().double().requires_grad_()
    a64 = a.detach().double().requires_grad_() if a is not None else None
    ref = ref_at_index(x64, a64, per_band, mf, ap, idx if mf else None)
    assert_close('y', ref, out, RTOL[torch.float32])
    assert_close('y vs unmodified reference', log1p_median_ref(x64, a64, per_band, mf, ap),
                 out, RTOL[torch.float32])
    g = torch.randn(ref.shape, generator=gen, dtype=torch.float64).to(ref.device)
    inputs = (x64,) + ((a64,) if a is not None else ())
    ref_grads = torch.autograd.grad(ref, inputs, g)
    out_grads = torch.autograd.grad(out, (x_,) + ((a_,) if a is not None else ()),
                                    g.float().to(device))
    for name, r, o in zip(('dx', 'da'), ref_grads, out_grads):
        assert o.dtype == torch.float32
        assert_close(name, r, o, RTOL[torch.float32])


@needs_cpp
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('T', [1, 2, 5, 6, 100, 101, 1600])
@pytest.mark.parametrize('ndim', [3, 4])
def test_ties(T, ndim, device):
    """Silence, constant rows, few distinct values, ±0: exact agreement with the reference."""
    gen = torch.Generator().manual_seed(T * 10 + ndim)
    B, C, F = 3, 2, 8
    shape = (B, C, F, T) if ndim == 4 else (B, F, T)
    x = torch.randint(0, 3, shape, generator=gen).double() * 0.5
    x.view(-1, T)[0] = 0          # silence
    x.view(-1, T)[1] = 0.25       # constant
    x.view(-1, T)[2, ::2] = -0.0  # signed zeros mixed with zeros
    x.view(-1, T)[3] = torch.arange(T, 0, -1) % 2  # alternating
    for a_mode in (None, 'scalar', 'band'):
        a = make_a(a_mode, F, torch.float64, 'cpu', gen)
        per_band = a_mode == 'band'
        for append in (False, True):
            xd = x.float().to(device).requires_grad_()
            ad = a.float().to(device).requires_grad_() if a is not None else None
            y, idx = fwd_op(xd, ad, per_band, True, append)
            check_selection(xd.detach(), ad.detach() if ad is not None else None, per_band,
                            append, y.detach(), idx)
            # identical tie structure in float64: the plain reference picks the same elements
            x64 = x.clone().requires_grad_()
            a64 = a.clone().requires_grad_() if a is not None else None
            ref = log1p_median_ref(x64, a64, per_band, True, append)
            ref_idx = torch.median(log1p_ref(x64, a64, per_band), dim=-1).indices
            assert torch.equal(idx.cpu(), ref_idx)
            assert_close('y', ref, y, RTOL[torch.float32])
            g = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
            inputs = (x64,) + ((a64,) if a is not None else ())
            ref_grads = torch.autograd.grad(ref, inputs, g)
            out_grads = torch.autograd.grad(y, (xd,) + ((ad,) if ad is not None else ()),
                                            g.float().to(device))
            for name, r, o in zip(('dx', 'da'), ref_grads, out_grads):
                assert_close(name, r, o, RTOL[torch.float32])


@needs_cpp
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('T', [1, 4, 7])
def test_tied_row_gradient_sum(T, device):
    """y = l - m with silence (all x = 0, a = None): dL/dx = 1 - T at exactly one element per
    row (the median), 1 elsewhere, so every row sums to 0."""
    x = torch.zeros(2, 3, 5, T, device=device, requires_grad=True)
    y, idx = fwd_op(x, None, False, True, False)
    y.sum().backward()
    g = x.grad.reshape(-1, T).cpu()
    assert torch.equal(g.sum(-1), torch.zeros(g.shape[0]))
    assert torch.equal((g == 1 - T).sum(-1) if T > 1 else (g == 0).sum(-1),
                       torch.ones(g.shape[0], dtype=torch.long))
    assert torch.equal(idx.reshape(-1).cpu(), torch.full((g.shape[0],), (T - 1) // 2))


@needs_cpp
@pytest.mark.parametrize('device', DEVICES)
def test_nan_rows(device):
    """A row with NaN has median NaN at its first NaN (torch.median)."""
    x = torch.rand(2, 4, 9)
    x[0, 1, 3] = float('nan')
    x[0, 1, 6] = float('nan')
    x[1, 2, 0] = -2.0  # log1p(-2) = NaN
    x = x.to(device)
    y, idx = fwd_op(x, None, False, True, False)
    lg = torch.log1p(x).cpu()
    assert torch.equal(idx.cpu(), torch.median(lg, -1).indices)
    assert idx[0, 1].item() == 3 and idx[1, 2].item() == 0
    assert torch.isnan(y[0, 1]).all() and torch.isnan(y[1, 2]).all()
    assert not torch.isnan(y[0, 0]).any()


@needs_cpp
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float64])
def test_dtypes(dtype, device):
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(4, 2, 24, 101, generator=gen) * 5
    a = torch.rand(24, generator=gen) - 0.5
    for per_band, a_ in ((True, a), (False, a[0].clone()), (False, None)):
        xd = x.to(dtype).to(device).requires_grad_()
        ad = a_.to(dtype).to(device).requires_grad_() if a_ is not None else None
        y, idx = fwd_op(xd, ad, per_band, True, True)
        assert y.dtype == dtype and y.shape == (4, 4, 24, 101)
        check_selection(xd.detach(), ad.detach() if ad is not None else None, per_band, True,
                        y.detach(), idx)
        x64 = xd.detach().double().cpu().requires_grad_()
        a64 = ad.detach().double().cpu().requires_grad_() if ad is not None else None
        ref = ref_at_index(x64, a64, per_band, True, True, idx.cpu())
        assert_close('y', ref, y, RTOL[dtype])
        g = torch.randn(ref.shape, generator=gen, dtype=torch.float64)
        inputs = (x64,) + ((a64,) if ad is not None else ())
        ref_grads = torch.autograd.grad(ref, inputs, g)
        out_grads = torch.autograd.grad(y, (xd,) + ((ad,) if ad is not None else ()),
                                        g.to(dtype).to(device))
        for name, r, o in zip(('dx', 'da'), ref_grads, out_grads):
            assert o.dtype == dtype
            assert_close(name, r, o, RTOL[dtype])


@needs_cpp
def test_reference_dtype_promotion():
    """A float32 per-band a with a float16 x gives float32, like the reference."""
    x = torch.rand(2, 6, 10).half()
    a = torch.rand(6)
    assert log1p_median_cpp(x, a, True, True, False).dtype == \
        log1p_median_ref(x, a, True, True, False).dtype == torch.float32
    assert log1p_median_cpp(x, a[0], False, True, False).dtype == torch.float16
    y = log1p_median_cpp(x.float(), 0.5, False, True, True)  # a python float
    assert_close('y', log1p_median_ref(x.double(), 0.5, False, True, True), y, 1e-6)


@needs_cpp
@pytest.mark.parametrize('device', DEVICES)
def test_input_checks(device):
    x = torch.rand(2, 5, 7, device=device)
    with pytest.raises(RuntimeError, match=r'per_band a must have shape \(F,\) = \(5,\)'):
        fwd_op(x, torch.zeros(4, device=device), True, True, False)
    with pytest.raises(RuntimeError, match='a must have one element'):
        fwd_op(x, torch.zeros(5, device=device), False, True, False)
    with pytest.raises(RuntimeError, match='x must be float32, float64, float16 or bfloat16'):
        fwd_op(x.int(), None, False, True, False)
    with pytest.raises(RuntimeError, match=r'append needs x of shape \(B, F, T\)'):
        fwd_op(x[0], None, False, True, True)
    with pytest.raises(RuntimeError, match=r'at least one frame'):
        fwd_op(x[..., :0], None, False, True, False)
    y, idx = fwd_op(x[..., :0], None, False, False, False)  # no median: empty is fine
    assert y.shape == (2, 5, 0)


# ---------------------------------------------------------------------------------------
# autograd, opcheck, compile
# ---------------------------------------------------------------------------------------

FLAGS = [(False, False), (True, False), (True, True)]


@needs_cpp
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('mf,ap', FLAGS)
@pytest.mark.parametrize('a_mode', [None, 'scalar', 'band'])
@pytest.mark.parametrize('shape', [(2, 3, 5), (2, 2, 3, 4), (1, 2, 1)])
def test_gradcheck(shape, a_mode, mf, ap, device):
    gen = torch.Generator().manual_seed(len(shape) * 7 + shape[-1])
    # distinct values at least 1e-2 apart: finite differences cannot reorder the median
    n = torch.tensor(shape).prod().item()
    x = (torch.randperm(n, generator=gen).double().reshape(shape) / n * 3 + 0.01).to(device)
    a = make_a(a_mode, shape[-2], torch.float64, device, gen)
    inputs = (x.requires_grad_(),) + ((a.requires_grad_(),) if a is not None else ())
    per_band = a_mode == 'band'

    def fn(*args):
        return log1p_median_cpp(args[0], args[1] if a is not None else None, per_band, mf, ap)
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-8, rtol=1e-6)


@needs_cpp
@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('mf,ap', FLAGS)
@pytest.mark.parametrize('a_mode', [None, 'scalar', 'band'])
def test_opcheck(a_mode, mf, ap, device):
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(2, 2, 6, 9, generator=gen) * 4).to(device).requires_grad_()
    a = make_a(a_mode, 6, torch.float32, device, gen)
    if a is not None:
        a.requires_grad_()
    torch.library.opcheck(torch.ops.eleaf.log1p_median_fwd.default,
                          (x, a, a_mode == 'band', mf, ap))
    y, idx = fwd_op(x, a, a_mode == 'band', mf, ap)
    torch.library.opcheck(torch.ops.eleaf.log1p_median_bwd.default,
                          (torch.randn_like(y), x.detach(), a.detach() if a is not None else None,
                           idx, a_mode == 'band', mf, ap))


def test_autograd_in_cpp_and_partial_gradients():
    # the op's autograd kernel is the C++ one (csrc/autograd.cpp), not Python's
    dump = torch._C._dispatch_dump('eleaf::log1p_median_fwd')
    assert 'autograd.cpp' in dump, dump
    x = torch.rand(2, 5, 7, dtype=torch.float64)
    a = torch.full((5,), 0.3, dtype=torch.float64)
    x64, a64 = x.clone().requires_grad_(), a.clone().requires_grad_()
    log1p_median_ref(x64, a64, True, True, True).sum().backward()
    for need_x, need_a in ((True, False), (False, True)):
        xs, as_ = x.clone().requires_grad_(need_x), a.clone().requires_grad_(need_a)
        log1p_median_cpp(xs, as_, True, True, True).sum().backward()
        assert (xs.grad is not None) == need_x and (as_.grad is not None) == need_a
        if need_x:
            assert_close('grad x', x64.grad, xs.grad, 1e-12)
        if need_a:
            assert_close('grad a', a64.grad, as_.grad, 1e-12)


@needs_cpp
@pytest.mark.parametrize('device', DEVICES)
def test_torch_compile(device):
    torch._dynamo.reset()
    x = (torch.rand(4, 2, 8, 30) * 3).to(device)
    a = torch.full((8,), 0.3, device=device)

    def loss(x, a):
        return log1p_median_cpp(x, a, True, True, True).square().sum()

    compiled = torch.compile(loss, fullgraph=True, dynamic=False)
    xs = [x.clone().requires_grad_() for _ in range(2)]
    as_ = [a.clone().requires_grad_() for _ in range(2)]
    ref = loss(xs[0], as_[0])
    ref.backward()
    out = compiled(xs[1], as_[1])
    out.backward()
    assert_close('loss', ref, out, 1e-6)
    assert_close('dx', xs[0].grad, xs[1].grad, 1e-6)
    assert_close('da', as_[0].grad, as_[1].grad, 1e-6)


# ---------------------------------------------------------------------------------------
# registry, fallback, build
# ---------------------------------------------------------------------------------------

@needs_cpp
def test_registered_and_selected(monkeypatch):
    monkeypatch.delenv('ELEAF_BACKEND', raising=False)
    cpu = torch.device('cpu')
    assert resolve_backend('log1p_median', 'auto', cpu, torch.float32) == 'cpp'
    name, fn = select_impl('log1p_median', 'cpp', cpu, torch.float64)
    assert name == 'cpp' and fn is log1p_median_cpp
    from eleaf.ops.compress import check
    assert check(cpu, torch.float16) is None
    assert 'supports float32' in check(cpu, torch.int32)
    if 'cuda' not in CPP_INFO:
        assert 'without CUDA kernels' in check(torch.device('cuda'), torch.float32)
    with pytest.raises(BackendUnavailableError):
        resolve_backend('log1p_median', 'cpp', cpu, torch.int64)


@needs_cpp
def test_fallback_when_extension_off(monkeypatch):
    """With eleaf._C 'not loadable', 'auto' runs the reference and 'cpp' raises."""
    monkeypatch.delenv('ELEAF_BACKEND', raising=False)
    monkeypatch.setitem(backends_mod._STATUS_CACHE, 'cpp',
                        (False, 'eleaf._C forced off by the test', None))
    cpu = torch.device('cpu')
    name, fn = select_impl('log1p_median', 'auto', cpu, torch.float32)
    assert name == 'torch' and fn is log1p_median_ref
    with pytest.raises(BackendUnavailableError, match='forced off'):
        select_impl('log1p_median', 'cpp', cpu, torch.float32)
    monkeypatch.setenv('ELEAF_BACKEND', 'cpp')
    with pytest.raises(BackendUnavailableError, match='ELEAF_BACKEND=cpp'):
        resolve_backend('log1p_median', 'auto', cpu, torch.float32)
    assert backends_mod.backends()['cpp']['available'] is False


def _copy_project(dst):
    ignore = shutil.ignore_patterns('*.so', '*.pyd', '__pycache__', 'build', '*.egg-info')
    shutil.copy(os.path.join(ROOT, 'setup.py'), dst)
    for name in ('eleaf', 'csrc', 'kernels'):
        if os.path.isdir(os.path.join(ROOT, name)):
            shutil.copytree(os.path.join(ROOT, name), os.path.join(dst, name), ignore=ignore)


def test_build_without_compiler(tmp_path):
    """setup.py build_ext with no working compiler exits 0 and leaves an importable package
    whose 'cpp' backend is unavailable (the reference runs)."""
    _copy_project(tmp_path)
    env = dict(os.environ, CC='/nonexistent/cc', CXX='/nonexistent/c++',
               ELEAF_SKIP_CUDA_BUILD='1')
    env.pop('ELEAF_BACKEND', None)
    proc = subprocess.run([sys.executable, 'setup.py', 'build_ext', '--inplace'], cwd=tmp_path,
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'the reference backend still works' in proc.stdout, proc.stdout[-3000:]
    assert not list((tmp_path / 'eleaf').glob('_C*'))
    script = (
        'import sys\n'
        # an editable install of eleaf maps the name to the checkout: use the copy
        'sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]\n'
        'sys.path.insert(0, %r)\n'
        'import torch, eleaf\n'
        'assert eleaf.__file__.startswith(%r), eleaf.__file__\n'
        'from eleaf.ops import select_impl, log1p_median_ref\n'
        'from eleaf.ops.backends import cpp_status, BackendUnavailableError\n'
        'ok, reason, _ = cpp_status()\n'
        'assert not ok, reason\n'
        'name, fn = select_impl("log1p_median", "auto", torch.device("cpu"), torch.float32)\n'
        'assert name == "torch" and fn is log1p_median_ref\n'
        'try:\n'
        '    select_impl("log1p_median", "cpp", torch.device("cpu"), torch.float32)\n'
        '    raise SystemExit("cpp did not raise")\n'
        'except BackendUnavailableError:\n'
        '    pass\n'
        'print("fallback ok")\n') % (str(tmp_path), str(tmp_path))
    proc = subprocess.run([sys.executable, '-c', script], cwd=tmp_path, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300)
    assert proc.returncode == 0 and 'fallback ok' in proc.stdout, proc.stdout[-3000:]


def _nvcc():
    sys.path.insert(0, os.path.join(ROOT, 'csrc'))
    try:
        import check_cuda_compile
    finally:
        sys.path.pop(0)
    return check_cuda_compile.find_nvcc()


@pytest.mark.skipif(_nvcc() is None, reason='nvcc not found')
def test_cuda_source_compiles():
    """csrc/*.cu compiles with nvcc (sm_90) with the flags of the CUDA build, also with a
    CPU-only torch; the C++ and CUDA objects' symbols resolve (csrc/check_cuda_compile.py)."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'csrc', 'check_cuda_compile.py'),
                           '--arch', '90'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-5000:]
