"""Triton kernels that compute the group geometry of the fused filterbank and build its
packed Gabor taps and Gaussian windows from the filter parameters, and their backward
(SPEC §2, §3, §5).

Reference: :func:`eleaf.functional.group_geometry_tensor`,
:func:`eleaf.functional.gabor_taps_padded` and :func:`eleaf.functional.gauss_windows_padded`,
gathered into the packed layout of ``eleaf.kernels.gabor``. Host code and the custom ops:
:mod:`eleaf.ops.gabor_pack`.

Letters: F filters (all groups), G groups, K Gabor taps of a filter's group, W pooling taps
of its group, s its conv stride, t = j - K//2 the time of tap j, u = k 2 / (W - 1) - 1 the
position of window tap k.

Geometry (``_group_geometry_kernel``), grid (G,), float32 parameters: group g holds filters
g F // G ... (g + 1) F // G - 1; from the largest clamped centre frequency mu and bandwidth
sigma of its filters::

    s = the largest admissible stride d with mu <= thr[d]     (exact, see below)
    P = hop // s,  K = odd(int(sigma * conv_win_factor)),  W = odd((2 pool_size + s) // (2 s))

The original tests ``d <= pi / mu * stride_factor`` in float64 (Python floats); ``thr[d]`` is
the largest float32 mu for which that holds (found on the host by bisection over float32,
:func:`eleaf.functional.geometry.stride_thresholds`), so the float32 comparison gives the
same stride for every float32 mu. ``int(pool_size / s + .5)`` is the integer expression above
exactly. ``sigma * conv_win_factor`` is the float32 product of the reference.

The int32 table ``tab`` has one row of ``NCOL`` columns per filter (``TAB_*``): its group,
its index in the group, the group's size, the group's offsets in the packed buffers and the
caps of K and W that size them; the geometry tensor ``geo`` (G, 4) gives K and W (and s).
The forward writes zeros into the part of each group's region beyond its actual sizes, so
the packed buffers are fully defined whatever the geometry.

Forward (``_gabor_taps_fwd_kernel``), grid (F, tap blocks), float32 like the reference::

    re[j] = D cos(mu t) g,  im[j] = D sin(mu t) g,  D = 1 / (sqrt(2 pi) sigma),
    g = exp(-t^2 / (2 sigma^2)),  w[k] = exp(-(u / p')^2 / 2)

with ``p' = p / s * pool_size / W`` under ``SCALE`` (EfficientLEAF's widths rescaled to the
group's window, in the reference's operation order), else ``p' = p``.

Backward (``_gabor_taps_bwd_kernel``), grid (F,), from the saved outputs (no
transcendentals), one program per filter, so no atomics (deterministic)::

    dmu    = sum_j t (dim re - dre im)
    dsigma = sum_j (dre re + dim im) (t^2 / sigma^2 - 1) / sigma
    dp'    = sum_k dw w u^2 / p'^3,   dp = dp' / W * pool_size / s   (SCALE)
"""
import triton
import triton.language as tl

__all__ = ['_group_geometry_kernel', '_gabor_taps_fwd_kernel', '_gabor_taps_bwd_kernel',
           'TAB_GROUP', 'TAB_LOC', 'TAB_N', 'TAB_TAPS', 'TAB_WINS', 'TAB_KCAP', 'TAB_WCAP', 'NCOL',
           'SQRT_2PI']

# Columns of the int32 per-filter table.
TAB_GROUP = 0   # group of the filter (row of the geometry tensor)
TAB_LOC = 1     # index of the filter inside its group
TAB_N = 2       # filters n of the group
TAB_TAPS = 3    # offset of the group's (2n, K) taps in the packed taps
TAB_WINS = 4    # offset of the group's (n, W) windows in the packed windows
TAB_KCAP = 5    # the group's K cap: its taps region holds 2n KCAP values
TAB_WCAP = 6    # the group's W cap: its windows region holds n WCAP values
NCOL = 7

#: sqrt(2 pi) as the reference's float32 product uses it
SQRT_2PI = 2.5066282746310002


@triton.jit
def _group_geometry_kernel(mu_ptr, sigma_ptr, thr_ptr, geo_ptr, F, G, N_THR, HOP, POOL_SIZE,
                           conv_win_factor, kcap, KCAP, WCAP, BLOCK_N: tl.constexpr):
    """geo[g] = (s, P, K, W) of group g from the clamped float32 parameters.

    thr (N_THR, 2) int32: admissible strides d ascending, and the float32 bits of their
    thresholds (the smallest stride's is +inf, so every group gets at least that one).
    conv_win_factor (float32), kcap (float32 of KCAP): the K cap bounds K.
    """
    g = tl.program_id(0)
    start = g * F // G
    stop = (g + 1) * F // G
    i = start + tl.arange(0, BLOCK_N)
    mk = i < stop
    mu = tl.max(tl.load(mu_ptr + i, mask=mk, other=float('-inf')), axis=0)
    sigma = tl.max(tl.load(sigma_ptr + i, mask=mk, other=float('-inf')), axis=0)
    s = tl.load(thr_ptr)
    for d in range(1, N_THR):
        cand = tl.load(thr_ptr + 2 * d)
        limit = tl.load(thr_ptr + 2 * d + 1).to(tl.float32, bitcast=True)
        s = tl.where(mu <= limit, cand, s)
    kf = sigma * conv_win_factor
    kf = tl.where(kf == kf, kf, 0.0)                      # NaN parameters: within the caps
    K = tl.minimum(tl.maximum(kf, 0.0), kcap).to(tl.int32)
    K = tl.minimum(K + 1 - K % 2, KCAP)
    W = (2 * POOL_SIZE + s) // (2 * s)
    W = tl.minimum(W + 1 - W % 2, WCAP)
    tl.store(geo_ptr + g * 4 + 0, s)
    tl.store(geo_ptr + g * 4 + 1, HOP // s)
    tl.store(geo_ptr + g * 4 + 2, K)
    tl.store(geo_ptr + g * 4 + 3, W)


@triton.jit
def _pool_width(pw_ptr, f, s, W, pool_size, SCALE: tl.constexpr):
    """The filter's pooling width as its window uses it: with SCALE rescaled to the group's
    window, ``p / s * pool_size / W`` (pool_size a float32 integer)."""
    p = tl.load(pw_ptr + f)
    if SCALE:
        p = p / s.to(tl.float32) * pool_size / W.to(tl.float32)
    return p


@triton.jit
def _filter_row(tab_ptr, geo_ptr, f, NCOL: tl.constexpr):
    """(s, K, W, real taps, imaginary taps, window) offsets of filter f."""
    row = tab_ptr + f * NCOL
    grp = tl.load(row + 0)
    loc = tl.load(row + 1)
    n = tl.load(row + 2)
    taps0 = tl.load(row + 3)
    wins0 = tl.load(row + 4)
    s = tl.load(geo_ptr + grp * 4 + 0)
    K = tl.load(geo_ptr + grp * 4 + 2)
    W = tl.load(geo_ptr + grp * 4 + 3)
    return s, K, W, taps0 + loc * K, taps0 + (n + loc) * K, wins0 + loc * W


@triton.jit
def _gabor_taps_fwd_kernel(mu_ptr, sigma_ptr, pw_ptr, geo_ptr, taps_ptr, win_ptr, tab_ptr,
                           pool_size, SCALE: tl.constexpr, NCOL: tl.constexpr,
                           SQRT2PI: tl.constexpr, BLOCK: tl.constexpr):
    f = tl.program_id(0)
    j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    s, K, W, re_off, im_off, win_off = _filter_row(tab_ptr, geo_ptr, f, NCOL)
    mu = tl.load(mu_ptr + f)
    sigma = tl.load(sigma_ptr + f)
    p = _pool_width(pw_ptr, f, s, W, pool_size, SCALE)
    # taps: the reference's operation order, float32
    t = (j - K // 2).to(tl.float32)
    denom = 1.0 / (SQRT2PI * sigma)
    gauss = tl.exp((1.0 / (2.0 * (sigma * sigma))) * (-(t * t)))
    phase = mu * t
    mk = j < K
    tl.store(taps_ptr + re_off + j, denom * tl.cos(phase) * gauss, mask=mk)
    tl.store(taps_ptr + im_off + j, denom * tl.sin(phase) * gauss, mask=mk)
    # window
    u = j.to(tl.float32) * (2.0 / (W - 1).to(tl.float32)) - 1.0
    v = u / p
    tl.store(win_ptr + win_off + j, tl.exp(-0.5 * (v * v)), mask=j < W)
    # zeros in the group's regions beyond its actual K and W (2 (KCAP - K) taps and
    # WCAP - W window values per filter), so that every output value is defined
    row = tab_ptr + f * NCOL
    loc = tl.load(row + 1)
    n = tl.load(row + 2)
    kpad = tl.load(row + 5) - K
    wpad = tl.load(row + 6) - W
    zero = tl.zeros((BLOCK,), tl.float32)
    t_tail = tl.load(row + 3) + 2 * n * K + loc * 2 * kpad
    tl.store(taps_ptr + t_tail + j, zero, mask=j < kpad)
    tl.store(taps_ptr + t_tail + kpad + j, zero, mask=j < kpad)
    tl.store(win_ptr + tl.load(row + 4) + n * W + loc * wpad + j, zero, mask=j < wpad)


@triton.jit
def _gabor_taps_bwd_kernel(sigma_ptr, pw_ptr, geo_ptr, taps_ptr, win_ptr, dtaps_ptr, dwin_ptr,
                           tab_ptr, dmu_ptr, dsigma_ptr, dpw_ptr, pool_size,
                           SCALE: tl.constexpr, NCOL: tl.constexpr, BLOCK: tl.constexpr):
    f = tl.program_id(0)
    s, K, W, re_off, im_off, win_off = _filter_row(tab_ptr, geo_ptr, f, NCOL)
    sigma = tl.load(sigma_ptr + f)
    p = _pool_width(pw_ptr, f, s, W, pool_size, SCALE)
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
    dp = tl.sum(acc_p, axis=0) / (p * p * p)
    if SCALE:   # the chain rule through p / s * pool_size / W, in reverse order
        dp = dp / W.to(tl.float32) * pool_size / s.to(tl.float32)
    tl.store(dmu_ptr + f, tl.sum(acc_mu, axis=0))
    tl.store(dsigma_ptr + f, tl.sum(acc_sigma, axis=0) / sigma)
    tl.store(dpw_ptr + f, dp)
