"""Bias-free layers (issue 19, section 1): ``bias = false`` on dense, conv1d, conv2d, lstm and gru, as
torch's ``bias=False``: parameters, checkpoint keys, seeded weights, labels, every export proven
(RTNeural JSON with the zeros its loader reads, ONNX, RTNeural's C++ engine and both header forms),
and ``modelreg import`` reading zero biases as bias-free only when asked.

The generic per-kind tests (tests/test_layers.py, test_parity.py, test_exporting.py, ...) run
each kind's bias-free example too; this file holds what they cannot say.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import modelreg
from modelreg.builder import build_module, seed_for, seeded
from modelreg.checkpoint import init_checkpoint
from modelreg.errors import CheckpointError
from modelreg.spec import layer_label

from conftest import RTNEURAL, needs_rtneural, run_cli, write_registry

# Every kind that takes bias, bias-free; a dense layer with a bias in the middle, so that a
# bias-free layer after a biased one is proven too. 4 inputs; conv2d sees 2 features x 2 filters.
ENTRY = """\
[models.{name}]
description = "every kind with a bias, without it"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = {exports}
checkpoint = "models/{name}.pt"
cpp_weights = "{weights}"
layers = [
    {{ type = "conv1d", units = 4, kernel_size = 3, dilation = 2, activation = "tanh", bias = false }},
    {{ type = "conv2d", filters = 3, num_features_in = 2, kernel_size_time = 2, kernel_size_feature = 2, padding = "same", activation = "tanh", bias = false }},
    {{ type = "gru", units = 5, bias = false }},
    {{ type = "dense", units = 4, activation = "relu" }},
    {{ type = "lstm", units = 4, bias = false }},
    {{ type = "dense", units = 3, activation = "sigmoid", bias = false }},
]
"""
# conv1d 4*4*3; conv2d 3*2*2*2; gru 3*5*(6+5); dense 5*4+4; lstm 4*4*(4+4); dense 4*3
PARAMS = 48 + 24 + 165 + 24 + 128 + 12


def _entry(name: str = "nobias", weights: str = "json", exports: str = '["rtneural", "onnx"]',
           params: int = PARAMS) -> str:
    return ENTRY.format(name=name, weights=weights, exports=exports, params=params)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = write_registry(tmp_path / "project", text=_entry())
    init_checkpoint(modelreg.load_registry(path)["nobias"], seed=3)
    return path


def _torch_reference() -> list[nn.Module]:
    """What the entry declares, built as torch itself builds it (in the entry's order)."""
    return [nn.Conv1d(4, 4, 3, dilation=2, bias=False),
            nn.Conv2d(2, 3, (2, 2), bias=False),
            nn.GRU(6, 5, batch_first=True, bias=False),
            nn.Linear(5, 4),
            nn.LSTM(4, 4, batch_first=True, bias=False),
            nn.Linear(4, 3, bias=False)]


def test_params_checkpoint_keys_and_seeded_weights_are_torchs_bias_false(project: Path) -> None:
    spec = modelreg.load_registry(project)["nobias"]
    assert spec.params == spec.computed_params == PARAMS
    module = build_module(spec, seed=5)
    assert sum(p.numel() for p in module.parameters()) == PARAMS
    keys = list(module.state_dict())
    assert [k for k in keys if "bias" in k] == ["layers.3.bias"]  # the one dense layer that keeps its bias
    # Seeded weights draw what torch's own bias=False modules draw, in the same order.
    with seeded(seed_for("nobias", 5)):
        reference = _torch_reference()
    expected = {f"layers.{i}.{key}": value for i, m in enumerate(reference) for key, value in m.state_dict().items()}
    assert list(expected) == keys
    for key, value in module.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_labels_show_bias_false_and_nothing_for_a_layer_with_a_bias(project: Path, capsys) -> None:
    spec = modelreg.load_registry(project)["nobias"]
    sizes = [4, 4, 6, 5, 4, 4]
    labels = [layer_label(layer, size) for layer, size in zip(spec.layers, sizes)]
    assert labels == [
        "conv1d 4 -> 4 tanh, kernel_size=3, dilation=2, groups=1, bias=false",
        "conv2d 4 -> 6 tanh, filters=3, num_features_in=2, kernel_size_time=2, kernel_size_feature=2, dilation=1, "
        "strides=1, padding=same, bias=false",
        "gru 6 -> 5 bias=false",
        "dense 5 -> 4 relu",
        "lstm 4 -> 4 bias=false",
        "dense 4 -> 3 sigmoid, bias=false",
    ]
    code, out, _ = run_cli(["show", "nobias", "--registry", str(project)], capsys)
    assert code == 0 and "gru 6 -> 5 bias=false" in out and "dense 4 -> 3 sigmoid, bias=false" in out


def test_every_export_of_bias_free_layers_matches_torch(project: Path) -> None:
    report = modelreg.export_all(project)
    assert report.ok, [a.message for a in report.artifacts]
    models = project.parent / "models"
    document = json.loads((models / "nobias.json").read_text())
    layers = document["layers"]
    # RTNeural's loader reads a bias (older ones for dense too): zeros are written there.
    for index in (0, 1, 2, 4, 5):
        assert not np.any(np.asarray(layers[index]["weights"][-1])), index
    assert len(layers[5]["weights"]) == 2
    assert np.any(np.asarray(layers[3]["weights"][1]))  # the dense layer with a bias keeps it
    assert modelreg.validate("nobias", project, write=False, latency_seconds=0.01).ok


def test_a_checkpoint_with_biases_for_bias_free_layers_is_named_with_the_way_out(project: Path) -> None:
    spec = modelreg.load_registry(project)["nobias"]
    state = build_module(spec, seed=0).state_dict()
    state["layers.5.bias"] = torch.zeros(3)  # saved from a dense layer with a bias
    state["layers.2.bias_ih_l0"] = torch.zeros(15)
    state["layers.2.bias_hh_l0"] = torch.zeros(15)
    torch.save(state, spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    message = str(info.value)
    assert "layers.5.bias: unexpected tensor: models.nobias.layers[5] declares bias = false, the checkpoint's " \
           "layer has a bias" in message
    assert "layers.2.bias_ih_l0: unexpected tensor: models.nobias.layers[2] declares bias = false" in message
    assert "remove bias = false from layers[2], layers[5] if the trained layers have a bias" in message


def test_a_checkpoint_without_the_bias_a_layer_declares_is_named_with_the_way_out(project: Path) -> None:
    spec = modelreg.load_registry(project)["nobias"]
    state = build_module(spec, seed=0).state_dict()
    del state["layers.3.bias"]  # saved from nn.Linear(bias=False)
    torch.save(state, spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    message = str(info.value)
    assert ("layers.3.bias: missing tensor: models.nobias.layers[3] has a bias (bias = true, the default), the "
            "checkpoint's layer has none") in message
    assert "declare bias = false on layers[3] if the trained layers have no bias" in message


def test_a_wrongly_shaped_bias_gets_the_general_message(project: Path) -> None:
    spec = modelreg.load_registry(project)["nobias"]
    state = build_module(spec, seed=0).state_dict()
    state["layers.3.bias"] = torch.zeros(7)
    torch.save(state, spec.checkpoint)
    with pytest.raises(CheckpointError, match=r"layers.3.bias: tensor has the wrong shape \(expected shape \[4\]"):
        spec.load()


# ---------------------------------------------------------------- import: the file cannot tell


def _exported(project: Path) -> Path:
    assert modelreg.export_all(project, formats=["rtneural"]).ok
    return project.parent / "models" / "nobias.json"


@pytest.mark.parametrize("drop", [False, True])
def test_import_reads_zero_biases_as_bias_free_only_when_asked(project: Path, tmp_path: Path, drop: bool,
                                                               capsys) -> None:
    source = _exported(project)
    target = tmp_path / "other" / "registry.toml"
    target.parent.mkdir()
    argv = ["import", str(source), "--registry", str(target), "--name", "back"]
    code, out, err = run_cli(argv + (["--drop-zero-biases"] if drop else []), capsys)
    assert code == 0, out + err
    spec = modelreg.load_registry(target)["back"]
    original = modelreg.load_registry(project)["nobias"]
    has_bias = [layer.has_bias for layer in spec.layers]
    assert has_bias == ([False, False, False, True, False, False] if drop else [True] * 6)
    if drop:
        assert spec.layers == original.layers and spec.params == PARAMS
        assert "layers[2]: its bias is all zeros: imported as bias = false (as asked)" in out
    else:
        # conv1d, conv2d, both GRU and both LSTM biases, the last dense layer's
        assert spec.params == PARAMS + 4 + 3 + 2 * 15 + 2 * 16 + 3
        assert ("note        layers[2]: its bias is all zeros, imported as a bias of zeros; --drop-zero-biases "
                "(drop_zero_biases=True) imports it as bias = false") in out
        assert "bias = false" not in target.read_text()
    # Either way the import re-exports the file's weights bit for bit.
    assert "float32 values bit-identical to the file" in out
    assert ("layers.5.bias" in spec.load().state_dict()) is not drop


def test_import_api_drops_zero_biases_only_when_asked(tmp_path: Path) -> None:
    source = tmp_path / "dense.json"
    source.write_text(json.dumps({"in_shape": [None, 2], "layers": [
        {"type": "dense", "activation": "tanh", "shape": [None, 2], "weights": [[[0.5, 1.0], [-2.0, 0.25]], [0.0, 0.0]]},
        {"type": "gru", "activation": "tanh", "shape": [None, 1],
         "weights": [[[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]], [[0.4, 0.5, 0.6]], [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]}]}))
    registry = tmp_path / "registry.toml"
    kept = modelreg.import_rtneural(source, registry, name="kept")
    assert [layer.has_bias for layer in kept.spec.layers] == [True, True] and kept.spec.params == 6 + 15
    dropped = modelreg.import_rtneural(source, registry, name="dropped", drop_zero_biases=True)
    assert [layer.has_bias for layer in dropped.spec.layers] == [False, False] and dropped.spec.params == 4 + 9
    assert dropped.weights.ok and dropped.weights.zero_filled == ()  # the re-export writes the same zeros
    assert "dense.json" in dropped.source.name and "bias = false" in dropped.entry_text


# ---------------------------------------------------------------- RTNeural's C++ engine (Eigen)


@needs_rtneural
@pytest.mark.parametrize("weights", ["json", "embedded"])
def test_bias_free_layers_match_torch_in_rtneural_cpp_with_eigen(tmp_path: Path, cpp: Path, weights: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if not (RTNEURAL / "modules" / "Eigen" / "Eigen" / "Dense").is_file():
        pytest.skip(f"no modules/Eigen in {RTNEURAL}")
    from modelreg.rtneural import cpp as rc

    monkeypatch.setenv(rc.ENV_BACKEND, "eigen")
    path = write_registry(tmp_path / "project", text=_entry(weights=weights,
                                                             exports='["rtneural", "rtneural-cpp", "onnx"]'))
    init_checkpoint(modelreg.load_registry(path)["nobias"], seed=4)
    assert rc.find_toolchain().backend == "eigen"
    assert modelreg.export_all(path).ok
    report = modelreg.validate("nobias", path, write=False, latency_seconds=0.01)
    checks = report["nobias"]
    for name in ("rtneural.dynamic_parity", "rtneural-cpp.parity"):
        assert checks[name].status == "pass", checks[name]
        assert checks[name].figures["max_abs_error"] < 1e-5
    assert checks["rtneural.dynamic_parity"].figures["backend"] == "eigen"  # the header's too: one toolchain
    assert checks["rtneural-cpp.parity"].figures["weights"] == weights
    assert checks["onnx.parity"].status == "pass"
