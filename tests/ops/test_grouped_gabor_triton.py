"""EfficientLEAF's filterbank on Triton with the group geometry computed on the device
(op ``grouped_gabor_filterbank``, ``eleaf::gabor_geometry``, caps-sized layouts).

References, independent of the op's layout code: SPEC §5's stride/size formula
(tests/functional/test_geometry.py's ``spec_geometry``) for the geometry kernel, and
:func:`eleaf.functional.grouped_gabor_filterbank_ref` on host geometry (float64 and float32)
for the filterbank, output and every gradient within ‖a − b‖/‖b‖ ≤ 1e-5 in float32. Outputs,
scratch and the geometry are poisoned (NaN / a huge negative int) before the kernels write
them, so anything a kernel misses shows up.
"""
import numpy as np
import pytest
import torch

from eleaf.functional import (geometry_caps, geometry_from_tensor, group_geometry_tensor,
                              grouped_gabor_filterbank_ref, scaled_pool_widths_tensor)
from tests.functional.test_geometry import Z, edge_parameters, random_config, spec_geometry
from tests.testing import RTOL, assert_close, require_triton_ops

gabor = require_triton_ops('eleaf.ops.gabor')
gabor_pack = require_triton_ops('eleaf.ops.gabor_pack')

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


@pytest.fixture(autouse=True)
def _poison(triton_poison):
    """Every test here runs with poisoned outputs (tests/ops/conftest.py)."""


def test_geometry_kernel_equals_spec():
    """The geometry kernel (float32 stride thresholds, integer window sizes) equals SPEC §5's
    float64 formula on 300 random and edge draws: mu = 0 groups, mu on stride thresholds and
    their float32 neighbours, sigma on integer kernel sizes."""
    rng = np.random.default_rng(77)
    draws = 0
    while draws < 300:
        F, G, pool_size, hop, wf, sf = random_config(rng)
        caps = geometry_caps(F, G, pool_size, hop, wf, sf, pool_size * Z)
        layout = gabor.caps_layout(caps)
        for _ in range(3):
            mu, sigma = edge_parameters(rng, F, pool_size, hop, wf, sf, torch.float32)
            geo = gabor_pack.geometry_fwd(mu.to(DEVICE), sigma.to(DEVICE), layout)
            want = spec_geometry(mu.numpy(), sigma.numpy(), G, pool_size, hop, wf, sf)
            assert [tuple(r) for r in geo.cpu().tolist()] == want, (F, G, pool_size, hop, wf,
                                                                   sf)
            draws += 1


def reference(x, mu, sigma, p, caps, dtype):
    """Output and gradients of the reference on host geometry, in dtype."""
    xs = x.detach().to(dtype).requires_grad_()
    params = [t.detach().to(dtype).requires_grad_() for t in (mu, sigma, p)]
    geometry = geometry_from_tensor(group_geometry_tensor(params[0], params[1], caps), caps)
    pw = scaled_pool_widths_tensor(params[2], group_geometry_tensor(params[0], params[1], caps),
                                   caps)
    out = grouped_gabor_filterbank_ref(xs, params[0], params[1], pw, geometry)
    return out, [xs] + params


def run_triton(x, mu, sigma, p, caps):
    xs = x.detach().to(DEVICE).requires_grad_()
    params = [t.detach().to(DEVICE).requires_grad_() for t in (mu, sigma, p)]
    out = gabor.grouped_gabor_filterbank_triton(xs, *params, caps)
    return out, [xs] + params


def compare(x, mu, sigma, p, caps, desc):
    outs = {}
    g = None
    for name, fn in (('f64', lambda: reference(x, mu, sigma, p, caps, torch.float64)),
                     ('f32', lambda: reference(x, mu, sigma, p, caps, torch.float32)),
                     ('triton', lambda: run_triton(x, mu, sigma, p, caps))):
        out, leaves = fn()
        if g is None:
            g = torch.randn(out.shape, generator=torch.Generator().manual_seed(3),
                            dtype=torch.float64)
        (out * g.to(out)).sum().backward()
        outs[name] = [out.detach().cpu()] + [t.grad.cpu() for t in leaves]
    for i, what in enumerate(('out', 'dx', 'dmu', 'dsigma', 'dpw')):
        assert outs['triton'][i].dtype == torch.float32
        assert_close('%s vs f64 [%s]' % (what, desc), outs['f64'][i], outs['triton'][i],
                     RTOL[torch.float32])
        assert_close('%s vs f32 [%s]' % (what, desc), outs['f32'][i], outs['triton'][i],
                     RTOL[torch.float32])


def mel_params(F, sr=16000, seed=0, pool_size=401):
    from eleaf.functional import mel_filter_params
    mu, sigma = mel_filter_params(F, 60., min(7800., sr * 0.45), sr)
    gen = torch.Generator().manual_seed(seed)
    mu = (mu * (1 + 0.2 * torch.randn(F, generator=gen))).clamp(0, float(np.float32(np.pi)))
    sigma = (sigma * torch.exp(0.3 * torch.randn(F, generator=gen))).clamp(
        float(2 * Z), float(pool_size * Z))
    p = (0.4 + 0.1 * torch.randn(F, generator=gen)).clamp(2 / pool_size, 0.5)
    return mu, sigma, p


@pytest.mark.parametrize('F,G,cwf,sf,L,seed', [
    (16, 4, 4.77, 1., 700, 0),      # the default 4G, short input
    (20, 8, 6, 16, 1234, 1),        # 8G-opt's strides, L not a multiple of the hop
    (13, 5, 3, 3, 333, 2),          # uneven groups, L < most kernels
    (9, 9, 4, 2, 161, 3),           # one filter per group
])
def test_against_reference(F, G, cwf, sf, L, seed):
    caps = geometry_caps(F, G, 401, 160, cwf, sf, 401 * Z)
    mu, sigma, p = mel_params(F, seed=seed)
    x = torch.randn(2, 1, L, generator=torch.Generator().manual_seed(seed))
    compare(x, mu, sigma, p, caps, 'F=%d G=%d cwf=%g sf=%g L=%d' % (F, G, cwf, sf, L))


def test_geometry_at_the_caps():
    """Groups at the extremes of the caps: the smallest stride (mu = float32(pi)), the
    largest (mu = 0: s = hop, P = 1), the widest kernel (sigma at its bound: K = K cap) and
    1-tap kernels; the static buffers are sized for all of them at once."""
    caps = geometry_caps(8, 4, 401, 160, 3, 16, 401 * Z)
    mu = torch.tensor([3.1415927, 1., 0., 0., 0.3, 0.2, 1e-3, 2e-3])
    sigma = torch.tensor([2., 150.287, 150.287, 3., 0.75, 0.8, 5., 6.]).clamp(float(2 * Z))
    p = torch.tensor([0.5, 0.4, 0.3, 0.2, 0.1, 0.05, 0.01, 0.4])
    geo = group_geometry_tensor(mu, sigma, caps).tolist()
    assert geo[0][0] == caps.min_stride and geo[1][0] == 160 and geo[1][1] == 1
    assert geo[1][2] >= caps.kernel_size - 2
    compare(torch.randn(1, 1, 900), mu, sigma, p, caps, 'caps extremes')


def test_through_the_custom_ops(monkeypatch):
    """ELEAF_CUSTOM_OPS=1: the registered ops (eleaf::gabor_geometry, gabor_pack, gabor_pool)
    that torch.compile traces, same numbers."""
    monkeypatch.setenv('ELEAF_CUSTOM_OPS', '1')
    caps = geometry_caps(12, 3, 401, 160, 6, 16, 401 * Z)
    mu, sigma, p = mel_params(12, seed=5)
    compare(torch.randn(2, 1, 800), mu, sigma, p, caps, 'custom ops')


def test_opcheck():
    caps = geometry_caps(6, 2, 401, 160, 3, 8, 401 * Z)
    layout = gabor.caps_layout(caps)
    mu, sigma, p = (t.to(DEVICE) for t in mel_params(6, seed=6))
    torch.library.opcheck(torch.ops.eleaf.gabor_geometry.default, (mu, sigma, layout))
    geo = gabor_pack.geometry_fwd(mu, sigma, layout)
    args = (mu.requires_grad_(), sigma.requires_grad_(), p.requires_grad_(), geo, layout)
    torch.library.opcheck(torch.ops.eleaf.gabor_pack.default, args)


def test_non_float32_parameters_use_the_torch_geometry():
    """float64 parameters with float32 input (pack_taps_ref and group_geometry_tensor on the
    device) give the float64 reference's numbers up to the float32 kernels' rounding."""
    caps = geometry_caps(10, 2, 401, 160, 4.77, 1, 401 * Z)
    mu, sigma, p = (t.double() for t in mel_params(10, seed=8))
    x = torch.randn(1, 1, 600)
    out = gabor.grouped_gabor_filterbank_triton(x.to(DEVICE), mu.to(DEVICE), sigma.to(DEVICE),
                                                p.to(DEVICE), caps)
    ref, _ = reference(x, mu, sigma, p, caps, torch.float64)
    assert_close('float64 parameters', ref.detach(), out.detach().cpu(), RTOL[torch.float32])
