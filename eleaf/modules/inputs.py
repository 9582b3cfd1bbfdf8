"""Input validation shared by the frontends.

The original promotes the rank with ``while x.ndim < 3: x = x[:, None]``: (B, L) becomes
(B, 1, L) and a 1-D (L,) becomes (L, 1, 1). eleaf keeps that and rejects everything the
original would fail on later with an obscure message.
"""
import os
import warnings

import torch

__all__ = ['set_debug', 'debug_enabled', 'check_waveform', 'OneDimensionalInputWarning']

_DEBUG = [os.environ.get('ELEAF_DEBUG', '0') not in ('', '0')]
_WARNED_1D = [False]


class OneDimensionalInputWarning(UserWarning):
    """A 1-D waveform (L,) was taken, as the original does, for L one-sample signals."""


def one_dimensional_message(name: str, length: int) -> str:
    return ('%s got a 1-D waveform of shape (%d,): as in the original EfficientLEAF code it '
            'is taken as a batch of %d one-sample signals, not as one clip. Pass one clip as '
            'x[None] (shape (1, %d)); pass x[:, None] (shape (%d, 1)) to keep this meaning '
            'without the warning' % (name, length, length, length, length))


def _caller_stacklevel() -> int:
    """The stacklevel of the first frame outside eleaf and torch (the user's call)."""
    import sys
    skip = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            os.path.dirname(os.path.abspath(torch.__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(skip):
        frame, level = frame.f_back, level + 1
    return level


def _warn_1d(name: str, length: int):
    """Warn once per process (the warning says how to pass one clip)."""
    if not _WARNED_1D[0]:
        _WARNED_1D[0] = True
        warnings.warn(one_dimensional_message(name, length), OneDimensionalInputWarning,
                      stacklevel=_caller_stacklevel())


def set_debug(enabled: bool = True):
    """Turn on (or off) the costly checks, e.g. for non-finite input values.

    Also enabled by the environment variable ``ELEAF_DEBUG=1``.
    """
    _DEBUG[0] = bool(enabled)


def debug_enabled() -> bool:
    return _DEBUG[0]


def check_waveform(x, reference: torch.Tensor, name: str = 'frontend') -> torch.Tensor:
    """Validate and rank-promote a waveform batch.

    Args:
        x: (B, L) or (B, 1, L) floating tensor ((L,) is promoted to (L, 1, 1), as in the
            original, with a one-time :class:`OneDimensionalInputWarning` saying how to pass
            one clip).
        reference (Tensor): a parameter of the module, for device and dtype.
    Returns:
        Tensor: (B, 1, L).
    Raises:
        TypeError: not a tensor, or not a floating dtype.
        ValueError: wrong rank or channel count, empty batch or length, another device than
            the parameters, a dtype other than the parameters' outside autocast, or (debug
            mode) non-finite values.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError('%s expects a torch.Tensor waveform of shape (B, L) or (B, 1, L), '
                        'got %s' % (name, type(x).__name__))
    if not x.is_floating_point():
        raise TypeError('%s expects a floating-point waveform (float32, float64, float16 or '
                        'bfloat16), got %s' % (name, x.dtype))
    if x.ndim == 1:
        _warn_1d(name, x.shape[0])
    while x.ndim < 3:
        x = x[:, None]
    if x.ndim != 3 or x.shape[1] != 1:
        raise ValueError('%s expects a waveform of shape (B, L) or (B, 1, L) (one channel), got '
                         '%s' % (name, tuple(x.shape)))
    if x.shape[0] == 0 or x.shape[-1] == 0:
        raise ValueError('%s got an empty waveform batch of shape %s; expected B >= 1 and '
                         'L >= 1' % (name, tuple(x.shape)))
    if x.device != reference.device:
        raise ValueError('%s: input is on %s but the parameters are on %s; move one of them '
                         '(e.g. x.to(%r))' % (name, x.device, reference.device,
                                             str(reference.device)))
    if x.dtype != reference.dtype and not torch.is_autocast_enabled(x.device.type):
        raise ValueError('%s: input dtype %s differs from the parameters\' %s; convert the '
                         'input or the module (e.g. module.to(%s)), or use autocast'
                         % (name, x.dtype, reference.dtype, x.dtype))
    if debug_enabled() and not torch.isfinite(x).all():
        raise ValueError('%s: the waveform contains NaN or Inf values' % name)
    return x
