"""Fused Triton grouped Gabor filterbank: host functions, custom op and backend registration.

Reference: :func:`eleaf.functional.grouped_gabor_filterbank_ref` (same signature and
semantics as :func:`gabor_filterbank_triton`). Kernels: ``eleaf.kernels.gabor``.

Letters: B batch, F filters, L input samples, T output frames, K Gabor taps, W pooling taps,
s conv stride, P pooling stride, N = (L - 1) // s + 1 convolution steps of a group.

Precision: float32 inputs are computed in float32. The one switch is
``torch.set_float32_matmul_precision``: ``'highest'`` (PyTorch's default) makes every tl.dot
run with ``input_precision='ieee'`` (full fp32), ``'high'`` or ``'medium'`` allows TF32
tensor cores (``input_precision='tf32'``; x, the taps and the conv-output gradient are first
rounded to the nearest TF32 value like cuBLAS and cuDNN do, about 2e-4 relative error,
instead of the tensor cores' truncation and its -1e-3 bias). float16/bfloat16 inputs
use low-precision tl.dot (taps cast to the input dtype) with float32 accumulation; the output
is in the input dtype, the gradients of the taps and windows are float32. float64 is not
supported (the registry runs the reference for it).

Kernels: ``ELEAF_GABOR_KERNELS=v2`` (default) folds the taps' symmetry and reduces
deterministically; ``v1`` runs the kernels before 2026-12-07 (see :mod:`eleaf.kernels.gabor`),
kept until a GPU has timed both (``bash bench/gpu_session.sh``).

Memory: the forward never writes the (B, 2F, N) convolution output; autograd saves only x
and the packed taps and windows. The backward recomputes the convolution into a scratch
buffer bounded by ``ELEAF_GABOR_SCRATCH_MB`` (default 256 MiB) by processing the batch in
chunks. Setting ``ELEAF_DEBUG_POISON=1`` fills outputs and scratch with NaN before the
kernels write them (a test aid: unwritten elements show up as NaN).
"""
import os
from typing import List, NamedTuple, Optional, Sequence, Tuple

import torch

from ..functional.gabor import GroupGeometry, gabor_taps_padded
from ..functional.geometry import GeometryCaps, group_geometry_tensor
from ..functional.pooling import gauss_windows_padded
from .backends import register_impl, use_custom_ops
from .gabor_plan import (LAUNCH, Plan, alloc, caps_layout, kernel_version, layout_plan,
                         on_device, parse_layout, plan, static_layout)

try:
    import triton

    from ..kernels.gabor import (NCOL, SUM_TAPS, SUM_TAPS_FOLDED, SUM_WINDOWS,
                                 _gabor_bwd_input_kernel, _gabor_bwd_rows_kernel,
                                 _gabor_bwd_taps_fold_kernel, _gabor_bwd_taps_kernel,
                                 _gabor_bwd_window_kernel, _gabor_bwd_window_loop_kernel,
                                 _gabor_fwd_kernel, _gabor_planes_kernel,
                                 _gabor_sum_partials_kernel)
    from .gabor_pack import GaborPack, geometry_fwd
    HAS_TRITON = True
    _IMPORT_ERROR = None
except Exception as _exc:  # ImportError, or a broken Triton installation
    HAS_TRITON = False
    _IMPORT_ERROR = _exc

__all__ = ['gabor_filterbank_triton', 'grouped_gabor_filterbank_triton', 'gabor_fwd',
           'gabor_bwd', 'static_layout', 'caps_layout', 'static_geometry', 'pack_taps',
           'pack_taps_ref', 'HAS_TRITON', 'LAUNCH', 'kernel_version', 'x_planes', 'align_for',
           'x_plane_length', 'XOperand', 'VECTOR_BYTES']

_LOWP = (torch.float16, torch.bfloat16)
_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)


def _cfg_key(x: torch.Tensor) -> str:
    if x.device.type != 'cuda':
        return 'interpreter'
    return 'cuda' if (_precision() == 'ieee' and not _lowp(x)) else 'cuda_tf32'


def static_geometry(geometry: Sequence[GroupGeometry], device: torch.device
                    ) -> Tuple[torch.Tensor, List[int]]:
    """(geometry tensor, layout) of a fixed geometry on ``device`` (the tensor is cached in
    the layout's plan: copied to the device once)."""
    layout = static_layout(geometry)
    return layout_plan(layout, torch.device(device)).static_geo, layout


def _lowp(x: torch.Tensor) -> bool:
    """Low-precision tl.dot for fp16/bf16 x. The Triton interpreter (3.9) multiplies the raw
    bits of bfloat16 operands in tl.dot, so there bf16 tiles are upcast to fp32 instead."""
    if x.dtype == torch.bfloat16 and not x.is_cuda:
        return False
    return x.dtype in _LOWP


def _precision() -> str:
    """'ieee' under ``torch.get_float32_matmul_precision() == 'highest'``, else 'tf32'."""
    return 'ieee' if torch.get_float32_matmul_precision() == 'highest' else 'tf32'


def _round_tf32(t: torch.Tensor) -> torch.Tensor:
    """float32 -> nearest TF32 value (ties away from zero), in float32: the operands of the
    tf32 tl.dot (the tensor cores would truncate them)."""
    i = t.contiguous().view(torch.int32)
    return ((i + 0x1000).bitwise_and_(-0x2000)).view(torch.float32)


def _dot_operands(x: torch.Tensor, taps: torch.Tensor, cfg: dict, fold: bool = False):
    """x and taps as the kernels' tl.dot reads them (rounded to TF32 for tf32 dots; with
    ``fold`` (v2) x stays as it is: the kernels round their sums of x)."""
    if _precision() == 'tf32' and x.dtype == torch.float32 and cfg.get('tf32_round', True):
        return (x if fold else _round_tf32(x)), _round_tf32(taps)
    return x, taps


#: v2 kernels: x is read in aligned vectors of this many bytes
VECTOR_BYTES = 8


def align_for(dtype: torch.dtype) -> int:
    """Elements per aligned vector load of x (``ALIGN``): 2 for float32, 4 for float16 and
    bfloat16 (:data:`VECTOR_BYTES` each)."""
    return max(1, VECTOR_BYTES // torch.empty((), dtype=dtype).element_size())


class XOperand(NamedTuple):
    """x as a filterbank launch reads it: ``t`` (B, ...) and its batch stride; for the v2
    kernels that fold (``fold``) the x planes of :func:`x_planes` with their length
    ``plane`` (XPLANE), the reversed planes' origin ``rev`` (XREV) and ``align`` (ALIGN);
    for the others x itself (0, 0, 1)."""
    t: torch.Tensor
    stride_b: int
    plane: int
    rev: int
    align: int
    fold: bool


def x_plane_length(L: int, kmax: int, block_k: int, align: int) -> int:
    """XPLANE of :func:`x_planes`: the reversed planes' origin XREV = L - 1 + align plus
    room for taps up to ``kmax // 2 + block_k`` past a row's centre, a multiple of 16."""
    return -(-(L + align + kmax // 2 + block_k + align) // 16) * 16


def x_planes(x: torch.Tensor, kmax: int, block_k: int, block: int = 1024) -> XOperand:
    """The x operand of the v2 kernels (:func:`eleaf.kernels.gabor._fold_tile`), ALIGN =
    :func:`align_for` (x's dtype): planes (B, 2 ALIGN, XPLANE) in x's dtype, zero-padded,

    - plane a < ALIGN: x shifted by a, ``planes[b, a, i] = x[b, i + a]``;
    - plane ALIGN + a: x reversed and shifted, ``planes[b, ALIGN + a, i] = x[b, XREV - a - i]``;

    so the samples x[c + j] and x[c - j], j = 0, 1, ... of a row centred on c are contiguous
    and ALIGN-aligned in one plane each, whatever c (x[c - j] forwards in a reversed plane).
    The padding covers taps up to ``kmax // 2 + block_k`` past a centre. One kernel
    (``_gabor_planes_kernel``, ``block`` elements per program), one pass over x writing
    2 ALIGN copies (16 bytes per sample): a few microseconds on a GPU against the
    convolution's milliseconds.
    """
    B, _, L = x.shape
    align = align_for(x.dtype)
    xrev = L - 1 + align
    xplane = x_plane_length(L, kmax, block_k, align)
    planes = alloc((B, 2 * align, xplane), x.dtype, x.device)
    if B:
        with on_device(x):
            _gabor_planes_kernel[(triton.cdiv(xplane, block), B)](
                x, planes, L, x.stride(0), x.stride(2), xplane, xrev,
                ALIGN=align, BLOCK=block, num_warps=4)
    return XOperand(planes, planes.stride(0), xplane, xrev, align, True)


def _sum_partials(p: Plan, part: torch.Tensor, out: torch.Tensor, geo: torch.Tensor,
                  kind: int, acc: bool):
    """``out`` = (out if ``acc`` else 0) + the sum of the partials ``part`` (SPLIT, numel)
    over their rows in a fixed order, zero where no partial is written (see
    ``_gabor_sum_partials_kernel``): bitwise reproducible."""
    block = p.cfg['elementwise_block']
    _gabor_sum_partials_kernel[(triton.cdiv(p.region_max, block), p.G)](
        part, out, p.gtab, geo, part.shape[0], part.stride(0), int(acc),
        KIND=kind, BLOCK=block, num_warps=4)


def _x_operand(x: torch.Tensor, p: Plan, block_k: int) -> XOperand:
    """x as the plan's kernels read it: the x planes when the plan folds (v2), else x."""
    if not p.fold:
        return XOperand(x, x.stride(0), 0, 0, 1, False)
    return x_planes(x, p.kmax, block_k, p.cfg['elementwise_block'])


def _check_deterministic(x: torch.Tensor, p: Plan, what: str):
    """Under ``torch.use_deterministic_algorithms(True)``, a CUDA backward that would reduce
    with atomic adds raises (or warns, with ``warn_only=True``), as PyTorch's own ops do."""
    if not (x.is_cuda and torch.are_deterministic_algorithms_enabled()):
        return
    msg = ('eleaf::gabor_pool_bwd: %s uses atomic adds, its gradients are not bitwise '
           'reproducible; torch.use_deterministic_algorithms(True) is set. %s' % (
               what, 'Unset ELEAF_GABOR_KERNELS=v1 (the v2 kernels are deterministic).'
               if p.version == 'v1' else 'Only this configuration takes that path.'))
    if torch.is_deterministic_algorithms_warn_only_enabled():
        import warnings
        warnings.warn(msg)
    else:
        raise RuntimeError(msg)


def _geometry(geo: Optional[torch.Tensor], p: Plan) -> torch.Tensor:
    """The geometry tensor: as given, or a static layout's own (None)."""
    if geo is None:
        if p.static_geo is None:
            raise ValueError('a computed-geometry layout needs its geometry tensor')
        return p.static_geo
    return geo


def _check_inputs(x: torch.Tensor, taps: torch.Tensor, windows: torch.Tensor, geo: torch.Tensor,
                  plan: Plan):
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError('x must be (B, 1, L), got %s' % (tuple(x.shape),))
    if x.dtype not in _SUPPORTED:
        raise TypeError('gabor_pool supports float32/float16/bfloat16 x, got %s' % x.dtype)
    if taps.dtype != torch.float32 or windows.dtype != torch.float32:
        raise TypeError('packed taps and windows must be float32')
    if taps.numel() != plan.taps_numel or windows.numel() != plan.win_numel:
        raise ValueError('packed taps/windows hold %d/%d values, the geometry needs %d/%d'
                         % (taps.numel(), windows.numel(), plan.taps_numel, plan.win_numel))
    if x.shape[2] < 1:
        raise ValueError('x needs at least one sample')
    if geo.dtype != torch.int32 or tuple(geo.shape) != (plan.G, 4) or geo.device != x.device:
        raise ValueError('geo must be an int32 (%d, 4) tensor on %s, got %s %s on %s'
                         % (plan.G, x.device, geo.dtype, tuple(geo.shape), geo.device))


def _check_shift(pool_shift: int, plan: Plan):
    """A static check against the window caps; a shift must also fit the actual windows of a
    computed geometry (only the TF port, whose geometry is static, shifts)."""
    if not -(plan.wmin // 2) <= int(pool_shift) <= 0:
        raise ValueError('pool_shift must be in [-(W//2), 0] = [%d, 0], got %r'
                         % (-(plan.wmin // 2), pool_shift))


def gabor_fwd(x: torch.Tensor, taps: torch.Tensor, windows: torch.Tensor,
              geo: Optional[torch.Tensor], layout: Sequence[int], pool_shift: int = 0
              ) -> torch.Tensor:
    """Fused forward: per group strided Gabor conv, squared modulus, Gaussian pooling.

    Args:
        x (Tensor): (B, 1, L) waveform, float32/float16/bfloat16, any strides.
        taps (Tensor): packed float32 Gabor taps: per group, at its offset, the (2n, K) matrix
            of :func:`eleaf.functional.gabor_kernel` flattened (see :func:`pack_taps`).
        windows (Tensor): packed float32 windows: per group the (n, W) matrix of
            :func:`eleaf.functional.gauss_windows` flattened.
        geo (Tensor or None): int32 (G, 4) ``[s, P, K, W]`` per group, on x's device (read
            by the kernels; never copied to the host); None for a static layout (its own).
        layout (list of int): the static layout (:mod:`eleaf.ops.gabor_plan`).
        pool_shift (int): the pooling's left zero padding is ``W//2 + pool_shift`` (0: windows
            centred on the frames; TF LEAF's 'SAME' pooling: see
            :func:`tf_gabor_filterbank_triton`), ``-(W//2) <= pool_shift <= 0``.
    Returns:
        Tensor: (B, F, T) in x's dtype, T = (L - 1) // hop + 1.
    """
    p = plan(layout, x.device, _cfg_key(x))
    geo = _geometry(geo, p)
    _check_shift(pool_shift, p)
    _check_inputs(x, taps, windows, geo, p)
    B, _, L = x.shape
    T = (L - 1) // p.hop + 1
    out = alloc((B, p.F, T), x.dtype, x.device)
    if B == 0:
        return out
    taps, windows = taps.contiguous(), windows.contiguous()
    lowp = _lowp(x)
    x, taps = _dot_operands(x, taps, p.cfg, fold=p.fold)
    block_u, step = p.fwd_tile(T)
    xo = _x_operand(x, p, p.cfg['fwd_block_k'])
    grid = (triton.cdiv(T, step), p.n_fb, B)
    with on_device(x):
        _gabor_fwd_kernel[grid](
            xo.t, taps, windows, out, p.tab, geo,
            L, T, step, xo.stride_b, x.stride(2),
            out.stride(0), out.stride(1), out.stride(2), int(pool_shift), xo.plane, xo.rev,
            NCOL=NCOL, BLOCK_U=block_u, BLOCK_K=p.cfg['fwd_block_k'],
            BLOCK_F=p.block_f, SHIFTS=p.fwd_shifts, LOWP=lowp,
            PRECISION=_precision(), FOLD=xo.fold, ALIGN=xo.align,
            num_warps=p.cfg['fwd_warps'], num_stages=p.cfg['fwd_stages'])
    return out


def _scratch_budget() -> int:
    return int(float(os.environ.get('ELEAF_GABOR_SCRATCH_MB', '256')) * 2**20)


def _window_grad(plan: Plan, g: torch.Tensor, ebuf: torch.Tensor, dwin: torch.Tensor,
                 geo: torch.Tensor, bases: torch.Tensor, L: int, T: int, nb: int, pool_shift: int,
                 acc: bool = True):
    """Window gradient of one batch chunk from the E scratch, added to ``dwin`` (phase-split
    kernel, or the per-tap fallback when the shifts QMAX leave too few registers). v2: the
    programs store partial sums, summed here in a fixed order (deterministic) into ``dwin``
    (overwritten unless ``acc``)."""
    cfg, bf = plan.cfg, plan.block_f
    if plan.win_block_r is None:
        _check_deterministic(g, plan, 'the per-tap window-gradient kernel (a window spanning '
                             'more than %d hops)' % plan.qmax)
        _gabor_bwd_window_loop_kernel[(triton.cdiv(T, cfg['win_block_t']), plan.n_fb, nb)](
            g, ebuf, dwin, plan.tab, geo, bases,
            L, T, g.stride(0), g.stride(1), g.stride(2), pool_shift,
            NCOL=NCOL, BLOCK_T=cfg['win_block_t'], BLOCK_F=bf, num_warps=cfg['warps'])
        return
    n_r, split = plan.window_split(nb, T)
    atomic = plan.version == 'v1'
    part = dwin if atomic else alloc((split, dwin.numel()), torch.float32, dwin.device)
    _gabor_bwd_window_kernel[(n_r, plan.n_fb, split)](
        g, ebuf, part, plan.tab, geo, bases,
        L, T, nb, split, g.stride(0), g.stride(1), g.stride(2), pool_shift, dwin.numel(),
        NCOL=NCOL, BLOCK_U=plan.win_block_u, BLOCK_R=plan.win_block_r, BLOCK_F=bf,
        QMAX=plan.fwd_qmax, ATOMIC=atomic, num_warps=cfg['win_warps'])
    if not atomic:
        _sum_partials(plan, part, dwin, geo, SUM_WINDOWS, acc)


def _taps_grad_fold(p: Plan, xo: XOperand, dbuf, dtaps, geo, bases, L: int, nb: int,
                    prec: str, acc: bool):
    """Taps gradient of one batch chunk (v2, ``_gabor_bwd_taps_fold_kernel``) into ``dtaps``
    (added unless the first chunk): SPLIT programs per taps chunk and filter block store
    partial sums, summed in a fixed order (no atomics: bitwise reproducible)."""
    cfg = p.cfg
    n_j, split = p.taps_fold_split(nb, L)
    part = alloc((split, dtaps.numel()), torch.float32, dtaps.device)
    _gabor_bwd_taps_fold_kernel[(n_j, p.n_fb, split)](
        xo.t, dbuf, part, p.tab, geo, bases,
        L, nb, split, cfg['taps_rows'], xo.stride_b, xo.plane, xo.rev, dtaps.numel(),
        NCOL=NCOL, BLOCK_M=cfg['taps_block_m'], BLOCK_K=cfg['taps_block_k'],
        BLOCK_F=p.block_f, PRECISION=prec, ALIGN=xo.align,
        num_warps=cfg['taps_warps'], num_stages=cfg['taps_stages'])
    _sum_partials(p, part, dtaps, geo, SUM_TAPS_FOLDED, acc)


def gabor_bwd(grad: torch.Tensor, x: torch.Tensor, taps: torch.Tensor, windows: torch.Tensor,
              geo: Optional[torch.Tensor], layout: Sequence[int], need_dx: bool,
              pool_shift: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward of :func:`gabor_fwd`, recomputing the convolution.

    Args:
        grad (Tensor): (B, F, T) gradient of the output (any strides).
        x, taps, windows, geo, layout, pool_shift: as in :func:`gabor_fwd`.
        need_dx (bool): compute the input gradient.
    Returns:
        (dx, dtaps, dwindows): dx (B, 1, L) in x's dtype (an empty tensor when not
        ``need_dx``), dtaps and dwindows float32 shaped like ``taps`` and ``windows`` (zero
        beyond each group's actual K and W). v2 kernels with a symmetric layout read only the
        centre and right half of each tap row, so dtaps is the gradient with respect to
        those: the reference's gradient folded (dh[hk + j] + dh[hk - j] for the real rows,
        dh[hk + j] - dh[hk - j] for the imaginary ones, j >= 1), zero on the left halves and
        the imaginary centre tap; the packing's gradient (``eleaf::gabor_pack_bwd``) turns
        it into the same parameter gradients.

    Determinism: v2 reduces without atomic adds (bitwise reproducible); on CUDA under
    ``torch.use_deterministic_algorithms(True)`` the v1 kernels and the per-tap window
    fallback raise RuntimeError (a warning with ``warn_only=True``).
    """
    p = plan(layout, x.device, _cfg_key(x))
    geo = _geometry(geo, p)
    _check_inputs(x, taps, windows, geo, p)
    _check_shift(pool_shift, p)
    pool_shift = int(pool_shift)
    B, _, L = x.shape
    T = (L - 1) // p.hop + 1
    if tuple(grad.shape) != (B, p.F, T):
        raise ValueError('grad must be %s, got %s' % ((B, p.F, T), tuple(grad.shape)))
    dev = x.device
    taps, windows = taps.contiguous(), windows.contiguous()
    # v2 writes every element of dtaps and dwin (poisoned in tests) by its reductions; v1,
    # the per-tap window fallback and an empty batch need zeros
    v1 = p.version == 'v1'
    zeros = v1 or B == 0
    dtaps = (torch.zeros if zeros else alloc)(taps.shape, dtype=torch.float32, device=dev)
    dwin = (torch.zeros if zeros or p.win_block_r is None else alloc)(
        windows.shape, dtype=torch.float32, device=dev)
    if need_dx:   # v2 stores every element (poisoned in tests), v1 adds atomically
        dx = (torch.zeros if p.version == 'v1' else alloc)((B, L), dtype=torch.float32,
                                                           device=dev)
    if B > 0:
        steps = p.steps(L)   # per group, the bound of N (the caps' smallest stride)
        per_item = sum(3 * (g[1] - g[0]) * N for g, N in zip(p.layout.groups, steps)) * 4
        chunk = max(1, min(B, _scratch_budget() // per_item))
        bases, d_numel, e_numel = p.scratch_layout(L, chunk, dev)
        dbuf = alloc((d_numel,), torch.float32, dev)
        ebuf = alloc((e_numel,), torch.float32, dev)
        n_max = max(steps)
        cfg = p.cfg
        if v1:
            _check_deterministic(x, p, 'ELEAF_GABOR_KERNELS=v1')
        split = max(1, triton.cdiv(n_max, cfg['taps_rows']))
        lowp, bf = _lowp(x), p.block_f
        # fp16/bf16 x: the fp32 dots of the taps gradient run on TF32 tensor cores too (the
        # low-precision contract; 'ieee' dots run on FMAs and spilled registers for LEAF)
        prec = 'tf32' if lowp else _precision()
        xr, tr = _dot_operands(x, taps, cfg, fold=p.fold)
        round_d = cfg.get('tf32_round', True) and cfg.get('tf32_round_d', True)
        block_k = max(cfg['bwd_block_k'], cfg['taps_block_k'])
        with on_device(x):
            for b0 in range(0, B, chunk):
                nb = min(B, b0 + chunk) - b0
                xc, gc = xr[b0:b0 + nb], grad[b0:b0 + nb]
                xo = _x_operand(xc, p, block_k)
                _gabor_bwd_rows_kernel[(triton.cdiv(n_max, cfg['bwd_block_m']), p.n_fb, nb)](
                    xo.t, tr, windows, gc, dbuf, ebuf, p.tab, geo, bases,
                    L, T, xo.stride_b, xc.stride(2), gc.stride(0), gc.stride(1), gc.stride(2),
                    pool_shift, xo.plane, xo.rev, NCOL=NCOL, BLOCK_M=cfg['bwd_block_m'],
                    BLOCK_K=cfg['bwd_block_k'], BLOCK_F=bf,
                    LOWP=lowp, PRECISION=prec, ROUND_D=(prec == 'tf32' and round_d),
                    FOLD=xo.fold, ALIGN=xo.align,
                    num_warps=cfg['bwd_warps'], num_stages=cfg['bwd_stages'])
                _window_grad(p, gc, ebuf, dwin, geo, bases, L, T, nb, pool_shift, b0 > 0)
                if not p.fold:   # v1 (atomic adds), or v2 with asymmetric taps (partials)
                    part = dtaps if v1 else alloc((nb * split, dtaps.numel()), torch.float32,
                                                  dev)
                    _gabor_bwd_taps_kernel[(triton.cdiv(p.kmax, cfg['taps_block_k']), p.n_fb,
                                            nb * split)](
                        xc, dbuf, part, p.tab, geo, bases,
                        L, split, xc.stride(0), xc.stride(2), dtaps.numel(),
                        NCOL=NCOL, BLOCK_M=cfg['taps_block_m'], BLOCK_K=cfg['taps_block_k'],
                        BLOCK_F=bf, PRECISION=prec, ATOMIC=v1, num_warps=cfg['taps_warps'],
                        num_stages=cfg['taps_stages'])
                    if not v1:
                        _sum_partials(p, part, dtaps, geo, SUM_TAPS, b0 > 0)
                else:
                    _taps_grad_fold(p, xo, dbuf, dtaps, geo, bases, L, nb, prec, b0 > 0)
                if need_dx:
                    dxc = dx[b0:b0 + nb]
                    _gabor_bwd_input_kernel[(triton.cdiv(L, cfg['dx_block_i']),
                                             p.n_fb if v1 else 1, nb)](
                        taps, dbuf, dxc, p.tab, geo, bases, L, dxc.stride(0), p.n_fb,
                        NCOL=NCOL, BLOCK_I=cfg['dx_block_i'], BLOCK_F=bf, LOOP_FB=not v1,
                        num_warps=cfg['warps'])
    if need_dx:
        dx = dx.view(B, 1, L).to(x.dtype)
    else:
        dx = x.new_empty((0,))
    return dx, dtaps, dwin


# ---------------------------------------------------------------- custom op and autograd

@torch.library.custom_op('eleaf::gabor_pool', mutates_args=())
def gabor_pool(x: torch.Tensor, taps: torch.Tensor, windows: torch.Tensor,
               geo: Optional[torch.Tensor], layout: List[int], pool_shift: int = 0
               ) -> torch.Tensor:
    """(B, 1, L) waveform, packed fp32 taps and windows, (G, 4) geometry (None: the static
    layout's), layout -> (B, F, T)."""
    return gabor_fwd(x, taps, windows, geo, layout, pool_shift)


@gabor_pool.register_fake
def _gabor_pool_fake(x, taps, windows, geo, layout, pool_shift=0):
    lay = parse_layout(layout)
    return x.new_empty((x.shape[0], lay.n_filters, (x.shape[2] - 1) // lay.hop + 1))


@torch.library.custom_op('eleaf::gabor_pool_bwd', mutates_args=())
def gabor_pool_bwd(grad: torch.Tensor, x: torch.Tensor, taps: torch.Tensor,
                   windows: torch.Tensor, geo: Optional[torch.Tensor], layout: List[int],
                   need_dx: bool, pool_shift: int = 0
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dx or an empty tensor, dtaps, dwindows) of ``eleaf::gabor_pool``."""
    return gabor_bwd(grad, x, taps, windows, geo, layout, need_dx, pool_shift)


@gabor_pool_bwd.register_fake
def _gabor_pool_bwd_fake(grad, x, taps, windows, geo, layout, need_dx, pool_shift=0):
    dx = x.new_empty(x.shape) if need_dx else x.new_empty((0,))
    return dx, torch.empty_like(taps), torch.empty_like(windows)


class GaborPool(torch.autograd.Function):
    """Eager autograd of :func:`gabor_fwd` / :func:`gabor_bwd`: the custom op's computation
    without its Python dispatch (see :func:`eleaf.ops.backends.use_custom_ops`)."""

    @staticmethod
    def forward(ctx, x, taps, windows, geo, layout, pool_shift=0):
        ctx.save_for_backward(x, taps, windows, geo)
        ctx.layout, ctx.pool_shift = layout, pool_shift
        return gabor_fwd(x, taps, windows, geo, layout, pool_shift)

    @staticmethod
    def backward(ctx, grad):
        x, taps, windows, geo = ctx.saved_tensors
        need_dx = bool(ctx.needs_input_grad[0])
        dx, dtaps, dwin = gabor_bwd(grad, x, taps, windows, geo, ctx.layout, need_dx,
                                    ctx.pool_shift)
        return (dx if need_dx else None), dtaps, dwin, None, None, None


def _setup_context(ctx, inputs, output):
    x, taps, windows, geo, layout, pool_shift = inputs
    ctx.save_for_backward(x, taps, windows, geo)
    ctx.layout, ctx.pool_shift = layout, pool_shift


def _backward(ctx, grad):
    x, taps, windows, geo = ctx.saved_tensors
    need_dx = bool(ctx.needs_input_grad[0])
    dx, dtaps, dwin = torch.ops.eleaf.gabor_pool_bwd(grad, x, taps, windows, geo, ctx.layout,
                                                      need_dx, ctx.pool_shift)
    return (dx if need_dx else None), dtaps, dwin, None, None, None


gabor_pool.register_autograd(_backward, setup_context=_setup_context)


def pool(x: torch.Tensor, taps: torch.Tensor, windows: torch.Tensor,
         geo: Optional[torch.Tensor], layout: List[int], pool_shift: int = 0) -> torch.Tensor:
    """Differentiable :func:`gabor_fwd` (the custom op under torch.compile, else
    :class:`GaborPool`)."""
    if use_custom_ops():
        return torch.ops.eleaf.gabor_pool(x, taps, windows, geo, layout, pool_shift)
    return GaborPool.apply(x, taps, windows, geo, layout, pool_shift)


# ---------------------------------------------------------------- public functions

def _filter_index(p: Plan, device: torch.device):
    """Cached per-filter (group, index in group, group size, taps offset, windows offset) as
    int64 device tensors: the packed layout's static part."""
    key = ('filters', str(device))
    if key not in p.extra:
        t = p.filter_tab.to(device=device, dtype=torch.int64)
        p.extra[key] = tuple(t[:, i] for i in range(5))   # the kernels' TAB_* columns 0-4
    return p.extra[key]


def pack_taps_ref(center_freqs: torch.Tensor, bandwidths: torch.Tensor,
                  pool_widths: torch.Tensor, geo: Optional[torch.Tensor],
                  layout: Sequence[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Differentiable packed float32 (taps, windows) of all groups (see :func:`gabor_fwd`),
    in plain torch: the reference of :func:`pack_taps`, and its path for parameters that are
    not float32. ``pool_widths`` are rescaled to each group's window here when the layout
    says so (a computed geometry), as the Triton kernel does.

    All filters' taps are computed on the widest grid (:func:`~eleaf.functional.gabor_taps_padded`,
    :func:`~eleaf.functional.gauss_windows_padded`) and scattered into the packed layout by
    indices computed on the device from ``geo`` (no host synchronisation).
    """
    p = layout_plan(layout, center_freqs.device)
    dev = center_freqs.device
    geo = _geometry(geo, p)
    grp, loc, n, t_off, w_off = _filter_index(p, dev)
    per_filter = geo.to(device=dev, dtype=torch.int64).index_select(0, grp)
    s, K, W = per_filter[:, 0], per_filter[:, 2], per_filter[:, 3]
    if p.layout.pool_size > 0:
        pool_widths = pool_widths / s.to(pool_widths.dtype) * p.layout.pool_size / W.to(
            pool_widths.dtype)
    re, im = gabor_taps_padded(p.kmax, center_freqs, bandwidths)
    j = torch.arange(p.kmax, device=dev)[None, :] - (p.kmax // 2 - K // 2)[:, None]
    ok = (j >= 0) & (j < K[:, None])
    dump = p.taps_numel
    dst_re = torch.where(ok, (t_off + loc * K)[:, None] + j, dump)
    dst_im = torch.where(ok, (t_off + (n + loc) * K)[:, None] + j, dump)
    taps = re.new_zeros(dump + 1).scatter(
        0, torch.cat((dst_re, dst_im)).reshape(-1), torch.cat((re, im)).reshape(-1))
    windows = gauss_windows_padded(W.to(pool_widths.dtype), pool_widths, p.wmax)
    k = torch.arange(p.wmax, device=dev)[None, :]
    dst_w = torch.where(k < W[:, None], (w_off + loc * W)[:, None] + k, p.win_numel)
    windows = windows.new_zeros(p.win_numel + 1).scatter(0, dst_w.reshape(-1),
                                                          windows.reshape(-1))
    return taps[:dump].to(torch.float32), windows[:p.win_numel].to(torch.float32)


def pack_taps(center_freqs: torch.Tensor, bandwidths: torch.Tensor, pool_widths: torch.Tensor,
              geo: Optional[torch.Tensor], layout: Sequence[int]
              ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Differentiable packed float32 (taps, windows) of all groups (see :func:`gabor_fwd`);
    ``pool_widths`` as in :func:`pack_taps_ref`.

    float32 parameters: one Triton launch forward and one backward (:mod:`eleaf.ops.gabor_pack`:
    the custom op ``eleaf::gabor_pack``, or its eager twin, see
    :func:`eleaf.ops.backends.use_custom_ops`); other dtypes: :func:`pack_taps_ref`.
    """
    if not all(t.dtype == torch.float32 for t in (center_freqs, bandwidths, pool_widths)):
        return pack_taps_ref(center_freqs, bandwidths, pool_widths, geo, layout)
    if use_custom_ops():
        return torch.ops.eleaf.gabor_pack(center_freqs, bandwidths, pool_widths, geo,
                                          list(layout))
    return GaborPack.apply(center_freqs, bandwidths, pool_widths, geo, list(layout))


def gabor_filterbank_triton(x: torch.Tensor, center_freqs: torch.Tensor,
                            bandwidths: torch.Tensor, pool_widths: torch.Tensor,
                            geometry: Sequence[GroupGeometry]) -> torch.Tensor:
    """Grouped Gabor filterbank of a fixed geometry with fused Triton kernels (CUDA, or CPU
    under ``TRITON_INTERPRET=1``); same signature and semantics as
    :func:`eleaf.functional.grouped_gabor_filterbank_ref` (LEAF's filterbank; EfficientLEAF
    uses :func:`grouped_gabor_filterbank_triton`).

    Args:
        x (Tensor): (B, 1, L) waveform, float32/float16/bfloat16.
        center_freqs, bandwidths (Tensor): (F,) clamped Gabor parameters, rad/sample and
            samples.
        pool_widths (Tensor): (F,) pooling widths rescaled to each group's window.
        geometry: one :class:`~eleaf.functional.GroupGeometry` per group.
    Returns:
        Tensor: (B, F, T) in x's dtype, T = (L - 1) // (s P) + 1. Differentiable in x and
        the three parameter tensors.
    """
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError('x must be (B, 1, L), got %s' % (tuple(x.shape),))
    layout = static_layout(geometry)   # its plan holds the geometry tensor
    taps, windows = pack_taps(center_freqs, bandwidths, pool_widths, None, layout)
    return pool(x, taps, windows, None, layout)


def grouped_gabor_filterbank_triton(x: torch.Tensor, center_freqs: torch.Tensor,
                                    bandwidths: torch.Tensor, pooling_widths: torch.Tensor,
                                    caps: GeometryCaps) -> torch.Tensor:
    """EfficientLEAF's grouped filterbank with the geometry computed on the device (the
    ``'triton'`` implementation of ``grouped_gabor_filterbank``, see
    :mod:`eleaf.ops.grouped_gabor`): no host synchronisation, and one compiled graph for
    every geometry.

    Args:
        x (Tensor): (B, 1, L) waveform, float32/float16/bfloat16.
        center_freqs, bandwidths, pooling_widths (Tensor): (F,) clamped parameters (pooling
            widths not rescaled).
        caps: the filterbank's :class:`~eleaf.functional.GeometryCaps`.
    Returns:
        Tensor: (B, F, T) in x's dtype, T = (L - 1) // hop + 1.
    """
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError('x must be (B, 1, L), got %s' % (tuple(x.shape),))
    if host_geometry():
        return _HOST_GEOMETRY(x, center_freqs, bandwidths, pooling_widths, caps)
    layout = caps_layout(caps)
    if center_freqs.dtype == torch.float32 and bandwidths.dtype == torch.float32:
        geo = geometry_fwd(center_freqs, bandwidths, layout)
    else:
        geo = group_geometry_tensor(center_freqs, bandwidths, caps)
    taps, windows = pack_taps(center_freqs, bandwidths, pooling_widths, geo, layout)
    return pool(x, taps, windows, geo, layout)


def host_geometry() -> bool:
    """``ELEAF_HOST_GEOMETRY=1``: EfficientLEAF's Triton filterbank copies the geometry to the
    host every step and launches with a fixed-geometry layout, as before the geometry became
    data (one host synchronisation per step; a new compiled graph per geometry). Kept so that
    one GPU run can time both (bench/gpu_check.py --only geometry_ab); to be removed once
    measured."""
    return os.environ.get('ELEAF_HOST_GEOMETRY', '0') not in ('', '0')


def _host_geometry_triton(x, center_freqs, bandwidths, pooling_widths, caps):
    from .grouped_gabor import with_host_geometry
    return with_host_geometry(gabor_filterbank_triton)(x, center_freqs, bandwidths,
                                                      pooling_widths, caps)


_HOST_GEOMETRY = _host_geometry_triton


def _check(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    if dtype == torch.float64:
        return 'float64 runs the reference (the Triton kernels compute in float32)'
    if dtype not in _SUPPORTED:
        return 'the Triton kernels support float32/float16/bfloat16, got %s' % (
            str(dtype).replace('torch.', ''),)
    return None


if HAS_TRITON:
    register_impl('gabor_filterbank', 'triton', gabor_filterbank_triton, _check)
    register_impl('grouped_gabor_filterbank', 'triton', grouped_gabor_filterbank_triton, _check)
