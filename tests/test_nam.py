"""The ``nam`` exporter: ``.nam`` files for Neural Amp Modeler, proven in NAM's own C++ engine.

Tests marked ``needs_nam`` compile NeuralAmpModelerCore (``$MODELREG_NAM_CORE``, else the copy
beside CI's checkout) once per test session into the session's cache (about half a minute on
two cores), and skip, saying what to set, where it or a compiler is absent. The others
(schema, refusals, layouts, skips) need nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np
import pytest

import modelreg
from modelreg import LayerSpec
from modelreg.builder import build_module
from modelreg.checkpoint import init_checkpoint
from modelreg.errors import ExportError
from modelreg.exporting import export_all
from modelreg.nam import engine
from modelreg.nam.exporter import NAMExporter
from modelreg.nam.format import FILE_VERSION, WHAT_NAM_HOLDS, expected_weight_count
from modelreg.plugins import register_exporter, unregister_exporter

from conftest import NAM_CORE, run_cli, write_registry
from kind_tools import spec_of

F = TypeVar("F", bound=Callable[..., Any])

_has_engine = pytest.mark.skipif(
    not (NAM_CORE / "NAM" / "get_dsp.h").is_file() or (shutil.which("c++") is None and shutil.which("g++") is None),
    reason=f"NAM's C++ engine is not at {NAM_CORE} (or no C++ compiler): set {engine.ENV_CORE} to a "
           "NeuralAmpModelerCore checkout",
)


def needs_nam(test: F) -> F:
    """Skipped without NAM's engine; allowed the first compile of it (about half a minute on two idle
    cores, minutes on a loaded machine) beyond the suite's 300 s hang guard."""
    return _has_engine(pytest.mark.timeout(1800)(test))

AMP = """\
[models.amp]
description = "A guitar amp: one sample in, one out, two LSTM layers and a linear head."
input_shape = [1, 1]
output_shape = [1, 1]
dtype = "float32"
params = 937
sample_rate = 48000
block_size = 64
exports = ["nam"]
checkpoint = "models/amp.pt"
layers = [
    { type = "lstm", units = 8 },
    { type = "lstm", units = 8 },
    { type = "dense", units = 1, activation = "linear" },
]
"""

CONVNET = """\
[models.fuzz]
description = "A fuzz: dilated conv1d blocks (tanh) and a linear head, NAM's ConvNet."
input_shape = [1, 1]
output_shape = [1, 1]
dtype = "float32"
params = 89
sample_rate = 44100
block_size = 32
exports = ["nam"]
checkpoint = "models/fuzz.pt"
layers = [
    { type = "conv1d", units = 4, kernel_size = 2, dilation = 1, activation = "tanh" },
    { type = "conv1d", units = 4, kernel_size = 2, dilation = 2 },
    { type = "activation", activation = "tanh" },
    { type = "conv1d", units = 4, kernel_size = 2, dilation = 4, activation = "tanh" },
    { type = "dense", units = 1, activation = "linear" },
]
"""

CONVNET_BN = """\
[models.crunch]
description = "NAM's ConvNet with batchnorm: conv1d, batchnorm, relu per block."
input_shape = [1, 1]
output_shape = [1, 1]
dtype = "float32"
params = 46
sample_rate = 48000
block_size = 128
exports = ["nam"]
checkpoint = "models/crunch.pt"
layers = [
    { type = "conv1d", units = 3, kernel_size = 2, dilation = 1 },
    { type = "batchnorm" },
    { type = "activation", activation = "relu" },
    { type = "conv1d", units = 3, kernel_size = 2, dilation = 3 },
    { type = "batchnorm", epsilon = 0.001 },
    { type = "activation", activation = "relu" },
    { type = "dense", units = 1, activation = "linear" },
]
"""

STEREO = """\
[models.stereo]
description = "Two channels in, two out: one LSTM layer and a linear head."
input_shape = [1, 2]
output_shape = [1, 2]
dtype = "float32"
params = 192
sample_rate = 44100
block_size = 37
exports = ["nam"]
checkpoint = "models/stereo.pt"
layers = [
    { type = "lstm", units = 5 },
    { type = "dense", units = 2, activation = "linear" },
]
"""

GRU = """\
[models.gruamp]
description = "A GRU amp: NAM has no GRU."
input_shape = [1, 1]
output_shape = [1, 1]
dtype = "float32"
params = 401
latency_ms = 10.0
exports = ["nam"]
checkpoint = "models/gruamp.pt"
layers = [
    { type = "gru", units = 10 },
    { type = "dense", units = 1, activation = "linear" },
]
"""


@pytest.fixture(autouse=True)
def nam_exporter() -> Iterator[None]:
    """The exporter registered in this process (an installed modelreg finds it by its entry point too)."""
    register_exporter(NAMExporter, replace=True)
    yield
    unregister_exporter("nam")


@pytest.fixture
def nam_core(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(engine.ENV_CORE, str(NAM_CORE))
    monkeypatch.delenv("CXX", raising=False)
    return NAM_CORE


@pytest.fixture
def no_nam(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(engine.ENV_CORE, raising=False)


def _project(tmp_path: Path, text: str) -> Path:
    path = write_registry(tmp_path / "project", text=text)
    for spec in modelreg.load_registry(path).values():
        init_checkpoint(spec, seed=0)
    return path


def _only(report: modelreg.ExportReport) -> modelreg.ArtifactResult:
    assert len(report.artifacts) == 1, report.artifacts
    return report.artifacts[0]


def _shifted_by_one(path: Path) -> None:
    """The weights moved one place along (the last becomes the first): every layer misaligned."""
    document = json.loads(path.read_text())
    document["weights"] = [document["weights"][-1]] + document["weights"][:-1]
    path.write_text(json.dumps(document))


# ---------------------------------------------------------------- in NAM's engine


@needs_nam
def test_an_lstm_entry_exports_loads_in_nams_engine_and_matches_torch_over_4096_samples(tmp_path: Path,
                                                                                       nam_core: Path) -> None:
    registry = _project(tmp_path, AMP)
    result = _only(export_all(registry))
    assert result.status == "written", result.message
    assert result.message.startswith("parity error beyond float32 rounding"), result.message
    assert result.figures["max_error"] <= 1e-5
    document = json.loads((tmp_path / "project" / "models" / "nam" / "amp.nam").read_text())
    assert document["version"] == FILE_VERSION and document["architecture"] == "LSTM"
    assert document["config"] == {"input_size": 1, "hidden_size": 8, "num_layers": 2}
    assert document["sample_rate"] == 48000
    assert len(document["weights"]) == expected_weight_count("LSTM", document["config"]) == 905
    metadata = document["metadata"]
    assert metadata["name"] == "amp" and metadata["modelreg"]["description"].startswith("A guitar amp")
    assert set(metadata["date"]) == {"year", "month", "day", "hour", "minute", "second"}

    report = modelreg.validate_all(registry, latency_seconds=0.05)
    checks = report["amp"]
    assert checks["nam.schema"].status == "pass" and checks["nam.parity"].status == "pass"
    parity = checks["nam.parity"].figures
    assert parity["max_error"] <= 1e-5 and parity["tolerance"] == 1e-5
    # The standard cases and a 4,096-sample audio stream, block by block after Reset(48000, 64).
    assert set(parity["cases"]) == {"zeros", "normal", "plus_1e6", "minus_1e6", "mixed_signs", "stream_64",
                                    "stream_4096"}
    assert parity["reset_sample_rate"] == 48000.0 and parity["reset_block"] == 64
    assert parity["start"] == "the resting state on zeros"
    latency = checks["nam.latency"]
    assert latency.status in ("pass", "fail")  # judged against the block's duration: a loaded machine may miss it
    assert latency.figures["block_size"] == 64 and latency.figures["sample_rate"] == 48000
    assert latency.figures["rtf"] > 0 and latency.figures["iterations"] >= 200
    assert "real time at 48 kHz, 64-sample blocks" in latency.message


STACKED = """\
[models.stacked]
description = "An LSTM layer, then a stacked one (torch's nn.LSTM(num_layers=2)): three NAM layers."
input_shape = [1, 1]
output_shape = [1, 1]
dtype = "float32"
params = 895
sample_rate = 48000
block_size = 64
exports = ["nam"]
checkpoint = "models/stacked.pt"
layers = [
    { type = "lstm", units = 6 },
    { type = "lstm", units = 6, num_layers = 2 },
    { type = "dense", units = 1, activation = "linear" },
]
"""


@needs_nam
def test_a_stacked_lstm_layer_is_nams_num_layers_and_matches_torch_in_nams_engine(tmp_path: Path,
                                                                                  nam_core: Path) -> None:
    registry = _project(tmp_path, STACKED)
    result = _only(export_all(registry))
    assert result.status == "written", result.message
    assert result.figures["max_error"] <= 1e-5, result.message
    document = json.loads((tmp_path / "project" / "models" / "nam" / "stacked.nam").read_text())
    assert document["config"] == {"input_size": 1, "hidden_size": 6, "num_layers": 3}
    assert len(document["weights"]) == expected_weight_count("LSTM", document["config"]) == 859
    # The stacked layer's second torch layer (weight_ih_l1) is NAM's third layer: shifted weights fail.
    _shifted_by_one(tmp_path / "project" / "models" / "nam" / "stacked.nam")
    spec = modelreg.load_registry(registry)["stacked"]
    parity = NAMExporter().verify(spec, spec.load(), tmp_path / "project" / "models" / "nam" / "stacked.nam", 1e-5)
    assert not parity.ok


@needs_nam
def test_weights_shifted_by_one_place_fail_parity_in_nams_engine(tmp_path: Path, nam_core: Path) -> None:
    registry = _project(tmp_path, AMP)
    assert _only(export_all(registry)).status == "written"
    path = tmp_path / "project" / "models" / "nam" / "amp.nam"
    _shifted_by_one(path)
    spec = modelreg.load_registry(registry)["amp"]
    exporter = NAMExporter()
    assert exporter.check_artifact(spec, path) == []  # same count, same schema: only running it tells
    parity = exporter.verify(spec, spec.load(), path, 1e-5)
    assert not parity.ok and parity.max_error > 1e-3, parity.summary
    assert "max abs error" in parity.summary and parity.cases["stream_4096"] > 1e-3
    # validate sees the edit first: the file no longer is what registry.lock recorded.
    report = modelreg.validate_all(registry, latency_seconds=0.02)
    assert report["amp"]["nam.fresh"].status == "fail"


@needs_nam
def test_a_convnet_entry_matches_torch_in_nams_engine_and_a_shifted_one_does_not(tmp_path: Path,
                                                                                  nam_core: Path) -> None:
    registry = _project(tmp_path, CONVNET)
    result = _only(export_all(registry))
    assert result.status == "written", result.message
    assert result.figures["max_error"] <= 1e-5
    path = tmp_path / "project" / "models" / "nam" / "fuzz.nam"
    spec = modelreg.load_registry(registry)["fuzz"]
    fresh = NAMExporter().verify(spec, spec.load(), path, 1e-5)
    assert fresh.ok and fresh.cases["stream_4096"] <= 1e-5 and fresh.details["reset_block"] == 32
    document = json.loads(path.read_text())
    assert document["architecture"] == "ConvNet"
    assert document["config"] == {"channels": 4, "dilations": [1, 2, 4], "batchnorm": False, "activation": "Tanh"}
    assert document["sample_rate"] == 44100
    _shifted_by_one(path)
    parity = NAMExporter().verify(spec, spec.load(), path, 1e-5)
    assert not parity.ok, parity.summary


@needs_nam
def test_a_convnet_with_batchnorm_matches_torch_in_nams_engine(tmp_path: Path, nam_core: Path) -> None:
    registry = _project(tmp_path, CONVNET_BN)
    result = _only(export_all(registry))
    assert result.status == "written", result.message
    assert result.figures["max_error"] <= 1e-5
    path = tmp_path / "project" / "models" / "nam" / "crunch.nam"
    assert json.loads(path.read_text())["config"]["batchnorm"] is True
    _shifted_by_one(path)
    spec = modelreg.load_registry(registry)["crunch"]
    assert not NAMExporter().verify(spec, spec.load(), path, 1e-5).ok


@needs_nam
def test_two_channels_in_and_out_and_an_odd_block_match_torch_in_nams_engine(tmp_path: Path, nam_core: Path) -> None:
    registry = _project(tmp_path, STEREO)
    result = _only(export_all(registry))
    assert result.status == "written", result.message
    assert result.figures["max_error"] <= 1e-5
    document = json.loads((tmp_path / "project" / "models" / "nam" / "stereo.nam").read_text())
    assert document["config"] == {"input_size": 2, "hidden_size": 5, "num_layers": 1, "in_channels": 2,
                                  "out_channels": 2}


@needs_nam
def test_a_file_nams_loader_refuses_fails_naming_the_engine_and_its_reason(tmp_path: Path, nam_core: Path) -> None:
    registry = _project(tmp_path, AMP)
    assert _only(export_all(registry)).status == "written"
    path = tmp_path / "project" / "models" / "nam" / "amp.nam"
    document = json.loads(path.read_text())
    document["version"] = "0.4.0"  # older than the engine's earliest supported file
    path.write_text(json.dumps(document))
    spec = modelreg.load_registry(registry)["amp"]
    with pytest.raises(modelreg.ModelRegError, match=r"nam::get_dsp refused the file: .*unsupported version 0\.4\.0"):
        NAMExporter().verify(spec, spec.load(), path, 1e-5)


# ---------------------------------------------------------------- the file, without the engine


def test_the_file_holds_the_resting_state_each_layer_starts_from(tmp_path: Path, no_nam: None) -> None:
    registry = _project(tmp_path, AMP)
    result = _only(export_all(registry))
    assert result.status == "written" and result.message.startswith("parity skipped"), result.message
    spec = modelreg.load_registry(registry)["amp"]
    module = spec.load()
    state = {key: value.numpy() for key, value in module.state_dict().items()}
    weights = np.asarray(json.loads((tmp_path / "project" / "models" / "nam" / "amp.nam").read_text())["weights"],
                         np.float32)
    rest = module.resting_state()
    assert rest.behaviour == "converged"
    # Layer 0: W (32 x 9: weight_ih beside weight_hh, gates i f g o), b (the two biases summed), h, c.
    w = weights[:32 * 9].reshape(32, 9)
    np.testing.assert_array_equal(w[:, :1], state["layers.0.weight_ih_l0"])
    np.testing.assert_array_equal(w[:, 1:], state["layers.0.weight_hh_l0"])
    np.testing.assert_array_equal(weights[288:320], state["layers.0.bias_ih_l0"] + state["layers.0.bias_hh_l0"])
    np.testing.assert_array_equal(weights[320:328], rest.state["h0"])
    np.testing.assert_array_equal(weights[328:336], rest.state["c0"])
    assert np.abs(rest.state["c0"]).max() > 1e-3  # not zeros: the biases drive the state elsewhere
    # The head: the dense layer's weight row, then its bias, last.
    np.testing.assert_array_equal(weights[-9:-1], state["layers.2.weight"][0])
    assert weights[-1] == state["layers.2.bias"][0]


def test_a_batchnorm_block_folds_the_conv_bias_into_the_running_mean(tmp_path: Path, no_nam: None) -> None:
    registry = _project(tmp_path, CONVNET_BN)
    assert _only(export_all(registry)).status == "written"
    spec = modelreg.load_registry(registry)["crunch"]
    state = {key: value.numpy() for key, value in spec.load().state_dict().items()}
    weights = np.asarray(json.loads((tmp_path / "project" / "models" / "nam" / "crunch.nam").read_text())["weights"],
                         np.float32)
    # Block 0: the conv's 3 x 1 x 2 weights and no bias (NAM's batchnorm blocks have none), then
    # NAM's batchnorm: running mean (less the conv's bias), running variance, weight, bias, epsilon.
    np.testing.assert_array_equal(weights[:6], state["layers.0.weight"].reshape(-1))
    np.testing.assert_array_equal(weights[6:9], state["layers.1.running_mean"] - state["layers.0.bias"])
    np.testing.assert_array_equal(weights[9:12], state["layers.1.running_var"])
    np.testing.assert_array_equal(weights[12:15], state["layers.1.weight"])
    np.testing.assert_array_equal(weights[15:18], state["layers.1.bias"])
    assert weights[18] == np.float32(1e-5)
    assert weights[19 + 18 + 12] == np.float32(1e-3)  # block 1's epsilon, after its 3 x 3 x 2 weights


def test_a_state_that_never_settles_on_silence_is_refused(tmp_path: Path, no_nam: None) -> None:
    from rest_models import entry, growing_lstm, write_weights

    text = entry("grows", '    { type = "lstm", units = 1 },\n    { type = "dense", units = 1, activation = "linear" },\n',
                 outputs=1, params=22).replace("exports = []", 'exports = ["nam"]')
    registry = write_registry(tmp_path / "project", text=text)
    write_weights(modelreg.load_registry(registry)["grows"], growing_lstm)
    result = _only(export_all(registry))
    assert result.status == "failed"
    assert "NAM starts a model at rest on silence" in result.message
    assert "the state never settles on the rest input" in result.message and "diverges" in result.message
    assert "models.grows.layers" in result.message


def test_without_the_engine_parity_and_latency_are_skipped_saying_what_to_set(tmp_path: Path, no_nam: None) -> None:
    registry = _project(tmp_path, AMP)
    result = _only(export_all(registry))
    assert result.status == "written"
    assert "MODELREG_NAM_CORE" in result.message
    report = modelreg.validate_all(registry, latency_seconds=0.02)
    for name in ("nam.parity", "nam.latency"):
        assert report["amp"][name].status == "skip"
        assert "set MODELREG_NAM_CORE to a NeuralAmpModelerCore checkout" in report["amp"][name].message


def test_an_entry_nam_cannot_hold_is_refused_saying_what_nam_holds(tmp_path: Path, no_nam: None) -> None:
    registry = _project(tmp_path, GRU)
    result = _only(export_all(registry))
    assert result.status == "failed"
    assert "the 'nam' exporter cannot write this entry: these layers fit neither NAM's LSTM nor its ConvNet" in result.message
    assert "models.gruamp.layers" in result.message and "registry.toml" in result.message
    assert WHAT_NAM_HOLDS in result.message
    assert "found 'gru 1 -> 10; dense 10 -> 1 linear'" in result.message  # what it found: the layers
    assert not (tmp_path / "project" / "models" / "nam" / "gruamp.nam").exists()


def _layer(table: dict[str, object], in_features: int) -> LayerSpec:
    from modelreg.layers import get_kind

    return get_kind(str(table["type"])).spec({k: v for k, v in table.items() if k != "type"}, in_features)


def _stack(in_features: int, *tables: dict[str, object]) -> list[LayerSpec]:
    layers, size = [], in_features
    for table in tables:
        layers.append(_layer(table, size))
        size = layers[-1].units if layers[-1].type != "activation" else size
    return layers


HEAD = {"type": "dense", "units": 1, "activation": "linear"}


@pytest.mark.parametrize(("tables", "says"), [
    (({"type": "lstm", "units": 4}, {"type": "lstm", "units": 3}, HEAD),
     "NAM's LSTM gives every layer the same hidden size"),
    (({"type": "lstm", "units": 4, "num_layers": 2, "bias": False}, HEAD),
     "NAM's LSTM layers have a bias (bias = false cannot be written)"),
    (({"type": "lstm", "units": 4}, {"type": "dense", "units": 1, "activation": "tanh"}),
     "the head (layers[1]) must be a dense layer with activation 'linear'"),
    (({"type": "lstm", "units": 4},), "NAM's models end in one linear head"),
    (({"type": "conv1d", "units": 3, "kernel_size": 3, "activation": "tanh"}, HEAD),
     "NAM's ConvNet blocks are conv1d layers of kernel_size 2"),
    (({"type": "conv1d", "units": 3, "kernel_size": 2, "activation": "tanh"},
      {"type": "conv1d", "units": 3, "kernel_size": 2, "activation": "relu"}, HEAD),
     "NAM's ConvNet applies one activation in every block"),
    (({"type": "conv1d", "units": 3, "kernel_size": 2, "activation": "elu"}, HEAD),
     "a ConvNet block ends in one of NAM's activations (tanh, relu, sigmoid), found 'elu'"),
    (({"type": "conv1d", "units": 3, "kernel_size": 2, "activation": "tanh"}, {"type": "lstm", "units": 3}, HEAD),
     "layers[1] (lstm) is where a ConvNet block's conv1d layer belongs"),
    (({"type": "conv1d", "units": 3, "kernel_size": 2, "activation": "tanh"}, {"type": "batchnorm"}, HEAD),
     "layers[1] (batchnorm) is where a ConvNet block's conv1d layer belongs"),
    (({"type": "conv1d", "units": 3, "kernel_size": 2}, {"type": "batchnorm"}, {"type": "activation", "activation": "tanh"},
      {"type": "conv1d", "units": 3, "kernel_size": 2, "activation": "tanh"}, HEAD),
     "NAM's ConvNet has a batchnorm in every block or in none"),
])
def test_near_misses_are_refused_with_the_rule_they_break(tmp_path: Path, tables: tuple[dict[str, object], ...],
                                                          says: str) -> None:
    spec = spec_of(tmp_path, 1, _stack(1, *tables), name="near")
    with pytest.raises(ExportError) as refused:
        NAMExporter().export(spec, build_module(spec, seed=0), tmp_path / "out.nam")
    message = str(refused.value)
    assert says in message and "models.near.layers" in message and WHAT_NAM_HOLDS in message


def _good(tmp_path: Path) -> Path:
    registry = _project(tmp_path, AMP)
    assert _only(export_all(registry)).status == "written"
    return tmp_path / "project" / "models" / "nam" / "amp.nam"


@pytest.mark.parametrize(("edit", "says"), [
    (lambda d: d.update(architecture="WaveNetX"), "architecture"),
    (lambda d: d.pop("weights"), "weights: missing required key"),
    (lambda d: d.update(version="1.0.0"), "version"),
    (lambda d: d["config"].pop("hidden_size"), "config.hidden_size: missing required key"),
    (lambda d: d.update(weights=d["weights"][:-1]), "weights: the weights end inside head (linear, 8 -> 1): it needs 9 "
                                                    "weights, the file has 8 left (expected 905 weights for this LSTM "
                                                    "config, found 904)"),
    (lambda d: d["weights"].__setitem__(3, "0.5"), "weights[3]"),
    (lambda d: d["config"].update(input_size=2), "config.input_size: an LSTM's input_size must equal its in_channels"),
    (lambda d: d["metadata"].update(loudness="-18 dB"), "metadata.loudness"),
])
def test_the_schema_and_format_rules_refuse_a_broken_file(tmp_path: Path, no_nam: None, edit: object,
                                                          says: str) -> None:
    path = _good(tmp_path)
    exporter = NAMExporter()
    assert exporter.check_file(path) == []
    document = json.loads(path.read_text())
    edit(document)  # type: ignore[operator]
    path.write_text(json.dumps(document))
    problems = exporter.check_file(path)
    assert problems, "a broken file passed"
    text = "\n".join(str(p) for p in problems)
    assert says in text, text
    assert all(p.file is not None and p.file.endswith("amp.nam") for p in problems)


def test_modelreg_check_reads_a_nam_file_by_its_suffix(tmp_path: Path, no_nam: None,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = _good(tmp_path)
    code, out, _ = run_cli(["check", str(path)], capsys)
    assert code == 0, out
    assert "NAM LSTM (2 x 8 hidden), 1 -> 1, 905 weights, 48000 Hz" in out
    path.write_text("{not json")
    code, out, _ = run_cli(["check", str(path)], capsys)
    assert code == 1 and "not JSON" in out


def test_the_date_follows_source_date_epoch_so_two_exports_are_byte_identical(tmp_path: Path, no_nam: None,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1767225600")  # 2026-01-01T00:00:00Z
    registry = _project(tmp_path, AMP)
    path = tmp_path / "project" / "models" / "nam" / "amp.nam"
    assert _only(export_all(registry)).status == "written"
    first = path.read_bytes()
    assert _only(export_all(registry, force=True)).status == "written"
    assert path.read_bytes() == first
    assert json.loads(first)["metadata"]["date"] == {"year": 2026, "month": 1, "day": 1, "hour": 0, "minute": 0,
                                                     "second": 0}


def test_a_misconfigured_engine_is_an_error_naming_the_variable(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(engine.ENV_CORE, str(tmp_path / "nowhere"))
    with pytest.raises(modelreg.ModelRegError) as raised:
        engine.find_engine()
    assert "$MODELREG_NAM_CORE" in str(raised.value) and "does not exist" in str(raised.value)


def test_the_nam_schema_is_valid_against_its_metaschema() -> None:
    import jsonschema

    from modelreg.schemas import load_schema

    schema = load_schema("nam")
    jsonschema.validators.validator_for(schema).check_schema(schema)


def test_importing_modelreg_and_the_nam_target_loads_neither_torch_nor_numpy() -> None:
    import subprocess
    import sys

    code = ("import sys, modelreg, modelreg.nam.exporter, modelreg.nam.format, modelreg.nam.engine; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1],
                          check=True)
    assert done.stdout.strip() == "[]"


def test_the_command_line_prints_the_refusal_without_a_traceback(tmp_path: Path, no_nam: None,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    registry = _project(tmp_path, GRU)
    code, out, err = run_cli(["export", "--registry", str(registry)], capsys)
    text = out + err
    assert code == 1, text
    assert "Traceback" not in text
    assert "models.gruamp.layers: the 'nam' exporter cannot write this entry" in text


# ---------------------------------------------------------------- building the engine


def _fake_core(root: Path, b_source: str) -> engine.Engine:
    """A stand-in for NeuralAmpModelerCore: two files defining the same internal name (they cannot
    be one translation unit) and a WaveNet file; any C++ compiler builds it in a second."""
    from modelreg import native

    found = native.find_compiler()
    if found is None:
        pytest.skip("no C++ compiler on PATH (set CXX)")
    argv, path = found
    (root / "NAM" / "wavenet").mkdir(parents=True, exist_ok=True)
    (root / "NAM" / "a.cpp").write_text("static int helper() { return 1; }\nint a() { return helper(); }\n")
    (root / "NAM" / "b.cpp").write_text(b_source)
    (root / "NAM" / "wavenet" / "w.cpp").write_text("int w() { return 3; }\n")
    return engine.Engine(root, root, argv, path, "c++", "c++")


def test_a_group_that_is_not_one_translation_unit_is_compiled_file_by_file(tmp_path: Path) -> None:
    fake = _fake_core(tmp_path / "core", "static int helper() { return 2; }\nint b() { return helper(); }\n")
    objects = engine._objects(fake, tmp_path / "objects")
    # WaveNet's group compiles as one unit; the other falls back to its two files.
    assert sorted(path.name for path in objects) == ["NAM_a.cpp.o", "NAM_b.cpp.o", "unity-0.o"]
    assert all(path.is_file() for path in objects)
    assert engine._objects(fake, tmp_path / "objects") == objects  # the stamp names them: nothing recompiles


def test_a_file_that_does_not_compile_is_named_in_the_error(tmp_path: Path) -> None:
    from modelreg.errors import ToolchainError

    fake = _fake_core(tmp_path / "core", "int b() { return not_declared_anywhere; }\n")
    with pytest.raises(ToolchainError, match=r"NAM/b\.cpp:1:\d+: error: .*not_declared_anywhere"):
        engine._objects(fake, tmp_path / "objects")
