"""CUDA-graph capture of a training step, and counting host synchronisations.

EfficientLEAF's group geometry is computed on the device (``eleaf.functional.geometry``), so
a frontend's forward, backward and an optimizer step issue no host synchronisation and can be
captured once and replayed while the parameters, and with them the geometry, change:

    >>> step = make_train_step(model, x, y, optimizer)      # eager step: returns the loss
    >>> replay, loss = capture(step)                        # one eager warm-up, one capture
    >>> for x_new, y_new in batches:                        # copy inputs into the static ones
    ...     x.copy_(x_new); y.copy_(y_new); replay()        # loss holds this step's loss

The optimizer must keep its state on the device: ``torch.optim.Adam(..., capturable=True)``.
Gradients are reset inside the graph (``zero_grad(set_to_none=False)``), so their tensors stay
where the graph wrote them. ``torch.compile(model, mode='reduce-overhead')`` does the same
capture automatically.
"""
import warnings
from typing import Callable, Optional, Tuple

import torch

__all__ = ['make_train_step', 'capture', 'count_syncs']


def make_train_step(model: torch.nn.Module, x: torch.Tensor, target: Optional[torch.Tensor],
                    optimizer: Optional[torch.optim.Optimizer] = None,
                    loss_fn: Optional[Callable] = None) -> Callable[[], torch.Tensor]:
    """A no-argument training step on the static tensors ``x`` and ``target``: zero the
    gradients (in place), loss, backward, and ``optimizer.step()`` when given. Returns the
    loss tensor. ``loss_fn(model(x), target)``; default: the output's sum (``target``
    unused), the paper's frontend benchmark (SPEC §10)."""
    def step():
        model.zero_grad(set_to_none=False)
        out = model(x)
        loss = out.sum() if loss_fn is None else loss_fn(out, target)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
        return loss
    return step


def capture(step: Callable[[], torch.Tensor], warmup: int = 2,
            pool=None) -> Tuple[Callable[[], None], torch.Tensor]:
    """Warm ``step`` up on a side stream (``warmup`` eager calls: the first allocates the
    gradients, the optimizer state and the fast paths' cached tables), capture one call in a
    CUDA graph and return ``(replay, output)``: ``replay()`` reruns the captured step, and
    ``output`` is the captured call's return value, overwritten by every replay.
    Note: the warm-up and the capture each run the step once (an optimizer steps too)."""
    if not torch.cuda.is_available():
        raise RuntimeError('capture needs a CUDA device')
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        out = step()
    return graph.replay, out


def count_syncs(fn: Callable[[], object], calls: int = 1) -> int:
    """Host synchronisations (device-to-host copies, ``.item()``, blocking waits) that
    ``calls`` calls of ``fn`` issue, as ``torch.cuda.set_sync_debug_mode('warn')`` reports
    them; 0 on a machine without CUDA."""
    if not torch.cuda.is_available():
        return 0
    torch.cuda.synchronize()
    old = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            for _ in range(calls):
                fn()
        finally:
            torch.cuda.set_sync_debug_mode(old)
    return sum('synchroniz' in str(w.message).lower() for w in caught)
