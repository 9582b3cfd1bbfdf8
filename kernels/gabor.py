"""Triton kernels of the fused grouped Gabor filterbank (SPEC §2, §3, §5).

Reference: :func:`eleaf.functional.grouped_gabor_filterbank_ref`. Host code, autograd and the
custom op are in :mod:`eleaf.ops.gabor`.

Letters: B batch, F filters (all groups), n filters of one group, L input samples,
N = (L - 1) // s + 1 convolution steps of a group, T output frames, K Gabor taps, W pooling
taps, s convolution stride, P pooling stride (in convolution steps), H = s * P hop (samples).

Pooling windows are centred on the frames (zero padding W//2) unless the runtime argument
``POOL_SHIFT`` (0 for eleaf's filterbanks) moves them: the pooling's left padding is
``W//2 + POOL_SHIFT`` (TF LEAF's 'SAME' padding, which depends on ``L mod H``); the formulas
below write W//2 for it.

All groups run in one launch. The grid's filter axis enumerates *filter blocks* of at most
``BLOCK_F`` filters of one group; the row ``fb`` of the static int32 table ``tab`` (``NCOL``
columns, see ``TAB_*``) holds the block's filters, its group and the group's offsets in the
packed taps and windows, and the group's row of the int32 (G, 4) geometry tensor ``geo``
(``GEO_*``: s, P, K, W) its geometry. The geometry is data: computed on the device from the
learned parameters, read by every program, never copied to the host, so one compiled launch
serves every geometry. Grids, scratch buffers and the packed layouts are sized by static caps
(largest K, W, shifts Q = cdiv(W, P) and steps N any geometry can have); programs beyond
their group's actual extent exit early or mask their work.

- packed taps (fp32): per group, at a static offset, the (2n, K) matrix of
  :func:`eleaf.functional.gabor_kernel` (real parts of the n filters, then imaginary parts),
  flattened; the group's region holds 2n times its K cap;
- packed windows (fp32): per group, at a static offset, the (n, W) matrix of
  :func:`eleaf.functional.gauss_windows`, flattened; the region holds n times its W cap.

Forward (``_gabor_fwd_kernel``), grid (frame blocks, filter blocks, B): the pooling taps are
split as k = q P + r; for each phase r the convolution outputs at the rows
m = (tau0 + u) P + r - W//2 of the block are a [BLOCK_U, K] tile of strided input windows
(im2col by strided loads) times the [K, 2n] taps (two tl.dot, real and imaginary, over K
chunks), squared, weighted by w_f[q P + r] into one [BLOCK_U, BLOCK_F] accumulator per shift
q (up to ``SHIFTS`` = 4 at a time, in the dot's register layout); at the end row gathers
(``tl.gather``) add the shifted accumulators into the [frames, BLOCK_F] output tile. Every
needed convolution row is computed about once (overhead BLOCK_U / STEP; cdiv(Q, 4) times
when a window spans more than 4 hops), and the convolution output never goes to global
memory.

Backward recomputes the convolution (nothing but x, taps and windows is saved):
``_gabor_bwd_rows_kernel`` (grid over blocks of convolution rows) recomputes re, im at rows
m, forms dE[m, f] = sum over the frames tau that pool row m of g[tau, f] w_f[m - tau P + W//2]
(transposed pooling by gathers), and writes the conv-output gradient D = (2 re dE, 2 im dE)
and E = re^2 + im^2 into a bounded scratch buffer (the host processes the batch in chunks);
then, reading that scratch, ``_gabor_bwd_window_kernel`` reduces the window gradient
dw_f[k] = sum over b, tau of g[tau, f] E[tau P - W//2 + k] (taps split k = q P + r like the
forward: coalesced [rows, phases, filters] tiles of E, each read once, times g at the Q
shifts; ``_gabor_bwd_window_loop_kernel``, one tap per iteration, is the fallback when
QMAX leaves too few registers), ``_gabor_bwd_taps_kernel`` the
taps gradient dh[c, j] = sum over b, m of D[c, m] x[m s - K//2 + j] (tl.dot, im2col tiles of
x) and, only when x needs a gradient, ``_gabor_bwd_input_kernel`` the input gradient
dx[i] = sum over c, m of D[c, m] h_c[i + K//2 - m s]. Reductions across programs use
atomic adds into fp32 buffers in v1 (results are not bitwise deterministic), partial sums in
v2 (see below).

TF32 (``PRECISION='tf32'``): the host passes x (v1; v2 rounds its sums of x in the kernels)
and the taps rounded to TF32 (round to
nearest, like cuBLAS and cuDNN; the tensor cores themselves truncate fp32 operands, a
systematic relative bias of about -1e-3 on |conv|^2) and the rows kernel rounds D when it
stores it (``ROUND_D``).

Two versions (``ELEAF_GABOR_KERNELS``, :func:`eleaf.ops.gabor_plan.kernel_version`):

- **v1** (the description above; before 2026-12-07): full taps, x gathered per tap (4-byte
  loads), filter blocks of the next power of two of a group's size, reductions across
  programs by atomic adds.
- **v2** (default): the same kernels with ``FOLD`` (:func:`_fold_tile`): a Gabor filter's real
  taps are even and its imaginary taps odd about the centre, so each row's response is
  sum_j h[hk + j] (x[c + j] +- x[c - j]) over j = 0 ... hk, half the products, with x read from
  the *x planes* (``_gabor_planes_kernel``: x and its reversal, each in ALIGN shifted copies)
  in aligned ALIGN-element vectors; filter blocks as small as the work allows (10 filters in
  16 columns, LEAF's 40 in 3 x 16), forward row tiles sized to T; the taps gradient of the
  folded taps (``_gabor_bwd_taps_fold_kernel``); every reduction across programs stores
  partial sums that ``_gabor_sum_partials_kernel`` adds in a fixed order, and the input
  gradient sums the filter blocks in one program, so no kernel uses atomics and the
  gradients are bitwise reproducible. Layouts of asymmetric taps (TF LEAF's even kernel
  sizes) run v2 unfolded. ``eleaf/ops/gabor_cost.py`` counts the work of both.
"""
import triton
import triton.language as tl

__all__ = ['_gabor_fwd_kernel', '_gabor_bwd_rows_kernel', '_gabor_bwd_window_kernel',
           '_gabor_bwd_window_loop_kernel',
           '_gabor_bwd_taps_kernel', '_gabor_bwd_taps_fold_kernel', '_gabor_bwd_input_kernel',
           '_gabor_planes_kernel', '_gabor_sum_partials_kernel', 'SUM_TAPS', 'SUM_TAPS_FOLDED',
           'SUM_WINDOWS', 'GTAB_NCOL',
           'TAB_F_OUT', 'TAB_NB', 'TAB_GROUP', 'TAB_LOC', 'TAB_N', 'TAB_TAPS', 'TAB_WINS', 'NCOL',
           'GEO_S', 'GEO_P', 'GEO_K', 'GEO_W', 'GEO_NCOL']

# Columns of the int32 filter-block table (static: they depend on the group sizes and the
# static caps of the layout, never on the geometry's values).
TAB_F_OUT = 0    # global index of the block's first filter
TAB_NB = 1       # number of valid filters in the block (<= BLOCK_F)
TAB_GROUP = 2    # group index (row of the geometry tensor)
TAB_LOC = 3      # index of the block's first filter inside its group
TAB_N = 4        # number of filters n of the group
TAB_TAPS = 5     # offset of the group's (2n, K) taps in the packed taps (sized by the K cap)
TAB_WINS = 6     # offset of the group's (n, W) windows in the packed windows (W cap)
NCOL = 7

# Columns of the int32 (G, 4) geometry tensor (eleaf.functional.geometry.GEO_*), read on the
# device: the group geometry is data, computed from the parameters every step.
GEO_S = 0        # conv stride s
GEO_P = 1        # pooling stride P
GEO_K = 2        # Gabor taps K (odd)
GEO_W = 3        # pooling taps W (odd)
GEO_NCOL = 4


@triton.jit
def _round_tf32(v):
    """float32 -> nearest TF32 value (10 mantissa bits, ties away from zero), as cuBLAS and
    cuDNN round; a tf32 tl.dot would otherwise drop the 13 low bits (a bias of about -5e-4
    per operand)."""
    i = v.to(tl.int32, bitcast=True)
    return ((i + 0x1000) & -8192).to(tl.float32, bitcast=True)


@triton.jit
def _block_row(tab_ptr, geo_ptr, fb, NCOL: tl.constexpr):
    """Filter block ``fb``: (f_out, nb, s, P, K, W, tap_re, tap_im, win0, group, loc, n), its
    static columns from the table and its group's geometry from the geometry tensor; the
    block's real and imaginary tap rows and windows start at ``tap_re``, ``tap_im``, ``win0``
    (the group's (2n, K) taps and (n, W) windows, row-major, at the group's offsets)."""
    row = tab_ptr + fb * NCOL
    grp = tl.load(row + 2)
    loc = tl.load(row + 3)
    n = tl.load(row + 4)
    taps0 = tl.load(row + 5)
    wins0 = tl.load(row + 6)
    geo = geo_ptr + grp * 4
    s = tl.load(geo + 0)
    P = tl.load(geo + 1)
    K = tl.load(geo + 2)
    W = tl.load(geo + 3)
    return (tl.load(row + 0), tl.load(row + 1), s, P, K, W, taps0 + loc * K,
            taps0 + (n + loc) * K, wins0 + loc * W, grp, loc, n)


@triton.jit
def _conv_tile(re, im, x_b, stride_xl, base, rvalid, taps_ptr, tap_re, tap_im, fo, fmask,
               j_lo, j_hi, K, L, BLOCK_K: tl.constexpr, LOWP: tl.constexpr,
               PRECISION: tl.constexpr):
    """(re, im) plus the real and imaginary Gabor responses of a tile of convolution rows:
    row i reads the input samples ``base[i] + j`` (zero outside [0, L) and for rows not
    ``rvalid``) for the taps j in [j_lo, j_hi) (chunks of BLOCK_K; j_lo a multiple of it);
    the taps of filter ``fo`` start at ``tap_re`` / ``tap_im`` + fo K. [rows, BLOCK_F] fp32."""
    jj = tl.arange(0, BLOCK_K)
    for j0 in range(j_lo, j_hi, BLOCK_K):
        j = j0 + jj
        jmask = j < K
        idx = base[:, None] + j[None, :]
        xmask = rvalid[:, None] & jmask[None, :] & (idx >= 0) & (idx < L)
        xt = tl.load(x_b + idx.to(tl.int64) * stride_xl, mask=xmask, other=0.)
        hmask = jmask[:, None] & fmask[None, :]
        hoff = fo[None, :] * K + j[:, None]
        hr = tl.load(taps_ptr + tap_re + hoff, mask=hmask, other=0.)
        hi = tl.load(taps_ptr + tap_im + hoff, mask=hmask, other=0.)
        if LOWP:
            re = tl.dot(xt, hr.to(xt.dtype), re)
            im = tl.dot(xt, hi.to(xt.dtype), im)
        else:
            xt = xt.to(tl.float32)
            re = tl.dot(xt, hr, re, input_precision=PRECISION)
            im = tl.dot(xt, hi, im, input_precision=PRECISION)
    return re, im


@triton.jit
def _fold_rows(XPLANE, XREV, c, ALIGN: tl.constexpr):
    """Row starts, in the x planes of one example, of the samples x[c + j] (``right``) and
    x[c - j] (``left``, read forwards in the reversed planes) for j = 0, 1, ... of rows centred
    on the samples ``c`` ([rows] int32, >= 0): multiples of ``ALIGN``, so a tile's rows are
    aligned ALIGN-element vector loads (see :func:`eleaf.ops.gabor.x_planes`)."""
    el = XREV - c
    ar = c % ALIGN
    al = el % ALIGN
    right = tl.multiple_of(c - ar, ALIGN) + ar * XPLANE
    left = tl.multiple_of(el - al, ALIGN) + (ALIGN + al) * XPLANE
    return right, left


@triton.jit
def _fold_operands(xq_b, right, left, rvalid, j, ALIGN: tl.constexpr, TF32: tl.constexpr):
    """[rows, taps] fp32 tiles S = x[c + j] + x[c - j] and D = x[c + j] - x[c - j] (zero for
    rows not ``rvalid``; j >= 0 the taps' offsets from the centre) from two aligned loads;
    ``TF32``: rounded to TF32, as operands of tf32 dots."""
    xr = tl.load(xq_b + tl.multiple_of(right, ALIGN)[:, None] + j[None, :],
                 mask=rvalid[:, None], other=0.).to(tl.float32)
    xl = tl.load(xq_b + tl.multiple_of(left, ALIGN)[:, None] + j[None, :],
                 mask=rvalid[:, None], other=0.).to(tl.float32)
    if TF32:
        return _round_tf32(xr + xl), _round_tf32(xr - xl)
    return xr + xl, xr - xl


@triton.jit
def _fold_tile(re, im, xq_b, XPLANE, XREV, c, rvalid, taps_ptr, tap_re, tap_im, fo,
               fmask, K, ALIGN: tl.constexpr, BLOCK_K: tl.constexpr, LOWP: tl.constexpr,
               PRECISION: tl.constexpr):
    """(re, im) plus the Gabor responses of a tile of convolution rows centred on the samples
    ``c`` ([rows]), folding the taps' symmetry (real parts even, imaginary parts odd about the
    centre tap hk = K//2): re = sum_{j=0}^{hk} h_re[hk + j] (x[c + j] + x[c - j]) with the
    centre tap halved, im = sum_{j=1}^{hk} h_im[hk + j] (x[c + j] - x[c - j]); half the
    products of :func:`_conv_tile`. Only the centre and right half of each tap row are read.
    [rows, BLOCK_F] fp32; TF32 dots round their operands S, D to TF32 first."""
    right, left = _fold_rows(XPLANE, XREV, tl.where(rvalid, c, 0), ALIGN)
    hk = K // 2
    jj = tl.arange(0, BLOCK_K)
    for j0 in range(0, hk + 1, BLOCK_K):
        j = j0 + jj
        xs, xd = _fold_operands(xq_b, right, left, rvalid, j, ALIGN,
                                (PRECISION == 'tf32') and not LOWP)
        hmask = (j <= hk)[:, None] & fmask[None, :]
        hoff = fo[None, :] * K + (hk + j)[:, None]
        hr = tl.load(taps_ptr + tap_re + hoff, mask=hmask, other=0.)
        hi = tl.load(taps_ptr + tap_im + hoff, mask=hmask & (j > 0)[:, None], other=0.)
        hr = tl.where((j == 0)[:, None], hr * 0.5, hr)
        if LOWP:   # fp16/bf16 planes: the sums rounded to their dtype, fp32 accumulation
            lowp = xq_b.dtype.element_ty
            re = tl.dot(xs.to(lowp), hr.to(lowp), re)
            im = tl.dot(xd.to(lowp), hi.to(lowp), im)
        else:
            re = tl.dot(xs, hr, re, input_precision=PRECISION)
            im = tl.dot(xd, hi, im, input_precision=PRECISION)
    return re, im


@triton.jit
def _shift_rows(a, t, q: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_F: tl.constexpr):
    """Rows t + q of the [BLOCK_U, BLOCK_F] tile a (row BLOCK_U - 1 past the end), by an
    in-register gather (no dot: an fp32 0/1-matrix dot runs on FMAs and spills)."""
    rows = tl.minimum(t + q, BLOCK_U - 1)
    return tl.gather(a, tl.zeros((BLOCK_U, BLOCK_F), dtype=tl.int32) + rows[:, None], 0)


@triton.jit
def _gabor_fwd_kernel(
    x_ptr, taps_ptr, win_ptr, out_ptr, tab_ptr, geo_ptr,
    L, T, STEP, stride_xb, stride_xl, stride_ob, stride_of, stride_ot, POOL_SHIFT,
    XPLANE, XREV,
    NCOL: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_F: tl.constexpr,
    SHIFTS: tl.constexpr, LOWP: tl.constexpr, PRECISION: tl.constexpr,
    FOLD: tl.constexpr = False, ALIGN: tl.constexpr = 1,
):
    """out[b, f, tau] = sum_k w_f[k] E_f[tau P - W//2 + k], E = |conv_f(x_b)|^2 (zero outside
    [0, N)).

    Grid (cdiv(T, STEP), filter blocks, B); program p writes frames tau0 ... tau0 + STEP - 1,
    tau0 = p * STEP, STEP = BLOCK_U - Qmax + 1 with Qmax >= cdiv(W, P) of every group. Pooling
    taps are split as k = q P + r (phase r in [0, P), shift q < Q = cdiv(W, P)): for each
    phase the conv outputs at the BLOCK_U rows m = (tau0 + u) P + r - W//2 of the block are one
    im2col tile of x times the taps (tl.dot over K chunks), so each needed row is computed
    about once; A_q[u] += w_f[q P + r] E[u] accumulates per shift q (SHIFTS <= 4 separate
    [BLOCK_U, BLOCK_F] accumulators in the dot's layout; Q > SHIFTS takes cdiv(Q, SHIFTS)
    passes, each recomputing the tiles), and out[tau0 + t] = sum_q A_q[t + q] (row gathers).

    x (B, 1, L) any strides; out (B, F, T); taps, windows packed fp32. LOWP: x is fp16/bf16,
    the taps are cast to x's dtype for tl.dot (fp32 accumulation); else fp32 dot with
    ``input_precision=PRECISION`` ('ieee' or 'tf32').

    FOLD (the v2 kernels): ``x_ptr`` is the (B, 2 ALIGN, XPLANE) x planes of
    :func:`eleaf.ops.gabor.x_planes` (batch stride ``stride_xb``; ``stride_xl`` unused) and
    the tiles fold the taps' symmetry (:func:`_fold_tile`): half the products, aligned
    ALIGN-element loads of x.
    """
    pid_t = tl.program_id(0)
    fb = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    (f_out, nb, s, P, K, W, tap_re, tap_im, win0, _, _, _) = _block_row(
        tab_ptr, geo_ptr, fb, NCOL)

    N = (L - 1) // s + 1
    H = s * P
    hw = W // 2 + POOL_SHIFT
    hk = K // 2
    Q = (W + P - 1) // P
    t0 = pid_t * STEP
    u = tl.arange(0, BLOCK_U)
    # rows u = t + q needed by frames t < STEP with tau0 + t < T and shifts q < Q
    u_end = tl.minimum(tl.minimum(STEP, T - t0) + Q - 1, BLOCK_U)
    tau_u = t0 + u
    fo = tl.arange(0, BLOCK_F)
    fmask = fo < nb
    x_b = x_ptr + b * stride_xb
    x_row = tau_u * H - hw * s - hk   # sample of tap j = 0 at row u, phase r = 0
    w_row = win_ptr + win0 + fo * W
    out = tl.zeros((BLOCK_U, BLOCK_F), dtype=tl.float32)
    for q0 in range(0, Q, SHIFTS):
        acc0 = tl.zeros((BLOCK_U, BLOCK_F), dtype=tl.float32)
        acc1 = tl.zeros((BLOCK_U, BLOCK_F), dtype=tl.float32)
        acc2 = tl.zeros((BLOCK_U, BLOCK_F), dtype=tl.float32)
        acc3 = tl.zeros((BLOCK_U, BLOCK_F), dtype=tl.float32)
        for r in range(0, P):
            m = tau_u * P + r - hw
            rvalid = (u < u_end) & (m >= 0) & (m < N)
            base = x_row + r * s
            # taps j whose samples can lie in [0, L) for some row of the block
            b_lo = t0 * H - hw * s - hk + r * s
            b_hi = b_lo + (u_end - 1) * H
            j_lo = (tl.maximum(-b_hi, 0) // BLOCK_K) * BLOCK_K
            j_hi = tl.minimum(K, L - b_lo)
            if FOLD:
                re, im = _fold_tile(tl.zeros((BLOCK_U, BLOCK_F), dtype=tl.float32),
                                    tl.zeros((BLOCK_U, BLOCK_F), dtype=tl.float32), x_b,
                                    XPLANE, XREV, base + hk, rvalid, taps_ptr, tap_re,
                                    tap_im, fo, fmask, K, ALIGN, BLOCK_K, LOWP, PRECISION)
            else:
                re, im = _conv_tile(tl.zeros((BLOCK_U, BLOCK_F), dtype=tl.float32),
                                    tl.zeros((BLOCK_U, BLOCK_F), dtype=tl.float32), x_b,
                                    stride_xl, base, rvalid, taps_ptr, tap_re, tap_im, fo,
                                    fmask, j_lo, j_hi, K, L, BLOCK_K, LOWP, PRECISION)
            e = re * re + im * im
            k = fo * 0 + q0 * P + r   # window tap of shift q0 + i: k + i P
            acc0 += tl.load(w_row + k, mask=fmask & (k < W), other=0.)[None, :] * e
            if SHIFTS > 1:
                k += P
                acc1 += tl.load(w_row + k, mask=fmask & (k < W), other=0.)[None, :] * e
            if SHIFTS > 2:
                k += P
                acc2 += tl.load(w_row + k, mask=fmask & (k < W), other=0.)[None, :] * e
            if SHIFTS > 3:
                k += P
                acc3 += tl.load(w_row + k, mask=fmask & (k < W), other=0.)[None, :] * e
        # out[t] += sum_i A_{q0 + i}[t + q0 + i]
        tq = u + q0
        out += _shift_rows(acc0, tq, 0, BLOCK_U, BLOCK_F)
        if SHIFTS > 1:
            out += _shift_rows(acc1, tq, 1, BLOCK_U, BLOCK_F)
        if SHIFTS > 2:
            out += _shift_rows(acc2, tq, 2, BLOCK_U, BLOCK_F)
        if SHIFTS > 3:
            out += _shift_rows(acc3, tq, 3, BLOCK_U, BLOCK_F)
    tau = t0 + u
    omask = (u < STEP) & (tau < T)
    optr = (out_ptr + b * stride_ob + (f_out + fo)[None, :].to(tl.int64) * stride_of
            + tau[:, None].to(tl.int64) * stride_ot)
    tl.store(optr, out.to(out_ptr.dtype.element_ty), mask=omask[:, None] & fmask[None, :])


@triton.jit
def _gabor_bwd_rows_kernel(
    x_ptr, taps_ptr, win_ptr, g_ptr, d_ptr, e_ptr, tab_ptr, geo_ptr, base_ptr,
    L, T, stride_xb, stride_xl, stride_gb, stride_gf, stride_gt, POOL_SHIFT,
    XPLANE, XREV,
    NCOL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_F: tl.constexpr,
    LOWP: tl.constexpr, PRECISION: tl.constexpr, ROUND_D: tl.constexpr,
    FOLD: tl.constexpr = False, ALIGN: tl.constexpr = 1,
):
    """Conv-output gradient of one block of convolution rows, recomputing the convolution.

    Grid (cdiv(max N, BLOCK_M), filter blocks, Bc). g (Bc, F, T) output gradient (any strides).
    Writes, per group (``base_ptr``: int64 (G, 2) scratch offsets of the group's D and E):
    D (Bc, 2n, N) fp32 = (2 re dE, 2 im dE) and E (Bc, n, N) fp32 = re^2 + im^2, with
    dE[m, f] = sum_tau g[tau, f] w_f[m - tau P + W//2] over 0 <= m - tau P + W//2 < W.
    ROUND_D: store D rounded to TF32 (the taps gradient reads it with tf32 dots). FOLD,
    ALIGN, XPLANE, XREV: as in ``_gabor_fwd_kernel``.
    """
    pid_m = tl.program_id(0)
    fb = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    (f_out, nb, s, P, K, W, tap_re, tap_im, win0, grp, loc, n) = _block_row(
        tab_ptr, geo_ptr, fb, NCOL)

    N = (L - 1) // s + 1
    m0 = pid_m * BLOCK_M
    if m0 >= N:
        return
    hw = W // 2 + POOL_SHIFT
    hk = K // 2
    m = m0 + tl.arange(0, BLOCK_M)
    rvalid = m < N
    m_last = tl.minimum(m0 + BLOCK_M, N) - 1
    fo = tl.arange(0, BLOCK_F)
    fmask = fo < nb
    x_b = x_ptr + b * stride_xb
    base = m * s - hk
    j_lo = (tl.maximum(hk - m_last * s, 0) // BLOCK_K) * BLOCK_K
    j_hi = tl.minimum(K, L - (m0 * s - hk))

    if FOLD:
        re, im = _fold_tile(tl.zeros((BLOCK_M, BLOCK_F), dtype=tl.float32),
                            tl.zeros((BLOCK_M, BLOCK_F), dtype=tl.float32), x_b, XPLANE,
                            XREV, m * s, rvalid, taps_ptr, tap_re, tap_im, fo, fmask, K, ALIGN,
                            BLOCK_K, LOWP, PRECISION)
    else:
        re, im = _conv_tile(tl.zeros((BLOCK_M, BLOCK_F), dtype=tl.float32),
                            tl.zeros((BLOCK_M, BLOCK_F), dtype=tl.float32), x_b, stride_xl,
                            base, rvalid, taps_ptr, tap_re, tap_im, fo, fmask, j_lo, j_hi, K, L,
                            BLOCK_K, LOWP, PRECISION)

    # transposed pooling: frames tau = tau_hi - q with 0 <= m + W//2 - tau P < W
    g_b = g_ptr + b * stride_gb
    tau_hi = (m + hw) // P
    de = tl.zeros((BLOCK_M, BLOCK_F), dtype=tl.float32)
    for q in range(0, (W + P - 1) // P):
        tau = tau_hi - q
        k = m + hw - tau * P
        ok = rvalid & (tau >= 0) & (tau < T) & (k < W)
        okf = ok[:, None] & fmask[None, :]
        gv = tl.load(g_b + (f_out + fo)[None, :].to(tl.int64) * stride_gf
                     + tau[:, None].to(tl.int64) * stride_gt, mask=okf, other=0.)
        wv = tl.load(win_ptr + win0 + fo[None, :] * W + k[:, None], mask=okf, other=0.)
        de += gv.to(tl.float32) * wv

    d_base = tl.load(base_ptr + grp * 2)
    e_base = tl.load(base_ptr + grp * 2 + 1)
    nN = n.to(tl.int64) * N
    smask = rvalid[:, None] & fmask[None, :]
    col = (loc + fo)[None, :].to(tl.int64) * N + m[:, None]
    d_row = d_ptr + d_base + b * (2 * nN) + col
    tl.store(e_ptr + e_base + b * nN + col, re * re + im * im, mask=smask)
    if ROUND_D:   # D is a tf32 tl.dot operand of the taps gradient: round it to TF32
        tl.store(d_row, _round_tf32(2. * re * de), mask=smask)
        tl.store(d_row + nN, _round_tf32(2. * im * de), mask=smask)
    else:
        tl.store(d_row, 2. * re * de, mask=smask)
        tl.store(d_row + nN, 2. * im * de, mask=smask)


@triton.jit
def _gabor_bwd_window_kernel(
    g_ptr, e_ptr, dwin_ptr, tab_ptr, geo_ptr, base_ptr,
    L, T, NB, SPLIT, stride_gb, stride_gf, stride_gt, POOL_SHIFT, PART_STRIDE,
    NCOL: tl.constexpr, BLOCK_U: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_F: tl.constexpr,
    QMAX: tl.constexpr, ATOMIC: tl.constexpr = True,
):
    """dw_f[q P + r] += sum_{b, u} g[b, f, u - q] E[b, f, u P + r - W//2] (the window taps
    split as k = q P + r like the forward; E zero outside [0, N), g zero outside [0, T)).

    Grid (cdiv(max P, BLOCK_R), filter blocks, SPLIT). Program (pid_r, fb, pid_s) owns the
    phases r of one BLOCK_R chunk and reduces the items (b, block of BLOCK_U rows u) it,
    it = pid_s, pid_s + SPLIT, ... < NB cdiv(U, BLOCK_U), U = T + Q - 1, in registers: each
    item is one coalesced [BLOCK_U, BLOCK_R, BLOCK_F] tile of E (read once) times a
    [QMAX, BLOCK_U, BLOCK_F] tile of g; the [QMAX, BLOCK_R, BLOCK_F] result goes to dwin
    (packed windows, fp32) with one atomic add per tap at the end, or, not ATOMIC (v2,
    deterministic), is stored to the partial sums ``dwin + pid_s * PART_STRIDE`` (programs
    own disjoint taps; the host sums the SPLIT partials in a fixed order).
    """
    pid_r = tl.program_id(0)
    fb = tl.program_id(1)
    pid_s = tl.program_id(2)
    (f_out, nb, s, P, _, W, _, _, win0, grp, loc, n) = _block_row(
        tab_ptr, geo_ptr, fb, NCOL)

    r0 = pid_r * BLOCK_R
    if r0 >= P:
        return
    N = (L - 1) // s + 1
    hw = W // 2 + POOL_SHIFT
    Q = (W + P - 1) // P
    U = T + Q - 1
    n_ub = tl.cdiv(U, BLOCK_U)
    uu = tl.arange(0, BLOCK_U)
    rr = r0 + tl.arange(0, BLOCK_R)
    fo = tl.arange(0, BLOCK_F)
    qq = tl.arange(0, QMAX)
    fmask = fo < nb
    rmask = rr < P
    e_base = tl.load(base_ptr + grp * 2 + 1)
    nN = n.to(tl.int64) * N
    e_f = e_ptr + e_base + (loc + fo)[None, None, :].to(tl.int64) * N
    g_f = g_ptr + (f_out + fo)[None, None, :].to(tl.int64) * stride_gf
    acc = tl.zeros((QMAX, BLOCK_U, BLOCK_R, BLOCK_F), dtype=tl.float32)
    for it in range(pid_s, NB * n_ub, SPLIT):
        b = (it // n_ub).to(tl.int64)
        u = (it % n_ub) * BLOCK_U + uu
        m = u[:, None] * P + rr[None, :] - hw
        ok = (u < U)[:, None] & rmask[None, :] & (m >= 0) & (m < N)
        ev = tl.load(e_f + b * nN + m[:, :, None], mask=ok[:, :, None] & fmask[None, None, :],
                     other=0.)
        tau = u[None, :] - qq[:, None]
        gok = (qq < Q)[:, None] & (tau >= 0) & (tau < T)
        gv = tl.load(g_f + b * stride_gb + tau[:, :, None].to(tl.int64) * stride_gt,
                     mask=gok[:, :, None] & fmask[None, None, :], other=0.).to(tl.float32)
        acc += gv[:, :, None, :] * ev[None, :, :, :]
    dw = tl.sum(acc, axis=1)
    k = qq[:, None] * P + rr[None, :]
    kok = (qq < Q)[:, None] & rmask[None, :] & (k < W)
    if ATOMIC:
        tl.atomic_add(dwin_ptr + win0 + fo[None, None, :] * W + k[:, :, None], dw,
                      mask=kok[:, :, None] & fmask[None, None, :], sem='relaxed')
    else:
        tl.store(dwin_ptr + pid_s.to(tl.int64) * PART_STRIDE + win0 + fo[None, None, :] * W
                 + k[:, :, None], dw, mask=kok[:, :, None] & fmask[None, None, :])


@triton.jit
def _gabor_bwd_window_loop_kernel(
    g_ptr, e_ptr, dwin_ptr, tab_ptr, geo_ptr, base_ptr,
    L, T, stride_gb, stride_gf, stride_gt, POOL_SHIFT,
    NCOL: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_F: tl.constexpr,
):
    """dw_f[k] += sum_tau g[b, f, tau] E[b, f, tau P - W//2 + k] (zero outside [0, N)), one
    window tap k per loop iteration (fallback of ``_gabor_bwd_window_kernel`` for many shifts).

    Grid (cdiv(T, BLOCK_T), filter blocks, Bc). E is the scratch of
    ``_gabor_bwd_rows_kernel``; dwin (packed windows, fp32) is accumulated with atomic adds.
    """
    pid_t = tl.program_id(0)
    fb = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    (f_out, nb, s, P, _, W, _, _, win0, grp, loc, n) = _block_row(
        tab_ptr, geo_ptr, fb, NCOL)

    N = (L - 1) // s + 1
    hw = W // 2 + POOL_SHIFT
    t0 = pid_t * BLOCK_T
    t_last = tl.minimum(t0 + BLOCK_T, T) - 1
    tau = t0 + tl.arange(0, BLOCK_T)
    fo = tl.arange(0, BLOCK_F)
    fmask = fo < nb
    tmask = tau < T
    gv = tl.load(g_ptr + b * stride_gb + (f_out + fo)[None, :].to(tl.int64) * stride_gf
                 + tau[:, None].to(tl.int64) * stride_gt,
                 mask=tmask[:, None] & fmask[None, :], other=0.).to(tl.float32)
    e_base = tl.load(base_ptr + grp * 2 + 1)
    nN = n.to(tl.int64) * N
    e_b = e_ptr + e_base + b * nN + (loc + fo)[None, :].to(tl.int64) * N
    k_lo = tl.maximum(hw - t_last * P, 0)
    k_hi = tl.minimum(W, N + hw - t0 * P)
    for k in range(k_lo, k_hi):
        m = tau * P - hw + k
        ok = tmask & (m >= 0) & (m < N)
        ev = tl.load(e_b + m[:, None], mask=ok[:, None] & fmask[None, :], other=0.)
        part = tl.sum(gv * ev, axis=0)
        tl.atomic_add(dwin_ptr + win0 + fo * W + k, part, mask=fmask, sem='relaxed')


@triton.jit
def _gabor_bwd_taps_kernel(
    x_ptr, d_ptr, dtaps_ptr, tab_ptr, geo_ptr, base_ptr,
    L, SPLIT, stride_xb, stride_xl, PART_STRIDE,
    NCOL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_F: tl.constexpr,
    PRECISION: tl.constexpr, ATOMIC: tl.constexpr = True,
):
    """dh[c, j] += sum_m D[b, c, m] x[b, m s - K//2 + j] for the real and imaginary rows c of
    one filter block and one chunk of taps j (weight gradient of the strided conv1d).

    Grid (cdiv(max K, BLOCK_K), filter blocks, Bc * SPLIT): each program reduces one of SPLIT
    row ranges of one batch element in registers, then adds into dtaps (packed, fp32)
    atomically, or, not ATOMIC (v2 with asymmetric taps: deterministic), stores its sums to
    the partials ``dtaps + pid_b * PART_STRIDE`` (the host sums them in a fixed order).
    """
    pid_j = tl.program_id(0)
    fb = tl.program_id(1)
    pid_b = tl.program_id(2)
    b = (pid_b // SPLIT).to(tl.int64)
    split = pid_b % SPLIT
    (_, nb, s, _, K, _, tap_re, tap_im, _, grp, loc, n) = _block_row(
        tab_ptr, geo_ptr, fb, NCOL)

    j0 = pid_j * BLOCK_K
    if j0 >= K:
        return
    N = (L - 1) // s + 1
    hk = K // 2
    rows = ((tl.cdiv(N, SPLIT) + BLOCK_M - 1) // BLOCK_M) * BLOCK_M
    r_lo = split * rows
    r_hi = tl.minimum(r_lo + rows, N)
    fo = tl.arange(0, BLOCK_F)
    fmask = fo < nb
    j = j0 + tl.arange(0, BLOCK_K)
    jmask = j < K
    mm = tl.arange(0, BLOCK_M)
    x_b = x_ptr + b * stride_xb
    d_base = tl.load(base_ptr + grp * 2)
    nN = n.to(tl.int64) * N
    d_b = d_ptr + d_base + b * (2 * nN) + (loc + fo)[:, None].to(tl.int64) * N
    acc_r = tl.zeros((BLOCK_F, BLOCK_K), dtype=tl.float32)
    acc_i = tl.zeros((BLOCK_F, BLOCK_K), dtype=tl.float32)
    for m0 in range(r_lo, r_hi, BLOCK_M):
        m = m0 + mm
        rvalid = m < r_hi
        dmask = fmask[:, None] & rvalid[None, :]
        dr = tl.load(d_b + m[None, :], mask=dmask, other=0.)
        di = tl.load(d_b + nN + m[None, :], mask=dmask, other=0.)
        idx = (m * s - hk)[:, None] + j[None, :]
        xmask = rvalid[:, None] & jmask[None, :] & (idx >= 0) & (idx < L)
        xt = tl.load(x_b + idx.to(tl.int64) * stride_xl, mask=xmask, other=0.).to(tl.float32)
        acc_r = tl.dot(dr, xt, acc_r, input_precision=PRECISION)
        acc_i = tl.dot(di, xt, acc_i, input_precision=PRECISION)
    hoff = fo[:, None] * K + j[None, :]
    hmask = fmask[:, None] & jmask[None, :]
    if ATOMIC:
        tl.atomic_add(dtaps_ptr + tap_re + hoff, acc_r, mask=hmask, sem='relaxed')
        tl.atomic_add(dtaps_ptr + tap_im + hoff, acc_i, mask=hmask, sem='relaxed')
    else:
        part = dtaps_ptr + pid_b.to(tl.int64) * PART_STRIDE
        tl.store(part + tap_re + hoff, acc_r, mask=hmask)
        tl.store(part + tap_im + hoff, acc_i, mask=hmask)


@triton.jit
def _gabor_bwd_taps_fold_kernel(
    xq_ptr, d_ptr, part_ptr, tab_ptr, geo_ptr, base_ptr,
    L, NB, SPLIT, ROWS, stride_xb, XPLANE, XREV, PART_STRIDE,
    NCOL: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_F: tl.constexpr,
    PRECISION: tl.constexpr, ALIGN: tl.constexpr,
):
    """Taps gradient of the folded convolution (v2; deterministic, no atomics): for the
    centre and right-half taps hk + j, j in [0, hk], of one filter block,

        dh_re[hk + j] = sum_{b, m} D_re[b, f, m] S[b, m, j]   (S = x[c + j] + x[c - j],
        dh_im[hk + j] = sum_{b, m} D_im[b, f, m] D[b, m, j]    D = x[c + j] - x[c - j], c = m s)

    halved at j = 0 for the real part and zero there for the imaginary one: the gradient
    with respect to the taps :func:`_fold_tile` reads (the left halves get none: the packing's
    gradient sees the symmetric taps through their right halves).

    Grid (cdiv(max hk + 1, BLOCK_K), filter blocks, SPLIT): program (pid_j, fb, pid_s) reduces
    the items (b, block of ROWS convolution rows) it = pid_s, pid_s + SPLIT, ... < NB
    cdiv(N, ROWS) in registers (tl.dot over BLOCK_M rows) and stores its sums to
    ``part + pid_s * PART_STRIDE`` at the packed taps' offsets; the host sums the SPLIT
    partials in a fixed order. xq: the x planes (see ``_gabor_fwd_kernel``'s FOLD).
    """
    pid_j = tl.program_id(0)
    fb = tl.program_id(1)
    pid_s = tl.program_id(2)
    (_, nb, s, _, K, _, tap_re, tap_im, _, grp, loc, n) = _block_row(
        tab_ptr, geo_ptr, fb, NCOL)
    hk = K // 2
    j0 = pid_j * BLOCK_K
    if j0 > hk:
        return
    N = (L - 1) // s + 1
    n_rb = tl.cdiv(N, ROWS)
    fo = tl.arange(0, BLOCK_F)
    fmask = fo < nb
    j = j0 + tl.arange(0, BLOCK_K)
    mm = tl.arange(0, BLOCK_M)
    d_base = tl.load(base_ptr + grp * 2)
    nN = n.to(tl.int64) * N
    d_f = d_ptr + d_base + (loc + fo)[:, None].to(tl.int64) * N
    acc_r = tl.zeros((BLOCK_F, BLOCK_K), dtype=tl.float32)
    acc_i = tl.zeros((BLOCK_F, BLOCK_K), dtype=tl.float32)
    for it in range(pid_s, NB * n_rb, SPLIT):
        b = (it // n_rb).to(tl.int64)
        r_lo = (it % n_rb) * ROWS
        r_hi = tl.minimum(r_lo + ROWS, N)
        xq_b = xq_ptr + b * stride_xb
        d_b = d_f + b * (2 * nN)
        for m0 in range(r_lo, r_hi, BLOCK_M):
            m = m0 + mm
            rvalid = m < r_hi
            dmask = fmask[:, None] & rvalid[None, :]
            dr = tl.load(d_b + m[None, :], mask=dmask, other=0.)
            di = tl.load(d_b + nN + m[None, :], mask=dmask, other=0.)
            right, left = _fold_rows(XPLANE, XREV, tl.where(rvalid, m * s, 0), ALIGN)
            xs, xd = _fold_operands(xq_b, right, left, rvalid, j, ALIGN, PRECISION == 'tf32')
            acc_r = tl.dot(dr, xs, acc_r, input_precision=PRECISION)
            acc_i = tl.dot(di, xd, acc_i, input_precision=PRECISION)
    centre = (j == 0)[None, :]
    hoff = fo[:, None] * K + (hk + j)[None, :]
    hmask = fmask[:, None] & (j <= hk)[None, :]
    part = part_ptr + pid_s.to(tl.int64) * PART_STRIDE
    tl.store(part + tap_re + hoff, tl.where(centre, acc_r * 0.5, acc_r), mask=hmask)
    tl.store(part + tap_im + hoff, tl.where(centre, 0., acc_i), mask=hmask)


@triton.jit
def _gabor_bwd_input_kernel(
    taps_ptr, d_ptr, dx_ptr, tab_ptr, geo_ptr, base_ptr,
    L, stride_dxb, N_FB,
    NCOL: tl.constexpr, BLOCK_I: tl.constexpr, BLOCK_F: tl.constexpr,
    LOOP_FB: tl.constexpr = False,
):
    """dx[b, i] += sum_c sum_m D[b, c, m] h_c[i + K//2 - m s] over one filter block (input
    gradient of the strided conv1d, transposed by gathers: m = (i + K//2) // s - q).

    Grid (cdiv(L, BLOCK_I), filter blocks, Bc); dx fp32 (Bc, L) accumulated atomically. With
    LOOP_FB (v2, deterministic), grid (cdiv(L, BLOCK_I), 1, Bc): each program sums all N_FB
    filter blocks in order and stores dx (no atomics).
    """
    pid_i = tl.program_id(0)
    b = tl.program_id(2).to(tl.int64)
    if LOOP_FB:
        fb_lo = 0
        fb_hi = N_FB
    else:
        fb_lo = tl.program_id(1)
        fb_hi = fb_lo + 1
    i = pid_i * BLOCK_I + tl.arange(0, BLOCK_I)
    imask = i < L
    fo = tl.arange(0, BLOCK_F)
    total = tl.zeros((BLOCK_I,), dtype=tl.float32)
    for fb in range(fb_lo, fb_hi):
        (_, nb, s, _, K, _, tap_re, tap_im, _, grp, loc, n) = _block_row(
            tab_ptr, geo_ptr, fb, NCOL)
        N = (L - 1) // s + 1
        hk = K // 2
        fmask = fo < nb
        d_base = tl.load(base_ptr + grp * 2)
        nN = n.to(tl.int64) * N
        d_b = d_ptr + d_base + b * (2 * nN) + (loc + fo)[None, :].to(tl.int64) * N
        m_hi = (i + hk) // s
        acc = tl.zeros((BLOCK_I, BLOCK_F), dtype=tl.float32)
        for q in range(0, (K + s - 1) // s):
            m = m_hi - q
            jt = i + hk - m * s
            ok = imask & (m >= 0) & (m < N) & (jt < K)
            okf = ok[:, None] & fmask[None, :]
            dr = tl.load(d_b + m[:, None], mask=okf, other=0.)
            di = tl.load(d_b + nN + m[:, None], mask=okf, other=0.)
            hoff = fo[None, :] * K + jt[:, None]
            hr = tl.load(taps_ptr + tap_re + hoff, mask=okf, other=0.)
            hi = tl.load(taps_ptr + tap_im + hoff, mask=okf, other=0.)
            acc += dr * hr + di * hi
        total += tl.sum(acc, axis=1)
    if LOOP_FB:
        tl.store(dx_ptr + b * stride_dxb + i, total, mask=imask)
    else:
        tl.atomic_add(dx_ptr + b * stride_dxb + i, total, mask=imask, sem='relaxed')


@triton.jit
def _gabor_planes_kernel(x_ptr, planes_ptr, L, stride_xb, stride_xl, XPLANE, XREV,
                         ALIGN: tl.constexpr, BLOCK: tl.constexpr):
    """The x planes of the v2 kernels (:func:`eleaf.ops.gabor.x_planes`), every element
    written: planes[b, a, i] = x[b, i + a], planes[b, ALIGN + a, i] = x[b, XREV - a - i]
    (zero outside [0, L)). Grid (cdiv(XPLANE, BLOCK), B); planes (B, 2 ALIGN, XPLANE)."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    b = tl.program_id(1).to(tl.int64)
    inside = i < XPLANE
    x_b = x_ptr + b * stride_xb
    out = planes_ptr + b * (2 * ALIGN * XPLANE) + i
    for a in tl.static_range(ALIGN):
        fwd = i + a
        rev = XREV - a - i
        v = tl.load(x_b + fwd.to(tl.int64) * stride_xl, mask=inside & (fwd >= 0) & (fwd < L),
                    other=0.)
        tl.store(out + a * XPLANE, v, mask=inside)
        v = tl.load(x_b + rev.to(tl.int64) * stride_xl, mask=inside & (rev >= 0) & (rev < L),
                    other=0.)
        tl.store(out + (ALIGN + a) * XPLANE, v, mask=inside)


# kinds of partial sums reduced by _gabor_sum_partials_kernel, and the columns of its int32
# per-group table (static: offsets and sizes of the group's regions in the packed layouts)
SUM_TAPS = 0          # taps gradient, every tap of each filter's 2 rows
SUM_TAPS_FOLDED = 1   # folded taps gradient: centre and right half (no imaginary centre)
SUM_WINDOWS = 2       # window gradient
GTAB_NCOL = 5         # n, taps offset, taps region size, windows offset, windows region size


@triton.jit
def _gabor_sum_partials_kernel(part_ptr, out_ptr, gtab_ptr, geo_ptr, SPLIT, PART_STRIDE, ACC,
                               KIND: tl.constexpr, BLOCK: tl.constexpr):
    """out[p] = (out[p] if ACC else 0) + sum_{s = 0 ... SPLIT - 1} part[s, p] over the
    positions p of a packed layout (taps or windows) that the partial-sum kernels write (the
    group's actual rows of K or W taps, per ``KIND``), and out[p] = 0 (or unchanged with ACC)
    elsewhere in the group's region: a deterministic reduction (fixed order, no atomics)
    that leaves no element of ``out`` unwritten, so the partials need no zero fill.

    Grid (cdiv(largest region, BLOCK), G). ``gtab``: int32 (G, GTAB_NCOL); ``geo``: (G, 4).
    """
    g = tl.program_id(1)
    p = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    row = gtab_ptr + g * 5
    n = tl.load(row)
    if KIND == 2:
        off = tl.load(row + 3)
        size = tl.load(row + 4)
        W = tl.load(geo_ptr + g * 4 + 3)
        valid = p < n * W
    else:
        off = tl.load(row + 1)
        size = tl.load(row + 2)
        K = tl.load(geo_ptr + g * 4 + 2)
        valid = p < 2 * n * K
        if KIND == 1:
            hk = K // 2
            k = p % K
            valid = valid & (k >= hk) & ~((p >= n * K) & (k == hk))
    inside = p < size
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for sp in range(0, SPLIT):
        acc += tl.load(part_ptr + sp * PART_STRIDE + off + p, mask=inside & valid, other=0.)
    if ACC:
        acc += tl.load(out_ptr + off + p, mask=inside, other=0.)
    tl.store(out_ptr + off + p, acc, mask=inside)
