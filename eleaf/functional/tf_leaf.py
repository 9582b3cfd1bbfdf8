"""Stateless references of the TensorFlow LEAF port (SPEC §11, :class:`eleaf.TFLeaf`).

Everything here follows Google's ``leaf_audio`` (google-research/leaf-audio) operation by
operation, in the dtype of the inputs (float32 as TF, float64 for tests), with PyTorch's
channel-first layout: waveforms ``(B, 1, L)``, features ``(B, F, T)``.

Letters: B batch, F filters, L samples, K Gabor and pooling taps, S hop, T frames.
Centre frequencies are in radians per sample in [0, pi], Gabor widths are Gaussian
standard deviations in samples, pooling widths are standard deviations as a fraction of
half the pooling window.
"""
import math
from typing import Tuple

import torch
import torch.nn.functional as F

from .export import is_exporting
from .gabor import gabor_filters, gabor_taps_padded

__all__ = ['tf_window_sizes', 'tf_same_padding', 'tf_linspace', 'tf_mel_weight_matrix',
           'tf_gabor_init', 'tf_gabor_bounds', 'tf_gabor_constraint', 'tf_gabor_taps',
           'tf_lowpass_windows', 'tf_gabor_taps_odd', 'tf_gabor_filterbank_ref', 'tf_preemphasis_ref',
           'tf_ema_ref', 'tf_pcen_ref', 'tf_instance_norm_ref', 'TF_FLOOR']

#: lower bound applied to the pooled energies before the compression (``tf.maximum(x, 1e-5)``)
TF_FLOOR = 1e-5


def tf_window_sizes(sample_rate: int, window_len: float, window_stride: float) -> Tuple[int, int]:
    """(K, S): ``int(sr * window_len // 1000 + 1)`` taps (not forced odd: 401 at 16 kHz/25 ms,
    662 at 22.05 kHz/30 ms) and hop ``int(sr * window_stride // 1000)`` samples, as TF's
    ``Leaf.__init__``."""
    return (int(sample_rate * window_len // 1000 + 1),
            int(sample_rate * window_stride // 1000))


def tf_same_padding(length: int, kernel_size: int, stride: int) -> Tuple[int, int]:
    """TF 'SAME' zero padding (left, right) of a strided convolution.

    ``T = ceil(L / S)``, ``total = max((T - 1) S + K - L, 0)``, ``left = total // 2``: for the
    pooling it depends on ``L mod S`` ((120, 121) at L = 16000, (188, 188) at L = 12345 for
    K = 401, S = 160); for stride 1 it is ``((K - 1) // 2, K // 2)``.
    """
    frames = -(-length // stride)
    total = max((frames - 1) * stride + kernel_size - length, 0)
    return total // 2, total - total // 2


def tf_linspace(start, stop, num: int, dtype=torch.float32) -> torch.Tensor:
    """``tf.linspace`` (``linspace_nd``): ``start + i * ((stop - start) / (num - 1))`` for
    ``0 < i < num - 1``, with the exact end points, all in ``dtype`` (unlike
    ``torch.linspace``, which steps from both ends)."""
    start = torch.as_tensor(start, dtype=dtype)
    stop = torch.as_tensor(stop, dtype=dtype)
    delta = (stop - start) / torch.tensor(max(num - 1, 1), dtype=dtype)
    middle = start + delta * torch.arange(1, max(num - 1, 1), dtype=dtype)
    return torch.cat([start[None], middle, stop[None]])[:num]


def _hertz_to_mel(f: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log(1.0 + f / 700.0)


def tf_mel_weight_matrix(num_mel_bins: int, num_spectrogram_bins: int, sample_rate: float,
                         lower_edge_hertz: float, upper_edge_hertz: float) -> torch.Tensor:
    """``tf.signal.linear_to_mel_weight_matrix`` in float32, with TF's operation order.

    HTK mel scale ``1127 ln(1 + f / 700)``; triangles over the FFT bins ``linspace(0, sr/2,
    num_spectrogram_bins)`` with peaks 1, the DC row zero.

    Returns:
        Tensor: (num_spectrogram_bins, num_mel_bins) float32.
    Raises:
        ValueError: the arguments TF rejects (non-positive sizes or rate, negative or
            misordered edges, upper edge above Nyquist).
    """
    if num_mel_bins <= 0:
        raise ValueError('num_mel_bins must be positive, got %s' % num_mel_bins)
    if sample_rate <= 0:
        raise ValueError('sample_rate must be positive, got %s' % sample_rate)
    if lower_edge_hertz < 0:
        raise ValueError('lower_edge_hertz must be non-negative, got %s' % lower_edge_hertz)
    if lower_edge_hertz >= upper_edge_hertz:
        raise ValueError('lower_edge_hertz %.1f >= upper_edge_hertz %.1f'
                         % (lower_edge_hertz, upper_edge_hertz))
    if upper_edge_hertz > sample_rate / 2:
        raise ValueError('upper_edge_hertz must not be larger than the Nyquist frequency '
                         '(sample_rate / 2). Got: %s for sample_rate: %s'
                         % (upper_edge_hertz, sample_rate))
    f32 = torch.float32
    nyquist = torch.tensor(sample_rate, dtype=f32) / 2.0
    linear = tf_linspace(0.0, nyquist, num_spectrogram_bins)[1:]
    bins_mel = _hertz_to_mel(linear)[:, None]
    edges = tf_linspace(_hertz_to_mel(torch.tensor(lower_edge_hertz, dtype=f32)),
                        _hertz_to_mel(torch.tensor(upper_edge_hertz, dtype=f32)),
                        num_mel_bins + 2)
    lower, center, upper = edges[None, :-2], edges[None, 1:-1], edges[None, 2:]
    lower_slopes = (bins_mel - lower) / (center - lower)
    upper_slopes = (upper - bins_mel) / (upper - center)
    weights = torch.clamp(torch.minimum(lower_slopes, upper_slopes), min=0.0)
    return F.pad(weights, (0, 0, 1, 0))


@torch.no_grad()
def tf_gabor_init(n_filters: int, sample_rate: int = 16000, min_freq: float = 60.,
                  max_freq: float = 7800., n_fft: int = 512) -> torch.Tensor:
    """TF LEAF's Gabor initialisation (``initializers.GaborInit``, ``melfilters.Gabor``),
    *measured* on TF's float32 mel matrix.

    On ``sqrt(w)`` of each mel filter (``n_fft // 2 + 1`` bins): centre ``= argmax bin * 2 pi /
    n_fft`` (first maximum), ``fwhm =`` number of bins with ``sqrt(w) >= peak / 2``,
    ``sigma = sqrt(2 ln 2) n_fft / (pi fwhm)``, all in float32 in TF's order. TF's default
    frontend measures at 16 kHz between 60 and 7800 Hz whatever its own sample rate.

    Returns:
        Tensor: (F, 2) float32: column 0 centre frequencies (rad/sample), column 1 sigmas
        (samples).
    """
    mel = tf_mel_weight_matrix(n_filters, n_fft // 2 + 1, sample_rate, min_freq,
                               max_freq).t()
    coeff = torch.sqrt(2. * torch.log(torch.tensor(2., dtype=torch.float32))) * n_fft
    sqrt_filters = torch.sqrt(mel)
    centers = torch.argmax(sqrt_filters, dim=1).to(torch.float32)
    peaks = sqrt_filters.max(dim=1, keepdim=True).values
    fwhms = (sqrt_filters >= peaks / 2.).to(torch.float32).sum(dim=1)
    return torch.stack([centers * 2 * math.pi / n_fft, coeff / (math.pi * fwhms)], dim=1)


def tf_gabor_bounds(kernel_size: int) -> Tuple[float, float, float, float]:
    """(mu_lower, mu_upper, sigma_lower, sigma_upper) of TF's ``GaborConstraint``:
    ``[0, pi]`` and ``[4, K] * sqrt(2 ln 2) / pi``."""
    z = math.sqrt(2 * math.log(2)) / math.pi
    return 0., math.pi, 4 * z, kernel_size * z


def tf_gabor_constraint(kernel: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """TF's ``GaborConstraint`` as applied in the forward: a clipped copy (zero gradient
    outside the bounds, see :func:`tf_gabor_bounds`).

    Args:
        kernel (Tensor): (F, 2) centre frequencies and sigmas.
    Returns:
        Tensor: (F, 2).
    """
    mu_lo, mu_hi, sigma_lo, sigma_hi = tf_gabor_bounds(kernel_size)
    return torch.stack([kernel[:, 0].clamp(mu_lo, mu_hi),
                        kernel[:, 1].clamp(sigma_lo, sigma_hi)], dim=1)


def tf_gabor_taps(kernel: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Interleaved real convolution weights of TF's ``GaborConv1D``.

    Impulse responses ``exp(i mu t) exp(-t^2 / (2 sigma^2)) / (sqrt(2 pi) sigma)`` for
    ``t = -(K // 2) ... (K + 1) // 2 - 1`` (asymmetric for even K).

    Args:
        kernel (Tensor): (F, 2) constrained parameters.
    Returns:
        Tensor: (2F, 1, K), ``[Re h_0, Im h_0, Re h_1, Im h_1, ...]``, for ``conv1d``; in
        kernel's dtype (float16 and bfloat16 computed in float32: no complex half on the CPU).
    """
    if kernel.dtype in (torch.float16, torch.bfloat16):
        return tf_gabor_taps(kernel.float(), kernel_size).to(kernel.dtype)
    if is_exporting():  # no complex tensors in exported graphs: cos and sin
        re, im = gabor_taps_padded(kernel_size, kernel[:, 0], kernel[:, 1])
        return torch.stack([re, im], dim=1).reshape(-1, 1, kernel_size)
    filters = gabor_filters(kernel_size, kernel[:, 0], kernel[:, 1])
    return torch.stack([filters.real, filters.imag], dim=1).reshape(-1, 1, kernel_size)


def tf_lowpass_windows(widths: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """TF's ``gaussian_lowpass`` windows (without its clip, see the module):
    ``w[n] = exp(-0.5 ((n - (K - 1) / 2) / (sigma (K - 1) / 2))^2)``, not normalised.

    Args:
        widths (Tensor): (F,) clipped pooling widths.
    Returns:
        Tensor: (F, K).
    """
    t = torch.arange(0, kernel_size, dtype=widths.dtype, device=widths.device)
    numerator = t - 0.5 * (kernel_size - 1)
    denominator = widths[:, None] * 0.5 * (kernel_size - 1)
    return torch.exp(-0.5 * (numerator / denominator) ** 2)


def tf_gabor_taps_odd(kernel: torch.Tensor, kernel_size: int,
                      dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    """TF's Gabor taps (:func:`tf_gabor_taps`) as (re, im) for eleaf's kernels, which take an
    odd number of taps centred on the output sample.

    TF's taps for ``t = -(K//2) ... (K+1)//2 - 1`` read samples ``p + t`` for odd K; for even
    K TF's 'SAME' padding is one sample shorter on the left, so they read ``p + t + 1``: the
    taps move one place right on a grid of K + 1 with a zero in front.

    Returns:
        (re, im): two (F, K) tensors for odd K, (F, K + 1) for even K, in ``dtype``.
    """
    n = kernel.shape[0]
    taps = tf_gabor_taps(kernel, kernel_size).to(dtype).view(n, 2, kernel_size)
    re, im = taps[:, 0], taps[:, 1]
    if kernel_size % 2 == 0:
        re, im = F.pad(re, (1, 0)), F.pad(im, (1, 0))
    return re, im


def tf_gabor_filterbank_ref(x: torch.Tensor, kernel: torch.Tensor, pool_widths: torch.Tensor,
                            kernel_size: int, stride: int) -> torch.Tensor:
    """TF LEAF's filterbank, reference, on constrained parameters: Gabor convolution
    (stride 1, 'SAME'), squared modulus ``Re^2 + Im^2`` per pair, depthwise Gaussian pooling
    (stride S, 'SAME' padding depending on ``L mod S``). Registered as op
    ``'tf_gabor_filterbank'`` (backend ``'torch'``).

    Args:
        x (Tensor): (B, 1, L) waveform.
        kernel (Tensor): (F, 2) constrained (and optionally sorted) Gabor parameters.
        pool_widths (Tensor): (F,) clipped pooling widths, in [2/K, 0.5].
        kernel_size (int): K, Gabor and pooling taps.
        stride (int): S, hop in samples.
    Returns:
        Tensor: (B, F, T) with T = ceil(L / S); not floored.
    """
    length = x.shape[-1]
    n = kernel.shape[0]
    taps = tf_gabor_taps(kernel, kernel_size).to(x.dtype)
    out = F.conv1d(F.pad(x, tf_same_padding(length, kernel_size, 1)), taps)
    out = out ** 2
    out = out[:, 0::2] + out[:, 1::2]
    windows = tf_lowpass_windows(pool_widths, kernel_size).to(x.dtype).unsqueeze(1)
    out = F.pad(out, tf_same_padding(length, kernel_size, stride))
    return F.conv1d(out, windows, stride=stride, groups=n)


def tf_preemphasis_ref(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """TF's 2-tap pre-emphasis ``Conv1D`` ('SAME': no left padding, one zero on the right):
    ``y[n] = k_0 x[n] + k_1 x[n + 1]``, so ``y[L - 1] = k_0 x[L - 1]`` (it looks ahead).

    Args:
        x (Tensor): (B, 1, L). kernel (Tensor): (2,) taps, init ``[-0.97, 1]``.
    Returns:
        Tensor: (B, 1, L).
    """
    return F.conv1d(F.pad(x, (0, 1)), kernel.reshape(1, 1, 2))


def tf_ema_ref(x: torch.Tensor, smooth: torch.Tensor) -> torch.Tensor:
    """TF's ``ExponentialMovingAverage`` (a ``tf.scan`` from ``x_0``):
    ``M_t = w x_t + (1 - w) M_{t-1}`` with ``M_{-1} = x_0``, so ``M_0 = w x_0 + (1 - w) x_0``.

    Args:
        x (Tensor): (B, F, T). smooth (Tensor): (F,) or (1,) coefficients, already clipped.
    Returns:
        Tensor: (B, F, T).
    """
    out = []
    state = x[..., 0]
    for t in range(x.shape[-1]):
        state = smooth * x[..., t] + (1.0 - smooth) * state
        out.append(state)
    return torch.stack(out, dim=-1)


def tf_pcen_ref(x: torch.Tensor, smooth: torch.Tensor, alpha: torch.Tensor, delta: torch.Tensor,
                root: torch.Tensor, floor: float) -> torch.Tensor:
    """TF LEAF's ``PCENLayer`` on its *stored* parameters, reference. Registered as op
    ``'tf_pcen'`` (backend ``'torch'``).

    ``y = (x / (floor + M)^min(alpha, 1) + delta)^(1 / max(root, 1)) - delta^(1 / max(root, 1))``
    with the smoother of :func:`tf_ema_ref` on ``w = clip(smooth, 0, 1)``; delta is not
    clamped, root is the root (not its inverse).

    Args:
        x (Tensor): (B, F, T) positive energies.
        smooth (Tensor): (F,) or (1,) smoothing coefficients.
        alpha, delta, root (Tensor): (F,).
        floor (float): added to the smoother (LEAF: 1e-12).
    Returns:
        Tensor: (B, F, T).
    """
    alpha = torch.clamp(alpha, max=1.0)[:, None]
    root = torch.clamp(root, min=1.0)[:, None]
    delta = delta[:, None]
    smoother = tf_ema_ref(x, torch.clamp(smooth, 0.0, 1.0))
    one_over_root = 1. / root
    return ((x / (floor + smoother) ** alpha + delta) ** one_over_root
            - delta ** one_over_root)


def tf_instance_norm_ref(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
                         eps: float = 1e-6) -> torch.Tensor:
    """``tfa.layers.InstanceNormalization(axis=2)`` of TF LEAF: per example and channel over
    time, biased variance, ``y = x inv + (beta - mean inv)`` with
    ``inv = gamma / sqrt(var + eps)`` (``tf.nn.batch_normalization``'s order).

    Args:
        x (Tensor): (B, F, T). gamma, beta (Tensor): (F,).
    Returns:
        Tensor: (B, F, T).
    """
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    inv = torch.rsqrt(var + eps) * gamma[:, None]
    return x * inv + (beta[:, None] - mean * inv)
