"""On a GPU (skipped without one): no host synchronisation in the training steps of any
frontend, also in steps where EfficientLEAF's geometry changes; and a whole training step
(frontend + classifier + loss + backward + Adam(capturable=True)) captured once in a CUDA
graph and replayed equals the eager step over 20 steps during which the geometry changes.

Reference: the same model stepped eagerly from the same state. Tolerance: the loss and the
parameters within 1e-4 relative (float32, TF32 off; the two runs execute the same kernels,
differences come from atomics' order only).
"""
import copy

import pytest
import torch

import eleaf
from eleaf.graphs import capture, count_syncs, make_train_step

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')

FRONTENDS = {
    '8G-opt 80': lambda b: eleaf.EfficientLeaf(n_filters=80, num_groups=8, conv_win_factor=6,
                                               stride_factor=16, backend=b),
    '4G pcen': lambda b: eleaf.EfficientLeaf(compression='pcen', backend=b),
    'leaf': lambda b: eleaf.Leaf(backend=b),
    'tfleaf': lambda b: eleaf.TFLeaf(backend=b),
    'mel': lambda b: eleaf.Mel(),
}


class Classifier(torch.nn.Module):
    """A frontend, then mean over time and a linear layer (a small stand-in for the paper's
    EfficientNet)."""

    def __init__(self, frontend, n_out=5):
        super().__init__()
        self.frontend = frontend
        self.head = torch.nn.LazyLinear(n_out)

    def forward(self, x):
        f = self.frontend(x)
        return self.head(f.mean(-1).flatten(1))


def _move_geometry(model, step):
    fb = getattr(model.frontend, 'filterbank', None)
    if isinstance(fb, eleaf.GroupedGaborFilterbank):
        with torch.no_grad():
            fb.center_freqs.mul_(0.7 if step % 2 == 0 else 1 / 0.7)
            fb.bandwidths.mul_(1.3 if step % 3 == 0 else 1 / 1.3)


@pytest.fixture(autouse=True)
def _full_fp32():
    old = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision('highest')
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.set_float32_matmul_precision(old[0])
    torch.backends.cudnn.allow_tf32 = old[1]


@pytest.mark.parametrize('backend', ['auto', 'triton', 'cpp'])
@pytest.mark.parametrize('name', sorted(FRONTENDS))
def test_no_host_sync(name, backend):
    """torch.cuda.set_sync_debug_mode('error') passes over forward + backward + Adam steps,
    with the geometry moved between steps (after two warm-up steps, which build the cached
    tables)."""
    try:
        model = Classifier(FRONTENDS[name](backend)).cuda()
        x = torch.randn(4, 16000, device='cuda')
        y = torch.randint(0, 5, (4,), device='cuda')
        model(x)
    except eleaf.BackendUnavailableError as exc:
        pytest.skip(str(exc))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    step = make_train_step(model, x, y, opt, torch.nn.functional.cross_entropy)
    for i in range(2):
        step()
        _move_geometry(model, i)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        for i in range(4):
            step()
            _move_geometry(model, i)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert count_syncs(step, 2) == 0


@pytest.mark.parametrize('name', ['8G-opt 80', '4G pcen', 'leaf'])
def test_cuda_graph_training_step_equals_eager(name):
    torch.manual_seed(0)
    model = Classifier(FRONTENDS[name]('auto')).cuda()
    x = torch.randn(8, 16000, device='cuda')
    y = torch.randint(0, 5, (8,), device='cuda')
    model(x)   # materialise the lazy layer
    twin = copy.deepcopy(model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, capturable=True)
    opt_twin = torch.optim.Adam(twin.parameters(), lr=1e-2, capturable=True)
    ce = torch.nn.functional.cross_entropy
    step = make_train_step(model, x, y, opt, ce)
    eager_step = make_train_step(twin, x, y, opt_twin, ce)
    replay, loss = capture(step, warmup=2)
    for _ in range(3):   # the warm-up and the capture stepped the model three times
        eager_step()
    geometries = set()
    for i in range(20):
        _move_geometry(model, i), _move_geometry(twin, i)
        replay()
        want = eager_step()
        torch.testing.assert_close(loss, want, rtol=1e-4, atol=1e-6)
        fb = getattr(model.frontend, 'filterbank', None)
        if isinstance(fb, eleaf.GroupedGaborFilterbank):
            geometries.add(tuple(fb.geometry()))
    for (n, p), q in zip(model.named_parameters(), twin.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=n)
    if name != 'leaf':
        assert len(geometries) >= 2
