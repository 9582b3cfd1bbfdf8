"""Static layouts and launch plans of the fused Triton filterbank (``eleaf.kernels.gabor``,
``eleaf.kernels.gabor_taps``).

A *layout* is a flat list of ints, everything about a filterbank that is static: the groups'
filters, the caps of their kernel and window sizes and strides, the stride thresholds of the
geometry kernel. It is what the custom ops take besides tensors, so a compiled graph
specialises on it once, never on the geometry's values. The geometry itself is an int32
(G, 4) tensor ``[s, P, K, W]`` on the device (``eleaf.functional.geometry``).

Layout ints: ``[hop, qcap, pool_size, cwf_bits, G, (start, stop, kcap, wcap, smin) x G,
N_THR, (d, t_bits) x N_THR]``:

- ``hop``: s P of every group; ``qcap``: bound of the pooling shifts cdiv(W, P);
- ``pool_size``, ``cwf_bits`` (float32 bits of conv_win_factor), ``N_THR`` and the stride
  thresholds (:func:`eleaf.functional.geometry.stride_thresholds`): the inputs of the
  geometry kernel and of the pooling-width rescaling (EfficientLEAF, :func:`caps_layout`);
  0, 0, 0 for a *static* layout (a fixed geometry: LEAF, the TF port, a given
  :class:`~eleaf.functional.GroupGeometry` tuple, :func:`static_layout`), whose groups'
  caps are their exact K, W and s;
- per group: its filters ``start ... stop - 1``, the caps of K and W, the smallest stride;
- optionally one more int, flags: 1 = the taps are not symmetric (TF LEAF's even kernels;
  the v2 kernels fold the symmetry of every other layout's taps, see
  :func:`eleaf.kernels.gabor._fold_tile`).

A *plan* (:class:`Plan`, cached per layout, device and launch configuration) holds the
static tables the kernels read and the launch settings.
"""
import functools
import os
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch

from ..functional.geometry import GeometryCaps, GroupGeometry, stride_thresholds

try:
    import triton
    HAS_TRITON = True
except Exception:  # ImportError, or a broken Triton installation
    HAS_TRITON = False

__all__ = ['LAUNCH', 'Layout', 'Plan', 'caps_layout', 'static_layout', 'parse_layout', 'plan',
           'layout_plan', 'alloc', 'poison', 'on_device', 'fit_block_f', 'kernel_version']

#: Launch settings (block sizes are powers of two; every tl.dot dim >= 16), measured on an
#: H100 (B=256, L=16000; EfficientLeaf 8 groups x 10 filters, and LEAF: 40 filters, K = W = 401,
#: s = 1, P = 160). 'cuda' is for float32 with 'ieee' dots, 'cuda_tf32' for TF32 and
#: fp16/bf16 tensor-core dots; ``wide`` overrides apply when a filter block holds 64 filters
#: (``max_block_f``: filters per block; v1: a group of n filters uses the smallest power of two
#: >= n, at least 16, at most this; v2: :func:`fit_block_f`). The Triton interpreter (CPU
#: tensors) runs the same kernels with larger chunks, because its cost is per operation rather
#: than per element.
#: Since 2026-12-03 the ``wide`` forward, backward-rows and input-gradient settings are chosen
#: so that these kernels compile for sm_90 without register spills under Triton 3.6 and 3.9
#: (``python -m tests.ops.sm90_compile`` reports ptxas' registers and spills); that choice
#: has not been timed on a GPU. ``fold`` overrides apply to the v2 kernels where they fold the
#: taps' symmetry (2026-12-07, chosen the same way, not timed).
LAUNCH = {
    'cuda': dict(
        max_block_f=64,
        elementwise_block=1024,   # x planes and partial-sum reductions (v2)
        taps_programs=1056,       # folded taps gradient: programs per launch (about)
        fwd_block_u=128,     # convolution rows per phase in a forward program
        fwd_block_k=32,      # Gabor taps per tl.dot chunk (forward)
        fwd_warps=8, fwd_stages=3,
        bwd_block_m=128,     # convolution rows per backward-rows program
        bwd_block_k=32,      # taps per chunk (backward rows)
        bwd_warps=8, bwd_stages=3,
        taps_block_m=32,     # convolution rows per tl.dot step of the taps gradient
        taps_block_k=64,     # taps per taps-gradient program
        taps_rows=8192,      # convolution rows reduced in registers per taps-gradient program
        taps_warps=4, taps_stages=3,
        win_acc=4096,        # window gradient: register accumulator elements per program
        win_programs=1056,   # window gradient: programs per launch (about)
        win_warps=4,
        win_block_t=64,      # frames per program of the fallback window-gradient kernel
        dx_block_i=256,      # input samples per input-gradient program
        warps=8,             # input gradient, fallback window gradient
        wide=dict(fwd_block_u=64, fwd_block_k=16, bwd_block_m=64, dx_block_i=64,
                  taps_block_m=64, taps_warps=8, win_acc=8192),
        # the v2 folded taps gradient holds two x tiles: 64 taps spilled 560 B (ptxas)
        fold=dict(taps_block_k=32, taps_block_m=16)),
    'cuda_tf32': dict(
        max_block_f=64, elementwise_block=1024, taps_programs=1056,
        fwd_block_u=64, fwd_block_k=16, fwd_warps=4, fwd_stages=3,
        bwd_block_m=64, bwd_block_k=32, bwd_warps=4, bwd_stages=3,
        taps_block_m=16, taps_block_k=64, taps_rows=8192, taps_warps=4, taps_stages=4,
        win_acc=4096, win_programs=1056, win_warps=4, win_block_t=64,
        dx_block_i=256, warps=8,
        wide=dict(fwd_warps=8, bwd_warps=8, dx_block_i=64, taps_block_m=32, taps_stages=4,
                  win_acc=8192)),
    'interpreter': dict(
        max_block_f=32, elementwise_block=1 << 14, taps_programs=1056,
        fwd_block_u=64, fwd_block_k=256, fwd_warps=4, fwd_stages=1,
        bwd_block_m=64, bwd_block_k=256, bwd_warps=4, bwd_stages=1,
        taps_block_m=64, taps_block_k=256, taps_rows=1 << 20, taps_warps=4, taps_stages=1,
        win_acc=1 << 16, win_programs=2, win_warps=4, win_block_t=64,
        dx_block_i=1024, warps=4),
}


def _f32_bits(v: float) -> int:
    return struct.unpack('<i', struct.pack('<f', v))[0]


def _bits_f32(i: int) -> float:
    return struct.unpack('<f', struct.pack('<i', i))[0]


@dataclass(frozen=True)
class Layout:
    """A parsed layout (see the module docstring)."""
    hop: int
    qcap: int
    pool_size: int
    conv_win_factor: float
    groups: Tuple[Tuple[int, int, int, int, int], ...]   # (start, stop, kcap, wcap, smin)
    thresholds: Tuple[Tuple[int, int], ...]             # (d, float32 bits of t_d)
    symmetric: bool = True   # real taps even, imaginary taps odd about the centre tap

    @property
    def static(self) -> bool:
        """A fixed geometry: each group's caps are its K, W and s."""
        return not self.thresholds

    @property
    def n_filters(self) -> int:
        return self.groups[-1][1]

    def static_geometry(self) -> List[List[int]]:
        """[s, P, K, W] per group of a static layout."""
        return [[smin, self.hop // smin, kcap, wcap] for _, _, kcap, wcap, smin in self.groups]


def caps_layout(caps: GeometryCaps) -> List[int]:
    """The layout of a grouped filterbank whose geometry the device computes from its
    parameters, sized by ``caps``."""
    return list(_caps_layout(caps))


#: Dynamo calls it at trace time and takes the list as a constant (see eleaf.ops.backends)
caps_layout._dynamo_marked_constant = True


@functools.lru_cache(maxsize=64)
def _caps_layout(caps: GeometryCaps) -> Tuple[int, ...]:
    out = [caps.hop, caps.shifts, caps.pool_size, _f32_bits(caps.conv_win_factor),
           caps.num_groups]
    for a, b in zip(caps.splits[:-1], caps.splits[1:]):
        out += [a, b, caps.kernel_size, caps.window_size, caps.min_stride]
    thr = stride_thresholds(caps)
    out.append(len(thr))
    for d, t in thr:
        out += [d, _f32_bits(t)]
    return tuple(out)


def static_layout(geometry: Sequence[GroupGeometry], symmetric: bool = True) -> List[int]:
    """The layout of a fixed geometry (one :class:`GroupGeometry` per group); ``symmetric``:
    the taps will be Gabor taps centred on the middle tap (False: any taps, never folded)."""
    geometry = list(geometry)
    if not geometry:
        raise ValueError('geometry needs at least one group')
    hop = geometry[0].conv_stride * geometry[0].pool_stride
    qcap = max(-(-g.window_size // max(g.pool_stride, 1)) for g in geometry)
    out = [hop, qcap, 0, 0, len(geometry)]
    for g in geometry:
        if g.conv_stride * g.pool_stride != hop:
            raise ValueError('every group needs s * P equal to the hop %d, got s=%d, P=%d'
                             % (hop, g.conv_stride, g.pool_stride))
        out += [g.start, g.stop, g.kernel_size, g.window_size, g.conv_stride]
    out.append(0)
    if not symmetric:
        out.append(1)
    if not torch.compiler.is_compiling():
        parse_layout(out)   # validates (eagerly: the custom ops validate it again anyway)
    return out



@functools.lru_cache(maxsize=256)
def _parse(layout: Tuple[int, ...]) -> Layout:
    v = list(layout)
    try:
        hop, qcap, pool_size, cwf_bits, G = v[:5]
        groups = tuple(tuple(v[5 + 5 * g:10 + 5 * g]) for g in range(G))
        at = 5 + 5 * G
        n_thr = v[at]
        thr = tuple((v[at + 1 + 2 * i], v[at + 2 + 2 * i]) for i in range(n_thr))
        end = at + 1 + 2 * n_thr
        flags = v[end] if len(v) == end + 1 else 0
        if len(v) not in (end, end + 1) or flags not in (0, 1) or G < 1 or any(
                len(g) != 5 for g in groups):
            raise IndexError
    except (IndexError, ValueError):
        raise ValueError('malformed filterbank layout: %r' % (layout,)) from None
    expect = 0
    for start, stop, kcap, wcap, smin in groups:
        if start != expect or stop <= start:
            raise ValueError('groups must cover filters 0 ... F-1 in order, got %s' % (groups,))
        if kcap < 1 or wcap < 1 or kcap % 2 == 0 or wcap % 2 == 0:
            raise ValueError('kernel and window sizes must be odd, got K=%d, W=%d'
                             % (kcap, wcap))
        if hop < 1 or smin < 1 or hop % smin:
            raise ValueError('every group needs s * P equal to the hop %d, got s=%d'
                             % (hop, smin))
        if -(-wcap // (hop // smin)) > qcap:
            raise ValueError('qcap %d below cdiv(W, P) = %d' % (qcap, -(-wcap // (hop // smin))))
        expect = stop
    if thr and (any(hop % d for d, _ in thr) or thr[0][0] != groups[0][4]):
        raise ValueError('stride thresholds must start at the smallest stride and divide the hop')
    return Layout(hop, qcap, pool_size, _bits_f32(cwf_bits), groups, thr, not flags)


def parse_layout(layout: Sequence[int]) -> Layout:
    """A :class:`Layout` from its ints (validated; cached)."""
    return _parse(tuple(int(i) for i in layout))


class Plan:
    """Static launch data of one layout on one device (cached, see :func:`plan`).

    ``tab``: int32 (filter blocks, NCOL) table of ``eleaf.kernels.gabor``; ``filter_tab``:
    int32 (F, 7) table of ``eleaf.kernels.gabor_taps``; ``thresholds``: int32 (N_THR, 2);
    ``static_geo``: the (G, 4) geometry of a static layout (else None).
    """

    def __init__(self, layout: Layout, device: torch.device, cfg_key: str,
                 version: str = 'v2'):
        from ..kernels.gabor import GTAB_NCOL, NCOL
        self.layout = layout
        self.version = version
        #: the v2 kernels fold the taps' symmetry (not for a layout of asymmetric taps)
        self.fold = version != 'v1' and layout.symmetric
        groups = layout.groups
        self.F = layout.n_filters
        self.G = len(groups)
        self.hop = layout.hop
        self.kmax = max(g[2] for g in groups)
        self.wmax = max(g[3] for g in groups)
        self.wmin = min(g[3] for g in groups)
        self.qmax = layout.qcap
        self.pmax = max(self.hop // g[4] for g in groups)
        self.n_max_group = max(g[1] - g[0] for g in groups)
        self.fwd_qmax = triton.next_power_of_2(self.qmax)
        self.fwd_shifts = min(self.qmax, 4)   # forward accumulators (shifts per pass)
        self.cfg = cfg = dict(LAUNCH[cfg_key])
        sizes = [g[1] - g[0] for g in groups]
        if version == 'v1':
            self.block_f = min(cfg['max_block_f'],
                               max(16, triton.next_power_of_2(self.n_max_group)))
        else:
            self.block_f = fit_block_f(sizes, cfg['max_block_f'])
        if self.block_f >= 64:
            cfg.update(cfg.get('wide', {}))
        if self.fold:
            cfg.update(cfg.get('fold', {}))
        self.fwd_block_u = max(cfg['fwd_block_u'], triton.next_power_of_2(2 * self.qmax))
        self.fwd_step = self.fwd_block_u - self.qmax + 1   # frames per forward program
        # window gradient: phases r per program (BLOCK_R) and rows u per item (BLOCK_U) with
        # QMAX * BLOCK_U * BLOCK_R * BLOCK_F <= win_acc; None: the per-tap fallback kernel
        budget = cfg['win_acc'] // (self.fwd_qmax * self.block_f)
        if budget >= 16:
            self.win_block_r = min(triton.next_power_of_2(self.pmax), budget // 2)
            self.win_block_u = min(budget // self.win_block_r, 64)
        else:
            self.win_block_r = self.win_block_u = None
        rows, filt, tap_off, win_off = [], [], [], []
        t_off = w_off = 0
        for gi, (start, stop, kcap, wcap, smin) in enumerate(groups):
            n = stop - start
            tap_off.append(t_off)
            win_off.append(w_off)
            for loc in range(0, n, self.block_f):
                rows.append([start + loc, min(self.block_f, n - loc), gi, loc, n, t_off, w_off])
            filt += [[gi, i, n, t_off, w_off, kcap, wcap] for i in range(n)]
            t_off += 2 * n * kcap
            w_off += n * wcap
        self.tap_off, self.win_off = tap_off, win_off
        self.taps_numel, self.win_numel = t_off, w_off
        # per group (n, taps offset, taps region, windows offset, windows region): the
        # deterministic reductions' table (eleaf.kernels.gabor._gabor_sum_partials_kernel)
        gtab = [[g[1] - g[0], tap_off[i], 2 * (g[1] - g[0]) * g[2], win_off[i],
                 (g[1] - g[0]) * g[3]] for i, g in enumerate(groups)]
        self.region_max = max(max(r[2], r[4]) for r in gtab)
        assert len(gtab[0]) == GTAB_NCOL
        self.gtab = torch.tensor(gtab, dtype=torch.int32).to(device)
        self.n_fb = len(rows)
        assert len(rows[0]) == NCOL
        self.tab = torch.tensor(rows, dtype=torch.int32).to(device)
        self.filter_tab = torch.tensor(filt, dtype=torch.int32).to(device)
        self.longest = max(self.kmax, self.wmax)
        self.thresholds = (torch.tensor([list(t) for t in layout.thresholds],
                                        dtype=torch.int32).to(device)
                           if layout.thresholds else None)
        self.static_geo = (torch.tensor(layout.static_geometry(), dtype=torch.int32).to(device)
                           if layout.static else None)
        self.scratch = OrderedDict()   # (L, chunk) -> (int64 (G, 2) offsets, D numel, E numel)
        self.extra = {}                # other cached per-device data

    def fwd_tile(self, T: int) -> Tuple[int, int]:
        """(BLOCK_U, STEP) of the forward for T frames: v1 the plan's; v2 the power of two
        (at least 16 and 2 qmax, at most the launch setting) that computes the fewest rows
        cdiv(T, STEP) BLOCK_U, STEP = BLOCK_U - qmax + 1 (ties: the larger tile)."""
        if self.version == 'v1':
            return self.fwd_block_u, self.fwd_step
        lo = max(16, triton.next_power_of_2(2 * self.qmax))
        best = None
        bu = lo
        while bu <= max(lo, self.fwd_block_u):
            step = bu - self.qmax + 1
            rows = -(-T // step) * bu
            if best is None or rows <= best[0]:
                best = (rows, bu, step)
            bu *= 2
        return best[1], best[2]

    def window_split(self, nb: int, T: int) -> Tuple[int, int]:
        """(phase chunks, SPLIT) of the phase-split window gradient for ``nb`` examples of T
        frames: about ``win_programs`` programs, SPLIT reducing disjoint items each."""
        n_r = -(-self.pmax // self.win_block_r)
        items = nb * -(-(T + self.qmax - 1) // self.win_block_u)
        return n_r, max(1, min(items, -(-self.cfg['win_programs'] // (n_r * self.n_fb))))

    def taps_fold_split(self, nb: int, L: int) -> Tuple[int, int]:
        """(taps chunks, SPLIT) of the folded taps gradient (v2) for ``nb`` examples of L
        samples: about ``taps_programs`` programs, SPLIT partial sums per taps chunk."""
        n_j = -(-(self.kmax // 2 + 1) // self.cfg['taps_block_k'])
        items = nb * -(-max(self.steps(L)) // self.cfg['taps_rows'])
        return n_j, max(1, min(items, -(-self.cfg['taps_programs'] // (n_j * self.n_fb))))

    def steps(self, L: int) -> List[int]:
        """Per group, the bound of its convolution steps N = (L - 1) // s + 1."""
        return [(L - 1) // g[4] + 1 for g in self.layout.groups]

    def scratch_layout(self, L: int, chunk: int, device: torch.device):
        """Offsets of each group's D (chunk, 2n, N) and E (chunk, n, N) in the scratch, sized
        by the group's bound of N."""
        key = (L, chunk)
        if key not in self.scratch:
            bases, d_off, e_off = [], 0, 0
            for (start, stop, _, _, _), N in zip(self.layout.groups, self.steps(L)):
                n = stop - start
                bases.append([d_off, e_off])
                d_off += chunk * 2 * n * N
                e_off += chunk * n * N
            if len(self.scratch) >= 16:
                self.scratch.popitem(last=False)
            self.scratch[key] = (torch.tensor(bases, dtype=torch.int64).to(device), d_off, e_off)
        return self.scratch[key]


def fit_block_f(sizes: Sequence[int], max_block_f: int) -> int:
    """Filters per block (v2): the power of two in [16, max_block_f] that pads the groups'
    filters ``sizes`` to the fewest columns sum cdiv(n, block) block (ties: the larger
    block). 10 filters take 16 columns, LEAF's 40 take 48 (three blocks of 16), not 64."""
    best = None
    bf = 16
    while bf <= max(16, max_block_f):
        cols = sum(-(-n // bf) * bf for n in sizes)
        if best is None or cols <= best[0]:
            best = (cols, bf)
        bf *= 2
    return best[1]


def kernel_version() -> str:
    """The filterbank kernels: ``ELEAF_GABOR_KERNELS`` = ``v2`` (default: the taps' symmetry
    folded, deterministic gradients without atomics) or ``v1`` (the kernels before 2026-12-07,
    kept until a GPU has timed both; they use atomic adds)."""
    v = os.environ.get('ELEAF_GABOR_KERNELS', 'v2').strip().lower() or 'v2'
    if v not in ('v1', 'v2'):
        raise ValueError("ELEAF_GABOR_KERNELS must be 'v1' or 'v2', got %r"
                         % os.environ.get('ELEAF_GABOR_KERNELS'))
    return v


_PLANS: 'OrderedDict[tuple, Plan]' = OrderedDict()


def plan(layout: Sequence[int], device: torch.device, cfg_key: str,
         version: Optional[str] = None) -> Plan:
    """The cached :class:`Plan` of a layout on a device with the launch settings
    ``LAUNCH[cfg_key]`` for the kernels ``version`` (default :func:`kernel_version`)."""
    version = version or kernel_version()
    key = (tuple(layout), str(device), cfg_key, version)
    p = _PLANS.get(key)
    if p is None:
        p = Plan(parse_layout(layout), device, cfg_key, version)
        if len(_PLANS) >= 64:
            _PLANS.popitem(last=False)
        _PLANS[key] = p
    else:
        _PLANS.move_to_end(key)
    return p


def layout_plan(layout: Sequence[int], device: torch.device) -> Plan:
    """The plan of a layout for its packed layout and tables only (not its launch settings,
    which depend on the input's dtype and precision)."""
    return plan(layout, device, 'cuda' if device.type == 'cuda' else 'interpreter')


def poison() -> bool:
    """``ELEAF_DEBUG_POISON=1``: outputs and scratch are filled with NaN before the kernels
    write them (a test aid: unwritten elements show up as NaN)."""
    return os.environ.get('ELEAF_DEBUG_POISON', '0') not in ('', '0')


def alloc(shape, dtype, device) -> torch.Tensor:
    if poison():
        if dtype in (torch.int32, torch.int64):
            return torch.full(shape, -(2 ** 30), dtype=dtype, device=device)
        return torch.full(shape, float('nan'), dtype=dtype, device=device)
    return torch.empty(shape, dtype=dtype, device=device)


class on_device:
    """Make a tensor's CUDA device current for the launches (no-op on the CPU)."""

    def __init__(self, t: torch.Tensor):
        self.ctx = torch.cuda.device(t.device) if t.is_cuda else None

    def __enter__(self):
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *args):
        if self.ctx is not None:
            self.ctx.__exit__(*args)
