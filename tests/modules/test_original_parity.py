"""The modules against outputs and gradients recorded from the ORIGINAL EfficientLEAF code
(tests/data/original_outputs.npz; provenance in tests/data/record_original.py)."""
import importlib.util
import os

import numpy as np
import pytest
import torch

import eleaf
from tests.testing import assert_close, rel_err

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, os.pardir, 'data')
spec = importlib.util.spec_from_file_location('record_original',
                                              os.path.join(DATA, 'record_original.py'))
record = importlib.util.module_from_spec(spec)
spec.loader.exec_module(record)
RECORDED = np.load(os.path.join(DATA, 'original_outputs.npz'))

BUILDERS = {
    'eleaf_4g_wf4.77_logtbn': lambda **kw: eleaf.EfficientLeaf(**kw),
    'eleaf_4g_wf4.75_pcen': lambda **kw: eleaf.EfficientLeaf(conv_win_factor=4.75,
                                                             compression='pcen', **kw),
    'eleaf_8gopt_80': lambda **kw: eleaf.EfficientLeaf(n_filters=80, num_groups=8,
                                                       conv_win_factor=6, stride_factor=16, **kw),
    'eleaf_1g_22k': lambda **kw: eleaf.EfficientLeaf(sample_rate=22050, num_groups=1, **kw),
    'leaf_pcen': lambda **kw: eleaf.Leaf(**kw),
    'mel': lambda **kw: eleaf.Mel(**kw),
}


def _run(module, x, shape):
    """Output, input gradient and parameter gradients of the recorded weighted sum."""
    x = x.clone().requires_grad_(True)
    y = module(x)
    assert tuple(y.shape) == shape
    (y * torch.from_numpy(record.weighting(shape)).to(y.dtype)).sum().backward()
    return y, x.grad, {k: p.grad for k, p in module.named_parameters()}


#: configurations computed through torch.stft: oneMKL's FFT takes other code paths on other
#: CPUs and rounds differently there, so they equal the recording (made on an Intel Xeon) only
#: up to float32's own error: the recorded mel output is 1.3e-5 from float64, the same code
#: on an AMD EPYC 1.8e-5 (and 1.9e-5 from the recording)
FFT_ROUNDING = {'mel'}


@pytest.mark.parametrize('backend', ['torch', 'auto'])
@pytest.mark.parametrize('name', sorted(BUILDERS))
def test_matches_original(name, backend):
    """'torch': the reference modules, the original's operations, so equal up to float32
    rounding (usually bit-equal; for FFT_ROUNDING configurations as close to float64 as the
    recording, up to a factor 2). 'auto': the fastest backend here (the CPU fast paths), held
    to the fast-path contract: 1e-5; a gradient or state that is ill-conditioned (float32
    itself far from float64, e.g. the log1p exponent under median subtraction and batch
    norm) to twice the recorded float32 value's own distance from float64."""
    module = BUILDERS[name](backend=backend)
    x = torch.from_numpy(RECORDED['input'].copy())
    assert np.array_equal(x.numpy(), record.make_input())
    expected = torch.from_numpy(RECORDED[name + '/output'])
    y, grad_x, grads = _run(module, x, expected.shape)
    fast = backend != 'torch'
    exact = not (fast or name in FFT_ROUNDING)   # the recording's own operations and rounding
    if not exact:  # bounds from a float64 run of the reference
        ref64 = BUILDERS[name](backend='torch').double()
        y64, grad_x64, grads64 = _run(ref64, x.double(), expected.shape)
        bound = lambda rec, r64, least=1e-5: max(least, 2 * rel_err(rec, r64))
    if name in FFT_ROUNDING:
        assert_close('output vs f64', y64, y, bound(expected, y64))
    else:
        assert_close('output', expected, y, 1e-5 if fast else 1e-6)
    grad_input = torch.from_numpy(RECORDED[name + '/grad_input'])
    if name == 'mel':
        grad_input = grad_input[:, 0]
    recorded = {key: torch.from_numpy(RECORDED[name + '/grad/' + key]) for key in grads}
    if not exact:
        assert_close('grad_input', grad_input, grad_x,
                     bound(grad_input, grad_x64) + rel_err(grad_input, grad_x64))
        for key, g in grads.items():
            assert_close('grad %s vs f64' % key, grads64[key], g,
                         bound(recorded[key], grads64[key]))
    else:
        # the 8G-opt input gradient is ill-conditioned: fp32 itself is ~1e-4 from float64
        assert_close('grad_input', grad_input, grad_x,
                     2e-3 if name == 'eleaf_8gopt_80' else 1e-5)
        for key, g in grads.items():
            assert_close('grad ' + key, recorded[key], g, 1e-5)
    state = module.state_dict()
    recorded_keys = sorted(k.split('/state/')[1] for k in RECORDED.files
                           if k.startswith(name + '/state/'))
    assert sorted(state) == recorded_keys
    for key in recorded_keys:  # includes the in-place clamped parameters and BN statistics
        rec = torch.from_numpy(RECORDED[name + '/state/' + key]).double()
        if exact:
            assert_close('state ' + key, rec, state[key].double(), 1e-6)
        else:  # BN statistics of 4G: the recorded float32 running mean is 2.6e-6 from float64
            state64 = ref64.state_dict()[key].double()
            assert_close('state %s vs f64' % key, state64, state[key].double(),
                         bound(rec, state64, 1e-6))


@pytest.mark.parametrize('name', sorted(BUILDERS))
def test_original_state_dict_loads_strictly(name):
    recorded = {k.split('/state/')[1]: torch.from_numpy(RECORDED[k]) for k in RECORDED.files
                if k.startswith(name + '/state/')}
    module = BUILDERS[name]()
    module.load_state_dict(recorded, strict=True)
    for key, value in module.state_dict().items():
        assert torch.equal(value, recorded[key])
