"""Checkpoints of ``eleaf train``: atomic saving, loading with one-line errors, RNG states,
compatibility checks and frontend extraction.

A checkpoint is the original ``main.py``'s dict ``{'epoch', 'network', 'optimizer',
'scheduler'}`` (network keys ``_frontend.*``, ``_encoder.*``, ``_head.*``) plus eleaf's
entries: ``format``, ``args`` (the options of the run), ``num_classes``, ``best_val_loss``,
``best_epoch``, ``rng`` (torch, numpy and python RNG states of every rank), ``skipped``
(non-finite batches so far) and, after Ctrl-C within an epoch, ``partial`` (where that epoch
stopped). Everything is plain data and tensors, so it loads with ``weights_only=True``.
"""
import errno
import glob
import os
import pickle
import random
import shutil
import tempfile
import zipfile
from typing import Optional

import numpy as np
import torch

__all__ = ['CheckpointError', 'CheckpointSaveError', 'FORMAT', 'save_atomic',
           'load_checkpoint', 'check_finite', 'remove_leftovers', 'rng_state',
           'set_rng_state', 'check_options', 'load_network', 'frontend_state',
           'extract_frontend', 'is_original_format']

#: version of eleaf's checkpoint entries
FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model."""


class CheckpointSaveError(CheckpointError, OSError):
    """A checkpoint that cannot be written (a full disk, no permission); the file keeps its
    previous content. Also an OSError, as what caused it."""


#: free bytes below which a failed write is put down to a full disk
FULL_DISK_BYTES = 1 << 20


def _tmp_prefix(path: str) -> str:
    return '.' + os.path.basename(path) + '.'


def remove_leftovers(directory: str, names) -> list:
    """Remove the temporary files that :func:`save_atomic` leaves when it is killed mid-write
    (``.NAME.XXXXXXXX.tmp`` for each NAME in ``names``) from ``directory``; returns their
    paths. Call it only while no other process saves there (``eleaf train`` holds its run
    lock)."""
    removed = []
    for name in names:
        for tmp in glob.glob(os.path.join(glob.escape(directory),
                                          glob.escape(_tmp_prefix(name)) + '*.tmp')):
            try:
                os.unlink(tmp)
                removed.append(tmp)
            except OSError:
                pass
    return removed


def _save_failure(path: str, exc: BaseException, tmp_size, free) -> CheckpointSaveError:
    """One line: what could not be written, why, and that the previous file is kept."""
    code = getattr(exc, 'errno', None)
    if code in (errno.ENOSPC, errno.EDQUOT) or (free is not None and free < FULL_DISK_BYTES):
        reason = ('the disk is full' if code != errno.EDQUOT else 'the disk quota is exceeded')
        if free is not None:
            reason += ' (%.1f MiB free%s)' % (free / 2 ** 20, '' if tmp_size is None else
                                              ' after writing %.1f MiB of it'
                                              % (tmp_size / 2 ** 20))
    elif isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    else:
        text = str(exc).strip()
        reason = text.splitlines()[0][:200] if text else type(exc).__name__
    kept = ('%s keeps its previous content' % os.path.basename(path)
            if os.path.exists(path) else 'nothing was written')
    return CheckpointSaveError('cannot save %r: %s; %s. Free some space (or fix the '
                               'directory) and continue with --resume auto'
                               % (path, reason, kept))


def save_atomic(obj, path: str):
    """``torch.save`` to a temporary file in the same directory, fsync, then ``os.replace``:
    ``path`` holds either the previous or the new checkpoint, never a partial one. A failed
    write (a full disk) removes the temporary file and raises :class:`CheckpointSaveError`,
    one line saying why; ``path`` keeps its previous content."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=_tmp_prefix(path), suffix='.tmp', dir=directory)
    except OSError as exc:
        raise _save_failure(path, exc, None, _free_bytes(directory)) from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give a checkpoint normal rights
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        failure = None
        if isinstance(exc, (OSError, RuntimeError)):  # torch's writer raises RuntimeError
            try:
                tmp_size = os.path.getsize(tmp)
            except OSError:
                tmp_size = None
            failure = _save_failure(path, exc, tmp_size, _free_bytes(directory))
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if failure is not None:
            raise failure from None
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def _free_bytes(directory: str):
    try:
        return shutil.disk_usage(directory).free
    except OSError:
        return None


def _nonfinite(name: str, value, found: list):
    if isinstance(value, torch.Tensor):
        if (value.is_floating_point() or value.is_complex()) and value.numel():
            bad = int((~torch.isfinite(value)).sum())
            if bad:
                found.append('%s (%d of %d values NaN or infinite)' % (name, bad,
                                                                        value.numel()))
    elif isinstance(value, dict):
        for k, v in value.items():
            _nonfinite('%s.%s' % (name, k) if name else str(k), v, found)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _nonfinite('%s.%d' % (name, i), v, found)


def check_finite(ckpt: dict, path: str):
    """Raise :class:`CheckpointError` naming the file and the tensors of the network and
    of the optimizer state that hold NaN or infinite values (a model trained on finite
    data never has such values; loading one would only fail later with a misleading
    message)."""
    found = []
    _nonfinite('', ckpt.get('network'), found)
    optimizer = ckpt.get('optimizer')
    if isinstance(optimizer, dict):
        _nonfinite('optimizer state', optimizer.get('state'), found)
    if found:
        raise CheckpointError('checkpoint %r is damaged: non-finite values in %s%s; use an '
                              'earlier checkpoint' % (path, ', '.join(found[:3]),
                                                      ' (+%d more tensors)' % (len(found) - 3)
                                                      if len(found) > 3 else ''))


def load_checkpoint(path: str, trust: bool = False) -> dict:
    """Load a checkpoint on the CPU; :class:`CheckpointError` (one line, naming the file
    and, for non-finite values, the tensors) if it is missing, unreadable, not a training
    checkpoint, or holds NaN/Inf in its network or optimizer state. ``trust=True`` allows
    arbitrary pickled objects (``weights_only=False``): only for files you trust."""
    if not os.path.exists(path):
        raise CheckpointError('checkpoint %r does not exist: check the path' % path)
    if os.path.isdir(path):
        raise CheckpointError('checkpoint %r is a directory: pass the checkpoint file (e.g. '
                              '%s)' % (path, os.path.join(path, 'net_checkpoint.pth')))
    try:
        ckpt = torch.load(path, map_location='cpu', weights_only=not trust)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        detail = text.split('WeightsUnpickler error:', 1)[-1].strip().splitlines()
        detail = detail[0].strip() if detail else type(exc).__name__
        if 'Unsupported global' in text and not trust:
            raise CheckpointError(
                'checkpoint %r holds objects other than tensors and plain data (%s); if you '
                'trust the file, pass --trust-checkpoint' % (path, detail[:160])) from None
        raise CheckpointError('checkpoint %r is unreadable (%s): it is damaged or not a '
                              'PyTorch file' % (path, detail[:160])) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError('checkpoint %r is unreadable (%s): it is damaged or not a '
                              'PyTorch file' % (path, first[:200])) from None
    except Exception as exc:  # e.g. KeyError from the legacy unpickler on a text file
        raise CheckpointError('checkpoint %r is unreadable (%s: %s): it is damaged or not a '
                              'PyTorch file' % (path, type(exc).__name__,
                                                str(exc)[:100])) from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get('network'), dict):
        raise CheckpointError('%r is not a training checkpoint: expected a dict with a '
                              "'network' state_dict (as eleaf train and the original "
                              'main.py write)' % path)
    check_finite(ckpt, path)
    return ckpt


def is_original_format(ckpt: dict) -> bool:
    """True for a checkpoint without eleaf's entries (e.g. written by the original code)."""
    return 'format' not in ckpt or 'args' not in ckpt


def rng_state() -> dict:
    """The torch (CPU and CUDA), numpy and python RNG states as tensors and plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {'torch': torch.get_rng_state(),
             'numpy': {'kind': kind, 'keys': torch.from_numpy(keys.astype(np.int64)),
                       'pos': int(pos), 'has_gauss': int(has_gauss), 'cached': float(cached)},
             'python': {'version': version, 'internal': list(internal),
                        'gauss_next': gauss_next}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict):
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state['torch'])
    n = state['numpy']
    np.random.set_state((n['kind'], n['keys'].numpy().astype(np.uint32), n['pos'],
                         n['has_gauss'], n['cached']))
    p = state['python']
    random.setstate((p['version'], tuple(p['internal']), p['gauss_next']))
    if 'cuda' in state and torch.cuda.is_available():
        cuda_states = state['cuda']
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


def _option(name: str) -> str:
    return '--' + name.replace('_', '-')


def check_options(ckpt: dict, args, names, path: str):
    """Raise :class:`CheckpointError` naming every option in ``names`` whose value in
    ``args`` differs from the one stored in an eleaf checkpoint."""
    stored = ckpt.get('args') or {}
    diffs = ['%s %s (checkpoint) vs %s (now)' % (_option(n), stored[n], getattr(args, n))
             for n in names if n in stored and stored[n] != getattr(args, n)]
    if diffs:
        raise CheckpointError('checkpoint %r is incompatible with the options: %s; pass the '
                              'options it was trained with' % (path, '; '.join(diffs)))


def load_network(network: torch.nn.Module, state_dict: dict, path: str):
    """``network.load_state_dict(state_dict, strict=True)``; :class:`CheckpointError` (one
    line, naming the differing keys) when the checkpoint belongs to another configuration."""
    own = network.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = ['%s %s vs %s' % (k, tuple(state_dict[k].shape), tuple(own[k].shape))
              for k in own if k in state_dict and hasattr(state_dict[k], 'shape')
              and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (('missing', missing), ('unexpected', unexpected),
                            ('shape (checkpoint vs model)', shapes)):
            if keys:
                parts.append('%s %s%s' % (label, ', '.join(keys[:3]),
                                          ' (+%d more)' % (len(keys) - 3) if len(keys) > 3
                                          else ''))
        raise CheckpointError('checkpoint %r does not match the model built from the options '
                              '(%s): pass the --frontend, --compression, --encoder and other '
                              'model options it was trained with' % (path, '; '.join(parts)))
    network.load_state_dict(state_dict, strict=True)


def frontend_state(ckpt: dict, ckpt_path: str) -> dict:
    """The frontend's state_dict in a loaded checkpoint: its ``_frontend.*`` entries without
    the prefix; CheckpointError if it has none."""
    prefix = '_frontend.'
    state = {k[len(prefix):]: v for k, v in ckpt['network'].items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError('checkpoint %r has no frontend parameters (no %s* keys in '
                              "'network')" % (ckpt_path, prefix))
    return state


def extract_frontend(ckpt_path: str, out_path: str, trust: bool = False) -> dict:
    """Write the frontend's state_dict (:func:`frontend_state`) of a checkpoint to
    ``out_path``; it loads with ``frontend.load_state_dict(torch.load(out))``. Returns it."""
    state = frontend_state(load_checkpoint(ckpt_path, trust=trust), ckpt_path)
    save_atomic(state, out_path)
    return state


def frontend_description(ckpt: dict) -> Optional[str]:
    """The eleaf constructor call that rebuilds the frontend of an eleaf checkpoint, or None
    for a checkpoint without stored options."""
    args = ckpt.get('args')
    if not args:
        return None
    from argparse import Namespace
    from . import model
    ns = Namespace(**args)
    compression = ('PCEN(40, s=0.04, alpha=0.96, delta=2.0, r=0.5, eps=1e-12, '
                   'learn_logs=%r, clamp=1e-5)' % ns.pcen_learn_logs
                   if ns.compression == 'PCEN' else
                   'LogTBN(40, a=%r, trainable=%r, per_band=%r, median_filter=%r, '
                   'append_filtered=%r)' % (ns.log1p_initial_a, ns.log1p_trainable,
                                            ns.log1p_per_band, ns.tbn_median_filter,
                                            ns.tbn_median_filter_append))
    extra = ('num_groups=%r, conv_win_factor=%r, stride_factor=%r, '
             % (ns.num_groups, ns.conv_win_factor, ns.stride_factor)
             if ns.frontend == 'EfficientLeaf' else '')
    return 'eleaf.%s(n_filters=%d, %scompression=eleaf.%s)' % (ns.frontend, model.N_FILTERS,
                                                                extra, compression)
