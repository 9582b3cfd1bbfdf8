"""A missing optional package ends a command with one line naming the extra of eleaf that
installs it (no traceback)."""
import subprocess
import sys

import pytest

from eleaf.cli.options import EXTRAS, install_hint, missing_dependency


def _run(code):
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=300)


def test_extras_exist_in_setup():
    import os
    setup = open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), 'setup.py')).read()
    for module, extra in EXTRAS.items():
        assert "'%s': [" % extra in setup, extra
        block = setup.split("'%s': [" % extra, 1)[1].split(']', 1)[0]
        assert "'%s'" % module in block, (module, extra)


def test_install_hint():
    assert install_hint('--png', 'matplotlib') == \
        "--png needs the package matplotlib: pip install 'eleaf[plot]'"
    assert install_hint(None, 'soundfile') == \
        "the package soundfile is not installed: pip install 'eleaf[features]'"


def test_missing_dependency_follows_the_cause():
    try:
        try:
            raise ModuleNotFoundError('no', name='tqdm')
        except ImportError as exc:
            raise ImportError('reading needs tqdm') from exc
    except ImportError as exc:
        assert missing_dependency(exc) == 'tqdm'
    assert missing_dependency(ModuleNotFoundError('x', name='numpyish')) is None


@pytest.mark.parametrize('module', ['soundfile', 'scipy'])
def test_features_without_soundfile_or_scipy(tmp_path, module):
    proc = _run('import sys; sys.modules[%r] = None\n'
                'from eleaf.__main__ import main\n'
                'sys.exit(main(["features", %r]))' % (module, str(tmp_path / 'a.wav')))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["eleaf features: error: reading audio files needs the package %s: "
                     "pip install 'eleaf[features]'" % module], proc.stderr


def test_any_command_missing_an_optional_package_is_one_line():
    # an import deep inside a command: caught by eleaf's main, named with its extra
    proc = _run('import sys\n'
                'import eleaf.cli.info as info\n'
                'sys.modules["tqdm"] = None\n'
                'def main(argv):\n'
                '    import tqdm\n'
                'info.main = main\n'
                'from eleaf.__main__ import main as eleaf_main\n'
                'sys.exit(eleaf_main(["info"]))')
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("eleaf info: error: the package tqdm is not installed: "
                                   "pip install 'eleaf[train]'"), proc.stderr


def test_bench_plot_without_matplotlib():
    proc = _run('import sys; sys.modules["matplotlib"] = None\n'
                'from eleaf.__main__ import main\n'
                'sys.exit(main(["bench", "--plot", "x.png", "--quick"]))')
    assert proc.returncode == 2
    assert "--plot needs the package matplotlib: pip install 'eleaf[plot]'" in proc.stderr
    assert 'Traceback' not in proc.stderr
