"""Comparison helpers shared by the tests."""
import torch

#: ‖out − ref‖ / ‖ref‖ bounds per dtype of the computation under test
RTOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-2, torch.bfloat16: 2e-2}


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative L2 error ‖out − ref‖ / ‖ref‖ in float64 (0/0 counts as 0)."""
    out = out.detach().to(torch.float64).cpu()
    ref = ref.detach().to(torch.float64).cpu()
    den = ref.norm().item()
    num = (out - ref).norm().item()
    return num / den if den > 0 else num


def assert_close(name: str, ref: torch.Tensor, out: torch.Tensor, ratio: float):
    """Assert equal shapes, all-finite output and ‖out − ref‖ / ‖ref‖ ≤ ratio."""
    assert out.shape == ref.shape, '%s: shape %s != %s' % (name, tuple(out.shape), tuple(ref.shape))
    assert torch.isfinite(out).all(), '%s: non-finite values in output' % name
    err = rel_err(out, ref)
    assert err <= ratio, '%s: relative error %.3g > %.3g' % (name, err, ratio)


def require_triton_ops(module_name: str):
    """Import an ``eleaf.ops`` Triton module, or skip the calling test module when Triton is
    missing or there is neither a CUDA device nor ``TRITON_INTERPRET=1``."""
    import pytest

    from eleaf.ops import backends

    module = pytest.importorskip(module_name)
    if not module.HAS_TRITON:
        pytest.skip('triton not importable: %s' % module._IMPORT_ERROR, allow_module_level=True)
    if not torch.cuda.is_available() and not backends._interpreting():
        pytest.skip('needs CUDA or TRITON_INTERPRET=1', allow_module_level=True)
    return module


def pcen_lognormal_input(batch: int, T: int, F: int = 4, sigma: float = 0.5,
                         seed: int = 0) -> torch.Tensor:
    """(batch, F, T) float64 log-normal energies ``exp(sigma N(0, 1) - 4)``, seeded."""
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.randn(batch, F, T, generator=g, dtype=torch.float64) * sigma - 4)


def pcen_leaf_linear(F: int, s: float):
    """Effective float64 (F,) PCEN parameters of LEAF's constants in the linear
    parameterisation (``learn_logs=False``) with smoother ``s``: (s, alpha, delta, r)."""
    from eleaf.functional.pcen import pcen_parameters

    stored = [torch.full((F,), v, dtype=torch.float64) for v in (s, 0.96, 2., 2.)]
    return pcen_parameters(*stored, learn_logs=False)


def eager_and_compiled_grads(f, inputs):
    """Gradients of ``f(*inputs)`` with respect to (copies of) ``inputs``, computed eagerly and
    through ``torch.compile(f, fullgraph=True, backend='aot_eager')``: (eager, compiled)."""
    eager_in = [t.clone().requires_grad_() for t in inputs]
    comp_in = [t.clone().requires_grad_() for t in inputs]
    torch._dynamo.reset()
    compiled = torch.compile(f, fullgraph=True, backend='aot_eager')
    eager_grads = torch.autograd.grad(f(*eager_in), eager_in)
    comp_grads = torch.autograd.grad(compiled(*comp_in), comp_in)
    return eager_grads, comp_grads
