"""One tiny epoch of ``eleaf train`` on the miniature copy of each of the six data sets."""
import json
import os

import pytest

from eleaf.datasets import registry
from eleaf.train import cli

from . import fake_layouts
from .test_loaders import expected_splits

NUM_CLASSES = {'SPEECHCOMMANDS': 35, 'CREMAD': 6, 'VOXFORGE': 6, 'NSYNTH_PITCH': 128,
               'NSYNTH_INST': 11, 'BIRDCLEF2021': 3}


@pytest.mark.parametrize('name', registry.NAMES)
def test_one_epoch_of_eleaf_train(tmp_path, name):
    fake = fake_layouts.MAKERS[name](str(tmp_path / 'data'))
    out = str(tmp_path / 'out')
    rc = cli.main(['--data-set', name, '--data-path', fake.data_path, '--encoder', 'small',
                   '--input-size', '2000', '--batch-size', '8', '--batch-size-eval', '64',
                   '--epochs', '1', '--frontend', 'Mel', '--compression', 'TBN',
                   '--no-progress', '--no-tensorboard', '--output-dir', out, '--model-name', 'run',
                   '--seed', '1'])
    assert rc in (0, None)
    model_dir = os.path.join(out, 'models', 'run')
    with open(os.path.join(model_dir, 'results.json')) as f:
        results = json.load(f)
    with open(os.path.join(model_dir, 'args.json')) as f:
        args = json.load(f)
    assert args['num_classes'] == NUM_CLASSES[name]
    # every recording of val and test is evaluated once, except the corrupt file (left out)
    expected = expected_splits(name, fake)
    splits = [split for path, split in expected.items() if path != fake.corrupt]
    assert results['last']['val_recordings'] == splits.count('val')
    assert results['last']['test_recordings'] == splits.count('test')
    assert 0 <= results['last']['test_acc'] <= 1
