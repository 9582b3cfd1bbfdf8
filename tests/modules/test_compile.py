"""torch.compile of every frontend on the Triton path (CPU tensors in the Triton interpreter):
``fullgraph=True`` (no graph break, so no host synchronisation either), the same outputs and
gradients as eager while the parameters move across geometry changes (optimizer steps and
in-place edits), and one compilation per input shape, not one per optimizer step.

Reference: the same module run eagerly from the same state; tolerance 1e-5 relative
(float32, ‖a − b‖/‖b‖), the fast paths' contract.
"""
import pytest
import torch

import eleaf
from tests.testing import RTOL, assert_close, require_triton_ops

require_triton_ops('eleaf.ops.gabor')
_dynamo = pytest.importorskip('torch._dynamo')
from torch._dynamo.testing import CompileCounterWithBackend  # noqa: E402

FRONTENDS = {
    '8G-opt': lambda: eleaf.EfficientLeaf(n_filters=16, num_groups=8, conv_win_factor=6,
                                          stride_factor=16, backend='triton'),
    '4G pcen': lambda: eleaf.EfficientLeaf(n_filters=4, num_groups=2, compression='pcen',
                                           backend='triton'),
    'leaf': lambda: eleaf.Leaf(n_filters=4, backend='triton'),
    'tfleaf': lambda: eleaf.TFLeaf(n_filters=4, backend='triton'),
    'mel': lambda: eleaf.Mel(n_filters=8),
}


def _move_geometry(fe, step):
    """An in-place edit between steps that changes EfficientLEAF's group geometry (strides
    and kernel sizes), as an EMA or a manual copy would."""
    fb = getattr(fe, 'filterbank', None)
    if isinstance(fb, eleaf.GroupedGaborFilterbank):
        with torch.no_grad():
            fb.center_freqs.mul_(0.6 if step % 2 == 0 else 1.5)
            fb.bandwidths.mul_(1.4 if step % 2 == 0 else 0.8)


@pytest.mark.parametrize('name', sorted(FRONTENDS))
def test_fullgraph_training_matches_eager_and_compiles_once(name):
    torch.manual_seed(0)
    eager = FRONTENDS[name]()
    comp = FRONTENDS[name]()
    comp.load_state_dict(eager.state_dict())
    counter = CompileCounterWithBackend('aot_eager')
    _dynamo.reset()
    compiled = torch.compile(comp, fullgraph=True, backend=counter)
    opt_e = torch.optim.SGD(eager.parameters(), lr=1e-3)
    opt_c = torch.optim.SGD(comp.parameters(), lr=1e-3)
    # the interpreter's time grows with the frames: PCEN and LEAF's 401-tap kernels are slow
    # there, so their checks take fewer and shorter steps (two steps: one optimizer step)
    slow = name in ('4G pcen', 'leaf', 'tfleaf')
    x = torch.randn(1 if slow else 2, 480 if slow else 640,
                    generator=torch.Generator().manual_seed(1))
    geometries = set()
    for step in range(2 if slow else 3):
        out_e, out_c = eager(x), compiled(x)
        assert_close('%s out step %d' % (name, step), out_e.detach(), out_c.detach(),
                     RTOL[torch.float32])
        g = torch.randn(out_e.shape, generator=torch.Generator().manual_seed(step))
        (out_e * g).sum().backward()
        (out_c * g).sum().backward()
        for (pname, pe), pc in zip(eager.named_parameters(), comp.parameters()):
            if pe.grad is not None:
                assert_close('%s d%s step %d' % (name, pname, step), pe.grad, pc.grad,
                             RTOL[torch.float32])
        opt_e.step(), opt_c.step()
        opt_e.zero_grad(), opt_c.zero_grad()
        _move_geometry(eager, step), _move_geometry(comp, step)
        if isinstance(getattr(eager, 'filterbank', None), eleaf.GroupedGaborFilterbank):
            geometries.add(tuple(eager.filterbank.geometry()))
    if name.startswith(('8G', '4G')):
        assert len(geometries) >= 2, 'the test must move the geometry'
    assert counter.frame_count == 1, '%s compiled %d times' % (name, counter.frame_count)


def test_cpu_path_compiles_once_with_a_graph_break():
    """The CPU filterbank (backend 'auto' on CPU: the C++ extension, or the reference) runs
    as one graph break: a compiled training loop compiles its frames at the first step (the
    graphs around the break) and never again when the geometry moves, and matches eager."""
    torch.manual_seed(0)
    eager = eleaf.EfficientLeaf(n_filters=16, num_groups=8, conv_win_factor=6, stride_factor=16)
    comp = eleaf.EfficientLeaf(n_filters=16, num_groups=8, conv_win_factor=6, stride_factor=16)
    comp.load_state_dict(eager.state_dict())
    counter = CompileCounterWithBackend('aot_eager')
    _dynamo.reset()
    compiled = torch.compile(comp, backend=counter)
    x = torch.randn(2, 1600, generator=torch.Generator().manual_seed(1))
    geometries = set()
    for step in range(5):
        out_e, out_c = eager(x), compiled(x)
        assert_close('out step %d' % step, out_e.detach(), out_c.detach(), RTOL[torch.float32])
        out_e.sum().backward(), out_c.sum().backward()
        if step == 0:
            frames = counter.frame_count
        geometries.add(tuple(comp.filterbank.geometry()))
        _move_geometry(eager, step), _move_geometry(comp, step)
    assert len(geometries) >= 3
    assert counter.frame_count == frames, 'recompiled: %d -> %d frames' % (
        frames, counter.frame_count)
