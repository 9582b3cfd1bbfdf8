"""Trainable per-channel energy normalisation (SPEC §6)."""
from typing import Optional

import numpy as np
import torch
import torch.nn as nn

from ..functional.pcen import pcen_parameters
from ..ops import check_backend_name, select_impl
from . import _validate as V

__all__ = ['PCEN']


#: the largest initial delta (the offset before the root; the PCEN papers use 2)
MAX_PCEN_DELTA = 1e6
#: the smallest root exponent r (a 1000th root; 1 / r must be a float32 number)
MIN_PCEN_R = 1e-3
#: the smallest eps (it must stay a positive float32 number)
MIN_PCEN_EPS = 1e-30


def _check_pcen_args(num_bands, s, alpha, delta, r, eps, learn_logs, clamp):
    """PCEN's ranges: s in (0, 1] (the smoother's weight), alpha in [0, 1] (the gain
    exponent; the forward clamps it to 1 without ``learn_logs``, and with them a larger one
    overflows), delta in [0, 1e6], r in [1e-3, 1] (the root exponent; likewise), eps in
    [1e-30, 1],
    clamp None or >= 0; alpha and delta strictly positive with ``learn_logs``, which stores
    their logs."""
    V.check_int('PCEN', 'num_bands', num_bands, 1, None)
    learn_logs = V.check_bool('PCEN', 'learn_logs', learn_logs)
    V.check_real('PCEN', 's', s, 0, 1, low_open=True)
    V.check_real('PCEN', 'alpha', alpha, 0, 1, low_open=learn_logs)
    V.check_real('PCEN', 'delta', delta, 0, MAX_PCEN_DELTA, low_open=learn_logs)
    V.check_real('PCEN', 'r', r, MIN_PCEN_R, 1)
    V.check_real('PCEN', 'eps', eps, MIN_PCEN_EPS, 1)
    V.check_optional_real('PCEN', 'clamp', clamp, low=0)


class PCEN(nn.Module):
    """Trainable PCEN: ``y = (x / (eps + M)^alpha + delta)^r - delta^r`` with the smoother
    ``M_t = (1 - s) M_{t-1} + s x_t``, ``M_0 = x_0``, computed in the stable form
    ``x * exp(-alpha (ln eps + log1p(M / eps)))``.

    Args:
        num_bands (int): F, size of each parameter.
        s, alpha, delta, r (float): initial values. (Defaults: 0.025, 1., 1., 1.)
        eps (float): floor of the smoother. (Default: 1e-6)
        learn_logs (bool): store the natural logs of all four parameters (the PCEN paper);
            otherwise store ``s, alpha, delta`` and ``1/r`` and clamp in the forward
            (``alpha <= 1``, ``delta >= 0``, ``r = 1 / max(r_stored, 1)``; s is not
            clamped), as the LEAF paper. (Default: True)
        clamp (float, optional): lower bound applied to the input first.
        backend (str, keyword-only): 'auto', 'torch', 'triton' or 'cpp'. (Default: 'auto')
    Shape:
        (B, F, T) or (B, C, F, T) -> same; T is the last axis.
    """

    def __init__(self, num_bands: int, s: float = 0.025, alpha: float = 1., delta: float = 1.,
                 r: float = 1., eps: float = 1e-6, learn_logs: bool = True,
                 clamp: Optional[float] = None, *, backend: str = 'auto'):
        super().__init__()
        _check_pcen_args(num_bands, s, alpha, delta, r, eps, learn_logs, clamp)
        if learn_logs:
            s, alpha, delta, r = np.log(s), np.log(alpha), np.log(delta), np.log(r)
        else:
            r = 1. / r
        self.learn_logs = learn_logs
        self.s = nn.Parameter(torch.full((num_bands,), float(s)))
        self.alpha = nn.Parameter(torch.full((num_bands,), float(alpha)))
        self.delta = nn.Parameter(torch.full((num_bands,), float(delta)))
        self.r = nn.Parameter(torch.full((num_bands,), float(r)))
        self.eps = torch.as_tensor(eps)  # a plain attribute, as in the original
        self._eps = float(eps)  # the exact value, so that float64 stays float64
        self.clamp = clamp
        self.backend = check_backend_name(backend)

    def effective_parameters(self):
        """(s, alpha, delta, r), each (F,), as the forward uses them."""
        return pcen_parameters(self.s, self.alpha, self.delta, self.r, self.learn_logs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, impl = select_impl('pcen', self.backend, x.device, x.dtype)
        s, alpha, delta, r = self.effective_parameters()
        return impl(x, s, alpha, delta, r, self._eps, self.clamp)

    def extra_repr(self):
        return 'num_bands=%d, learn_logs=%r, eps=%g, clamp=%r, backend=%r' % (
            self.s.shape[0], self.learn_logs, self._eps, self.clamp, self.backend)
