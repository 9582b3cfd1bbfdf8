"""``eleaf data``: the paper's data sets.

``eleaf data list [--data-path DIR]``: each data set, its classes, where it is expected and
whether it is there. ``eleaf data prepare NAME [--data-path DIR] [--download]``: the steps to
obtain NAME; with ``--download`` eleaf performs them where it can (Speech Commands, CREMA-D,
VoxForge's archive list and unpacking); a copy that exists is then scanned and its recordings
per split and class and its unreadable files printed. Exit status: 0 if the data set is
ready, 1 if it is missing or a download failed, 2 for a usage error.
"""
import argparse
import os

__all__ = ['main', 'get_args_parser']


def get_args_parser() -> argparse.ArgumentParser:
    from ..datasets.registry import NAMES
    from .options import HelpFormatter
    p = argparse.ArgumentParser(prog='eleaf data', description="The EfficientLEAF paper's "
                                "data sets: where they go, how to get them, what a copy holds.",
                                formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest='command', required=True)
    ls = sub.add_parser('list', help='the data sets, where they are expected, whether present',
                        formatter_class=HelpFormatter)
    ls.add_argument('--data-path', default='.', help='directory holding the data sets')
    pr = sub.add_parser('prepare', help='steps to obtain a data set; --download performs them '
                                        'where possible; validates an existing copy',
                        formatter_class=HelpFormatter)
    pr.add_argument('name', metavar='NAME', help='one of %s (any case)' % ', '.join(NAMES))
    pr.add_argument('--data-path', default='.', help='directory holding the data sets (as '
                                                     'for eleaf train)')
    pr.add_argument('--download', action='store_true',
                    help='download (resumable, sha256-verified) and unpack where eleaf can')
    pr.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True,
                    help='tqdm progress bars')
    return p


def _list(data_path: str) -> int:
    from ..datasets import prepare, registry
    rows = [('name', 'classes', 'download', 'present', 'expected at')]
    for name in registry.NAMES:
        location = os.path.abspath(registry.location(name, data_path))
        rows.append((name, prepare.GUIDES[name].classes,
                     'yes' if prepare.downloadable(name) else 'no',
                     'yes' if os.path.isdir(location) else 'no', location))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print('  '.join(c.ljust(w) for c, w in zip(r, widths)) + '  ' + r[4])
    return 0


def _prepare(name: str, data_path: str, download: bool, progress: bool) -> int:
    from ..datasets import prepare, registry
    from ..datasets.errors import DataError
    name = registry.canonical(name)
    print(prepare.steps(name, data_path))
    print()
    if download:
        try:
            for message in prepare.download_dataset(name, data_path, progress):
                print(message)
        except (DataError, prepare.DownloadError) as exc:
            print('eleaf data prepare: %s' % exc)
            return 1
        print()
    try:
        report = prepare.validate(name, data_path, progress)
    except DataError as exc:
        print(exc)
        return 1
    print(prepare.format_report(report))
    return 0


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    from ..datasets.errors import DataError
    try:
        if args.command == 'list':
            return _list(args.data_path)
        return _prepare(args.name, args.data_path, args.download, args.progress)
    except DataError as exc:  # an unknown name
        print('eleaf data: %s' % exc)
        return 2
