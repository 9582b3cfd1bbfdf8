"""Fixtures shared by the op tests."""
import pytest
import torch


@pytest.fixture
def nan_fill():
    """Fill fresh tensors (at::empty) with NaN while a test runs, so that an element a kernel
    fails to write shows up as non-finite."""
    old = (torch.are_deterministic_algorithms_enabled(),
           torch.utils.deterministic.fill_uninitialized_memory)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(old[0])
    torch.utils.deterministic.fill_uninitialized_memory = old[1]


@pytest.fixture
def triton_poison(monkeypatch):
    """The Triton ops fill their outputs and scratch with NaN before the kernels write them
    (``ELEAF_DEBUG_POISON=1``); on a GPU the float32 references convolve with cuDNN in full
    fp32 (TF32 off)."""
    monkeypatch.setenv('ELEAF_DEBUG_POISON', '1')
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
