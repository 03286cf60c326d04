"""``modelreg import FILE.nam`` and ``modelreg check FILE.nam``.

The imports are proven in NAM's engine (tests marked ``needs_nam``: compiled once per
session, skipped saying what to set where it or a compiler is absent); refusals and
``check`` need nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelreg
from modelreg.exporting import export_all
from modelreg.nam import engine
from modelreg.nam.exporter import NAMExporter
from modelreg.nam.format import build_document
from modelreg import import_nam  # the public name
from modelreg.plugins import register_exporter, unregister_exporter

from conftest import run_cli
from test_nam import AMP, CONVNET, CONVNET_BN, _project, needs_nam


@pytest.fixture(autouse=True)
def nam_exporter() -> Iterator[None]:
    register_exporter(NAMExporter, replace=True)
    yield
    unregister_exporter("nam")


@pytest.fixture
def nam_core(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import NAM_CORE

    monkeypatch.setenv(engine.ENV_CORE, str(NAM_CORE))
    monkeypatch.delenv("CXX", raising=False)


@pytest.fixture
def no_nam(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(engine.ENV_CORE, raising=False)


# ---------------------------------------------------------------- files in NAM's own layout (no modelreg)


def _trainer_lstm(hidden: int = 6, seed: int = 3) -> dict[str, Any]:
    """A 1-layer LSTM .nam written as NAM's trainer writes one (nam/models/recurrent.py): W = [w_ih | w_hh]
    row by row, b = b_ih + b_hh, then the state after 48,000 samples of zeros from zeros; the head."""
    import torch

    torch.manual_seed(seed)
    core, head = torch.nn.LSTM(1, hidden, batch_first=True), torch.nn.Linear(hidden, 1)
    with torch.no_grad():
        _, (h, c) = core(torch.zeros(1, 48_000, 1))
        parts = [torch.cat([core.weight_ih_l0, core.weight_hh_l0], dim=1).flatten(), core.bias_ih_l0 + core.bias_hh_l0,
                 h[0, 0], c[0, 0], head.weight.flatten(), head.bias]
    weights = torch.cat(parts).detach().numpy().astype(np.float32)
    return {"version": "0.5.4", "architecture": "LSTM", "config": {"input_size": 1, "hidden_size": hidden,
                                                                   "num_layers": 1},
            "weights": [float(v) for v in weights], "sample_rate": 48000,
            "metadata": {"name": "Hand amp", "gear_type": "amp", "loudness": -18.0}}


def _trainer_convnet(seed: int = 4) -> dict[str, Any]:
    """A batchnorm ConvNet .nam as NAM's trainer writes one (nam/models/conv_net.py): per block the
    bias-free conv [out][in][2], running mean, running variance, weight, bias, eps; the 1x1 head."""
    import torch

    torch.manual_seed(seed)
    parts = []
    cin = 1
    for _ in (1, 2):
        conv = torch.nn.Conv1d(cin, 3, 2, bias=False)
        parts += [conv.weight.flatten(), torch.randn(3) * 0.3, torch.rand(3) + 0.5, torch.rand(3) + 0.5,
                  torch.randn(3) * 0.3, torch.tensor([1e-5])]
        cin = 3
    head = torch.nn.Conv1d(3, 1, 1)
    parts += [head.weight.flatten(), head.bias]
    weights = torch.cat([p.detach() for p in parts]).numpy().astype(np.float32)
    return {"version": "0.5.4", "architecture": "ConvNet",
            "config": {"channels": 3, "dilations": [1, 2], "batchnorm": True, "activation": "Tanh"},
            "weights": [float(v) for v in weights]}


def _trainer_wavenet(seed: int = 5) -> dict[str, Any]:
    """A WaveNet .nam as NAM's trainer writes one today (nam/models/wavenet/_layer_array.py: export_config,
    export_weights; version 0.7.0): the newer config form (nested head, kernel_sizes, per-layer
    activation and gating lists, switched-off FiLM / head1x1), and per array the rechannel [out][in][1],
    per layer the dilated conv (weight, bias), the input mixer (weight), the layer 1x1 (weight, bias);
    the head rechannel (weight, bias if any); head_scale last. A gated array, then a plain one."""
    import torch

    torch.manual_seed(seed)
    off = {"active": False, "shift": True, "groups": 1}
    arrays = [(1, 3, 2, [1, 2], True, False), (3, 2, 1, [1, 3], False, True)]  # in, channels, head, dilations...
    parts: list[torch.Tensor] = []
    config_arrays = []
    for ins, channels, head, dilations, gated, bias in arrays:
        z = 2 * channels if gated else channels
        modules = [torch.nn.Conv1d(ins, channels, 1, bias=False)]
        for d in dilations:
            modules += [torch.nn.Conv1d(channels, z, 2, dilation=d), torch.nn.Conv1d(1, z, 1, bias=False),
                        torch.nn.Conv1d(channels, channels, 1)]
        modules.append(torch.nn.Conv1d(channels, head, 1, bias=bias))
        for module in modules:
            parts += [module.weight.flatten()] + ([module.bias] if module.bias is not None else [])
        n = len(dilations)
        config_arrays.append({
            "input_size": ins, "condition_size": 1, "head": {"out_channels": head, "kernel_size": 1, "bias": bias},
            "channels": channels, "kernel_sizes": [2] * n, "dilations": dilations,
            "activation": [{"type": "Tanh"}] * n, "bottleneck": channels,
            "head1x1": {"active": False, "out_channels": channels, "groups": 1},
            "layer1x1": {"active": True, "groups": 1}, "groups_input": 1, "groups_input_mixin": 1,
            "conv_pre_film": off, "conv_post_film": off, "input_mixin_pre_film": off, "input_mixin_post_film": off,
            "activation_pre_film": off, "activation_post_film": off, "layer1x1_post_film": off,
            "head1x1_post_film": off, "gating_mode": ["gated" if gated else "none"] * n,
            "secondary_activation": [{"type": "Sigmoid"} if gated else None] * n, "slimmable": None})
    parts.append(torch.tensor([0.25]))
    weights = torch.cat([p.detach() for p in parts]).numpy().astype(np.float32)
    return {"version": "0.7.0", "architecture": "WaveNet",
            "config": {"layers": config_arrays, "head": None, "head_scale": 0.25},
            "weights": [float(v) for v in weights], "sample_rate": 48000,
            "metadata": {"name": "Hand pedal", "gear_type": "pedal"}}


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document))
    return path


def _nothing_written(folder: Path) -> None:
    assert not (folder / "registry.toml").exists() and not (folder / "models").exists()


# ---------------------------------------------------------------- imports proven in NAM's engine


@needs_nam
@pytest.mark.parametrize("text", [AMP, CONVNET, CONVNET_BN], ids=["lstm", "convnet", "convnet-batchnorm"])
def test_an_exported_file_imports_and_exports_the_same_numbers(tmp_path: Path, nam_core: None, text: str) -> None:
    registry = _project(tmp_path, text)
    (spec,) = modelreg.load_registry(registry).values()
    assert export_all(registry).artifacts[0].status == "written"
    source = tmp_path / "project" / "models" / "nam" / f"{spec.name}.nam"
    target = tmp_path / "adopted"
    target.mkdir()
    result = import_nam(source, target / "registry.toml")
    assert result.parity.ok and not result.parity.skipped and result.parity.max_error < 1e-6
    assert result.reexport.ok and result.reexport.values > 0
    imported = modelreg.load_registry(target / "registry.toml")[spec.name]
    assert imported.sample_rate == spec.sample_rate and imported.description == spec.description
    original = json.loads(source.read_text())
    again = build_document(imported, imported.load())
    assert again["config"] == original["config"]
    weights, file_weights = np.asarray(again["weights"], np.float32), np.asarray(original["weights"], np.float32)
    if imported.reset == "rest":  # LSTM: all but the initial states bit for bit; those are the resting state
        assert result.reexport.state_values > 0 and result.reexport.state_max_diff < 1e-6
        np.testing.assert_allclose(weights, file_weights, atol=1e-6, rtol=0)
    else:
        assert weights.tobytes() == file_weights.tobytes()


WAVENET = """\
[models.wave]
description = "A small NAM WaveNet: two layer arrays (4 and 2 channels), kernel 3, dilations 1, 2, 4."
input_shape = [1, 1]
output_shape = [1, 1]
dtype = "float32"
params = 317
sample_rate = 48000
block_size = 64
exports = ["nam"]
checkpoint = "models/wave.pt"
layers = [
    { type = "wavenet", head_scale = 0.02, layer_arrays = [
        { channels = 4, head_size = 2, kernel_size = 3, dilations = [1, 2, 4], activation = "tanh" },
        { channels = 2, head_size = 1, kernel_size = 3, dilations = [1, 2, 4], activation = "tanh", head_bias = true },
    ] },
]
"""


@needs_nam
def test_an_exported_wavenet_imports_and_exports_the_same_numbers(tmp_path: Path, nam_core: None) -> None:
    registry = _project(tmp_path, WAVENET)
    assert export_all(registry).artifacts[0].status == "written"
    source = tmp_path / "project" / "models" / "nam" / "wave.nam"
    target = tmp_path / "adopted"
    target.mkdir()
    result = import_nam(source, target / "registry.toml")
    assert result.architecture == "WaveNet" and result.parity.ok and not result.parity.skipped
    assert result.parity.max_error < 1e-6 and "stream_4096" in result.parity.cases
    assert result.reexport.ok and result.reexport.values == 318 and result.reexport.state_values == 0
    imported = modelreg.load_registry(target / "registry.toml")["wave"]
    assert [layer.type for layer in imported.layers] == ["wavenet"] and imported.exports == ("nam", "onnx")
    assert imported.layers[0].option("head_scale") == 0.02 and imported.reset == "zeros"
    original = json.loads(source.read_text())
    again = build_document(imported, imported.load())
    assert again["config"] == original["config"]  # head_scale included
    assert (np.asarray(again["weights"], np.float32).tobytes()
            == np.asarray(original["weights"], np.float32).tobytes())  # the last one is head_scale


@needs_nam
def test_files_in_nams_own_layout_import_from_the_command_line(tmp_path: Path, nam_core: None,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    lstm = _write(tmp_path / "hand_amp.nam", _trainer_lstm())
    convnet = _write(tmp_path / "crunch.json", _trainer_convnet())  # a NAM model named .json: read by content
    registry = tmp_path / "registry.toml"
    code, out, err = run_cli(["import", str(lstm), "--registry", str(registry)], capsys)
    assert code == 0, out + err
    assert "NAM's engine (the original file): error beyond float32 rounding" in out
    assert "metadata loudness" in out  # not carried, and said
    code, out, err = run_cli(["import", str(convnet), "--registry", str(registry), "--exports", "nam"], capsys)
    assert code == 0, out + err
    models = modelreg.load_registry(registry)
    assert models["hand_amp"].reset == "rest" and models["hand_amp"].block_size == 64
    assert "Hand amp" in models["hand_amp"].description
    assert [layer.type for layer in models["crunch"].layers] == ["conv1d", "batchnorm", "activation"] * 2 + ["dense"]
    again = build_document(models["crunch"], models["crunch"].load())
    assert again["config"] == _trainer_convnet()["config"]
    assert (np.asarray(again["weights"], np.float32).tobytes()
            == np.asarray(_trainer_convnet()["weights"], np.float32).tobytes())
    wavenet = _write(tmp_path / "hand_pedal.nam", _trainer_wavenet())
    code, out, err = run_cli(["import", str(wavenet), "--registry", str(registry)], capsys)
    assert code == 0, out + err
    assert "NAM's engine (the original file): error beyond float32 rounding" in out
    assert "the config is in NAM's newer form" in out
    pedal = modelreg.load_registry(registry)["hand_pedal"]
    (array0, array1) = pedal.layers[0].option("layer_arrays")
    assert array0.gated and not array1.gated and array1.head_bias and pedal.layers[0].option("head_scale") == 0.25
    again = build_document(pedal, pedal.load())  # the plain form of the same network, the same float32 weights
    assert (np.asarray(again["weights"], np.float32).tobytes()
            == np.asarray(_trainer_wavenet()["weights"], np.float32).tobytes())


@needs_nam
def test_an_initial_state_that_is_not_at_rest_is_refused(tmp_path: Path, nam_core: None,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    document = _trainer_lstm()
    document["weights"][4 * 6 * 7 + 4 * 6:4 * 6 * 7 + 4 * 6 + 12] = [0.0] * 12  # h and c of layer 0: zeros
    source = _write(tmp_path / "zeros.nam", document)
    code, out, err = run_cli(["import", str(source), "--registry", str(tmp_path / "registry.toml")], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert "layer 0 (lstm): the file's initial hidden state is not the model's resting state on zeros" in err
    assert "zeros.nam: weights[192]" in err
    _nothing_written(tmp_path)


# ---------------------------------------------------------------- refusals (no engine needed)


def _wavenet(**layer: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        document.update(architecture="WaveNet", config={
            "layers": [{"input_size": 1, "condition_size": 1, "head_size": 1, "channels": 2, "kernel_size": 3,
                        "dilations": [1, 2], "activation": "Tanh", "gated": False, "head_bias": False, **layer}],
            "head_scale": 0.02})
    return edit


REFUSALS: list[tuple[str, Callable[[dict[str, Any]], None], str, int]] = [
    ("slimmable-container", lambda d: d.update(architecture="SlimmableContainer"),
     "architecture: a slimmable container", 2),
    ("linear", lambda d: d.update(architecture="Linear"), "architecture: NAM's Linear architecture", 2),
    ("condition-dsp", lambda d: (_wavenet()(d), d["config"].update(condition_dsp={"architecture": "Linear"})),
     "config.condition_dsp: a conditioning DSP", 2),
    ("film", _wavenet(conv_pre_film={"active": True}), "config.layers[0].conv_pre_film: FiLM", 2),
    ("film-inactive-then-active", _wavenet(conv_pre_film={"active": False}, layer1x1_post_film={"active": True}),
     "config.layers[0].layer1x1_post_film: FiLM", 2),
    ("a2-kernel-sizes", _wavenet(kernel_sizes=[6, 15]), "config.layers[0].kernel_sizes: per-layer kernel sizes that "
                                                        "differ", 2),
    ("slimmable-wavenet", _wavenet(slimmable={"method": "slice_channels_uniform"}),
     "config.layers[0].slimmable: slimmable channels", 2),
    ("post-stack-head", lambda d: (_wavenet()(d), d["config"].update(head={"channels": 4, "num_layers": 1})),
     "config.head: a post-stack head", 2),
    ("head1x1", _wavenet(head1x1={"active": True, "out_channels": 2, "groups": 1}), "config.layers[0].head1x1: a head "
                                                                                   "1x1", 2),
    ("bottleneck", _wavenet(bottleneck=1), "config.layers[0].bottleneck: this WaveNet uses a bottleneck", 2),
    ("blended-gating", _wavenet(gating_mode=["blended", "blended"]),
     "config.layers[0].gating_mode: this WaveNet uses the gating mode 'blended'", 2),
    ("wide-head", _wavenet(head={"out_channels": 1, "kernel_size": 3, "bias": True}),
     "config.layers[0].head: this WaveNet uses a head rechannel with a kernel wider than 1", 2),
    ("wavenet-head-scale", lambda d: (_wavenet()(d), d.update(weights=[0.1] * 48 + [0.5])),
     "config.head_scale: a head_scale in the config other than the one in the weights", 2),
    ("unknown", lambda d: d.update(architecture="Transformer"),
     "architecture: an architecture NAM's engine does not know", 1),
    ("old-version", lambda d: d.update(version="0.4.0"), "version: a file version NAM's engine does not read", 1),
    ("new-version", lambda d: d.update(version="0.8.0"), "version: a file version NAM's engine does not read", 1),
    ("lstm-no-layers", lambda d: d.update(config={"input_size": 1, "hidden_size": 6, "num_layers": 0},
                                          weights=[0.5] * 7),
     "config.num_layers: an LSTM of no layers", 2),
    ("convnet-silu", lambda d: d.update(**_trainer_convnet()) or d["config"].update(activation="SiLU"),
     "config.activation: the activation 'SiLU'", 2),
    ("convnet-groups", lambda d: d.update(**_trainer_convnet()) or d["config"].update(groups=3),
     "config.groups: grouped convolutions", 2),
    ("short-weights", lambda d: d.update(weights=d["weights"][:-3]), "weights: the weights end inside head", 1),
]


@pytest.mark.parametrize(("edit", "says", "exit_code"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_what_an_entry_cannot_hold_is_refused_by_name(tmp_path: Path, no_nam: None, edit: Any, says: str,
                                                      exit_code: int, capsys: pytest.CaptureFixture[str]) -> None:
    document = _trainer_lstm()
    edit(document)
    source = _write(tmp_path / "model.nam", document)
    code, out, err = run_cli(["import", str(source), "--registry", str(tmp_path / "registry.toml")], capsys)
    assert code == exit_code, out + err
    assert "Traceback" not in out + err
    assert f"model.nam: {says}" in out + err, out + err
    _nothing_written(tmp_path)


def test_without_nams_engine_nothing_is_imported(tmp_path: Path, no_nam: None,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path / "amp.nam", _trainer_lstm())
    code, out, err = run_cli(["import", str(source), "--registry", str(tmp_path / "registry.toml")], capsys)
    assert code == 2 and "Traceback" not in out + err
    assert "set MODELREG_NAM_CORE" in err and "proves a .nam file in NAM's engine before it writes anything" in err
    _nothing_written(tmp_path)


# ---------------------------------------------------------------- modelreg check FILE.nam


def _two_layer_lstm() -> dict[str, Any]:
    # 2 x 8: each layer 4*8*(in+8) + 6*8 weights: 336 then 560; the head 9.
    return {"version": "0.5.4", "architecture": "LSTM", "config": {"input_size": 1, "hidden_size": 8, "num_layers": 2},
            "weights": [0.01] * (336 + 560 + 9)}


@pytest.mark.parametrize(("edit", "says"), [
    (lambda d: d.update(weights=d["weights"][:336 + 559]),
     "weights: the weights end inside layer 1 (lstm, 8 -> 8): it needs 560 weights, the file has 559 left "
     "(expected 905 weights for this LSTM config, found 895)"),
    (lambda d: d.update(weights=d["weights"][:300]), "the weights end inside layer 0 (lstm, 1 -> 8): it needs 336"),
    (lambda d: d.update(weights=d["weights"] + [0.0, 0.0]), "2 weights are left after the head"),
    (lambda d: d.update(architecture="ConvNet", config={"channels": 2, "dilations": [1, 2, 4], "batchnorm": False,
                                                        "activation": "Tanh"}, weights=[0.0] * 20),
     "the weights end inside block 2 (conv, 2 -> 2, dilation 4): it needs 10 weights, the file has 4 left"),
])
def test_check_names_the_first_layer_whose_weight_count_is_off(tmp_path: Path, edit: Any, says: str,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path / "good.nam", _two_layer_lstm())
    code, out, _ = run_cli(["check", str(good)], capsys)
    assert code == 0 and "NAM LSTM (2 x 8 hidden), 1 -> 1, 905 weights" in out
    document = _two_layer_lstm()
    edit(document)
    bad = _write(tmp_path / "bad.json", document)  # .json: read as NAM by its content
    code, out, err = run_cli(["check", str(bad)], capsys)
    assert code == 1 and "Traceback" not in out + err
    assert says in out, out
