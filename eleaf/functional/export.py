"""Export-friendly forms of the reference operations (``torch.export``, ONNX).

The eager references use a few operations that an exported graph cannot hold or that ONNX has
no form for: complex tensors (the Gabor filters' ``exp(j mu t)``) and ``torch.median``
(``torch.stft`` of the mel baseline exports as ONNX's STFT and needs nothing). While
:func:`is_exporting` is true the references switch to equivalents that compute the same
numbers with real, standard operations (equal in real arithmetic; in float32 within
rounding): :func:`median_lower` here, the real Gabor taps
(:func:`eleaf.functional.gabor.gabor_taps_padded`) and EfficientLEAF's static-shape
filterbank (:mod:`eleaf.functional.static_filterbank`). Eager results never pass through
them.
"""
import torch

__all__ = ['is_exporting', 'median_lower', 'JIT_TRACE_MESSAGE', 'reject_jit_trace']

#: the one sentence ``torch.jit.trace`` of a frontend (of any module running an eleaf op) raises
JIT_TRACE_MESSAGE = ('eleaf frontends do not support torch.jit.trace (nor the TorchScript-based '
                     'torch.onnx.export(..., dynamo=False)): a trace would freeze the group '
                     'geometry and the frame loops to the traced input; use '
                     'torch.export.export or torch.onnx.export(..., dynamo=True)')


def is_exporting() -> bool:
    """Whether ``torch.export.export`` (also under ``torch.onnx.export(..., dynamo=True)``)
    is tracing the caller: ``torch.compiler.is_exporting()`` where torch has it, else False.

    While it is true, :func:`eleaf.ops.resolve_backend` picks the reference (``'torch'``) of
    every op and the references use the export-friendly forms of this module.
    """
    fn = getattr(getattr(torch, 'compiler', None), 'is_exporting', None)
    return bool(fn()) if fn is not None else False


def reject_jit_trace():
    """Raise ``RuntimeError(JIT_TRACE_MESSAGE)`` under ``torch.jit.trace``."""
    if torch.jit.is_tracing():
        raise RuntimeError(JIT_TRACE_MESSAGE)


def median_lower(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """``x.median(dim, keepdim=True).values`` by a top-k (ONNX has no median): the element of
    rank ``(n - 1) // 2`` in ascending order, i.e. the lower middle value for an even n,
    as ``torch.median``. The same value (the gradient, with ties, may go to another of the
    equal elements).

    Args:
        x (Tensor): any shape, n = ``x.shape[dim]`` >= 1.
    Returns:
        Tensor: x's shape with ``dim`` of size 1.
    """
    k = (x.shape[dim] - 1) // 2 + 1
    smallest = torch.topk(x, k, dim=dim, largest=False, sorted=True).values
    return smallest.narrow(dim, k - 1, 1)
