"""``bench/gpu_check.py``, the one script a lent GPU runs, works: its ``--smoke`` mode runs
the same code on CPU tensors at a tiny size (Triton kernels in the interpreter) and writes a
results file whose parity figures are real (fast paths against the fp32 and float64
references) and whose timings carry the paired mel baseline; its ``kernels_ab`` section (the
Triton filterbank kernels v1 against v2) runs too, on a 16-filter frontend."""
import glob
import json
import os
import subprocess
import sys

import pytest

import eleaf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, 'bench', 'gpu_check.py')


def test_smoke_run_writes_results(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET='1')
    env.pop('OUT', None)
    proc = subprocess.run([sys.executable, SCRIPT, '--smoke', '--configs', '8G-opt 80',
                           '--out', str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (json_path,) = glob.glob(str(tmp_path / 'gpu_smoke-test-cpu_*.json'))
    assert os.path.exists(json_path[:-5] + '.md')
    data = json.load(open(json_path))
    assert data['meta']['smoke'] is True
    fast = [b for b in ('triton', 'cpp') if eleaf.backends()[b]['available']]
    timed = {(r['frontend'], r['backend'], r['workload']): r for r in data['results']}
    for backend in ['torch'] + fast:
        for workload in ('inference', 'train'):
            r = timed[('EfficientLeaf 8G-opt 80 + LogTBN', backend, workload)]
            assert r['time_s'] > 0 and r['mel_time_s'] > 0
            assert r['throughput_vs_mel'] == pytest.approx(r['mel_time_s'] / r['time_s'])
        if backend != 'torch':
            p = timed[('EfficientLeaf 8G-opt 80 + LogTBN', backend, 'train')]['parity']
            assert p['finite'] and p['worse_than_ref'] == []
            assert set(p['vs_f64']) >= {'output', 'grad_input', 'grad filterbank.center_freqs',
                                        'grad compression.log1p.a'}
            assert p['vs_ref32']['output'] < 1e-5 and p['vs_f64']['grad_input'] < 1e-5
    expected_ops = ({'pcen'} if 'triton' in fast else set()) | (
        {'log1p_median'} if 'cpp' in fast else set())
    assert {r['op'] for r in data['meta']['ops']} == expected_ops
    for r in data['meta']['ops']:  # fast and fp32 reference, each against float64
        assert set(r['f64']) == set(r['parity']) and all(
            fast < 1e-5 and ref < 1e-5 for fast, ref in r['f64'].values()), r
    if 'triton' in fast:
        (fb,) = data['meta']['filterbank']
        assert fb['frontend'] == 'EfficientLeaf 8G-opt 80' and fb['fast_ms'] > 0
        (prof,) = data['meta']['profile']  # on CPU: torch ops by self CPU time
        assert prof['frontend'] == 'EfficientLeaf 8G-opt 80 + LogTBN' and prof['steps'] == 2
        assert prof['wall_ms'] >= prof['host_ms'] > 0 and prof['device_ms'] is None
        assert prof['top'] and all(k['us'] >= 0 and k['calls'] > 0 for k in prof['top'])
        assert any('gabor' in k['name'].lower() for k in prof['top']), prof['top']
        (ab,) = data['meta']['kernels_ab']  # v1 against v2, reported whatever the host does
        assert ab['frontend'] == 'EfficientLeaf 8G-opt 80 + LogTBN' and 'error' not in ab, ab
        for key in ('fb_fwd_ms', 'fb_train_ms', 'step_ms'):
            assert ab[key]['v1'] > 0 and ab[key]['v2'] > 0, ab
        assert all(type(ab['bitwise_equal'][v]) is bool for v in ('v1', 'v2')), ab
        assert set(ab['v2_vs_v1']) >= {'output', 'grad_input', 'grad center_freqs'}
        assert max(ab['v2_vs_v1'].values()) < 1e-3, ab['v2_vs_v1']
        assert 'ELEAF_GABOR_KERNELS=v1' in open(json_path[:-5] + '.md').read()
    else:
        assert data['meta']['kernels_ab'] == []


@pytest.mark.skipif(__import__('torch').cuda.is_available(), reason='a CUDA device is present')
def test_without_cuda_says_so():
    proc = subprocess.run([sys.executable, SCRIPT, '--out', '/nonexistent'], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'needs a CUDA device' in proc.stderr
