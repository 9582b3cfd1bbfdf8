"""Speech Commands v0.02: 35 spoken words, the official split (SPEC §9).

Layout under ``--data-path DIR`` (``speech_commands_v0.02.tar.gz`` unpacked, the place
torchaudio's ``SPEECHCOMMANDS`` and the original use)::

    DIR/SpeechCommands/speech_commands_v0.02/
        validation_list.txt, testing_list.txt   (paths relative to this directory)
        <word>/<speaker>_nohash_<n>.wav         (16 kHz mono, at most 1 s)
        _background_noise_/                     (not used)

Splits as torchaudio's: val and test are the files of the two lists, in list order; train is
every other ``<word>/*_nohash_*.wav``, sorted. Labels: the index of the word in
:data:`CLASSES` (alphabetical).
"""
import glob
import os
from .errors import DataError
from .base import Collection, Record, make_splits, require
from .text import read_lines

NAME = 'SPEECHCOMMANDS'

#: the 35 words in label order (the original's)
CLASSES = ('backward', 'bed', 'bird', 'cat', 'dog', 'down', 'eight', 'five', 'follow',
           'forward', 'four', 'go', 'happy', 'house', 'learn', 'left', 'marvin', 'nine', 'no',
           'off', 'on', 'one', 'right', 'seven', 'sheila', 'six', 'stop', 'three', 'tree',
           'two', 'up', 'visual', 'wow', 'yes', 'zero')

SUBDIR = os.path.join('SpeechCommands', 'speech_commands_v0.02')
LISTS = {'val': 'validation_list.txt', 'test': 'testing_list.txt'}
EXCLUDED_DIR = '_background_noise_'


def location(data_path: str) -> str:
    return os.path.join(data_path, SUBDIR)


def _record(root: str, rel: str) -> Record:
    word, _, filename = rel.partition('/')
    if word not in CLASSES:
        raise DataError('%s: %s is not in one of the 35 word directories' % (NAME, rel))
    return Record(os.path.join(root, word, filename), CLASSES.index(word),
                  filename.split('_nohash_')[0])


def collect(data_path: str) -> Collection:
    """The recordings of the copy under ``data_path``, by split."""
    root = require(location(data_path), NAME, 'the unpacked speech_commands_v0.02.tar.gz')
    listed = {}
    for split, filename in LISTS.items():
        path = require(os.path.join(root, filename), NAME, 'the split list ' + filename,
                       kind='file')
        listed[split] = [line.strip().replace(os.sep, '/')
                         for line in read_lines(path, NAME) if line.strip()]
    excluded = set(listed['val']) | set(listed['test'])
    train = sorted(rel for rel in (os.path.relpath(p, root).replace(os.sep, '/')
                                   for p in glob.glob(os.path.join(root, '*', '*.wav')))
                   if '_nohash_' in rel and not rel.startswith(EXCLUDED_DIR + '/')
                   and rel not in excluded)
    splits = {'train': [_record(root, rel) for rel in train]}
    splits.update({split: [_record(root, rel) for rel in rels] for split, rels in listed.items()})
    return Collection(splits, CLASSES)


def build(data_path: str, sample_rate: int = 16000):
    """(train, val, test) datasets of the copy under ``data_path``."""
    return make_splits(NAME, collect(data_path), sample_rate)
