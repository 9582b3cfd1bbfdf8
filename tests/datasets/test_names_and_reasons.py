"""File names and list lines that are not UTF-8, and unreadable files whose reason says what is
wrong (issue #22): they are read and reported, never crash (also printing on a strict UTF-8
or ASCII stdout)."""
import io
import logging
import os
import sys
import subprocess

import pytest

from eleaf.datasets import prepare, registry
from eleaf.datasets.audio import AudioError, check_audio, load_audio
from eleaf.datasets.text import display, printable, read_lines

from .fake_layouts import make_speechcommands, tone, write

pytestmark = pytest.mark.skipif(os.name != 'posix', reason='byte file names are POSIX')

#: 'café' in Latin-1: not UTF-8
LATIN1 = b'caf\xe9'
NAME = os.fsdecode(LATIN1 + b'_nohash_0.wav')


def _speechcommands_with_latin1(tmp_path):
    """The fake Speech Commands copy plus a valid WAV named with Latin-1 bytes, listed in
    validation_list.txt with those same bytes."""
    data = str(tmp_path)
    fake = make_speechcommands(data)
    root = os.path.join(data, 'SpeechCommands', 'speech_commands_v0.02')
    path = os.path.join(root, 'bed', NAME)
    write(os.fsencode(path), tone(300., 0.2))  # soundfile takes a str name as UTF-8 only
    with open(os.path.join(root, 'validation_list.txt'), 'ab') as f:
        f.write(b'bed/' + LATIN1 + b'_nohash_0.wav\n')
    return fake, root, path


def test_latin1_list_line_and_file_name_are_read(tmp_path, caplog):
    fake, root, path = _speechcommands_with_latin1(tmp_path)
    with caplog.at_level(logging.WARNING, logger='eleaf.datasets'):
        found = registry.collect('SPEECHCOMMANDS', str(tmp_path))
    val = {r.path: r for r in found.splits['val']}
    assert path in val and found.classes[val[path].label] == 'bed'
    assert 'line(s) are not valid UTF-8' in caplog.text and 'caf\\xe9_nohash_0.wav' in caplog.text
    x = load_audio(path, 16000)  # the valid WAV is read, not dropped as unreadable
    assert x.shape == (3200,)
    check_audio(path)
    report = prepare.validate('SPEECHCOMMANDS', str(tmp_path))
    assert [p for p, _ in report.unreadable] == [fake.corrupt]


def test_prepare_prints_on_a_strict_stdout(tmp_path):
    """`eleaf data prepare` on a copy holding an unreadable file with a Latin-1 name, with
    stdout strictly UTF-8 and strictly ASCII."""
    _, root, path = _speechcommands_with_latin1(tmp_path)
    with open(path, 'wb') as f:
        f.write(b'not audio at all')
    code = ('import sys; from eleaf.cli.data import main; '
            'sys.exit(main(["prepare", "SPEECHCOMMANDS", "--data-path", sys.argv[1], '
            '"--no-progress"]))')
    for encoding in ('utf-8', 'ascii'):
        env = dict(os.environ, PYTHONIOENCODING=encoding + ':strict', PYTHONUTF8='0',
                   PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
                       os.path.abspath(__file__)))))
        proc = subprocess.run([sys.executable, '-c', code, str(tmp_path)], env=env,
                              capture_output=True)
        out = proc.stdout.decode(encoding)
        assert proc.returncode == 0, proc.stderr.decode('utf-8', 'replace')
        assert 'Traceback' not in proc.stderr.decode('utf-8', 'replace')
        assert 'bed/caf\\xe9_nohash_0.wav: ' in out, out
        assert 'unreadable files: 2' in out


def test_display_and_printable():
    assert display(os.fsdecode(b'a\xffb')) == 'a\\xffb'
    assert display(b'a\xffb') == 'a\\xffb'
    assert display('café') == 'café'
    ascii_stream = io.TextIOWrapper(io.BytesIO(), encoding='ascii')
    assert printable('café ' + os.fsdecode(b'\xff'), ascii_stream) == 'caf\\xe9 \\xff'


def test_read_lines_keeps_the_bytes(tmp_path, caplog):
    path = tmp_path / 'list.txt'
    path.write_bytes(b'ok\n' + LATIN1 + b'\n\xff\xfe\n')
    with caplog.at_level(logging.WARNING, logger='eleaf.datasets'):
        lines = read_lines(str(path), 'TEST')
    assert [os.fsencode(line) for line in lines] == [b'ok', LATIN1, b'\xff\xfe']
    assert 'TEST: ' in caplog.text and '2 line(s) are not valid UTF-8 (line 2, 3' in caplog.text


@pytest.mark.parametrize('kind, reason', [
    ('missing', 'no such file'),
    ('broken link', 'a broken symbolic link (to '),
    ('link loop', 'a symbolic link loop'),
    ('directory', 'a directory, not an audio file'),
    ('empty', 'an empty file (0 bytes)'),
])
def test_unreadable_reasons_say_what_is_wrong(tmp_path, kind, reason):
    path = str(tmp_path / 'x.wav')
    if kind == 'broken link':
        os.symlink(str(tmp_path / 'gone.wav'), path)
    elif kind == 'link loop':
        os.symlink(path, path)
    elif kind == 'directory':
        os.mkdir(path)
    elif kind == 'empty':
        open(path, 'wb').close()
    for fn in (lambda: load_audio(path, 16000), lambda: check_audio(path)):
        with pytest.raises(AudioError) as info:
            fn()
        assert info.value.reason.startswith(reason), info.value.reason
        assert 'System error' not in str(info.value)
