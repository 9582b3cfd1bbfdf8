"""``experiments/run.py``: the experiment list, lockfiles shared by parallel runners, dry
runs and the report. A fake ``eleaf`` (``$ELEAF_EXPERIMENTS_COMMAND``) stands in for
training, except in one real tiny run on the synthetic task."""
import importlib.util
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.train.helpers import tiny

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, 'experiments', 'run.py')

_spec = importlib.util.spec_from_file_location('experiments_run', SCRIPT)
run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run)

SPEECH_LEAF = 'speechcommands/leaf-original'

FAKE_ELEAF = textwrap.dedent('''\
    """Stands in for python -m eleaf: logs its argv, sleeps $FAKE_SLEEP s, then writes a
    result (or exits 3 with FAKE_MODE=fail, 130 on Ctrl-C)."""
    import json, os, sys, time
    args = sys.argv[1:]

    def option(name):  # the last occurrence wins, as in argparse
        return args[len(args) - 1 - args[::-1].index(name) + 1]

    with open(os.environ['FAKE_LOG'], 'a') as f:
        f.write(json.dumps(args) + '\\n')
    try:
        time.sleep(float(os.environ.get('FAKE_SLEEP', '0')))
    except KeyboardInterrupt:
        sys.exit(130)
    if os.environ.get('FAKE_MODE') == 'fail':
        sys.exit(3)
    if args[0] == 'bench':
        path = option('--json')
        result = {'meta': {'device': 'cpu'}, 'results': []}
    else:
        path = os.path.join(option('--output-dir'), 'models', option('--model-name'),
                            'results.json')
        os.makedirs(os.path.dirname(path), exist_ok=True)
        result = {'last': {'test_acc': 0.5}, 'best': {'test_acc': 0.75}}
    with open(path, 'w') as f:
        json.dump(result, f)
    ''')


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """The fake eleaf in the environment; returns a function listing its invocations."""
    script = tmp_path / 'fake_eleaf.py'
    script.write_text(FAKE_ELEAF)
    log = tmp_path / 'calls.jsonl'
    monkeypatch.setenv(run.COMMAND_ENV, '%s %s' % (sys.executable, script))
    monkeypatch.setenv('FAKE_LOG', str(log))

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] \
            if log.exists() else []
    return calls


def _named(calls):
    return [c[c.index('--model-name') + 1] for c in calls if c[0] == 'train']


def _by_name(name, repeats=3):
    return next(r for r in run.experiment_list(repeats) if r.name == name)


def _write_lock(out, name, info):
    path = run.lock_path(str(out), _by_name(name))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(info, f)
    return path


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def _runner(out, *args, env=None):
    return subprocess.Popen([sys.executable, SCRIPT, '--device', 'cpu', '--output-dir',
                             str(out)] + list(args),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)


# --- the experiment list --------------------------------------------------------------------

def test_experiment_list_count_names_and_flags():
    runs = run.experiment_list()
    train = [r for r in runs if r.kind == 'train']
    # 5 configurations x 6 tasks x 3 runs, plus BirdCLEF at 8 s and 16 s for the 4
    # configurations the original runs there (not EfficientLeaf + PCEN)
    assert len(train) == 5 * 6 * 3 + 4 * 2 * 3 == 114
    assert [r.name for r in runs if r.kind == 'bench'] == ['benchmark/frontends']
    assert len({r.name for r in runs}) == len(runs)
    assert len(run.experiment_list(repeats=1, bench=False)) == 5 * 6 + 4 * 2

    def args(name):
        return ' '.join(_by_name(name).args)

    tbn = ('--compression TBN --log1p-initial-a 5 --log1p-trainable --log1p-per-band '
           '--tbn-median-filter --tbn-median-filter-append')
    assert args('speechcommands/leaf-original_r1') == (
        '--data-set SPEECHCOMMANDS --frontend Leaf --compression PCEN --seed 1')
    assert args('crema-d/eleaf4-wf475_r2') == (
        '--data-set CREMAD --frontend EfficientLeaf --num-groups 4 --conv-win-factor 4.75 '
        '--compression PCEN --seed 2')
    assert args('voxforge/eleaf4-wf475-tbn-a5perband-medfiltapp_r3') == (
        '--data-set VOXFORGE --frontend EfficientLeaf --num-groups 4 --conv-win-factor 4.75 '
        + tbn + ' --seed 3')
    assert args('nsynth-p/mel-tbn-a5fixed-medfiltapp_r1') == (
        '--data-set NSYNTH_PITCH --frontend Mel --compression TBN --log1p-initial-a 5 '
        '--tbn-median-filter --tbn-median-filter-append --seed 1')
    assert args('nsynth-i/eleaf8-wf6-sf16-tbn-a5perband-medfiltapp_r1') == (
        '--data-set NSYNTH_INST --frontend EfficientLeaf --num-groups 8 --conv-win-factor 6 '
        '--stride-factor 16 ' + tbn + ' --seed 1')
    assert args('birdclef/leaf-original-inputlen8_r1') == (
        '--data-set BIRDCLEF2021 --batch-size 32 --input-size 128000 --pcen-learn-logs '
        '--frontend Leaf --compression PCEN --seed 1')
    assert args('birdclef/mel-tbn-a5fixed-medfiltapp-inputlen16_r2').startswith(
        '--data-set BIRDCLEF2021 --batch-size 16 --input-size 256000 --frontend Mel')
    assert '--pcen-learn-logs' not in args('birdclef/leaf-original_r1')
    assert not [r for r in train if 'eleaf4-wf475-inputlen' in r.name]
    data_sets = {r.args[r.args.index('--data-set') + 1] for r in train}
    assert data_sets == {'SPEECHCOMMANDS', 'CREMAD', 'VOXFORGE', 'NSYNTH_PITCH',
                         'NSYNTH_INST', 'BIRDCLEF2021'}


def test_commands(monkeypatch):
    monkeypatch.delenv(run.COMMAND_ENV, raising=False)
    r = _by_name('speechcommands/leaf-original_r2')
    cmd = run.command(r, 'OUT', 'cuda:1', '/data', ['--num-workers', '4'])
    assert cmd[:4] == [sys.executable, '-m', 'eleaf', 'train']
    assert ' '.join(cmd[4:]) == (
        '--data-set SPEECHCOMMANDS --frontend Leaf --compression PCEN --seed 2 --output-dir '
        'OUT --model-name speechcommands/leaf-original_r2 --resume auto --device cuda:1 '
        '--data-path /data --num-workers 4')
    bench = run.command(_by_name('benchmark/frontends'), 'OUT', 'cuda', '', ['--x'])
    assert bench[3:] == ['bench', '--device', 'cuda', '--no-progress', '--json',
                         os.path.join('OUT', 'models', 'benchmark', 'frontends',
                                      'bench.json.partial')]
    assert len(run.select(run.experiment_list(), ['BIRDCLEF/leaf', 'inputlen'])) == 6
    for bad in (['--output-dir', 'x'], ['--model-name=x'], ['--resume', 'f']):
        with pytest.raises(SystemExit):
            run.main(['--dry-run', '--'] + bad)


# --- running and locks ----------------------------------------------------------------------

def test_dry_run_shows_states_and_commands(tmp_path, fake, capsys):
    out = tmp_path / 'out'
    done = run.result_path(str(out), _by_name(SPEECH_LEAF + '_r1'))
    os.makedirs(os.path.dirname(done))
    open(done, 'w').close()
    _write_lock(out, SPEECH_LEAF + '_r2', {'host': 'elsewhere', 'pid': 1, 'started': 'noon'})
    assert run.main(['--dry-run', '--device', 'cpu', '--output-dir', str(out), '--only',
                     SPEECH_LEAF, '--data-path', '/data', '--', '--epochs', '2']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'finished %s_r1' % SPEECH_LEAF
    assert lines[2] == 'running  %s_r2 (host elsewhere, pid 1, since noon)' % SPEECH_LEAF
    assert lines[4] == 'pending  %s_r3' % SPEECH_LEAF
    assert lines[5].endswith('--model-name %s_r3 --resume auto --device cpu --data-path '
                             '/data --epochs 2' % SPEECH_LEAF)
    assert lines[6] == '3 runs: 1 finished, 1 running, 1 pending'
    assert fake() == []  # nothing ran


def test_skips_finished_and_locked_runs(tmp_path, fake, capsys):
    out = tmp_path / 'out'
    done = run.result_path(str(out), _by_name(SPEECH_LEAF + '_r1'))
    os.makedirs(os.path.dirname(done))
    with open(done, 'w') as f:
        json.dump({}, f)
    lock = _write_lock(out, SPEECH_LEAF + '_r2', {'host': 'elsewhere', 'pid': 1})
    assert run.main(['--device', 'cpu', '--output-dir', str(out), '--only', SPEECH_LEAF]) == 0
    assert _named(fake()) == [SPEECH_LEAF + '_r3']
    assert os.path.exists(lock)  # another runner's lock is left alone
    r3 = _by_name(SPEECH_LEAF + '_r3')
    assert os.path.exists(run.result_path(str(out), r3))
    assert not os.path.exists(run.lock_path(str(out), r3))
    text = capsys.readouterr().out
    assert 'summary: 1 done, 0 failed, 1 already finished, 1 running elsewhere' in text
    # a second pass finds everything finished or running
    assert run.main(['--device', 'cpu', '--output-dir', str(out), '--only', SPEECH_LEAF]) == 0
    assert len(fake()) == 1


def test_failing_run_removes_its_lock(tmp_path, fake, monkeypatch, capsys):
    monkeypatch.setenv('FAKE_MODE', 'fail')
    out = tmp_path / 'out'
    name = SPEECH_LEAF + '_r1'
    assert run.main(['--device', 'cpu', '--output-dir', str(out), '--only', name]) == 1
    assert _named(fake()) == [name]
    assert not os.path.exists(run.lock_path(str(out), _by_name(name)))
    assert not os.path.exists(run.result_path(str(out), _by_name(name)))
    text = capsys.readouterr().out
    assert '%s: failed (exit status 3)' % name in text and 'failed: %s' % name in text


def test_benchmark_result_is_renamed_on_success(tmp_path, fake):
    out = tmp_path / 'out'
    assert run.main(['--device', 'cpu', '--output-dir', str(out), '--only', 'benchmark']) == 0
    assert fake()[0][0] == 'bench'
    bench = _by_name('benchmark/frontends')
    assert os.path.exists(run.result_path(str(out), bench))
    assert not os.path.exists(run.result_path(str(out), bench) + '.partial')


def test_stale_lock_is_stolen_only_with_the_flag(tmp_path, fake):
    out = tmp_path / 'out'
    name = SPEECH_LEAF + '_r1'
    args = ['--device', 'cpu', '--output-dir', str(out), '--only', name]
    host = socket.gethostname()
    lock = _write_lock(out, name, {'host': host, 'pid': _dead_pid(), 'started': 'x'})
    assert run.state(str(out), _by_name(name))[1].endswith('; stale: that process is gone')
    assert run.main(args) == 0 and fake() == []
    assert os.path.exists(lock)
    # alive (this process) or on another host: never stale
    for info in ({'host': host, 'pid': os.getpid()}, {'host': 'elsewhere', 'pid': _dead_pid()},
                 {'host': host, 'pid': _dead_pid(), 'child_pid': os.getpid()}):
        _write_lock(out, name, info)
        assert run.main(args + ['--steal-stale-locks']) == 0 and fake() == []
        assert run.read_lock(lock) == info
    _write_lock(out, name, {'host': host, 'pid': _dead_pid()})
    assert run.main(args + ['--steal-stale-locks']) == 0
    assert _named(fake()) == [name]
    assert not os.path.exists(lock)
    assert os.listdir(os.path.dirname(lock)) == ['results.json']


def _age(path, seconds):
    t = time.time() - seconds
    os.utime(path, (t, t))


@pytest.mark.parametrize('content', [b'', b'{"host": "x', b'\xff\xfe garbage', b'[1, 2]',
                                     b'{"host": "elsewhere"}', b'{"pid": "12"}'])
def test_empty_and_garbage_locks_are_stale_once_old(tmp_path, fake, content):
    out = tmp_path / 'out'
    name = SPEECH_LEAF + '_r1'
    args = ['--device', 'cpu', '--output-dir', str(out), '--only', name]
    lock = _write_lock(out, name, {})
    with open(lock, 'wb') as f:
        f.write(content)
    # fresh: possibly a lock being written by an older runner, left alone
    assert run.state(str(out), _by_name(name)) == ('running', 'lock being written')
    assert run.main(args + ['--steal-stale-locks']) == 0 and fake() == []
    assert open(lock, 'rb').read() == content
    _age(lock, run.GARBAGE_LOCK_GRACE_S + 5)
    st, detail = run.state(str(out), _by_name(name))
    assert st == 'running' and detail.startswith('empty or unreadable lock, ') \
        and detail.endswith('stale: no runner left a lock like this'), detail
    assert run.main(args) == 0 and fake() == []  # only with the flag
    assert open(lock, 'rb').read() == content
    assert run.main(args + ['--steal-stale-locks']) == 0
    assert _named(fake()) == [name]
    assert os.listdir(os.path.dirname(lock)) == ['results.json']


def test_unreadable_lock_is_stale_once_old(tmp_path, fake, monkeypatch):
    out = tmp_path / 'out'
    name = SPEECH_LEAF + '_r1'
    lock = _write_lock(out, name, {'host': socket.gethostname(), 'pid': os.getpid(),
                                   'note': 'unreadable'})
    real_open = open

    def no_permission(path, *args, **kwargs):  # as chmod 0 would for a non-root user
        with real_open(path, 'rb') as f:
            if b'unreadable' in f.read():
                raise PermissionError(13, 'Permission denied', path)
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(run, 'open', no_permission, raising=False)
    assert run.read_lock(lock) == {} and not run.lock_is_stale({}, lock)
    _age(lock, run.GARBAGE_LOCK_GRACE_S + 5)
    assert run.lock_is_stale({}, lock)
    assert run.main(['--device', 'cpu', '--output-dir', str(out), '--only', name,
                     '--steal-stale-locks']) == 0
    assert _named(fake()) == [name] and not os.path.exists(lock)


def test_reused_pid_is_judged_stale(tmp_path, fake):
    """A lock whose pid is alive but belongs to a later process (another start time), or
    that was written before the last reboot, is stale; the same process is not."""
    if run._pid_start(os.getpid()) is None or run._boot_id() is None:
        pytest.skip('needs Linux /proc')
    out = tmp_path / 'out'
    name = SPEECH_LEAF + '_r1'
    args = ['--device', 'cpu', '--output-dir', str(out), '--only', name]
    me = run._process_info()
    assert me['pid'] == os.getpid() and me['pid_start'] == run._pid_start(os.getpid())
    lock = _write_lock(out, name, dict(me, started='x'))
    assert run.main(args + ['--steal-stale-locks']) == 0 and fake() == []  # really alive
    assert not run.lock_is_stale(run.read_lock(lock))
    for info in (dict(me, pid_start=me['pid_start'] - 1),   # this pid, another process
                 dict(me, boot_id='0000-before-reboot'),     # written before a reboot
                 dict(me, pid=_dead_pid(), child_pid=os.getpid(),
                      child_start=me['pid_start'] + 7)):   # both gone, child pid reused
        _write_lock(out, name, info)
        assert run.state(str(out), _by_name(name))[1].endswith('stale: that process is gone')
    _write_lock(out, name, dict(me, pid=_dead_pid(), child_pid=os.getpid(),
                                child_start=me['pid_start']))  # the child lives on
    assert not run.lock_is_stale(run.read_lock(lock))
    _write_lock(out, name, dict(me, pid_start=me['pid_start'] + 1))
    assert run.main(args + ['--steal-stale-locks']) == 0
    assert _named(fake()) == [name]
    assert os.listdir(os.path.dirname(lock)) == ['results.json']


def test_lock_records_the_processes_start_times(tmp_path, fake, monkeypatch):
    if run._pid_start(os.getpid()) is None:
        pytest.skip('needs Linux /proc')
    monkeypatch.setenv('FAKE_SLEEP', '30')
    out = tmp_path / 'out'
    name = SPEECH_LEAF + '_r1'
    lock = run.lock_path(str(out), _by_name(name))
    runner = _runner(out, '--only', name)
    try:
        deadline = time.time() + 30
        while 'child_pid' not in (run.read_lock(lock) or {}):
            assert time.time() < deadline and runner.poll() is None
            time.sleep(0.05)
        info = run.read_lock(lock)
        assert info['pid'] == runner.pid
        assert info['pid_start'] == run._pid_start(runner.pid)
        assert info['child_start'] == run._pid_start(info['child_pid'])
        assert info['boot_id'] == run._boot_id()
        assert not run.lock_is_stale(info)
    finally:
        runner.send_signal(signal.SIGINT)
        runner.communicate(timeout=30)
    assert not os.path.exists(lock)


def test_full_disk_while_taking_a_lock_leaves_no_lock(tmp_path, fake, monkeypatch, capsys):
    out = tmp_path / 'out'
    name = SPEECH_LEAF + '_r1'
    real_write = os.write

    def full(fd, data):
        raise OSError(28, 'No space left on device')
    monkeypatch.setattr(run.os, 'write', full)
    assert run.main(['--device', 'cpu', '--output-dir', str(out), '--only', name]) == 1
    text = capsys.readouterr().out
    lock = run.lock_path(str(out), _by_name(name))
    assert 'failed (cannot create the lock %s: [Errno 28] No space left on device)' % lock \
        in text, text
    assert 'Traceback' not in text and fake() == []
    assert os.listdir(os.path.dirname(lock)) == []
    # also where hard links are not supported (the O_EXCL fallback)
    monkeypatch.setattr(run.os, 'link', lambda a, b: (_ for _ in ()).throw(
        OSError(1, 'Operation not permitted')))
    monkeypatch.setattr(run, '_write_private', lambda path, info: str(tmp_path / 'nothing'))
    with pytest.raises(run.LockError, match='No space left on device'):
        run.acquire_lock(lock)
    assert os.listdir(os.path.dirname(lock)) == []
    monkeypatch.setattr(run.os, 'write', real_write)
    assert run.acquire_lock(lock) is not None and run.read_lock(lock)['pid'] == os.getpid()


def test_private_files_of_killed_runners_are_removed(tmp_path):
    path = str(tmp_path / 'models' / 'x' / run.LOCK_NAME)
    os.makedirs(os.path.dirname(path))
    host = socket.gethostname()
    dead = '%s.%s.%d.tmp' % (path, host, _dead_pid())
    alive = '%s.%s.%d.tmp' % (path, host, os.getppid())  # a live process's: kept
    other = '%s.elsewhere.%d.tmp' % (path, _dead_pid())  # another host's: kept
    for p in (dead, alive, other):
        open(p, 'w').close()
    assert run.acquire_lock(path) is not None
    assert sorted(os.listdir(os.path.dirname(path))) == sorted(
        os.path.basename(p) for p in (path, alive, other))


def test_full_disk_while_updating_the_lock_keeps_it(tmp_path, monkeypatch, capsys):
    path = str(tmp_path / 'models' / 'x' / run.LOCK_NAME)
    info = run.acquire_lock(path)
    monkeypatch.setattr(run.os, 'write', lambda fd, data: (_ for _ in ()).throw(
        OSError(28, 'No space left on device')))
    assert run.update_lock(path, dict(info, child_pid=1)) is False
    assert 'cannot update the lock' in capsys.readouterr().out
    assert run.read_lock(path) == info
    assert os.listdir(os.path.dirname(path)) == [run.LOCK_NAME]


def _grab(path, barrier, queue):
    barrier.wait()
    queue.put(run.acquire_lock(path) is not None)


def test_lock_race_has_one_winner(tmp_path):
    ctx = multiprocessing.get_context('fork')
    n = 6
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    path = str(tmp_path / 'models' / 'x' / run.LOCK_NAME)
    procs = [ctx.Process(target=_grab, args=(path, barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    wins = [queue.get(timeout=30) for _ in range(n)]
    for p in procs:
        p.join()
    assert sum(wins) == 1
    info = run.read_lock(path)
    assert info['host'] == socket.gethostname() and info['started']
    assert info['pid'] in [p.pid for p in procs]


def test_two_runners_on_one_run(tmp_path, fake, monkeypatch):
    monkeypatch.setenv('FAKE_SLEEP', '1.5')
    out = tmp_path / 'out'
    name = SPEECH_LEAF + '_r1'
    runners = [_runner(out, '--only', name) for _ in range(2)]
    outputs = [p.communicate(timeout=60)[0] for p in runners]
    assert [p.returncode for p in runners] == [0, 0], outputs
    assert _named(fake()) == [name]
    assert sorted('running elsewhere' in o and '1 running' in o for o in outputs) == [
        False, True], outputs
    assert not os.path.exists(run.lock_path(str(out), _by_name(name)))


@pytest.mark.parametrize('sig', [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_the_run_and_removes_the_lock(tmp_path, fake, monkeypatch, sig):
    monkeypatch.setenv('FAKE_SLEEP', '30')
    out = tmp_path / 'out'
    name = SPEECH_LEAF + '_r1'
    lock = run.lock_path(str(out), _by_name(name))
    runner = _runner(out, '--only', SPEECH_LEAF)
    deadline = time.time() + 30
    while 'child_pid' not in (run.read_lock(lock) or {}) or not fake():
        assert time.time() < deadline and runner.poll() is None
        time.sleep(0.05)
    runner.send_signal(sig)
    text = runner.communicate(timeout=30)[0]
    assert runner.returncode == 130, text
    assert 'interrupted; the lock is removed' in text
    assert not os.path.exists(lock)
    assert _named(fake()) == [name]  # the next runs did not start


# --- report ---------------------------------------------------------------------------------

def _result(out, name, last, best):
    path = os.path.join(str(out), 'models', name, 'results.json')
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        json.dump({'last': {'test_acc': last, 'epoch': 9}, 'best': {'test_acc': best}}, f)


def _cells(text, heading):
    """{(row, column): cell} of the markdown table after ``heading``."""
    lines = text.split(heading, 1)[1].splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith('|')):]
    header = [c.strip() for c in lines[0].strip('|').split('|')]
    cells = {}
    for line in lines[2:]:
        if not line.startswith('|'):
            break
        row = [c.strip() for c in line.strip('|').split('|')]
        cells.update({(row[0], h): c for h, c in zip(header[1:], row[1:])})
    return cells


def _mean_std(values):
    pct = 100 * np.array(values)
    return '%.2f ± %.2f' % (pct.mean(), pct.std(ddof=1))


def test_report(tmp_path, capsys):
    out = tmp_path / 'out'
    leaf = [0.91, 0.93, 0.96]
    for r, acc in enumerate(leaf, 1):
        _result(out, 'speechcommands/leaf-original_r%d' % r, acc, acc - 0.01)
    _result(out, 'crema-d/mel-tbn-a5fixed-medfiltapp_r1', 0.5, 0.6)
    _result(out, 'crema-d/mel-tbn-a5fixed-medfiltapp_r3', 0.55, 0.62)
    _result(out, 'birdclef/eleaf8-wf6-sf16-tbn-a5perband-medfiltapp-inputlen16_r2', 0.3, 0.4)
    _result(out, 'synthetic-try', 0.99, 0.99)
    bench = os.path.join(str(out), 'models', 'benchmark', 'frontends', 'bench.json')
    os.makedirs(os.path.dirname(bench))
    with open(bench, 'w') as f:
        json.dump({'meta': {'device': 'cuda', 'device_name': 'H100', 'torch': '2.x',
                            'date': 'today'},
                   'results': [
                       {'frontend': 'Mel', 'backend': 'torch', 'n_filters': 40, 'batch': 256,
                        'seconds': 1, 'workload': 'inference', 'time_s': 0.01,
                        'examples_per_s': 25600, 'x_mel': 1.0},
                       {'frontend': 'Leaf + PCEN', 'backend': 'triton', 'n_filters': 80,
                        'batch': 256, 'seconds': 1, 'workload': 'inference', 'time_s': 0.1,
                        'examples_per_s': 2560, 'x_mel': 0.1},
                       {'frontend': 'Leaf + PCEN', 'backend': 'cpp', 'skipped': 'no GPU'}]},
                  f)
    md = tmp_path / 'report.md'
    assert run.main(['report', '--output-dir', str(out), '--markdown', str(md)]) == 0
    text = capsys.readouterr().out
    assert md.read_text() == text
    assert '6 of 114 training runs finished' in text
    last = _cells(text, "last epoch's model")
    best = _cells(text, 'best model (lowest validation loss)')
    assert last['Speech Commands', 'Leaf + PCEN'] == _mean_std(leaf)
    assert best['Speech Commands', 'Leaf + PCEN'] == _mean_std([a - 0.01 for a in leaf])
    assert last['CREMA-D', 'Mel + fixed LogTBN'] == _mean_std([0.5, 0.55]) + ' (n=2)'
    assert last['BirdCLEF 2021, 16 s inputs', 'EfficientLeaf 8G wf 6 sf 16 + LogTBN'] == \
        '30.00 (n=1)'
    assert last['VoxForge', 'Leaf + PCEN'] == '–'
    assert last['BirdCLEF 2021, 8 s inputs', 'EfficientLeaf 4G wf 4.75 + PCEN'] == 'n/a'
    # 8 rows x 5 columns: 2 n/a, 3 filled
    assert len(last) == 8 * 5 and sum(v == '–' for v in last.values()) == 40 - 2 - 3
    assert 'Not in the experiment list (left out): synthetic-try' in text
    throughput = _cells(text, 'cells: examples/s (throughput relative to mel)')
    assert throughput['Mel [torch]', '256 × 1 s inference'] == '25600 (1.00×)'
    assert throughput['Leaf + PCEN (80 filters) [triton]', '256 × 1 s inference'] == \
        '2560 (0.10×)'
    assert 'cuda (H100), torch 2.x, today' in text
    # with --repeats 2, the complete cells are those of 2 runs
    assert run.main(['report', '--output-dir', str(out), '--repeats', '2']) == 0
    last = _cells(capsys.readouterr().out, "last epoch's model")
    assert last['CREMA-D', 'Mel + fixed LogTBN'] == _mean_std([0.5, 0.55])
    assert last['Speech Commands', 'Leaf + PCEN'] == _mean_std(leaf) + ' (n=3)'


# --- one real run -------------------------------------------------------------------------

def test_real_tiny_run_on_the_synthetic_task(tmp_path, monkeypatch):
    """The runner drives eleaf train for real (the synthetic task replaces Speech Commands
    through the options after --), the report shows its test accuracy."""
    monkeypatch.delenv(run.COMMAND_ENV, raising=False)
    out = tmp_path / 'out'
    argv = tiny(out, 'Mel')
    for option in ('--output-dir', '--model-name', '--seed'):  # the runner's
        i = argv.index(option)
        del argv[i:i + 2]
    name = 'speechcommands/mel-tbn-a5fixed-medfiltapp_r1'
    proc = subprocess.run([sys.executable, SCRIPT, '--device', 'cpu', '--output-dir', str(out),
                           '--repeats', '1', '--only', 'speechcommands/mel', '--',
                           '--data-set', 'synthetic'] + argv,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(os.path.join(str(out), 'models', name, 'results.json')) as f:
        results = json.load(f)
    with open(os.path.join(str(out), 'models', name, 'args.json')) as f:
        assert json.load(f)['data_set'] == 'synthetic'
    assert not os.path.exists(run.lock_path(str(out), _by_name(name)))
    report = subprocess.run([sys.executable, SCRIPT, 'report', '--output-dir', str(out),
                             '--repeats', '1'], capture_output=True, text=True, timeout=60)
    cell = _cells(report.stdout, "last epoch's model")['Speech Commands', 'Mel + fixed LogTBN']
    assert cell == '%.2f' % (100 * results['last']['test_acc'])
    assert re.search(r'1 of 38 training runs finished', report.stdout)
