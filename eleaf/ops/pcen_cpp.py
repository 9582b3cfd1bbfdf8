"""Compiled CPU PCEN (SPEC §6): the ``'cpp'`` implementation of the op ``pcen``.

Wrappers over ``torch.ops.eleaf.pcen_fwd`` / ``pcen_bwd`` from ``eleaf._C``
(``csrc/pcen.cpp``), with fake (meta) kernels and autograd registered here, so the op works
under ``torch.compile`` without a graph break and passes ``torch.library.opcheck``.

Reference: :func:`eleaf.functional.pcen_ref`, on the *effective* parameters of
:func:`eleaf.functional.pcen_parameters`; the mapping from the stored parameters (both
parameterisations, ``learn_logs`` True or False) stays in plain torch, so autograd carries the
gradients through it. Ops::

    eleaf::pcen_fwd(x, s, alpha, delta, r, float eps, float? clamp) -> y
    eleaf::pcen_bwd(grad, x, s, alpha, delta, r, float eps, float? clamp)
        -> (dx, ds, dalpha, ddelta, dr)

Nothing but x and the parameters is saved for the backward: it recomputes the smoother M from
x (one multiply-add per element).

Semantics and precision:

- The smoother ``M_0 = xc_0, M_t = (1 - s) M_{t-1} + s xc_t`` (xc: x clamped from below at
  ``clamp`` when given) and ``y = (xc exp(-alpha (ln eps + log1p(M / eps))) + delta)^r -
  delta^r``. dx is zero where ``x < clamp`` and passes at equality (torch.clamp).
- Evaluation: the same function in a better-conditioned form, ``log(M + eps)`` for
  ``ln eps + log1p(M / eps)`` and, for delta > 0 and z = x' + delta > 0,
  ``delta^r expm1(r log1p(x' / delta))`` for ``z^r - delta^r`` (x' = xc (M + eps)^-alpha; the
  literal difference loses all float32 digits when x' << delta); the literal formulas with
  torch.pow's conventions where delta <= 0 or z <= 0, so special values match the reference.
- Dtypes: float32 is computed in float32 with the smoother recursion and its adjoint in
  float64; measured against the float64 reference it is within ~5e-7 (relative L2, output and
  all gradients, up to 6000 frames; 1.8e-6 for dx at T = 1), where the float32 reference itself
  is up to 2.4e-5 off (its ds over 6000 frames); details in ``csrc/README.md``. float64
  natively; float16 and bfloat16 in float32, rounded at the end. The result dtype follows the
  reference's type promotion (x and the (F,) parameters: float32 parameters with a float16 x
  give float32); parameter gradients have the parameters' dtypes.
- Parameter gradients are summed per row in float64 and reduced per band in row order: the
  same bits whatever the number of threads.
- NaN / inf: as the reference. With s outside [0, 1] (possible in the linear
  parameterisation, where s is not clamped) the smoother can turn negative and
  ``log1p(M / eps)`` is NaN from that frame on, exactly as in the reference (the findings are
  in the docstring of :mod:`eleaf.ops.pcen`); silence with delta = 0 and no clamp gives the
  reference's inf / NaN gradients.

This module imports without the extension; it then registers nothing and
``eleaf.ops.backends.cpp_status()`` gives the reason.
"""
from typing import Optional

import torch
from torch import Tensor

from ..functional._scalars import cached_scalar
from .backends import cpp_status, register_impl

__all__ = ['pcen_cpp', 'pcen_fwd', 'pcen_bwd', 'check', 'AVAILABLE']

AVAILABLE, _REASON, _BUILD_INFO = cpp_status()

SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def pcen_fwd(x: Tensor, s: Tensor, alpha: Tensor, delta: Tensor, r: Tensor, eps: float,
             clamp: Optional[float] = None) -> Tensor:
    """Forward of the compiled op: y (x's shape and dtype), no autograd bookkeeping beyond
    the op's. x (..., F, T); s, alpha, delta, r (F,)."""
    return torch.ops.eleaf.pcen_fwd(x, s, alpha, delta, r, float(eps),
                                    None if clamp is None else float(clamp))


def pcen_bwd(grad: Tensor, x: Tensor, s: Tensor, alpha: Tensor, delta: Tensor, r: Tensor,
             eps: float, clamp: Optional[float] = None):
    """Backward: ``(dx, ds, dalpha, ddelta, dr)``, the gradients of ``sum(grad * y)``."""
    return torch.ops.eleaf.pcen_bwd(grad, x, s, alpha, delta, r, float(eps),
                                    None if clamp is None else float(clamp))


def check(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when the compiled op runs on ``device``/``dtype``, else the reason why not."""
    if dtype not in SUPPORTED_DTYPES:
        return 'eleaf._C pcen supports float32, float64, float16 and bfloat16, got %s' % (
            str(dtype).replace('torch.', ''))
    if device.type != 'cpu':
        return 'eleaf._C pcen has CPU kernels only, got device type %r' % device.type
    return None


def _as_param(p, x: Tensor) -> Tensor:
    """``torch.as_tensor(p, device=x.device)`` without a host-to-device copy per call for a
    Python number (a cached tensor of the default dtype, as ``as_tensor`` makes)."""
    if isinstance(p, Tensor):
        return p if p.device == x.device else p.to(x.device)
    return cached_scalar(p, torch.get_default_dtype(), x)


def pcen_cpp(x: Tensor, s: Tensor, alpha: Tensor, delta: Tensor, r: Tensor, eps: float,
             clamp: Optional[float] = None) -> Tensor:
    """PCEN with the compiled CPU kernels: same signature, semantics and result dtype as
    :func:`eleaf.functional.pcen_ref`, differentiable in x, s, alpha, delta and r.

    Args:
        x (Tensor): (..., F, T) non-negative energies, e.g. (B, F, T) or (B, C, F, T); CPU,
            float32/float64/float16/bfloat16, any strides.
        s, alpha, delta, r (Tensor): (F,) effective parameters (or one element / scalars,
            shared by all bands).
        eps (float): floor of the smoother, e.g. 1e-12 (LEAF) or 1e-6.
        clamp (float, optional): lower bound applied to x first, e.g. 1e-5 (LEAF).
    Returns:
        Tensor: (..., F, T).
    """
    if not AVAILABLE:
        raise RuntimeError('pcen_cpp needs the compiled extension: %s' % _REASON)
    if x.dim() < 2:
        raise ValueError('pcen: x must be (..., F, T), got shape %s' % (tuple(x.shape),))
    F = x.shape[-2]
    params = []
    dtype = x.dtype
    for name, p in (('s', s), ('alpha', alpha), ('delta', delta), ('r', r)):
        p = _as_param(p, x)
        if p.dim() > 0:  # the reference's type promotion: dimensioned parameters promote x
            dtype = torch.promote_types(dtype, p.dtype)
        if p.dim() == 0 or (p.dim() == 1 and p.shape[0] == 1 and F != 1):
            p = p.reshape(1).expand(F)
        if p.dim() != 1 or p.shape[0] != F:
            raise ValueError('pcen: %s must have shape (F,) = (%d,), got %s'
                             % (name, F, tuple(p.shape)))
        params.append(p)
    if dtype != x.dtype:
        x = x.to(dtype)
    return torch.ops.eleaf.pcen_fwd(x, *params, float(eps),
                                    None if clamp is None else float(clamp))


if AVAILABLE:
    @torch.library.register_fake('eleaf::pcen_fwd')
    def _pcen_fwd_fake(x, s, alpha, delta, r, eps, clamp):
        torch._check(x.dtype in SUPPORTED_DTYPES,
                     lambda: 'eleaf::pcen_fwd: unsupported dtype %s' % x.dtype)
        torch._check(x.dim() >= 2, lambda: 'eleaf::pcen_fwd: x must be (..., F, T)')
        return x.new_empty(x.shape)

    @torch.library.register_fake('eleaf::pcen_bwd')
    def _pcen_bwd_fake(grad, x, s, alpha, delta, r, eps, clamp):
        return (x.new_empty(x.shape),
                *(p.new_empty(p.shape) for p in (s, alpha, delta, r)))

    def _setup_context(ctx, inputs, output):
        x, s, alpha, delta, r, eps, clamp = inputs
        ctx.save_for_backward(x, s, alpha, delta, r)
        ctx.eps, ctx.clamp = eps, clamp

    def _backward(ctx, grad_y):
        x, s, alpha, delta, r = ctx.saved_tensors
        need = ctx.needs_input_grad
        if grad_y is None or not any(need[:5]):
            return (None,) * 7
        grads = torch.ops.eleaf.pcen_bwd(grad_y, x, s, alpha, delta, r, ctx.eps, ctx.clamp)
        return tuple(g if n else None for g, n in zip(grads, need[:5])) + (None, None)

    # eleaf._C registers the op's autograd in C++ (csrc/autograd.cpp: less host time per
    # call); an extension built before that gets this Python one
    if not torch._C._dispatch_has_kernel_for_dispatch_key('eleaf::pcen_fwd', 'Autograd'):
        torch.library.register_autograd('eleaf::pcen_fwd', _backward,
                                        setup_context=_setup_context)

    register_impl('pcen', 'cpp', pcen_cpp, check)
