"""Frontend benchmark helpers shared by ``eleaf bench``, the pytest-benchmark suite in
``bench/`` and ``bench/gpu_check.py``.

What is measured (SPEC §10, the paper's ``--frontend-benchmark``, frontend only, float32):

- ``'inference'``: ``frontend.eval()`` and ``frontend(x)`` under ``torch.no_grad()``;
- ``'train'``: ``frontend.train()``, ``frontend.zero_grad(set_to_none=True)`` and
  ``frontend(x).sum().backward()`` (no optimizer step);

on a fixed batch of loudness-normalised noisy tones, (B, L) with L = seconds · 16000.

Timing: warm-up calls first, then repeats; one repeat is one call. On CUDA each repeat is
timed with CUDA events (the device is synchronised before and after); on CPU with
``time.perf_counter``. The figure reported is the median of the repeats.

Ratios to mel (``x_mel``): ``eleaf bench`` times the mel baseline alongside every case, in
alternating blocks of at most :data:`PAIR_BLOCK` calls on the same input (mel, case, mel,
case, ...; :func:`paired_times`), and divides the two medians: a machine whose speed drifts
during a run (a shared VM: the mel baseline's median moved by 1.6x between runs on the
2-core CI machines) then moves both. Results files written before 2026-12 measured mel once
per size and workload instead; :func:`add_ratios` reads both.

Peak memory (bytes, above what the process held before the measured call):

- CUDA: ``torch.cuda.max_memory_allocated()`` during one call, minus
  ``torch.cuda.memory_allocated()`` before it (tensors of torch's caching allocator);
- CPU: the rise of the peak resident set size over one call, measured in a **fresh Python
  subprocess** per frontend and backend (all sizes of the run in that one process): with
  the frontend and the input built, one unmeasured inference call runs at that size
  (per-shape caches such as oneDNN primitives and FFT plans are not the call's; the GPU
  figure is likewise taken after warm-up); then for each workload the peak RSS is reset to
  the current RSS (Linux: ``/proc/self/clear_refs``, ``5``), one call runs, and the peak
  (``VmHWM`` of ``/proc/self/status``) minus the RSS before it is the figure (the train
  step's includes whatever its backward allocates once, about 1 MiB). This counts every
  allocation that touched memory (torch's, oneDNN's and MKL's buffers, the autograd graph),
  not only torch tensors. The child runs with ``MALLOC_MMAP_THRESHOLD_=65536`` (glibc:
  blocks of 64 KiB and more are mapped on their own and unmapped when freed), so that the
  RSS follows the live buffers rather than the allocator's free lists; rises below about
  1 MiB are within the noise. A subprocess, because neither can be had around the timed
  calls: ``ru_maxrss`` and the RSS of a long-running process reflect what glibc and torch
  cached earlier, and a fixed mmap threshold would change the timings. It costs a process
  start (about 2 s) per frontend and backend, and three calls per size. Without
  ``/proc`` (macOS) the child falls back to ``resource.getrusage(RUSAGE_SELF).ru_maxrss``
  since its start, never reset (an upper bound: the largest call so far); on Windows the
  figure is None.

``python -m eleaf.bench --peak-rss '{"frontend": "Mel", "backend": "torch", "n_filters": 40,
"threads": 2, "sizes": [[16, 1]]}'`` prints such measurements as JSON (that is the
subprocess).
"""
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple

import torch

__all__ = ['SAMPLE_RATE', 'MEL_BASELINE', 'WORKLOADS', 'DEFAULT_CONFIGS', 'FRONTEND_OPS',
           'backend_ops', 'frontend_table',
           'config_label', 'default_sizes', 'default_batch', 'Case', 'cases', 'build', 'probe',
           'loudness_normalised', 'make_step', 'cuda_time', 'cuda_times', 'cpu_time',
           'cpu_times', 'time_step', 'paired_times', 'PAIR_BLOCK', 'warm_up', 'choose_repeats',
           'cuda_peak', 'measure',
           'peak_memory', 'cpu_peak_rss', 'machine_info', 'add_ratios']

SAMPLE_RATE = 16000
#: name of the paper's mel baseline, ``eleaf.Mel()`` with the reference backend; every
#: ``x_mel`` figure is relative to it (same size, workload and run)
MEL_BASELINE = 'Mel'
WORKLOADS = ('inference', 'train')


def _logtbn(n_filters, backend):
    import eleaf
    return eleaf.LogTBN(n_filters, a=5, trainable=True, per_band=True, median_filter=True,
                        append_filtered=True, backend=backend)


def _tfleaf(backend, n_filters):
    import eleaf
    try:
        return eleaf.TFLeaf(n_filters=n_filters, backend=backend)
    except TypeError:  # a TFLeaf without a backend= switch runs the reference only
        if backend != 'torch':
            raise eleaf.BackendUnavailableError('TFLeaf has no backend= argument')
        return eleaf.TFLeaf(n_filters=n_filters)


def frontend_table() -> 'OrderedDict[str, Callable]':
    """``{name: factory(backend, n_filters)}`` of every benchmarked frontend, the mel
    baseline first; ``'TFLeaf'`` is included when ``eleaf.TFLeaf`` exists."""
    import eleaf
    table = OrderedDict([
        (MEL_BASELINE, lambda b, n: eleaf.Mel(n_filters=n, backend=b)),
        ('Leaf + PCEN', lambda b, n: eleaf.Leaf(n_filters=n, backend=b)),
        ('Leaf + LogTBN', lambda b, n: eleaf.Leaf(n_filters=n, compression=_logtbn(n, b),
                                                  backend=b)),
        ('EfficientLeaf 4G wf4.75 + PCEN', lambda b, n: eleaf.EfficientLeaf(
            n_filters=n, conv_win_factor=4.75, compression='pcen', backend=b)),
        ('EfficientLeaf 4G wf4.75 + LogTBN', lambda b, n: eleaf.EfficientLeaf(
            n_filters=n, conv_win_factor=4.75, backend=b)),
        ('EfficientLeaf 8G-opt + LogTBN', lambda b, n: eleaf.EfficientLeaf(
            n_filters=n, num_groups=8, conv_win_factor=6, stride_factor=16, backend=b)),
    ])
    if hasattr(eleaf, 'TFLeaf'):
        table['TFLeaf'] = _tfleaf
    return table


#: the registry ops (``eleaf.ops``) each frontend runs; a frontend given a backend runs the
#: ops that backend implements there and the others on 'auto' (``component_backend``)
FRONTEND_OPS = {
    MEL_BASELINE: ('log1p_median',),
    'Leaf + PCEN': ('gabor_filterbank', 'pcen'),
    'Leaf + LogTBN': ('gabor_filterbank', 'log1p_median'),
    'EfficientLeaf 4G wf4.75 + PCEN': ('gabor_filterbank', 'pcen'),
    'EfficientLeaf 4G wf4.75 + LogTBN': ('gabor_filterbank', 'log1p_median'),
    'EfficientLeaf 8G-opt + LogTBN': ('gabor_filterbank', 'log1p_median'),
    'TFLeaf': ('tf_gabor_filterbank', 'tf_pcen'),
}


def backend_ops(case: 'Case') -> List[str]:
    """The ops of ``case.frontend`` that eleaf implements in ``case.backend``."""
    import eleaf
    if case.backend == 'torch':
        return list(FRONTEND_OPS.get(case.frontend, ()))
    implemented = eleaf.backends()[case.backend]['ops']
    return [op for op in FRONTEND_OPS.get(case.frontend, ()) if op in implemented]


#: (frontend, n_filters) benchmarked by default: the paper's configurations at 40 filters
#: (SPEC §9), and "Gabor 8G-opt" also at 80 filters as in the original README
DEFAULT_CONFIGS = [(MEL_BASELINE, 40), ('Leaf + PCEN', 40), ('Leaf + LogTBN', 40),
                   ('EfficientLeaf 4G wf4.75 + PCEN', 40), ('EfficientLeaf 4G wf4.75 + LogTBN', 40),
                   ('EfficientLeaf 8G-opt + LogTBN', 40), ('EfficientLeaf 8G-opt + LogTBN', 80),
                   ('TFLeaf', 40)]


def default_sizes(device: str, quick: bool = False) -> List[Tuple[int, float]]:
    """(batch, seconds) pairs: the paper's sizes on CUDA, CPU-sized ones on the CPU."""
    if torch.device(device).type == 'cuda':
        return [(256, 1)] if quick else [(256, 1), (32, 8), (16, 16)]
    return [(4, 1)] if quick else [(16, 1), (2, 8)]


def default_batch(seconds: float, device: str) -> int:
    """The batch :func:`default_sizes` pairs with ``seconds`` (or a proportional one)."""
    for batch, secs in default_sizes(device):
        if secs == seconds:
            return batch
    total = 256 if torch.device(device).type == 'cuda' else 16
    return max(1, int(total // max(seconds, 1)))


class Case(tuple):
    """(frontend, backend, n_filters): one frontend configuration on one backend."""
    __slots__ = ()

    def __new__(cls, frontend, backend, n_filters):
        return tuple.__new__(cls, (frontend, backend, int(n_filters)))

    frontend = property(lambda self: self[0])
    backend = property(lambda self: self[1])
    n_filters = property(lambda self: self[2])

    @property
    def name(self) -> str:
        """The frontend's name, with the number of filters when it is not 40."""
        return config_label(self.frontend, self.n_filters)

    @property
    def label(self) -> str:
        return '%s [%s]' % (self.name, self.backend)


def config_label(frontend: str, n_filters) -> str:
    """``frontend``, with ``' (N filters)'`` appended when N is not the paper's 40."""
    return frontend if n_filters in (None, 40) else '%s (%d filters)' % (frontend, n_filters)


def cases(frontends: Optional[List[str]] = None, backends=('torch', 'triton', 'cpp'),
          n_filters: Optional[int] = None) -> List[Case]:
    """Every default configuration (:data:`DEFAULT_CONFIGS`; those whose name contains one
    of the substrings ``frontends``, all when None) on every backend in ``backends``; the
    mel baseline on 'torch' always comes first. ``n_filters`` replaces every
    configuration's filter count (the mel baseline's too)."""
    table = frontend_table()
    out = [Case(MEL_BASELINE, 'torch', n_filters or 40)]
    for name, nf in DEFAULT_CONFIGS:
        if name not in table:
            continue
        if frontends is not None and not any(s.lower() in name.lower() for s in frontends):
            continue
        for b in backends:
            case = Case(name, b, n_filters or nf)
            if case not in out:
                out.append(case)
    return out


def build(case: Case, device: str = 'cpu') -> torch.nn.Module:
    """The frontend module of ``case`` on ``device`` (float32)."""
    return frontend_table()[case.frontend](case.backend, case.n_filters).to(device)


def probe(case: Case, device: str = 'cpu') -> Optional[str]:
    """Why ``case`` cannot be benchmarked on ``device`` (None when it can).

    A backend the installation lacks is reported from ``eleaf.backends()``; otherwise the
    frontend is built and run forward and backward on a short input with that backend given
    explicitly, and a :class:`eleaf.BackendUnavailableError` (an op with no such
    implementation on that device) gives the reason. A frontend none of whose ops
    (:data:`FRONTEND_OPS`) the backend implements is skipped too (it would run on 'auto').
    Triton on CPU tensors runs in the
    interpreter only, which is no benchmark."""
    import eleaf
    device = torch.device(device)
    if case.backend != 'torch':
        info = eleaf.backends()[case.backend]
        if not info['available']:
            return info['reason']
        if case.backend == 'triton' and device.type != 'cuda':
            return 'triton runs CPU tensors only in its interpreter (TRITON_INTERPRET=1): ' \
                   'not benchmarked'
        if case.frontend in FRONTEND_OPS and not backend_ops(case):
            return 'eleaf has no %s implementation of %s (its components would all run ' \
                   "'auto')" % (case.backend, ' or '.join(FRONTEND_OPS[case.frontend]))
    try:
        frontend = build(case, device).train()
        x = torch.randn(1, SAMPLE_RATE // 2, device=device)
        frontend(x).sum().backward()
    except eleaf.BackendUnavailableError as exc:
        return str(exc)
    except Exception as exc:
        if case.backend == 'torch':
            raise
        return '%s: %s' % (type(exc).__name__, exc)
    return None


def loudness_normalised(batch: int, seconds: float, seed: int = 0,
                        device='cpu') -> torch.Tensor:
    """(batch, L) float32 noisy tones at 16 kHz, L = round(seconds · 16000), each normalised
    as the paper's training inputs: ``x · min(10^(30/20), 10^(15/20) / (std(x) + 1e-9))``."""
    g = torch.Generator(device='cpu').manual_seed(seed)
    x = torch.randn(batch, int(round(SAMPLE_RATE * seconds)), generator=g)
    t = torch.arange(x.shape[1]) / float(SAMPLE_RATE)
    x = x * 0.1 + torch.sin(2 * torch.pi * 440 * t * (1 + torch.rand(batch, 1, generator=g)))
    x = x * torch.clamp(10 ** (15 / 20) / (x.std(dim=1, keepdim=True) + 1e-9), max=10 ** 1.5)
    return x.to(device)


def make_step(frontend: torch.nn.Module, x: torch.Tensor, workload: str) -> Callable[[], None]:
    """A no-argument callable running one ``workload`` call (see the module docstring); it
    also puts the frontend in the matching mode."""
    if workload == 'train':
        frontend.train()

        def step():
            frontend.zero_grad(set_to_none=True)
            frontend(x).sum().backward()
    elif workload == 'inference':
        frontend.eval()

        def step():
            with torch.no_grad():
                frontend(x)
    else:
        raise ValueError('workload must be one of %s, got %r' % (WORKLOADS, workload))
    return step


def cuda_time(fn: Callable, warmup: int, repeats: int, inner: int = 1) -> float:
    """Median seconds per call of ``fn`` on the current CUDA device (CUDA events)."""
    return statistics.median(cuda_times(fn, warmup, repeats, inner))


def cuda_times(fn: Callable, warmup: int, repeats: int, inner: int = 1) -> List[float]:
    """Seconds per call of each of ``repeats`` CUDA-event-timed repeats (after warm-up)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(inner):
            fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / inner)
    return times


def cpu_time(fn: Callable, warmup: int, repeats: int) -> float:
    """Median seconds per call of ``fn`` (``time.perf_counter``)."""
    return statistics.median(cpu_times(fn, warmup, repeats))


def cpu_times(fn: Callable, warmup: int, repeats: int) -> List[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def time_step(step: Callable, device, warmup: int, repeats: int) -> List[float]:
    """Seconds of each timed repeat of ``step`` on ``device`` (after ``warmup`` calls)."""
    if torch.device(device).type == 'cuda':
        return cuda_times(step, warmup, repeats)
    return cpu_times(step, warmup, repeats)


#: calls per block of :func:`paired_times`
PAIR_BLOCK = 5


def paired_times(step: Callable, ref_step: Callable, device, repeats: int,
                 block: int = PAIR_BLOCK) -> Tuple[List[float], List[float]]:
    """Seconds of each of ``repeats`` calls of ``step`` and of as many of ``ref_step`` (the
    mel baseline), timed in alternating blocks of at most ``block`` calls, ``ref_step``'s
    first (both warmed up before)."""
    times, ref_times = [], []
    while len(times) < repeats:
        n = min(block, repeats - len(times))
        ref_times += time_step(ref_step, device, 0, n)
        times += time_step(step, device, 0, n)
    return times, ref_times


def warm_up(step: Callable, device, calls: Optional[int] = None,
            max_seconds: float = 1.0) -> float:
    """Run ``step`` ``calls`` times, or (None) at least once and a second time while
    the total stays under ``max_seconds`` (first calls for new shapes are slow on CPU too);
    returns the seconds of the last call."""
    total, last, n = 0.0, 0.0, 0
    while True:
        last = time_step(step, device, 0, 1)[0]
        total += last
        n += 1
        if calls is not None:
            if n >= calls:
                return last
        elif n >= 2 or total + last > max_seconds:
            return last


def choose_repeats(call_seconds: float, budget: float, lo: int, hi: int) -> int:
    """Timed repeats that fit in about ``budget`` seconds, within [lo, hi]."""
    return int(min(hi, max(lo, budget // max(call_seconds, 1e-6))))


def cuda_peak(step: Callable) -> int:
    """Peak bytes torch's CUDA allocator holds during one ``step`` above what it held
    before."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def measure(frontend: torch.nn.Module, x: torch.Tensor, train: bool, warmup: int,
            repeats: int) -> Tuple[float, Optional[int]]:
    """(median seconds per call, CUDA peak bytes or None on CPU) of one workload."""
    step = make_step(frontend, x, 'train' if train else 'inference')
    seconds = statistics.median(time_step(step, x.device, warmup, repeats))
    peak = cuda_peak(step) if x.device.type == 'cuda' else None
    return seconds, peak


def _proc_status_kib(field: str) -> Optional[int]:
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _reset_peak_rss() -> bool:
    """Linux: set the peak RSS (VmHWM) of this process to its current RSS."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return _proc_status_kib('VmHWM') is not None
    except OSError:
        return False


def _maxrss_bytes() -> Optional[int]:
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == 'darwin' else rss * 1024  # bytes on macOS, KiB on Linux


def _peak_rss_child(case: Case, sizes, workloads=WORKLOADS) -> list:
    """In a fresh process: ``[[batch, seconds, {workload: bytes}], ...]``, the peak-RSS
    rise of one call at each size, see :func:`cpu_peak_rss`."""
    frontend = build(case, 'cpu')
    resettable = _reset_peak_rss()
    base = None if resettable else _maxrss_bytes()
    out = []
    for batch, seconds in sizes:
        x = loudness_normalised(batch, seconds)
        peaks = {}
        if resettable:  # per-shape caches (oneDNN primitives, FFT plans) are not the call's
            make_step(frontend, x, 'inference')()
        for workload in workloads:
            step = make_step(frontend, x, workload)
            if resettable:  # Linux: VmHWM, reset before the call
                _reset_peak_rss()
                before = _proc_status_kib('VmRSS')
                step()
                # VmHWM is updated lazily by the kernel (it can lag the current RSS, and
                # read below the RSS before the call): the rise is never negative
                high = max(_proc_status_kib('VmHWM'), _proc_status_kib('VmRSS'))
                peaks[workload] = 1024 * max(0, high - before)
            else:  # ru_maxrss: a high-water mark since the start, never reset
                step()
                peaks[workload] = None if base is None else _maxrss_bytes() - base
        out.append([batch, seconds, peaks])
        del x
    return out


_PEAK_CACHE: Dict[tuple, Dict[Tuple[int, float], Dict[str, Optional[int]]]] = {}


def cpu_peak_rss(case: Case, sizes, threads: Optional[int] = None
                 ) -> Dict[Tuple[int, float], Dict[str, Optional[int]]]:
    """``{(batch, seconds): {workload: bytes}}``: the peak-RSS rise of one call of each
    workload of ``case`` at each of ``sizes`` (``[(batch, seconds), ...]``), measured in one
    fresh subprocess (see the module docstring); cached per process. Raises RuntimeError
    with the child's error output when it fails."""
    sizes = tuple((int(b), float(s)) for b, s in sizes)
    threads = threads or torch.get_num_threads()
    key = (tuple(case), sizes, threads)
    if key not in _PEAK_CACHE:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env['PYTHONPATH'] = os.pathsep.join([root] + [p for p in [env.get('PYTHONPATH')] if p])
        # glibc: every block >= 64 KiB gets its own mapping, returned when freed (no dynamic
        # threshold), so the RSS follows the live tensors instead of the allocator's cache
        env.setdefault('MALLOC_MMAP_THRESHOLD_', str(64 * 1024))
        spec = dict(frontend=case.frontend, backend=case.backend, n_filters=case.n_filters,
                    threads=threads, sizes=sizes)
        proc = subprocess.run([sys.executable, '-m', 'eleaf.bench', '--peak-rss',
                               json.dumps(spec)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, universal_newlines=True)
        if proc.returncode != 0:
            raise RuntimeError('peak-RSS subprocess failed: %s' % proc.stderr.strip()[-2000:])
        rows = json.loads(proc.stdout.strip().splitlines()[-1])
        _PEAK_CACHE[key] = {(b, float(s)): peaks for b, s, peaks in rows}
    return _PEAK_CACHE[key]


def peak_memory(case: Case, frontend: torch.nn.Module, x: torch.Tensor, workload: str,
                sizes=None) -> Tuple[Optional[int], str]:
    """(bytes, what was measured) for one call of ``workload``: the CUDA allocator's peak on
    a GPU, the peak-RSS rise in a fresh subprocess on the CPU (``sizes``: every
    ``(batch, seconds)`` of the run, measured by that one subprocess; default: x's)."""
    if x.device.type == 'cuda':
        return cuda_peak(make_step(frontend, x, workload)), 'cuda_max_memory_allocated'
    size = (x.shape[0], x.shape[-1] / float(SAMPLE_RATE))
    sizes = list(sizes or [size])
    if size not in [(b, float(s)) for b, s in sizes]:
        sizes.append(size)
    peaks = cpu_peak_rss(case, sizes)
    return peaks[(int(size[0]), float(size[1]))].get(workload), 'subprocess_peak_rss_rise'


def _cpu_model() -> str:
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.lower().startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> Optional[str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if not os.path.isdir(os.path.join(root, '.git')):
        return None
    try:
        out = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=root,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             universal_newlines=True, timeout=10)
        return out.stdout.strip() or None
    except Exception:
        return None


def machine_info(device='cpu') -> dict:
    """Device, CPU/GPU model, versions, threads, load and date of a benchmark run."""
    import eleaf
    device = torch.device(device)
    try:
        import triton
        triton_version = triton.__version__
    except Exception:
        triton_version = None
    info = OrderedDict([
        ('date', datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')),
        ('device', str(device)),
        ('device_name', torch.cuda.get_device_name(device) if device.type == 'cuda'
         else _cpu_model()),
        ('cpu', _cpu_model()),
        ('cpu_count', os.cpu_count()),
        ('threads', torch.get_num_threads()),
        ('torch', torch.__version__),
        ('cuda', torch.version.cuda),
        ('triton', triton_version),
        ('eleaf', eleaf.__version__),
        ('git_commit', _git_commit()),
        ('python', platform.python_version()),
        ('platform', platform.platform()),
        ('loadavg', list(os.getloadavg()) if hasattr(os, 'getloadavg') else None),
        ('backends', {k: {'available': v['available'], 'reason': v['reason'],
                          'version': v['version'], 'ops': v['ops']}
                      for k, v in eleaf.backends().items()}),
    ])
    return info


def add_ratios(results: List[dict]) -> List[dict]:
    """Fill ``examples_per_s``, ``audio_s_per_s`` and ``x_mel`` (throughput relative to the
    mel baseline on 'torch' at the same size and workload) of every timed result: from the
    mel times paired with the result (``mel_time_s``, :func:`paired_times`) where it has
    them, else from the mel baseline's own result (files of earlier runs)."""
    mel = {(r['batch'], r['seconds'], r['workload']): r['time_s'] for r in results
           if r.get('time_s') and r['frontend'] == MEL_BASELINE and r['backend'] == 'torch'}
    for r in results:
        if not r.get('time_s'):
            continue
        r['examples_per_s'] = r['batch'] / r['time_s']
        r['audio_s_per_s'] = r['batch'] * r['seconds'] / r['time_s']
        m = r.get('mel_time_s') or mel.get((r['batch'], r['seconds'], r['workload']))
        r['x_mel'] = m / r['time_s'] if m else None
    return results


def _main(argv=None) -> int:
    import argparse
    parser = argparse.ArgumentParser(prog='python -m eleaf.bench')
    parser.add_argument('--peak-rss', required=True, metavar='JSON',
                        help='{"frontend", "backend", "n_filters", "threads", "sizes": '
                             '[[batch, seconds], ...]}: print the peak-RSS rises as JSON')
    spec = json.loads(parser.parse_args(argv).peak_rss)
    torch.set_num_threads(int(spec['threads']))
    case = Case(spec['frontend'], spec['backend'], spec['n_filters'])
    print(json.dumps(_peak_rss_child(case, spec['sizes'])))
    return 0


if __name__ == '__main__':
    sys.exit(_main())
