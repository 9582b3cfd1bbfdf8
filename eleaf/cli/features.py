"""``eleaf features FILE...``: frontend features of audio files, saved as ``.npy`` (and
optionally ``.png``), from a checkpoint of ``eleaf train`` or an untrained frontend.

Each file is read at 16 kHz (resampled, mixed down to mono), loudness-normalised as in
training and passed through the frontend in eval mode. See docs/features.md.

Examples::

    eleaf features a.wav b.flac                          # the paper's EfficientLEAF, initial
    eleaf features --frontend Mel --png --output-dir feats/ *.wav
    eleaf features --checkpoint outputs/models/run/net_best_model.pth --chunk 1 a.wav
"""
import argparse
import math
import os
import sys
from argparse import Namespace

import numpy as np
import torch

from ..datasets.audio import AudioError, load_audio
from .options import HelpFormatter, UsageError, parse_device, require
from ..train import checkpoint as ckpt_lib
from ..train.data import loudness_normalization, split_windows
from ..train.model import (MAX_FREQ, MIN_FREQ, N_FILTERS, SAMPLE_RATE, WINDOW_LEN,
                           WINDOW_STRIDE, build_frontend)

__all__ = ['main', 'build_parser', 'frontend_options', 'load_frontend', 'compute_features',
           'output_paths', 'save_png']

#: the paper's configuration of each frontend, for the model options not given: LEAF with
#: PCEN, EfficientLEAF 4 groups, window factor 4.75 with LogTBN (learned per-band a), mel
#: with LogTBN (fixed a)
LOGTBN = dict(compression='TBN', log1p_initial_a=5., log1p_trainable=True,
              log1p_per_band=True, tbn_median_filter=True, tbn_median_filter_append=True)
PAPER_DEFAULTS = {
    'Leaf': dict(LOGTBN, compression='PCEN'),
    'EfficientLeaf': dict(LOGTBN, num_groups=4, conv_win_factor=4.75),
    'Mel': dict(LOGTBN, log1p_trainable=False, log1p_per_band=False),
}
#: every frontend option and its value where neither the command line, a checkpoint nor
#: :data:`PAPER_DEFAULTS` sets it (the defaults of eleaf train)
OPTION_DEFAULTS = dict(compression='PCEN', pcen_learn_logs=False, log1p_initial_a=0.,
                       log1p_trainable=False, log1p_per_band=False, tbn_median_filter=False,
                       tbn_median_filter_append=False, num_groups=4, conv_win_factor=3.,
                       stride_factor=1.)
FRONTEND_OPTIONS = ('frontend',) + tuple(OPTION_DEFAULTS)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog='eleaf features', formatter_class=HelpFormatter,
        description='Frontend features of audio files (16 kHz mono, loudness-normalised as in '
                    'training, eval mode) as .npy files: (C, F, T) per file, or (N, C, F, T) '
                    'with --chunk. Model options left out are those of --checkpoint, or the '
                    "paper's configuration of --frontend.")
    p.add_argument('files', nargs='+', metavar='FILE', help='audio files (WAV, FLAC, OGG, ...)')
    p.add_argument('--checkpoint', metavar='FILE',
                   help='checkpoint of eleaf train (or the original main.py; then give its '
                        'model options): the trained frontend; default: initial weights')
    p.add_argument('--trust-checkpoint', action='store_true',
                   help='load checkpoints holding arbitrary pickled objects (only files you '
                        'trust)')
    p.add_argument('--output-dir', metavar='DIR',
                   help='write DIR/NAME.npy; default: next to each audio file, its extension '
                        'replaced by .npy')
    p.add_argument('--png', action='store_true',
                   help='also write an image of the features (NAME.png, needs matplotlib)')
    p.add_argument('--normalize', action=argparse.BooleanOptionalAction, default=True,
                   help="loudness normalisation of eleaf train (a gain to 15 dB, at most "
                        "+30 dB, from the unbiased std) of each file or chunk")
    p.add_argument('--chunk', type=float, metavar='SECONDS',
                   help="cut each file into consecutive SECONDS-long chunks as eleaf train's "
                        'evaluation does (each normalised on its own, an incomplete tail '
                        'dropped, a file shorter than one chunk zero-padded) and write their '
                        'features stacked, (N, C, F, T); default: the whole file at once')
    p.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    p.add_argument('--backend', default='auto', choices=('auto', 'torch', 'triton', 'cpp'),
                   help='eleaf backend of the frontend')
    p.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True,
                   help='tqdm progress bar over the files')

    g = p.add_argument_group('model (as in eleaf train; only needed without a checkpoint)')
    g.add_argument('--frontend', choices=tuple(PAPER_DEFAULTS),
                   help='default: EfficientLeaf, or the checkpoint\'s')
    g.add_argument('--compression', choices=('PCEN', 'TBN'),
                   help='default: PCEN for Leaf, TBN (LogTBN) otherwise')
    g.add_argument('--pcen-learn-logs', action=argparse.BooleanOptionalAction, default=None,
                   help='PCEN: parameters learned as logarithms (default: no)')
    g.add_argument('--log1p-initial-a', type=float, help='LogTBN: a of log(1 + 10**a x) '
                                                         '(default: 5)')
    g.add_argument('--log1p-trainable', action=argparse.BooleanOptionalAction, default=None,
                   help='LogTBN: learned a (default: yes, but not for Mel)')
    g.add_argument('--log1p-per-band', action=argparse.BooleanOptionalAction, default=None,
                   help='LogTBN: one a per band (default: yes, but not for Mel)')
    g.add_argument('--tbn-median-filter', action=argparse.BooleanOptionalAction, default=None,
                   help='LogTBN: median subtraction (default: yes)')
    g.add_argument('--tbn-median-filter-append', action=argparse.BooleanOptionalAction,
                   default=None, help='LogTBN: the median-subtracted signal as a second '
                                      'channel (default: yes)')
    g.add_argument('--num-groups', type=int, help='EfficientLeaf: filter groups (default: 4)')
    g.add_argument('--conv-win-factor', type=float,
                   help='EfficientLeaf: kernel size in bandwidths (default: 4.75)')
    g.add_argument('--stride-factor', type=float,
                   help='EfficientLeaf: stride multiplier (default: 1)')
    return p


def frontend_options(given: dict, stored: dict = None) -> Namespace:
    """The frontend options: those ``given`` (not None) first, then ``stored`` (a
    checkpoint's), then the paper's configuration of the frontend, then eleaf train's
    defaults."""
    stored = stored or {}
    frontend = given.get('frontend') or stored.get('frontend') or 'EfficientLeaf'
    values = {'frontend': frontend}
    for name, default in OPTION_DEFAULTS.items():
        for source in (given, stored, PAPER_DEFAULTS[frontend]):
            if source.get(name) is not None:
                values[name] = source[name]
                break
        else:
            values[name] = default
    return Namespace(**values)


def load_frontend(args):
    """(frontend in eval mode on ``args.device``, its options, where its weights come
    from). Raises CheckpointError."""
    given = {name: getattr(args, name) for name in FRONTEND_OPTIONS}
    ckpt, source = None, 'initial weights'
    stored = {}
    if args.checkpoint:
        ckpt = ckpt_lib.load_checkpoint(args.checkpoint, trust=args.trust_checkpoint)
        stored = ckpt.get('args') or {}
        source = '%s (epoch %s)' % (args.checkpoint, ckpt.get('epoch'))
        explicit = Namespace(**given)
        ckpt_lib.check_options(ckpt, explicit, [n for n in FRONTEND_OPTIONS
                                                if given[n] is not None], args.checkpoint)
    options = frontend_options(given, stored)
    frontend = build_frontend(Namespace(backend=args.backend, **vars(options)))
    if ckpt is not None:
        ckpt_lib.load_network(frontend, ckpt_lib.frontend_state(ckpt, args.checkpoint),
                              args.checkpoint)
    return frontend.to(args.device).eval(), options, source


def compute_features(frontend, audio: np.ndarray, chunk=None, normalize: bool = True,
                     device='cpu') -> np.ndarray:
    """Features of ``audio`` (L,) at 16 kHz: float32 (C, F, T), or (N, C, F, T) for ``chunk``
    (samples). C is 2 with LogTBN's appended median-subtracted channel, else 1."""
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
    if chunk is None:  # the whole file
        windows = (loudness_normalization(x) if normalize else x)[None]
    else:  # as eleaf train cuts recordings for its evaluation
        windows = split_windows(x, chunk, normalize)
    outputs = []
    with torch.no_grad():
        for window in windows:  # one at a time: memory grows with the file, not the batch
            y = frontend(window[None].to(device))
            outputs.append((y if y.ndim == 4 else y[:, None]).cpu())
    out = torch.cat(outputs).numpy().astype(np.float32)
    return out if chunk is not None else out[0]


def output_paths(files, output_dir=None):
    """The ``.npy`` path of each file (next to it, or in ``output_dir``); UsageError when two
    files would write the same one."""
    paths = [os.path.join(output_dir, os.path.splitext(os.path.basename(f))[0] + '.npy')
             if output_dir else os.path.splitext(f)[0] + '.npy' for f in files]
    seen = {}
    for f, path in zip(files, paths):
        key = os.path.abspath(path)
        if key in seen:
            raise UsageError('%s and %s would both be written to %s: give them different '
                             'names or process them separately' % (seen[key], f, path))
        seen[key] = f
    return paths


def _axes(frontend):
    """(hop in samples, centre frequency of each band in Hz) of a frontend of
    :func:`eleaf.train.model.build_frontend`."""
    stft = getattr(frontend, 'stft', None)
    if stft is not None:  # Mel: fixed mel bands
        from ..functional.gabor import mel_filter_params
        centres = mel_filter_params(N_FILTERS, MIN_FREQ, MAX_FREQ, SAMPLE_RATE)[0]
        return stft.hopsize, centres.double().numpy() * SAMPLE_RATE / (2 * math.pi)
    from ..modules.frontends import window_samples
    centres = frontend.filterbank.center_freqs.detach().double().cpu().numpy()
    return (window_samples(SAMPLE_RATE, WINDOW_LEN, WINDOW_STRIDE)[1],
            centres * SAMPLE_RATE / (2 * math.pi))


def save_png(features: np.ndarray, path: str, title: str, hop: int, centres, chunk=None):
    """Image of ``features`` ((C, F, T), or (N, C, F, T) chunks side by side, dashed lines
    between them): one panel per channel, time in seconds, bands labelled with their
    centre frequencies in Hz."""
    from matplotlib.figure import Figure
    if chunk is not None:
        n = features.shape[0]
        bounds = [k * chunk / SAMPLE_RATE for k in range(n + 1)]
        features = np.concatenate(list(features), axis=-1)
    else:
        bounds = [0., features.shape[-1] * hop / SAMPLE_RATE]
    channels, bands, _ = features.shape
    names = (['LogTBN', 'LogTBN, median subtracted'] if channels == 2 else
             ['channel %d' % c for c in range(channels)])
    fig = Figure(figsize=(10, 1 + 2.5 * channels), layout='constrained')
    axes = fig.subplots(channels, 1, squeeze=False)[:, 0]
    ticks = list(range(0, bands, max(1, bands // 8)))
    for ax, image, name in zip(axes, features, names):
        shown = ax.imshow(image, origin='lower', aspect='auto', interpolation='nearest',
                          extent=(bounds[0], bounds[-1], -0.5, bands - 0.5))
        for b in bounds[1:-1]:
            ax.axvline(b, color='w', linestyle='--', linewidth=0.8)
        ax.set_yticks(ticks)
        ax.set_yticklabels(['%.0f' % centres[i] for i in ticks])
        ax.set_ylabel('band centre (Hz)')
        ax.set_title(name, fontsize=9)
        fig.colorbar(shown, ax=ax)
    axes[-1].set_xlabel('time (s)')
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=100)


def _tqdm(enabled):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def _check(args):
    parse_device(args.device)
    if args.chunk is not None:
        if not (args.chunk > 0 and math.isfinite(args.chunk)):
            raise UsageError('--chunk must be a positive number of seconds, got %r'
                             % args.chunk)
        args.chunk = max(1, int(round(args.chunk * SAMPLE_RATE)))
    require('reading audio files', 'soundfile', 'scipy')
    if args.png:
        require('--png', 'matplotlib')
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)


def main(argv=None) -> int:
    """Returns 0 when every file was written, 1 when some failed, 2 for bad options."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    try:
        _check(args)
        outputs = output_paths(args.files, args.output_dir)
        frontend, options, source = load_frontend(args)
    except (UsageError, ckpt_lib.CheckpointError, OSError) as exc:
        print('eleaf features: error: %s' % exc, file=sys.stderr)
        return 2
    description = ckpt_lib.frontend_description({'args': vars(options)})
    print('%s\n  weights: %s; %s; %s, %s' % (
        description, source, 'whole files' if args.chunk is None else
        '%d-sample chunks' % args.chunk,
        'loudness-normalised' if args.normalize else 'not normalised', args.device),
        flush=True)
    hop, centres = _axes(frontend)
    tqdm = _tqdm(args.progress)
    bar = tqdm(total=len(args.files), unit='file') if tqdm else None
    say = bar.write if bar is not None else print
    failed = 0
    for path, out in zip(args.files, outputs):
        try:
            if not os.path.isfile(path):
                raise AudioError(path, 'no such file')
            audio = load_audio(path, SAMPLE_RATE)
            feats = compute_features(frontend, audio, args.chunk, args.normalize, args.device)
            np.save(out, feats)
            if args.png:
                save_png(feats, os.path.splitext(out)[0] + '.png', '%s: %s + %s, %s' % (
                    path, options.frontend, 'PCEN' if options.compression == 'PCEN'
                    else 'LogTBN', source), hop, centres, args.chunk)
        except (AudioError, ValueError, RuntimeError, OSError) as exc:  # go on with the next
            failed += 1
            text = str(exc) if isinstance(exc, AudioError) else '%s: %s' % (path, exc)
            say('eleaf features: error: %s' % text, file=sys.stderr)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    print('wrote %d of %d feature files%s' % (len(args.files) - failed, len(args.files),
                                              ', %d failed' % failed if failed else ''))
    return 1 if failed else 0
