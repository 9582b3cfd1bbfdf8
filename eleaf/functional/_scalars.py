"""Python numbers as device tensors without a host-to-device copy per call.

``torch.tensor(value, device='cuda')`` copies from the host every time it runs: a sync point
in every forward, and an error under CUDA-graph capture. :func:`cached_scalar` makes each
(value, dtype, device) tensor once and hands out the same tensor afterwards (a few bytes per
entry). The tensor is made outside inference mode (so that autograd may save it later) and
never while ``torch.compile`` traces or on fake tensors (there the caller gets a fresh
tensor: a constant of the traced graph).
"""
import math

import torch

__all__ = ['cached_scalar']

_CACHE = {}
_MAX_ENTRIES = 256


def _tracing(device_of) -> bool:
    if torch.compiler.is_compiling():
        return True
    try:
        from torch._subclasses.fake_tensor import FakeTensor
    except ImportError:  # pragma: no cover
        return False
    return isinstance(device_of, FakeTensor)


def cached_scalar(value: float, dtype: torch.dtype, like: torch.Tensor) -> torch.Tensor:
    """A 0-dim tensor holding ``value`` in ``dtype`` on ``like``'s device; the same tensor
    object for repeated calls (treat it as read-only)."""
    value = float(value)
    device = like.device
    if _tracing(like):
        return torch.tensor(value, dtype=dtype, device=device)
    key = (value if not math.isnan(value) else 'nan', dtype, device)
    found = _CACHE.get(key)
    if found is None:
        if len(_CACHE) >= _MAX_ENTRIES:
            _CACHE.clear()
        with torch.inference_mode(False), torch.no_grad():
            found = torch.tensor(value, dtype=dtype, device=device)
        _CACHE[key] = found
    return found
