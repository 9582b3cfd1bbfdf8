"""The dataset class shared by the paper's data sets: a list of recordings read on access.

Item ``i``: (waveform float32 tensor (1, L) at ``sample_rate`` Hz, label int).

**Unreadable files.** A recording that cannot be used (missing, malformed, empty, non-finite
samples; see :func:`~eleaf.datasets.audio.load_audio`) does not stop an epoch. In the training
split the item is the next readable recording of the same split (indices ``i + 1, i + 2,
...``, wrapping around), with *that* recording's label, so every item stays a true (audio,
label) pair and the split keeps its length. In the validation and test splits
(``skip_unreadable``) the item is an empty waveform (1, 0): the evaluation skips it, so no
recording is counted twice and the metrics are over the readable recordings. The choice only depends on which files are readable, so it is the same in
every epoch, worker and process. Each unreadable file is logged once (a warning on the
``eleaf.datasets`` logger) and remembered in :attr:`AudioDataset.unreadable`, so it is not
read again. With ``DataLoader`` workers, each worker process keeps its own record (and logs
its own warning).
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch.utils.data import Dataset

from .errors import DataError
from .audio import AudioError, load_audio
from .splits import SPLITS
from .text import display

__all__ = ['Record', 'Collection', 'AudioDataset', 'missing', 'require', 'split_records',
           'make_splits']

logger = logging.getLogger('eleaf.datasets')


@dataclass(frozen=True)
class Record:
    """One recording: its file, its label (class index) and its group (speaker, author,
    instrument) or ''."""
    path: str
    label: int
    group: str = ''


@dataclass
class Collection:
    """What a data set's ``collect(data_path)`` finds: {split: records}, class names in
    label order, and notes for people (e.g. listed recordings that are missing)."""
    splits: Dict[str, List[Record]]
    classes: Tuple[str, ...]
    notes: List[str] = field(default_factory=list)


class AudioDataset(Dataset):
    """Recordings of one split of a data set, read on access.

    Args:
        records: the recordings, in item order.
        classes: class names in label order.
        sample_rate: output rate in Hz (files at other rates are resampled).
        max_length: keep only the first ``max_length`` samples of each recording (None: all).
        name: for messages, e.g. 'CREMAD val'.
        skip_unreadable: an unreadable recording's item is an empty waveform (1, 0) with its
            own label (evaluation skips it) instead of the next readable recording.
    Attributes:
        unreadable (dict): {path: reason} of the files found unreadable so far.
    """

    def __init__(self, records: Sequence[Record], classes: Sequence[str],
                 sample_rate: int = 16000, max_length: Optional[int] = None, name: str = '',
                 skip_unreadable: bool = False):
        self.skip_unreadable = skip_unreadable
        self.records = list(records)
        self.classes = tuple(classes)
        self.sample_rate = sample_rate
        self.max_length = max_length
        self.name = name
        self.unreadable: Dict[str, str] = {}

    @property
    def num_unreadable(self) -> int:
        """Number of distinct unreadable files met so far."""
        return len(self.unreadable)

    def __len__(self):
        return len(self.records)

    def label(self, index: int) -> int:
        return self.records[index].label

    def load(self, index: int) -> torch.Tensor:
        """Waveform (1, L) float32 of record ``index``; AudioError if unreadable."""
        x = load_audio(self.records[index].path, self.sample_rate, max_length=self.max_length)
        return torch.from_numpy(x)[None]

    def _try(self, index: int) -> Optional[torch.Tensor]:
        path = self.records[index].path
        if path in self.unreadable:
            return None
        try:
            return self.load(index)
        except AudioError as exc:
            self.unreadable[path] = exc.reason
            logger.warning('%s: skipping unreadable file %s (%s); %s (%d unreadable file(s) '
                           'so far)', self.name or 'data set', display(path), exc.reason,
                           'the evaluation leaves it out' if self.skip_unreadable else
                           'its items are replaced by the next readable recording',
                           len(self.unreadable))
            return None

    def __getitem__(self, index: int):
        if not 0 <= index < len(self.records):
            raise IndexError(index)
        if self.skip_unreadable:
            x = self._try(index)
            return (x if x is not None else torch.zeros(1, 0)), self.records[index].label
        for step in range(len(self.records)):
            j = (index + step) % len(self.records)
            x = self._try(j)
            if x is not None:
                return x, self.records[j].label
        raise DataError('%s: none of its %d recordings is readable (e.g. %s: %s)'
                        % (self.name or 'data set', len(self.records),
                           display(self.records[index].path),
                           self.unreadable[self.records[index].path]))


def missing(name: str, what: str, path: str) -> DataError:
    """The one-line DataError of a data set ``name`` whose ``what`` is not at ``path``."""
    return DataError('%s not found: expected %s at %s (see `eleaf data prepare %s '
                     '--data-path DIR` for how to get it)'
                     % (name, what, display(os.path.abspath(path)), name))


def require(path: str, name: str, what: str, kind: str = 'dir') -> str:
    """``path`` if it exists (a directory for ``kind='dir'``, else a file), else
    :func:`missing`'s DataError."""
    found = os.path.isdir(path) if kind == 'dir' else os.path.isfile(path)
    if not found:
        raise missing(name, what, path)
    return path


def split_records(records: Iterable[Record], split_of: Dict[str, str]) -> Dict[str, List[Record]]:
    """{split: records whose group ``split_of`` maps to it}, in the given order."""
    out: Dict[str, List[Record]] = {s: [] for s in SPLITS}
    for r in records:
        out[split_of[r.group]].append(r)
    return out


def make_splits(name: str, found: Collection, sample_rate: int,
                max_lengths: Optional[Dict[str, int]] = None):
    """(train, val, test) AudioDatasets of ``found``; ``max_lengths``: {split: samples}.
    Logs ``found.notes``; DataError if a split is empty."""
    for note in found.notes:
        logger.warning('%s: %s', name, note)
    max_lengths = max_lengths or {}
    out = []
    for split in SPLITS:
        if not found.splits[split]:
            raise DataError('%s: the %s split has no recordings' % (name, split))
        out.append(AudioDataset(found.splits[split], found.classes, sample_rate,
                                max_lengths.get(split), name='%s %s' % (name, split),
                                skip_unreadable=split != 'train'))
    return tuple(out)
