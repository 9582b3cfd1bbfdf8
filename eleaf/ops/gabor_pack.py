"""Packed Gabor taps and Gaussian windows of the fused Triton filterbank, built by Triton
kernels: the custom op ``eleaf::gabor_pack`` and its backward ``eleaf::gabor_pack_bwd``.

:func:`eleaf.ops.gabor.pack_taps` computes the same two buffers in plain torch
(:func:`pack_taps_ref`: about 40 small ops forward and 60 backward, each a kernel launch on a
GPU); this op does it in one launch forward and one backward, which matters where the step
is host-bound (EfficientLEAF 8G-opt on a GPU). Kernels: ``eleaf.kernels.gabor_taps``.

Precision: float32 parameters are computed in float32 with the reference's operation order;
the gradients are reduced per filter in float32. Other parameter dtypes use
:func:`pack_taps_ref`.
"""
from typing import List, Tuple

import torch

from .gabor import _alloc, _layout_plan, _on_device, _unpack

try:
    import triton

    from ..kernels.gabor_taps import NCOL, SQRT_2PI, _gabor_taps_bwd_kernel, _gabor_taps_fwd_kernel
    HAS_TRITON = True
except Exception:  # ImportError, or a broken Triton installation (see eleaf.ops.gabor)
    HAS_TRITON = False

__all__ = ['pack_fwd', 'pack_bwd', 'GaborPack', 'gabor_pack', 'gabor_pack_bwd', 'BLOCK']

#: taps per program of the forward, and per loop step of the backward
BLOCK = 256


def _filter_table(plan, device: torch.device) -> torch.Tensor:
    """Cached int32 (F, NCOL) table of ``eleaf.kernels.gabor_taps`` for a plan."""
    key = ('taps_table', str(device))
    if key not in plan.extra:
        rows = []
        for (start, stop, s, P, K, W), t_off, w_off in zip(plan.groups, plan.tap_off,
                                                            plan.win_off):
            n = stop - start
            rows += [[K, W, t_off + i * K, t_off + (n + i) * K, w_off + i * W]
                     for i in range(n)]
        longest = max(max(K, W) for _, _, _, _, K, W in plan.groups)
        plan.extra[key] = (torch.tensor(rows, dtype=torch.int32).to(device), longest)
    return plan.extra[key]


def _numel(geometry: List[int]) -> Tuple[int, int, int]:
    """(F, packed taps, packed windows) of a packed geometry."""
    groups = _unpack(geometry)
    taps = sum(2 * (stop - start) * K for start, stop, s, P, K, W in groups)
    wins = sum((stop - start) * W for start, stop, s, P, K, W in groups)
    return groups[-1][1], taps, wins


def _check_params(mu, sigma, pw, F: int):
    for name, t in (('center_freqs', mu), ('bandwidths', sigma), ('pool_widths', pw)):
        if t.dtype != torch.float32 or tuple(t.shape) != (F,):
            raise ValueError('gabor_pack: %s must be float32 of shape (%d,), got %s %s'
                             % (name, F, t.dtype, tuple(t.shape)))
        if t.device != mu.device:
            raise ValueError('gabor_pack: all parameters must be on one device')


def pack_fwd(center_freqs: torch.Tensor, bandwidths: torch.Tensor, pool_widths: torch.Tensor,
             geometry: List[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Packed float32 (taps, windows) of ``eleaf.ops.gabor.gabor_fwd``.

    Args:
        center_freqs, bandwidths (Tensor): (F,) float32, rad/sample and samples (clamped).
        pool_widths (Tensor): (F,) float32 widths rescaled to each group's window.
        geometry (list of int): :func:`eleaf.ops.gabor.pack_geometry` of the groups.
    Returns:
        (taps, windows): 1-D float32, per group the (2n, K) and (n, W) matrices flattened.
    """
    dev = center_freqs.device
    plan = _layout_plan(geometry, dev)
    _check_params(center_freqs, bandwidths, pool_widths, plan.F)
    taps = _alloc((plan.taps_numel,), torch.float32, dev)
    windows = _alloc((plan.win_numel,), torch.float32, dev)
    table, longest = _filter_table(plan, dev)
    with _on_device(center_freqs):
        _gabor_taps_fwd_kernel[(plan.F, triton.cdiv(longest, BLOCK))](
            center_freqs.contiguous(), bandwidths.contiguous(), pool_widths.contiguous(),
            taps, windows, table, NCOL=NCOL, SQRT2PI=SQRT_2PI, BLOCK=BLOCK, num_warps=4)
    return taps, windows


def pack_bwd(grad_taps: torch.Tensor, grad_windows: torch.Tensor, taps: torch.Tensor,
             windows: torch.Tensor, bandwidths: torch.Tensor, pool_widths: torch.Tensor,
             geometry: List[int]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (center_freqs, bandwidths, pool_widths), each (F,) float32, of
    :func:`pack_fwd` from its outputs' gradients (None: zero) and its outputs."""
    dev = taps.device
    plan = _layout_plan(geometry, dev)
    grad_taps = torch.zeros_like(taps) if grad_taps is None else grad_taps.contiguous()
    grad_windows = (torch.zeros_like(windows) if grad_windows is None
                    else grad_windows.contiguous())
    grads = [_alloc((plan.F,), torch.float32, dev) for _ in range(3)]
    table, _ = _filter_table(plan, dev)
    with _on_device(taps):
        _gabor_taps_bwd_kernel[(plan.F,)](
            bandwidths.contiguous(), pool_widths.contiguous(), taps, windows,
            grad_taps, grad_windows, table, *grads, NCOL=NCOL, BLOCK=BLOCK, num_warps=4)
    return tuple(grads)


class GaborPack(torch.autograd.Function):
    """Eager autograd of :func:`pack_fwd`: the custom op's computation without its Python
    dispatch, which costs about 50 us of host time per call (see
    :func:`eleaf.ops.backends.use_custom_ops`)."""

    @staticmethod
    def forward(ctx, center_freqs, bandwidths, pool_widths, geometry):
        taps, windows = pack_fwd(center_freqs, bandwidths, pool_widths, geometry)
        ctx.save_for_backward(taps, windows, bandwidths, pool_widths)
        ctx.geometry = geometry
        return taps, windows

    @staticmethod
    def backward(ctx, grad_taps, grad_windows):
        taps, windows, bandwidths, pool_widths = ctx.saved_tensors
        return pack_bwd(grad_taps, grad_windows, taps, windows, bandwidths, pool_widths,
                        ctx.geometry) + (None,)


@torch.library.custom_op('eleaf::gabor_pack', mutates_args=())
def gabor_pack(center_freqs: torch.Tensor, bandwidths: torch.Tensor, pool_widths: torch.Tensor,
               geometry: List[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`pack_fwd` as a custom op (for torch.compile)."""
    return pack_fwd(center_freqs, bandwidths, pool_widths, geometry)


@gabor_pack.register_fake
def _gabor_pack_fake(center_freqs, bandwidths, pool_widths, geometry):
    _, n_taps, n_win = _numel(geometry)
    return (center_freqs.new_empty((n_taps,), dtype=torch.float32),
            center_freqs.new_empty((n_win,), dtype=torch.float32))


@torch.library.custom_op('eleaf::gabor_pack_bwd', mutates_args=())
def gabor_pack_bwd(grad_taps: torch.Tensor, grad_windows: torch.Tensor, taps: torch.Tensor,
                   windows: torch.Tensor, bandwidths: torch.Tensor, pool_widths: torch.Tensor,
                   geometry: List[int]) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`pack_bwd` as a custom op."""
    return pack_bwd(grad_taps, grad_windows, taps, windows, bandwidths, pool_widths, geometry)


@gabor_pack_bwd.register_fake
def _gabor_pack_bwd_fake(grad_taps, grad_windows, taps, windows, bandwidths, pool_widths,
                         geometry):
    return tuple(bandwidths.new_empty(bandwidths.shape) for _ in range(3))


def _setup_context(ctx, inputs, output):
    _, bandwidths, pool_widths, geometry = inputs
    taps, windows = output
    ctx.save_for_backward(taps, windows, bandwidths, pool_widths)
    ctx.geometry = geometry


def _backward(ctx, grad_taps, grad_windows):
    taps, windows, bandwidths, pool_widths = ctx.saved_tensors
    if grad_taps is None:
        grad_taps = torch.zeros_like(taps)
    if grad_windows is None:
        grad_windows = torch.zeros_like(windows)
    dmu, dsigma, dpw = torch.ops.eleaf.gabor_pack_bwd(grad_taps, grad_windows, taps, windows,
                                                      bandwidths, pool_widths, ctx.geometry)
    return dmu, dsigma, dpw, None


gabor_pack.register_autograd(_backward, setup_context=_setup_context)
