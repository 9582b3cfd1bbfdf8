"""NSynth: pitch (128 classes, MIDI 0..127) and instrument family (11 classes) of 4 s notes,
the official splits (SPEC §9).

Layout under ``--data-path DIR`` (the three ``nsynth-*.jsonwav.tar.gz`` archives unpacked
into ``DIR/nsynth``, as the original does)::

    DIR/nsynth/nsynth-train/examples.json, audio/<note_str>.wav   (16 kHz mono)
    DIR/nsynth/nsynth-valid/...
    DIR/nsynth/nsynth-test/...

``examples.json`` maps each note name to its attributes; the label is its ``pitch``
(NSYNTH_PITCH) or ``instrument_family`` (NSYNTH_INST), the group its ``instrument_str``.
Items follow the order of ``examples.json``.
"""
import json
import os

from .errors import DataError
from .base import Collection, Record, make_splits, require
from .text import open_text

#: instrument families in label order (NSynth's ``instrument_family`` numbers)
INSTRUMENT_FAMILIES = ('bass', 'brass', 'flute', 'guitar', 'keyboard', 'mallet', 'organ',
                       'reed', 'string', 'synth_lead', 'vocal')

#: pitch classes in label order: MIDI note numbers
PITCHES = tuple(str(p) for p in range(128))

#: data set name -> (examples.json attribute, class names)
TARGETS = {'NSYNTH_PITCH': ('pitch', PITCHES),
           'NSYNTH_INST': ('instrument_family', INSTRUMENT_FAMILIES)}

SUBDIR = 'nsynth'
SPLIT_DIRS = {'train': 'nsynth-train', 'val': 'nsynth-valid', 'test': 'nsynth-test'}


def location(data_path: str) -> str:
    return os.path.join(data_path, SUBDIR)


def collect(data_path: str, name: str = 'NSYNTH_PITCH') -> Collection:
    """The recordings of the copy under ``data_path``, by split, labelled for ``name``
    (NSYNTH_PITCH or NSYNTH_INST)."""
    attribute, classes = TARGETS[name]
    root = require(location(data_path), name, 'the unpacked NSynth archives')
    splits = {}
    for split, subdir in SPLIT_DIRS.items():
        directory = require(os.path.join(root, subdir), name,
                            'the unpacked %s.jsonwav.tar.gz' % subdir)
        path = require(os.path.join(directory, 'examples.json'), name,
                       'the note list of %s' % subdir, kind='file')
        with open_text(path) as f:
            examples = json.load(f)
        records = []
        for note, attrs in examples.items():
            label = attrs.get(attribute)
            if not isinstance(label, int) or not 0 <= label < len(classes):
                raise DataError('%s: note %s in %s has %s %r, expected an integer 0..%d'
                                % (name, note, path, attribute, label, len(classes) - 1))
            records.append(Record(os.path.join(directory, 'audio', note + '.wav'), label,
                                  attrs.get('instrument_str', '')))
        splits[split] = records
    return Collection(splits, classes)


def build(data_path: str, sample_rate: int = 16000, name: str = 'NSYNTH_PITCH'):
    """(train, val, test) datasets of the copy under ``data_path``, labelled for ``name``."""
    return make_splits(name, collect(data_path, name), sample_rate)
