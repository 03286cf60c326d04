"""The ``wavenet`` layer kind (issue 20, section 1: NAM's WaveNet) and its ``.nam`` files.

The kind: registry keys, parameters without building, checkpoint keys (NAM's trainer's module
names), label, seeded builds, streaming equal to the sequence forward, ONNX with explicit state,
the RTNeural exporters' refusal. The NAM file: config and weight order both ways
(modelreg/nam/wavenet.py), the newer config forms read and the variants refused. In NAM's engine
(``needs_nam``): a WaveNet of NAM's "standard" size with seeded weights exports, loads and matches
torch over 4,096 samples; corrupted files (weights shifted by one, heads out of order) fail.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import torch

import modelreg
from modelreg.builder import build_module
from modelreg.checkpoint import init_checkpoint
from modelreg.errors import ExportError, UsageError
from modelreg.exporting import export_all
from modelreg.latency import measuring_for, single_thread
from modelreg.layers import get_kind
from modelreg.nam import wavenet as namwave
from modelreg.nam.exporter import NAMExporter, latency_check
from modelreg.nam.format import expected_weight_count
from modelreg.onnx.exporter import ONNXExporter
from modelreg.plugins import register_exporter, unregister_exporter
from modelreg.spec import layer_label

from conftest import write_registry
from kind_tools import spec_of, widened
from test_nam import needs_nam, nam_core  # noqa: F401  (the fixture, shared)

KIND = get_kind("wavenet")
DILATIONS = [2 ** i for i in range(10)]  # 1 .. 512, as NAM's standard
#: NAM's trainer's "standard" WaveNet (nam/train/core.py, get_wavenet_config), in registry keys.
STANDARD = {"type": "wavenet", "head_scale": 0.02, "layer_arrays": [
    {"input_size": 1, "condition_size": 1, "channels": 16, "head_size": 8, "kernel_size": 3,
     "dilations": DILATIONS, "activation": "tanh", "gated": False, "head_bias": False},
    {"input_size": 16, "condition_size": 1, "channels": 8, "head_size": 1, "kernel_size": 3,
     "dilations": DILATIONS, "activation": "tanh", "gated": False, "head_bias": True},
]}
#: A small one that uses every key: gated, relu and sigmoid, two inputs and two outputs.
SMALL = {"type": "wavenet", "head_scale": 0.7, "layer_arrays": [
    {"channels": 3, "head_size": 4, "kernel_size": 2, "dilations": [1, 3], "activation": "relu", "gated": True,
     "head_bias": True},
    {"channels": 4, "head_size": 2, "kernel_size": 3, "dilations": [2, 1, 5], "activation": "sigmoid"},
]}

STANDARD_ENTRY = """\
[models.wave]
description = "NAM's standard WaveNet: two layer arrays (16 and 8 channels), kernel 3, dilations 1 to 512."
input_shape = [1, 1]
output_shape = [1, 1]
dtype = "float32"
params = 13801
sample_rate = 48000
block_size = 64
exports = ["nam"]
checkpoint = "models/wave.pt"
layers = [
    { type = "wavenet", head_scale = 0.02, layer_arrays = [
        { input_size = 1, condition_size = 1, channels = 16, head_size = 8, kernel_size = 3, dilations = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], activation = "tanh", gated = false, head_bias = false },
        { input_size = 16, condition_size = 1, channels = 8, head_size = 1, kernel_size = 3, dilations = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512], activation = "tanh", gated = false, head_bias = true },
    ] },
]
"""


def _spec(tmp_path: Path, table: dict[str, Any], in_features: int, name: str = "wave") -> modelreg.ModelSpec:
    layer = KIND.spec(table, in_features)
    return attrs.evolve(spec_of(tmp_path, in_features, [layer], name=name), sample_rate=48000.0, block_size=64)


# ---------------------------------------------------------------- the kind


def test_standard_size_counts_nams_weights_without_building_and_names_modules_as_nams_trainer() -> None:
    layer = KIND.spec(STANDARD, 1)
    assert KIND.problems(layer, 1) == []
    # NAM's standard WaveNet file holds 13,802 weights: these parameters and head_scale.
    assert KIND.params(layer, 1) == 13801 and namwave.weight_count(layer) == 13802
    assert KIND.state(layer) == (("buf", (16 + 8) * 2 * 1023),)  # each dilated conv's (3 - 1) * d past frames
    module = KIND.build(layer, 1)
    assert sum(p.numel() for p in module.parameters()) == 13801
    keys = list(module.state_dict())
    assert keys[:6] == ["_layer_arrays.0._rechannel.weight", "_layer_arrays.0._layers.0._conv.weight",
                        "_layer_arrays.0._layers.0._conv.bias", "_layer_arrays.0._layers.0._input_mixer.weight",
                        "_layer_arrays.0._layers.0._layer1x1.weight", "_layer_arrays.0._layers.0._layer1x1.bias"]
    assert "_layer_arrays.0._head_rechannel.bias" not in keys and "_layer_arrays.1._head_rechannel.bias" in keys
    assert [key for key, _ in namwave.tensor_shapes(layer)] == keys  # the engine's order is the module order
    assert layer_label(layer, 1) == (
        "wavenet 1 -> 1 2 layer arrays: 16 channels, kernel 3, dilations 1..512 (10), tanh, head 8; "
        "8 channels, kernel 3, dilations 1..512 (10), tanh, head 1 with bias; head_scale=0.02")


def test_defaults_are_filled_in_and_a_later_array_is_fed_the_previous_channels() -> None:
    layer = KIND.spec({"layer_arrays": [{"channels": 4, "head_size": 2, "kernel_size": 2, "dilations": [1]},
                                        {"channels": 2, "head_size": 1, "kernel_size": 2, "dilations": [1]}]}, 3)
    first, second = layer.option("layer_arrays")
    assert (first.input_size, first.condition_size, second.input_size, second.condition_size) == (3, 3, 4, 3)
    assert (first.activation, first.gated, first.head_bias, layer.option("head_scale")) == ("tanh", False, False, 1.0)
    assert layer.units == 1 and KIND.problems(layer, 3) == []


def test_seeded_builds_are_reproducible(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SMALL, 2)
    one, two, other = build_module(spec, seed=7), build_module(spec, seed=7), build_module(spec, seed=8)
    for (key, a), b, c in zip(one.state_dict().items(), two.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b), key
    assert any(not torch.equal(a, c) for a, c in zip(one.state_dict().values(), other.state_dict().values()))


@pytest.mark.parametrize("table", [SMALL, STANDARD], ids=["small", "standard"])
def test_streaming_one_sample_per_call_equals_the_sequence_forward(tmp_path: Path, table: dict[str, Any]) -> None:
    spec = _spec(tmp_path, table, 2 if table is SMALL else 1)
    module = widened(spec, seed=3) if table is SMALL else build_module(spec, seed=3)
    frames = 32 if table is SMALL else 12
    x = torch.randn(2, frames, spec.in_features, generator=torch.Generator().manual_seed(1))
    # One thread: frame-by-frame calls of small convs are many times slower on torch's pool.
    with single_thread(), torch.inference_mode():
        whole, whole_state = module.step(x, module.initial_state(2))
        state = module.initial_state(2)
        steps = []
        for t in range(frames):
            y, state = module.step(x[:, t:t + 1], state)
            steps.append(y)
    torch.testing.assert_close(torch.cat(steps, dim=1), whole, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(state[0][0], whole_state[0][0], rtol=1e-5, atol=1e-6)
    # The state carries: a second half streamed after the first is the whole sequence's second half.
    with single_thread(), torch.inference_mode():
        first, mid = module.step(x[:, :frames // 2], module.initial_state(2))
        second, _ = module.step(x[:, frames // 2:], mid)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=1e-5, atol=1e-6)


def test_the_sequence_forward_is_fast_enough_for_parity_over_4096_samples(tmp_path: Path) -> None:
    spec = _spec(tmp_path, STANDARD, 1)
    module = build_module(spec, seed=0)
    x = torch.randn(3, 4096, 1)
    started = time.perf_counter()
    with single_thread(), torch.inference_mode():
        y, _ = module.step(x, module.initial_state(3))
    assert y.shape == (3, 4096, 1) and time.perf_counter() - started < 20  # ~0.3 s on this machine, loaded


def test_onnx_exports_it_with_explicit_state_and_matches_torch(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SMALL, 2, name="wonnx")
    module = widened(spec, seed=4)
    exporter = ONNXExporter()
    path = tmp_path / "wonnx.onnx"
    exporter.export(spec, module, path)
    assert exporter.check_artifact(spec, path) == []
    parity = exporter.verify(spec, module, path, 1e-5)
    assert parity.ok and "stream_64" in parity.cases, parity.summary
    import onnx

    inputs = [i.name for i in onnx.load(str(path)).graph.input]
    assert len(inputs) == 2 and inputs[1].startswith("buf0")  # the conv buffers as explicit state


@pytest.mark.parametrize("exporter", ["rtneural", "rtneural-cpp"])
def test_the_rtneural_exporters_refuse_it_naming_what_can_hold_it(tmp_path: Path, exporter: str) -> None:
    from modelreg.rtneural.exporter import RTNeuralExporter
    from modelreg.rtneural.header import RTNeuralCppExporter

    spec = attrs.evolve(_spec(tmp_path, SMALL, 2), exports=(exporter,))
    module = build_module(spec, seed=0)
    writer = RTNeuralExporter() if exporter == "rtneural" else RTNeuralCppExporter()
    with pytest.raises(ExportError) as caught:
        writer.export(spec, module, tmp_path / "out")
    problem = caught.value.problems[0]
    assert problem.key == "models.wave.exports[0]" and f"the {exporter} exporter cannot write layers[0] (wavenet)" \
        in problem.reason
    assert "export the entry with nam (NAM's own .nam file) or onnx" in problem.reason
    assert problem.expected == f'"nam" or "onnx" instead of "{exporter}"'


def test_the_numpy_reference_runtime_does_not_apply() -> None:
    with pytest.raises(UsageError, match="RTNeural has no WaveNet layer"):
        KIND.runtime_layers({}, lambda j: None, 1)


# ---------------------------------------------------------------- the .nam layout, both ways


def test_config_and_weights_go_to_the_file_and_back(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SMALL, 2)
    module = widened(spec, seed=2)
    layer = spec.layers[0]
    state = {key: value.numpy() for key, value in module.state_dict().items()}
    flat = namwave.flat_weights(layer, state, "layers.0.")
    assert flat.dtype == np.float32 and flat.size == namwave.weight_count(layer) == KIND.params(layer, 2) + 1
    assert flat[-1] == np.float32(0.7)  # head_scale last: the engine reads the scale from here
    assert flat[:6].tolist() == state["layers.0._layer_arrays.0._rechannel.weight"].reshape(-1).tolist()
    tensors, scale = namwave.named_tensors(layer, flat, "layers.0.")
    assert scale == pytest.approx(0.7) and tensors.keys() == state.keys()
    assert all(np.array_equal(tensors[key], state[key]) for key in state)
    config = namwave.config_of(layer)
    assert config["layers"][0] == {"input_size": 2, "condition_size": 2, "head_size": 4, "channels": 3,
                                   "kernel_size": 2, "dilations": [1, 3], "activation": "ReLU", "gated": True,
                                   "head_bias": True}
    assert KIND.spec(namwave.table_from_config(config, 2), 2) == layer
    assert expected_weight_count("WaveNet", {**config, "in_channels": 2}) == flat.size
    with pytest.raises(UsageError, match="weight count"):
        namwave.named_tensors(layer, flat[:-1])


def test_the_newer_config_forms_of_the_same_network_are_read() -> None:
    """What NAM's trainer writes today (nam/models/wavenet/_layer_array.py export_config)."""
    newer = {"head_scale": 0.02, "head": None, "layers": [
        {"input_size": 1, "condition_size": 1, "channels": 16, "head": {"out_channels": 8, "kernel_size": 1,
                                                                        "bias": False},
         "kernel_sizes": [3] * 10, "dilations": DILATIONS, "activation": [{"type": "Tanh"}] * 10, "bottleneck": 16,
         "head1x1": {"active": False, "out_channels": 16, "groups": 1}, "layer1x1": {"active": True, "groups": 1},
         "groups_input": 1, "groups_input_mixin": 1, "conv_pre_film": {"active": False, "shift": True, "groups": 1},
         "gating_mode": ["none"] * 10, "secondary_activation": [None] * 10, "slimmable": None},
        {"input_size": 16, "condition_size": 1, "channels": 8, "head": {"out_channels": 1, "kernel_size": 1,
                                                                        "bias": True},
         "kernel_size": 3, "dilations": DILATIONS, "activation": "Tanh", "gated": False},
    ]}
    assert KIND.spec(namwave.table_from_config(newer), 1) == KIND.spec(STANDARD, 1)


@pytest.mark.parametrize(("edit", "key", "feature"), [
    (lambda c: c.update(condition_dsp={"architecture": "Linear"}), "config.condition_dsp", "a condition DSP"),
    (lambda c: c.update(head={"channels": 4}), "config.head", "a post-stack head"),
    (lambda c: c["layers"][0].update(gating_mode="blended"), "config.layers[0].gating_mode", "gating mode 'blended'"),
    (lambda c: c["layers"][1].update(activation_post_film={"active": True}), "config.layers[1].activation_post_film",
     "FiLM"),
    (lambda c: c["layers"][0].update(slimmable={"method": "slice_channels_uniform"}), "config.layers[0].slimmable",
     "slimmable"),
    (lambda c: c["layers"][0].update(bottleneck=8), "config.layers[0].bottleneck", "a bottleneck"),
    (lambda c: c["layers"][0].update(activation="SiLU"), "config.layers[0].activation", "'SiLU'"),
    (lambda c: c["layers"][0].update(kernel_sizes=[3, 2] * 5), "config.layers[0].kernel_sizes", "per-layer"),
])
def test_variants_the_layer_cannot_represent_are_refused_naming_the_feature(edit: Any, key: str,
                                                                           feature: str) -> None:
    config = namwave.config_of(KIND.spec(STANDARD, 1))
    edit(config)
    if "kernel_sizes" in config["layers"][0]:
        del config["layers"][0]["kernel_size"]
    with pytest.raises(UsageError) as caught:
        namwave.table_from_config(config)
    problem = caught.value.problems[0]
    assert problem.key == key and feature in problem.reason, problem


# ---------------------------------------------------------------- in NAM's engine


@pytest.fixture
def nam_registered() -> Any:
    register_exporter(NAMExporter, replace=True)
    yield
    unregister_exporter("nam")


def _shifted_by_one(document: dict[str, Any]) -> None:
    document["weights"] = [document["weights"][-1]] + document["weights"][:-1]


def _heads_out_of_order(document: dict[str, Any]) -> None:
    """head_scale written before the last head rechannel (8 weights and its bias), not after it."""
    weights = document["weights"]
    document["weights"] = weights[:-10] + [weights[-1]] + weights[-10:-1]


def _head_transposed(document: dict[str, Any]) -> None:
    """The first array's head rechannel (8 x 16, no bias: just before the second array's rechannel,
    8 x 16) written [in][out] instead of [out][in]."""
    weights = np.asarray(document["weights"], dtype=np.float32)
    end = 16 + 10 * (16 * 16 * 3 + 16 + 16 + 16 * 16 + 16) + 8 * 16
    weights[end - 128:end] = weights[end - 128:end].reshape(8, 16).T.reshape(-1)
    document["weights"] = weights.tolist()


@needs_nam
def test_the_standard_wavenet_exports_loads_in_nams_engine_and_matches_torch_over_4096_samples(
        tmp_path: Path, nam_core: Path, nam_registered: None) -> None:  # noqa: F811
    registry = write_registry(tmp_path / "project", text=STANDARD_ENTRY)
    spec = modelreg.load_registry(registry)["wave"]
    init_checkpoint(spec, seed=0)
    report = export_all(registry)
    (result,) = report.artifacts
    assert result.status == "written", result.message
    assert result.figures["max_error"] <= 1e-5, result.figures
    path = tmp_path / "project" / "models" / "nam" / "wave.nam"
    document = json.loads(path.read_text())
    assert document["architecture"] == "WaveNet" and document["sample_rate"] == 48000
    assert document["config"] == namwave.config_of(spec.layers[0])
    assert document["config"]["layers"][1] == {"input_size": 16, "condition_size": 1, "head_size": 1, "channels": 8,
                                               "kernel_size": 3, "dilations": DILATIONS, "activation": "Tanh",
                                               "gated": False, "head_bias": True}
    assert len(document["weights"]) == 13802 and document["weights"][-1] == pytest.approx(0.02)
    exporter = NAMExporter()
    assert exporter.describe_file(path) == ("NAM WaveNet (2 layer arrays: 16 channels x 10 layers, 8 channels x 10 "
                                            "layers), 1 -> 1, 13,802 weights, 48000 Hz")

    module = spec.load()
    parity = exporter.verify(spec, module, path, 1e-5)
    assert parity.ok and parity.cases["stream_4096"] <= 1e-5, parity.summary  # 64 blocks of 64 after Reset
    with measuring_for(0.05):  # nam.latency: the real-time factor at the entry's rate and block
        latency = latency_check(spec, path)
    assert latency.status in ("pass", "fail")  # judged against the block's duration: a loaded machine may miss it
    assert latency.figures["rtf"] > 0 and latency.figures["block_size"] == 64
    assert "real time at 48 kHz, 64-sample blocks" in latency.message

    # Corrupted files are well formed (schema, count) and fail only when run.
    original = path.read_text()
    for corrupt in (_shifted_by_one, _heads_out_of_order, _head_transposed):
        document = json.loads(original)
        corrupt(document)
        path.write_text(json.dumps(document))
        assert exporter.check_artifact(spec, path) == [], corrupt.__name__
        parity = exporter.verify(spec, module, path, 1e-5)
        assert not parity.ok and parity.cases["stream_4096"] > 1e-4, (corrupt.__name__, parity.summary)


@needs_nam
def test_a_gated_two_channel_wavenet_matches_torch_in_nams_engine(tmp_path: Path, nam_core: Path) -> None:  # noqa: F811
    spec = attrs.evolve(_spec(tmp_path, SMALL, 2, name="wv"), sample_rate=44100.0, block_size=37)
    module = widened(spec, seed=4)
    exporter = NAMExporter()
    path = tmp_path / "wv.nam"
    exporter.export(spec, module, path)
    assert exporter.check_artifact(spec, path) == []
    assert json.loads(path.read_text())["config"]["in_channels"] == 2
    parity = exporter.verify(spec, module, path, 1e-5)
    assert parity.ok and parity.details["reset_block"] == 37, parity.summary


def test_nam_refuses_a_wavenet_that_is_not_the_whole_model(tmp_path: Path) -> None:
    from modelreg.layers.base import LayerSpec

    layer = KIND.spec(SMALL, 2)
    spec = spec_of(tmp_path, 2, [layer, LayerSpec("dense", 1)], name="mixed")
    with pytest.raises(ExportError, match="a wavenet layer must be the entry's only layer"):
        NAMExporter().export(spec, build_module(spec, seed=0), tmp_path / "mixed.nam")
