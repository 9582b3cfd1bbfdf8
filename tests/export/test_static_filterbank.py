"""The static-shape grouped filterbank (eleaf.functional.static_filterbank) against the
reference with host geometry (grouped_gabor_filterbank_ref), output and gradients wrt the
waveform and the three parameters, on many random geometries.

Tolerances (relative, ||a - b|| / ||b||): float64 1e-10; float32 against the float64
reference 1e-5 for the output and 1e-4 for the gradients (float32 rounding of sums over up
to several hundred taps and windows)."""
import math
import random

import pytest
import torch
import torch.nn.functional as F

from eleaf.functional import (geometry_caps, geometry_from_tensor, group_geometry_tensor,
                              grouped_gabor_filterbank_ref, scaled_pool_widths_tensor)
from eleaf.functional.gabor import gabor_kernel
from eleaf.functional.static_filterbank import (admissible_strides, base_stride,
                                                grouped_gabor_filterbank_static, pool_reach)

Z = math.sqrt(2 * math.log(2)) / math.pi

#: (n_filters, num_groups, pool_size, hop, conv_win_factor, stride_factor)
CONFIGS = [
    (6, 3, 31, 12, 3., 1.),        # min stride 1: every divisor of 12 reachable
    (5, 5, 25, 8, 2., 4.),         # one filter per group
    (7, 2, 9, 6, 1.5, 1.),         # kernel cap below the window
    (4, 2, 21, 20, 3., 8.),        # large strides only (min stride 10)
    (8, 4, 401, 160, 6., 16.),     # Gabor 8G-opt's sizes at 16 kHz (base stride 2)
]


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def _window(pool_size, s):
    w = int(pool_size / s + .5)
    return w + 1 - w % 2


def _caps(cfg):
    n, g, pool_size, hop, cwf, sf = cfg
    return geometry_caps(n, g, pool_size, hop, cwf, sf, pool_size * Z)


def _random_geometry(caps, rng, strides=None, kernel_sizes=None):
    """(G, 4) int32 geometry within the caps: s admissible, P = hop / s, K odd <= the kernel
    cap, W the window of s (as group_geometry_tensor computes it)."""
    rows = []
    # W = 1 is left to test_window_of_one_tap_subsamples (the reference divides by zero)
    strides = strides or [s for s in admissible_strides(caps) if _window(caps.pool_size, s) > 1]
    for _ in range(caps.num_groups):
        s = rng.choice(strides)
        k = rng.choice(kernel_sizes) if kernel_sizes else 2 * rng.randrange(
            caps.kernel_size // 2 + 1) + 1
        rows.append([s, caps.hop // s, k, min(_window(caps.pool_size, s), caps.window_size)])
    return torch.tensor(rows, dtype=torch.int32)


def _parameters(n, pool_size, rng, dtype):
    g = torch.Generator().manual_seed(rng.randrange(2 ** 31))
    mu = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    sigma = 2 * Z + torch.rand(n, generator=g, dtype=torch.float64) * (pool_size - 2) * Z
    p = 2. / pool_size + torch.rand(n, generator=g, dtype=torch.float64) * (.5 - 2. / pool_size)
    return [t.to(dtype).requires_grad_() for t in (mu, sigma, p)]


def _run(fn, x, mu, sigma, p, geometry, caps, grad_out):
    """Output and gradients wrt (x, mu, sigma, p) of ``fn`` on the scaled pooling widths."""
    pw = scaled_pool_widths_tensor(p, geometry, caps)
    out = fn(x, mu, sigma, pw)
    grads = torch.autograd.grad(out, (x, mu, sigma, p), grad_out.to(out.dtype))
    return out.detach(), grads


def _compare(caps, geometry, length, rng, dtype=torch.float64, ref_dtype=torch.float64):
    n = caps.n_filters
    mu, sigma, p = _parameters(n, caps.pool_size, rng, dtype)
    x = torch.randn(2, 1, length, generator=torch.Generator().manual_seed(rng.randrange(99)),
                    dtype=dtype, requires_grad=True)
    frames = (length - 1) // caps.hop + 1
    grad_out = torch.randn(2, n, frames, dtype=torch.float64)
    host = geometry_from_tensor(geometry, caps)
    ref_args = [t.detach().to(ref_dtype).requires_grad_() for t in (x, mu, sigma, p)]
    ref, ref_grads = _run(lambda x_, m, s_, pw: grouped_gabor_filterbank_ref(x_, m, s_, pw, host),
                          *ref_args, geometry, caps, grad_out)
    out, grads = _run(lambda x_, m, s_, pw: grouped_gabor_filterbank_static(
        x_, m, s_, pw, geometry, caps), x, mu, sigma, p, geometry, caps, grad_out)
    assert out.shape == ref.shape == (2, n, frames)
    return _rel(out.double(), ref), [_rel(a.double(), b) for a, b in zip(grads, ref_grads)]


@pytest.mark.parametrize('cfg', CONFIGS)
def test_random_geometries_float64(cfg):
    caps = _caps(cfg)
    rng = random.Random(hash(cfg) % 1000)
    lengths = [1, 2, caps.hop - 1, caps.hop, caps.hop + 1, 3 * caps.hop + 5,
               caps.kernel_size // 2, caps.kernel_size + caps.hop + 3]
    draws = 3 if caps.pool_size > 100 else 8
    for i in range(draws):
        geometry = _random_geometry(caps, rng)
        length = lengths[i % len(lengths)] if i < len(lengths) else rng.randrange(1, 6 * caps.hop)
        err, gerrs = _compare(caps, geometry, max(length, 1), rng)
        assert err <= 1e-10, (geometry.tolist(), length, err)
        assert max(gerrs) <= 1e-10, (geometry.tolist(), length, gerrs)


@pytest.mark.parametrize('edge', ['s=hop', 's=1', 'K=1', 'K=cap', 'mixed'])
def test_edge_geometries_float64(edge):
    cfg = (6, 3, 31, 12, 3., 1.)
    caps = _caps(cfg)
    rng = random.Random(edge)
    strides = {'s=hop': [12], 's=1': [1], 'mixed': [1, 12]}.get(edge)
    kernel_sizes = {'K=1': [1], 'K=cap': [caps.kernel_size],
                    'mixed': [1, caps.kernel_size]}.get(edge)
    for length in (1, 11, 13, caps.kernel_size - 2, 97):   # L < K, L mod hop != 0
        geometry = _random_geometry(caps, rng, strides, kernel_sizes)
        err, gerrs = _compare(caps, geometry, length, rng)
        assert err <= 1e-10 and max(gerrs) <= 1e-10, (edge, length, err, gerrs)


@pytest.mark.parametrize('cfg', [CONFIGS[0], CONFIGS[4]])
def test_float32_within_1e5_of_float64_reference(cfg):
    caps = _caps(cfg)
    rng = random.Random(7)
    for _ in range(3):
        geometry = _random_geometry(caps, rng)
        err, gerrs = _compare(caps, geometry, 3 * caps.hop + 7, rng, dtype=torch.float32)
        assert err <= 1e-5, (geometry.tolist(), err)
        assert max(gerrs) <= 1e-4, (geometry.tolist(), gerrs)


def test_geometry_of_parameters_float32():
    """The geometry the filterbank computes from (clamped, float32) parameters, as the
    exported EfficientLEAF does: equal to the float32 reference on the host geometry."""
    cfg = (80, 8, 401, 160, 6., 16.)
    caps = _caps(cfg)
    g = torch.Generator().manual_seed(3)
    for _ in range(3):
        mu = (torch.rand(80, generator=g) * math.pi).sort().values
        sigma = (2 * Z + torch.rand(80, generator=g) * 399 * Z).sort(descending=True).values
        p = torch.rand(80, generator=g) * .4 + .05
        geometry = group_geometry_tensor(mu, sigma, caps)
        pw = scaled_pool_widths_tensor(p, geometry, caps)
        x = torch.randn(2, 1, 2000, generator=g)
        ref = grouped_gabor_filterbank_ref(x, mu, sigma, pw, geometry_from_tensor(geometry, caps))
        out = grouped_gabor_filterbank_static(x, mu, sigma, pw, geometry, caps)
        assert _rel(out, ref) <= 1e-5


def test_window_of_one_tap_subsamples():
    """W = 1 (pool_size < 1.5 s; the reference's window formula divides by zero there): the
    single tap is 1, i.e. the pooled output is the energy at the frame's sample."""
    caps = geometry_caps(3, 1, 5, 4, 2., 4., 5 * Z)
    assert _window(5, 4) == 1 and 4 in admissible_strides(caps) and caps.kernel_size == 5
    geometry = torch.tensor([[4, 1, 5, 1]], dtype=torch.int32)
    mu = torch.tensor([.3, 1., 2.5], dtype=torch.float64)
    sigma = torch.tensor([1., 1.5, 2.], dtype=torch.float64)
    pw = torch.tensor([.2, .3, .4], dtype=torch.float64)
    x = torch.randn(2, 1, 23, dtype=torch.float64)
    y = F.conv1d(x, gabor_kernel(5, mu, sigma), stride=4, padding=2)
    expected = y[:, :3] ** 2 + y[:, 3:] ** 2
    out = grouped_gabor_filterbank_static(x, mu, sigma, pw, geometry, caps)
    assert out.shape == expected.shape
    assert _rel(out, expected) <= 1e-12


def test_pool_reach_bounds_every_window():
    """R = pool_reach(caps) covers every admissible (W // 2) s, is at most pool_size / 2 +
    hop / 4, and base_stride divides the hop, R and every admissible stride; over many
    sizes and stride factors."""
    for pool_size in range(3, 120, 7):
        for hop in range(1, 60, 5):
            for sf in (1., 2., 3., 16.):
                caps = geometry_caps(4, 2, pool_size, hop, 3., sf, pool_size * Z)
                reach, b = pool_reach(caps), base_stride(caps)
                assert 2 * reach <= pool_size + hop / 2
                assert reach % b == 0 and hop % b == 0
                for s in admissible_strides(caps):
                    assert s % b == 0
                    assert min(_window(pool_size, s), caps.window_size) // 2 * s <= reach


def test_parameter_geometry_strides_are_admissible():
    """group_geometry_tensor only produces strides of admissible_strides (the static
    filterbank's base stride and reach rely on it), also at mu = 0 and beyond the clamp."""
    caps = geometry_caps(8, 4, 401, 160, 6., 16., 401 * Z)
    allowed = set(admissible_strides(caps))
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        mu = torch.rand(8, generator=g) * 4 - .5
        mu[torch.rand(8, generator=g) < .2] = 0.
        sigma = torch.rand(8, generator=g) * 200
        geometry = group_geometry_tensor(mu, sigma, caps)
        assert set(geometry[:, 0].tolist()) <= allowed
        assert (geometry[:, 2] <= caps.kernel_size).all()
