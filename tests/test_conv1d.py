"""The conv1d layer kind: causal streaming convolution, as RTNeural runs it.

torch (frame loop, sequence mode = nn.Conv1d with left padding, reset), the
RTNeural layout (against model_loader.h's loadConv1D, read in the file's own
terms), the size rules, ONNX streaming with the frame buffer as explicit
state, corrupted exports failing parity, and RTNeural's own C++ (dynamic
loader and the compiled ModelT header, STL; one Eigen run) frame by frame.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import modelreg
from modelreg import LayerSpec, ModelSpec
from modelreg.rtneural import cpp as rc
from modelreg.builder import build_module
from modelreg.onnx.exporter import ONNXExporter
from modelreg.rtneural.exporter import RTNeuralExporter
from modelreg.rtneural.header import RTNeuralCppExporter, cpp_namespace, render_header
from modelreg.layers import get_kind
from modelreg.parity import compare_parity
from modelreg.rtneural.format import dumps_rtneural, from_rtneural, to_rtneural
from modelreg.rtneural.runtime import check_rtneural, load_rtneural

from conftest import RTNEURAL, needs_rtneural
from kind_tools import spec_of, widened

CONV = get_kind("conv1d")


def conv(in_features: int, units: int, kernel_size: int, dilation: int = 1, groups: int = 1,
         activation: str = "linear") -> LayerSpec:
    return CONV.spec({"type": "conv1d", "units": units, "kernel_size": kernel_size, "dilation": dilation,
                      "groups": groups, "activation": activation}, in_features)


CONFIGS = [  # (in, units, kernel_size, dilation, groups)
    (3, 4, 3, 1, 1),
    (4, 6, 2, 3, 2),
    (6, 6, 3, 2, 6),  # depthwise
    (2, 5, 4, 4, 1),
    (3, 2, 1, 1, 1),  # pointwise: no state
]


# ---------------------------------------------------------------- torch


@pytest.mark.parametrize(("cin", "units", "k", "d", "g"), CONFIGS)
def test_sequence_mode_equals_nn_conv1d_with_left_padding_and_the_frame_loop(cin: int, units: int, k: int, d: int,
                                                                            g: int, tmp_path: Path) -> None:
    spec = spec_of(tmp_path, cin, [conv(cin, units, k, d, g)], name="conv")
    module = widened(spec, seed=k + d)
    x = torch.randn(2, 20, cin, generator=torch.Generator().manual_seed(0))
    reference = torch.nn.Conv1d(cin, units, k, dilation=d, groups=g, padding=0)
    reference.load_state_dict({key.removeprefix("layers.0."): v for key, v in module.state_dict().items()})
    with torch.no_grad():
        padded = torch.nn.functional.pad(x.transpose(1, 2), ((k - 1) * d, 0))
        expected = reference(padded).transpose(1, 2)
        module.reset()
        sequence = module(x)
        module.reset()
        frames = torch.stack([module(x[:, t]) for t in range(x.shape[1])], dim=1)
        # reset() clears the buffer: the same input gives the same output again.
        module.reset()
        again = module(x)
    torch.testing.assert_close(sequence, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(frames, expected, atol=1e-6, rtol=1e-6)
    assert torch.equal(again, sequence)
    assert spec.is_stateful == (k > 1)
    assert module.state_layout() == ([("buf0", (k - 1) * d * cin)] if k > 1 else [])
    assert spec.params == sum(p.numel() for p in module.parameters())


def test_a_sequence_continues_from_the_buffer_of_the_previous_call(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, 3, [conv(3, 4, 3, 2)], name="conv")
    module = widened(spec, seed=1)
    x = torch.randn(1, 12, 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        whole = module(x)
        module.reset()
        halves = torch.cat([module(x[:, :5]), module(x[:, 5:])], dim=1)
    torch.testing.assert_close(halves, whole, atol=1e-6, rtol=1e-6)
    # Without the buffer (a fresh start at frame 5) the outputs differ: the state matters.
    with torch.no_grad():
        module.reset()
        fresh = module(x[:, 5:])
    assert float((fresh - whole[:, 5:]).abs().max()) > 1e-3


# ---------------------------------------------------------------- RTNeural layout


def test_rtneural_layout_is_what_load_conv1d_reads(tmp_path: Path) -> None:
    """model_loader.h: convWeights[o][c][K-1-i] = json[i][c][o], and RTNeural's internal tap k multiplies
    the frame k*dilation ago; so json[i] multiplies the frame (K-1-i)*dilation ago: torch's kernel index i."""
    layer = conv(4, 6, 3, 2, 2, "tanh")
    spec = spec_of(tmp_path, 4, [layer], name="conv")
    module = widened(spec, seed=2)
    weight = module.state_dict()["layers.0.weight"].numpy()  # [out, in/groups, K]
    document = json.loads(dumps_rtneural(to_rtneural([layer], 4, {k: v.numpy() for k, v in module.state_dict().items()})))
    written = document["layers"][0]
    assert {key: written[key] for key in ("type", "activation", "shape", "kernel_size", "dilation", "groups")} == {
        "type": "conv1d", "activation": "tanh", "shape": [None, None, 6], "kernel_size": [3], "dilation": [2],
        "groups": 2}
    kernel = np.asarray(written["weights"][0], dtype=np.float32)
    assert kernel.shape == (3, 2, 6)
    for i in range(3):
        for c in range(2):
            for o in range(6):
                assert kernel[i, c, o] == weight[o, c, i]
    # What RTNeural computes, written out from the loader's and the layer's code (STL Conv1D::forward):
    # state_ptrs[k] = newest - k*dilation; h[o] = bias[o] + sum_k sum_c weights[o][k][c] * frame_k[group(o)*c_g + c].
    internal = np.zeros((6, 3, 2), np.float32)  # weights[o][k][c]
    for i in range(3):
        for c in range(2):
            for o in range(6):
                internal[o, 3 - 1 - i, c] = kernel[i, c, o]
    bias = np.asarray(written["weights"][1], dtype=np.float32)
    frames = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    history = np.zeros((10 + 4, 4), np.float32)
    history[4:] = frames
    by_hand = np.zeros((10, 6), np.float32)
    for t in range(10):
        for o in range(6):
            start = (o // 3) * 2
            total = bias[o]
            for k in range(3):
                total += internal[o, k] @ history[4 + t - k * 2, start:start + 2]
            by_hand[t, o] = np.tanh(total)
    np.testing.assert_allclose(load_rtneural(document).run(frames), by_hand, atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(module(torch.from_numpy(frames)[None])[0].numpy(), by_hand, atol=1e-5)


def test_rtneural_reader_accepts_what_the_loader_reads() -> None:
    layer = conv(2, 2, 2, 3)
    state = {"layers.0.weight": np.arange(8, dtype=np.float32).reshape(2, 2, 2) / 8,
             "layers.0.bias": np.array([0.5, -0.25], np.float32)}
    document = to_rtneural([layer], 2, state)
    plain = copy.deepcopy(document)
    plain["layers"][0]["kernel_size"] = 2  # .back() of a number is the number
    plain["layers"][0]["dilation"] = [1, 3]  # Keras may write tuples: the last entry is used
    del plain["layers"][0]["groups"]  # value("groups", 1)
    assert check_rtneural(plain) == []
    frames = np.random.default_rng(3).normal(size=(9, 2)).astype(np.float32)
    np.testing.assert_array_equal(load_rtneural(plain).run(frames), load_rtneural(document).run(frames))
    assert from_rtneural(plain)[1] == [layer]


def _problems(document: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(p.key, p.reason) for p in check_rtneural(document)]


def test_size_rules_name_the_layer_and_key(tmp_path: Path) -> None:
    layer = conv(4, 6, 3, 2, 2)
    spec = spec_of(tmp_path, 4, [layer, LayerSpec("dense", 2, "linear")], name="conv")
    module = widened(spec, seed=0)
    good = to_rtneural(list(spec.layers), 4, {k: v.numpy() for k, v in module.state_dict().items()})
    assert check_rtneural(good) == []

    def broken(change: Any) -> list[tuple[str | None, str]]:
        document = copy.deepcopy(good)
        change(document["layers"][0])
        return _problems(json.loads(dumps_rtneural(document, check=False)))

    def taps(layer: dict[str, Any]) -> None:
        layer["kernel_size"] = [4]

    assert broken(taps) == [("layers[0].weights[0]", "kernel has 3 taps (dimension 1 of [kernel_size][inputs/groups]"
                                                     "[units]) but kernel_size is 4")]

    def groups(layer: dict[str, Any]) -> None:
        layer["groups"] = 3

    found = broken(groups)  # 6 units divide by 3; the 4 inputs do not
    assert [key for key, _ in found] == ["layers[0].groups"]
    assert "does not divide the 4 outputs of the model input" in found[0][1]

    def groups4(layer: dict[str, Any]) -> None:
        layer["groups"] = 4  # 4 inputs divide by 4, 6 units do not

    assert [key for key, _ in broken(groups4)] == ["layers[0].groups"]

    def one_group(layer: dict[str, Any]) -> None:
        layer["groups"] = 1  # a grouped kernel read as a full one: 2 input channels where 4 are fed

    assert broken(one_group) == [("layers[0].weights[0]", "kernel input-channel count 2 (dimension 2 of "
                                  "[kernel_size][inputs/groups][units]) does not match the 4 outputs of the model "
                                  "input (in_shape) split into 1 groups")]

    def transposed(layer: dict[str, Any]) -> None:
        layer["weights"][0] = np.ascontiguousarray(layer["weights"][0].transpose(0, 2, 1))

    assert [key for key, _ in broken(transposed)] == ["layers[0].weights[0]", "layers[0].weights[0]"]

    def no_dilation(layer: dict[str, Any]) -> None:
        del layer["dilation"]  # the loader's l.at("dilation") throws

    assert broken(no_dilation) == [("layers[0].dilation", "missing required key")]

    def no_bias(layer: dict[str, Any]) -> None:
        layer["weights"] = layer["weights"][:1]  # the loader reads weights.at(1)

    assert broken(no_bias) == [("layers[0].weights", "wrong number of entries")]

    document = json.loads(dumps_rtneural(good))
    document["layers"][0]["weights"][0][1][0] = document["layers"][0]["weights"][0][1][0][:-1]
    assert _problems(document) == [("layers[0].weights[0][1][1]", "rows have different lengths")]
    document = json.loads(dumps_rtneural(good))
    document["layers"][0]["weights"][0][2] = document["layers"][0]["weights"][0][2][:-1]
    (problem,) = check_rtneural(document)
    assert (problem.key, problem.reason, problem.expected, problem.found) == (
        "layers[0].weights[0][2]", "entries have different shapes", "[2][6] (like entry 0)", "[1][6]")


# ---------------------------------------------------------------- exports and parity


STACKS = [
    (3, [conv(3, 4, 3, 1, 1, "tanh"), conv(4, 4, 3, 2, 2, "relu"), LayerSpec("dense", 2, "sigmoid")]),
    (2, [conv(2, 6, 2, 1), conv(6, 6, 2, 2, 3, "elu"), conv(6, 6, 2, 4, 6, "tanh"), conv(6, 6, 2, 8, 1, "relu"),
         LayerSpec("gru", 5), LayerSpec("dense", 3, "linear")]),
    (4, [LayerSpec("lstm", 4), conv(4, 2, 5, 3, 2, "sigmoid")]),
]


@pytest.mark.parametrize("index", range(len(STACKS)))
def test_exports_stream_like_torch_in_numpy_and_onnxruntime(tmp_path: Path, index: int) -> None:
    in_features, layers = STACKS[index]
    spec = spec_of(tmp_path, in_features, layers, name="conv")
    module = widened(spec, seed=index)
    for exporter in (RTNeuralExporter(), ONNXExporter()):
        path = tmp_path / f"conv.{exporter.name}"
        exporter.export(spec, module, path)
        assert exporter.check_artifact(spec, path) == [], exporter.name
        result = exporter.verify(spec, module, path, 1e-5)
        assert result.ok and result.max_abs_error < 1e-5, (exporter.name, result.to_figures())
    import onnx

    graph = onnx.load(str(tmp_path / "conv.onnx")).graph
    names = [i.name for i in graph.input]
    assert [name for name in names if name.startswith("buf")] == [name for name, _ in module.state_layout()
                                                                  if name.startswith("buf")]


def _corrupt(document: dict[str, Any], how: str) -> dict[str, Any]:
    document = copy.deepcopy(document)
    layer = document["layers"][0]
    kernel = np.asarray(layer["weights"][0], dtype=np.float32)
    if how == "reversed kernel":
        layer["weights"][0] = kernel[::-1].tolist()
    elif how == "transposed in/out":
        layer["weights"][0] = kernel.transpose(0, 2, 1).tolist()
    elif how == "wrong dilation":
        layer["dilation"] = [layer["dilation"][0] + 1]
    return document


CORRUPTIONS = ["reversed kernel", "transposed in/out", "wrong dilation"]


@pytest.fixture
def square_conv(tmp_path: Path) -> tuple[ModelSpec, Any, dict[str, Any]]:
    # in == units, so that a transposed kernel still has the right dimensions: only parity can catch it.
    spec = spec_of(tmp_path, 4, [conv(4, 4, 3, 2, 1, "tanh"), LayerSpec("dense", 2, "linear")], name="conv")
    module = widened(spec, seed=11)
    path = tmp_path / "good.json"
    RTNeuralExporter().export(spec, module, path)
    return spec, module, json.loads(path.read_text())


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_corrupted_conv_exports_fail_parity(tmp_path: Path, square_conv: Any, how: str) -> None:
    spec, module, document = square_conv
    bad = _corrupt(document, how)
    assert check_rtneural(bad) == []  # well-formed: only running it can tell
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = RTNeuralExporter().verify(spec, module, path, 1e-5)
    assert not result.ok and result.max_error > 1e-3, result.to_figures()


def test_a_corrupted_onnx_buffer_fails_parity(tmp_path: Path) -> None:
    """A host that drops the buffer (feeds zeros each frame) is not streaming like torch: parity says so."""
    import onnxruntime as ort

    spec = spec_of(tmp_path, 3, [conv(3, 3, 3, 2, 1, "tanh")], name="conv")
    module = widened(spec, seed=5)
    path = tmp_path / "c.onnx"
    ONNXExporter().export(spec, module, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def forgetful(frames: np.ndarray) -> np.ndarray:
        zero = np.zeros((1, frames.shape[0], 12), np.float32)
        return np.stack([session.run(["y"], {"x": frames[:, t], "buf0": zero})[0] for t in range(frames.shape[1])], 1)

    assert not compare_parity(module, forgetful, 1e-5).ok


# ---------------------------------------------------------------- registry end to end


REGISTRY = """\
[models.tcn]
description = "conv1d stack"
input_shape = [1, 2]
output_shape = [1, 1]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = ["rtneural", "onnx", "rtneural-cpp"]
checkpoint = "models/tcn.pt"
layers = [
    {{ type = "conv1d", units = 4, kernel_size = 3, activation = "tanh" }},
    {{ type = "conv1d", units = 4, kernel_size = 2, dilation = 4, groups = 2 }},
    {{ type = "dense", units = 1, activation = "linear" }},
]
"""


def test_registry_entry_exports_validates_and_imports_back(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    path.write_text(REGISTRY.format(params=(4 * 2 * 3 + 4) + (4 * 2 * 2 + 4) + 5))
    registry = modelreg.load_registry(path)
    spec = registry["tcn"]
    assert [layer.option("dilation") for layer in spec.layers[:2]] == [1, 4] and spec.is_stateful
    modelreg.init_checkpoint(spec)
    exported = modelreg.export_all(registry)
    assert exported.ok, [a.message for a in exported.artifacts]
    report = modelreg.validate_all(registry, latency_seconds=0.02, write=False)
    failed = {c.name: c.message for c in report["tcn"].checks if c.status == "fail" and c.name != "latency"}
    assert not failed
    document = json.loads((tmp_path / "models" / "tcn.json").read_text())
    in_size, layers, state = from_rtneural(document)
    assert (in_size, tuple(layers)) == (2, spec.layers)
    module = spec.load()
    for key, value in module.state_dict().items():
        np.testing.assert_array_equal(state[key], value.numpy(), err_msg=key)


# ---------------------------------------------------------------- RTNeural C++


def _cpp_run(path: Path, spec: ModelSpec, module: Any) -> Any:
    runner = rc.runner_for(rc.find_toolchain())
    loaded = rc.load_checked(runner, path, sizes=(spec.in_features, spec.out_features))
    try:
        return rc.parity(runner, loaded, module, 1e-5)
    finally:
        runner.free(loaded)


CPP_CASES = [(3, [conv(3, 4, 3, 1, 1, "tanh")]), (4, [conv(4, 6, 2, 3, 2, "relu")]), (6, [conv(6, 6, 3, 2, 6)]),
             (2, [conv(2, 5, 4, 4, 1, "sigmoid")]), (3, [conv(3, 2, 1, 1, 1, "elu")])] + STACKS


@needs_rtneural
@pytest.mark.parametrize("index", range(len(CPP_CASES)))
def test_rtneural_cpp_dynamic_loader_matches_torch(tmp_path: Path, cpp: Path, index: int) -> None:
    in_features, layers = CPP_CASES[index]
    spec = spec_of(tmp_path, in_features, layers, name="conv")
    module = widened(spec, seed=20 + index)
    path = tmp_path / "conv.json"
    RTNeuralExporter().export(spec, module, path)
    result = _cpp_run(path, spec, module)
    assert result.ok and result.max_error <= 1e-5, (layers, result.to_figures())


@needs_rtneural
@pytest.mark.parametrize("how", CORRUPTIONS)
def test_corrupted_conv_exports_fail_parity_in_rtneural_cpp(tmp_path: Path, cpp: Path, square_conv: Any,
                                                            how: str) -> None:
    spec, module, document = square_conv
    good = tmp_path / "good.json"
    good.write_text(json.dumps(document))
    assert _cpp_run(good, spec, module).ok
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_corrupt(document, how)))
    result = _cpp_run(path, spec, module)
    assert not result.ok and result.max_error > 1e-3, result.to_figures()


@needs_rtneural
def test_compiled_header_matches_torch_and_checks_the_conv_keys(tmp_path: Path, cpp: Path) -> None:
    in_features, layers = STACKS[1]  # dilations 1-2-4-8, groups, GRU, dense
    spec = spec_of(tmp_path, in_features, layers, name="tcn")
    assert ("RTNeural::Conv1DT<float, 2, 6, 2, 1, 1>,\n" in render_header(spec)
            and "RTNeural::Conv1DT<float, 6, 6, 2, 4, 6>,\n            RTNeural::TanhActivationT<float, 6>" in
            render_header(spec))
    module = widened(spec, seed=3)
    header = tmp_path / "tcn.h"
    exporter = RTNeuralCppExporter()
    exporter.export(spec, module, header)
    result = exporter.verify(spec, module, header, 1e-5)
    assert not result.skipped and result.ok and result.max_error <= 1e-5, result.to_figures()
    path = tmp_path / "tcn.json"
    RTNeuralExporter().export(spec, module, path)
    document = json.loads(path.read_text())
    with rc.header_runner(rc.find_toolchain(), header, cpp_namespace(spec), spec.name) as runner:
        runner.free(rc.load_checked(runner, path))
        # A wrong dilation has the same weight shapes; ModelT::parseJson would leave the layer at zero.
        document["layers"][2]["dilation"] = [2]
        wrong = tmp_path / "wrong.json"
        wrong.write_text(json.dumps(document))
        with pytest.raises(modelreg.ArtifactError, match=r"layers\[2\]\.dilation: expected 4, found \[2\]"):
            rc.load_checked(runner, wrong)
        document["layers"][2]["dilation"] = [4]
        del document["layers"][2]["groups"]  # the loader assumes 1
        wrong.write_text(json.dumps(document))
        with pytest.raises(modelreg.ArtifactError, match=r"layers\[2\]\.groups: expected 6, found none \(1\)"):
            rc.load_checked(runner, wrong)


@needs_rtneural
def test_eigen_backend_conv1d_with_groups_and_dilation(tmp_path: Path, cpp: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    if not (RTNEURAL / "modules" / "Eigen" / "Eigen" / "Dense").is_file():
        pytest.skip(f"no modules/Eigen in {RTNEURAL}")
    monkeypatch.setenv(rc.ENV_BACKEND, "eigen")
    in_features, layers = STACKS[1]
    spec = spec_of(tmp_path, in_features, layers, name="tcn_eigen")
    module = widened(spec, seed=4)
    path = tmp_path / "tcn.json"
    RTNeuralExporter().export(spec, module, path)
    assert rc.find_toolchain().backend == "eigen"
    result = _cpp_run(path, spec, module)
    assert result.ok and result.max_error <= 1e-5, result.to_figures()
    # The compile-time Conv1DT of the Eigen backend (its own implementation) too.
    header = tmp_path / "tcn_eigen.h"
    exporter = RTNeuralCppExporter()
    exporter.export(spec, module, header)
    compiled = exporter.verify(spec, module, header, 1e-5)
    assert not compiled.skipped and compiled.ok and compiled.max_error <= 1e-5, compiled.to_figures()
