"""Shared expectations of the data set tests, computed without the loaders."""
import numpy as np


def original_grouped_split(groups):
    """{group: split} as the original computes it (tensorflow_datasets' crema_d): sorted
    groups shuffled by RandomState(0), cut at int(0.7 n) and int((0.7 + 0.1) n)."""
    order = sorted(set(groups))
    np.random.RandomState(0).shuffle(order)
    n = len(order)
    first, second = int(0.7 * n), int((0.7 + 0.1) * n)
    return {g: 'train' if i < first else 'val' if i < second else 'test'
            for i, g in enumerate(order)}


def dominant_frequency(x, rate):
    """Frequency in Hz of the largest bin of |rfft(x * hann)|."""
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spectrum) * rate / len(x)
