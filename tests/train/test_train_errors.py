"""Every error of ``eleaf train`` / ``eleaf eval`` is one line saying what to do."""
import os
import sys

import torch

from eleaf.train import cli
from eleaf.train import model as model_lib

from .helpers import model_dir, results, tiny


def _error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_unknown_dataset(tmp_path, capsys):
    assert cli.main(tiny(tmp_path, extra=['--data-set', 'MNIST'])) == 2
    msg = _error(capsys)
    assert "unknown data set 'MNIST'" in msg and '--data-set synthetic' in msg


def test_missing_data_directory(tmp_path, capsys):
    missing = os.path.join(str(tmp_path), 'nowhere')
    assert cli.main(tiny(tmp_path, extra=['--data-set', 'SPEECHCOMMANDS',
                                          '--data-path', missing])) == 2
    msg = _error(capsys)
    assert 'does not exist' in msg and '--data-path' in msg


def test_paper_dataset_missing(tmp_path, capsys):
    # one line: where the data set was expected and how to get it
    assert cli.main(tiny(tmp_path, extra=['--data-set', 'cremad',
                                          '--data-path', str(tmp_path)])) == 2
    msg = _error(capsys)
    assert 'CREMAD not found' in msg and 'eleaf data prepare CREMAD' in msg
    assert str(tmp_path / 'CREMA-D' / 'AudioWAV') in msg


def test_missing_and_unreadable_checkpoint(tmp_path, capsys):
    assert cli.main(tiny(tmp_path, extra=['--resume', str(tmp_path / 'no.pth')])) == 2
    assert 'does not exist' in _error(capsys)
    bad = tmp_path / 'bad.pth'
    bad.write_bytes(b'not a checkpoint at all' * 10)
    assert cli.main(tiny(tmp_path, extra=['--resume', str(bad)])) == 2
    assert 'is unreadable' in _error(capsys)
    truncated = tmp_path / 'truncated.pth'
    torch.save({'network': {'w': torch.zeros(1000)}}, str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:300])
    from eleaf.train.evaluate import main as eval_main
    assert eval_main(['--checkpoint', str(truncated), '--no-progress']) == 2
    assert 'is unreadable' in _error(capsys)
    not_training = tmp_path / 'tensor.pth'
    torch.save(torch.zeros(3), str(not_training))
    assert eval_main(['--checkpoint', str(not_training), '--no-progress']) == 2
    assert 'not a training checkpoint' in _error(capsys)


def test_incompatible_checkpoint(tmp_path, capsys):
    assert cli.main(tiny(tmp_path, 'Mel')) == 0
    capsys.readouterr()
    path = os.path.join(model_dir(tmp_path), 'net_checkpoint.pth')
    # explicit options that contradict an eleaf checkpoint
    assert cli.main(['--resume', path, '--frontend', 'Leaf', '--no-progress']) == 2
    msg = _error(capsys)
    assert 'incompatible' in msg and '--frontend Mel (checkpoint) vs Leaf (now)' in msg
    # an original-format checkpoint (no stored options) built with another frontend
    ckpt = torch.load(path, weights_only=True)
    original = {k: ckpt[k] for k in ('epoch', 'network', 'optimizer', 'scheduler')}
    opath = str(tmp_path / 'original.pth')
    torch.save(original, opath)
    from eleaf.train.evaluate import main as eval_main
    assert eval_main(['--checkpoint', opath, '--frontend', 'Leaf', '--compression', 'PCEN',
                      '--encoder', 'small', '--input-size', '2000', '--num-classes', '3',
                      '--synthetic-size', '24,8,8', '--no-progress']) == 2
    msg = _error(capsys)
    assert 'does not match the model' in msg and 'missing _frontend.filterbank' in msg


def test_missing_efficientnet_package(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, 'efficientnet_pytorch', None)  # import fails
    argv = tiny(tmp_path)
    argv[argv.index('small')] = 'efficientnet'
    assert cli.main(argv) == 2
    msg = _error(capsys)
    assert "pip install 'eleaf[train]'" in msg and '--encoder small' in msg


def _patch_model(monkeypatch, bad):
    """Training forwards number ``bad`` (1-based) return NaN logits."""
    real = model_lib.build_model

    def build(args, num_classes):
        net = real(args, num_classes)
        forward, calls = net.forward, [0]

        def nan_forward(x):
            out = forward(x)
            if net.training:
                calls[0] += 1
                if calls[0] in bad:
                    return out * float('nan')
            return out

        net.forward = nan_forward
        return net

    monkeypatch.setattr(cli, 'build_model', build)


def test_nonfinite_batches_are_skipped_and_counted(tmp_path, monkeypatch):
    _patch_model(monkeypatch, bad={1, 2})
    assert cli.main(tiny(tmp_path, 'Mel')) == 0
    assert results(tmp_path)['skipped_batches'] == 2


def test_fifth_nonfinite_batch_in_a_row_aborts(tmp_path, monkeypatch, capsys):
    _patch_model(monkeypatch, bad=set(range(1, 100)))
    argv = tiny(tmp_path, 'Mel', extra=['--synthetic-size', '48,8,8'])
    assert cli.main(argv) == 1
    msg = _error(capsys)
    assert '5 non-finite training losses in a row' in msg and 'lower --lr' in msg
