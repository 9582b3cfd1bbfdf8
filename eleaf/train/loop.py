"""Training and evaluation loops of ``eleaf train`` (the paper's recipe, SPEC §9).

- Training: cross-entropy, one Adam step per batch; a batch with a non-finite loss is
  skipped (no step; counted), and the 5th non-finite batch in a row raises
  :class:`TrainingDiverged`.
- Evaluation: every recording is cut into windows (``data.EvalWindows``); a recording's loss
  is the mean of its windows' losses, its prediction the argmax of the mean of its windows'
  logits; loss and accuracy are means over recordings (summed over ranks).
- Ctrl-C (SIGINT) or SIGTERM sets a flag that the training loop reads with each batch's loss
  (all ranks agree on it); the run then saves a checkpoint that resumes exactly where it
  stopped. A second Ctrl-C interrupts at once (single process).
"""
import signal
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from .distributed import DistInfo, all_reduce_sum

__all__ = ['TrainingDiverged', 'StopFlag', 'EpochState', 'train_one_epoch', 'evaluate',
           'MAX_NONFINITE_IN_A_ROW']

#: the original raises at the 5th consecutive non-finite training loss
MAX_NONFINITE_IN_A_ROW = 5

#: test hook: called as ``_step_hook(epoch, batches_done)`` after every training batch
_step_hook: Optional[Callable[[int, int], None]] = None


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite training losses."""


class StopFlag:
    """SIGINT/SIGTERM handler for the duration of a ``with`` block: the first signal sets
    :attr:`requested`; a second Ctrl-C raises ``KeyboardInterrupt``, except with
    ``repeat_aborts=False`` (multi-process runs: torchrun forwards the terminal's Ctrl-C to
    its workers, which then see it twice). Outside the main thread it installs nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, message: Callable[[], None] = lambda: None, repeat_aborts: bool = True):
        self.requested = False
        self._message = message
        self._repeat_aborts = repeat_aborts
        self._previous = {}

    def _handler(self, signum, frame):
        if self.requested:
            if self._repeat_aborts and signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.requested = True
        self._message()

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        return False


@dataclass
class EpochState:
    """Running sums of one training epoch (what an interrupted epoch's checkpoint keeps)."""
    loss_sum: float = 0.
    steps: int = 0             # batches with an optimizer step
    batches_done: int = 0      # batches consumed on this rank, skipped ones included
    skipped: int = 0           # non-finite batches of this epoch
    nonfinite_in_a_row: int = 0
    interrupted: bool = False
    extra: dict = field(default_factory=dict)


def train_one_epoch(network: torch.nn.Module, loader, criterion, optimizer, info: DistInfo,
                    epoch: int, state: EpochState, stop: Optional[StopFlag] = None,
                    progress=None) -> EpochState:
    """One pass over ``loader`` (continuing ``state`` of a resumed epoch).

    Args:
        network: the model (DDP-wrapped when distributed), in train mode afterwards.
        loader: yields (x (B, 1, L), labels (B,)).
        criterion: per-item loss, ``reduction='none'``.
    Returns:
        ``state`` with ``interrupted`` set when the stop flag ended the epoch early.
    """
    network.train()
    device = info.device
    for x, y in loader:
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        loss = criterion(network(x), y).mean()
        value = loss.item()
        bad = 0. if torch.isfinite(loss) else 1.
        requested = 1. if (stop is not None and stop.requested) else 0.
        if info.enabled:  # every rank skips, steps and stops together
            bad, requested = all_reduce_sum([bad, requested], info)
        if bad:
            state.skipped += 1
            state.nonfinite_in_a_row += 1
            if state.nonfinite_in_a_row >= MAX_NONFINITE_IN_A_ROW:
                raise TrainingDiverged(
                    'training diverged: %d non-finite training losses in a row (epoch %d, '
                    'batch %d); lower --lr, use --pcen-learn-logs with PCEN, or resume from '
                    'an earlier checkpoint' % (state.nonfinite_in_a_row, epoch,
                                               state.batches_done + 1))
        else:
            state.nonfinite_in_a_row = 0
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            state.loss_sum += value
            state.steps += 1
        state.batches_done += 1
        if progress is not None:
            progress.update()
            progress.set_postfix(loss='%.4f' % value, refresh=False)
        if _step_hook is not None:
            _step_hook(epoch, state.batches_done)
        if requested:
            state.interrupted = True
            break
    return state


@torch.no_grad()
def evaluate(network: torch.nn.Module, loader, criterion, info: DistInfo,
             chunk: int, progress=None):
    """Windowed evaluation over all ranks' shards.

    Args:
        network: the unwrapped model (never the DDP wrapper: shards differ in size).
        loader: yields (windows (N, 1, L), labels (B,), counts (B,), indices (B,)); a
            recording with count 0 (an unreadable file) is left out.
        chunk (int): most windows per forward.
    Returns:
        (mean loss, accuracy, number of recordings evaluated), over all ranks.
    """
    network.eval()
    device = info.device
    loss_sum = correct = count = 0.
    for windows, labels, counts, _ in loader:
        if not bool((counts > 0).all()):
            labels, counts = labels[counts > 0], counts[counts > 0]
            if len(labels) == 0:
                continue
        windows = windows.to(device, non_blocking=True)
        labels = labels.to(device)
        counts = counts.to(device)
        logits = torch.cat([network(w) for w in windows.split(chunk)])
        owner = torch.repeat_interleave(torch.arange(len(labels), device=device), counts)
        losses = criterion(logits, labels[owner]).float()
        rec_loss = torch.zeros(len(labels), device=device).index_add_(0, owner, losses)
        rec_logits = torch.zeros(len(labels), logits.shape[1], device=device,
                                 dtype=logits.dtype).index_add_(0, owner, logits)
        rec_loss = rec_loss / counts
        rec_logits = rec_logits / counts[:, None]
        loss_sum += rec_loss.sum().item()
        correct += (rec_logits.argmax(-1) == labels).sum().item()
        count += len(labels)
        if progress is not None:
            progress.update(len(labels))
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], info)
    if count == 0:
        return float('nan'), float('nan'), 0
    return loss_sum / count, correct / count, int(count)
