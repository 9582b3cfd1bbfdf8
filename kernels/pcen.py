"""PCEN Triton kernels: forward and backward of per-channel energy normalisation.

Reference: :func:`eleaf.functional.pcen_ref` (SPEC §6), on *effective* parameters::

    xc  = max(x, clamp)                                  (optional input clamp)
    M_t = (1 - s) M_{t-1} + s xc_t,   M_0 = xc_0         (smoother along time)
    y_t = (xc_t (M_t + eps)^-alpha + delta)^r - delta^r
    ((M_t + eps)^-alpha as exp((1 - alpha) log(M_t + eps)) / (M_t + eps), see _pcen_point)

Layout: x is (R, T) contiguous with R = prod(leading) * F rows, band f = row % F. One program
owns ``BLOCK_B`` rows of ONE band (rows ``b * F + f`` for a block of b), so s, alpha, delta, r
are scalars per program; grid = (cdiv(R / F, BLOCK_B), F).

Time is processed in chunks of ``BLOCK_T`` frames. Because the recursion coefficient
``a = 1 - s`` is the same for every row of a program, the within-chunk scan is a product with
a (BLOCK_T, BLOCK_T) triangular Toeplitz matrix of powers of ``a`` (``tl.dot``)::

    M[:, k] = M_in + sum_{j <= k} a^(k - j) s (xc[:, j] - M_in)     (M = M_in + (s (xc - M_in)) @ WT)

carried across chunks by ``M_in`` (the last M of the previous chunk). Working on deviations
from ``M_in`` (exact: the weights sum to 1 - a^(k+1)) keeps the rounding of ``a = 1 - s`` and
of its powers, a systematic error, proportional to |x - M| rather than |x|; that is what keeps
the gradient of s within ~1e-6 in float32 over 6000 frames (~1e-5 otherwise). Setting the
virtual ``M_{-1} = xc_0`` makes the recursion uniform from t = 0 (``M_0 = xc_0``).
The adjoint scan of the backward, ``G_t = c_t + a G_{t+1}`` with ``c_t = dL/dy_t * dy_t/dM_t``,
is the transposed product ``G = c @ W + a^(BLOCK_T - k) G_next``, run over chunks in reverse,
so no flip and no ``reverse=`` scan is needed. The dots run with ``input_precision="ieee"``
(full fp32; TF32 would lose 3 decimal digits). The powers are built by repeated squaring, so
any real ``a`` (also s outside [0, 1]) is handled like the reference does.

The forward stores M at the end of every chunk (``carries``, (R, NC), NC = cdiv(T, BLOCK_T)),
so the backward recomputes M_{t-1} of each chunk from its carry (one dot) and M from it
(``M_t = M_{t-1} + s (xc_t - M_{t-1})``) instead of saving per-frame state; its second dot
is the adjoint scan. The backward writes dx and per-program partial sums of the parameter
gradients (reduced per band on the host; deterministic, no atomics).

Math: ``y`` is evaluated as ``delta^r expm1(r log1p(u))`` with ``u = xc (M + eps)^-alpha / delta``
(no cancellation for small u, where ``z^r - delta^r`` loses all digits in fp32). ``log1p`` /
``expm1`` / ``exp`` / ``log`` use libdevice on the GPU (``LIBDEVICE=True``; Triton's plain fp32
``tl.exp``/``tl.log`` lower to approximate PTX instructions) and Kahan's tricks on top of
``tl.log``/``tl.exp`` in the interpreter (which has no libdevice; numpy is exact there).

Compute dtype: the dtype of the parameter pointers (float32, or float64 for tests); x, the
incoming gradient and the outputs may be float16/bfloat16/float32/float64 and are converted.
"""
import triton
import triton.language as tl

try:  # Triton >= 3.0
    from triton.language.extra import libdevice
except ImportError:  # pragma: no cover - older layout
    try:
        from triton.language.extra.cuda import libdevice
    except ImportError:
        libdevice = None

__all__ = ['_pcen_fwd_kernel', '_pcen_bwd_kernel', 'HAVE_LIBDEVICE']

HAVE_LIBDEVICE = libdevice is not None


@triton.jit
def _exp(x, LIBDEVICE: tl.constexpr):
    if LIBDEVICE:
        out = libdevice.exp(x)
    else:
        out = tl.exp(x)
    return out


@triton.jit
def _log(x, LIBDEVICE: tl.constexpr):
    if LIBDEVICE:
        out = libdevice.log(x)
    else:
        out = tl.log(x)
    return out


@triton.jit
def _log1p(u, LIBDEVICE: tl.constexpr):
    """log(1 + u), accurate for small |u|."""
    if LIBDEVICE:
        out = libdevice.log1p(u)
    else:
        w = 1. + u
        d = w - 1.
        out = tl.where(d == 0., u, tl.log(w) * (u / tl.where(d == 0., 1., d)))
        out = tl.where(w == float('inf'), w, out)
    return out


@triton.jit
def _expm1(v, LIBDEVICE: tl.constexpr):
    """exp(v) - 1, accurate for small |v|."""
    if LIBDEVICE:
        out = libdevice.expm1(v)
    else:
        w = tl.exp(v)
        d = w - 1.
        lw = tl.log(w)
        small = tl.where(d == 0., v, d * (v / tl.where(d == 0., 1., lw)))
        out = tl.where(tl.abs(v) < 1., small, d)
    return out


@triton.jit
def _pow0(e):
    """0 ** e with torch semantics (1 for e == 0, 0 for e > 0, inf for e < 0)."""
    return tl.where(e > 0., 0., tl.where(e == 0., 1., float('inf')))


@triton.jit
def _int_pow(a, n, NBITS: tl.constexpr):
    """a ** n for a scalar a and an integer tensor 0 <= n < 2 ** NBITS (repeated squaring)."""
    out = tl.zeros(n.shape, a.dtype) + 1.
    sq = a
    for i in tl.static_range(NBITS):
        out = tl.where(((n >> i) & 1) != 0, out * sq, out)
        sq = sq * sq
    return out


@triton.jit
def _pcen_point(x, M, eps, alpha, delta, r, log_delta, delta_r, LIBDEVICE: tl.constexpr):
    """Per-frame quantities (y, L, sm, v, lz): the output y, L = log(M + eps),
    sm = (M + eps)^-alpha, v = x sm and lz = log1p(v / delta) (log(z / delta), z = v + delta).

    sm = exp((1 - alpha) L) / (M + eps) and v = (x / (M + eps)) exp((1 - alpha) L): the
    exponential's argument, and its rounding error, is |1 - alpha| L rather than alpha L
    (25x smaller for alpha = 0.96), and for alpha = 1 v is the correctly rounded quotient (TF
    LEAF's x / (M + floor)^alpha). For M + eps = inf, sm is exp(-alpha inf) as in the
    reference (0 for alpha > 0)."""
    Me = M + eps
    L = _log(Me, LIBDEVICE)
    w = _exp((1. - alpha) * L, LIBDEVICE)
    at_inf = Me == float('inf')
    sm_inf = tl.where(alpha > 0., 0., tl.where(alpha < 0., float('inf'), float('nan')))
    sm = tl.where(at_inf, sm_inf, w / Me)
    v = tl.where(at_inf, x * sm_inf, (x / Me) * w)
    pos = delta > 0.
    u = v / tl.where(pos, delta, 1.)
    lz = _log1p(u, LIBDEVICE)
    y = tl.where(pos, delta_r * _expm1(r * lz, LIBDEVICE),
                 tl.where(v > 0., _exp(r * _log(tl.where(v > 0., v, 1.), LIBDEVICE), LIBDEVICE),
                          _pow0(r)))
    return y, L, sm, v, lz


@triton.jit
def _pcen_fwd_kernel(x_ptr, y_ptr, carry_ptr, s_ptr, alpha_ptr, delta_ptr, r_ptr, eps_hi, eps_lo,
                     clamp_hi, clamp_lo, NB, F, T, NC,
                     HAS_CLAMP: tl.constexpr, SAVE_CARRY: tl.constexpr, LIBDEVICE: tl.constexpr,
                     BLOCK_B: tl.constexpr, BLOCK_T: tl.constexpr, NBITS: tl.constexpr):
    """PCEN forward.

    x_ptr, y_ptr: (NB * F, T) rows, contiguous; carry_ptr: (NB * F, NC) M at each chunk's end
    (written when SAVE_CARRY); s/alpha/delta/r_ptr: (F,) effective parameters in the compute
    dtype; eps = eps_hi + eps_lo and clamp = clamp_hi + clamp_lo (float32 halves, exact in
    float64). Grid (cdiv(NB, BLOCK_B), F).
    """
    pid_b = tl.program_id(0)
    f = tl.program_id(1)
    s = tl.load(s_ptr + f)
    alpha = tl.load(alpha_ptr + f)
    delta = tl.load(delta_ptr + f)
    r = tl.load(r_ptr + f)
    dt = s.dtype
    zero = tl.zeros([], dt)
    eps = (zero + eps_hi) + eps_lo          # float64-exact from two float32 halves
    clamp = (zero + clamp_hi) + clamp_lo
    a = 1. - s
    log_delta = tl.where(delta > 0., _log(tl.where(delta > 0., delta, 1.), LIBDEVICE),
                         float('-inf'))
    delta_r = tl.where(delta > 0., _exp(r * log_delta, LIBDEVICE), _pow0(r))

    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = offs_b < NB
    rows = offs_b.to(tl.int64) * F + f
    x_row = x_ptr + rows * T
    kk = tl.arange(0, BLOCK_T)
    j2 = kk[:, None]
    k2 = kk[None, :]
    # WT[j, k] = a^(k - j) for j <= k: M = M_in + (s (xc - M_in)) @ WT
    WT = tl.where(j2 <= k2, _int_pow(a, tl.maximum(k2 - j2, 0), NBITS), 0.)

    x0 = tl.load(x_row, mask=bmask, other=0.).to(dt)
    if HAS_CLAMP:
        x0 = tl.where(x0 < clamp, clamp, x0)
    carry = x0  # virtual M_{-1} = xc_0, so that M_0 = xc_0
    for ci in range(0, NC):
        t = ci * BLOCK_T + kk
        m2 = bmask[:, None] & (t < T)[None, :]
        offs = rows[:, None] * T + t[None, :]
        x = tl.load(x_ptr + offs, mask=m2, other=0.).to(dt)
        if HAS_CLAMP:
            x = tl.where(x < clamp, clamp, x)
        # deviations from the carry keep the error of the powers of a (systematic: a = 1 - s
        # is rounded) proportional to |x - M_in| instead of |x|
        b = tl.where(m2, s * (x - carry[:, None]), 0.)
        M = carry[:, None] + tl.dot(b, WT, input_precision="ieee")
        carry = tl.sum(tl.where(k2 == BLOCK_T - 1, M, 0.), axis=1)
        if SAVE_CARRY:
            tl.store(carry_ptr + rows * NC + ci, carry, mask=bmask)
        y, L, sm, v, lz = _pcen_point(x, M, eps, alpha, delta, r, log_delta, delta_r, LIBDEVICE)
        tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=m2)


@triton.jit
def _pcen_bwd_kernel(g_ptr, x_ptr, carry_ptr, s_ptr, alpha_ptr, delta_ptr, r_ptr, eps_hi, eps_lo,
                     clamp_hi, clamp_lo, dx_ptr, part_ptr, NB, F, T, NC, NBB,
                     HAS_CLAMP: tl.constexpr, LIBDEVICE: tl.constexpr,
                     BLOCK_B: tl.constexpr, BLOCK_T: tl.constexpr, NBITS: tl.constexpr):
    """PCEN backward.

    g_ptr, x_ptr, dx_ptr: (NB * F, T); carry_ptr: (NB * F, NC) from the forward (same
    BLOCK_T); part_ptr: (4, F, NBB) per-program partial sums of dL/d(s, alpha, delta, r),
    NBB = cdiv(NB, BLOCK_B). Grid (NBB, F). Chunks are visited last to first, carrying
    G = dL/dM (total) backwards.
    """
    pid_b = tl.program_id(0)
    f = tl.program_id(1)
    s = tl.load(s_ptr + f)
    alpha = tl.load(alpha_ptr + f)
    delta = tl.load(delta_ptr + f)
    r = tl.load(r_ptr + f)
    dt = s.dtype
    zero = tl.zeros([], dt)
    eps = (zero + eps_hi) + eps_lo          # float64-exact from two float32 halves
    clamp = (zero + clamp_hi) + clamp_lo
    a = 1. - s
    log_delta = tl.where(delta > 0., _log(tl.where(delta > 0., delta, 1.), LIBDEVICE),
                         float('-inf'))
    pos = delta > 0.
    delta_r = tl.where(pos, _exp(r * log_delta, LIBDEVICE), _pow0(r))
    # r delta^(r - 1) for delta > 0 (torch's pow semantics at delta = 0)
    rdr1 = tl.where(pos, r * _exp((r - 1.) * log_delta, LIBDEVICE), r * _pow0(r - 1.))

    offs_b = pid_b * BLOCK_B + tl.arange(0, BLOCK_B)
    bmask = offs_b < NB
    rows = offs_b.to(tl.int64) * F + f
    x_row = x_ptr + rows * T
    kk = tl.arange(0, BLOCK_T)
    j2 = kk[:, None]
    k2 = kk[None, :]
    WsT = tl.where(j2 < k2, _int_pow(a, tl.maximum(k2 - j2 - 1, 0), NBITS), 0.)   # a^(k-1-j)
    W = tl.where(j2 >= k2, _int_pow(a, tl.maximum(j2 - k2, 0), NBITS), 0.)        # a^(j-k)
    pbk = _int_pow(a, BLOCK_T - kk, NBITS)

    x0 = tl.load(x_row, mask=bmask, other=0.).to(dt)
    if HAS_CLAMP:
        x0 = tl.where(x0 < clamp, clamp, x0)
    Gc = tl.zeros([BLOCK_B], dt)
    acc_s = tl.zeros([BLOCK_B], dt)
    acc_a = tl.zeros([BLOCK_B], dt)
    acc_d = tl.zeros([BLOCK_B], dt)
    acc_r = tl.zeros([BLOCK_B], dt)
    for i in range(0, NC):
        ci = NC - 1 - i
        t = ci * BLOCK_T + kk
        m2 = bmask[:, None] & (t < T)[None, :]
        offs = rows[:, None] * T + t[None, :]
        cin = tl.load(carry_ptr + rows * NC + tl.maximum(ci - 1, 0), mask=bmask, other=0.)
        cin = tl.where(ci > 0, cin, x0)
        xr = tl.load(x_ptr + offs, mask=m2, other=0.).to(dt)
        x = xr
        if HAS_CLAMP:
            x = tl.where(xr < clamp, clamp, xr)
        d = x - cin[:, None]
        b = tl.where(m2, s * d, 0.)
        Dp = tl.dot(b, WsT, input_precision="ieee")           # M_{t-1} - M_in
        xmp = d - Dp                                           # x_t - M_{t-1}
        M = cin[:, None] + (Dp + s * xmp)                      # M_t = M_{t-1} + s (x_t - M_{t-1})
        g = tl.load(g_ptr + offs, mask=m2, other=0.).to(dt)
        y, L, sm, v, lz = _pcen_point(x, M, eps, alpha, delta, r, log_delta, delta_r, LIBDEVICE)
        logz = tl.where(pos, log_delta + lz, _log(tl.where(v > 0., v, 1.), LIBDEVICE))
        nz = (v > 0.) | ((tl.zeros_like(v) + delta) > 0.)
        q = r * tl.where(nz, _exp((r - 1.) * logz, LIBDEVICE), _pow0(r - 1.))     # dy/dz
        zr = tl.where(nz, _exp(r * logz, LIBDEVICE), _pow0(r))                    # z^r
        dM = -alpha * q * v / (M + eps)
        c = tl.where(m2, g * dM, 0.)
        G = tl.dot(c, W, input_precision="ieee") + pbk[None, :] * Gc[:, None]
        Gc = tl.sum(tl.where(k2 == 0, G, 0.), axis=1)
        dxc = g * q * sm + G * tl.where(t[None, :] == 0, 1., s)
        if HAS_CLAMP:
            dxc = tl.where(xr >= clamp, dxc, 0.)
        tl.store(dx_ptr + offs, dxc.to(dx_ptr.dtype.element_ty), mask=m2)
        d_delta = tl.where(pos, rdr1 * _expm1((r - 1.) * lz, LIBDEVICE), q - rdr1)
        d_r = tl.where(pos, log_delta * y + zr * lz, tl.where(v > 0., zr * logz, 0.))
        acc_s += tl.sum(tl.where(m2, G * xmp, 0.), axis=1)
        acc_a += tl.sum(tl.where(m2, -g * q * v * L, 0.), axis=1)
        acc_d += tl.sum(tl.where(m2, g * d_delta, 0.), axis=1)
        acc_r += tl.sum(tl.where(m2, g * d_r, 0.), axis=1)
    stride = F * NBB
    base = part_ptr + f * NBB + pid_b
    tl.store(base, tl.sum(tl.where(bmask, acc_s, 0.), axis=0))
    tl.store(base + stride, tl.sum(tl.where(bmask, acc_a, 0.), axis=0))
    tl.store(base + 2 * stride, tl.sum(tl.where(bmask, acc_d, 0.), axis=0))
    tl.store(base + 3 * stride, tl.sum(tl.where(bmask, acc_r, 0.), axis=0))
