"""``eleaf demo``: EfficientLEAF, LEAF and mel features of a synthesised signal.

Synthesises 2 s at 16 kHz (a rising chirp, a vowel-like harmonic complex, a noise burst),
computes the three frontends at their initialisation, prints each output's shape and the
median and interquartile range of its inference time over at least ``--min-calls`` calls
(alternating between the frontends, so that a machine whose speed drifts slows them alike),
and saves a PNG of the three representations over time and band centre frequency in Hz, with
colour bars (needs matplotlib).
"""
import argparse
import os
import time

import numpy as np
import torch

from .options import HelpFormatter, parse_device


def synthesize(seconds: float = 2.0, sample_rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """(1, L) float32 test signal: chirp 100 Hz -> 6 kHz, harmonic complex, noise burst."""
    rng = np.random.RandomState(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    third = seconds / 3
    chirp = np.sin(2 * np.pi * (100 * t + 0.5 * (6000 - 100) / third * t ** 2)) * (t < third)
    f0 = 140 * (1 + 0.1 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    formants = [(700, 1.0), (1200, 0.6), (2600, 0.3)]
    vowel = sum(a * np.sin(h * phase) * np.exp(-((h * 140 - f) / 300.) ** 2)
                for h in range(1, 40) for f, a in formants)
    vowel = vowel / np.abs(vowel).max() * ((t >= third) & (t < 2 * third))
    noise = rng.randn(t.size) * 0.3 * (t >= 2 * third)
    x = 0.5 * chirp + 0.5 * vowel + noise + 1e-3 * rng.randn(t.size)
    return torch.from_numpy(x.astype(np.float32))[None]


def time_calls(fns, min_calls=10, max_calls=100, budget_s=2.0, warmup=2):
    """Per-call wall times (s) of each of ``fns``: ``warmup`` calls each, then rounds of one
    call of each function in turn (machine drift hits all alike) until every function has
    ``min_calls`` calls and ``budget_s`` seconds of calls in all have passed, or
    ``max_calls`` rounds. Returns one list of times per function."""
    for fn in fns:
        for _ in range(warmup):
            fn()
    times = [[] for _ in fns]
    start = time.perf_counter()
    for round_ in range(max_calls):
        if round_ >= min_calls and time.perf_counter() - start >= budget_s:
            break
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return times


def summarize(times) -> str:
    """``median ms (interquartile range, n calls)``."""
    q1, med, q3 = np.percentile(np.asarray(times) * 1e3, [25, 50, 75])
    return '%8.2f ms  (IQR %.2f-%.2f ms, %d calls)' % (med, q1, q3, len(times))


def band_frequencies(frontend, n_bands: int, sample_rate: int = 16000) -> np.ndarray:
    """Centre frequency (Hz) of each output band: the Gabor filters' (initial) centre
    frequencies, or the peak of each mel filter."""
    fb = getattr(frontend, 'filterbank', None)
    if fb is not None and hasattr(fb, 'center_freqs'):
        hz = fb.center_freqs.detach().double().cpu().numpy() * sample_rate / (2 * np.pi)
    else:
        bank = frontend.filterbank.bank.detach().double().cpu().numpy()  # (bins, bands)
        hz = bank.argmax(0) * sample_rate / (2 * (bank.shape[0] - 1))
    return hz[:n_bands]


def channel_note(y: torch.Tensor) -> str:
    """What the picture shows of a (1, C, F, T) or (1, F, T) output."""
    if y.ndim == 4 and y.shape[1] == 2:
        return 'channel 0 of 2 (log1p; channel 1: minus its median over time)'
    if y.ndim == 4:
        return 'channel 0 of %d' % y.shape[1]
    return 'one channel'


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='eleaf demo', description=__doc__.split('\n')[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument('--output', default='demo_out/eleaf_demo.png', help='PNG to write')
    parser.add_argument('--seconds', type=float, default=2.0, help='length of the signal')
    parser.add_argument('--backend', default='auto', choices=('auto', 'torch', 'triton', 'cpp'),
                        help='eleaf backend of every frontend')
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    parser.add_argument('--min-calls', type=int, default=10,
                        help='timed calls of each frontend at least (after 2 warm-up calls); '
                             'more while under --budget seconds; 0: no timings')
    parser.add_argument('--budget', type=float, default=2.0, metavar='SECONDS',
                        help='time to spend on the timed calls of all frontends together')
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    import eleaf
    device = parse_device(args.device)
    x = synthesize(args.seconds).to(device)
    frontends = [
        ('EfficientLEAF 8G-opt', eleaf.EfficientLeaf(n_filters=80, num_groups=8,
                                                     conv_win_factor=6, stride_factor=16,
                                                     backend=args.backend)),
        ('LEAF (PCEN)', eleaf.Leaf(n_filters=80, backend=args.backend)),
        ('mel (paper baseline)', eleaf.Mel(n_filters=80, backend=args.backend)),
    ]
    print('input: %s, %.1f s at 16 kHz, device %s' % (tuple(x.shape), args.seconds, device))
    calls, outputs = [], []
    for name, frontend in frontends:
        frontend = frontend.to(device).eval()

        def call(frontend=frontend):
            with torch.no_grad():
                y = frontend(x)
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            return y
        calls.append(call)
        outputs.append(call())
    if args.min_calls > 0:
        times = time_calls(calls, min_calls=args.min_calls, budget_s=args.budget)
        print('inference time per call: median (interquartile range) of calls alternating '
              'between the frontends')
    else:
        times = [None] * len(calls)
    images = []
    for (name, frontend), y, ts in zip(frontends, outputs, times):
        print('%-22s output %-18s%s' % (name, str(tuple(y.shape)),
                                         summarize(ts) if ts else ''))
        img = y[0, 0] if y.ndim == 4 else y[0]
        images.append((name, channel_note(y), img, band_frequencies(frontend, img.shape[0])))
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        print("no picture: matplotlib is not installed (pip install 'eleaf[plot]')")
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    fig, axes = plt.subplots(len(images), 1, figsize=(8, 8.5))
    for ax, (name, note, img, hz) in zip(axes, images):
        data = img.float().cpu().numpy()
        t = (np.arange(data.shape[1]) + 0.5) * args.seconds / data.shape[1]
        mesh = ax.pcolormesh(t, hz, data, shading='nearest', cmap='magma')
        ax.set_yscale('log')
        ax.set_yticks([f for f in (100, 200, 500, 1000, 2000, 5000) if hz.min() <= f <= hz.max()])
        ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: '%g' % v))
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title('%s: %s' % (name, note), fontsize=10)
        ax.set_ylabel('band centre (Hz)')
        fig.colorbar(mesh, ax=ax, pad=0.01, label='feature value')
    axes[-1].set_xlabel('time (s)')
    fig.suptitle('eleaf demo: chirp 100 Hz-6 kHz, harmonic complex, noise burst '
                 '(untrained frontends)', fontsize=10)
    fig.tight_layout()
    fig.savefig(args.output, dpi=80)
    plt.close(fig)
    print('saved %s' % args.output)
    return 0
