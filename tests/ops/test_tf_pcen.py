"""TF LEAF's PCEN (op ``tf_pcen``) on eleaf's PCEN kernels, compiled ('cpp', CPU) and
Triton (interpreter on CPU without CUDA), against its reference
:func:`eleaf.functional.tf_leaf.tf_pcen_ref` (the TF port's frame loop).

Reference in float64 and float32 on the same stored parameters; each fast path must match
the float64 reference's output and gradients of x, smooth, alpha, delta and root within
‖a − b‖/‖b‖ ≤ 1e-5 in float32, or within twice the float32 reference's own distance from
float64 where float32 cannot do better (e = 8e-6 for root's gradient, a sum with
cancellation), and the float32 reference within that bound plus e (at T = 1 the float32
reference's input gradient, a near-cancellation of the paths through x and through M = x, is
2.3e-5 from float64; the kernels' 6e-6); including TF's clips (smooth outside [0, 1], alpha
above 1, root below 1, values at the clip bounds, where ``torch.clamp`` passes the gradient),
a shared smoothing coefficient and T = 1. The recorded TF outputs
(tests/modules/test_tf_leaf.py) run through the 'cpp' path under 'auto'.
"""
import pytest
import torch

import eleaf
from eleaf.functional.tf_leaf import tf_pcen_ref
from eleaf.ops import BackendUnavailableError, select_impl
from eleaf.ops.backends import _impl_reason, _load_fast_paths
from tests.testing import RTOL, assert_close, rel_err

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'
_load_fast_paths()
BACKENDS = [b for b in ('cpp', 'triton')
            if _impl_reason('tf_pcen', b, torch.device(DEVICE), torch.float32) is None]
pytestmark = pytest.mark.skipif(not BACKENDS, reason='no fast tf_pcen on %s' % DEVICE)
NAMES = ('y', 'dx', 'dsmooth', 'dalpha', 'ddelta', 'droot')


def fast_tf_pcen(backend):
    name, fn = select_impl('tf_pcen', backend, torch.device(DEVICE), torch.float32)
    assert name == backend
    return fn


def stored(F, seed, shared_smooth=False):
    """TF's stored PCEN parameters around LEAF's values, with entries at and beyond the clips."""
    g = torch.Generator().manual_seed(seed)
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(F, generator=g, dtype=torch.float64)
    smooth = u(0.01, 0.3)
    alpha, delta, root = u(0.5, 1.2), u(0.2, 3.), u(0.8, 4.)
    smooth[0], alpha[0], root[0] = 1.2, 1.0, 1.0    # clipped / at the bounds
    if F > 1:
        smooth[1], alpha[1], root[1] = -0.1, 1.5, 0.5
    if shared_smooth:
        smooth = smooth[2:3] if F > 2 else smooth[:1]
    return [smooth, alpha, delta, root]


def run(fn, x, params, dtype, floor=1e-12, seed=0):
    xs = x.detach().to(DEVICE, dtype).requires_grad_()
    ps = [p.detach().to(DEVICE, dtype).requires_grad_() for p in params]
    y = fn(xs, *ps, floor)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    (y * g.to(y)).sum().backward()
    return [y.detach(), xs.grad] + [p.grad for p in ps]


def energies(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.randn(shape, generator=g, dtype=torch.float64) - 3) + 1e-5


@pytest.mark.parametrize('backend', BACKENDS)
@pytest.mark.parametrize('shape,shared,floor', [
    ((2, 6, 120), False, 1e-12), ((3, 5, 33), True, 1e-12), ((1, 4, 1), False, 1e-6),
    ((2, 3, 200), True, 1e-6)])
def test_matches_reference(backend, shape, shared, floor):
    x = energies(shape, sum(shape))
    params = stored(shape[1], sum(shape), shared)
    ref64 = run(tf_pcen_ref, x, params, torch.float64, floor)
    ref32 = run(tf_pcen_ref, x, params, torch.float32, floor)
    out = run(fast_tf_pcen(backend), x, params, torch.float32, floor)
    for name, r64, r32, o in zip(NAMES, ref64, ref32, out):
        assert o.dtype == torch.float32, name
        e = rel_err(r32, r64)
        bound = max(RTOL[torch.float32], 2 * e)
        assert_close('%s vs f64 %s' % (name, shape), r64, o, bound)
        assert_close('%s vs f32 %s' % (name, shape), r32, o, bound + e)


@pytest.mark.parametrize('backend', BACKENDS)
def test_tfleaf_matches_torch(backend):
    # the whole port with its PCEN on the fast path, against the port in float64 and float32 (the
    # gradient of delta is ill-conditioned in float32: TF's own reaches 2e-4, see
    # tests/modules/test_tf_leaf.py, so the bound rule of test_matches_reference applies)
    x = torch.randn(2, 1200, generator=torch.Generator().manual_seed(3))
    ref = eleaf.TFLeaf(n_filters=8, mean_var_norm=True, backend='torch')
    outs = []
    for name, dtype in (('torch', torch.float64), ('torch', torch.float32),
                        (backend, torch.float32)):
        model = eleaf.TFLeaf(n_filters=8, mean_var_norm=True, backend=name)
        model.load_state_dict(ref.state_dict())
        model = model.to(DEVICE, dtype)
        y = model(x.to(DEVICE, dtype))
        (y * torch.linspace(-1, 1, y.shape[-1], device=DEVICE, dtype=dtype)).sum().backward()
        outs.append([y.detach()] + [p.grad for p in model.compression.parameters()])
    for name, r64, r32, o in zip(('y', 'alpha', 'delta', 'root', 'smooth'), *outs):
        e = rel_err(r32, r64)
        assert_close(name, r64, o, max(RTOL[torch.float32], 2 * e))


def test_registration():
    for backend in BACKENDS:
        assert select_impl('tf_pcen', backend, torch.device(DEVICE), torch.float32)[0] == backend
    if 'triton' in BACKENDS:
        with pytest.raises(BackendUnavailableError, match='float64'):
            select_impl('tf_pcen', 'triton', torch.device(DEVICE), torch.float64)
    if 'cpp' in BACKENDS:  # the compiled PCEN computes float64 natively
        assert select_impl('tf_pcen', 'cpp', torch.device('cpu'), torch.float64)[0] == 'cpp'
        assert select_impl('tf_pcen', 'auto', torch.device('cpu'), torch.float32)[0] == 'cpp'


@pytest.mark.skipif('cpp' not in BACKENDS, reason='needs eleaf._C')
def test_float64_on_cpp():
    x = energies((2, 5, 50), 1)
    params = stored(5, 1)
    ref = run(tf_pcen_ref, x, params, torch.float64)
    out = run(fast_tf_pcen('cpp'), x, params, torch.float64)
    for name, r, o in zip(NAMES, ref, out):
        assert_close(name, r, o, RTOL[torch.float64])
