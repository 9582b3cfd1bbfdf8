"""TF LEAF's filterbank on the CPU (``backend='cpp'``: eleaf/ops/tf_gabor_cpu.py on the CPU
filterbank of eleaf/ops/gabor_cpu.py) against the reference
:func:`eleaf.functional.tf_leaf.tf_gabor_filterbank_ref` run in float64 and float32.

Output and the gradients to x, the Gabor kernel and the pooling widths within
‖out − ref‖/‖ref‖ ≤ 1e-5 in float32 (1e-10 in float64), for every convolution algorithm
forced in turn, odd and even kernel sizes (TF's 'SAME' padding reads one sample further
right for even K), lengths with every kind of pooling padding (``L mod S``), short inputs and
one long one in blocks. Fresh tensors are NaN-filled while a test runs.
"""
import pytest
import torch

from eleaf.functional.tf_leaf import tf_gabor_filterbank_ref
from eleaf.ops.backends import cpp_status
from tests.ops.gabor_cases import CPU_METHODS, force_cpu_method, tf_filterbank_inputs
from tests.testing import RTOL, assert_close

CPP_OK, CPP_REASON, _ = cpp_status()
pytestmark = pytest.mark.skipif(not CPP_OK, reason=CPP_REASON)

if CPP_OK:
    from eleaf.ops import gabor_cpu
    from eleaf.ops.tf_gabor_cpu import tf_gabor_filterbank_cpu


@pytest.fixture(autouse=True)
def _nan_fill(nan_fill):
    """Every test here runs with fresh tensors NaN-filled (tests/ops/conftest.py)."""


def compare(K, S, L, B=2, F=6, seed=0, dtypes=(torch.float32, torch.float64), x_grad=True):
    kernel, widths, x = tf_filterbank_inputs(F, K, L, B, seed)
    leaves = lambda dtype: [t.detach().to(dtype).requires_grad_() for t in (x, kernel, widths)]
    ref_in = leaves(torch.float64)
    ref = tf_gabor_filterbank_ref(ref_in[0], ref_in[1], ref_in[2], K, S)
    grad = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed + 1),
                       dtype=torch.float64)
    ref_grads = torch.autograd.grad(ref, ref_in if x_grad else ref_in[1:], grad)
    for dtype in dtypes:
        ins = leaves(dtype)
        if not x_grad:
            ins[0].requires_grad_(False)
        out = tf_gabor_filterbank_cpu(ins[0], ins[1], ins[2], K, S)
        grads = torch.autograd.grad(out, ins if x_grad else ins[1:], grad.to(dtype))
        desc = 'K=%d S=%d L=%d %s' % (K, S, L, dtype)
        assert out.shape == ref.shape and out.dtype == dtype
        assert_close('out ' + desc, ref, out, RTOL[dtype])
        names = ('x', 'kernel', 'widths') if x_grad else ('kernel', 'widths')
        for name, r, o in zip(names, ref_grads, grads):
            assert_close('grad %s %s' % (name, desc), r, o, RTOL[dtype])


# the TF port's taps go to the direct path unfolded (filterbank_groups' symmetric=False), so
# 'direct-conv1d' would repeat 'direct'
@pytest.mark.parametrize('method', [m for m in CPU_METHODS if m != 'direct-conv1d'])
@pytest.mark.parametrize('K, S, L', [(401, 160, 16000), (401, 160, 12345), (400, 160, 4000),
                                     (31, 7, 300), (30, 4, 101), (5, 3, 1), (6, 4, 9)])
def test_against_reference(monkeypatch, method, K, S, L):
    force_cpu_method(monkeypatch, method)
    # the FFT path's input gradient sums every filter in the frequency domain: the direct
    # path is what runs when x needs a gradient (choose_method), so only it is held to the
    # input gradient here
    compare(K, S, L, x_grad=method == 'direct')


def test_long_input_in_blocks(monkeypatch):
    # 3 s: many blocks of the fused op (and of the direct path), the last one short
    for method in ('fft', 'direct'):
        if method == 'fft' and not gabor_cpu.FUSED_FFT:
            continue
        force_cpu_method(monkeypatch, method)
        monkeypatch.setattr(gabor_cpu, 'FFT_BLOCK_SAMPLES', 3000)
        monkeypatch.setattr(gabor_cpu.plan_blocks, '__defaults__', (20000, None))
        compare(401, 160, 48000 + 77, B=1, F=4, dtypes=(torch.float32,), x_grad=False)


def test_auto_picks_cpp_and_the_cost_model_decides():
    from eleaf.ops.backends import resolve_backend
    assert resolve_backend('tf_gabor_filterbank', 'auto', torch.device('cpu'),
                           torch.float32) == 'cpp'
    # TF LEAF's 401-tap stride-1 convolution: the FFT path without input gradient
    compare(401, 160, 1600, B=1, F=3, dtypes=(torch.float32,), x_grad=False)
