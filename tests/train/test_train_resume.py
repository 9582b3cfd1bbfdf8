"""Exact resumption: after a checkpoint of a completed epoch, after Ctrl-C within an epoch,
and atomic checkpoint writing."""
import os
import signal

import pytest
import torch

from eleaf.train import checkpoint as ckpt_lib
from eleaf.train import cli, loop

from .helpers import assert_same_state, load, model_dir, results, tiny


def _final_state(out, name):
    ckpt = load(out, name)
    return ckpt['network'], ckpt['optimizer'], ckpt['scheduler']


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
    """A 2-epoch EfficientLEAF run (the reference for the resumed ones)."""
    out = tmp_path_factory.mktemp('ref')
    assert cli.main(tiny(out, 'EfficientLeaf', epochs=2)) == 0
    return out


def test_resume_after_epoch_equals_uninterrupted(uninterrupted, tmp_path):
    assert cli.main(tiny(tmp_path, 'EfficientLeaf', epochs=1)) == 0
    assert load(tmp_path)['epoch'] == 1
    ckpt_path = os.path.join(model_dir(tmp_path), 'net_checkpoint.pth')
    # the options come from the checkpoint; --epochs is given to go on
    assert cli.main(['--resume', ckpt_path, '--epochs', '2', '--no-progress',
                     '--no-tensorboard']) == 0
    ref, out = _final_state(uninterrupted, 'run'), _final_state(tmp_path, 'run')
    assert_same_state(ref[0], out[0])   # network: bit-identical
    assert_same_state(ref[1], out[1])   # Adam state
    assert ref[2] == out[2]             # scheduler
    r_ref, r_out = results(uninterrupted), results(tmp_path)
    for key in ('best', 'last'):
        assert r_ref[key]['test_loss'] == r_out[key]['test_loss']


def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(uninterrupted, tmp_path, monkeypatch,
                                                    capsys):
    def hook(epoch, batches_done):
        if epoch == 2 and batches_done == 1:  # a real SIGINT in the middle of epoch 2
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(loop, '_step_hook', hook)
    argv = tiny(tmp_path, 'EfficientLeaf', epochs=2)
    assert cli.main(argv) == 130
    assert 'interrupted: saved' in capsys.readouterr().out
    ckpt = load(tmp_path)
    assert ckpt['epoch'] == 1 and ckpt['partial']['epoch'] == 2
    # the flag is read with the next batch's loss (all ranks agree there): that batch
    # completes, one of the epoch's 3 batches is left
    assert ckpt['partial']['batches_done'] == 2
    assert not os.path.exists(os.path.join(model_dir(tmp_path), 'results.json'))
    monkeypatch.setattr(loop, '_step_hook', None)
    assert cli.main(argv + ['--resume', 'auto']) == 0
    ref, out = _final_state(uninterrupted, 'run'), _final_state(tmp_path, 'run')
    assert_same_state(ref[0], out[0])
    assert_same_state(ref[1], out[1])
    assert ref[2] == out[2]
    # the interrupted epoch's training loss continues its running sums
    with open(os.path.join(model_dir(uninterrupted), 'metrics.csv')) as f:
        ref_rows = f.read().splitlines()[1:]
    with open(os.path.join(model_dir(tmp_path), 'metrics.csv')) as f:
        out_rows = f.read().splitlines()[1:]
    strip = lambda rows: [r.rsplit(',', 1)[0] for r in rows]  # noqa: E731 (drop seconds)
    assert strip(ref_rows) == strip(out_rows)


def test_atomic_checkpoint_survives_a_crash_while_saving(tmp_path, monkeypatch):
    assert cli.main(tiny(tmp_path, 'Mel', epochs=1)) == 0
    path = os.path.join(model_dir(tmp_path), 'net_checkpoint.pth')
    before = torch.load(path, weights_only=True)
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(0)
        f.truncate(100)  # half-written file, then the process "dies"
        raise OSError('simulated crash while writing')

    monkeypatch.setattr(ckpt_lib.torch, 'save', crashing_save)
    with pytest.raises(OSError, match='simulated crash'):
        ckpt_lib.save_atomic({'epoch': 99, 'network': {}}, path)
    monkeypatch.undo()
    after = ckpt_lib.load_checkpoint(path)  # the previous checkpoint, intact
    assert after['epoch'] == before['epoch'] == 1
    assert_same_state(before['network'], after['network'])
    leftovers = [f for f in os.listdir(model_dir(tmp_path)) if f.endswith('.tmp')]
    assert leftovers == []
    # a crash during the next run's first save leaves the run resumable from epoch 1
    # (eleaf train reports the failed save in one line and exits 2)
    monkeypatch.setattr(ckpt_lib.torch, 'save', crashing_save)
    assert cli.main(tiny(tmp_path, 'Mel', epochs=2, extra=['--resume', 'auto'])) == 2
    monkeypatch.undo()
    assert ckpt_lib.load_checkpoint(path)['epoch'] == 1
