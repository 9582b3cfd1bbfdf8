"""Grouped Gabor filterbank on the CPU: the ``'cpp'`` implementation of ``gabor_filterbank``.

Reference: :func:`eleaf.functional.grouped_gabor_filterbank_ref` (same signature, numbers
equal up to float rounding). Per group of filters (letters: B batch, n filters of the group,
K Gabor taps, s convolution stride, W pooling taps, P pooling stride, T frames):

1. **Convolution**, one of two exact algorithms, chosen per group by a cost model for the
   forward alone or forward + backward (:func:`choose_method`, constants fitted on a 2-core
   x86 CPU with torch 2.13):

   - ``'direct'``: the strided time-domain convolution of the real and imaginary taps (2n
     channels) on an explicitly zero-padded input. Gabor taps are even (real) and odd
     (imaginary) in time, so ``eleaf::gabor_fold_fwd`` (``csrc/gabor_fold.cpp``) adds and
     subtracts each pair of samples t and -t once for all filters and does half the
     multiply-adds, its backward ``eleaf::gabor_fold_wgrad`` likewise (:data:`FOLD`; for
     EfficientLEAF 8G-opt's groups at 80 filters, 16 x 1 s, 2.2x and 2.4x faster than
     oneDNN's ``conv1d`` and the batched-product weight gradient). Taps without that
     symmetry (the TF port's filterbank) run as ``conv1d`` (oneDNN's strided convolution is
     about 3x faster without its own padding);
   - ``'fft'``: one complex filter per Gabor filter, multiplied with the input's spectrum;
     a stride s > 1 is applied in the frequency domain by folding the spectrum onto N/s bins
     (``y[m s] = ifft_{N/s}(sum_j Y[k + j N/s]) / s``), so the inverse FFT has about the
     output's length. Where the installed PyTorch exports oneMKL's DFT functions (its x86-64
     wheels do), the whole path of a group is one C++ op per direction
     (``eleaf::spectral_pool_fwd``/``_bwd``, ``csrc/spectral_pool.cpp``): the input
     segments of all blocks and their spectra, product, fold, inverse FFT, squared modulus
     and pooling, one (block, filter, example) row at a time in the cache; the backward pass
     recomputes each row, so nothing of size (B, n, N) is ever stored, and the op saves only
     its inputs. Otherwise the product and fold are one op
     (``eleaf::spectral_fold_fwd``, ``csrc/spectral_product.cpp``), the inverse FFT is
     torch's and the pooling step 2 below. LEAF's 401-tap, stride-1 convolution is the
     typical case.

2. **Squared modulus and Gaussian pooling** fused in the C++ op ``eleaf::modulus_pool_fwd``
   (``csrc/modulus_pool.cpp``): the squared modulus is never stored.

3. **Blocks.** Each group is computed in blocks of a few examples, or of consecutive frames
   of one example for long inputs (:func:`plan_blocks`), each block from its own input
   segment (with the halo of the Gabor kernel and the pooling window), so that a block's
   convolution output stays small (:data:`BLOCK_VALUES`). When a group's whole convolution
   output would exceed :data:`CHECKPOINT_VALUES` values, each block is recomputed in the
   backward pass instead of being kept: a long input never needs the full ``(B, 2F, L)``
   convolution output at once. The fused FFT op takes all examples and all blocks of a group
   in one call, blocks of at most :data:`FFT_BLOCK_SAMPLES` input samples
   (:func:`fft_block_frames`).

4. **Few autograd nodes.** The taps of all groups, each at its own kernel size, are one node
   with closed-form gradients, two C++ ops (:class:`_GaborTaps`, ``csrc/gabor_taps.cpp``);
   all direct-path groups are one node (:class:`_DirectGroups`, its backward pass computes
   the weight gradient with ``eleaf::gabor_fold_wgrad``, or as a batched product,
   :func:`_strided_weight_grad`); each FFT-path group is one C++ op per direction.
   Per-op overhead was a third of EfficientLEAF 8G-opt's training step before.

Gradients: to the input and to all three parameter vectors. Dtypes: float32 and float64
(computed natively); others fall back to the reference.
"""
import functools
import logging
import math
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from ..functional.gabor import GroupGeometry
from ..functional.pooling import gauss_windows_padded
from .backends import cpp_status, register_impl
from .graph_break import run_eager

__all__ = ['gabor_filterbank_cpu', 'filterbank_groups', 'modulus_pool', 'choose_method',
           'plan_blocks', 'fft_block_frames', 'BLOCK_VALUES', 'CHECKPOINT_VALUES',
           'FFT_BLOCK_SAMPLES', 'SPECTRA_VALUES', 'AVAILABLE', 'FUSED_FFT']

AVAILABLE, _REASON, _ = cpp_status()


def _fused_fft_status() -> Tuple[bool, str]:
    """(whether eleaf::spectral_pool_fwd runs here, why not)."""
    if not AVAILABLE:
        return False, _REASON
    try:
        reason = torch.ops.eleaf.spectral_pool_unavailable()
    except (AttributeError, RuntimeError) as exc:  # an eleaf._C built before the op existed
        return False, 'eleaf._C has no spectral_pool op (%s); rebuild it' % exc
    return not reason, reason


def _op_status(name: str) -> Tuple[bool, str]:
    """(whether the op eleaf::``name`` runs here, why not)."""
    if not AVAILABLE:
        return False, _REASON
    if not hasattr(torch.ops.eleaf, name):  # an eleaf._C built before the op
        return False, ('eleaf._C has no %s op; rebuild it: pip install --no-build-isolation .'
                       % name)
    return True, ''


#: whether the direct path folds the taps' symmetry (eleaf::gabor_fold_fwd, half the
#: multiply-adds of conv1d) for filterbanks whose taps are symmetric
FOLD, FOLD_REASON = _op_status('gabor_fold_fwd')

#: whether eleaf::gabor_taps_fwd / _bwd exist (_GaborTaps needs them: without them, the
#: whole CPU filterbank is unavailable, see check)
TAPS, TAPS_REASON = _op_status('gabor_taps_fwd')

#: whether the FFT path runs as the fused op eleaf::spectral_pool_fwd (oneMKL's FFTs found),
#: else as spectral_fold_fwd + torch.fft.ifft + modulus_pool_fwd
FUSED_FFT, FUSED_FFT_REASON = _fused_fft_status()
_warned_unfused = False


def _warn_unfused():
    """Say once that the FFT path runs as separate ops (2-4x slower per step)."""
    global _warned_unfused
    if not _warned_unfused:
        _warned_unfused = True
        logging.getLogger('eleaf').warning(
            'the CPU filterbank runs its FFT path as separate ops, 2-4x slower than '
            'the fused op (%s)', FUSED_FFT_REASON)

#: convolution output values (2 per filter and step) computed at once: blocks stay in the
#: caches and below glibc's mmap threshold (freshly mapped memory costs a page fault per 4 KiB,
#: which made one large block 2x slower than many small ones)
BLOCK_VALUES = 1 << 21
#: without a backward pass, blocks of whole examples hold at most this many convolution
#: output values (512 KiB in float32): a block's output is freed before the next is allocated,
#: and larger ones came as freshly mapped memory every call (about 1,100 page faults per call
#: for 8G-opt at 80 filters, 16 x 1 s, 11 % of its inference time)
INFERENCE_BLOCK_VALUES = 1 << 17
#: a group whose whole convolution output has more values is recomputed block by block in
#: the backward pass instead of being kept (direct path: by _DirectGroups; unfused FFT path:
#: torch.utils.checkpoint); the fused FFT op always recomputes and stores nothing that size
CHECKPOINT_VALUES = 1 << 24
#: input samples of one block of the fused FFT op (all examples at once): small transforms
#: (~6k points) keep every example's input spectrum of the block in a core's L2 cache while
#: the filters pass over it, and cost less per point than long ones; measured on LEAF and
#: EfficientLEAF 4G (16 x 1 s, 2 x 8 s): 6144 was fastest among 3000 ... 32768
FFT_BLOCK_SAMPLES = 6144
#: complex values of segment spectra the fused FFT op holds at once (a chunk of blocks):
#: 32 MiB in float32, whatever the input's length
SPECTRA_VALUES = 1 << 22

SUPPORTED_DTYPES = (torch.float32, torch.float64)

# cost model of choose_method, nanoseconds, fitted to per-group timings of EfficientLEAF 4G's
# groups and LEAF (2-core x86, 2 threads, torch 2.13, float32, 16 x 1 s), for the forward alone
# and for forward + backward: the direct convolution per real multiply-add; the FFT path per
# spectrum bin and filter (product, fold, pooling) and per inverse-FFT point and stage
#: FFT lengths up to this were measured for _COSTS (EfficientLEAF 4G at 2 x 8 s, with
#: transforms of ~10^6 points, trained 20 % slower with the FFT path than with direct)
_FFT_CALIBRATED = 1 << 15
_COSTS = {'forward': dict(direct_mac=0.018, fft_bin=1.25, fft_point_stage=0.185),
          'train': dict(direct_mac=0.055, fft_bin=2.0, fft_point_stage=0.48)}
#: the FFT path's costs with the fused op (FUSED_FFT), fitted the same way
_FUSED_COSTS = {'forward': dict(fft_bin=0.89, fft_point_stage=0.022),
                'train': dict(fft_bin=1.97, fft_point_stage=0.117)}


def check(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when this implementation runs on ``device``/``dtype``, else the reason."""
    if device.type != 'cpu':
        return 'the CPU filterbank of eleaf._C runs on CPU tensors only, got %s' % device.type
    if dtype not in SUPPORTED_DTYPES:
        return 'the CPU filterbank of eleaf._C supports float32 and float64, got %s' % (
            str(dtype).replace('torch.', ''))
    if not TAPS:
        return TAPS_REASON
    return None


def modulus_pool(y: torch.Tensor, win: torch.Tensor, stride: int, lo: int, hi: int,
                 frames: int, interleaved: bool) -> torch.Tensor:
    """Pooled squared modulus, see ``csrc/modulus_pool.cpp``.

    Args:
        y (Tensor): responses at N convolution steps: (B, 2n, N), real parts then imaginary
            parts, or with ``interleaved`` (B, n, N, 2).
        win (Tensor): (n, W) pooling windows.
        stride (int): P, pooling stride in steps.
        lo, hi (int): steps outside [lo, hi) count as zero (padding).
        frames (int): T, number of output frames, ``(T - 1) P + W <= N``.
    Returns:
        Tensor: (B, n, T), ``out[b, f, t] = sum_q win[f, q] * (re^2 + im^2)[b, f, t P + q]``.
    """
    return torch.ops.eleaf.modulus_pool_fwd(y, win, stride, lo, hi, frames, interleaved)


@functools.lru_cache(maxsize=None)
def fft_size(n: int, fused: bool = False) -> int:
    """Smallest 2^a * m >= n with m in (1, 3, 5, 9): FFT lengths that MKL and pocketfft
    transform fastest (measured: 18432 = 2^11 * 9 is faster than 16875 = 3^3 * 5^4). For the
    fused op (one transform per row in the cache) a power of two counts as 1.3 times its
    length: 8192 and 16384 points took 1.3x as long per point there as 9216 and 18432."""
    sizes = [m << max(0, (-(-n // m) - 1).bit_length()) for m in (1, 3, 5, 9)]
    return min(sizes, key=lambda size: size * (1.3 if fused and size & (size - 1) == 0 else 1))


def _fft_length(steps: int, geom: GroupGeometry) -> int:
    """FFT length of a block of ``steps`` convolution steps: a multiple of s covering
    ``(steps - 1) s + K`` samples."""
    s = geom.conv_stride
    return s * fft_size(-(-((steps - 1) * s + geom.kernel_size) // s), FUSED_FFT)


def _direct_length(steps: int, geom: GroupGeometry) -> int:
    """Input samples the direct path reads for ``steps`` convolution steps: ``(steps - 1) s + K``
    rounded up to whole strides past ``K`` (``(steps + Q - 1) s``, Q = ceil(K / s)), so that
    the weight gradient can view them as rows of one stride; the convolution ignores the
    extra samples (fewer than s)."""
    s = geom.conv_stride
    return (steps + -(-geom.kernel_size // s) - 1) * s


def choose_method(batch: int, steps: int, geom: GroupGeometry, input_grad: bool = False,
                  train: bool = False) -> str:
    """'direct' or 'fft' for a block of ``steps`` convolution steps of a group, whichever
    the cost model says is faster, for the forward alone or (``train``) forward + backward,
    with the FFT path's costs of this installation (fused op or not, :data:`FUSED_FFT`).
    With ``input_grad`` (the input needs a gradient) always 'direct': the FFT path's input
    gradient sums all filters' contributions in the frequency domain and is only ~3e-5 from
    float64 (the direct path: ~1e-6)."""
    if input_grad:
        return 'direct'
    mode = 'train' if train else 'forward'
    n, s = geom.num_filters, geom.conv_stride
    direct = batch * 2 * n * steps * geom.kernel_size * _COSTS[mode]['direct_mac']
    size = _fft_length(steps, geom)
    cost = (_FUSED_COSTS if FUSED_FFT else _COSTS)[mode]
    fft = batch * n * (size * cost['fft_bin'] + size / s * math.log2(max(2, size // s))
                       * cost['fft_point_stage'])
    if size > _FFT_CALIBRATED and not FUSED_FFT:  # long transforms leave the caches (factor
        fft *= 2                                   # fitted to 4G, 2 x 8 s)
    return 'fft' if fft < direct else 'direct'


def fft_block_frames(frames: int, geom: GroupGeometry, budget: Optional[int] = None) -> int:
    """Frames per block of the fused FFT op: blocks of at most ``budget`` input samples
    (default :data:`FFT_BLOCK_SAMPLES`; ``(steps - 1) s + K`` for a block of ``steps``
    convolution steps), at least one frame, the frames spread evenly over the blocks."""
    budget = FFT_BLOCK_SAMPLES if budget is None else budget
    s, P, W = geom.conv_stride, geom.pool_stride, geom.window_size
    steps = (budget - geom.kernel_size) // s + 1
    most = max(1, min(frames, (steps - W) // P + 1))
    return -(-frames // -(-frames // most))


def plan_blocks(batch: int, frames: int, geom: GroupGeometry, budget: int = BLOCK_VALUES,
                example_budget: Optional[int] = None) -> Tuple[int, int]:
    """(examples, frames) per block, such that a block's convolution output (2 values per
    filter and step) holds at most about ``budget`` values: all frames of as many examples
    as fit, or, when one example's frames do not fit, fewer frames of one example. With
    ``example_budget``, blocks of whole examples hold at most that many values, or one
    example (an example's frames are split for ``budget`` only)."""
    P, W, n = geom.pool_stride, geom.window_size, geom.num_filters
    per_example = 2 * n * ((frames - 1) * P + W)
    if per_example <= budget:
        per_block = budget if example_budget is None else min(budget, example_budget)
        return max(1, min(batch, per_block // per_example)), frames
    steps = max(W, budget // (2 * n))
    return 1, max(1, (steps - W) // P + 1)


#: the weight gradient of the direct path (_strided_weight_grad) copies the unfolded input
#: first when it has at most this many values (2x faster for EfficientLEAF 8G-opt's groups;
#: for larger, overlapping frames the strided batched product is 3x faster than copying)
_IM2COL_VALUES = 1 << 21


#: _strided_weight_grad uses the polyphase form up to this many products (measured with 2
#: threads: at 9 to 11 products, EfficientLEAF 8G-opt's groups at 80 filters, 1.2 to 1.8x
#: faster than the unfolded frames; at 51 and more, slower)
_POLYPHASE_MAX = 16


def _strided_weight_grad(x: torch.Tensor, grad: torch.Tensor, s: int, K: int) -> torch.Tensor:
    """(C, K) gradient of the taps of a stride-s ``conv1d``: ``sum_{b, p} grad[b, :, p]
    x[b, p s + k]``. x (B, L), grad (B, C, N).

    Polyphase form when K spans at most :data:`_POLYPHASE_MAX` strides and x holds
    ``(N + Q - 1) s`` samples (Q = ceil(K / s)): with x viewed as (B, L / s, s) rows of one
    stride, taps ``q s ... q s + s - 1`` are one batched product with the rows ``q ... q + N - 1``,
    a view: no copy of the (B, N, K) frames. Otherwise one batched product with the unfolded
    frames, copied first when small (faster than the strided product then)."""
    N = grad.shape[-1]
    Q = -(-K // s)
    if Q <= _POLYPHASE_MAX and x.shape[-1] >= (N + Q - 1) * s:
        rows = x[:, :(N + Q - 1) * s].view(x.shape[0], N + Q - 1, s)
        parts = [torch.matmul(grad, rows[:, q:q + N]).sum(0) for q in range(Q)]
        return torch.cat(parts, 1)[:, :K]
    frames = x.unfold(-1, K, s)[:, :N]                   # (B, N, K), a view
    if frames.numel() <= _IM2COL_VALUES:
        frames = frames.contiguous()
    return torch.matmul(grad, frames).sum(0)


def taps_offsets(geometry: Sequence[GroupGeometry]) -> List[int]:
    """Where each group's taps start in the packed taps of :func:`filterbank_groups`:
    the real taps of all groups (group g: n_g K_g values, its (n_g, K_g) taps row by row),
    then their imaginary taps in the same order, ``offsets[-1]`` values each."""
    offsets = [0]
    for g in geometry:
        offsets.append(offsets[-1] + g.num_filters * g.kernel_size)
    return offsets


class _GaborTaps(torch.autograd.Function):
    """The Gabor taps of every group (SPEC §2, as :func:`~eleaf.functional.gabor_filters`:
    ``exp(-t^2 / (2 sigma^2)) / (sqrt(2 pi) sigma) (cos + j sin)(mu t)``), each group at its
    own kernel size, packed (:func:`taps_offsets`), in one node: ``eleaf::gabor_taps_fwd``
    (float64 recurrences over the taps t >= 0 of each filter, mirrored;
    ``csrc/gabor_taps.cpp``) and ``eleaf::gabor_taps_bwd``, the gradients of both parameter
    vectors in closed form, summed in float64:
    ``d/dmu = sum_t t (g_im re - g_re im)``,
    ``d/dsigma = sum_t (g_re re + g_im im) (t^2 / sigma^3 - 1 / sigma)``.
    Torch ops on the packed taps took about half a millisecond of EfficientLEAF 8G-opt's
    training step at 80 filters (a dozen elementwise ops and three segment sums on 35,000
    taps); the two ops take about 0.1 ms.

    Forward: center_freqs, sigmas (F,) rad/sample and samples, layout: ((start, stop, K)
    per group, the groups' filters consecutive from 0) -> (2 sum_g n_g K_g,) in the
    parameters' dtype.
    """

    @staticmethod
    def forward(ctx, center_freqs, sigmas, layout):
        sizes = _filter_sizes(layout)
        taps = torch.ops.eleaf.gabor_taps_fwd(center_freqs, sigmas, sizes)
        ctx.save_for_backward(sigmas, taps)
        ctx.sizes = sizes
        return taps

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        sigmas, taps = ctx.saved_tensors
        g_mu, g_sigma = torch.ops.eleaf.gabor_taps_bwd(grad.contiguous(), taps, sigmas,
                                                       ctx.sizes)
        return g_mu, g_sigma, None


@functools.lru_cache(maxsize=64)
def _filter_sizes(layout: Tuple[Tuple[int, int, int], ...]) -> List[int]:
    """The kernel size of every filter of groups ``(start, stop, K)`` whose filters are
    consecutive from 0 (the packing of :func:`taps_offsets` is then filter by filter)."""
    sizes = []
    for start, stop, K in layout:
        if start != len(sizes):
            raise ValueError('gabor_filterbank: groups must hold consecutive filters from 0, '
                             'got %s' % (layout,))
        sizes += [K] * (stop - start)
    return sizes


def _fft_filters(re: torch.Tensor, im: torch.Tensor, size: int) -> torch.Tensor:
    """(n, size) spectra of the complex taps arranged for a circular cross-correlation:
    ``u[0] = w[0]``, ``u[size - k] = w[k]``."""
    w = torch.complex(re, im)
    zeros = w.new_zeros(w.shape[0], size - w.shape[1])
    return torch.fft.fft(torch.cat([w[:, :1], zeros, w[:, 1:].flip(-1)], -1))


def _block(xseg: torch.Tensor, spectra: torch.Tensor, win: torch.Tensor,
           geom: GroupGeometry, steps: int, lo: int, hi: int) -> torch.Tensor:
    """Pooled frames of one block of the unfused FFT path from its input segment.

    Args:
        xseg (Tensor): (B, N) input samples from ``p0 s - K//2`` on, where p0 is the first
            convolution step of the block; N is the FFT length.
        spectra (Tensor): (n, N) filter spectra.
        win (Tensor): (n, W) pooling windows.
        steps (int): convolution steps of the block; lo, hi: its steps inside the signal.
    Returns:
        Tensor: (B, n, (steps - W) // P + 1).
    """
    s, P, W = geom.conv_stride, geom.pool_stride, geom.window_size
    frames = (steps - W) // P + 1
    spectrum = torch.view_as_real(torch.fft.fft(xseg))
    prod = torch.ops.eleaf.spectral_fold_fwd(spectrum, torch.view_as_real(spectra), s)
    y = torch.view_as_real(torch.fft.ifft(torch.view_as_complex(prod)))
    return modulus_pool(y, win, P, lo, hi, frames, True)


@dataclass(frozen=True)
class _GroupPlan:
    """How one group of a call is computed: its convolution steps inside the signal and
    frames, the block size (examples, frames; :func:`plan_blocks`), the method
    (:func:`choose_method`), the input samples one block reads, whether blocks are
    recomputed in the backward pass, the pooling's left zero padding in steps (frame t
    pools steps ``t P - pool_left ...``; W//2 centres the frames, as LEAF does), and whether
    the direct convolution folds the taps' symmetry (``symmetric`` taps and :data:`FOLD`)."""
    geom: GroupGeometry
    steps_total: int
    frames: int
    examples: int
    block: int
    method: str
    seg_len: int
    recompute: bool
    pool_left: int
    folded: bool = False

    @staticmethod
    def make(B: int, L: int, geom: GroupGeometry, input_grad: bool, train: bool,
             pool_left: Optional[int] = None, symmetric: bool = False):
        s, P, W = geom.conv_stride, geom.pool_stride, geom.window_size
        pool_left = W // 2 if pool_left is None else pool_left
        steps_total = (L - 1) // s + 1
        frames = (steps_total - 1) // P + 1
        method = None
        if FUSED_FFT and not input_grad:  # the fused op takes all examples at once
            examples, block = B, fft_block_frames(frames, geom)
            method = choose_method(examples, (block - 1) * P + W, geom, input_grad, train)
        if method != 'fft':
            examples, block = plan_blocks(
                B, frames, geom,
                example_budget=None if train or input_grad else INFERENCE_BLOCK_VALUES)
            method = choose_method(examples, (block - 1) * P + W, geom, input_grad, train)
        block_steps = (block - 1) * P + W
        seg_len = (_fft_length(block_steps, geom) if method == 'fft'
                   else _direct_length(block_steps, geom))
        if method == 'fft' and not FUSED_FFT:
            _warn_unfused()
        stores = not (method == 'fft' and FUSED_FFT)   # the fused op always recomputes
        recompute = (stores and (input_grad or train)
                     and 2 * B * geom.num_filters * steps_total > CHECKPOINT_VALUES)
        return _GroupPlan(geom, steps_total, frames, examples, block, method, seg_len,
                          recompute, pool_left, symmetric and FOLD and method == 'direct')

    def padding(self, L: int) -> Tuple[int, int]:
        """(left, right) zero padding of the L-sample input that covers every segment."""
        g = self.geom
        s, h = g.conv_stride, g.kernel_size // 2
        last_start = ((self.frames - 1) // self.block * self.block * g.pool_stride
                      - self.pool_left) * s - h
        return max(0, self.pool_left * s + h), max(0, last_start + self.seg_len - L)

    def segments(self, B: int, offset: int) -> Iterator[Tuple[int, int, int, int, int, int]]:
        """The blocks in order: (b0, t0, t1, start, lo, hi) for examples
        ``b0 ... b0 + examples - 1`` and frames [t0, t1), whose input segment starts at
        ``xp[:, start]`` (``offset``: where the signal starts in the padded input ``xp``) and
        whose convolution steps [lo, hi) lie inside the signal."""
        g = self.geom
        s, P, W, h = g.conv_stride, g.pool_stride, g.window_size, g.kernel_size // 2
        for b0 in range(0, B, self.examples):
            for t0 in range(0, self.frames, self.block):
                t1 = min(self.frames, t0 + self.block)
                p0 = t0 * P - self.pool_left          # the block's first convolution step
                steps = (t1 - 1 - t0) * P + W
                yield (b0, t0, t1, p0 * s - h + offset, max(0, -p0),
                       min(steps, self.steps_total - p0))


def _join(plan: _GroupPlan, blocks: Sequence[torch.Tensor]) -> torch.Tensor:
    """(B, n, T) from a group's block outputs in the order of :meth:`_GroupPlan.segments`
    (frames joined along time, chunks of examples along the batch)."""
    per_chunk = -(-plan.frames // plan.block)
    chunks = [blocks[i:i + per_chunk] for i in range(0, len(blocks), per_chunk)]
    chunks = [c[0] if len(c) == 1 else torch.cat(c, -1) for c in chunks]
    return chunks[0] if len(chunks) == 1 else torch.cat(chunks, 0)


def _fft_group(xp: torch.Tensor, offset: int, plan: _GroupPlan, re: torch.Tensor,
               im: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """(B, n, T) pooled responses of one group on the FFT path from the zero-padded input
    ``xp`` (B, len) (sample i of the signal is ``xp[:, offset + i]``), its (n, K) real and
    imaginary taps and (n, W) windows."""
    B = xp.shape[0]
    geom = plan.geom
    s, P, W, h = geom.conv_stride, geom.pool_stride, geom.window_size, geom.kernel_size // 2
    spectra = _fft_filters(re, im, plan.seg_len)
    if s > 1:  # the 1 / s of the fold (the inverse FFT of N / s points divides by N / s)
        spectra = spectra / s
    if FUSED_FFT:  # one call per chunk of examples, all blocks
        first_step = -plan.pool_left
        args = (torch.view_as_real(spectra), win, s, P, plan.block,
                first_step * s - h + offset, first_step, plan.steps_total, plan.frames,
                SPECTRA_VALUES)
        rows = [torch.ops.eleaf.spectral_pool_fwd(xp[b0:b0 + plan.examples], *args)
                for b0 in range(0, B, plan.examples)]
        return rows[0] if len(rows) == 1 else torch.cat(rows, 0)
    blocks = []
    for b0, t0, t1, start, lo, hi in plan.segments(B, offset):
        xseg = xp[b0:b0 + plan.examples, start:start + plan.seg_len]
        args = (xseg, spectra, win, geom, (t1 - 1 - t0) * P + W, lo, hi)
        blocks.append(checkpoint(_block, *args, use_reentrant=False) if plan.recompute
                      else _block(*args))
    return _join(plan, blocks)


def _group_taps(taps: torch.Tensor, windows: torch.Tensor, geom: GroupGeometry,
                at: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A group's (n, K) real and imaginary taps, views of the packed taps (the group's
    starting at ``at``, :func:`taps_offsets`), and its (n, W) windows, a view of the
    windows' grid."""
    n, K = geom.num_filters, geom.kernel_size
    half = taps.shape[0] // 2
    return (taps[at:at + n * K].view(n, K), taps[half + at:half + at + n * K].view(n, K),
            windows[geom.start:geom.stop, :geom.window_size])


def _conv(xp: torch.Tensor, b0: int, start: int, plan: _GroupPlan,
          weights: torch.Tensor) -> torch.Tensor:
    """(examples, 2n, steps) direct convolution of one block (from example b0 and sample
    ``start`` of the padded input xp, (B + 1, len)) with the (2n, K) weights; folded on their
    symmetry when the plan says so (``eleaf::gabor_fold_fwd``, which reads the strided
    segment in place).

    When the block spans whole examples (one block of frames), conv1d reads the contiguous
    rows ``xp.flatten()[b0 len + start:][:examples len]`` (each row runs into the next
    example's, or the last into xp's row of zeros; the steps that read past the segment are
    dropped): oneDNN would otherwise copy the strided segment into a fresh buffer first,
    which took longer than the convolution for EfficientLEAF 8G-opt's groups."""
    E = min(plan.examples, xp.shape[0] - 1 - b0)      # the last block may hold fewer
    s, K = plan.geom.conv_stride, plan.geom.kernel_size
    steps = (plan.seg_len - K) // s + 1
    if plan.folded:
        return torch.ops.eleaf.gabor_fold_fwd(xp[b0:b0 + E, start:start + plan.seg_len],
                                              weights, s, steps)
    if plan.block == plan.frames:
        rows = xp.as_strided((E, xp.shape[1]), (xp.shape[1], 1),
                             xp.storage_offset() + b0 * xp.shape[1] + start)
        return F.conv1d(rows[:, None], weights[:, None], stride=s)[:, :, :steps]
    xseg = xp[b0:b0 + E, start:start + plan.seg_len]
    return F.conv1d(xseg[:, None], weights[:, None], stride=s)


class _DirectGroups(torch.autograd.Function):
    """Every direct-path group of one call in one autograd node: per group and block a
    strided ``conv1d`` of the 2n real taps, then the squared modulus and pooling
    (``eleaf::modulus_pool_fwd``); the backward pass gives the gradients of the taps (one
    batched product, :func:`_strided_weight_grad`), the windows and, when needed, the input.
    A block's convolution output is kept for the backward pass, or recomputed there when
    the group's plan says so (``recompute``). One node instead of a dozen per group: the
    per-op cost of autograd was a third of EfficientLEAF 8G-opt's training step.

    Forward: xp (B + 1, len) zero-padded input and a row of zeros (see :func:`_conv`),
    taps (packed, :func:`taps_offsets`), windows (F, W_max), jobs: ((plan, offset in xp,
    offset in taps), ...), keep: whether a backward pass may follow (else no convolution
    output outlives its block) -> one (B, n, T) tensor per job.
    """

    @staticmethod
    def forward(ctx, xp, taps, windows, jobs, keep):
        B = xp.shape[0] - 1
        outputs, kept = [], []
        for plan, offset, at in jobs:
            re, im, win = _group_taps(taps, windows, plan.geom, at)
            weights = torch.cat([re, im])
            P = plan.geom.pool_stride
            blocks = []
            for b0, t0, t1, start, lo, hi in plan.segments(B, offset):
                y = _conv(xp, b0, start, plan, weights)
                blocks.append(modulus_pool(y, win, P, lo, hi, t1 - t0, False))
                if keep and not plan.recompute:
                    kept.append(y)
            outputs.append(_join(plan, blocks))
        ctx.jobs = jobs
        ctx.save_for_backward(xp, taps, windows, *kept)
        return tuple(outputs)

    @staticmethod
    @once_differentiable
    def backward(ctx, *grads):
        xp, taps, windows, *kept = ctx.saved_tensors
        kept = iter(kept)
        need_x, need_taps, need_win = ctx.needs_input_grad[:3]
        B = xp.shape[0] - 1
        g_xp = torch.zeros_like(xp) if need_x else None
        g_taps, g_win = torch.zeros_like(taps), torch.zeros_like(windows)
        signal, g_signal = xp[:B], (g_xp[:B] if need_x else None)   # without the zero row
        for (plan, offset, at), grad in zip(ctx.jobs, grads):
            if grad is None:    # the output of this group was not used
                for _ in range(0 if plan.recompute else len(list(plan.segments(B, 0)))):
                    next(kept)
                continue
            geom = plan.geom
            s, P, K = geom.conv_stride, geom.pool_stride, geom.kernel_size
            n = geom.num_filters
            re, im, win = _group_taps(taps, windows, geom, at)
            weights = torch.cat([re, im])
            g_re, g_im, gwin = _group_taps(g_taps, g_win, geom, at)
            for b0, t0, t1, start, lo, hi in plan.segments(B, offset):
                xseg = signal[b0:b0 + plan.examples, start:start + plan.seg_len]
                y = (_conv(xp, b0, start, plan, weights) if plan.recompute
                     else next(kept))
                gy, gw = torch.ops.eleaf.modulus_pool_bwd(
                    grad[b0:b0 + plan.examples, :, t0:t1].contiguous(), y, win, P, lo, hi,
                    False)
                gwin += gw
                if need_taps:
                    gweights = (torch.ops.eleaf.gabor_fold_wgrad(gy, xseg, s, K) if plan.folded
                                else _strided_weight_grad(xseg, gy, s, K))
                    g_re += gweights[:n]
                    g_im += gweights[n:]
                if need_x:
                    g_signal[b0:b0 + plan.examples, start:start + plan.seg_len] += (
                        torch.ops.aten.convolution_backward(
                            gy, xseg[:, None], weights[:, None], None, [s], [0], [1], False,
                            [0], 1, [True, False, False])[0][:, 0])
        return (g_xp, g_taps if need_taps else None, g_win if need_win else None, None,
                None)


def gabor_filterbank_cpu(x: torch.Tensor, center_freqs: torch.Tensor,
                         bandwidths: torch.Tensor, pool_widths: torch.Tensor,
                         geometry: Sequence[GroupGeometry]) -> torch.Tensor:
    """Same semantics as :func:`eleaf.functional.grouped_gabor_filterbank_ref`.

    Under ``torch.compile`` it runs eagerly, as a graph break (no tracing inside;
    :func:`~eleaf.ops.graph_break.run_eager`, not a ``torch.compiler.disable`` decorator,
    which would import ``torch._dynamo``, 1.5 s and more, with this module).

    Args:
        x (Tensor): (B, 1, L) waveform, float32 or float64, CPU.
        center_freqs, bandwidths (Tensor): (F,) clamped parameters, rad/sample and samples.
        pool_widths (Tensor): (F,) pooling widths rescaled to each group's window.
        geometry: one :class:`~eleaf.functional.GroupGeometry` per group.
    Returns:
        Tensor: (B, F, T), T = (L - 1) // (s P) + 1.
    """
    return run_eager(_gabor_filterbank_cpu, x, center_freqs, bandwidths, pool_widths, geometry)


def _gabor_filterbank_cpu(x, center_freqs, bandwidths, pool_widths, geometry):
    if x.dim() != 3 or x.shape[1] != 1:
        raise ValueError('gabor_filterbank: x must be (B, 1, L), got %s' % (tuple(x.shape),))
    dtype = torch.promote_types(x.dtype, center_freqs.dtype)
    sizes = torch.cat([torch.full((g.num_filters,), float(g.window_size), dtype=dtype)
                       for g in geometry])
    windows = gauss_windows_padded(sizes, pool_widths.to(dtype),
                                   max(g.window_size for g in geometry))
    layout = tuple((g.start, g.stop, g.kernel_size) for g in geometry)
    taps = _GaborTaps.apply(center_freqs.to(dtype), bandwidths.to(dtype), layout)
    return filterbank_groups(x.to(dtype), taps, windows, geometry, symmetric=True)


def filterbank_groups(x: torch.Tensor, taps: torch.Tensor, windows: torch.Tensor,
                      geometry: Sequence[GroupGeometry],
                      pool_left: Optional[int] = None, symmetric: bool = False) -> torch.Tensor:
    """Gabor convolution, squared modulus and pooling of every group, given its taps and
    windows (what :func:`gabor_filterbank_cpu` and the TF port's filterbank share).

    Args:
        x (Tensor): (B, 1, L) waveform in the computation's dtype.
        taps (Tensor): the taps of all groups packed into one vector (:func:`taps_offsets`):
            the real taps of every group, then the imaginary ones, group g's (n_g, K_g)
            row by row; centred: tap k reads sample ``p s + k - K//2`` for step p.
        windows (Tensor): (F, W_max) pooling windows, each starting at column 0.
        geometry: one :class:`~eleaf.functional.GroupGeometry` per group.
        pool_left (int or None): the pooling's left zero padding in convolution steps, for
            every group; None: W//2 of each group (centred frames).
        symmetric (bool): the taps are even (real) and odd (imaginary) in time, as Gabor
            taps from :class:`_GaborTaps` are: the direct path then folds them (half the
            multiply-adds), and the taps' gradient is only exact for parameters the taps
            depend on symmetrically (``eleaf::gabor_fold_wgrad`` splits the gradient of a
            pair of taps evenly between them).
    Returns:
        Tensor: (B, F, T), T = (L - 1) // (s P) + 1.
    """
    B, L = x.shape[0], x.shape[-1]
    grad = torch.is_grad_enabled()
    train = grad and (taps.requires_grad or windows.requires_grad)
    plans = [_GroupPlan.make(B, L, geom, grad and x.requires_grad, train, pool_left, symmetric)
             for geom in geometry]
    pads = [plan.padding(L) for plan in plans]
    left, right = max(p[0] for p in pads), max(p[1] for p in pads)
    # one padded copy for all groups, and a row of zeros for _conv
    xp = F.pad(x[:, 0][None], (left, right, 0, 1))[0]
    offsets = taps_offsets(geometry)
    direct = tuple((plan, left, at) for plan, at in zip(plans, offsets)
                   if plan.method == 'direct')
    direct_out = iter(_DirectGroups.apply(xp, taps, windows, direct,
                                          grad and (train or x.requires_grad))
                      if direct else ())
    outputs = []
    for plan, at in zip(plans, offsets):
        if plan.method == 'direct':
            outputs.append(next(direct_out))
        else:
            outputs.append(_fft_group(xp[:B], left, plan,
                                      *_group_taps(taps, windows, plan.geom, at)))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, 1)


if AVAILABLE:
    @torch.library.register_fake('eleaf::modulus_pool_fwd')
    def _modulus_pool_fwd_fake(y, win, stride, lo, hi, frames, interleaved):
        return y.new_empty((y.shape[0], win.shape[0], frames))

    @torch.library.register_fake('eleaf::modulus_pool_bwd')
    def _modulus_pool_bwd_fake(grad, y, win, stride, lo, hi, interleaved):
        return y.new_empty(y.shape), win.new_empty(win.shape)

    def _setup_context(ctx, inputs, output):
        y, win, stride, lo, hi, frames, interleaved = inputs
        ctx.save_for_backward(y, win)
        ctx.geometry = (stride, lo, hi, interleaved)

    def _backward(ctx, grad):
        y, win = ctx.saved_tensors
        g_y, g_win = torch.ops.eleaf.modulus_pool_bwd(grad, y, win, *ctx.geometry)
        need = ctx.needs_input_grad
        return (g_y if need[0] else None, g_win if need[1] else None,
                None, None, None, None, None)

    torch.library.register_autograd('eleaf::modulus_pool_fwd', _backward,
                                    setup_context=_setup_context)

    @torch.library.register_fake('eleaf::spectral_fold_fwd')
    def _spectral_fold_fwd_fake(x, h, stride):
        return x.new_empty((x.shape[0], h.shape[0], x.shape[1] // stride, 2))

    @torch.library.register_fake('eleaf::spectral_fold_bwd')
    def _spectral_fold_bwd_fake(grad, x, h, stride, need_x, need_h):
        return (x.new_empty(x.shape if need_x else (0,)),
                h.new_empty(h.shape if need_h else (0,)))

    def _fold_setup_context(ctx, inputs, output):
        x, h, stride = inputs
        ctx.save_for_backward(x, h)
        ctx.stride = stride

    def _fold_backward(ctx, grad):
        x, h = ctx.saved_tensors
        need_x, need_h = ctx.needs_input_grad[:2]
        g_x, g_h = torch.ops.eleaf.spectral_fold_bwd(grad, x, h, ctx.stride, need_x, need_h)
        return (g_x if need_x else None), (g_h if need_h else None), None

    torch.library.register_autograd('eleaf::spectral_fold_fwd', _fold_backward,
                                    setup_context=_fold_setup_context)

    @torch.library.register_fake('eleaf::spectral_pool_fwd')
    def _spectral_pool_fwd_fake(x, h, win, stride, pool_stride, block_frames, start,
                                first_step, steps_total, frames, chunk_values):
        return x.new_empty((x.shape[0], h.shape[0], frames))

    @torch.library.register_fake('eleaf::spectral_pool_bwd')
    def _spectral_pool_bwd_fake(grad, x, h, win, stride, pool_stride, block_frames, start,
                                first_step, steps_total, chunk_values, need_x, need_h,
                                need_win):
        return (x.new_empty(x.shape if need_x else (0,)),
                h.new_empty(h.shape if need_h else (0,)),
                win.new_empty(win.shape if need_win else (0,)))

    def _pool_setup_context(ctx, inputs, output):
        x, h, win = inputs[:3]
        ctx.save_for_backward(x, h, win)
        ctx.geometry = inputs[3:9] + inputs[10:11]   # all but frames (grad's last size)

    def _pool_backward(ctx, grad):
        x, h, win = ctx.saved_tensors
        need = ctx.needs_input_grad[:3]
        grads = torch.ops.eleaf.spectral_pool_bwd(grad, x, h, win, *ctx.geometry, *need)
        return tuple(g if n else None for g, n in zip(grads, need)) + (None,) * 8

    torch.library.register_autograd('eleaf::spectral_pool_fwd', _pool_backward,
                                    setup_context=_pool_setup_context)

    if TAPS:
        @torch.library.register_fake('eleaf::gabor_taps_fwd')
        def _gabor_taps_fwd_fake(center_freqs, sigmas, sizes):
            return center_freqs.new_empty((2 * sum(sizes),))

        @torch.library.register_fake('eleaf::gabor_taps_bwd')
        def _gabor_taps_bwd_fake(grad, taps, sigmas, sizes):
            return sigmas.new_empty(sigmas.shape), sigmas.new_empty(sigmas.shape)

    register_impl('gabor_filterbank', 'cpp', gabor_filterbank_cpu, check)
