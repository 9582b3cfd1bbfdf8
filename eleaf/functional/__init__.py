"""Stateless reference implementations of every eleaf computation (float64-safe)."""
from .compress import log1p_ref, median_subtract_ref, temporal_batch_norm_ref
from .geometry import (GeometryCaps, geometry_caps, geometry_from_tensor, group_geometry_tensor,
                       scaled_pool_widths_tensor)
from .gabor import (GroupGeometry, gabor_filterbank_ref, gabor_filters, gabor_kernel,
                    group_geometry, group_pool_widths, group_splits, group_stride,
                    grouped_gabor_filterbank_ref, mel_filter_params, possible_strides)
from .mel import create_mel_filterbank, mel_fbanks, stft_kernel
from .pcen import pcen_parameters, pcen_ref, pcen_smoother_ref
from .pooling import gauss_windows, gaussian_pool_ref
