"""Faults around ``eleaf train`` / ``eleaf eval`` (issue #22): damaged and foreign checkpoint
files, a full disk while saving, ``.tmp`` files of killed saves, and the run lock that keeps a
second training out of a run directory. Every error is one line naming the file (and tensor)
or the running process."""
import datetime
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest
import torch

from eleaf.train import checkpoint as ckpt_lib
from eleaf.train import cli, runlock
from eleaf.train.evaluate import main as eval_main

from .helpers import load, model_dir, results, tiny

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _eval(path):
    return eval_main(['--checkpoint', str(path), '--no-progress'])


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A finished tiny Mel run (2 epochs): its output directory."""
    out = tmp_path_factory.mktemp('trained')
    assert cli.main(tiny(out, 'Mel', epochs=2)) == 0
    return out


# --- checkpoints that are not what they claim ------------------------------------------------

@pytest.mark.parametrize('content', [b'hello world\n', b'{"network": 1}', b'\x80\x02}q\x00.',
                                     b''])
def test_foreign_file_as_checkpoint(tmp_path, capsys, content):
    path = tmp_path / 'notes.pth'
    path.write_bytes(content)
    assert _eval(path) == 2
    msg = _error(capsys)
    assert repr(str(path)) in msg, msg
    assert 'is unreadable' in msg or 'not a training checkpoint' in msg, msg
    assert cli.main(tiny(tmp_path, extra=['--resume', str(path)])) == 2
    assert repr(str(path)) in _error(capsys)


def test_directory_as_checkpoint(tmp_path, capsys):
    assert _eval(tmp_path) == 2
    assert 'is a directory' in _error(capsys)


@pytest.mark.parametrize('where', ['network', 'optimizer'])
@pytest.mark.parametrize('value', [float('nan'), float('inf')])
def test_nonfinite_tensor_in_checkpoint(trained, tmp_path, capsys, where, value):
    ckpt = load(trained)
    if where == 'network':
        name = next(k for k in ckpt['network'] if k.endswith('weight')
                    and ckpt['network'][k].is_floating_point())
        ckpt['network'][name].view(-1)[3] = value
    else:
        state = ckpt['optimizer']['state']
        key = sorted(state)[0]
        state[key]['exp_avg'].view(-1)[0] = value
        name = 'optimizer state.%s.exp_avg' % key
    path = tmp_path / 'damaged.pth'
    torch.save(ckpt, str(path))
    assert _eval(path) == 2
    msg = _error(capsys)
    assert repr(str(path)) in msg and name + ' (1 of ' in msg and 'non-finite' in msg, msg
    argv = tiny(tmp_path, 'Mel', epochs=3, name='resumed', extra=['--resume', str(path)])
    assert cli.main(argv) == 2
    assert name + ' (1 of ' in _error(capsys)


def test_missing_key_is_named(trained, tmp_path, capsys):
    ckpt = load(trained)
    name = sorted(ckpt['network'])[-1]
    del ckpt['network'][name]
    path = tmp_path / 'partial.pth'
    torch.save(ckpt, str(path))
    assert _eval(path) == 2
    msg = _error(capsys)
    assert repr(str(path)) in msg and 'missing %s' % name in msg, msg


def test_check_finite_accepts_a_good_checkpoint(trained):
    ckpt = ckpt_lib.load_checkpoint(os.path.join(model_dir(trained), 'net_checkpoint.pth'))
    ckpt_lib.check_finite(ckpt, 'x')  # no error
    assert ckpt['epoch'] == 2


# --- saving: a full disk, leftovers of a killed save -----------------------------------------

def _full_disk(monkeypatch, after_saves):
    """The first ``after_saves`` checkpoint saves work; later ones write part of the file
    and fail as torch's writer does on a full disk."""
    real_save = torch.save
    count = [0]

    def save(obj, f, *args, **kwargs):
        count[0] += 1
        if count[0] <= after_saves:
            return real_save(obj, f, *args, **kwargs)
        f.write(b'PK\x03\x04' + b'\0' * 4096)
        raise RuntimeError('[enforce fail at inline_container.cc:672] . unexpected pos 768 '
                           'vs 662')
    monkeypatch.setattr(ckpt_lib.torch, 'save', save)
    monkeypatch.setattr(ckpt_lib, '_free_bytes', lambda directory: 12345)


def test_full_disk_while_saving_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    argv = tiny(tmp_path, 'Mel', epochs=3)
    # epoch 1 saves net_checkpoint.pth and net_best_model.pth; epoch 2's first save fails
    _full_disk(monkeypatch, after_saves=2)
    assert cli.main(argv) == 2
    msg = _error(capsys)
    path = os.path.join(model_dir(tmp_path), 'net_checkpoint.pth')
    assert msg.startswith('eleaf train: error: cannot save %r: the disk is full' % path), msg
    assert 'net_checkpoint.pth keeps its previous content' in msg and '--resume auto' in msg
    assert load(tmp_path)['epoch'] == 1
    assert glob.glob(os.path.join(model_dir(tmp_path), '.*.tmp')) == []
    assert not os.path.exists(os.path.join(model_dir(tmp_path), runlock.LOCK_NAME))
    monkeypatch.undo()
    assert cli.main(argv + ['--resume', 'auto']) == 0
    assert load(tmp_path)['epoch'] == 3 and results(tmp_path)['last']['epoch'] == 3


def test_save_errors_are_one_line(tmp_path, monkeypatch):
    target = str(tmp_path / 'x.pth')
    monkeypatch.setattr(ckpt_lib, '_free_bytes', lambda directory: 10 << 30)
    monkeypatch.setattr(ckpt_lib.torch, 'save', lambda obj, f: (_ for _ in ()).throw(
        OSError(28, 'No space left on device')))
    with pytest.raises(ckpt_lib.CheckpointSaveError, match=r"the disk is full \(10240\.0 MiB "
                       r"free after writing 0\.0 MiB of it\); nothing was written"):
        ckpt_lib.save_atomic({'a': 1}, target)
    monkeypatch.setattr(ckpt_lib.torch, 'save', lambda obj, f: (_ for _ in ()).throw(
        OSError(5, 'Input/output error')))
    with pytest.raises(ckpt_lib.CheckpointSaveError, match='Input/output error'):
        ckpt_lib.save_atomic({'a': 1}, target)
    assert os.listdir(str(tmp_path)) == []
    monkeypatch.setattr(ckpt_lib.torch, 'save', lambda obj, f: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # not turned into an error message
        ckpt_lib.save_atomic({'a': 1}, target)
    assert os.listdir(str(tmp_path)) == []


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A real 256 KiB tmpfs (needs root and mount permission; skipped otherwise)."""
    mnt = tmp_path / 'tinyfs'
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which('mount') is None or subprocess.run(
            ['mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', str(mnt)],
            capture_output=True).returncode != 0:
        pytest.skip('cannot mount a tmpfs here')
    try:
        yield str(mnt)
    finally:
        subprocess.run(['umount', str(mnt)], check=True)


def test_real_full_disk(tiny_filesystem):
    path = os.path.join(tiny_filesystem, 'net_checkpoint.pth')
    ckpt_lib.save_atomic({'network': {'w': torch.ones(1000)}}, path)
    with pytest.raises(ckpt_lib.CheckpointSaveError) as info:
        ckpt_lib.save_atomic({'network': {'w': torch.zeros(200000)}}, path)
    msg = str(info.value)
    assert 'the disk is full' in msg and 'net_checkpoint.pth keeps its previous content' in msg
    assert len(msg.splitlines()) == 1
    assert os.listdir(tiny_filesystem) == ['net_checkpoint.pth']
    assert torch.equal(ckpt_lib.load_checkpoint(path)['network']['w'], torch.ones(1000))


def test_killed_save_leftovers_are_removed(tmp_path, capsys):
    d = model_dir(tmp_path)
    os.makedirs(d)
    leftovers = [os.path.join(d, '.net_checkpoint.pth.k2j4_x9a.tmp'),
                 os.path.join(d, '.net_best_model.pth.abcdefgh.tmp')]
    lock_tmp = os.path.join(d, '%s.%s.%d.tmp' % (runlock.LOCK_NAME, socket.gethostname(),
                                                 _dead_pid()))
    open(lock_tmp, 'w').close()  # a run killed while writing its lock
    keep = [os.path.join(d, 'notes.tmp'), os.path.join(d, '.other.pth.abcdefgh.tmp')]
    for p in leftovers + keep:
        with open(p, 'wb') as f:
            f.write(b'\0' * 1000)
    assert cli.main(tiny(tmp_path, 'Mel')) == 0
    out = capsys.readouterr().out
    for p in leftovers:
        assert not os.path.exists(p) and 'removed %s (left by a save that was killed)' % p in out
    assert all(os.path.exists(p) for p in keep)
    assert not os.path.exists(lock_tmp)


# --- one live training per run directory -----------------------------------------------------

def _sleeper():
    return subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])


def _lock_of(proc, **extra):
    info = {'host': socket.gethostname(), 'pid': proc.pid,
            'started': '2026-01-01T00:00:00', 'argv': ['eleaf', 'train', '--model-name',
                                                       'run']}
    start, boot = runlock._pid_start(proc.pid), runlock._boot_id()
    if start is not None:
        info.update(pid_start=start, boot_id=boot)
    info.update(extra)
    return info


def _write_lock(out, info_or_bytes):
    d = model_dir(out)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, runlock.LOCK_NAME)
    with open(path, 'wb') as f:
        f.write(info_or_bytes if isinstance(info_or_bytes, bytes) else
                json.dumps(info_or_bytes).encode())
    return path


def test_live_run_blocks_a_second_one(tmp_path, capsys):
    proc = _sleeper()
    try:
        path = _write_lock(tmp_path, _lock_of(proc))
        assert cli.main(tiny(tmp_path, 'Mel')) == 2
        msg = _error(capsys)
        assert ('%s is in use by another eleaf train: pid %d on host %s'
                % (model_dir(tmp_path), proc.pid, socket.gethostname())) in msg, msg
        assert '--break-lock' in msg
        assert not os.path.exists(os.path.join(model_dir(tmp_path), 'net_checkpoint.pth'))
        assert runlock.read(path)['pid'] == proc.pid  # untouched
        # another host's lock cannot be judged: refused as well
        _write_lock(tmp_path, dict(_lock_of(proc), host='elsewhere', pid=1))
        assert cli.main(tiny(tmp_path, 'Mel')) == 2
        assert 'on host elsewhere' in _error(capsys)
        # told otherwise
        assert cli.main(tiny(tmp_path, 'Mel', extra=['--break-lock'])) == 0
        assert 'broken by --break-lock' in capsys.readouterr().out
        assert not os.path.exists(path)
    finally:
        proc.kill()
        proc.wait()


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_stale_locks_are_replaced(tmp_path, capsys):
    me = _lock_of(type('P', (), {'pid': os.getpid()})())
    cases = {'dead pid': dict(me, pid=_dead_pid())}
    if 'pid_start' in me:
        # this pid is alive, but it is another process than the one that wrote the lock
        cases['reused pid'] = dict(me, pid_start=me['pid_start'] - 1)
        cases['before a reboot'] = dict(me, boot_id='an-earlier-boot')
    cases['old garbage'] = b'\0\0{'
    cases['old empty file'] = b''
    for what, content in cases.items():
        path = _write_lock(tmp_path, content)
        if isinstance(content, bytes):
            t = time.time() - runlock.GARBAGE_GRACE_S - 10
            os.utime(path, (t, t))
        assert runlock.is_stale(runlock.read(path), path), what
        assert cli.main(tiny(tmp_path, 'Mel', name='run')) == 0, what
        assert '(stale: not running)' in capsys.readouterr().out, what
        assert not os.path.exists(path)
        shutil.rmtree(model_dir(tmp_path))
    # fresh garbage may be a lock being written: refused
    _write_lock(tmp_path, b'')
    assert cli.main(tiny(tmp_path, 'Mel')) == 2
    assert 'an empty or unreadable lock' in _error(capsys)


def test_lock_is_held_during_the_run_and_removed_after(tmp_path, monkeypatch):
    seen = []
    real = cli._run

    def spy(args, explicit, info):
        seen.append(runlock.read(os.path.join(model_dir(tmp_path), runlock.LOCK_NAME)))
        return real(args, explicit, info)
    monkeypatch.setattr(cli, '_run', spy)
    assert cli.main(tiny(tmp_path, 'Mel')) == 0
    info = seen[0]
    assert info['pid'] == os.getpid() and info['host'] == socket.gethostname()
    assert datetime.datetime.fromisoformat(info['started'])
    assert not runlock.is_stale(info, 'x')
    assert not os.path.exists(os.path.join(model_dir(tmp_path), runlock.LOCK_NAME))
    # also after an error inside the run
    monkeypatch.setattr(cli, '_run', lambda *a: (_ for _ in ()).throw(
        ckpt_lib.CheckpointError('boom')))
    assert cli.main(tiny(tmp_path, 'Mel')) == 2
    assert not os.path.exists(os.path.join(model_dir(tmp_path), runlock.LOCK_NAME))


def test_two_processes_on_one_model_name(tmp_path):
    """The reported case: two ``eleaf train`` with the same --model-name at once. One
    trains, the other exits 2 naming it; metrics.csv holds one run's rows."""
    argv = [sys.executable, '-m', 'eleaf', 'train'] + tiny(tmp_path, 'Mel', epochs=2)
    env = dict(os.environ, PYTHONPATH=ROOT)
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, cwd=str(tmp_path)) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)]
    winner = procs[[p.returncode for p in procs].index(0)]
    assert 'is in use by another eleaf train: pid %d on host %s' % (
        winner.pid, socket.gethostname()) in loser, loser
    with open(os.path.join(model_dir(tmp_path), 'metrics.csv')) as f:
        assert [line.split(',')[0] for line in f.read().splitlines()[1:]] == ['1', '2']
