"""Backend discovery, registry and selection.

Backends: ``'torch'`` (the reference modules, always available), ``'triton'`` (the fused
kernels of ``eleaf.kernels``: CUDA tensors, or CPU tensors under ``TRITON_INTERPRET=1``),
``'cpp'`` (the compiled extension ``eleaf._C``: C++ on CPU, CUDA on GPU).

Selection order: an explicit ``backend=`` argument, then the environment variable
``ELEAF_BACKEND`` (for the ops that have an implementation in that backend), then the fastest
implementation registered for the op that can run on the input's device and dtype. A frontend
given an explicit backend passes it to each component whose op has an implementation in that
backend and ``'auto'`` to the others (:func:`component_backend`). A backend that is asked for explicitly (argument or environment)
and cannot run raises :class:`BackendUnavailableError` with the reason. Under ``'auto'`` the
choice is logged once per (op, device type, dtype) on the ``eleaf`` logger: at WARNING level
when a faster implementation exists for that device but cannot run (and why), else at INFO.
"""
import importlib
import logging
import os
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch

from ..functional.export import is_exporting, reject_jit_trace

__all__ = ['BACKENDS', 'BackendUnavailableError', 'backends', 'register_impl', 'select_impl',
           'resolve_backend', 'check_backend_name', 'has_impl', 'component_backend',
           'triton_status', 'cpp_status', 'use_custom_ops']

logger = logging.getLogger('eleaf')

BACKENDS = ('torch', 'triton', 'cpp')
#: preference of 'auto', fastest first, per device type
AUTO_ORDER = {'cuda': ('triton', 'cpp', 'torch'), 'cpu': ('cpp', 'torch')}


class BackendUnavailableError(RuntimeError):
    """An explicitly requested backend cannot run the op on the given input."""


def check_backend_name(name: str) -> str:
    """Validate a ``backend=`` argument; returns it unchanged."""
    if name != 'auto' and name not in BACKENDS:
        raise ValueError("backend must be 'auto' or one of %s, got %r" % (BACKENDS, name))
    return name


def _interpreting() -> bool:
    return os.environ.get('TRITON_INTERPRET', '0') not in ('', '0')


def use_custom_ops() -> bool:
    """Whether the Triton backend runs through its registered custom ops
    (``eleaf::gabor_pack``, ``eleaf::gabor_pool``, ``eleaf::pcen_triton_fwd``): while
    torch.compile traces, which needs them, or when ``ELEAF_CUSTOM_OPS=1``. Eager mode
    otherwise calls the same implementations through ``torch.autograd.Function`` s: a custom op
    with Python autograd costs about 50 us more host time per call, and on a GPU the eager
    step of EfficientLEAF 8G-opt is bound by host time."""
    return (torch.compiler.is_compiling()
            or os.environ.get('ELEAF_CUSTOM_OPS', '0') not in ('', '0'))


_STATUS_CACHE: Dict[str, Tuple[bool, str, Optional[str]]] = {}


def triton_status() -> Tuple[bool, str, Optional[str]]:
    """(importable, reason, version) of Triton and the package's kernels."""
    if 'triton' not in _STATUS_CACHE:
        try:
            import triton
            version = triton.__version__
            importlib.import_module('eleaf.kernels')
            _STATUS_CACHE['triton'] = (True, 'triton %s' % version, version)
        except Exception as exc:  # ImportError, or a broken installation
            _STATUS_CACHE['triton'] = (False, 'triton not importable: %s' % exc, None)
    return _STATUS_CACHE['triton']


def cpp_status() -> Tuple[bool, str, Optional[str]]:
    """(loaded, reason, build info) of the compiled extension ``eleaf._C``."""
    if 'cpp' not in _STATUS_CACHE:
        try:
            ext = importlib.import_module('eleaf._C')
            info = getattr(ext, 'build_info', lambda: 'built')()
            _STATUS_CACHE['cpp'] = (True, 'eleaf._C loaded (%s)' % info, info)
        except Exception as exc:
            _STATUS_CACHE['cpp'] = (False, 'eleaf._C not built or not loadable (%s); '
                                    'reinstall with a C++ compiler: pip install '
                                    '--no-build-isolation .' % exc, None)
    return _STATUS_CACHE['cpp']


def _device_reason(backend: str, device: torch.device) -> Optional[str]:
    """Why ``backend`` cannot run on ``device`` at all, or None."""
    if backend == 'torch':
        return None
    if backend == 'triton':
        ok, reason, _ = triton_status()
        if not ok:
            return reason
        if device.type == 'cuda' or (device.type == 'cpu' and _interpreting()):
            return None
        return ('triton kernels need a CUDA device (or TRITON_INTERPRET=1 for CPU tensors), '
                'got %s' % device.type)
    ok, reason, _ = cpp_status()
    return None if ok else reason


@dataclass(frozen=True)
class Impl:
    """One implementation of an op: ``fn`` and ``check(device, dtype) -> reason or None``."""
    fn: Callable
    check: Callable[[torch.device, torch.dtype], Optional[str]]


_REGISTRY: Dict[str, Dict[str, Impl]] = {}
_LOGGED = set()


def register_impl(op: str, backend: str, fn: Callable,
                  check: Optional[Callable[[torch.device, torch.dtype], Optional[str]]] = None):
    """Register ``fn`` as the ``backend`` implementation of ``op``.

    ``check(device, dtype)`` returns None when ``fn`` can run there, else the reason why not.
    """
    if backend not in BACKENDS:
        raise ValueError('unknown backend %r' % backend)
    _REGISTRY.setdefault(op, {})[backend] = Impl(fn, check or (lambda device, dtype: None))


def _impl_reason(op: str, backend: str, device: torch.device, dtype: torch.dtype) -> Optional[str]:
    impl = _REGISTRY.get(op, {}).get(backend)
    if impl is None:
        if op in DECLARED_OPS.get(backend, ()):  # declared, but its backend did not load
            status = triton_status() if backend == 'triton' else cpp_status()
            return status[1] if not status[0] else '%s did not register %s' % (backend, op)
        return 'eleaf has no %s implementation of %s' % (backend, op)
    return _device_reason(backend, device) or impl.check(device, dtype)


def resolve_backend(op: str, requested: str, device: torch.device, dtype: torch.dtype) -> str:
    """Name of the backend that runs ``op`` for a tensor on ``device`` with ``dtype``.

    While ``torch.export`` traces (also inside ``torch.onnx.export(..., dynamo=True)``) it is
    ``'torch'`` for every op, whatever was requested: the references decompose into standard
    operations (in their export-friendly forms, :mod:`eleaf.functional.export`), while the
    fast paths are custom ops or host code without an ONNX form. Under ``torch.jit.trace``
    it raises one RuntimeError (:data:`eleaf.functional.export.JIT_TRACE_MESSAGE`)."""
    if is_exporting():
        _load_fast_paths_untraced()
        return 'torch'
    _load_fast_paths()
    reject_jit_trace()
    env = os.environ.get('ELEAF_BACKEND', '').strip()
    source = 'backend=%r' % requested
    if requested == 'auto' and env and env != 'auto':
        check_backend_name(env)
        # the environment forces a backend for the ops it implements; the others stay 'auto'
        if has_impl(op, env):
            requested, source = env, 'ELEAF_BACKEND=%s' % env
    if requested != 'auto':
        reason = _impl_reason(op, requested, device, dtype)
        if reason is not None:
            raise BackendUnavailableError('%s cannot run %s on %s/%s: %s' % (
                source, op, device.type, str(dtype).replace('torch.', ''), reason))
        return requested
    order = AUTO_ORDER.get(device.type, ('torch',))
    skipped = []
    for backend in order:
        reason = _impl_reason(op, backend, device, dtype)
        if reason is None:
            _log_choice(op, backend, device, dtype, skipped)
            return backend
        if has_impl(op, backend):
            skipped.append('%s: %s' % (backend, reason))
    raise BackendUnavailableError('no backend can run %s on %s' % (op, device))  # unreachable


#: ops that each fast backend implements, whether or not it could be loaded here
DECLARED_OPS = {'triton': ('gabor_filterbank', 'grouped_gabor_filterbank', 'pcen',
                           'tf_gabor_filterbank', 'tf_pcen'),
                'cpp': ('gabor_filterbank', 'grouped_gabor_filterbank', 'log1p_median', 'pcen',
                        'tf_gabor_filterbank', 'tf_pcen')}


def has_impl(op: str, backend: str) -> bool:
    """Whether eleaf has a ``backend`` implementation of ``op`` at all (on any device),
    whether or not that backend can be loaded on this machine."""
    _load_fast_paths()
    return backend in _REGISTRY.get(op, {}) or op in DECLARED_OPS.get(backend, ())


def component_backend(op: str, backend: str) -> str:
    """The backend a frontend passes to a component running ``op``: an explicit backend
    where eleaf implements ``op`` in it, else ``'auto'`` (e.g. ``EfficientLeaf(backend=
    'triton')`` runs its filterbank on Triton and its LogTBN on the best backend that has
    one)."""
    check_backend_name(backend)
    return backend if backend == 'auto' or has_impl(op, backend) else 'auto'


def select_impl(op: str, requested: str, device: torch.device,
                dtype: torch.dtype) -> Tuple[str, Callable]:
    """(backend name, function) implementing ``op`` for this device and dtype."""
    backend = resolve_backend(op, requested, device, dtype)
    return backend, _REGISTRY[op][backend].fn


# Dynamo (torch.compile, strict torch.export) calls resolve_backend at trace time and takes
# its result as a constant, as torch.compiler.assume_constant_result does (set here without
# importing torch._dynamo): the selection's first-use work (imports, status probes, the log
# line) runs once in Python instead of being traced, and a compiled graph neither breaks nor
# guards on the registry's caches. The choice depends only on the arguments (and the
# environment), which Dynamo guards on.
resolve_backend._dynamo_marked_constant = True


def _log_choice(op, backend, device, dtype, skipped):
    key = (op, backend, device.type, dtype)
    if key in _LOGGED:
        return
    _LOGGED.add(key)
    msg = '%s runs on %r for %s/%s' % (op, backend, device.type,
                                       str(dtype).replace('torch.', ''))
    if skipped:
        logger.warning('%s (faster ones cannot run: %s)', msg, '; '.join(skipped))
    else:
        logger.info(msg)


_FAST_PATHS = ('eleaf.ops.gabor', 'eleaf.ops.pcen', 'eleaf.ops.compress', 'eleaf.ops.pcen_cpp',
               'eleaf.ops.gabor_cpu', 'eleaf.ops.tf_gabor_cpu', 'eleaf.ops.tf_gabor_triton',
               'eleaf.ops.tf_pcen', 'eleaf.ops.grouped_gabor')
_fast_loaded = False


def _load_fast_paths():
    """Import the modules that register the fast implementations (never raises)."""
    global _fast_loaded
    if _fast_loaded:
        return
    _fast_loaded = True
    for name in _FAST_PATHS:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                logger.warning('could not import %s: %s', name, exc)
        except Exception as exc:
            logger.warning('could not import %s: %s', name, exc)


def _load_fast_paths_untraced() -> bool:
    """:func:`_load_fast_paths` in a thread of its own: torch.export's tracing and fake-tensor
    modes are thread-local, so what those imports run at module level (e.g. probing an op of
    eleaf._C) is neither recorded into the exported graph nor run on fake tensors. Marked as
    ``torch.compiler.assume_constant_result`` does (without importing torch._dynamo here), so
    that Dynamo (``strict=True`` export) calls it at trace time instead of tracing it."""
    if not _fast_loaded:
        loader = threading.Thread(target=_load_fast_paths, name='eleaf-load-fast-paths')
        loader.start()
        loader.join()
    return True


_load_fast_paths_untraced._dynamo_marked_constant = True


def backends() -> Dict[str, dict]:
    """Availability of every backend: ``{name: {'available', 'reason', 'version', 'ops'}}``.

    ``ops`` lists the ops that have an implementation in that backend.
    """
    _load_fast_paths()
    ops = {b: sorted(op for op, impls in _REGISTRY.items() if b in impls) for b in BACKENDS}
    t_ok, t_reason, t_version = triton_status()
    if t_ok and not torch.cuda.is_available():
        t_reason += ('; running kernels needs a CUDA device'
                     + (' (TRITON_INTERPRET=1 is set: CPU tensors run in the interpreter)'
                        if _interpreting() else ' or TRITON_INTERPRET=1'))
    c_ok, c_reason, c_info = cpp_status()
    return {
        'torch': {'available': True, 'reason': 'reference modules (torch %s)' % torch.__version__,
                  'version': torch.__version__, 'ops': ops['torch']},
        'triton': {'available': t_ok and (torch.cuda.is_available() or _interpreting()),
                   'reason': t_reason, 'version': t_version, 'ops': ops['triton']},
        'cpp': {'available': c_ok, 'reason': c_reason, 'version': c_info, 'ops': ops['cpp']},
    }
