"""The grouped 70/10/20 split of CREMA-D, VoxForge and BirdCLEF (SPEC §9).

All recordings of a group (speaker, author) land in the same split. The groups are sorted,
shuffled with ``numpy.random.RandomState(0)`` and cut into train / val / test at the
boundaries the original computes (those of tensorflow_datasets' ``crema_d``):
``int(0.7 * n)`` and ``int((0.7 + 0.1) * n)``. In floating point ``0.7 + 0.1`` is
``0.7999999999999999``, so when ``0.8 * n`` is an integer (``n`` a multiple of 5) the second
cut is one group earlier than ``int(0.8 * n)``; we keep the original's cut, the one its
published numbers were measured with.
"""
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

__all__ = ['SPLITS', 'FRACTIONS', 'split_boundaries', 'split_groups']

#: split names, in order
SPLITS = ('train', 'val', 'test')

#: fraction of the groups per split
FRACTIONS = (0.7, 0.1, 0.2)


def split_boundaries(n: int, fractions: Sequence[float] = FRACTIONS) -> List[Tuple[int, int]]:
    """(start, stop) group indices of each split for ``n`` groups: cumulative sums of the
    fractions times ``n``, truncated; the last split ends at ``n``."""
    if n < len(fractions):
        raise ValueError('a grouped split needs at least %d groups, got %d'
                         % (len(fractions), n))
    bounds, total = [], 0.
    for p in fractions:
        start = int(total * n)
        total += p
        bounds.append((start, int(total * n)))
    bounds[-1] = (bounds[-1][0], n)
    return bounds


def split_groups(groups: Iterable[str], seed: int = 0) -> Dict[str, str]:
    """{group: split name} for the distinct ``groups`` (any order, repeats allowed)."""
    order = sorted(set(groups))
    np.random.RandomState(seed).shuffle(order)
    return {group: name
            for name, (start, stop) in zip(SPLITS, split_boundaries(len(order)))
            for group in order[start:stop]}
