"""File names and text lines that are not valid UTF-8.

On POSIX a file name is bytes; Python hands names that are not valid UTF-8 to programs as
``str`` with each undecodable byte kept as a lone surrogate (``surrogateescape``, PEP 383).
The data set loaders read their list files (split lists, metadata tables, URL lists) the same
way, so a list line names exactly the file whose name has those bytes; such names then
reach the audio reader as the original bytes, and every message shows them with the odd
bytes as ``\\xNN`` escapes, printable on any terminal.
"""
import io
import logging
import os
import sys
from typing import List

__all__ = ['open_text', 'read_lines', 'display', 'printable', 'fs_path']

logger = logging.getLogger('eleaf.datasets')


def open_text(path: str, newline=None) -> io.TextIOWrapper:
    """``open(path)`` for reading UTF-8 text that may hold bytes that are not UTF-8: they
    become surrogates, as in file names (see the module docstring)."""
    return open(path, encoding='utf-8', errors='surrogateescape', newline=newline)


def has_undecodable(text: str) -> bool:
    """Whether ``text`` holds bytes that were not UTF-8 (lone surrogates)."""
    try:
        text.encode('utf-8')
    except UnicodeEncodeError:
        return True
    return False


def read_lines(path: str, what: str = '') -> List[str]:
    """The lines of text file ``path`` without their line ends (see :func:`open_text`); one
    warning names the lines that are not valid UTF-8."""
    with open_text(path) as f:
        lines = f.read().splitlines()
    bad = [i + 1 for i, line in enumerate(lines) if has_undecodable(line)]
    if bad:
        logger.warning('%s%s: %d line(s) are not valid UTF-8 (line %s%s, e.g. %s); they are '
                       'read with those bytes kept, so they match files named with the same '
                       'bytes', what + ': ' if what else '', display(path), len(bad),
                       ', '.join(str(n) for n in bad[:5]), ', ...' if len(bad) > 5 else '',
                       display(lines[bad[0] - 1]))
    return lines


def display(text) -> str:
    """``text`` (a str, possibly with surrogate-escaped bytes, or bytes) with every byte that
    is not UTF-8 written as ``\\xNN``: safe to print on a UTF-8 terminal."""
    if isinstance(text, bytes):
        raw = text
    else:
        raw = str(text).encode('utf-8', 'surrogateescape')
    return raw.decode('utf-8', 'backslashreplace')


def printable(text: str, stream=None) -> str:
    """:func:`display`, further escaped (``\\uNNNN``) where ``stream``'s encoding (default
    stdout's) cannot write a character, so that printing it never raises."""
    text = display(text)
    stream = sys.stdout if stream is None else stream
    encoding = getattr(stream, 'encoding', None) or 'utf-8'
    try:
        return text.encode(encoding, 'backslashreplace').decode(encoding)
    except LookupError:
        return text.encode('ascii', 'backslashreplace').decode('ascii')


def fs_path(path):
    """``path`` as the audio reader should get it: its bytes on POSIX (libsndfile's Python
    binding encodes a str strictly, which fails on names that are not UTF-8), as is
    elsewhere."""
    if isinstance(path, str) and os.name == 'posix':
        return os.fsencode(path)
    return path
