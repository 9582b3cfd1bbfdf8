"""The paper's data sets by their ``--data-set`` names (SPEC §9).

``--data-path DIR`` is one directory holding all of them, each in its own place (the
original's, or the published layout where the original's differs):

==============  ====================================================================
SPEECHCOMMANDS  ``DIR/SpeechCommands/speech_commands_v0.02/``
CREMAD          ``DIR/CREMA-D/AudioWAV/``
VOXFORGE        ``DIR/voxforge/`` (``voxforge_urls.txt`` and ``<session>_<LANG>/``)
NSYNTH_PITCH    ``DIR/nsynth/nsynth-{train,valid,test}/``
NSYNTH_INST     the same files as NSYNTH_PITCH
BIRDCLEF2021    ``DIR/birdclef2021/`` (``train_metadata.csv``, ``train_short_audio/``)
==============  ====================================================================
"""
from functools import partial
from types import ModuleType
from typing import Callable, Dict

from .errors import DataError
from . import birdclef2021, crema_d, nsynth, speechcommands, voxforge
from .base import Collection

__all__ = ['NAMES', 'MODULES', 'canonical', 'location', 'collect', 'build']

#: data set name -> the module that reads it
MODULES: Dict[str, ModuleType] = {
    'SPEECHCOMMANDS': speechcommands,
    'CREMAD': crema_d,
    'VOXFORGE': voxforge,
    'NSYNTH_PITCH': nsynth,
    'NSYNTH_INST': nsynth,
    'BIRDCLEF2021': birdclef2021,
}

NAMES = tuple(MODULES)

_COLLECT: Dict[str, Callable[[str], Collection]] = {
    name: (partial(nsynth.collect, name=name) if module is nsynth else module.collect)
    for name, module in MODULES.items()}


def canonical(name: str) -> str:
    """The registered spelling of ``name`` (case-insensitive), or DataError."""
    for known in NAMES:
        if name.lower() == known.lower():
            return known
    raise DataError('unknown data set %r: the paper\'s data sets are %s'
                    % (name, ', '.join(NAMES)))


def location(name: str, data_path: str) -> str:
    """The directory data set ``name`` is expected in below ``data_path``."""
    return MODULES[canonical(name)].location(data_path)


def collect(name: str, data_path: str) -> Collection:
    """The recordings of data set ``name`` below ``data_path``, by split (DataError if it is
    missing)."""
    return _COLLECT[canonical(name)](data_path)


def build(name: str, data_path: str, sample_rate: int = 16000):
    """(train, val, test, num_classes) of data set ``name`` below ``data_path``.

    Items of the datasets: (waveform float32 tensor (1, L) at ``sample_rate`` Hz, label int).
    Raises DataError (one line: the expected path, ``eleaf data prepare NAME``) if the data
    set is missing.
    """
    name = canonical(name)
    module = MODULES[name]
    if module is nsynth:
        splits = nsynth.build(data_path, sample_rate, name=name)
    else:
        splits = module.build(data_path, sample_rate)
    return splits + (len(splits[0].classes),)
