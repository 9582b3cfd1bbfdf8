"""Gabor filters, mel initialisation, Gaussian windows and group geometry against float64
re-derivations of SPEC §1-§5 written here in numpy."""
import math

import numpy as np
import pytest
import torch

from eleaf.functional import (gabor_filterbank_ref, gabor_filters, gabor_kernel, gauss_windows,
                              group_geometry, group_splits, grouped_gabor_filterbank_ref,
                              mel_filter_params)
from tests.functional.test_geometry import spec_geometry

Z = math.sqrt(2 * math.log(2)) / math.pi


def np_mel_params(n, fmin, fmax, sr):
    """SPEC §1 in float64 (the original rounds peaks_mel to float32 first; we do the same)."""
    lo, hi = 1127 * np.log1p(fmin / 700.), 1127 * np.log1p(fmax / 700.)
    peaks_mel = np.linspace(lo, hi, n + 2).astype(np.float32).astype(np.float64)
    peaks_hz = 700 * np.expm1(peaks_mel / 1127)
    return peaks_hz[1:-1] * 2 * np.pi / sr, (sr / 2) / (peaks_hz[2:] - peaks_hz[:-2])


def np_gabor(K, mu, sigma):
    t = np.arange(-(K // 2), K // 2 + 1)
    return (np.exp(-t[None] ** 2 / (2 * sigma[:, None] ** 2)) / (np.sqrt(2 * np.pi) * sigma[:, None])
            * np.exp(1j * mu[:, None] * t[None]))


def np_windows(W, p):
    u = np.arange(W) * 2 / (W - 1) - 1
    return np.exp(-0.5 * (u[None] / p[:, None]) ** 2)


@pytest.mark.parametrize('n,fmin,fmax,sr', [(40, 60., 7800., 16000), (80, 60., 7800., 16000),
                                            (64, 0., 11025., 22050), (10, 100., 3000., 8000)])
def test_mel_filter_params(n, fmin, fmax, sr):
    mu, sigma = mel_filter_params(n, fmin, fmax, sr)
    mu_ref, sigma_ref = np_mel_params(n, fmin, fmax, sr)
    assert mu.dtype == torch.float32 and mu.shape == (n,)
    np.testing.assert_allclose(mu.numpy(), mu_ref, rtol=2e-6)
    np.testing.assert_allclose(sigma.numpy(), sigma_ref, rtol=2e-5)


@pytest.mark.parametrize('K', [1, 3, 11, 401])
def test_gabor_filters_float64(K):
    rng = np.random.RandomState(K)
    mu = rng.uniform(0, np.pi, 7)
    sigma = rng.uniform(1, 50, 7)
    out = gabor_filters(K, torch.from_numpy(mu), torch.from_numpy(sigma))
    assert out.dtype == torch.complex128 and out.shape == (7, K)
    np.testing.assert_allclose(out.numpy(), np_gabor(K, mu, sigma), rtol=1e-12, atol=1e-15)
    kernel = gabor_kernel(K, torch.from_numpy(mu), torch.from_numpy(sigma))
    assert kernel.shape == (14, 1, K)
    np.testing.assert_allclose(kernel[:7, 0].numpy(), np_gabor(K, mu, sigma).real, atol=1e-15)
    np.testing.assert_allclose(kernel[7:, 0].numpy(), np_gabor(K, mu, sigma).imag, atol=1e-15)


@pytest.mark.parametrize('W', [3, 21, 401])
def test_gauss_windows_float64(W):
    p = np.array([2. / W, 0.1, 0.4, 0.5])
    out = gauss_windows(W, torch.from_numpy(p))
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), np_windows(W, p), rtol=1e-11)


def np_geometry(mu, sigma, G, pool_size, hop, wf, sf):
    """SPEC §5 re-derived (tests/functional/test_geometry.py): (start, stop, s, P, K, W) per
    group, K in float32 as the parameters."""
    F = len(mu)
    rows = spec_geometry(np.asarray(mu), np.asarray(sigma, dtype=np.float32), G, pool_size,
                         hop, wf, sf)
    return [(g * F // G, (g + 1) * F // G) + row for g, row in enumerate(rows)]


@pytest.mark.parametrize('n,G,wf,sf,sr', [(40, 4, 4.75, 1., 16000), (40, 4, 4.77, 1., 16000),
                                          (80, 8, 6, 16, 16000), (40, 8, 6, 16, 16000),
                                          (40, 1, 3, 1., 16000), (40, 10, 3, 3, 16000),
                                          (64, 5, 5, 2, 22050), (16, 3, 4, 8, 8000)])
def test_group_geometry(n, G, wf, sf, sr):
    mu, sigma = mel_filter_params(n, 60., min(7800., sr / 2 - 100), sr)
    pool_size = int(sr * 25 / 1000)
    pool_size += 1 - pool_size % 2
    hop = int(sr * 10 / 1000)
    sigma = sigma.clamp(2 * Z, pool_size * Z)
    geom = group_geometry(mu, sigma, G, pool_size, hop, wf, sf)
    ref = np_geometry(mu.numpy(), sigma.numpy(), G, pool_size, hop, wf, sf)
    got = [(g.start, g.stop, g.conv_stride, g.pool_stride, g.kernel_size, g.window_size)
           for g in geom]
    assert got == ref
    assert group_splits(n, G) == [g * n // G for g in range(G + 1)]


def test_geometry_paper_8gopt_80():
    """The README's 8G-opt snippet: 80 filters, init bandwidths up to ~171.35 clamp to 150.287."""
    mu, sigma = mel_filter_params(80, 60., 7800., 16000)
    assert 171 < sigma.max().item() < 172
    assert abs(401 * Z - 150.287) < 1e-3
    geom = group_geometry(mu, sigma.clamp(2 * Z, 401 * Z), 8, 401, 160, 6, 16)
    assert geom[0].kernel_size == int(np.float32(401 * Z) * 6) + (1 - int(np.float32(401 * Z) * 6) % 2)
    assert all(g.conv_stride * g.pool_stride == 160 for g in geom)


def test_zero_center_frequency_group():
    """max(mu) = 0 where the original divides by zero: documented s = pool_stride."""
    mu = torch.zeros(4)
    geom = group_geometry(mu, torch.full((4,), 5.), 2, 401, 160, 3, 1)
    assert [g.conv_stride for g in geom] == [160, 160]
    assert [g.pool_stride for g in geom] == [1, 1]


def np_filterbank(x, mu, sigma, p, geometry):
    """Direct float64 evaluation of SPEC §5 (loops over output samples)."""
    B, L = x.shape
    outs = []
    for (a, b, s, P, K, W) in geometry:
        h = np_gabor(K, mu[a:b], sigma[a:b])  # (n, K)
        xp = np.pad(x, ((0, 0), (K // 2, K // 2)))
        N = (L - 1) // s + 1
        idx = np.arange(N)[:, None] * s + np.arange(K)[None]
        frames = xp[:, idx]  # (B, N, K)
        c = np.einsum('bnk,fk->bfn', frames, h)
        e = np.abs(c) ** 2
        w = np_windows(W, p[a:b])
        ep = np.pad(e, ((0, 0), (0, 0), (W // 2, W // 2)))
        T = (N - 1) // P + 1
        idx = np.arange(T)[:, None] * P + np.arange(W)[None]
        outs.append(np.einsum('bftw,fw->bft', ep[:, :, idx], w))
    return np.concatenate(outs, axis=1)


@pytest.mark.parametrize('L', [1, 50, 333, 1600])
def test_grouped_filterbank_float64(L):
    rng = np.random.RandomState(L)
    x = rng.randn(2, L)
    mu, sigma = mel_filter_params(12, 60., 7800., 16000)
    mu, sigma = mu.double(), sigma.double().clamp(2 * Z, 401 * Z)
    geometry = group_geometry(mu, sigma, 3, 401, 160, 3, 2)
    geo = [(g.start, g.stop, g.conv_stride, g.pool_stride, g.kernel_size, g.window_size)
           for g in geometry]
    p = rng.uniform(0.1, 0.5, 12)
    pw = np.concatenate([p[a:b] / s * 401 / W for a, b, s, P, K, W in geo])
    out = grouped_gabor_filterbank_ref(torch.from_numpy(x)[:, None], mu, sigma,
                                       torch.from_numpy(pw), geometry)
    assert out.dtype == torch.float64 and out.shape == (2, 12, (L - 1) // 160 + 1)
    ref = np_filterbank(x, mu.numpy(), sigma.numpy(), pw, geo)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-14 * np.abs(ref).max())


def test_leaf_filterbank_float64():
    rng = np.random.RandomState(0)
    x = rng.randn(1, 700)
    mu, sigma = mel_filter_params(6, 60., 7800., 16000)
    mu, sigma = mu.double(), sigma.double()
    p = np.full(6, 0.4)
    out = gabor_filterbank_ref(torch.from_numpy(x)[:, None], mu, sigma, torch.from_numpy(p),
                               401, 401, 160)
    ref = np_filterbank(x, mu.numpy(), sigma.numpy(), p, [(0, 6, 1, 160, 401, 401)])
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-14 * np.abs(ref).max())
