"""Fixtures of the op benchmarks (bench/ops/bench_*.py): CPU threads and the provider choice.
Device options and ``bench_device`` are in bench/conftest.py."""
import os

import pytest
import torch

from eleaf.ops.backends import cpp_status


@pytest.fixture(scope='module', autouse=True)
def _threads():
    """CPU threads of each benchmark module: ELEAF_BENCH_THREADS (default 2)."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(os.environ.get('ELEAF_BENCH_THREADS', '2')))
    yield
    torch.set_num_threads(before)


@pytest.fixture
def op_provider():
    """``op_provider(name, reference, compiled)``: the function a benchmark runs for the
    provider ``name``: ``reference`` for 'torch', ``compiled`` (an op of eleaf._C) for 'cpp',
    skipping the benchmark when eleaf._C is not built."""
    def provider(name, reference, compiled):
        if name == 'torch':
            return reference
        ok, reason, _ = cpp_status()
        if not ok:
            pytest.skip(reason)
        return compiled
    return provider
