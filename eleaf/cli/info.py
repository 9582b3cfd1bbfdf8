"""``eleaf info``: versions, devices and the backend table."""
import argparse
import platform

import torch


def backend_table() -> str:
    """The backend availability table as text."""
    from ..ops.backends import backends
    rows = [('backend', 'available', 'ops', 'reason')]
    for name, info in backends().items():
        rows.append((name, 'yes' if info['available'] else 'no',
                     ', '.join(info['ops']) or '-', info['reason']))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, r in enumerate(rows):
        lines.append('  '.join(c.ljust(w) for c, w in zip(r[:3], widths)) + '  ' + r[3])
        if i == 0:
            lines.append('-' * (sum(widths) + 6 + len('reason')))
    return '\n'.join(lines)


def build_parser() -> argparse.ArgumentParser:
    from .options import HelpFormatter
    return argparse.ArgumentParser(prog='eleaf info', formatter_class=HelpFormatter,
                                   description='Versions of eleaf, torch and Python, the '
                                               'devices, and which backend runs which op here.')


def main(args=None) -> int:
    build_parser().parse_args(args)
    import eleaf
    print('eleaf %s, torch %s, Python %s, %s' % (eleaf.__version__, torch.__version__,
                                               platform.python_version(), platform.machine()))
    print('CPU threads: %d' % torch.get_num_threads())
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            print('CUDA device %d: %s (CUDA %s)' % (i, torch.cuda.get_device_name(i),
                                                   torch.version.cuda))
    else:
        print('CUDA: not available')
    print()
    print(backend_table())
    from ..ops.backends import cpp_status
    if cpp_status()[0]:
        from ..ops import gabor_cpu
        print('\ncpp filterbank FFT path: %s' % (
            'fused op (oneMKL FFTs)' if gabor_cpu.FUSED_FFT
            else 'separate ops (%s)' % gabor_cpu.FUSED_FFT_REASON))
    return 0
