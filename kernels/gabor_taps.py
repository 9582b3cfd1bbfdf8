"""Triton kernels that build the packed Gabor taps and Gaussian windows of the fused
filterbank from the filter parameters, and their backward (SPEC §2, §3, §5).

Reference: :func:`eleaf.functional.gabor_taps_padded` and
:func:`eleaf.functional.gauss_windows_padded`, gathered into the packed layout of
``eleaf.kernels.gabor``. Host code and the custom op: :mod:`eleaf.ops.gabor_pack`.

Letters: F filters (all groups), K Gabor taps of a filter's group, W pooling taps of its
group, t = j - K//2 the time of tap j, u = k 2 / (W - 1) - 1 the position of window tap k.

The int32 table ``tab`` has one row of ``NCOL`` columns per filter (``TAB_*``): its group's K
and W and the offsets of its real taps, imaginary taps and window in the packed buffers.

Forward (``_gabor_taps_fwd_kernel``), grid (F, tap blocks), float32 like the reference::

    re[j] = D cos(mu t) g,  im[j] = D sin(mu t) g,  D = 1 / (sqrt(2 pi) sigma),
    g = exp(-t^2 / (2 sigma^2)),  w[k] = exp(-(u / p)^2 / 2)

Backward (``_gabor_taps_bwd_kernel``), grid (F,), from the saved outputs (no
transcendentals), one program per filter, so no atomics (deterministic)::

    dmu    = sum_j t (dim re - dre im)
    dsigma = sum_j (dre re + dim im) (t^2 / sigma^2 - 1) / sigma
    dp     = sum_k dw w u^2 / p^3
"""
import triton
import triton.language as tl

__all__ = ['_gabor_taps_fwd_kernel', '_gabor_taps_bwd_kernel', 'TAB_K', 'TAB_W', 'TAB_RE',
           'TAB_IM', 'TAB_WIN', 'NCOL', 'SQRT_2PI']

# Columns of the int32 per-filter table.
TAB_K = 0     # Gabor taps K of the filter's group (odd)
TAB_W = 1     # window taps W of the filter's group (odd)
TAB_RE = 2    # offset of the filter's real taps in the packed taps
TAB_IM = 3    # offset of its imaginary taps
TAB_WIN = 4   # offset of its window in the packed windows
NCOL = 5

#: sqrt(2 pi) as the reference's float32 product uses it
SQRT_2PI = 2.5066282746310002


@triton.jit
def _gabor_taps_fwd_kernel(mu_ptr, sigma_ptr, pw_ptr, taps_ptr, win_ptr, tab_ptr,
                           NCOL: tl.constexpr, SQRT2PI: tl.constexpr, BLOCK: tl.constexpr):
    f = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    row = tab_ptr + f * NCOL
    K = tl.load(row + 0)
    W = tl.load(row + 1)
    mu = tl.load(mu_ptr + f)
    sigma = tl.load(sigma_ptr + f)
    p = tl.load(pw_ptr + f)
    # taps: the reference's operation order, float32
    t = (j - K // 2).to(tl.float32)
    denom = 1.0 / (SQRT2PI * sigma)
    gauss = tl.exp((1.0 / (2.0 * (sigma * sigma))) * (-(t * t)))
    phase = mu * t
    mk = j < K
    tl.store(taps_ptr + tl.load(row + 2) + j, denom * tl.cos(phase) * gauss, mask=mk)
    tl.store(taps_ptr + tl.load(row + 3) + j, denom * tl.sin(phase) * gauss, mask=mk)
    # window
    u = j.to(tl.float32) * (2.0 / (W - 1).to(tl.float32)) - 1.0
    v = u / p
    tl.store(win_ptr + tl.load(row + 4) + j, tl.exp(-0.5 * (v * v)), mask=j < W)


@triton.jit
def _gabor_taps_bwd_kernel(sigma_ptr, pw_ptr, taps_ptr, win_ptr, dtaps_ptr, dwin_ptr, tab_ptr,
                           dmu_ptr, dsigma_ptr, dpw_ptr,
                           NCOL: tl.constexpr, BLOCK: tl.constexpr):
    f = tl.program_id(0)
    row = tab_ptr + f * NCOL
    K = tl.load(row + 0)
    W = tl.load(row + 1)
    re_off = tl.load(row + 2)
    im_off = tl.load(row + 3)
    win_off = tl.load(row + 4)
    sigma = tl.load(sigma_ptr + f)
    p = tl.load(pw_ptr + f)
    inv_s2 = 1.0 / (sigma * sigma)
    acc_mu = tl.zeros((BLOCK,), tl.float32)
    acc_sigma = tl.zeros((BLOCK,), tl.float32)
    for j0 in range(0, K, BLOCK):
        j = j0 + tl.arange(0, BLOCK)
        mk = j < K
        re = tl.load(taps_ptr + re_off + j, mask=mk, other=0.0)
        im = tl.load(taps_ptr + im_off + j, mask=mk, other=0.0)
        dre = tl.load(dtaps_ptr + re_off + j, mask=mk, other=0.0)
        dim = tl.load(dtaps_ptr + im_off + j, mask=mk, other=0.0)
        t = (j - K // 2).to(tl.float32)
        acc_mu += t * (dim * re - dre * im)
        acc_sigma += (dre * re + dim * im) * (t * t * inv_s2 - 1.0)
    acc_p = tl.zeros((BLOCK,), tl.float32)
    for k0 in range(0, W, BLOCK):
        k = k0 + tl.arange(0, BLOCK)
        mk = k < W
        w = tl.load(win_ptr + win_off + k, mask=mk, other=0.0)
        dw = tl.load(dwin_ptr + win_off + k, mask=mk, other=0.0)
        u = k.to(tl.float32) * (2.0 / (W - 1).to(tl.float32)) - 1.0
        acc_p += tl.where(mk, dw * w * (u * u), 0.0)
    tl.store(dmu_ptr + f, tl.sum(acc_mu, axis=0))
    tl.store(dsigma_ptr + f, tl.sum(acc_sigma, axis=0) / sigma)
    tl.store(dpw_ptr + f, tl.sum(acc_p, axis=0) / (p * p * p))
