"""TF LEAF's filterbank on the Triton kernels (``backend='triton'``:
eleaf/ops/tf_gabor_triton.py on ``eleaf::gabor_pool`` with a pooling shift) against the
reference :func:`eleaf.functional.tf_leaf.tf_gabor_filterbank_ref` run in float64 and float32.

Output and the gradients to x, the Gabor kernel and the pooling widths within
‖out − ref‖/‖ref‖ ≤ 1e-5 in float32 (Triton interpreter on CPU without CUDA), for odd and
even kernel sizes (TF's 'SAME' padding reads one sample further right for even K; even
pooling windows get a zero tap), lengths with every kind of pooling padding (``L mod S``),
inputs shorter than the kernel, through the eager Function and the custom op. Outputs and
scratch are poisoned with NaN (``ELEAF_DEBUG_POISON=1``).
"""
import pytest
import torch

import eleaf
from eleaf.functional.tf_leaf import tf_gabor_filterbank_ref
from eleaf.ops import select_impl
from tests.ops.gabor_cases import tf_filterbank_inputs
from tests.testing import RTOL, assert_close, require_triton_ops

gabor = require_triton_ops('eleaf.ops.gabor')
gabor_plan = require_triton_ops('eleaf.ops.gabor_plan')
from eleaf.ops.tf_gabor_triton import tf_gabor_filterbank_triton  # noqa: E402

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


@pytest.fixture(autouse=True)
def _poison(triton_poison):
    """Every test here runs with poisoned outputs (tests/ops/conftest.py)."""


def run(fn, ins, K, S, grad, x_grad):
    out = fn(ins[0], ins[1], ins[2], K, S)
    return [out.detach()] + list(torch.autograd.grad(out, ins if x_grad else ins[1:],
                                                     grad.to(out)))


def compare(K, S, L, B=2, F=6, seed=0, x_grad=True):
    kernel, widths, x = tf_filterbank_inputs(F, K, L, B, seed)

    def leaves(dtype):
        ins = [t.detach().to(DEVICE, dtype).requires_grad_() for t in (x, kernel, widths)]
        ins[0].requires_grad_(x_grad)
        return ins
    ref64 = tf_gabor_filterbank_ref(*leaves(torch.float64)[:3], K, S)
    grad = torch.randn(ref64.shape, generator=torch.Generator().manual_seed(seed + 1),
                       dtype=torch.float64).to(DEVICE)
    ref64 = run(tf_gabor_filterbank_ref, leaves(torch.float64), K, S, grad, x_grad)
    ref32 = run(tf_gabor_filterbank_ref, leaves(torch.float32), K, S, grad, x_grad)
    out = run(tf_gabor_filterbank_triton, leaves(torch.float32), K, S, grad, x_grad)
    names = ('out', 'x', 'kernel', 'widths') if x_grad else ('out', 'kernel', 'widths')
    desc = 'K=%d S=%d L=%d' % (K, S, L)
    for name, r64, r32, o in zip(names, ref64, ref32, out):
        assert o.dtype == torch.float32
        assert_close('%s vs f64 %s' % (name, desc), r64, o, RTOL[torch.float32])
        assert_close('%s vs f32 %s' % (name, desc), r32, o, RTOL[torch.float32])


@pytest.mark.parametrize('K, S, L', [(401, 160, 1601), (401, 160, 1234), (400, 160, 1000),
                                     (401, 160, 350), (31, 7, 300), (30, 4, 101), (5, 3, 1),
                                     (6, 4, 9)])
def test_against_reference(K, S, L):
    compare(K, S, L)


def test_window_gradient_fallback_kernel(monkeypatch):
    # too few registers for the phase-split window-gradient kernel: the per-tap loop kernel,
    # which must honour the pooling shift too
    monkeypatch.setitem(gabor.LAUNCH, 'interpreter', dict(gabor.LAUNCH['interpreter'], win_acc=64))
    monkeypatch.setattr(gabor_plan, '_PLANS', type(gabor_plan._PLANS)())
    compare(31, 7, 300)
    assert all(p.win_block_r is None for p in gabor_plan._PLANS.values())


def test_through_the_custom_op_without_input_gradient(monkeypatch):
    monkeypatch.setenv('ELEAF_CUSTOM_OPS', '1')
    compare(30, 4, 103, x_grad=False)


def test_tfleaf_selects_it():
    assert select_impl('tf_gabor_filterbank', 'triton', torch.device(DEVICE),
                       torch.float32)[0] == 'triton'
    x = torch.randn(2, 900, generator=torch.Generator().manual_seed(4)).to(DEVICE)
    ref = eleaf.TFLeaf(n_filters=6, backend='torch').to(DEVICE)
    fast = eleaf.TFLeaf(n_filters=6, backend='triton').to(DEVICE)
    fast.load_state_dict(ref.state_dict())
    assert_close('TFLeaf triton vs torch', ref(x).detach(), fast(x).detach(), RTOL[torch.float32])


def test_pool_shift_out_of_range():
    geo, layout = gabor.static_geometry([eleaf.functional.GroupGeometry(0, 1, 1, 4, 5, 5)],
                                        torch.device(DEVICE))
    x = torch.zeros(1, 1, 20, device=DEVICE)
    taps, windows = torch.zeros(10, device=DEVICE), torch.zeros(5, device=DEVICE)
    with pytest.raises(ValueError, match='pool_shift'):
        gabor.gabor_fwd(x, taps, windows, geo, layout, pool_shift=1)
    with pytest.raises(ValueError, match='pool_shift'):
        gabor.gabor_fwd(x, taps, windows, geo, layout, pool_shift=-3)
