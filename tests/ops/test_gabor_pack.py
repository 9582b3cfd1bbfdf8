"""Packed taps and windows of the Triton filterbank (``eleaf::gabor_pack``) against the
definitions (SPEC §2, §3, §5).

Reference, independent of the op's layout code: per group, :func:`eleaf.functional.gabor_kernel`
(real rows, then imaginary rows) and :func:`eleaf.functional.gauss_windows`, flattened and
concatenated, in float64 and float32; gradients by autograd through them. The op (Triton
interpreter on CPU without CUDA) must match within ‖a − b‖/‖b‖ ≤ 1e-5 in float32 for the
outputs and the three parameter gradients. Outputs are poisoned with NaN before the kernels
write them (``ELEAF_DEBUG_POISON=1``), so an element the kernel misses shows up as non-finite.
"""
import pytest
import torch

from eleaf.functional import gabor_kernel, gauss_windows
from eleaf.functional.gabor import GroupGeometry
from tests.ops.gabor_cases import draw_config, leaf_config
from tests.testing import RTOL, assert_close, require_triton_ops

gabor = require_triton_ops('eleaf.ops.gabor')
pack = require_triton_ops('eleaf.ops.gabor_pack')

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    monkeypatch.setenv('ELEAF_DEBUG_POISON', '1')


def packed_reference(mu, sigma, pw, geometry):
    """(taps, windows) in the dtype of the parameters, group by group from the definitions."""
    taps, windows = [], []
    for g in geometry:
        sl = slice(g.start, g.stop)
        taps.append(gabor_kernel(g.kernel_size, mu[sl], sigma[sl]).reshape(-1))
        windows.append(gauss_windows(g.window_size, pw[sl]).reshape(-1))
    return torch.cat(taps), torch.cat(windows)


def pack_static(mu, sigma, pw, geometry):
    """The op on a fixed geometry: the group layout and geometry tensor of ``geometry``."""
    return gabor.pack_taps(mu, sigma, pw, *gabor.static_geometry(geometry, mu.device))


def outputs_and_grads(fn, params, seed=0):
    """fn(*params) -> (taps, windows); backward of a seeded random projection of both."""
    params = [p.detach().clone().requires_grad_() for p in params]
    taps, windows = fn(*params)
    g = torch.Generator().manual_seed(seed)
    gt = torch.randn(taps.shape, generator=g, dtype=torch.float64)
    gw = torch.randn(windows.shape, generator=g, dtype=torch.float64)
    ((taps * gt.to(taps)).sum() + (windows * gw.to(windows)).sum()).backward()
    return [taps, windows] + [p.grad for p in params]


def compare(cfg):
    geometry = cfg['geometry']
    params = [cfg[k].to(DEVICE) for k in ('mu', 'sigma', 'pw')]
    out = outputs_and_grads(lambda *p: pack_static(*p, geometry), params)
    ref64 = outputs_and_grads(lambda *p: packed_reference(*p, geometry),
                              [p.double() for p in params])
    ref32 = outputs_and_grads(lambda *p: packed_reference(*p, geometry), params)
    for name, o, r64, r32 in zip(('taps', 'windows', 'dmu', 'dsigma', 'dpw'), out, ref64, ref32):
        assert o.dtype == torch.float32, name
        assert_close('%s vs f64 [%s]' % (name, cfg['desc']), r64, o, RTOL[torch.float32])
        assert_close('%s vs f32 [%s]' % (name, cfg['desc']), r32, o, RTOL[torch.float32])


@pytest.mark.parametrize('seed', range(12))
def test_random_configs(seed):
    compare(draw_config(seed))


def test_through_the_custom_op(monkeypatch):
    # ELEAF_CUSTOM_OPS=1: eleaf::gabor_pack and its registered autograd instead of the eager
    # autograd.Function (see eleaf.ops.gabor.use_custom_ops)
    monkeypatch.setenv('ELEAF_CUSTOM_OPS', '1')
    compare(draw_config(4))


def test_leaf_and_long_kernels():
    # LEAF: one group, K = W = 401 (two blocks of taps); then kernels of up to 1201 taps
    compare(leaf_config())
    cfg = leaf_config(n_filters=6)
    cfg['geometry'] = (GroupGeometry(0, 2, 1, 160, 1201, 401), GroupGeometry(2, 3, 2, 80, 257, 201),
                       GroupGeometry(3, 6, 5, 32, 3, 81))
    cfg['sigma'] = cfg['sigma'] * torch.tensor([40., 40., 9., 0.1, 0.1, 0.1])
    cfg['desc'] = 'long and short kernels'
    compare(cfg)


def test_only_one_output_used():
    # autograd hands the backward no gradient for the unused windows
    cfg = draw_config(3)
    params = [cfg[k].to(DEVICE).requires_grad_() for k in ('mu', 'sigma', 'pw')]
    taps, _ = pack_static(*params, cfg['geometry'])
    proj = torch.randn(taps.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    (taps * proj.to(taps)).sum().backward()
    ref = [p.detach().double().requires_grad_() for p in params[:2]]
    (packed_reference(*ref, params[2].double(), cfg['geometry'])[0] * proj).sum().backward()
    for p, r in zip(params, ref):
        assert_close('grad', r.grad, p.grad, RTOL[torch.float32])
    assert torch.equal(params[2].grad, torch.zeros_like(params[2]))


def test_float64_parameters_take_the_torch_path():
    cfg = draw_config(2)
    params = [cfg[k].double().to(DEVICE).requires_grad_() for k in ('mu', 'sigma', 'pw')]
    taps, windows = pack_static(*params, cfg['geometry'])
    assert taps.dtype == windows.dtype == torch.float32
    ref_taps, ref_windows = packed_reference(*params, cfg['geometry'])
    assert torch.equal(taps, ref_taps.float()) and torch.equal(windows, ref_windows.float())


def test_opcheck():
    cfg = draw_config(5)
    params = [cfg[k].to(DEVICE).requires_grad_() for k in ('mu', 'sigma', 'pw')]
    torch.library.opcheck(torch.ops.eleaf.gabor_pack.default,
                          (*params, *gabor.static_geometry(cfg['geometry'], DEVICE)))


def test_bad_parameters():
    cfg = draw_config(0)
    mu, sigma, pw = (cfg[k].to(DEVICE) for k in ('mu', 'sigma', 'pw'))
    geo, layout = gabor.static_geometry(cfg['geometry'], DEVICE)
    with pytest.raises(ValueError, match='center_freqs must be float32 of shape'):
        torch.ops.eleaf.gabor_pack(mu[:-1], sigma, pw, geo, layout)
    with pytest.raises(ValueError, match='pool_widths must be float32'):
        torch.ops.eleaf.gabor_pack(mu, sigma, pw.double(), geo, layout)
