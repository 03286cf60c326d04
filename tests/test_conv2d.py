"""conv2d and batchnorm2d (issue 12): layout facts against RTNeural's C++ loader, torch's sequence mode
against nn.Conv2d, the registry side, export in both formats, size rules and corrupted exports.

The C++ tests compile RTNeural's dynamic loader (STL backend) from the checkout test_rtneural_cpp
uses ($MODELREG_RTNEURAL or conftest's shared folder) and skip, saying what to set, when it is absent.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.nn import functional

import modelreg
from modelreg import ModelSpec
from modelreg.rtneural import cpp as rc
from modelreg.builder import build_module
from modelreg.rtneural.exporter import RTNeuralExporter
from modelreg.rtneural.header import RTNeuralCppExporter
from modelreg.layers import batchnorm2d, conv2d
from modelreg.rtneural.format import dumps_rtneural, from_rtneural, to_rtneural
from modelreg.rtneural.runtime import check_rtneural, load_rtneural
from modelreg.spec import LayerSpec

from conftest import needs_rtneural
from kind_tools import assert_onnx_runs_at_batch, run_in_rtneural_cpp, spec_of

CONV = conv2d.KIND
BN = batchnorm2d.KIND


def _layers(in_features: int, tables: list[Mapping[str, Any]]) -> list[LayerSpec]:
    specs, size = [], in_features
    for table in tables:
        layer = modelreg.layers.get_kind(table["type"]).spec(table, size)
        assert not layer.kind.problems(layer, size), table
        specs.append(layer)
        size = layer.units
    return specs


def _spec(root: Path, in_features: int, tables: list[Mapping[str, Any]], name: str = "conv") -> ModelSpec:
    return spec_of(root, in_features, _layers(in_features, tables), name)


def _module(spec: ModelSpec, seed: int) -> Any:
    module = build_module(spec, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():  # non-zero everywhere, beyond the linear region
            parameter.copy_(torch.empty(parameter.shape).uniform_(-1.0, 1.0, generator=generator))
        for name, buffer in module.named_buffers():  # batchnorm2d statistics that are not the identity
            if name.endswith("running_mean"):
                buffer.copy_(torch.empty(buffer.shape).uniform_(-0.5, 0.5, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(torch.empty(buffer.shape).uniform_(0.3, 2.0, generator=generator))
    return module.eval()


def conv(filters: int, features: int, kt: int, kf: int, **extra: Any) -> dict[str, Any]:
    return {"type": "conv2d", "filters": filters, "num_features_in": features, "kernel_size_time": kt,
            "kernel_size_feature": kf, **extra}


# Stacks over frames of F features x C filters (input size F*C), every option exercised.
STACKS: list[tuple[int, list[dict[str, Any]]]] = [
    (6, [conv(2, 3, 2, 2)]),                                                        # F3 C2, valid
    (8, [conv(3, 8, 3, 3, dilation=2, strides=2, padding="same", activation="tanh")]),  # F8 C1
    (10, [conv(2, 5, 2, 4, strides=3, padding="same")]),                            # kernel > stride, F % s != 0
    (7, [conv(2, 7, 1, 5, padding="same", activation="relu")]),                     # stateless (kt 1)
    (12, [conv(3, 4, 2, 2, activation="elu"), {"type": "batchnorm2d", "num_features_in": 3},
          conv(2, 3, 3, 2, dilation=2, padding="same"),
          {"type": "batchnorm2d", "num_features_in": 3, "affine": False, "epsilon": 0.01},
          {"type": "gru", "units": 4}, {"type": "dense", "units": 2, "activation": "sigmoid"}]),
    (4, [conv(4, 2, 4, 3, dilation=3, padding="same", activation="sigmoid"), {"type": "dense", "units": 3,
                                                                             "activation": "linear"}]),
]


# ---------------------------------------------------------------- torch: sequence mode is nn.Conv2d


@pytest.mark.parametrize("index", range(4))
def test_sequence_mode_is_nn_conv2d_with_causal_left_padding(tmp_path: Path, index: int) -> None:
    in_features, tables = STACKS[index]
    spec = _spec(tmp_path, in_features, tables)
    module = _module(spec, seed=index)
    (layer,) = spec.layers
    o = dict(layer.options)
    features, filters_in = o["num_features_in"], o["num_filters_in"]
    x = torch.randn(2, 9, in_features, generator=torch.Generator().manual_seed(index))
    with torch.no_grad():
        ours = module(x)
        # Independently: [batch, C, time, F], (kt-1)*dilation zero frames before time, TensorFlow's
        # feature padding, then torch's own conv2d with the module's weights.
        grid = x.reshape(2, 9, features, filters_in).permute(0, 3, 1, 2)
        left, right = conv2d.feature_padding(features, o["kernel_size_feature"], o["strides"], o["padding"])
        grid = functional.pad(grid, (left, right, (o["kernel_size_time"] - 1) * o["dilation"], 0))
        inner = module.layers[0]
        reference = functional.conv2d(grid, inner.weight, inner.bias, stride=(1, o["strides"]),
                                      dilation=(o["dilation"], 1))
        reference = reference.permute(0, 2, 3, 1).reshape(2, 9, layer.units)
        reference = modelreg.layers.activations.torch_activation(layer.activation)(reference)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)
    # The frame loop (state carried between calls) gives the same, and reset() forgets.
    module.reset()
    with torch.no_grad():
        frames = torch.stack([module(x[:, t]) for t in range(9)], dim=1)
    torch.testing.assert_close(frames, ours, rtol=1e-5, atol=1e-6)
    module.reset()
    with torch.no_grad():
        torch.testing.assert_close(module(x[:, 0]), ours[:, 0], rtol=1e-5, atol=1e-6)


def test_state_is_the_past_input_frames(tmp_path: Path) -> None:
    spec = _spec(tmp_path, 8, STACKS[1][1])
    module = _module(spec, seed=1)
    assert module.state_layout() == [("frames0", (3 - 1) * 2 * 8)]  # (kt-1)*dilation frames of 8 values
    assert _spec(tmp_path, 7, STACKS[3][1]).build().state_layout() == []  # kt 1: nothing to keep
    x = torch.randn(1, 5, 8)
    _, state = module.step(x, module.initial_state(1))
    np.testing.assert_array_equal(state[0][0].reshape(1, 4, 8).numpy(), x[:, 1:].numpy())


# ---------------------------------------------------------------- registry


REGISTRY = """
[models.spectro]
description = "conv2d over 16 features x 1 filter, batchnorm2d, conv2d, dense head"
input_shape = [1, 16]
output_shape = [1, 2]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = ["rtneural", "onnx"]
checkpoint = "models/spectro.pt"
layers = [
    {{ type = "conv2d", filters = 4, num_features_in = 16, kernel_size_time = 3, kernel_size_feature = 3, dilation = 2, strides = 2, padding = "same", activation = "relu" }},
    {{ type = "batchnorm2d", num_features_in = 8 }},
    {{ type = "conv2d", filters = 2, num_features_in = 8, kernel_size_time = 2, kernel_size_feature = 4 }},
    {{ type = "dense", units = 2, activation = "tanh" }},
]
"""
# conv 1->4 (3x3): 4*1*9+4 = 40; batchnorm2d over 4 filters: 8; conv 4->2 (2x4): 2*4*8+2 = 66;
# 5 features x 2 filters = 10 -> dense 2: 22.
SPECTRO_PARAMS = 40 + 8 + 66 + 22


def test_registry_declares_a_conv2d_stack_and_computes_sizes_and_params(tmp_path: Path) -> None:
    _write_spectro(tmp_path)
    spec = modelreg.load_registry(tmp_path / "registry.toml")["spectro"]
    assert [layer.units for layer in spec.layers] == [8 * 4, 8 * 4, 5 * 2, 2]
    assert spec.computed_params == SPECTRO_PARAMS == sum(p.numel() for p in spec.build().parameters())
    first = spec.layers[0]
    assert (first.option("num_filters_in"), first.option("padding"), first.option("strides")) == (1, "same", 2)
    assert spec.is_stateful


def test_onnx_of_a_conv2d_stack_runs_at_any_batch(tmp_path: Path) -> None:
    """This stack's ONNX file once failed in onnxruntime at batch 3: torch.onnx exported the
    output's squeeze as an If whose branch kept the traced batch of 1."""
    spec = modelreg.load_registry(_write_spectro(tmp_path))["spectro"]
    assert_onnx_runs_at_batch(spec, _module(spec, seed=1), tmp_path)


def test_onnx_of_batchnorm2d_then_conv2d_runs_at_any_batch(tmp_path: Path) -> None:
    """Found by the 200-model benchmark: batchnorm2d's unflatten/flatten were exported with the
    traced batch of 1, and the conv2d's reshape after them failed in onnxruntime at batch 5."""
    spec = _spec(tmp_path, 11, [{"type": "batchnorm2d", "num_features_in": 1},
                                {"type": "conv2d", "filters": 3, "num_features_in": 1, "kernel_size_time": 1,
                                 "kernel_size_feature": 1, "dilation": 2, "strides": 2}])
    assert_onnx_runs_at_batch(spec, _module(spec, seed=2), tmp_path)


def _write_spectro(folder: Path) -> Path:
    path = folder / "registry.toml"
    path.write_text(REGISTRY.format(params=SPECTRO_PARAMS), encoding="utf-8")
    return path


def test_registry_export_and_validate_both_formats(tmp_path: Path) -> None:
    from modelreg.checkpoint import init_checkpoint

    _write_spectro(tmp_path)
    registry = modelreg.load_registry(tmp_path / "registry.toml")
    init_checkpoint(registry["spectro"])
    report = modelreg.export("spectro", registry)
    assert all(a.status == "written" for a in report.artifacts), [(a.exporter, a.message) for a in report.artifacts]
    document = json.loads((tmp_path / "models" / "spectro.json").read_text(encoding="utf-8"))
    assert [layer["type"] for layer in document["layers"]] == ["conv2d", "batchnorm2d", "conv2d", "dense"]
    validation = modelreg.validate("spectro", registry)
    model = validation["spectro"]
    assert validation.ok, [(c.name, c.message) for c in model.failures]
    names = {check.name for check in model.checks if check.status == "pass"}
    assert {"rtneural.parity", "onnx.parity"} <= names, names


@pytest.mark.parametrize(("table", "key", "words"), [
    (conv(2, 4, 2, 2), "num_features_in", "not whole frames of 4 features"),
    (conv(2, 3, 2, 4), "kernel_size_feature", "cannot be longer than the 3 input features"),
    ({"type": "batchnorm2d", "num_features_in": 4}, "num_features_in", "not whole frames of 4 features"),
])
def test_registry_semantic_problems(table: dict[str, Any], key: str, words: str) -> None:
    kind = modelreg.layers.get_kind(table["type"])
    layer = kind.spec(table, 6)
    ((field, reason, _, _),) = kind.problems(layer, 6)
    assert field == key and words in reason


# ---------------------------------------------------------------- RTNeural layout facts, in C++


def _one_conv(F: int, C: int, Co: int, kt: int, kf: int, kernel: np.ndarray, bias: np.ndarray, *, dilation: int = 1,
              stride: int = 1, padding: str = "valid") -> dict[str, Any]:
    out = conv2d.features_out(F, kf, stride, padding)
    return {"in_shape": [None, None, F, C], "layers": [{
        "type": "conv2d", "activation": "", "shape": [None, None, out, Co], "num_filters_in": [C],
        "num_features_in": [F], "num_filters_out": [Co], "kernel_size_time": [kt], "kernel_size_feature": [kf],
        "dilation": [dilation], "strides": [stride], "padding": padding, "weights": [kernel.tolist(), bias.tolist()]}]}


def _run_cpp(tmp_path: Path, document: Mapping[str, Any], frames: np.ndarray) -> np.ndarray:
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return run_in_rtneural_cpp(path, frames)


@needs_rtneural
def test_layout_facts_in_rtneurals_loader(tmp_path: Path, cpp: Path) -> None:
    """One non-zero weight and one non-zero input value at a time show where RTNeural reads and writes."""
    F, C, Co, kt, kf = 3, 2, 2, 2, 1
    kernel = np.zeros((kt, kf, C, Co), np.float32)
    kernel[0, 0, 1, 0] = 1.0  # oldest time slice, input filter 1 -> output filter 0
    document = _one_conv(F, C, Co, kt, kf, kernel, np.zeros(Co, np.float32), dilation=2)
    assert check_rtneural(document) == []
    frames = np.zeros((4, F * C), np.float32)
    frames[0, 2 * C + 1] = 5.0  # feature 2, filter 1: at f*C + c (feature-major)
    out = _run_cpp(tmp_path, document, frames)
    # The oldest slice reaches back (kt-1)*dilation = 2 frames: it lands at time 2, feature 2, filter 0.
    expected = np.zeros((4, F * Co), np.float32)
    expected[2, 2 * Co + 0] = 5.0
    np.testing.assert_array_equal(out, expected)
    # The numpy runtime and the torch module (written from the same file) agree.
    np.testing.assert_array_equal(load_rtneural(document).run(frames), expected)
    _, layers, state = from_rtneural(document)
    spec = _spec(tmp_path, F * C, [conv(Co, F, kt, kf, dilation=2)])
    assert list(spec.layers) == layers
    module = spec.build()
    module.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(frames)[None])[0].numpy(), expected)


@needs_rtneural
def test_feature_padding_and_strides_match_rtneural_for_a_grid(tmp_path: Path, cpp: Path) -> None:
    """"valid"/"same" x strides x kernel lengths (incl. longer than the features) x dilation, random
    weights, 24 filters in (enough that reading past the frame finds no zeros). Every layer check
    accepts matches RTNeural's C++; every one it refuses is one where RTNeural reads past the frame."""
    rng = np.random.default_rng(0)
    cases = refused = 0
    for F in (1, 4, 5):
        for kf in (1, 2, 3, 6):
            for stride in (1, 2, 3):
                for padding in ("valid", "same"):
                    if padding == "valid" and kf > F:
                        continue
                    kt, C, Co = 2, 24, 3
                    kernel = rng.normal(size=(kt, kf, C, Co)).astype(np.float32)
                    bias = rng.normal(size=Co).astype(np.float32)
                    document = _one_conv(F, C, Co, kt, kf, kernel, bias, dilation=2, stride=stride, padding=padding)
                    problems = check_rtneural(document)
                    if padding == "same" and conv2d.same_padding_overrun(F, kf, stride):
                        assert [p.key for p in problems] == ["layers[0].kernel_size_feature"], problems
                        refused += 1
                        continue
                    assert problems == [], document
                    path = tmp_path / f"grid-{cases}.json"
                    path.write_text(json.dumps(document), encoding="utf-8")
                    frames = rng.normal(size=(7, F * C)).astype(np.float32)
                    theirs = run_in_rtneural_cpp(path, frames)
                    ours = load_rtneural(document).run(frames)
                    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4, err_msg=str((F, kf, stride, padding)))
                    cases += 1
    assert (cases, refused) == (50, 7)


def test_same_padding_overrun_is_refused_in_the_registry_and_in_files(tmp_path: Path) -> None:
    """RTNeural's "same" padding reads past the frame when the kernel is much longer than the
    features (test above: garbage in C++); such a layer is refused, saying how long it may be."""
    table = {"type": "conv2d", "filters": 2, "num_features_in": 2, "kernel_size_time": 1,
             "kernel_size_feature": 4, "padding": "same"}
    layer = CONV.spec(table, 2 * 8)
    problems = CONV.problems(layer, 2 * 8)
    assert [(key, expected, found) for key, _, expected, found in problems] == [
        ("kernel_size_feature", "at most 3 for 2 features with strides 1", "4")]
    assert "reads past the frame's 2 features" in problems[0][1]
    assert not CONV.problems(CONV.spec({**table, "kernel_size_feature": 3}, 16), 16)
    assert conv2d.same_padding_overrun(1, 3, 2) and not conv2d.same_padding_overrun(16, 3, 2)


@needs_rtneural
@pytest.mark.parametrize("index", range(len(STACKS)))
def test_exports_match_torch_in_rtneurals_cpp_loader(tmp_path: Path, cpp: Path, index: int) -> None:
    in_features, tables = STACKS[index]
    spec = _spec(tmp_path, in_features, tables)
    module = _module(spec, seed=10 + index)
    path = tmp_path / "conv.json"
    RTNeuralExporter().export(spec, module, path)
    runner = rc.runner_for(rc.find_toolchain())
    loaded = rc.load_checked(runner, path, sizes=(spec.in_features, spec.out_features))
    try:
        result = rc.parity(runner, loaded, module, 1e-5)
    finally:
        runner.free(loaded)
    # max_error: absolute up to magnitude 1, relative above (inputs reach 1e6).
    assert result.ok and result.max_error <= 1e-5, (tables, result.to_figures())


@needs_rtneural
def test_compiled_header_matches_torch(tmp_path: Path, cpp: Path) -> None:
    spec = _spec(tmp_path, 12, [conv(3, 4, 2, 2), {"type": "batchnorm2d", "num_features_in": 3},
                                conv(2, 3, 3, 2, dilation=2, padding="same"),
                                {"type": "dense", "units": 2, "activation": "tanh"}], name="conv-header")
    module = _module(spec, seed=4)
    header = tmp_path / "conv.h"
    exporter = RTNeuralCppExporter()
    exporter.export(spec, module, header)
    assert exporter.check_artifact(spec, header) == []
    result = exporter.verify(spec, module, header, 1e-5)
    assert not result.skipped and result.ok and result.max_error <= 1e-5, result.to_figures()


# ---------------------------------------------------------------- corrupted exports fail parity


def _corrupt(document: dict[str, Any], how: str) -> dict[str, Any]:
    bad = copy.deepcopy(document)
    kernel = np.asarray(bad["layers"][0]["weights"][0], np.float32)
    if how == "time reversed":
        kernel = kernel[::-1]
    elif how == "in/out transposed":
        kernel = kernel.transpose(0, 1, 3, 2)
    elif how == "feature reversed":
        kernel = kernel[:, ::-1]
    bad["layers"][0]["weights"][0] = kernel.tolist()
    return bad


CORRUPTIONS = ["time reversed", "in/out transposed", "feature reversed"]


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_corrupted_conv2d_export_fails_parity(tmp_path: Path, how: str) -> None:
    # C == filters so that the transposed kernel still has the declared shape.
    spec = _spec(tmp_path, 8, [conv(2, 4, 3, 2, padding="same")])
    module = _module(spec, seed=7)
    document = json.loads(dumps_rtneural(to_rtneural(spec.layers, 8, {k: v.numpy() for k, v in module.state_dict()
                                                                       .items()})))
    frames = np.random.default_rng(3).normal(size=(16, 8)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(frames)[None])[0].numpy()
    np.testing.assert_allclose(load_rtneural(document).run(frames), expected, atol=1e-5)
    bad = _corrupt(document, how)
    assert check_rtneural(bad) == []  # same shapes: only parity can tell
    assert np.abs(load_rtneural(bad).run(frames) - expected).max() > 1e-2


@needs_rtneural
@pytest.mark.parametrize("how", CORRUPTIONS[:2])
def test_a_corrupted_conv2d_export_fails_cpp_parity(tmp_path: Path, cpp: Path, how: str) -> None:
    spec = _spec(tmp_path, 8, [conv(2, 4, 3, 2, padding="same")])
    module = _module(spec, seed=7)
    path = tmp_path / "conv.json"
    RTNeuralExporter().export(spec, module, path)
    checks = dict(rc.cpp_checks(spec, module, 1e-5))
    assert checks["dynamic_parity"](path).status == "pass"
    path.write_text(json.dumps(_corrupt(json.loads(path.read_text()), how)))
    result = checks["dynamic_parity"](path)
    assert result.status == "fail" and result.figures["max_error"] > 1e-3, result


# ---------------------------------------------------------------- what check_rtneural rejects or accepts


def _written(tmp_path: Path) -> dict[str, Any]:
    spec = _spec(tmp_path, 6, [conv(2, 3, 2, 2), {"type": "batchnorm2d", "num_features_in": 2}])
    module = _module(spec, seed=2)
    return json.loads(dumps_rtneural(to_rtneural(spec.layers, 6, {k: v.numpy() for k, v in module.state_dict().items()})))


def _keys(document: Mapping[str, Any]) -> list[str | None]:
    return [problem.key for problem in check_rtneural(document)]


def test_written_file_is_clean_and_keras_style_four_entry_shapes_are_read(tmp_path: Path) -> None:
    document = _written(tmp_path)
    assert check_rtneural(document) == []
    layer = document["layers"][0]
    assert layer["shape"] == [None, None, 4] and layer["num_filters_in"] == [2] and layer["padding"] == "valid"
    assert document["layers"][1]["num_filters_in"] == 2  # batchnorm2d: plain integers
    frames = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    expected = load_rtneural(document).run(frames)
    keras = copy.deepcopy(document)
    keras["in_shape"] = [None, None, 3, 2]
    keras["layers"][0]["shape"] = [None, None, 2, 2]
    keras["layers"][1]["shape"] = [None, None, 2, 2]
    for key in conv2d._ARRAY_KEYS:  # the loader's .back() also reads a plain number
        keras["layers"][0][key] = keras["layers"][0][key][0]
    assert check_rtneural(keras) == []
    np.testing.assert_array_equal(load_rtneural(keras).run(frames), expected)


@pytest.mark.parametrize(("edit", "key"), [
    (lambda d: d["layers"][0].update(padding="causal"), "layers[0].padding"),
    (lambda d: d["layers"][0].update(num_features_in=[2]), "layers[0].num_features_in"),
    (lambda d: d["layers"][0].update(shape=[None, None, 6]), "layers[0].shape"),
    (lambda d: d["layers"][0]["weights"].__setitem__(0, d["layers"][0]["weights"][0][:1]), "layers[0].weights[0]"),
    (lambda d: d["layers"][0]["weights"].__setitem__(1, [0.0]), "layers[0].weights[1]"),
    (lambda d: d["layers"][0].pop("strides"), "layers[0].strides"),
    (lambda d: d["layers"][0].update(kernel_size_feature=[4]), "layers[0].kernel_size_feature"),
    (lambda d: d["layers"][1].update(num_filters_in=[2]), "layers[1].num_filters_in"),
    (lambda d: d["layers"][1].update(num_features_in=1), "layers[1].num_features_in"),
    (lambda d: d["layers"][1]["weights"].pop(), "layers[1].weights"),
    (lambda d: d["layers"][1]["weights"].__setitem__(0, [1.0, 2.0, 3.0]), "layers[1].weights[0]"),
    (lambda d: d["layers"][1].pop("epsilon"), "layers[1].epsilon"),
])
def test_check_names_what_rtneural_would_misread(tmp_path: Path, edit: Any, key: str) -> None:
    document = _written(tmp_path)
    edit(document)
    assert key in _keys(document), check_rtneural(document)


@needs_rtneural
def test_rtneural_really_misreads_a_three_array_batchnorm2d(tmp_path: Path, cpp: Path) -> None:
    """Why three arrays are refused: the loader runs the file, reading it as non-affine."""
    document = _written(tmp_path)
    bn = document["layers"][1]
    bn["weights"].pop()  # gamma, beta, mean: RTNeural reads them as mean = gamma, var = beta, no affine
    bn["weights"][1] = [abs(v) + 0.5 for v in bn["weights"][1]]
    frames = np.random.default_rng(0).normal(size=(3, 6)).astype(np.float32)
    path = tmp_path / "three.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    runner = rc.runner_for(rc.find_toolchain())
    loaded = runner.load(path)  # no refusal, no warning
    try:
        out = runner.run(loaded, frames)
    finally:
        runner.free(loaded)
    conv_only = copy.deepcopy(document)
    conv_only["layers"] = conv_only["layers"][:1]
    grid = load_rtneural(conv_only).run(frames).reshape(3, 2, 2)
    mean, var = (np.asarray(w, np.float32) for w in bn["weights"][:2])
    misread = ((grid - mean) / np.sqrt(var + np.float32(bn["epsilon"]))).reshape(3, 4)
    np.testing.assert_allclose(out, misread, rtol=1e-5, atol=1e-5)
    assert "layers[1].weights" in _keys(document)


@needs_rtneural
def test_compiled_header_with_a_conv2d_activation(tmp_path: Path, cpp: Path) -> None:
    """ModelT steps over a conv2d's own activation like a dense layer's (the activation type follows it)."""
    tables = [conv(2, 4, 2, 2, activation="tanh"), {"type": "dense", "units": 3, "activation": "relu"}]
    spec = _spec(tmp_path, 8, tables, name="conv-act")
    module = _module(spec, seed=5)
    header = tmp_path / "conv.h"
    exporter = RTNeuralCppExporter()
    exporter.export(spec, module, header)
    result = exporter.verify(spec, module, header, 1e-5)
    assert not result.skipped and result.ok and result.max_error <= 1e-5, result.to_figures()
