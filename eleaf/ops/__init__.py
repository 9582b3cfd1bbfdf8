"""Op registry: the reference ('torch') implementation of every op is registered here (the TF
port's in :mod:`eleaf.modules.tf_leaf`); the fast paths register themselves from
``eleaf.ops.gabor`` (with ``gabor_pack``), ``eleaf.ops.pcen``, ``eleaf.ops.tf_gabor_triton``
and ``eleaf.ops.tf_pcen`` (Triton), ``eleaf.ops.compress``, ``eleaf.ops.pcen_cpp``, ``eleaf.ops.gabor_cpu`` and
``eleaf.ops.tf_gabor_cpu`` (``eleaf._C``) when their backend can be imported.

Ops and their signatures (all backends share them):

- ``gabor_filterbank(x, center_freqs, bandwidths, pool_widths, geometry) -> (B, F, T)``,
  see :func:`eleaf.functional.grouped_gabor_filterbank_ref`.
- ``pcen(x, s, alpha, delta, r, eps, clamp) -> y`` on effective parameters, see
  :func:`eleaf.functional.pcen_ref`.
- ``log1p_median(x, a, per_band, median_filter, append) -> y``: log compression followed by
  the optional median subtraction of LogTBN, see :func:`log1p_median_ref`.
- ``tf_gabor_filterbank``, ``tf_pcen``: the TF LEAF port's, see
  :func:`eleaf.functional.tf_leaf.tf_gabor_filterbank_ref` and ``tf_pcen_ref``.
"""
import torch

from ..functional import (grouped_gabor_filterbank_ref, log1p_ref, median_subtract_ref,
                          pcen_ref)
from ..functional.compress import REDUCED_DTYPES
from .backends import (BACKENDS, BackendUnavailableError, check_backend_name, component_backend,
                       register_impl, resolve_backend, select_impl)


def log1p_median_ref(x, a, per_band: bool, median_filter: bool, append: bool):
    """``log1p(10^a x)`` (plain log1p for ``a=None``), then with ``median_filter`` the median
    subtraction of :func:`eleaf.functional.median_subtract_ref`.

    float16 and bfloat16 are computed in float32 (``10^a x`` overflows float16), the median
    included, and only the result is rounded: to x's dtype, or to its promotion with a
    dimensioned ``a`` (as ``10 ** a * x``)."""
    if median_filter and x.dtype in REDUCED_DTYPES:
        out_dtype = x.dtype
        if isinstance(a, torch.Tensor):
            if a.ndim > 0:
                out_dtype = torch.promote_types(out_dtype, a.dtype)
            if a.dtype in REDUCED_DTYPES:
                a = a.float()
        return log1p_median_ref(x.float(), a, per_band, median_filter, append).to(out_dtype)
    x = log1p_ref(x, a, per_band)
    return median_subtract_ref(x, append) if median_filter else x


register_impl('gabor_filterbank', 'torch', grouped_gabor_filterbank_ref)
register_impl('pcen', 'torch', pcen_ref)
register_impl('log1p_median', 'torch', log1p_median_ref)
