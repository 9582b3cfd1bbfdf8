"""Compile every Triton launch of eleaf for a Hopper GPU (sm_90) without a GPU.

    python -m tests.ops.sm90_compile [--json FILE]

Runs the host code of the fused filterbank (``eleaf.ops.gabor``, ``eleaf.ops.gabor_pack``)
and of PCEN (``eleaf.ops.pcen``) on small CPU tensors with the *GPU* launch settings
(float32 with 'ieee' dots, TF32, float16, bfloat16), intercepts each kernel launch, and
compiles it with ``triton.compile`` for ``GPUTarget('cuda', 90, 32)`` down to a cubin (Triton
ships ptxas), with the signature, constexprs and ``num_warps``/``num_stages`` the launch
would have used. Then checks that the kernel's shared memory fits an H100/H200 (227 KiB per
block), and reports ptxas' registers per thread and spills (bytes of spill stores and of
stack frame: registers spilled to local memory, a slow path). Nothing runs: this proves that
the kernels as launched compile for the GPU (the interpreter accepts code the compiler
rejects), not that they compute the right numbers (the interpreter tests do that).

Must run without ``TRITON_INTERPRET`` (the test starts it in a subprocess). Prints one line
per distinct compiled launch and exits 1 if any failed.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback

if os.environ.get('TRITON_INTERPRET', '0') not in ('', '0'):
    sys.exit('run without TRITON_INTERPRET (the kernels must be JIT functions, not interpreted)')

import torch  # noqa: E402
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

import eleaf  # noqa: E402
from eleaf.ops import gabor, gabor_pack, gabor_plan, pcen  # noqa: E402

TARGET = GPUTarget('cuda', 90, 32)
#: shared memory per block on sm_90 (H100, H200): 227 KiB
MAX_SHARED = 232448
#: per SM on sm_90: 64K 32-bit registers (allocated per warp in units of 256), 228 KiB of
#: shared memory (1 KiB reserved per block), 2048 threads, 32 blocks
SM_REGISTERS, SM_SHARED, SM_THREADS, SM_BLOCKS = 65536, 233472, 2048, 32


def blocks_per_sm(registers: int, shared: int, num_warps: int) -> int:
    """Resident blocks per sm_90 SM of a kernel with ``registers`` per thread, ``shared``
    bytes of shared memory per block and ``num_warps`` warps (the occupancy calculator's
    limits: registers, shared memory, threads, blocks)."""
    per_warp = -(-registers * 32 // 256) * 256
    by_regs = SM_REGISTERS // (per_warp * num_warps)
    by_shared = SM_SHARED // (shared + 1024)
    return min(by_regs, by_shared, SM_THREADS // (32 * num_warps), SM_BLOCKS)
_TYPES = {torch.float32: 'fp32', torch.float16: 'fp16', torch.bfloat16: 'bf16',
          torch.float64: 'fp64', torch.int32: 'i32', torch.int64: 'i64', torch.bool: 'i1',
          torch.uint8: 'u8', torch.int8: 'i8', torch.int16: 'i16'}


def ptxas_usage(ptx: str) -> dict:
    """Registers per thread, spill stores/loads and stack frame (bytes) of the kernel in
    ``ptx``, from ``ptxas -v`` (the ptxas binaries Triton ships; the first that accepts this
    PTX version). Empty if none does."""
    from triton.backends.nvidia import compiler as nv
    tools = []
    for get in (lambda: nv.get_ptxas(90).path, lambda: triton.knobs.nvidia.ptxas.path,
                lambda: triton.knobs.nvidia.ptxas_blackwell.path):
        try:
            tools.append(get())
        except Exception:
            pass
    arch = re.search(r'\.target\s+(sm_\w+)', ptx)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'k.ptx')
        with open(path, 'w') as f:
            f.write(ptx)
        for tool in dict.fromkeys(tools):
            proc = subprocess.run([tool, '-v', '--gpu-name', arch.group(1) if arch else 'sm_90a',
                                   path, '-o', os.path.join(tmp, 'k.cubin')],
                                  capture_output=True, text=True)
            if proc.returncode:
                continue
            log = proc.stdout + proc.stderr
            regs = re.search(r'Used (\d+) registers', log)
            spill = re.search(r'(\d+) bytes spill stores, (\d+) bytes spill loads', log)
            stack = re.search(r'(\d+) bytes stack frame', log)
            if regs and spill and stack:
                return dict(registers=int(regs.group(1)), spill_stores=int(spill.group(1)),
                            spill_loads=int(spill.group(2)), stack=int(stack.group(1)))
    return {}


def vector_loads(ptx: str) -> dict:
    """Counts of the PTX's global and async-copy loads by width in bytes: ``ld.global`` with
    .v2/.v4 of 32-bit elements (8 and 16 bytes), ``cp.async`` by its copy size."""
    out = {}
    for m in re.finditer(r'ld\.global(?:\.[a-z]+)*?(?:\.v(\d))?\.(?:b|f|u|s)(\d+)', ptx):
        width = int(m.group(1) or 1) * int(m.group(2)) // 8
        out['ld.global %dB' % width] = out.get('ld.global %dB' % width, 0) + 1
    for m in re.finditer(r'cp\.async\.c[ag]\.shared\.global(?:\.[a-zA-Z0-9_:]+)*\s*'
                         r'\[[^\]]*\],\s*\[[^\]]*\],\s*(0x[0-9a-fA-F]+|\d+)', ptx):
        key = 'cp.async %dB' % int(m.group(1), 0)
        out[key] = out.get(key, 0) + 1
    return out


def _int_type(v: int) -> str:
    if -2**31 <= v < 2**31:
        return 'i32'
    return 'i64' if -2**63 <= v < 2**63 else 'u64'


def signature_of(fn: JITFunction, args, kwargs):
    """(signature, constexprs, options, attrs) of a launch ``fn[grid](*args, **kwargs)``, with
    Triton's own specialisation of the arguments: an int equal to 1 becomes a constexpr,
    ints divisible by 16 and 16-byte aligned pointers are marked so (``tt.divisibility``,
    what lets the compiler emit vector loads)."""
    names = fn.arg_names
    bound = dict(zip(names, args))
    bound.update({k: v for k, v in kwargs.items() if k in names})
    options = {k: v for k, v in kwargs.items() if k not in names}
    signature, constexprs, attrs = {}, {}, {}
    for i, p in enumerate(fn.params):
        v = bound[p.name] if p.name in bound else p.default
        if p.is_constexpr or v is None:
            signature[p.name] = 'constexpr'
            constexprs[p.name] = v
        elif isinstance(v, torch.Tensor):
            signature[p.name] = '*' + _TYPES[v.dtype]
            if v.data_ptr() % 16 == 0:
                attrs[(i,)] = [['tt.divisibility', 16]]
        elif isinstance(v, bool):
            signature[p.name] = 'i1'
        elif isinstance(v, int) and v == 1:
            signature[p.name] = 'constexpr'
            constexprs[p.name] = 1
        elif isinstance(v, int):
            signature[p.name] = _int_type(v)
            if v % 16 == 0:
                attrs[(i,)] = [['tt.divisibility', 16]]
        elif isinstance(v, float):
            signature[p.name] = 'fp32'
        else:
            raise TypeError('%s: cannot type argument %s=%r' % (fn.__name__, p.name, v))
    return signature, constexprs, options, attrs


class Recorder:
    """Replaces JITFunction.run: compiles each distinct launch for TARGET, launches nothing."""

    def __init__(self):
        self.results = {}
        self.label = ''   # the frontend and kernel version being driven

    def __call__(self, fn, *args, grid, warmup, **kwargs):
        signature, constexprs, options, attrs = signature_of(fn, args, kwargs)
        key = (fn.__name__, tuple(sorted(signature.items())),
               tuple(sorted((k, repr(v)) for k, v in constexprs.items())),
               tuple(sorted(options.items())), tuple(sorted(attrs)))
        if key in self.results:
            if self.label not in self.results[key]['labels']:
                self.results[key]['labels'].append(self.label)
            return None
        entry = dict(kernel=fn.__name__, options=options, labels=[self.label],
                     constexprs={k: repr(v) for k, v in constexprs.items()})
        t0 = time.perf_counter()
        try:
            compiled = triton.compile(ASTSource(fn, signature, constexprs, attrs),
                                      target=TARGET, options=options)
            entry.update(ok=True, shared=int(compiled.metadata.shared),
                         cubin_bytes=len(compiled.asm['cubin']),
                         **ptxas_usage(compiled.asm['ptx']))
            if 'registers' in entry:
                entry['blocks_per_sm'] = blocks_per_sm(entry['registers'], entry['shared'],
                                                       options.get('num_warps', 4))
            entry['vector_loads'] = vector_loads(compiled.asm['ptx'])
            if entry['shared'] > MAX_SHARED:
                entry.update(ok=False, error='needs %d bytes of shared memory, sm_90 has %d'
                             % (entry['shared'], MAX_SHARED))
        except Exception as exc:
            entry.update(ok=False, error='%s: %s' % (type(exc).__name__, exc),
                         traceback=traceback.format_exc())
        entry['seconds'] = round(time.perf_counter() - t0, 2)
        self.results[key] = entry
        blocks = ' '.join('%s=%s' % (k, v) for k, v in sorted(entry['constexprs'].items())
                          if k.startswith('BLOCK') or k in ('SHIFTS', 'PRECISION'))
        usage = ('shared %d B, %s registers, %s B spilled, %s blocks/SM' % (
            entry['shared'], entry.get('registers', '?'), entry.get('spill_stores', '?'),
            entry.get('blocks_per_sm', '?')) if entry['ok'] else entry['error'])
        print('%-4s %-30s %5.1f s  %s %s  %s' % (
            'ok' if entry['ok'] else 'FAIL', fn.__name__, entry['seconds'],
            ' '.join('%s=%s' % kv for kv in sorted(options.items())), blocks, usage),
            flush=True)
        return None


def _gpu_cfg_key(x):
    return 'cuda' if (gabor._precision() == 'ieee' and x.dtype == torch.float32) else 'cuda_tf32'


def _gpu_lowp(x):
    return x.dtype in (torch.float16, torch.bfloat16)


def drive_filterbank(label, frontend, dtype, precision, L=2000, recorder=None):
    """Geometry, packing, forward and backward (with the input gradient) of one frontend's
    filterbank: EfficientLEAF's with its geometry computed on the device (caps layout),
    LEAF's with its fixed geometry (static layout)."""
    torch.set_float32_matmul_precision(precision)
    if recorder is not None:
        recorder.label = '%s %s' % (label, gabor.kernel_version())
    fb = frontend.filterbank
    if hasattr(fb, 'caps'):  # EfficientLeaf
        fb.clamp_parameters()
        mu, sigma, pw = fb.center_freqs, fb.bandwidths, fb.pooling_widths
        layout = gabor.caps_layout(fb.caps)
        geo = gabor_pack.geometry_fwd(mu.detach(), sigma.detach(), layout)
    else:  # Leaf
        mu, sigma, pw = fb.clamped_parameters()
        geo, layout = gabor.static_geometry(fb.geometry(), mu.device)
    taps, windows = gabor_pack.pack_fwd(mu.detach(), sigma.detach(), pw.detach(), geo, layout)
    gabor_pack.pack_bwd(taps, windows, taps, windows, sigma.detach(), pw.detach(), geo, layout)
    x = torch.zeros(2, 1, L, dtype=dtype)
    out = gabor.gabor_fwd(x, taps, windows, geo, layout)
    gabor.gabor_bwd(torch.zeros_like(out), x, taps, windows, geo, layout, True)
    print('  (%s, %s, %s)' % (label, str(dtype).replace('torch.', ''), precision), flush=True)


def drive_pcen(dtype):
    x = torch.zeros(2, 40, 100, dtype=dtype)
    params = [torch.full((40,), v) for v in (0.04, 0.96, 2., 0.5)]
    for clamp in (None, 1e-5):
        y, carries = pcen.pcen_fwd(x, *params, 1e-12, clamp)
        pcen.pcen_bwd(torch.zeros_like(y), x, carries, *params, 1e-12, clamp)
    print('  (pcen, %s)' % str(dtype).replace('torch.', ''), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--json', help='write the per-launch results here')
    parser.add_argument('--quick', action='store_true',
                        help='float32 (ieee and TF32) only, no float16/bfloat16')
    args = parser.parse_args()
    recorder = Recorder()
    JITFunction.run = lambda self, *a, grid, warmup, **k: recorder(self, *a, grid=grid,
                                                                   warmup=warmup, **k)
    gabor._cfg_key = _gpu_cfg_key
    gabor._lowp = _gpu_lowp
    frontends = {
        '8G-opt 80': eleaf.EfficientLeaf(n_filters=80, num_groups=8, conv_win_factor=6,
                                         stride_factor=16, backend='torch'),
        '4G wf4.75': eleaf.EfficientLeaf(conv_win_factor=4.75, backend='torch'),
        'Leaf': eleaf.Leaf(backend='torch'),
    }
    runs = [(torch.float32, 'highest'), (torch.float32, 'high')]
    if not args.quick:
        runs += [(torch.float16, 'highest'), (torch.bfloat16, 'highest')]
    with torch.no_grad():
        for version in ('v2', 'v1'):   # the kernels, and the old ones (ELEAF_GABOR_KERNELS=v1)
            os.environ['ELEAF_GABOR_KERNELS'] = version
            for dtype, precision in runs:
                for label, fe in frontends.items():
                    drive_filterbank(label, fe, dtype, precision, recorder=recorder)
        os.environ.pop('ELEAF_GABOR_KERNELS')
        # the per-tap window-gradient fallback (too few registers for the phase-split kernel)
        for key in ('cuda', 'cuda_tf32'):
            gabor.LAUNCH[key] = dict(gabor.LAUNCH[key], win_acc=64)
            gabor.LAUNCH[key]['wide'] = dict(gabor.LAUNCH[key].get('wide', {}), win_acc=64)
        gabor_plan._PLANS.clear()
        drive_filterbank('Leaf, window-gradient fallback', frontends['Leaf'], torch.float32,
                         'highest', recorder=recorder)
        for dtype in ([torch.float32] if args.quick else [torch.float32, torch.float16]):
            recorder.label = "pcen"
            drive_pcen(dtype)
    results = list(recorder.results.values())
    failed = [r for r in results if not r['ok']]
    kernels = sorted({r['kernel'] for r in results})
    print('%d launches compiled for sm_90 (%d kernels: %s), %d failed'
          % (len(results), len(kernels), ', '.join(kernels), len(failed)))
    for r in failed:
        print('\n%s %s\n%s' % (r['kernel'], r['options'], r.get('traceback', r['error'])))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(triton=triton.__version__, triton_path=triton.__file__,
                           torch=torch.__version__, target='cuda sm_90', results=results),
                      f, indent=1)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
