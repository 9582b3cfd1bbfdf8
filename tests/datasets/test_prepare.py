"""``eleaf data`` and eleaf.datasets.prepare: steps, validation counts, the downloader
(resume, checksum) against a local HTTP server, downloads of Speech Commands and CREMA-D,
unpacking of VoxForge archives."""
import hashlib
import http.server
import io
import os
import re
import tarfile
import threading
from contextlib import contextmanager, redirect_stdout

import pytest

from eleaf.cli import data as data_cli
from eleaf.datasets import prepare, registry

from . import fake_layouts
from .helpers import original_grouped_split


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` {path: bytes}; honours ``Range: bytes=N-`` unless
    ``server.ignore_range``; records (path, Range header) in ``server.requests``."""

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get('Range')))
        body = srv.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r'bytes=(\d+)-', self.headers.get('Range') or '')
        if match and not srv.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header('Content-Range', 'bytes */%d' % len(body))
                self.end_headers()
                return
            self.send_response(206)
            self.send_header('Content-Range', 'bytes %d-%d/%d' % (start, len(body) - 1,
                                                                 len(body)))
        else:
            self.send_response(200)
        self.send_header('Content-Length', str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@contextmanager
def serve(files, ignore_range=False):
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
    server.files, server.ignore_range, server.requests = files, ignore_range, []
    thread = threading.Thread(target=server.serve_forever, kwargs={'poll_interval': 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server, 'http://127.0.0.1:%d' % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


PAYLOAD = bytes(range(256)) * 40  # 10 KiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def run_cli(*argv):
    out = io.StringIO()
    with redirect_stdout(out):
        rc = data_cli.main(list(argv))
    return rc, out.getvalue()


# --- the downloader ----------------------------------------------------------------------

def test_download_fetches_and_verifies(tmp_path):
    dest = str(tmp_path / 'sub' / 'file.bin')
    with serve({'/f': PAYLOAD}) as (server, url):
        assert prepare.download(url + '/f', dest, SHA, len(PAYLOAD), progress=False) == dest
        assert server.requests == [('/f', None)]
        # a present file counts as verified: nothing is fetched again
        prepare.download(url + '/f', dest, SHA, len(PAYLOAD), progress=False)
        assert len(server.requests) == 1
    assert open(dest, 'rb').read() == PAYLOAD and not os.path.exists(dest + '.part')


@pytest.mark.parametrize('size', [len(PAYLOAD), None])
def test_download_resumes_a_partial_file(tmp_path, size):
    dest = str(tmp_path / 'file.bin')
    with open(dest + '.part', 'wb') as f:
        f.write(PAYLOAD[:3000])
    with serve({'/f': PAYLOAD}) as (server, url):
        prepare.download(url + '/f', dest, SHA, size, progress=True)
    assert server.requests == [('/f', 'bytes=3000-')]
    assert open(dest, 'rb').read() == PAYLOAD and not os.path.exists(dest + '.part')


def test_download_restarts_when_the_server_ignores_the_range(tmp_path):
    dest = str(tmp_path / 'file.bin')
    with open(dest + '.part', 'wb') as f:
        f.write(b'x' * 3000)  # not even the right bytes
    with serve({'/f': PAYLOAD}, ignore_range=True) as (server, url):
        prepare.download(url + '/f', dest, SHA, len(PAYLOAD), progress=False)
    assert server.requests == [('/f', 'bytes=3000-')]
    assert open(dest, 'rb').read() == PAYLOAD


def test_download_of_a_complete_part_only_verifies(tmp_path):
    dest, other = str(tmp_path / 'file.bin'), str(tmp_path / 'other.bin')
    for path in (dest, other):
        with open(path + '.part', 'wb') as f:
            f.write(PAYLOAD)
    with serve({'/f': PAYLOAD}) as (server, url):
        prepare.download(url + '/f', dest, SHA, len(PAYLOAD), progress=False)
        assert server.requests == []
        # size unknown: the server answers 416 to the range past the end
        prepare.download(url + '/f', other, SHA, None, progress=False)
        assert server.requests == [('/f', 'bytes=%d-' % len(PAYLOAD))]
    for path in (dest, other):
        assert open(path, 'rb').read() == PAYLOAD and not os.path.exists(path + '.part')


def test_checksum_mismatch_raises_and_keeps_nothing(tmp_path):
    dest = str(tmp_path / 'file.bin')
    with open(dest + '.part', 'wb') as f:
        f.write(b'y' * 1000)  # wrong bytes that a resume would keep
    with serve({'/f': PAYLOAD}) as (server, url):
        with pytest.raises(prepare.DownloadError, match='checksum mismatch'):
            prepare.download(url + '/f', dest, SHA, len(PAYLOAD), progress=False)
        assert not os.path.exists(dest) and not os.path.exists(dest + '.part')
        # the next attempt starts from scratch and succeeds
        prepare.download(url + '/f', dest, SHA, len(PAYLOAD), progress=False)
        assert server.requests[-1] == ('/f', None)
    assert open(dest, 'rb').read() == PAYLOAD


def test_http_errors_raise_download_error(tmp_path):
    with serve({}) as (_, url):
        with pytest.raises(prepare.DownloadError, match='404'):
            prepare.download(url + '/missing', str(tmp_path / 'x'), SHA, progress=False)
    assert os.listdir(str(tmp_path)) == []


# --- data set downloads ------------------------------------------------------------------

def test_prepare_download_speechcommands_end_to_end(tmp_path, monkeypatch):
    staging = str(tmp_path / 'staging')
    fake = fake_layouts.make_speechcommands(staging)
    root = os.path.join(staging, 'SpeechCommands', 'speech_commands_v0.02')
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode='w:gz') as tar:  # flat, like the real archive
        for entry in sorted(os.listdir(root)):
            tar.add(os.path.join(root, entry), arcname=entry)
    body = archive.getvalue()
    data_path = str(tmp_path / 'data')
    with serve({'/data/speech_commands_v0.02.tar.gz': body}) as (server, url):
        monkeypatch.setattr(prepare, 'SPEECHCOMMANDS_ARCHIVE', prepare.Remote(
            url + '/data/speech_commands_v0.02.tar.gz', len(body),
            hashlib.sha256(body).hexdigest()))
        rc, out = run_cli('prepare', 'speechcommands', '--data-path', data_path, '--download',
                          '--no-progress')
        assert rc == 0, out
        rc, again = run_cli('prepare', 'SPEECHCOMMANDS', '--data-path', data_path,
                            '--download', '--no-progress')
        assert rc == 0 and len(server.requests) == 1
    assert 'nothing to download' in again
    counts = {s: sum(1 for v in fake.splits.values() if v == s) for s in ('train', 'val', 'test')}
    assert re.search(r'\n  total +%d +%d +%d\n' % (counts['train'], counts['val'],
                                                   counts['test']), out), out
    train, val, test, n = registry.build('SPEECHCOMMANDS', data_path)
    assert (len(train), len(val), len(test), n) == (counts['train'], counts['val'],
                                                    counts['test'], 35)


def test_prepare_download_cremad_clip_by_clip(tmp_path, monkeypatch):
    staging = str(tmp_path / 'staging')
    fake = fake_layouts.make_cremad(staging)
    files, lines = {}, []
    for path in sorted(fake.labels):
        body = open(path, 'rb').read()
        route = '/media/CREMA-D/master/AudioWAV/' + os.path.basename(path)
        files[route] = body
        lines.append((route, len(body), hashlib.sha256(body).hexdigest()))
    data_path = str(tmp_path / 'data')
    audio = os.path.join(data_path, 'CREMA-D', 'AudioWAV')
    os.makedirs(audio)
    first = os.path.basename(sorted(fake.labels)[0])
    with open(os.path.join(audio, first), 'wb') as f:  # already there: not fetched again
        f.write(files['/media/CREMA-D/master/AudioWAV/' + first])
    with serve(files) as (server, url):
        listing = ''.join('%s%s\t%d\t%s\n' % (url, r, size, sha) for r, size, sha in lines)
        files['/checksums.txt'] = listing.encode()
        monkeypatch.setattr(prepare, 'CREMAD_CHECKSUMS', prepare.Remote(
            url + '/checksums.txt', len(listing), hashlib.sha256(listing.encode()).hexdigest()))
        messages = prepare.download_dataset('CREMAD', data_path, progress=False)
        fetched = [r for r, _ in server.requests if r.endswith('.wav')]
    assert len(fetched) == len(lines) - 1 and not any(r.endswith(first) for r in fetched)
    assert messages == ['%d clips in %s (%d fetched now)' % (len(lines), audio, len(lines) - 1)]
    assert sorted(os.listdir(audio)) == sorted(os.path.basename(p) for p in fake.labels)
    assert sum(len(ds) for ds in registry.build('CREMAD', data_path)[:3]) == len(fake.labels)


def test_prepare_download_unpacks_voxforge_archives(tmp_path):
    fake = fake_layouts.make_voxforge(str(tmp_path))
    before = registry.collect('VOXFORGE', fake.data_path)
    assert before.notes
    archive = fake_layouts.make_voxforge_archive(
        fake.data_path, 'IT', 'ghost-20160808-gone',
        {'it1-01.wav': fake_layouts.tone(330., 0.2), 'it1-02.wav': fake_layouts.tone(330., 0.3)})
    rc, out = run_cli('prepare', 'VOXFORGE', '--data-path', fake.data_path, '--download',
                      '--no-progress')  # the list exists: nothing is fetched
    assert rc == 0, out
    assert 'unpacked 1 archive(s)' in out and os.path.isfile(archive)
    session = os.path.join(fake.data_path, 'voxforge', 'ghost-20160808-gone_IT')
    assert sorted(os.listdir(session)) == ['it1-01.wav', 'it1-02.wav']
    after = registry.collect('VOXFORGE', fake.data_path)
    assert not after.notes
    split = original_grouped_split(fake.groups_listed)['ghost']
    new = [r for r in after.splits[split] if r.group == 'ghost']
    assert len(new) == 2 and {r.label for r in new} == {4}  # IT
    for s in ('train', 'val', 'test'):  # the other speakers keep their split
        assert [r for r in after.splits[s] if r.group != 'ghost'] == before.splits[s]


# --- eleaf data prepare / list -----------------------------------------------------------

def test_prepare_validates_a_copy_and_prints_the_counts(tmp_path):
    fake = fake_layouts.make_cremad(str(tmp_path))
    rc, out = run_cli('prepare', 'cremad', '--data-path', fake.data_path, '--no-progress')
    assert rc == 0, out
    assert 'git clone https://github.com/CheyneyComputerScience/CREMA-D.git' in out
    split_of = original_grouped_split(fake.groups_listed)
    for emotion in fake_layouts.CREMAD_EMOTIONS:
        want = [sum(1 for p, e in fake.labels.items()
                    if e == emotion and split_of[fake.groups[p]] == s)
                for s in ('train', 'val', 'test')]
        assert re.search(r'\n  %s +%d +%d +%d\n' % ((emotion,) + tuple(want)), out), emotion
    assert 'unreadable files: 1' in out and '%s: ' % fake.corrupt in out


def test_prepare_of_a_missing_copy_prints_the_steps(tmp_path):
    rc, out = run_cli('prepare', 'BIRDCLEF2021', '--data-path', str(tmp_path))
    assert rc == 1
    where = os.path.join(str(tmp_path), 'birdclef2021')
    assert 'expected at %s' % where in out
    assert 'kaggle competitions download -c birdclef-2021' in out
    assert 'BIRDCLEF2021 not found' in out and where in out.splitlines()[-1]


def test_prepare_download_refuses_data_sets_without_checksums(tmp_path):
    rc, out = run_cli('prepare', 'NSYNTH_PITCH', '--data-path', str(tmp_path), '--download')
    assert rc == 1
    assert 'nsynth-SPLIT.jsonwav.tar.gz' in out and 'cannot be downloaded by eleaf' in out
    assert not os.listdir(str(tmp_path))


def test_data_list_and_usage_errors(tmp_path):
    fake_layouts.make_nsynth(str(tmp_path))
    rc, out = run_cli('list', '--data-path', str(tmp_path))
    assert rc == 0
    header, *lines = out.splitlines()
    assert re.split(r'\s{2,}', header) == ['name', 'classes', 'download', 'present',
                                          'expected at']
    rows = {cols[0]: cols for cols in (re.split(r'\s{2,}', line) for line in lines)}
    assert list(rows) == list(registry.NAMES)
    for name, (_, _, download, present, where) in rows.items():
        assert download == ('yes' if name in ('SPEECHCOMMANDS', 'CREMAD', 'VOXFORGE') else 'no')
        assert present == ('yes' if name.startswith('NSYNTH') else 'no')
        assert where == os.path.abspath(registry.location(name, str(tmp_path)))
    assert run_cli('prepare', 'TIMIT')[0] == 2
