"""``eleaf bench``: throughput and peak memory of every frontend on every backend that runs
here, relative to the paper's mel baseline (SPEC §10), without pytest.

Workloads: inference (eval, no_grad) and the paper's train step (train mode,
``frontend(x).sum().backward()``), float32, on loudness-normalised noisy tones. The mel
baseline is ``eleaf.Mel()`` (40 filters) on the reference backend; "× mel" is always the
throughput relative to it: the mel baseline's median time over the case's median time
(``mel ms / ms``) at the same size and workload, mel timed in alternating blocks with the
case on the same input; higher is faster, > 1 is faster than mel. The table shows both
times of every row. Timing and the peak-memory measure are described in :mod:`eleaf.bench`.

Examples::

    eleaf bench --quick                                 # CPU: 4 x 1 s, under a minute
    eleaf bench --device cuda --json gpu.json --plot gpu.png
    eleaf bench --frontends 8G-opt,Mel --backends torch,cpp --batch 8 --seconds 2
    eleaf bench --compare old.json new.json             # new/old throughput per row
"""
import argparse
import json
import math
import os
import statistics
import sys
import time
import traceback

import torch

from .. import bench as B
from .options import HelpFormatter, install_hint

_BACKENDS = ('torch', 'triton', 'cpp')
_MIN_SECONDS = 401 / B.SAMPLE_RATE  # one frame of the mel baseline


def _csv(text):
    return [t.strip() for t in text.split(',') if t.strip()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='eleaf bench', formatter_class=HelpFormatter,
        description='Throughput and peak memory of every frontend on every backend that runs '
                    'here, relative to the mel baseline (SPEC §10): inference and the train '
                    'step, a table on stdout; see eleaf/bench.py for what is measured.',
        epilog='default sizes: CPU 16 x 1 s and 2 x 8 s (--quick: 4 x 1 s); CUDA 256 x 1 s, '
               '32 x 8 s and 16 x 16 s (--quick: 256 x 1 s)')
    parser.add_argument('--device', default=None,
                        help="'cpu', 'cuda' or 'cuda:N' (default: cuda when available)")
    parser.add_argument('--batch', type=int, default=None,
                        help='batch size (one size instead of the defaults; with --seconds)')
    parser.add_argument('--seconds', type=float, default=None,
                        help='input length in seconds at 16 kHz (one size instead of the '
                             'defaults; the batch defaults to the matching default size)')
    parser.add_argument('--filters', type=int, default=None, metavar='N',
                        help="number of filters of every frontend and the mel baseline "
                             "(default: 40, and 8G-opt also at 80)")
    parser.add_argument('--frontends', type=_csv, default=None, metavar='A,B',
                        help='only frontends whose name contains one of these substrings '
                             '(case-insensitive); the mel baseline always runs')
    parser.add_argument('--backends', type=_csv, default=list(_BACKENDS), metavar='A,B',
                        help='backends to try (default: torch,triton,cpp); those that cannot run '
                             'a frontend here are listed as skipped')
    parser.add_argument('--workloads', type=_csv, default=list(B.WORKLOADS), metavar='A,B',
                        help='inference and/or train (default: both)')
    parser.add_argument('--quick', action='store_true',
                        help='a smoke run, not for reporting: small sizes, 1 warm-up call, '
                             'few repeats, no peak memory')
    parser.add_argument('--warmup', type=int, default=None,
                        help='warm-up calls per measurement (default: 5 on CUDA; on CPU 2, '
                             'or 1 when a call is slow)')
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed calls per measurement (default: as many as fit in about '
                             '2 s, at least 3 and at most 20 on CPU, 5 to 50 on CUDA; '
                             '--quick: 2 to 5 and 3 to 10)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch.get_num_threads())')
    parser.add_argument('--memory', action=argparse.BooleanOptionalAction, default=None,
                        help='measure peak memory (on CPU it starts a process per frontend '
                             'and backend); default: yes, but not with --quick')
    parser.add_argument('--json', metavar='FILE', help='write the results as JSON')
    parser.add_argument('--plot', metavar='FILE.png',
                        help='bar chart of throughput relative to mel (needs matplotlib)')
    parser.add_argument('--compare', nargs=2, metavar=('OLD.json', 'NEW.json'),
                        help='print NEW/OLD throughput ratios of two result files and exit')
    parser.add_argument('--graph', action='store_true',
                        help='CUDA only: also time every case (and mel) as a replayed CUDA graph '
                             'of the same step (eleaf.graphs), and count the host '
                             'synchronisations per eager step')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser


def _check_args(parser, args):
    if args.compare:
        for path in args.compare:
            if not os.path.isfile(path):
                parser.error('--compare: no such file: %s' % path)
        return
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        parser.error('--device: %s' % exc)
    if device.type not in ('cpu', 'cuda'):
        parser.error("--device must be 'cpu' or 'cuda[:N]', got %r" % args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device %s: CUDA is not available (torch %s)' % (args.device,
                                                                         torch.__version__))
    if args.graph and device.type != 'cuda':
        parser.error('--graph times CUDA graphs: it needs --device cuda')
    args.no_memory = not args.memory if args.memory is not None else args.quick
    if args.batch is not None and args.batch < 1:
        parser.error('--batch must be >= 1, got %d' % args.batch)
    if args.seconds is not None and not (args.seconds >= _MIN_SECONDS
                                         and math.isfinite(args.seconds)):
        parser.error('--seconds must be at least %.4f (401 samples, one mel frame), got %s'
                     % (_MIN_SECONDS, args.seconds))
    if args.filters is not None and args.filters < 1:
        parser.error('--filters must be >= 1, got %d' % args.filters)
    for name, value in (('--warmup', args.warmup), ('--threads', args.threads)):
        if value is not None and value < (1 if name == '--threads' else 0):
            parser.error('%s must be >= %d, got %d' % (name, int(name == '--threads'), value))
    if args.repeats is not None and args.repeats < 1:
        parser.error('--repeats must be >= 1, got %d' % args.repeats)
    bad = [b for b in args.backends if b not in _BACKENDS]
    if bad or not args.backends:
        parser.error('--backends: expected a comma-separated subset of %s, got %r'
                     % (','.join(_BACKENDS), ','.join(args.backends)))
    bad = [w for w in args.workloads if w not in B.WORKLOADS]
    if bad or not args.workloads:
        parser.error('--workloads: expected a comma-separated subset of %s, got %r'
                     % (','.join(B.WORKLOADS), ','.join(args.workloads)))
    if args.frontends is not None:
        names = list(B.frontend_table())
        unknown = [s for s in args.frontends if not any(s.lower() in n.lower() for n in names)]
        if unknown or not args.frontends:
            parser.error('--frontends: %r matches no frontend; known: %s'
                         % (','.join(unknown), '; '.join(names)))
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            parser.error(install_hint('--plot', 'matplotlib'))
    for path in (args.json, args.plot):
        if path:
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                parser.error('cannot write %s: no folder %s' % (path, folder))


def sizes_for(args):
    """(batch, seconds) pairs to run."""
    if args.batch is None and args.seconds is None:
        return B.default_sizes(args.device, args.quick)
    seconds = args.seconds if args.seconds is not None else 1
    seconds = int(seconds) if float(seconds).is_integer() else seconds
    return [(args.batch or B.default_batch(seconds, args.device), seconds)]


def _repeat_range(device_type, quick):
    if device_type == 'cuda':
        return (3, 10) if quick else (5, 50)
    return (2, 4) if quick else (3, 20)


def run(args, progress=True):
    """Measure every case; returns (meta, results)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    sizes = sizes_for(args)
    # None: one or two calls on CPU (see eleaf.bench.warm_up)
    warmup = args.warmup if args.warmup is not None else (
        5 if device.type == 'cuda' else 1 if args.quick else None)
    lo, hi = _repeat_range(device.type, args.quick)
    budget = 0.4 if args.quick else 2.0
    meta = B.machine_info(device)
    meta.update({
        'command': 'eleaf bench ' + ' '.join(args.argv),
        'quick': args.quick,
        'sizes': [list(s) for s in sizes],
        'sample_rate': B.SAMPLE_RATE,
        'dtype': 'float32',
        'warmup': warmup if warmup is not None else 'auto: 2 calls, 1 when a call takes '
                                                     'over %g s' % (budget / 4),
        'repeats': args.repeats or 'auto %d..%d (about %g s per measurement)' % (lo, hi, budget),
        'timing': 'median of repeats; one repeat = one call; ' + (
            'CUDA events, synchronised' if device.type == 'cuda' else 'time.perf_counter')
            + '; every case alternates with the mel baseline in blocks of %d calls'
            % B.PAIR_BLOCK,
        'workloads': {'inference': 'eval(), torch.no_grad(), frontend(x)',
                      'train': 'train(), zero_grad(set_to_none=True), '
                               'frontend(x).sum().backward()'},
        'x_mel': 'throughput relative to the mel baseline, higher is faster: median time of '
                 'the mel baseline (eleaf.Mel(), backend torch) timed in alternating blocks '
                 'with the case (same input, size and workload; mel_time_s, mel_times) / '
                 'median time of the case (time_s); > 1 is faster than mel',
        'peak_memory': None if args.no_memory else (
            'torch.cuda.max_memory_allocated() during one call minus memory_allocated() before'
            if device.type == 'cuda' else
            'rise of the peak RSS (VmHWM, reset before the call) over one call, after one '
            'unmeasured inference call, in a fresh subprocess per frontend and backend; '
            'glibc MALLOC_MMAP_THRESHOLD_=65536; see eleaf/bench.py'),
    })
    case_list = B.cases(args.frontends, args.backends, args.filters)
    units = len(case_list) * len(sizes) * len(args.workloads)
    try:
        from tqdm import tqdm
        bar = tqdm(total=units, disable=not progress, unit='run', dynamic_ncols=True,
                   file=sys.stderr)
    except ImportError:
        bar = None
    results = []
    inputs = {}
    mel_case = B.Case(B.MEL_BASELINE, 'torch', case_list[0].n_filters)
    mel = B.build(mel_case, device)
    mel_steps = {}   # (batch, seconds, workload) -> a warmed-up step of the mel baseline
    for case in case_list:
        if bar is not None:
            bar.set_description(case.label[:48])
        try:
            reason = B.probe(case, device)
            frontend = B.build(case, device) if reason is None else None
        except Exception as exc:  # the reference itself fails: report it, go on
            reason = None
            results.append(dict(frontend=case.frontend, backend=case.backend,
                                n_filters=case.n_filters, batch=None, seconds=None,
                                workload='-', error='%s: %s' % (type(exc).__name__, exc),
                                traceback=traceback.format_exc(limit=4)))
            if bar is not None:
                bar.write('error in %s: %s' % (case.label, exc))
                bar.update(len(sizes) * len(args.workloads))
            continue
        if reason is not None:
            results.append(dict(frontend=case.frontend, backend=case.backend,
                                n_filters=case.n_filters, skipped=reason))
            if bar is not None:
                bar.update(len(sizes) * len(args.workloads))
            continue
        for batch, seconds in sizes:
            key = (batch, seconds)
            if key not in inputs:
                inputs.clear()
                mel_steps.clear()
                inputs[key] = B.loudness_normalised(batch, seconds, device=device)
            x = inputs[key]
            for workload in args.workloads:
                entry = dict(frontend=case.frontend, backend=case.backend,
                             n_filters=case.n_filters, batch=batch, seconds=seconds,
                             workload=workload, backend_ops=B.backend_ops(case),
                             frontend_ops=list(B.FRONTEND_OPS.get(case.frontend, ())))
                try:
                    step = B.make_step(frontend, x, workload)
                    last = B.warm_up(step, device, warmup, max_seconds=budget / 2) \
                        if warmup != 0 else 0.
                    repeats = args.repeats or B.choose_repeats(last, budget, lo, hi)
                    if case == mel_case:
                        times = B.time_step(step, device, 0, repeats)
                    else:
                        mel_step = mel_steps.get(key + (workload,))
                        if mel_step is None:
                            mel_step = B.make_step(mel, x, workload)
                            if warmup != 0:
                                B.warm_up(mel_step, device, warmup, max_seconds=budget / 2)
                            mel_steps[key + (workload,)] = mel_step
                        times, mel_times = B.paired_times(step, mel_step, device, repeats)
                        entry.update(mel_time_s=statistics.median(mel_times),
                                     mel_times=mel_times)
                    entry.update(time_s=statistics.median(times), time_min_s=min(times),
                                 times=times, repeats=len(times))
                    if args.graph:
                        entry.update(_graph_times(frontend, mel, x, workload, device,
                                                  repeats, case == mel_case))
                except Exception as exc:
                    if bar is not None:
                        bar.write('error in %s, %d x %s s, %s: %s' % (
                            case.label, batch, seconds, workload, exc))
                    entry['error'] = '%s: %s' % (type(exc).__name__, exc)
                    entry['traceback'] = traceback.format_exc(limit=4)
                    if device.type == 'cuda':
                        torch.cuda.empty_cache()
                if 'error' not in entry and not args.no_memory:
                    try:
                        entry['peak_bytes'], entry['peak_measure'] = B.peak_memory(
                            case, frontend, x, workload, sizes)
                    except Exception as exc:  # the timing stands; say why memory is missing
                        entry['peak_bytes'] = None
                        entry['peak_error'] = '%s: %s' % (type(exc).__name__, exc)
                        if bar is not None:
                            bar.write('no peak memory for %s: %s' % (case.label, exc))
                results.append(entry)
                if bar is not None:
                    bar.update(1)
        del frontend
        if device.type == 'cuda':
            torch.cuda.empty_cache()
    if bar is not None:
        bar.close()
    B.add_ratios(results)
    return meta, results


def _graph_times(frontend, mel, x, workload, device, repeats, is_mel):
    """``--graph``: the case's step (and mel's) captured in CUDA graphs, replays timed in
    alternating blocks; host synchronisations per eager step."""
    from ..graphs import capture, count_syncs, make_train_step

    def graphed(module):
        if workload == 'train':
            module.train()
            return capture(make_train_step(module, x, None))[0]
        module.eval()

        def infer():
            with torch.no_grad():
                return module(x)
        return capture(infer)[0]
    out = dict(syncs_per_step=count_syncs(B.make_step(frontend, x, workload), 3) / 3)
    try:
        step = graphed(frontend)
        if is_mel:
            out['graph_time_s'] = statistics.median(B.time_step(step, device, 0, repeats))
            out['graph_x_mel'] = 1.0
        else:
            times, mel_times = B.paired_times(step, graphed(mel), device, repeats)
            out.update(graph_time_s=statistics.median(times),
                       graph_mel_time_s=statistics.median(mel_times))
            out['graph_x_mel'] = out['graph_mel_time_s'] / out['graph_time_s']
    except Exception as exc:   # e.g. a path that synchronises cannot be captured
        out['graph_error'] = '%s: %s' % (type(exc).__name__, exc)
    return out


def _label(r):
    return B.config_label(r['frontend'], r.get('n_filters'))


def _size(r):
    return '%d x %gs' % (r['batch'], r['seconds'])


def _mib(n):
    return '-' if n is None else '%.1f' % (n / 2 ** 20)


def _ratio(v):
    return '-' if v is None else ('%.3g' % v)


#: what "x mel" means, printed under every table and in plots and results files
X_MEL_NOTE = ('x mel = mel ms / ms: throughput relative to the mel baseline (eleaf.Mel(), '
              "backend torch) timed alongside on the same input; higher is faster, 1 = mel's "
              'speed')


def _mel_ms(r):
    """The mel baseline's median time of a row: paired with it, else the run's mel row."""
    m = r.get('mel_time_s')
    if m is None and r.get('x_mel'):
        m = r['x_mel'] * r['time_s']
    return '-' if m is None else '%.2f' % (1e3 * m)


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    right = [i for i, h in enumerate(header) if h not in ('frontend', 'backend', 'workload',
                                                          'size')]
    fmt = lambda r: '  '.join(str(c).rjust(w) if i in right else str(c).ljust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    return '\n'.join([fmt(header), '  '.join('-' * w for w in widths)] + [fmt(r) for r in rows])


def format_results(meta, results) -> str:
    """The results as a text table (timed rows), then the skipped and failed cases."""
    header = ['frontend', 'backend', 'size', 'workload', 'ms', 'mel ms', 'x mel',
              'examples/s', 'audio s/s', 'peak MiB']
    timed = [r for r in results if r.get('time_s')]
    groups = []  # (size, workload) in order of appearance, the workloads in their usual order
    for r in timed:
        if (r['batch'], r['seconds']) not in groups:
            groups.append((r['batch'], r['seconds']))
    order = {k: i for i, k in enumerate(groups)}
    timed.sort(key=lambda r: (order[(r['batch'], r['seconds'])],
                              B.WORKLOADS.index(r['workload'])
                              if r['workload'] in B.WORKLOADS else 9))  # stable: case order
    rows = [[_label(r), r['backend'], _size(r), r['workload'], '%.2f' % (1e3 * r['time_s']),
             _mel_ms(r), _ratio(r.get('x_mel')), '%.1f' % r['examples_per_s'],
             '%.1f' % r['audio_s_per_s'], _mib(r.get('peak_bytes'))]
            for r in timed]
    lines = ['%s (%s), %d threads, torch %s, triton %s, %s' % (
        meta['device'], meta['device_name'], meta['threads'], meta['torch'], meta['triton'],
        meta['date'])]
    if not any(r.get('peak_bytes') is not None for r in timed):  # --no-memory
        header, rows = header[:-1], [row[:-1] for row in rows]
    if any('syncs_per_step' in r for r in timed):   # --graph
        header = header + ['graph ms', 'x mel graph', 'syncs/step']
        rows = [row + ['%.2f' % (1e3 * r['graph_time_s']) if r.get('graph_time_s') else '-',
                       _ratio(r.get('graph_x_mel')), '%g' % r.get('syncs_per_step', 0)]
                for row, r in zip(rows, timed)]
    lines.append(_table(header, rows) if rows else '(no timed results)')
    if rows:
        lines.append(X_MEL_NOTE)
    partial, seen = [], set()
    for r in timed:
        rest = [op for op in r.get('frontend_ops', []) if op not in r.get('backend_ops', [])]
        if r['backend'] != 'torch' and rest and (_label(r), r['backend']) not in seen:
            seen.add((_label(r), r['backend']))
            partial.append('  %s [%s]: %s on %s; %s on auto' % (
                _label(r), r['backend'], ', '.join(r['backend_ops']), r['backend'],
                ', '.join(rest)))
    if partial:
        lines.append("partly on the backend (a frontend's backend= applies to the ops that "
                     "backend implements):")
        lines += partial
    skipped = [r for r in results if 'skipped' in r]
    if skipped:
        lines.append('skipped (backend: frontends: reason):')
        reasons = {}
        for r in skipped:
            reasons.setdefault((r['backend'], r['skipped']), []).append(_label(r))
        lines += ['  %s: %s: %s' % (b, ', '.join(names), reason)
                  for (b, reason), names in reasons.items()]
    failed = [r for r in results if 'error' in r]
    if failed:
        lines.append('failed:')
        lines += ['  %s [%s] %s %s: %s' % (_label(r), r['backend'],
                                           _size(r) if r.get('batch') else '-',
                                           r['workload'], r['error']) for r in failed]
    return '\n'.join(lines)


def plot(meta, results, path):
    """Horizontal bars of "x mel" per frontend and backend, one panel per size and workload,
    log scale."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter
    timed = [r for r in results if r.get('x_mel')]
    if not timed:
        raise ValueError('no timed results relative to mel to plot')
    panels = []
    for r in timed:
        key = (r['batch'], r['seconds'], r['workload'])
        if key not in panels:
            panels.append(key)
    labels = []
    for r in timed:
        if _label(r) not in labels:
            labels.append(_label(r))
    backends = [b for b in _BACKENDS if any(r['backend'] == b for r in timed)]
    colors = {'torch': '#4c72b0', 'triton': '#dd8452', 'cpp': '#55a868'}
    ncols = 2 if len(panels) > 1 else 1
    nrows = max(1, math.ceil(len(panels) / ncols))
    height = max(2.5, 0.22 * len(labels) * max(1, len(backends)) + 1.4)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6.5 * ncols, height * nrows), squeeze=False,
                             sharey=True)
    bar_h = 0.8 / max(1, len(backends))
    for ax, (batch, seconds, workload) in zip(axes.flat, panels):
        for j, backend in enumerate(backends):
            ys, xs = [], []
            for r in timed:
                if (r['batch'], r['seconds'], r['workload'], r['backend']) != (
                        batch, seconds, workload, backend):
                    continue
                ys.append(labels.index(_label(r)) - 0.4 + (j + 0.5) * bar_h)
                xs.append(r['x_mel'])
            if xs:
                ax.barh(ys, xs, height=bar_h, color=colors[backend], label=backend)
                for y, v in zip(ys, xs):
                    ax.text(v, y, ' %.2g' % v, va='center', fontsize=7)
        ax.axvline(1.0, color='k', lw=0.8, ls='--')
        ax.set_xscale('log')
        ax.set_title('%s, %d x %g s' % (workload, batch, seconds), fontsize=10)
        ax.set_xlabel('x mel = mel time / frontend time (throughput; higher is faster, '
                      'log scale)', fontsize=8)
        lo = min(r['x_mel'] for r in timed)
        hi = max(r['x_mel'] for r in timed)
        ax.set_xlim(min(lo, 1) / 2, max(hi, 1) * 3)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: '%g' % v))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.grid(axis='x', which='major', alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    axes.flat[0].set_yticks(range(len(labels)))
    axes.flat[0].set_yticklabels(labels, fontsize=8)
    axes.flat[0].set_ylim(len(labels) - 0.5, -0.5)  # first label on top (axes share y)
    axes.flat[0].legend(fontsize=8, loc='lower right')
    fig.suptitle('eleaf bench: %s (%s), %d threads, torch %s, %s' % (
        meta['device'], meta['device_name'], meta['threads'], meta['torch'], meta['date'][:10]),
        fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _load(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise SystemExit('eleaf bench --compare: cannot read %s: %s' % (path, exc))
    if not isinstance(data, dict) or not isinstance(data.get('results'), list):
        raise SystemExit('eleaf bench --compare: %s is not an eleaf bench result file '
                         '(no "results" list)' % path)
    return data


def compare(old_path, new_path) -> str:
    """Table of NEW/OLD throughput per (frontend, backend, size, workload) of two result
    files, with the geometric mean of the ratios."""
    old, new = _load(old_path), _load(new_path)

    def index(data):
        return {(r['frontend'], r['backend'], r.get('n_filters'), r['batch'], r['seconds'],
                 r['workload']): r for r in data['results'] if r.get('time_s')}
    a, b = index(old), index(new)
    keys = [k for k in b if k in a] + [k for k in a if k not in b] + \
        [k for k in b if k not in a]
    seen, rows, ratios = set(), [], []
    for k in keys:
        if k in seen:
            continue
        seen.add(k)
        ro, rn = a.get(k), b.get(k)
        ratio = ro['time_s'] / rn['time_s'] if ro and rn else None
        if ratio:
            ratios.append(ratio)
        rows.append([_label(ro or rn), k[1], '%d x %gs' % (k[3], k[4]), k[5],
                     '%.1f' % (ro['batch'] / ro['time_s']) if ro else '-',
                     '%.1f' % (rn['batch'] / rn['time_s']) if rn else '-',
                     '%.3f' % ratio if ratio else '-',
                     _ratio(ro.get('x_mel')) if ro else '-',
                     _ratio(rn.get('x_mel')) if rn else '-'])
    describe = lambda d: '%s (%s), %s threads, torch %s, %s' % tuple(  # noqa: E731
        d.get('meta', {}).get(f, '?') for f in ('device', 'device_name', 'threads', 'torch',
                                                'date'))
    lines = ['old: %s: %s' % (old_path, describe(old)),
             'new: %s: %s' % (new_path, describe(new))]
    if not rows:
        lines.append('no timed results in either file')
        return '\n'.join(lines)
    lines.append(_table(['frontend', 'backend', 'size', 'workload', 'old ex/s', 'new ex/s',
                         'new/old', 'old x mel', 'new x mel'], rows))
    if ratios:
        geo = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        lines.append('new/old throughput: geometric mean %.3f over %d common rows '
                     '(> 1: new is faster)' % (geo, len(ratios)))
    else:
        lines.append('no rows in common')
    return '\n'.join(lines)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    _check_args(parser, args)
    if args.compare:
        print(compare(*args.compare))
        return 0
    start = time.perf_counter()
    meta, results = run(args, progress=not args.no_progress)
    meta['wall_s'] = round(time.perf_counter() - start, 1)
    print(format_results(meta, results))
    print('wall time %.1f s' % meta['wall_s'])
    if args.json:
        with open(args.json, 'w') as f:
            json.dump({'meta': meta, 'results': results}, f, indent=1, default=str)
        print('wrote %s' % args.json)
    if args.plot:
        try:
            plot(meta, results, args.plot)
            print('wrote %s' % args.plot)
        except ValueError as exc:
            print('eleaf bench: no plot written: %s' % exc, file=sys.stderr)
            return 1
    return 1 if any('error' in r for r in results) else 0
