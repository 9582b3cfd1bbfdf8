"""The classifier of ``eleaf train``: frontend + encoder + ``eleaf.AudioClassifier`` (SPEC §9),
built from the options exactly as the original ``main.py`` builds it.
"""
import torch.nn as nn

from ..cli.options import UsageError
from ..modules import PCEN, AudioClassifier, EfficientLeaf, Leaf, LogTBN, Mel

__all__ = ['MODEL_OPTIONS', 'N_FILTERS', 'SAMPLE_RATE', 'build_frontend', 'build_encoder',
           'build_model', 'frontend_channels', 'SmallEncoder', 'EncoderUnavailableError']

# the original main.py's frontend constants
N_FILTERS = 40
SAMPLE_RATE = 16000
WINDOW_LEN = 25.0
WINDOW_STRIDE = 10.0
MIN_FREQ = 60.0
MAX_FREQ = 7800.0

#: options that decide the network's structure (checked against a checkpoint's)
MODEL_OPTIONS = ('frontend', 'compression', 'num_groups', 'conv_win_factor', 'stride_factor',
                 'log1p_initial_a', 'log1p_trainable', 'log1p_per_band', 'tbn_median_filter',
                 'tbn_median_filter_append', 'pcen_learn_logs', 'encoder')


class EncoderUnavailableError(ImportError):
    """The requested encoder needs a package that is not installed."""


def frontend_channels(args) -> int:
    """Channels of the frontend output: 2 with TBN + median filter appended, else 1."""
    return 2 if (args.compression == 'TBN' and args.tbn_median_filter
                 and args.tbn_median_filter_append) else 1


def build_compression(args) -> nn.Module:
    backend = getattr(args, 'backend', 'auto')
    if args.compression == 'PCEN':
        return PCEN(num_bands=N_FILTERS, s=0.04, alpha=0.96, delta=2.0, r=0.5, eps=1e-12,
                    learn_logs=args.pcen_learn_logs, clamp=1e-5, backend=backend)
    if args.compression == 'TBN':
        return LogTBN(num_bands=N_FILTERS, a=args.log1p_initial_a,
                      trainable=args.log1p_trainable, per_band=args.log1p_per_band,
                      median_filter=args.tbn_median_filter,
                      append_filtered=args.tbn_median_filter_append, backend=backend)
    raise ValueError('--compression must be PCEN or TBN, got %r' % args.compression)


def build_frontend(args) -> nn.Module:
    """The frontend of ``args.frontend`` ('Leaf', 'EfficientLeaf' or 'Mel') with 40 filters,
    60 to 7800 Hz at 16 kHz, 25 ms windows, 10 ms hop, and ``args.compression``."""
    backend = getattr(args, 'backend', 'auto')
    compression = build_compression(args)
    common = dict(n_filters=N_FILTERS, min_freq=MIN_FREQ, max_freq=MAX_FREQ,
                  sample_rate=SAMPLE_RATE, window_len=WINDOW_LEN, window_stride=WINDOW_STRIDE,
                  compression=compression, backend=backend)
    if args.frontend == 'Leaf':
        return Leaf(**common)
    if args.frontend == 'EfficientLeaf':
        return EfficientLeaf(num_groups=args.num_groups, conv_win_factor=args.conv_win_factor,
                             stride_factor=args.stride_factor, **common)
    if args.frontend == 'Mel':
        return Mel(**common)
    raise ValueError('--frontend must be Leaf, EfficientLeaf or Mel, got %r' % args.frontend)


class SmallEncoder(nn.Sequential):
    """A small CNN for quick CPU runs: four 3x3 conv + batch norm + ReLU blocks (16, 32, 64,
    128 channels, 2x2 max-pooling after the first three), global max pooling and a 1x1
    conv + ReLU to the 1280 channels the ``AudioClassifier`` head expects.

    Shape:
        (B, C, F, T) -> (B, 1280, 1, 1).
    """

    def __init__(self, in_channels: int = 1, widths=(16, 32, 64, 128),
                 out_channels: int = 1280):
        layers = []
        for i, width in enumerate(widths):
            layers += [nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
                       nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            if i < len(widths) - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            in_channels = width
        layers += [nn.AdaptiveMaxPool2d(1), nn.Conv2d(in_channels, out_channels, 1),
                   nn.ReLU(inplace=True)]
        super().__init__(*layers)


def build_encoder(args, in_channels: int) -> nn.Module:
    """EfficientNet-b0 without top and with identity average pooling (the paper), or the
    :class:`SmallEncoder` (``--encoder small``)."""
    if args.encoder == 'small':
        return SmallEncoder(in_channels)
    if args.encoder != 'efficientnet':
        raise ValueError('--encoder must be efficientnet or small, got %r' % args.encoder)
    try:
        from efficientnet_pytorch import EfficientNet
    except ImportError as exc:
        raise EncoderUnavailableError(
            "--encoder efficientnet needs the package efficientnet_pytorch (%s): pip install "
            "'eleaf[train]', or use --encoder small" % exc) from None
    encoder = EfficientNet.from_name('efficientnet-b0', include_top=False,
                                     in_channels=in_channels)
    encoder._avg_pooling = nn.Identity()
    return encoder


def build_model(args, num_classes: int) -> AudioClassifier:
    """``AudioClassifier(num_classes, frontend, encoder)``: state_dict keys ``_frontend.*``,
    ``_encoder.*``, ``_head.*`` as the original's. Built in the original's order (encoder,
    frontend, head), so a seed draws the same initial weights."""
    encoder = build_encoder(args, frontend_channels(args))
    try:
        frontend = build_frontend(args)
    except ValueError as exc:  # an option out of the module's range: one line, exit 2
        raise UsageError('invalid model options (%s): %s' % (
            ' '.join('--%s %s' % (n.replace('_', '-'), getattr(args, n)) for n in
                     ('frontend', 'conv_win_factor', 'stride_factor', 'num_groups',
                      'log1p_initial_a') if hasattr(args, n)), exc)) from None
    return AudioClassifier(num_outputs=num_classes, frontend=frontend, encoder=encoder)
