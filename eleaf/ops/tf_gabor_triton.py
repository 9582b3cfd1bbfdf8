"""TF LEAF's filterbank on the fused Triton kernels: the ``'triton'`` implementation of
``tf_gabor_filterbank``.

Reference: :func:`eleaf.functional.tf_leaf.tf_gabor_filterbank_ref` (same signature, numbers
equal up to float rounding): Gabor convolution (stride 1, TF 'SAME' padding), squared modulus,
depthwise Gaussian pooling (stride S, TF 'SAME' padding that depends on ``L mod S``). It is
the op ``eleaf::gabor_pool`` of :mod:`eleaf.ops.gabor` run as one group of F filters with
(as the CPU version, :mod:`eleaf.ops.tf_gabor_cpu`):

- the reference's own taps (:func:`~eleaf.functional.tf_leaf.tf_gabor_taps`); for even K
  TF reads samples ``p + t + 1``, so the taps move one place right on a grid of K + 1 with a
  zero in front (the kernels take odd sizes);
- TF's pooling windows (:func:`~eleaf.functional.tf_leaf.tf_lowpass_windows`, K taps; for
  even K with a zero appended) and TF's pooling frames, through the kernels' ``pool_shift``:
  left padding ``W//2 + pool_shift`` = TF's 'SAME' left padding
  (:func:`~eleaf.functional.tf_leaf.tf_same_padding`).

Dtypes as the Triton filterbank (float32, float16/bfloat16 inputs; float64 runs the reference).
"""
import torch
import torch.nn.functional as F

from ..functional.gabor import GroupGeometry
from ..functional.tf_leaf import tf_gabor_taps_odd, tf_lowpass_windows, tf_same_padding
from .backends import register_impl
from .gabor import HAS_TRITON, _check, pool, static_layout

__all__ = ['tf_gabor_filterbank_triton']


def tf_gabor_filterbank_triton(x: torch.Tensor, kernel: torch.Tensor, pool_widths: torch.Tensor,
                               kernel_size: int, stride: int) -> torch.Tensor:
    """Same semantics as :func:`eleaf.functional.tf_leaf.tf_gabor_filterbank_ref`.

    Args:
        x (Tensor): (B, 1, L) waveform, float32/float16/bfloat16, CUDA (or CPU under
            ``TRITON_INTERPRET=1``).
        kernel (Tensor): (F, 2) constrained Gabor parameters (centre frequency in rad/sample,
            sigma in samples).
        pool_widths (Tensor): (F,) clipped pooling widths.
        kernel_size (int): K, Gabor and pooling taps.
        stride (int): S, hop in samples.
    Returns:
        Tensor: (B, F, T) in x's dtype, T = ceil(L / S).
    """
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError('tf_gabor_filterbank: x must be (B, 1, L), got %s'
                         % (tuple(x.shape),))
    K, n = int(kernel_size), kernel.shape[0]
    re, im = tf_gabor_taps_odd(kernel, K, torch.float32)
    windows = tf_lowpass_windows(pool_widths, K).to(torch.float32)
    if K % 2 == 0:  # the kernels take odd windows: a zero tap at the end
        windows = F.pad(windows, (0, 1))
    W = windows.shape[1]
    # even K: the taps sit one place right of the centre with no mirror for the first one,
    # so the kernels must not fold their symmetry
    layout = static_layout([GroupGeometry(0, n, 1, stride, re.shape[1], W)],
                           symmetric=K % 2 == 1)
    pool_shift = tf_same_padding(x.shape[-1], K, stride)[0] - W // 2
    packed = torch.cat([re.reshape(-1), im.reshape(-1)])
    return pool(x, packed, windows.reshape(-1), None, layout, pool_shift)


if HAS_TRITON:
    register_impl('tf_gabor_filterbank', 'triton', tf_gabor_filterbank_triton, _check)
