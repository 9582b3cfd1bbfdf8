"""The tensor group geometry (eleaf.functional.group_geometry_tensor) against SPEC §5's host
formula, re-derived here in numpy and Python floats, on random and edge-case parameters in
float32 and float64; and the static caps bound every geometry."""
import math

import numpy as np
import pytest
import torch

from eleaf.functional import (geometry_caps, geometry_from_tensor, group_geometry,
                              group_geometry_tensor, group_pool_widths, scaled_pool_widths_tensor)

Z = np.sqrt(2 * np.log(2)) / np.pi
F32_PI = float(np.float32(np.pi))


def spec_geometry(mu, sigma, G, pool_size, hop, wf, sf):
    """SPEC §5 with Python floats: the max taken in the parameters' dtype, the stride test in
    float64, K = int(max(sigma) * wf) in the parameters' dtype, made odd."""
    F = len(mu)
    divisors = [d for d in range(1, hop + 1) if hop % d == 0]
    out = []
    for g in range(G):
        a, b = g * F // G, (g + 1) * F // G
        mmax = float(np.max(mu[a:b]))
        smax = hop if mmax == 0 else max(1, np.pi / mmax * sf)
        s = max(d for d in divisors if d <= smax)
        dt = sigma.dtype.type
        K = int(dt(np.max(sigma[a:b])) * dt(wf))
        K += 1 - K % 2
        W = int(pool_size / s + .5)
        W += 1 - W % 2
        out.append((s, hop // s, K, W))
    return out


def random_config(rng):
    sr = int(rng.choice([8000, 16000, 22050, 44100]))
    win = float(rng.choice([10., 25., 30., 64.]))
    pool_size = int(sr * win / 1000)
    pool_size += 1 - pool_size % 2
    hop = int(rng.choice([1, 2, 7, 12, 64, 100, 160, 441]))
    F = int(rng.integers(1, 33))
    G = int(rng.integers(1, F + 1))
    wf = float(rng.choice([0.5, 1, 3, 4.75, 4.77, 6, rng.uniform(0.1, 12)]))
    sf = float(rng.choice([1., 2, 3, 8, 16, rng.uniform(0.05, 40)]))
    return F, G, pool_size, hop, wf, sf


def edge_parameters(rng, F, pool_size, hop, wf, sf, dtype):
    """Clamped parameters with edge values: groups at mu = 0, mu on a stride threshold
    (pi sf / d and its float neighbours), mu = float32(pi), sigma on an integer kernel size
    (k / wf and neighbours), sigma at the clamp bounds."""
    np_dt = np.float32 if dtype == torch.float32 else np.float64
    lo, hi = 2 * Z, pool_size * Z
    mu = rng.uniform(0, np.pi, F)
    sigma = np.exp(rng.uniform(np.log(lo), np.log(hi), F))
    kind = rng.integers(0, 6)
    divisors = [d for d in range(1, hop + 1) if hop % d == 0]
    for f in range(F):
        r = rng.integers(0, 8)
        if r == 0:
            mu[f] = 0.
        elif r == 1:
            t = np_dt(np.pi * sf / rng.choice(divisors))
            mu[f] = rng.choice([t, np.nextafter(t, np_dt(0)), np.nextafter(t, np_dt(4))])
        elif r == 2:
            mu[f] = F32_PI
        elif r == 3:
            t = np_dt(rng.integers(1, max(2, int(hi * wf))) / np_dt(wf))
            sigma[f] = rng.choice([t, np.nextafter(t, np_dt(0)), np.nextafter(t, np_dt(1e9))])
        elif r == 4:
            sigma[f] = rng.choice([lo, hi])
    if kind == 0:
        mu[:] = 0.
    mu_t = torch.tensor(mu, dtype=dtype).clamp_(0., F32_PI)
    sigma_t = torch.tensor(sigma, dtype=dtype).clamp_(float(lo), float(hi))
    return mu_t, sigma_t


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_tensor_geometry_equals_spec_formula(dtype):
    """>= 1000 random and edge draws per dtype: the tensor geometry equals the SPEC formula
    and the host formula, and lies within the caps."""
    rng = np.random.default_rng(1234 if dtype == torch.float32 else 4321)
    draws = 0
    while draws < 1000:
        F, G, pool_size, hop, wf, sf = random_config(rng)
        caps = geometry_caps(F, G, pool_size, hop, wf, sf, pool_size * Z)
        for _ in range(5):
            mu, sigma = edge_parameters(rng, F, pool_size, hop, wf, sf, dtype)
            geo = group_geometry_tensor(mu, sigma, caps)
            assert geo.dtype == torch.int32 and tuple(geo.shape) == (G, 4)
            got = [tuple(r) for r in geo.tolist()]
            want = spec_geometry(mu.numpy(), sigma.numpy(), G, pool_size, hop, wf, sf)
            assert got == want, (F, G, pool_size, hop, wf, sf, mu, sigma)
            host = group_geometry(mu, sigma, G, pool_size, hop, wf, sf)
            assert geometry_from_tensor(geo, caps) == host
            for s, P, K, W in got:
                assert caps.min_stride <= s <= hop and s * P == hop
                assert K <= caps.kernel_size and W <= caps.window_size
                assert -(-W // P) <= caps.shifts
            draws += 1


def test_caps_are_reached():
    """The caps are tight where the clamps allow: mu = float32(pi) gives the minimal stride,
    the widest bandwidth the kernel-size cap (up to the rounding margin)."""
    pool_size, hop = 401, 160
    caps = geometry_caps(80, 8, pool_size, hop, 6, 16, pool_size * Z)
    mu = torch.full((80,), F32_PI)
    sigma = torch.full((80,), float(pool_size * Z))
    geo = group_geometry_tensor(mu, sigma, caps)
    assert caps.min_stride == 10 and (geo[:, 0] == 10).all()
    assert (caps.kernel_size - geo[:, 2]).max() <= 2
    assert (geo[:, 3] == caps.window_size).all()


def test_nan_parameters_stay_within_caps():
    """NaN parameters (not clamped by clamp_) give a geometry within the caps, not garbage
    sizes that would make kernels read out of bounds."""
    caps = geometry_caps(8, 2, 401, 160, 6, 16, 401 * Z)
    mu = torch.full((8,), float('nan'))
    sigma = torch.full((8,), float('nan'))
    for s, P, K, W in group_geometry_tensor(mu, sigma, caps).tolist():
        assert caps.min_stride <= s <= 160 and s * P == 160
        assert 1 <= K <= caps.kernel_size and 1 <= W <= caps.window_size


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_scaled_pool_widths_tensor(dtype):
    """p / s * pool_size / W per filter, bit-equal to the per-group host expression."""
    torch.manual_seed(0)
    for F, G in [(40, 4), (80, 8), (13, 5), (7, 7)]:
        caps = geometry_caps(F, G, 401, 160, 4.77, 3, 401 * Z)
        mu = torch.rand(F, dtype=dtype) * math.pi
        sigma = (torch.rand(F, dtype=dtype) * 149 + 1)
        pw = torch.rand(F, dtype=dtype) * 0.5 + 0.01
        geo = group_geometry_tensor(mu, sigma, caps)
        got = scaled_pool_widths_tensor(pw, geo, caps)
        want = torch.cat([group_pool_widths(pw, g, 401)
                          for g in group_geometry(mu, sigma, G, 401, 160, 4.77, 3)])
        assert torch.equal(got, want)
