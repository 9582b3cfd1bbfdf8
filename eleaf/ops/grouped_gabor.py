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
from ..functional.geometry import (GeometryCaps, geometry_from_tensor, group_geometry_tensor,
                                   scaled_pool_widths_tensor)
from ..functional.static_filterbank import grouped_gabor_filterbank_static
from .backends import register_impl
from .graph_break import run_eager

__all__ = ['grouped_gabor_filterbank_ref_op', 'with_host_geometry', 'check_finite_parameters']


def check_finite_parameters(center_freqs: torch.Tensor, bandwidths: torch.Tensor):
    """ValueError when a centre frequency or bandwidth is NaN or infinite (a host
    synchronisation on a GPU: the host-geometry paths make one anyway, the Triton path only
    under ``eleaf.set_debug(True)``). The geometry of such parameters is meaningless."""
    for name, t in (('center_freqs', center_freqs), ('bandwidths', bandwidths)):
        bad = int((~torch.isfinite(t.detach())).sum())
        if bad:
            raise ValueError('GroupedGaborFilterbank: %d of the %d %s are not finite (NaN or '
                             'inf), so the group geometry is undefined; reload a good '
                             'checkpoint or lower the learning rate' % (bad, t.numel(), name))


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


def _register_host_geometry_backends():
    """The C++ CPU filterbank (Python-int geometry) serves ``grouped_gabor_filterbank``
    through :func:`with_host_geometry`; the Triton one registers its own (eleaf.ops.gabor)."""
    from .backends import _REGISTRY
    entry = _REGISTRY.get('gabor_filterbank', {}).get('cpp')
    if entry is not None:
        register_impl('grouped_gabor_filterbank', 'cpp', with_host_geometry(entry.fn),
                      entry.check)


_register_host_geometry_backends()
