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

Memory: the forward never writes the (B, 2F, N) convolution output; autograd saves only x
and the packed taps and windows. The backward recomputes the convolution into a scratch
buffer bounded by ``ELEAF_GABOR_SCRATCH_MB`` (default 256 MiB) by processing the batch in
chunks. Setting ``ELEAF_DEBUG_POISON=1`` fills outputs and scratch with NaN before the
kernels write them (a test aid: unwritten elements show up as NaN).
"""
import os
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple

import torch

from ..functional.gabor import GroupGeometry, gabor_taps_padded
from ..functional.pooling import gauss_windows_padded
from .backends import register_impl, use_custom_ops

try:
    import triton

    from ..kernels.gabor import (NCOL, _gabor_bwd_input_kernel, _gabor_bwd_rows_kernel,
                                 _gabor_bwd_taps_kernel, _gabor_bwd_window_kernel,
                                 _gabor_bwd_window_loop_kernel, _gabor_fwd_kernel)
    HAS_TRITON = True
    _IMPORT_ERROR = None
except Exception as _exc:  # ImportError, or a broken Triton installation
    HAS_TRITON = False
    _IMPORT_ERROR = _exc

__all__ = ['gabor_filterbank_triton', 'gabor_fwd', 'gabor_bwd', 'pack_geometry',
           'pack_taps', 'pack_taps_ref', 'HAS_TRITON']

#: Launch settings (block sizes are powers of two; every tl.dot dim >= 16), measured on an
#: H100 (B=256, L=16000; EfficientLeaf 8 groups x 10 filters, and LEAF: 40 filters, K = W = 401,
#: s = 1, P = 160). 'cuda' is for float32 with 'ieee' dots, 'cuda_tf32' for TF32 and
#: fp16/bf16 tensor-core dots; ``wide`` overrides apply when a filter block holds 64 filters
#: (``max_block_f``: filters per block; a group of n filters uses the smallest power of two
#: >= n, at least 16, at most this). The Triton interpreter (CPU tensors) runs the same kernels
#: with larger chunks, because its cost is per operation rather than per element.
#: Since 2026-12-03 the ``wide`` forward, backward-rows and input-gradient settings are chosen
#: so that these kernels compile for sm_90 without register spills under Triton 3.6 and 3.9
#: (``python -m tests.ops.sm90_compile`` reports ptxas' registers and spills); that choice
#: has not been timed on a GPU.
LAUNCH = {
    'cuda': dict(
        max_block_f=64,
        fwd_block_u=128,     # convolution rows per phase in a forward program
        fwd_block_k=32,      # Gabor taps per tl.dot chunk (forward)
        fwd_warps=8, fwd_stages=3,
        bwd_block_m=128,     # convolution rows per backward-rows program
        bwd_block_k=32,      # taps per chunk (backward rows)
        bwd_warps=8, bwd_stages=3,
        taps_block_m=32,     # convolution rows per tl.dot step of the taps gradient
        taps_block_k=64,     # taps per taps-gradient program
        taps_rows=8192,      # convolution rows reduced in registers per taps-gradient program
        taps_warps=4, taps_stages=3,
        win_acc=4096,        # window gradient: register accumulator elements per program
        win_programs=1056,   # window gradient: programs per launch (about)
        win_warps=4,
        win_block_t=64,      # frames per program of the fallback window-gradient kernel
        dx_block_i=256,      # input samples per input-gradient program
        warps=8,             # input gradient, fallback window gradient
        wide=dict(fwd_block_u=64, fwd_block_k=16, bwd_block_m=64, dx_block_i=64,
                  taps_block_m=64, taps_warps=8, win_acc=8192)),
    'cuda_tf32': dict(
        max_block_f=64,
        fwd_block_u=64, fwd_block_k=16, fwd_warps=4, fwd_stages=3,
        bwd_block_m=64, bwd_block_k=32, bwd_warps=4, bwd_stages=3,
        taps_block_m=16, taps_block_k=64, taps_rows=8192, taps_warps=4, taps_stages=4,
        win_acc=4096, win_programs=1056, win_warps=4, win_block_t=64,
        dx_block_i=256, warps=8,
        wide=dict(fwd_warps=8, bwd_warps=8, dx_block_i=64, taps_block_m=32, taps_stages=4,
                  win_acc=8192)),
    'interpreter': dict(
        max_block_f=32,
        fwd_block_u=64, fwd_block_k=256, fwd_warps=4, fwd_stages=1,
        bwd_block_m=64, bwd_block_k=256, bwd_warps=4, bwd_stages=1,
        taps_block_m=64, taps_block_k=256, taps_rows=1 << 20, taps_warps=4, taps_stages=1,
        win_acc=1 << 16, win_programs=2, win_warps=4, win_block_t=64,
        dx_block_i=1024, warps=4),
}

_LOWP = (torch.float16, torch.bfloat16)
_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)


def pack_geometry(geometry: Sequence[GroupGeometry]) -> List[int]:
    """Flatten group geometries to ints: ``[start, stop, s, P, K, W]`` per group."""
    out = []
    for g in geometry:
        out += [int(g.start), int(g.stop), int(g.conv_stride), int(g.pool_stride),
                int(g.kernel_size), int(g.window_size)]
    return out


def _unpack(geometry: Sequence[int]) -> Tuple[Tuple[int, ...], ...]:
    geometry = [int(v) for v in geometry]
    if len(geometry) == 0 or len(geometry) % 6:
        raise ValueError('geometry must hold 6 ints per group, got %d ints' % len(geometry))
    groups = tuple(tuple(geometry[i:i + 6]) for i in range(0, len(geometry), 6))
    hop = groups[0][2] * groups[0][3]
    expect = 0
    for start, stop, s, P, K, W in groups:
        if start != expect or stop <= start:
            raise ValueError('groups must cover filters 0 ... F-1 in order, got %s' % (groups,))
        if s < 1 or P < 1 or s * P != hop:
            raise ValueError('every group needs s * P equal to the hop %d, got s=%d, P=%d'
                             % (hop, s, P))
        if K < 1 or W < 1 or K % 2 == 0 or W % 2 == 0:
            raise ValueError('kernel and window sizes must be odd, got K=%d, W=%d' % (K, W))
        expect = stop
    return groups


class _Plan:
    """Static launch data of one geometry on one device (cached).

    ``tab``: int32 (filter blocks, NCOL) table of ``eleaf.kernels.gabor``.
    """

    def __init__(self, groups, device: torch.device, cfg_key: str):
        self.groups = groups
        self.F = groups[-1][1]
        self.hop = groups[0][2] * groups[0][3]
        self.kmax = max(g[4] for g in groups)
        # pooling shifts: window taps k = q P + r with q < cdiv(W, P)
        self.qmax = max((W + P - 1) // P for _, _, _, P, _, W in groups)
        self.fwd_qmax = triton.next_power_of_2(self.qmax)
        self.fwd_shifts = min(self.qmax, 4)   # forward accumulators (shifts per pass)
        self.cfg = cfg = dict(LAUNCH[cfg_key])
        self.block_f = min(cfg['max_block_f'],
                           max(16, triton.next_power_of_2(max(g[1] - g[0] for g in groups))))
        if self.block_f >= 64:
            cfg.update(cfg.get('wide', {}))
        self.fwd_block_u = max(cfg['fwd_block_u'], triton.next_power_of_2(2 * self.qmax))
        self.fwd_step = self.fwd_block_u - self.qmax + 1   # frames per forward program
        # window gradient: phases r per program (BLOCK_R) and rows u per item (BLOCK_U) with
        # QMAX * BLOCK_U * BLOCK_R * BLOCK_F <= win_acc; None: the per-tap fallback kernel
        self.pmax = max(g[3] for g in groups)
        budget = cfg['win_acc'] // (self.fwd_qmax * self.block_f)
        if budget >= 16:
            self.win_block_r = min(triton.next_power_of_2(self.pmax), budget // 2)
            self.win_block_u = min(budget // self.win_block_r, 64)
        else:
            self.win_block_r = self.win_block_u = None
        rows, tap_off, win_off = [], [], []
        t_off = w_off = 0
        for gi, (start, stop, s, P, K, W) in enumerate(groups):
            n = stop - start
            tap_off.append(t_off)
            win_off.append(w_off)
            for loc in range(0, n, self.block_f):
                rows.append([start + loc, min(self.block_f, n - loc), s, P, K, W,
                             t_off + loc * K, t_off + (n + loc) * K, w_off + loc * W,
                             gi, loc, n])
            t_off += 2 * n * K
            w_off += n * W
        self.tap_off, self.win_off = tap_off, win_off
        self.taps_numel, self.win_numel = t_off, w_off
        self.n_fb = len(rows)
        assert len(rows[0]) == NCOL
        self.tab = torch.tensor(rows, dtype=torch.int32).to(device)
        self.scratch = OrderedDict()   # (L, chunk) -> (int64 (G, 2) offsets, D numel, E numel)
        self.extra = {}                # other cached per-device data (pack indices)

    def scratch_layout(self, L: int, chunk: int, device: torch.device):
        """Offsets of each group's D (chunk, 2n, N) and E (chunk, n, N) in the scratch."""
        key = (L, chunk)
        if key not in self.scratch:
            bases, d_off, e_off = [], 0, 0
            for start, stop, s, P, K, W in self.groups:
                n, N = stop - start, (L - 1) // s + 1
                bases.append([d_off, e_off])
                d_off += chunk * 2 * n * N
                e_off += chunk * n * N
            if len(self.scratch) >= 16:
                self.scratch.popitem(last=False)
            self.scratch[key] = (torch.tensor(bases, dtype=torch.int64).to(device), d_off, e_off)
        return self.scratch[key]


_PLANS: 'OrderedDict[tuple, _Plan]' = OrderedDict()


def _cfg_key(x: torch.Tensor) -> str:
    if x.device.type != 'cuda':
        return 'interpreter'
    return 'cuda' if (_precision() == 'ieee' and not _lowp(x)) else 'cuda_tf32'


def _plan(geometry: Sequence[int], device: torch.device, cfg_key: str) -> _Plan:
    key = (tuple(geometry), str(device), cfg_key)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _Plan(_unpack(geometry), device, cfg_key)
        if len(_PLANS) >= 64:
            _PLANS.popitem(last=False)
        _PLANS[key] = plan
    else:
        _PLANS.move_to_end(key)
    return plan


def _layout_plan(geometry: Sequence[int], device: torch.device) -> _Plan:
    """The plan of a geometry for its packed layout and tables only (not its launch
    settings, which depend on the input's dtype and precision: :func:`_cfg_key`)."""
    return _plan(geometry, device, 'cuda' if device.type == 'cuda' else 'interpreter')


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


def _dot_operands(x: torch.Tensor, taps: torch.Tensor, cfg: dict):
    """x and taps as the kernels' tl.dot reads them (rounded to TF32 for tf32 dots)."""
    if _precision() == 'tf32' and x.dtype == torch.float32 and cfg.get('tf32_round', True):
        return _round_tf32(x), _round_tf32(taps)
    return x, taps


def _poison() -> bool:
    return os.environ.get('ELEAF_DEBUG_POISON', '0') not in ('', '0')


def _alloc(shape, dtype, device) -> torch.Tensor:
    if _poison():
        return torch.full(shape, float('nan'), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


class _on_device:
    """Make x's CUDA device current for the launches (no-op on the CPU / interpreter)."""

    def __init__(self, t: torch.Tensor):
        self.ctx = torch.cuda.device(t.device) if t.is_cuda else None

    def __enter__(self):
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *args):
        if self.ctx is not None:
            self.ctx.__exit__(*args)


def _check_inputs(x: torch.Tensor, taps: torch.Tensor, windows: torch.Tensor, plan: _Plan):
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


def _check_shift(pool_shift: int, plan: _Plan):
    wmin = min(g[5] for g in plan.groups)
    if not -(wmin // 2) <= int(pool_shift) <= 0:
        raise ValueError('pool_shift must be in [-(W//2), 0] = [%d, 0], got %r'
                         % (-(wmin // 2), pool_shift))


def gabor_fwd(x: torch.Tensor, taps: torch.Tensor, windows: torch.Tensor,
              geometry: Sequence[int], pool_shift: int = 0) -> torch.Tensor:
    """Fused forward: per group strided Gabor conv, squared modulus, Gaussian pooling.

    Args:
        x (Tensor): (B, 1, L) waveform, float32/float16/bfloat16, any strides.
        taps (Tensor): packed float32 Gabor taps, per group the (2n, K) matrix of
            :func:`eleaf.functional.gabor_kernel` flattened (see :func:`pack_taps`).
        windows (Tensor): packed float32 windows, per group the (n, W) matrix of
            :func:`eleaf.functional.gauss_windows` flattened.
        geometry (list of int): :func:`pack_geometry` of the groups.
        pool_shift (int): the pooling's left zero padding is ``W//2 + pool_shift`` (0: windows
            centred on the frames; TF LEAF's 'SAME' pooling: see
            :func:`tf_gabor_filterbank_triton`), ``-(W//2) <= pool_shift <= 0``.
    Returns:
        Tensor: (B, F, T) in x's dtype, T = (L - 1) // (s P) + 1.
    """
    plan = _plan(geometry, x.device, _cfg_key(x))
    _check_shift(pool_shift, plan)
    _check_inputs(x, taps, windows, plan)
    B, _, L = x.shape
    T = (L - 1) // plan.hop + 1
    out = _alloc((B, plan.F, T), x.dtype, x.device)
    if B == 0:
        return out
    taps, windows = taps.contiguous(), windows.contiguous()
    x, taps = _dot_operands(x, taps, plan.cfg)
    grid = (triton.cdiv(T, plan.fwd_step), plan.n_fb, B)
    with _on_device(x):
        _gabor_fwd_kernel[grid](
            x, taps, windows, out, plan.tab,
            L, T, plan.fwd_step, x.stride(0), x.stride(2),
            out.stride(0), out.stride(1), out.stride(2), int(pool_shift),
            NCOL=NCOL, BLOCK_U=plan.fwd_block_u, BLOCK_K=plan.cfg['fwd_block_k'],
            BLOCK_F=plan.block_f, SHIFTS=plan.fwd_shifts, LOWP=_lowp(x),
            PRECISION=_precision(),
            num_warps=plan.cfg['fwd_warps'], num_stages=plan.cfg['fwd_stages'])
    return out


def _scratch_budget() -> int:
    return int(float(os.environ.get('ELEAF_GABOR_SCRATCH_MB', '256')) * 2**20)


def _window_grad(plan: _Plan, g: torch.Tensor, ebuf: torch.Tensor, dwin: torch.Tensor,
                 bases: torch.Tensor, L: int, T: int, nb: int, pool_shift: int):
    """Window gradient of one batch chunk from the E scratch (phase-split kernel, or the
    per-tap fallback when the shifts QMAX leave too few registers)."""
    cfg, bf = plan.cfg, plan.block_f
    if plan.win_block_r is None:
        _gabor_bwd_window_loop_kernel[(triton.cdiv(T, cfg['win_block_t']), plan.n_fb, nb)](
            g, ebuf, dwin, plan.tab, bases,
            L, T, g.stride(0), g.stride(1), g.stride(2), pool_shift,
            NCOL=NCOL, BLOCK_T=cfg['win_block_t'], BLOCK_F=bf, num_warps=cfg['warps'])
        return
    n_r = triton.cdiv(plan.pmax, plan.win_block_r)
    items = nb * triton.cdiv(T + plan.qmax - 1, plan.win_block_u)
    split = max(1, min(items, triton.cdiv(cfg['win_programs'], n_r * plan.n_fb)))
    _gabor_bwd_window_kernel[(n_r, plan.n_fb, split)](
        g, ebuf, dwin, plan.tab, bases,
        L, T, nb, split, g.stride(0), g.stride(1), g.stride(2), pool_shift,
        NCOL=NCOL, BLOCK_U=plan.win_block_u, BLOCK_R=plan.win_block_r, BLOCK_F=bf,
        QMAX=plan.fwd_qmax, num_warps=cfg['win_warps'])


def gabor_bwd(grad: torch.Tensor, x: torch.Tensor, taps: torch.Tensor, windows: torch.Tensor,
              geometry: Sequence[int], need_dx: bool, pool_shift: int = 0
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward of :func:`gabor_fwd`, recomputing the convolution.

    Args:
        grad (Tensor): (B, F, T) gradient of the output (any strides).
        x, taps, windows, geometry, pool_shift: as in :func:`gabor_fwd`.
        need_dx (bool): compute the input gradient.
    Returns:
        (dx, dtaps, dwindows): dx (B, 1, L) in x's dtype (an empty tensor when not
        ``need_dx``), dtaps and dwindows float32 shaped like ``taps`` and ``windows``.
    """
    plan = _plan(geometry, x.device, _cfg_key(x))
    _check_inputs(x, taps, windows, plan)
    _check_shift(pool_shift, plan)
    pool_shift = int(pool_shift)
    B, _, L = x.shape
    T = (L - 1) // plan.hop + 1
    if tuple(grad.shape) != (B, plan.F, T):
        raise ValueError('grad must be %s, got %s' % ((B, plan.F, T), tuple(grad.shape)))
    dev = x.device
    taps, windows = taps.contiguous(), windows.contiguous()
    dtaps = torch.zeros(taps.shape, dtype=torch.float32, device=dev)
    dwin = torch.zeros(windows.shape, dtype=torch.float32, device=dev)
    dx = torch.zeros((B, L), dtype=torch.float32, device=dev) if need_dx else None
    if B > 0:
        per_item = sum(3 * (g[1] - g[0]) * ((L - 1) // g[2] + 1) for g in plan.groups) * 4
        chunk = max(1, min(B, _scratch_budget() // per_item))
        bases, d_numel, e_numel = plan.scratch_layout(L, chunk, dev)
        dbuf = _alloc((d_numel,), torch.float32, dev)
        ebuf = _alloc((e_numel,), torch.float32, dev)
        n_max = max((L - 1) // g[2] + 1 for g in plan.groups)
        cfg = plan.cfg
        split = max(1, triton.cdiv(n_max, cfg['taps_rows']))
        lowp, bf = _lowp(x), plan.block_f
        # fp16/bf16 x: the fp32 dots of the taps gradient run on TF32 tensor cores too (the
        # low-precision contract; 'ieee' dots run on FMAs and spilled registers for LEAF)
        prec = 'tf32' if lowp else _precision()
        xr, tr = _dot_operands(x, taps, cfg)
        round_d = cfg.get('tf32_round', True) and cfg.get('tf32_round_d', True)
        with _on_device(x):
            for b0 in range(0, B, chunk):
                nb = min(B, b0 + chunk) - b0
                xc, gc = xr[b0:b0 + nb], grad[b0:b0 + nb]
                _gabor_bwd_rows_kernel[(triton.cdiv(n_max, cfg['bwd_block_m']), plan.n_fb, nb)](
                    xc, tr, windows, gc, dbuf, ebuf, plan.tab, bases,
                    L, T, xc.stride(0), xc.stride(2), gc.stride(0), gc.stride(1), gc.stride(2),
                    pool_shift, NCOL=NCOL, BLOCK_M=cfg['bwd_block_m'],
                    BLOCK_K=cfg['bwd_block_k'], BLOCK_F=bf,
                    LOWP=lowp, PRECISION=prec, ROUND_D=(prec == 'tf32' and round_d),
                    num_warps=cfg['bwd_warps'], num_stages=cfg['bwd_stages'])
                _window_grad(plan, gc, ebuf, dwin, bases, L, T, nb, pool_shift)
                _gabor_bwd_taps_kernel[(triton.cdiv(plan.kmax, cfg['taps_block_k']), plan.n_fb,
                                        nb * split)](
                    xc, dbuf, dtaps, plan.tab, bases,
                    L, split, xc.stride(0), xc.stride(2),
                    NCOL=NCOL, BLOCK_M=cfg['taps_block_m'], BLOCK_K=cfg['taps_block_k'],
                    BLOCK_F=bf, PRECISION=prec, num_warps=cfg['taps_warps'],
                    num_stages=cfg['taps_stages'])
                if need_dx:
                    dxc = dx[b0:b0 + nb]
                    _gabor_bwd_input_kernel[(triton.cdiv(L, cfg['dx_block_i']), plan.n_fb, nb)](
                        taps, dbuf, dxc, plan.tab, bases, L, dxc.stride(0),
                        NCOL=NCOL, BLOCK_I=cfg['dx_block_i'], BLOCK_F=bf, num_warps=cfg['warps'])
    if need_dx:
        dx = dx.view(B, 1, L).to(x.dtype)
    else:
        dx = x.new_empty((0,))
    return dx, dtaps, dwin


# ---------------------------------------------------------------- custom op and autograd

@torch.library.custom_op('eleaf::gabor_pool', mutates_args=())
def gabor_pool(x: torch.Tensor, taps: torch.Tensor, windows: torch.Tensor,
               geometry: List[int], pool_shift: int = 0) -> torch.Tensor:
    """(B, 1, L) waveform, packed fp32 taps and windows, flat geometry -> (B, F, T)."""
    return gabor_fwd(x, taps, windows, geometry, pool_shift)


@gabor_pool.register_fake
def _gabor_pool_fake(x, taps, windows, geometry, pool_shift=0):
    groups = _unpack(geometry)
    hop = groups[0][2] * groups[0][3]
    return x.new_empty((x.shape[0], groups[-1][1], (x.shape[2] - 1) // hop + 1))


@torch.library.custom_op('eleaf::gabor_pool_bwd', mutates_args=())
def gabor_pool_bwd(grad: torch.Tensor, x: torch.Tensor, taps: torch.Tensor,
                   windows: torch.Tensor, geometry: List[int], need_dx: bool,
                   pool_shift: int = 0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dx or an empty tensor, dtaps, dwindows) of ``eleaf::gabor_pool``."""
    return gabor_bwd(grad, x, taps, windows, geometry, need_dx, pool_shift)


@gabor_pool_bwd.register_fake
def _gabor_pool_bwd_fake(grad, x, taps, windows, geometry, need_dx, pool_shift=0):
    dx = x.new_empty(x.shape) if need_dx else x.new_empty((0,))
    return dx, torch.empty_like(taps), torch.empty_like(windows)


class GaborPool(torch.autograd.Function):
    """Eager autograd of :func:`gabor_fwd` / :func:`gabor_bwd`: the custom op's computation
    without its Python dispatch (see :func:`eleaf.ops.backends.use_custom_ops`)."""

    @staticmethod
    def forward(ctx, x, taps, windows, geometry, pool_shift=0):
        ctx.save_for_backward(x, taps, windows)
        ctx.geometry, ctx.pool_shift = geometry, pool_shift
        return gabor_fwd(x, taps, windows, geometry, pool_shift)

    @staticmethod
    def backward(ctx, grad):
        x, taps, windows = ctx.saved_tensors
        need_dx = bool(ctx.needs_input_grad[0])
        dx, dtaps, dwin = gabor_bwd(grad, x, taps, windows, ctx.geometry, need_dx,
                                    ctx.pool_shift)
        return (dx if need_dx else None), dtaps, dwin, None, None


def _setup_context(ctx, inputs, output):
    x, taps, windows, geometry, pool_shift = inputs
    ctx.save_for_backward(x, taps, windows)
    ctx.geometry, ctx.pool_shift = geometry, pool_shift


def _backward(ctx, grad):
    x, taps, windows = ctx.saved_tensors
    need_dx = bool(ctx.needs_input_grad[0])
    dx, dtaps, dwin = torch.ops.eleaf.gabor_pool_bwd(grad, x, taps, windows, ctx.geometry,
                                                      need_dx, ctx.pool_shift)
    return (dx if need_dx else None), dtaps, dwin, None, None


gabor_pool.register_autograd(_backward, setup_context=_setup_context)


# ---------------------------------------------------------------- public function

def _pack_index(plan: '_Plan', device: torch.device):
    """Cached gather indices from the padded (2F, Kmax) taps and (F, Wmax) windows to the
    packed layout, and the (F,) window sizes."""
    key = ('pack', str(device))
    if key not in plan.extra:
        F, kmax = plan.F, plan.kmax
        wmax = max(g[5] for g in plan.groups)
        taps, wins, sizes = [], [], []
        for start, stop, s, P, K, W in plan.groups:
            cols = torch.arange(K) + (kmax // 2 - K // 2)
            rows = torch.arange(start, stop)
            re = (rows[:, None] * kmax + cols[None]).reshape(-1)
            taps += [re, re + F * kmax]
            wins.append((rows[:, None] * wmax + torch.arange(W)[None]).reshape(-1))
            sizes += [W] * (stop - start)
        plan.extra[key] = (torch.cat(taps).to(device), torch.cat(wins).to(device),
                           torch.tensor(sizes, dtype=torch.float64).to(device), wmax)
    return plan.extra[key]


def pack_taps_ref(center_freqs: torch.Tensor, bandwidths: torch.Tensor,
                  pool_widths: torch.Tensor, geometry: Sequence[GroupGeometry]
                  ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Differentiable packed float32 (taps, windows) of all groups (see :func:`gabor_fwd`),
    in plain torch: the reference of :func:`pack_taps`, and its path for float64 parameters.

    All filters' taps are computed at once on the widest group's grid
    (:func:`~eleaf.functional.gabor_taps_padded`, :func:`~eleaf.functional.gauss_windows_padded`)
    and gathered into the packed layout with one cached index, so that the cost does not grow
    with the number of groups (a few dozen small launches in all, forward and backward).
    """
    plan = _layout_plan(pack_geometry(geometry), center_freqs.device)
    tap_idx, win_idx, sizes, wmax = _pack_index(plan, center_freqs.device)
    re, im = gabor_taps_padded(plan.kmax, center_freqs, bandwidths)
    taps = torch.cat((re, im)).reshape(-1).index_select(0, tap_idx)
    windows = gauss_windows_padded(sizes.to(pool_widths.dtype), pool_widths, wmax)
    windows = windows.reshape(-1).index_select(0, win_idx)
    return taps.to(torch.float32), windows.to(torch.float32)


def pack_taps(center_freqs: torch.Tensor, bandwidths: torch.Tensor, pool_widths: torch.Tensor,
              geometry: Sequence[GroupGeometry]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Differentiable packed float32 (taps, windows) of all groups (see :func:`gabor_fwd`).

    float32 parameters: one Triton launch forward and one backward (:mod:`eleaf.ops.gabor_pack`:
    the custom op ``eleaf::gabor_pack``, or its eager twin, see
    :func:`eleaf.ops.backends.use_custom_ops`); other
    dtypes: :func:`pack_taps_ref`.
    """
    if not all(t.dtype == torch.float32 for t in (center_freqs, bandwidths, pool_widths)):
        return pack_taps_ref(center_freqs, bandwidths, pool_widths, geometry)
    if use_custom_ops():
        return torch.ops.eleaf.gabor_pack(center_freqs, bandwidths, pool_widths,
                                          pack_geometry(geometry))
    return GaborPack.apply(center_freqs, bandwidths, pool_widths, pack_geometry(geometry))


def gabor_filterbank_triton(x: torch.Tensor, center_freqs: torch.Tensor,
                            bandwidths: torch.Tensor, pool_widths: torch.Tensor,
                            geometry: Sequence[GroupGeometry]) -> torch.Tensor:
    """Grouped Gabor filterbank with fused Triton kernels (CUDA, or CPU under
    ``TRITON_INTERPRET=1``); same signature and semantics as
    :func:`eleaf.functional.grouped_gabor_filterbank_ref`.

    Args:
        x (Tensor): (B, 1, L) waveform, float32/float16/bfloat16.
        center_freqs, bandwidths (Tensor): (F,) clamped Gabor parameters, rad/sample and
            samples.
        pool_widths (Tensor): (F,) pooling widths rescaled to each group's window.
        geometry: one :class:`~eleaf.functional.GroupGeometry` per group.
    Returns:
        Tensor: (B, F, T) in x's dtype, T = (L - 1) // (s P) + 1. Differentiable in x and
        the three parameter tensors (taps and windows are built in plain torch, the kernels
        return their gradients).
    """
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError('x must be (B, 1, L), got %s' % (tuple(x.shape),))
    taps, windows = pack_taps(center_freqs, bandwidths, pool_widths, geometry)
    if use_custom_ops():
        return torch.ops.eleaf.gabor_pool(x, taps, windows, pack_geometry(geometry))
    return GaborPool.apply(x, taps, windows, pack_geometry(geometry))


def _check(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    if dtype == torch.float64:
        return 'float64 runs the reference (the Triton kernels compute in float32)'
    if dtype not in _SUPPORTED:
        return 'the Triton kernels support float32/float16/bfloat16, got %s' % (
            str(dtype).replace('torch.', ''),)
    return None


if HAS_TRITON:
    # registers eleaf::gabor_pack; imports names defined above
    from .gabor_pack import GaborPack  # noqa: E402
    register_impl('gabor_filterbank', 'triton', gabor_filterbank_triton, _check)
