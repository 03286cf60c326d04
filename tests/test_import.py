"""`modelreg import` / modelreg.import_rtneural: an RTNeural file becomes a registry entry plus a checkpoint.

RTNeural's golden files (written by its Keras exporter) and files modelreg wrote are imported;
the imported models are held to RTNeural's own expected outputs, re-exported through the
real exporter and compared bit for bit; every refusal leaves every file as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import modelreg
from modelreg import layers as kinds
from modelreg.cli import main
from modelreg.exporting import export_all
from modelreg.spec import LayerSpec

from conftest import GOLDEN, needs_rtneural

GOLDEN_FILES = ("dense", "lstm", "lstm_1d", "gru_1d")
OLD_REGISTRY = b"# my models\n[settings]   # kept as written\nparam_budget = 1000000\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A registry with a comment and settings but no models yet; returns the registry file."""
    folder = tmp_path / "project"
    folder.mkdir()
    path = folder / "registry.toml"
    path.write_bytes(OLD_REGISTRY)
    return path


def _f32(value: Any) -> np.ndarray:
    # What RTNeural loads: the JSON number parsed as a double, then rounded to float.
    return np.asarray(value, dtype=np.float64).astype(np.float32)


def _weight_layers(document: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    return [(layer["type"], layer["weights"]) for layer in document["layers"] if layer["weights"]]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- RTNeural's golden files


@pytest.mark.parametrize("stem", GOLDEN_FILES)
def test_golden_file_imports_reproduces_rtneural_and_re_exports_its_weights(stem: str, project: Path) -> None:
    source = GOLDEN / f"{stem}.json"
    result = modelreg.import_rtneural(source, project)

    # The registry: every old byte kept, the entry appended, valid (strict load), pinned.
    text = project.read_bytes()
    assert text.startswith(OLD_REGISTRY) and text[len(OLD_REGISTRY):].startswith(b"\n[models." + stem.encode())
    spec = modelreg.load_registry(project)[stem]
    assert spec.settings["param_budget"] == 1000000
    assert spec.checkpoint == project.parent / "models" / f"{stem}.pt"
    assert spec.sha256 == hashlib.sha256(spec.checkpoint.read_bytes()).hexdigest() == result.sha256
    assert spec.params == sum(p.numel() for p in spec.build().parameters())
    assert (spec.exports, spec.latency_ms) == (("rtneural", "onnx"), 10.0)

    # RTNeural's own expected outputs (its C++ tests' data), frame by frame, from the checkpoint on disk.
    module = spec.load()
    x = np.loadtxt(GOLDEN / f"{stem}_x.csv", dtype=np.float32, ndmin=2)
    y = np.loadtxt(GOLDEN / f"{stem}_y.csv", dtype=np.float32, ndmin=2)
    module.reset()
    with torch.inference_mode():
        out = np.stack([module(torch.from_numpy(frame[None, :]))[0].numpy() for frame in x])
    assert np.max(np.abs(out - y.reshape(out.shape))) < 1e-5

    # The proof import ran: parity on the edge cases and a 64-frame stream, weights bit-identical.
    assert result.parity.ok and not result.parity.skipped and "stream_64" in result.parity.cases
    assert result.parity.max_abs_error < 1e-6
    original = json.loads(source.read_text())
    arrays = sum(len(weights) for _, weights in _weight_layers(original))
    assert result.weights.ok and result.weights.arrays == arrays
    assert "not configured" in result.cpp_parity.skipped  # tests run as on a machine without RTNeural

    # Re-exporting through the real exporter writes the file's float32 weights, bit for bit.
    report = export_all(modelreg.load_registry(project), formats=["rtneural"])
    assert report.ok, report
    exported = json.loads((project.parent / "models" / f"{stem}.json").read_text())
    old_layers, new_layers = _weight_layers(original), _weight_layers(exported)
    assert len(old_layers) == len(new_layers)
    for (old_type, old), (new_type, new) in zip(old_layers, new_layers):
        assert kinds.rtneural_handler(old_type) is kinds.rtneural_handler(new_type)
        for j, array in enumerate(old):
            np.testing.assert_array_equal(_f32(array).view(np.uint32), _f32(new[j]).view(np.uint32))
        for extra in new[len(old):]:  # a dense layer without bias (bias = false): zeros, as RTNeural uses
            assert not _f32(extra).view(np.uint32).any()


def test_golden_dense_folds_activation_layers_and_reads_dense_layers_without_bias_as_bias_free(project: Path) -> None:
    result = modelreg.import_rtneural(GOLDEN / "dense.json", project, name="keras-dense")
    assert result.name == "keras-dense"
    assert [(l.type, l.units, l.activation, l.has_bias) for l in result.spec.layers] == [
        ("dense", 8, "tanh", True), ("dense", 8, "relu", True), ("dense", 8, "elu", True),
        ("dense", 8, "softmax", True), ("dense", 1, "linear", True),
        # Keras's use_bias=False layers: weights [kernel] in the file, bias = false in the entry.
        ("dense", 8, "linear", False), ("dense", 8, "linear", False), ("dense", 1, "linear", False)]
    assert result.spec.params == 338 - 17  # no invented zero biases (8 + 8 + 1)
    # Their export writes zeros there (RTNeural's older loaders read a bias unconditionally).
    assert result.weights.zero_filled == ("layers[9].weights[1]", "layers[10].weights[1]", "layers[11].weights[1]")
    assert "layers[9].weights[1]: not in the file (RTNeural uses zeros); the layer is imported without it" in \
        "\n".join(result.notes)
    assert sum("stand-alone" in note for note in result.notes) == 4
    assert "bias = false" in result.entry_text
    state = torch.load(result.checkpoint, weights_only=True)
    assert "layers.5.bias" not in state and state["layers.0.bias"].any()


def test_time_distributed_dense_is_read_as_dense(project: Path) -> None:
    result = modelreg.import_rtneural(GOLDEN / "lstm.json", project)
    assert [l.type for l in result.spec.layers] == ["dense", "lstm", "dense"]
    assert any("'time-distributed-dense' is read as 'dense'" in note for note in result.notes)
    state = torch.load(result.checkpoint, weights_only=True)
    # Keras's single LSTM bias became bias_ih; bias_hh is zero.
    file_bias = _f32(json.loads((GOLDEN / "lstm.json").read_text())["layers"][1]["weights"][2])
    np.testing.assert_array_equal(state["layers.1.bias_ih_l0"].numpy(), file_bias)
    assert not state["layers.1.bias_hh_l0"].any()


# ---------------------------------------------------------------- files modelreg wrote


def test_modelreg_written_files_round_trip_byte_for_byte(tiny_registry: Path, tmp_path: Path) -> None:
    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["rtneural"]'))
    first = export_all(modelreg.load_registry(tiny_registry))
    assert first.ok
    target = tmp_path / "adopted" / "registry.toml"
    target.parent.mkdir()
    for name in ("tinydense", "tinylstm", "tinygru"):
        written = tiny_registry.parent / "models" / f"{name}.json"
        result = modelreg.import_rtneural(written, target, name=f"re-{name}", exports=["rtneural"])
        assert result.weights.ok and not result.weights.zero_filled and not result.notes
        assert result.spec.layers == modelreg.load_registry(tiny_registry)[name].layers
    again = export_all(modelreg.load_registry(target))
    assert again.ok
    for name in ("tinydense", "tinylstm", "tinygru"):
        assert (target.parent / "models" / f"re-{name}.json").read_bytes() == \
            (tiny_registry.parent / "models" / f"{name}.json").read_bytes(), name


def test_negative_zero_weights_survive_the_round_trip(project: Path) -> None:
    # An LSTM's file bias of -0.0 comes back as bias_ih -0.0 plus bias_hh; with a +0.0
    # bias_hh the re-export would write +0.0 (float addition: -0.0 + 0.0 = +0.0).
    rng = np.random.default_rng(7)
    bias = rng.normal(size=8).astype(np.float32)
    bias[[0, 3, 5]] = -0.0
    model = {"in_shape": [None, None, 2], "layers": [
        {"type": "lstm", "activation": "tanh", "shape": [None, None, 2],
         "weights": [rng.normal(size=(2, 8)).tolist(), rng.normal(size=(2, 8)).tolist(), bias.tolist()]},
        {"type": "dense", "activation": "", "shape": [None, None, 1],
         "weights": [rng.normal(size=(2, 1)).tolist(), [-0.0]]}]}
    source = project.parent / "negzero.json"
    source.write_text(json.dumps(model))
    result = modelreg.import_rtneural(source, project)
    assert result.weights.ok
    export_all(modelreg.load_registry(project), formats=["rtneural"])
    exported = json.loads((project.parent / "models" / "negzero.json").read_text())
    assert np.signbit(_f32(exported["layers"][0]["weights"][2])[[0, 3, 5]]).all()
    assert np.signbit(_f32(exported["layers"][1]["weights"][1])).all()


def test_new_registry_file_is_created(tmp_path: Path) -> None:
    target = tmp_path / "registry.toml"
    result = modelreg.import_rtneural(GOLDEN / "gru_1d.json", target, latency_ms=2.5, exports=["rtneural"])
    assert target.read_text().startswith("[models.gru_1d]\n")
    spec = modelreg.load_registry(target)["gru_1d"]
    assert (spec.latency_ms, spec.exports, result.spec.params) == (2.5, ("rtneural",), 345)


def test_stand_alone_activation_that_cannot_fold(project: Path) -> None:
    model = json.loads((GOLDEN / "lstm_1d.json").read_text())
    model["layers"].insert(1, {"type": "activation", "activation": "relu", "shape": [None, None, 8], "weights": []})
    source = project.parent / "lstm_relu.json"
    source.write_text(json.dumps(model))
    if isinstance(kinds.rtneural_handler("activation"), kinds.LayerKind):
        # The registry has a stand-alone activation kind: the layer is kept as one.
        result = modelreg.import_rtneural(source, project)
        assert result.parity.ok and result.weights.ok and len(result.spec.layers) == 3
        return
    before = _snapshot(project.parent)
    with pytest.raises(modelreg.UsageError) as info:
        modelreg.import_rtneural(source, project)
    problem = info.value.problems[0]
    assert (problem.file, problem.key) == (str(source), "layers[1].type")
    assert "'lstm', which takes no activation" in problem.reason
    assert _snapshot(project.parent) == before


# ---------------------------------------------------------------- refusals (nothing written)


def _cli(*argv: str) -> list[str]:
    return ["import", *argv]


def test_cli_import_prints_the_figures(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--registry", str(project), "import", str(GOLDEN / "lstm_1d.json"), "--latency-ms", "3"]) == 0
    out = capsys.readouterr().out
    assert "as models.lstm_1d" in out and "lstm 1 -> 8; dense 8 -> 1 linear" in out
    # Issue 23: without it, the first validate failed with "does not exist".
    assert out.endswith("next        modelreg export lstm_1d, then modelreg validate lstm_1d\n")
    assert "parity      numpy reference runtime: error " in out and "64-frame stream max abs error" in out
    assert "C++ parity  skipped: RTNeural C++ is not configured" in out
    assert "weights     re-export: 5 arrays, 329 float32 values bit-identical to the file" in out
    assert modelreg.load_registry(project)["lstm_1d"].latency_ms == 3.0


def test_cli_refuses_unknown_layer_type(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = json.loads((GOLDEN / "lstm_1d.json").read_text())
    model["layers"][1]["type"] = "conv3d"  # RTNeural's loader would silently skip it
    source = project.parent / "unknown.json"
    source.write_text(json.dumps(model))
    before = _snapshot(project.parent)
    assert main(_cli(str(source), "--registry", str(project))) == 1
    out = capsys.readouterr().out
    assert f"FAIL {source}: not imported, nothing written" in out
    assert f"{source}: layers[1].type: unknown or unsupported layer type" in out and "'conv3d'" in out
    assert _snapshot(project.parent) == before


def test_cli_refuses_a_pytorch_state_dict_json(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = project.parent / "state.json"
    source.write_text(json.dumps({"lstm.weight_ih_l0": [[0.1]], "dense.weight": [[1.0]], "dense.bias": [0.0]}))
    assert main(_cli(str(source), "--registry", str(project))) == 1
    out = capsys.readouterr().out
    assert "not an RTNeural model file: it looks like a PyTorch state dict saved as JSON" in out
    assert not (project.parent / "models").exists() and project.read_bytes() == OLD_REGISTRY


def test_cli_refuses_a_taken_name(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_cli(str(GOLDEN / "gru_1d.json"), "--registry", str(project), "--name", "mine")) == 0
    capsys.readouterr()
    before = _snapshot(project.parent)
    for force in ((), ("--force",)):  # --force overwrites checkpoints, never an entry
        assert main(_cli(str(GOLDEN / "lstm.json"), "--registry", str(project), "--name", "mine", *force)) == 2
        err = capsys.readouterr().err
        assert err.startswith("modelreg: error: ") and "models.mine: a model of this name is in the registry" in err
        assert "Traceback" not in err
    assert _snapshot(project.parent) == before


def test_existing_checkpoint_needs_force(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stray = project.parent / "models" / "lstm.pt"
    stray.parent.mkdir()
    stray.write_bytes(b"an old checkpoint")
    assert main(_cli(str(GOLDEN / "lstm.json"), "--registry", str(project))) == 2
    assert "the checkpoint file exists already; pass --force" in capsys.readouterr().err
    assert stray.read_bytes() == b"an old checkpoint" and project.read_bytes() == OLD_REGISTRY
    capsys.readouterr()
    assert main(_cli(str(GOLDEN / "lstm.json"), "--registry", str(project), "--force")) == 0
    assert modelreg.load_registry(project)["lstm"].load() is not None
    # The replaced file is kept, as init --force keeps one (issue 23: --force lost trained weights).
    backups = list(stray.parent.glob("lstm.pt.bak-*"))
    assert [b.read_bytes() for b in backups] == [b"an old checkpoint"]
    assert f"backup      the checkpoint it replaced is kept as " in capsys.readouterr().out


def test_cli_refuses_an_unwritable_folder(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project.parent / "models").write_text("a file where the models folder should be")
    before = _snapshot(project.parent)
    assert main(_cli(str(GOLDEN / "dense.json"), "--registry", str(project))) == 2
    err = capsys.readouterr().err
    assert err.startswith("modelreg: error: ") and "cannot write the checkpoint" in err
    assert "models is a file, not a folder" in err and "Traceback" not in err
    assert _snapshot(project.parent) == before  # no registry change, no temporary file left


@pytest.mark.parametrize(("argv", "message"), [
    (("{golden}/dense.json", "--name", "Not Valid"), "name: invalid model name"),
    (("{folder}/nothere.json",), "file not found"),
    (("{folder}",), "expected a file, found a directory"),
    (("{golden}/dense.json", "--latency-ms", "0"), "expected a number of milliseconds > 0"),
    (("{golden}/dense.json", "--exports", "tflite"), "unknown exporter"),
    (("{golden}/dense.json", "--input-range", "1", "-1"),
     "input_range: invalid input range (expected (min, max): two finite numbers, min < max, found [1.0, -1.0])"),
    (("{golden}/dense.json", "--input-range", "nan", "1"), "argument --input-range: expected a finite number, found 'nan'"),
])
def test_cli_usage_errors_exit_2_and_write_nothing(argv: tuple[str, ...], message: str, project: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(project.parent)
    args = [a.format(golden=GOLDEN, folder=project.parent) for a in argv]
    try:
        code = main(_cli(*args, "--registry", str(project)))
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    assert code == 2
    assert message in capsys.readouterr().err
    assert _snapshot(project.parent) == before


def test_a_failed_proof_refuses_the_import(project: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # A reader bug (one recurrent kernel scaled) must be caught by the proof, not written.
    from modelreg.rtneural import format as rtneural_format

    original = rtneural_format.from_rtneural

    def broken(*args: Any, **kwargs: Any) -> Any:
        in_size, specs, state = original(*args, **kwargs)
        state["layers.0.weight_hh_l0"] = state["layers.0.weight_hh_l0"] * np.float32(1.01)
        return in_size, specs, state

    monkeypatch.setattr(rtneural_format, "from_rtneural", broken)
    assert main(_cli(str(GOLDEN / "gru_1d.json"), "--registry", str(project))) == 1
    out = capsys.readouterr().out
    assert "does not reproduce the file in the reference runtime" in out
    assert "re-exporting the imported checkpoint does not give the file's float32 weights" in out
    assert "layers[0].weights[1]" in out
    assert not (project.parent / "models").exists() and project.read_bytes() == OLD_REGISTRY


def test_inline_models_table_cannot_be_appended_to(tmp_path: Path) -> None:
    registry = tmp_path / "registry.toml"
    old = (b'models = { a = { description = "x", input_shape = [1, 1], output_shape = [1, 1], dtype = "float32", '
           b'params = 2, latency_ms = 1.0, checkpoint = "a.pt", layers = [{ type = "dense", units = 1, '
           b'activation = "linear" }] } }\n')
    registry.write_bytes(old)
    with pytest.raises(modelreg.RegistryError) as info:
        modelreg.import_rtneural(GOLDEN / "lstm_1d.json", registry)
    assert "cannot be appended to this registry" in str(info.value)
    assert registry.read_bytes() == old and not (tmp_path / "models").exists()


def test_layer_tables_round_trip_for_every_kind_example() -> None:
    from modelreg.adopting import layer_table

    for kind in kinds.kinds():
        for example in kind.examples:
            layer = kind.spec({"type": kind.name, **example}, 3)
            table = layer_table(layer, 3)
            assert kind.spec(table, 3) == layer and table["type"] == kind.name


# ---------------------------------------------------------------- RTNeural C++ (when the headers are beside the checkout)




@needs_rtneural
def test_import_is_proven_in_rtneural_cpp(project: Path, cpp: Path) -> None:
    for stem in ("dense", "gru_1d"):
        result = modelreg.import_rtneural(GOLDEN / f"{stem}.json", project)
        assert not result.cpp_parity.skipped and result.cpp_parity.ok, result.cpp_parity
        assert "stream_64" in result.cpp_parity.cases and result.cpp_parity.max_abs_error < 1e-6


def test_a_registry_changed_during_the_import_is_not_overwritten(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelreg import adopting

    check = adopting.check_new_registry

    def meanwhile(*args: Any) -> None:
        check(*args)
        with open(project, "ab") as handle:  # someone else appends while the proof ran
            handle.write(b"# edited meanwhile\n")

    monkeypatch.setattr(adopting, "check_new_registry", meanwhile)
    with pytest.raises(modelreg.RegistryError, match="changed while the model was being imported"):
        modelreg.import_rtneural(GOLDEN / "lstm_1d.json", project)
    assert project.read_bytes() == OLD_REGISTRY + b"# edited meanwhile\n"
    assert not (project.parent / "models").exists()
    assert sorted(p.name for p in project.parent.iterdir()) == ["registry.toml"]  # no temporary file left


# ---------------------------------------------------------------- every layer kind


EVERY_KIND = '''\
[models.oned]
description = "every 1-D kind"
input_shape = [1, 4]
output_shape = [1, 2]
dtype = "float32"
params = {oned}
latency_ms = 50.0
exports = ["rtneural"]
checkpoint = "models/oned.pt"
layers = [
    {{ type = "conv1d", units = 6, kernel_size = 3, dilation = 2, groups = 2 }},
    {{ type = "prelu" }},
    {{ type = "batchnorm" }},
    {{ type = "activation", activation = "elu" }},
    {{ type = "batchnorm", affine = false, epsilon = 0.001 }},
    {{ type = "lstm", units = 5 }},
    {{ type = "dense", units = 2, activation = "sigmoid" }},
]

[models.twod]
description = "conv2d and batchnorm2d over 8 features x 2 filters"
input_shape = [1, 16]
output_shape = [1, 3]
dtype = "float32"
params = {twod}
latency_ms = 50.0
exports = ["rtneural"]
checkpoint = "models/twod.pt"
layers = [
    {{ type = "conv2d", filters = 3, num_features_in = 8, kernel_size_time = 2, kernel_size_feature = 3, dilation = 2, strides = 2, padding = "same", activation = "relu" }},
    {{ type = "batchnorm2d", num_features_in = 4 }},
    {{ type = "gru", units = 4 }},
    {{ type = "dense", units = 3, activation = "linear" }},
]
'''


def test_every_layer_kind_round_trips_through_export_and_import(tmp_path: Path) -> None:
    # Files modelreg writes for every kind are adopted back as the same architecture, and
    # re-exported byte for byte (the weights bit-identical), proven in the reference runtime.
    source = tmp_path / "source" / "registry.toml"
    source.parent.mkdir()
    counts = {}
    for name in ("oned", "twod"):
        text = EVERY_KIND.format(oned=0, twod=0)
        source.write_text(text)
        registry = modelreg.load_registry(source, strict=False)
        problem = next(p for p in registry.invalid[name] if p.key == f"models.{name}.params")
        counts[name] = int(problem.expected.split(",")[0])  # "N, PyTorch's count ..."
    source.write_text(EVERY_KIND.format(**counts))
    registry = modelreg.load_registry(source)
    for spec in registry.values():
        modelreg.init_checkpoint(spec, seed=5)
    assert export_all(registry).ok
    target = tmp_path / "adopted" / "registry.toml"
    target.parent.mkdir()
    for name in ("oned", "twod"):
        written = source.parent / "models" / f"{name}.json"
        result = modelreg.import_rtneural(written, target, name=name, exports=["rtneural"])
        assert result.weights.ok and not result.notes, result
        assert result.spec.layers == registry[name].layers
        assert result.spec.params == counts[name]
    assert export_all(modelreg.load_registry(target)).ok
    for name in ("oned", "twod"):
        assert (target.parent / "models" / f"{name}.json").read_bytes() == \
            (source.parent / "models" / f"{name}.json").read_bytes(), name


# ---------------------------------------------------------------- fixed time lengths (issue 19, section 2)


def _fixed_time(stem: str, frames: int = 100) -> dict[str, Any]:
    """A golden file as Keras writes it for a model built for ``frames`` frames: [null, 100, N] shapes."""
    model = json.loads((GOLDEN / f"{stem}.json").read_text())
    model["in_shape"] = [None, frames, model["in_shape"][-1]]
    for layer in model["layers"]:
        layer["shape"] = [None, frames, layer["shape"][-1]]
    return model


@pytest.mark.parametrize("stem", ("lstm", "gru_1d"))
def test_a_file_with_a_fixed_time_length_checks_and_imports(stem: str, project: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    # RTNeural's loader reads only the last entry of a shape: [null, 100, 8] is 8.
    source = project.parent / f"{stem}_fixed.json"
    source.write_text(json.dumps(_fixed_time(stem)))
    assert main(["check", str(source)]) == 0, capsys.readouterr().out
    result = modelreg.import_rtneural(source, project)
    plain = modelreg.import_rtneural(GOLDEN / f"{stem}.json", project, name=f"{stem}_plain")
    assert result.spec.layers == plain.spec.layers and result.spec.input_shape == plain.spec.input_shape
    assert result.weights.ok and result.parity.ok
    assert torch.load(result.checkpoint, weights_only=True).keys() == torch.load(plain.checkpoint, weights_only=True).keys()


@pytest.mark.parametrize(("shape", "why"), [
    ([None, 0, 8], "a time length of 0"),
    ([4, 100, 8], "a batch size"),
    ([None, "100", 8], "a string"),
])
def test_a_fixed_time_length_must_still_be_a_shape(shape: list[Any], why: str, project: Path) -> None:
    from modelreg.rtneural.runtime import check_rtneural

    model = _fixed_time("lstm_1d")
    model["layers"][0]["shape"] = shape
    problems = check_rtneural(model, file="m.json")
    assert [p.key for p in problems] == ["layers[0].shape"], (why, problems)
