"""Group geometry of EfficientLEAF's grouped Gabor filterbank (SPEC §5): per group the
convolution stride s, pooling stride P, kernel size K and window size W, which follow from
the learned centre frequencies and bandwidths.

Two forms of the same formula:

- :func:`group_geometry`: the original's host formula, a tuple of :class:`GroupGeometry`
  (Python ints; one device-to-host copy of the per-group maxima).
- :func:`group_geometry_tensor`: the same numbers as an int32 ``(G, 4)`` tensor ``[s, P, K, W]``
  computed by tensor operations on the parameters' device, with no host synchronisation and
  no data-dependent shapes, so that the fast paths, ``torch.compile``, CUDA graphs and
  ``torch.export`` can read the geometry as data. Its sizes are bounded by the static
  :class:`GeometryCaps` of the constructor arguments, which size every buffer and grid.
"""
import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch

__all__ = ['GroupGeometry', 'group_splits', 'possible_strides', 'group_stride',
           'group_geometry', 'group_pool_widths', 'GeometryCaps', 'geometry_caps',
           'group_geometry_tensor', 'scaled_pool_widths_tensor', 'filter_groups',
           'geometry_from_tensor', 'stride_thresholds', 'check_finite_parameters', 'GEO_S',
           'GEO_P', 'GEO_K', 'GEO_W']

#: columns of the ``(G, 4)`` geometry tensor
GEO_S, GEO_P, GEO_K, GEO_W = 0, 1, 2, 3

#: float32(pi): the upper clamp of the centre frequencies (SPEC §5)
MU_UPPER = float(np.float32(np.pi))

@dataclass(frozen=True)
class GroupGeometry:
    """Static geometry of one filter group of the grouped filterbank (SPEC §5).

    Attributes:
        start, stop: the group holds filters ``start ... stop - 1``.
        conv_stride: stride s of the Gabor convolution, in samples.
        pool_stride: stride P of the Gaussian pooling, in convolution steps (s * P = hop).
        kernel_size: K, odd number of Gabor taps.
        window_size: W, odd number of pooling taps.
    """
    start: int
    stop: int
    conv_stride: int
    pool_stride: int
    kernel_size: int
    window_size: int

    @property
    def num_filters(self) -> int:
        return self.stop - self.start


def group_splits(n_filters: int, num_groups: int) -> List[int]:
    """Filter index boundaries ``g * F // G`` for g = 0 ... G (SPEC §5)."""
    return [int(v) for v in np.arange(num_groups + 1) * n_filters // num_groups]


def possible_strides(pool_stride: int) -> List[int]:
    """All divisors of ``pool_stride``, ascending: the admissible convolution strides."""
    return [i for i in range(1, pool_stride + 1) if pool_stride % i == 0]


def group_stride(max_center_freq: float, pool_stride: int,
                 stride_factor: float) -> Tuple[int, int]:
    """Convolution and pooling stride of a group (SPEC §5).

    Args:
        max_center_freq (float): largest clamped centre frequency of the group, rad/sample.
        pool_stride (int): the frontend hop in samples.
        stride_factor (float): multiplies the Nyquist-limited stride.
    Returns:
        (s, P): the largest divisor s of ``pool_stride`` not above
        ``max(1, pi / max_center_freq * stride_factor)``, and ``P = pool_stride // s``.
        For ``max_center_freq == 0`` (where the original divides by zero) s = pool_stride.
    """
    strides = possible_strides(pool_stride)
    if max_center_freq == 0:
        stride = strides[-1]
    else:
        stride = max(1, np.pi / max_center_freq * stride_factor)
        stride = strides[np.searchsorted(strides, stride, side='right') - 1]
    return stride, pool_stride // stride


def group_geometry(center_freqs: torch.Tensor, bandwidths: torch.Tensor, num_groups: int,
                   pool_size: int, pool_stride: int, conv_win_factor: float,
                   stride_factor: float) -> Tuple[GroupGeometry, ...]:
    """Per-group strides and sizes from (clamped) parameters (SPEC §5).

    One host synchronisation in total: the per-group maxima are gathered on the device and
    copied once. Kernel sizes are computed in the parameters' dtype and truncated, as the
    original does (``int(max(sigma) * conv_win_factor)``), then made odd.
    """
    n_filters = center_freqs.shape[0]
    splits = group_splits(n_filters, num_groups)
    with torch.no_grad():
        mu_max = torch.stack([center_freqs[a:b].max() for a, b in zip(splits[:-1], splits[1:])])
        sigma_max = torch.stack([bandwidths[a:b].max() for a, b in zip(splits[:-1], splits[1:])])
        sizes = (sigma_max * conv_win_factor).cpu()
        mu_max = mu_max.cpu()
    groups = []
    for g, (a, b) in enumerate(zip(splits[:-1], splits[1:])):
        conv_stride, pstride = group_stride(mu_max[g].item(), pool_stride, stride_factor)
        kernel_size = int(sizes[g])
        kernel_size += 1 - kernel_size % 2
        window_size = int(pool_size / conv_stride + .5)
        window_size += 1 - window_size % 2
        groups.append(GroupGeometry(a, b, conv_stride, pstride, kernel_size, window_size))
    return tuple(groups)


def group_pool_widths(pooling_widths: torch.Tensor, geom: GroupGeometry,
                      pool_size: int) -> torch.Tensor:
    """Pooling widths of a group rescaled to its window: ``p / s * pool_size / W`` (SPEC §5)."""
    return (pooling_widths[geom.start:geom.stop] / geom.conv_stride
            * pool_size / geom.window_size)




def _odd(k: int) -> int:
    return k + 1 - k % 2


@dataclass(frozen=True)
class GeometryCaps:
    """Static bounds of a grouped filterbank's geometry, from its constructor arguments.

    Every geometry the clamped parameters can produce satisfies ``min_stride <= s <= hop``,
    ``K <= kernel_size``, ``W <= window_size`` and ``cdiv(W, P) <= shifts``; buffers, packed
    layouts and launch grids are sized by these caps, never by the current values.

    Attributes:
        splits: filter index boundaries of the groups (G + 1 ints).
        hop: the frontend hop (pool_stride) in samples, s * P = hop.
        pool_size: the frontend window in samples.
        conv_win_factor, stride_factor: as the filterbank's arguments.
        min_stride: the smallest stride any group can get (centre frequency float32(pi)).
        kernel_size: odd upper bound of K (the bandwidth clamp times conv_win_factor).
        window_size: odd upper bound of W (at min_stride).
        shifts: upper bound of the pooling shifts cdiv(W, P) over all admissible strides.
    """
    splits: Tuple[int, ...]
    hop: int
    pool_size: int
    conv_win_factor: float
    stride_factor: float
    min_stride: int
    kernel_size: int
    window_size: int
    shifts: int

    @property
    def num_groups(self) -> int:
        return len(self.splits) - 1

    @property
    def n_filters(self) -> int:
        return self.splits[-1]

    @property
    def max_pool_stride(self) -> int:
        return self.hop // self.min_stride

    def steps(self, length: int) -> int:
        """Upper bound of a group's convolution steps N = (L - 1) // s + 1."""
        return (length - 1) // self.min_stride + 1


def geometry_caps(n_filters: int, num_groups: int, pool_size: int, pool_stride: int,
                  conv_win_factor: float, stride_factor: float, sigma_upper: float,
                  mu_upper: float = MU_UPPER) -> GeometryCaps:
    """:class:`GeometryCaps` of a grouped filterbank whose parameters are clamped to
    ``center_freqs <= mu_upper`` and ``bandwidths <= sigma_upper`` (SPEC §5).

    The kernel-size cap allows for the bandwidth clamp's rounding in float32 and float64 (a
    cap above the largest reachable K only costs buffer space)."""
    strides = possible_strides(pool_stride)
    min_stride, _ = group_stride(mu_upper, pool_stride, stride_factor)
    sizes = [int(np.float32(np.float32(sigma_upper) * np.float32(conv_win_factor))),
             int(float(sigma_upper) * conv_win_factor),
             int(math.nextafter(float(sigma_upper), math.inf) * conv_win_factor)]
    kernel_size = _odd(max(sizes) + 1)
    windows = {s: _odd(int(pool_size / s + .5)) for s in strides if s >= min_stride}
    shifts = max(-(-w // (pool_stride // s)) for s, w in windows.items())
    return GeometryCaps(tuple(group_splits(n_filters, num_groups)), int(pool_stride),
                        int(pool_size), float(conv_win_factor), float(stride_factor),
                        int(min_stride), kernel_size, windows[min_stride], shifts)


def filter_groups(caps: GeometryCaps, device) -> torch.Tensor:
    """(F,) int64 group index of every filter, on ``device``, by arithmetic (no copy from the
    host): filter f is in the group g with ``g F // G <= f < (g + 1) F // G``."""
    F, G = caps.n_filters, caps.num_groups
    f = torch.arange(F, device=device)
    return torch.div((f + 1) * G + F - 1, F, rounding_mode='floor') - 1


def _group_members(caps: GeometryCaps, device) -> torch.Tensor:
    """(G, n_max) int64 filter indices of every group, padded with the group's last filter."""
    F, G = caps.n_filters, caps.num_groups
    n_max = max(b - a for a, b in zip(caps.splits[:-1], caps.splits[1:]))
    g = torch.arange(G, device=device)
    start = torch.div(g * F, G, rounding_mode='floor')
    stop = torch.div((g + 1) * F, G, rounding_mode='floor')
    j = torch.arange(n_max, device=device)
    return torch.minimum(start[:, None] + j[None, :], stop[:, None] - 1)


def group_geometry_tensor(center_freqs: torch.Tensor, bandwidths: torch.Tensor,
                          caps: GeometryCaps) -> torch.Tensor:
    """Per-group ``[s, P, K, W]`` as an int32 ``(G, 4)`` tensor on the parameters' device:
    :func:`group_geometry`'s numbers by tensor operations, without host synchronisation.

    The stride test ``s <= pi / max(mu) * stride_factor`` runs in float64 as the original's
    Python floats do; the kernel size ``int(max(sigma) * conv_win_factor)`` in the
    parameters' dtype. Values are clipped to the caps (they only bind for parameters outside
    their clamp ranges, e.g. NaN), so kernels sized by the caps never read out of bounds.

    Args:
        center_freqs, bandwidths (Tensor): (F,) clamped parameters, rad/sample and samples.
        caps: :func:`geometry_caps` of the filterbank.
    Returns:
        Tensor: (G, 4) int32, columns ``GEO_S, GEO_P, GEO_K, GEO_W``.
    """
    dev = center_freqs.device
    with torch.no_grad():
        members = _group_members(caps, dev)
        mu_max = center_freqs.detach()[members].amax(1).to(torch.float64)
        sigma_max = bandwidths.detach()[members].amax(1)
        hop = caps.hop
        # true divisions (a Python number divided by a tensor is a reciprocal and a product)
        limit = torch.where(mu_max > 0, torch.full_like(mu_max, math.pi) / mu_max
                            * caps.stride_factor, torch.full_like(mu_max, math.inf))
        cand = torch.arange(1, hop + 1, device=dev, dtype=torch.float64)
        ok = (torch.remainder(hop, cand) == 0) & (cand <= limit[:, None])
        s = torch.where(ok, cand, torch.ones_like(cand)).amax(1).to(torch.int64)
        s = s.clamp(min=caps.min_stride)
        P = torch.div(torch.full_like(s, hop), s, rounding_mode='floor')
        K = (sigma_max * caps.conv_win_factor).nan_to_num(0.).clamp(0, caps.kernel_size)
        K = K.to(torch.int64)
        K = (K + 1 - K % 2).clamp(max=caps.kernel_size)
        s64 = s.to(torch.float64)
        W = torch.floor(torch.full_like(s64, caps.pool_size) / s64 + .5).to(torch.int64)
        W = (W + 1 - W % 2).clamp(max=caps.window_size)
        return torch.stack((s, P, K, W), 1).to(torch.int32)


def scaled_pool_widths_tensor(pooling_widths: torch.Tensor, geometry: torch.Tensor,
                              caps: GeometryCaps) -> torch.Tensor:
    """(F,) pooling widths rescaled to each group's window, ``p / s * pool_size / W``
    (:func:`group_pool_widths`), from the ``(G, 4)`` geometry tensor; differentiable in
    ``pooling_widths``."""
    per_filter = geometry.index_select(0, filter_groups(caps, geometry.device))
    s = per_filter[:, GEO_S].to(pooling_widths.dtype)
    W = per_filter[:, GEO_W].to(pooling_widths.dtype)
    return pooling_widths / s * caps.pool_size / W


def geometry_from_tensor(geometry: torch.Tensor, caps: GeometryCaps
                         ) -> Tuple[GroupGeometry, ...]:
    """The ``(G, 4)`` geometry tensor as host :class:`GroupGeometry` s (a device-to-host copy:
    for the paths that need Python ints, the CPU kernels and the reference)."""
    rows = geometry.tolist()
    return tuple(GroupGeometry(a, b, *row) for a, b, row in
                 zip(caps.splits[:-1], caps.splits[1:], rows))


def stride_thresholds(caps: GeometryCaps) -> List[Tuple[int, float]]:
    """The stride rule of SPEC §5 as float32 thresholds: ``[(d, t_d)]`` for the admissible
    strides d >= ``caps.min_stride``, ascending, where t_d is the largest float32 centre
    frequency mu with ``d <= max(1, pi / mu * stride_factor)`` in float64 (the original's
    Python floats; mu = 0 admits every d). A group whose largest float32 centre frequency is
    mu gets the largest d with ``mu <= t_d``: the same stride as the float64 rule, compared in
    float32 (the Triton kernels' form). The smallest stride's threshold is +inf.
    """
    def admits(d: int, bits: int) -> bool:
        mu = float(np.array(bits, dtype=np.uint32).view(np.float32))
        return mu == 0 or d <= max(1, np.pi / mu * caps.stride_factor)

    out = []
    for d in possible_strides(caps.hop):
        if d < caps.min_stride:
            continue
        if not out:
            out.append((d, math.inf))
            continue
        lo, hi = 0, 0x7f800000          # admits(d, lo); the answer is below +inf's bits
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if admits(d, mid):
                lo = mid
            else:
                hi = mid
        out.append((d, float(np.array(lo, dtype=np.uint32).view(np.float32))))
    return out


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
