"""Cost model of the fused Triton filterbank: useful against issued work per kernel.

    python -m eleaf.ops.gabor_cost [--batch 256] [--seconds 1] [--precision tf32] [--json F]

Counts, per kernel and per train step (forward, then the backward of the parameters; the
input gradient only with ``dx=True``), from the launch grids, tiles and loop bounds that
:mod:`eleaf.ops.gabor` would use (the plan of :mod:`eleaf.ops.gabor_plan`):

- **useful FLOPs**: the arithmetic the filterbank needs, counted as the reference computes it
  (SPEC §2-§3): per group of n filters, N = (L - 1) // s + 1 convolution steps, T frames,
  K taps, W window taps, B examples, ``4 n N K B`` for a complex convolution (real and
  imaginary parts, one multiply-add = 2 FLOPs, all K taps), ``3 n N B`` for the squared
  modulus, ``2 n T W B`` for a pooling;
- **issued FLOPs**: what the kernels compute, padding included: whole tiles (BLOCK rows x
  BLOCK_F filter columns x BLOCK_K taps) for every program and loop iteration that runs,
  the folding's additions (v2);
- **useful bytes**: each kernel's inputs read once and outputs written once (float32);
- **issued bytes**: the global (L2) requests of the kernels' tile loads and stores, and of
  the v2 partial sums and x planes.

Not counted: the packing and geometry kernels (microseconds), integer index arithmetic, and
v1's trimming of the taps at the signal's edges (v1's counts are an upper bound there).
``issued / useful`` is the padding and recomputation overhead; v2 folds the taps' symmetry,
so its convolutions issue about half of the useful count before padding.
"""
import argparse
import json
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence

import torch

from .gabor_plan import Plan, plan

__all__ = ['KernelCost', 'filterbank_cost', 'frontend_cost', 'main']

F32 = 4


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class KernelCost:
    """FLOPs and bytes of one kernel (summed over its launches in one step)."""
    kernel: str
    useful_flop: int = 0
    issued_flop: int = 0
    useful_bytes: int = 0
    issued_bytes: int = 0

    def add(self, uf=0, i_f=0, ub=0, ib=0):
        self.useful_flop += int(uf)
        self.issued_flop += int(i_f)
        self.useful_bytes += int(ub)
        self.issued_bytes += int(ib)


def _groups(p: Plan, geometry: Sequence[Sequence[int]]):
    """Per group (n, filter blocks, s, P, K, W) of the geometry [[s, P, K, W], ...]."""
    out = []
    for (start, stop, *_), (s, P, K, W) in zip(p.layout.groups, geometry):
        n = stop - start
        out.append((n, _cdiv(n, p.block_f), int(s), int(P), int(K), int(W)))
    return out


def filterbank_cost(layout: Sequence[int], geometry: Sequence[Sequence[int]], batch: int,
                    length: int, cfg_key: str = 'cuda_tf32', version: str = 'v2',
                    dx: bool = False) -> List[KernelCost]:
    """Per-kernel :class:`KernelCost` of one train step of the filterbank ``layout`` with the
    group geometry ``geometry`` ([s, P, K, W] per group), ``batch`` examples of ``length``
    samples, launch settings ``LAUNCH[cfg_key]``, kernels ``version`` ('v1' or 'v2')."""
    p = plan(layout, torch.device('cpu'), cfg_key, version)
    cfg, bf, B, L = p.cfg, p.block_f, batch, length
    v2, fold = version != 'v1', p.fold
    T = (L - 1) // p.hop + 1
    fwd, rows, win, taps = (KernelCost(k) for k in (
        '_gabor_fwd_kernel', '_gabor_bwd_rows_kernel', '_gabor_bwd_window_kernel',
        '_gabor_bwd_taps_fold_kernel' if fold else '_gabor_bwd_taps_kernel'))
    inp = KernelCost('_gabor_bwd_input_kernel')
    planes = KernelCost('_gabor_planes_kernel')
    bu, step = p.fwd_tile(T)
    shifts = p.fwd_shifts
    bk_f, bk_r = cfg['fwd_block_k'], cfg['bwd_block_k']
    bm, bm_t, bk_t = cfg['bwd_block_m'], cfg['taps_block_m'], cfg['taps_block_k']
    for n, nfb, s, P, K, W in _groups(p, geometry):
        N = (L - 1) // s + 1
        Q = _cdiv(W, P)
        hk = K // 2
        conv = 4 * n * N * K * B
        chunks_f = _cdiv(hk + 1, bk_f) if fold else _cdiv(K, bk_f)
        chunks_r = _cdiv(hk + 1, bk_r) if fold else _cdiv(K, bk_r)
        x_tiles = 2 if fold else 1   # x[c + j] and x[c - j] (folded), or x[c - hk + j]
        # forward: per program, passes over the phases, tiles of bu rows
        progs = _cdiv(T, step) * nfb * B
        tiles = progs * _cdiv(Q, shifts) * P
        fold_adds = 2 * bu * bk_f if fold else 0
        fwd.add(conv + 3 * n * N * B + 2 * n * T * W * B,
                tiles * (chunks_f * (4 * bu * bk_f * bf + fold_adds)
                         + 3 * bu * bf + 2 * shifts * bu * bf) + progs * 2 * shifts * bu * bf,
                B * L * F32 + n * (2 * K + W) * F32 + n * T * B * F32,
                tiles * (chunks_f * (x_tiles * bu * bk_f + 2 * bk_f * bf) + shifts * bf) * F32
                + progs * step * bf * F32)
        # backward rows: recompute, transposed pooling, store D (2n rows) and E (n rows)
        progs = _cdiv(N, bm) * nfb * B
        fold_adds = 2 * bm * bk_r if fold else 0
        rows.add(conv + 2 * n * T * W * B + 7 * n * N * B,
                 progs * (chunks_r * (4 * bm * bk_r * bf + fold_adds)
                          + Q * 2 * bm * bf + 7 * bm * bf),
                 B * L * F32 + n * (2 * K + W) * F32 + n * T * B * F32 + 3 * n * N * B * F32,
                 progs * (chunks_r * (x_tiles * bm * bk_r + 2 * bk_r * bf)
                          + Q * 2 * bm * bf + 3 * bm * bf) * F32)
        # window gradient: [QMAX, BU, BR, BF] products per item of the phase-split kernel
        if p.win_block_r is not None:
            bu_w, br = p.win_block_u, p.win_block_r
            items = B * _cdiv(T + Q - 1, bu_w) * _cdiv(P, br) * nfb
            win.add(2 * n * T * W * B,
                    items * 2 * p.fwd_qmax * bu_w * br * bf,
                    n * N * B * F32 + n * T * B * F32 + n * W * F32,
                    items * (bu_w * br * bf + p.fwd_qmax * bu_w * bf) * F32)
        else:   # per-tap fallback: one tap per iteration over frame blocks
            bt = cfg['win_block_t']
            items = B * _cdiv(T, bt) * W * nfb
            win.add(2 * n * T * W * B, items * 2 * bt * bf,
                    n * N * B * F32 + n * T * B * F32 + n * W * F32,
                    items * bt * bf * F32 + B * _cdiv(T, bt) * nfb * bt * bf * F32)
        # taps gradient: [BF, BM] x [BM, BK] dots over every row block of every example
        blocks = B * _cdiv(N, bm_t) * nfb
        chunks_t = _cdiv(hk + 1, bk_t) if fold else _cdiv(K, bk_t)
        fold_adds = 2 * bm_t * bk_t if fold else 0
        taps.add(conv, blocks * chunks_t * (4 * bf * bm_t * bk_t + fold_adds),
                 B * L * F32 + 2 * n * N * B * F32 + 2 * n * K * F32,
                 blocks * chunks_t * (2 * bf * bm_t + x_tiles * bm_t * bk_t) * F32)
        if dx:
            bi = cfg['dx_block_i']
            progs = _cdiv(L, bi) * nfb * B
            inp.add(conv, progs * _cdiv(K, s) * 4 * bi * bf,
                    2 * n * N * B * F32 + 2 * n * K * F32 + B * L * F32,
                    progs * _cdiv(K, s) * 4 * bi * bf * F32)
    if v2:
        # deterministic reductions: SPLIT partial sums written, then read by one sum each
        split_t = (p.taps_fold_split(B, L)[1] if fold
                   else B * _cdiv(max(p.steps(L)), cfg['taps_rows']))
        taps.add(ib=2 * split_t * p.taps_numel * F32)
        if p.win_block_r is not None:
            win.add(ib=2 * p.window_split(B, T)[1] * p.win_numel * F32)
    if fold:
        # x planes: 2 ALIGN padded float32 copies of x (one kernel), forward and backward
        from .gabor import align_for, x_plane_length
        align = align_for(torch.float32)
        for block_k in (bk_f, max(bk_r, bk_t)):
            xplane = x_plane_length(L, p.kmax, block_k, align)
            planes.add(ub=B * L * F32, ib=B * L * F32 + 2 * align * B * xplane * F32)
    out = [fwd, rows, win, taps] + ([inp] if dx else []) + ([planes] if fold else [])
    return out


def totals(costs: Sequence[KernelCost]) -> KernelCost:
    t = KernelCost('train step')
    for c in costs:
        t.add(c.useful_flop, c.issued_flop, c.useful_bytes, c.issued_bytes)
    return t


#: frontends of the report: (label, constructor)
def _frontends():
    import eleaf
    return {
        'EfficientLeaf 8G-opt 80': lambda: eleaf.EfficientLeaf(
            n_filters=80, num_groups=8, conv_win_factor=6, stride_factor=16, backend='torch'),
        'EfficientLeaf 4G wf4.75': lambda: eleaf.EfficientLeaf(conv_win_factor=4.75,
                                                               backend='torch'),
        'Leaf': lambda: eleaf.Leaf(backend='torch'),
    }


def frontend_layout(module) -> tuple:
    """(layout, geometry [[s, P, K, W], ...]) of a frontend's filterbank at its parameters."""
    from .gabor import caps_layout, static_geometry
    fb = module.filterbank
    if hasattr(fb, 'caps'):
        return caps_layout(fb.caps), fb.geometry_tensor().tolist()
    geo, layout = static_geometry(fb.geometry(), torch.device('cpu'))
    return layout, geo.tolist()


def frontend_cost(module, batch: int, length: int, cfg_key: str = 'cuda_tf32',
                  version: str = 'v2', dx: bool = False) -> List[KernelCost]:
    """:func:`filterbank_cost` of a frontend module's filterbank at its parameters."""
    layout, geometry = frontend_layout(module)
    return filterbank_cost(layout, geometry, batch, length, cfg_key, version, dx)


def report(batch: int = 256, seconds: float = 1., cfg_key: str = 'cuda_tf32',
           sample_rate: int = 16000) -> Dict[str, Dict[str, list]]:
    """{frontend: {version: [per-kernel dicts..., train step]}} for the report's frontends."""
    out = {}
    length = int(seconds * sample_rate)
    for label, make in _frontends().items():
        module = make()
        out[label] = {}
        for version in ('v1', 'v2'):
            costs = frontend_cost(module, batch, length, cfg_key, version)
            out[label][version] = [asdict(c) for c in costs + [totals(costs)]]
    return out


def _fmt(v: float) -> str:
    return '%.2f' % (v / 1e9)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=256)
    parser.add_argument('--seconds', type=float, default=1.)
    parser.add_argument('--precision', choices=('tf32', 'ieee'), default='tf32',
                        help="launch settings: 'tf32' (cuda_tf32) or 'ieee' (cuda)")
    parser.add_argument('--json', help='write the report here')
    args = parser.parse_args(argv)
    cfg_key = 'cuda_tf32' if args.precision == 'tf32' else 'cuda'
    rep = report(args.batch, args.seconds, cfg_key)
    print('Filterbank train step (forward + parameter gradients), %d x %g s at 16 kHz, '
          'launch settings %s. GFLOP and GB per step; issued / useful.'
          % (args.batch, args.seconds, cfg_key))
    for label, versions in rep.items():
        print('\n%s' % label)
        print('  %-30s %-3s %10s %10s %6s %9s %9s %6s' % (
            'kernel', 'ver', 'useful', 'issued', 'ratio', 'useful B', 'issued B', 'ratio'))
        for version, rows in versions.items():
            for r in rows:
                print('  %-30s %-3s %10s %10s %6s %9s %9s %6s' % (
                    r['kernel'], version, _fmt(r['useful_flop']), _fmt(r['issued_flop']),
                    '%.2f' % (r['issued_flop'] / r['useful_flop']) if r['useful_flop'] else '-',
                    _fmt(r['useful_bytes']), _fmt(r['issued_bytes']),
                    '%.2f' % (r['issued_bytes'] / r['useful_bytes'])
                    if r['useful_bytes'] else '-'))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(batch=args.batch, seconds=args.seconds, launch=cfg_key,
                           report=rep), f, indent=1)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
