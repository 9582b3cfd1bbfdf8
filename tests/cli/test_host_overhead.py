"""``bench/host_overhead.py`` runs, and the Triton path's train step stays lean on the host:
an EfficientLEAF 8G-opt step dispatches a bounded number of torch ops (each a kernel launch
on a GPU, where that step is host-bound). The bound guards the packed-taps kernels, the
eager autograd path (before them: 99 launching ops; with them: 17 without an optimizer step)
and the geometry computed on the device (issue #21: a step *with* a fused Adam step, whose
parameters move the geometry, at no more launching ops than the step without one before)."""
import json
import os
import subprocess
import sys

import pytest

import eleaf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.skipif(not eleaf.backends()['triton']['available'], reason='needs Triton')
def test_counts_and_times_a_step(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET='1')
    out = tmp_path / 'h.json'
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'bench', 'host_overhead.py'),
                           '--configs', '8G-opt 40', '--repeats', '1', '--json', str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (r,) = json.load(open(out))['results'].values()
    assert r['host_us'] > 0 and r['ops'] == r['no_launch_ops'] + r['launching_ops']
    # forward: geometry, taps, filterbank; backward: filterbank rows, window, taps, taps
    assert r['triton_launches'] >= 7
    assert r['op_counts'].get('aten._fused_adam_.default') == 1, r['op_counts']
    assert r['launching_ops'] <= 17, r['op_counts']
