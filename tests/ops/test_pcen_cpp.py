"""The compiled CPU PCEN (``eleaf._C``: csrc/pcen.cpp; eleaf/ops/pcen_cpp.py) against the
reference :func:`eleaf.functional.pcen_ref` (SPEC §6).

- Outputs and the gradients of x and of the four effective parameters, on randomised shapes
  (T = 1, 2, long T, (B, F, T) and (B, C, F, T), non-contiguous x, with and without clamp,
  LEAF's and the generic constants), against the float64 reference: the op in float64 within
  ``RTOL[float64]``, in float32 within ``RTOL[float32]`` (1e-5); in float32 also against the
  float32 reference, within 1e-5 plus the float32 reference's own distance to float64 (on
  long inputs the float32 reference's ds is itself up to ~3e-5 from float64, see
  csrc/README.md). float16 / bfloat16 within ``RTOL[dtype]`` (2e-2) of the float64 reference.
- Both parameterisations through the module (``eleaf.PCEN(learn_logs=True/False)``, stored
  parameter gradients), ``eleaf.Leaf`` with backend 'cpp' against 'torch'.
- gradcheck (float64), opcheck of both ops, torch.compile (fullgraph), thread-count
  independence (bitwise), the NaN / inf behaviour of the reference (s outside [0, 1], delta = 0
  with silence), the registry, and the import without the extension.
"""
import copy
import logging
import os
import random
import subprocess
import sys

import pytest
import torch

import eleaf
from eleaf.functional.pcen import pcen_parameters, pcen_ref
from eleaf.ops import backends as B
from eleaf.ops.backends import cpp_status

try:
    from tests.testing import (RTOL, assert_close, eager_and_compiled_grads, pcen_leaf_linear,
                               pcen_lognormal_input, rel_err)
except ImportError:  # tests/ is not a package: conftest puts it on sys.path
    from testing import (RTOL, assert_close, eager_and_compiled_grads, pcen_leaf_linear,
                         pcen_lognormal_input, rel_err)

CPP_OK, CPP_REASON, _ = cpp_status()
if not CPP_OK:
    pytest.skip(CPP_REASON, allow_module_level=True)

from eleaf.ops.pcen_cpp import check, pcen_cpp  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMES = ('y', 'dx', 'ds', 'dalpha', 'ddelta', 'dr')

#: (s, alpha, delta, r, eps, clamp): LEAF's PCEN, the generic PCEN defaults
CONFIGS = {
    'leaf': (0.04, 0.96, 2., 0.5, 1e-12, 1e-5),
    'generic': (0.025, 1., 1., 1., 1e-6, None),
    'leaf_noclamp': (0.04, 0.96, 2., 0.5, 1e-12, None),
}


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------

def effective(config, F, gen, spread=0.2):
    """(F,) float64 effective parameters randomised around the config (alpha <= 1, r <= 1)."""
    s, alpha, delta, r = CONFIGS[config][:4]

    def jitter(v, sign):
        return v * (1 + sign * spread * torch.rand(F, generator=gen, dtype=torch.float64))
    return [jitter(s, 1), jitter(alpha, -1), jitter(delta, 1), jitter(r, -1)]


def make_x(shape, gen, kind='audio'):
    """Non-negative energies: log-normal with a slow envelope, a silent stretch and magnitudes
    spread over bands (kind='audio'), or uniform (kind='rand')."""
    T = shape[-1]
    if kind == 'rand':
        return torch.rand(shape, generator=gen, dtype=torch.float64)
    env = torch.exp(2 * torch.sin(torch.arange(T, dtype=torch.float64) / 37.))
    x = torch.exp(torch.randn(shape, generator=gen, dtype=torch.float64) - 2) * env
    x = x * 10 ** (torch.rand(shape[:-1] + (1,), generator=gen, dtype=torch.float64) * 4 - 2)
    x[..., T // 3: T // 3 + T // 10] = 0
    return x


def run(fn, x, eff, eps, clamp, dtype, g, pdtype=None):
    """[y, dx, ds, dalpha, ddelta, dr] of ``sum(g * fn(x, *eff))`` with x in ``dtype`` and the
    parameters in ``pdtype`` (default: float64 for float64, else float32); gradients that
    autograd leaves undefined (s for T = 1) count as zeros."""
    pdtype = pdtype or (torch.float64 if dtype == torch.float64 else torch.float32)
    x = x.detach().to(dtype).requires_grad_()
    eff = [p.detach().to(pdtype).requires_grad_() for p in eff]
    y = fn(x, *eff, eps, clamp)
    grads = torch.autograd.grad(y, [x, *eff], g.to(y.dtype), allow_unused=True)
    grads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip([x, *eff], grads)]
    return [y.detach()] + [gr.detach() for gr in grads]


def assert_float32_close_to_reference(x, config, gen):
    """The op in float32 within ``RTOL[float32]`` of the float64 reference on x (float64),
    with effective parameters of ``config`` and an output gradient drawn from ``gen``."""
    eff = effective(config, x.shape[-2], gen)
    eps, clamp = CONFIGS[config][4:]
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    ref = run(pcen_ref, x, eff, eps, clamp, torch.float64, g)
    out = run(pcen_cpp, x, eff, eps, clamp, torch.float32, g)
    for name, a, b in zip(NAMES, ref, out):
        assert_close(name, a, b, RTOL[torch.float32])


def random_case(seed):
    rnd = random.Random(seed)
    B_ = rnd.randint(1, 4)
    C = rnd.choice([None, None, 1, 2])
    F = rnd.randint(1, 12)
    u = rnd.random()
    T = rnd.choice([1, 2]) if u < 0.25 else rnd.randint(3, 150) if u < 0.7 else \
        rnd.randint(150, 2500)
    while B_ * (C or 1) * F * T > 60_000 and F > 1:  # keep the float64 reference quick
        F -= 1
    return dict(shape=(B_,) + ((C,) if C else ()) + (F, T),
                config=rnd.choice(sorted(CONFIGS)),
                noncontig=rnd.choice([None, None, 'transposed', 'strided']))


def noncontiguous(x, how):
    if how == 'transposed':  # time is not the innermost axis in memory
        return x.transpose(-1, -2).contiguous().transpose(-1, -2)
    if how == 'strided':  # time stride 2
        return torch.stack([x, x], dim=-1).flatten(-2)[..., ::2]
    return x


# ---------------------------------------------------------------------------------------
# parity with the reference
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('seed', range(16))
def test_parity_random(seed):
    case = random_case(seed)
    gen = torch.Generator().manual_seed(seed)
    shape = case['shape']
    F = shape[-2]
    x = noncontiguous(make_x(shape, gen), case['noncontig'])
    eff = effective(case['config'], F, gen)
    eps, clamp = CONFIGS[case['config']][4:]
    g = torch.randn(shape, generator=gen, dtype=torch.float64)
    ref64 = run(pcen_ref, x, eff, eps, clamp, torch.float64, g)
    ref32 = run(pcen_ref, x, eff, eps, clamp, torch.float32, g)
    out64 = run(pcen_cpp, x, eff, eps, clamp, torch.float64, g)
    out32 = run(pcen_cpp, x, eff, eps, clamp, torch.float32, g)
    for name, r64, r32, o64, o32 in zip(NAMES, ref64, ref32, out64, out32):
        assert o64.dtype == torch.float64 and o32.dtype == torch.float32
        assert_close('%s float64' % name, r64, o64, RTOL[torch.float64])
        assert_close('%s float32 vs float64 reference' % name, r64, o32, RTOL[torch.float32])
        bound = RTOL[torch.float32] + rel_err(r32, r64)
        assert_close('%s float32 vs float32 reference' % name, r32, o32, bound)


@pytest.mark.parametrize('config', ['leaf', 'generic'])
def test_long_input(config):
    """60 s of LEAF frames (6000), float32 against the float64 reference."""
    gen = torch.Generator().manual_seed(11)
    x = make_x((1, 3, 6000), gen)
    assert_float32_close_to_reference(x, config, gen)


@pytest.mark.parametrize('amp', [1e-9, 1e6])
@pytest.mark.parametrize('config', ['leaf', 'generic', 'leaf_noclamp'])
def test_tiny_and_huge_amplitudes(amp, config):
    gen = torch.Generator().manual_seed(5)
    x = make_x((2, 3, 70), gen, kind='rand') * amp
    assert_float32_close_to_reference(x, config, gen)


@pytest.mark.parametrize('config', ['leaf', 'generic', 'leaf_noclamp'])
def test_silence(config):
    """All-zero input: finite output and gradients, equal to the reference's (to 1e-12
    absolutely where the reference itself is rounding noise around 0)."""
    x = torch.zeros(2, 3, 50, dtype=torch.float64)
    gen = torch.Generator().manual_seed(2)
    eff = effective(config, 3, gen)
    eps, clamp = CONFIGS[config][4:]
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    ref = run(pcen_ref, x, eff, eps, clamp, torch.float64, g)
    for dtype in (torch.float64, torch.float32):
        out = run(pcen_cpp, x, eff, eps, clamp, dtype, g)
        for name, a, b in zip(NAMES, ref, out):
            assert torch.isfinite(b).all(), name
            if (a - b.double()).norm() > 1e-12:
                assert_close(name, a, b, RTOL[dtype])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision(dtype):
    """16-bit x (and parameters): computed in float32, y and dx in the input dtype."""
    gen = torch.Generator().manual_seed(3)
    x = make_x((2, 2, 3, 90), gen).to(dtype).double()  # representable input
    eff = [p.to(dtype).double() for p in effective('leaf', 3, gen)]
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(dtype).double()
    ref = run(pcen_ref, x, eff, 1e-12, 1e-5, torch.float64, g)
    out = run(pcen_cpp, x, eff, 1e-12, 1e-5, dtype, g, pdtype=dtype)
    assert all(o.dtype == dtype for o in out)
    for name, a, b in zip(NAMES, ref, out):
        assert_close(name, a, b, RTOL[dtype])
    # float32 parameters promote like the reference: float32 result, float32 parameter grads
    out = run(pcen_cpp, x, eff, 1e-12, 1e-5, dtype, g, pdtype=torch.float32)
    assert out[0].dtype == torch.float32 and out[1].dtype == dtype
    assert pcen_ref(x.to(dtype), *[p.float() for p in eff], 1e-12, 1e-5).dtype == torch.float32
    for name, a, b in zip(NAMES, ref, out):
        assert_close(name, a, b, RTOL[dtype])


def test_clamp_gradient_mask():
    """dx is zero where x < clamp and passes at equality (torch.clamp semantics)."""
    clamp = 0.25
    x = torch.tensor([[[0.1, 0.25, 0.5, 0.2, 0.25, 0.9, 0.0]]], dtype=torch.float64)
    params = [torch.tensor([v], dtype=torch.float64) for v in (0.3, 0.8, 1.5, 0.5)]
    for dtype in (torch.float64, torch.float32):
        xr = x.clone().requires_grad_()
        pcen_ref(xr, *params, 1e-6, clamp).sum().backward()
        xc = x.clone().to(dtype).requires_grad_()
        pcen_cpp(xc, *[p.to(dtype) for p in params], 1e-6, clamp).sum().backward()
        assert torch.equal(xc.grad == 0, x < clamp)
        assert_close('dx', xr.grad, xc.grad, RTOL[dtype])


def test_shared_parameters_and_strides():
    """(1,)-shaped / 0-dim parameters are shared by all bands; transposed and sliced x."""
    gen = torch.Generator().manual_seed(4)
    base = make_x((2, 30, 4), gen)
    for x in (base.transpose(1, 2), base[:, ::3, 1:3].transpose(1, 2)):
        params = [torch.tensor([v], dtype=torch.float64) for v in (0.1, 0.9, 1.5, 0.5)]
        assert_close('y', pcen_ref(x, *params, 1e-6, None), pcen_cpp(x, *params, 1e-6),
                     RTOL[torch.float64])
        scalars = [p[0] for p in params]
        assert_close('y', pcen_ref(x, *params, 1e-6, None), pcen_cpp(x, *scalars, 1e-6),
                     RTOL[torch.float64])


def test_empty():
    for shape in ((2, 3, 0), (0, 3, 5), (2, 0, 5)):
        x = torch.rand(shape, requires_grad=True)
        F = shape[1]
        params = [torch.rand(F, requires_grad=True) for _ in range(4)]
        y = pcen_cpp(x, *params, 1e-6, 1e-5)
        assert y.shape == shape
        grads = torch.autograd.grad(y.sum(), [x, *params], allow_unused=True)
        assert grads[0].shape == shape
        for p, gp in zip(params, grads[1:]):
            assert gp is None or torch.equal(gp, torch.zeros_like(p))


def test_bad_inputs():
    x = torch.rand(2, 3, 10)
    p = torch.rand(3)
    with pytest.raises(ValueError, match='alpha must have shape'):
        pcen_cpp(x, p, torch.rand(4), p, p, 1e-6)
    with pytest.raises(ValueError, match=r'\(\.\.\., F, T\)'):
        pcen_cpp(torch.rand(10), p[:1], p[:1], p[:1], p[:1], 1e-6)
    with pytest.raises(RuntimeError, match=r'r must have shape \(F,\) = \(3,\)'):
        torch.ops.eleaf.pcen_fwd(x, p, p, p, torch.rand(2), 1e-6, None)
    with pytest.raises(RuntimeError, match='x must be float32, float64, float16 or bfloat16'):
        torch.ops.eleaf.pcen_fwd(x.int(), p, p, p, p, 1e-6, None)
    with pytest.raises(RuntimeError, match='grad has shape'):
        torch.ops.eleaf.pcen_bwd(x[..., :5], x, p, p, p, p, 1e-6, None)


# ---------------------------------------------------------------------------------------
# modules: both parameterisations, LEAF
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize('learn_logs', [True, False], ids=['logs', 'linear'])
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_module_parameterisations(learn_logs, dtype):
    """eleaf.PCEN with backend 'cpp' against 'torch' (float64 module as the reference):
    output, input gradient and the gradients of the stored parameters."""
    gen = torch.Generator().manual_seed(int(learn_logs))
    x = make_x((3, 2, 10, 120), gen)
    kwargs = dict(s=0.04, alpha=0.96, delta=2., r=0.5, eps=1e-12, clamp=1e-5,
                  learn_logs=learn_logs)
    ref_mod = eleaf.PCEN(10, **kwargs, backend='torch').double()
    mod = eleaf.PCEN(10, **kwargs, backend='cpp').to(dtype)
    with torch.no_grad():  # per-band values, inside the linear clamps
        for p_ref, p in zip(ref_mod.parameters(), mod.parameters()):
            p_ref.add_(0.05 * torch.randn(p_ref.shape, generator=gen, dtype=torch.float64)
                       * p_ref.abs().clamp(min=0.1))
            p.copy_(p_ref)
        if not learn_logs:
            ref_mod.alpha.clamp_(max=1.)
            ref_mod.r.clamp_(min=1.)
            mod.alpha.copy_(ref_mod.alpha)
            mod.r.copy_(ref_mod.r)
    g = torch.randn(x.shape, generator=gen, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    yr = ref_mod(xr)
    yr.backward(g)
    xc = x.to(dtype).requires_grad_()
    yc = mod(xc)
    yc.backward(g.to(dtype))
    assert yc.dtype == dtype
    assert_close('y', yr, yc, RTOL[dtype])
    assert_close('dx', xr.grad, xc.grad, RTOL[dtype])
    for (name, p_ref), p in zip(ref_mod.named_parameters(), mod.parameters()):
        assert_close('d' + name, p_ref.grad, p.grad, RTOL[dtype])


@pytest.mark.parametrize('filterbank', ['frontend', 'torch'])
def test_leaf_frontend_cpp_vs_torch(filterbank):
    """eleaf.Leaf with backend 'cpp' (its PCEN compiled; the filterbank on the backend the
    frontend passes it, or forced to 'torch' to isolate PCEN) against backend 'torch': the
    output, the input gradient and every parameter gradient, against the float64 module
    (1e-5) and the float32 one (1e-5 plus the float32 module's own error)."""
    torch.manual_seed(0)
    ref = eleaf.Leaf(n_filters=16, backend='torch')
    leaf = eleaf.Leaf(n_filters=16, backend='cpp')
    leaf.load_state_dict(ref.state_dict())
    assert leaf.compression.backend == 'cpp'
    if filterbank == 'torch':
        leaf.filterbank.backend = 'torch'
    else:  # the filterbank's own backend is tested elsewhere
        try:
            B.resolve_backend('gabor_filterbank', leaf.filterbank.backend,
                              torch.device('cpu'), torch.float32)
        except B.BackendUnavailableError as exc:
            pytest.skip(str(exc))
    wave = torch.randn(2, 1, 4000, generator=torch.Generator().manual_seed(1))

    def run(module, dtype):
        module = copy.deepcopy(module).to(dtype)
        x = wave.clone().to(dtype).requires_grad_()
        y = module(x)
        y.square().mean().backward()
        return [y.detach(), x.grad] + [p.grad for p in module.parameters()]

    names = ['y', 'dx'] + ['d' + k for k, _ in ref.named_parameters()]
    ref64, ref32, out = run(ref, torch.float64), run(ref, torch.float32), run(leaf, torch.float32)
    for name, r64, r32, o in zip(names, ref64, ref32, out):
        assert o.dtype == torch.float32
        assert_close(name + ' vs float64', r64, o, RTOL[torch.float32])
        assert_close(name + ' vs float32', r32, o, RTOL[torch.float32] + rel_err(r32, r64))


# ---------------------------------------------------------------------------------------
# autograd, opcheck, compile, determinism
# ---------------------------------------------------------------------------------------

def test_gradcheck():
    gen = torch.Generator().manual_seed(8)
    x = make_x((2, 2, 7), gen, kind='rand') + 0.1
    eff = effective('leaf', 2, gen)
    inputs = [t.clone().requires_grad_() for t in (x, *eff)]
    for clamp in (None, 0.3):
        assert torch.autograd.gradcheck(lambda *a: pcen_cpp(*a, 1e-6, clamp), inputs)
    # leading axes (B, C, F, T), T = 1 and T = 2
    for shape in ((2, 2, 2, 1), (1, 2, 2, 2)):
        x = make_x(shape, gen, kind='rand') + 0.1
        inputs = [t.clone().requires_grad_() for t in (x, *eff)]
        assert torch.autograd.gradcheck(lambda *a: pcen_cpp(*a, 1e-6, None), inputs)


def test_opcheck():
    gen = torch.Generator().manual_seed(4)
    for shape in ((2, 3, 20), (2, 2, 3, 7)):
        x = make_x(shape, gen).float()
        eff = [p.float() for p in effective('leaf', 3, gen)]
        args = [t.clone().requires_grad_() for t in (x, *eff)]
        for clamp in (None, 1e-5):
            torch.library.opcheck(torch.ops.eleaf.pcen_fwd.default, (*args, 1e-12, clamp))
            torch.library.opcheck(torch.ops.eleaf.pcen_bwd.default,
                                  (torch.randn_like(x), x, *eff, 1e-12, clamp))


def test_compile_fullgraph():
    gen = torch.Generator().manual_seed(6)
    x = make_x((2, 3, 40), gen).float()
    stored = [torch.full((3,), v) for v in (0.04, 0.96, 2., 2.)]

    def f(x, s, alpha, delta, r):
        eff = pcen_parameters(s, alpha, delta, r, learn_logs=False)
        return pcen_cpp(x, *eff, 1e-12, 1e-5).square().mean()

    eager_grads, comp_grads = eager_and_compiled_grads(f, (x, *stored))
    for name, a, b in zip(('x', 's', 'alpha', 'delta', 'r'), eager_grads, comp_grads):
        assert torch.equal(a, b), name


def test_thread_count_does_not_change_bits():
    gen = torch.Generator().manual_seed(9)
    x = make_x((6, 2, 20, 130), gen).float()
    eff = [p.float() for p in effective('leaf', 20, gen)]
    g = torch.randn(x.shape, generator=gen)
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            y = torch.ops.eleaf.pcen_fwd(x, *eff, 1e-12, 1e-5)
            results.append((y,) + tuple(torch.ops.eleaf.pcen_bwd(g, x, *eff, 1e-12, 1e-5)))
    finally:
        torch.set_num_threads(before)
    for other in results[1:]:
        for name, a, b in zip(NAMES, results[0], other):
            assert torch.equal(a, b), name


# ---------------------------------------------------------------------------------------
# NaN / inf as the reference (findings in the docstring of eleaf.ops.pcen)
# ---------------------------------------------------------------------------------------

@pytest.mark.filterwarnings('ignore::RuntimeWarning')
@pytest.mark.parametrize('s', [-1e-3, -1e-2, 1.01, 1.05, 2.5])
def test_nan_for_s_outside_unit_interval(s):
    """Linear-space s is unclamped: outside [0, 1] the smoother turns negative and the
    reference is NaN from that frame on; the op is NaN at exactly the same elements (float64:
    the same recursion; float32: against the float32 reference, which also gets NaN)."""
    x = pcen_lognormal_input(4, 1500, sigma=0.5 if s < 0 else 1.)
    eff = pcen_leaf_linear(4, s)
    ref = pcen_ref(x, *eff, 1e-12, 1e-5)
    out = pcen_cpp(x, *eff, 1e-12, 1e-5)
    assert not torch.isfinite(ref).all()
    assert torch.equal(torch.isnan(ref), torch.isnan(out))
    assert torch.equal(torch.isfinite(ref), torch.isfinite(out))
    finite = torch.isfinite(ref)
    assert_close('finite part', ref[finite], out[finite], RTOL[torch.float64])
    ref32 = pcen_ref(x.float(), *[p.float() for p in eff], 1e-12, 1e-5)
    out32 = pcen_cpp(x.float(), *[p.float() for p in eff], 1e-12, 1e-5)
    assert torch.equal(torch.isfinite(ref32), torch.isfinite(out32))
    # inside [0, 1] the same input is fine
    for ok in (0., 0.04, 1.):
        assert torch.isfinite(pcen_cpp(x, *pcen_leaf_linear(4, ok), 1e-12, 1e-5)).all()
    # training failure mode: one NaN frame, every stored parameter gradient NaN
    stored = [torch.full((4,), v, dtype=torch.float64, requires_grad=True)
              for v in (s, 0.96, 2., 2.)]
    pcen_cpp(x, *pcen_parameters(*stored, learn_logs=False), 1e-12, 1e-5).sum().backward()
    assert all(torch.isnan(p.grad).any() for p in stored)


@pytest.mark.filterwarnings('ignore::RuntimeWarning')
def test_delta_zero_silence_gradients():
    """Linear space, stored delta <= 0 (effective 0), silent frames, no clamp: the forward
    is finite, the s and alpha gradients (and for stored delta = 0 the delta gradient) are
    NaN, exactly where the reference has NaN / inf."""
    x = torch.zeros(1, 2, 20, dtype=torch.float64)
    x[..., 10:] = 0.5
    grads = {}
    for fn in (pcen_ref, pcen_cpp):
        for delta in (-0.1, 0.):
            stored = [torch.full((2,), v, dtype=torch.float64, requires_grad=True)
                      for v in (0.04, 0.96, delta, 2.)]
            xr = x.clone().requires_grad_()
            y = fn(xr, *pcen_parameters(*stored, learn_logs=False), 1e-6, None)
            y.sum().backward()
            assert torch.isfinite(y).all()
            grads[fn, delta] = [xr.grad] + [p.grad for p in stored]
    for delta in (-0.1, 0.):
        for a, b in zip(grads[pcen_ref, delta], grads[pcen_cpp, delta]):
            assert torch.equal(torch.isnan(a), torch.isnan(b))
            assert torch.equal(torch.isinf(a), torch.isinf(b))
            assert torch.equal(a[torch.isinf(a)], b[torch.isinf(b)])
            fin = torch.isfinite(a)
            assert_close('finite', a[fin], b[fin], RTOL[torch.float64])
    for delta in (-0.1, 0.):
        assert torch.isnan(grads[pcen_cpp, delta][1]).all()
        assert torch.isnan(grads[pcen_cpp, delta][2]).all()
    assert torch.isnan(grads[pcen_cpp, 0.][3]).all()
    assert torch.isfinite(grads[pcen_cpp, 0.][4]).all()


def test_nan_input_propagates_like_reference():
    x = torch.rand(1, 2, 12, dtype=torch.float64)
    x[0, 0, 5] = float('nan')
    params = [torch.tensor([v, v], dtype=torch.float64) for v in (0.2, 0.9, 1.5, 0.5)]
    for clamp in (None, 1e-5):
        ref = pcen_ref(x, *params, 1e-6, clamp)
        out = pcen_cpp(x, *params, 1e-6, clamp)
        assert torch.equal(torch.isnan(ref), torch.isnan(out))


def test_integer_exponent_negative_base():
    """torch.pow of a negative base: finite for an integer exponent (r = 1), NaN otherwise."""
    x = torch.tensor([[[0.5, -3., 0.2, -0.1]]], dtype=torch.float64)
    for r in (1., 0.5):
        params = [torch.tensor([v], dtype=torch.float64) for v in (0.0, 0.5, 0.1, r)]
        xr = x.clone().requires_grad_()
        ref = pcen_ref(xr, *params, 1e-6, None)
        ref.sum().backward()
        xc = x.clone().requires_grad_()
        out = pcen_cpp(xc, *params, 1e-6, None)
        out.sum().backward()
        assert torch.allclose(ref, out, equal_nan=True, rtol=1e-12, atol=0)
        assert torch.allclose(xr.grad, xc.grad, equal_nan=True, rtol=1e-12, atol=0)


def test_extreme_parameters_take_the_general_path():
    """v / delta overflowing float32 (delta = 1e-30, negative alpha), delta = 0, r = 0: the
    op switches to the literal formulas there and matches the reference."""
    x = torch.tensor([[[1e10, 2e10, 1e9, 1.0, 0.5, 0.0]]], dtype=torch.float64)
    g = torch.linspace(0.5, 1.5, 6, dtype=torch.float64).reshape(x.shape)
    cases = [(0.3, -2.0, 1e-30, 0.5), (0.3, 0.9, 0.0, 0.5), (0.3, 0.9, 1.5, 0.0),
             (0.3, 0.9, 1.5, 1.0)]
    for values in cases:
        eff = [torch.tensor([v], dtype=torch.float64) for v in values]
        ref = run(pcen_ref, x, eff, 1e-6, 1e-5, torch.float64, g)
        for dtype in (torch.float64, torch.float32):
            out = run(pcen_cpp, x, eff, 1e-6, 1e-5, dtype, g)
            for name, a, b in zip(NAMES, ref, out):
                if (a - b.double()).norm() > 1e-12:
                    assert_close('%s %s %s' % (name, values, dtype), a, b, RTOL[dtype])


# ---------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------

def test_registry_and_module_selection(monkeypatch, caplog):
    monkeypatch.delenv('ELEAF_BACKEND', raising=False)
    monkeypatch.setattr(B, '_LOGGED', set())
    cpu = torch.device('cpu')
    assert 'pcen' in eleaf.backends()['cpp']['ops']
    assert B.select_impl('pcen', 'cpp', cpu, torch.float32) == ('cpp', pcen_cpp)
    with caplog.at_level(logging.INFO, logger='eleaf'):
        assert B.select_impl('pcen', 'auto', cpu, torch.float32) == ('cpp', pcen_cpp)
    assert any("pcen runs on 'cpp' for cpu/float32" in r.getMessage() for r in caplog.records)
    assert check(cpu, torch.bfloat16) is None and check(cpu, torch.float64) is None
    assert 'float32' in check(cpu, torch.int64)
    assert 'CPU kernels only' in check(torch.device('cuda'), torch.float32)
    with pytest.raises(B.BackendUnavailableError, match='CPU kernels only'):
        B.select_impl('pcen', 'cpp', torch.device('cuda'), torch.float32)
    # modules: 'auto' on CPU runs the compiled op, an explicit 'cpp' too
    calls = []
    monkeypatch.setitem(B._REGISTRY['pcen'], 'cpp',
                        B.Impl(lambda *a: calls.append(1) or pcen_cpp(*a), check))
    x = torch.rand(2, 40, 30)
    eleaf.PCEN(40)(x)
    eleaf.PCEN(40, backend='cpp')(x)
    eleaf.Leaf(n_filters=40)(torch.randn(1, 400))
    leaf = eleaf.Leaf(n_filters=40, backend='cpp')
    assert leaf.compression.backend == 'cpp'
    leaf.filterbank.backend = 'torch'  # (the filterbank's backends are tested elsewhere)
    leaf(torch.randn(1, 400))
    eleaf.PCEN(40, backend='torch')(x)
    assert len(calls) == 4


def test_fallback_when_extension_off(monkeypatch):
    """With eleaf._C 'not loadable', 'auto' runs the reference and 'cpp' raises."""
    monkeypatch.delenv('ELEAF_BACKEND', raising=False)
    monkeypatch.setitem(B._STATUS_CACHE, 'cpp', (False, 'eleaf._C forced off by the test', None))
    cpu = torch.device('cpu')
    assert B.select_impl('pcen', 'auto', cpu, torch.float32) == ('torch', pcen_ref)
    with pytest.raises(B.BackendUnavailableError, match='forced off'):
        eleaf.PCEN(4, backend='cpp')(torch.rand(1, 4, 5))


def test_import_without_extension():
    """eleaf.ops.pcen_cpp imports and registers nothing when eleaf._C cannot be imported."""
    code = ('import sys\n'
            'class Block:\n'
            '    def find_spec(self, name, path=None, target=None):\n'
            '        if name == "eleaf._C":\n'
            '            raise ImportError("blocked")\n'
            'sys.meta_path.insert(0, Block())\n'
            'import eleaf.ops.pcen_cpp as P\n'
            'from eleaf.ops import backends as B\n'
            'import eleaf, torch\n'
            'assert not P.AVAILABLE\n'
            'assert "cpp" not in B._REGISTRY.get("pcen", {})\n'
            'assert eleaf.PCEN(3)(torch.rand(1, 3, 4)).shape == (1, 3, 4)\n'
            'print("ok")\n')
    res = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0 and 'ok' in res.stdout, res.stderr[-2000:]
