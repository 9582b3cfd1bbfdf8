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


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ('-h', '--help') or argv[0] not in COMMANDS:
        print('usage: eleaf COMMAND [options]\n\ncommands:')
        for name, (_, text) in COMMANDS.items():
            print('  %-8s %s' % (name, text))
        return 0 if not argv or argv[0] in ('-h', '--help') else 2
    logging.basicConfig(level=logging.INFO, format='%(message)s')
    import importlib
    return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:])


if __name__ == '__main__':
    sys.exit(main())
