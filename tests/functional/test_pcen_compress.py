"""PCEN, Log1p, median subtraction and temporal batch norm against float64 numpy
re-derivations of SPEC §6."""
import numpy as np
import pytest
import torch

from eleaf.functional import (log1p_ref, median_subtract_ref, pcen_parameters, pcen_ref,
                              temporal_batch_norm_ref)


def np_pcen(x, s, alpha, delta, r, eps, clamp=None):
    """SPEC §6 in float64 with a plain loop over frames and the textbook formula."""
    x = np.maximum(x, clamp) if clamp is not None else x
    M = np.empty_like(x)
    M[..., 0] = x[..., 0]
    for t in range(1, x.shape[-1]):
        M[..., t] = (1 - s) * M[..., t - 1] + s * x[..., t]
    a, d, rr = alpha[:, None], delta[:, None], r[:, None]
    return (x / (eps + M) ** a + d) ** rr - d ** rr


@pytest.mark.parametrize('shape', [(2, 5, 1), (2, 5, 17), (1, 2, 3, 30)])
@pytest.mark.parametrize('clamp', [None, 1e-5])
def test_pcen_ref_float64(shape, clamp):
    rng = np.random.RandomState(sum(shape))
    F = shape[-2]
    x = rng.exponential(1.0, shape) * 10.0 ** rng.uniform(-6, 2, shape)
    s, alpha = rng.uniform(0.01, 0.3, F), rng.uniform(0.5, 1, F)
    delta, r = rng.uniform(0.5, 3, F), rng.uniform(0.2, 1, F)
    t = lambda a: torch.from_numpy(a)
    out = pcen_ref(t(x), t(s), t(alpha), t(delta), t(r), 1e-6, clamp)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), np_pcen(x, s, alpha, delta, r, 1e-6, clamp),
                               rtol=1e-9, atol=1e-12)


def test_pcen_parameters_both_parameterisations():
    v = lambda a: torch.tensor([a, a], dtype=torch.float64)
    s, alpha, delta, r = pcen_parameters(v(np.log(0.04)), v(np.log(0.96)), v(np.log(2.)),
                                         v(np.log(.5)), learn_logs=True)
    np.testing.assert_allclose([s[0].item(), alpha[0].item(), delta[0].item(), r[0].item()],
                               [0.04, 0.96, 2., .5], rtol=1e-14)
    s, alpha, delta, r = pcen_parameters(v(0.04), v(1.5), v(-1.), v(0.5), learn_logs=False)
    assert (s[0].item(), alpha[0].item(), delta[0].item(), r[0].item()) == (0.04, 1., 0., 1.)
    s, alpha, delta, r = pcen_parameters(v(0.04), v(0.9), v(2.), v(2.), learn_logs=False)
    assert r[0].item() == 0.5


def test_log1p_ref():
    x = torch.rand(2, 3, 4, dtype=torch.float64)
    a = torch.tensor([0.5, 1., 5.], dtype=torch.float64)
    np.testing.assert_allclose(log1p_ref(x, a, per_band=True).numpy(),
                               np.log(1 + 10 ** a.numpy()[:, None] * x.numpy()), rtol=1e-13)
    np.testing.assert_allclose(log1p_ref(x, 5).numpy(), np.log(1 + 1e5 * x.numpy()), rtol=1e-13)
    assert torch.equal(log1p_ref(x, None), torch.log1p(x))


@pytest.mark.parametrize('backend', ['torch', 'cpp'])
def test_fixed_a_per_band(backend):
    # the original crashes on Log1p(a, trainable=False, per_band=True); eleaf uses that a for
    # every band (what eleaf train --log1p-per-band without --log1p-trainable asks for)
    import eleaf
    from eleaf.ops.backends import cpp_status
    if backend == 'cpp' and not cpp_status()[0]:
        pytest.skip(cpp_status()[1])
    x = torch.rand(2, 3, 6, dtype=torch.float64)
    expect = np.log(1 + 10 ** 2.5 * x.numpy())
    np.testing.assert_allclose(eleaf.Log1p(2.5, per_band=True)(x).numpy(), expect, rtol=1e-13)
    tbn = eleaf.LogTBN(3, a=2.5, per_band=True, backend=backend).double().eval()
    np.testing.assert_allclose(tbn(x).detach().numpy(),
                               eleaf.LogTBN(3, a=2.5, backend=backend).double().eval()(x)
                               .detach().numpy(), rtol=1e-13)


def np_lower_median(x):
    """Lower middle element of the sorted last axis (index (T - 1) // 2)."""
    return np.sort(x, axis=-1)[..., (x.shape[-1] - 1) // 2]


@pytest.mark.parametrize('T', [1, 2, 7, 8])
def test_median_convention_and_gradient(T):
    x = torch.randn(2, 3, T, dtype=torch.float64, requires_grad=True)
    out = median_subtract_ref(x, append=False)
    m = np_lower_median(x.detach().numpy())
    np.testing.assert_allclose(out.detach().numpy(), x.detach().numpy() - m[..., None])
    out.sum().backward()
    # d/dx of sum(x - m): 1 everywhere, minus T at the selected (lower-median) element
    g = np.ones((2, 3, T))
    sel = np.argsort(x.detach().numpy(), axis=-1, kind='stable')[..., (T - 1) // 2]
    for i in range(2):
        for j in range(3):
            g[i, j, sel[i, j]] -= T
    np.testing.assert_allclose(x.grad.numpy(), g)


def test_median_append_shapes():
    x = torch.randn(2, 5, 9)
    out = median_subtract_ref(x, append=True)
    assert out.shape == (2, 2, 5, 9)
    assert torch.equal(out[:, 0], x)
    x4 = torch.randn(2, 3, 5, 9)
    assert median_subtract_ref(x4, append=True).shape == (2, 6, 5, 9)


@pytest.mark.parametrize('per_channel', [False, True])
def test_temporal_batch_norm_train(per_channel):
    rng = np.random.RandomState(0)
    x = rng.randn(3, 2, 4, 10) * 3 + 1
    bn = torch.nn.BatchNorm1d(8 if per_channel else 4).double()
    out = temporal_batch_norm_ref(torch.from_numpy(x), bn, per_channel).detach().numpy()
    axes = (0, 3) if per_channel else (0, 1, 3)
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    np.testing.assert_allclose(out, (x - mean) / np.sqrt(var + 1e-5), rtol=1e-10, atol=1e-12)
