"""Build and install eleaf.

- ``eleaf/`` is the package; ``kernels/`` is installed as ``eleaf.kernels`` (Triton kernels).
- ``csrc/`` is compiled into ``eleaf._C`` with ``torch.utils.cpp_extension``: C++ always
  (where a compiler exists), CUDA sources too where ``nvcc`` and a CUDA build of torch exist.
  The build needs the installed torch, so install with ``--no-build-isolation`` (otherwise pip
  would build in an isolated environment without torch, or download one).
- A failed or impossible build never fails the install: the package then runs its reference
  path, and ``eleaf.backends()['cpp']['reason']`` says why the extension is missing.

Environment switches: ``ELEAF_SKIP_CPP_BUILD=1`` (no extension), ``ELEAF_SKIP_CUDA_BUILD=1``
(C++ only), ``ELEAF_FORCE_CUDA_BUILD=1`` (compile the CUDA sources even with a CPU build of
torch, for checking that they compile; needs nvcc and ``CUDA_HOME``).
"""
import glob
import os
import sys

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext


def _flag(name):
    return os.environ.get(name, '0') not in ('', '0')


#: nvcc flags of csrc/*.cu (besides torch's own); csrc/check_cuda_compile.py uses the same
NVCC_FLAGS = ('-O3', '--use_fast_math')


def _extensions():
    """The ``eleaf._C`` extension, or [] where it cannot be built here (with the reason)."""
    if _flag('ELEAF_SKIP_CPP_BUILD'):
        return [], {}
    sources = sorted(glob.glob(os.path.join('csrc', '*.cpp')))
    if not sources:
        return [], {}
    try:
        import torch
        from torch.utils import cpp_extension
    except Exception as exc:  # no torch in the build environment
        print('eleaf: not building eleaf._C (torch not importable at build time: %s); '
              'install with pip install --no-build-isolation' % exc, file=sys.stderr)
        return [], {}
    cuda_sources = sorted(glob.glob(os.path.join('csrc', '*.cu')))
    use_cuda = (cuda_sources and not _flag('ELEAF_SKIP_CUDA_BUILD')
                and cpp_extension.CUDA_HOME is not None
                and (torch.version.cuda is not None or _flag('ELEAF_FORCE_CUDA_BUILD')))
    # no -std flag: BuildExtension adds the standard the installed torch's headers need
    # (c++17 for older torch, c++20 for recent releases)
    cxx = ['-O3']
    if sys.platform.startswith('linux'):
        cxx.append('-fopenmp')
    if use_cuda:
        ext = cpp_extension.CUDAExtension(
            'eleaf._C', sources + cuda_sources,
            define_macros=[('ELEAF_WITH_CUDA', None)],
            extra_compile_args={'cxx': cxx, 'nvcc': list(NVCC_FLAGS)})
    else:
        ext = cpp_extension.CppExtension('eleaf._C', sources, extra_compile_args={'cxx': cxx})
    return [ext], {'build_ext': _OptionalBuildExt.with_base(cpp_extension.BuildExtension)}


class _OptionalBuildExt(build_ext):
    """A build_ext whose failure leaves a working (reference-only) installation."""

    @classmethod
    def with_base(cls, base):
        class OptionalBuild(base):
            def run(self):
                try:
                    base.run(self)
                except Exception as exc:
                    print('eleaf: building eleaf._C failed (%s); the reference backend '
                          'still works' % exc, file=sys.stderr)

            def build_extension(self, ext):
                try:
                    base.build_extension(self, ext)
                except Exception as exc:
                    print('eleaf: building %s failed (%s); the reference backend still '
                          'works' % (ext.name, exc), file=sys.stderr)
        return OptionalBuild


ext_modules, cmdclass = _extensions()

setup(
    name='eleaf',
    version='0.1.0',
    description='Fast, faithful LEAF and EfficientLEAF learnable audio frontends for PyTorch',
    long_description=open('README.md', encoding='utf-8').read() if os.path.exists('README.md') else '',
    long_description_content_type='text/markdown',
    license='MIT',
    python_requires='>=3.10',
    packages=find_packages(include=['eleaf', 'eleaf.*']) + ['eleaf.kernels'],
    package_dir={'eleaf.kernels': 'kernels'},
    install_requires=['torch>=2.4', 'numpy'],
    extras_require={
        'train': ['efficientnet_pytorch', 'soundfile', 'scipy', 'tqdm', 'tensorboard',
                  'matplotlib'],
        'triton': ['triton'],
        # torch.onnx.export(..., dynamo=True) and onnxruntime (tests/export; ~40 MB, ~10 s)
        'export': ['onnx', 'onnxruntime', 'onnxscript'],
        'dev': ['pytest', 'pytest-benchmark', 'hypothesis', 'onnx', 'onnxruntime', 'onnxscript'],
        'plot': ['matplotlib'],
    },
    entry_points={'console_scripts': ['eleaf=eleaf.__main__:main']},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
