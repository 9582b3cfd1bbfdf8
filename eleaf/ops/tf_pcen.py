"""TF LEAF's PCEN (op ``tf_pcen``) on eleaf's Triton PCEN kernels (``'triton'``,
:mod:`eleaf.ops.pcen`).

Reference: :func:`eleaf.functional.tf_leaf.tf_pcen_ref`. The mathematics is eleaf's PCEN on
mapped parameters: TF's smoother ``M_t = w x_t + (1 - w) M_{t-1}`` from ``M_{-1} = x_0`` is
eleaf's ``M_0 = x_0`` recursion with ``s = clip(smooth, 0, 1)``; ``x / (floor + M)^alpha`` is
eleaf's ``x (M + eps)^-alpha`` with ``alpha = min(alpha, 1)`` and ``eps = floor``; TF's root is
the inverse of eleaf's exponent, ``r = 1 / max(root, 1)``; delta passes unclamped and there is
no input clamp. The clips and the inverse are torch ops, so their gradients are the
reference's (``torch.clamp`` passes the gradient at equality).

Numerics: the kernels evaluate ``x (M + eps)^-alpha`` as ``x exp(-alpha log(M + eps))``, not as
TF's division, so where TF's quotient is exactly 1 (smooth clipped to 1 and alpha to 1: M = x)
the kernels give 1 within a few float32 ulps. A later instance norm of such a constant channel
divides that rounding noise by ``sqrt(var + 1e-6)``: in the recorded TF configuration
``k662_preemp_norm`` the compiled CPU PCEN on these parameters ends 4.9e-5 from float64 where
TF's float32 and the float32 reference end 8.6e-6 from it. That is why the C++ PCEN does not
serve ``tf_pcen`` (CPU runs the reference; tests/modules/test_tf_leaf.py holds it to TF's
recordings); the Triton kernels do, on the GPU, where the reference's frame loop is the
bottleneck. A negative delta gives NaN in the reference
(a fractional power of a negative number) unless ``max(root, 1) == 1``; the kernels compute
``v^r`` for every ``delta <= 0``, which is finite.
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
    """Register ``tf_pcen`` on Triton where Triton's PCEN is registered, with its check."""
    entry = _REGISTRY.get('pcen', {}).get('triton')
    if entry is not None:
        register_impl('tf_pcen', 'triton', tf_pcen_via(entry.fn), entry.check)


_register()
