"""Export-friendly forms of the reference operations (``torch.export``, ONNX).

The eager references use a few operations that an exported graph cannot hold or that ONNX has
no form for: complex tensors (the Gabor filters' ``exp(j mu t)``), ``torch.median`` and
``torch.stft``. While :func:`is_exporting` is true the references switch to the equivalents
here, which compute the same numbers with real, standard operations (equal in real
arithmetic; in float32 within rounding). Eager results never pass through this module.

Letters: F filters or bins, T frames, N window (FFT) size.
"""
import math

import numpy as np
import torch

__all__ = ['is_exporting', 'median_lower', 'dft_kernel', 'JIT_TRACE_MESSAGE',
           'reject_jit_trace']

#: the one sentence ``torch.jit.trace`` of a frontend raises
JIT_TRACE_MESSAGE = ('eleaf frontends do not support torch.jit.trace (data-dependent group '
                     'geometry and frame loops would be frozen to the traced input); use '
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


def dft_kernel(window: torch.Tensor) -> torch.Tensor:
    """Conv1d weights of a one-frame real DFT with ``window`` (``n_fft = N``), in real
    arithmetic: bin k's filters are ``window[n] cos(2 pi k n / N)`` and
    ``-window[n] sin(2 pi k n / N)``, interleaved (re, im) per bin, the layout of
    :func:`eleaf.functional.mel.stft_kernel` (which derives them from ``torch.stft``). The
    angles are reduced exactly (``k n mod N``) and evaluated in float64.

    Args:
        window (Tensor): (N,) analysis window.
    Returns:
        Tensor: (2 (N // 2 + 1), 1, N) in the window's dtype and device.
    """
    n_fft = window.shape[0]
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    angle = 2 * math.pi * ((k * n) % n_fft) / n_fft
    basis = np.stack((np.cos(angle), -np.sin(angle)), axis=1).reshape(-1, n_fft)
    basis = torch.as_tensor(basis, dtype=window.dtype, device=window.device)
    return (basis * window[None, :]).unsqueeze(1)
