"""The built torch module: parameter counts, state handling, frames vs sequences, seeding."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from modelreg import LayerSpec, UsageError, load_registry
from modelreg.builder import build_module
from modelreg.spec import count_params


def test_param_formula_matches_torch_for_many_architectures(tiny_registry):
    spec = load_registry(tiny_registry)["tinylstm"]
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(1, 5))
        layers = []
        for _ in range(n):
            kind = str(rng.choice(["dense", "lstm", "gru"]))
            act = str(rng.choice(["linear", "tanh", "relu", "sigmoid", "softmax", "elu"])) if kind == "dense" else "linear"
            layers.append(LayerSpec(kind, int(rng.integers(1, 33)), act))
        in_features = int(rng.integers(1, 33))
        import attrs

        variant = attrs.evolve(spec, layers=tuple(layers), input_shape=(1, in_features),
                               output_shape=(1, layers[-1].units))
        module = variant.build()
        assert sum(p.numel() for p in module.parameters()) == count_params(layers, in_features)


def test_frames_one_by_one_equal_the_sequence(tiny_registry):
    registry = load_registry(tiny_registry)
    for name in ("tinylstm", "tinygru"):
        module = registry[name].load()
        x = torch.randn(2, 10, registry[name].in_features, generator=torch.Generator().manual_seed(1))
        module.reset()
        with torch.inference_mode():
            sequence = module(x)
            module.reset()
            frames = torch.stack([module(x[:, t]) for t in range(10)], dim=1)
        assert torch.allclose(sequence, frames, atol=1e-6), name


def test_state_is_carried_and_reset_goes_back_to_zeros(tiny_registry):
    module = load_registry(tiny_registry)["tinylstm"].load()
    x = torch.ones(1, 3)
    with torch.inference_mode():
        first = module(x)
        second = module(x)  # same input, but the state has moved on
        module.reset()
        again = module(x)
    assert not torch.equal(first, second)
    assert torch.equal(first, again)


def test_stateless_model_ignores_call_history(tiny_registry):
    module = load_registry(tiny_registry)["tinydense"].load()
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert torch.equal(module(x), module(x))
        assert module(x).shape == (3, 3)
        assert module(x[:, None, :]).shape == (3, 1, 3)


def test_batch_change_without_reset_is_a_clear_error(tiny_registry):
    module = load_registry(tiny_registry)["tinygru"].load()
    with torch.inference_mode():
        module(torch.zeros(2, 3))
        with pytest.raises(UsageError, match=r"batch size changed.*call reset\(\) first.*expected batch 2, found 5"):
            module(torch.zeros(5, 3))
        module.reset()
        assert module(torch.zeros(5, 3)).shape == (5, 2)


def test_wrong_input_shape_is_a_clear_error(tiny_registry):
    module = load_registry(tiny_registry)["tinydense"].load()
    with pytest.raises(UsageError, match=r"models.tinydense: input has the wrong shape \(expected \[batch, 4\]"):
        module(torch.zeros(1, 5))
    with pytest.raises(UsageError):
        module(torch.zeros(4))


def test_seeded_build_is_bit_identical_and_seed_dependent(tiny_registry):
    spec = load_registry(tiny_registry)["tinylstm"]
    a, b, c = build_module(spec, seed=7), build_module(spec, seed=7), build_module(spec, seed=8)
    for key, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[key])
    assert any(not torch.equal(t, c.state_dict()[k]) for k, t in a.state_dict().items())


def test_seeding_does_not_disturb_the_callers_rng(tiny_registry):
    spec = load_registry(tiny_registry)["tinydense"]
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_module(spec, seed=5)
    assert torch.equal(torch.rand(3), expected)


def test_import_modelreg_does_not_import_torch_or_numpy():
    code = "import sys, modelreg; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
