"""Option checks shared by the command-line tools."""
import torch

__all__ = ['UsageError', 'parse_device']


class UsageError(ValueError):
    """An option value (or a file named by one) that cannot work."""


def parse_device(name: str) -> torch.device:
    """The ``torch.device`` of a ``--device`` value; UsageError when it is malformed or names
    CUDA without a CUDA device."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise UsageError('--device %r: %s' % (name, exc)) from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UsageError('--device %s: no CUDA device is available to torch %s; use '
                         '--device cpu' % (name, torch.__version__))
    return device
