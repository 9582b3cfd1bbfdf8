"""``TFLeaf``: a faithful PyTorch port of Google's TensorFlow LEAF (SPEC §11).

The target is ``leaf_audio.frontend.Leaf`` of google-research/leaf-audio (Zeghidour et al.,
ICLR 2021), not the simplified :class:`eleaf.Leaf` of the EfficientLEAF code. The port
reproduces TF's sizes (K not forced odd), 'SAME' paddings, interleaved complex filters,
measured mel initialisation, forward-time clipping, PCEN and instance normalisation, and
reads and writes TF's variables (:meth:`TFLeaf.load_tf_weights`, :meth:`TFLeaf.tf_weights`)
without depending on TensorFlow.

Layout: PyTorch's channel-first ``(B, F, T)``; TF returns ``(B, T, F)``: ``y.transpose(1, 2)``.

Letters: B batch, F filters, L samples, K taps, S hop, T = ceil(L / S) frames.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..functional.tf_leaf import (TF_FLOOR, tf_gabor_constraint, tf_gabor_filterbank_ref,
                                  tf_gabor_init, tf_gabor_taps, tf_instance_norm_ref,
                                  tf_lowpass_windows, tf_pcen_ref, tf_preemphasis_ref,
                                  tf_window_sizes)
from ..ops import check_backend_name, component_backend, register_impl, select_impl
from .inputs import check_waveform

__all__ = ['TFLeaf', 'TFPCEN']

# The TF port's ops: reference implementations here; a fast backend registers its own
# implementation of the same signature (see eleaf.ops) and TFLeaf picks it up.
register_impl('tf_gabor_filterbank', 'torch', tf_gabor_filterbank_ref)
register_impl('tf_pcen', 'torch', tf_pcen_ref)


class TFPCEN(nn.Module):
    """TF LEAF's ``PCENLayer`` (``leaf_audio.postprocessing``), on channel-first input.

    ``y = (x / (floor + M)^min(alpha, 1) + delta)^(1 / max(root, 1)) - delta^(1 / max(root, 1))``
    with ``M_t = w x_t + (1 - w) M_{t-1}`` started from ``x_0``, ``w = clip(smooth, 0, 1)``;
    delta is not clamped. Parameters ``alpha``, ``delta``, ``root`` (F,) and ``smooth``
    ((F,) per channel, else (1,)).

    Args:
        num_channels (int): F.
        alpha, smooth_coef, delta, root (float): initial values. (Defaults: 0.96, 0.04, 2., 2.)
        floor (float): added to the smoother. (Default: 1e-6, TF's layer default; LEAF
            uses 1e-12)
        trainable (bool): alpha, delta and root get gradients. (Default: False)
        learn_smooth_coef (bool): the smoothing coefficient is learnt (TF's
            ``ExponentialMovingAverage``); otherwise it is fixed (TF's ``SimpleRNN`` with
            identity kernels ``s I`` and ``(1 - s) I``). (Default: False)
        per_channel_smooth_coef (bool): one coefficient per channel. (Default: False)
        backend (str, keyword-only): 'auto', 'torch', 'triton' or 'cpp' for op ``tf_pcen``.
            (Default: 'auto')
    Shape:
        (B, F, T) -> (B, F, T).
    """

    def __init__(self, num_channels: int, alpha: float = 0.96, smooth_coef: float = 0.04,
                 delta: float = 2.0, root: float = 2.0, floor: float = 1e-6,
                 trainable: bool = False, learn_smooth_coef: bool = False,
                 per_channel_smooth_coef: bool = False, *, backend: str = 'auto'):
        super().__init__()
        self.num_channels = num_channels
        self.floor = float(floor)
        self.learn_smooth_coef = learn_smooth_coef
        self.per_channel_smooth_coef = per_channel_smooth_coef
        self.backend = check_backend_name(backend)
        self.alpha = nn.Parameter(torch.full((num_channels,), float(alpha)),
                                  requires_grad=trainable)
        self.delta = nn.Parameter(torch.full((num_channels,), float(delta)),
                                  requires_grad=trainable)
        self.root = nn.Parameter(torch.full((num_channels,), float(root)),
                                 requires_grad=trainable)
        n_smooth = num_channels if (learn_smooth_coef and per_channel_smooth_coef) else 1
        self.smooth = nn.Parameter(torch.full((n_smooth,), float(smooth_coef)),
                                   requires_grad=learn_smooth_coef)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, impl = select_impl('tf_pcen', self.backend, x.device, x.dtype)
        return impl(x, self.smooth, self.alpha, self.delta, self.root, self.floor)

    def extra_repr(self):
        return ('num_channels=%d, floor=%g, learn_smooth_coef=%r, per_channel_smooth_coef=%r, '
                'backend=%r' % (self.num_channels, self.floor, self.learn_smooth_coef,
                                self.per_channel_smooth_coef, self.backend))


def _tf_pattern(*layers_and_leaf: str) -> 're.Pattern':
    """Regex of a TF variable name ending in ``layer/.../leaf`` after any prefix; every
    layer may carry Keras' uniquifying ``_<n>`` suffix."""
    *layers, leaf = layers_and_leaf
    body = ''.join(re.escape(layer) + r'(?:_\d+)?/' for layer in layers)
    return re.compile(r'(?:.*/)?' + body + re.escape(leaf))


#: canonical TF name -> pattern matched by the (':0'-stripped) given name. The Gabor kernel
#: is created outside any name scope in TF (it is added in GaborConv1D.__init__), hence 'kernel'.
_TF_PATTERNS = OrderedDict([
    ('leaf/tfbanks_preemp/kernel', _tf_pattern('tfbanks_preemp', 'kernel')),
    ('kernel', re.compile(r'kernel|(?:.*/)?tfbanks_complex_conv(?:_\d+)?/kernel')),
    ('leaf/learnable_pooling/kernel', _tf_pattern('learnable_pooling', 'kernel')),
    ('leaf/tfbanks_instancenorm/gamma', _tf_pattern('tfbanks_instancenorm', 'gamma')),
    ('leaf/tfbanks_instancenorm/beta', _tf_pattern('tfbanks_instancenorm', 'beta')),
    ('leaf/PCEN/alpha', _tf_pattern('PCEN', 'alpha')),
    ('leaf/PCEN/delta', _tf_pattern('PCEN', 'delta')),
    ('leaf/PCEN/root', _tf_pattern('PCEN', 'root')),
    ('leaf/PCEN/EMA/smooth', _tf_pattern('PCEN', 'EMA', 'smooth')),
    ('leaf/PCEN/simple_rnn/simple_rnn_cell/kernel',
     _tf_pattern('PCEN', 'simple_rnn', 'simple_rnn_cell', 'kernel')),
    ('leaf/PCEN/simple_rnn/simple_rnn_cell/recurrent_kernel',
     _tf_pattern('PCEN', 'simple_rnn', 'simple_rnn_cell', 'recurrent_kernel')),
])


def canonical_tf_name(name: str) -> Optional[str]:
    """The canonical TF LEAF variable name that ``name`` denotes, or None.

    A trailing ``:<n>`` is ignored; any prefix before the layer names is accepted (TF prefixes
    the model's name, ``leaf/`` by default, and any enclosing model's), and a layer name may
    carry Keras' ``_<n>`` suffix (``PCEN_1``). The Gabor kernel is ``kernel`` (TF creates it
    outside the name scopes) or ``.../tfbanks_complex_conv/kernel``.
    """
    stripped = re.sub(r':\d+$', '', str(name))
    for canonical, pattern in _TF_PATTERNS.items():
        if pattern.fullmatch(stripped):
            return canonical
    return None


class TFLeaf(nn.Module):
    """Google's TF LEAF frontend (``leaf_audio.frontend.Leaf``), ported faithfully.

    Pipeline (SPEC §11): optional 2-tap pre-emphasis (TF 'SAME', looks ahead one sample);
    complex Gabor convolution with ``K = int(sr window_len // 1000 + 1)`` taps (not forced
    odd), stride 1, 'SAME' padding, filters interleaved ``[Re h_0, Im h_0, ...]``; squared
    modulus; depthwise Gaussian pooling over K taps, stride ``S = int(sr window_stride // 1000)``,
    'SAME' padding (depends on ``L mod S``); floor ``max(x, 1e-5)``; compression (TF's PCEN
    by default); optional instance normalisation over time.

    Parameters:
        ``gabor_kernel`` (F, 2): centre frequencies (rad/sample) and Gaussian sigmas
        (samples), initialised by *measuring* TF's float32 mel matrix (n_fft 512, HTK mel, at
        ``init_sample_rate`` between ``min_freq`` and ``max_freq``); clipped in every forward
        to ``[0, pi]`` and ``[4, K] sqrt(2 ln 2) / pi`` without touching the stored values
        (zero gradient outside). ``pooling_widths`` (F,), init 0.4, clipped in the forward to
        ``[2/K, 0.5]``. ``preemp_kernel`` (2,), init ``[-0.97, 1]`` (with ``preemp``).
        ``compression`` (a :class:`TFPCEN` by default). ``instance_norm_gamma``,
        ``instance_norm_beta`` (F,) (with ``mean_var_norm``).

    Args (TF's names and defaults; pass them by keyword):
        learn_pooling (bool): pooling widths get gradients. (Default: True)
        learn_filters (bool): Gabor kernel and pre-emphasis get gradients. (Default: True)
        n_filters (int): F. (Default: 40)
        sample_rate (int): Hz; sets K and S only. (Default: 16000)
        window_len, window_stride (float): ms. (Default: 25, 10)
        preemp (bool): pre-emphasis. (Default: False)
        mean_var_norm (bool): instance normalisation (biased variance, eps 1e-6, learnable
            gamma = 1, beta = 0) after the compression. (Default: False)
        min_freq, max_freq (float): Hz, range of the Gabor initialisation (TF's ``GaborInit``
            arguments; the Leaf constructor of TF fixes them at 60 and 7800). (Default: 60,
            7800)
        sort_filters (bool): ``GaborConv1D``'s option: order the constrained filters by
            centre frequency in every forward. (Default: False)
        alpha, smooth_coef, delta, root, floor, trainable, learn_smooth_coef,
        per_channel_smooth_coef: options of the default :class:`TFPCEN`, with the values TF's
            Leaf passes. (Defaults: 0.96, 0.04, 2., 2., 1e-12, True, True, True)
        compression (nn.Module, optional): replaces the PCEN (TF's ``compression_fn``); use
            ``nn.Identity()`` for none. (Default: None, TF's PCEN)
        init_sample_rate (int, keyword-only): sample rate of the Gabor initialisation, TF's
            ``GaborInit(sample_rate=16000)`` whatever ``sample_rate``. (Default: 16000)
        backend (str, keyword-only): 'auto', 'torch', 'triton' or 'cpp' for the ops
            ``tf_gabor_filterbank`` (also on 'cpp': the CPU filterbank,
            :mod:`eleaf.ops.tf_gabor_cpu`) and ``tf_pcen`` ('torch' only); an op without an
            implementation in the requested backend runs on 'auto'. (Default: 'auto')
    Shape:
        (B, L) or (B, 1, L) -> (B, F, T), T = ceil(L / S). TF's ``(B, L, 1)`` input is
        ``x.transpose(1, 2)`` here, and TF's ``(B, T, F)`` output is ``y.transpose(1, 2)``.
    Not ported: SpecAugment (training-time augmentation), Keras regularisers. Keras
    optimisers also project the Gabor kernel onto its constraint after every update; call
    :meth:`constrain_` after ``optimizer.step()`` to train exactly as TF does.
    Example:
        >>> frontend = TFLeaf()
        >>> frontend(torch.randn(2, 16000)).shape
        torch.Size([2, 40, 100])
    """

    def __init__(self, learn_pooling: bool = True, learn_filters: bool = True,
                 n_filters: int = 40, sample_rate: int = 16000, window_len: float = 25.,
                 window_stride: float = 10., preemp: bool = False, mean_var_norm: bool = False,
                 min_freq: float = 60., max_freq: float = 7800., sort_filters: bool = False,
                 alpha: float = 0.96, smooth_coef: float = 0.04, delta: float = 2.0,
                 root: float = 2.0, floor: float = 1e-12, trainable: bool = True,
                 learn_smooth_coef: bool = True, per_channel_smooth_coef: bool = True,
                 compression: Optional[nn.Module] = None, *, init_sample_rate: int = 16000,
                 backend: str = 'auto'):
        super().__init__()
        self.backend = check_backend_name(backend)
        if int(n_filters) < 1:
            raise ValueError('n_filters must be >= 1, got %r' % (n_filters,))
        kernel_size, stride = tf_window_sizes(sample_rate, window_len, window_stride)
        if kernel_size < 1 or stride < 1:
            raise ValueError('TFLeaf needs at least one tap and a hop of at least one sample: '
                             'int(sr * window_len // 1000 + 1) = %d and int(sr * window_stride '
                             '// 1000) = %d for sample_rate=%r, window_len=%r, window_stride=%r'
                             % (kernel_size, stride, sample_rate, window_len, window_stride))
        if compression is not None and not isinstance(compression, nn.Module):
            raise TypeError('compression must be an nn.Module or None (TF\'s PCEN), got %s'
                            % type(compression).__name__)
        self.n_filters = int(n_filters)
        self.sample_rate = sample_rate
        self.kernel_size = kernel_size
        self.stride = stride
        self.preemp = bool(preemp)
        self.mean_var_norm = bool(mean_var_norm)
        self.sort_filters = bool(sort_filters)

        if self.preemp:
            self.preemp_kernel = nn.Parameter(torch.tensor([-0.97, 1.]),
                                              requires_grad=learn_filters)
        self.gabor_kernel = nn.Parameter(
            tf_gabor_init(self.n_filters, init_sample_rate, min_freq, max_freq),
            requires_grad=learn_filters)
        self.pooling_widths = nn.Parameter(torch.full((self.n_filters,), 0.4),
                                           requires_grad=learn_pooling)
        if compression is None:
            compression = TFPCEN(self.n_filters, alpha=alpha, smooth_coef=smooth_coef,
                                 delta=delta, root=root, floor=floor, trainable=trainable,
                                 learn_smooth_coef=learn_smooth_coef,
                                 per_channel_smooth_coef=per_channel_smooth_coef,
                                 backend=component_backend('tf_pcen', backend))
        self.compression = compression
        if self.mean_var_norm:
            self.instance_norm_gamma = nn.Parameter(torch.ones(self.n_filters))
            self.instance_norm_beta = nn.Parameter(torch.zeros(self.n_filters))

    # ----------------------------------------------------------------- filterbank pieces
    def constrained_kernel(self) -> torch.Tensor:
        """(F, 2) Gabor parameters as the forward uses them: clipped (TF's
        ``GaborConstraint``), then sorted by centre frequency with ``sort_filters``."""
        kernel = tf_gabor_constraint(self.gabor_kernel, self.kernel_size)
        if self.sort_filters:
            kernel = kernel[torch.argsort(kernel[:, 0], stable=True)]
        return kernel

    def clipped_pooling_widths(self) -> torch.Tensor:
        """(F,) pooling widths clipped to ``[2/K, 0.5]`` as the forward uses them."""
        return self.pooling_widths.clamp(2. / self.kernel_size, 0.5)

    def gabor_taps(self) -> torch.Tensor:
        """(2F, 1, K) interleaved real Gabor convolution weights (TF's conv kernel is their
        ``permute(2, 1, 0)``, shape (K, 1, 2F))."""
        return tf_gabor_taps(self.constrained_kernel(), self.kernel_size)

    def pooling_windows(self) -> torch.Tensor:
        """(F, K) Gaussian pooling windows."""
        return tf_lowpass_windows(self.clipped_pooling_widths(), self.kernel_size)

    def filterbank(self, x: torch.Tensor) -> torch.Tensor:
        """Gabor convolution, squared modulus and Gaussian pooling (op
        ``tf_gabor_filterbank``), without pre-emphasis and floor.

        Args:
            x (Tensor): (B, 1, L) waveform.
        Returns:
            Tensor: (B, F, T).
        """
        _, impl = select_impl('tf_gabor_filterbank',
                              component_backend('tf_gabor_filterbank', self.backend),
                              x.device, x.dtype)
        return impl(x, self.constrained_kernel(), self.clipped_pooling_widths(),
                    self.kernel_size, self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_waveform(x, self.gabor_kernel, type(self).__name__)
        if self.preemp:
            x = tf_preemphasis_ref(x, self.preemp_kernel)
        x = self.filterbank(x)
        x = torch.clamp(x, min=TF_FLOOR)
        x = self.compression(x)
        if self.mean_var_norm:
            x = tf_instance_norm_ref(x, self.instance_norm_gamma, self.instance_norm_beta)
        return x

    @torch.no_grad()
    def constrain_(self) -> 'TFLeaf':
        """Project the stored Gabor kernel onto its constraint, in place, as a Keras optimiser
        does after every update (``var.assign(var.constraint(var))``). Returns self."""
        self.gabor_kernel.copy_(tf_gabor_constraint(self.gabor_kernel, self.kernel_size))
        return self

    def frames(self, length: int) -> int:
        """Number of output frames T = ceil(L / S) for an input of ``length`` samples."""
        return -(-int(length) // self.stride)

    # ----------------------------------------------------------------- TF weights bridge
    def _tf_layout(self) -> 'OrderedDict[str, Tuple[Tuple[int, ...], object]]':
        """canonical TF name -> (TF shape, parameter or special marker)."""
        n = self.n_filters
        layout = OrderedDict()
        if self.preemp:
            layout['leaf/tfbanks_preemp/kernel'] = ((2, 1, 1), self.preemp_kernel)
        layout['kernel'] = ((n, 2), self.gabor_kernel)
        layout['leaf/learnable_pooling/kernel'] = ((1, 1, n, 1), self.pooling_widths)
        pcen = self.compression if isinstance(self.compression, TFPCEN) else None
        if pcen is not None:
            c = pcen.num_channels
            layout['leaf/PCEN/alpha'] = ((c,), pcen.alpha)
            layout['leaf/PCEN/delta'] = ((c,), pcen.delta)
            layout['leaf/PCEN/root'] = ((c,), pcen.root)
            if pcen.learn_smooth_coef:
                layout['leaf/PCEN/EMA/smooth'] = (tuple(pcen.smooth.shape), pcen.smooth)
            else:
                layout['leaf/PCEN/simple_rnn/simple_rnn_cell/kernel'] = ((c, c), 'rnn_kernel')
                layout['leaf/PCEN/simple_rnn/simple_rnn_cell/recurrent_kernel'] = (
                    (c, c), 'rnn_recurrent')
        if self.mean_var_norm:
            layout['leaf/tfbanks_instancenorm/gamma'] = ((n,), self.instance_norm_gamma)
            layout['leaf/tfbanks_instancenorm/beta'] = ((n,), self.instance_norm_beta)
        return layout

    def tf_weights(self, grad: bool = False) -> Dict[str, Optional[np.ndarray]]:
        """TF LEAF's variables from this module, under TF's names (without ``:0``, model
        name ``leaf``) and in TF's shapes, as numpy arrays in the parameters' dtype.

        Args:
            grad (bool): return the parameters' ``.grad`` instead (None where a parameter has
                no gradient, e.g. a fixed one). (Default: False)
        Returns:
            dict: e.g. ``{'kernel': (F, 2), 'leaf/learnable_pooling/kernel': (1, 1, F, 1),
            'leaf/PCEN/alpha': (F,), ...}``; accepted as is by :meth:`load_tf_weights`.
        """
        out = OrderedDict()
        for name, (shape, target) in self._tf_layout().items():
            if isinstance(target, str):  # the fixed SimpleRNN smoother: s I and (1 - s) I
                if grad:
                    out[name] = None
                    continue
                s = self.compression.smooth.detach().cpu().numpy().reshape(())
                gain = s if target == 'rnn_kernel' else (1. - s)
                out[name] = (np.eye(shape[0], dtype=s.dtype) * gain).astype(s.dtype)
                continue
            value = target.grad if grad else target
            out[name] = None if value is None else (
                value.detach().cpu().numpy().reshape(shape).copy())
        return out

    def load_tf_weights(self, weights: Mapping[str, object], strict: bool = True) -> 'TFLeaf':
        """Load TF LEAF's variables (e.g. ``{v.name: v.numpy() for v in leaf.weights}``).

        Names are matched on their ending (see :func:`canonical_tf_name`): ``kernel`` (the
        Gabor kernel, (F, 2)), ``leaf/learnable_pooling/kernel`` (1, 1, F, 1),
        ``leaf/PCEN/{alpha,delta,root}`` (F,), ``leaf/PCEN/EMA/smooth`` ((F,) or (1,)) or, with
        ``learn_smooth_coef=False``, ``leaf/PCEN/simple_rnn/simple_rnn_cell/{kernel,
        recurrent_kernel}`` (F, F) (must be ``s I`` and ``(1 - s) I``),
        ``leaf/tfbanks_preemp/kernel`` (2, 1, 1), ``leaf/tfbanks_instancenorm/{gamma,beta}``
        (F,); a ``:0`` suffix, any prefix (``leaf/``, an enclosing model's name) and Keras'
        ``_<n>`` layer suffixes are accepted. The PCEN names are expected when the
        compression is a :class:`TFPCEN`.

        Args:
            weights: mapping from TF variable names to arrays (numpy, torch or lists).
            strict (bool): missing and unexpected names are errors; otherwise they are
                ignored (mis-shaped and duplicate names always are errors). (Default: True)
        Returns:
            self.
        Raises:
            ValueError: one message listing every missing, unexpected, duplicate and
                mis-shaped (or non-numeric) name; nothing is loaded then.
        """
        if not isinstance(weights, Mapping):
            raise TypeError('load_tf_weights expects a mapping from TF variable names to '
                            'arrays, got %s' % type(weights).__name__)
        layout = self._tf_layout()
        found, unexpected, duplicate, misshaped, seen = {}, [], [], [], {}
        for name, value in weights.items():
            canonical = canonical_tf_name(name)
            if canonical is None or canonical not in layout:
                unexpected.append(str(name))
                continue
            if canonical in seen:
                duplicate.append('%s and %s' % (seen[canonical], name))
                continue
            seen[canonical] = str(name)
            shape = layout[canonical][0]
            try:
                if isinstance(value, torch.Tensor):
                    value = value.detach().cpu().numpy()
                array = np.asarray(value)
                if array.dtype.kind not in 'fiub':
                    raise TypeError(array.dtype)
            except Exception:  # noqa: BLE001 - reported below
                misshaped.append('%s: not a numeric array (%s)' % (name, type(value).__name__))
                continue
            if tuple(array.shape) != shape:
                misshaped.append('%s: shape %s, expected %s' % (name, tuple(array.shape), shape))
                continue
            found[canonical] = (str(name), array)
        missing = [name for name in layout if name not in seen]
        rnn_problem = self._check_rnn(found)
        if rnn_problem:
            misshaped.append(rnn_problem)
        problems = []
        if strict and missing:
            problems.append('missing: %s' % ', '.join(missing))
        if strict and unexpected:
            problems.append('unexpected: %s' % ', '.join(unexpected))
        if duplicate:
            problems.append('given twice: %s' % ', '.join(duplicate))
        if misshaped:
            problems.append('mis-shaped or invalid: %s' % '; '.join(misshaped))
        if problems:
            raise ValueError('TFLeaf.load_tf_weights (F=%d, K=%d, preemp=%r, mean_var_norm=%r, '
                             'compression=%s): %s' % (
                                 self.n_filters, self.kernel_size, self.preemp,
                                 self.mean_var_norm, type(self.compression).__name__,
                                 ' | '.join(problems)))
        with torch.no_grad():
            for canonical, (_, array) in found.items():
                target = layout[canonical][1]
                if isinstance(target, str):
                    if target == 'rnn_kernel':
                        smooth = self.compression.smooth
                        smooth.copy_(torch.as_tensor(np.diag(array)[:1].astype(np.float64))
                                     .to(smooth.dtype))
                    continue
                target.copy_(torch.as_tensor(array.astype(np.float64)).to(target.dtype)
                             .reshape(target.shape))
        return self

    def _check_rnn(self, found) -> Optional[str]:
        """The fixed smoother's matrices must be ``s I`` and ``(1 - s) I``."""
        kname = 'leaf/PCEN/simple_rnn/simple_rnn_cell/kernel'
        rname = 'leaf/PCEN/simple_rnn/simple_rnn_cell/recurrent_kernel'
        if kname not in found and rname not in found:
            return None
        mats = {}
        for key in (kname, rname):
            if key in found:
                array = found[key][1].astype(np.float64)
                diag = np.diag(array)
                if (np.any(array - np.diag(diag)) or np.ptp(diag) > 0):
                    return ('%s: TFLeaf represents the fixed PCEN smoother by one coefficient '
                            's, so the matrix must be a multiple of the identity'
                            % found[key][0])
                mats[key] = diag[0]
        if len(mats) == 2 and abs(mats[kname] + mats[rname] - 1) > 1e-6:
            return ('%s and %s: gains %g and %g do not sum to 1' % (
                found[kname][0], found[rname][0], mats[kname], mats[rname]))
        return None

    def extra_repr(self):
        return ('n_filters=%d, kernel_size=%d, stride=%d, preemp=%r, mean_var_norm=%r, '
                'sort_filters=%r, backend=%r' % (self.n_filters, self.kernel_size, self.stride,
                                                 self.preemp, self.mean_var_norm,
                                                 self.sort_filters, self.backend))
