"""torch.export and ONNX (dynamo exporter, run by onnxruntime) of every frontend as a user
builds it (backend='auto'), in eval mode, against the eager module; torch.jit.trace raises one
clear sentence.

Tolerance: float32, relative ||a - b|| / ||b|| <= 1e-5 (the exported graphs compute the same
function with real cos/sin taps, a top-k median and, for EfficientLEAF, the static-shape
filterbank of eleaf.functional.static_filterbank; measured errors are about 1e-7 to 1e-6).
"""
import warnings

import pytest
import torch

from eleaf import EfficientLeaf, Leaf, Mel, TFLeaf
from eleaf.functional.export import JIT_TRACE_MESSAGE, median_lower
from eleaf.ops import resolve_backend
from eleaf.ops.backends import cpp_status

TOL = 1e-5
LENGTH = 4000

FRONTENDS = {
    'efficientleaf': lambda: EfficientLeaf(),
    # Gabor 8G-opt as in the original README (80 filters: the widest init bandwidths exceed
    # the clamp, which the eager forward applies in place and the exported one functionally)
    'efficientleaf_8g_opt': lambda: EfficientLeaf(n_filters=80, num_groups=8,
                                                  conv_win_factor=6, stride_factor=16),
    'efficientleaf_pcen': lambda: EfficientLeaf(conv_win_factor=4.75, compression='pcen'),
    'leaf': lambda: Leaf(),
    'mel': lambda: Mel(),
    'tfleaf': lambda: TFLeaf(),
}


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, LENGTH, generator=g) * 0.1


def _build(name):
    """The frontend in eval mode with non-trivial batch-norm statistics and affine values
    (so that the normalisation is part of what is compared)."""
    torch.manual_seed(1)
    module = FRONTENDS[name]()
    g = torch.Generator().manual_seed(2)
    for sub in module.modules():
        if isinstance(sub, torch.nn.BatchNorm1d):
            n = sub.num_features
            sub.running_mean.copy_(torch.randn(n, generator=g))
            sub.running_var.copy_(torch.rand(n, generator=g) + .5)
            if sub.affine:
                sub.weight.data.copy_(torch.rand(n, generator=g) + .5)
                sub.bias.data.copy_(torch.randn(n, generator=g) * .1)
    return module.eval()


def _eager(module, x):
    with torch.no_grad():
        return module(x)


def _check_graph(ep):
    """Only standard aten operations: no eleaf custom op, and no complex value except the
    mel baseline's STFT (which the ONNX exporter maps to ONNX's STFT)."""
    stft = (torch.ops.aten.stft.default, torch.ops.aten.view_as_real.default)
    for node in ep.graph.nodes:
        if node.op != 'call_function':
            continue
        assert not str(node.target).startswith('eleaf.'), node.target
        val = node.meta.get('val')
        if isinstance(val, torch.Tensor) and node.target not in stft:
            assert not val.is_complex(), node


@pytest.mark.parametrize('name', list(FRONTENDS))
def test_torch_export_matches_eager(name):
    module = _build(name)
    x, x2 = _inputs(), _inputs(seed=1)
    ep = torch.export.export(module, (x,))     # before any eager forward (unclamped 8G-opt)
    _check_graph(ep)
    exported = ep.module()
    for inp in (x, x2):
        expected = _eager(module, inp)
        out = exported(inp)
        assert out.shape == expected.shape
        assert _rel(out, expected) <= TOL, name


def test_exported_efficientleaf_computes_geometry_from_its_parameters():
    """The exported program holds the geometry computation, not its values: parameters
    loaded into it later (another group geometry) give the eager module's output."""
    module = _build('efficientleaf')
    x = _inputs()
    exported = torch.export.export(module, (x,)).module()
    fb = module.filterbank
    before = fb.geometry_tensor().clone()
    state = {k: v.clone() for k, v in module.state_dict().items()}
    state['filterbank.center_freqs'] = state['filterbank.center_freqs'] * 0.3
    state['filterbank.bandwidths'] = state['filterbank.bandwidths'] * 0.6
    module.load_state_dict(state)
    assert not torch.equal(fb.geometry_tensor(), before)     # strides and kernels moved
    exported.load_state_dict(state)
    assert _rel(exported(x), _eager(module, x)) <= TOL


def test_torch_export_dynamic_batch():
    module = _build('efficientleaf_8g_opt')
    batch = torch.export.Dim('batch')
    ep = torch.export.export(module, (_inputs(),), dynamic_shapes=({0: batch},))
    x3 = _inputs(batch=3, seed=4)
    assert _rel(ep.module()(x3), _eager(module, x3)) <= TOL


# EfficientLeaf as Gabor 8G-opt (the default configuration takes the same export path)
@pytest.mark.parametrize('name', ['efficientleaf_8g_opt', 'leaf', 'mel', 'tfleaf'])
def test_onnx_export_runs_in_onnxruntime(name):
    pytest.importorskip('onnx')
    pytest.importorskip('onnxscript')
    ort = pytest.importorskip('onnxruntime')
    module = _build(name)
    x, x2 = _inputs(), _inputs(seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        program = torch.onnx.export(module, (x,), dynamo=True, verbose=False)
    session = ort.InferenceSession(program.model_proto.SerializeToString(),
                                   providers=['CPUExecutionProvider'])
    (input_name,) = [i.name for i in session.get_inputs()]
    for inp in (x, x2):
        out = torch.from_numpy(session.run(None, {input_name: inp.numpy()})[0])
        expected = _eager(module, inp)
        assert out.shape == expected.shape
        assert _rel(out, expected) <= TOL, name


@pytest.mark.parametrize('cls', [EfficientLeaf, Leaf, Mel, TFLeaf])
def test_jit_trace_raises_one_sentence(cls):
    module = cls().eval()
    with pytest.raises(RuntimeError) as info:
        torch.jit.trace(module, (_inputs(),))
    assert str(info.value) == JIT_TRACE_MESSAGE
    module(_inputs())      # eager use afterwards is unaffected


class _Recorder(torch.nn.Module):
    """Records what resolve_backend answers while its forward is traced."""

    def __init__(self, requests, answers):
        super().__init__()
        self.requests = requests
        self.answers = answers

    def forward(self, x):
        self.answers.extend(resolve_backend(op, backend, x.device, x.dtype)
                            for op, backend in self.requests)
        return x * 2


def test_resolve_backend_is_torch_while_exporting():
    requests = [(op, backend) for op in ('gabor_filterbank', 'grouped_gabor_filterbank', 'pcen',
                                         'log1p_median', 'tf_gabor_filterbank', 'tf_pcen')
                for backend in ('auto', 'torch', 'cpp', 'triton')]
    answers = []
    ep = torch.export.export(_Recorder(requests, answers), (torch.randn(3),))
    assert answers == ['torch'] * len(requests)
    _check_graph(ep)
    if cpp_status()[0]:   # outside export the fast path is chosen as before
        assert resolve_backend('log1p_median', 'auto', torch.device('cpu'),
                               torch.float32) == 'cpp'


@pytest.mark.parametrize('length', [1, 2, 3, 4, 7, 10, 101])
def test_median_lower_equals_torch_median(length):
    g = torch.Generator().manual_seed(length)
    x = torch.randn(3, 4, length, generator=g)
    x[0, 0] = 1.                                      # ties
    x[1, :, ::2] = torch.round(x[1, :, ::2])          # more ties
    assert torch.equal(median_lower(x, -1), x.median(-1, keepdim=True).values)
    assert torch.equal(median_lower(x.transpose(1, 2), 1),
                       x.transpose(1, 2).median(1, keepdim=True).values)



_FRESH = r'''
import warnings
import torch
warnings.simplefilter('ignore')
from eleaf import EfficientLeaf
from eleaf.ops import backends
module = EfficientLeaf(n_filters=16, num_groups=2).eval()
x = torch.randn(1, 2000)
errors = []
for strict in (False, True):
    assert not backends._fast_loaded
    ep = torch.export.export(module, (x,), strict=strict)
    assert backends._fast_loaded
    targets = [str(n.target) for n in ep.graph.nodes if n.op == 'call_function']
    assert not [t for t in targets if t.startswith('eleaf.')], targets
    with torch.no_grad():
        expected = module(x)
    errors.append(((ep.module()(x) - expected).norm() / expected.norm()).item())
    backends._fast_loaded = False   # strict: Dynamo must call the loader, not trace it
print(max(errors))
'''


def test_export_as_first_use():
    """Exporting a frontend in a fresh process, before any eager forward: the fast paths are
    imported outside the trace (their module-level probes of eleaf._C stay out of the graph);
    under Dynamo (strict=True) the loader is called, not traced."""
    import subprocess
    import sys
    result = subprocess.run([sys.executable, '-c', _FRESH], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(result.stdout.split()[-1]) <= TOL
