"""Gabor filters and the Gabor filterbank references (SPEC §1, §2, §4, §5).

Stateless, dtype-following code: every tensor is computed in the dtype of the parameters
(float32 by default, float64 after ``module.double()``), with the operation order of the
original EfficientLEAF code so that float32 results match it bit for bit on the CPU.

Letters: B batch, F filters, L input samples, N convolution steps, T output frames,
K Gabor taps, W pooling taps.
"""
from typing import Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .export import is_exporting
from .geometry import (GroupGeometry, group_geometry, group_pool_widths, group_splits,
                       group_stride, possible_strides)
from .pooling import gauss_windows, gaussian_pool_ref

__all__ = ['mel_filter_params', 'gabor_filters', 'gabor_kernel', 'gabor_taps_padded',
           'GroupGeometry',
           'group_splits', 'possible_strides', 'group_stride', 'group_geometry',
           'group_pool_widths', 'gabor_filterbank_ref', 'grouped_gabor_filterbank_ref',
           'SIGMA_UNIT']

#: z = sqrt(2 ln 2) / pi: converts a FWHM in frequency bins to a Gaussian std in samples.
SIGMA_UNIT = np.sqrt(2 * np.log(2)) / np.pi


def mel_filter_params(n_filters: int, min_freq: float, max_freq: float,
                      sample_rate: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Analytic mel initialisation of the Gabor parameters (SPEC §1).

    Returns:
        (center_freqs, sigmas): two (F,) float32 tensors, centre frequencies in radians per
        sample and time-domain Gaussian standard deviations in samples.
    """
    min_mel = 1127 * np.log1p(min_freq / 700.0)
    max_mel = 1127 * np.log1p(max_freq / 700.0)
    peaks_mel = torch.linspace(min_mel, max_mel, n_filters + 2)
    peaks_hz = 700 * (torch.expm1(peaks_mel / 1127))
    center_freqs = peaks_hz[1:-1] * (2 * np.pi / sample_rate)
    bandwidths = peaks_hz[2:] - peaks_hz[:-2]
    sigmas = (sample_rate / 2.) / bandwidths
    return center_freqs, sigmas


def gabor_filters(size: int, center_freqs: torch.Tensor,
                  sigmas: torch.Tensor) -> torch.Tensor:
    """Complex Gabor impulse responses (SPEC §2).

    Args:
        size (int): number of taps K (odd in every caller; t = -(K//2) ... (K+1)//2 - 1).
        center_freqs (Tensor): (n,) centre frequencies in radians per sample.
        sigmas (Tensor): (n,) Gaussian standard deviations in samples.
    Returns:
        Tensor: (n, K) complex, ``exp(-t^2 / (2 sigma^2)) / (sqrt(2 pi) sigma) * exp(j mu t)``.
    """
    t = torch.arange(-(size // 2), (size + 1) // 2, device=center_freqs.device)
    denominator = 1. / (np.sqrt(2 * np.pi) * sigmas)
    gaussian = torch.exp(torch.outer(1. / (2. * sigmas**2), -t**2))
    sinusoid = torch.exp(1j * torch.outer(center_freqs, t))
    return denominator[:, np.newaxis] * sinusoid * gaussian


def gabor_kernel(size: int, center_freqs: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Real convolution weights of a block of Gabor filters (SPEC §2).

    Returns:
        Tensor: (2n, 1, K): the real parts of all n filters, then their imaginary parts.
    """
    if is_exporting():  # no complex tensors in exported graphs: cos and sin
        return torch.cat(gabor_taps_padded(size, center_freqs, sigmas), dim=0).unsqueeze(1)
    kernel = gabor_filters(size, center_freqs, sigmas)
    return torch.cat((kernel.real, kernel.imag), dim=0).unsqueeze(1)


def gabor_taps_padded(size: int, center_freqs: torch.Tensor,
                      sigmas: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary Gabor taps of all filters on one centred grid, in few ops.

    The same function as :func:`gabor_filters` (``t = -(K//2) ... K//2``), computed with real
    arithmetic (``cos``/``sin`` instead of a complex exponential: equal up to float
    rounding). A filter of odd kernel size ``k <= size`` uses the centred columns
    ``size//2 - k//2 ... size//2 + k//2``.

    Args:
        size (int): K, odd number of taps of the grid.
        center_freqs, sigmas (Tensor): (F,) rad/sample and samples.
    Returns:
        (re, im): two (F, K) tensors in the parameters' dtype.
    """
    t = torch.arange(-(size // 2), (size + 1) // 2, device=center_freqs.device,
                     dtype=center_freqs.dtype)
    denominator = (1. / (np.sqrt(2 * np.pi) * sigmas))[:, None]
    gaussian = torch.exp(torch.outer(1. / (2. * sigmas**2), -t**2))
    phase = torch.outer(center_freqs, t)
    return denominator * torch.cos(phase) * gaussian, denominator * torch.sin(phase) * gaussian


def grouped_gabor_filterbank_ref(x: torch.Tensor, center_freqs: torch.Tensor,
                                 bandwidths: torch.Tensor, pool_widths: torch.Tensor,
                                 geometry: Sequence[GroupGeometry]) -> torch.Tensor:
    """Grouped Gabor filterbank, reference (SPEC §4, §5), on already clamped parameters.

    Per group: Gabor convolution (K taps, stride s, zero padding K//2), squared modulus,
    Gaussian pooling (W taps, stride P, zero padding W//2). LEAF's filterbank is the case of
    one group with s = 1 and K = W = window size.

    Args:
        x (Tensor): (B, 1, L) waveform.
        center_freqs, bandwidths (Tensor): (F,) clamped Gabor parameters, rad/sample and
            samples.
        pool_widths (Tensor): (F,) pooling widths already rescaled to each group's window
            (:func:`group_pool_widths`; LEAF: the clamped widths).
        geometry: one :class:`GroupGeometry` per group, covering filters 0 ... F-1 in order.
    Returns:
        Tensor: (B, F, T) pooled squared Gabor responses, T = (L - 1) // (s P) + 1.
    """
    outputs = []
    for geom in geometry:
        n = geom.num_filters
        kernel = gabor_kernel(geom.kernel_size, center_freqs[geom.start:geom.stop],
                              bandwidths[geom.start:geom.stop])
        out = F.conv1d(x, kernel, stride=geom.conv_stride, padding=geom.kernel_size // 2)
        out = out ** 2
        out = out[:, :n] + out[:, n:]
        out = gaussian_pool_ref(out, pool_widths[geom.start:geom.stop], geom.window_size,
                                geom.pool_stride)
        outputs.append(out)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)


def gabor_filterbank_ref(x: torch.Tensor, center_freqs: torch.Tensor, bandwidths: torch.Tensor,
                         pooling_widths: torch.Tensor, filter_size: int, pool_size: int,
                         pool_stride: int) -> torch.Tensor:
    """LEAF Gabor filterbank, reference (SPEC §4), on already clamped parameters.

    Identical to one group of :func:`grouped_gabor_filterbank_ref` when
    ``filter_size == pool_size`` (as in :class:`~eleaf.Leaf`); otherwise, as in the original,
    the pooling is zero-padded by ``filter_size // 2``.

    Args:
        x (Tensor): (B, 1, L) waveform.
        center_freqs, bandwidths, pooling_widths (Tensor): (F,) clamped parameters.
        filter_size (int): K, odd, Gabor taps; pool_size (int): W, pooling taps.
        pool_stride (int): hop in samples.
    Returns:
        Tensor: (B, F, T).
    """
    n = center_freqs.shape[0]
    filters = gabor_kernel(filter_size, center_freqs, bandwidths)
    x = F.conv1d(x, filters, padding=filter_size // 2)
    x = x ** 2
    x = x[:, :n] + x[:, n:]
    windows = gauss_windows(pool_size, pooling_widths).unsqueeze(1)
    return F.conv1d(x, windows, stride=pool_stride, padding=filter_size // 2, groups=n)
