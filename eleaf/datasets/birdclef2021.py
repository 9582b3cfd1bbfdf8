"""BirdCLEF 2021: the primary label of bird recordings (397 classes), split by author
(SPEC §9).

Layout under ``--data-path DIR`` (Kaggle's ``birdclef-2021.zip`` unpacked into
``DIR/birdclef2021``; only these two entries are used)::

    DIR/birdclef2021/train_metadata.csv
    DIR/birdclef2021/train_short_audio/<primary_label>/<filename>   (XC*.ogg, 32 kHz)

One recording per row of ``train_metadata.csv`` (columns ``primary_label``, ``author``,
``filename``); label: the index of ``primary_label`` among the sorted labels of the
metadata; group: ``author``. Items are sorted by ``<primary_label>/<filename>``.
Validation keeps the first 16 s of each recording (:data:`VAL_SECONDS`), test the whole
recording; training crops are taken by ``eleaf train``.
"""
import csv
import os

from .errors import DataError
from .base import Collection, Record, make_splits, require, split_records
from .splits import split_groups
from .text import open_text

NAME = 'BIRDCLEF2021'
SUBDIR = 'birdclef2021'
METADATA = 'train_metadata.csv'
AUDIO_DIR = 'train_short_audio'

#: validation uses the first VAL_SECONDS of each recording
VAL_SECONDS = 16


def location(data_path: str) -> str:
    return os.path.join(data_path, SUBDIR)


def collect(data_path: str) -> Collection:
    """The recordings of the copy under ``data_path``, by split."""
    root = require(location(data_path), NAME, 'the unpacked Kaggle birdclef-2021.zip')
    path = require(os.path.join(root, METADATA), NAME, 'the metadata table', kind='file')
    require(os.path.join(root, AUDIO_DIR), NAME, 'the recordings directory')
    with open_text(path, newline='') as f:
        rows = list(csv.DictReader(f))
    needed = {'primary_label', 'author', 'filename'}
    if not rows or not needed <= set(rows[0]):
        raise DataError('%s: %s needs a header with the columns %s and at least one row'
                        % (NAME, path, ', '.join(sorted(needed))))
    classes = tuple(sorted({row['primary_label'] for row in rows}))
    index = {label: i for i, label in enumerate(classes)}
    rows.sort(key=lambda row: (row['primary_label'], row['filename']))
    records = [Record(os.path.join(root, AUDIO_DIR, row['primary_label'], row['filename']),
                      index[row['primary_label']], row['author']) for row in rows]
    return Collection(split_records(records, split_groups(r.group for r in records)), classes)


def build(data_path: str, sample_rate: int = 16000):
    """(train, val, test) datasets of the copy under ``data_path``; val keeps the first
    :data:`VAL_SECONDS` of each recording."""
    return make_splits(NAME, collect(data_path), sample_rate,
                       max_lengths={'val': VAL_SECONDS * sample_rate})
