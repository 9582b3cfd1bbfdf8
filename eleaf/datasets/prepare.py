"""Obtaining and checking the paper's data sets: the steps per data set, a resumable and
checksummed downloader, and a validation scan of an existing copy.

Only files with a published sha256 are downloaded (Speech Commands, CREMA-D's clips, the
VoxForge archive list); the checksums are tensorflow_datasets' (``url_checksums/*.txt`` in
https://github.com/tensorflow/datasets), cited where they are defined. NSynth (no published
checksum of its JSON/WAV archives), the VoxForge archives (none either) and BirdCLEF 2021
(Kaggle account needed) come with instructions only.
"""
import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from .errors import DataError
from . import birdclef2021, crema_d, nsynth, registry, speechcommands, voxforge
from .audio import AudioError, check_audio
from .text import display, open_text, printable
from .splits import SPLITS

__all__ = ['DownloadError', 'Remote', 'GUIDES', 'steps', 'downloadable', 'download', 'unpack',
           'read_checksum_list', 'unpack_voxforge_archives', 'download_dataset', 'Report',
           'validate', 'format_report']

CHUNK = 1 << 20  # bytes per read


class DownloadError(RuntimeError):
    """A download or unpacking step that failed (network, HTTP, checksum, archive)."""


class Remote(NamedTuple):
    """A published file: its URL, size in bytes and sha256 (hex)."""
    url: str
    size: Optional[int]
    sha256: str


#: tensorflow_datasets/url_checksums/speech_commands.txt
SPEECHCOMMANDS_ARCHIVE = Remote(
    'http://download.tensorflow.org/data/speech_commands_v0.02.tar.gz', 2428923189,
    'af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58')

#: tensorflow_datasets/url_checksums/crema_d.txt: tensorflow_datasets' list of the URL, size
#: and sha256 of every CREMA-D clip (lines ``URL SIZE SHA256``)
CREMAD_CHECKSUMS = Remote(
    'https://storage.googleapis.com/tfds-data/manual_checksums/crema_d.txt', 1339905,
    '66b5d959dcee997321baf9080c80022a6937279419446db3a9d4827d839b0abb')

#: tensorflow_datasets/url_checksums/voxforge.txt
VOXFORGE_URL_LIST = Remote(
    'https://storage.googleapis.com/tfds-data/downloads/voxforge/voxforge_urls.txt', 1344189,
    '9cc218a5bce16640dc4eeb263aa423ce63ca59fc6587a9487dc397642b76af6c')

NSYNTH_URL = 'http://download.magenta.tensorflow.org/datasets/nsynth/%s.jsonwav.tar.gz'
CREMAD_REPOSITORY = 'https://github.com/CheyneyComputerScience/CREMA-D.git'


# --- the steps ---------------------------------------------------------------------------

def _speechcommands_steps(data_path):
    loc = speechcommands.location(data_path)
    a = SPEECHCOMMANDS_ARCHIVE
    return [
        'download %s (%d bytes, sha256 %s)' % (a.url, a.size, a.sha256),
        'mkdir -p %s && tar -xzf %s -C %s' % (loc, os.path.basename(a.url), loc),
        'or let eleaf do both: eleaf data prepare SPEECHCOMMANDS --data-path %s --download '
        '(resumable, checksum-verified)' % data_path]


def _cremad_steps(data_path):
    return [
        'git lfs install && git clone %s %s (the .wav clips are Git LFS files: without '
        'git lfs you get pointer files)' % (CREMAD_REPOSITORY, os.path.join(data_path,
                                                                           'CREMA-D')),
        'or let eleaf fetch the clips one by one from GitHub, each checked against '
        'tensorflow_datasets\' sha256 list: eleaf data prepare CREMAD --data-path %s '
        '--download (resumable)' % data_path]


def _voxforge_steps(data_path):
    loc = voxforge.location(data_path)
    return [
        'download the archive list %s into %s' % (VOXFORGE_URL_LIST.url, loc),
        'cd %s && wget -x -nc -i %s (the archives, as tensorflow_datasets says; about 100 GB '
        'while unpacking, 60 GB afterwards)' % (loc, voxforge.URL_LIST),
        'eleaf data prepare VOXFORGE --data-path %s --download: fetches the list if needed '
        '(checksum-verified) and unpacks the downloaded archives into <session>_<LANG>/ '
        'directories (archives have no published checksum, so eleaf does not download them)'
        % data_path]


def _nsynth_steps(data_path):
    loc = nsynth.location(data_path)
    return [
        'download %s for SPLIT in train, valid, test (there is no published checksum, so '
        'eleaf does not download them)' % (NSYNTH_URL % 'nsynth-SPLIT'),
        'mkdir -p %s && tar -xzf nsynth-SPLIT.jsonwav.tar.gz -C %s for each SPLIT' % (loc, loc)]


def _birdclef_steps(data_path):
    loc = birdclef2021.location(data_path)
    return [
        'accept the rules of https://www.kaggle.com/c/birdclef-2021 with a Kaggle account',
        'kaggle competitions download -c birdclef-2021 (or the Data tab of that page)',
        "mkdir -p %s && unzip birdclef-2021.zip %s '%s/*' -d %s"
        % (loc, birdclef2021.METADATA, birdclef2021.AUDIO_DIR, loc)]


@dataclass(frozen=True)
class Guide:
    """How to get a data set: a title, its classes, its steps for a ``--data-path``."""
    title: str
    classes: str
    steps: Callable[[str], List[str]]
    downloadable: bool


GUIDES: Dict[str, Guide] = {
    'SPEECHCOMMANDS': Guide('Speech Commands v0.02: 105,829 one-second clips, CC BY 4.0',
                            '35 words', _speechcommands_steps, True),
    'CREMAD': Guide('CREMA-D: 7,442 clips of 91 actors, ODbL', '6 emotions', _cremad_steps,
                    True),
    'VOXFORGE': Guide('VoxForge, the tensorflow_datasets release (sessions before 2020), GPL',
                      '6 languages', _voxforge_steps, True),
    'NSYNTH_PITCH': Guide('NSynth: 305,979 four-second notes (train 289,205, valid 12,678, '
                          'test 4,096), CC BY 4.0',
                          '128 pitches (MIDI 0..127)', _nsynth_steps, False),
    'NSYNTH_INST': Guide('NSynth: 305,979 four-second notes (train 289,205, valid 12,678, '
                         'test 4,096), CC BY 4.0',
                         '11 instrument families', _nsynth_steps, False),
    'BIRDCLEF2021': Guide('BirdCLEF 2021 (Kaggle competition data): xeno-canto recordings',
                          '397 species (primary label)', _birdclef_steps, False),
}


def steps(name: str, data_path: str) -> str:
    """The steps to obtain data set ``name`` below ``data_path``, as text."""
    name = registry.canonical(name)
    guide = GUIDES[name]
    lines = ['%s: %s; %s' % (name, guide.title, guide.classes),
             'expected at %s' % os.path.abspath(registry.location(name, data_path))]
    lines += ['  %d. %s' % (i, s) for i, s in enumerate(guide.steps(data_path), 1)]
    return printable('\n'.join(lines))


def downloadable(name: str) -> bool:
    """Whether :func:`download_dataset` can fetch (part of) data set ``name``."""
    return GUIDES[registry.canonical(name)].downloadable


# --- downloading -------------------------------------------------------------------------

def _progress_bar(enabled: bool, **kwargs):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(**kwargs)


def _open(url: str, offset: int, timeout: float):
    """The response to GET ``url`` from byte ``offset`` (a Range request), or None if the
    server says there is nothing past ``offset`` (HTTP 416)."""
    headers = {'User-Agent': 'eleaf'}
    if offset:
        headers['Range'] = 'bytes=%d-' % offset
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                      timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            return None
        raise DownloadError('downloading %s failed: HTTP %d %s'
                            % (url, exc.code, exc.reason)) from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError('downloading %s failed: %s'
                            % (url, getattr(exc, 'reason', exc))) from exc


def download(url: str, dest: str, sha256: str, size: Optional[int] = None,
             progress: bool = True, timeout: float = 60.) -> str:
    """Download ``url`` to ``dest`` and verify its sha256; returns ``dest``.

    Bytes go to ``dest + '.part'``; an existing ``.part`` is resumed with an HTTP Range
    request (a server that ignores it sends the whole file, which then replaces the part).
    Only a file whose sha256 matches is renamed to ``dest``, so an existing ``dest`` counts
    as verified and is not fetched again. On a checksum mismatch the ``.part`` is deleted and
    DownloadError raised; on a network error it is kept for the next attempt.

    Args:
        size: expected size in bytes (None: unknown), for the progress bar and resuming.
        progress: show a tqdm progress bar.
    """
    if os.path.exists(dest):
        return dest
    os.makedirs(os.path.dirname(os.path.abspath(dest)), exist_ok=True)
    part = dest + '.part'
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    if size is not None and offset > size:
        offset = 0
    digest = hashlib.sha256()
    if offset:
        with open(part, 'rb') as f:
            for chunk in iter(lambda: f.read(CHUNK), b''):
                digest.update(chunk)
    response = _open(url, offset, timeout) if size is None or offset < size else None
    if response is not None:
        with response:
            if offset and response.status != 206:  # the server sends the whole file
                offset, digest = 0, hashlib.sha256()
            length = response.headers.get('Content-Length')
            total = size if size is not None else (offset + int(length) if length else None)
            bar = _progress_bar(progress, total=total, initial=offset, unit='B',
                                unit_scale=True, unit_divisor=1024,
                                desc=os.path.basename(dest))
            try:
                with open(part, 'ab' if offset else 'wb') as f:
                    for chunk in iter(lambda: response.read(CHUNK), b''):
                        f.write(chunk)
                        digest.update(chunk)
                        if bar is not None:
                            bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise DownloadError('downloading %s was interrupted (%s); run again to resume '
                                    'from %s' % (url, exc, part)) from exc
            finally:
                if bar is not None:
                    bar.close()
    got = digest.hexdigest()
    if got != sha256.lower():
        os.remove(part)
        raise DownloadError('checksum mismatch for %s: expected sha256 %s, got %s; the '
                            'download was deleted, run again to retry' % (url, sha256, got))
    os.replace(part, dest)
    return dest


def _safe_members(archive: tarfile.TarFile, target: str):
    """The members of ``archive`` after checking that none leaves ``target`` (for Pythons
    without ``tarfile.data_filter``)."""
    root = os.path.realpath(target)
    for member in archive.getmembers():
        path = os.path.realpath(os.path.join(root, member.name))
        if os.path.commonpath([root, path]) != root or member.issym() or member.islnk():
            raise DownloadError('refusing to unpack %s: it leaves the target directory'
                                % member.name)
        yield member


def unpack(archive: str, target: str) -> str:
    """Unpack the tar archive ``archive`` into the new directory ``target`` (through
    ``target + '.partial'``, so ``target`` only appears complete); returns ``target``."""
    partial = target + '.partial'
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, 'data_filter'):
                tar.extractall(partial, filter='data')
            else:  # pragma: no cover - Python < 3.10.12 / 3.11.4
                tar.extractall(partial, members=_safe_members(tar, partial))
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise DownloadError('unpacking %s failed: %s' % (archive, exc)) from exc
    os.replace(partial, target)
    return target


def _download_speechcommands(data_path: str, progress: bool) -> List[str]:
    target = speechcommands.location(data_path)
    if os.path.isdir(target):
        return ['%s exists: nothing to download' % target]
    a = SPEECHCOMMANDS_ARCHIVE
    archive = download(a.url, os.path.join(os.path.dirname(target), os.path.basename(a.url)),
                       a.sha256, a.size, progress)
    unpack(archive, target)
    return ['unpacked %s into %s (the archive can be deleted)' % (archive, target)]


def read_checksum_list(path: str) -> List[Remote]:
    """The entries of a tensorflow_datasets checksum list: lines ``URL SIZE SHA256 [NAME]``
    separated by white space."""
    entries = []
    with open_text(path) as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            if (len(fields) < 3 or not fields[1].isdigit() or len(fields[2]) != 64
                    or not fields[0].startswith(('http://', 'https://'))):
                raise DownloadError('%s, line %d: expected "URL SIZE SHA256", got %r'
                                    % (path, number, line.strip()))
            entries.append(Remote(fields[0], int(fields[1]), fields[2]))
    return entries


def _download_cremad(data_path: str, progress: bool) -> List[str]:
    audio = crema_d.location(data_path)
    lst = CREMAD_CHECKSUMS
    checksums = download(lst.url, os.path.join(os.path.dirname(audio), 'crema_d_checksums.txt'),
                         lst.sha256, lst.size, progress=False)
    clips = [e for e in read_checksum_list(checksums)
             if '/AudioWAV/' in e.url and e.url.endswith('.wav')]
    if not clips:
        raise DownloadError('%s lists no AudioWAV clips' % checksums)
    todo = [e for e in clips if not os.path.exists(os.path.join(audio, e.url.rsplit('/', 1)[1]))]
    bar = _progress_bar(progress, total=len(clips), initial=len(clips) - len(todo),
                        unit='clip', desc='CREMA-D')
    try:
        for e in todo:
            download(e.url, os.path.join(audio, e.url.rsplit('/', 1)[1]), e.sha256, e.size,
                     progress=False)
            if bar is not None:
                bar.update()
    finally:
        if bar is not None:
            bar.close()
    return ['%d clips in %s (%d fetched now)' % (len(clips), audio, len(todo))]


def unpack_voxforge_archives(root: str) -> Tuple[int, int, List[str]]:
    """Unpack the archives of ``root/voxforge_urls.txt`` that ``wget -x`` put below ``root``
    into ``root/<session>_<LANG>/`` (their .wav and .flac files, flattened as the original
    does). Returns (unpacked now, archives not downloaded, messages about broken archives)."""
    sessions = voxforge.read_url_list(os.path.join(root, voxforge.URL_LIST))
    done, absent, broken = 0, 0, []
    for s in sessions:
        target = voxforge.session_dir(root, s.name, s.language)
        if os.path.isdir(target):
            continue
        archive = os.path.join(root, *s.url.split('/'))
        if not os.path.isfile(archive):
            absent += 1
            continue
        partial = target + '.partial'
        shutil.rmtree(partial, ignore_errors=True)
        os.makedirs(partial)
        try:
            with tarfile.open(archive) as tar:
                for member in tar:
                    if member.isfile() and member.name.lower().endswith(
                            voxforge.AUDIO_EXTENSIONS):
                        with open(os.path.join(partial, os.path.basename(member.name)),
                                  'wb') as out:
                            shutil.copyfileobj(tar.extractfile(member), out)
        except (tarfile.TarError, OSError, EOFError) as exc:
            shutil.rmtree(partial, ignore_errors=True)
            broken.append('%s: %s' % (archive, exc))
            continue
        os.replace(partial, target)
        done += 1
    return done, absent, broken


def _download_voxforge(data_path: str, progress: bool) -> List[str]:
    root = voxforge.location(data_path)
    lst = VOXFORGE_URL_LIST
    download(lst.url, os.path.join(root, voxforge.URL_LIST), lst.sha256, lst.size, progress)
    done, absent, broken = unpack_voxforge_archives(root)
    out = ['unpacked %d archive(s) into %s' % (done, root)]
    if absent:
        out.append('%d listed archive(s) not downloaded yet: cd %s && wget -x -nc -i %s, then '
                   'run this again' % (absent, root, voxforge.URL_LIST))
    out += ['broken archive %s' % b for b in broken]
    return out


_DOWNLOADERS = {'SPEECHCOMMANDS': _download_speechcommands, 'CREMAD': _download_cremad,
                'VOXFORGE': _download_voxforge}


def download_dataset(name: str, data_path: str, progress: bool = True) -> List[str]:
    """Fetch (and unpack) what can be fetched of data set ``name`` below ``data_path``;
    returns messages saying what was done. DownloadError on failure, DataError if ``name``
    cannot be downloaded by eleaf (see :func:`steps`)."""
    name = registry.canonical(name)
    if name not in _DOWNLOADERS:
        raise DataError('%s cannot be downloaded by eleaf: follow the steps of `eleaf data '
                        'prepare %s`' % (name, name))
    return _DOWNLOADERS[name](data_path, progress)


# --- validation --------------------------------------------------------------------------

@dataclass
class Report:
    """What :func:`validate` found: recordings per split and class, unreadable files."""
    name: str
    location: str
    classes: Tuple[str, ...]
    counts: Dict[str, List[int]]  # split -> recordings per class (label order)
    unreadable: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: List[str] = field(default_factory=list)

    def total(self, split: str) -> int:
        return sum(self.counts[split])


def validate(name: str, data_path: str, progress: bool = False) -> Report:
    """Scan the copy of data set ``name`` below ``data_path``: count its recordings per split
    and class and check every file's header (:func:`~eleaf.datasets.audio.check_audio`).
    DataError if the data set is missing."""
    name = registry.canonical(name)
    found = registry.collect(name, data_path)
    report = Report(name, os.path.abspath(registry.location(name, data_path)), found.classes,
                    {s: [0] * len(found.classes) for s in SPLITS}, notes=list(found.notes))
    total = sum(len(found.splits[s]) for s in SPLITS)
    bar = _progress_bar(progress, total=total, unit='file', desc='checking %s' % name)
    for split in SPLITS:
        for record in found.splits[split]:
            report.counts[split][record.label] += 1
            try:
                check_audio(record.path)
            except AudioError as exc:
                report.unreadable.append((record.path, exc.reason))
            if bar is not None:
                bar.update()
    if bar is not None:
        bar.close()
    return report


def format_report(report: Report, max_files: int = 20) -> str:
    """The report as text: a table of recordings per class and split, then the unreadable
    files (the first ``max_files``)."""
    width = max([len('total')] + [len(c) for c in report.classes])
    lines = ['%s at %s: %d recordings (%s), %d classes'
             % (report.name, display(report.location), sum(report.total(s) for s in SPLITS),
                ', '.join('%s %d' % (s, report.total(s)) for s in SPLITS),
                len(report.classes)),
             '  %-*s %8s %8s %8s' % ((width,) + ('class',) + SPLITS)]
    for i, name in enumerate(report.classes):
        lines.append('  %-*s %8d %8d %8d' % ((width, name) + tuple(report.counts[s][i]
                                                                    for s in SPLITS)))
    lines.append('  %-*s %8d %8d %8d' % ((width, 'total') + tuple(report.total(s)
                                                                   for s in SPLITS)))
    lines += ['note: %s' % n for n in report.notes]
    lines.append('unreadable files: %d%s' % (len(report.unreadable),
                                             ' (eleaf train replaces them by the next readable '
                                             'recording in training and leaves them out of '
                                             'the evaluation)' if report.unreadable
                                             else ''))
    lines += ['  %s: %s' % (display(path), display(reason))
              for path, reason in report.unreadable[:max_files]]
    if len(report.unreadable) > max_files:
        lines.append('  ... and %d more' % (len(report.unreadable) - max_files))
    return printable('\n'.join(lines))
