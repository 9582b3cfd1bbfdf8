"""TF LEAF's PCEN (op ``tf_pcen``) on eleaf's PCEN kernels: the compiled CPU recursion
(``'cpp'``, :mod:`eleaf.ops.pcen_cpp`) and the Triton scan (``'triton'``, :mod:`eleaf.ops.pcen`).

Reference: :func:`eleaf.functional.tf_leaf.tf_pcen_ref`. The mathematics is eleaf's PCEN on
mapped parameters: TF's smoother ``M_t = w x_t + (1 - w) M_{t-1}`` from ``M_{-1} = x_0`` is
eleaf's ``M_0 = x_0`` recursion with ``s = clip(smooth, 0, 1)``; ``x / (floor + M)^alpha`` is
eleaf's ``x (M + eps)^-alpha`` with ``alpha = min(alpha, 1)`` and ``eps = floor``; TF's root is
the inverse of eleaf's exponent, ``r = 1 / max(root, 1)``; delta passes unclamped and there is
no input clamp. The clips and the inverse are torch ops, so their gradients are the
reference's (``torch.clamp`` passes the gradient at equality).

Numerics: both kernels evaluate ``x (M + eps)^-alpha`` as ``(x / (M + eps)) exp((1 - alpha)
log(M + eps))``, which for ``alpha = 1`` is TF's correctly rounded quotient. That matters in
the recorded TF configuration ``k662_preemp_norm``: smooth and alpha clipped to 1 make a
channel's PCEN output constant, and the instance norm after it divides its rounding noise by
``sqrt(var + 1e-6)``. There the compiled PCEN ends 8.4e-6 from float64, like TF's float32
(8.6e-6); with ``x exp(-alpha log(M + eps))`` it ended 4.9e-5 from it. A negative delta gives
NaN in the reference (a fractional power of a negative number) unless ``max(root, 1) == 1``;
the kernels compute ``v^r`` for every ``delta <= 0``, which is finite.
"""
import torch

from .backends import _REGISTRY, register_impl

__all__ = ['tf_pcen_parameters', 'tf_pcen_via']


def tf_pcen_parameters(smooth: torch.Tensor, alpha: torch.Tensor, delta: torch.Tensor,
                       root: torch.Tensor, num_channels: int):
    """Effective eleaf PCEN parameters (s, alpha, delta, r), each (F,), of TF's stored ones."""
    s = smooth.clamp(0., 1.)
    if s.numel() == 1 and num_channels != 1:
        s = s.reshape(1).expand(num_channels)
    return s, alpha.clamp(max=1.), delta, 1. / root.clamp(min=1.)


def tf_pcen_via(pcen_fn):
    """The ``tf_pcen`` op on ``pcen_fn`` (the signature of :func:`eleaf.functional.pcen_ref`)."""
    def tf_pcen(x: torch.Tensor, smooth: torch.Tensor, alpha: torch.Tensor,
                delta: torch.Tensor, root: torch.Tensor, floor: float) -> torch.Tensor:
        """TF LEAF's PCEN; same signature and semantics as ``tf_pcen_ref``. x (B, F, T)."""
        if x.dim() < 2:
            raise ValueError('tf_pcen: x must be (..., F, T), got shape %s' % (tuple(x.shape),))
        params = tf_pcen_parameters(smooth, alpha, delta, root, x.shape[-2])
        return pcen_fn(x, *params, float(floor), None)
    tf_pcen.__qualname__ = tf_pcen.__name__ = 'tf_pcen_' + getattr(pcen_fn, '__name__', 'pcen')
    return tf_pcen


def _register():
    """Register ``tf_pcen`` for every backend that has a PCEN implementation, with its check."""
    for backend, entry in _REGISTRY.get('pcen', {}).items():
        if backend != 'torch':
            register_impl('tf_pcen', backend, tf_pcen_via(entry.fn), entry.check)


_register()
