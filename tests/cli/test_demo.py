"""eleaf demo: timings as median and interquartile range of alternating calls (or none), a
picture with a Hz axis, colour bars and the channel it shows."""
import re

import numpy as np
import pytest
import torch

import eleaf
from eleaf.cli import demo


def test_time_calls_alternates_and_stops():
    order = []
    fns = [lambda: order.append('a'), lambda: order.append('b')]
    times = demo.time_calls(fns, min_calls=4, max_calls=10, budget_s=0.0, warmup=1)
    assert order == ['a', 'b'] + ['a', 'b'] * 4
    assert [len(t) for t in times] == [4, 4]
    times = demo.time_calls(fns, min_calls=1, max_calls=6, budget_s=60.0, warmup=0)
    assert [len(t) for t in times] == [6, 6]   # the budget is not reached: max_calls


def test_summarize():
    text = demo.summarize([0.001, 0.002, 0.003, 0.004, 0.100])
    assert re.search(r'3\.00 ms\s+\(IQR 2\.00-4\.00 ms, 5 calls\)', text), text


def test_band_frequencies_and_channel_note():
    leaf = eleaf.Leaf(n_filters=40)
    hz = demo.band_frequencies(leaf, 40)
    assert np.all(np.diff(hz) > 0) and 55 < hz[0] < 200 and 6000 < hz[-1] < 7900
    mel_hz = demo.band_frequencies(eleaf.Mel(n_filters=40), 40)
    assert np.all(np.diff(mel_hz) > 0) and mel_hz[0] < 200 and 6000 < mel_hz[-1] < 8000
    assert demo.channel_note(torch.zeros(1, 2, 4, 5)).startswith('channel 0 of 2')
    assert demo.channel_note(torch.zeros(1, 4, 5)) == 'one channel'


def test_demo_prints_median_and_spread(tmp_path, capsys):
    pytest.importorskip('matplotlib')
    out = tmp_path / 'demo.png'
    assert demo.main(['--output', str(out), '--seconds', '0.5', '--min-calls', '3',
                      '--budget', '0']) == 0
    text = capsys.readouterr().out
    rows = [l for l in text.splitlines() if 'output (' in l]
    assert len(rows) == 3
    for row in rows:
        assert re.search(r'\d+\.\d\d ms\s+\(IQR \d+\.\d\d-\d+\.\d\d ms, 3 calls\)', row), row
    assert out.stat().st_size > 10000


def test_demo_picture(tmp_path, monkeypatch):
    plt = pytest.importorskip('matplotlib.pyplot')
    figures = []
    monkeypatch.setattr(plt.Figure, 'savefig', lambda fig, *a, **k: figures.append(fig))
    monkeypatch.setattr(plt, 'close', lambda fig=None: None)
    assert demo.main(['--output', str(tmp_path / 'x.png'), '--seconds', '0.5',
                      '--min-calls', '0']) == 0
    fig = figures[0]
    panels = [ax for ax in fig.axes if ax.get_ylabel() == 'band centre (Hz)']
    colorbars = [ax for ax in fig.axes if ax.get_ylabel() == 'feature value']
    assert len(panels) == 3 and len(colorbars) == 3
    titles = [ax.get_title() for ax in panels]
    assert 'channel 0 of 2' in titles[0] and 'one channel' in titles[1], titles
    for ax in panels:
        lo, hi = ax.get_ylim()
        assert ax.get_yscale() == 'log' and 40 < lo < 150 and 5000 < hi < 9000, (lo, hi)
    assert panels[-1].get_xlabel() == 'time (s)'


def test_demo_without_timings(tmp_path, capsys):
    pytest.importorskip('matplotlib')
    assert demo.main(['--output', str(tmp_path / 'd.png'), '--seconds', '0.5',
                      '--min-calls', '0']) == 0
    text = capsys.readouterr().out
    assert ' ms' not in text and 'IQR' not in text
