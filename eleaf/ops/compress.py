"""Compiled LogTBN compression: ``log1p(10^a x)`` fused with the median subtraction (SPEC §6).

The ``'cpp'`` implementation of the op ``log1p_median`` (see :mod:`eleaf.ops`): wrappers over
``torch.ops.eleaf.log1p_median_fwd`` / ``log1p_median_bwd`` from ``eleaf._C`` (C++ on CPU
tensors, CUDA where the extension was built with it; ``csrc/compress.cpp``,
``csrc/compress_cuda.cu``), with fake (meta) kernels registered here and the autograd
registered in C++ (``csrc/autograd.cpp``; here in Python only for an extension built
before it), so the op works under ``torch.compile`` without a graph break and passes
``torch.library.opcheck``.

Reference: :func:`eleaf.ops.log1p_median_ref`. Dtypes: float32, float64 (computed natively in
float64), float16 and bfloat16 (computed in float32, rounding like the reference). Median
convention: torch.median's (lower middle element for an even T; with ties the element CPU
``torch.median`` returns: rank (T-1)//2 in the order by value then time index); the gradient
of the median goes to that one element.

This module imports without the extension; it then registers nothing and
``eleaf.ops.backends.cpp_status()`` gives the reason.
"""
from typing import Optional

import torch

from ..functional._scalars import cached_scalar
from .backends import cpp_status, register_impl

__all__ = ['log1p_median_cpp', 'log1p_median_fwd', 'log1p_median_bwd', 'AVAILABLE']

AVAILABLE, _REASON, _BUILD_INFO = cpp_status()

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _out_shape(x: torch.Tensor, median_filter: bool, append: bool):
    shape = list(x.shape)
    if median_filter and append:
        if x.ndim == 3:
            shape.insert(1, 2)
        else:
            shape[1] *= 2
    return shape


def log1p_median_fwd(x: torch.Tensor, a: Optional[torch.Tensor], per_band: bool,
                     median_filter: bool, append: bool):
    """Forward: ``(y, idx)``, see ``csrc/compress.cpp``.

    Args:
        x (Tensor): (B, F, T) or (B, C, F, T) (any (..., F, T) without ``append``).
        a (Tensor, optional): one element, or (F,) when ``per_band``; None for plain log1p.
    Returns:
        Tensor: y, (B, F, T) / (B, C, F, T), or (B, 2, F, T) / (B, 2C, F, T) with
        ``median_filter and append``.
        Tensor: idx, int64 x.shape[:-1], time index of each row's median (empty (0,)
        without ``median_filter``).
    """
    return torch.ops.eleaf.log1p_median_fwd(x, a, per_band, median_filter, append)


def log1p_median_bwd(grad_y, x, a, idx, per_band: bool, median_filter: bool, append: bool):
    """Backward: ``(grad_x, grad_a)``; grad_a is empty (0,) when a is None."""
    return torch.ops.eleaf.log1p_median_bwd(grad_y, x, a, idx, per_band, median_filter, append)


def _cuda_built() -> bool:
    return bool(_BUILD_INFO) and 'cuda' in _BUILD_INFO


def check(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when the compiled op runs on ``device``/``dtype``, else the reason why not."""
    if dtype not in SUPPORTED_DTYPES:
        return 'eleaf._C log1p_median supports float32, float64, float16 and bfloat16, got %s' % (
            str(dtype).replace('torch.', ''))
    if device.type == 'cpu':
        return None
    if device.type == 'cuda':
        if _cuda_built():
            return None
        return ('eleaf._C was built without CUDA kernels (%s); reinstall with nvcc and a CUDA '
                'build of torch: pip install --no-build-isolation .' % _BUILD_INFO)
    return 'eleaf._C has no kernels for device type %r' % device.type


def log1p_median_cpp(x: torch.Tensor, a, per_band: bool, median_filter: bool,
                     append: bool) -> torch.Tensor:
    """Same semantics as :func:`eleaf.ops.log1p_median_ref`, fused in one compiled kernel.

    Args:
        x (Tensor): (B, F, T) or (B, C, F, T); any float dtype (see module docstring).
        a (Tensor or float, optional): scalar (one element), or (F,) when ``per_band``;
            None for plain log1p. Differentiable.
        per_band (bool): a is per band.
        median_filter (bool): subtract the median over time.
        append (bool): with ``median_filter``, return ``cat(l, l - m)`` along the channel
            axis: (B, 2, F, T) or (B, 2C, F, T).
    Returns:
        Tensor: the reference's result (shape and dtype).
    """
    if a is not None:
        if not isinstance(a, torch.Tensor):
            # one cached device tensor per value: no host-to-device copy per forward
            a = cached_scalar(a, torch.float64, x)
        elif a.device != x.device and a.ndim == 0:
            a = a.to(x.device)
        # the reference's type promotion: a 0-dim a keeps x's dtype, a dimensioned one promotes
        if a.ndim > 0:
            dtype = torch.promote_types(x.dtype, a.dtype)
            if dtype != x.dtype:
                x = x.to(dtype)
    y, _ = torch.ops.eleaf.log1p_median_fwd(x, a, per_band, median_filter, append)
    return y


if AVAILABLE:
    @torch.library.register_fake('eleaf::log1p_median_fwd')
    def _log1p_median_fwd_fake(x, a, per_band, median_filter, append):
        torch._check(x.dtype in SUPPORTED_DTYPES,
                     lambda: 'eleaf::log1p_median: unsupported dtype %s' % x.dtype)
        y = x.new_empty(_out_shape(x, median_filter, append))
        idx = (x.new_empty(x.shape[:-1], dtype=torch.long) if median_filter
               else x.new_empty((0,), dtype=torch.long))
        return y, idx

    @torch.library.register_fake('eleaf::log1p_median_bwd')
    def _log1p_median_bwd_fake(grad_y, x, a, idx, per_band, median_filter, append):
        gx = torch.empty_like(x, memory_format=torch.contiguous_format)
        ga = torch.empty_like(a, memory_format=torch.contiguous_format) if a is not None \
            else x.new_empty((0,))
        return gx, ga

    def _setup_context(ctx, inputs, output):
        x, a, per_band, median_filter, append = inputs
        _, idx = output
        ctx.save_for_backward(x, a, idx)
        ctx.flags = (per_band, median_filter, append)
        ctx.has_a = a is not None

    def _backward(ctx, grad_y, grad_idx):
        x, a, idx = ctx.saved_tensors
        if not ctx.has_a:
            a = None
        need_x = ctx.needs_input_grad[0]
        need_a = ctx.has_a and ctx.needs_input_grad[1]
        if not (need_x or need_a):
            return None, None, None, None, None
        gx, ga = torch.ops.eleaf.log1p_median_bwd(grad_y, x, a, idx, *ctx.flags)
        return (gx if need_x else None), (ga if need_a else None), None, None, None

    # eleaf._C registers the op's autograd in C++ (csrc/autograd.cpp: less host time
    # per call); an extension built before that gets this Python one
    if not torch._C._dispatch_has_kernel_for_dispatch_key('eleaf::log1p_median_fwd',
                                                          'Autograd'):
        torch.library.register_autograd('eleaf::log1p_median_fwd', _backward,
                                        setup_context=_setup_context)

    register_impl('log1p_median', 'cpp', log1p_median_cpp, check)
