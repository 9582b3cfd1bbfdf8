"""One live ``eleaf train`` per run directory (``OUTPUT_DIR/models/MODEL_NAME/``).

The run takes the lockfile ``train.lock`` there before it reads a checkpoint or writes
anything, and removes it when it ends (also after an error or Ctrl-C). The lock holds the
host, the pid, the process's start time and the boot id (Linux ``/proc``), the start time
and the command line. A second run on the same directory refuses with
:class:`RunLockedError`, naming the running one, unless it is told to take the lock over
(``--break-lock``). A lock is *stale*, and silently replaced, when it was made on this host
and its process is gone: the pid no longer exists, belongs to a later process (another start
time: the pid was reused) or the machine has rebooted since. An empty or garbled lock older
than :data:`GARBAGE_GRACE_S` is stale on any host. A live lock of another host can only be
broken by hand (``--break-lock``), as eleaf cannot see that host's processes.

The lock is created atomically: its content is written to a private file that is then
hard-linked to the lock's name (which fails when a lock exists, also on NFS), so a lock is
never seen half-written.
"""
import datetime
import glob
import json
import os
import socket
import sys
from typing import Optional

__all__ = ['LOCK_NAME', 'RunLockedError', 'RunLock', 'acquire', 'read', 'is_stale',
           'describe']

LOCK_NAME = 'train.lock'

#: an empty or unparsable lock older than this many seconds is stale
GARBAGE_GRACE_S = 60.0


class RunLockedError(ValueError):
    """Another live ``eleaf train`` holds the run directory (or the lock cannot be made)."""


def _boot_id() -> Optional[str]:
    try:
        with open('/proc/sys/kernel/random/boot_id') as f:
            return f.read().strip() or None
    except OSError:
        return None


def _pid_start(pid) -> Optional[int]:
    """Start time of process ``pid`` in clock ticks since boot (Linux), or None."""
    try:
        with open('/proc/%d/stat' % int(pid), 'rb') as f:
            stat = f.read()
        return int(stat[stat.rindex(b')') + 2:].split()[19])
    except (OSError, ValueError, IndexError, TypeError, OverflowError):
        return None


def _alive(pid, start=None) -> bool:
    """Process ``pid`` exists and, where its start time is known on both sides, is the
    process that wrote the lock."""
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    except (ValueError, TypeError, OverflowError):
        return True
    if start is None:
        return True
    now = _pid_start(pid)
    return now is None or now == start


def _is_lock(info) -> bool:
    return (isinstance(info, dict) and isinstance(info.get('host'), str)
            and isinstance(info.get('pid'), int) and not isinstance(info.get('pid'), bool))


def read(path: str):
    """The lock's content; {} when it is empty, unreadable or garbled; None when there is
    no lock."""
    if not os.path.lexists(path):
        return None
    try:
        with open(path, 'rb') as f:
            info = json.loads(f.read().decode('utf-8'))
    except (OSError, ValueError):
        return {}
    return info if _is_lock(info) else {}


def _age(path: str) -> Optional[float]:
    try:
        return max(0.0, datetime.datetime.now().timestamp() - os.lstat(path).st_mtime)
    except OSError:
        return None


def is_stale(info, path: str) -> bool:
    """Whether the lock (``info`` as :func:`read` returned it) holds no live run."""
    if info is None:
        return False
    if not info:
        age = _age(path)
        return age is not None and age > GARBAGE_GRACE_S
    if info['host'] != socket.gethostname():
        return False
    boot = _boot_id()
    if info.get('boot_id') and boot and info['boot_id'] != boot:
        return True
    return not _alive(info['pid'], info.get('pid_start'))


def describe(info, path: str) -> str:
    if not info:
        return 'an empty or unreadable lock %s' % path
    return 'pid %s on host %s, started %s (%s)' % (
        info.get('pid'), info.get('host'), info.get('started'),
        ' '.join(info.get('argv') or []) or 'eleaf train')


def _identity(path: str):
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def _unlink(path: str):
    try:
        os.unlink(path)
    except OSError:
        pass


def _write_private(path: str, info: dict) -> str:
    tmp = '%s.%s.%d.tmp' % (path, socket.gethostname(), os.getpid())
    try:
        with open(tmp, 'w') as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _unlink(tmp)
        raise
    return tmp


def _remove_dead_private_files(path: str):
    """Remove the private files (``train.lock.HOST.PID.tmp``) of runs of this host that were
    killed while writing the lock."""
    prefix = '%s.%s.' % (path, socket.gethostname())
    for tmp in glob.glob(glob.escape(prefix) + '*.tmp'):
        pid = tmp[len(prefix):-len('.tmp')]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            _unlink(tmp)


def _remove(path: str, identity) -> bool:
    """Remove the lock ``path`` if it is still the file ``identity``: renamed aside first,
    so that a lock another run created meanwhile is put back."""
    aside = '%s.broken.%s.%d' % (path, socket.gethostname(), os.getpid())
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if _identity(aside) != identity:
        try:
            os.link(aside, path)
        except OSError:
            pass
        _unlink(aside)
        return False
    _unlink(aside)
    return True


class RunLock:
    """A held lock; :meth:`release` (or leaving the ``with`` block) removes it."""

    def __init__(self, path: str, info: dict, replaced: Optional[str] = None):
        self.path = path
        self.info = info
        #: the description of the stale or broken lock this one replaced, if any
        self.replaced = replaced

    def release(self):
        current = read(self.path)
        if current and (current.get('host'), current.get('pid'),
                        current.get('started')) == (self.info['host'], self.info['pid'],
                                                    self.info['started']):
            _unlink(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def acquire(model_dir: str, break_lock: bool = False, argv=None) -> RunLock:
    """Take the lock of ``model_dir``; :class:`RunLockedError` (one line) when another live
    run holds it (unless ``break_lock``) or the lock cannot be written."""
    path = os.path.join(model_dir, LOCK_NAME)
    info = {'host': socket.gethostname(), 'pid': os.getpid(),
            'started': datetime.datetime.now().isoformat(timespec='seconds'),
            'argv': list(sys.argv if argv is None else argv)}
    start, boot = _pid_start(os.getpid()), _boot_id()
    if start is not None and boot is not None:
        info.update(pid_start=start, boot_id=boot)
    try:
        os.makedirs(model_dir, exist_ok=True)
        _remove_dead_private_files(path)
        tmp = _write_private(path, info)
    except OSError as exc:
        raise RunLockedError('cannot create the run lock %s: %s' % (path, exc)) from None
    replaced = None
    try:
        for _ in range(5):
            try:
                os.link(tmp, path)
                return RunLock(path, info, replaced)
            except FileExistsError:
                pass
            except OSError:  # no hard links on this file system
                try:
                    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise RunLockedError('cannot create the run lock %s: %s'
                                         % (path, exc)) from None
                else:
                    try:
                        with os.fdopen(fd, 'w') as f:
                            json.dump(info, f)
                    except OSError as exc:
                        _unlink(path)
                        raise RunLockedError('cannot create the run lock %s: %s'
                                             % (path, exc)) from None
                    return RunLock(path, info, replaced)
            identity = _identity(path)
            held = read(path)
            if identity is None:
                continue  # it was just removed: try again
            stale = is_stale(held, path)
            if not stale and held and held.get('pid') == os.getpid() \
                    and held['host'] == info['host'] and not break_lock:
                raise RunLockedError('this process already trains in %s' % model_dir)
            if not (break_lock or stale):
                raise RunLockedError(
                    '%s is in use by another eleaf train: %s. Wait for it to finish or stop '
                    'it; pass a different --model-name or --output-dir to train alongside, or '
                    '--break-lock if you are sure it is not running'
                    % (model_dir, describe(held, path)))
            what = describe(held, path)
            if _remove(path, identity):
                replaced = what + (' (stale: not running)' if stale else
                                   ' (broken by --break-lock)')
        raise RunLockedError('cannot take the run lock %s: other runs keep creating it'
                             % path)
    finally:
        _unlink(tmp)
