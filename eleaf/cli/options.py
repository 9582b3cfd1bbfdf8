"""Option checks and the help format shared by the command-line tools."""
import argparse

import torch

__all__ = ['UsageError', 'parse_device', 'HelpFormatter']


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with every option's default: ``(default: VALUE)`` appended unless the help
    text already says what the default is, or the option is a flag that is off unless given
    or has no value by default (``None``: its help says what happens without it)."""

    def _get_help_string(self, action):
        text = action.help or ''
        if ('default' in text.lower() or action.default in (None, argparse.SUPPRESS)
                or isinstance(action, (argparse._StoreTrueAction, argparse._HelpAction,
                                       argparse._VersionAction))
                or not action.option_strings):
            return text
        return (text + ' ' if text else '') + '(default: %(default)s)'


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
