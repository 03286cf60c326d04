"""Strided conv1d (issue 19, section 3): ``{ type = "conv1d", ..., stride = s }``, RTNeural's StridedConv1D.

Frame t is computed when t % s == 0 (counting from the reset), every other frame repeats it while
the past input frames keep advancing. Established against RTNeural's own C++ (one small program,
compiled once: dynamic StridedConv1D and compile-time StridedConv1DT, loaded with
torch_helpers::loadConv1D from a PyTorch state dict), then: torch (streaming equals the sequence
equals nn.Conv1d(stride) on the left-padded input, each output repeated), the numpy reference
layer, registry, refusals (RTNeural JSON, the JSON weight form, NAM), ONNX and the rtneural-cpp header.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modelreg import load_registry
from modelreg.builder import build_module
from modelreg.errors import ExportError
from modelreg.layers import activations, get_kind
from modelreg.layers.conv1d import Conv1DLayer

from conftest import RTNEURAL, needs_rtneural

KIND = get_kind("conv1d")
# (in, out, kernel_size, dilation, stride, groups): the configurations the C++ program is compiled for.
CONFIGS = {"A": (2, 3, 3, 2, 3, 1), "B": (4, 2, 2, 1, 2, 2), "C": (3, 2, 1, 1, 4, 1)}


def _layer(config: str, activation: str = "linear") -> tuple[Any, torch.nn.Module, int]:
    inputs, units, kernel_size, dilation, stride, groups = CONFIGS[config]
    spec = KIND.spec({"units": units, "kernel_size": kernel_size, "dilation": dilation, "stride": stride,
                      "groups": groups, "activation": activation}, inputs)
    torch.manual_seed(sum(map(ord, config)))
    return spec, KIND.build(spec, inputs), inputs


def _zeros(spec: Any, batch: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros(1, batch, size) for _, size in KIND.state(spec))


def _stream(spec: Any, module: torch.nn.Module, x: torch.Tensor, reset_at: int = -1) -> torch.Tensor:
    """One frame per call, state carried, zeroed at frame ``reset_at`` (as a host's reset())."""
    state, outputs = _zeros(spec, x.shape[0]), []
    for t in range(x.shape[1]):
        if t == reset_at:
            state = _zeros(spec, x.shape[0])
        y, state = KIND.forward(module, spec, x[:, t:t + 1], state)
        outputs.append(y)
    return torch.cat(outputs, dim=1)


# ---------------------------------------------------------------- torch and numpy


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_sequence_equals_streaming_and_strided_nn_conv1d(config: str) -> None:
    spec, module, inputs = _layer(config, "tanh")
    x = torch.randn(2, 17, inputs)
    with torch.no_grad():
        whole, state = KIND.forward(module, spec, x, _zeros(spec, 2))
        chunks, carried = [], _zeros(spec, 2)
        for a, b in ((0, 5), (5, 6), (6, 13), (13, 17)):  # chunks at every phase
            y, carried = KIND.forward(module, spec, x[:, a:b], carried)
            chunks.append(y)
        # Equal up to float32 rounding, not bit for bit: torch picks its conv algorithm by input
        # length and thread count (kernel size 1 with one thread: a 17-frame call and a 1-frame call
        # round differently), and the held outputs and state are those same values.
        torch.testing.assert_close(_stream(spec, module, x), whole, rtol=0, atol=1e-6)
        torch.testing.assert_close(torch.cat(chunks, 1), whole, rtol=0, atol=1e-6)
        for final, chunked in zip(state, carried):
            torch.testing.assert_close(chunked, final, rtol=0, atol=1e-6)
        # Offline: torch's strided nn.Conv1d (the built module) on the causally padded input, each output held.
        _, _, kernel_size, dilation, stride, _ = CONFIGS[config]
        padded = torch.nn.functional.pad(x.transpose(1, 2), ((kernel_size - 1) * dilation, 0))
        offline = module(padded).transpose(1, 2).repeat_interleave(stride, dim=1)[:, :17]
        assert torch.allclose(whole, torch.tanh(offline), atol=1e-6)
    assert module.stride == (stride,)  # what the user's nn.Conv1d says


def test_state_is_buffer_held_output_and_phase() -> None:
    spec, module, inputs = _layer("A")
    assert KIND.state(spec) == (("buf", 4 * 2), ("held", 3), ("phase", 1))
    assert KIND.state(_layer("C")[0]) == (("held", 2), ("phase", 1))  # kernel_size 1: no buffer
    with torch.no_grad():
        _, state = KIND.forward(module, spec, torch.randn(1, 7, inputs), _zeros(spec, 1))
    assert float(state[-1]) == 7 % 3


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_numpy_reference_layer_matches_torch(config: str) -> None:
    spec, module, inputs = _layer(config)
    _, _, _, dilation, stride, groups = CONFIGS[config]
    bias = module.bias.detach().numpy()
    layer = Conv1DLayer(module.weight.detach().numpy().transpose(2, 1, 0), bias, dilation, groups, stride)
    x = torch.randn(3, 14, inputs)
    layer.reset(3)
    frames = []
    for t in range(14):
        if t == 9:
            layer.reset(3)
        frames.append(layer.forward(x[:, t].numpy()))
    with torch.no_grad():
        expected = _stream(spec, module, x, reset_at=9).numpy()
    assert np.abs(np.stack(frames, 1) - expected).max() < 1e-6


# ---------------------------------------------------------------- RTNeural's own C++

_FACTS = r'''
// Streams RTNeural's StridedConv1D (dynamic) and StridedConv1DT (compile-time), both loaded with
// torch_helpers::loadConv1D from a PyTorch state dict; reset() of both at frame reset_at.
#include <RTNeural/RTNeural.h>
#include <iostream>
#include <memory>

template <int IN, int OUT, int K, int D, int S, int G>
nlohmann::json run(const nlohmann::json& doc)
{
    const auto& x = doc.at("x");
    const long reset_at = doc.value("reset_at", -1L);
    RTNeural::StridedConv1D<float> dyn(IN, OUT, K, D, S, G);
    RTNeural::torch_helpers::loadConv1D<float>(doc, "", dyn);
    dyn.reset();
    auto stat = std::make_unique<RTNeural::StridedConv1DT<float, IN, OUT, K, D, S, G>>();
    RTNeural::torch_helpers::loadConv1D<float>(doc, "", *stat);
    stat->reset();
    nlohmann::json out_dyn = nlohmann::json::array(), out_stat = nlohmann::json::array();
    for(long t = 0; t < (long)x.size(); ++t)
    {
        if(t == reset_at)
        {
            dyn.reset();
            stat->reset();
        }
        alignas(RTNEURAL_DEFAULT_ALIGNMENT) float in[IN];
        alignas(RTNEURAL_DEFAULT_ALIGNMENT) float ins[IN];
        for(int i = 0; i < IN; ++i)
            in[i] = ins[i] = x[t][i].get<float>();
        alignas(RTNEURAL_DEFAULT_ALIGNMENT) float h[OUT];
        dyn.forward(in, h);
        stat->forward(ins);
        out_dyn.push_back(std::vector<float>(h, h + OUT));
        out_stat.push_back(std::vector<float>(std::begin(stat->outs), std::begin(stat->outs) + OUT));
    }
    return { { "dynamic", out_dyn }, { "static", out_stat } };
}

// RTNeural's "ConvTranspose1D": torch_helpers::loadConvTranspose1D into a plain Conv1DT, fed the
// frames as given (its own test zero-stuffs the input for a stride: the host's work, not a layer's).
template <int IN, int OUT, int K, int D>
nlohmann::json transposed(const nlohmann::json& doc)
{
    const auto& x = doc.at("x");
    auto conv = std::make_unique<RTNeural::Conv1DT<float, IN, OUT, K, D, 1>>();
    RTNeural::torch_helpers::loadConvTranspose1D<float>(doc, "", *conv);
    conv->reset();
    nlohmann::json out = nlohmann::json::array();
    for(const auto& frame : x)
    {
        alignas(RTNEURAL_DEFAULT_ALIGNMENT) float ins[IN];
        for(int i = 0; i < IN; ++i)
            ins[i] = frame[i].get<float>();
        conv->forward(ins);
        out.push_back(std::vector<float>(std::begin(conv->outs), std::begin(conv->outs) + OUT));
    }
    return { { "static", out } };
}

int main()
{
    nlohmann::json doc;
    std::cin >> doc;
    const auto config = doc.at("config").get<std::string>();
    nlohmann::json result;
    if(config == "T") result = transposed<2, 3, 3, 2>(doc);
    else if(config == "A") result = run<2, 3, 3, 2, 3, 1>(doc);
    else if(config == "B") result = run<4, 2, 2, 1, 2, 2>(doc);
    else if(config == "C") result = run<3, 2, 1, 1, 4, 1>(doc);
    else return 1;
    std::cout << result.dump() << "\n";
    return 0;
}
'''


@pytest.fixture(scope="module")
def facts_program(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The program above, compiled once (STL backend) into the session's cache."""
    if not (RTNEURAL / "RTNeural" / "conv1d" / "strided_conv1d.h").is_file():
        pytest.skip(f"RTNeural C++ headers not found at {RTNEURAL}: set MODELREG_RTNEURAL to a checkout")
    from modelreg.native import find_compiler

    found = find_compiler()
    if found is None:
        pytest.skip("no C++ compiler on PATH (set CXX)")
    argv, _ = found
    base = tmp_path_factory.getbasetemp()
    folder = base / "strided-facts"
    folder.mkdir(exist_ok=True)
    binary = folder / f"facts-{hashlib.sha256(_FACTS.encode()).hexdigest()[:16]}"
    if not binary.is_file():
        source = folder / "facts.cpp"
        source.write_text(_FACTS, encoding="utf-8")
        subprocess.run([*argv, "-std=c++17", "-O2", "-DRTNEURAL_DEFAULT_ALIGNMENT=16", f"-I{RTNEURAL}",
                        str(source), "-o", str(binary)], check=True, capture_output=True, text=True)
    return binary


def _cpp(binary: Path, config: str, module: torch.nn.Module, x: np.ndarray, reset_at: int) -> dict[str, np.ndarray]:
    doc = {"config": config, "weight": module.weight.detach().numpy().tolist(),
           "bias": module.bias.detach().numpy().tolist(), "x": x.tolist(), "reset_at": reset_at}
    done = subprocess.run([str(binary)], input=json.dumps(doc), capture_output=True, text=True, check=True)
    return {key: np.asarray(value, np.float32) for key, value in json.loads(done.stdout).items()}


@needs_rtneural
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_rtneurals_strided_conv1d_is_what_torch_and_numpy_compute(facts_program: Path, config: str) -> None:
    spec, module, inputs = _layer(config)
    x = torch.randn(1, 20, inputs)
    ran = _cpp(facts_program, config, module, x[0].numpy(), reset_at=-1)
    with torch.no_grad():
        expected = KIND.forward(module, spec, x, _zeros(spec, 1))[0][0].numpy()
    assert np.abs(ran["dynamic"] - expected).max() < 1e-5
    assert np.abs(ran["static"] - expected).max() < 1e-5


@needs_rtneural
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_reset_restarts_the_dynamic_layer_but_not_the_compile_time_counter(facts_program: Path, config: str) -> None:
    # A fact of RTNeural (commit 1fb1f07): StridedConv1D::reset() zeroes its counter and held output;
    # StridedConv1DT::reset() resets the convolution only, so a reset mid-period keeps the phase (and
    # the held output). The rtneural-cpp header's Model::reset() makes up for it (test below).
    spec, module, inputs = _layer(config)
    x = torch.randn(1, 20, inputs)
    ran = _cpp(facts_program, config, module, x[0].numpy(), reset_at=7)
    with torch.no_grad():
        restarted = _stream(spec, module, x, reset_at=7)[0].numpy()
        # The compile-time layer: the buffer zeroed at frame 7, phase and held output kept.
        state, frames = _zeros(spec, 1), []
        for t in range(20):
            if t == 7:
                state = (*_zeros(spec, 1)[:-2], *state[-2:]) if len(state) == 3 else state
            y, state = KIND.forward(module, spec, x[:, t:t + 1], state)
            frames.append(y[0, 0].numpy())
    assert np.abs(ran["dynamic"] - restarted).max() < 1e-5
    assert np.abs(ran["static"] - np.stack(frames)).max() < 1e-5
    assert np.abs(ran["static"] - restarted).max() > 1e-3  # 7 % stride != 0 for every configuration


@needs_rtneural
@pytest.mark.parametrize("stride", [1, 3])
def test_rtneurals_conv_transpose1d_is_a_conv1d_fed_a_zero_stuffed_stream(facts_program: Path, stride: int) -> None:
    # Why conv_transpose1d is no registry kind (docs/decisions.md): RTNeural has no such layer.
    # loadConvTranspose1D sets nn.ConvTranspose1d's weights on a plain Conv1D; at stride 1 that is a
    # causal conv1d (torch's output, its first frames); at stride s the host inserts s - 1 zero frames
    # after each input frame, so one input frame makes s output frames: a change of frame rate that
    # a one-frame-in, one-frame-out layer of a model cannot be.
    torch.manual_seed(7)
    conv = torch.nn.ConvTranspose1d(2, 3, 3, dilation=2, stride=stride)
    x = torch.randn(1, 2, 8)
    stuffed = torch.zeros(1, 2, 8 * stride)
    stuffed[:, :, ::stride] = x
    doc = {"config": "T", "weight": conv.weight.detach().numpy().tolist(),
           "bias": conv.bias.detach().numpy().tolist(), "x": stuffed[0].T.numpy().tolist()}
    done = subprocess.run([str(facts_program)], input=json.dumps(doc), capture_output=True, text=True, check=True)
    ran = np.asarray(json.loads(done.stdout)["static"], np.float32)
    with torch.no_grad():
        expected = conv(x)[0].T.numpy()[:8 * stride - (stride - 1)]
    assert np.abs(ran[:len(expected)] - expected).max() < 1e-5


# ---------------------------------------------------------------- registry and exports

REGISTRY = """\
[models.strided]
description = "a strided conv1d front end"
input_shape = [1, 2]
output_shape = [1, 2]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = {exports}
cpp_weights = "{weights}"
checkpoint = "models/strided.pt"
layers = [
    {{ type = "conv1d", units = 4, kernel_size = 3, dilation = 2, stride = 3, activation = "tanh" }},
    {{ type = "residual", layers = [
        {{ type = "conv1d", units = 4, kernel_size = 2, stride = 2, groups = 2 }},
    ] }},
    {{ type = "gru", units = 3 }},
    {{ type = "dense", units = 2, activation = "linear" }},
]
"""
# conv 4*2*3+4 = 28; grouped conv 4*2*2+4 = 20; gru 3*(3*4+3*3+6) = 81; dense 3*2+2 = 8
PARAMS = 28 + 20 + 81 + 8


def _spec(tmp_path: Path, exports: str = '["rtneural-cpp"]', weights: str = "embedded", straight: bool = False) -> Any:
    path = tmp_path / "registry.toml"
    text = REGISTRY.format(params=PARAMS, exports=exports, weights=weights)
    if straight:  # without the residual block (whose own refusals come first)
        start = text.index("    { type = \"residual\"")
        text = text[:start] + text[text.index("    { type = \"gru\""):]
        text = text.replace(f"params = {PARAMS}", f"params = {PARAMS - 20}")
    path.write_text(text, encoding="utf-8")
    registry = load_registry(path)
    assert not registry.invalid, registry.invalid
    return registry["strided"]


def test_registry_params_keys_seeded_init_and_labels(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _spec(tmp_path)
    module = build_module(spec, seed=3)
    assert sum(p.numel() for p in module.parameters()) == PARAMS  # the stride changes no weight
    assert {k: tuple(v.shape) for k, v in module.state_dict().items() if k.startswith("layers.0.")} == {
        "layers.0.weight": (4, 2, 3), "layers.0.bias": (4,)}
    # Seeded draws are nn.Conv1d's, whatever the stride: the same entry without strides draws the same weights.
    unstrided = tmp_path / "plain"
    unstrided.mkdir()
    (unstrided / "registry.toml").write_text((tmp_path / "registry.toml").read_text().replace(", stride = 3", "")
                                             .replace(", stride = 2", ""), encoding="utf-8")
    plain = build_module(load_registry(unstrided / "registry.toml")["strided"], seed=3)
    for (key, value), (plain_key, plain_value) in zip(module.state_dict().items(), plain.state_dict().items()):
        assert key == plain_key and torch.equal(value, plain_value), key
    from modelreg.spec import layer_label

    assert layer_label(spec.layers[0], 2) == "conv1d 2 -> 4 tanh, kernel_size=3, dilation=2, groups=1, stride=3"
    from conftest import run_cli

    code, out, _ = run_cli(["show", "--registry", str(tmp_path / "registry.toml"), "strided"], capsys)
    assert code == 0 and "stride=3" in out and "stride=2" in out


def test_stride_one_is_the_plain_conv1d() -> None:
    plain = KIND.spec({"units": 3, "kernel_size": 2}, 2)
    assert KIND.spec({"units": 3, "kernel_size": 2, "stride": 1}, 2) == plain
    assert KIND.cpp_types(plain, 2) == ["RTNeural::Conv1DT<float, 2, 3, 2, 1, 1>"]


def test_rtneural_json_refuses_naming_rtneural_cpp(tmp_path: Path) -> None:
    from modelreg.rtneural.exporter import RTNeuralExporter

    spec = _spec(tmp_path, exports='["onnx", "rtneural"]', straight=True)
    module = build_module(spec, seed=0)
    with pytest.raises(ExportError) as caught:
        RTNeuralExporter().export(spec, module, tmp_path / "strided.json")
    problem = caught.value.problems[0]
    assert problem.key == "models.strided.exports[1]" and problem.expected == '"rtneural-cpp" instead of "rtneural"'
    assert "express layers[0]:" in problem.reason and "no strided conv1d" in problem.reason
    # The writer itself refuses too (API users): the file would load in RTNeural as an unstrided conv1d.
    from modelreg.errors import UsageError
    from modelreg.rtneural.format import to_rtneural

    state = {key: value.detach().numpy() for key, value in module.state_dict().items()}
    with pytest.raises(UsageError, match="layers\\[0\\] cannot be written"):
        to_rtneural(list(spec.layers), 2, state)


def test_the_json_weight_form_reads_the_state_dict_json_and_nam_refuses(tmp_path: Path) -> None:
    # RTNeural JSON holds no stride: a header with cpp_weights = "json" reads the state-dict JSON
    # (rtneural-torch's file) with torch_helpers' loadConv1D, which loads a StridedConv1DT too.
    from modelreg.rtneural.header import RTNeuralCppExporter, weights_form

    spec = _spec(tmp_path, weights="json", straight=True)
    assert weights_form(spec) == "torch"
    path = tmp_path / "strided.h"
    RTNeuralCppExporter().export(spec, build_module(spec, seed=0), path)
    text = path.read_text()
    assert "RTNeural::StridedConv1DT<float, 2, 4, 3, 2, 3, 1>" in text and "loadConv1D" in text
    assert RTNeuralCppExporter().check_artifact(spec, path) == []
    from modelreg.nam.format import architecture_of

    nam = tmp_path / "nam.toml"
    nam.write_text(textwrap.dedent("""\
        [models.n]
        description = "n"
        checkpoint = "n.pt"
        input_shape = [1, 1]
        output_shape = [1, 1]
        dtype = "float32"
        params = 9
        latency_ms = 5.0
        exports = []
        layers = [
            { type = "conv1d", units = 2, kernel_size = 2, stride = 2, activation = "tanh" },
            { type = "dense", units = 1, activation = "linear" },
        ]
        """), encoding="utf-8")
    with pytest.raises(ExportError, match="no stride"):
        architecture_of(load_registry(nam)["n"])


@needs_rtneural
def test_the_json_weight_form_matches_torch_in_cpp(tmp_path: Path, cpp: Path) -> None:
    from kind_tools import widened
    from modelreg.rtneural.header import RTNeuralCppExporter

    spec = _spec(tmp_path, weights="json")  # the residual block's strided grouped conv too
    module = widened(spec, seed=4)
    path = tmp_path / "strided.h"
    exporter = RTNeuralCppExporter()
    exporter.export(spec, module, path)
    result = exporter.verify(spec, module, path, 1e-5)
    assert not result.skipped and result.ok, result.to_figures()


def test_onnx_with_explicit_state_matches_torch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from kind_tools import assert_onnx_runs_at_batch, widened
    from modelreg.onnx.exporter import ONNXExporter

    spec = _spec(tmp_path, exports='["onnx"]')
    module = widened(spec, seed=2)
    path = tmp_path / "strided.onnx"
    exporter = ONNXExporter()
    exporter.export(spec, module, path)
    assert exporter.check_artifact(spec, path) == []
    result = exporter.verify(spec, module, path, 1e-5)
    assert result.ok, result.to_figures()
    assert_onnx_runs_at_batch(spec, module, tmp_path, batch=3)
    import onnx

    names = [i.name for i in onnx.load(str(path)).graph.input]
    assert names == ["x", "buf0", "held0", "phase0", "buf1.layers.0", "held1.layers.0", "phase1.layers.0", "h2"]


def test_the_header_declares_strided_conv1dt_and_a_phase_reset(tmp_path: Path) -> None:
    from modelreg.rtneural.header import RTNeuralCppExporter, render_header, weight_arrays

    spec = _spec(tmp_path)
    module = build_module(spec, seed=0)
    text = render_header(spec, weight_arrays(spec, module))
    assert "RTNeural::StridedConv1DT<float, 2, 4, 3, 2, 3, 1>" in text
    assert "RTNeural::StridedConv1DT<float, 4, 4, 2, 1, 2, 2>" in text
    assert "struct Model : Net" in text and "kStridePeriod = 6;" in text
    path = tmp_path / "strided.h"
    RTNeuralCppExporter().export(spec, module, path)
    assert RTNeuralCppExporter().check_artifact(spec, path) == []


def test_the_resting_state_is_compared_every_period_and_restarts_the_strides(tmp_path: Path) -> None:
    # The frame counter cycles forever on a constant input; the rest of the state settles. The resting
    # state is taken at the start of a period (phase 0: every strided layer computes on the next frame).
    spec = _spec(tmp_path)
    module = build_module(spec, seed=1)
    assert module.frame_period == 6
    resting = module.resting_state()
    assert resting.converged, resting.verdict
    assert resting.frames % 6 == 0 and resting.float32_frames % 6 == 0
    phases = {name: float(values[0]) for name, values in resting.state.items() if name.startswith("phase")}
    assert phases == {"phase0": 0.0, "phase1.layers.0": 0.0}


@needs_rtneural
def test_header_matches_torch_over_streams_and_both_resets(tmp_path: Path, cpp: Path) -> None:
    # One header (one compile): parity over the stream, each input case from its own reset; then a
    # stream cut mid-period (7 frames: 7 % 6 != 0) and reset, to zeros (RTNeural's reset(), through
    # the header's Model) and to rest (the entry's reset = "rest": its warm-up ends at phase 0).
    from modelreg.checkpoint import init_checkpoint
    from modelreg.rtneural import cpp as rc
    from modelreg.rtneural.header import RTNeuralCppExporter, cpp_namespace

    path = tmp_path / "registry.toml"
    path.write_text(REGISTRY.format(params=PARAMS, exports='["rtneural-cpp"]', weights="embedded")
                    .replace('cpp_weights = "embedded"', 'cpp_weights = "embedded"\nreset = "rest"\nrest_input = 0.5'),
                    encoding="utf-8")
    spec = load_registry(path)["strided"]
    init_checkpoint(spec, seed=5)
    module = spec.load()
    with torch.no_grad():  # default init is small; widen weights so activations leave their linear region
        for parameter in module.parameters():
            parameter.mul_(2.0)
    header = tmp_path / "strided.h"
    exporter = RTNeuralCppExporter()
    exporter.export(spec, module, header)
    text = header.read_text()
    warmup = int(text.split("kRestFrames = ")[1].split(";")[0])
    assert warmup % 6 == 0 and warmup >= module.resting_state().float32_frames
    result = exporter.verify(spec, module, header, 1e-5)
    assert not result.skipped and result.ok, result.to_figures()
    rng = np.random.default_rng(0)
    first, second = (rng.standard_normal((n, 2)).astype(np.float32) for n in (7, 11))
    expected = {}
    for mode, to in (("zero", "zeros"), ("default", "rest")):
        module.reset(to=to)
        with torch.no_grad():
            expected[mode] = module(torch.from_numpy(second)[None])[0].numpy()
    assert np.abs(expected["zero"] - expected["default"]).max() > 1e-3  # the two resets differ
    with rc.header_runner(rc.find_toolchain(), header, cpp_namespace(spec), spec.name, embedded=True) as runner:
        loaded = runner.load(None)
        for mode in ("zero", "default", "zero"):
            runner.run(loaded, first, reset=mode)
            ran = runner.run(loaded, second, reset=mode)
            assert np.abs(ran - expected[mode]).max() < 1e-5, mode
