"""``num_layers`` on lstm and gru (issue 19, section 3): one registry layer for torch's stacked
``nn.LSTM(num_layers=N)`` / ``nn.GRU(num_layers=N)``. Its params, seeded weights and checkpoint
keys are torch's own, so a user's state dict loads as is (by a declared table or by "match"); its
state is one h (and c) per stacked layer; RTNeural JSON, rtneural-cpp headers (both weight sources,
inside residual blocks too), ONNX and NAM (tests/test_nam.py) hold the stack as N layers."""

from __future__ import annotations

import json
import logging
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

from conftest import needs_rtneural, run_cli, write_registry

# A GRU, then a 3-layer GRU (or the same with LSTMs), then a dense head: the model of issue 19's
# "proof against real files", as a user writes it in torch.
ENTRY = """\
[models.{name}]
description = "a {kind}, then a stacked {kind} of 3 layers, then a dense head"
input_shape = [1, 2]
output_shape = [1, 2]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = {exports}
checkpoint = "models/{name}.{ext}"
cpp_weights = "{weights}"
{extra}
layers = [
    {{ type = "{kind}", units = 6 }},
    {{ type = "{kind}", units = 6, num_layers = 3 }},
    {{ type = "dense", units = 2, activation = "linear" }},
]
"""
# gru: 3*6*(2+6) + 36, then 3 x (3*6*(6+6) + 36), then 6*2 + 2; lstm: 4 gates instead of 3.
PARAMS = {"gru": 180 + 3 * 252 + 14, "lstm": 240 + 3 * 336 + 14}


def _entry(kind: str, name: str = "stack", *, ext: str = "pt", weights: str = "json", extra: str = "",
           exports: str = '["rtneural", "onnx"]') -> str:
    return ENTRY.format(name=name, kind=kind, params=PARAMS[kind], ext=ext, weights=weights, extra=extra,
                        exports=exports)


class UserNet(nn.Module):
    """A user's torch model, in the style of RTNeural's python/*_torch.py: its own module names."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        torch.manual_seed(7)
        rnn = nn.GRU if kind == "gru" else nn.LSTM
        self.gru = rnn(2, 6, batch_first=True)
        self.gru2 = rnn(6, 6, num_layers=3, batch_first=True)
        self.dense = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense(self.gru2(self.gru(x)[0])[0])


def _project(tmp_path: Path, kind: str, **entry: str) -> Path:
    return write_registry(tmp_path / "project", text=_entry(kind, **entry))


# ---------------------------------------------------------------- registry and torch


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_params_keys_and_seeded_weights_are_torchs_stacked_module(tmp_path: Path, kind: str) -> None:
    spec = modelreg.load_registry(_project(tmp_path, kind))["stack"]
    assert spec.params == spec.computed_params == PARAMS[kind]  # counted without building
    module = build_module(spec, seed=5)
    assert sum(p.numel() for p in module.parameters()) == PARAMS[kind]
    rnn = nn.GRU if kind == "gru" else nn.LSTM
    with seeded(seed_for("stack", 5)):  # torch's own modules, built in the entry's order
        reference = [rnn(2, 6, batch_first=True), rnn(6, 6, num_layers=3, batch_first=True), nn.Linear(6, 2)]
    expected = {f"layers.{i}.{key}": value for i, m in enumerate(reference) for key, value in m.state_dict().items()}
    assert list(module.state_dict()) == list(expected)
    assert [key for key in expected if key.startswith("layers.1.weight_hh")] == [
        "layers.1.weight_hh_l0", "layers.1.weight_hh_l1", "layers.1.weight_hh_l2"]
    for key, value in module.state_dict().items():
        assert torch.equal(value, expected[key]), key


def test_state_is_one_h_and_c_per_stacked_layer_and_streams_as_the_whole_sequence(tmp_path: Path) -> None:
    spec = modelreg.load_registry(_project(tmp_path, "lstm"))["stack"]
    module = build_module(spec, seed=1).eval()
    assert module.state_layout() == [("h0", 6), ("c0", 6), ("h1.l0", 6), ("h1.l1", 6), ("h1.l2", 6),
                                     ("c1.l0", 6), ("c1.l1", 6), ("c1.l2", 6)]
    frames = torch.randn(3, 12, 2)
    with torch.no_grad():
        whole = module(frames)
        module.reset()
        streamed = torch.stack([module(frames[:, t]) for t in range(12)], dim=1)
        # reset() forgets every stacked layer's state: the stream starts over.
        module.reset()
        again = module(frames[:, 0])
    torch.testing.assert_close(streamed, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(again, whole[:, 0], rtol=0, atol=0)


def test_labels_and_show_name_num_layers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _project(tmp_path, "gru")
    spec = modelreg.load_registry(path)["stack"]
    assert [layer_label(layer, size) for layer, size in zip(spec.layers, (2, 6, 6))] == [
        "gru 2 -> 6", "gru 6 -> 6 num_layers=3", "dense 6 -> 2 linear"]
    code, out, _ = run_cli(["show", "stack", "--registry", str(path)], capsys)
    assert code == 0 and "gru 6 -> 6 num_layers=3" in out


# ---------------------------------------------------------------- a user's own state dict


@pytest.mark.parametrize(("kind", "ext", "names"), [
    ("gru", "pt", '{ "gru" = 0, "gru2" = 1, "dense" = 2 }'),
    ("lstm", "json", '"match"'),
])
def test_a_users_stacked_module_state_dict_loads_as_is(tmp_path: Path, kind: str, ext: str, names: str,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    user = UserNet(kind).eval()
    state = user.state_dict()
    assert "gru2.weight_hh_l2" in state  # torch's names for the third stacked layer
    spec = modelreg.load_registry(_project(tmp_path, kind, ext=ext, extra=f"checkpoint_names = {names}"))["stack"]
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    if ext == "json":  # RTNeural's torch_helpers recipe
        spec.checkpoint.write_text(json.dumps({key: value.tolist() for key, value in state.items()}))
    else:
        torch.save(state, spec.checkpoint)
    with caplog.at_level(logging.INFO, logger="modelreg"):
        module = spec.load()
    if names == '"match"':
        assert "gru2.* -> layers.1.*" in caplog.text
    frames = torch.randn(2, 16, 2)
    with torch.no_grad():
        torch.testing.assert_close(module(frames), user(frames), rtol=0, atol=1e-6)


@pytest.mark.parametrize("depth", [2, 4])
def test_a_checkpoint_of_another_depth_names_the_depth_it_holds(tmp_path: Path, depth: int) -> None:
    spec = modelreg.load_registry(_project(tmp_path, "gru"))["stack"]
    state = build_module(spec, seed=0).state_dict()
    for key in [key for key in state if key.endswith("_l2")]:
        if depth == 2:  # saved from nn.GRU(num_layers=2)
            del state[key]
        else:  # from nn.GRU(num_layers=4)
            state[key.replace("_l2", "_l3")] = state[key].clone()
    spec.checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, spec.checkpoint)
    with pytest.raises(CheckpointError) as info:
        spec.load()
    tensor = ("layers.1.weight_ih_l2: missing tensor (expected shape [18, 6])" if depth == 2
              else "layers.1.weight_ih_l3: unexpected tensor")
    assert tensor in str(info.value)
    assert info.value.hint == (
        f"the checkpoint's layers[1] stacks {depth} layers (its _l0 .. _l{depth - 1} tensors), models.stack.layers[1] "
        f"declares num_layers = 3: declare num_layers = {depth} there if the trained module has {depth} (and the "
        "entry's params with it), or save the checkpoint of a model built as models.stack declares")


# ---------------------------------------------------------------- exports


def test_rtneural_json_holds_the_stack_as_consecutive_layers_and_onnx_its_state(tmp_path: Path) -> None:
    path = _project(tmp_path, "lstm", extra='reset = "rest"')
    init_checkpoint(modelreg.load_registry(path)["stack"], seed=2)
    report = modelreg.export_all(path)
    assert report.ok, [a.message for a in report.artifacts]
    models = path.parent / "models"
    document = json.loads((models / "stack.json").read_text())
    assert [(layer["type"], len(layer["weights"][0])) for layer in document["layers"]] == [
        ("lstm", 2), ("lstm", 6), ("lstm", 6), ("lstm", 6), ("dense", 6)]  # W's rows: the layer's input
    import onnx

    graph = onnx.load(str(models / "onnx" / "stack.onnx")).graph
    assert [i.name for i in graph.input] == ["x", "h0", "c0", "h1.l0", "h1.l1", "h1.l2", "c1.l0", "c1.l1", "c1.l2"]
    checks = modelreg.validate("stack", path, write=False, latency_seconds=0.01)["stack"]
    for name in ("rtneural.parity", "onnx.parity", "onnx.rest", "state.rest"):
        assert checks[name].status == "pass", checks[name]
    # The numpy reference runtime ran the file against torch: a stack read as one layer would not match.
    assert checks["rtneural.parity"].figures["max_abs_error"] < 1e-5


# ---------------------------------------------------------------- RTNeural C++

RESIDUAL = """\
[models.block]
description = "a residual block around a stacked GRU, with a stacked LSTM on the skip path"
input_shape = [1, 3]
output_shape = [1, 2]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = ["rtneural-cpp"]
checkpoint = "models/block.pt"
cpp_weights = "embedded"
layers = [
    {{ type = "residual", layers = [{{ type = "gru", units = 4, num_layers = 2 }}], skip = [{{ type = "lstm", units = 4, num_layers = 2, bias = false }}] }},
    {{ type = "dense", units = 2, activation = "tanh" }},
]
"""
# gru 3*4*(3+4) + 24, 3*4*8 + 24; lstm (no bias) 4*4*(3+4), 4*4*8; dense 4*2 + 2
RESIDUAL_PARAMS = 108 + 120 + 112 + 128 + 10


@needs_rtneural
def test_stacks_match_torch_in_rtneural_cpp_json_embedded_and_residual(tmp_path: Path, cpp: Path) -> None:
    # One registry, three compiled programs: the dynamic loader, a JSON-weights header (resetting to
    # rest) and an embedded-weights header of a residual model with stacks on both paths.
    text = (_entry("gru", exports='["rtneural", "rtneural-cpp"]', extra='reset = "rest"')
            + "\n" + RESIDUAL.format(params=RESIDUAL_PARAMS))
    path = write_registry(tmp_path / "project", text=text)
    for spec in modelreg.load_registry(path).values():
        init_checkpoint(spec, seed=3)
    report = modelreg.export_all(path)
    assert report.ok, [a.message for a in report.artifacts]
    header = (path.parent / "models" / "cpp" / "block.h").read_text()
    assert "GRULayerT<float, 3, 4>,\n" in header and "GRULayerT<float, 4, 4>>" in header
    checks = modelreg.validate(["stack", "block"], path, write=False, latency_seconds=0.01)
    stack, block = checks["stack"], checks["block"]
    for name in ("rtneural.dynamic_parity", "rtneural-cpp.parity", "rtneural-cpp.rest"):
        assert stack[name].status == "pass", stack[name]
    assert stack["rtneural-cpp.parity"].figures["weights"] == "json"
    assert stack["rtneural-cpp.parity"].figures["max_abs_error"] < 1e-5
    assert block["rtneural-cpp.parity"].status == "pass", block["rtneural-cpp.parity"]
    assert block["rtneural-cpp.parity"].figures["weights"] == "embedded"
    assert block["rtneural-cpp.parity"].figures["max_abs_error"] < 1e-5
