"""VoxForge: 6 languages, split by speaker (SPEC §9).

VoxForge publishes one ``.tgz`` archive per recording session; tensorflow_datasets lists the
archives of its release (submissions before 2020) in ``voxforge_urls.txt``, one URL without
scheme per line, ``<host>/<dir>/<lang>/Trunk/.../<session>.tgz``.

Layout under ``--data-path DIR`` (the original's)::

    DIR/voxforge/voxforge_urls.txt
    DIR/voxforge/<session>_<LANG>/*.wav|*.flac   (the audio files of one archive)

``eleaf data prepare VOXFORGE --download`` fetches the list and unpacks archives that
``wget -x -i voxforge_urls.txt`` put below ``DIR/voxforge/`` into that layout.

Every line of the list is one session: language = the third path component (upper case),
session = the archive name without ``.tgz``, speaker (group) = the session name up to its
first ``-``. The speakers of *all* listed sessions take part in the grouped split, also those
of sessions that are missing (as in the original, where a failed download leaves a session
without files), so the split does not depend on which archives could be fetched.
Recordings: the ``.wav`` and ``.flac`` files below each session directory, at any depth.
"""
import os
from typing import List, NamedTuple

from .errors import DataError
from .base import Collection, Record, make_splits, missing, require, split_records
from .splits import split_groups
from .text import open_text

NAME = 'VOXFORGE'

#: languages in label order (the original's)
CLASSES = ('DE', 'EN', 'ES', 'FR', 'IT', 'RU')

SUBDIR = 'voxforge'
URL_LIST = 'voxforge_urls.txt'
AUDIO_EXTENSIONS = ('.wav', '.flac')


def location(data_path: str) -> str:
    return os.path.join(data_path, SUBDIR)


class Session(NamedTuple):
    """One listed archive: its URL (without scheme), session name, language, speaker."""
    url: str
    name: str
    language: str
    speaker: str


def read_url_list(path: str) -> List[Session]:
    """The sessions of ``voxforge_urls.txt``, in file order."""
    sessions = []
    with open_text(path) as f:
        for number, line in enumerate(f, 1):
            url = line.strip().replace('"', '').replace("'", '')
            if not url:
                continue
            url = url.split('://', 1)[-1]
            parts = url.split('/')
            language = parts[2].upper() if len(parts) > 2 else ''
            if language not in CLASSES:
                raise DataError('%s: line %d of %s is not the URL of a %s archive: %r'
                                % (NAME, number, path, '/'.join(CLASSES), line.strip()))
            name = parts[-1][:-len('.tgz')] if parts[-1].endswith('.tgz') else parts[-1]
            sessions.append(Session(url, name, language, name.split('-')[0]))
    return sessions


def session_dir(root: str, name: str, language: str) -> str:
    return os.path.join(root, '%s_%s' % (name, language))


def _audio_files(directory: str) -> List[str]:
    found = []
    for parent, dirs, files in os.walk(directory):
        dirs.sort()
        found.extend(os.path.join(parent, f) for f in sorted(files)
                     if f.lower().endswith(AUDIO_EXTENSIONS))
    return found


def collect(data_path: str) -> Collection:
    """The recordings of the copy under ``data_path``, by split."""
    root = require(location(data_path), NAME, 'the VoxForge directory')
    sessions = read_url_list(require(os.path.join(root, URL_LIST), NAME,
                                     'the archive list ' + URL_LIST, kind='file'))
    if not sessions:
        raise DataError('%s: %s lists no archives' % (NAME, os.path.join(root, URL_LIST)))
    records, absent = [], 0
    unique = {session_dir(root, s.name, s.language): s for s in sessions}
    for directory in sorted(unique):
        if not os.path.isdir(directory):
            absent += 1
            continue
        session = unique[directory]
        records.extend(Record(path, CLASSES.index(session.language), session.speaker)
                       for path in _audio_files(directory))
    if not records:
        raise missing(NAME, 'unpacked archives (<session>_<LANG>/ directories)', root)
    notes = []
    if absent:
        notes.append('%d of the %d sessions listed in %s have no directory (not downloaded or '
                     'not unpacked); their speakers still take part in the split'
                     % (absent, len(unique), URL_LIST))
    splits = split_records(records, split_groups(s.speaker for s in sessions))
    return Collection(splits, CLASSES, notes)


def build(data_path: str, sample_rate: int = 16000):
    """(train, val, test) datasets of the copy under ``data_path``."""
    return make_splits(NAME, collect(data_path), sample_rate)
