"""Constructor argument checks of the public modules.

Every check raises one ``ValueError`` that names the module, the argument, the value and the
valid range, before anything is built, e.g.
``EfficientLeaf: conv_win_factor must be in [2.67, 64], got 10000.0``.
The ranges are generous: every configuration of the original code and the paper passes, and
so does anything that gives finite, meaningful output. What they rule out is what used to
give NaN, hang, or fail later with an internal error (SPEC's formulas divide by zero there).
"""
import math
import numbers
import operator

import numpy as np

__all__ = ['check_int', 'check_real', 'check_bool', 'check_frequencies', 'check_optional_real',
           'Z', 'MAX_FILTERS', 'MAX_TAPS', 'MIN_CONV_WIN_FACTOR', 'MAX_CONV_WIN_FACTOR',
           'MAX_STRIDE_FACTOR', 'MIN_POOL_RATIO', 'gabor_frontend_sizes']

#: sqrt(2 ln 2) / pi: a Gaussian of std sigma has a full width at half maximum of sigma / Z
#: in the frequency domain; the filterbanks' bandwidth clamps are multiples of it
Z = math.sqrt(2 * math.log(2)) / math.pi
#: the most filters a frontend may have
MAX_FILTERS = 4096
#: the longest Gabor kernel or pooling window (taps) a frontend may need
MAX_TAPS = 65537
#: EfficientLeaf's kernel size is int(max(sigma) * conv_win_factor), sigma >= 2Z: below
#: 1 / Z a group can get 1-tap filters, whose output no longer depends on the frequency
MIN_CONV_WIN_FACTOR = 2.67
MAX_CONV_WIN_FACTOR = 64.
MAX_STRIDE_FACTOR = 1000.
#: EfficientLeaf's pooling window of a group is int(pool_size / s + 0.5) taps (made odd),
#: s <= hop; it needs 3 taps (a Gaussian over 1 tap is 0/0): pool_size >= 1.5 hop
MIN_POOL_RATIO = 1.5


def _fmt(value) -> str:
    return repr(value)


def _bound(value) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return '%d' % value
    return '%g' % value


def _range_text(low, high, low_open, high_open) -> str:
    if high is None:
        return ('> %s' if low_open else '>= %s') % _bound(low)
    if low is None:
        return ('< %s' if high_open else '<= %s') % _bound(high)
    return '%s%s, %s%s' % ('(' if low_open else '[', _bound(low), _bound(high),
                           ')' if high_open else ']')


def check_int(owner: str, name: str, value, low=None, high=None) -> int:
    """``value`` as an int (Python or numpy integer, not bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError('%s: %s must be an integer%s, got %s (%s)'
                         % (owner, name, (' in ' if low is not None and high is not None
                                          else ' ') + _range_text(low, high, False, False)
                            if low is not None or high is not None else '',
                            _fmt(value), type(value).__name__))
    value = operator.index(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError('%s: %s must be an integer %s%s, got %r'
                         % (owner, name, 'in ' if low is not None and high is not None else '',
                            _range_text(low, high, False, False), value))
    return value


def check_real(owner: str, name: str, value, low=None, high=None, low_open=False,
               high_open=False) -> float:
    """``value`` as a float: a finite real number (not bool) within the bounds."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError('%s: %s must be a real number%s, got %s (%s)'
                         % (owner, name, (' in ' if low is not None and high is not None
                                          else ' ') + _range_text(low, high, low_open,
                                                                  high_open)
                            if low is not None or high is not None else '',
                            _fmt(value), type(value).__name__))
    v = float(value)
    bad = not math.isfinite(v)
    if low is not None:
        bad = bad or (v <= low if low_open else v < low)
    if high is not None:
        bad = bad or (v >= high if high_open else v > high)
    if bad:
        rng = (_range_text(low, high, low_open, high_open)
               if low is not None or high is not None else 'finite')
        raise ValueError('%s: %s must be %s%s, got %r'
                         % (owner, name, 'in ' if low is not None and high is not None
                            else '', rng, value))
    return v


def check_optional_real(owner, name, value, **bounds):
    return None if value is None else check_real(owner, name, value, **bounds)


def check_bool(owner: str, name: str, value) -> bool:
    """True or False (also numpy bools and the integers 0 and 1)."""
    if not (isinstance(value, (bool, np.bool_)) or
            (isinstance(value, numbers.Integral) and value in (0, 1))):
        raise ValueError('%s: %s must be True or False, got %s' % (owner, name, _fmt(value)))
    return bool(value)


def check_frequencies(owner: str, n_filters, min_freq, max_freq, sample_rate,
                      count_name: str = 'n_filters'):
    """n_filters in [1, MAX_FILTERS], sample_rate > 0, 0 <= min_freq < max_freq <= Nyquist;
    returns them checked."""
    n_filters = check_int(owner, count_name, n_filters, 1, MAX_FILTERS)
    sr = check_real(owner, 'sample_rate', sample_rate, 0, None, low_open=True)
    nyquist = sr / 2
    lo = check_real(owner, 'min_freq', min_freq, 0, nyquist, high_open=True)
    hi = check_real(owner, 'max_freq', max_freq, 0, None, low_open=True)
    if hi > nyquist:
        raise ValueError('%s: max_freq must be in (min_freq, sample_rate / 2] = (%s, %s] Hz '
                         '(above Nyquist, filters would alias or be empty), got %r; pass '
                         'max_freq <= %s for sample_rate=%r'
                         % (owner, _bound(lo), _bound(nyquist), max_freq, _bound(nyquist),
                            sample_rate))
    if lo >= hi:
        raise ValueError('%s: min_freq must be below max_freq (0 <= min_freq < max_freq <= '
                         'sample_rate / 2 = %s Hz), got min_freq=%r, max_freq=%r'
                         % (owner, _bound(nyquist), min_freq, max_freq))
    return n_filters, lo, hi, sr


def gabor_frontend_sizes(owner: str, sample_rate: float, window_len, window_stride):
    """window_len, window_stride (ms) -> (window_size, hop) in samples as SPEC §4 computes
    them, checked: window_size in [3, MAX_TAPS] (odd), hop in [1, MAX_TAPS]."""
    window_len = check_real(owner, 'window_len', window_len, 0, None, low_open=True)
    window_stride = check_real(owner, 'window_stride', window_stride, 0, None, low_open=True)
    size = int(sample_rate * window_len / 1000)
    size += 1 - (size % 2)
    if size < 3 or size > MAX_TAPS:
        low_ms = 2000. / sample_rate
        high_ms = (MAX_TAPS + 1) * 1000. / sample_rate
        raise ValueError('%s: window_len must give a window of 3 to %d samples, i.e. be in '
                         '[%.4g, %.6g) ms at sample_rate=%r, got %r (%d samples)'
                         % (owner, MAX_TAPS, low_ms, high_ms, sample_rate, window_len, size))
    hop = int(sample_rate * window_stride / 1000)
    if hop < 1 or hop > MAX_TAPS:
        raise ValueError('%s: window_stride must give a hop of 1 to %d samples, i.e. be in '
                         '[%.4g, %.6g) ms at sample_rate=%r, got %r (%d samples)'
                         % (owner, MAX_TAPS, 1000. / sample_rate,
                            (MAX_TAPS + 1) * 1000. / sample_rate, sample_rate, window_stride,
                            hop))
    return size, hop


def _empty_mel_bands(sample_rate, frame_len, num_bands, min_freq, max_freq):
    from ..functional.mel import create_mel_filterbank
    bank = create_mel_filterbank(sample_rate, frame_len, num_bands, min_freq, max_freq,
                                 norm=False, crop=True)
    return [i for i, total in enumerate(bank.sum(0).tolist()) if not total > 0]


def check_mel_bands(owner: str, sample_rate, frame_len: int, num_bands: int, min_freq,
                    max_freq, window_text: str, count_name: str = 'n_filters'):
    """Every triangular mel band covers at least one FFT bin with a positive weight (else it
    is divided by a zero sum: NaN). ``window_text`` says how ``frame_len`` came about."""
    empty = _empty_mel_bands(sample_rate, frame_len, num_bands, min_freq, max_freq)
    if not empty:
        return
    lo, hi = 0, num_bands - 1  # the largest count without empty bands, if any
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if _empty_mel_bands(sample_rate, frame_len, mid, min_freq, max_freq):
            hi = mid - 1
        else:
            lo = mid
    shown = ', '.join(str(i) for i in empty[:5]) + (', ...' if len(empty) > 5 else '')
    advice = ('use fewer bands (%s=%d works), ' % (count_name, lo)) if lo >= 1 else ''
    raise ValueError(
        '%s: %s=%d mel bands from min_freq=%r to max_freq=%r Hz leave %d band(s) '
        '(%s) without any FFT bin at %s (a %d-point FFT: %.4g Hz per bin), and an empty band '
        'is 0 / 0 = NaN; %sa longer window or a wider frequency range'
        % (owner, count_name, num_bands, min_freq, max_freq, len(empty), shown, window_text,
           frame_len,
           sample_rate / frame_len, advice))
