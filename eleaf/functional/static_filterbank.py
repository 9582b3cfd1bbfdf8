"""EfficientLEAF's grouped Gabor filterbank with static shapes (for ``torch.export``, ONNX).

:func:`~eleaf.functional.grouped_gabor_filterbank_ref` needs the group geometry as Python
ints (one convolution per group, with the group's stride, kernel size and window). Here the
geometry stays a ``(G, 4)`` tensor and every shape follows from the static
:class:`~eleaf.functional.GeometryCaps`, so the whole filterbank is one traced graph without
data-dependent shapes, complex tensors or host copies. Exact in real arithmetic:

- **Gabor convolution.** Every filter's taps lie on one centred grid of ``caps.kernel_size``
  taps (real ``cos``/``sin``, :func:`~eleaf.functional.gabor.gabor_taps_padded`); taps
  beyond a group's ``K // 2`` are zero. One convolution at the base stride ``b`` (the gcd of
  every stride a group can get: 1 for ``stride_factor=1``, 4 for Gabor 8G-opt at 16 kHz)
  gives ``y_b[n] = y_1[n b]`` where ``y_1`` is the stride-1 response; a group of stride s
  (a multiple of b) reads ``y_s[n] = y_1[n s]``. ``E = Re^2 + Im^2``.
- **Pooling.** Group g pools ``E_s`` with W taps at stride P, zero padding ``W // 2``:
  ``out[t] = sum_k w[k] E_s[t P + k - W//2]``. With ``hop = s P`` this reads the full-rate
  energies ``E_1[t hop + (k - W//2) s]``, and ``n`` lies in ``[0, N_s)`` exactly when
  ``n s`` lies in ``[0, L)`` (``N_s = (L - 1) // s + 1``), so the zero padding agrees too.
  Each window is therefore scattered to the offsets ``(k - W//2) s`` of one dilated window
  of ``2 R + 1`` taps (``R`` = :func:`pool_reach`, the largest ``(W//2) s`` over the
  admissible strides), and one depthwise convolution of ``E_b`` at stride ``hop / b`` with
  zero padding ``R / b`` pools every filter.

Cost: the convolution runs at stride b with the widest kernel for every group (the fused
kernels run each group at its own stride and size), i.e. up to ``s / b`` times more work.
"""
import math
from functools import reduce
from typing import Tuple

import torch
import torch.nn.functional as F

from .gabor import gabor_taps_padded
from .geometry import GEO_K, GEO_S, GEO_W, GeometryCaps, filter_groups, possible_strides

__all__ = ['grouped_gabor_filterbank_static', 'admissible_strides', 'base_stride',
           'pool_reach']


def admissible_strides(caps: GeometryCaps) -> Tuple[int, ...]:
    """Every convolution stride a group can get: the divisors of ``caps.hop`` from
    ``caps.min_stride`` on (``group_geometry_tensor`` clamps s to ``min_stride``)."""
    return tuple(d for d in possible_strides(caps.hop) if d >= caps.min_stride)


def base_stride(caps: GeometryCaps) -> int:
    """b: the gcd of :func:`admissible_strides`; every group's stride and the hop are
    multiples of it."""
    return reduce(math.gcd, admissible_strides(caps))


def _window_size(pool_size: int, stride: int) -> int:
    w = int(pool_size / stride + .5)
    return w + 1 - w % 2


def pool_reach(caps: GeometryCaps) -> int:
    """R: the largest pooling offset ``(W // 2) s`` in samples over the admissible strides s
    (W the window size of s, clipped to ``caps.window_size`` as the geometry tensor is).

    Bound: ``W = odd(int(pool_size / s + 0.5))`` gives ``W // 2 <= (pool_size / s + 0.5) / 2``,
    so ``R <= pool_size / 2 + hop / 4``; a multiple of :func:`base_stride`.
    """
    return max(min(_window_size(caps.pool_size, s), caps.window_size) // 2 * s
               for s in admissible_strides(caps))


def grouped_gabor_filterbank_static(x: torch.Tensor, center_freqs: torch.Tensor,
                                    bandwidths: torch.Tensor, pool_widths_scaled: torch.Tensor,
                                    geometry: torch.Tensor, caps: GeometryCaps) -> torch.Tensor:
    """Grouped Gabor filterbank on the geometry tensor, static shapes (see the module).

    The same function as :func:`~eleaf.functional.grouped_gabor_filterbank_ref` with the host
    geometry of ``geometry`` (SPEC §5), differentiable in x and the three parameters. A
    window of size W = 1 (reachable when ``pool_size < 1.5 s``, where the reference's window
    formula divides by zero) is the single tap 1, plain subsampling.

    Args:
        x (Tensor): (B, 1, L) waveform.
        center_freqs, bandwidths (Tensor): (F,) clamped Gabor parameters.
        pool_widths_scaled (Tensor): (F,) pooling widths rescaled to each group's window
            (:func:`~eleaf.functional.scaled_pool_widths_tensor`).
        geometry (Tensor): (G, 4) int ``[s, P, K, W]`` per group
            (:func:`~eleaf.functional.group_geometry_tensor`), s among
            :func:`admissible_strides`, ``K <= caps.kernel_size``.
        caps (GeometryCaps): static bounds of the filterbank.
    Returns:
        Tensor: (B, F, T), T = (L - 1) // hop + 1.
    """
    n = center_freqs.shape[0]
    dtype, device = center_freqs.dtype, center_freqs.device
    b = base_stride(caps)
    reach = pool_reach(caps)
    assert caps.hop % b == 0 and reach % b == 0 and 2 * reach <= caps.pool_size + caps.hop // 2
    per_filter = geometry.index_select(0, filter_groups(caps, device)).to(torch.int64)
    s = per_filter[:, GEO_S:GEO_S + 1]
    half_k = per_filter[:, GEO_K:GEO_K + 1] // 2
    half_w = per_filter[:, GEO_W:GEO_W + 1] // 2

    # Gabor taps of every filter on one grid of kernel_size taps, zero beyond |t| > K // 2
    size = caps.kernel_size
    re, im = gabor_taps_padded(size, center_freqs, bandwidths)
    t = torch.arange(size, device=device)[None, :] - size // 2
    inside = t.abs() <= half_k
    zero = torch.zeros((), dtype=dtype, device=device)
    taps = torch.cat((torch.where(inside, re, zero), torch.where(inside, im, zero)), 0)
    out = F.conv1d(x, taps.unsqueeze(1).to(x.dtype), stride=b, padding=size // 2)
    out = out ** 2
    energy = out[:, :n] + out[:, n:]

    # pooling windows scattered to the offsets (k - W // 2) s of one dilated window
    offset = (torch.arange(2 * reach // b + 1, device=device)[None, :] - reach // b) * b
    tap = torch.div(offset, s, rounding_mode='floor')                   # k - W // 2
    used = (offset - tap * s == 0) & (tap.abs() <= half_w)
    k = (tap + half_w).to(dtype)
    wide = half_w > 0                                                    # W > 1
    step = 2 / torch.where(wide, 2 * half_w, torch.ones_like(half_w)).to(dtype)   # 2/(W-1)
    u = torch.where(wide, k * step - 1, zero)
    windows = torch.where(used, torch.exp(-0.5 * (u / pool_widths_scaled[:, None]) ** 2), zero)
    return F.conv1d(energy, windows.unsqueeze(1).to(energy.dtype), stride=caps.hop // b,
                    padding=reach // b, groups=n)
