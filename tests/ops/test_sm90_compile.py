"""Every Triton launch of eleaf compiles for a Hopper GPU (sm_90) with the GPU launch
settings, and fits its shared memory: ``tests/ops/sm90_compile.py`` in a subprocess without
``TRITON_INTERPRET`` (about a minute on 2 cores; float16/bfloat16 too with
``ELEAF_SLOW_TESTS=1``). No GPU needed: Triton compiles to a cubin with its own ptxas.
``ELEAF_EXTRA_TRITON=DIR`` compiles with another Triton installation too (the GPU machine's
3.6). The TF32 launches (the timed fast path) must not spill registers: on 2026-12-03 the LEAF
forward spilled 5.7 KB per thread (Triton 3.9; 2.8 KB under the GPU machine's 3.6). The v2
kernels must load x in vectors of at least 8 bytes, and LEAF's v2 TF32 forward and
backward-rows kernels fit at least 2 blocks per SM (issue #23)."""
import json
import os
import subprocess
import sys

import pytest

triton = pytest.importorskip('triton')
pytest.importorskip('triton.backends.nvidia', reason='this Triton has no NVIDIA backend')

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNELS = {'_gabor_fwd_kernel', '_gabor_bwd_rows_kernel', '_gabor_bwd_window_kernel',
           '_gabor_bwd_window_loop_kernel', '_gabor_bwd_taps_kernel', '_gabor_bwd_input_kernel',
           '_gabor_bwd_taps_fold_kernel', '_gabor_planes_kernel', '_gabor_sum_partials_kernel',
           '_gabor_taps_fwd_kernel', '_gabor_taps_bwd_kernel', '_group_geometry_kernel',
           '_pcen_fwd_kernel', '_pcen_bwd_kernel'}


#: more Triton installations to compile with, e.g. the GPU machine's 3.6:
#: ``pip install --target DIR triton==3.6.0 "numpy<2.3"``, then ``ELEAF_EXTRA_TRITON=DIR``
#: (several separated by ``os.pathsep``); each goes first on the subprocess' PYTHONPATH
EXTRA_TRITON = [d for d in os.environ.get('ELEAF_EXTRA_TRITON', '').split(os.pathsep) if d]


@pytest.mark.parametrize('triton_dir', [None] + EXTRA_TRITON)
def test_every_launch_compiles_for_sm90(tmp_path, triton_dir):
    env = {k: v for k, v in os.environ.items() if k != 'TRITON_INTERPRET'}
    env['TRITON_CACHE_DIR'] = str(tmp_path / 'triton-cache')  # compile, never reuse a binary
    if triton_dir:
        env['PYTHONPATH'] = os.pathsep.join([triton_dir] + [
            p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    args = [sys.executable, '-m', 'tests.ops.sm90_compile', '--json', str(tmp_path / 'r.json')]
    if not os.environ.get('ELEAF_SLOW_TESTS'):
        args.append('--quick')
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-4000:]
    report = json.load(open(tmp_path / 'r.json'))
    if triton_dir:  # compiled by that installation, not by the environment's own Triton
        assert os.path.realpath(report['triton_path']).startswith(os.path.realpath(triton_dir))
    results = report['results']
    assert {r['kernel'] for r in results} == KERNELS
    assert all(r['ok'] and r['cubin_bytes'] > 0 for r in results)
    # ptxas reported every launch's resources; no TF32 launch spills
    assert all(0 < r['registers'] <= 255 for r in results), results
    spills = ['%s %s: %d B' % (r['kernel'], r['constexprs'], r['spill_stores']) for r in results
              if r['constexprs'].get('PRECISION') == "'tf32'" and r['spill_stores'] > 0]
    assert not spills, spills
    # both dot precisions of the filterbank were compiled
    precisions = {r['constexprs'].get('PRECISION') for r in results
                  if r['kernel'] == '_gabor_fwd_kernel'}
    assert precisions == {"'ieee'", "'tf32'"}
    # the v2 kernels (ELEAF_GABOR_KERNELS=v2, the default) read float32 x in vectors of >= 8
    # bytes (aligned x planes; Triton's specialisation of aligned pointers and strides)
    folded = [r for r in results if (r['constexprs'].get('FOLD') == 'True'
                                     or r['kernel'] == '_gabor_bwd_taps_fold_kernel')
              and r['constexprs'].get('LOWP') != 'True']
    assert {r['kernel'] for r in folded} == {'_gabor_fwd_kernel', '_gabor_bwd_rows_kernel',
                                             '_gabor_bwd_taps_fold_kernel'}
    for r in folded:
        wide = sum(n for k, n in r['vector_loads'].items()
                   if k in ('cp.async 8B', 'cp.async 16B', 'ld.global 8B', 'ld.global 16B'))
        assert wide > 0, (r['kernel'], r['vector_loads'])
    # LEAF's v2 TF32 forward and backward-rows kernels: >= 2 blocks per SM, no spills
    leaf = [r for r in results if 'Leaf v2' in r['labels']
            and r['constexprs'].get('PRECISION') == "'tf32'"
            and r['kernel'] in ('_gabor_fwd_kernel', '_gabor_bwd_rows_kernel')]
    assert len(leaf) == 2, leaf
    for r in leaf:
        assert r['blocks_per_sm'] >= 2 and r['spill_stores'] == 0, r
