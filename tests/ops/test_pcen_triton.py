"""Triton PCEN against the reference (SPEC §6).

Reference: :func:`eleaf.functional.pcen_ref` on detached float64 clones. The Triton op
(interpreter on CPU without CUDA) runs in float64 (bound ``RTOL[float64]``) and float32
(bound ``RTOL[float32]`` = 1e-5) and must match the output and the gradients of x and of the
effective and stored s, alpha, delta, r, in both parameterisations (``learn_logs``). Outputs
are poisoned with NaN (``ELEAF_DEBUG_POISON=1``), so an element a kernel fails to write shows
up as non-finite. Also: long inputs (1600 and 6000 frames), silence, 1e-9 / 1e6 amplitudes,
low precision, opcheck, torch.compile, gradcheck, the registry, and the NaN of the linear
parameterisation for s outside [0, 1] (see the docstring of ``eleaf.ops.pcen``).
"""
import math
import os
import subprocess
import sys

import pytest
import torch

from eleaf.functional.pcen import pcen_parameters, pcen_ref
from eleaf.ops import backends as B
from tests.testing import (RTOL, assert_close, eager_and_compiled_grads, pcen_leaf_linear,
                           pcen_lognormal_input, require_triton_ops)

P = require_triton_ops('eleaf.ops.pcen')

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
NAMES = ('y', 'dx', 'ds', 'dalpha', 'ddelta', 'dr')

#: (s, alpha, delta, r, eps, clamp): LEAF's PCEN, and the generic PCEN defaults
CONFIGS = {
    'leaf': (0.04, 0.96, 2., 0.5, 1e-12, 1e-5),
    'generic': (0.025, 1., 1., 1., 1e-6, None),
    'leaf_noclamp': (0.04, 0.96, 2., 0.5, 1e-12, None),
}


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    monkeypatch.setenv('ELEAF_DEBUG_POISON', '1')


def stored_params(config, F, learn_logs, seed=0, spread=0.2):
    """Stored (s, alpha, delta, r), each (F,), randomised per band around the config's values
    (alpha stays <= 1 and r_stored >= 1 so the linear clamps are inactive)."""
    s, alpha, delta, r, _, _ = CONFIGS[config]
    g = torch.Generator().manual_seed(seed)

    def jitter(v, sign=1.):
        return v * (1 + sign * spread * torch.rand(F, generator=g, dtype=torch.float64))

    vals = [jitter(s), jitter(alpha, -1.), jitter(delta), jitter(r, -1.)]
    if learn_logs:
        return [v.log() for v in vals]
    vals[3] = 1. / vals[3]  # the linear parameterisation stores 1 / r
    return vals


def make_x(shape, amp=1., seed=0, kind='rand'):
    g = torch.Generator().manual_seed(seed + 1000)
    if kind == 'rand':
        x = torch.rand(shape, generator=g, dtype=torch.float64)
    elif kind == 'audio':  # log-normal energies with a slow envelope and a silent stretch
        T = shape[-1]
        env = torch.exp(2 * torch.sin(torch.arange(T, dtype=torch.float64) / 37.))
        x = torch.exp(torch.randn(shape, generator=g, dtype=torch.float64) - 2) * env
        x[..., T // 3: T // 3 + T // 10] = 0
    else:
        raise ValueError(kind)
    return x * amp


def run(fn, x, stored, learn_logs, eps, clamp, dtype, grad_seed=0):
    """Output, then gradients of x, the effective and the stored parameters, of
    ``sum(g * fn(...))`` with inputs cast to ``dtype`` (stored parameters stay float64 for the
    reference and are cast to float32 for the low-precision runs)."""
    pdtype = torch.float64 if dtype == torch.float64 else torch.float32
    x = x.detach().to(DEVICE, dtype).requires_grad_()
    stored = [p.detach().to(DEVICE, pdtype).requires_grad_() for p in stored]
    eff = pcen_parameters(*stored, learn_logs=learn_logs)
    y = fn(x, *eff, eps, clamp)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(grad_seed),
                    dtype=torch.float64).to(DEVICE, y.dtype)
    grads = torch.autograd.grad(y, [x, *eff, *stored], g, allow_unused=True)
    grads = [torch.zeros_like(t) if gr is None else gr
             for t, gr in zip([x, *eff, *stored], grads)]
    return [y.detach()] + [gr.detach() for gr in grads]


def compare(x, config, learn_logs, dtypes=(torch.float64, torch.float32), seed=0,
            ratio=None, atol=0.):
    """Run the reference (float64) and the Triton op in each dtype; compare y and every
    gradient. ``atol``: an absolute bound that also passes (for exact zeros, where the
    reference returns rounding noise such as ``r z^(r-1) - r delta^(r-1)`` at z = delta)."""
    F = x.shape[-2]
    _, _, _, _, eps, clamp = CONFIGS[config]
    stored = stored_params(config, F, learn_logs, seed)
    ref = run(pcen_ref, x, stored, learn_logs, eps, clamp, torch.float64)
    names = NAMES + tuple('stored_' + n[1:] for n in NAMES[2:])
    for dtype in dtypes:
        out = run(P.pcen_triton, x, stored, learn_logs, eps, clamp, dtype)
        assert out[0].dtype == dtype
        for name, a, b in zip(names, ref, out):
            if atol and (a.double() - b.double()).norm() <= atol:
                assert torch.isfinite(b).all(), name
                continue
            assert_close('%s[%s]' % (name, dtype), a, b, ratio or RTOL[dtype])
    return ref


# shape cases: minimal (T = 1), odd T, T not a multiple of BLOCK_T, exactly 2 chunks,
# 101 frames (1 s of LEAF), 4-D (B, C, F, T), more rows than one program
SHAPES = [(2, 3, 1), (2, 3, 37), (1, 4, 64), (3, 5, 101), (2, 2, 3, 45), (20, 2, 19)]


@pytest.mark.parametrize('shape', SHAPES, ids=lambda s: 'x'.join(map(str, s)))
@pytest.mark.parametrize('config', ['leaf', 'generic'])
@pytest.mark.parametrize('learn_logs', [True, False], ids=['logs', 'linear'])
def test_matches_reference(shape, config, learn_logs):
    compare(make_x(shape, seed=sum(shape)), config, learn_logs)


@pytest.mark.parametrize('learn_logs', [True, False], ids=['logs', 'linear'])
def test_through_the_custom_op(monkeypatch, learn_logs):
    # eager mode normally runs the kernels through an autograd.Function (less host time);
    # ELEAF_CUSTOM_OPS=1 takes the registered op eleaf::pcen_triton_fwd and its autograd
    monkeypatch.setenv('ELEAF_CUSTOM_OPS', '1')
    compare(make_x((3, 5, 101), seed=1), 'leaf', learn_logs)


@pytest.mark.parametrize('amp', [1e-9, 1e6])
@pytest.mark.parametrize('config', ['leaf', 'generic', 'leaf_noclamp'])
def test_tiny_and_huge_amplitudes(amp, config):
    compare(make_x((2, 3, 70), amp), config, learn_logs=config != 'generic',
            dtypes=(torch.float32,))


@pytest.mark.parametrize('config', ['leaf', 'generic', 'leaf_noclamp'])
@pytest.mark.parametrize('learn_logs', [True, False], ids=['logs', 'linear'])
def test_silence(config, learn_logs):
    """All-zero input: finite output (0) and finite gradients, equal to the reference's."""
    compare(torch.zeros(2, 3, 50, dtype=torch.float64), config, learn_logs,
            dtypes=(torch.float32,), atol=1e-12)


@pytest.mark.parametrize('config,learn_logs', [('leaf', False), ('generic', True)])
def test_long_1600(config, learn_logs):
    """16 s of LEAF frames, audio-like input with a silent stretch, float32."""
    compare(make_x((1, 3, 1600), kind='audio'), config, learn_logs, dtypes=(torch.float32,))


@pytest.mark.parametrize('config,learn_logs', [('leaf', True), ('generic', False)])
def test_long_6000(config, learn_logs):
    """60 s (6000 frames), float32, against the reference: the output, and the gradients as
    directional derivatives of the float64 reference (central differences; the reference's
    autograd over 6000 Python-loop steps takes ~15 s per run in the interpreter)."""
    x = make_x((1, 2, 6000), kind='audio', seed=7)
    F = x.shape[-2]
    _, _, _, _, eps, clamp = CONFIGS[config]
    stored = stored_params(config, F, learn_logs, seed=3)
    out = run(P.pcen_triton, x, stored, learn_logs, eps, clamp, torch.float32)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss(x, stored):
        eff = pcen_parameters(*stored, learn_logs=learn_logs)
        return (g * pcen_ref(x, *eff, eps, clamp)).sum().item()

    with torch.no_grad():
        eff = pcen_parameters(*stored, learn_logs=learn_logs)
        assert_close('y', pcen_ref(x, *eff, eps, clamp), out[0], RTOL[torch.float32])
        # stored-parameter gradients, one band and parameter at a time
        fd = torch.zeros(4, F, dtype=torch.float64)
        for i in range(4):
            for f in range(F):
                h = 1e-6 * max(abs(stored[i][f].item()), 1e-2)
                plus = [p.clone() for p in stored]
                minus = [p.clone() for p in stored]
                plus[i][f] += h
                minus[i][f] -= h
                fd[i, f] = (loss(x, plus) - loss(x, minus)) / (2 * h)
        for i, name in enumerate(('s', 'alpha', 'delta', 'r')):
            assert_close('stored_' + name, fd[i], out[6 + i], RTOL[torch.float32])
        # x gradient along a random direction
        v = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        v = v * x.abs().clamp(min=1e-3)
        h = 1e-6
        fd_x = (loss(x + h * v, stored) - loss(x - h * v, stored)) / (2 * h)
        out_x = (out[1].double() * v).sum().item()
        assert abs(out_x - fd_x) <= RTOL[torch.float32] * (out[1].double() * v).abs().sum()


@pytest.mark.parametrize('block_t,block_b', [(16, 16), (64, 32), (128, 16)])
def test_block_sizes(block_t, block_b):
    """Host functions with other launch settings (the custom op uses the defaults)."""
    x = make_x((2, 3, 150), seed=5)
    stored = stored_params('leaf', 3, False, seed=5)
    s, alpha, delta, r = pcen_parameters(*stored, learn_logs=False)
    eps, clamp = CONFIGS['leaf'][4:]
    ref = run(pcen_ref, x, stored, False, eps, clamp, torch.float64)
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y, carries = P.pcen_fwd(x, s, alpha, delta, r, eps, clamp, block_t=block_t, block_b=block_b)
    assert carries.shape == (6, math.ceil(150 / block_t))
    grads = P.pcen_bwd(g, x, carries, s, alpha, delta, r, eps, clamp, block_t=block_t,
                       block_b=block_b)
    for name, a, b in zip(NAMES, ref, (y,) + tuple(grads)):
        assert_close(name, a, b, RTOL[torch.float64])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    x = make_x((2, 3, 40), seed=2)
    x = x.to(dtype).double()  # representable input, so only the computation differs
    ref = run(pcen_ref, x, stored_params('leaf', 3, True), True, 1e-12, 1e-5, torch.float64)
    out = run(P.pcen_triton, x, stored_params('leaf', 3, True), True, 1e-12, 1e-5, dtype)
    assert out[0].dtype == dtype and out[1].dtype == dtype and out[2].dtype == torch.float32
    for name, a, b in zip(NAMES, ref, out):
        assert_close(name, a, b, RTOL[dtype])


def test_clamp_gradient_mask():
    """dx is zero where x < clamp and passes at equality (torch.clamp semantics)."""
    clamp = 0.25
    x = torch.tensor([[[0.1, 0.25, 0.5, 0.2, 0.25, 0.9, 0.0]]], dtype=torch.float64)
    s, alpha, delta, r = [torch.tensor([v], dtype=torch.float64) for v in (0.3, 0.8, 1.5, 0.5)]
    xr = x.clone().requires_grad_()
    pcen_ref(xr, s, alpha, delta, r, 1e-6, clamp).sum().backward()
    xt = x.clone().requires_grad_()
    P.pcen_triton(xt, s, alpha, delta, r, 1e-6, clamp).sum().backward()
    assert torch.equal(xt.grad == 0, x < clamp)
    assert_close('dx', xr.grad, xt.grad, RTOL[torch.float64])


def test_broadcast_params_and_noncontiguous():
    """(1,) parameters are shared by all bands; non-contiguous x is accepted."""
    x = make_x((2, 30, 4), seed=3).transpose(1, 2)  # (2, 4, 30), not contiguous
    params = [torch.tensor([v], dtype=torch.float64) for v in (0.1, 0.9, 1.5, 0.5)]
    ref = pcen_ref(x, *params, 1e-6, None)
    assert_close('y', ref, P.pcen_triton(x, *params, 1e-6), RTOL[torch.float64])


def test_opcheck():
    x = make_x((2, 3, 20), seed=4).float()
    eff = [p.float() for p in pcen_parameters(*stored_params('leaf', 3, True), learn_logs=True)]
    args = [t.clone().requires_grad_() for t in (x, *eff)]
    for clamp in (None, 1e-5):
        torch.library.opcheck(torch.ops.eleaf.pcen_triton_fwd.default, (*args, 1e-12, clamp))
    y, carries = torch.ops.eleaf.pcen_triton_fwd(x, *eff, 1e-12, 1e-5)
    torch.library.opcheck(torch.ops.eleaf.pcen_triton_bwd.default,
                          (torch.randn_like(y), x, carries, *eff, 1e-12, 1e-5))


def test_compile_fullgraph():
    x = make_x((2, 3, 40), seed=6).float()
    stored = [p.float() for p in stored_params('leaf', 3, False)]

    def f(x, s, alpha, delta, r):
        return P.pcen_triton(x, *pcen_parameters(s, alpha, delta, r, learn_logs=False),
                             1e-12, 1e-5).square().mean()

    eager_grads, comp_grads = eager_and_compiled_grads(f, (x, *stored))
    for name, a, b in zip(('x', 's', 'alpha', 'delta', 'r'), eager_grads, comp_grads):
        assert_close(name, a, b, 1e-6)


def test_gradcheck():
    """gradcheck of the reference and of the Triton op in float64, tiny case."""
    x = make_x((1, 2, 6), seed=8) + 0.1
    eff = pcen_parameters(*stored_params('leaf', 2, True, seed=8), learn_logs=True)
    inputs = [t.clone().requires_grad_() for t in (x, *eff)]
    for clamp in (None, 0.3):
        assert torch.autograd.gradcheck(lambda *a: pcen_ref(*a, 1e-6, clamp), inputs)
        assert torch.autograd.gradcheck(lambda *a: P.pcen_triton(*a, 1e-6, clamp), inputs)


def test_registry():
    fp32 = B.select_impl('pcen', 'triton', torch.device(DEVICE), torch.float32)
    assert fp32 == ('triton', P.pcen_triton)
    assert P._check(torch.device(DEVICE), torch.float16) is None
    assert 'float64 runs the reference' in P._check(torch.device(DEVICE), torch.float64)
    assert 'float32' in P._check(torch.device(DEVICE), torch.int64)
    with pytest.raises(B.BackendUnavailableError, match='float64'):
        B.select_impl('pcen', 'triton', torch.device(DEVICE), torch.float64)


def test_bad_inputs():
    x = torch.rand(2, 3, 10)
    p = torch.rand(3)
    with pytest.raises(ValueError, match='alpha must have shape'):
        P.pcen_triton(x, p, torch.rand(4), p, p, 1e-6)
    with pytest.raises(ValueError, match=r'\(\.\.\., F, T\)'):
        P.pcen_triton(torch.rand(10), p[:1], p[:1], p[:1], p[:1], 1e-6)


def test_import_without_triton():
    """eleaf.ops.pcen imports and registers nothing when Triton cannot be imported."""
    code = ('import sys\n'
            'class Block:\n'
            '    def find_spec(self, name, path=None, target=None):\n'
            '        if name == "triton" or name.startswith("triton."):\n'
            '            raise ImportError("blocked")\n'
            'sys.meta_path.insert(0, Block())\n'
            'import eleaf.ops.pcen as P\n'
            'from eleaf.ops import backends as B\n'
            'assert not P.HAS_TRITON\n'
            'assert "triton" not in B._REGISTRY.get("pcen", {})\n'
            'print("ok")\n')
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run([sys.executable, '-c', code], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and 'ok' in res.stdout, res.stderr[-2000:]


# --- NaN of the linear parameterisation (findings in the docstring of eleaf.ops.pcen) ---

@pytest.mark.parametrize('s', [-1e-4, -1e-3, 1.01, 1.05])
def test_reference_nan_for_s_outside_unit_interval(s):
    """Linear-space s is unclamped: s slightly < 0 or > 1 makes the smoother negative, and
    log1p(M / eps) NaN. For s = -1e-4 this needs a long input: finite on 1 s (101 frames),
    NaN within 60 s (6000 frames)."""
    x = pcen_lognormal_input(8, 6000, sigma=0.5 if s < 0 else 1.)
    y = pcen_ref(x, *pcen_leaf_linear(4, s), 1e-12, 1e-5)
    assert not torch.isfinite(y).all()
    first = (~torch.isfinite(y)).reshape(-1, 6000).any(0).nonzero()[0].item()
    if s == -1e-4:
        assert first > 1600
        assert torch.isfinite(y[..., :101]).all()
    # inside [0, 1] the same input is fine
    for ok in (0., 0.04, 1.):
        assert torch.isfinite(pcen_ref(x, *pcen_leaf_linear(4, ok), 1e-12, 1e-5)).all()


@pytest.mark.filterwarnings('ignore::RuntimeWarning')
def test_kernel_reproduces_reference_nan():
    """The kernels are faithful: same non-finite frames as the reference for s = 1.05, and
    the training failure mode (one NaN frame -> NaN gradients for every parameter)."""
    x = pcen_lognormal_input(8, 600, F=2, sigma=1.)[:2]
    eff = pcen_leaf_linear(2, 1.05)
    ref = pcen_ref(x, *eff, 1e-12, 1e-5)
    out, _ = P.pcen_fwd(x, *eff, 1e-12, 1e-5, block_t=128)
    assert not torch.isfinite(ref).all()
    assert torch.equal(torch.isfinite(ref), torch.isfinite(out))
    stored = [torch.full((2,), v, dtype=torch.float64, requires_grad=True)
              for v in (1.05, 0.96, 2., 2.)]
    P.pcen_triton(x, *pcen_parameters(*stored, learn_logs=False), 1e-12, 1e-5).sum().backward()
    assert all(torch.isnan(p.grad).any() for p in stored)


@pytest.mark.filterwarnings('ignore::RuntimeWarning')
def test_delta_zero_silence_nan_gradients():
    """Linear space, stored delta <= 0 (effective 0), silent frames, no clamp: the forward
    is finite but the s and alpha gradients are NaN, in the reference and the kernels."""
    x = torch.zeros(1, 2, 20, dtype=torch.float64)
    for fn in (pcen_ref, P.pcen_triton):
        stored = [torch.full((2,), v, dtype=torch.float64, requires_grad=True)
                  for v in (0.04, 0.96, -0.1, 2.)]
        y = fn(x, *pcen_parameters(*stored, learn_logs=False), 1e-6, None)
        y.sum().backward()
        assert torch.isfinite(y).all()
        assert torch.isnan(stored[0].grad).all() and torch.isnan(stored[1].grad).all()
