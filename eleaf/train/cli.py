"""``eleaf train``: train and test an audio classifier with a LEAF, EfficientLEAF or mel
frontend, the paper's recipe (SPEC §9); ``eleaf eval``: test a checkpoint.

Options are named as in the original ``main.py``. Outputs go to
``OUTPUT_DIR/models/MODEL_NAME/``: ``net_checkpoint.pth`` (every epoch, atomic),
``net_best_model.pth`` (lowest validation loss), ``net_last_model.pth``, ``args.json``,
``metrics.csv``, ``results.json``; TensorBoard logs to ``OUTPUT_DIR/runs/MODEL_NAME/``.
"""
import argparse
import copy
import logging
import math
import os
import random
import sys
import time

import numpy as np
import torch

from . import checkpoint as ckpt_lib
from . import data as data_lib
from . import runlock
from ..cli.options import HelpFormatter, UsageError, parse_device
from .distributed import (DistInfo, all_reduce_sum, average_buffers, barrier, broadcast_object,
                          cleanup, gather_objects, init_distributed)
from .logs import RunLog, write_json
from .loop import EpochState, StopFlag, TrainingDiverged, evaluate, train_one_epoch
from .model import MODEL_OPTIONS, EncoderUnavailableError, build_model
from .presets import PRESETS, expand_preset

__all__ = ['get_args_parser', 'main', 'run', 'eval_main', 'UsageError', 'Interrupted']

logger = logging.getLogger('eleaf.train')

#: options that belong to this invocation, never taken from a checkpoint
RUNTIME_OPTIONS = frozenset((
    'resume', 'trust_checkpoint', 'device', 'num_workers', 'pin_mem', 'progress',
    'tensorboard', 'dist_url', 'cudnn_benchmark', 'backend', 'extract_frontend',
    'compare_frontends', 'checkpoint', 'split', 'output', 'break_lock', 'preset'))

#: options that only decide which data is read (also taken from a checkpoint in eval)
DATA_OPTIONS = ('data_set', 'data_path', 'input_size', 'num_classes', 'synthetic_size',
                'synthetic_min_length', 'synthetic_max_length')

CHECKPOINT_NAME = 'net_checkpoint.pth'
BEST_NAME = 'net_best_model.pth'
LAST_NAME = 'net_last_model.pth'


class Interrupted(Exception):
    """Ctrl-C: a checkpoint was saved (``path``)."""

    def __init__(self, path):
        super().__init__(path)
        self.path = path


def _int_list(text):
    try:
        values = [int(v) for v in text.split(',')]
    except ValueError:
        raise argparse.ArgumentTypeError('expected TRAIN,VAL,TEST integers, got %r' % text)
    if len(values) != 3:
        raise argparse.ArgumentTypeError('expected TRAIN,VAL,TEST, got %r' % text)
    return values


def get_args_parser(eval_mode: bool = False) -> argparse.ArgumentParser:
    """The options of ``eleaf train`` (``eval_mode``: of ``eleaf eval``)."""
    prog = 'eleaf eval' if eval_mode else 'eleaf train'
    description = ('Test a checkpoint of eleaf train or of the original EfficientLEAF main.py '
                   'on a data set.' if eval_mode else
                   'Train and test an audio classifier with a LEAF, EfficientLEAF or mel '
                   'frontend (the EfficientLEAF paper\'s recipe).')
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=HelpFormatter)
    if eval_mode:
        p.add_argument('--checkpoint', required=True, metavar='FILE',
                       help='checkpoint to test (eleaf train or original main.py format); the '
                            'options of an eleaf checkpoint are its own unless given here')
        p.add_argument('--split', default='test', choices=('val', 'test', 'both'),
                       help='split(s) to test on')
        p.add_argument('--output', default='', metavar='JSON',
                       help='also write the metrics to this JSON file')
    else:
        g = p.add_argument_group('modes')
        g.add_argument('--extract-frontend', nargs=2, metavar=('CHECKPOINT', 'OUT'),
                       help="write the frontend's state_dict of CHECKPOINT to OUT and exit")
        g.add_argument('--compare-frontends', default='', metavar='LIST',
                       help='train one model per frontend of the comma-separated LIST (e.g. '
                            'EfficientLeaf,Mel) with the other options, print their test '
                            'accuracies side by side and save plots (see docs/train.md)')

    g = p.add_argument_group('general')
    g.add_argument('--seed', default=0, type=int,
                   help='random seed; 0 draws one (recorded in args.json and checkpoints)')
    g.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N')
    g.add_argument('--backend', default='auto', choices=('auto', 'torch', 'triton', 'cpp'),
                   help='eleaf backend of the frontend and compression')
    g.add_argument('--trust-checkpoint', action='store_true',
                   help='load checkpoints holding arbitrary pickled objects (only files you '
                        'trust)')
    g.add_argument('--cudnn-benchmark', action=argparse.BooleanOptionalAction, default=False,
                   help='torch.backends.cudnn.benchmark')
    g.add_argument('--progress', action=argparse.BooleanOptionalAction, default=True,
                   help='tqdm progress bars (if tqdm is installed)')
    if not eval_mode:
        g.add_argument('--resume', default='', metavar='FILE',
                       help="checkpoint to continue from (eleaf or original main.py format); "
                            "'auto': OUTPUT_DIR/models/MODEL_NAME/%s if it exists"
                            % CHECKPOINT_NAME)
        g.add_argument('--break-lock', action='store_true',
                       help='train even though another eleaf train holds the run directory '
                            '(its lock %s names it): only when you are sure it is not '
                            'running' % runlock.LOCK_NAME)
        g.add_argument('--tensorboard', action=argparse.BooleanOptionalAction, default=True,
                       help='TensorBoard logs (if the tensorboard package is installed)')
        g.add_argument('--dist-url', default='env://',
                       help='init_method of the process group under torchrun')

    g = p.add_argument_group('training')
    g.add_argument('--batch-size', default=256, type=int, help='recordings per training batch')
    g.add_argument('--batch-size-eval', default=0, type=int,
                   help='recordings per evaluation batch (0: --batch-size); windows are '
                        'forwarded at most --batch-size-eval or --batch-size at a time')
    if not eval_mode:
        g.add_argument('--epochs', default=1000, type=int, help='maximum number of epochs')
        g.add_argument('--lr', default=1e-3, type=float, help='Adam learning rate')
        g.add_argument('--frontend-lr-factor', default=1., type=float,
                       help='learning rate factor of the frontend')
        g.add_argument('--adam-eps', default=1e-8, type=float, help="Adam's eps")
        g.add_argument('--scheduler', action=argparse.BooleanOptionalAction, default=True,
                       help='ReduceLROnPlateau on the mean validation loss; training stops '
                            'when the lr falls below --min-lr')
        g.add_argument('--scheduler-factor', default=0.1, type=float,
                       help='learning rate factor at each decay')
        g.add_argument('--patience', default=10, type=int, metavar='EPOCHS',
                       help='epochs without a lower validation loss before a decay')
        g.add_argument('--min-lr', default=1e-5, type=float,
                       help='stop when the learning rate falls below this')

    g = p.add_argument_group('data')
    g.add_argument('--data-set', default='synthetic',
                   help="'synthetic' (built in, no files) or one of the paper's: %s (layouts "
                        "under --data-path: eleaf data prepare NAME)"
                        % ', '.join(data_lib.PAPER_DATASETS))
    g.add_argument('--data-path', default='',
                   help='directory holding the data sets (see docs/datasets.md)')
    g.add_argument('--num-workers', '--num_workers', default=0, type=int, dest='num_workers',
                   help='data loader worker processes (0: in the main process)')
    g.add_argument('--pin-mem', action=argparse.BooleanOptionalAction, default=False,
                   help="the data loader's pin_memory")
    g.add_argument('--input-size', default=16000, type=int,
                   help='input length in samples (16 kHz): training crops and evaluation '
                        'windows')
    g.add_argument('--num-classes', default=len(data_lib.SYNTHETIC_CLASSES), type=int,
                   help='synthetic task: number of classes (2 to %d)'
                        % len(data_lib.SYNTHETIC_CLASSES))
    g.add_argument('--synthetic-size', default=[2000, 200, 400], type=_int_list,
                   metavar='TRAIN,VAL,TEST', help='synthetic task: recordings per split')
    g.add_argument('--synthetic-min-length', default=0.75, type=float, metavar='INPUTS',
                   help='synthetic task: shortest recording, in --input-size units')
    g.add_argument('--synthetic-max-length', default=2.0, type=float, metavar='INPUTS',
                   help='synthetic task: longest recording, in --input-size units')

    g = p.add_argument_group('output')
    g.add_argument('--output-dir', default='outputs',
                   help='writes models/MODEL_NAME/ and runs/MODEL_NAME/ below this')
    g.add_argument('--model-name', default='default',
                   help='run name (may contain slashes)')

    g = p.add_argument_group('model', "the defaults are the original main.py's; --preset "
                                      "gives the paper's configurations")
    if not eval_mode:
        g.add_argument('--preset', choices=tuple(PRESETS),
                       help="one of the paper's configurations (40 filters), the options "
                            "given override its own: %s" % '; '.join(
                                '%s = %s' % (k, ' '.join(v)) for k, v in PRESETS.items()))
    g.add_argument('--frontend', default='Leaf', choices=('Leaf', 'EfficientLeaf', 'Mel'),
                   help='frontend of the classifier')
    g.add_argument('--encoder', default='efficientnet', choices=('efficientnet', 'small'),
                   help="efficientnet: the paper's EfficientNet-b0 (needs efficientnet_pytorch); "
                        'small: a 4-layer CNN for quick CPU runs')
    g.add_argument('--compression', default='PCEN', choices=('PCEN', 'TBN'),
                   help='PCEN, or TBN: log1p and temporal batch norm (LogTBN with the '
                        '--log1p-* and --tbn-* options)')
    g.add_argument('--pcen-learn-logs', action='store_true',
                   help='learn the logarithms of the PCEN parameters')
    g.add_argument('--log1p-initial-a', default=0., type=float,
                   help="TBN: initial a of log(1 + 10**a * x)")
    g.add_argument('--log1p-trainable', action='store_true', help='TBN: learn a')
    g.add_argument('--log1p-per-band', action='store_true', help='TBN: one a per band')
    g.add_argument('--tbn-median-filter', action='store_true',
                   help='TBN: subtract the median over time')
    g.add_argument('--tbn-median-filter-append', action='store_true',
                   help='TBN: append the median-subtracted signal as a second channel')
    g.add_argument('--num-groups', default=4, type=int, help='EfficientLeaf: filter groups')
    g.add_argument('--conv-win-factor', default=3., type=float,
                   help='EfficientLeaf: kernel size in bandwidths')
    g.add_argument('--stride-factor', default=1., type=float,
                   help='EfficientLeaf: stride multiplier')
    return p


def explicit_options(parser: argparse.ArgumentParser, argv) -> set:
    """Names of the options given on the command line (not defaults)."""
    quiet = copy.deepcopy(parser)
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
        action.required = False
    return set(vars(quiet.parse_known_args(argv)[0]))


def _setup_logging():
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format='%(message)s')


def _check_args(args):
    positive = [('batch_size', args.batch_size), ('input_size', args.input_size)]
    if hasattr(args, 'epochs'):
        positive.append(('lr', args.lr))
    for name, value in positive:
        if not value > 0:
            raise UsageError('--%s must be positive, got %r' % (name.replace('_', '-'), value))
    if args.batch_size_eval < 0 or args.num_workers < 0:
        raise UsageError('--batch-size-eval and --num-workers must be >= 0')
    parse_device(args.device)


def _apply_stored_options(args, ckpt, explicit, path, names=None):
    """Take the options of an eleaf checkpoint that were not given explicitly; raise
    CheckpointError for explicit model options that differ from the checkpoint's."""
    stored = ckpt.get('args') or {}
    ckpt_lib.check_options(ckpt, args, [n for n in MODEL_OPTIONS if n in explicit], path)
    for name, value in stored.items():
        if name in RUNTIME_OPTIONS or name in explicit or not hasattr(args, name):
            continue
        if names is None or name in names:
            setattr(args, name, value)


def _model_dir(args):
    return os.path.join(args.output_dir, 'models', args.model_name)


def _tqdm():
    """tqdm's class, or None where tqdm is not installed (then no progress bars)."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def _say(info, msg, progress=False):
    if not info.is_main:
        return
    tqdm = _tqdm() if progress else None
    if tqdm is not None:
        tqdm.write(msg)
    else:
        print(msg, flush=True)


def _checkpoint_dict(epoch, model, optimizer, scheduler, args, num_classes, best, skipped,
                     rng_states, partial=None):
    out = {'epoch': epoch, 'network': model.state_dict(), 'optimizer': optimizer.state_dict(),
           'scheduler': scheduler.state_dict() if scheduler is not None else None,
           'format': ckpt_lib.FORMAT, 'args': dict(vars(args)), 'num_classes': num_classes,
           'best_val_loss': best['loss'], 'best_val_acc': best['acc'],
           'best_epoch': best['epoch'], 'skipped': skipped, 'rng': rng_states}
    if partial is not None:
        out['partial'] = partial
    return out


def _make_optimizer(args, model):
    """Adam as the original: one group, or the frontend in a second group at
    ``lr * frontend_lr_factor``."""
    if args.frontend_lr_factor == 1:
        return torch.optim.Adam(model.parameters(), lr=args.lr, eps=args.adam_eps)
    frontend_params = list(model._frontend.parameters())
    ids = set(id(p) for p in frontend_params)
    optimizer = torch.optim.Adam([p for p in model.parameters() if id(p) not in ids],
                                 lr=args.lr, eps=args.adam_eps)
    optimizer.add_param_group(dict(params=frontend_params,
                                   lr=args.lr * args.frontend_lr_factor))
    return optimizer


def _describe(args):
    return '%s + %s, %s encoder, %s' % (args.frontend, args.compression, args.encoder,
                                         args.data_set)


def _bar(enabled, **kwargs):
    tqdm = _tqdm() if enabled else None
    return tqdm(**kwargs) if tqdm is not None else None


def run(args, explicit=frozenset()) -> dict:
    """Train and test as ``args`` say; returns the results dict (also ``results.json``).

    Raises UsageError, DataError, CheckpointError, EncoderUnavailableError (bad options),
    TrainingDiverged, Interrupted (Ctrl-C; a checkpoint was saved).
    """
    _check_args(args)
    info = init_distributed(args.device, args.dist_url)
    try:
        lock = _take_run_lock(args, info)
        try:
            results = _run(args, explicit, info)
            barrier(info)  # no rank tears the process group down while another still talks
            return results
        finally:
            if lock is not None:
                lock.release()
    finally:
        cleanup(info)


def _take_run_lock(args, info: DistInfo):
    """Rank 0 takes the run directory's lock (see :mod:`eleaf.train.runlock`) and removes
    the temporary files of saves that were killed; every rank raises RunLockedError when
    another live run holds it."""
    lock, error = None, None
    if info.is_main:
        try:
            lock = runlock.acquire(_model_dir(args), getattr(args, 'break_lock', False))
        except runlock.RunLockedError as exc:
            error = str(exc)
        else:
            if lock.replaced:
                _say(info, 'replaced the lock of %s' % lock.replaced)
            for tmp in ckpt_lib.remove_leftovers(_model_dir(args), (CHECKPOINT_NAME, BEST_NAME,
                                                                    LAST_NAME)):
                _say(info, 'removed %s (left by a save that was killed)' % tmp)
    error = broadcast_object(error, info)
    if error is not None:
        raise runlock.RunLockedError(error)
    return lock


def _run(args, explicit, info: DistInfo) -> dict:
    t_start = time.time()
    torch.backends.cudnn.benchmark = args.cudnn_benchmark

    # --- resume: the checkpoint's options unless given explicitly -----------------------
    resume_path = args.resume
    if resume_path == 'auto':
        candidate = os.path.join(_model_dir(args), CHECKPOINT_NAME)
        resume_path = candidate if os.path.exists(candidate) else ''
        if not resume_path:
            _say(info, 'no checkpoint at %s: starting a new run' % candidate)
    ckpt = None
    if resume_path:
        ckpt = ckpt_lib.load_checkpoint(resume_path, trust=args.trust_checkpoint)
        if not ckpt_lib.is_original_format(ckpt):
            _apply_stored_options(args, ckpt, explicit, resume_path)
    data_lib.resolve_dataset_name(args.data_set)  # fail early on an unknown name

    # --- seeds ------------------------------------------------------------------------------
    if not args.seed:
        args.seed = broadcast_object(int.from_bytes(os.urandom(4), 'little') % (2 ** 31 - 1)
                                     or 1, info)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed % (2 ** 32))
    random.seed(args.seed)

    # --- data, model, optimizer -------------------------------------------------------------
    train_set, val_set, test_set, num_classes = data_lib.build_datasets(args)
    model = build_model(args, num_classes)
    model.to(info.device)
    optimizer = _make_optimizer(args, model)
    scheduler = (torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode='min', factor=args.scheduler_factor, patience=args.patience)
        if args.scheduler else None)
    start_epoch = 1
    best = {'loss': math.inf, 'acc': None, 'epoch': None}
    skipped_total = 0
    partial = None
    if ckpt is not None:
        ckpt_lib.load_network(model, ckpt['network'], resume_path)
        try:
            optimizer.load_state_dict(ckpt['optimizer'])
        except (ValueError, KeyError, TypeError) as exc:
            raise ckpt_lib.CheckpointError(
                'the optimizer state of checkpoint %r does not fit (%s): pass the '
                '--frontend-lr-factor it was trained with' % (resume_path, exc)) from None
        if scheduler is not None and ckpt.get('scheduler') is not None:
            scheduler.load_state_dict(ckpt['scheduler'])
        start_epoch = int(ckpt['epoch']) + 1
        if ckpt.get('best_val_loss') is not None:
            best = {'loss': ckpt['best_val_loss'], 'acc': ckpt.get('best_val_acc'),
                    'epoch': ckpt.get('best_epoch')}
        skipped_total = int(ckpt.get('skipped', 0))
        partial = ckpt.get('partial')
        _say(info, 'resuming from %s (epoch %d done%s)' % (
            resume_path, start_epoch - 1,
            ', epoch %d interrupted after %d batches' % (partial['epoch'],
                                                        partial['batches_done'])
            if partial else ''))
    if info.enabled:
        torch.manual_seed(args.seed + info.rank)  # own dropout masks per rank
    if ckpt is not None and ckpt.get('rng'):
        states = ckpt['rng']
        ckpt_lib.set_rng_state(states[info.rank] if len(states) == info.world_size
                               else states[0])

    network = model
    if info.enabled:
        network = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == 'cuda' else None)

    train_loader, val_loader, test_loader, sampler = data_lib.build_loaders(
        args, train_set, val_set, test_set, args.seed, info.rank, info.world_size,
        pin_memory=args.pin_mem)
    criterion = torch.nn.CrossEntropyLoss(reduction='none')
    chunk = args.batch_size_eval or args.batch_size

    # --- records ----------------------------------------------------------------------------
    model_dir = _model_dir(args)
    tb_dir = os.path.join(args.output_dir, 'runs', args.model_name)
    log = RunLog(model_dir, tb_dir, enabled=info.is_main,
                 resume_epoch=(start_epoch - 1) if ckpt is not None else None,
                 tensorboard=args.tensorboard)
    if info.is_main:
        import eleaf
        record = dict(vars(args))
        record.update(world_size=info.world_size, resumed_from=resume_path or None,
                      eleaf_version=eleaf.__version__, torch_version=torch.__version__,
                      num_classes=num_classes, parameters=sum(p.numel()
                                                              for p in model.parameters()))
        write_json(record, os.path.join(model_dir, 'args.json'))
        _say(info, '%s: %d/%d/%d recordings, %d classes, %d parameters, %d process(es), '
                   'outputs in %s' % (_describe(args), len(train_set), len(val_set),
                                      len(test_set), num_classes, record['parameters'],
                                      info.world_size, model_dir))
    example = data_lib.frontend_example(val_set, args.input_size) if info.is_main else None

    def frontend_output():
        model.eval()
        with torch.no_grad():
            return model._frontend(example.to(info.device))[0]

    if ckpt is None and info.is_main:
        log.frontend(model._frontend, 0, frontend_output())

    show = args.progress and info.is_main

    def save(epoch, partial_state=None, also_best=False):
        states = gather_objects(ckpt_lib.rng_state(), info)
        if info.is_main:
            obj = _checkpoint_dict(epoch, model, optimizer, scheduler, args, num_classes, best,
                                   skipped_total, states, partial_state)
            ckpt_lib.save_atomic(obj, os.path.join(model_dir, CHECKPOINT_NAME))
            if also_best:
                ckpt_lib.save_atomic(obj, os.path.join(model_dir, BEST_NAME))
        barrier(info)

    def lr_too_low():
        return scheduler is not None and optimizer.param_groups[0]['lr'] < args.min_lr

    # --- epochs -----------------------------------------------------------------------------
    stopped = 'epochs'
    last_epoch = start_epoch - 1
    epoch_bar = _bar(show, total=args.epochs, initial=min(start_epoch - 1, args.epochs),
                     desc='epochs')
    flag = StopFlag(lambda: _say(info, 'interrupted: finishing this batch, then saving a '
                                       'checkpoint%s' % ('' if info.enabled else
                                                         ' (Ctrl-C again aborts at once)'),
                                 show),
                    repeat_aborts=not info.enabled)
    with flag:
        if ckpt is not None and partial is None and lr_too_low():
            stopped = 'min_lr'  # the resumed run had stopped below --min-lr
            _say(info, 'the learning rate is below --min-lr: nothing left to train')
        for epoch in range(start_epoch, args.epochs + 1):
            if stopped == 'min_lr':
                break
            t0 = time.time()
            sampler.set_epoch(epoch)
            train_loader.dataset.set_epoch(epoch)
            state = EpochState()
            sampler.skip = 0
            if partial is not None and partial['epoch'] == epoch:
                if (partial.get('batch_size') == args.batch_size
                        and partial.get('world_size') == info.world_size):
                    sampler.skip = partial['batches_done'] * args.batch_size
                    state = EpochState(
                        loss_sum=partial['loss_sum'] if info.is_main else 0.,
                        steps=partial['steps'] if info.is_main else 0,
                        batches_done=partial['batches_done'], skipped=partial['skipped'],
                        nonfinite_in_a_row=partial['nonfinite_in_a_row'])
                else:
                    _say(info, 'the batch size or number of processes changed: epoch %d '
                               'restarts from its beginning' % epoch)
            partial = None
            bar = _bar(show, total=len(train_loader) + state.batches_done,
                       initial=state.batches_done, desc='epoch %d train' % epoch, leave=False)
            state = train_one_epoch(network, train_loader, criterion, optimizer, info, epoch,
                                    state, flag, bar)
            if bar is not None:
                bar.close()
            if state.interrupted:
                loss_sum, steps = all_reduce_sum([state.loss_sum, state.steps], info)
                save(epoch - 1, {'epoch': epoch, 'batches_done': state.batches_done,
                                 'loss_sum': loss_sum, 'steps': int(steps),
                                 'skipped': state.skipped,
                                 'nonfinite_in_a_row': state.nonfinite_in_a_row,
                                 'batch_size': args.batch_size,
                                 'world_size': info.world_size})
                raise Interrupted(os.path.join(model_dir, CHECKPOINT_NAME))
            average_buffers(model, info)
            loss_sum, steps = all_reduce_sum([state.loss_sum, state.steps], info)
            train_loss = loss_sum / steps if steps else float('nan')
            skipped_total += state.skipped

            bar = _bar(show, total=len(val_set), desc='epoch %d val' % epoch, leave=False)
            val_loss, val_acc, _ = evaluate(model, val_loader, criterion, info, chunk, bar)
            if bar is not None:
                bar.close()
            improved = val_loss < best['loss']
            if improved:
                best = {'loss': val_loss, 'acc': val_acc, 'epoch': epoch}
            if scheduler is not None:
                scheduler.step(val_loss)
            lr = optimizer.param_groups[0]['lr']
            row = dict(epoch=epoch, train_loss=train_loss, val_loss=val_loss, val_acc=val_acc,
                       lr=lr, skipped_batches=skipped_total, best_epoch=best['epoch'],
                       seconds=round(time.time() - t0, 3))
            if info.is_main:
                log.epoch(row)
                log.frontend(model._frontend, epoch, frontend_output())
                log.flush()
            save(epoch, also_best=improved)
            last_epoch = epoch
            _say(info, 'epoch %d: train loss %.4f, val loss %.4f, val acc %.2f %%, lr %.3g, '
                       '%.1f s%s%s' % (epoch, train_loss, val_loss, 100 * val_acc, lr,
                                       row['seconds'], ' (best)' if improved else '',
                                       ', %d non-finite batches skipped' % skipped_total
                                       if skipped_total else ''), show)
            if epoch_bar is not None:
                epoch_bar.update()
                epoch_bar.set_postfix(val_loss='%.4f' % val_loss,
                                      val_acc='%.1f%%' % (100 * val_acc), refresh=False)
            # a signal that arrived during evaluation: stop after this epoch's checkpoint
            # (on every rank, if any rank got it)
            if all_reduce_sum([1. if flag.requested else 0.], info)[0]:
                raise Interrupted(os.path.join(model_dir, CHECKPOINT_NAME))
            if lr_too_low():
                stopped = 'min_lr'
                _say(info, 'learning rate %.3g fell below --min-lr %.3g: stopping'
                     % (lr, args.min_lr), show)
                break
    if epoch_bar is not None:
        epoch_bar.close()

    # --- test the last and the best model ---------------------------------------------------
    if info.is_main:
        ckpt_lib.save_atomic({'epoch': last_epoch, 'network': model.state_dict(),
                              'optimizer': optimizer.state_dict(),
                              'scheduler': scheduler.state_dict() if scheduler else None,
                              'format': ckpt_lib.FORMAT, 'args': dict(vars(args)),
                              'num_classes': num_classes},
                             os.path.join(model_dir, LAST_NAME))
    results = {'model_dir': model_dir, 'description': _describe(args), 'stopped': stopped,
               'skipped_batches': skipped_total, 'world_size': info.world_size}
    results['last'] = _test_model(model, val_loader, test_loader, criterion, info, chunk,
                                  last_epoch, show, val_set, test_set)
    best_file = os.path.join(model_dir, BEST_NAME)
    best_state = None
    if info.is_main and os.path.exists(best_file):
        best_state = ckpt_lib.load_checkpoint(best_file)['network']
    best_state = broadcast_object(best_state, info)
    if best_state is not None:
        model.load_state_dict(best_state)
        model.to(info.device)
        results['best'] = _test_model(model, val_loader, test_loader, criterion, info, chunk,
                                      best['epoch'], show, val_set, test_set)
    results['seconds'] = round(time.time() - t_start, 1)
    if info.is_main:
        write_json(results, os.path.join(model_dir, 'results.json'))
        log.scalars({'loss/test_last': results['last']['test_loss'],
                     'acc/test_last': results['last']['test_acc']}, last_epoch)
        if 'best' in results:
            log.scalars({'loss/test_best': results['best']['test_loss'],
                         'acc/test_best': results['best']['test_acc']},
                        results['best']['epoch'] or 0)
        log.close()
        print(format_results(results), flush=True)
    return results


def _test_model(model, val_loader, test_loader, criterion, info, chunk, epoch, show,
                val_set, test_set):
    out = {'epoch': epoch}
    for name, loader, ds in (('val', val_loader, val_set), ('test', test_loader, test_set)):
        bar = _bar(show, total=len(ds), desc='%s (epoch %s)' % (name, epoch), leave=False)
        loss, acc, n = evaluate(model, loader, criterion, info, chunk, bar)
        if bar is not None:
            bar.close()
        out.update({'%s_loss' % name: loss, '%s_acc' % name: acc, '%s_recordings' % name: n})
    return out


def format_results(results: dict) -> str:
    """The results as a small table: best-by-validation and last model."""
    lines = ['results: %s (%s)' % (results['description'], results['model_dir']),
             '  %-24s %6s %9s %8s %9s %8s' % ('model', 'epoch', 'val loss', 'val acc',
                                               'test loss', 'test acc')]
    for key, label in (('best', 'best (lowest val loss)'), ('last', 'last')):
        r = results.get(key)
        if r is None:
            continue
        lines.append('  %-24s %6s %9.4f %7.2f%% %9.4f %7.2f%%' % (
            label, r['epoch'], r['val_loss'], 100 * r['val_acc'], r['test_loss'],
            100 * r['test_acc']))
    if results.get('skipped_batches'):
        lines.append('  %d non-finite training batches were skipped'
                     % results['skipped_batches'])
    return '\n'.join(lines)


def _error(prog, exc) -> int:
    print('%s: error: %s' % (prog, exc), file=sys.stderr, flush=True)
    return 2


USER_ERRORS = (UsageError, data_lib.DataError, ckpt_lib.CheckpointError,
               EncoderUnavailableError, runlock.RunLockedError)


def main(argv=None) -> int:
    """``eleaf train`` / ``python -m eleaf.train``; returns the exit status (0 done, 1
    diverged, 2 bad options or checkpoint, 130 interrupted by Ctrl-C)."""
    argv = expand_preset(sys.argv[1:] if argv is None else list(argv))
    parser = get_args_parser()
    args = parser.parse_args(argv)
    explicit = explicit_options(parser, argv)
    _setup_logging()
    try:
        if args.extract_frontend:
            src, out = args.extract_frontend
            state = ckpt_lib.extract_frontend(src, out, trust=args.trust_checkpoint)
            desc = ckpt_lib.frontend_description(
                ckpt_lib.load_checkpoint(src, trust=args.trust_checkpoint))
            print('wrote %d frontend tensors of %s to %s%s' % (
                len(state), src, out,
                '\nload with: frontend = %s; frontend.load_state_dict(torch.load(%r))'
                % (desc, out) if desc else ''))
            return 0
        if args.compare_frontends:
            from .compare import compare
            compare(args, explicit, run)
            return 0
        run(args, explicit)
    except USER_ERRORS as exc:
        return _error('eleaf train', exc)
    except TrainingDiverged as exc:
        print('eleaf train: error: %s' % exc, file=sys.stderr, flush=True)
        return 1
    except Interrupted as exc:
        print('interrupted: saved %s; continue with --resume %s' % (exc.path, exc.path),
              flush=True)
        return 130
    except KeyboardInterrupt:
        print('interrupted: the last checkpoint holds the last complete epoch (--resume '
              'auto continues from it)', file=sys.stderr, flush=True)
        return 130
    return 0


def eval_main(argv=None) -> int:
    """``eleaf eval --checkpoint FILE``: test a checkpoint; prints (and with ``--output``
    writes) the loss and accuracy of the chosen split(s)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = get_args_parser(eval_mode=True)
    args = parser.parse_args(argv)
    explicit = explicit_options(parser, argv)
    _setup_logging()
    try:
        _check_args(args)
        ckpt = ckpt_lib.load_checkpoint(args.checkpoint, trust=args.trust_checkpoint)
        if not ckpt_lib.is_original_format(ckpt):
            _apply_stored_options(args, ckpt, explicit, args.checkpoint,
                                  names=set(MODEL_OPTIONS) | set(DATA_OPTIONS))
        train_set, val_set, test_set, num_classes = data_lib.build_datasets(args)
        info = DistInfo(device=torch.device(args.device))
        torch.manual_seed(0)
        model = build_model(args, num_classes)
        ckpt_lib.load_network(model, ckpt['network'], args.checkpoint)
        model.to(info.device)
        args.seed = args.seed or 1
        _, val_loader, test_loader, _ = data_lib.build_loaders(
            args, train_set, val_set, test_set, args.seed, pin_memory=args.pin_mem)
    except USER_ERRORS as exc:
        return _error('eleaf eval', exc)
    criterion = torch.nn.CrossEntropyLoss(reduction='none')
    chunk = args.batch_size_eval or args.batch_size
    out = {'checkpoint': args.checkpoint, 'epoch': ckpt.get('epoch'),
           'description': _describe(args)}
    splits = ('val', 'test') if args.split == 'both' else (args.split,)
    print('%s, epoch %s: %s' % (args.checkpoint, ckpt.get('epoch'), _describe(args)))
    for name in splits:
        loader, ds = (val_loader, val_set) if name == 'val' else (test_loader, test_set)
        bar = _bar(args.progress, total=len(ds), desc=name, leave=False)
        loss, acc, n = evaluate(model, loader, criterion, info, chunk, bar)
        if bar is not None:
            bar.close()
        out.update({'%s_loss' % name: loss, '%s_acc' % name: acc, '%s_recordings' % name: n})
        print('  %-5s loss %.4f, accuracy %.2f %% (%d recordings)' % (name, loss, 100 * acc, n))
    if args.output:
        write_json(out, args.output)
    return 0
