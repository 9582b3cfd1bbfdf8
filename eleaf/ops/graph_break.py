"""Run a function eagerly under ``torch.compile`` (a graph break), without importing
``torch._dynamo`` in eager mode.

``torch.compiler.disable`` as a decorator imports ``torch._dynamo`` (about 1.5 s) when the
decorated module is imported; :func:`run_eager` applies it only while Dynamo traces, where it
is already imported. Dynamo then calls the function eagerly and never traces or guards on
what happens inside (Python ints computed from tensor values, C++ ops without fake kernels).
"""
from typing import Any, Callable

import torch

__all__ = ['run_eager']


def run_eager(fn: Callable, *args: Any) -> Any:
    """``fn(*args)``; under ``torch.compile`` as a graph break (``torch.compiler.disable``)."""
    if torch.compiler.is_compiling():
        return torch.compiler.disable(fn)(*args)
    return fn(*args)
