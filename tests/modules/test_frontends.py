"""Frontend modules: shapes, state_dict keys, clamping, float64, gradcheck, input errors."""
import math

import numpy as np
import pytest
import torch

import eleaf
from tests.functional.test_gabor import np_filterbank
from tests.functional.test_pcen_compress import np_pcen

Z = math.sqrt(2 * math.log(2)) / math.pi
PCEN_KEYS = ['compression.s', 'compression.alpha', 'compression.delta', 'compression.r']
FB_KEYS = ['filterbank.center_freqs', 'filterbank.bandwidths', 'filterbank.pooling_widths']
TBN_KEYS = ['compression.TBN.bn.weight', 'compression.TBN.bn.bias',
            'compression.TBN.bn.running_mean', 'compression.TBN.bn.running_var',
            'compression.TBN.bn.num_batches_tracked']

PAPER_CONFIGS = {
    '4g_wf4.75_logtbn': (dict(conv_win_factor=4.75), 40),
    '4g_wf4.75_pcen': (dict(conv_win_factor=4.75, compression='pcen'), 40),
    '8gopt_80': (dict(n_filters=80, num_groups=8, conv_win_factor=6, stride_factor=16), 80),
    '8gopt_40': (dict(num_groups=8, conv_win_factor=6, stride_factor=16), 40),
    '1g': (dict(num_groups=1), 40),
    '22k': (dict(sample_rate=22050), 40),
}


@pytest.mark.parametrize('name', sorted(PAPER_CONFIGS))
@pytest.mark.parametrize('L', [16000, 12345, 1])
def test_efficientleaf_shapes_and_keys(name, L):
    kwargs, F = PAPER_CONFIGS[name]
    frontend = eleaf.EfficientLeaf(**kwargs)
    sr = kwargs.get('sample_rate', 16000)
    hop = int(sr * 10 / 1000)
    y = frontend(torch.randn(2, L))
    T = (L - 1) // hop + 1
    pcen = kwargs.get('compression') == 'pcen'
    assert y.shape == ((2, F, T) if pcen else (2, 2, F, T))
    keys = FB_KEYS + (PCEN_KEYS if pcen else ['compression.log1p.a'] + TBN_KEYS)
    assert list(frontend.state_dict()) == keys


def test_leaf_and_mel_shapes_and_keys():
    leaf = eleaf.Leaf()
    assert leaf(torch.randn(3, 1, 16001)).shape == (3, 40, 101)
    assert list(leaf.state_dict()) == FB_KEYS + PCEN_KEYS
    mel = eleaf.Mel()
    assert mel(torch.randn(3, 1, 16000)).shape == (3, 2, 40, (16000 - 401) // 161 + 1)
    assert list(mel.state_dict()) == TBN_KEYS  # fixed a, non-persistent buffers
    assert mel.stft.hopsize == 161 and mel.stft.winsize == 401
    assert mel.filterbank.bank.shape == (196, 40)


def test_grouped_clamp_is_in_place_and_leaf_clamp_is_not():
    fe = eleaf.EfficientLeaf(n_filters=80, num_groups=8, conv_win_factor=6, stride_factor=16)
    fb = fe.filterbank
    assert fb.bandwidths.max().item() > 171
    with torch.no_grad():
        fb.center_freqs[0] = -1.
        fb.pooling_widths[1] = 0.9
    fe(torch.randn(1, 1000))
    assert fb.bandwidths.max().item() == pytest.approx(401 * Z, rel=1e-6)
    assert fb.center_freqs[0].item() == 0. and fb.pooling_widths[1].item() == 0.5
    leaf = eleaf.Leaf(n_filters=80)
    with torch.no_grad():
        leaf.filterbank.center_freqs[0] = -1.
    leaf(torch.randn(1, 1000)).sum().backward()
    assert leaf.filterbank.center_freqs[0].item() == -1.
    assert leaf.filterbank.center_freqs.grad[0].item() == 0.  # clamped: zero gradient
    assert (leaf.filterbank.bandwidths.grad[:3] == 0).all()  # above 401 z: clamped too


def test_clamp_bounds_are_plain_attributes_with_original_dtypes():
    fb = eleaf.GroupedGaborFilterbank(8, 2, 60., 7800., 16000, 401, 160)
    assert fb.conv_win_factor == 3 and fb.psbl_strides == [1, 2, 4, 5, 8, 10, 16, 20, 32, 40, 80, 160]
    assert fb.mu_upper.dtype == torch.float32 and fb.mu_upper.item() == np.float32(np.pi)
    assert fb.sigma_lower.dtype == torch.float64 and fb.sigma_upper.item() == 401 * Z
    assert fb.get_stride(np.pi) == (1, 160) and fb.get_stride(0.3) == (10, 16)
    with pytest.raises(ValueError):
        eleaf.GroupedGaborFilterbank(4, 5, 60., 7800., 16000, 401, 160)


def test_compression_argument():
    assert isinstance(eleaf.EfficientLeaf(compression='pcen').compression, eleaf.PCEN)
    custom = eleaf.LogTBN(40)
    assert eleaf.EfficientLeaf(compression=custom).compression is custom
    with pytest.raises(ValueError, match='compression'):
        eleaf.EfficientLeaf(compression='mel')
    assert isinstance(eleaf.Leaf(compression=None).compression, eleaf.PCEN)


def test_float64_end_to_end_matches_numpy():
    """module.double() computes in float64 throughout: compare with the numpy derivation."""
    fe = eleaf.EfficientLeaf(n_filters=12, num_groups=3, conv_win_factor=3, stride_factor=2,
                             compression='pcen').double()
    x = torch.randn(2, 900, dtype=torch.float64)
    y = fe(x)
    assert y.dtype == torch.float64
    fb = fe.filterbank
    geo = [(g.start, g.stop, g.conv_stride, g.pool_stride, g.kernel_size, g.window_size)
           for g in fb.geometry()]
    p = fb.pooling_widths.detach().numpy()
    pw = np.concatenate([p[a:b] / s * 401 / W for a, b, s, P, K, W in geo])
    feats = np_filterbank(x.numpy(), fb.center_freqs.detach().numpy(),
                          fb.bandwidths.detach().numpy(), pw, geo)
    c = fe.compression
    ref = np_pcen(feats, c.s.detach().numpy(), np.minimum(c.alpha.detach().numpy(), 1),
                  np.maximum(c.delta.detach().numpy(), 0), 1 / np.maximum(c.r.detach().numpy(), 1),
                  1e-12, 1e-5)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-9, atol=1e-12)


def _tiny(cls):
    if cls == 'eleaf':
        return eleaf.EfficientLeaf(n_filters=4, num_groups=2, sample_rate=1600, min_freq=60,
                                   max_freq=700, conv_win_factor=3, stride_factor=2)
    if cls == 'eleaf_pcen':
        return eleaf.EfficientLeaf(n_filters=3, num_groups=3, sample_rate=1600, min_freq=60,
                                   max_freq=700, compression='pcen')
    if cls == 'leaf':
        return eleaf.Leaf(n_filters=3, sample_rate=1600, min_freq=60, max_freq=700)
    return eleaf.Mel(n_filters=4, sample_rate=1600, min_freq=60, max_freq=700)


@pytest.mark.parametrize('cls', ['eleaf', 'eleaf_pcen', 'leaf', 'mel'])
def test_gradcheck_float64(cls, monkeypatch):
    module = _tiny(cls).double()
    if cls != 'mel':
        module(torch.randn(1, 50, dtype=torch.float64))  # clamp once (in-place for eleaf)
    if cls.startswith('eleaf'):
        # the in-place clamp swaps the parameters' storage, which gradcheck's in-place
        # perturbations cannot follow; the parameters are inside the bounds already
        monkeypatch.setattr(module.filterbank, 'clamp_parameters', lambda: None)
    x = torch.randn(2, 1, 90, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in module.named_parameters()]

    def call(x, *ps):
        return torch.func.functional_call(module, dict(zip(names, ps)), (x,))
    inputs = (x,) + tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())
    assert torch.autograd.gradcheck(call, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradcheck_compressions_float64():
    x = (torch.rand(2, 3, 6, dtype=torch.float64) + 0.1).requires_grad_(True)
    for module in [eleaf.PCEN(3, learn_logs=True), eleaf.PCEN(3, 0.04, 0.96, 2, 0.5, 1e-12, False, 1e-5),
                   eleaf.LogTBN(3, a=1, trainable=True, per_band=True, median_filter=True,
                                append_filtered=True), eleaf.Log1p(2., trainable=True)]:
        module = module.double()
        names = [n for n, _ in module.named_parameters()]
        ps = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())
        call = lambda x, *ps: torch.func.functional_call(module, dict(zip(names, ps)), (x,))
        assert torch.autograd.gradcheck(call, (x,) + ps, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_mel_against_numpy_stft():
    rng = np.random.RandomState(0)
    x = rng.randn(2, 1, 2000)
    mel = eleaf.Mel(compression=torch.nn.Identity()).double()
    y = mel(torch.from_numpy(x)).numpy()
    win = mel.stft.window.numpy()  # created in float32, as the original
    np.testing.assert_allclose(win, 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(401) / 400),
                               atol=5e-7)  # symmetric Hann
    T = (2000 - 401) // 161 + 1
    frames = np.stack([x[:, 0, t * 161:t * 161 + 401] for t in range(T)], axis=-1)
    spec = np.abs(np.fft.rfft(frames * win[:, None], axis=1))  # (B, 201, T)
    bank = mel.filterbank.bank.numpy()
    np.testing.assert_allclose(y, np.einsum('bkt,kf->bft', spec[:, :bank.shape[0]], bank),
                               rtol=1e-9, atol=1e-12)


def test_mel_filterbank_numpy():
    bank = eleaf.create_mel_filterbank(16000, 401, 40, 60., 7800., crop=True).numpy()
    lo, hi = 1127 * np.log1p(60 / 700.), 1127 * np.log1p(7800 / 700.)
    hz = 700 * np.expm1(np.linspace(lo, hi, 42).astype(np.float32) / 1127)
    b = hz * 401 / 16000
    xs = np.arange(196)[:, None]
    tri = np.maximum(0, np.minimum((xs - b[:-2]) / (b[1:-1] - b[:-2]), (xs - b[2:]) / (b[1:-1] - b[2:])))
    np.testing.assert_allclose(bank, tri / tri.sum(0), rtol=1e-4, atol=1e-7)
    assert min(401 // 2 + 1, int(np.ceil(7800 * 401 / 16000))) == 196


def test_half_precision_stft_fallback():
    """Where torch.stft refuses a dtype, the STFT runs as conv1d with Dirac-derived weights."""
    stft = eleaf.STFT(401, 161)
    x = torch.randn(1, 1, 2000)
    ref = stft(x)
    kernel = stft.compute_stft_kernel()
    y = torch.nn.functional.conv1d(x.reshape(1, 1, -1), kernel, stride=161)
    y = y.reshape(1, -1, 2, y.shape[-1]).transpose(-1, -2).norm(dim=-1)
    torch.testing.assert_close(y, ref[:, 0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('bad,exc,match', [
    (torch.randn(2, 2, 100), ValueError, r'\(B, L\) or \(B, 1, L\)'),
    (torch.randn(2, 1, 1, 100), ValueError, 'one channel'),
    (torch.zeros(2, 100, dtype=torch.int16), TypeError, 'floating-point'),
    (torch.zeros(2, 100, dtype=torch.complex64), TypeError, 'floating-point'),
    (torch.zeros(0, 100), ValueError, 'empty'),
    (torch.zeros(2, 0), ValueError, 'empty'),
    ([[0.0] * 100], TypeError, 'torch.Tensor'),
    (torch.zeros(2, 100, dtype=torch.float64), ValueError, 'dtype'),
])
@pytest.mark.parametrize('cls', ['eleaf', 'leaf'])
def test_bad_inputs(bad, exc, match, cls):
    module = eleaf.EfficientLeaf() if cls == 'eleaf' else eleaf.Leaf()
    with pytest.raises(exc, match=match):
        module(bad)


def test_device_mismatch_and_debug_non_finite():
    module = eleaf.EfficientLeaf().to('meta')
    with pytest.raises(ValueError, match='meta'):
        module(torch.randn(1, 100))
    x = torch.randn(1, 100)
    x[0, 3] = float('nan')
    eleaf.set_debug(True)
    try:
        with pytest.raises(ValueError, match='NaN'):
            eleaf.Leaf()(x)
    finally:
        eleaf.set_debug(False)
    assert eleaf.Leaf()(x).isnan().any()  # without the debug flag: no check, as the original


def test_short_and_rank_promoted_inputs():
    fe = eleaf.EfficientLeaf()
    assert fe(torch.randn(2, 5)).shape == (2, 2, 40, 1)  # shorter than every kernel
    assert fe(torch.randn(7)).shape == (7, 2, 40, 1)  # the original's (L,) -> (L, 1, 1)
    assert fe(torch.randn(2, 1, 333)).shape == (2, 2, 40, 3)
    with pytest.raises(ValueError, match='L >= 401'):
        eleaf.Mel()(torch.randn(2, 1, 400))
    assert eleaf.Mel()(torch.randn(2, 400 + 161 + 1)).shape == (2, 2, 40, 2)


def test_classifier():
    clf = eleaf.AudioClassifier(5, frontend=eleaf.Leaf(n_filters=8),
                                encoder=torch.nn.Conv2d(1, 1280, 3))
    out = clf(torch.randn(2, 4000))
    assert out.shape == (2, 5)
    keys = list(clf.state_dict())
    assert keys[0].startswith('_frontend.') and '_encoder.weight' in keys and keys[-1] == '_head.bias'


def test_geometry_follows_parameter_updates():
    """Nothing is cached: optimizer steps, in-place edits under no_grad or through .data,
    load_state_dict and .double() all take effect at the next forward, and the clamp applies."""
    fe = eleaf.EfficientLeaf(n_filters=8, num_groups=2, stride_factor=4)
    fb = fe.filterbank
    g0 = fb.clamped_geometry()
    with torch.no_grad():
        fb.center_freqs[:4] = 0.05  # much lower: larger conv stride for group 0
        fb.bandwidths[0] = 1e4  # above the bound: clamped at the next forward
    g1 = fb.clamped_geometry()
    assert g1[0].conv_stride > g0[0].conv_stride
    assert fb.bandwidths[0].item() == pytest.approx(401 * Z, rel=1e-6)
    opt = torch.optim.SGD(fb.parameters(), lr=10.)
    fe(torch.randn(2, 800)).sum().backward()
    opt.step()
    assert fb.clamped_geometry() == fb.geometry()
    fresh = eleaf.EfficientLeaf(n_filters=8, num_groups=2, stride_factor=4)
    fb.load_state_dict({k[len('filterbank.'):]: v for k, v in fresh.state_dict().items()
                        if k.startswith('filterbank.')})
    assert fb.clamped_geometry() == g0
    fb.double()
    assert fb.clamped_geometry() == g0 and fb.center_freqs.dtype == torch.float64
    y = fb(torch.randn(1, 1, 500, dtype=torch.float64))
    assert y.dtype == torch.float64
    assert isinstance(eleaf.Leaf(compression=None).compression, eleaf.PCEN)


@pytest.mark.parametrize('backend', ['torch', 'auto'])
def test_data_edits_take_effect(backend):
    """Editing the parameters through .data (an EMA of weights, a manual copy) changes the
    next output exactly as a fresh module with those values would compute it."""
    torch.manual_seed(0)
    x = torch.randn(2, 1600)
    fe = eleaf.EfficientLeaf(n_filters=8, num_groups=2, stride_factor=4, compression='pcen',
                             backend=backend)
    fe(x)
    other = eleaf.EfficientLeaf(n_filters=8, num_groups=2, stride_factor=4,
                                compression='pcen', backend=backend)
    with torch.no_grad():
        other.filterbank.center_freqs.mul_(0.3)   # a different geometry
        other.filterbank.bandwidths.mul_(1.7)
    assert other.filterbank.geometry() != fe.filterbank.geometry()
    for name, p in fe.named_parameters():
        p.data = dict(other.named_parameters())[name].data.clone()   # replaced storage
    torch.testing.assert_close(fe(x), other(x), rtol=0, atol=0)
    fe2 = eleaf.EfficientLeaf(n_filters=8, num_groups=2, stride_factor=4, compression='pcen',
                              backend=backend)
    fe2(x)
    for name, p in fe2.named_parameters():
        p.data.copy_(dict(other.named_parameters())[name].data)   # in place, no version bump
    torch.testing.assert_close(fe2(x), other(x), rtol=0, atol=0)


def test_constructed_in_inference_mode():
    """A frontend constructed under torch.inference_mode() runs inside it and outside it
    under no_grad (like any module whose parameters are inference tensors), with the numbers
    of one constructed normally."""
    x = torch.randn(2, 1600)
    ref = eleaf.EfficientLeaf(n_filters=80, num_groups=8, conv_win_factor=6, stride_factor=16)
    ref.eval()
    with torch.inference_mode():
        fe = eleaf.EfficientLeaf(n_filters=80, num_groups=8, conv_win_factor=6,
                                 stride_factor=16)
        fe.eval()
        inside = fe(x)
    with torch.no_grad():
        outside = fe(x)
    want = ref(x)
    torch.testing.assert_close(inside, want, rtol=0, atol=0)
    torch.testing.assert_close(outside, want, rtol=0, atol=0)


@pytest.mark.parametrize('backend', ['torch', 'auto'])
def test_non_finite_parameter_is_a_clear_error(backend):
    """A NaN bandwidth (or centre frequency) makes the geometry undefined: one ValueError
    naming the parameter, not 'cannot convert float NaN to integer'."""
    fe = eleaf.EfficientLeaf(n_filters=8, num_groups=2, backend=backend)
    with torch.no_grad():
        fe.filterbank.bandwidths[3] = float('nan')
    with pytest.raises(ValueError, match='1 of the 8 bandwidths are not finite'):
        fe(torch.randn(1, 1600))
    with torch.no_grad():
        fe.filterbank.bandwidths[3] = 5.
        fe.filterbank.center_freqs[0] = float('inf')
    # +inf is clamped to float32(pi) in place: a valid geometry again
    assert torch.isfinite(fe(torch.randn(1, 1600))).all()
    with torch.no_grad():
        fe.filterbank.center_freqs[0] = float('nan')
    with pytest.raises(ValueError, match='center_freqs are not finite'):
        fe(torch.randn(1, 1600))
