"""Random grouped-filterbank configurations and a runner, shared by the tests of every
``gabor_filterbank`` implementation (Triton, CPU), and the forcing of the CPU filterbank's
convolution algorithm (its tests and the TF port's)."""
import numpy as np
import pytest
import torch

from eleaf.functional import group_geometry, group_pool_widths, mel_filter_params
from eleaf.functional.gabor import SIGMA_UNIT, GroupGeometry

NAMES = ('out', 'dx', 'dcenter_freqs', 'dbandwidths', 'dpool_widths')


def sizes(sr, window_len=25., window_stride=10.):
    """(pool_size W, hop) of SPEC §4 for a sample rate."""
    pool_size = int(sr * window_len / 1000)
    pool_size += 1 - pool_size % 2
    return pool_size, int(sr * window_stride / 1000)


def draw_config(seed, max_cost=None, cost=None):
    """A random EfficientLeaf configuration: mel-initialised, perturbed, clamped (SPEC §5).

    With ``max_cost``, draws again (seeds seed + 1000 i) until ``cost(cfg)`` fits.
    """
    for attempt in range(100):
        cfg = _draw_config(seed + 1000 * attempt)
        if max_cost is None or cost(cfg) <= max_cost:
            return cfg
    raise RuntimeError('no configuration within the cost bound')


def _draw_config(seed):
    rng = np.random.RandomState(seed)
    sr = int(rng.choice([8000, 11025, 16000, 22050, 32000, 44100, 48000]))
    groups = int(rng.randint(1, 11))
    n_filters = int(rng.randint(max(8, groups), 81))
    cwf = float(rng.uniform(3, 6))
    sf = float(rng.choice([1, 2, 3, 8, 16, rng.uniform(1, 16)]))
    pool_size, hop = sizes(sr)
    mu, sigma = mel_filter_params(n_filters, 60., min(7800., sr * 0.49), sr)
    g = torch.Generator().manual_seed(seed)
    mu = mu * (1 + 0.1 * torch.randn(n_filters, generator=g))
    sigma = sigma * torch.exp(0.2 * torch.randn(n_filters, generator=g))
    p = 0.4 + 0.1 * torch.randn(n_filters, generator=g)
    mu = mu.clamp(0, np.float32(np.pi))
    sigma = sigma.clamp(2 * SIGMA_UNIT, pool_size * SIGMA_UNIT)
    p = p.clamp(2 / pool_size, 0.5)
    geometry = group_geometry(mu, sigma, groups, pool_size, hop, cwf, sf)
    pw = torch.cat([group_pool_widths(p, geom, pool_size) for geom in geometry])
    # odd and even L, often shorter than the longest kernel
    kmax = max(geom.kernel_size for geom in geometry)
    L = int(rng.randint(hop // 2 + 1, min(kmax, 4 * hop) + 2 * hop))
    batch = int(rng.randint(1, 4))
    return dict(sr=sr, mu=mu, sigma=sigma, pw=pw, geometry=geometry, L=L, batch=batch,
                x_grad=bool(rng.rand() < 0.5), noncontig=bool(rng.rand() < 0.5),
                desc='sr=%d G=%d F=%d cwf=%.2f sf=%.2f L=%d B=%d' % (
                    sr, groups, n_filters, cwf, sf, L, batch))


def leaf_config(L=450, n_filters=8, batch=2):
    """LEAF: one group, K = W = 401, s = 1, P = 160 at 16 kHz."""
    mu, sigma = mel_filter_params(n_filters, 60., 7800., 16000)
    sigma = sigma.clamp(4 * SIGMA_UNIT, 401 * SIGMA_UNIT)
    pw = torch.full((n_filters,), 0.4)
    geometry = (GroupGeometry(0, n_filters, 1, 160, 401, 401),)
    return dict(sr=16000, mu=mu, sigma=sigma, pw=pw, geometry=geometry, L=L, batch=batch,
                x_grad=True, noncontig=True, desc='LEAF L=%d' % L)


def make_x(cfg, seed=0):
    g = torch.Generator().manual_seed(1000 + seed)
    if cfg['noncontig']:
        big = torch.randn(cfg['batch'], 3, 2 * cfg['L'], generator=g)
        return big[:, 1:2, ::2]
    return torch.randn(cfg['batch'], 1, cfg['L'], generator=g)


def run(fn, cfg, x, dtype, grad_seed=0, device='cpu'):
    """Output and gradients (None where x needs none) of fn on fresh leaves in dtype."""
    xs = x.detach().to(device, dtype).requires_grad_(cfg['x_grad'])
    params = [t.detach().to(device, dtype).requires_grad_() for t in
              (cfg['mu'], cfg['sigma'], cfg['pw'])]
    out = fn(xs, *params, cfg['geometry'])
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed))
    out.backward(g.to(device, out.dtype))
    return [out.detach(), xs.grad] + [p.grad for p in params]


#: the CPU filterbank's convolution algorithms: 'direct' folds the taps' symmetry where the
#: caller's taps are symmetric (eleaf::gabor_fold_fwd), 'direct-conv1d' never does; 'fft'
#: runs the fused op where oneMKL's FFTs were found, 'fft-unfused' the separate ops
CPU_METHODS = ['direct', 'direct-conv1d', 'fft', 'fft-unfused']


def force_cpu_method(monkeypatch, method):
    """Make the CPU filterbank (eleaf/ops/gabor_cpu.py) take ``method`` (one of
    :data:`CPU_METHODS`) for every group; skips the test for 'fft' without the fused op."""
    from eleaf.ops import gabor_cpu
    if method == 'direct-conv1d':
        monkeypatch.setattr(gabor_cpu, 'FOLD', False)
        method = 'direct'
    elif method == 'direct' and not gabor_cpu.FOLD:
        pytest.skip('gabor_fold op unavailable: %s' % gabor_cpu.FOLD_REASON)
    if method == 'fft-unfused':
        monkeypatch.setattr(gabor_cpu, 'FUSED_FFT', False)
        monkeypatch.setattr(gabor_cpu, '_warned_unfused', True)
        method = 'fft'
    elif method == 'fft' and not gabor_cpu.FUSED_FFT:
        pytest.skip('fused FFT op unavailable: %s' % gabor_cpu.FUSED_FFT_REASON)
    monkeypatch.setattr(gabor_cpu, 'choose_method', lambda *args: method)


def tf_filterbank_inputs(F, K, L, B, seed):
    """(kernel (F, 2), pool widths (F,), x (B, 1, L)) float64 for TF LEAF's filterbank: TF's
    mel initialisation for K >= 101 (as TFLeaf), random Gabor parameters otherwise,
    constrained; widths in [0.1, 0.5]."""
    from eleaf.functional.tf_leaf import tf_gabor_constraint, tf_gabor_init
    g = torch.Generator().manual_seed(seed)
    if K >= 101:
        kernel = tf_gabor_init(F, 16000)
    else:
        kernel = torch.stack([torch.rand(F, generator=g) * 3.1,
                              torch.rand(F, generator=g) * K / 4 + 1], 1)
    kernel = tf_gabor_constraint(kernel, K).double()
    widths = torch.rand(F, generator=g, dtype=torch.float64) * 0.4 + 0.1
    x = torch.randn(B, 1, L, generator=g, dtype=torch.float64)
    return kernel, widths, x
