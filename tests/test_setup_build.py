"""setup.py's build of eleaf._C: the C++ sources as a few unity translation units, compiled
in parallel without debug information, one line when the build starts and one with its
duration. A fake compiler records the commands (the real build is what CI's install runs)."""
import glob
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

FAKE_CC = textwrap.dedent('''\
    #!{python}
    # records compile commands (with start and end times), writes empty outputs, hands
    # everything else (version and ABI queries) to the real compiler
    import os, sys, time
    args = sys.argv[1:]
    if '-c' in args or '-shared' in args:
        out = args[args.index('-o') + 1]
        if '-c' in args:
            if os.environ.get('FAKE_FAIL_UNITY') and any('unity_' in a for a in args):
                sys.exit('fake compile error')
            start = time.time()
            time.sleep(1.0)
            with open({log!r}, 'a') as f:
                f.write('%r %f %f\\n' % (args, start, time.time()))
        open(out, 'w').close()
        sys.exit(0)
    os.execvp({real!r}, [{real!r}] + args)
    ''')


def _setup_module():
    """setup.py's functions without running setup() (the module is run as a script by
    setuptools: its setup() call is what this loads as well, so stub it)."""
    import setuptools
    ns = {'__file__': os.path.join(ROOT, 'setup.py'), '__name__': 'eleaf_setup_test'}
    real = setuptools.setup
    setuptools.setup = lambda **kw: None
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        env = dict(os.environ)
        os.environ['ELEAF_SKIP_CPP_BUILD'] = '1'
        exec(compile(open(os.path.join(ROOT, 'setup.py')).read(), 'setup.py', 'exec'), ns)
    finally:
        os.environ.clear()
        os.environ.update(env)
        os.chdir(cwd)
        setuptools.setup = real
    return ns


def test_unity_groups_cover_the_sources(tmp_path):
    ns = _setup_module()
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'csrc', '*.cpp')))
    grouped = [n for g in ns['UNITY_GROUPS'] for n in g]
    assert len(grouped) == len(set(grouped)), 'a source in two groups'
    assert sorted(grouped) == names, 'csrc/*.cpp and UNITY_GROUPS differ'
    sources = [os.path.join('csrc', n) for n in names] + ['csrc/extra_new.cpp']
    units = ns['unity_sources'](sources, out_dir=str(tmp_path))
    # one file per group, then the source that is in no group
    assert units[-1] == 'csrc/extra_new.cpp' and len(units) == len(ns['UNITY_GROUPS']) + 1
    included = []
    for unit in units[:-1]:
        lines = open(unit).read().splitlines()
        included += [os.path.basename(l.split('"')[1]) for l in lines if l.startswith('#include')]
    assert sorted(included) == names


def _fake_build(tmp_path, extra_env=None, no_ninja=False):
    work = tmp_path / 'proj'
    work.mkdir()
    shutil.copy(os.path.join(ROOT, 'setup.py'), work)
    shutil.copy(os.path.join(ROOT, 'README.md'), work)
    for name in ('eleaf', 'csrc', 'kernels'):
        shutil.copytree(os.path.join(ROOT, name), work / name,
                        ignore=shutil.ignore_patterns('*.so', '__pycache__'))
    log = tmp_path / 'cc.log'
    real = shutil.which('c++') or shutil.which('g++') or 'c++'
    cc = tmp_path / 'bin' / 'fakecc'
    cc.parent.mkdir()
    cc.write_text(FAKE_CC.format(python=sys.executable, log=str(log), real=real))
    cc.chmod(0o755)
    env = dict(os.environ, CC=str(cc), CXX=str(cc), LDSHARED='%s -shared' % cc,
               ELEAF_SKIP_CUDA_BUILD='1')
    for k in ('ELEAF_NO_UNITY', 'MAX_JOBS', 'ELEAF_SKIP_CPP_BUILD'):
        env.pop(k, None)
    if no_ninja:  # a ninja that fails `ninja --version`: torch falls back to distutils
        ninja = tmp_path / 'bin' / 'ninja'
        ninja.write_text('#!/bin/sh\nexit 1\n')
        ninja.chmod(0o755)
    env['PATH'] = str(tmp_path / 'bin') + os.pathsep + env.get('PATH', '')
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, 'setup.py', 'build_ext', '--inplace'], cwd=work,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    calls = []
    for line in open(log).read().splitlines() if log.exists() else []:
        args, start, end = line.rsplit(' ', 2)
        calls.append((eval(args), float(start), float(end)))
    return proc, calls


def _sources(calls):
    return sorted(os.path.basename(a[a.index('-c') + 1] if a.count('-c') == 1 else
                                   [x for x in a if x.endswith('.cpp')][0])
                  for a, _, _ in calls)


def test_build_compiles_unity_units_in_parallel(tmp_path):
    proc, calls = _fake_build(tmp_path, no_ninja=True)
    ns = _setup_module()
    assert _sources(calls) == ['unity_%d.cpp' % i for i in range(len(ns['UNITY_GROUPS']))]
    for args, _, _ in calls:
        assert args.index('-g0') > max(i for i, a in enumerate(args) if a == '-g'), args
    if (os.cpu_count() or 1) > 1:  # two compiles overlap in time
        (_, s0, e0), (_, s1, e1) = sorted(calls, key=lambda c: c[1])[:2]
        assert s1 < e0, 'compiled one after the other'
    err = proc.stderr
    assert 'eleaf: compiling the C++ extension eleaf._C (2 translation units' in err, err
    assert 'eleaf: compiled eleaf._C in ' in err, err


def test_build_without_unity(tmp_path):
    proc, calls = _fake_build(tmp_path, {'ELEAF_NO_UNITY': '1', 'MAX_JOBS': '1'},
                              no_ninja=True)
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'csrc', '*.cpp')))
    assert _sources(calls) == names
    starts = sorted(calls, key=lambda c: c[1])
    assert all(b[1] >= a[2] for a, b in zip(starts, starts[1:])), 'MAX_JOBS=1 overlapped'


@pytest.mark.skipif(shutil.which('ninja') is None, reason='ninja not installed')
def test_build_with_ninja(tmp_path):
    proc, calls = _fake_build(tmp_path)
    ns = _setup_module()
    assert _sources(calls) == ['unity_%d.cpp' % i for i in range(len(ns['UNITY_GROUPS']))]
    assert 'ninja' in proc.stderr.split('eleaf: compiling', 1)[1].splitlines()[0]


def test_failed_unity_build_falls_back_to_one_unit_per_file(tmp_path):
    proc, calls = _fake_build(tmp_path, {'FAKE_FAIL_UNITY': '1'}, no_ninja=True)
    names = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, 'csrc', '*.cpp')))
    assert _sources(calls) == names
    assert 'the unity build failed' in proc.stderr and 'eleaf: compiled eleaf._C in' in proc.stderr
