"""Exports: artifacts, registry.lock, freshness, parity of corrupted files, the export and check commands."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from modelreg import LayerSpec, load_registry, validate_all
from modelreg.layers import kinds
from modelreg.cli import main
from modelreg.onnx.exporter import ONNXExporter
from modelreg.rtneural.exporter import RTNeuralExporter
from modelreg.exporting import LOCK_FILENAME, export, export_all, freshness, read_lock

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from conftest import GOLDEN
FAST = {"latency_seconds": 0.05}


@pytest.fixture
def exported(tiny_registry):
    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["rtneural", "onnx"]'))
    report = export_all(tiny_registry)
    assert report.ok, [a.message for a in report.artifacts]
    return tiny_registry


def _states(registry_path, name):
    registry = load_registry(registry_path)
    spec = registry[name]
    lock = read_lock(registry.root)
    return {e.name: freshness(spec, e, lock).state for e in (RTNeuralExporter(), ONNXExporter())}


def test_export_writes_artifacts_and_lock(exported):
    root = exported.parent
    for name in ("tinydense", "tinylstm", "tinygru"):
        assert (root / "models" / f"{name}.json").is_file()
        assert (root / "models" / "onnx" / f"{name}.onnx").is_file()
    text = (root / LOCK_FILENAME).read_text()
    assert text.startswith("# Written by `modelreg export`")
    record = tomllib.loads(text)["models"]["tinylstm"]["artifacts"]["onnx"]
    assert record["path"] == "models/onnx/tinylstm.onnx"
    assert record["exporter_version"] == ONNXExporter.version and record["torch"] == torch.__version__
    assert set(record) >= {"sha256", "entry_sha256", "checkpoint_sha256", "exporter", "modelreg"}


def test_second_export_keeps_fresh_artifacts_and_force_rewrites(exported, capsys):
    assert {a.status for a in export_all(exported).artifacts} == {"fresh"}
    assert main(["export", "--registry", str(exported), "--force", "--format", "rtneural"]) == 0
    out = capsys.readouterr().out
    assert "3 written, 0 fresh, 0 failed" in out and "wrote tinygru -> " in out


def test_rtneural_export_is_byte_identical_for_the_same_checkpoint(exported):
    path = exported.parent / "models" / "tinylstm.json"
    before = path.read_bytes()
    export("tinylstm", exported, force=True, formats=["rtneural"])
    assert path.read_bytes() == before
    assert b"\n" not in before and b"  " not in before  # compact


def test_rtneural_export_is_lossless(exported):
    registry = load_registry(exported)
    module = registry["tinydense"].load()
    data = json.loads((exported.parent / "models" / "tinydense.json").read_text())
    kernel = np.asarray(data["layers"][0]["weights"][0], dtype=np.float32)
    assert np.array_equal(kernel.T, module.state_dict()["layers.0.weight"].numpy())  # bit-identical


def test_freshness_states(exported):
    assert _states(exported, "tinygru") == {"rtneural": "fresh", "onnx": "fresh"}
    # A new description or latency target does not make exports stale...
    exported.write_text(exported.read_text().replace('description = "a GRU', 'description = "the GRU'))
    assert _states(exported, "tinygru") == {"rtneural": "fresh", "onnx": "fresh"}
    # ...a new checkpoint does.
    from modelreg.checkpoint import init_checkpoint

    init_checkpoint(load_registry(exported)["tinygru"], seed=99, force=True)
    assert _states(exported, "tinygru") == {"rtneural": "stale", "onnx": "stale"}
    # A hand-edited artifact is tampered.
    onnx_file = exported.parent / "models" / "onnx" / "tinylstm.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10])
    assert _states(exported, "tinylstm")["onnx"] == "tampered"
    # A removed one is missing.
    (exported.parent / "models" / "tinydense.json").unlink()
    assert _states(exported, "tinydense")["rtneural"] == "missing"


def test_the_lock_records_the_checkpoint_an_artifact_was_made_from(exported, monkeypatch):
    # A checkpoint replaced while its model is exported (a training run saving its next
    # epoch): the artifact holds the old weights, so the lock must name the old file and
    # validate must call the artifact stale. Hashing the checkpoint again when writing the
    # lock recorded the new file, and the old weights passed as fresh.
    import hashlib

    from modelreg.checkpoint import init_checkpoint

    checkpoint = exported.parent / "models" / "tinygru.pt"
    loaded = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    write = RTNeuralExporter.export

    def export_then_retrain(self, spec, module, path):
        write(self, spec, module, path)
        if spec.name == "tinygru":
            init_checkpoint(spec, seed=99, force=True)

    monkeypatch.setattr(RTNeuralExporter, "export", export_then_retrain)
    assert export("tinygru", exported, force=True, formats=["rtneural"]).ok
    assert hashlib.sha256(checkpoint.read_bytes()).hexdigest() != loaded
    record = read_lock(exported.parent)["models"]["tinygru"]["artifacts"]["rtneural"]
    assert record["checkpoint_sha256"] == loaded
    assert _states(exported, "tinygru")["rtneural"] == "stale"


def test_load_keeps_the_hash_of_the_checkpoint_bytes_it_loaded(exported):
    import hashlib

    spec = load_registry(exported)["tinylstm"]
    assert spec.load().checkpoint_sha256 == hashlib.sha256(spec.checkpoint.read_bytes()).hexdigest()
    assert spec.build().checkpoint_sha256 is None


def test_an_artifact_replaced_before_the_lock_is_written_is_not_recorded_as_ours(exported, monkeypatch):
    # Another export installs its own file between our rename and our lock update: that run
    # records its file; recording ours would describe bytes that are gone.
    import os

    from modelreg import exporting

    path = exported.parent / "models" / "tinydense.json"
    lock_file = exported.parent / LOCK_FILENAME
    sha = read_lock(exported.parent)["models"]["tinydense"]["artifacts"]["rtneural"]["sha256"]
    lock_file.write_text(lock_file.read_text().replace(sha, "0" * 64))  # a record ours would overwrite
    record = exporting._record

    def someone_else_installs_first(root, made):
        other = path.with_name("other.json")
        other.write_bytes(path.read_bytes() + b"\n")  # another run's file
        os.replace(other, path)
        record(root, made)

    monkeypatch.setattr(exporting, "_record", someone_else_installs_first)
    assert export("tinydense", exported, force=True, formats=["rtneural"]).ok
    assert read_lock(exported.parent)["models"]["tinydense"]["artifacts"]["rtneural"]["sha256"] == "0" * 64
    monkeypatch.setattr(exporting, "_record", record)  # undisturbed, the run records its file
    assert export("tinydense", exported, force=True, formats=["rtneural"]).ok
    assert read_lock(exported.parent)["models"]["tinydense"]["artifacts"]["rtneural"]["sha256"] == sha


def test_changed_architecture_is_stale_not_a_parity_failure(exported):
    text = exported.read_text().replace("{ type = \"gru\", units = 4 }", "{ type = \"gru\", units = 5 }")
    exported.write_text(text.replace("params = 118", "params = 162"))
    from modelreg.checkpoint import init_checkpoint

    init_checkpoint(load_registry(exported)["tinygru"], force=True)
    report = validate_all(exported, write=False, **FAST)["tinygru"]
    assert report["rtneural.fresh"].status == "fail" and "stale" in report["rtneural.fresh"].message
    assert "architecture changed" in report["rtneural.fresh"].message
    assert report["rtneural.parity"].status == "skip"
    # and the next export repairs it
    assert export_all(exported).ok
    assert validate_all(exported, write=False, **FAST)["tinygru"].ok


def _corrupt_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data["layers"])
    path.write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("model", "edit"),
    [
        # dense kernel rows swapped (inputs mixed up): shapes still fit, numbers do not.
        # (A transposed square kernel is covered in test_rtneural_format.py.)
        ("tinylstm", lambda layers: layers[0]["weights"].__setitem__(
            0, [layers[0]["weights"][0][1], layers[0]["weights"][0][0], layers[0]["weights"][0][2]])),
        # LSTM: swap the input and forget gate blocks of the kernel
        ("tinylstm", lambda layers: layers[1]["weights"].__setitem__(
            0, [row[2:4] + row[0:2] + row[4:] for row in layers[1]["weights"][0]])),
        # LSTM: only one of PyTorch's two bias vectors (halve the summed bias as a stand-in)
        ("tinylstm", lambda layers: layers[1]["weights"].__setitem__(2, [b * 0.5 for b in layers[1]["weights"][2]])),
        # GRU: swap the r and z blocks
        ("tinygru", lambda layers: layers[0]["weights"].__setitem__(
            0, [row[4:8] + row[0:4] + row[8:] for row in layers[0]["weights"][0]])),
        # GRU: sum the two bias rows into one (RTNeural keeps them apart)
        ("tinygru", lambda layers: layers[0]["weights"].__setitem__(
            2, [[a + b for a, b in zip(*layers[0]["weights"][2])], [0.0] * 12])),
    ],
    ids=["dense-rows-swapped", "lstm-gates-swapped", "lstm-bias-unsummed", "gru-rz-swapped", "gru-bias-summed"],
)
def test_layout_mistakes_fail_rtneural_parity(exported, model, edit):
    registry = load_registry(exported)
    spec = registry[model]
    path = exported.parent / "models" / f"{model}.json"
    _corrupt_json(path, edit)
    exporter = RTNeuralExporter()
    assert exporter.check_artifact(spec, path) == []  # the schema and shape rules cannot see it...
    parity = exporter.verify(spec, spec.load(), path, 1e-5)
    assert not parity.ok and parity.max_abs_error > 1e-3  # ...parity does


def test_onnx_graph_interface_streams_with_explicit_state(exported):
    import onnxruntime as ort

    registry = load_registry(exported)
    spec = registry["tinylstm"]
    session = ort.InferenceSession(str(exported.parent / "models" / "onnx" / "tinylstm.onnx"),
                                   providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x", "h1", "c1"]
    assert [o.name for o in session.get_outputs()] == ["y", "h1_out", "c1_out"]
    assert session.get_inputs()[0].shape == ["batch", 3] and session.get_inputs()[1].shape == [1, "batch", 2]
    module = spec.load()
    frames = np.random.default_rng(0).standard_normal((3, 20, 3)).astype(np.float32)  # batch 3: dynamic axis
    h = np.zeros((1, 3, 2), np.float32)
    c = np.zeros((1, 3, 2), np.float32)
    module.reset()
    for t in range(20):
        y, h, c = session.run(None, {"x": frames[:, t], "h1": h, "c1": c})
        with torch.inference_mode():
            expected = module(torch.from_numpy(frames[:, t])).numpy()
        assert np.max(np.abs(y - expected)) <= 1e-5


@pytest.mark.parametrize("tail", ["dense", "gru"])
@pytest.mark.parametrize("kind", kinds(), ids=lambda kind: kind.name)
def test_onnx_files_of_every_kind_run_at_any_batch(tmp_path, kind, tail):
    """The batch axis is declared dynamic: it must be, for every example of every kind
    (test_conv2d has the stack that once kept a traced batch of 1)."""
    from kind_tools import assert_onnx_runs_at_batch, spec_of, widened

    last = LayerSpec("dense", 3, "tanh") if tail == "dense" else LayerSpec("gru", 3)
    for example in kind.examples:
        spec = spec_of(tmp_path, 6, [kind.spec({"type": kind.name, **example}, 6), last])
        assert_onnx_runs_at_batch(spec, widened(spec, seed=3), tmp_path)


def test_corrupted_onnx_weights_fail_parity(exported):
    import onnx
    from onnx import numpy_helper

    registry = load_registry(exported)
    spec = registry["tinydense"]
    path = exported.parent / "models" / "onnx" / "tinydense.onnx"
    model = onnx.load(str(path))
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if array.ndim == 2:
            init.CopyFrom(numpy_helper.from_array(array[::-1].copy(), init.name))  # rows reversed
            break
    onnx.save(model, str(path))
    exporter = ONNXExporter()
    assert exporter.check_artifact(spec, path) == []
    assert not exporter.verify(spec, spec.load(), path, 1e-5).ok


def test_wrong_export_is_never_installed_and_old_artifact_kept(exported, monkeypatch):
    path = exported.parent / "models" / "tinydense.json"
    before = path.read_bytes()
    import modelreg.rtneural.format as fmt

    original = fmt.to_rtneural

    def transposed(layers, in_size, state):
        state = dict(state)
        state["layers.1.weight"] = state["layers.1.weight"][::-1].copy()  # rows swapped: a layout bug
        return original(layers, in_size, state)

    monkeypatch.setattr(fmt, "to_rtneural", transposed)
    report = export("tinydense", exported, formats=["rtneural"], force=True)
    (artifact,) = report.artifacts
    assert artifact.status == "failed"
    assert "does not behave like the model" in artifact.message and "previous artifact was kept" in artifact.message
    assert path.read_bytes() == before
    assert not list(path.parent.glob(".*.partial"))


def test_cli_export_unknown_format_and_model(exported, capsys):
    assert main(["export", "--registry", str(exported), "--format", "tflite"]) == 2
    assert "no exporter named 'tflite' (expected one of" in capsys.readouterr().err
    assert main(["export", "nosuchmodel", "--registry", str(exported)]) == 2
    assert "no model named 'nosuchmodel'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["dense", "lstm", "lstm_1d", "gru_1d"])
def test_cli_check_accepts_rtneural_golden_files(name, capsys):
    assert GOLDEN.is_dir(), f"RTNeural golden data missing at {GOLDEN}"
    assert main(["check", str(GOLDEN / f"{name}.json")]) == 0
    assert capsys.readouterr().out.startswith(f"ok   {GOLDEN / name}.json: ")


def test_cli_check_rejects_contradicting_dimensions(tmp_path, capsys):
    data = json.loads((GOLDEN / "lstm_1d.json").read_text())
    data["layers"][1]["weights"][0] = data["layers"][1]["weights"][0][:-1]  # dense kernel loses a row
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    truncated = tmp_path / "truncated.json"
    truncated.write_text((GOLDEN / "gru_1d.json").read_text()[:500])
    code = main(["check", str(bad), str(truncated), str(GOLDEN / "dense.json")])
    captured = capsys.readouterr()
    assert code == 1  # files read and found broken: failed checks
    assert "bad.json: layers[1].weights[0]" in captured.out and "7" in captured.out
    assert f"FAIL {truncated}: 1 problem" in captured.out
    assert "ok   " in captured.out and "dense.json" in captured.out  # the good file is still reported
    assert captured.err == ""
