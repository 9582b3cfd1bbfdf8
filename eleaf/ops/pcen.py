"""PCEN on Triton: host functions, custom ops with autograd, backend registration.

Reference: :func:`eleaf.functional.pcen_ref` (same signature and numbers as
:func:`pcen_triton`, on the *effective* parameters of :func:`eleaf.functional.pcen_parameters`;
the mapping from the stored parameters stays in plain torch, so autograd carries the gradients
to them in both parameterisations). Kernels: ``eleaf.kernels.pcen`` (chunked time scan as a
triangular matmul, see there).

Letters: B batch, C channels, F bands, T frames, R = B·C·F rows.

Ops (``torch.library.custom_op``, so ``opcheck`` passes and ``torch.compile`` keeps them in
the graph)::

    eleaf::pcen_triton_fwd(x, s, alpha, delta, r, float eps, float? clamp) -> (y, carries)
    eleaf::pcen_triton_bwd(grad, x, carries, s, alpha, delta, r, eps, clamp)
        -> (dx, ds, dalpha, ddelta, dr)

``carries`` (R, cdiv(T, BLOCK_T)) holds the smoother M at the end of each chunk of BLOCK_T
frames: the only state autograd saves besides x and the parameters; the backward recomputes
M from it. (The names avoid ``eleaf::pcen_fwd``, reserved for the C++ extension.)

Precision: float16/bfloat16/float32 inputs are computed in float32 (output in the input
dtype, parameter gradients in the parameters' dtype); float64 inputs are computed in float64
(a test aid; the registry sends float64 to the reference). The tl.dot of the scan always
runs with ``input_precision='ieee'``: TF32 would cost ~1e-3 relative error in M.
``ELEAF_DEBUG_POISON=1`` fills outputs with NaN before the kernels write them.

NaN in the linear-space PCEN (``learn_logs=False``), findings
------------------------------------------------------------
The reference (and, faithfully, these kernels) produce NaN whenever the smoother M turns
negative, because ``log1p(M / eps)`` is NaN for ``M < -eps``, i.e. for *any* negative M at
eps = 1e-12. With s in [0, 1], M is a convex combination of non-negative inputs and stays
>= 0. In the linear parameterisation s is used *as stored*, unclamped (only alpha <= 1,
delta >= 0, r_stored >= 1 are enforced; Google's TF LEAF clips the EMA coefficient to
[0, 1] in ``ExponentialMovingAverage``, EfficientLEAF's linear PCEN does not), so a gradient
step that pushes s out of [0, 1] breaks it:

* s < 0 (s = -d): ``M_t = (1 + d) M_{t-1} - d x_t`` is unstable and is pulled *down* by the
  input: M drifts to zero after about ``(x_0 / mean x) / d`` frames and then goes negative.
  Measured on log-normal energies (sigma 0.5, LEAF constants): s = -1e-4 first NaN at frame
  ~3900, s = -1e-3 at ~400, s = -1e-2 at ~30. So a short training crop (1 s = 101 frames) is
  fine and the same parameters give NaN on 16 s (1600 frames) or 60 s (6000 frames)
  evaluation inputs; an onset (x_t > M_{t-1} / d) makes it NaN at once. s crosses 0 from its
  init 0.04 after ~40 same-signed Adam steps of lr 1e-3 (Adam moves a parameter by about lr
  per step whatever the gradient's size).
* s > 1 (s = 1 + d): ``M_t = -d M_{t-1} + (1 + d) x_t`` is negative as soon as one frame
  drops below ``d / (1 + d)`` of the previous smoothed value (a 1000x = 30 dB drop for
  d = 1e-3); the chance of such a drop grows with T (log-normal sigma 1: none in 100 frames,
  NaN within 1600 frames for s = 1.01). s > 2 also diverges (|1 - s| > 1).
* s = 0 and s = 1 exactly are harmless (M = x_0, resp. M = x).
* Once one frame is NaN the loss and every gradient are NaN, the optimizer writes NaN into
  all parameters, and every later batch is NaN too.
* delta: stored delta <= 0 gives effective delta = 0 (clamp). Then with silent frames and no
  input clamp (x = 0, so z = x (M + eps)^-alpha + delta = 0) dy/dz = r z^(r - 1) = inf and the
  gradients of s and alpha are inf * 0 = NaN (the forward stays finite); with stored delta
  exactly 0 the delta gradient itself is -inf (r < 1). With the LEAF clamp 1e-5, z > 0 and
  this cannot happen.
* alpha (<= 1, may go negative) and r (effective in (0, 1]) have no NaN path in the linear
  parameterisation; a very negative alpha can overflow (M + eps)^-alpha in float32.
* The log parameterisation keeps s, alpha, delta, r > 0; s > 1 needs log s > 0 (from
  ln 0.04 = -3.2), unlikely but not impossible.
* Not a NaN source, verified here: silence with or without clamp, 1e-9 amplitudes (eps =
  1e-12 and 1e-6), 1e6 amplitudes and 6000 frames are finite in both parameterisations with
  s in [0, 1].
A fix that keeps the original numbers where they are finite is to clamp s to [0, 1] in
``pcen_parameters`` for ``learn_logs=False`` (as TF LEAF does); it is not applied here.
"""
import math
import os
import struct
from typing import Optional, Tuple

import torch
from torch import Tensor

from ..functional._scalars import cached_scalar
from .backends import register_impl, use_custom_ops

__all__ = ['pcen_fwd', 'pcen_bwd', 'pcen_triton', 'BLOCK_T', 'HAS_TRITON']

try:
    from ..kernels.pcen import HAVE_LIBDEVICE, _pcen_bwd_kernel, _pcen_fwd_kernel
    HAS_TRITON = True
    _IMPORT_ERROR = None
except Exception as _exc:  # ImportError, or a broken Triton installation
    HAVE_LIBDEVICE = False
    HAS_TRITON = False
    _IMPORT_ERROR = _exc

# Launch settings (powers of two >= 16, the minimum tl.dot size).
#: frames per chunk; the carries of the forward are laid out per chunk, so the backward must
#: use the same value. Work per element grows with it (a BLOCK_T x BLOCK_T matmul per chunk).
BLOCK_T = 32
#: rows of one band per program (forward / backward)
BLOCK_B_FWD = 16
BLOCK_B_BWD = 16


def _interpreting() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0') not in ('', '0')


def _poison() -> bool:
    return os.environ.get('ELEAF_DEBUG_POISON', '0') not in ('', '0')


def _new(shape, dtype, device) -> Tensor:
    """Output buffer: uninitialised, or NaN-filled under ``ELEAF_DEBUG_POISON=1``."""
    if _poison():
        return torch.full(shape, float('nan'), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _num_chunks(T, block_t: int):
    return (T + block_t - 1) // block_t


def _cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def _split(value: Optional[float]) -> Tuple[float, float]:
    """A Python float as two float32 values whose float64 sum is the value (to ~1e-14)."""
    value = 0. if value is None else float(value)
    hi = struct.unpack('f', struct.pack('f', value))[0]
    lo = struct.unpack('f', struct.pack('f', value - hi))[0]
    return hi, lo


def _prep(x: Tensor, s: Tensor, alpha: Tensor, delta: Tensor, r: Tensor):
    """Contiguous x and (F,) contiguous parameters in the compute dtype."""
    if x.dim() < 2:
        raise ValueError('pcen: x must be (..., F, T), got shape %s' % (tuple(x.shape),))
    F = x.shape[-2]
    cdt = _compute_dtype(x.dtype)
    params = []
    for name, p in (('s', s), ('alpha', alpha), ('delta', delta), ('r', r)):
        if p.dim() != 1 or p.shape[0] != F:
            raise ValueError('pcen: %s must have shape (F,) = (%d,), got %s'
                             % (name, F, tuple(p.shape)))
        if p.device != x.device:
            raise ValueError('pcen: %s is on %s, x on %s' % (name, p.device, x.device))
        params.append(p.detach().to(cdt).contiguous())
    return x.contiguous(), params, cdt


def _launch_args(eps: float, clamp: Optional[float], block_t: int, block_b: int):
    return (_split(eps) + _split(clamp),
            dict(HAS_CLAMP=clamp is not None, BLOCK_B=block_b, BLOCK_T=block_t,
                 NBITS=int(math.log2(block_t)) + 1,
                 LIBDEVICE=bool(HAVE_LIBDEVICE and not _interpreting())))


def pcen_fwd(x: Tensor, s: Tensor, alpha: Tensor, delta: Tensor, r: Tensor, eps: float,
             clamp: Optional[float] = None, *, block_t: Optional[int] = None,
             block_b: Optional[int] = None, y: Optional[Tensor] = None,
             carries: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """PCEN forward with the Triton kernel (CUDA, or CPU under ``TRITON_INTERPRET=1``).

    Args:
        x (Tensor): (..., F, T) non-negative energies; float16/bfloat16/float32 (computed in
            float32) or float64 (computed in float64).
        s, alpha, delta, r (Tensor): (F,) effective parameters (``pcen_parameters``).
        eps (float): floor of the smoother. clamp (float, optional): lower bound for x.
        block_t, block_b (int): frames per chunk and rows per program (powers of two >= 16;
            default ``BLOCK_T``, ``BLOCK_B_FWD``).
        y, carries (Tensor, optional): preallocated outputs.
    Returns:
        (y, carries): y (..., F, T) contiguous in x's dtype; carries (R, NC) in the compute
        dtype, M at the last frame of each chunk (R = prod(x.shape[:-1]), NC = cdiv(T, block_t)).
    """
    block_t = block_t or BLOCK_T
    block_b = block_b or BLOCK_B_FWD
    x, (s, alpha, delta, r), cdt = _prep(x, s, alpha, delta, r)
    F, T = x.shape[-2], x.shape[-1]
    R = math.prod(x.shape[:-1])
    NC = _num_chunks(T, block_t)
    y = _new(x.shape, x.dtype, x.device) if y is None else y
    carries = _new((R, NC), cdt, x.device) if carries is None else carries
    if R == 0 or T == 0:
        return y, carries
    NB = R // F
    scalars, meta = _launch_args(eps, clamp, block_t, block_b)
    _pcen_fwd_kernel[(_cdiv(NB, block_b), F)](x, y, carries, s, alpha, delta, r, *scalars,
                                              NB, F, T, NC, SAVE_CARRY=True, **meta)
    return y, carries


def pcen_bwd(grad: Tensor, x: Tensor, carries: Tensor, s: Tensor, alpha: Tensor, delta: Tensor,
             r: Tensor, eps: float, clamp: Optional[float] = None, *,
             block_t: Optional[int] = None, block_b: Optional[int] = None,
             dx: Optional[Tensor] = None, part: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
    """PCEN backward: the gradients of ``sum(grad * y)``.

    Args:
        grad (Tensor): (..., F, T) upstream gradient dL/dy.
        x (Tensor): (..., F, T) the forward's input (before the clamp).
        carries (Tensor): (R, NC) from :func:`pcen_fwd` with the same ``block_t``.
        s, alpha, delta, r, eps, clamp: as in :func:`pcen_fwd`.
        dx, part (Tensor, optional): preallocated (..., F, T) and (4, F, cdiv(R / F, block_b)).
    Returns:
        (dx, ds, dalpha, ddelta, dr): dx (..., F, T) in x's dtype, zero where x < clamp
        (torch.clamp: the gradient passes at equality); the others (F,), in the dtype of the
        respective parameter.
    """
    block_t = block_t or BLOCK_T
    block_b = block_b or BLOCK_B_BWD
    dtypes = [p.dtype for p in (s, alpha, delta, r)]
    x, (s, alpha, delta, r), cdt = _prep(x, s, alpha, delta, r)
    grad = grad.contiguous()
    carries = carries.contiguous()
    F, T = x.shape[-2], x.shape[-1]
    R = math.prod(x.shape[:-1])
    NC = _num_chunks(T, block_t)
    if tuple(carries.shape) != (R, NC) or carries.dtype != cdt:
        raise ValueError('pcen_bwd: carries must be (%d, %d) %s (block_t=%d), got %s %s'
                         % (R, NC, cdt, block_t, tuple(carries.shape), carries.dtype))
    if tuple(grad.shape) != tuple(x.shape):
        raise ValueError('pcen_bwd: grad %s != x %s' % (tuple(grad.shape), tuple(x.shape)))
    dx = _new(x.shape, x.dtype, x.device) if dx is None else dx
    if R == 0 or T == 0:
        return (dx.zero_(), *(torch.zeros(F, dtype=d, device=x.device) for d in dtypes))
    NB = R // F
    NBB = _cdiv(NB, block_b)
    part = _new((4, F, NBB), cdt, x.device) if part is None else part
    scalars, meta = _launch_args(eps, clamp, block_t, block_b)
    _pcen_bwd_kernel[(NBB, F)](grad, x, carries, s, alpha, delta, r, *scalars, dx, part,
                               NB, F, T, NC, NBB, **meta)
    sums = part.sum(-1)
    return (dx, *(sums[i].to(dtypes[i], copy=True) for i in range(4)))


if HAS_TRITON:

    @torch.library.custom_op('eleaf::pcen_triton_fwd', mutates_args=())
    def _pcen_fwd_op(x: Tensor, s: Tensor, alpha: Tensor, delta: Tensor, r: Tensor, eps: float,
                     clamp: Optional[float]) -> Tuple[Tensor, Tensor]:
        return pcen_fwd(x, s, alpha, delta, r, eps, clamp)

    @_pcen_fwd_op.register_fake
    def _(x, s, alpha, delta, r, eps, clamp):
        R = math.prod(x.shape[:-1])
        NC = _num_chunks(x.shape[-1], BLOCK_T)
        return x.new_empty(x.shape), x.new_empty((R, NC), dtype=_compute_dtype(x.dtype))

    @torch.library.custom_op('eleaf::pcen_triton_bwd', mutates_args=())
    def _pcen_bwd_op(grad: Tensor, x: Tensor, carries: Tensor, s: Tensor, alpha: Tensor,
                     delta: Tensor, r: Tensor, eps: float, clamp: Optional[float]
                     ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        return pcen_bwd(grad, x, carries, s, alpha, delta, r, eps, clamp)

    @_pcen_bwd_op.register_fake
    def _(grad, x, carries, s, alpha, delta, r, eps, clamp):
        return (x.new_empty(x.shape), torch.empty_like(s), torch.empty_like(alpha),
                torch.empty_like(delta), torch.empty_like(r))

    def _setup_context(ctx, inputs, output):
        x, s, alpha, delta, r, eps, clamp = inputs
        ctx.save_for_backward(x, output[1], s, alpha, delta, r)
        ctx.eps, ctx.clamp = eps, clamp
        ctx.mark_non_differentiable(output[1])

    def _backward(ctx, grad_y, grad_carries):
        x, carries, s, alpha, delta, r = ctx.saved_tensors
        need = ctx.needs_input_grad
        if grad_y is None or not any(need[:5]):
            return (None,) * 7
        grads = torch.ops.eleaf.pcen_triton_bwd(grad_y, x, carries, s, alpha, delta, r,
                                                ctx.eps, ctx.clamp)
        return tuple(g if n else None for g, n in zip(grads, need[:5])) + (None, None)

    _pcen_fwd_op.register_autograd(_backward, setup_context=_setup_context)


class PcenTriton(torch.autograd.Function):
    """Eager autograd of :func:`pcen_fwd` / :func:`pcen_bwd`: the custom op's computation
    without its Python dispatch (see :func:`eleaf.ops.backends.use_custom_ops`)."""

    @staticmethod
    def forward(ctx, x, s, alpha, delta, r, eps, clamp):
        y, carries = pcen_fwd(x, s, alpha, delta, r, eps, clamp)
        ctx.save_for_backward(x, carries, s, alpha, delta, r)
        ctx.eps, ctx.clamp = eps, clamp
        return y

    @staticmethod
    def backward(ctx, grad_y):
        x, carries, s, alpha, delta, r = ctx.saved_tensors
        need = ctx.needs_input_grad
        if not any(need[:5]):
            return (None,) * 7
        grads = pcen_bwd(grad_y, x, carries, s, alpha, delta, r, ctx.eps, ctx.clamp)
        return tuple(g if n else None for g, n in zip(grads, need[:5])) + (None, None)


def pcen_triton(x: Tensor, s: Tensor, alpha: Tensor, delta: Tensor, r: Tensor, eps: float,
                clamp: Optional[float] = None) -> Tensor:
    """PCEN with the Triton kernels: same signature and numbers as
    :func:`eleaf.functional.pcen_ref`, differentiable in x, s, alpha, delta and r.

    Devices: CUDA, or CPU under ``TRITON_INTERPRET=1``. float16/bfloat16/float32 computed in
    float32 with the output in x's dtype; float64 computed in float64.

    Args:
        x (Tensor): (..., F, T) non-negative energies, e.g. (B, F, T) or (B, C, F, T).
        s, alpha, delta, r (Tensor): (F,) effective parameters (or (1,)/scalars, shared).
        eps (float): floor of the smoother, e.g. 1e-12 (LEAF) or 1e-6.
        clamp (float, optional): lower bound applied to x first, e.g. 1e-5 (LEAF).
    Returns:
        Tensor: (..., F, T) in x's dtype.
    """
    if not HAS_TRITON:
        raise RuntimeError('pcen_triton needs Triton: %s' % _IMPORT_ERROR)
    if x.dim() < 2:
        raise ValueError('pcen: x must be (..., F, T), got shape %s' % (tuple(x.shape),))
    F = x.shape[-2]
    params = []
    for p in (s, alpha, delta, r):
        # as torch.as_tensor(p, device=x.device), but a Python number becomes a cached
        # device tensor: no host-to-device copy per call
        if not isinstance(p, Tensor):
            p = cached_scalar(p, torch.get_default_dtype(), x)
        elif p.device != x.device:
            p = p.to(x.device)
        if p.dim() == 0 or (p.dim() == 1 and p.shape[0] == 1 and F != 1):
            p = p.reshape(1).expand(F)
        params.append(p)
    eps, clamp = float(eps), None if clamp is None else float(clamp)
    if use_custom_ops():
        return torch.ops.eleaf.pcen_triton_fwd(x, *params, eps, clamp)[0]
    return PcenTriton.apply(x, *params, eps, clamp)


def _check(device: torch.device, dtype: torch.dtype) -> Optional[str]:
    """None when :func:`pcen_triton` should run for this dtype, else why not."""
    if dtype == torch.float64:
        return 'float64 runs the reference (the triton kernels compute in float32)'
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return 'triton pcen needs float32/float16/bfloat16 input, got %s' % dtype
    return None


if HAS_TRITON:
    register_impl('pcen', 'triton', pcen_triton, _check)
