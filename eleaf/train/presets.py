"""Named model configurations of the EfficientLEAF paper (SPEC §9), for ``eleaf train --preset
NAME``: each is the ``eleaf train`` options of one of the paper's five frontends (40 filters,
the paper's EfficientNet-b0 encoder and training recipe, which are eleaf train's defaults).

Options given on the command line override those of the preset.
"""
from typing import Dict, List, Tuple

__all__ = ['LOGTBN', 'FIXED_LOGTBN', 'PRESETS', 'DESCRIPTIONS', 'expand_preset']

#: the paper's LogTBN: log(1 + 10^a x) with a learned per-band a (initially 5), the median
#: over time subtracted and appended as a second channel, temporal batch norm
LOGTBN = ('--compression', 'TBN', '--log1p-initial-a', '5', '--log1p-trainable',
          '--log1p-per-band', '--tbn-median-filter', '--tbn-median-filter-append')
#: the mel baseline's LogTBN: the same with one fixed a
FIXED_LOGTBN = tuple(a for a in LOGTBN if a not in ('--log1p-trainable', '--log1p-per-band'))

#: preset name -> eleaf train options
PRESETS: Dict[str, Tuple[str, ...]] = {
    '8g-opt': ('--frontend', 'EfficientLeaf', '--num-groups', '8', '--conv-win-factor', '6',
               '--stride-factor', '16') + LOGTBN,
    '4g': ('--frontend', 'EfficientLeaf', '--num-groups', '4', '--conv-win-factor', '4.75')
    + LOGTBN,
    '4g-pcen': ('--frontend', 'EfficientLeaf', '--num-groups', '4', '--conv-win-factor', '4.75',
                '--compression', 'PCEN'),
    'leaf': ('--frontend', 'Leaf', '--compression', 'PCEN'),
    'mel': ('--frontend', 'Mel') + FIXED_LOGTBN,
}

DESCRIPTIONS = {
    '8g-opt': 'EfficientLEAF 8G-opt: 8 groups, window factor 6, stride factor 16, LogTBN',
    '4g': 'EfficientLEAF 4G: 4 groups, window factor 4.75, LogTBN',
    '4g-pcen': 'EfficientLEAF 4G with PCEN',
    'leaf': 'LEAF with PCEN',
    'mel': 'the mel baseline with a fixed LogTBN',
}


def expand_preset(argv: List[str]) -> List[str]:
    """``argv`` with the options of its ``--preset NAME`` (or ``--preset=NAME``) put first, so
    that the options given override them; unchanged without ``--preset`` or with an unknown
    name (the parser then reports it)."""
    argv = list(argv)
    for i, arg in enumerate(argv):
        if arg == '--preset' and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith('--preset='):
            name = arg.split('=', 1)[1]
        else:
            continue
        if name in PRESETS:
            return list(PRESETS[name]) + argv
        return argv
    return argv
