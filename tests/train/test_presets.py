"""eleaf train --preset NAME: the paper's five configurations by name (SPEC §9), the options
given overriding the preset's."""
import importlib.util
import json
import os

import pytest

from eleaf.train import cli
from eleaf.train.presets import PRESETS, expand_preset

from .helpers import model_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse(argv):
    return cli.get_args_parser().parse_args(expand_preset(argv))


def test_presets_are_the_papers_configurations():
    a = parse(['--preset', '8g-opt'])
    assert (a.frontend, a.num_groups, a.conv_win_factor, a.stride_factor) == (
        'EfficientLeaf', 8, 6., 16.)
    assert (a.compression, a.log1p_initial_a, a.log1p_trainable, a.log1p_per_band,
            a.tbn_median_filter, a.tbn_median_filter_append) == ('TBN', 5., True, True, True,
                                                                 True)
    a = parse(['--preset=4g'])
    assert (a.frontend, a.num_groups, a.conv_win_factor, a.compression) == (
        'EfficientLeaf', 4, 4.75, 'TBN')
    a = parse(['--preset', '4g-pcen'])
    assert (a.frontend, a.num_groups, a.conv_win_factor, a.compression) == (
        'EfficientLeaf', 4, 4.75, 'PCEN')
    a = parse(['--preset', 'leaf'])
    assert (a.frontend, a.compression) == ('Leaf', 'PCEN')
    a = parse(['--preset', 'mel'])
    assert (a.frontend, a.compression, a.log1p_initial_a, a.log1p_trainable,
            a.log1p_per_band, a.tbn_median_filter_append) == ('Mel', 'TBN', 5., False, False,
                                                              True)
    assert a.preset == 'mel' and a.batch_size == 256 and a.epochs == 1000


def test_given_options_override_the_preset():
    a = parse(['--num-groups', '2', '--preset', '8g-opt', '--conv-win-factor', '5'])
    assert (a.num_groups, a.conv_win_factor, a.stride_factor) == (2, 5., 16.)
    assert parse(['--num-groups', '2']).preset is None


def test_unknown_preset_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        parse(['--preset', 'nosuch'])
    assert info.value.code == 2 and 'nosuch' in capsys.readouterr().err


def test_presets_match_the_experiment_list():
    spec = importlib.util.spec_from_file_location('eleaf_experiments_run',
                                                  os.path.join(ROOT, 'experiments', 'run.py'))
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    configs = {tuple(c.args) for c in run.CONFIGS}
    assert configs == {tuple(v) for v in PRESETS.values()}


def test_train_with_a_preset(tmp_path, capsys):
    argv = ['--preset', '8g-opt', '--encoder', 'small', '--input-size', '2000',
            '--num-classes', '3', '--synthetic-size', '16,8,8', '--batch-size', '8',
            '--epochs', '1', '--seed', '3', '--output-dir', str(tmp_path), '--model-name',
            'run', '--no-progress', '--no-tensorboard']
    assert cli.main(argv) == 0
    with open(os.path.join(model_dir(tmp_path), 'args.json')) as f:
        args = json.load(f)
    args = args.get('args', args)
    assert args['preset'] == '8g-opt' and args['num_groups'] == 8
    assert args['stride_factor'] == 16 and args['frontend'] == 'EfficientLeaf'
