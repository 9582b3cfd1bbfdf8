"""TFLeaf, the port of Google's TF LEAF (SPEC §11): float64 numpy re-derivations of every rule,
equality with eleaf.Leaf where the two agree, recorded TensorFlow outputs, gradcheck and the
TF weights bridge."""
import importlib.util
import math
import os

import numpy as np
import pytest
import torch
import torch.nn as nn

import eleaf
from eleaf.functional.tf_leaf import (tf_gabor_init, tf_linspace, tf_mel_weight_matrix,
                                      tf_pcen_ref, tf_same_padding, tf_window_sizes)
from eleaf.functional.pcen import pcen_ref
from eleaf.modules.tf_leaf import TFPCEN, canonical_tf_name
from eleaf.ops import select_impl
from eleaf.ops.backends import BackendUnavailableError, cpp_status
from tests.testing import RTOL, assert_close, rel_err

Z = math.sqrt(2 * math.log(2)) / math.pi
DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data')


# ------------------------------------------------------------------ numpy re-derivations
def np_mel(n_filters, sr=16000., fmin=60., fmax=7800., n_fft=512):
    """HTK triangles on the n_fft // 2 + 1 bins, DC row zero: (bins, F), float64."""
    hz2mel = lambda f: 1127. * np.log(1. + f / 700.)  # noqa: E731
    freqs = np.linspace(0., sr / 2, n_fft // 2 + 1)
    mel = hz2mel(freqs)[:, None]
    edges = np.linspace(hz2mel(fmin), hz2mel(fmax), n_filters + 2)
    lo, c, hi = edges[:-2], edges[1:-1], edges[2:]
    w = np.maximum(0., np.minimum((mel - lo) / (c - lo), (hi - mel) / (hi - c)))
    w[0] = 0.
    return w


def np_init(n_filters, **kwargs):
    """Measured Gabor init: centre = first argmax bin * 2 pi / 512; sigma from the number of
    bins with sqrt(w) >= peak / 2."""
    s = np.sqrt(np_mel(n_filters, **kwargs).T)
    centre = np.argmax(s, axis=1) * 2 * np.pi / 512
    fwhm = (s >= s.max(axis=1, keepdims=True) / 2).sum(axis=1)
    return np.stack([centre, np.sqrt(2 * np.log(2)) * 512 / (np.pi * fwhm)], axis=1)


def np_taps(kernel, K):
    """(2F, K) interleaved Re/Im Gabor taps, t = -(K//2) ... (K+1)//2 - 1."""
    mu = np.clip(kernel[:, 0], 0, np.pi)[:, None]
    sigma = np.clip(kernel[:, 1], 4 * Z, K * Z)[:, None]
    t = np.arange(-(K // 2), (K + 1) // 2)[None]
    h = np.exp(1j * mu * t) * np.exp(-t ** 2 / (2 * sigma ** 2)) / (np.sqrt(2 * np.pi) * sigma)
    out = np.empty((2 * len(kernel), K))
    out[0::2], out[1::2] = h.real, h.imag
    return out


def np_same_conv(x, taps, stride):
    """TF 'SAME' cross-correlation of (L,) with each row of (C, K), explicit sums."""
    L, K = len(x), taps.shape[1]
    T = -(-L // stride)
    total = max((T - 1) * stride + K - L, 0)
    xp = np.concatenate([np.zeros(total // 2), x, np.zeros(total - total // 2)])
    return np.stack([[np.dot(xp[t * stride:t * stride + K], w) for t in range(T)]
                     for w in taps])


def np_ema(x, w):
    """(F, T) scan from x_0: M_t = w x_t + (1 - w) M_{t-1}, M_{-1} = x_0."""
    out = np.empty_like(x)
    state = x[:, 0]
    for t in range(x.shape[1]):
        state = w * x[:, t] + (1 - w) * state
        out[:, t] = state
    return out


def np_pcen(x, smooth, alpha, delta, root, floor):
    m = np_ema(x, np.clip(smooth, 0, 1))
    a = np.minimum(alpha, 1)[:, None]
    r = 1. / np.maximum(root, 1)[:, None]
    d = delta[:, None]
    with np.errstate(invalid='ignore'):
        return (x / (floor + m) ** a + d) ** r - d ** r


def np_tfleaf(x, p, K, S, floor=1e-12, preemp=False, norm=False, sort=False):
    """Whole TF LEAF on one waveform (L,) with parameters ``p`` (numpy, TF layout)."""
    if preemp:
        k = p['preemp']
        x = k[0] * x + k[1] * np.append(x[1:], 0.)
    kernel = np.stack([np.clip(p['kernel'][:, 0], 0, np.pi),
                       np.clip(p['kernel'][:, 1], 4 * Z, K * Z)], 1)
    if sort:
        kernel = kernel[np.argsort(kernel[:, 0], kind='stable')]
    conv = np_same_conv(x, np_taps(kernel, K), 1)
    energy = conv[0::2] ** 2 + conv[1::2] ** 2
    widths = np.clip(p['pool'], 2. / K, 0.5)
    n = np.arange(K)
    windows = np.exp(-0.5 * ((n[None] - (K - 1) / 2) / (widths[:, None] * (K - 1) / 2)) ** 2)
    pooled = np.stack([np_same_conv(e, w[None], S)[0] for e, w in zip(energy, windows)])
    y = np.maximum(pooled, 1e-5)
    if 'alpha' in p:
        y = np_pcen(y, p['smooth'], p['alpha'], p['delta'], p['root'], floor)
    if norm:
        mean = y.mean(axis=1, keepdims=True)
        var = ((y - mean) ** 2).mean(axis=1, keepdims=True)
        y = (y - mean) / np.sqrt(var + 1e-6) * p['gamma'][:, None] + p['beta'][:, None]
    return y


def random_params(F, K, rng, smooth_shape=None, out_of_range=True):
    """Parameters in TF layout, a few outside their clipping ranges."""
    mu = rng.uniform(0.05, 3.0, F)
    sigma = rng.uniform(5 * Z, (K - 1) * Z, F)
    widths = rng.uniform(0.1, 0.45, F)
    alpha = rng.uniform(0.5, 0.99, F)
    root = rng.uniform(1.5, 4., F)
    smooth = rng.uniform(0.02, 0.3, smooth_shape or F)
    if out_of_range:
        mu[0], sigma[-1], widths[0], alpha[0], root[-1] = -0.2, K * Z * 1.3, 0.8, 1.3, 0.6
        if smooth.size > 2:
            smooth[0], smooth[1] = 1.4, -0.1
    return dict(kernel=np.stack([mu, sigma], 1), pool=widths, alpha=alpha,
                delta=rng.uniform(0.5, 3., F), root=root, smooth=smooth,
                preemp=np.array([-0.9, 1.1]), gamma=rng.uniform(0.5, 1.5, F),
                beta=rng.uniform(-0.5, 0.5, F))


def to_tf(p, F):
    """numpy params -> TF variable mapping."""
    return {'kernel': p['kernel'], 'leaf/learnable_pooling/kernel': p['pool'].reshape(1, 1, F, 1),
            'leaf/PCEN/alpha': p['alpha'], 'leaf/PCEN/delta': p['delta'],
            'leaf/PCEN/root': p['root'], 'leaf/PCEN/EMA/smooth': p['smooth'],
            'leaf/tfbanks_preemp/kernel': p['preemp'].reshape(2, 1, 1),
            'leaf/tfbanks_instancenorm/gamma': p['gamma'],
            'leaf/tfbanks_instancenorm/beta': p['beta']}


def load(model, tf_weights):
    wanted = set(model.tf_weights())
    return model.load_tf_weights({k: v for k, v in tf_weights.items() if k in wanted})


# ------------------------------------------------------------------ sizes and paddings
def test_sizes_not_forced_odd():
    assert tf_window_sizes(16000, 25., 10.) == (401, 160)
    assert tf_window_sizes(22050, 30., 10.) == (662, 220)   # even K
    assert tf_window_sizes(8000, 25., 10.) == (201, 80)
    m = eleaf.TFLeaf(sample_rate=22050, window_len=30.)
    assert (m.kernel_size, m.stride) == (662, 220)
    assert m(torch.randn(1, 1000)).shape == (1, 40, math.ceil(1000 / 220))
    for L in (1, 159, 160, 161, 16000, 12345):
        assert eleaf.TFLeaf(n_filters=4)(torch.randn(2, L)).shape == (2, 4, math.ceil(L / 160))


def test_same_padding():
    assert tf_same_padding(16000, 401, 160) == (120, 121)
    assert tf_same_padding(12345, 401, 160) == (188, 188)
    assert tf_same_padding(15841, 401, 160) == (200, 200)
    assert tf_same_padding(1000, 401, 1) == (200, 200)
    assert tf_same_padding(1000, 662, 1) == (330, 331)
    assert tf_same_padding(3, 401, 160) == (199, 199)
    for L in range(1, 700, 7):
        T = -(-L // 160)
        total = max((T - 1) * 160 + 401 - L, 0)
        assert tf_same_padding(L, 401, 160) == (total // 2, total - total // 2)


# ------------------------------------------------------------------ measured mel init
def test_linspace_is_tf_linspace():
    out = tf_linspace(0., 8000., 257)
    step = np.float32(8000.) / np.float32(256)
    ref = np.float32(0.) + step * np.arange(257, dtype=np.float32)
    ref[-1] = 8000.
    assert np.array_equal(out.numpy(), ref)
    assert tf_linspace(1., 2., 1).tolist() == [1.]


@pytest.mark.parametrize('F', [40, 80])
def test_measured_mel_init(F):
    mel = tf_mel_weight_matrix(F, 257, 16000, 60., 7800.)
    assert mel.shape == (257, F) and mel.dtype == torch.float32
    assert np.abs(mel.numpy() - np_mel(F)).max() < 5e-5   # float32 rounding
    assert (mel[0] == 0).all()
    init = tf_gabor_init(F)
    assert init.dtype == torch.float32 and init.shape == (F, 2)
    ref = np_init(F)
    np.testing.assert_allclose(init.numpy(), ref, rtol=1e-6)
    # the float32 matrix and float64 mathematics give the same bins: far from ties
    s = np.sqrt(np_mel(F).T)
    peak = s.max(1, keepdims=True)
    assert (np.abs(s - peak / 2) / peak).min() > 5e-4
    top2 = np.sort(s, 1)[:, -2:]
    assert ((top2[:, 1] - top2[:, 0]) / top2[:, 1]).min() > 5e-4
    # stored as the (F, 2) parameter, fixed 16 kHz / 60-7800 Hz whatever sample_rate
    for sr in (16000, 22050, 8000):
        m = eleaf.TFLeaf(n_filters=F, sample_rate=sr)
        assert m.gabor_kernel.shape == (F, 2)
        assert torch.equal(m.gabor_kernel.data, init)
    if F == 80:  # the widest initial filters exceed the clip 401 z = 150.29
        assert abs(init[:, 1].max().item() - 191.9) < 0.1
        assert (init[:, 1] > 401 * Z).sum() > 0


def test_init_matches_recorded_tensorflow():
    data = np.load(os.path.join(DATA, 'tf_leaf_outputs.npz'))
    assert np.array_equal(tf_gabor_init(80).numpy(), data['init80'])
    assert np.array_equal(tf_gabor_init(40).numpy(), data['default_16000/w/kernel'])
    assert np.abs(tf_mel_weight_matrix(40, 257, 16000, 60., 7800.).numpy()
                  - data['mel40']).max() < 1e-5   # TF's float32 log differs by ulps


def test_init_range_errors():
    with pytest.raises(ValueError, match='Nyquist'):
        eleaf.TFLeaf(max_freq=9000.)
    with pytest.raises(ValueError, match='lower_edge_hertz'):
        eleaf.TFLeaf(min_freq=8000., max_freq=7000.)
    custom = eleaf.TFLeaf(n_filters=10, min_freq=100., max_freq=4000.)
    np.testing.assert_allclose(custom.gabor_kernel.detach().numpy(),
                               np_init(10, fmin=100., fmax=4000.), rtol=1e-6)


# ------------------------------------------------------------------ whole pipeline vs numpy
CASES = {
    # name: (kwargs, lengths) - K odd/even, several L mod S
    'odd_k': (dict(n_filters=5, sample_rate=1000, window_len=20., window_stride=7.),
              (1, 20, 21, 22, 40, 57)),   # K = 21, S = 7
    'even_k': (dict(n_filters=4, sample_rate=1000, window_len=15., window_stride=4.,
                    preemp=True, mean_var_norm=True), (3, 16, 17, 18, 19, 45)),  # K = 16, S = 4
    'sorted': (dict(n_filters=6, sample_rate=2000, window_len=6., window_stride=3.,
                    sort_filters=True, per_channel_smooth_coef=False), (30, 31, 35)),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_pipeline_against_numpy(case):
    kwargs, lengths = CASES[case]
    model = eleaf.TFLeaf(backend='torch', **kwargs).double()
    K, S, F = model.kernel_size, model.stride, model.n_filters
    rng = np.random.RandomState(len(case))
    p = random_params(F, K, rng, smooth_shape=tuple(model.compression.smooth.shape))
    load(model, to_tf(p, F))
    for L in lengths:
        x = rng.randn(3, L)
        out = model(torch.tensor(x))
        ref = np.stack([np_tfleaf(xb, p, K, S, preemp=model.preemp, norm=model.mean_var_norm,
                                  sort=model.sort_filters) for xb in x])
        assert out.shape == ref.shape == (3, F, math.ceil(L / S))
        np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-9, atol=1e-12)


def test_interleaved_taps_and_even_kernel_alignment():
    model = eleaf.TFLeaf(n_filters=3, sample_rate=1000, window_len=9., window_stride=2.).double()
    K = model.kernel_size
    assert K == 10
    taps = model.gabor_taps()
    assert taps.shape == (6, 1, K)
    ref = np_taps(model.gabor_kernel.detach().numpy(), K)
    np.testing.assert_allclose(taps[:, 0].detach().numpy(), ref, rtol=1e-12, atol=1e-15)
    # an impulse at n0: output n sees x[n - (K-1)//2 + k], so tap t = k - K//2 lands at
    # n = n0 - t - K//2 + (K-1)//2 = n0 - t - 1 for even K
    x = torch.zeros(1, 1, 40, dtype=torch.float64)
    x[..., 20] = 1.
    from eleaf.functional.tf_leaf import tf_same_padding as pad
    conv = torch.nn.functional.conv1d(torch.nn.functional.pad(x, pad(40, K, 1)), taps)
    t = np.arange(-(K // 2), (K + 1) // 2)
    np.testing.assert_allclose(conv[0, :, 20 - t - 1].detach().numpy(), ref, rtol=1e-12)


def test_preemphasis_looks_ahead():
    model = eleaf.TFLeaf(n_filters=3, preemp=True, mean_var_norm=False).double()
    assert model.preemp_kernel.tolist() == pytest.approx([-0.97, 1.])
    x = torch.randn(2, 999, dtype=torch.float64)
    from eleaf.functional.tf_leaf import tf_preemphasis_ref
    y = tf_preemphasis_ref(x[:, None], model.preemp_kernel)[:, 0]
    k0 = model.preemp_kernel[0].item()   # float32(-0.97)
    ref = k0 * x + torch.cat([x[:, 1:], torch.zeros(2, 1, dtype=x.dtype)], 1)
    assert torch.allclose(y, ref, rtol=0, atol=1e-15)
    assert torch.equal(y[:, -1], k0 * x[:, -1])
    plain = eleaf.TFLeaf(n_filters=3).double()
    plain.load_state_dict(model.state_dict(), strict=False)
    assert torch.allclose(model(x), plain(ref), rtol=1e-12)


def test_floor_before_compression():
    model = eleaf.TFLeaf(n_filters=4, compression=nn.Identity()).double()
    x = torch.randn(2, 3000, dtype=torch.float64)
    x[1] = 0.
    fb = model.filterbank(x[:, None])
    out = model(x)
    assert torch.equal(out, fb.clamp(min=1e-5))
    assert (out[1] == 1e-5).all()
    x.requires_grad_(True)
    model(x * 1e-4).sum().backward()       # every frame floored: no gradient at all
    assert (x.grad == 0).all()
    assert model.gabor_kernel.grad.abs().sum() == 0


# ------------------------------------------------------------------ PCEN and instance norm
def test_tf_pcen_rules():
    rng = np.random.RandomState(3)
    F, T = 6, 25
    x = rng.uniform(1e-5, 2., (2, F, T))
    alpha = np.array([0.5, 0.9, 1.0, 1.2, 0.96, 2.0])
    root = np.array([0.5, 1.0, 2.0, 3.0, 1.5, 0.9])
    delta = rng.uniform(0.5, 3., F)
    smooth = np.array([-0.3, 0., 0.04, 0.5, 1.0, 1.7])
    args = [torch.tensor(a) for a in (smooth, alpha, delta, root)]
    out = tf_pcen_ref(torch.tensor(x), *args, 1e-12).numpy()
    ref = np.stack([np_pcen(xb, smooth, alpha, delta, root, 1e-12) for xb in x])
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    # the smoother starts from w x_0 + (1 - w) x_0; w = 0 keeps x_0, w = 1 follows x
    pcen = TFPCEN(F, trainable=True, learn_smooth_coef=True, per_channel_smooth_coef=True,
                  floor=1e-12).double()
    with torch.no_grad():
        for name, value in zip(('smooth', 'alpha', 'delta', 'root'), args):
            getattr(pcen, name).copy_(value)
    np.testing.assert_allclose(pcen(torch.tensor(x)).detach().numpy(), ref, rtol=1e-12)
    # the same mathematics as eleaf's PCEN on effective parameters
    same = pcen_ref(torch.tensor(x), args[0].clamp(0, 1), args[1].clamp(max=1), args[2],
                    1 / args[3].clamp(min=1), 1e-12)
    np.testing.assert_allclose(same.numpy(), ref, rtol=1e-10)
    # delta is not clamped: a negative delta gives NaN (eleaf.PCEN would clamp it to 0)
    neg = tf_pcen_ref(torch.tensor(x), args[0], args[1], -args[2], args[3], 1e-12)
    assert torch.isnan(neg[:, 2:4]).all()
    # the registered op
    name, fn = select_impl('tf_pcen', 'torch', torch.device('cpu'), torch.float64)
    assert name == 'torch' and fn is tf_pcen_ref


def test_pcen_clamps_give_zero_gradient():
    x = torch.rand(2, 4, 10, dtype=torch.float64) + 0.1
    alpha = torch.tensor([1.5, 0.9, 0.9, 0.9], dtype=torch.float64, requires_grad=True)
    root = torch.tensor([2., 0.5, 2., 2.], dtype=torch.float64, requires_grad=True)
    smooth = torch.tensor([0.1, 0.1, 1.5, -0.2], dtype=torch.float64, requires_grad=True)
    delta = torch.full((4,), 2., dtype=torch.float64, requires_grad=True)
    tf_pcen_ref(x, smooth, alpha, delta, root, 1e-12).sum().backward()
    assert alpha.grad[0] == 0 and alpha.grad[1:].abs().min() > 0
    assert root.grad[1] == 0 and root.grad[0] != 0
    assert smooth.grad[2] == 0 and smooth.grad[3] == 0 and smooth.grad[0] != 0


def test_instance_norm():
    model = eleaf.TFLeaf(n_filters=5, mean_var_norm=True, compression=nn.Identity()).double()
    with torch.no_grad():
        model.instance_norm_gamma.copy_(torch.linspace(0.5, 1.5, 5))
        model.instance_norm_beta.copy_(torch.linspace(-1, 1, 5))
    x = torch.randn(3, 4000, dtype=torch.float64)
    out = model(x).detach().numpy()
    y = torch.clamp(model.filterbank(x[:, None]), min=1e-5).detach().numpy()
    mean = y.mean(-1, keepdims=True)
    var = y.var(-1, keepdims=True)   # biased
    ref = ((y - mean) / np.sqrt(var + 1e-6) * np.linspace(0.5, 1.5, 5)[:, None]
           + np.linspace(-1, 1, 5)[:, None])
    np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12)
    assert [n for n, _ in model.named_parameters()][-2:] == ['instance_norm_gamma',
                                                              'instance_norm_beta']


# ------------------------------------------------------------------ against eleaf.Leaf
def leaf_pair(F=8):
    """A TFLeaf and an eleaf.Leaf with the same Gabor and pooling parameters (float64)."""
    tf_leaf = eleaf.TFLeaf(n_filters=F, backend='torch').double()
    leaf = eleaf.Leaf(n_filters=F, backend='torch').double()
    rng = np.random.RandomState(5)
    p = random_params(F, 401, rng, out_of_range=False)
    tf_leaf.load_tf_weights({k: v for k, v in to_tf(p, F).items() if 'PCEN' not in k},
                            strict=False)
    with torch.no_grad():
        leaf.filterbank.center_freqs.copy_(torch.tensor(p['kernel'][:, 0]))
        leaf.filterbank.bandwidths.copy_(torch.tensor(p['kernel'][:, 1]))
        leaf.filterbank.pooling_widths.copy_(torch.tensor(p['pool']))
    return tf_leaf, leaf


def test_equals_leaf_when_paddings_agree():
    # L = 99 * 160 + 1: TF's pooling padding is (200, 200), as eleaf.Leaf's K // 2; the
    # remaining differences (channel layout, floor before PCEN) do not change the result
    tf_leaf, leaf = leaf_pair()
    x = torch.randn(2, 15841, dtype=torch.float64)
    assert_close('full output', leaf(x), tf_leaf(x), 1e-10)
    assert_close('filterbank', leaf.filterbank(x[:, None]), tf_leaf.filterbank(x[:, None]),
                 1e-10)


@pytest.mark.parametrize('L', [16000, 12345, 4000])
def test_equals_leaf_on_interior_frames(L):
    # elsewhere TF frame t pools the squared responses from sample t S - left, eleaf.Leaf's
    # from t S - 200: eleaf.Leaf on the input advanced by d = 200 - left gives TF's frames,
    # except where its (truncated) input changes the responses: windows starting before
    # sample 200 + d, i.e. frames t S < 400
    tf_leaf, leaf = leaf_pair()
    left, _ = tf_same_padding(L, 401, 160)
    d = 200 - left
    assert d > 0
    x = torch.randn(2, L, dtype=torch.float64)
    out = tf_leaf.filterbank(x[:, None])
    ref = leaf.filterbank(x[:, None, d:])
    T = min(out.shape[-1], ref.shape[-1])
    first = 3
    assert T > first
    assert_close('interior frames', ref[..., first:T], out[..., first:T], 1e-10)
    assert rel_err(out[..., :1], ref[..., :1]) > 1e-3


# ------------------------------------------------------------------ constraint and sorting
def test_constraint_in_forward_only():
    model = eleaf.TFLeaf(n_filters=80)
    stored = model.gabor_kernel.detach().clone()
    with torch.no_grad():
        model.gabor_kernel[0, 0] = -0.5
        model.gabor_kernel[1, 0] = 4.0
        model.pooling_widths[0] = 0.9
        model.pooling_widths[1] = 1e-4
    stored = model.gabor_kernel.detach().clone()
    widths = model.pooling_widths.detach().clone()
    model(torch.randn(2, 4000)).sum().backward()
    assert torch.equal(model.gabor_kernel.detach(), stored)
    assert torch.equal(model.pooling_widths.detach(), widths)
    grad = model.gabor_kernel.grad
    wide = stored[:, 1] > 401 * Z            # initial sigmas up to 191.9 > 150.29
    assert wide.sum() > 0 and (grad[wide, 1] == 0).all()
    assert grad[0, 0] == 0 and grad[1, 0] == 0 and (grad[2:, 0] != 0).all()
    assert (grad[~wide, 1] != 0).all()
    g = model.pooling_widths.grad
    assert g[0] == 0 and g[1] == 0 and (g[2:] != 0).all()
    kernel = model.constrained_kernel()
    assert kernel[0, 0].item() == 0 and kernel[1, 0].item() == pytest.approx(math.pi)
    assert kernel[:, 1].max().item() == pytest.approx(401 * Z)
    model.constrain_()   # what a Keras optimiser does after each update
    assert torch.equal(model.gabor_kernel.detach(), kernel.detach())


def test_sort_filters():
    rng = np.random.RandomState(0)
    p = random_params(6, 401, rng)
    sorted_model = eleaf.TFLeaf(n_filters=6, sort_filters=True).double()
    plain = eleaf.TFLeaf(n_filters=6).double()
    load(sorted_model, to_tf(p, 6))
    order = np.argsort(np.clip(p['kernel'][:, 0], 0, np.pi), kind='stable')
    q = dict(p, kernel=p['kernel'][order])      # pooling widths stay per output channel
    load(plain, to_tf(q, 6))
    x = torch.randn(2, 3000, dtype=torch.float64)
    assert_close('sorted', plain(x), sorted_model(x), 1e-12)


# ------------------------------------------------------------------ gradients
def test_gradcheck_tiny():
    model = eleaf.TFLeaf(n_filters=3, sample_rate=1000, window_len=9., window_stride=4.,
                         preemp=True, mean_var_norm=True).double()
    K = model.kernel_size
    assert K == 10 and model.stride == 4
    with torch.no_grad():
        model.gabor_kernel.copy_(torch.tensor([[0.5, 5 * Z], [1.5, 6 * Z], [2.5, 7 * Z]]))
        model.pooling_widths.copy_(torch.tensor([0.3, 0.35, 0.4]))
        model.compression.alpha.copy_(torch.tensor([0.8, 0.9, 0.95]))
        model.compression.root.copy_(torch.tensor([1.5, 2., 2.5]))
        model.compression.smooth.copy_(torch.tensor([0.1, 0.3, 0.5]))
        model.instance_norm_gamma.copy_(torch.tensor([0.9, 1.1, 1.3]))
    names = [n for n, p in model.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in model.parameters())
    x = (torch.randn(2, 23, dtype=torch.float64) * 3).requires_grad_(True)

    def fn(x, *ps):
        return torch.func.functional_call(model, dict(zip(names, ps)), (x,))
    assert fn(x, *params).detach().abs().min() > 0
    assert torch.autograd.gradcheck(fn, (x,) + params, eps=1e-6, atol=1e-7, rtol=1e-5)


# ------------------------------------------------------------------ recorded TensorFlow outputs
def _recorder():
    spec = importlib.util.spec_from_file_location(
        'record_tf_leaf', os.path.join(DATA, 'record_tf_leaf.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TF_CONFIGS = {
    # name: (TFLeaf kwargs, length, sample rate); seeds follow the recording order
    'default_16000': (dict(), 16000, 16000),
    'default_12345': (dict(), 12345, 16000),
    'f80_init': (dict(n_filters=80), 4000, 16000),
    'k662_preemp_norm': (dict(n_filters=24, sample_rate=22050, window_len=30., preemp=True,
                              mean_var_norm=True), 8000, 22050),
    'sorted_fixed_smoother': (dict(n_filters=8, sort_filters=True, learn_smooth_coef=False,
                                   per_channel_smooth_coef=False), 3001, 16000),
}
#: TF's own float32 rounding: ‖tf − float64‖ / ‖float64‖ reaches 1e-3 for the pre-emphasis
#: gradient (a long sum with cancellation) and 2e-4 for delta's; the port's float32 is as far
GRAD_RTOL = {'leaf/tfbanks_preemp/kernel': 5e-3, 'leaf/PCEN/delta': 1e-3}


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('name', list(TF_CONFIGS))
def test_recorded_tensorflow(name, dtype):
    data = np.load(os.path.join(DATA, 'tf_leaf_outputs.npz'))
    rec = _recorder()
    kwargs, L, sr = TF_CONFIGS[name]
    x = rec.make_input(L, sr, 100 + list(TF_CONFIGS).index(name))
    assert np.array_equal(x[:, :32], data[name + '/x_head'])
    np.testing.assert_allclose(x.astype(np.float64).sum(1), data[name + '/x_sum'], rtol=1e-12)
    model = eleaf.TFLeaf(**kwargs)
    weights = {k.split('/w/', 1)[1]: data[k] for k in data.files if k.startswith(name + '/w/')}
    if name in ('default_16000', 'default_12345', 'f80_init'):
        for key, value in model.tf_weights().items():    # TF's initial values
            assert np.array_equal(value, weights[key]), key
    model.load_tf_weights(weights)
    model.to(dtype)
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    y = model(xt)
    ref = torch.tensor(data[name + '/y']).transpose(1, 2)    # TF (B, T, F) -> (B, F, T)
    assert_close('y', ref, y, 5e-5)
    g = torch.tensor(rec.weighting(data[name + '/y'].shape), dtype=dtype).transpose(1, 2)
    (y * g).sum().backward()
    if name + '/grad_x' in data.files:
        assert_close('grad_x', torch.tensor(data[name + '/grad_x']), xt.grad, 2e-4)
    grads = model.tf_weights(grad=True)
    checked = 0
    for key in data.files:
        if key.startswith(name + '/g/'):
            var = key.split('/g/', 1)[1]
            if 'simple_rnn' in var:   # the fixed smoother: not trainable in the port
                assert grads[var] is None
                continue
            assert_close(var, torch.tensor(data[key]), torch.tensor(grads[var]),
                         GRAD_RTOL.get(var, 2e-4))
            checked += 1
    assert checked >= 5


# ------------------------------------------------------------------ TF weights bridge
def full_model(**kwargs):
    return eleaf.TFLeaf(n_filters=6, preemp=True, mean_var_norm=True, **kwargs)


TF_NAMES = ['leaf/tfbanks_preemp/kernel', 'kernel', 'leaf/learnable_pooling/kernel',
            'leaf/PCEN/alpha', 'leaf/PCEN/delta', 'leaf/PCEN/root', 'leaf/PCEN/EMA/smooth',
            'leaf/tfbanks_instancenorm/gamma', 'leaf/tfbanks_instancenorm/beta']


def test_tf_weights_names_shapes_and_round_trip():
    model = full_model()
    weights = model.tf_weights()
    assert sorted(weights) == sorted(TF_NAMES)
    shapes = {k: v.shape for k, v in weights.items()}
    assert shapes['kernel'] == (6, 2) and shapes['leaf/learnable_pooling/kernel'] == (1, 1, 6, 1)
    assert shapes['leaf/tfbanks_preemp/kernel'] == (2, 1, 1)
    assert shapes['leaf/PCEN/EMA/smooth'] == (6,)
    assert weights['leaf/tfbanks_preemp/kernel'].ravel().tolist() == pytest.approx([-0.97, 1])
    rng = np.random.RandomState(1)
    new = {k + ':0': rng.uniform(0.1, 0.5, v.shape).astype(np.float32)
           for k, v in weights.items()}
    other = full_model().load_tf_weights(new)
    back = other.tf_weights()
    for k, v in new.items():
        assert np.array_equal(back[k[:-2]], v)
    assert np.array_equal(other.pooling_widths.detach().numpy(),
                          new['leaf/learnable_pooling/kernel:0'].ravel())
    again = full_model().load_tf_weights(back)
    for a, b in zip(again.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    # gradients under the same names and shapes
    other(torch.randn(2, 2000)).sum().backward()
    grads = other.tf_weights(grad=True)
    assert np.array_equal(grads['leaf/learnable_pooling/kernel'].ravel(),
                          other.pooling_widths.grad.numpy())
    assert np.array_equal(grads['kernel'], other.gabor_kernel.grad.numpy())
    assert full_model().tf_weights(grad=True)['kernel'] is None


def test_tf_weights_variants():
    fixed = eleaf.TFLeaf(n_filters=4, learn_smooth_coef=False, trainable=False,
                         learn_filters=False, learn_pooling=False)
    w = fixed.tf_weights()
    assert 'leaf/PCEN/EMA/smooth' not in w
    k = w['leaf/PCEN/simple_rnn/simple_rnn_cell/kernel']
    r = w['leaf/PCEN/simple_rnn/simple_rnn_cell/recurrent_kernel']
    np.testing.assert_allclose(k, 0.04 * np.eye(4), rtol=1e-6)
    np.testing.assert_allclose(r, 0.96 * np.eye(4), rtol=1e-6)
    assert not any(p.requires_grad for p in fixed.parameters())
    k2 = (0.1 * np.eye(4)).astype(np.float32)
    fixed.load_tf_weights(dict(w, **{'leaf/PCEN/simple_rnn/simple_rnn_cell/kernel': k2,
                                     'leaf/PCEN/simple_rnn/simple_rnn_cell/recurrent_kernel':
                                     (0.9 * np.eye(4)).astype(np.float32)}))
    assert fixed.compression.smooth.item() == pytest.approx(0.1)
    shared = eleaf.TFLeaf(n_filters=4, per_channel_smooth_coef=False)
    assert shared.tf_weights()['leaf/PCEN/EMA/smooth'].shape == (1,)
    plain = eleaf.TFLeaf(n_filters=4, compression=nn.Identity())
    assert sorted(plain.tf_weights()) == ['kernel', 'leaf/learnable_pooling/kernel']


@pytest.mark.parametrize('given,canonical', [
    ('kernel', 'kernel'), ('kernel:0', 'kernel'),
    ('leaf/tfbanks_complex_conv/kernel:0', 'kernel'),
    ('leaf/learnable_pooling/kernel:0', 'leaf/learnable_pooling/kernel'),
    ('audio_classifier/leaf/learnable_pooling_1/kernel', 'leaf/learnable_pooling/kernel'),
    ('leaf_2/PCEN_1/EMA/smooth:0', 'leaf/PCEN/EMA/smooth'),
    ('PCEN/alpha', 'leaf/PCEN/alpha'),
    ('leaf/tfbanks_preemp/kernel:0', 'leaf/tfbanks_preemp/kernel'),
    ('leaf/PCEN/simple_rnn_3/simple_rnn_cell_3/recurrent_kernel:0',
     'leaf/PCEN/simple_rnn/simple_rnn_cell/recurrent_kernel'),
    ('dense/kernel:0', None), ('leaf/PCENx/alpha', None), ('xkernel', None),
    ('leaf/PCEN/alpha/extra', None),
])
def test_canonical_names(given, canonical):
    assert canonical_tf_name(given) == canonical


def test_prefixed_names_load():
    model = full_model()
    # the Gabor kernel is created outside TF's name scopes: 'kernel' stays unprefixed
    weights = {('' if k == 'kernel' else 'model/') + k + ':0': v * 0 + 0.25
               for k, v in model.tf_weights().items()}
    model.load_tf_weights(weights)
    assert (model.compression.alpha == 0.25).all()
    assert (model.gabor_kernel == 0.25).all()


def _error(model, weights, **kwargs):
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(ValueError) as info:
        model.load_tf_weights(weights, **kwargs)
    for a, b in zip(before, model.parameters()):     # nothing loaded
        assert torch.equal(a, b)
    return str(info.value)


def test_load_errors():
    model = full_model()
    good = model.tf_weights()
    msg = _error(model, {k: v for k, v in good.items() if k != 'leaf/PCEN/root'})
    assert 'missing: leaf/PCEN/root' in msg
    msg = _error(model, dict(good, **{'dense/kernel:0': np.zeros(3)}))
    assert 'unexpected: dense/kernel:0' in msg
    msg = _error(model, dict(good, kernel=np.zeros((6, 3))))
    assert 'mis-shaped' in msg and 'kernel: shape (6, 3), expected (6, 2)' in msg
    msg = _error(model, dict(good, **{'leaf/learnable_pooling/kernel': np.zeros(6)}))
    assert 'shape (6,), expected (1, 1, 6, 1)' in msg
    msg = _error(model, dict(good, **{'leaf/PCEN/alpha:0': good['leaf/PCEN/alpha']}))
    assert 'given twice' in msg and 'leaf/PCEN/alpha' in msg
    msg = _error(model, dict(good, **{'leaf/PCEN/delta': 'abc'}))
    assert 'not a numeric array' in msg
    # everything at once, in one message
    bad = {k: v for k, v in good.items() if k not in ('kernel', 'leaf/PCEN/EMA/smooth')}
    bad['leaf/PCEN/root'] = np.zeros(5)
    bad['leaf/other/kernel'] = np.zeros(1)
    msg = _error(model, bad)
    for part in ('missing: kernel, leaf/PCEN/EMA/smooth', 'unexpected: leaf/other/kernel',
                 'leaf/PCEN/root: shape (5,), expected (6,)'):
        assert part in msg
    # config-dependent names: no pre-emphasis / instance norm / PCEN in this model
    plain = eleaf.TFLeaf(n_filters=6, compression=nn.Identity())
    msg = _error(plain, good)
    assert 'unexpected: leaf/tfbanks_preemp/kernel' in msg and 'leaf/PCEN/alpha' in msg
    # strict=False ignores missing and unexpected names, never wrong shapes
    plain.load_tf_weights(good, strict=False)
    assert np.array_equal(plain.tf_weights()['kernel'], good['kernel'])
    _error(plain, {'kernel': np.zeros((5, 2))}, strict=False)
    # the fixed smoother must be s I and (1 - s) I
    fixed = eleaf.TFLeaf(n_filters=3, learn_smooth_coef=False)
    w = fixed.tf_weights()
    msg = _error(fixed, dict(w, **{'leaf/PCEN/simple_rnn/simple_rnn_cell/kernel':
                                   np.ones((3, 3))}))
    assert 'multiple of the identity' in msg
    msg = _error(fixed, dict(w, **{'leaf/PCEN/simple_rnn/simple_rnn_cell/recurrent_kernel':
                                   0.5 * np.eye(3)}))
    assert 'do not sum to 1' in msg
    with pytest.raises(TypeError):
        model.load_tf_weights([('kernel', good['kernel'])])


# ------------------------------------------------------------------ module behaviour
def test_inputs_options_and_backend():
    model = eleaf.TFLeaf(n_filters=4)
    x = torch.randn(2, 1000)
    assert torch.equal(model(x), model(x[:, None]))
    with pytest.raises(ValueError):
        model(torch.randn(2, 2, 1000))
    with pytest.raises(ValueError):
        model(torch.randn(2, 1000, dtype=torch.float64))
    with pytest.raises(TypeError):
        eleaf.TFLeaf(compression='pcen')
    with pytest.raises(ValueError):
        eleaf.TFLeaf(window_stride=0.01)
    with pytest.raises(ValueError):
        eleaf.TFLeaf(backend='fast')
    frozen = eleaf.TFLeaf(n_filters=4, learn_filters=False, learn_pooling=False,
                          trainable=False, preemp=True)
    assert [n for n, p in frozen.named_parameters() if p.requires_grad] == ['compression.smooth']
    assert list(model.state_dict()) == ['gabor_kernel', 'pooling_widths', 'compression.alpha',
                                        'compression.delta', 'compression.root',
                                        'compression.smooth']
    assert model.frames(16000) == 100 and model.frames(16001) == 101
    assert 'TFLeaf' in eleaf.__all__ and eleaf.modules.TFLeaf is eleaf.TFLeaf
    # 'auto' runs the filterbank and PCEN on the CPU fast paths where eleaf._C is built
    # (compared with the references in tests/ops/test_tf_gabor_cpu.py and test_tf_pcen.py);
    # an explicit backend goes to the ops that have it, 'auto' to the others
    cpp_ok = cpp_status()[0]
    name, _ = select_impl('tf_gabor_filterbank', 'auto', x.device, x.dtype)
    assert name == ('cpp' if cpp_ok else 'torch')
    reference = eleaf.TFLeaf(n_filters=4, backend='torch')(x)
    assert_close('auto vs torch', reference, model(x), RTOL[torch.float32])
    if cpp_ok:
        assert_close('cpp vs torch', reference, eleaf.TFLeaf(n_filters=4, backend='cpp')(x),
                     RTOL[torch.float32])
    else:
        with pytest.raises(BackendUnavailableError):
            eleaf.TFLeaf(n_filters=4, backend='cpp')(x)
    e = torch.rand(2, 4, 10)
    if cpp_ok:
        assert_close('TFPCEN cpp vs torch', TFPCEN(4, backend='torch')(e),
                     TFPCEN(4, backend='cpp')(e), RTOL[torch.float32])
    else:
        with pytest.raises(BackendUnavailableError):
            TFPCEN(4, backend='cpp')(e)
