"""rtneural-torch (issue 19, section 3): the entry's state dict as the JSON RTNeural's torch_helpers.h
reads, and a header of RTNeural compile-time layers that loads it with them, proven against torch in
RTNeural's C++ (STL and Eigen); a corrupted file fails. Residual models' rtneural-cpp headers with
cpp_weights = "json" load the same file with the same loader.

Programs compiled here (one per header, cached by content): the every-kind header (STL), the residual
TCN's (Eigen) and the TCN's rtneural-cpp JSON-form header (STL: the same loader and block structs, so
both backends run the residual route); the corrupted-file tests reuse the first. examples/tcn runs
the residual TCN's rtneural-torch header on STL too (tests/test_examples.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelreg import load_registry
from modelreg.builder import build_module
from modelreg.errors import ExportError
from modelreg.layers import get_kind
from modelreg.layers.base import Leaf, leaves
from modelreg.rtneural import cpp as rc
from modelreg.rtneural.header import RTNeuralCppExporter, render_header, torch_tensors
from modelreg.rtneural.statedict import RTNeuralTorchExporter, header_path

from conftest import RTNEURAL, needs_rtneural
from kind_tools import widened
from test_residual import PARAMS as TCN_PARAMS, TCN

# Every kind torch_helpers loads (or modelreg sets through setters): grouped, strided and bias-free convs,
# stacked GRU and LSTM (num_layers: one loadGRU / loadLSTM per layer_index),
# batchnorm with and without affine, PReLU, an activation layer, GRU and LSTM with and without
# biases, dense with and without. The last dense is 2 -> 2: its weight is square, so a transposed
# one has the right shape and only the numbers can tell.
KINDS = """\
[models.kinds]
description = "every kind of RTNeural's PyTorch route"
input_shape = [1, 2]
output_shape = [1, 2]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = ["rtneural-torch"]
checkpoint = "models/kinds.pt"
layers = [
    {{ type = "conv1d", units = 4, kernel_size = 3, dilation = 2, groups = 2 }},
    {{ type = "batchnorm" }},
    {{ type = "prelu" }},
    {{ type = "activation", activation = "tanh" }},
    {{ type = "conv1d", units = 4, kernel_size = 2, stride = 2, bias = false }},
    {{ type = "batchnorm", affine = false, epsilon = 0.001 }},
    {{ type = "gru", units = 3, num_layers = 3 }},
    {{ type = "lstm", units = 3, bias = false }},
    {{ type = "gru", units = 3, bias = false }},
    {{ type = "lstm", units = 2, num_layers = 2 }},
    {{ type = "dense", units = 2, activation = "tanh", bias = false }},
    {{ type = "dense", units = 2, activation = "linear" }},
]
"""
# conv 4*1*3+4=16, bn 8, prelu 4, strided conv 4*4*2=32, 3-layer gru 3*3*(4+3)+18=81 + 2*(3*3*6+18)=144,
# lstm 4*3*6=72, gru 3*3*6=54, 2-layer lstm 4*2*(3+2)+16=56 + 4*2*4+16=48, dense 4, dense 6
KINDS_PARAMS = 16 + 8 + 4 + 32 + 81 + 144 + 72 + 54 + 56 + 48 + 4 + 6


def _spec(tmp_path: Path, text: str, name: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "registry.toml"
    path.write_text(text, encoding="utf-8")
    return load_registry(path)[name]


def _kinds(tmp_path: Path):  # type: ignore[no-untyped-def]
    return _spec(tmp_path, KINDS.format(params=KINDS_PARAMS), "kinds")


def _tcn(tmp_path: Path, weights: str | None = None):  # type: ignore[no-untyped-def]
    exports = '["rtneural-torch"]' if weights is None else f'["rtneural-cpp"]\ncpp_weights = "{weights}"'
    return _spec(tmp_path, TCN.format(params=TCN_PARAMS).replace("exports = []", f"exports = {exports}"), "restcn")


def _export(spec: Any, module: Any) -> Path:
    exporter = RTNeuralTorchExporter()
    path = exporter.artifact_path(spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    exporter.export(spec, module, path)
    return path


# ---------------------------------------------------------------- without C++


def test_every_kind_reads_exactly_its_torch_modules_tensors() -> None:
    # What each kind's loader reads (torch_tensors) is what its torch module holds, name and shape:
    # every example of every kind that has a torch route (num_batches_tracked: a counter nobody reads).
    for name in ("dense", "conv1d", "gru", "lstm", "batchnorm", "prelu", "activation"):
        kind = get_kind(name)
        for table in kind.examples:
            layer = kind.spec(table, 12)
            state = {key: tuple(t.shape) for key, t in kind.build(layer, 12).state_dict().items()
                     if not key.endswith("num_batches_tracked")}
            # A stacked recurrent layer is read as its single layers (one loader call per layer_index).
            read = {name: shape for leaf in kind.unstack(Leaf(layer, 12, "layers[0]", ""))
                    for name, shape in kind.torch_tensors(leaf.layer, leaf.in_features)}
            assert read == state, (name, table)


def test_the_file_is_the_state_dict_and_a_json_checkpoint(tmp_path: Path) -> None:
    spec = _tcn(tmp_path)
    module = build_module(spec, seed=1)
    path = _export(spec, module)
    data = json.loads(path.read_text())
    state = module.state_dict()
    assert list(data) == list(state)  # keys as torch names them, in its order
    assert data["layers.1.layers.0.weight"] == state["layers.1.layers.0.weight"].tolist()  # float32 exactly
    assert data["layers.1.layers.1.num_batches_tracked"] == 0
    assert RTNeuralTorchExporter().check_artifact(spec, path) == []
    # The same bytes load back as the entry's JSON checkpoint (issue 19: a checkpoint may be such a file).
    import attrs

    from modelreg.checkpoint import load_checkpoint

    reloaded = load_checkpoint(attrs.evolve(spec, checkpoint=path))
    assert all(bool((reloaded.state_dict()[k] == v).all()) for k, v in state.items())
    # The header beside the rtneural-cpp headers loads it with torch_helpers.
    text = header_path(spec).read_text()
    assert text.startswith("// Written by modelreg's rtneural-torch exporter (version 2)")
    assert 'RTNeural::torch_helpers::loadGRU<float>(doc, "layers.2.layers.1.layers.0.", ' in text
    assert "setAlphaVals(doc.at(\"layers.1.layers.2.weight\")" in text and "namespace restcn_torch" in text
    assert (tmp_path / "models" / "cpp" / "CMakeLists.txt").is_file()


def test_the_schema_and_the_entry_refuse_a_broken_file(tmp_path: Path) -> None:
    spec = _kinds(tmp_path)
    path = _export(spec, build_module(spec, seed=0))
    data = json.loads(path.read_text())
    exporter = RTNeuralTorchExporter()
    # Not a number: the schema names the tensor.
    broken = dict(data, **{"layers.0.bias": ["0.5", 1, 2, 3]})
    path.write_text(json.dumps(broken))
    [problem] = exporter.check_artifact(spec, path)
    assert "layers.0.bias" in str(problem.key) and problem.model == "kinds"
    # A transposed (non-square) tensor, a missing one and a left-over one: each named with its shape.
    broken = dict(data)
    broken["layers.6.weight_ih_l0"] = [list(row) for row in zip(*data["layers.6.weight_ih_l0"])]
    del broken["layers.11.bias"]
    broken["gru.weight_ih_l0"] = [[0.0]]
    path.write_text(json.dumps(broken))
    problems = {p.key: p for p in exporter.check_artifact(spec, path)}
    assert problems["layers.6.weight_ih_l0"].expected == "shape [9, 4]"
    assert problems["layers.6.weight_ih_l0"].found == "shape [4, 9]"
    assert problems["layers.11.bias"].found == "no such key" and "gru.weight_ih_l0" in problems
    # check_file: the schema alone (no entry to compare with).
    assert exporter.check_file(path) == []
    path.write_text("[1, 2]")
    assert exporter.check_file(path)
    # A header that is not this entry's is a problem of the artifact.
    path.write_text(json.dumps(data))
    header_path(spec).write_text("// edited\n")
    [problem] = exporter.check_artifact(spec, path)
    assert problem.file is not None and problem.file.endswith("kinds.torch.h")


def test_layers_without_a_torch_route_are_refused_by_name(tmp_path: Path) -> None:
    # conv2d: torch_helpers has no loader for it (and RTNeural's TCN route none either).
    from kind_tools import spec_of

    dense = get_kind("dense").spec({"units": 3}, 3)
    conv2d = get_kind("conv2d").spec(dict(get_kind("conv2d").examples[0]), 3)
    spec = spec_of(tmp_path, 3, [dense, conv2d])
    with pytest.raises(ExportError) as caught:
        RTNeuralTorchExporter().export(spec, build_module(spec, seed=0), tmp_path / "x.json")
    [problem] = caught.value.problems
    assert problem.key == "models.kind.layers[1]" and "torch_helpers" in problem.reason
    assert problem.found == 'type = "conv2d"'


def test_a_residual_rtneural_cpp_header_reads_the_state_dict_json(tmp_path: Path) -> None:
    # cpp_weights = "json" on a model with blocks: the rtneural-torch loader, in the rtneural-cpp header.
    spec = _tcn(tmp_path, weights="json")
    text = render_header(spec)
    assert text.startswith("// Written by modelreg's rtneural-cpp exporter")
    assert "RTNeural::torch_helpers::loadConv1D<float>(doc, \"layers.1.skip.0.\", model.s1.skip0" in text
    assert "parseJson" not in text and "namespace restcn\n" in text
    assert len(torch_tensors(spec)) == sum(len(leaf.layer.kind.torch_tensors(leaf.layer, leaf.in_features))
                                           for leaf in leaves(spec.layers, spec.in_features))


# ---------------------------------------------------------------- in RTNeural's C++


@needs_rtneural
def test_every_kind_matches_torch_in_cpp(tmp_path: Path, cpp: Path) -> None:
    spec = _kinds(tmp_path)
    module = widened(spec, seed=3)
    path = _export(spec, module)
    exporter = RTNeuralTorchExporter()
    result = exporter.verify(spec, module, path, 1e-5)
    assert not result.skipped and result.ok, result.to_figures()
    # reset() and forward() of the torch_helpers header's model allocate nothing (the same program).
    realtime = dict(exporter.extra_checks(spec, module, 1e-5))["realtime"](path)
    assert realtime.name == "rtneural-torch.realtime" and realtime.status == "pass", realtime
    assert realtime.figures["allocations"] == 0 and realtime.figures["frames"] > 0


@needs_rtneural
def test_the_realtime_check_of_the_torch_header_fails_on_an_allocating_forward(
        tmp_path: Path, cpp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The runner built to allocate 16 bytes in every forward() (as tests/test_realtime.py does for
    # the other engines): the check fails and names the call.
    monkeypatch.setenv(rc.ENV_CXXFLAGS, "-O1 -DMODELREG_TEST_ALLOCATE_IN_FORWARD=16")
    spec = _kinds(tmp_path)
    module = widened(spec, seed=3)
    path = _export(spec, module)
    realtime = dict(RTNeuralTorchExporter().extra_checks(spec, module, 1e-5))["realtime"](path)
    assert realtime.status == "fail", realtime
    # Per forward(): a std::vector and its buffer, made and freed (4 calls), over 64 frames.
    assert realtime.figures["allocations"] == 64 * 4, realtime.figures
    assert realtime.message.startswith("the torch_helpers header (state-dict JSON): 256 heap calls ("), realtime.message
    assert "the first: operator new(24) in forward() of frame 0" in realtime.message


@needs_rtneural
@pytest.mark.parametrize("corruption", ["transposed", "swapped_layers", "swapped_biases"])
def test_a_corrupted_file_fails_the_cpp_parity(tmp_path: Path, cpp: Path, corruption: str) -> None:
    spec = _kinds(tmp_path)
    module = widened(spec, seed=3)
    path = _export(spec, module)
    data = json.loads(path.read_text())
    if corruption == "transposed":  # the square 2 x 2 dense kernel, transposed
        data["layers.11.weight"] = [list(row) for row in zip(*data["layers.11.weight"])]
    elif corruption == "swapped_layers":  # the batchnorm's gamma and the PReLU's slopes, both [4]
        data["layers.1.weight"], data["layers.2.weight"] = data["layers.2.weight"], data["layers.1.weight"]
    else:  # a GRU's input and recurrent biases, both [9]
        data["layers.6.bias_ih_l0"], data["layers.6.bias_hh_l0"] = data["layers.6.bias_hh_l0"], data["layers.6.bias_ih_l0"]
    path.write_text(json.dumps(data))
    exporter = RTNeuralTorchExporter()
    assert exporter.check_artifact(spec, path) == []  # well-formed: only running it can tell
    result = exporter.verify(spec, module, path, 1e-5)
    assert not result.skipped and not result.ok


@needs_rtneural
def test_the_header_refuses_a_tensor_of_another_shape(tmp_path: Path, cpp: Path) -> None:
    # torch_helpers check no size: the header does, before any of them reads a tensor.
    from modelreg.errors import ArtifactError

    spec = _kinds(tmp_path)
    module = widened(spec, seed=3)
    path = _export(spec, module)
    data = json.loads(path.read_text())
    data["layers.6.weight_hh_l0"] = data["layers.6.weight_hh_l0"][:-1]
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError) as caught:
        RTNeuralTorchExporter().verify(spec, module, path, 1e-5)
    assert "layers.6.weight_hh_l0: expected 9 rows of 3, found 8 rows" in str(caught.value)


@needs_rtneural
def test_the_residual_tcn_matches_torch_in_cpp_eigen(tmp_path: Path, cpp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (RTNEURAL / "modules" / "Eigen" / "Eigen" / "Dense").is_file():
        pytest.skip(f"no modules/Eigen in {RTNEURAL}")
    monkeypatch.delenv(rc.ENV_BACKEND)  # Eigen is found in the checkout: the default
    spec = _tcn(tmp_path)
    module = widened(spec, seed=5)
    path = _export(spec, module)
    assert rc.find_toolchain().backend == "eigen"
    result = RTNeuralTorchExporter().verify(spec, module, path, 1e-5)
    assert not result.skipped and result.ok, result.to_figures()


@needs_rtneural
def test_the_residual_rtneural_cpp_json_form_matches_torch(tmp_path: Path, cpp: Path) -> None:
    spec = _tcn(tmp_path, weights="json")
    module = widened(spec, seed=4)
    path = tmp_path / "restcn.h"
    exporter = RTNeuralCppExporter()
    exporter.export(spec, module, path)
    assert exporter.check_artifact(spec, path) == []
    result = exporter.verify(spec, module, path, 1e-5)
    assert not result.skipped and result.ok, result.to_figures()
    assert result.details["weights"] == "json"
    # Its real-time check runs the header on the state-dict JSON too.
    realtime = dict(exporter.extra_checks(spec, module, 1e-5))["realtime"](path)
    assert realtime.status == "pass", realtime
