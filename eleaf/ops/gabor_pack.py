"""Group geometry, packed Gabor taps and Gaussian windows of the fused Triton filterbank,
built by Triton kernels: the custom ops ``eleaf::gabor_geometry``, ``eleaf::gabor_pack`` and
its backward ``eleaf::gabor_pack_bwd``.

:func:`eleaf.ops.gabor.pack_taps_ref` computes the same two buffers in plain torch (a few
dozen small ops forward and backward, each a kernel launch on a GPU) and
:func:`eleaf.functional.group_geometry_tensor` the same geometry (about twenty); these ops
take one launch each, which matters where the step is host-bound (EfficientLEAF 8G-opt on a
GPU). Kernels: ``eleaf.kernels.gabor_taps``. Layouts and plans: :mod:`eleaf.ops.gabor_plan`.

Precision: float32 parameters are computed in float32 with the reference's operation order;
the gradients are reduced per filter in float32, deterministically (no atomics).
"""
from typing import List, Optional, Tuple

import torch

from .backends import use_custom_ops
from .gabor_plan import alloc, layout_plan, on_device, parse_layout

try:
    import triton

    from ..kernels.gabor_taps import (NCOL, SQRT_2PI, _gabor_taps_bwd_kernel,
                                      _gabor_taps_fwd_kernel, _group_geometry_kernel)
    HAS_TRITON = True
except Exception:  # ImportError, or a broken Triton installation (see eleaf.ops.gabor)
    HAS_TRITON = False

__all__ = ['geometry_fwd', 'pack_fwd', 'pack_bwd', 'GaborPack', 'gabor_geometry', 'gabor_pack',
           'gabor_pack_bwd', 'BLOCK']

#: taps per program of the forward, and per loop step of the backward
BLOCK = 256


def _check_params(params, F: int, what: str):
    dev = params[0][1].device
    for name, t in params:
        if t.dtype != torch.float32 or tuple(t.shape) != (F,):
            raise ValueError('%s: %s must be float32 of shape (%d,), got %s %s'
                             % (what, name, F, t.dtype, tuple(t.shape)))
        if t.device != dev:
            raise ValueError('%s: all parameters must be on one device' % what)


def geometry_fwd(center_freqs: torch.Tensor, bandwidths: torch.Tensor,
                 layout: List[int]) -> torch.Tensor:
    """int32 (G, 4) ``[s, P, K, W]`` per group from the clamped float32 parameters, computed
    on their device in one launch (the numbers of
    :func:`eleaf.functional.group_geometry_tensor`).

    Args:
        center_freqs, bandwidths (Tensor): (F,) float32, rad/sample and samples.
        layout (list of int): a computed-geometry layout (:func:`eleaf.ops.gabor_plan.caps_layout`).
    """
    if use_custom_ops():
        return torch.ops.eleaf.gabor_geometry(center_freqs, bandwidths, list(layout))
    return _geometry(center_freqs, bandwidths, layout)


def _geometry(center_freqs, bandwidths, layout):
    dev = center_freqs.device
    p = layout_plan(layout, dev)
    if p.thresholds is None:
        raise ValueError('gabor_geometry needs a computed-geometry layout, got a static one')
    _check_params((('center_freqs', center_freqs), ('bandwidths', bandwidths)), p.F,
                  'gabor_geometry')
    geo = alloc((p.G, 4), torch.int32, dev)
    lay = p.layout
    kcap = max(g[2] for g in lay.groups)
    wcap = max(g[3] for g in lay.groups)
    with on_device(center_freqs):
        _group_geometry_kernel[(p.G,)](
            center_freqs.contiguous(), bandwidths.contiguous(), p.thresholds, geo,
            p.F, p.G, p.thresholds.shape[0], lay.hop, lay.pool_size, lay.conv_win_factor,
            float(kcap), kcap, wcap, BLOCK_N=triton.next_power_of_2(p.n_max_group),
            num_warps=1)
    return geo


@torch.library.custom_op('eleaf::gabor_geometry', mutates_args=())
def gabor_geometry(center_freqs: torch.Tensor, bandwidths: torch.Tensor,
                   layout: List[int]) -> torch.Tensor:
    """:func:`geometry_fwd` as a custom op (for torch.compile; not differentiable)."""
    return _geometry(center_freqs, bandwidths, layout)


@gabor_geometry.register_fake
def _gabor_geometry_fake(center_freqs, bandwidths, layout):
    return center_freqs.new_empty((len(parse_layout(layout).groups), 4), dtype=torch.int32)


def pack_fwd(center_freqs: torch.Tensor, bandwidths: torch.Tensor, pool_widths: torch.Tensor,
             geo: Optional[torch.Tensor], layout: List[int]
             ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Packed float32 (taps, windows) of ``eleaf.ops.gabor.gabor_fwd``.

    Args:
        center_freqs, bandwidths (Tensor): (F,) float32, rad/sample and samples (clamped).
        pool_widths (Tensor): (F,) float32 pooling widths: clamped, rescaled here to each
            group's window for a computed-geometry layout; already rescaled for a static one.
        geo (Tensor or None): int32 (G, 4) geometry on the parameters' device (None: the
            static layout's own).
        layout (list of int): the layout (:mod:`eleaf.ops.gabor_plan`).
    Returns:
        (taps, windows): 1-D float32, per group the (2n, K) and (n, W) matrices flattened at
        the group's offsets (the rest of each group's region is not written).
    """
    dev = center_freqs.device
    p = layout_plan(layout, dev)
    geo = p.static_geo if geo is None else geo
    _check_params((('center_freqs', center_freqs), ('bandwidths', bandwidths),
                   ('pool_widths', pool_widths)), p.F, 'gabor_pack')
    taps = alloc((p.taps_numel,), torch.float32, dev)
    windows = alloc((p.win_numel,), torch.float32, dev)
    scale = p.layout.pool_size > 0
    with on_device(center_freqs):
        _gabor_taps_fwd_kernel[(p.F, triton.cdiv(p.longest, BLOCK))](
            center_freqs.contiguous(), bandwidths.contiguous(), pool_widths.contiguous(), geo,
            taps, windows, p.filter_tab, float(p.layout.pool_size), SCALE=scale,
            NCOL=NCOL, SQRT2PI=SQRT_2PI, BLOCK=BLOCK, num_warps=4)
    return taps, windows


def pack_bwd(grad_taps: torch.Tensor, grad_windows: torch.Tensor, taps: torch.Tensor,
             windows: torch.Tensor, bandwidths: torch.Tensor, pool_widths: torch.Tensor,
             geo: Optional[torch.Tensor], layout: List[int]
             ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (center_freqs, bandwidths, pool_widths), each (F,) float32, of
    :func:`pack_fwd` from its outputs' gradients (None: zero) and its outputs."""
    dev = taps.device
    p = layout_plan(layout, dev)
    geo = p.static_geo if geo is None else geo
    grad_taps = torch.zeros_like(taps) if grad_taps is None else grad_taps.contiguous()
    grad_windows = (torch.zeros_like(windows) if grad_windows is None
                    else grad_windows.contiguous())
    grads = [alloc((p.F,), torch.float32, dev) for _ in range(3)]
    with on_device(taps):
        _gabor_taps_bwd_kernel[(p.F,)](
            bandwidths.contiguous(), pool_widths.contiguous(), geo, taps, windows,
            grad_taps, grad_windows, p.filter_tab, *grads, float(p.layout.pool_size),
            SCALE=p.layout.pool_size > 0, NCOL=NCOL, BLOCK=BLOCK, num_warps=4)
    return tuple(grads)


class GaborPack(torch.autograd.Function):
    """Eager autograd of :func:`pack_fwd`: the custom op's computation without its Python
    dispatch, which costs about 50 us of host time per call (see
    :func:`eleaf.ops.backends.use_custom_ops`)."""

    @staticmethod
    def forward(ctx, center_freqs, bandwidths, pool_widths, geo, layout):
        taps, windows = pack_fwd(center_freqs, bandwidths, pool_widths, geo, layout)
        ctx.save_for_backward(taps, windows, bandwidths, pool_widths, geo)
        ctx.layout = layout
        return taps, windows

    @staticmethod
    def backward(ctx, grad_taps, grad_windows):
        taps, windows, bandwidths, pool_widths, geo = ctx.saved_tensors
        return pack_bwd(grad_taps, grad_windows, taps, windows, bandwidths, pool_widths,
                        geo, ctx.layout) + (None, None)


@torch.library.custom_op('eleaf::gabor_pack', mutates_args=())
def gabor_pack(center_freqs: torch.Tensor, bandwidths: torch.Tensor, pool_widths: torch.Tensor,
               geo: Optional[torch.Tensor], layout: List[int]
               ) -> Tuple[torch.Tensor, torch.Tensor]:
    """:func:`pack_fwd` as a custom op (for torch.compile)."""
    return pack_fwd(center_freqs, bandwidths, pool_widths, geo, layout)


@gabor_pack.register_fake
def _gabor_pack_fake(center_freqs, bandwidths, pool_widths, geo, layout):
    lay = parse_layout(layout)
    n_taps = sum(2 * (b - a) * k for a, b, k, _, _ in lay.groups)
    n_win = sum((b - a) * w for a, b, _, w, _ in lay.groups)
    return (center_freqs.new_empty((n_taps,), dtype=torch.float32),
            center_freqs.new_empty((n_win,), dtype=torch.float32))


@torch.library.custom_op('eleaf::gabor_pack_bwd', mutates_args=())
def gabor_pack_bwd(grad_taps: torch.Tensor, grad_windows: torch.Tensor, taps: torch.Tensor,
                   windows: torch.Tensor, bandwidths: torch.Tensor, pool_widths: torch.Tensor,
                   geo: Optional[torch.Tensor], layout: List[int]
                   ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`pack_bwd` as a custom op."""
    return pack_bwd(grad_taps, grad_windows, taps, windows, bandwidths, pool_widths, geo,
                    layout)


@gabor_pack_bwd.register_fake
def _gabor_pack_bwd_fake(grad_taps, grad_windows, taps, windows, bandwidths, pool_widths, geo,
                         layout):
    return tuple(bandwidths.new_empty(bandwidths.shape) for _ in range(3))


def _setup_context(ctx, inputs, output):
    _, bandwidths, pool_widths, geo, layout = inputs
    taps, windows = output
    ctx.save_for_backward(taps, windows, bandwidths, pool_widths, geo)
    ctx.layout = layout


def _backward(ctx, grad_taps, grad_windows):
    taps, windows, bandwidths, pool_widths, geo = ctx.saved_tensors
    if grad_taps is None:
        grad_taps = torch.zeros_like(taps)
    if grad_windows is None:
        grad_windows = torch.zeros_like(windows)
    dmu, dsigma, dpw = torch.ops.eleaf.gabor_pack_bwd(grad_taps, grad_windows, taps, windows,
                                                      bandwidths, pool_widths, geo, ctx.layout)
    return dmu, dsigma, dpw, None, None


gabor_pack.register_autograd(_backward, setup_context=_setup_context)
