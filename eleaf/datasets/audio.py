"""Reading audio files: float32 samples at a requested sample rate, mixed down to mono.

Units: sample rates in Hz, lengths in samples (at the requested rate).
"""
import errno
import math
import os
import stat
from typing import Optional

import numpy as np

from .text import display, fs_path

__all__ = ['AudioError', 'load_audio', 'check_audio']

_LFS_POINTER = b'version https://git-lfs'


class AudioError(Exception):
    """An audio file that cannot be used: missing, unreadable, malformed, empty or holding
    non-finite samples. ``path`` is the file, ``reason`` says why."""

    def __init__(self, path: str, reason: str):
        super().__init__('cannot read %s: %s' % (display(path), reason))
        self.path = path
        self.reason = reason


def _soundfile():
    try:
        import soundfile
    except ImportError as exc:  # pragma: no cover - soundfile is a dependency of 'train'
        raise ImportError('reading audio files needs the soundfile package: '
                          'pip install soundfile') from exc
    return soundfile


def _os_reason(path: str, exc: OSError) -> str:
    """What an OSError from stat/open of ``path`` means, in words."""
    if exc.errno == errno.ENOENT:
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                return 'a broken symbolic link (to %s, which does not exist)' % display(
                    os.readlink(path))
        except OSError:
            pass
        return 'no such file'
    if exc.errno == errno.ELOOP:
        return 'a symbolic link loop (too many levels of symbolic links)'
    if exc.errno in (errno.EACCES, errno.EPERM):
        return 'permission denied (check the file\'s read permission)'
    name = errno.errorcode.get(exc.errno, '')
    return '%s%s' % (exc.strerror or type(exc).__name__, ' (%s)' % name if name else '')


def _reason(path: str, exc: Exception) -> str:
    """Why ``path`` could not be opened, in words: what the file system says (missing, a
    broken link, a link loop, a directory, no permission, empty), a Git LFS pointer (a clone
    without ``git lfs``), or else the reader's message (libsndfile's "System error." alone
    says nothing)."""
    try:
        info = os.stat(fs_path(path))
    except OSError as err:
        return _os_reason(path, err)
    if stat.S_ISDIR(info.st_mode):
        return 'a directory, not an audio file'
    if info.st_size == 0:
        return 'an empty file (0 bytes)'
    try:
        with open(fs_path(path), 'rb') as f:
            if f.read(len(_LFS_POINTER)) == _LFS_POINTER:
                return 'a Git LFS pointer, not audio (fetch the file with git lfs pull)'
    except OSError as err:
        return _os_reason(path, err)
    text = getattr(exc, 'error_string', None) or str(exc) or type(exc).__name__
    if text.strip().rstrip('.').lower() == 'system error':
        text = 'the audio reader (libsndfile) failed with a system error on this %d-byte file' \
            % info.st_size
    return text


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``x`` (L, C) from ``rate`` to ``target`` Hz with ``scipy.signal.resample_poly`` (up and
    down factors reduced by their gcd): (ceil(L * target / rate), C)."""
    from scipy.signal import resample_poly
    g = math.gcd(rate, target)
    return resample_poly(x, target // g, rate // g, axis=0)


def load_audio(path: str, sample_rate: int, mono: bool = True,
               max_length: Optional[int] = None) -> np.ndarray:
    """Read ``path`` with soundfile at ``sample_rate`` Hz.

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG Vorbis, ...).
        sample_rate: output rate in Hz; other rates are resampled with
            ``scipy.signal.resample_poly`` (factors reduced by their gcd).
        mono: mix the channels down (their mean).
        max_length: keep at most this many output samples (only the needed beginning of the
            file is read).
    Returns:
        float32 array (L,) if ``mono``, else (C, L).
    Raises:
        AudioError: the file is missing or unreadable, has no samples or non-finite ones.
    """
    sf = _soundfile()
    try:
        with sf.SoundFile(fs_path(path)) as f:
            rate = f.samplerate
            frames = -1 if max_length is None else math.ceil(max_length * rate / sample_rate)
            x = f.read(frames, dtype='float32', always_2d=True)  # (L, C)
    except Exception as exc:  # libsndfile reports problems as several exception types
        raise AudioError(path, _reason(path, exc)) from exc
    if x.shape[0] == 0:
        raise AudioError(path, 'no samples (empty or truncated file)')
    if mono:
        x = x.mean(axis=1, keepdims=True)
    if rate != sample_rate:
        x = _resample(x, rate, sample_rate)
    if max_length is not None:
        x = x[:max_length]
    if not np.all(np.isfinite(x)):
        raise AudioError(path, 'non-finite samples')
    x = np.ascontiguousarray(x.T, dtype=np.float32)
    return x[0] if mono else x


def check_audio(path: str) -> None:
    """Raise AudioError unless ``path``'s header can be read and declares at least one
    sample (a quick check: the samples themselves are not decoded)."""
    sf = _soundfile()
    try:
        info = sf.info(fs_path(path))
    except Exception as exc:
        raise AudioError(path, _reason(path, exc)) from exc
    if info.frames <= 0:
        raise AudioError(path, 'no samples (empty or truncated file)')
