"""Data for ``eleaf train``: the built-in synthetic task, crops, loudness normalisation,
windowed evaluation and the data loaders (SPEC §9).

Letters: B batch, N windows, L samples. Waveforms are float32 ``(1, L)`` at 16 kHz.

The synthetic task needs no files: recording ``i`` of a split is generated from
``SeedSequence((SPLIT_SEEDS[split], i))`` alone, so every process, worker, run and resumed
run sees the same recordings. Its classes differ in spectral content and its recordings
(0.75 to 2 inputs long) exercise random crops, zero padding and windowed evaluation.
"""
import os
from typing import Tuple

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..datasets.errors import DataError  # re-exported: defined in the data layer

__all__ = ['SYNTHETIC_CLASSES', 'PAPER_DATASETS', 'SyntheticDataset', 'TrainCrops',
           'EvalWindows', 'split_windows', 'align_sample', 'loudness_normalization',
           'collate_train', 'collate_eval', 'first_windows', 'EpochSampler', 'ShardSampler',
           'build_datasets', 'build_loaders', 'DataError']

SAMPLE_RATE = 16000

#: the paper's data sets by their original ``--data-set`` names (loaders: eleaf.datasets;
#: layouts below ``--data-path``: docs/datasets.md)
PAPER_DATASETS = ('SPEECHCOMMANDS', 'CREMAD', 'VOXFORGE', 'NSYNTH_PITCH', 'NSYNTH_INST',
                  'BIRDCLEF2021')

#: class names of the synthetic task, in label order
SYNTHETIC_CLASSES = ('harmonic-low', 'harmonic-high', 'vowel-a', 'vowel-i', 'vowel-u',
                     'sweeps-up', 'sweeps-down', 'noise-low', 'noise-high', 'beeps')

#: per-split seeds of the synthetic task (the split is part of every recording's seed)
SPLIT_SEEDS = {'train': 1, 'val': 2, 'test': 3}

_FORMANTS = {'vowel-a': ((730, 90), (1090, 110), (2440, 170)),
             'vowel-i': ((270, 60), (2290, 200), (3010, 250)),
             'vowel-u': ((300, 60), (870, 90), (2240, 170))}


def _harmonics(rng, t, f0, envelope):
    """Sum of the harmonics of a slightly vibrating f0 (Hz), amplitudes ``envelope(freq)``."""
    vibrato = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(3, 6) * t + rng.uniform(0, 2 * np.pi))
    phase = 2 * np.pi * np.cumsum(f0 * vibrato) / SAMPLE_RATE
    out = np.zeros_like(t)
    for h in range(1, int(7000 // f0) + 1):
        amp = envelope(h * f0)
        if amp > 1e-3:
            out += amp * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    return out


def _band_noise(rng, n, low, high):
    """White noise restricted to [low, high] Hz (FFT masking)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1. / SAMPLE_RATE)
    spec[(freqs < low) | (freqs > high)] = 0
    return np.fft.irfft(spec, n)


def _sweeps(rng, t, up):
    """Repeated exponential sweeps between about 300 Hz and 3 kHz, period 0.25 to 0.5 s."""
    low, high = 300 * rng.uniform(0.8, 1.25), 3000 * rng.uniform(0.8, 1.25)
    period = rng.uniform(0.25, 0.5)
    pos = ((t + rng.uniform(0, period)) % period) / period
    if not up:
        pos = 1 - pos
    freq = low * (high / low) ** pos
    return np.sin(2 * np.pi * np.cumsum(freq) / SAMPLE_RATE)


def synthesize(rng: np.random.Generator, label: int, length: int) -> np.ndarray:
    """One recording of class ``label``: (length,) float64.

    A class sound (harmonic complexes with a flat spectrum at a low or a high f0, three
    formant vowels, rising or falling sweeps, low or high noise bands, a beep train) with a
    random gain, a random onset and offset (the sound covers at least 60 % of the recording)
    and white background noise at 5 to 25 dB SNR.
    """
    name = SYNTHETIC_CLASSES[label]
    t = np.arange(length) / SAMPLE_RATE
    if name == 'harmonic-low':
        x = _harmonics(rng, t, rng.uniform(100, 160), lambda f: 1.)
    elif name == 'harmonic-high':
        x = _harmonics(rng, t, rng.uniform(280, 420), lambda f: 1.)
    elif name.startswith('vowel'):
        formants = [(f * rng.uniform(0.92, 1.08), bw) for f, bw in _FORMANTS[name]]
        x = _harmonics(rng, t, rng.uniform(100, 250),
                       lambda f: sum(np.exp(-0.5 * ((f - fc) / bw) ** 2) / (i + 1)
                                     for i, (fc, bw) in enumerate(formants)))
    elif name in ('sweeps-up', 'sweeps-down'):
        x = _sweeps(rng, t, name == 'sweeps-up')
    elif name == 'noise-low':
        x = _band_noise(rng, length, 200 * rng.uniform(0.8, 1.2), 1000 * rng.uniform(0.8, 1.2))
    elif name == 'noise-high':
        x = _band_noise(rng, length, 3000 * rng.uniform(0.8, 1.2), 6000 * rng.uniform(0.9, 1.1))
    elif name == 'beeps':
        on, off = rng.uniform(0.04, 0.08), rng.uniform(0.06, 0.12)
        gate = ((t + rng.uniform(0, on + off)) % (on + off)) < on
        x = np.sin(2 * np.pi * rng.uniform(1500, 2500) * t) * gate
    else:  # pragma: no cover
        raise ValueError(name)
    x = x / (np.std(x) + 1e-9)
    # onset and offset: the sound covers at least 60 % of the recording
    silent = int(rng.uniform(0, 0.4) * length)
    start = rng.integers(silent + 1)
    mask = np.zeros(length)
    mask[start:length - (silent - start)] = 1
    ramp = min(160, max(1, int(mask.sum()) // 4))
    mask = np.convolve(mask, np.ones(ramp) / ramp, mode='same')
    x = x * mask
    snr_db = rng.uniform(5, 25)
    x = x + rng.standard_normal(length) * 10 ** (-snr_db / 20)
    return x * 10 ** (rng.uniform(-30, 0) / 20)


class SyntheticDataset(Dataset):
    """The built-in synthetic task: ``size`` recordings of one split, generated on access.

    Args:
        split (str): 'train', 'val' or 'test' (different seeds).
        size (int): number of recordings.
        min_length, max_length (int): recording lengths in samples (uniform, inclusive).
        num_classes (int): the first ``num_classes`` of :data:`SYNTHETIC_CLASSES`.
    Item:
        (waveform (1, L) float32 tensor, label int); labels cycle through the classes.
    """

    def __init__(self, split: str, size: int, min_length: int, max_length: int,
                 num_classes: int = len(SYNTHETIC_CLASSES)):
        if split not in SPLIT_SEEDS:
            raise ValueError('split must be one of %s, got %r' % (sorted(SPLIT_SEEDS), split))
        if not 2 <= num_classes <= len(SYNTHETIC_CLASSES):
            raise DataError('--num-classes for the synthetic task must be between 2 and %d, '
                            'got %d' % (len(SYNTHETIC_CLASSES), num_classes))
        if size < 1:
            raise DataError('the synthetic %s split needs at least one recording, got %d'
                            % (split, size))
        self.split = split
        self.size = size
        self.min_length = min_length
        self.max_length = max_length
        self.num_classes = num_classes
        self.classes = SYNTHETIC_CLASSES[:num_classes]

    def __len__(self):
        return self.size

    def label(self, index: int) -> int:
        return index % self.num_classes

    def __getitem__(self, index: int):
        if not 0 <= index < self.size:
            raise IndexError(index)
        rng = np.random.default_rng((SPLIT_SEEDS[self.split], index))
        length = int(rng.integers(self.min_length, self.max_length + 1))
        label = self.label(index)
        x = synthesize(rng, label, length)
        return torch.from_numpy(x.astype(np.float32))[None], label


def align_sample(x: torch.Tensor, size: int, offset: int = 0) -> torch.Tensor:
    """Crop ``x`` (C, L) to ``x[:, offset:offset + size]`` or zero-pad it at the end."""
    if x.shape[-1] < size:
        return torch.nn.functional.pad(x, (0, size - x.shape[-1]))
    return x[:, offset:offset + size]


def loudness_normalization(x: torch.Tensor, target_db: float = 15.,
                           max_gain_db: float = 30.) -> torch.Tensor:
    """``x * min(10^(max_gain_db/20), 10^(target_db/20) / (std(x) + 1e-9))``, the
    **unbiased** std over the whole item, as the original (SPEC §9)."""
    std = torch.std(x) + 1e-9  # in x's dtype, as the original
    gain = torch.clamp(10. ** (target_db / 20.) / std, max=10. ** (max_gain_db / 20.))
    return x * gain


class TrainCrops(Dataset):
    """Training items: a random ``input_size`` crop (offset ``randint(excess + 1)``) or an
    end zero-pad, then loudness normalisation.

    The offset of item ``i`` in epoch ``e`` comes from ``SeedSequence((seed, e, i))``, so it
    does not depend on the order, the worker or the process that loads it: a resumed run
    crops exactly as an uninterrupted one. Call :meth:`set_epoch` before each epoch.
    """

    def __init__(self, dataset: Dataset, input_size: int, seed: int):
        self.dataset = dataset
        self.input_size = input_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        x, label = self.dataset[index]
        x = x.float()
        excess = x.shape[-1] - self.input_size
        offset = 0
        if excess > 0:
            rng = np.random.default_rng((self.seed, self.epoch, index))
            offset = int(rng.integers(excess + 1))
        return loudness_normalization(align_sample(x, self.input_size, offset)), label


class EvalWindows(Dataset):
    """Evaluation items: consecutive non-overlapping ``input_size`` windows of a recording,
    each normalised on its own; an incomplete tail is dropped unless the recording is
    shorter than one window, which is then zero-padded (the original's ``eval_pad='drop'``).

    Item: (windows (N, 1, input_size), label, index); N = 0 for an empty recording (an
    unreadable file of the paper's data sets, see :mod:`eleaf.datasets.base`), which the
    evaluation leaves out.
    """

    def __init__(self, dataset: Dataset, input_size: int):
        self.dataset = dataset
        self.input_size = input_size

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        x, label = self.dataset[index]
        x = x.float()
        if x.shape[-1] == 0:
            return x.new_zeros(0, 1, self.input_size), label, index
        return split_windows(x, self.input_size), label, index


def split_windows(x: torch.Tensor, size: int, normalize: bool = True) -> torch.Tensor:
    """(N, 1, size) consecutive non-overlapping windows of ``x`` (1, L), each loudness-
    normalised on its own unless ``normalize`` is false; an incomplete tail is dropped unless
    ``x`` is shorter than one window, which is then zero-padded (N = 1)."""
    windows = [align_sample(x, size, i * size) for i in range(max(1, x.shape[-1] // size))]
    if normalize:
        windows = [loudness_normalization(w) for w in windows]
    return torch.stack(windows)


def collate_train(batch):
    """[(x (1, L), label)] -> (x (B, 1, L), labels (B,) int64)."""
    xs, labels = zip(*batch)
    return torch.stack(xs), torch.as_tensor(labels, dtype=torch.long)


def collate_eval(batch):
    """[(windows (N_i, 1, L), label, index)] -> (windows (sum N_i, 1, L), labels (B,),
    counts (B,), indices (B,))."""
    windows, labels, indices = zip(*batch)
    return (torch.cat(windows), torch.as_tensor(labels, dtype=torch.long),
            torch.as_tensor([w.shape[0] for w in windows], dtype=torch.long),
            torch.as_tensor(indices, dtype=torch.long))


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` (shuffled by ``seed + epoch``, one shard per rank) that can
    skip the first ``skip`` items of its epoch, to resume an interrupted epoch exactly."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True,
                         seed=seed, drop_last=False)
        self.skip = 0

    def __iter__(self):
        return iter(list(super().__iter__())[self.skip:])

    def __len__(self):
        return max(0, self.num_samples - self.skip)


class ShardSampler(Sampler):
    """Recordings ``rank, rank + world, ...`` in order: every recording is evaluated exactly
    once over all ranks (no padding, unlike ``DistributedSampler``)."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0):
        self.indices = list(range(rank, size, num_replicas))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def resolve_dataset_name(name: str) -> str:
    """The canonical name of a ``--data-set`` value (case-insensitive), or DataError."""
    known = ('synthetic',) + PAPER_DATASETS
    for candidate in known:
        if name.lower() == candidate.lower():
            return candidate
    raise DataError('unknown data set %r: use --data-set synthetic (built in) or one of the '
                    "paper's data sets %s" % (name, ', '.join(PAPER_DATASETS)))


def build_datasets(args) -> Tuple[Dataset, Dataset, Dataset, int]:
    """(train, val, test, num_classes) raw datasets of ``args.data_set``: items are
    (waveform (1, L), label)."""
    name = resolve_dataset_name(args.data_set)
    if name == 'synthetic':
        min_length = int(round(args.input_size * args.synthetic_min_length))
        max_length = int(round(args.input_size * args.synthetic_max_length))
        if not 0 < min_length <= max_length:
            raise DataError('--synthetic-min-length and --synthetic-max-length must give '
                            '0 < min <= max samples, got %d and %d at --input-size %d'
                            % (min_length, max_length, args.input_size))
        sizes = dict(zip(('train', 'val', 'test'), args.synthetic_size))
        return tuple(SyntheticDataset(split, sizes[split], min_length, max_length,
                                      args.num_classes)
                     for split in ('train', 'val', 'test')) + (args.num_classes,)
    path = args.data_path or '.'
    if not os.path.isdir(path):
        raise DataError('data directory %r does not exist: pass --data-path DIR, the directory '
                        'holding the %s data (see `eleaf data prepare %s`)' % (path, name, name))
    from ..datasets.registry import build
    return build(name, path, SAMPLE_RATE)


def build_loaders(args, train_set: Dataset, val_set: Dataset, test_set: Dataset,
                  seed: int, rank: int = 0, world_size: int = 1, pin_memory: bool = False):
    """DataLoaders (train, val, test) and the train ``EpochSampler``.

    Every loader has its own ``torch.Generator``, so loading never draws from the global
    torch RNG (exact resumption).
    """
    train_crops = TrainCrops(train_set, args.input_size, seed)
    sampler = EpochSampler(train_crops, world_size, rank, seed)

    def generator():
        g = torch.Generator()
        g.manual_seed(seed)
        return g

    train_loader = torch.utils.data.DataLoader(
        train_crops, batch_size=args.batch_size, sampler=sampler, collate_fn=collate_train,
        num_workers=args.num_workers, pin_memory=pin_memory, generator=generator())
    eval_loaders = [torch.utils.data.DataLoader(
        EvalWindows(ds, args.input_size),
        batch_size=args.batch_size_eval or args.batch_size,
        sampler=ShardSampler(len(ds), world_size, rank), collate_fn=collate_eval,
        num_workers=args.num_workers, pin_memory=pin_memory, generator=generator())
        for ds in (val_set, test_set)]
    return (train_loader,) + tuple(eval_loaders) + (sampler,)


def first_windows(dataset: Dataset, input_size: int):
    """(windows (N, 1, input_size), label) of the first recording with at least one window."""
    windows = EvalWindows(dataset, input_size)
    for i in range(len(windows)):
        item = windows[i]
        if item[0].shape[0] > 0:
            return item[0], item[1]
    raise DataError('no recording of the data set is readable')


def frontend_example(dataset: Dataset, input_size: int) -> torch.Tensor:
    """(1, 1, input_size) first window of the first readable recording, normalised: for
    images."""
    return first_windows(dataset, input_size)[0][:1]
