"""Fixed mel spectrogram layers of the paper's baseline (SPEC §8).

Letters: B batch, C channels, L samples, K FFT bins, F mel bands, T frames.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..functional.mel import create_mel_filterbank, stft_kernel
from . import _validate as V

__all__ = ['STFT', 'MelFilter', 'Squeeze']


class STFT(nn.Module):
    """Short-time Fourier transform with a symmetric Hann window, no centering,
    ``n_fft = winsize``.

    Where ``torch.stft`` refuses the dtype (half precision on some devices), it falls back,
    as the original, to a conv1d with weights derived from Dirac impulses (kept as the
    non-persistent buffer ``stft_kernel``).

    Args:
        winsize (int): window and FFT size in samples.
        hopsize (int): hop in samples.
        complex (bool): return (..., K, T, 2) real/imaginary pairs instead of magnitudes.
    Shape:
        (B, C, L) -> (B, C, K, T) magnitudes, K = winsize // 2 + 1,
        T = (L - winsize) // hopsize + 1.
    """

    def __init__(self, winsize: int, hopsize: int, complex: bool = False):
        super().__init__()
        V.check_int('STFT', 'winsize', winsize, 1, V.MAX_TAPS)
        V.check_int('STFT', 'hopsize', hopsize, 1, None)
        V.check_bool('STFT', 'complex', complex)
        self.winsize = winsize
        self.hopsize = hopsize
        self.register_buffer('window', torch.hann_window(winsize, periodic=False),
                             persistent=False)
        self.complex = complex

    def compute_stft_kernel(self) -> torch.Tensor:
        """(2K, 1, winsize) conv1d weights equivalent to the STFT (see :func:`stft_kernel`)."""
        return stft_kernel(self.window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batchsize, channels = x.shape[:2]
        x = x.reshape((-1,) + x.shape[2:])
        if not hasattr(self, 'stft_kernel'):
            try:
                x = torch.view_as_real(torch.stft(x, self.winsize, self.hopsize,
                                                  window=self.window, center=False,
                                                  return_complex=True))
            except RuntimeError as exc:
                if exc.args and (("doesn't support" in exc.args[0]) or
                                 ("only supports" in exc.args[0]) or
                                 ('not implemented for' in exc.args[0])):
                    self.register_buffer('stft_kernel', self.compute_stft_kernel().to(x),
                                         persistent=False)
                else:
                    raise
        if hasattr(self, 'stft_kernel'):
            x = F.conv1d(x[:, None], self.stft_kernel, stride=self.hopsize)
            x = x.reshape((batchsize, -1, 2, x.shape[-1])).transpose(-1, -2)
        if not self.complex:
            x = x.norm(p=2, dim=-1)
        return x.reshape((batchsize, channels, -1) + x.shape[2:])

    def extra_repr(self):
        return 'winsize={}, hopsize={}, complex={}'.format(self.winsize, self.hopsize,
                                                           repr(self.complex))


class MelFilter(nn.Module):
    """Maps magnitude spectra to ``num_bands`` area-normalised triangular mel bands
    (non-persistent buffer ``bank``, (K', F), cropped to the bins below ``max_freq``).

    Shape:
        (..., K, T) -> (..., F, T).
    """

    def __init__(self, sample_rate: int, winsize: int, num_bands: int, min_freq: float,
                 max_freq: float):
        super().__init__()
        V.check_int('MelFilter', 'winsize', winsize, 1, V.MAX_TAPS)
        V.check_frequencies('MelFilter', num_bands, min_freq, max_freq, sample_rate,
                            'num_bands')
        V.check_mel_bands('MelFilter', sample_rate, winsize, num_bands, min_freq, max_freq,
                          'winsize=%d' % winsize, 'num_bands')
        melbank = create_mel_filterbank(sample_rate, winsize, num_bands, min_freq, max_freq,
                                        crop=True)
        self.register_buffer('bank', melbank, persistent=False)
        self._extra_repr = 'num_bands={}, min_freq={}, max_freq={}'.format(
            num_bands, min_freq, max_freq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.transpose(-1, -2)
        x = x[..., :self.bank.shape[0]]
        x = x.matmul(self.bank)
        return x.transpose(-1, -2)

    def extra_repr(self):
        return self._extra_repr


class Squeeze(nn.Module):
    """``x.squeeze(dim)``."""

    def __init__(self, dim: int):
        super().__init__()
        V.check_int('Squeeze', 'dim', dim)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.squeeze(self.dim)
