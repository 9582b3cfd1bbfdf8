"""Learnable Gabor filterbanks: LEAF's ``GaborFilterbank`` and EfficientLEAF's
``GroupedGaborFilterbank`` (SPEC §4, §5).

Letters: B batch, F filters, L samples, T frames. Centre frequencies are in radians per
sample in [0, pi], bandwidths are Gaussian standard deviations in samples, pooling widths are
standard deviations as a fraction of half the pooling window.
"""
import math

import numpy as np
import torch
import torch.nn as nn

from ..functional.gabor import (GroupGeometry, gabor_filterbank_ref, group_geometry,
                                group_stride, mel_filter_params, possible_strides)
from ..functional.export import is_exporting
from ..functional.geometry import (check_finite_parameters, geometry_caps,
                                   group_geometry_tensor, scaled_pool_widths_tensor)
from ..ops import check_backend_name, select_impl
from .inputs import debug_enabled

__all__ = ['GaborFilterbank', 'GroupedGaborFilterbank']


class GaborFilterbank(nn.Module):
    """LEAF's Gabor filterbank: complex Gabor convolution (stride 1), squared modulus,
    learnable Gaussian lowpass pooling.

    Parameters ``center_freqs``, ``bandwidths`` (mel-initialised, SPEC §1) and
    ``pooling_widths`` (all ``pool_init``) are clamped functionally in every forward
    (``[0, pi]``, ``[4z, filter_size z]`` with ``z = sqrt(2 ln 2)/pi``, ``[2/pool_size, 0.5]``):
    stored values stay untouched and clamped entries get zero gradient.

    Args:
        n_filters (int): F.
        min_freq, max_freq (float): Hz, range of the mel initialisation.
        sample_rate (int): Hz.
        filter_size (int): Gabor taps (odd).
        pool_size (int): pooling taps (odd).
        pool_stride (int): hop in samples.
        pool_init (float): initial pooling width. (Default: 0.4)
        backend (str, keyword-only): 'auto', 'torch', 'triton' or 'cpp'. (Default: 'auto')
    Shape:
        (B, 1, L) -> (B, F, T), T = (L - 1) // pool_stride + 1.
    Precision: float16/bfloat16 parameters and inputs are computed in float32 from their
    values and the output rounded to the input's dtype (Triton takes low-precision inputs
    natively, float32 accumulation).
    """

    def __init__(self, n_filters: int, min_freq: float, max_freq: float, sample_rate: int,
                 filter_size: int, pool_size: int, pool_stride: int, pool_init: float = 0.4,
                 *, backend: str = 'auto'):
        super().__init__()
        self.n_filters = n_filters
        self.filter_size = filter_size
        self.pool_size = pool_size
        self.pool_stride = pool_stride
        self.backend = check_backend_name(backend)
        center_freqs, bandwidths = mel_filter_params(n_filters, min_freq, max_freq, sample_rate)
        self.center_freqs = nn.Parameter(center_freqs)
        self.bandwidths = nn.Parameter(bandwidths)
        self.pooling_widths = nn.Parameter(torch.full((n_filters,), float(pool_init)))

    def clamped_parameters(self):
        """(center_freqs, bandwidths, pooling_widths) clamped as the forward uses them."""
        z = np.sqrt(2 * np.log(2)) / np.pi
        return (self.center_freqs.clamp(min=0., max=np.pi),
                self.bandwidths.clamp(min=4 * z, max=self.filter_size * z),
                self.pooling_widths.clamp(min=2. / self.pool_size, max=0.5))

    def geometry(self):
        """The filterbank as one group: stride 1, K = filter_size, W = pool_size."""
        return (GroupGeometry(0, self.n_filters, 1, self.pool_stride, self.filter_size,
                              self.pool_size),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = _float32_if_low(self.clamped_parameters())
        if self.filter_size != self.pool_size:
            # the original pads the pooling by filter_size // 2: only the reference has that
            if self.backend not in ('auto', 'torch'):
                select_impl('gabor_filterbank', 'torch', x.device, x.dtype)
            return _in_float32(x, 'torch', lambda x: gabor_filterbank_ref(
                x, *params, self.filter_size, self.pool_size, self.pool_stride))
        backend, impl = select_impl('gabor_filterbank', self.backend, x.device, x.dtype)
        return _in_float32(x, backend, lambda x: impl(x, *params, self.geometry()))

    def extra_repr(self):
        return 'n_filters=%d, filter_size=%d, pool_size=%d, pool_stride=%d, backend=%r' % (
            self.n_filters, self.filter_size, self.pool_size, self.pool_stride, self.backend)


_LOWP = (torch.float16, torch.bfloat16)


def _float32_if_low(params):
    """float16/bfloat16 parameters as float32 (differentiable casts): the Gabor taps,
    windows and group geometry are computed in float32 from the parameters' values."""
    return tuple(p.float() if p.dtype in _LOWP else p for p in params)


def _in_float32(x: torch.Tensor, backend: str, run):
    """``run(x)``; a float16/bfloat16 input is computed in float32 and the output rounded
    back, except on Triton, whose kernels take low-precision inputs (float32 accumulation)."""
    if x.dtype in _LOWP and backend != 'triton':
        return run(x.float()).to(x.dtype)
    return run(x)


def _frozen(p: torch.Tensor) -> bool:
    """An inference tensor outside inference mode (created under ``torch.inference_mode()``),
    which cannot be changed in place. Never under torch.compile, which cannot trace the test
    (and compiles modules built normally)."""
    return (not torch.compiler.is_compiling() and p.is_inference()
            and not torch.is_inference_mode_enabled())


class GroupedGaborFilterbank(nn.Module):
    """EfficientLEAF's grouped Gabor filterbank.

    Filters are split into ``num_groups`` contiguous groups (``g * F // G``); each group
    gets its own convolution stride (from its highest centre frequency and
    ``stride_factor``), kernel size (``conv_win_factor`` times its widest bandwidth) and a
    pooling window rescaled to its stride, so that all groups produce T frames.

    At the start of every forward the parameters are clamped **in place** (their ``.data``):
    ``center_freqs`` to ``[0, float32(pi)]``, ``bandwidths`` to ``[2z, pool_size z]``,
    ``pooling_widths`` to ``[2 / pool_size, 0.5]``. The geometry is then computed from them
    as a (G, 4) tensor on their device (:meth:`geometry_tensor`), every forward, nothing
    cached; the Triton path reads it on the device (no host synchronisation, one compiled
    graph whatever the geometry), the CPU and reference paths copy it to the host.
    ``caps`` (:class:`~eleaf.functional.GeometryCaps`) bounds it statically.

    Args:
        n_filters (int): F.
        num_groups (int): G <= F.
        min_freq, max_freq (float): Hz, range of the mel initialisation.
        sample_rate (int): Hz.
        pool_size (int): frontend window in samples (odd).
        pool_stride (int): hop in samples.
        pool_init (float): initial pooling width. (Default: 0.4)
        conv_win_factor (float): kernel size in bandwidths. (Default: 3)
        stride_factor (float): multiplies the Nyquist-limited stride. (Default: 1.)
        backend (str, keyword-only): 'auto', 'torch', 'triton' or 'cpp'. (Default: 'auto')
    Shape:
        (B, 1, L) -> (B, F, T), T = (L - 1) // pool_stride + 1.
    Precision: float16/bfloat16 parameters and inputs are computed in float32 from their
    values and the output rounded to the input's dtype (Triton takes low-precision inputs
    natively, float32 accumulation).
    """

    def __init__(self, n_filters: int, num_groups: int, min_freq: float, max_freq: float,
                 sample_rate: int, pool_size: int, pool_stride: int, pool_init: float = 0.4,
                 conv_win_factor: float = 3, stride_factor: float = 1., *,
                 backend: str = 'auto'):
        super().__init__()
        if not 1 <= num_groups <= n_filters:
            raise ValueError('num_groups must be between 1 and n_filters=%d, got %r'
                             % (n_filters, num_groups))
        self.num_groups = num_groups
        self.n_filters = n_filters
        self.pool_size = pool_size
        self.pool_stride = pool_stride
        self.conv_win_factor = conv_win_factor
        self.stride_factor = stride_factor
        self.backend = check_backend_name(backend)
        self.psbl_strides = possible_strides(pool_stride)

        center_freqs, bandwidths = mel_filter_params(n_filters, min_freq, max_freq, sample_rate)
        self.center_freqs = nn.Parameter(center_freqs)
        self.bandwidths = nn.Parameter(bandwidths)
        self.pooling_widths = nn.Parameter(torch.full((n_filters,), float(pool_init)))

        # clamp bounds: plain attributes as in the original (mu float32, sigma float64)
        self.mu_lower = torch.tensor(0.)
        self.mu_upper = torch.tensor(math.pi)
        z = np.sqrt(2 * np.log(2)) / np.pi
        self.sigma_lower = torch.tensor(2 * z)
        self.sigma_upper = torch.tensor(pool_size * z)
        #: the four bounds as Python floats, what the clamp applies (read once here: a
        #: forward that read the tensors would make a compiled graph depend on their values)
        self.clamp_bounds = tuple(float(t) for t in (self.mu_lower, self.mu_upper,
                                                     self.sigma_lower, self.sigma_upper))
        #: static bounds of the geometry: they size the fast paths' buffers and grids
        self.caps = geometry_caps(n_filters, num_groups, pool_size, pool_stride,
                                  conv_win_factor, stride_factor, float(self.sigma_upper),
                                  float(self.mu_upper))

    def get_stride(self, cent_freq: float):
        """(conv_stride, pool_stride // conv_stride) for a group whose highest centre
        frequency is ``cent_freq`` (rad/sample)."""
        return group_stride(cent_freq, self.pool_stride, self.stride_factor)

    def clamp_parameters(self):
        """Clamp the parameters in place (their ``.data``), as the original does.

        The bounds are the plain tensor attributes ``mu_lower`` ... ``sigma_upper`` (float32
        for mu, float64 for sigma, as in the original), applied as Python floats of their
        values (``clamp_bounds``, read at construction): the same numbers in float32 and
        float64, without a host-to-device copy.
        Parameters created under ``torch.inference_mode()`` cannot be changed outside it:
        they are clamped out of place for the forward (see :meth:`clamped_parameters`).
        """
        for p, lo, hi in self._bounds():
            if not _frozen(p):
                p.data.clamp_(min=lo, max=hi)

    def _bounds(self):
        mu_lo, mu_hi, sigma_lo, sigma_hi = self.clamp_bounds
        return ((self.center_freqs, mu_lo, mu_hi), (self.bandwidths, sigma_lo, sigma_hi),
                (self.pooling_widths, 2. / self.pool_size, 0.5))

    def clamped_parameters(self):
        """Clamp in place (:meth:`clamp_parameters`) and return (center_freqs, bandwidths,
        pooling_widths) as the forward uses them: the parameters themselves (so gradients
        reach them), or, for inference tensors outside inference mode, clamped copies."""
        if is_exporting():  # an exported graph cannot mutate .data: clamp functionally
            return tuple(p.clamp(lo, hi) for p, lo, hi in self._bounds())
        self.clamp_parameters()
        return tuple(p.clamp(lo, hi) if _frozen(p) else p for p, lo, hi in self._bounds())

    def geometry(self):
        """Per-group :class:`~eleaf.functional.GroupGeometry` of the current parameters
        (Python ints: one device-to-host copy)."""
        return group_geometry(self.center_freqs, self.bandwidths, self.num_groups,
                              self.pool_size, self.pool_stride, self.conv_win_factor,
                              self.stride_factor)

    def geometry_tensor(self) -> torch.Tensor:
        """(G, 4) int32 ``[s, P, K, W]`` per group of the current parameters, on their device
        (:func:`~eleaf.functional.group_geometry_tensor`; no host synchronisation)."""
        return group_geometry_tensor(self.center_freqs, self.bandwidths, self.caps)

    def clamped_geometry(self):
        """Clamp the parameters in place and return :meth:`geometry` (host ints). Nothing is
        cached: every forward computes the geometry from the parameters' current values."""
        self.clamp_parameters()
        return self.geometry()

    def invalidate_geometry(self):
        """No-op, kept for compatibility: the geometry is no longer cached, so in-place edits
        (``.data``, ``load_state_dict``, an EMA) take effect at the next forward."""

    def scaled_pool_widths(self, geometry=None) -> torch.Tensor:
        """(F,) pooling widths rescaled to each group's window: ``p / s * pool_size / W``;
        ``geometry``: a (G, 4) geometry tensor (default: :meth:`geometry_tensor`)."""
        if geometry is None:
            geometry = self.geometry_tensor()
        return scaled_pool_widths_tensor(self.pooling_widths, geometry, self.caps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = _float32_if_low(self.clamped_parameters())
        backend, impl = select_impl('grouped_gabor_filterbank', self.backend, x.device, x.dtype)
        if backend == 'triton' and debug_enabled() and not torch.compiler.is_compiling():
            check_finite_parameters(*params[:2])   # the host paths always check
        return _in_float32(x, backend, lambda x: impl(x, *params, self.caps))

    def extra_repr(self):
        return ('n_filters=%d, num_groups=%d, pool_size=%d, pool_stride=%d, '
                'conv_win_factor=%r, stride_factor=%r, backend=%r' % (
                    self.n_filters, self.num_groups, self.pool_size, self.pool_stride,
                    self.conv_win_factor, self.stride_factor, self.backend))
