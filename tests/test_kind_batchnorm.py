"""The ``batchnorm`` layer kind: 1-D batch normalisation over the features, inference statistics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import modelreg
from modelreg import LayerSpec
from modelreg.layers import get_kind
from modelreg.rtneural.format import dumps_rtneural, from_rtneural, to_rtneural
from modelreg.rtneural.runtime import check_rtneural, load_rtneural

from kind_tools import corrupted_parity, export_both, spec_of, widened


def bn(size: int, affine: bool = True, epsilon: float = 1e-5) -> LayerSpec:
    return LayerSpec("batchnorm", size, options=(("affine", affine), ("epsilon", epsilon)))


ENTRY = """
[models.bn]
description = "dense, batchnorm, dense"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = ["rtneural", "onnx"]
checkpoint = "models/bn.pt"
layers = [
    {{ type = "dense", units = 5, activation = "linear" }},
    {{ type = "batchnorm"{extra} }},
    {{ type = "dense", units = 3, activation = "tanh" }},
]
"""


def _registry(tmp_path: Path, params: int = 53, extra: str = "") -> Path:
    path = tmp_path / "registry.toml"
    path.write_text(ENTRY.format(params=params, extra=extra))
    return path


def test_defaults_are_pytorchs_and_params_count_only_gamma_and_beta(tmp_path: Path) -> None:
    spec = modelreg.load_registry(_registry(tmp_path))["bn"]
    assert spec.layers[1] == bn(5)  # defaults filled in: affine true, epsilon 1e-5
    explicit = modelreg.load_registry(_registry(tmp_path, extra=", affine = true, epsilon = 1e-5"))["bn"]
    assert explicit.layers == spec.layers
    module = spec.build()
    norm = module.layers[1]
    assert isinstance(norm, torch.nn.BatchNorm1d) and norm.eps == 1e-5 and norm.affine
    assert sum(p.numel() for p in norm.parameters()) == 10 == get_kind("batchnorm").params(spec.layers[1], 5)
    assert sorted(norm.state_dict()) == ["bias", "num_batches_tracked", "running_mean", "running_var", "weight"]
    plain = modelreg.load_registry(_registry(tmp_path, params=43, extra=", affine = false, epsilon = 0.001"))["bn"]
    assert plain.layers[1] == bn(5, affine=False, epsilon=0.001)
    assert sorted(plain.build().layers[1].state_dict()) == ["num_batches_tracked", "running_mean", "running_var"]


@pytest.mark.parametrize("affine", [True, False])
def test_torch_step_is_pytorchs_eval_batchnorm_over_the_features(affine: bool) -> None:
    kind = get_kind("batchnorm")
    layer = bn(6, affine=affine, epsilon=0.01)
    torch.manual_seed(0)
    module = kind.build(layer, 6)
    reference = torch.nn.BatchNorm1d(6, eps=0.01, affine=affine)
    reference.load_state_dict(module.state_dict())
    reference.eval()
    x = torch.randn(3, 7, 6) * 3
    with torch.no_grad():
        y, state = kind.forward(module, layer, x, ())
        expected = reference(x.reshape(-1, 6)).reshape(3, 7, 6)  # BatchNorm1d normalises dim 1 of [N, C]
        frame_by_frame = torch.cat([kind.forward(module, layer, x[:, t:t + 1], ())[0] for t in range(7)], dim=1)
    assert state == ()
    torch.testing.assert_close(y, expected, rtol=2e-6, atol=2e-6)  # the same formula, rounded in another order
    torch.testing.assert_close(frame_by_frame, y, rtol=0, atol=0)
    module.train()  # inference statistics even in training mode: nothing is updated
    before = module.running_mean.clone()
    with torch.no_grad():
        torch.testing.assert_close(kind.forward(module, layer, x, ())[0], y, rtol=0, atol=0)
    assert torch.equal(module.running_mean, before)


@pytest.mark.parametrize("layer_table", [(True, 1e-5), (False, 1e-5), (True, 0.5), (False, 1e-3)])
def test_exports_to_both_formats_with_parity(tmp_path: Path, layer_table: tuple[bool, float]) -> None:
    affine, epsilon = layer_table
    spec = spec_of(tmp_path, 4, [LayerSpec("lstm", 6), bn(6, affine, epsilon), LayerSpec("dense", 3, "linear")])
    module = widened(spec, seed=1)
    export_both(spec, module, tmp_path)
    layer = json.loads((tmp_path / "kind.rtneural").read_text())["layers"][1]
    assert layer["type"] == "batchnorm" and layer["epsilon"] == epsilon and layer["activation"] == ""
    state = module.layers[1].state_dict()
    names = (["weight", "bias"] if affine else []) + ["running_mean", "running_var"]
    assert len(layer["weights"]) == len(names)
    for written, name in zip(layer["weights"], names):
        np.testing.assert_array_equal(np.asarray(written, np.float32), state[name].numpy())


def _swap(j: int, k: int) -> Any:
    def corrupt(document: dict[str, Any]) -> None:
        weights = document["layers"][1]["weights"]
        weights[j], weights[k] = weights[k], weights[j]
    return corrupt


def _set_epsilon(document: dict[str, Any]) -> None:
    document["layers"][1]["epsilon"] = 0.1


def _drop_gamma_beta(document: dict[str, Any]) -> None:
    del document["layers"][1]["weights"][:2]  # a valid non-affine layer: only the numbers can tell


@pytest.mark.parametrize(("affine", "corrupt"), [(True, _swap(0, 1)), (True, _swap(2, 3)), (False, _swap(0, 1)),
                                                 (True, _set_epsilon), (True, _drop_gamma_beta)],
                         ids=["gamma-beta-swapped", "mean-var-swapped", "non-affine-mean-var-swapped",
                              "wrong-epsilon", "gamma-beta-dropped"])
def test_corrupted_exports_fail_parity(tmp_path: Path, affine: bool, corrupt: Any) -> None:
    spec = spec_of(tmp_path, 4, [LayerSpec("dense", 6, "linear"), bn(6, affine, 1e-3), LayerSpec("dense", 2, "linear")])
    module = widened(spec, seed=2)
    with torch.no_grad():  # small variances: epsilon matters
        module.layers[1].running_var.uniform_(0.01, 0.05)
    parity = corrupted_parity(spec, module, tmp_path, corrupt)
    assert not parity.ok and not parity.max_error <= 1e-3, parity.to_figures()  # NaN (a negative variance) fails too


def _file(weights: list[list[float]], **extra: Any) -> dict[str, Any]:
    layer = {"type": "batchnorm", "activation": "", "shape": [None, None, 2], "weights": weights, "epsilon": 0.001}
    layer.update(extra)
    return {"in_shape": [None, None, 2], "layers": [layer]}


def test_check_rejects_three_weight_arrays_naming_the_layer_and_key() -> None:
    problems = check_rtneural(_file([[1.0, 1.0], [0.0, 0.0], [0.1, 0.2]]), file="m.json")
    assert [(p.key, p.found) for p in problems] == [("layers[0].weights", "3 arrays")]
    assert "reads any count but 4 as non-affine" in problems[0].reason
    assert problems[0].expected.startswith("4 arrays [gamma, beta, running_mean, running_var] or 2")


def test_check_rejects_what_the_loader_would_misread() -> None:
    good = [[1.0, 1.5], [0.0, 0.5], [0.1, 0.2], [1.0, 2.0]]
    assert check_rtneural(_file(good)) == [] and check_rtneural(_file(good[2:])) == []
    missing = _file(good)
    del missing["layers"][0]["epsilon"]  # the loader reads it with .at(): it would throw
    assert [(p.key, p.reason) for p in check_rtneural(missing)] == [("layers[0].epsilon", "missing required key")]
    (problem,) = check_rtneural(_file(good, activation="tanh"))  # the loader ignores it: not what was meant
    assert problem.key == "layers[0].activation"
    (problem,) = check_rtneural(_file([[1.0, 1.5], [0.0, 0.5], [0.1, 0.2], [1.0, 2.0, 3.0]]))
    assert problem.key == "layers[0].weights[3]" and problem.expected == "2 entries"
    assert "running_var" in problem.reason
    wide = _file(good)
    wide["layers"][0]["shape"] = [None, None, 3]  # RTNeural would size it from the input (2)
    (problem,) = check_rtneural(wide)
    assert problem.key == "layers[0].shape" and (problem.expected, problem.found) == ("2 units", "3 units")
    (problem,) = check_rtneural(_file(good, epsilon=-1.0))
    assert problem.key == "layers[0].epsilon"


def test_runtime_uses_rtneurals_formula() -> None:
    gamma, beta, mean, var = [2.0, -1.0], [0.5, 0.25], [1.0, -2.0], [4.0, 0.25]
    model = load_rtneural(_file([gamma, beta, mean, var], epsilon=0.0))
    np.testing.assert_allclose(model.step([3.0, 0.0]), [2.0 * (3 - 1) / 2 + 0.5, -1.0 * (0 + 2) / 0.5 + 0.25])
    plain = load_rtneural(_file([mean, var], epsilon=0.0))
    np.testing.assert_allclose(plain.step([3.0, 0.0]), [(3 - 1) / 2, (0 + 2) / 0.5])


def test_import_reads_a_keras_style_file_and_writes_its_bits_back() -> None:
    document = _file([[1.25, 0.75], [0.5, -0.5], [0.125, 0.3], [1.5, 0.9]])
    in_size, specs, state = from_rtneural(document)
    assert (in_size, specs) == (2, [bn(2, True, 0.001)])
    assert sorted(state) == ["layers.0.bias", "layers.0.num_batches_tracked", "layers.0.running_mean",
                             "layers.0.running_var", "layers.0.weight"]
    assert state["layers.0.num_batches_tracked"].dtype == np.int64
    rewritten = json.loads(dumps_rtneural(to_rtneural(specs, in_size, state)))
    assert rewritten["layers"][0]["weights"] == json.loads(dumps_rtneural(document))["layers"][0]["weights"]
    assert rewritten["layers"][0]["epsilon"] == 0.001


def test_registry_entry_inits_exports_and_validates(tmp_path: Path) -> None:
    from modelreg.checkpoint import init_checkpoint

    registry = modelreg.load_registry(_registry(tmp_path))
    init_checkpoint(registry["bn"])
    saved = torch.load(tmp_path / "models" / "bn.pt", weights_only=True)
    assert saved["layers.1.num_batches_tracked"].dtype == torch.int64  # torch's own state dict, as users save it
    assert modelreg.export("bn", registry).ok
    report = modelreg.validate("bn", registry, latency_seconds=0.02)
    assert report.ok, [(c.name, c.message) for c in report["bn"].failures]


def test_a_checkpoint_with_a_short_running_variance_is_named(tmp_path: Path) -> None:
    from modelreg.checkpoint import init_checkpoint

    registry = modelreg.load_registry(_registry(tmp_path))
    spec = registry["bn"]
    init_checkpoint(spec)
    state = torch.load(spec.checkpoint, weights_only=True)
    state["layers.1.running_var"] = state["layers.1.running_var"][:4]
    torch.save(state, spec.checkpoint)
    with pytest.raises(modelreg.CheckpointError) as info:
        spec.load()
    assert "layers.1.running_var" in str(info.value) and "shape [5]" in str(info.value)


def test_compile_time_type() -> None:
    kind = get_kind("batchnorm")
    assert kind.cpp_types(bn(7), 7) == ["RTNeural::BatchNorm1DT<float, 7, true>"]
    assert kind.cpp_types(bn(7, affine=False), 7) == ["RTNeural::BatchNorm1DT<float, 7, false>"]
    assert kind.rtneural_shapes(bn(7, affine=False), 7) == ((7,), (7,))
