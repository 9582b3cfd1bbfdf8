#!/usr/bin/env python3
"""Run the EfficientLEAF paper's experiments with ``eleaf train`` and ``eleaf bench``, and
tabulate their results (see experiments/README.md).

    python experiments/run.py [--device cuda:0] [--data-path DIR] [--output-dir DIR]
                              [--only TEXT]... [--repeats 3] [--dry-run] [-- TRAIN ARGS]
    python experiments/run.py report --output-dir DIR [--markdown FILE]

Every run lives in ``OUTPUT_DIR/models/NAME/`` (the directory ``eleaf train`` writes). A
run is *finished* when its result file exists (``results.json``; ``bench.json`` for the
benchmark) and *running* while its lockfile ``runner.lock`` exists, so several runners may
share one output directory across GPUs and machines: each takes the next free run.
"""
import argparse
import collections
import datetime
import glob
import json
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: replaces ``sys.executable -m eleaf`` (shlex-split) when set, e.g. by the tests
COMMAND_ENV = 'ELEAF_EXPERIMENTS_COMMAND'
LOCK_NAME = 'runner.lock'
RESULTS_NAME = 'results.json'
BENCH_NAME = 'bench.json'
BENCH_RUN = 'benchmark/frontends'
DEFAULT_REPEATS = 3

#: the paper's LogTBN: log(1 + 10^a x) with a learned per-band a (initially 5), temporal
#: batch norm, the median-subtracted signal appended as a second channel
LOGTBN = ('--compression', 'TBN', '--log1p-initial-a', '5', '--log1p-trainable',
          '--log1p-per-band', '--tbn-median-filter', '--tbn-median-filter-append')
#: mel's LogTBN: the same with a fixed, shared a (the original has no --log1p-per-band here)
FIXED_LOGTBN = tuple(a for a in LOGTBN if a not in ('--log1p-trainable', '--log1p-per-band'))

Config = collections.namedtuple('Config', 'key label slug args long_inputs')
Task = collections.namedtuple('Task', 'key label data_set')
Variant = collections.namedtuple('Variant', 'key label suffix args leaf_args')
Run = collections.namedtuple('Run', 'name kind task config repeat args')
Run.__doc__ = """One run: ``kind`` 'train' (``args``: options of eleaf train, without the
runner's) or 'bench' (``args``: options of eleaf bench); ``task``, ``config`` and
``repeat`` are None for the benchmark."""

#: the frontend configurations of the paper (40 filters), as in the original experiments.sh;
#: ``long_inputs``: also trained on BirdCLEF with 8 s and 16 s inputs
CONFIGS = (
    Config('leaf', 'Leaf + PCEN', 'leaf-original',
           ('--frontend', 'Leaf', '--compression', 'PCEN'), True),
    Config('eleaf4-pcen', 'EfficientLeaf 4G wf 4.75 + PCEN', 'eleaf4-wf475',
           ('--frontend', 'EfficientLeaf', '--num-groups', '4', '--conv-win-factor', '4.75',
            '--compression', 'PCEN'), False),
    Config('eleaf4-tbn', 'EfficientLeaf 4G wf 4.75 + LogTBN',
           'eleaf4-wf475-tbn-a5perband-medfiltapp',
           ('--frontend', 'EfficientLeaf', '--num-groups', '4', '--conv-win-factor', '4.75')
           + LOGTBN, True),
    Config('mel', 'Mel + fixed LogTBN', 'mel-tbn-a5fixed-medfiltapp',
           ('--frontend', 'Mel') + FIXED_LOGTBN, True),
    Config('eleaf8', 'EfficientLeaf 8G wf 6 sf 16 + LogTBN',
           'eleaf8-wf6-sf16-tbn-a5perband-medfiltapp',
           ('--frontend', 'EfficientLeaf', '--num-groups', '8', '--conv-win-factor', '6',
            '--stride-factor', '16') + LOGTBN, True),
)

#: the paper's tasks: (key, label, --data-set); the key is the first part of a run's name
TASKS = (
    Task('speechcommands', 'Speech Commands', 'SPEECHCOMMANDS'),
    Task('crema-d', 'CREMA-D', 'CREMAD'),
    Task('voxforge', 'VoxForge', 'VOXFORGE'),
    Task('nsynth-p', 'NSynth pitch', 'NSYNTH_PITCH'),
    Task('nsynth-i', 'NSynth instrument', 'NSYNTH_INST'),
    Task('birdclef', 'BirdCLEF 2021', 'BIRDCLEF2021'),
)

#: BirdCLEF with longer inputs, for the configurations with ``long_inputs``; LEAF needs its
#: PCEN parameters learned in log space there (NaN otherwise, says the original)
LONG_INPUTS = (
    Variant('birdclef-8s', 'BirdCLEF 2021, 8 s inputs', '-inputlen8',
            ('--batch-size', '32', '--input-size', str(16000 * 8)), ('--pcen-learn-logs',)),
    Variant('birdclef-16s', 'BirdCLEF 2021, 16 s inputs', '-inputlen16',
            ('--batch-size', '16', '--input-size', str(16000 * 16)), ('--pcen-learn-logs',)),
)

#: options the runner sets itself; not allowed after ``--``
RUNNER_OPTIONS = ('--output-dir', '--model-name', '--resume')


def table_rows():
    """(key, label) of the accuracy table's rows: the tasks, then the long-input variants."""
    return [(t.key, t.label) for t in TASKS] + [(v.key, v.label) for v in LONG_INPUTS]


def experiment_list(repeats: int = DEFAULT_REPEATS, bench: bool = True):
    """Every run, in the order the runner tries them: per configuration its tasks, then its
    BirdCLEF long-input variants, ``repeats`` runs each (seeds 1 to ``repeats``); then the
    frontend benchmark. Names: ``TASK/SLUG[-inputlenN]_rR`` as in the original."""
    runs = []
    for config in CONFIGS:
        groups = [(task.key, '%s/%s' % (task.key, config.slug),
                   ('--data-set', task.data_set)) for task in TASKS]
        if config.long_inputs:
            birdclef = TASKS[-1]
            for variant in LONG_INPUTS:
                extra = variant.leaf_args if config.key == 'leaf' else ()
                groups.append((variant.key, '%s/%s%s' % (birdclef.key, config.slug,
                                                         variant.suffix),
                               ('--data-set', birdclef.data_set) + variant.args + extra))
        for task_key, group, task_args in groups:
            for r in range(1, repeats + 1):
                runs.append(Run('%s_r%d' % (group, r), 'train', task_key, config.key, r,
                                task_args + config.args + ('--seed', str(r))))
    if bench:
        runs.append(Run(BENCH_RUN, 'bench', None, None, None, ()))
    return runs


def select(runs, only):
    """The runs whose name contains every substring in ``only`` (case-insensitive)."""
    return [r for r in runs if all(s.lower() in r.name.lower() for s in only)]


# --- paths and commands ---------------------------------------------------------------------

def run_dir(output_dir: str, run: Run) -> str:
    return os.path.join(output_dir, 'models', run.name)


def result_path(output_dir: str, run: Run) -> str:
    return os.path.join(run_dir(output_dir, run),
                        BENCH_NAME if run.kind == 'bench' else RESULTS_NAME)


def lock_path(output_dir: str, run: Run) -> str:
    return os.path.join(run_dir(output_dir, run), LOCK_NAME)


def base_command():
    """The command that stands for ``eleaf``: ``$ELEAF_EXPERIMENTS_COMMAND`` or
    ``sys.executable -m eleaf``."""
    custom = os.environ.get(COMMAND_ENV)
    return shlex.split(custom) if custom else [sys.executable, '-m', 'eleaf']


def command(run: Run, output_dir: str, device: str, data_path: str = '', extra=()):
    """The command line of ``run``: eleaf train with the run's options, the runner's
    (``--output-dir``, ``--model-name``, ``--resume auto``, ``--device``, ``--data-path``)
    and ``extra`` last (so they win); or eleaf bench writing a temporary JSON file that
    :func:`run_one` renames to ``bench.json`` on success."""
    if run.kind == 'bench':
        return base_command() + ['bench', '--device', device, '--no-progress', '--json',
                                 result_path(output_dir, run) + '.partial']
    cmd = base_command() + ['train'] + list(run.args) + [
        '--output-dir', output_dir, '--model-name', run.name, '--resume', 'auto',
        '--device', device]
    if data_path:
        cmd += ['--data-path', data_path]
    return cmd + list(extra)


def check_extra(extra):
    """Raise ValueError for train options after ``--`` that the runner sets itself."""
    for arg in extra:
        for option in RUNNER_OPTIONS:
            if arg == option or arg.startswith(option + '='):
                raise ValueError('%s is set by the runner for every run; it cannot be passed '
                                 'after --' % option)


# --- locks ----------------------------------------------------------------------------------

def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


#: an empty or unparsable lock older than this many seconds is judged stale: this runner
#: writes a lock's content before the lock appears, so only a crash of an older runner, a
#: full disk or a hand-made file leaves one
GARBAGE_LOCK_GRACE_S = 60.0


def _boot_id():
    """This boot's id (Linux), or None."""
    try:
        with open('/proc/sys/kernel/random/boot_id') as f:
            return f.read().strip() or None
    except OSError:
        return None


def _pid_start(pid):
    """The start time of process ``pid`` in clock ticks since boot (Linux ``/proc``), or None
    where it cannot be read. With the pid it identifies a process, so a pid reused by a
    later process is told apart."""
    try:
        with open('/proc/%d/stat' % int(pid), 'rb') as f:
            stat = f.read()
        # the command name (field 2) is in parentheses and may hold spaces or parentheses
        return int(stat[stat.rindex(b')') + 2:].split()[19])
    except (OSError, ValueError, IndexError, TypeError, OverflowError):
        return None


def _pid_alive(pid, start=None) -> bool:
    """Whether process ``pid`` exists and, if ``start`` (its recorded :func:`_pid_start`)
    is given and the current one can be read, is the same process (not a reused pid)."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return _same_process(pid, start)
    except (ValueError, TypeError, OverflowError):  # not a pid we can judge: assume alive
        return True
    return _same_process(pid, start)


def _same_process(pid, start) -> bool:
    if start is None:
        return True
    current = _pid_start(pid)
    return current is None or current == start


def _process_info(pid=None):
    """host, pid and what tells this process apart from a later one with the same pid."""
    pid = os.getpid() if pid is None else pid
    info = {'host': socket.gethostname(), 'pid': pid}
    start, boot = _pid_start(pid), _boot_id()
    if start is not None and boot is not None:
        info.update(pid_start=start, boot_id=boot)
    return info


def read_lock(path: str):
    """The lock's content (dict); {} when it is empty, unreadable or not a lock (see
    :func:`lock_is_stale`); None when there is no lock."""
    if not os.path.lexists(path):
        return None
    info = _read_json(path)
    return info if _is_lock_content(info) else {}


def _is_lock_content(info) -> bool:
    return (isinstance(info, dict) and isinstance(info.get('host'), str)
            and isinstance(info.get('pid'), int) and not isinstance(info.get('pid'), bool))


def _lock_age(path: str):
    try:
        return max(0.0, datetime.datetime.now().timestamp() - os.lstat(path).st_mtime)
    except OSError:
        return None


def lock_is_stale(info, path: str = None) -> bool:
    """True for

    - a lock of this host whose runner and training process (if recorded) are both gone;
      a pid that is alive again but with another start time (a reused pid) or a lock from
      before the last reboot counts as gone;
    - an empty, unreadable or garbled lock (``info == {}``) whose file ``path`` is older
      than :data:`GARBAGE_LOCK_GRACE_S` (it holds no runner that could still be alive).

    Well-formed locks of other hosts are never judged stale."""
    if not info:
        age = _lock_age(path) if path and info is not None else None
        return age is not None and age > GARBAGE_LOCK_GRACE_S
    if info.get('host') != socket.gethostname():
        return False
    boot = info.get('boot_id')
    if boot is not None and _boot_id() is not None and boot != _boot_id():
        return True
    pids = [(info['pid'], info.get('pid_start'))]
    if info.get('child_pid'):
        pids.append((info['child_pid'], info.get('child_start')))
    return not any(_pid_alive(p, s) for p, s in pids)


def describe_lock(info, path: str = None) -> str:
    if not info:
        age = _lock_age(path) if path and info is not None else None
        if age is None:
            return 'empty or unreadable lock'
        if age > GARBAGE_LOCK_GRACE_S:
            return ('empty or unreadable lock, %.0f s old; stale: no runner left a lock like '
                    'this' % age)
        return 'lock being written'
    text = 'host %s, pid %s, since %s' % (info.get('host'), info.get('pid'),
                                          info.get('started'))
    return text + ('; stale: that process is gone' if lock_is_stale(info, path) else '')


def _write_lock_content(fd, info):
    data = json.dumps(info).encode()
    while data:
        data = data[os.write(fd, data):]
    os.fsync(fd)


def _write_private(path: str, info: dict) -> str:
    """Write ``info`` to a private file next to ``path`` and return its name; on failure
    (a full disk) nothing is left behind and the OSError is raised."""
    tmp = '%s.%s.%d.tmp' % (path, socket.gethostname(), os.getpid())
    fd = os.open(tmp, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
    try:
        try:
            _write_lock_content(fd, info)
        finally:
            os.close(fd)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: str):
    try:
        os.unlink(path)
    except OSError:
        pass


def _remove_dead_private_files(path: str):
    """Remove the private files (``LOCK.HOST.PID.tmp``) that runners of this host killed
    while writing a lock left behind."""
    prefix = '%s.%s.' % (path, socket.gethostname())
    for tmp in glob.glob(glob.escape(prefix) + '*.tmp'):
        pid = tmp[len(prefix):-len('.tmp')]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            _unlink_quietly(tmp)


class LockError(OSError):
    """The lock could not be created (a full disk, no permission)."""


def acquire_lock(path: str, steal_stale: bool = False):
    """Create the lockfile ``path`` atomically holding this host, pid (with its start time
    and boot id, to tell a reused pid apart) and start time; returns the lock's content, or
    None when another runner holds it. The content is written to a private file first,
    which is then hard-linked to ``path`` (atomic, and fails when ``path`` exists, also on
    NFS), so a lock is never seen empty and a failed write (a full disk) leaves no lock:
    :class:`LockError` says why. Where hard links are not supported, ``O_CREAT | O_EXCL``
    is used. ``steal_stale``: first remove a lock that :func:`lock_is_stale` judges stale."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as exc:
        raise LockError('cannot create the lock %s: %s' % (path, exc)) from exc
    if steal_stale:
        _remove_stale(path)
    _remove_dead_private_files(path)
    info = dict(_process_info(),
                started=datetime.datetime.now().isoformat(timespec='seconds'))
    try:
        tmp = _write_private(path, info)
    except OSError as exc:
        raise LockError('cannot create the lock %s: %s' % (path, exc)) from exc
    try:
        os.link(tmp, path)
    except FileExistsError:
        return None
    except OSError:  # no hard links here (some FUSE/SMB mounts): create it in place
        return _acquire_excl(path, info)
    finally:
        _unlink_quietly(tmp)
    return info


def _acquire_excl(path: str, info: dict):
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    except OSError as exc:
        raise LockError('cannot create the lock %s: %s' % (path, exc)) from exc
    try:
        try:
            _write_lock_content(fd, info)
        finally:
            os.close(fd)
    except OSError as exc:
        _unlink_quietly(path)
        raise LockError('cannot create the lock %s: %s' % (path, exc)) from exc
    return info


def _identity(path: str):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _remove_stale(path: str):
    """Remove ``path`` if it is a stale lock. The lock is first renamed to a private name
    and checked again (same file, same content), so a fresh lock that another runner
    created meanwhile is put back instead of removed."""
    identity = _identity(path)
    info = read_lock(path)
    if identity is None or not lock_is_stale(info, path):
        return
    described = describe_lock(info, path)
    aside = '%s.stale.%s.%d' % (path, socket.gethostname(), os.getpid())
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    except OSError as exc:
        print('cannot remove the stale lock %s (%s): %s' % (path, described, exc), flush=True)
        return
    if _identity(aside) != identity or (info and read_lock(aside) != info):
        # not the lock we judged: give it back
        try:
            os.link(aside, path)
        except FileExistsError:  # a newer lock is there already
            pass
        except OSError:  # no hard links here: put it back unless a newer lock is there
            if not os.path.lexists(path):
                os.replace(aside, path)
                return
        _unlink_quietly(aside)
        return
    _unlink_quietly(aside)
    print('removed the stale lock %s (%s)' % (path, described), flush=True)


def update_lock(path: str, info: dict) -> bool:
    """Rewrite our lock atomically with ``info`` (e.g. the training process's pid). Where
    that fails (a full disk) the lock keeps its content, nothing else is left behind, and a
    warning says so; returns whether it was rewritten."""
    try:
        tmp = _write_private(path, info)
        try:
            os.replace(tmp, path)
        except OSError:
            _unlink_quietly(tmp)
            raise
    except OSError as exc:
        print('warning: cannot update the lock %s (%s); it keeps naming only the runner'
              % (path, exc), flush=True)
        return False
    return True


def release_lock(path: str, info: dict):
    """Remove our lock (not one that replaced it after a steal)."""
    current = read_lock(path)
    if current is not None and (current.get('host'), current.get('pid')) == (info['host'],
                                                                             info['pid']):
        os.unlink(path)


def state(output_dir: str, run: Run):
    """('finished' | 'running' | 'pending', detail): detail describes the lock."""
    if os.path.exists(result_path(output_dir, run)):
        return 'finished', ''
    path = lock_path(output_dir, run)
    info = read_lock(path)
    if info is not None:
        return 'running', describe_lock(info, path)
    return 'pending', ''


# --- running --------------------------------------------------------------------------------

def _child_env():
    """The environment of a run: the checkout's ``eleaf`` first on PYTHONPATH."""
    env = dict(os.environ)
    if os.path.isdir(os.path.join(ROOT, 'eleaf')):
        env['PYTHONPATH'] = os.pathsep.join([ROOT] + [p for p in
                                                      env.get('PYTHONPATH', '').split(os.pathsep)
                                                      if p])
    return env


def _wait(proc) -> int:
    """Wait for ``proc``; forward each Ctrl-C to it (it runs in its own session, so a
    terminal's Ctrl-C reaches only the runner): eleaf train saves a checkpoint at the first
    and aborts at the second. Re-raises KeyboardInterrupt once the process has ended."""
    interrupted = False
    while True:
        try:
            rc = proc.wait()
            break
        except KeyboardInterrupt:
            interrupted = True
            proc.send_signal(signal.SIGINT)
    if interrupted:
        raise KeyboardInterrupt
    return rc


def run_one(run: Run, cmd, output_dir: str, steal_stale: bool = False) -> str:
    """Run ``run`` unless it is finished or locked; returns 'finished', 'running', 'done'
    or 'failed (exit status N)'. The lock is removed whatever happens (KeyboardInterrupt
    included, re-raised after the run's process has ended)."""
    if os.path.exists(result_path(output_dir, run)):
        return 'finished'
    path = lock_path(output_dir, run)
    try:
        info = acquire_lock(path, steal_stale)
    except LockError as exc:
        return 'failed (%s)' % exc
    if info is None:
        return 'running'
    try:
        if os.path.exists(result_path(output_dir, run)):  # finished before we locked it
            return 'finished'
        print('=== %s: starting on %s: %s' % (run.name, info['host'], shlex.join(cmd)),
              flush=True)
        try:
            proc = subprocess.Popen(cmd, env=_child_env(), start_new_session=True)
        except OSError as exc:
            return 'failed (cannot start %s: %s)' % (cmd[0], exc)
        child = _process_info(proc.pid)
        info = dict(info, child_pid=proc.pid)
        if 'pid_start' in child:
            info['child_start'] = child['pid_start']
        update_lock(path, info)
        rc = _wait(proc)
        if run.kind == 'bench':
            partial = result_path(output_dir, run) + '.partial'
            # exit status 1: some cases failed; the file lists them with the others
            if rc in (0, 1) and os.path.exists(partial):
                os.replace(partial, result_path(output_dir, run))
                return 'done' if rc == 0 else 'done (some cases failed, see %s)' % BENCH_NAME
        return 'done' if rc == 0 else 'failed (exit status %d)' % rc
    finally:
        release_lock(path, info)


def _sigterm(signum, frame):
    raise KeyboardInterrupt


def run_all(runs, output_dir: str, device: str, data_path: str = '', extra=(),
            steal_stale: bool = False) -> int:
    """Run every free run in order; returns the exit status (0: no run failed, 1: some
    failed, 130: interrupted)."""
    counts = collections.Counter()
    failed = []
    for run in runs:
        cmd = command(run, output_dir, device, data_path, extra)
        try:
            outcome = run_one(run, cmd, output_dir, steal_stale)
        except KeyboardInterrupt:
            print('=== %s: interrupted; the lock is removed, run again to resume' % run.name,
                  flush=True)
            return 130
        if outcome == 'running':
            path = lock_path(output_dir, run)
            outcome = 'running (%s)' % describe_lock(read_lock(path), path)
        print('=== %s: %s' % (run.name, outcome), flush=True)
        counts[outcome.split(' ')[0]] += 1
        if outcome.startswith('failed'):
            failed.append(run.name)
    print('summary: %d done, %d failed, %d already finished, %d running elsewhere'
          % (counts['done'], counts['failed'], counts['finished'], counts['running']))
    if failed:
        print('failed: %s' % ', '.join(failed))
    return 1 if failed else 0


def dry_run(runs, output_dir, device, data_path='', extra=()) -> str:
    """Each run's state and command, then the counts."""
    lines, counts = [], collections.Counter()
    for run in runs:
        st, detail = state(output_dir, run)
        counts[st] += 1
        lines.append('%-8s %s%s' % (st, run.name, ' (%s)' % detail if detail else ''))
        lines.append('    %s' % shlex.join(command(run, output_dir, device, data_path, extra)))
    lines.append('%d runs: %d finished, %d running, %d pending' % (
        len(runs), counts['finished'], counts['running'], counts['pending']))
    return '\n'.join(lines)


# --- report ---------------------------------------------------------------------------------

def _groups():
    """{run name without ``_rR``: (row key, config key)} of the experiment list."""
    return {r.name.rsplit('_r', 1)[0]: (r.task, r.config)
            for r in experiment_list(repeats=1, bench=False)}


def collect_results(output_dir: str):
    """({(row, config): {'last': [test acc, ...], 'best': [...]}}, [names of other runs])
    from every ``results.json`` below ``OUTPUT_DIR/models``; accuracies are fractions."""
    models = os.path.join(output_dir, 'models')
    groups = _groups()
    cells, other = collections.defaultdict(lambda: {'last': [], 'best': []}), []
    for path in sorted(glob.glob(os.path.join(models, '**', RESULTS_NAME), recursive=True)):
        name = os.path.relpath(os.path.dirname(path), models).replace(os.sep, '/')
        match = re.fullmatch(r'(.+)_r\d+', name)
        key = groups.get(match.group(1)) if match else None
        results = _read_json(path)
        if key is None or not isinstance(results, dict):
            other.append(name)
            continue
        for which in ('last', 'best'):
            if isinstance(results.get(which), dict) and 'test_acc' in results[which]:
                cells[key][which].append(float(results[which]['test_acc']))
    return dict(cells), other


def format_cell(values, repeats: int = DEFAULT_REPEATS) -> str:
    """Mean ± sample std in % ('–' without values); '(n=N)' when N differs from
    ``repeats``; a single value has no std."""
    if not values:
        return '–'
    pct = [100 * v for v in values]
    text = '%.2f' % statistics.mean(pct)
    if len(pct) > 1:
        text += ' ± %.2f' % statistics.stdev(pct)
    if len(pct) != repeats:
        text += ' (n=%d)' % len(pct)
    return text


def _markdown_table(header, rows):
    out = ['| ' + ' | '.join(header) + ' |', '|' + '|'.join(['---'] * len(header)) + '|']
    return out + ['| ' + ' | '.join(row) + ' |' for row in rows]


def accuracy_table(cells, which: str, repeats: int = DEFAULT_REPEATS) -> str:
    """Markdown table: rows the tasks, columns the configurations, cells the test accuracy
    of the ``which`` ('last' or 'best') model, mean ± std over the runs; 'n/a' for a
    combination that is not in the experiment list."""
    planned = set(_groups().values())
    header = ['task'] + [c.label for c in CONFIGS]
    rows = [[label] + [format_cell(cells.get((key, c.key), {}).get(which, []), repeats)
                       if (key, c.key) in planned else 'n/a' for c in CONFIGS]
            for key, label in table_rows()]
    return '\n'.join(_markdown_table(header, rows))


def throughput_table(bench: dict) -> str:
    """Markdown table of one ``eleaf bench --json`` file: rows frontend [backend], columns
    size and workload, cells examples/s and throughput relative to mel."""
    timed = [r for r in bench.get('results', []) if r.get('time_s')]
    columns = []
    for r in timed:
        if (r['batch'], r['seconds'], r['workload']) not in columns:
            columns.append((r['batch'], r['seconds'], r['workload']))
    labels, cells = [], {}
    for r in timed:
        label = r['frontend'] + ('' if r.get('n_filters') in (None, 40)
                                 else ' (%d filters)' % r['n_filters'])
        label += ' [%s]' % r['backend']
        if label not in labels:
            labels.append(label)
        ratio = r.get('x_mel')
        cells[label, (r['batch'], r['seconds'], r['workload'])] = '%.0f (%s)' % (
            r['examples_per_s'], '–' if ratio is None else '%.2f×' % ratio)
    header = ['frontend [backend]'] + ['%d × %g s %s' % c for c in columns]
    rows = [[label] + [cells.get((label, c), '–') for c in columns] for label in labels]
    return '\n'.join(_markdown_table(header, rows))


def format_report(output_dir: str, repeats: int = DEFAULT_REPEATS) -> str:
    """The accuracy tables (last and best model) and a throughput table per benchmark file
    found below ``OUTPUT_DIR/models``, as markdown."""
    cells, other = collect_results(output_dir)
    expected = len(experiment_list(repeats, bench=False))
    found = sum(len(v['last']) for v in cells.values())
    summary = ('%d of %d training runs finished (%d per task and configuration). Cells: mean '
               '± sample standard deviation of the test accuracy in %%, "(n=N)" where N '
               'differs from %d, "–" where no run has finished, "n/a" where the experiments '
               'have no such run.' % (found, expected, repeats, repeats))
    parts = ['# EfficientLEAF experiments: %s' % output_dir, '', summary, '',
             "## Test accuracy (%), last epoch's model (as the original reports)", '',
             accuracy_table(cells, 'last', repeats), '',
             '## Test accuracy (%), best model (lowest validation loss)', '',
             accuracy_table(cells, 'best', repeats)]
    if other:
        parts += ['', 'Not in the experiment list (left out): %s' % ', '.join(other)]
    for path in sorted(glob.glob(os.path.join(output_dir, 'models', '**', BENCH_NAME),
                                 recursive=True)):
        bench = _read_json(path)
        if not isinstance(bench, dict):
            continue
        meta = bench.get('meta', {})
        parts += ['', '## Throughput: %s' % os.path.relpath(path, output_dir), '',
                  '%s (%s), torch %s, %s; cells: examples/s (throughput relative to mel)'
                  % (meta.get('device'), meta.get('device_name'), meta.get('torch'),
                     meta.get('date')), '', throughput_table(bench)]
    return '\n'.join(parts) + '\n'


# --- command line ---------------------------------------------------------------------------

def _positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError('must be >= 1, got %d' % value)
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='experiments/run.py',
        description="Run the EfficientLEAF paper's experiments (eleaf train, eleaf bench), "
                    'several runners in parallel sharing --output-dir; options after -- go '
                    "to every eleaf train. 'experiments/run.py report' tabulates the results.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--device', default='cuda', help='cpu, cuda or cuda:N, for every run')
    p.add_argument('--data-path', default='', help='directory holding the data sets')
    p.add_argument('--output-dir', default='outputs',
                   help='runs go to OUTPUT_DIR/models/NAME/ (shared between runners)')
    p.add_argument('--only', action='append', default=[], metavar='TEXT',
                   help='only runs whose name contains TEXT (case-insensitive; repeat: '
                        'every TEXT)')
    p.add_argument('--repeats', type=_positive, default=DEFAULT_REPEATS,
                   help='runs per configuration and task (seeds 1 to N)')
    p.add_argument('--no-bench', action='store_true', help='leave out the frontend benchmark')
    p.add_argument('--dry-run', action='store_true',
                   help='print the runs, their state and commands, and exit')
    p.add_argument('--steal-stale-locks', action='store_true',
                   help="remove locks of this host whose runner and training process are "
                        "gone (after a crash or kill -9) and take those runs")
    return p


def build_report_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='experiments/run.py report',
        description="The paper's accuracy table (mean ± std of the test accuracy per task "
                    'and frontend) and the throughput tables, as markdown.')
    p.add_argument('--output-dir', default='outputs', help='the runners\' --output-dir')
    p.add_argument('--markdown', metavar='FILE', help='also write the report to FILE')
    p.add_argument('--repeats', type=_positive, default=DEFAULT_REPEATS,
                   help='expected runs per cell (cells with another count show n)')
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['report']:
        args = build_report_parser().parse_args(argv[1:])
        text = format_report(args.output_dir, args.repeats)
        print(text, end='')
        if args.markdown:
            with open(args.markdown, 'w') as f:
                f.write(text)
        return 0
    extra = []
    if '--' in argv:
        argv, extra = argv[:argv.index('--')], argv[argv.index('--') + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        check_extra(extra)
    except ValueError as exc:
        parser.error(str(exc))
    runs = select(experiment_list(args.repeats, bench=not args.no_bench), args.only)
    if not runs:
        parser.error('no run matches --only %s' % ' --only '.join(args.only))
    if args.dry_run:
        print(dry_run(runs, args.output_dir, args.device, args.data_path, extra))
        return 0
    # Ctrl-C and SIGTERM stop the run cleanly, also where a shell started the runner with
    # SIGINT ignored (a background job); the training process then gets the default too
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _sigterm)
    return run_all(runs, args.output_dir, args.device, args.data_path, extra,
                   args.steal_stale_locks)


if __name__ == '__main__':
    sys.exit(main())
