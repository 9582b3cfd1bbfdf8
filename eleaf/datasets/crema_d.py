"""CREMA-D: 6 emotions of 91 actors, split by speaker (SPEC §9).

Layout under ``--data-path DIR`` (the published repository
https://github.com/CheyneyComputerScience/CREMA-D, whose ``AudioWAV/`` is stored with Git
LFS)::

    DIR/CREMA-D/AudioWAV/<speaker>_<sentence>_<emotion>_<level>.wav   (16 kHz mono)

e.g. ``1001_DFA_ANG_XX.wav``. Recordings: every ``AudioWAV/*.wav`` with that name pattern
except :data:`EXCLUDED` (the names the original skips); label: the emotion's index in
:data:`CLASSES`; group: the speaker. The grouped 70/10/20 split is
:func:`~eleaf.datasets.splits.split_groups` over the speakers.
"""
import os
from .base import Collection, Record, make_splits, missing, require, split_records
from .splits import split_groups

NAME = 'CREMAD'

#: emotions in label order (the original's and tensorflow_datasets': not alphabetical)
CLASSES = ('NEU', 'HAP', 'SAD', 'ANG', 'FEA', 'DIS')

SUBDIR = os.path.join('CREMA-D', 'AudioWAV')

#: clips the original leaves out: tensorflow_datasets' names missing from the repository,
#: and 1010_IWL_SAD_XX, which the original adds
EXCLUDED = frozenset(('1040_ITH_SAD_XX', '1006_TIE_NEU_XX', '1013_WSI_DIS_XX',
                      '1017_IWW_FEA_XX', '1010_IWL_SAD_XX'))


def location(data_path: str) -> str:
    return os.path.join(data_path, SUBDIR)


def parse_name(filename: str):
    """(speaker, emotion) of a clip file name, or None if it does not follow the pattern."""
    stem, ext = os.path.splitext(filename)
    parts = stem.split('_')
    if ext.lower() != '.wav' or len(parts) != 4 or parts[2] not in CLASSES:
        return None
    return parts[0], parts[2]


def collect(data_path: str) -> Collection:
    """The recordings of the copy under ``data_path``, by split."""
    root = require(location(data_path), NAME, 'the directory of the CREMA-D .wav clips')
    records = []
    for filename in sorted(os.listdir(root)):
        parsed = parse_name(filename)
        if parsed is None or os.path.splitext(filename)[0] in EXCLUDED:
            continue
        speaker, emotion = parsed
        records.append(Record(os.path.join(root, filename), CLASSES.index(emotion), speaker))
    if not records:
        raise missing(NAME, 'clips named like 1001_DFA_ANG_XX.wav', root)
    return Collection(split_records(records, split_groups(r.group for r in records)), CLASSES)


def build(data_path: str, sample_rate: int = 16000):
    """(train, val, test) datasets of the copy under ``data_path``."""
    return make_splits(NAME, collect(data_path), sample_rate)
