"""Log compression, median subtraction and temporal batch norm, references (SPEC §6).

Letters: B batch, C channels, F bands, T frames.
"""
import torch

from .export import is_exporting, median_lower

__all__ = ['log1p_ref', 'median_subtract_ref', 'temporal_batch_norm_ref']


#: dtypes computed in float32 (their range cannot hold 10^a x: float16 ends at 65504)
REDUCED_DTYPES = (torch.float16, torch.bfloat16)


def log1p_ref(x: torch.Tensor, a=None, per_band: bool = False) -> torch.Tensor:
    """``log(1 + 10^a * x)``; plain ``log1p`` when ``a`` is None.

    float16 and bfloat16 inputs (and ``a``) are computed in float32 and the result is
    rounded once to the result dtype (x's, or the promotion of x and a dimensioned ``a``, as
    ``10 ** a * x`` gives): ``10^5 x`` overflows float16 for ``x > 0.66``.

    Args:
        x (Tensor): (..., F, T).
        a (Tensor or float, optional): scalar, or (F,) when ``per_band``.
    """
    if x.dtype in REDUCED_DTYPES:
        out_dtype = x.dtype
        if isinstance(a, torch.Tensor):
            if a.ndim > 0:  # a dimensioned a promotes x, as in 10 ** a * x
                out_dtype = torch.promote_types(out_dtype, a.dtype)
            if a.dtype in REDUCED_DTYPES:
                a = a.float()
        return log1p_ref(x.float(), a, per_band).to(out_dtype)
    if a is not None:
        a = a[:, None] if per_band else a
        x = 10 ** a * x
    return torch.log1p(x)


def median_subtract_ref(x: torch.Tensor, append: bool) -> torch.Tensor:
    """Subtract the median over time, PyTorch's convention (the lower middle value for an
    even T; the gradient goes to the selected element).

    Args:
        x (Tensor): (B, F, T) or (B, C, F, T).
        append (bool): if true, return ``cat(x, x - m)`` along the channel axis, adding one
            to a 3-D input: (B, 2, F, T) or (B, 2C, F, T); else ``x - m``, same shape as x.
    """
    if append and x.ndim == 3:
        x = x[:, None]
    # ONNX has no median: the same value by a top-k while exporting
    m = median_lower(x, -1) if is_exporting() else x.median(-1, keepdim=True).values
    return torch.cat((x, x - m), dim=1) if append else x - m


def temporal_batch_norm_ref(x: torch.Tensor, bn: torch.nn.BatchNorm1d,
                            per_channel: bool) -> torch.Tensor:
    """Batch norm over every axis but the bands (``per_channel``: bands times channels).

    Args:
        x (Tensor): (B, F, T) or (B, C, F, T).
        bn (BatchNorm1d): over F features, or C * F when ``per_channel``.
    Returns:
        Tensor: same shape as x.
    """
    shape = x.shape
    if per_channel:
        x = x.reshape(x.shape[0], -1, x.shape[-1])
    else:
        x = x.reshape((-1,) + x.shape[-2:])
    return bn(x).reshape(shape)
