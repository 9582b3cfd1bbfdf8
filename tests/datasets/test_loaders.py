"""The six loaders on miniature copies in the real layouts: classes, split membership,
unreadable files, resampling, mixdown, the BirdCLEF validation crop, missing data sets."""
import argparse
import logging
import math
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from eleaf.datasets import registry
from eleaf.datasets.base import AudioDataset
from eleaf.train.data import DataError, EvalWindows, build_datasets

from . import fake_layouts
from .helpers import dominant_frequency, original_grouped_split

SPLITS = ('train', 'val', 'test')

#: the original's class lists (EfficientLEAF datasets/*.py), typed here independently
ORIGINAL_CLASSES = {
    'SPEECHCOMMANDS': ['backward', 'bed', 'bird', 'cat', 'dog', 'down', 'eight', 'five',
                       'follow', 'forward', 'four', 'go', 'happy', 'house', 'learn', 'left',
                       'marvin', 'nine', 'no', 'off', 'on', 'one', 'right', 'seven', 'sheila',
                       'six', 'stop', 'three', 'tree', 'two', 'up', 'visual', 'wow', 'yes',
                       'zero'],
    'CREMAD': ['NEU', 'HAP', 'SAD', 'ANG', 'FEA', 'DIS'],
    'VOXFORGE': ['DE', 'EN', 'ES', 'FR', 'IT', 'RU'],
    'NSYNTH_PITCH': [str(p) for p in range(128)],
    'NSYNTH_INST': ['bass', 'brass', 'flute', 'guitar', 'keyboard', 'mallet', 'organ', 'reed',
                    'string', 'synth_lead', 'vocal'],
}


def expected_label(name, fake, path):
    if name == 'NSYNTH_PITCH':
        return fake.labels[path][0]
    if name == 'NSYNTH_INST':
        return ORIGINAL_CLASSES[name].index(fake.labels[path][1])
    if name == 'BIRDCLEF2021':
        return sorted(set(fake.labels.values())).index(fake.labels[path])
    return ORIGINAL_CLASSES[name].index(fake.labels[path])


def expected_splits(name, fake):
    """{path: split}: the official lists, or the original's grouped split."""
    if fake.splits:
        return fake.splits
    split_of = original_grouped_split(fake.groups_listed)
    return {path: split_of[group] for path, group in fake.groups.items()}


@pytest.fixture(scope='module')
def copies(tmp_path_factory):
    """{name: (fake, (train, val, test, num_classes))} of one miniature copy per data set."""
    out = {}
    for name, make in fake_layouts.MAKERS.items():
        fake = make(str(tmp_path_factory.mktemp(name.lower())))
        out[name] = fake, registry.build(name, fake.data_path)
    return out


@pytest.mark.parametrize('name', registry.NAMES)
def test_classes_labels_and_split_membership(copies, name):
    fake, (*sets, num_classes) = copies[name]
    if name == 'BIRDCLEF2021':  # the sorted primary labels of the metadata
        classes = sorted(set(fake.labels.values()))
    else:
        classes = ORIGINAL_CLASSES[name]
    assert num_classes == len(classes)
    expected = expected_splits(name, fake)
    for split, ds in zip(SPLITS, sets):
        assert list(ds.classes) == classes
        paths = [r.path for r in ds.records]
        assert len(paths) == len(set(paths))
        assert set(paths) == {p for p, s in expected.items() if s == split}, split
        assert not set(paths) & set(fake.ignored)
        for r in ds.records:
            assert r.label == expected_label(name, fake, r.path), r.path
    assert sum(len(ds) for ds in sets) == len(fake.labels)


def test_speechcommands_lists_keep_their_order(copies):
    fake, (train, val, test, _) = copies['SPEECHCOMMANDS']
    root = os.path.join(fake.data_path, 'SpeechCommands', 'speech_commands_v0.02')
    for ds, listing in ((val, 'validation_list.txt'), (test, 'testing_list.txt')):
        with open(os.path.join(root, listing)) as f:
            listed = [os.path.join(root, *line.strip().split('/')) for line in f]
        assert [r.path for r in ds.records] == listed
    assert [r.path for r in train.records] == sorted(r.path for r in train.records)


@pytest.mark.parametrize('name', registry.NAMES)
def test_items_are_float32_waveforms_and_labels(copies, name):
    fake, (*sets, _) = copies[name]
    for ds in sets:
        for i in range(len(ds)):
            x, label = ds[i]
            assert x.dtype == torch.float32 and x.ndim == 2 and x.shape[0] == 1
            assert isinstance(label, int)
            # only the corrupt file of an evaluation split is empty (left out there)
            empty = ds.skip_unreadable and ds.records[i].path == fake.corrupt
            assert (x.shape[1] == 0) == empty


@pytest.mark.parametrize('name', registry.NAMES)
def test_corrupt_file_is_replaced_in_training_and_left_out_in_evaluation(tmp_path, caplog,
                                                                         name):
    fake = fake_layouts.MAKERS[name](str(tmp_path))
    sets = registry.build(name, fake.data_path)[:3]
    assert [ds.skip_unreadable for ds in sets] == [False, True, True]
    ds = next(ds for ds in sets if fake.corrupt in [r.path for r in ds.records])
    i = [r.path for r in ds.records].index(fake.corrupt)
    j = (i + 1) % len(ds)
    # the same recordings as a training split: the next readable recording, its label
    train_like = AudioDataset(ds.records, ds.classes, name='train-like')
    with caplog.at_level(logging.WARNING, logger='eleaf'):
        x, label = train_like[i]
        again, _ = train_like[i]
    assert label == ds.records[j].label
    reference = sf.read(ds.records[j].path, dtype='float32', always_2d=True)[0]
    assert x.shape[1] > 0 and torch.equal(x, again)
    if sf.info(ds.records[j].path).samplerate == 16000 and name != 'BIRDCLEF2021':
        np.testing.assert_allclose(x[0].numpy(), reference.mean(axis=1), atol=1e-6)
    assert train_like.num_unreadable == 1 and list(train_like.unreadable) == [fake.corrupt]
    warnings = [r for r in caplog.records if fake.corrupt in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    # as an evaluation split: an empty waveform with its own label, no windows to evaluate
    eval_like = AudioDataset(ds.records, ds.classes, name='eval-like', skip_unreadable=True)
    x, label = eval_like[i]
    assert x.shape == (1, 0) and label == ds.records[i].label
    windows, label, index = EvalWindows(eval_like, 2000)[i]
    assert windows.shape == (0, 1, 2000) and index == i
    assert eval_like.num_unreadable == 1
    assert all(d.num_unreadable == 0 for d in sets)  # nothing was read through them


@pytest.mark.parametrize('name', registry.NAMES)
def test_other_sample_rates_are_resampled_to_16k(copies, name):
    fake, (*sets, _) = copies[name]
    path, rate, freq = fake.other_rate
    ds = next(ds for ds in sets if path in [r.path for r in ds.records])
    x = ds[[r.path for r in ds.records].index(path)][0][0].numpy()
    assert x.shape[0] == math.ceil(sf.info(path).frames * 16000 / rate)
    assert abs(dominant_frequency(x, 16000) - freq) <= 16000 / len(x)


@pytest.mark.parametrize('name', ['CREMAD', 'VOXFORGE', 'BIRDCLEF2021'])
def test_stereo_files_are_mixed_down(copies, name):
    fake, (*sets, _) = copies[name]
    ds = next(ds for ds in sets if fake.stereo in [r.path for r in ds.records])
    x = ds[[r.path for r in ds.records].index(fake.stereo)][0]
    assert x.shape[0] == 1
    stereo, rate = sf.read(fake.stereo, dtype='float32')
    if rate == 16000:
        np.testing.assert_allclose(x[0].numpy(), stereo.mean(axis=1), atol=1e-6)
    else:  # both channels' tones (f and 1.5 f) are there with equal weight
        spectrum = np.abs(np.fft.rfft(x[0].numpy()))
        f = dominant_frequency(x[0].numpy(), 16000)
        other = spectrum[int(round(1.5 * f * len(x[0]) / 16000))]
        assert 0.7 < other / spectrum.max() <= 1.0


def test_birdclef_validation_keeps_the_first_16_seconds(copies):
    fake, (train, val, test, _) = copies['BIRDCLEF2021']
    long_in_val = 0
    for ds, cap in ((train, None), (val, 16 * 16000), (test, None)):
        for i, r in enumerate(ds.records):
            if r.path == fake.corrupt:
                continue
            info = sf.info(r.path)
            full = math.ceil(info.frames * 16000 / info.samplerate)
            x = ds[i][0]
            assert x.shape[1] == (full if cap is None else min(cap, full))
            long_in_val += cap is not None and full > cap
    assert long_in_val >= 1


def test_voxforge_speakers_of_absent_sessions_take_part_in_the_split(copies):
    fake, (train, val, test, _) = copies['VOXFORGE']
    present = set(fake.groups.values())
    assert set(fake.groups_listed) - present == {'ghost'}
    # the split of the present speakers is the one over all listed speakers
    split_of = original_grouped_split(fake.groups_listed)
    for split, ds in zip(SPLITS, (train, val, test)):
        assert {r.group for r in ds.records} == {g for g in present if split_of[g] == split}


@pytest.mark.parametrize('name', registry.NAMES)
def test_missing_data_set_names_the_expected_place(tmp_path, name):
    with pytest.raises(DataError) as info:
        registry.build(name, str(tmp_path))
    message = str(info.value)
    assert '\n' not in message
    assert os.path.abspath(registry.location(name, str(tmp_path))) in message
    assert 'eleaf data prepare %s' % name in message
    args = argparse.Namespace(data_set=name.lower(), data_path=str(tmp_path))
    with pytest.raises(DataError, match='eleaf data prepare %s' % name):
        build_datasets(args)


def test_missing_metadata_file_names_the_file(tmp_path):
    fake = fake_layouts.make_speechcommands(str(tmp_path))
    listing = os.path.join(fake.data_path, 'SpeechCommands', 'speech_commands_v0.02',
                           'testing_list.txt')
    os.remove(listing)
    with pytest.raises(DataError, match=listing.replace('.', r'\.')):
        registry.build('SPEECHCOMMANDS', fake.data_path)


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(DataError, match='unknown data set'):
        registry.build('TIMIT', str(tmp_path))
    assert registry.canonical('nsynth_inst') == 'NSYNTH_INST'
