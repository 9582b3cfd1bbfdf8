"""Start-up cost: importing eleaf and its CPU fast paths must not import ``torch._dynamo``
(1.5 s and more; ``torch.compiler.disable`` as a decorator imports it)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _dynamo_imported(code):
    code += '\nimport sys\nprint("torch._dynamo" in sys.modules)'
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300, check=True).stdout
    return out.strip().splitlines()[-1] == 'True'


def test_gabor_cpu_import_does_not_import_dynamo():
    assert not _dynamo_imported('import eleaf.ops.gabor_cpu')
    # the check itself sees dynamo where it is imported
    assert _dynamo_imported('import eleaf.ops.gabor_cpu, torch._dynamo')
