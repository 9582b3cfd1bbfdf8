"""Backend plumbing: discovery, selection order, errors and the one-time log line."""
import logging

import pytest
import torch

import eleaf
from eleaf.ops import backends as bk


def test_backends_table_structure():
    table = eleaf.backends()
    assert set(table) == {'torch', 'triton', 'cpp'}
    for info in table.values():
        assert isinstance(info['available'], bool) and isinstance(info['reason'], str)
        assert info['reason']
    assert table['torch']['available']
    assert set(table['torch']['ops']) >= {'gabor_filterbank', 'pcen', 'log1p_median'}


def test_invalid_backend_name():
    with pytest.raises(ValueError, match='backend must be'):
        eleaf.EfficientLeaf(backend='cuda')
    with pytest.raises(ValueError, match='backend must be'):
        eleaf.PCEN(4, backend='fast')


def test_explicit_unavailable_backend_raises(monkeypatch):
    monkeypatch.setitem(bk._STATUS_CACHE, 'cpp', (False, 'no compiler here', None))
    module = eleaf.EfficientLeaf(backend='cpp')
    with pytest.raises(bk.BackendUnavailableError, match="backend='cpp'"):
        module(torch.randn(1, 400))


def test_environment_forces_backend(monkeypatch):
    monkeypatch.setitem(bk._STATUS_CACHE, 'cpp', (False, 'no compiler here', None))
    monkeypatch.setenv('ELEAF_BACKEND', 'cpp')
    with pytest.raises(bk.BackendUnavailableError, match='ELEAF_BACKEND=cpp'):
        eleaf.EfficientLeaf()(torch.randn(1, 400))  # every op of it has a cpp implementation
    with pytest.raises(bk.BackendUnavailableError, match='ELEAF_BACKEND=cpp'):
        eleaf.Leaf()(torch.randn(1, 400))
    with pytest.raises(bk.BackendUnavailableError, match='ELEAF_BACKEND=cpp'):
        eleaf.TFLeaf(n_filters=8)(torch.randn(1, 400))  # its filterbank has one
    from eleaf.modules.tf_leaf import TFPCEN
    with pytest.raises(bk.BackendUnavailableError, match='ELEAF_BACKEND=cpp'):
        TFPCEN(8)(torch.rand(1, 8, 3))  # TF LEAF's PCEN has one too
    # an op without a cpp implementation (every eleaf op has one: a test-only op) stays on 'auto'
    monkeypatch.setitem(bk._REGISTRY, 'torch_only_test_op',
                        {'torch': bk.Impl(lambda x: x, lambda device, dtype: None)})
    assert bk.resolve_backend('torch_only_test_op', 'auto', torch.device('cpu'),
                              torch.float32) == 'torch'
    monkeypatch.setenv('ELEAF_BACKEND', 'torch')
    assert eleaf.EfficientLeaf()(torch.randn(1, 400)).shape == (1, 2, 40, 3)
    # an explicit argument wins over the environment
    monkeypatch.setenv('ELEAF_BACKEND', 'cpp')
    assert eleaf.EfficientLeaf(backend='torch')(torch.randn(1, 400)).shape == (1, 2, 40, 3)


def test_frontend_backend_reaches_the_components_that_have_it():
    fe = eleaf.EfficientLeaf(backend='cpp')
    assert fe.filterbank.backend == 'cpp' and fe.compression.backend == 'cpp'
    mel = eleaf.Mel(backend='triton')  # no Triton LogTBN: its compression stays on 'auto'
    assert mel.compression.backend == 'auto'
    leaf = eleaf.Leaf(backend='torch')
    assert leaf.filterbank.backend == 'torch' and leaf.compression.backend == 'torch'
    # a component constructed explicitly keeps its strict backend
    assert eleaf.LogTBN(4, backend='triton').backend == 'triton'


def test_auto_logs_once_and_falls_back_with_reason(monkeypatch, caplog):
    calls = []
    monkeypatch.setitem(bk._REGISTRY, 'fake_op', {})
    bk.register_impl('fake_op', 'torch', lambda: calls.append('torch'))
    bk.register_impl('fake_op', 'cpp', lambda: calls.append('cpp'),
                     check=lambda device, dtype: 'float64 runs the reference'
                     if dtype == torch.float64 else None)
    monkeypatch.setitem(bk._STATUS_CACHE, 'cpp', (True, 'test', 'test'))
    with caplog.at_level(logging.INFO, logger='eleaf'):
        for _ in range(3):
            name, fn = bk.select_impl('fake_op', 'auto', torch.device('cpu'), torch.float64)
            fn()
    assert calls == ['torch'] * 3
    lines = [r for r in caplog.records if 'fake_op' in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert 'float64 runs the reference' in lines[0].getMessage()
    assert bk.select_impl('fake_op', 'auto', torch.device('cpu'), torch.float32)[0] == 'cpp'
    with pytest.raises(bk.BackendUnavailableError, match='float64 runs the reference'):
        bk.select_impl('fake_op', 'cpp', torch.device('cpu'), torch.float64)


def test_triton_on_cpu_without_interpreter_is_refused(monkeypatch):
    monkeypatch.setenv('TRITON_INTERPRET', '0')
    reason = bk._device_reason('triton', torch.device('cpu'))
    assert reason is not None


def test_backend_never_changes_state_dict():
    a = eleaf.EfficientLeaf(backend='torch')
    b = eleaf.EfficientLeaf(backend='auto')
    assert list(a.state_dict()) == list(b.state_dict())


def test_cli_info_and_demo(tmp_path, capsys):
    from eleaf.__main__ import main
    assert main(['info']) == 0
    out = capsys.readouterr().out
    assert 'torch' in out and 'triton' in out and 'cpp' in out
    if bk.cpp_status()[0]:  # which FFT path the CPU filterbank takes
        from eleaf.ops import gabor_cpu
        expect = 'fused op' if gabor_cpu.FUSED_FFT else 'separate ops'
        assert 'cpp filterbank FFT path: ' + expect in out
    png = tmp_path / 'demo.png'
    assert main(['demo', '--seconds', '0.5', '--output', str(png)]) == 0
    out = capsys.readouterr().out
    assert 'EfficientLEAF' in out and 'LEAF' in out and 'mel' in out
    pytest.importorskip('matplotlib')
    assert png.stat().st_size > 1000
    assert main(['nonsense']) == 2


def test_declared_backend_that_did_not_load(monkeypatch):
    """Without eleaf._C (no compiler at install time) the cpp op is not registered, but a
    frontend asked for 'cpp' still raises and says why, and 'auto' says why it fell back."""
    bk._load_fast_paths()
    impls = dict(bk._REGISTRY['log1p_median'])
    impls.pop('cpp', None)
    monkeypatch.setitem(bk._REGISTRY, 'log1p_median', impls)
    monkeypatch.setitem(bk._STATUS_CACHE, 'cpp', (False, 'eleaf._C not built (no compiler)', None))
    fe = eleaf.EfficientLeaf(backend='cpp')
    assert fe.compression.backend == 'cpp'
    with pytest.raises(bk.BackendUnavailableError, match='no compiler'):
        fe(torch.randn(1, 400))
    assert bk.resolve_backend('log1p_median', 'auto', torch.device('cpu'), torch.float32) == 'torch'
