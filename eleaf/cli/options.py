"""Option checks and the help format shared by the command-line tools."""
import argparse

import torch

__all__ = ['UsageError', 'parse_device', 'HelpFormatter', 'EXTRAS', 'install_hint',
           'require', 'missing_dependency']

#: optional packages of the command-line tools -> the extra of setup.py that installs them
EXTRAS = {'soundfile': 'features', 'scipy': 'features', 'matplotlib': 'plot',
          'tqdm': 'train', 'efficientnet_pytorch': 'train', 'tensorboard': 'train',
          'triton': 'triton'}


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


def install_hint(what, module: str) -> str:
    """One line: that ``what`` (e.g. 'reading audio files'; None: something) needs the
    package ``module`` and how to install it (the extra of eleaf that has it)."""
    extra = EXTRAS.get(module)
    how = "pip install 'eleaf[%s]'" % extra if extra else 'pip install %s' % module
    if what is None:
        return 'the package %s is not installed: %s' % (module, how)
    return '%s needs the package %s: %s' % (what, module, how)


def require(what: str, *modules: str) -> None:
    """UsageError (:func:`install_hint`) for the first of ``modules`` that is not
    installed."""
    import importlib.util
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise UsageError(install_hint(what, module))


def missing_dependency(exc: BaseException):
    """The optional package (a key of :data:`EXTRAS`) whose absence caused ``exc``, an
    ImportError or one raised from it, or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, ImportError) and (exc.name or '').split('.')[0] in EXTRAS:
            return exc.name.split('.')[0]
        exc = exc.__cause__ or exc.__context__
    return None
