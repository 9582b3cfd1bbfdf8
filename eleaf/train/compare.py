"""``eleaf train --compare-frontends EfficientLeaf,Mel ...`` (or ``python -m
eleaf.train.compare ...``, the same options): train one model per frontend with otherwise
equal options, print their test accuracies side by side and save plots.

Every frontend gets ``MODEL_NAME/FRONTEND`` as its run name and the same seed. The mel
baseline keeps log1p's ``a`` fixed, as in the paper (``--log1p-trainable`` applies to the
learnable frontends only). Written to ``OUTPUT_DIR/models/MODEL_NAME/``: ``compare.json``,
``filters.png`` (learned centre frequencies and bandwidths against the mel initialisation)
and ``frontend_outputs.png`` (one test window through every frontend); the plots need
matplotlib.

This module is a library of :mod:`eleaf.train.cli` (which passes its ``run`` in) and does not
import it; ``python -m eleaf.train.compare`` imports the CLI only when run as a script.
"""
import copy
import math
import os
import sys

import numpy as np
import torch

from ..cli.options import UsageError
from .logs import write_json

__all__ = ['compare', 'compare_argv']

FRONTENDS = ('Leaf', 'EfficientLeaf', 'Mel')


def _frontend_list(text):
    names = [n.strip() for n in text.split(',') if n.strip()]
    for n in names:
        if n not in FRONTENDS:
            raise UsageError('--compare-frontends: unknown frontend %r; use a comma-separated '
                             'list of %s' % (n, ', '.join(FRONTENDS)))
    if len(names) != len(set(names)) or not names:
        raise UsageError('--compare-frontends needs distinct frontends, got %r' % text)
    return names


def compare(args, explicit, run) -> dict:
    """Train and test every frontend of ``args.compare_frontends`` with ``run(args,
    explicit)`` (:func:`eleaf.train.cli.run`, which returns a run's results); returns
    ``{frontend: results}`` and writes the plots."""
    names = _frontend_list(args.compare_frontends)
    if args.resume and args.resume != 'auto':
        raise UsageError('--compare-frontends resumes with --resume auto only (one checkpoint '
                         'per frontend)')
    if not args.seed:
        args.seed = int.from_bytes(os.urandom(4), 'little') % (2 ** 31 - 1) or 1
    results, runs = {}, {}
    for name in names:
        a = copy.deepcopy(args)
        a.compare_frontends = ''
        a.frontend = name
        a.model_name = os.path.join(args.model_name, name)
        if name == 'Mel':
            a.log1p_trainable = False
            a.log1p_per_band = False
        print('=== %s ===' % name, flush=True)
        results[name] = run(a, explicit)
        runs[name] = a
    out_dir = os.path.join(args.output_dir, 'models', args.model_name)
    os.makedirs(out_dir, exist_ok=True)
    print(format_comparison(results), flush=True)
    summary = {name: {'best': r.get('best'), 'last': r['last'], 'seconds': r['seconds'],
                      'model_dir': r['model_dir'], 'args': vars(runs[name])}
               for name, r in results.items()}
    write_json(summary, os.path.join(out_dir, 'compare.json'))
    try:
        paths = plot_comparison(runs, out_dir)
    except ImportError as exc:
        print('no plots (%s): pip install matplotlib' % exc)
    else:
        print('plots: %s' % ', '.join(paths))
    return results


def format_comparison(results: dict) -> str:
    lines = ['%-14s %9s %15s %15s %10s' % ('frontend', 'epochs', 'best test acc',
                                            'last test acc', 'time (s)')]
    for name, r in results.items():
        best = r.get('best') or {}
        lines.append('%-14s %9s %14.2f%% %14.2f%% %10.0f' % (
            name, r['last']['epoch'], 100 * best.get('test_acc', float('nan')),
            100 * r['last']['test_acc'], r['seconds']))
    return '\n'.join(lines)


def _load_last(a):
    """The model of run ``a`` with the weights of its last epoch."""
    from .checkpoint import load_checkpoint
    from .model import build_model
    path = os.path.join(a.output_dir, 'models', a.model_name, 'net_last_model.pth')
    ckpt = load_checkpoint(path)
    model = build_model(a, ckpt['num_classes'])
    model.load_state_dict(ckpt['network'])
    return model.eval()


def gabor_parameters(frontend):
    """(centre frequencies in Hz, bandwidths in Hz) of a Leaf/EfficientLeaf frontend, or
    None; bandwidth = sample_rate / (2 sigma), the inverse of the mel initialisation."""
    from .model import SAMPLE_RATE
    fb = getattr(frontend, 'filterbank', None)
    if fb is None or not hasattr(fb, 'center_freqs'):
        return None
    cf = fb.center_freqs.detach().double().cpu().numpy() * SAMPLE_RATE / (2 * math.pi)
    bw = SAMPLE_RATE / (2 * fb.bandwidths.detach().double().cpu().numpy())
    return cf, bw


def plot_comparison(runs: dict, out_dir: str):
    """Write ``filters.png`` and ``frontend_outputs.png``; returns their paths."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    from ..functional import mel_filter_params
    from . import data as data_lib
    from .logs import frontend_image
    from .model import MAX_FREQ, MIN_FREQ, N_FILTERS, SAMPLE_RATE
    models = {name: _load_last(a) for name, a in runs.items()}
    paths = []

    learned = {n: gabor_parameters(m._frontend) for n, m in models.items()}
    learned = {n: p for n, p in learned.items() if p is not None}
    if learned:
        cf0, sigma0 = mel_filter_params(N_FILTERS, MIN_FREQ, MAX_FREQ, SAMPLE_RATE)
        cf0 = cf0.double().numpy() * SAMPLE_RATE / (2 * math.pi)
        bw0 = SAMPLE_RATE / (2 * sigma0.double().numpy())
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        idx = np.arange(N_FILTERS)
        for ax, init, k, title in ((axes[0], cf0, 0, 'centre frequency'),
                                   (axes[1], bw0, 1, 'bandwidth')):
            ax.plot(idx, init, 'k--', label='mel initialisation')
            for name, params in learned.items():
                ax.plot(idx, params[k], 'o-', ms=3, label='%s (learned)' % name)
            ax.set_xlabel('filter')
            ax.set_ylabel('%s (Hz)' % title)
            ax.set_yscale('log')
            ax.set_title(title)
            ax.legend()
        fig.tight_layout()
        path = os.path.join(out_dir, 'filters.png')
        fig.savefig(path, dpi=120)
        plt.close(fig)
        paths.append(path)

    a = next(iter(runs.values()))
    _, _, test_set, _ = data_lib.build_datasets(a)
    windows, label = data_lib.first_windows(test_set, a.input_size)
    fig, axes = plt.subplots(1, len(models), figsize=(4.5 * len(models), 4), squeeze=False)
    for ax, (name, model) in zip(axes[0], models.items()):
        with torch.no_grad():
            out = model._frontend(windows[:1])[0]
        ax.imshow(frontend_image(out)[0].flip(0).numpy(), aspect='auto', cmap='magma',
                  interpolation='nearest', origin='lower')
        ax.set_title('%s: %s' % (name, tuple(out.shape)))
        ax.set_xlabel('frame')
        ax.set_ylabel('band (channel 1 stacked above channel 0)'
                      if out.ndim == 3 and out.shape[0] > 1 else 'band')
    fig.suptitle('test recording 0 (%s), first window, trained frontends'
                 % data_lib.SYNTHETIC_CLASSES[label] if a.data_set == 'synthetic' else
                 'test recording 0, first window, trained frontends')
    fig.tight_layout()
    path = os.path.join(out_dir, 'frontend_outputs.png')
    fig.savefig(path, dpi=120)
    plt.close(fig)
    paths.append(path)
    return paths


def compare_argv(argv) -> list:
    """The ``eleaf train`` arguments of ``python -m eleaf.train.compare ARGV``: ``--frontends
    LIST`` is ``--compare-frontends LIST``, which defaults to ``EfficientLeaf,Mel``."""
    argv = list(argv)
    if '--frontends' in argv:
        i = argv.index('--frontends')
        argv = argv[:i] + ['--compare-frontends'] + argv[i + 1:]
    elif not any(a.startswith('--compare-frontends') for a in argv):
        argv = argv + ['--compare-frontends', 'EfficientLeaf,Mel']
    return argv


if __name__ == '__main__':
    # ``python -m eleaf.train.compare --frontends LIST [train options]``; as a script this
    # module is ``__main__``, so importing the CLI here forms no import cycle
    from eleaf.train.cli import main as _train_main
    sys.exit(_train_main(compare_argv(sys.argv[1:])))
