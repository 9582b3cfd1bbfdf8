"""The Gabor taps of the CPU filterbank (``eleaf::gabor_taps_fwd`` / ``_bwd``,
csrc/gabor_taps.cpp, through ``_GaborTaps`` of eleaf/ops/gabor_cpu.py) against the reference
:func:`eleaf.functional.gabor.gabor_filters` (SPEC §2) in float64.

The op computes each filter's taps by float64 recurrences (one exp and one sincos per
filter), so its float32 taps must be float32 roundings of the exact values
(‖out − ref‖/‖ref‖ ≤ 1e-7 per group; the float32 reference itself is up to 8e-7 away)
and its float64 taps within 1e-11 (the float64 reference's own phase error at tap 2000), for
kernels up to 4001 taps, the narrowest bandwidth the filterbanks allow (whose envelope
underflows to 0 within the kernel) and the widest. The closed-form parameter gradients pass
gradcheck and match autograd through the reference (1e-5 in float32).
"""
import math

import pytest
import torch

from eleaf.functional.gabor import GroupGeometry, gabor_filters
from eleaf.ops.backends import cpp_status
from tests.testing import rel_err

CPP_OK, CPP_REASON, _ = cpp_status()
pytestmark = pytest.mark.skipif(not CPP_OK, reason=CPP_REASON)

if CPP_OK:
    from eleaf.ops import gabor_cpu

#: sigma = 2z, z = sqrt(2 ln 2) / pi: the narrowest bandwidth EfficientLEAF clamps to
NARROWEST = 2 * math.sqrt(2 * math.log(2)) / math.pi


@pytest.fixture(autouse=True)
def _nan_fill(nan_fill):
    """Every test here runs with fresh tensors NaN-filled (tests/ops/conftest.py)."""


def reference(layout, mu, sigma):
    """The packed taps (real parts of all groups, then imaginary parts) from gabor_filters."""
    taps = [gabor_filters(K, mu[a:b], sigma[a:b]) for a, b, K in layout]
    return torch.cat([torch.cat([t.real.reshape(-1) for t in taps]),
                      torch.cat([t.imag.reshape(-1) for t in taps])])


def per_group(layout, taps):
    """(real, imaginary) slices of each group in the packed taps."""
    geometry = [GroupGeometry(a, b, 1, 1, K, 1) for a, b, K in layout]
    offsets = gabor_cpu.taps_offsets(geometry)
    half = offsets[-1]
    for (a, b, K), at in zip(layout, offsets):
        n = (b - a) * K
        yield taps[at:at + n], taps[half + at:half + at + n]


def test_against_gabor_filters_and_gradcheck():
    # the packed taps of every group equal the complex reference gabor_filters at each
    # group's own kernel size; the closed-form gradients pass gradcheck in float64 and match
    # autograd through the reference in float32
    g = torch.Generator().manual_seed(3)
    layout = ((0, 3, 9), (3, 4, 1), (4, 8, 31))
    mu = (torch.rand(8, generator=g, dtype=torch.float64) * 3).requires_grad_()
    sigma = (torch.rand(8, generator=g, dtype=torch.float64) * 6 + 1).requires_grad_()
    taps = gabor_cpu._GaborTaps.apply(mu, sigma, layout)
    expect = reference(layout, mu, sigma)
    assert taps.shape == expect.shape
    for (re, im), (ref_re, ref_im) in zip(per_group(layout, taps), per_group(layout, expect)):
        assert torch.allclose(re, ref_re, rtol=1e-12, atol=1e-15)
        assert torch.allclose(im, ref_im, rtol=1e-12, atol=1e-15)
    torch.autograd.gradcheck(lambda m, s: gabor_cpu._GaborTaps.apply(m, s, layout), (mu, sigma))
    mu32, sigma32 = (v.detach().float().requires_grad_() for v in (mu, sigma))
    weights = torch.randn(expect.shape[0], generator=g)
    ours = torch.autograd.grad(gabor_cpu._GaborTaps.apply(mu32, sigma32, layout) @ weights,
                               (mu32, sigma32))
    ref = torch.autograd.grad(expect @ weights.double(), (mu, sigma))
    for a, b in zip(ours, ref):
        assert rel_err(a.double(), b) < 1e-5


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_long_kernels_and_extreme_bandwidths(dtype):
    # recurrences over up to 2000 taps per side: a wide filter at DC and Nyquist, the
    # narrowest bandwidth (envelope below 1e-300 at the kernel's ends), LEAF's 401 taps
    layout = ((0, 4, 4001), (4, 7, 401), (7, 9, 63))
    mu = torch.tensor([0., math.pi, 0.013, 2.9, 0.5, 3.1, 1.7, math.pi, 0.2],
                      dtype=torch.float64)
    sigma = torch.tensor([600., 650., 300., 3.3, NARROWEST, 1.5, 60., NARROWEST, 10.],
                         dtype=torch.float64)
    mu, sigma = mu.to(dtype), sigma.to(dtype)
    taps = gabor_cpu._GaborTaps.apply(mu, sigma, layout)
    assert taps.dtype == dtype and torch.isfinite(taps).all()
    # exact values of the parameters as given (float32 pi is 9e-8 from pi: 2e-4 rad of phase
    # at tap 2000); in float64 the reference's own phase mu t is ~1e-12 from exact there
    expect = reference(layout, mu.double(), sigma.double())
    bound = 1e-7 if dtype == torch.float32 else 1e-11
    for (re, im), (ref_re, ref_im) in zip(per_group(layout, taps), per_group(layout, expect)):
        assert rel_err(torch.cat([re, im]), torch.cat([ref_re, ref_im])) <= bound
    # the narrowest filter's taps far out are exactly 0, as the reference's
    narrow = taps[4 * 4001:4 * 4001 + 401]       # filter 4, the first of the 401-tap group
    assert (narrow[:150] == 0).all() and (narrow[-150:] == 0).all()


def test_float32_closer_to_float64_than_the_torch_formula():
    # float32 taps of an EfficientLEAF 8G-opt bank (80 filters, 35k taps): the op rounds the
    # float64 values once; the float32 formula (gabor_filters in float32) is up to 8e-7 away
    import eleaf
    fb = eleaf.EfficientLeaf(n_filters=80, num_groups=8, conv_win_factor=6,
                             stride_factor=16).filterbank
    layout = tuple((g.start, g.stop, g.kernel_size) for g in fb.clamped_geometry())
    mu, sigma = fb.center_freqs.detach(), fb.bandwidths.detach()
    exact = reference(layout, mu.double(), sigma.double())
    ours = gabor_cpu._GaborTaps.apply(mu, sigma, layout)
    formula = reference(layout, mu, sigma)
    assert rel_err(ours, exact) <= 1e-7
    assert rel_err(ours, exact) < rel_err(formula, exact) / 4


def test_opcheck():
    sizes = [5, 5, 1, 31]
    mu, sigma = torch.rand(4) * 3, torch.rand(4) * 5 + 1
    torch.library.opcheck(torch.ops.eleaf.gabor_taps_fwd.default, (mu, sigma, sizes))
    taps = torch.ops.eleaf.gabor_taps_fwd(mu, sigma, sizes)
    torch.library.opcheck(torch.ops.eleaf.gabor_taps_bwd.default,
                          (torch.randn_like(taps), taps, sigma, sizes))


@pytest.mark.parametrize('call, message', [
    (lambda: torch.ops.eleaf.gabor_taps_fwd(torch.ones(2), torch.ones(2), [3, 4]), 'odd'),
    (lambda: torch.ops.eleaf.gabor_taps_fwd(torch.ones(3), torch.ones(3), [3, 5]), r'\(F,\)'),
    (lambda: torch.ops.eleaf.gabor_taps_fwd(torch.ones(2), torch.ones(2).double(), [3, 5]),
     'one dtype'),
    (lambda: torch.ops.eleaf.gabor_taps_fwd(torch.ones(2).half(), torch.ones(2).half(), [3, 5]),
     'float32 or float64'),
    (lambda: torch.ops.eleaf.gabor_taps_bwd(torch.ones(15), torch.ones(16), torch.ones(2),
                                            [3, 5]), r'\(16,\)'),
])
def test_errors(call, message):
    with pytest.raises(RuntimeError, match=message):
        call()


def test_groups_must_be_consecutive():
    with pytest.raises(ValueError, match='consecutive'):
        gabor_cpu._GaborTaps.apply(torch.ones(4), torch.ones(4), ((0, 2, 3), (3, 4, 5)))
