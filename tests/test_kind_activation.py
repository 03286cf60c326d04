"""The ``activation`` layer kind: a stand-alone activation layer declared in a registry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import modelreg
from modelreg import LayerSpec
from modelreg.layers import activations, get_kind
from modelreg.rtneural.format import from_rtneural
from modelreg.rtneural.runtime import check_rtneural

from kind_tools import corrupted_parity, export_both, spec_of, widened

ENTRY = """
[models.act]
description = "an LSTM, then a stand-alone activation, then a dense head"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = 238
latency_ms = 50.0
exports = ["rtneural", "onnx"]
checkpoint = "models/act.pt"
layers = [
    { type = "lstm", units = 5 },
    { type = "activation", activation = "ACT" },
    { type = "dense", units = 3, activation = "linear" },
]
"""


def test_registry_entry_keeps_the_size_and_adds_no_parameters(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(ENTRY.replace("ACT", "relu"))
    spec = modelreg.load_registry(path)["act"]
    assert spec.layers[1] == LayerSpec("activation", 5, "relu")
    assert spec.computed_params == 238 and not spec.layers[1].is_recurrent
    module = spec.build()
    assert sum(p.numel() for p in module.layers[1].parameters()) == 0


@pytest.mark.parametrize("name", [n for n in activations.NAMES if n != "linear"])
def test_every_activation_exports_to_both_formats_with_parity(tmp_path: Path, name: str) -> None:
    spec = spec_of(tmp_path, 4, [LayerSpec("lstm", 5), LayerSpec("activation", 5, name), LayerSpec("dense", 3, "tanh")])
    module = widened(spec, seed=1)
    export_both(spec, module, tmp_path)
    document = json.loads((tmp_path / "kind.rtneural").read_text())
    assert document["layers"][1] == {"type": "activation", "activation": name, "shape": [None, None, 5], "weights": []}


def test_a_final_activation_layer_sets_the_output_range(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, 3, [LayerSpec("dense", 4, "linear"), LayerSpec("activation", 4, "sigmoid")])
    module = widened(spec, seed=2)
    with torch.no_grad():
        y = module(torch.linspace(-40, 40, 30).reshape(10, 3))
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert get_kind("activation").output_range(spec.layers[1]) == ("sigmoid", 0.0, 1.0)


@pytest.mark.parametrize(("written", "swapped"), [("tanh", "sigmoid"), ("relu", "elu"), ("softmax", "tanh")])
def test_a_wrong_activation_in_the_file_fails_parity(tmp_path: Path, written: str, swapped: str) -> None:
    spec = spec_of(tmp_path, 4, [LayerSpec("gru", 6), LayerSpec("activation", 6, written), LayerSpec("dense", 2, "linear")])

    def corrupt(document: dict) -> None:
        document["layers"][1]["activation"] = swapped

    parity = corrupted_parity(spec, widened(spec, seed=3), tmp_path, corrupt)
    assert not parity.ok and parity.max_error > 1e-3, parity.to_figures()


def test_a_dropped_activation_layer_fails_parity(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, 4, [LayerSpec("dense", 6, "linear"), LayerSpec("activation", 6, "elu"),
                                 LayerSpec("dense", 2, "linear")])

    def corrupt(document: dict) -> None:
        document["layers"][1]["activation"] = ""  # the loader then adds nothing

    parity = corrupted_parity(spec, widened(spec, seed=4), tmp_path, corrupt)
    assert not parity.ok, parity.to_figures()


def test_check_names_an_activation_layer_that_changes_the_size() -> None:
    model = {"in_shape": [None, 3], "layers": [
        {"type": "dense", "activation": "", "shape": [None, 2], "weights": [[[1.0, 0.0]] * 3, [0.0, 0.0]]},
        {"type": "activation", "activation": "tanh", "shape": [None, 4], "weights": []},
    ]}
    (problem,) = check_rtneural(model, file="m.json")
    assert problem.key == "layers[1].shape" and "does not match the 2 outputs of layer 0" in problem.reason
    assert (problem.expected, problem.found) == ("2 units", "4 units")


def test_import_refuses_an_activation_layer_that_does_nothing() -> None:
    model = {"in_shape": [None, 2], "layers": [{"type": "activation", "activation": "", "shape": [None, 2],
                                               "weights": []}]}
    assert check_rtneural(model) == []  # RTNeural loads it (and adds no layer)
    with pytest.raises(modelreg.UsageError, match="does nothing"):
        from_rtneural(model, file="m.json")


def test_import_reads_a_keras_activation_layer() -> None:
    model = {"in_shape": [None, 2], "layers": [
        {"type": "dense", "activation": "", "shape": [None, 3], "weights": [[[0.5, 1.0, -1.0], [2.0, 0.0, 1.5]]]},
        {"type": "activation", "activation": "softmax", "shape": [None, 3], "weights": []},
    ]}
    in_size, specs, state = from_rtneural(model)
    # The dense layer's file has no bias array: a bias-free layer (bias = false).
    assert (in_size, specs) == (2, [LayerSpec("dense", 3, "linear", (("bias", False),)),
                                    LayerSpec("activation", 3, "softmax")])
    assert sorted(state) == ["layers.0.weight"]


def test_compile_time_type_is_rtneurals_activation_layer() -> None:
    kind = get_kind("activation")
    assert kind.cpp_types(LayerSpec("activation", 7, "elu"), 7) == ["RTNeural::ELuActivationT<float, 7>"]
    assert kind.cpp_types(LayerSpec("activation", 7, "tanh"), 7) == ["RTNeural::TanhActivationT<float, 7>"]
    assert kind.rtneural_shapes(LayerSpec("activation", 7, "tanh"), 7) == ()
