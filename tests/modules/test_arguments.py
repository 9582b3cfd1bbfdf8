"""Constructor arguments of the public modules (issue #22): every out-of-range value raises
one ValueError naming the module, the argument, the value and the valid range, before
anything is built; every configuration of the original code and the paper still builds and
gives finite output. A hypothesis fuzz test of the frontends' arguments asserts "finite
output or ValueError", never NaN and never another exception."""
import re
import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eleaf
from eleaf.modules import _validate as V
from eleaf.modules.inputs import OneDimensionalInputWarning

EL, LEAF, MEL = eleaf.EfficientLeaf, eleaf.Leaf, eleaf.Mel


def _raises(factory, *fragments):
    """One ValueError whose message holds every fragment (argument, value, range)."""
    with pytest.raises(ValueError) as info:
        factory()
    msg = str(info.value)
    assert len(msg.splitlines()) == 1, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# --- the reported cases ----------------------------------------------------------------------

@pytest.mark.parametrize('cls', [EL, LEAF, MEL])
def test_max_freq_above_nyquist(cls):
    _raises(lambda: cls(sample_rate=8000), '%s: max_freq must be in (min_freq, sample_rate / '
            '2] = (60, 4000] Hz' % cls.__name__, 'got 7800.0', 'sample_rate=8000')
    cls(sample_rate=8000, max_freq=4000)  # at Nyquist: fine


@pytest.mark.parametrize('cls', [EL, LEAF, MEL])
@pytest.mark.parametrize('lo, hi', [(7900, 7800), (500, 500)])
def test_min_freq_not_below_max_freq(cls, lo, hi):
    _raises(lambda: cls(min_freq=lo, max_freq=hi), 'min_freq must be below max_freq',
            'got min_freq=%r, max_freq=%r' % (lo, hi))


@pytest.mark.parametrize('cls', [EL, LEAF, MEL])
@pytest.mark.parametrize('value', [0, -5., float('nan'), float('inf')])
def test_window_len_and_stride_must_be_positive(cls, value):
    for name in ('window_len', 'window_stride'):
        _raises(lambda: cls(**{name: value}), '%s: %s must be > 0, got %r'
                % (cls.__name__, name, value))


@pytest.mark.parametrize('cls', [EL, LEAF])
def test_window_too_short_for_a_gaussian(cls):
    # 0.1 ms at 16 kHz: one sample, a Gaussian over one tap is 0/0 (it gave all-NaN output)
    _raises(lambda: cls(window_len=0.1), 'window_len must give a window of 3 to 65537 samples',
            '[0.125, 4096.12) ms', 'got 0.1 (1 samples)')
    _raises(lambda: cls(window_stride=0.05), 'window_stride must give a hop of 1 to 65537 '
            'samples', 'got 0.05 (0 samples)')


def test_efficientleaf_pool_window_needs_three_taps():
    # the hop as long as the window: a low group's conv stride reaches the hop and its
    # pooling window has int(161 / 160 + 0.5) = 1 tap: NaN (seen with stride_factor=16)
    _raises(lambda: EL(window_len=10, window_stride=10), 'window_len=10 ms (161 samples) must '
            'be at least 1.5 x window_stride=10 ms (160 samples)', 'lower window_stride to <= '
            '6.708 ms')
    EL(window_len=15, window_stride=10)  # 241 >= 1.5 * 160
    LEAF(window_len=10, window_stride=10)  # LEAF pools with the whole window: fine


@pytest.mark.parametrize('value, fragments', [
    (0, ['conv_win_factor must be in [2.67, 64], got 0']),
    (2, ['got 2']),   # 1-tap filters for bandwidths below 1.5 samples
    (1e4, ['got 10000.0']),
    (float('nan'), ['got nan']),
    ('6', ["must be a real number in [2.67, 64], got '6' (str)"]),
])
def test_conv_win_factor(value, fragments):
    _raises(lambda: EL(conv_win_factor=value), *fragments)


def test_conv_win_factor_bounds_are_the_tap_limits():
    # below 1 / Z a group at the smallest allowed bandwidth 2Z has int(2Z cwf) <= 1: 1 tap
    assert int(2 * V.Z * V.MIN_CONV_WIN_FACTOR) >= 2 > int(2 * V.Z * (1 / V.Z - 1e-9))
    fb = EL(conv_win_factor=V.MIN_CONV_WIN_FACTOR).filterbank
    with torch.no_grad():
        fb.bandwidths.fill_(0.)  # clamped to 2Z in the forward
        fb(torch.randn(1, 1, 800))
    assert min(g.kernel_size for g in fb.geometry()) == 3
    # the kernel cap: 64 is fine at 25 ms, not at 1 s (K = int(16001 Z 64) = 383,799 taps)
    EL(conv_win_factor=64)
    _raises(lambda: EL(window_len=1000, window_stride=10, conv_win_factor=64),
            'gives Gabor kernels of up to %d taps' % int(16001 * V.Z * 64), 'the limit is 65537',
            'conv_win_factor must be <= 10.93 here')


@pytest.mark.parametrize('value', [0, -1, float('nan'), 1001])
def test_stride_factor(value):
    _raises(lambda: EL(stride_factor=value), 'stride_factor must be in (0, 1000], got %r'
            % value)


@pytest.mark.parametrize('cls', [EL, LEAF, MEL])
@pytest.mark.parametrize('value, text', [(0, 'got 0'), (-3, 'got -3'), (4097, 'got 4097'),
                                         (40.0, 'got 40.0 (float)'), (True, 'got True (bool)'),
                                         ('40', "got '40' (str)")])
def test_n_filters(cls, value, text):
    _raises(lambda: cls(n_filters=value), '%s: n_filters must be an integer in [1, 4096]'
            % cls.__name__, text)


def test_num_groups():
    for value in (0, 41, 2.0):
        _raises(lambda: EL(num_groups=value), 'num_groups must be an integer in [1, 40], got')
    EL(n_filters=7, num_groups=7)


def test_compression_names():
    _raises(lambda: EL(compression='PCEN'), "EfficientLeaf: compression must be 'logtbn' or "
            "'pcen' or an nn.Module, got 'PCEN'")
    _raises(lambda: LEAF(compression=3), "Leaf: compression must be 'logtbn' or 'pcen' or an "
            "nn.Module (None: 'pcen'), got 3")
    _raises(lambda: MEL(compression='tbn'), "Mel: compression must be 'logtbn'", "got 'tbn'")
    # the reported case: accepted now, and what it says
    assert isinstance(LEAF(compression='pcen').compression, eleaf.PCEN)
    assert isinstance(LEAF(compression='logtbn').compression, eleaf.LogTBN)
    assert isinstance(MEL(compression='pcen').compression, eleaf.PCEN)
    assert MEL(compression='logtbn').compression.log1p.trainable is False
    # the original's truthiness test: falsy means LEAF's PCEN
    assert isinstance(LEAF(compression=torch.nn.Sequential()).compression, eleaf.PCEN)
    x = torch.randn(2, 4000)
    with torch.no_grad():
        torch.testing.assert_close(LEAF(compression='pcen')(x), LEAF()(x), rtol=0, atol=0)


@pytest.mark.parametrize('sample_rate', [0, -16000, float('nan'), '16k', None])
def test_sample_rate(sample_rate):
    _raises(lambda: EL(sample_rate=sample_rate), 'sample_rate must be')


# --- Mel: every band needs an FFT bin -----------------------------------------------------------

def test_mel_bands_without_bins():
    msg = _raises(lambda: MEL(n_filters=128), 'Mel: n_filters=128 mel bands', 'leave 2 band(s) '
                  '(2, 7) without any FFT bin at window_len=25.0 ms (a 401-point FFT',
                  'use fewer bands (n_filters=')
    works = int(re.search(r'n_filters=(\d+) works', msg).group(1))
    y = MEL(n_filters=works)(torch.randn(2, 4000))
    assert torch.isfinite(y).all()
    _raises(lambda: MEL(min_freq=7799), 'leave 40 band(s)')
    _raises(lambda: eleaf.MelFilter(16000, 401, 128, 60., 7800.),
            'MelFilter: num_bands=128 mel bands', 'winsize=401')


def test_mel_window_stride_zero_is_not_a_hop_of_one():
    _raises(lambda: MEL(window_stride=0), 'Mel: window_stride must be > 0, got 0')
    assert MEL(window_stride=0.01).stft.hopsize == 1  # a tiny stride is a hop of one sample


# --- the other public modules --------------------------------------------------------------

@pytest.mark.parametrize('kwargs, fragments', [
    (dict(num_bands=0), ['PCEN: num_bands must be an integer >= 1, got 0']),
    (dict(num_bands=4, s=0), ['PCEN: s must be in (0, 1], got 0']),
    (dict(num_bands=4, s=1.5), ['s must be in (0, 1], got 1.5']),
    (dict(num_bands=4, alpha=0), ['PCEN: alpha must be in (0, 1], got 0']),  # log(0)
    (dict(num_bands=4, alpha=-1, learn_logs=False), ['alpha must be in [0, 1], got -1']),
    (dict(num_bands=4, alpha=1e5), ['alpha must be in (0, 1], got 100000.0']),  # overflow
    (dict(num_bands=4, delta=-1, learn_logs=False), ['delta must be in [0, 1000000], got -1']),
    (dict(num_bands=4, r=0, learn_logs=False), ['r must be in [0.001, 1], got 0']),
    (dict(num_bands=4, r=2.), ['r must be in [0.001, 1], got 2.0']),  # the forward makes it 1
    (dict(num_bands=4, r=1e-308), ['got 1e-308']),  # 1 / r overflows float32
    (dict(num_bands=4, eps=0), ['eps must be in [1e-30, 1], got 0']),
    (dict(num_bands=4, clamp=-1e-5), ['clamp must be >= 0, got -1e-05']),
    (dict(num_bands=4, learn_logs='yes'), ["learn_logs must be True or False, got 'yes'"]),
])
def test_pcen_arguments(kwargs, fragments):
    _raises(lambda: eleaf.PCEN(**kwargs), *fragments)


def test_pcen_valid_edges():
    x = torch.rand(2, 4, 30)
    for kw in (dict(s=1.0), dict(alpha=0., learn_logs=False), dict(delta=0., learn_logs=False),
               dict(clamp=0.), dict(r=1.), dict(delta=1e6, eps=1.)):
        y = eleaf.PCEN(4, **kw)(x)
        assert torch.isfinite(y).all(), kw


@pytest.mark.parametrize('factory, fragments', [
    (lambda: eleaf.Log1p(a=float('nan')), ['Log1p: a must be in [-30, 30], got nan']),
    (lambda: eleaf.Log1p(a=100), ['got 100']),
    (lambda: eleaf.Log1p(a=1, trainable=True, per_band=True),
     ['Log1p(trainable=True, per_band=True) needs num_bands']),
    (lambda: eleaf.Log1p(a=torch.tensor([1., float('inf')])), ['a must be finite']),
    (lambda: eleaf.TemporalBatchNorm(0), ['TemporalBatchNorm: num_bands must be an integer >= 1']),
    (lambda: eleaf.TemporalBatchNorm(4, per_channel=True),
     ['TemporalBatchNorm(per_channel=True) needs num_channels']),
    (lambda: eleaf.LogTBN(0), ['LogTBN: num_bands must be an integer >= 1, got 0']),
    (lambda: eleaf.LogTBN(4, a=50), ['LogTBN: a must be in [-30, 30], got 50']),
    (lambda: eleaf.LogTBN(4, append_filtered=True),
     ['LogTBN: append_filtered=True needs median_filter=True']),
    (lambda: eleaf.STFT(0, 160), ['STFT: winsize must be an integer in [1, 65537], got 0']),
    (lambda: eleaf.STFT(401, 0), ['STFT: hopsize must be an integer >= 1, got 0']),
    (lambda: eleaf.Squeeze(1.5), ['Squeeze: dim must be an integer, got 1.5']),
    (lambda: eleaf.AudioClassifier(0), ['AudioClassifier: num_outputs must be an integer >= 1']),
    (lambda: eleaf.AudioClassifier(3, frontend='mel'), ["frontend must be an nn.Module"]),
])
def test_other_modules(factory, fragments):
    _raises(factory, *fragments)


def test_logtbn_append_without_median_used_to_fail_in_forward():
    # the original builds it, then fails in the forward with a BatchNorm shape error
    assert eleaf.LogTBN(4, median_filter=True, append_filtered=True)(
        torch.rand(2, 4, 10)).shape == (2, 2, 4, 10)


# --- AudioClassifier: another encoder width --------------------------------------------------

def test_audio_classifier_width_mismatch():
    x = torch.randn(2, 4000)
    clf = eleaf.AudioClassifier(5, eleaf.Mel(), None)
    _raises(lambda: clf(x), 'AudioClassifier: the frontend (no encoder) puts out 2 channels, '
            'but _head is Linear(1280, 5); build the classifier with num_features=2')
    clf = eleaf.AudioClassifier(5, eleaf.Mel(), torch.nn.Conv2d(2, 64, 3))
    _raises(lambda: clf(x), 'the encoder (Conv2d) puts out 64 channels', 'num_features=64')
    clf = eleaf.AudioClassifier(5, eleaf.Mel(), torch.nn.Conv2d(2, 64, 3), num_features=64)
    assert clf(x).shape == (2, 5)
    assert eleaf.AudioClassifier(5)._head.in_features == 1280  # the original's default


# --- a 1-D waveform ----------------------------------------------------------------------------

def test_one_dimensional_input_warns_once_and_keeps_the_original_meaning(monkeypatch):
    from eleaf.modules import inputs
    monkeypatch.setattr(inputs, '_WARNED_1D', [False])
    fe = EL(n_filters=8, num_groups=2)
    x = torch.randn(300)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        y = fe(x)
        fe(x)
        LEAF(n_filters=8)(x)
    ours = [w for w in caught if issubclass(w.category, OneDimensionalInputWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    msg = str(ours[0].message)
    assert ('EfficientLeaf got a 1-D waveform of shape (300,)' in msg and
            'batch of 300 one-sample signals' in msg and 'x[None] (shape (1, 300))' in msg)
    assert ours[0].filename == __file__  # points at the caller
    assert y.shape == (300, 2, 8, 1)  # the original's numbers: L signals of one sample
    with torch.no_grad():
        torch.testing.assert_close(y, fe(x[:, None]), rtol=0, atol=0)


def test_mel_one_dimensional_input():
    msg = _raises(lambda: MEL()(torch.randn(16000)), 'Mel got a 1-D waveform of shape (16000,)',
                  'each shorter than one frame (401 samples)', 'x[None] (shape (1, 16000))')
    assert 'got L = 1' not in msg
    assert MEL()(torch.randn(16000)[None]).shape == (1, 2, 40, 97)


# --- valid configurations keep working -------------------------------------------------------

PAPER = [
    lambda: EL(),
    lambda: EL(n_filters=80, num_groups=8, conv_win_factor=6, stride_factor=16),
    lambda: EL(num_groups=8, conv_win_factor=6, stride_factor=16),
    lambda: EL(num_groups=4, conv_win_factor=4.75, compression='pcen'),
    lambda: EL(num_groups=10, conv_win_factor=3, stride_factor=8),
    lambda: EL(num_groups=2, conv_win_factor=3, stride_factor=1),
    lambda: EL(sample_rate=22050, num_groups=1),
    lambda: EL(sample_rate=8000, max_freq=4000),
    lambda: LEAF(), lambda: LEAF(n_filters=80), lambda: LEAF(sample_rate=22050),
    lambda: MEL(), lambda: MEL(n_filters=80), lambda: MEL(sample_rate=22050),
]


@pytest.mark.parametrize('i', range(len(PAPER)))
def test_paper_configurations_build_and_run(i):
    fe = PAPER[i]()
    with torch.no_grad():
        y = fe(torch.randn(2, 4000))
    assert torch.isfinite(y).all()


# --- fuzz ----------------------------------------------------------------------------------

ANY_NUMBER = st.one_of(st.floats(-1e5, 1e5, allow_nan=False), st.integers(-10, 10 ** 6),
                       st.sampled_from([0, -1, float('nan'), float('inf'), -float('inf'),
                                        1e300, True, '16', None]))
ANY = {'n_filters': st.one_of(st.integers(-3, 5000), ANY_NUMBER),
       'num_groups': st.one_of(st.integers(-3, 60), ANY_NUMBER),
       'compression': st.sampled_from(['logtbn', 'pcen', None, 'PCEN', 'mel', 3, '']),
       'backend': st.sampled_from(['auto', 'torch', 'cpp', 'cuda', 'TORCH'])}


@st.composite
def configs(draw):
    """Mostly valid configurations of the three frontends near the edges of their ranges,
    with 0 to 2 arguments replaced by arbitrary values."""
    cls = draw(st.sampled_from(['EfficientLeaf', 'Leaf', 'Mel']))
    sr = draw(st.sampled_from([4000, 8000, 11025, 16000, 22050, 16000.5]))
    nyq = sr / 2
    n = draw(st.integers(1, 48))
    lo = draw(st.one_of(st.just(0.), st.floats(0, 0.5 * nyq)))
    hi = draw(st.one_of(st.just(nyq), st.floats(lo + 1, nyq).filter(lambda v: v > lo)))
    wl = draw(st.floats(2000. / sr, 40.))
    cfg = dict(n_filters=n, min_freq=lo, max_freq=hi, sample_rate=sr, window_len=wl,
               window_stride=draw(st.floats(1000. / sr, max(1000. / sr, wl / 1.5))),
               compression=draw(st.sampled_from(['logtbn', 'pcen', None])))
    if cls == 'EfficientLeaf':
        cfg.update(num_groups=draw(st.integers(1, n)),
                   conv_win_factor=draw(st.one_of(st.sampled_from([V.MIN_CONV_WIN_FACTOR,
                                                                   3., 4.75, 6., 64.]),
                                                  st.floats(V.MIN_CONV_WIN_FACTOR, 12.))),
                   stride_factor=draw(st.one_of(st.sampled_from([1., 16., 1000.]),
                                                st.floats(1e-3, 40.))))
    names = sorted(cfg)
    for name in draw(st.lists(st.sampled_from(names), max_size=2, unique=True)):
        cfg[name] = draw(ANY.get(name, ANY_NUMBER))
    return cls, cfg


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_fuzz_constructor_arguments(drawn):
    """Any mix of arguments: the module builds and gives finite output and gradients (float32,
    train mode, 0.25 s of noise) for a finite input, or the constructor raises ValueError."""
    name, cfg = drawn
    cls = getattr(eleaf, name)
    try:
        fe = cls(**cfg)
    except ValueError as exc:
        assert str(exc) and len(str(exc).splitlines()) == 1
        return
    sr = float(cfg['sample_rate'])
    length = max(int(sr / 4), fe.stft.winsize + 1 if cls is MEL else 1)
    x = torch.randn(2, length, generator=torch.Generator().manual_seed(0))
    y = fe(x)
    assert torch.isfinite(y).all(), cfg
    y.square().mean().backward()
    for name, p in fe.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), (name, cfg)


def test_fuzz_covers_both_outcomes():
    """The strategy reaches valid and invalid configurations of every frontend (else the fuzz
    test could pass without testing anything)."""
    seen = set()

    @settings(max_examples=150, deadline=None, derandomize=True, database=None)
    @given(configs())
    def collect(drawn):
        name, cfg = drawn
        cls = getattr(eleaf, name)
        try:
            cls(**cfg)
            seen.add((cls.__name__, 'ok'))
        except ValueError:
            seen.add((cls.__name__, 'ValueError'))
    collect()
    assert seen == {(c, o) for c in ('EfficientLeaf', 'Leaf', 'Mel')
                    for o in ('ok', 'ValueError')}, seen


@st.composite
def compression_configs(draw):
    """PCEN or LogTBN arguments near and beyond their ranges."""
    wild = st.one_of(st.floats(-1e6, 1e6, allow_nan=False), ANY_NUMBER)
    if draw(st.booleans()):
        kw = dict(num_bands=draw(st.integers(1, 12)),
                  s=draw(st.one_of(st.floats(1e-4, 1.), wild)),
                  alpha=draw(st.one_of(st.floats(1e-3, 1.), wild)),
                  delta=draw(st.one_of(st.floats(1e-3, 1e6), wild)),
                  r=draw(st.one_of(st.floats(1e-3, 1.), wild)),
                  eps=draw(st.one_of(st.sampled_from([1e-12, 1e-6, 1.]), wild)),
                  learn_logs=draw(st.booleans()),
                  clamp=draw(st.sampled_from([None, 0., 1e-5, -1.])))
        return eleaf.PCEN, kw
    median = draw(st.booleans())
    kw = dict(num_bands=draw(st.integers(1, 12)),
              a=draw(st.one_of(st.floats(-30., 30.), wild)),
              trainable=draw(st.booleans()), per_band=draw(st.booleans()),
              median_filter=median,
              append_filtered=draw(st.booleans()) if median else draw(st.sampled_from(
                  [False, False, True])))
    return eleaf.LogTBN, kw


@settings(max_examples=120, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(compression_configs(), st.sampled_from([1e-8, 1., 1e4]))
def test_fuzz_compression_arguments(drawn, scale):
    """Finite non-negative energies (up to 1e4, float32) give finite output and gradients, or
    the constructor raises ValueError."""
    cls, kw = drawn
    try:
        module = cls(**kw)
    except ValueError as exc:
        assert str(exc) and len(str(exc).splitlines()) == 1
        return
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(3, kw['num_bands'], 9, generator=g) * scale).requires_grad_()
    y = module(x)
    assert torch.isfinite(y).all(), kw
    y.square().mean().backward()
    assert torch.isfinite(x.grad).all(), kw
    for name, p in module.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), (name, kw)
