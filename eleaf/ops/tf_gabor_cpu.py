"""TF LEAF's filterbank on the CPU: the ``'cpp'`` implementation of ``tf_gabor_filterbank``.

Reference: :func:`eleaf.functional.tf_leaf.tf_gabor_filterbank_ref` (same signature, numbers
equal up to float rounding): Gabor convolution (stride 1, TF 'SAME' padding), squared modulus,
depthwise Gaussian pooling (stride S, TF 'SAME' padding that depends on ``L mod S``). It is the
CPU filterbank of :mod:`eleaf.ops.gabor_cpu` (direct or fused FFT convolution, fused squared
modulus and pooling, blocks) run as one group of F filters with:

- the reference's own taps (:func:`~eleaf.functional.tf_leaf.tf_gabor_taps`); TF's taps
  for ``t = -(K//2) ... (K+1)//2 - 1`` read samples ``p + t`` for odd K. For even K they read
  ``p + t + 1`` ('SAME' pads one sample less on the left), so the taps move one place right
  on a grid of K + 1 with a zero in front;
- TF's pooling windows (:func:`~eleaf.functional.tf_leaf.tf_lowpass_windows`, K taps) and
  frames: frame t pools convolution steps ``t S - left ...``, ``left`` the 'SAME' left
  padding of the pooling (:func:`~eleaf.functional.tf_leaf.tf_same_padding`).

Dtypes float32 and float64; others fall back to the reference (``check``).
"""
import torch

from ..functional.gabor import GroupGeometry
from ..functional.tf_leaf import tf_gabor_taps_odd, tf_lowpass_windows, tf_same_padding
from .backends import register_impl
from .gabor_cpu import AVAILABLE, check, filterbank_groups
from .graph_break import run_eager

__all__ = ['tf_gabor_filterbank_cpu']


def tf_gabor_filterbank_cpu(x: torch.Tensor, kernel: torch.Tensor, pool_widths: torch.Tensor,
                            kernel_size: int, stride: int) -> torch.Tensor:
    """Same semantics as :func:`eleaf.functional.tf_leaf.tf_gabor_filterbank_ref`; under
    torch.compile one graph break (:func:`~eleaf.ops.graph_break.run_eager`, which imports
    torch._dynamo only while Dynamo traces), as :func:`eleaf.ops.gabor_cpu.gabor_filterbank_cpu`.

    Args:
        x (Tensor): (B, 1, L) waveform, float32 or float64, CPU.
        kernel (Tensor): (F, 2) constrained Gabor parameters (centre frequency in rad/sample,
            sigma in samples).
        pool_widths (Tensor): (F,) clipped pooling widths.
        kernel_size (int): K, Gabor and pooling taps.
        stride (int): S, hop in samples.
    Returns:
        Tensor: (B, F, T) with T = ceil(L / S).
    """
    return run_eager(_tf_gabor_filterbank_cpu, x, kernel, pool_widths, kernel_size, stride)


def _tf_gabor_filterbank_cpu(x, kernel, pool_widths, kernel_size, stride):
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError('tf_gabor_filterbank: x must be (B, 1, L), got %s'
                         % (tuple(x.shape),))
    K, n = int(kernel_size), kernel.shape[0]
    re, im = tf_gabor_taps_odd(kernel, K, x.dtype)
    windows = tf_lowpass_windows(pool_widths, K).to(x.dtype)
    geometry = [GroupGeometry(0, n, 1, stride, re.shape[1], K)]
    left = tf_same_padding(x.shape[-1], K, stride)[0]
    return filterbank_groups(x, torch.cat([re.reshape(-1), im.reshape(-1)]), windows, geometry,
                             pool_left=left)


if AVAILABLE:
    register_impl('tf_gabor_filterbank', 'cpp', tf_gabor_filterbank_cpu, check)
