"""``python -m eleaf COMMAND``: ``demo`` (features of a synthesised signal), ``info``
(versions, devices, backends), ``bench`` (throughput and memory of every frontend), ``train``
and ``eval`` (the paper's classifier), ``data`` (obtain and check the paper's data sets) and
``features`` (frontend features of audio files)."""
import logging
import sys

COMMANDS = {
    'demo': ('eleaf.cli.demo', 'EfficientLEAF, LEAF and mel features of a synthesised signal'),
    'info': ('eleaf.cli.info', 'versions, devices and the backend table'),
    'bench': ('eleaf.cli.bench', 'throughput and peak memory of every frontend and backend, '
                                 'relative to the mel baseline'),
    'train': ('eleaf.train.cli', 'train and test a classifier (LEAF, EfficientLEAF or mel '
                                 'frontend), the paper\'s recipe'),
    'eval': ('eleaf.train.evaluate', 'test a checkpoint of eleaf train or the original main.py'),
    'data': ('eleaf.cli.data', "how to obtain the paper's data sets, download the free ones, "
                               'validate a copy'),
    'features': ('eleaf.cli.features', 'frontend features of audio files as .npy (and .png), '
                                       'from a checkpoint of eleaf train or an untrained '
                                       'frontend'),
}


def _version() -> str:
    from . import __version__
    return __version__


def usage() -> str:
    lines = ['usage: eleaf [--version] COMMAND [options]   (eleaf COMMAND --help: its options)',
             '', 'commands:']
    lines += ['  %-8s %s' % (name, text) for name, (_, text) in COMMANDS.items()]
    return '\n'.join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ('-h', '--help'):
        print(usage())
        return 0
    if argv[0] in ('--version', '-V'):
        print('eleaf %s' % _version())
        return 0
    if argv[0] not in COMMANDS:
        print(usage(), file=sys.stderr)
        what = 'option' if argv[0].startswith('-') else 'command'
        print('eleaf: error: unknown %s %r (choose from %s)' % (
            what, argv[0], ', '.join(COMMANDS)), file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    import importlib
    try:
        return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])
    except ImportError as exc:  # an optional package: one line naming the extra
        from .cli.options import install_hint, missing_dependency
        module = missing_dependency(exc)
        if module is None:
            raise
        print('eleaf %s: error: %s' % (argv[0], install_hint(None, module)), file=sys.stderr)
        return 2


if __name__ == '__main__':
    sys.exit(main())
