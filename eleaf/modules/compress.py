"""Log compression, temporal batch normalisation and their combination LogTBN (SPEC §6).

Letters: B batch, C channels, F bands, T frames.
"""
from typing import Optional

import torch
import torch.nn as nn

from ..functional.compress import log1p_ref, temporal_batch_norm_ref
from ..ops import check_backend_name, select_impl
from . import _validate as V

__all__ = ['Log1p', 'TemporalBatchNorm', 'LogTBN']


#: |a| of log(1 + 10^a x) at most this: 10^a stays far inside float32 (and float16 after
#: the internal float32 computation)
MAX_LOG1P_A = 30.


def _check_log1p_args(owner, a, trainable, per_band, num_bands):
    V.check_bool(owner, 'trainable', trainable)
    V.check_bool(owner, 'per_band', per_band)
    if num_bands is not None or (trainable and per_band):
        if num_bands is None:
            raise ValueError('%s(trainable=True, per_band=True) needs num_bands (an integer '
                             '>= 1)' % owner)
        V.check_int(owner, 'num_bands', num_bands, 1, None)
    if isinstance(a, torch.Tensor):
        if not (a.is_floating_point() and bool(torch.isfinite(a).all())
                and bool((a.abs() <= MAX_LOG1P_A).all())):
            raise ValueError('%s: a must be finite and in [-%g, %g], got %r'
                             % (owner, MAX_LOG1P_A, MAX_LOG1P_A, a))
    else:
        V.check_real(owner, 'a', a, -MAX_LOG1P_A, MAX_LOG1P_A)


class Log1p(nn.Module):
    """``log(1 + 10^a x)`` with ``a`` fixed or trainable (scalar, or per band).

    A fixed ``a`` is a plain attribute (not in the state_dict); a fixed ``a = 0`` is plain
    ``log1p``.

    Args:
        a (float): initial or fixed value. (Default: 0)
        trainable (bool): make ``a`` a parameter. (Default: False)
        per_band (bool): one ``a`` per band (needs ``num_bands`` when trainable).
        num_bands (int, optional): F.
    Shape:
        (..., F, T) -> same.
    """

    def __init__(self, a=0, trainable: bool = False, per_band: bool = False,
                 num_bands: Optional[int] = None):
        super().__init__()
        _check_log1p_args('Log1p', a, trainable, per_band, num_bands)
        if trainable:
            dtype = torch.get_default_dtype()
            if not per_band:
                a = torch.tensor(a, dtype=dtype)
            else:
                if num_bands is None:
                    raise ValueError('Log1p(trainable=True, per_band=True) needs num_bands')
                a = torch.full((num_bands,), a, dtype=dtype)
            a = nn.Parameter(a)
        self.a = a
        self.trainable = trainable
        self.per_band = per_band

    def scale_exponent(self):
        """``a`` as the compression uses it, or None for plain log1p."""
        return self.a if (self.trainable or self.a != 0) else None

    def a_per_band(self) -> bool:
        """Whether :meth:`scale_exponent` holds one value per band. A fixed ``a`` given as a
        number with ``per_band=True`` is the same ``a`` for every band (the original code
        crashes there)."""
        return self.per_band and isinstance(self.a, torch.Tensor) and self.a.ndim > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return log1p_ref(x, self.scale_exponent(), self.a_per_band())

    def extra_repr(self):
        return 'trainable={}, per_band={}'.format(repr(self.trainable), repr(self.per_band))


class TemporalBatchNorm(nn.Module):
    """Batch normalisation over every axis but the bands (attribute ``bn``, a BatchNorm1d).

    Args:
        num_bands (int): F.
        affine (bool): learnable scale and shift. (Default: True)
        per_channel (bool): normalise each (channel, band) pair separately. (Default: False)
        num_channels (int, optional): C, needed when ``per_channel``.
    Shape:
        (B, F, T) or (B, C, F, T) -> same.
    """

    def __init__(self, num_bands: int, affine: bool = True, per_channel: bool = False,
                 num_channels: Optional[int] = None):
        super().__init__()
        V.check_int('TemporalBatchNorm', 'num_bands', num_bands, 1, None)
        V.check_bool('TemporalBatchNorm', 'affine', affine)
        V.check_bool('TemporalBatchNorm', 'per_channel', per_channel)
        if per_channel:
            if num_channels is None:
                raise ValueError('TemporalBatchNorm(per_channel=True) needs num_channels (an '
                                 'integer >= 1)')
            V.check_int('TemporalBatchNorm', 'num_channels', num_channels, 1, None)
        num_features = num_bands * num_channels if per_channel else num_bands
        self.bn = nn.BatchNorm1d(num_features, affine=affine)
        self.per_channel = per_channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_batch_norm_ref(x, self.bn, self.per_channel)


class LogTBN(nn.Module):
    """Log1p, optional median subtraction over time, temporal batch norm.

    Args:
        num_bands (int): F.
        affine (bool): learnable affine TBN parameters. (Default: True)
        a (float): Log1p's ``a``. (Default: 0)
        trainable (bool): Log1p's ``a`` trainable. (Default: False)
        per_band (bool): one ``a`` per band. (Default: False)
        median_filter (bool): subtract the median over time (PyTorch's ``median``: the lower
            middle value for an even T). (Default: False)
        append_filtered (bool): append the median-subtracted signal as a second channel
            instead of subtracting in place; TBN then normalises per channel. (Default: False)
        backend (str, keyword-only): 'auto', 'torch', 'triton' or 'cpp'. (Default: 'auto')
    Shape:
        (B, F, T) -> (B, F, T), or (B, 2, F, T) with ``median_filter`` and
        ``append_filtered``.
    """

    def __init__(self, num_bands: int, affine: bool = True, a: float = 0,
                 trainable: bool = False, per_band: bool = False, median_filter: bool = False,
                 append_filtered: bool = False, *, backend: str = 'auto'):
        super().__init__()
        V.check_int('LogTBN', 'num_bands', num_bands, 1, None)
        V.check_bool('LogTBN', 'affine', affine)
        _check_log1p_args('LogTBN', a, trainable, per_band, num_bands)
        V.check_bool('LogTBN', 'median_filter', median_filter)
        V.check_bool('LogTBN', 'append_filtered', append_filtered)
        if append_filtered and not median_filter:
            raise ValueError('LogTBN: append_filtered=True needs median_filter=True (it '
                             'appends the median-filtered signal)')
        self.log1p = Log1p(a=a, trainable=trainable, per_band=per_band, num_bands=num_bands)
        self.TBN = TemporalBatchNorm(num_bands=num_bands, affine=affine,
                                     per_channel=append_filtered,
                                     num_channels=2 if append_filtered else 1)
        self.median_filter = median_filter
        self.append_filtered = append_filtered
        self.backend = check_backend_name(backend)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, impl = select_impl('log1p_median', self.backend, x.device, x.dtype)
        x = impl(x, self.log1p.scale_exponent(), self.log1p.a_per_band(), self.median_filter,
                 self.append_filtered)
        return self.TBN(x)

    def extra_repr(self):
        return 'median_filter=%r, append_filtered=%r, backend=%r' % (
            self.median_filter, self.append_filtered, self.backend)
