"""The frontends: ``EfficientLeaf``, ``Leaf`` and the paper's mel baseline ``Mel``.

Letters: B batch, F filters, L samples, T frames.
"""
from collections import OrderedDict
from typing import Optional, Union

import torch
import torch.nn as nn

from ..ops import check_backend_name, component_backend
from . import _validate as V
from .compress import LogTBN
from .filterbank import GaborFilterbank, GroupedGaborFilterbank
from .inputs import check_waveform
from .mel import STFT, MelFilter, Squeeze
from .pcen import PCEN

__all__ = ['EfficientLeaf', 'Leaf', 'Mel', 'window_samples']


def window_samples(sample_rate: int, window_len: float, window_stride: float):
    """(window_size, window_stride) in samples: ``int(sr * ms / 1000)``, the size made odd."""
    window_size = int(sample_rate * window_len / 1000)
    window_size += 1 - (window_size % 2)
    return window_size, int(sample_rate * window_stride / 1000)


def _leaf_pcen(n_filters: int, backend: str) -> PCEN:
    return PCEN(n_filters, s=0.04, alpha=0.96, delta=2, r=0.5, eps=1e-12, learn_logs=False,
                clamp=1e-5, backend=component_backend('pcen', backend))


def _efficientleaf_logtbn(n_filters: int, backend: str) -> LogTBN:
    return LogTBN(n_filters, a=5, trainable=True, per_band=True, median_filter=True,
                  append_filtered=True, backend=component_backend('log1p_median', backend))


def _compression(owner: str, compression, n_filters: int, backend: str, default: str,
                 names=('logtbn', 'pcen')):
    """The compression module for ``compression``: an nn.Module as given, or one of the
    names ('logtbn': EfficientLeaf's LogTBN, 'pcen': LEAF's PCEN); ``default`` for None."""
    if isinstance(compression, nn.Module):
        return compression
    name = default if compression is None else compression
    if isinstance(name, str) and name in names:
        return (_leaf_pcen(n_filters, backend) if name == 'pcen'
                else _efficientleaf_logtbn(n_filters, backend))
    raise ValueError("%s: compression must be %s or an nn.Module%s, got %r"
                     % (owner, ' or '.join(repr(n) for n in names),
                        ' (None: %r)' % default if owner != 'EfficientLeaf' else '',
                        compression))


def _check_gabor_frontend(owner: str, n_filters, min_freq, max_freq, sample_rate, window_len,
                          window_stride):
    """The arguments both Gabor frontends share (n_filters, frequencies against Nyquist,
    window and hop sizes); returns (window_size, hop) in samples."""
    V.check_frequencies(owner, n_filters, min_freq, max_freq, sample_rate)
    return V.gabor_frontend_sizes(owner, sample_rate, window_len, window_stride)


class EfficientLeaf(nn.Module):
    """EfficientLEAF frontend (Schlüter & Gutenbrunner, EUSIPCO 2022): a grouped Gabor
    filterbank (:class:`GroupedGaborFilterbank`) followed by a compression.

    Args:
        n_filters (int): F. (Default: 40)
        num_groups (int): filter groups. (Default: 4)
        min_freq, max_freq (float): Hz, mel initialisation range. (Default: 60, 7800)
        sample_rate (int): Hz. (Default: 16000)
        window_len (float): window in ms (made an odd number of samples). (Default: 25)
        window_stride (float): hop in ms. (Default: 10)
        conv_win_factor (float): kernel size in bandwidths. (Default: 4.77)
        stride_factor (float): multiplies the conv stride. (Default: 1)
        compression: ``'logtbn'`` (LogTBN with trainable per-band a=5, median subtraction
            appended as a second channel), ``'pcen'`` (LEAF's PCEN) or an ``nn.Module``.
            (Default: 'logtbn')
        backend (str, keyword-only): 'auto', 'torch', 'triton' or 'cpp', for the filterbank
            and a compression built here; a component whose op has no implementation in that
            backend gets 'auto'. (Default: 'auto')
    Raises:
        ValueError: one message naming the argument, its value and the valid range, for
            n_filters outside [1, 4096], num_groups outside [1, n_filters], sample_rate <= 0,
            not 0 <= min_freq < max_freq <= sample_rate / 2, a window outside 3 to 65537
            samples or a hop outside 1 to 65537 samples, a window shorter than 1.5 hops
            (a group's pooling window would have 1 tap), conv_win_factor outside [2.67, 64]
            (below: 1-tap filters; or kernels over 65537 taps), stride_factor outside
            (0, 1000], an unknown compression.
    Shape:
        (B, L) or (B, 1, L) -> (B, 2, F, T) with 'logtbn', (B, F, T) with 'pcen';
        T = (L - 1) // hop + 1.
    Example:
        >>> frontend = EfficientLeaf(n_filters=80, num_groups=8, conv_win_factor=6,
        ...                          stride_factor=16)  # "Gabor 8G-opt"
        >>> frontend(torch.randn(2, 16000)).shape
        torch.Size([2, 2, 80, 100])
    """

    def __init__(self, n_filters: int = 40, num_groups: int = 4, min_freq: float = 60.0,
                 max_freq: float = 7800.0, sample_rate: int = 16000, window_len: float = 25.,
                 window_stride: float = 10., conv_win_factor: float = 4.77,
                 stride_factor: float = 1.,
                 compression: Union[str, torch.nn.Module] = 'logtbn', *,
                 backend: str = 'auto'):
        super().__init__()
        check_backend_name(backend)
        owner = 'EfficientLeaf'
        size, hop = _check_gabor_frontend(owner, n_filters, min_freq, max_freq, sample_rate,
                                          window_len, window_stride)
        V.check_int(owner, 'num_groups', num_groups, 1, n_filters)
        V.check_real(owner, 'conv_win_factor', conv_win_factor, V.MIN_CONV_WIN_FACTOR,
                     V.MAX_CONV_WIN_FACTOR)
        V.check_real(owner, 'stride_factor', stride_factor, 0, V.MAX_STRIDE_FACTOR,
                     low_open=True)
        taps = int(size * V.Z * conv_win_factor)
        if taps > V.MAX_TAPS:
            raise ValueError('%s: conv_win_factor=%r with a %d-sample window (window_len=%r ms) '
                             'gives Gabor kernels of up to %d taps (window size * sqrt(2 ln 2) '
                             '/ pi * conv_win_factor); the limit is %d: conv_win_factor must '
                             'be <= %.4g here' % (owner, conv_win_factor, size, window_len,
                                                  taps, V.MAX_TAPS,
                                                  V.MAX_TAPS / (size * V.Z)))
        if size < V.MIN_POOL_RATIO * hop:
            raise ValueError('%s: window_len=%r ms (%d samples) must be at least %g x '
                             'window_stride=%r ms (%d samples): a group whose convolution '
                             'stride reaches the hop gets a pooling window of '
                             'int(%d / %d + 0.5) -> 1 tap, which is 0 / 0 = NaN; lower '
                             'window_stride to <= %.4g ms or raise window_len'
                             % (owner, window_len, size, V.MIN_POOL_RATIO, window_stride, hop,
                                size, hop, window_stride * size / (V.MIN_POOL_RATIO * hop)))
        compression = _compression(owner, compression, n_filters, backend, 'logtbn')
        window_size, window_stride = window_samples(sample_rate, window_len, window_stride)
        self.filterbank = GroupedGaborFilterbank(
            n_filters, num_groups, min_freq, max_freq, sample_rate, pool_size=window_size,
            pool_stride=window_stride, conv_win_factor=conv_win_factor,
            stride_factor=stride_factor,
            backend=component_backend('gabor_filterbank', backend))
        self.compression = compression

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_waveform(x, self.filterbank.center_freqs, type(self).__name__)
        return self.compression(self.filterbank(x))


class Leaf(nn.Module):
    """LEAF frontend (Zeghidour et al., ICLR 2021) as simplified in the EfficientLEAF code:
    Gabor filterbank (:class:`GaborFilterbank`, stride 1) and a compression.

    Args:
        n_filters (int): F. (Default: 40)
        min_freq, max_freq (float): Hz, mel initialisation range. (Default: 60, 7800)
        sample_rate (int): Hz. (Default: 16000)
        window_len (float): window in ms (made an odd number of samples). (Default: 25)
        window_stride (float): hop in ms. (Default: 10)
        compression (nn.Module, optional): a falsy value means LEAF's PCEN (s=0.04,
            alpha=0.96, delta=2, r=0.5, eps=1e-12, linear parameters, input clamp 1e-5);
            eleaf also takes EfficientLeaf's names 'pcen' (the same) and 'logtbn'.
        backend (str, keyword-only): 'auto', 'torch', 'triton' or 'cpp'. (Default: 'auto')
    Shape:
        (B, L) or (B, 1, L) -> (B, F, T), T = (L - 1) // hop + 1.
    """

    def __init__(self, n_filters: int = 40, min_freq: float = 60.0, max_freq: float = 7800.0,
                 sample_rate: int = 16000, window_len: float = 25., window_stride: float = 10.,
                 compression: Optional[torch.nn.Module] = None, *, backend: str = 'auto'):
        super().__init__()
        check_backend_name(backend)
        _check_gabor_frontend('Leaf', n_filters, min_freq, max_freq, sample_rate, window_len,
                              window_stride)
        # the original tests compression for truthiness: a falsy value means LEAF's PCEN
        compression = _compression('Leaf', compression or None, n_filters, backend, 'pcen')
        window_size, window_stride = window_samples(sample_rate, window_len, window_stride)
        self.filterbank = GaborFilterbank(n_filters, min_freq, max_freq, sample_rate,
                                          filter_size=window_size, pool_size=window_size,
                                          pool_stride=window_stride,
                                          backend=component_backend('gabor_filterbank', backend))
        self.compression = compression

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_waveform(x, self.filterbank.center_freqs, type(self).__name__)
        return self.compression(self.filterbank(x))


class Mel(nn.Sequential):
    """The paper's mel baseline, composed exactly as its ``main.py`` does (SPEC §8).

    An ``nn.Sequential`` of ``stft`` (magnitude STFT, symmetric Hann window of
    ``int(sr * window_len / 1000 + 1)`` samples, hop ``int(sr * window_stride / 1000 + 1)``:
    401 and 161 at 16 kHz), ``filterbank`` (area-normalised mel filters),
    ``squeeze`` and ``compression`` (default: LogTBN with a fixed a=5 and the median-filtered
    signal appended), so its state_dict keys equal the original's.

    Args:
        n_filters (int): F. (Default: 40)
        min_freq, max_freq (float): Hz. (Default: 60, 7800)
        sample_rate (int): Hz. (Default: 16000)
        window_len, window_stride (float): ms. (Default: 25, 10)
        compression (nn.Module, optional): replaces the default LogTBN; eleaf also takes
            'logtbn' (the default) and 'pcen' (LEAF's PCEN).
        backend (str, keyword-only): for the default compression. (Default: 'auto')
    Raises:
        ValueError: for arguments out of range (see :class:`EfficientLeaf`), and for bands
            that would cover no FFT bin (too many filters for the window, or a too narrow
            frequency range), naming a count that works.
    Shape:
        (B, L) or (B, 1, L) -> (B, 2, F, T) with the default compression,
        T = (L - frame) // hop + 1.
    """

    def __init__(self, n_filters: int = 40, min_freq: float = 60.0, max_freq: float = 7800.0,
                 sample_rate: int = 16000, window_len: float = 25., window_stride: float = 10.,
                 compression: Optional[torch.nn.Module] = None, *, backend: str = 'auto'):
        check_backend_name(backend)
        V.check_frequencies('Mel', n_filters, min_freq, max_freq, sample_rate)
        V.check_real('Mel', 'window_len', window_len, 0, None, low_open=True)
        V.check_real('Mel', 'window_stride', window_stride, 0, None, low_open=True)
        window_size = int(sample_rate * window_len / 1000 + 1)
        hop_size = int(sample_rate * window_stride / 1000 + 1)
        for name, value, size in (('window_len', window_len, window_size),
                                  ('window_stride', window_stride, hop_size)):
            if size > V.MAX_TAPS:
                raise ValueError('Mel: %s must give at most %d samples (int(sample_rate * ms '
                                 '/ 1000 + 1)), i.e. be < %.6g ms at sample_rate=%r, got %r'
                                 % (name, V.MAX_TAPS, V.MAX_TAPS * 1000. / sample_rate,
                                    sample_rate, value))
        V.check_mel_bands('Mel', sample_rate, window_size, n_filters, min_freq, max_freq,
                          'window_len=%r ms' % (window_len,))
        if compression is None or (isinstance(compression, str) and compression == 'logtbn'):
            compression = LogTBN(n_filters, a=5, trainable=False, per_band=False,
                                 median_filter=True, append_filtered=True,
                                 backend=component_backend('log1p_median', backend))
        elif isinstance(compression, str) and compression == 'pcen':
            compression = _leaf_pcen(n_filters, backend)
        elif not isinstance(compression, nn.Module):
            raise ValueError("Mel: compression must be 'logtbn' (the paper's fixed LogTBN, "
                             "also None), 'pcen' (LEAF's PCEN) or an nn.Module, got %r"
                             % (compression,))
        super().__init__(OrderedDict([
            ('stft', STFT(window_size, hop_size, complex=False)),
            ('filterbank', MelFilter(sample_rate, window_size, n_filters, min_freq, max_freq)),
            ('squeeze', Squeeze(dim=1)),
            ('compression', compression),
        ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(x, torch.Tensor) and x.ndim == 1:
            # as for the other frontends, (L,) means L one-sample signals: none has a frame
            raise ValueError('Mel got a 1-D waveform of shape (%d,): as for the other '
                             "frontends (the original's rank promotion) that is a batch of %d "
                             'one-sample signals, each shorter than one frame (%d samples). '
                             'Pass one clip as x[None] (shape (1, %d))'
                             % (x.shape[0], x.shape[0], self.stft.winsize, x.shape[0]))
        if isinstance(x, torch.Tensor) and x.ndim == 2:
            x = x[:, None]
        x = check_waveform(x, self.stft.window, 'Mel')
        if x.shape[-1] < self.stft.winsize:
            raise ValueError('Mel needs at least one frame: L >= %d samples, got L = %d'
                             % (self.stft.winsize, x.shape[-1]))
        return super().forward(x)
