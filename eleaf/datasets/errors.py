"""Errors of the data layer, importable without the training code above it."""

__all__ = ['DataError']


class DataError(ValueError):
    """A data set option that cannot work (unknown name, missing directory, ...).

    Raised by the loaders in :mod:`eleaf.datasets` and by :mod:`eleaf.train.data`
    (which re-exports it, so ``eleaf.train.data.DataError`` is the same class)."""
