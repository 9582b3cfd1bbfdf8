"""``eleaf features``: the saved features equal the frontend applied directly to the
loudness-normalised audio (whole files, chunks, trained checkpoints), PNGs are written and
bad files are reported without stopping the others."""
import os

import numpy as np
import pytest
import soundfile as sf
import torch

import eleaf
from eleaf.cli import features as cli
from eleaf.datasets.audio import load_audio
from eleaf.train import cli as train_cli
from tests.train.helpers import model_dir, tiny

SR = 16000


def _tone(seconds, rate, freqs=(440.,), amp=0.1, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    noise = 0.01 * np.random.default_rng(seed).standard_normal(t.shape)
    return sum(amp * np.sin(2 * np.pi * f * t) for f in freqs) + noise


def _normalised(x):
    """Loudness normalisation written out: gain 10^(15/20) / (unbiased std + 1e-9), at most
    10^(30/20)."""
    x = np.asarray(x, dtype=np.float64)
    gain = min(10 ** (30 / 20), 10 ** (15 / 20) / (np.std(x, ddof=1) + 1e-9))
    return torch.from_numpy((x * gain).astype(np.float32))


def _apply(frontend, x):
    """(C, F, T) output of ``frontend`` in eval mode for one waveform (L,)."""
    frontend.eval()
    with torch.no_grad():
        y = frontend(x.reshape(1, 1, -1))[0]
    return (y if y.ndim == 3 else y[None]).numpy()


@pytest.fixture(scope='module')
def wavs(tmp_path_factory):
    """A 1.3 s 16 kHz mono file and a 0.9 s 44.1 kHz stereo file."""
    d = tmp_path_factory.mktemp('audio')
    mono, stereo = str(d / 'mono.wav'), str(d / 'stereo.wav')
    sf.write(mono, _tone(1.3, SR).astype(np.float32), SR, subtype='FLOAT')
    left, right = _tone(0.9, 44100, (440.,)), _tone(0.9, 44100, (1500.,), amp=0.05, seed=1)
    sf.write(stereo, np.stack([left, right], 1).astype(np.float32), 44100, subtype='FLOAT')
    return mono, stereo


def test_initial_frontend_and_png(wavs, tmp_path, capsys):
    mono, stereo = wavs
    out = tmp_path / 'feats'
    assert cli.main([mono, stereo, '--output-dir', str(out), '--png', '--no-progress']) == 0
    assert sorted(os.listdir(out)) == ['mono.npy', 'mono.png', 'stereo.npy', 'stereo.png']
    assert 'wrote 2 of 2 feature files' in capsys.readouterr().out
    # the default: the paper's EfficientLEAF (4 groups, window factor 4.75, LogTBN)
    frontend = eleaf.EfficientLeaf(n_filters=40, num_groups=4, conv_win_factor=4.75)
    x, rate = sf.read(mono, dtype='float32')
    assert rate == SR
    expected = _apply(frontend, _normalised(x))
    got = np.load(out / 'mono.npy')
    assert got.dtype == np.float32 and got.shape == (2, 40, 130) == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # 44.1 kHz stereo: resampled to 16 kHz and mixed down, 0.9 s -> 90 frames
    got = np.load(out / 'stereo.npy')
    assert got.shape == (2, 40, 90)
    audio = load_audio(stereo, SR)
    assert audio.shape == (14400,)
    np.testing.assert_allclose(got, _apply(frontend, _normalised(audio)), rtol=1e-5,
                               atol=1e-5)
    for png in ('mono.png', 'stereo.png'):
        with open(out / png, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'


@pytest.mark.parametrize('name,frontend', [('Leaf', lambda: eleaf.Leaf(n_filters=40)),
                                           ('Mel', lambda: eleaf.Mel(n_filters=40))])
def test_paper_configuration_of_each_frontend(wavs, tmp_path, name, frontend):
    mono = wavs[0]
    out = tmp_path / 'mono.npy'
    assert cli.main([mono, '--frontend', name, '--output-dir', str(tmp_path),
                     '--no-progress']) == 0
    x, _ = sf.read(mono, dtype='float32')
    expected = _apply(frontend(), _normalised(x))
    got = np.load(out)
    assert got.shape == expected.shape == ((1, 40, 130) if name == 'Leaf' else (2, 40, 127))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_without_normalisation_next_to_the_file(tmp_path):
    wav = tmp_path / 'quiet.wav'
    x = (0.01 * _tone(0.5, SR)).astype(np.float32)
    sf.write(str(wav), x, SR, subtype='FLOAT')
    assert cli.main([str(wav), '--no-normalize', '--frontend', 'Leaf', '--no-progress']) == 0
    np.testing.assert_allclose(np.load(tmp_path / 'quiet.npy'),
                               _apply(eleaf.Leaf(), torch.from_numpy(x)), rtol=1e-5, atol=1e-6)


def test_chunks(wavs, tmp_path):
    mono = wavs[0]
    assert cli.main([mono, '--chunk', '0.5', '--output-dir', str(tmp_path), '--png',
                     '--no-progress']) == 0
    got = np.load(tmp_path / 'mono.npy')
    x, _ = sf.read(mono, dtype='float32')
    frontend = eleaf.EfficientLeaf(conv_win_factor=4.75)
    # 1.3 s: two 0.5 s chunks, each normalised on its own; the 0.3 s tail is dropped
    expected = np.stack([_apply(frontend, _normalised(x[i * 8000:(i + 1) * 8000]))
                         for i in range(2)])
    assert got.shape == expected.shape == (2, 2, 40, 50)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert os.path.exists(tmp_path / 'mono.png')
    # a file shorter than one chunk is zero-padded to it
    assert cli.main([mono, '--chunk', '2', '--output-dir', str(tmp_path), '--no-progress']) == 0
    padded = _normalised(np.concatenate([x, np.zeros(32000 - len(x), np.float32)]))
    np.testing.assert_allclose(np.load(tmp_path / 'mono.npy'), _apply(frontend, padded)[None],
                               rtol=1e-5, atol=1e-5)


def test_bad_files_are_reported_and_the_others_written(wavs, tmp_path, capsys):
    mono = wavs[0]
    broken = tmp_path / 'broken.wav'
    broken.write_text('not audio')
    missing = tmp_path / 'missing.wav'
    out = tmp_path / 'out'
    assert cli.main([str(missing), str(broken), mono, '--output-dir', str(out),
                     '--no-progress']) == 1
    captured = capsys.readouterr()
    assert 'cannot read %s: no such file' % missing in captured.err
    assert 'cannot read %s' % broken in captured.err
    assert 'wrote 1 of 3 feature files, 2 failed' in captured.out
    assert os.listdir(out) == ['mono.npy']


def test_usage_errors(wavs, tmp_path, capsys):
    mono = wavs[0]
    other = tmp_path / 'mono.wav'
    other.write_bytes(open(mono, 'rb').read())
    assert cli.main([mono, str(other), '--output-dir', str(tmp_path / 'o'),
                     '--no-progress']) == 2
    assert 'would both be written to' in capsys.readouterr().err
    assert cli.main([mono, '--chunk', '0', '--no-progress']) == 2
    assert '--chunk must be a positive number' in capsys.readouterr().err
    assert cli.main([mono, '--checkpoint', str(tmp_path / 'nope.pth'), '--no-progress']) == 2
    assert 'does not exist' in capsys.readouterr().err


def test_checkpoint_of_eleaf_train(wavs, tmp_path, capsys):
    assert train_cli.main(tiny(tmp_path / 'train', 'EfficientLeaf')) == 0
    ckpt = torch.load(os.path.join(model_dir(tmp_path / 'train'), 'net_last_model.pth'),
                      map_location='cpu', weights_only=True)
    state = {k[len('_frontend.'):]: v for k, v in ckpt['network'].items()
             if k.startswith('_frontend.')}
    # move the learned parameters visibly away from the initial ones
    state['compression.log1p.a'] = state['compression.log1p.a'] + 0.5
    state['filterbank.center_freqs'] = state['filterbank.center_freqs'] * 1.05
    ckpt['network'].update({'_frontend.' + k: v for k, v in state.items()})
    path = str(tmp_path / 'trained.pth')
    torch.save(ckpt, path)
    mono = wavs[0]
    out = tmp_path / 'mono.npy'
    capsys.readouterr()
    assert cli.main([mono, '--checkpoint', path, '--output-dir', str(tmp_path),
                     '--no-progress']) == 0
    assert 'weights: %s (epoch 1)' % path in capsys.readouterr().out
    frontend = eleaf.EfficientLeaf(n_filters=40, num_groups=4, conv_win_factor=4.75)
    frontend.load_state_dict(state)
    x, _ = sf.read(mono, dtype='float32')
    expected = _apply(frontend, _normalised(x))
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-5)
    initial = _apply(eleaf.EfficientLeaf(conv_win_factor=4.75), _normalised(x))
    assert not np.allclose(expected, initial, atol=1e-3)
    # options given explicitly must agree with the checkpoint's
    assert cli.main([mono, '--checkpoint', path, '--frontend', 'EfficientLeaf',
                     '--output-dir', str(tmp_path), '--no-progress']) == 0
    assert cli.main([mono, '--checkpoint', path, '--frontend', 'Mel', '--output-dir',
                     str(tmp_path), '--no-progress']) == 2
    assert '--frontend EfficientLeaf (checkpoint) vs Mel (now)' in capsys.readouterr().err
    # a checkpoint without stored options (as the original main.py writes): the options
    # come from the command line, here the defaults
    original = str(tmp_path / 'original.pth')
    torch.save({k: ckpt[k] for k in ('epoch', 'network', 'optimizer', 'scheduler')}, original)
    os.remove(out)
    assert cli.main([mono, '--checkpoint', original, '--output-dir', str(tmp_path),
                     '--no-progress']) == 0
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-5, atol=1e-5)
    assert cli.main([mono, '--checkpoint', original, '--frontend', 'Leaf', '--output-dir',
                     str(tmp_path), '--no-progress']) == 2
    assert 'does not match the model built from the options' in capsys.readouterr().err
