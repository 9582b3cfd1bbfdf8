"""float16 and bfloat16 (issue #22): as module dtype (``.half()``, ``.to(torch.bfloat16)``)
and under CPU autocast, every compression and frontend gives finite output (never NaN from
finite input) within the low-precision tolerance of the float32 reference computed on the
same rounded inputs and parameters; or, where a backend cannot run a dtype, a clear error
before any computation. Also: the compressions make no tensor from a Python number per
forward (no host-to-device copy on CUDA).

Tolerances (|y - y32| <= atol + rtol |y32|), from the dtypes' unit roundoffs (float16 2^-11,
bfloat16 2^-8) times the growth through the log compression, median subtraction and
normalisation:

- compressions alone: float16 atol 2e-3 rtol 2e-3, bfloat16 atol 2e-2 rtol 2e-2 (their
  inputs and parameters are the same rounded numbers on both sides: only the internal float32
  computation and the final rounding differ);
- whole frontends (STFT / Gabor convolution and pooling also run in the low precision):
  float16 atol 0.05 rtol 0.02, bfloat16 atol 0.4 rtol 0.1, on outputs of order 1 (TBN- or
  PCEN-normalised).
"""
import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import eleaf
from eleaf.functional._scalars import cached_scalar
from eleaf.ops import select_impl

HALF = [torch.float16, torch.bfloat16]
COMPRESSION_TOL = {torch.float16: (2e-3, 2e-3), torch.bfloat16: (2e-2, 2e-2)}
FRONTEND_TOL = {torch.float16: (0.05, 0.02), torch.bfloat16: (0.4, 0.1)}


def _energies(*shape, seed=0):
    """Non-negative frontend energies from 1e-6 to about 30: above 0.66, 10^5 x overflows
    float16 (the reported NaN)."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) ** 4 * 30 + 1e-6


def _close(y, ref, tol, what):
    atol, rtol = tol
    assert torch.isfinite(y).all(), '%s: %d non-finite of %d' % (
        what, int((~torch.isfinite(y)).sum()), y.numel())
    torch.testing.assert_close(y.float(), ref.float(), atol=atol, rtol=rtol, msg=what)


def _pair(module, dtype):
    """(module in dtype, float32 copy with the same rounded parameters and buffers)."""
    low = copy.deepcopy(module).to(dtype)
    ref = copy.deepcopy(low).float()
    return low, ref


# --- the compressions, as module dtype ------------------------------------------------------

COMPRESSIONS = {
    'logtbn_paper': lambda: eleaf.LogTBN(40, a=5, trainable=True, per_band=True,
                                         median_filter=True, append_filtered=True),
    'logtbn_mel': lambda: eleaf.LogTBN(40, a=5, median_filter=True, append_filtered=True),
    'logtbn_plain': lambda: eleaf.LogTBN(40, a=5),
    'pcen_leaf': lambda: eleaf.PCEN(40, s=0.04, alpha=0.96, delta=2, r=0.5, eps=1e-12,
                                    learn_logs=False, clamp=1e-5),
    'pcen_logs': lambda: eleaf.PCEN(40),
}


@pytest.mark.parametrize('backend', ['torch', 'cpp', 'triton'])
@pytest.mark.parametrize('name', sorted(COMPRESSIONS))
@pytest.mark.parametrize('dtype', HALF, ids=str)
def test_compression_module_dtype(name, dtype, backend):
    module = COMPRESSIONS[name]()
    op = 'pcen' if name.startswith('pcen') else 'log1p_median'
    try:
        select_impl(op, backend, torch.device('cpu'), dtype)
    except eleaf.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    module.backend = backend
    low, ref = _pair(module, dtype)
    x = _energies(3, 40, 37).to(dtype)
    x.requires_grad_(True)
    y = low(x)
    assert y.dtype == dtype
    _close(y, ref(x.detach().float()), COMPRESSION_TOL[dtype], '%s %s %s' % (name, dtype,
                                                                              backend))
    y.float().square().mean().backward()
    assert torch.isfinite(x.grad).all()
    for n, p in low.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize('dtype', HALF, ids=str)
def test_log1p_and_tbn_module_dtype(dtype):
    x = _energies(2, 40, 25).to(dtype)
    for module in (eleaf.Log1p(a=5), eleaf.Log1p(a=5, trainable=True, per_band=True,
                                                  num_bands=40),
                   eleaf.TemporalBatchNorm(40)):
        low, ref = _pair(module, dtype)
        y = low(x)
        assert y.dtype == dtype
        _close(y, ref(x.float()), COMPRESSION_TOL[dtype], '%s %s' % (type(module).__name__,
                                                                     dtype))


def test_log1p_float16_used_to_overflow():
    """The reported cause: 10^5 x in float16 is inf for x > 0.655 (then inf - inf = NaN in
    the median subtraction). Computed in float32 it is the float32 result, rounded once."""
    x = torch.tensor([[[0.5, 0.7, 3.0, 20.0, 1e-4]]], dtype=torch.float16)
    assert torch.isinf(10 ** 5 * x).any()  # what the old reference did
    for backend in ('torch', 'cpp'):
        impl = select_impl('log1p_median', backend, x.device, x.dtype)[1]
        for a in (5, torch.tensor(5.)):
            y = impl(x, a, False, True, False)
            expected = eleaf.ops.log1p_median_ref(x.float(), 5., False, True, False)
            assert torch.isfinite(y).all()
            torch.testing.assert_close(y, expected.half(), rtol=0, atol=0)


def test_compressed_half_matches_between_backends():
    """torch and cpp compute float16 LogTBN the same way: float32 inside, one rounding
    (within one float16 ulp)."""
    x = _energies(4, 40, 50).half()
    a = torch.full((40,), 5., dtype=torch.float16)
    ref = select_impl('log1p_median', 'torch', x.device, x.dtype)[1]
    cpp = select_impl('log1p_median', 'cpp', x.device, x.dtype)[1]
    for append in (False, True):
        # the compiled log1p is within an ulp of torch's in float32: now and then the
        # float16 rounding of l - m lands one float16 ulp apart
        torch.testing.assert_close(cpp(x, a, True, True, append), ref(x, a, True, True, append),
                                   rtol=2 ** -10, atol=2 ** -24)


# --- frontends ---------------------------------------------------------------------------

def _waveform(seed=0, length=8000):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, length, generator=g) * 0.3


def _frontend_case(frontend, dtype, backend):
    module = frontend(backend=backend)
    low, ref = _pair(module, dtype)
    x = _waveform().to(dtype)
    y = low(x)
    assert y.dtype == dtype
    _close(y, ref(x.float()), FRONTEND_TOL[dtype], '%s %s %s' % (
        type(module).__name__, dtype, backend))
    y.float().square().mean().backward()
    for n, p in low.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n


@pytest.mark.parametrize('backend', ['torch', 'cpp', 'auto'])
@pytest.mark.parametrize('dtype', HALF, ids=str)
def test_mel_module_dtype(dtype, backend):
    """Mel().half() returned 100 % NaN on every backend."""
    _frontend_case(eleaf.Mel, dtype, backend)


@pytest.mark.parametrize('backend', ['torch', 'auto'])
@pytest.mark.parametrize('dtype', HALF, ids=str)
def test_tfleaf_module_dtype(dtype, backend):
    _frontend_case(eleaf.TFLeaf, dtype, backend)


@pytest.mark.parametrize('frontend', [eleaf.EfficientLeaf, eleaf.Leaf], ids=lambda c: c.__name__)
@pytest.mark.parametrize('dtype', HALF, ids=str)
def test_gabor_frontends_module_dtype(frontend, dtype):
    """EfficientLeaf().half() failed with "exp_vml_cpu not implemented for 'ComplexHalf'",
    .to(torch.bfloat16) in conv1d with a weight-type error."""
    _frontend_case(frontend, dtype, 'auto')


@pytest.mark.parametrize('frontend', [eleaf.Mel, eleaf.EfficientLeaf, eleaf.Leaf, eleaf.TFLeaf],
                         ids=lambda c: c.__name__)
@pytest.mark.parametrize('dtype', HALF, ids=str)
def test_frontends_under_autocast(frontend, dtype):
    module = frontend()
    x = _waveform()
    with torch.no_grad():
        ref = copy.deepcopy(module)(x)
    with torch.autocast('cpu', dtype=dtype):
        y = module(x)
    assert y.dtype in (dtype, torch.float32)
    _close(y, ref, FRONTEND_TOL[dtype], '%s autocast %s' % (frontend.__name__, dtype))
    y.float().square().mean().backward()
    for n, p in module.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), n


def test_unsupported_backend_dtype_is_a_clear_error():
    """Where an explicitly requested backend cannot run a dtype, the error says so before
    anything is computed."""
    fe = eleaf.EfficientLeaf(backend='cpp').half()
    with pytest.raises(eleaf.BackendUnavailableError, match="backend='cpp' cannot run "
                       'grouped_gabor_filterbank on cpu/float16'):
        fe(torch.randn(1, 4000, dtype=torch.float16))


# --- no tensor from a Python number per forward ----------------------------------------------

class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _made_tensors(fn):
    fn()  # the first call may make the cached tensors
    with _Ops() as rec:
        fn()
    # torch.tensor / torch.as_tensor of a Python number: lift_fresh (a host-to-device copy on
    # CUDA), scalar_tensor
    return [op for op in rec.ops if 'lift_fresh' in op or 'scalar_tensor' in op]


@pytest.mark.parametrize('backend', ['torch', 'cpp'])
def test_no_tensor_from_a_number_per_forward(backend):
    x = _energies(2, 40, 20)
    mel_logtbn = eleaf.LogTBN(40, a=5, median_filter=True, append_filtered=True,
                              backend=backend)  # a fixed a: a Python number
    pcen = eleaf.PCEN(40, s=0.04, alpha=0.96, delta=2, r=0.5, eps=1e-12, learn_logs=False,
                      clamp=1e-5, backend=backend)
    assert _made_tensors(lambda: mel_logtbn(x)) == []
    assert _made_tensors(lambda: pcen(x)) == []
    if backend != 'torch':  # the compiled and Triton ops also take Python numbers
        impl = select_impl('pcen', backend, x.device, x.dtype)[1]
        assert _made_tensors(lambda: impl(x, 0.04, 0.96, 2., 0.5, 1e-12, 1e-5)) == []


def test_triton_pcen_makes_no_tensor_from_a_number():
    x = _energies(2, 40, 20)
    try:
        impl = select_impl('pcen', 'triton', x.device, x.dtype)[1]
    except eleaf.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    assert _made_tensors(lambda: impl(x, 0.04, 0.96, 2., 0.5, 1e-12, 1e-5)) == []


def test_python_number_parameters_keep_their_numbers():
    x = _energies(2, 40, 20)
    for backend in ('cpp', 'triton'):  # the reference takes tensors only
        try:
            impl = select_impl('pcen', backend, x.device, x.dtype)[1]
        except eleaf.BackendUnavailableError:
            continue
        tensors = [torch.tensor(v) for v in (0.04, 0.96, 2., 0.5)]
        torch.testing.assert_close(impl(x, 0.04, 0.96, 2., 0.5, 1e-12, 1e-5),
                                   impl(x, *tensors, 1e-12, 1e-5), rtol=0, atol=0)
    impl = select_impl('log1p_median', 'cpp', x.device, x.dtype)[1]
    torch.testing.assert_close(impl(x, 5, False, True, True),
                               impl(x, torch.tensor(5., dtype=torch.float64), False, True, True),
                               rtol=0, atol=0)


def test_cached_scalar():
    x = torch.zeros(3)
    a = cached_scalar(5, torch.float64, x)
    assert a is cached_scalar(5.0, torch.float64, x) and a.item() == 5.0
    assert cached_scalar(5, torch.float32, x) is not a
    with torch.inference_mode():
        b = cached_scalar(0.25, torch.float32, x)
    assert not b.is_inference()  # usable by autograd later
    w = torch.ones(3, requires_grad=True)
    (w * b).sum().backward()
    assert w.grad.tolist() == [0.25] * 3
