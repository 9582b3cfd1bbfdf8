"""Per-channel energy normalisation, reference (SPEC §6).

Letters: B batch, F bands, T frames; leading axes beyond B are allowed as long as F is the
previous-to-last axis.
"""
from typing import Optional, Tuple

import torch

from ._scalars import cached_scalar

__all__ = ['pcen_smoother_ref', 'pcen_ref', 'pcen_parameters']


def pcen_parameters(s: torch.Tensor, alpha: torch.Tensor, delta: torch.Tensor, r: torch.Tensor,
                    learn_logs: bool) -> Tuple[torch.Tensor, ...]:
    """Effective (s, alpha, delta, r), each (F,), from the stored PCEN parameters.

    With ``learn_logs`` the stored values are logs and are exponentiated; otherwise
    ``alpha = min(alpha, 1)``, ``delta = max(delta, 0)`` and ``r = 1 / max(r_stored, 1)``
    (the stored r is the inverse exponent), while s is used as stored.
    """
    if learn_logs:
        return s.exp(), alpha.exp(), delta.exp(), r.exp()
    return s, alpha.clamp(max=1), delta.clamp(min=0), 1. / r.clamp(min=1)


def pcen_smoother_ref(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """First-order IIR smoother along the last axis, ``M_0 = x_0``,
    ``M_t = (1 - s) M_{t-1} + s x_t``; a loop over frames, as in the original.

    Args:
        x (Tensor): (..., F, T).
        s (Tensor): (F,) smoothing coefficients (or a scalar).
    Returns:
        Tensor: (..., F, T).
    """
    smoother = [x[..., 0]]
    for frame in range(1, x.shape[-1]):
        smoother.append((1 - s) * smoother[-1] + s * x[..., frame])
    return torch.stack(smoother, -1)


def pcen_ref(x: torch.Tensor, s: torch.Tensor, alpha: torch.Tensor, delta: torch.Tensor,
             r: torch.Tensor, eps: float, clamp: Optional[float] = None) -> torch.Tensor:
    """PCEN on effective parameters (see :func:`pcen_parameters`).

    ``y = (x * exp(-alpha * (ln eps + log1p(M / eps))) + delta)^r - delta^r``, the stable
    form of ``(x / (eps + M)^alpha + delta)^r - delta^r``; x is first clamped from below
    at ``clamp`` when given.

    Args:
        x (Tensor): (..., F, T) non-negative energies.
        s, alpha, delta, r (Tensor): (F,) effective parameters.
        eps (float): floor of the smoother.
        clamp (float, optional): lower bound applied to x.

    float16 and bfloat16 (x or parameters) are computed in float32 (eps = 1e-12 is 0 in
    float16, and ``M / eps`` overflows): x is clamped in its dtype (as ``x.clamp`` rounds
    the bound), then everything runs in float32 (or float64 with float64 parameters) and the
    result is rounded once to the result dtype.

    Returns:
        Tensor: (..., F, T), x's dtype promoted with the parameters'.
    """
    if clamp is not None:
        x = x.clamp(min=clamp)
    if x.dtype in _REDUCED or any(p.dtype in _REDUCED for p in (s, alpha, delta, r)
                                  if isinstance(p, torch.Tensor)):
        out_dtype = x.dtype
        for p in (s, alpha, delta, r):
            if isinstance(p, torch.Tensor):
                out_dtype = torch.promote_types(out_dtype, p.dtype)
        up = [p.float() if isinstance(p, torch.Tensor) and p.dtype in _REDUCED else p
              for p in (s, alpha, delta, r)]
        return pcen_ref(x.float() if x.dtype in _REDUCED else x, *up, eps, None).to(out_dtype)
    alpha = alpha[:, None]
    delta = delta[:, None]
    r = r[:, None]
    smoother = pcen_smoother_ref(x, s)
    # a cached device tensor: the same numbers as before, no host-to-device copy per call
    eps = cached_scalar(eps, x.dtype, x)
    smoother = torch.exp(-alpha * (torch.log(eps) + torch.log1p(smoother / eps)))
    return (x * smoother + delta)**r - delta**r


_REDUCED = (torch.float16, torch.bfloat16)
