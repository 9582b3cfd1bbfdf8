"""``eleaf bench``: a tiny run writes valid JSON and a PNG, ``--compare`` prints ratios,
bad options fail with clear messages; and the helpers of ``eleaf.bench``."""
import json
import os
import subprocess
import sys

import pytest
import torch

from eleaf import bench as B
from eleaf.cli import bench as cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# smallest useful run: the mel baseline and one 8G-opt configuration, 1 x 0.5 s, 1 repeat
TINY = ['--quick', '--batch', '1', '--seconds', '0.5', '--frontends', '8G-opt', '--filters',
        '16', '--backends', 'torch,cpp', '--warmup', '0', '--repeats', '1', '--no-progress',
        '--memory']


def test_tiny_run_writes_json_and_png(tmp_path, capsys):
    out, png = tmp_path / 'r.json', tmp_path / 'r.png'
    assert cli.main(TINY + ['--json', str(out), '--plot', str(png)]) == 0
    text = capsys.readouterr().out
    assert 'x mel' in text and 'EfficientLeaf 8G-opt + LogTBN (16 filters)' in text
    data = json.loads(out.read_text())
    meta = data['meta']
    for field in ('date', 'device', 'device_name', 'cpu', 'threads', 'torch', 'triton',
                  'python', 'backends', 'command', 'sizes', 'timing', 'peak_memory'):
        assert field in meta, field
    assert meta['device'] == 'cpu' and meta['threads'] == torch.get_num_threads()
    assert meta['sizes'] == [[1, 0.5]]
    timed = [r for r in data['results'] if 'time_s' in r]
    # mel and 8G-opt on torch, both workloads; 8G-opt on cpp where it runs here
    assert {(r['frontend'], r['backend'], r['workload']) for r in timed
            if r['backend'] == 'torch'} == {
        (f, 'torch', w) for f in ('Mel', 'EfficientLeaf 8G-opt + LogTBN')
        for w in ('inference', 'train')}
    assert all(r['backend'] == 'cpp' and r['frontend'] != 'Mel'
               for r in timed if r['backend'] != 'torch')
    for r in timed:
        assert r['n_filters'] == 16 and r['batch'] == 1 and r['seconds'] == 0.5
        assert r['time_s'] > 0 and len(r['times']) == r['repeats'] == 1
        assert r['examples_per_s'] == pytest.approx(1 / r['time_s'])
        assert r['audio_s_per_s'] == pytest.approx(0.5 / r['time_s'])
        assert r['x_mel'] > 0
        assert isinstance(r['peak_bytes'], int) and r['peak_bytes'] >= 0
        assert r['peak_measure'] == 'subprocess_peak_rss_rise'
        if r['frontend'] == 'Mel':
            assert r['x_mel'] == 1
    for r in data['results']:
        assert 'time_s' in r or r.get('skipped'), r
    assert png.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def _fake(path, device, rows):
    results = [dict(frontend=f, backend=b, n_filters=40, batch=16, seconds=1, workload=w,
                    time_s=t, x_mel=x) for f, b, w, t, x in rows]
    path.write_text(json.dumps({'meta': {'device': device, 'device_name': 'fake',
                                         'threads': 2, 'torch': '2.x', 'date': 'today'},
                                'results': results}))
    return str(path)


def test_compare_prints_ratios(tmp_path, capsys):
    old = _fake(tmp_path / 'old.json', 'cpu', [('Mel', 'torch', 'train', 0.1, 1.0),
                                               ('Leaf + PCEN', 'torch', 'train', 1.0, 0.1),
                                               ('TFLeaf', 'torch', 'train', 2.0, 0.05)])
    new = _fake(tmp_path / 'new.json', 'cpu', [('Mel', 'torch', 'train', 0.1, 1.0),
                                               ('Leaf + PCEN', 'torch', 'train', 0.5, 0.2),
                                               ('Leaf + PCEN', 'cpp', 'train', 0.25, 0.4)])
    assert cli.main(['--compare', old, new]) == 0
    text = capsys.readouterr().out
    lines = {tuple(line.split()[:5]): line for line in text.splitlines()}
    assert '1.000' in lines[('Mel', 'torch', '16', 'x', '1s')]
    leaf = [l for l in text.splitlines() if l.startswith('Leaf + PCEN') and ' torch ' in l]
    assert len(leaf) == 1 and '2.000' in leaf[0]          # 0.5 s instead of 1 s
    assert '16.0' in leaf[0] and '32.0' in leaf[0]        # examples/s old and new
    assert 'geometric mean 1.414 over 2 common rows' in text
    assert any(l.startswith('TFLeaf') for l in text.splitlines())   # only in old: listed


def test_compare_rejects_non_result_files(tmp_path):
    bad = tmp_path / 'bad.json'
    bad.write_text('{"not": "results"}')
    with pytest.raises(SystemExit, match='not an eleaf bench result file'):
        cli.main(['--compare', str(bad), str(bad)])
    bad.write_text('{oops')
    with pytest.raises(SystemExit, match='cannot read'):
        cli.main(['--compare', str(bad), str(bad)])


@pytest.mark.parametrize('argv, message', [
    (['--batch', '0'], '--batch must be >= 1'),
    (['--seconds', '0.01'], '--seconds must be at least'),
    (['--seconds', 'nan'], '--seconds must be at least'),
    (['--filters', '0'], '--filters must be >= 1'),
    (['--repeats', '0'], '--repeats must be >= 1'),
    (['--backends', 'torch,jax'], '--backends: expected a comma-separated subset'),
    (['--workloads', 'eval'], '--workloads: expected a comma-separated subset'),
    (['--frontends', 'wav2vec'], "--frontends: 'wav2vec' matches no frontend"),
    (['--device', 'tpu'], '--device'),
    (['--json', '/nonexistent-dir/r.json'], 'no folder'),
    (['--compare', 'missing-old.json', 'missing-new.json'], 'no such file: missing-old.json'),
    (['--batch', 'many'], "invalid int value: 'many'"),
    (['--device', 'cpu', '--graph'], '--graph times CUDA graphs: it needs --device cuda'),
])
def test_bad_options(argv, message, capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(argv)
    assert err.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message without CUDA')
def test_cuda_without_cuda(capsys):
    with pytest.raises(SystemExit):
        cli.main(['--device', 'cuda'])
    assert 'CUDA is not available' in capsys.readouterr().err


def test_entry_point_lists_and_dispatches_bench(tmp_path):
    old = _fake(tmp_path / 'a.json', 'cpu', [('Mel', 'torch', 'inference', 0.2, 1.0)])
    new = _fake(tmp_path / 'b.json', 'cpu', [('Mel', 'torch', 'inference', 0.1, 1.0)])
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.run([sys.executable, '-m', 'eleaf', 'bench', '--compare', old, new],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
                          universal_newlines=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert 'geometric mean 2.000' in proc.stdout
    from eleaf.__main__ import COMMANDS
    assert COMMANDS['bench'][0] == 'eleaf.cli.bench'


def test_cases_sizes_and_ratios():
    cases = B.cases(backends=('torch', 'cpp'))
    assert cases[0] == B.Case('Mel', 'torch', 40)
    names = {(c.frontend, c.n_filters) for c in cases}
    for config in [('Leaf + PCEN', 40), ('Leaf + LogTBN', 40),
                   ('EfficientLeaf 4G wf4.75 + PCEN', 40),
                   ('EfficientLeaf 4G wf4.75 + LogTBN', 40),
                   ('EfficientLeaf 8G-opt + LogTBN', 40), ('EfficientLeaf 8G-opt + LogTBN', 80)]:
        assert config in names
    import eleaf
    assert (('TFLeaf', 40) in names) == hasattr(eleaf, 'TFLeaf')
    assert len(cases) == len(set(cases))
    only = B.cases(['8g'], ('torch',), n_filters=64)
    assert only == [B.Case('Mel', 'torch', 64),
                    B.Case('EfficientLeaf 8G-opt + LogTBN', 'torch', 64)]
    assert B.default_sizes('cpu') == [(16, 1), (2, 8)]
    assert B.default_sizes('cuda') == [(256, 1), (32, 8), (16, 16)]
    results = [dict(frontend='Mel', backend='torch', batch=2, seconds=8, workload='train',
                    time_s=0.5),
               dict(frontend='Leaf + PCEN', backend='torch', batch=2, seconds=8,
                    workload='train', time_s=2.0),
               dict(frontend='Leaf + PCEN', backend='cpp', skipped='no')]
    B.add_ratios(results)
    assert results[1]['x_mel'] == 0.25 and results[1]['examples_per_s'] == 1.0
    assert results[1]['audio_s_per_s'] == 8.0 and 'x_mel' not in results[2]
    # mel times paired with a result take precedence over the mel baseline's own result
    paired = results[:1] + [dict(results[1], mel_time_s=1.0)]
    B.add_ratios(paired)
    assert paired[1]['x_mel'] == 0.5 and paired[0]['x_mel'] == 1


def test_paired_times_alternate_in_blocks():
    # mel's block first, then the case's, at most PAIR_BLOCK calls each, until the case has
    # its repeats; each list holds one time per call
    calls = []
    times, mel_times = B.paired_times(lambda: calls.append('case'),
                                      lambda: calls.append('mel'), 'cpu', 12)
    assert len(times) == len(mel_times) == 12 == calls.count('case') == calls.count('mel')
    n = B.PAIR_BLOCK
    runs = [(c, len(list(g))) for c, g in __import__('itertools').groupby(calls)]
    assert runs == [('mel', n), ('case', n), ('mel', n), ('case', n),
                    ('mel', 12 - 2 * n), ('case', 12 - 2 * n)]
    assert all(t >= 0 for t in times + mel_times)


def test_run_pairs_every_case_with_mel(tmp_path, capsys):
    # every timed case but the mel baseline itself carries its own mel times, and its
    # x_mel is their median over its own
    import statistics
    out = tmp_path / 'r.json'
    assert cli.main(TINY + ['--no-memory', '--repeats', '3', '--json', str(out)]) == 0
    data = json.loads(out.read_text())
    assert 'alternates with the mel baseline' in data['meta']['timing']
    for r in data['results']:
        if 'time_s' not in r:
            continue
        if r['frontend'] == 'Mel' and r['backend'] == 'torch':
            assert 'mel_times' not in r and r['x_mel'] == 1
        else:
            assert len(r['mel_times']) == len(r['times']) == 3
            assert r['x_mel'] == pytest.approx(statistics.median(r['mel_times']) / r['time_s'])


def test_probe_skips_unrunnable_backends():
    # triton on CPU tensors would run in the interpreter only: never benchmarked
    reason = B.probe(B.Case('EfficientLeaf 8G-opt + LogTBN', 'triton', 40), 'cpu')
    assert reason and ('interpreter' in reason or 'triton' in reason)
    assert B.probe(B.Case('Mel', 'torch', 40), 'cpu') is None
    step = B.make_step(B.build(B.Case('Mel', 'torch', 40)), B.loudness_normalised(1, 0.1),
                       'inference')
    seconds, peak = B.measure(B.build(B.Case('Mel', 'torch', 40)),
                              B.loudness_normalised(1, 0.1), train=True, warmup=0, repeats=1)
    assert seconds > 0 and peak is None
    step()
    with pytest.raises(ValueError, match='workload'):
        B.make_step(B.build(B.Case('Mel', 'torch', 40)), B.loudness_normalised(1, 0.1), 'eval')


def test_frontend_ops_are_registered():
    """FRONTEND_OPS names real ops: the reference backend implements every one of them."""
    import eleaf
    reference = set(eleaf.backends()['torch']['ops'])
    for frontend in B.frontend_table():
        assert set(B.FRONTEND_OPS[frontend]) <= reference, frontend
    assert B.backend_ops(B.Case('Mel', 'torch', 40)) == ['log1p_median']
    for case in B.cases(backends=('cpp',)):
        if case.backend == 'cpp' and not B.backend_ops(case):
            assert 'no cpp implementation' in B.probe(case, 'cpu')


def test_table_shows_mel_time_of_every_row_and_what_x_mel_means(capsys):
    # one meaning of "x mel" (throughput relative to mel: mel ms / ms), checkable per row
    assert cli.main(TINY[:-1] + ['--no-memory']) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    header = next(l for l in lines if l.startswith('frontend'))
    cols = header.split()
    assert cols[4:7] == ['ms', 'mel', 'ms'] and 'x' in cols and 'peak' not in cols
    assert cli.X_MEL_NOTE in text and 'higher is faster' in cli.X_MEL_NOTE
    rows = [l for l in lines if ' x 0.5s ' in l]
    assert len(rows) == 6
    for row in rows:
        ms, mel_ms, x_mel = (float(v) for v in row.split()[-5:-2])
        assert x_mel == pytest.approx(mel_ms / ms, rel=0.01), row


def test_quick_measures_no_memory_unless_asked():
    parser = cli.build_parser()
    for argv, no_memory in ((['--quick'], True), ([], False), (['--quick', '--memory'], False),
                            (['--no-memory'], True)):
        args = parser.parse_args(argv)
        cli._check_args(parser, args)
        assert args.no_memory is no_memory, argv


def test_plot_says_what_x_mel_means(tmp_path, monkeypatch):
    plt = pytest.importorskip('matplotlib.pyplot')
    figures = []
    monkeypatch.setattr(plt.Figure, 'savefig', lambda fig, *a, **k: figures.append(fig))
    rows = [dict(frontend='Mel', backend='torch', n_filters=40, batch=1, seconds=1,
                 workload='train', time_s=0.01, x_mel=1.0),
            dict(frontend='Leaf + PCEN', backend='cpp', n_filters=40, batch=1, seconds=1,
                 workload='train', time_s=0.05, mel_time_s=0.01, x_mel=0.2)]
    meta = dict(device='cpu', device_name='x', threads=2, torch='2', date='2026-12-07')
    cli.plot(meta, rows, str(tmp_path / 'p.png'))
    label = figures[0].axes[0].get_xlabel()
    assert 'mel time / frontend time' in label and 'higher is faster' in label


def test_graph_columns_in_the_table():
    """--graph results (CUDA) add the replayed-graph time, its ratio to mel's graph and the
    host synchronisations per eager step to each row."""
    meta = dict(device='cuda', device_name='GPU', threads=1, torch='t', triton='t', date='d')
    rows = [dict(frontend=B.MEL_BASELINE, backend='torch', n_filters=40, batch=2, seconds=1,
                 workload='train', time_s=0.01, graph_time_s=0.004, graph_x_mel=1.0,
                 syncs_per_step=0),
            dict(frontend='EfficientLeaf 8G-opt + LogTBN', backend='triton', n_filters=80,
                 batch=2, seconds=1, workload='train', time_s=0.02, mel_time_s=0.01,
                 graph_time_s=0.008, graph_mel_time_s=0.004, graph_x_mel=0.5,
                 syncs_per_step=0)]
    text = cli.format_results(meta, B.add_ratios(rows))
    header = next(line for line in text.splitlines() if line.startswith('frontend'))
    assert header.endswith('graph ms  x mel graph  syncs/step'), header
    row = next(line for line in text.splitlines() if line.startswith('EfficientLeaf'))
    assert row.split()[-3:] == ['8.00', '0.5', '0']
