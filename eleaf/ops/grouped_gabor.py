"""The op ``grouped_gabor_filterbank``: EfficientLEAF's filterbank from its parameters and the
static :class:`~eleaf.functional.GeometryCaps`, the group geometry computed inside as data.

Signature (every backend): ``grouped_gabor_filterbank(x, center_freqs, bandwidths,
pooling_widths, caps) -> (B, F, T)`` with x (B, 1, L), the three (F,) parameters clamped
(pooling widths not yet rescaled to the groups' windows).

- ``'triton'`` (:func:`eleaf.ops.gabor.grouped_gabor_filterbank_triton`): the geometry is
  computed on the device and read by the kernels; no host synchronisation, one compiled
  graph for every geometry.
- ``'torch'`` and ``'cpp'`` (here): the geometry tensor is copied to the host and the
  filterbank runs with Python-int geometry (:func:`~eleaf.functional.grouped_gabor_filterbank_ref`,
  :func:`eleaf.ops.gabor_cpu.gabor_filterbank_cpu`). Under ``torch.compile`` that copy and
  the CPU filterbank run as one graph break (:func:`~eleaf.ops.graph_break.run_eager`), so
  a compiled training loop does not guard on the geometry and does not recompile when it
  changes.
"""
import torch

from ..functional.gabor import grouped_gabor_filterbank_ref
from ..functional.export import is_exporting
from ..functional.geometry import (GeometryCaps, check_finite_parameters,
                                   geometry_from_tensor, group_geometry_tensor,
                                   scaled_pool_widths_tensor)
from ..functional.static_filterbank import grouped_gabor_filterbank_static
from .backends import register_impl
from .graph_break import run_eager

__all__ = ['grouped_gabor_filterbank_ref_op', 'with_host_geometry']


def _call_with_host_geometry(impl, x, center_freqs, bandwidths, pool_widths, geometry, caps):
    check_finite_parameters(center_freqs, bandwidths)
    return impl(x, center_freqs, bandwidths, pool_widths, geometry_from_tensor(geometry, caps))


def with_host_geometry(impl):
    """Adapt a ``gabor_filterbank`` implementation (Python-int geometry) to the signature of
    ``grouped_gabor_filterbank``."""
    def grouped(x: torch.Tensor, center_freqs: torch.Tensor, bandwidths: torch.Tensor,
                pooling_widths: torch.Tensor, caps: GeometryCaps) -> torch.Tensor:
        geometry = group_geometry_tensor(center_freqs, bandwidths, caps)
        pool_widths = scaled_pool_widths_tensor(pooling_widths, geometry, caps)
        if is_exporting():  # no host copy in an exported graph: static shapes, same numbers
            return grouped_gabor_filterbank_static(x, center_freqs, bandwidths, pool_widths,
                                                   geometry, caps)
        return run_eager(_call_with_host_geometry, impl, x, center_freqs, bandwidths,
                         pool_widths, geometry, caps)
    grouped.__name__ = grouped.__qualname__ = 'grouped_' + getattr(impl, '__name__', 'impl')
    grouped.__doc__ = ('``grouped_gabor_filterbank`` through :func:`%s` with the geometry '
                       'copied to the host.' % getattr(impl, '__name__', 'impl'))
    return grouped


#: the reference: group_geometry_tensor, then grouped_gabor_filterbank_ref on host geometry
grouped_gabor_filterbank_ref_op = with_host_geometry(grouped_gabor_filterbank_ref)

register_impl('grouped_gabor_filterbank', 'torch', grouped_gabor_filterbank_ref_op)


def _cpp_filterbank(x, center_freqs, bandwidths, pool_widths, geometry):
    """The C++ CPU filterbank (``gabor_filterbank`` on 'cpp'), looked up when called: this
    module may be imported before eleaf.ops.gabor_cpu registers it."""
    from .backends import _REGISTRY
    return _REGISTRY['gabor_filterbank']['cpp'].fn(x, center_freqs, bandwidths, pool_widths,
                                                    geometry)


def _cpp_check(device, dtype):
    from .backends import _REGISTRY, _impl_reason
    if 'cpp' not in _REGISTRY.get('gabor_filterbank', {}):
        return _impl_reason('gabor_filterbank', 'cpp', device, dtype)
    return _REGISTRY['gabor_filterbank']['cpp'].check(device, dtype)


#: the C++ CPU filterbank (Python-int geometry) through with_host_geometry; the Triton one
#: registers its own (eleaf.ops.gabor)
register_impl('grouped_gabor_filterbank', 'cpp', with_host_geometry(_cpp_filterbank),
              _cpp_check)
