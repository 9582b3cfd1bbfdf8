"""The folded direct Gabor convolution of the CPU filterbank (``eleaf::gabor_fold_fwd`` and
``eleaf::gabor_fold_wgrad``, csrc/gabor_fold.cpp) against float64 ``conv1d`` and its
autograd.

The forward must equal ``conv1d`` of the full taps (real rows even, imaginary rows odd in
time) within ‖out − ref‖/‖ref‖ ≤ 1e-5 in float32 (1e-10 in float64); the weight gradient
must equal the float64 gradient of that ``conv1d`` folded onto tap pairs (the two taps of a
pair each get half of the pair's gradient). Every kernel the CPU can run (AVX-512, AVX2,
baseline, chosen through ``ELEAF_FOLD_MAX_BITS``) is checked on random shapes: filters per
pass that do not divide n, kernels shorter than one vector of taps, strided input rows,
single steps. Fresh tensors are NaN-filled, so an element the op fails to write shows up.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eleaf.ops.backends import cpp_status
from tests.testing import RTOL, assert_close

CPP_OK, CPP_REASON, _ = cpp_status()
pytestmark = pytest.mark.skipif(not CPP_OK, reason=CPP_REASON)

if CPP_OK:
    from eleaf.ops import gabor_cpu
    if not gabor_cpu.FOLD:
        pytestmark = pytest.mark.skip(reason=gabor_cpu.FOLD_REASON)


@pytest.fixture(autouse=True)
def _nan_fill(nan_fill):
    """Every test here runs with fresh tensors NaN-filled (tests/ops/conftest.py)."""


@pytest.fixture(params=[512, 256, 128], ids=lambda b: '%d-bit' % b)
def vector_bits(request, monkeypatch):
    """Run the op's kernels for vectors of at most this many bits (on a CPU without them,
    the widest it has)."""
    monkeypatch.setenv('ELEAF_FOLD_MAX_BITS', str(request.param))
    return request.param


def symmetric_taps(n, K, dtype, seed=0):
    """(2n, K) random taps, rows < n even in time, rows >= n odd (0 at the centre)."""
    g = torch.Generator().manual_seed(seed)
    J = K // 2
    half = torch.randn(2 * n, J + 1, generator=g, dtype=torch.float64)
    re = torch.cat([half[:n, 1:].flip(1), half[:n]], 1)
    im = torch.cat([-half[n:, 1:].flip(1), torch.zeros(n, 1, dtype=torch.float64),
                    half[n:, 1:]], 1)
    return torch.cat([re, im]).to(dtype)


def draw(seed):
    """(E, n, K, stride, steps, extra samples, strided rows) of a random case."""
    rng = np.random.RandomState(seed)
    n = int(rng.choice([1, 2, 3, 5, 7, 10, 11, 20, 23]))
    K = 2 * int(rng.choice([0, 1, 3, 4, 7, 15, 16, 31, 40, 63, 200])) + 1
    s = int(rng.choice([1, 2, 3, 7, 16, 20, 40, 160]))
    steps = int(rng.choice([1, 2, 15, 16, 17, 33, 100]))
    return (int(rng.randint(1, 5)), n, K, s, steps, int(rng.randint(0, 2 * s + 1)),
            bool(rng.rand() < 0.5))


def make_input(E, S, strided, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    if strided:  # rows of a larger buffer: a row stride beyond S, an offset
        return torch.randn(E, S + 37, generator=g, dtype=torch.float64)[:, 5:5 + S].to(dtype)
    return torch.randn(E, S, generator=g, dtype=torch.float64).to(dtype)


def reference(x, taps, s, steps, grad):
    """float64 conv1d output and the gradient of its taps, folded onto pairs."""
    n = taps.shape[0] // 2
    w = taps.double().requires_grad_()
    y = F.conv1d(x.double()[:, None], w[:, None], stride=s)[:, :, :steps]
    y.backward(grad.double())
    g = w.grad
    return y.detach(), torch.cat([(g[:n] + g[:n].flip(1)) / 2, (g[n:] - g[n:].flip(1)) / 2])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('seed', range(12))
def test_against_conv1d(vector_bits, seed, dtype):
    E, n, K, s, steps, extra, strided = draw(seed)
    x = make_input(E, (steps - 1) * s + K + extra, strided, dtype)
    taps = symmetric_taps(n, K, dtype, seed)
    grad = torch.randn(E, 2 * n, steps, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64).to(dtype)
    y_ref, g_ref = reference(x, taps, s, steps, grad)
    desc = '%d-bit %s E=%d n=%d K=%d s=%d steps=%d' % (vector_bits, dtype, E, n, K, s, steps)
    y = torch.ops.eleaf.gabor_fold_fwd(x, taps, s, steps)
    assert y.dtype == dtype
    assert_close('out ' + desc, y_ref, y, RTOL[dtype])
    g = torch.ops.eleaf.gabor_fold_wgrad(grad, x, s, K)
    assert g.dtype == dtype
    assert_close('grad ' + desc, g_ref, g, RTOL[dtype])


def test_reads_only_the_half_taps():
    # the taps t < 0 are never read: garbage there changes nothing
    x = make_input(2, 15 * 4 + 31, False, torch.float32)
    taps = symmetric_taps(3, 31, torch.float32)
    poisoned = taps.clone()
    poisoned[:, :15] = float('nan')
    assert torch.equal(torch.ops.eleaf.gabor_fold_fwd(x, poisoned, 4, 16),
                       torch.ops.eleaf.gabor_fold_fwd(x, taps, 4, 16))


def test_input_checks():
    x = torch.randn(2, 100)
    taps = symmetric_taps(2, 9, torch.float32)
    with pytest.raises(RuntimeError, match='K odd'):
        torch.ops.eleaf.gabor_fold_fwd(x, taps[:, :8], 1, 10)
    with pytest.raises(RuntimeError, match='need at least'):
        torch.ops.eleaf.gabor_fold_fwd(x, taps, 11, 10)        # 9 * 11 + 9 > 100
    with pytest.raises(RuntimeError, match="dtype"):
        torch.ops.eleaf.gabor_fold_fwd(x, taps.double(), 1, 10)
    with pytest.raises(RuntimeError, match='odd'):
        torch.ops.eleaf.gabor_fold_wgrad(torch.randn(2, 4, 10), x, 1, 8)
    with pytest.raises(RuntimeError, match='grad must be'):
        torch.ops.eleaf.gabor_fold_wgrad(torch.randn(3, 4, 10), x, 1, 9)


def test_filterbank_folds_gabor_taps_only(monkeypatch):
    # the filterbank of eleaf's Gabor parameters folds its direct groups; the TF port's
    # taps (filterbank_groups' default symmetric=False) are convolved unfolded
    from eleaf.functional.gabor import GroupGeometry
    geom = GroupGeometry(0, 4, 16, 4, 65, 9)
    folded = []
    make = gabor_cpu._GroupPlan.make

    def spy(*args, **kwargs):
        plan = make(*args, **kwargs)
        folded.append(plan.folded)
        return plan
    monkeypatch.setattr(gabor_cpu._GroupPlan, 'make', staticmethod(spy))
    monkeypatch.setattr(gabor_cpu, 'choose_method', lambda *args: 'direct')
    x = torch.randn(2, 1, 1000)
    mu, sigma = torch.linspace(0.2, 2., 4), torch.full((4,), 8.)
    gabor_cpu.gabor_filterbank_cpu(x, mu, sigma, torch.full((4,), 0.4), (geom,))
    gabor_cpu.filterbank_groups(x, torch.randn(2 * 4 * 65), torch.rand(4, 9), (geom,))
    assert folded == [True, False]
