"""load_audio (resampling, mixdown, errors) and the grouped split."""
import math

import numpy as np
import pytest
import soundfile as sf

from eleaf.datasets import splits
from eleaf.datasets.audio import AudioError, check_audio, load_audio

from .fake_layouts import tone, write, write_corrupt
from .helpers import dominant_frequency, original_grouped_split


@pytest.mark.parametrize('rate, fmt', [(44100, 'WAV'), (8000, 'WAV'), (48000, 'FLAC'),
                                       (32000, 'OGG'), (16000, 'WAV')])
def test_resampling_keeps_the_frequency_and_the_duration(tmp_path, rate, fmt):
    ext = {'WAV': 'wav', 'FLAC': 'flac', 'OGG': 'ogg'}[fmt]
    path = write(str(tmp_path / ('a.' + ext)), tone(1000., 0.5, rate), rate, format=fmt)
    x = load_audio(path, 16000)
    assert x.dtype == np.float32 and x.ndim == 1
    assert x.shape[0] == math.ceil(sf.info(path).frames * 16000 / rate)
    assert abs(dominant_frequency(x, 16000) - 1000.) <= 16000 / len(x)
    # amplitude 0.5 survives (away from the edges)
    assert abs(np.max(np.abs(x[1000:-1000])) - 0.5) < 0.03


def test_resampling_to_other_rates(tmp_path):
    path = write(str(tmp_path / 'a.wav'), tone(440., 0.5))
    x = load_audio(path, 22050)
    assert x.shape == (math.ceil(8000 * 22050 / 16000),)
    assert abs(dominant_frequency(x, 22050) - 440.) <= 22050 / len(x)


def test_stereo_is_mixed_down_to_the_mean(tmp_path):
    stereo = tone(700., 0.2, channels=2)
    path = write(str(tmp_path / 's.wav'), stereo, subtype='FLOAT')
    np.testing.assert_allclose(load_audio(path, 16000), stereo.mean(axis=1), atol=1e-7)
    both = load_audio(path, 16000, mono=False)
    assert both.shape == (2, len(stereo))
    np.testing.assert_allclose(both, stereo.T, atol=1e-7)


def test_max_length_keeps_the_beginning(tmp_path):
    x = tone(300., 1.0, 32000)
    path = write(str(tmp_path / 'a.wav'), x, 32000, subtype='FLOAT')
    full = load_audio(path, 16000)
    head = load_audio(path, 16000, max_length=4000)
    assert head.shape == (4000,)
    # only the last few samples differ (the resampling filter sees the cut)
    np.testing.assert_allclose(head[:3900], full[:3900], atol=1e-4)
    assert load_audio(path, 16000, max_length=10 ** 6).shape == full.shape


@pytest.mark.parametrize('kind', ['corrupt', 'empty', 'header-only', 'missing', 'lfs', 'nan'])
def test_unusable_files_raise_audio_error(tmp_path, kind):
    path = str(tmp_path / 'x.wav')
    if kind == 'corrupt':
        write_corrupt(path)
    elif kind == 'empty':
        open(path, 'wb').close()
    elif kind == 'header-only':
        write(path, tone(440., 0.1))
        with open(path, 'r+b') as f:
            f.truncate(44)
    elif kind == 'lfs':
        with open(path, 'w') as f:
            f.write('version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 1\n')
    elif kind == 'nan':
        x = tone(440., 0.1)
        x[5] = np.nan
        write(path, x, subtype='FLOAT')
    with pytest.raises(AudioError) as info:
        load_audio(path, 16000)
    assert info.value.path == path and path in str(info.value)
    if kind == 'lfs':
        assert 'Git LFS' in info.value.reason
    if kind != 'nan':  # the header check does not decode the samples
        with pytest.raises(AudioError):
            check_audio(path)


def test_check_audio_accepts_a_good_file(tmp_path):
    check_audio(write(str(tmp_path / 'a.ogg'), tone(440., 0.3, 32000), 32000, format='OGG'))


def test_split_boundaries_follow_the_original():
    # 0.7 + 0.1 == 0.7999999999999999: with 10 groups the validation split is empty
    assert splits.split_boundaries(10) == [(0, 7), (7, 7), (7, 10)]
    assert splits.split_boundaries(91) == [(0, 63), (63, 72), (72, 91)]  # CREMA-D's speakers
    assert splits.split_boundaries(7) == [(0, 4), (4, 5), (5, 7)]
    assert splits.split_boundaries(3) == [(0, 2), (2, 2), (2, 3)]
    with pytest.raises(ValueError):
        splits.split_boundaries(2)


@pytest.mark.parametrize('n', [3, 7, 10, 25, 91, 397])
def test_split_groups_matches_the_original(n):
    groups = ['g%03d' % i for i in range(n)][::-1] * 2  # any order, repeated
    assert splits.split_groups(groups) == original_grouped_split(groups)
