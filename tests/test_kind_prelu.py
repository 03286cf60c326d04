"""The ``prelu`` layer kind: a parametric ReLU with one slope per feature."""

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

ENTRY = """
[models.pr]
description = "dense, prelu, dense"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = 48
latency_ms = 50.0
exports = ["rtneural", "onnx"]
checkpoint = "models/pr.pt"
layers = [
    { type = "dense", units = 5, activation = "linear" },
    { type = "prelu" },
    { type = "dense", units = 3, activation = "linear" },
]
"""


def test_registry_entry_has_one_slope_per_feature(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(ENTRY)
    registry = modelreg.load_registry(path)
    spec = registry["pr"]
    assert spec.layers[1] == LayerSpec("prelu", 5) and spec.computed_params == 48
    slopes = spec.build().layers[1]
    assert isinstance(slopes, torch.nn.PReLU) and list(slopes.state_dict()) == ["weight"]
    assert slopes.weight.shape == (5,) and len(set(slopes.weight.tolist())) == 5  # not torch's 0.25 everywhere
    from modelreg.checkpoint import init_checkpoint

    init_checkpoint(spec)
    assert modelreg.export("pr", registry).ok
    report = modelreg.validate("pr", registry, latency_seconds=0.02)
    assert report.ok, [(c.name, c.message) for c in report["pr"].failures]


def test_torch_step_is_prelu_over_the_last_axis() -> None:
    kind = get_kind("prelu")
    layer = LayerSpec("prelu", 4)
    torch.manual_seed(0)
    module = kind.build(layer, 4)
    x = torch.randn(2, 6, 4) * 3
    with torch.no_grad():
        y, state = kind.forward(module, layer, x, ())
        # torch's PReLU takes the channels on axis 1: [batch, features, time]
        expected = module(x.transpose(1, 2)).transpose(1, 2)
    assert state == ()
    torch.testing.assert_close(y, expected, rtol=0, atol=0)


def test_exports_to_both_formats_with_parity(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, 3, [LayerSpec("gru", 6), LayerSpec("prelu", 6), LayerSpec("dense", 4, "linear"),
                                 LayerSpec("prelu", 4)])
    module = widened(spec, seed=1)
    with torch.no_grad():  # negative and above-one slopes too
        module.layers[1].weight.copy_(torch.tensor([-0.5, 0.1, 1.5, 0.0, 0.3, -2.0]))
    export_both(spec, module, tmp_path)
    layer = json.loads((tmp_path / "kind.rtneural").read_text())["layers"][1]
    assert layer == {"type": "prelu", "activation": "", "shape": [None, None, 6],
                     "weights": [[[-0.5, 0.1, 1.5, 0.0, 0.3, -2.0]]]}


def _reverse(document: dict[str, Any]) -> None:
    document["layers"][1]["weights"][0][0].reverse()


def _shared(document: dict[str, Any]) -> None:
    row = document["layers"][1]["weights"][0][0]
    document["layers"][1]["weights"][0][0] = row[:1]  # RTNeural would use the first slope for every feature


@pytest.mark.parametrize("corrupt", [_reverse, _shared], ids=["slopes-reversed", "first-slope-shared"])
def test_corrupted_exports_fail_parity(tmp_path: Path, corrupt: Any) -> None:
    spec = spec_of(tmp_path, 4, [LayerSpec("dense", 6, "linear"), LayerSpec("prelu", 6), LayerSpec("dense", 2, "linear")])
    parity = corrupted_parity(spec, widened(spec, seed=2), tmp_path, corrupt)
    assert not parity.ok and parity.max_error > 1e-3, parity.to_figures()


def _file(slopes: Any, **extra: Any) -> dict[str, Any]:
    layer = {"type": "prelu", "activation": "", "shape": [None, None, 3], "weights": [slopes]}
    layer.update(extra)
    return {"in_shape": [None, None, 3], "layers": [layer]}


def test_check_accepts_what_the_loader_reads_and_rejects_what_it_misreads() -> None:
    assert check_rtneural(_file([[0.1, 0.2, 0.3]])) == []
    assert check_rtneural(_file([[0.25]])) == []  # one shared slope: setAlphaVals fills them all
    (problem,) = check_rtneural(_file([[0.1, 0.2]]), file="m.json")
    assert (problem.key, problem.expected, problem.found) == ("layers[0].weights[0]", "3 columns (or 1: one shared slope)",
                                                              "2 columns")
    (problem,) = check_rtneural(_file([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]]))  # the loader reads row 0 only
    assert problem.key == "layers[0].weights[0]"
    problems = check_rtneural(_file([0.1, 0.2, 0.3]))  # a vector: weights[0][0] would be a number
    assert problems and all(p.key.startswith("layers[0].weights[0]") for p in problems)
    assert "one row" in problems[0].expected
    (problem,) = check_rtneural(_file([[0.1, 0.2, 0.3]], activation="relu"))
    assert problem.key == "layers[0].activation"
    wide = _file([[0.1, 0.2, 0.3]])
    wide["layers"][0]["shape"] = [None, None, 5]
    (problem,) = check_rtneural(wide)
    assert problem.key == "layers[0].shape" and (problem.expected, problem.found) == ("3 units", "5 units")


def test_runtime_and_import_of_a_shared_slope() -> None:
    model = load_rtneural(_file([[0.25]]))
    np.testing.assert_array_equal(model.step([-4.0, 2.0, -1.0]), [-1.0, 2.0, -0.25])
    in_size, specs, state = from_rtneural(_file([[0.25]]))
    assert (in_size, specs) == (3, [LayerSpec("prelu", 3)])
    np.testing.assert_array_equal(state["layers.0.weight"], [0.25, 0.25, 0.25])  # the same function, per feature
    written = json.loads(dumps_rtneural(to_rtneural(specs, in_size, state)))["layers"][0]["weights"]
    assert written == [[[0.25, 0.25, 0.25]]]


def test_import_of_a_keras_prelu_writes_its_bits_back() -> None:
    document = _file([[0.1, -0.2, 0.30000001192092896]])
    in_size, specs, state = from_rtneural(document)
    rewritten = json.loads(dumps_rtneural(to_rtneural(specs, in_size, state)))
    assert rewritten["layers"][0]["weights"] == json.loads(dumps_rtneural(document))["layers"][0]["weights"]


def test_compile_time_type() -> None:
    kind = get_kind("prelu")
    assert kind.cpp_types(LayerSpec("prelu", 7), 7) == ["RTNeural::PReLUActivationT<float, 7>"]
    assert kind.rtneural_shapes(LayerSpec("prelu", 7), 7) == ((1, 7),)
