"""`modelreg check FILE ...`: what it reads, what it says about files it does not read, and its exit codes.

`check` picks a reader by the file's suffix (each exporter's ``suffix``): RTNeural JSON
with modelreg's own reader, anything else through its exporter's ``check_file``. A file
that was read and is wrong fails (exit 1, a ``FAIL`` block on stdout); a file that
cannot be checked at all (missing, a folder, a kind no exporter reads) is refused
(exit 2, one ``modelreg: error:`` line). Runs in-process, in a temporary folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from modelreg import Exporter, Problem, check_rtneural, load_rtneural
from modelreg.cli import main
from modelreg.plugins import register_exporter, unregister_exporter
from modelreg.registry import REGISTRY_ENV

from conftest import run_cli as run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    monkeypatch.chdir(tmp_path)




def two_dense_layers() -> dict[str, Any]:
    """in 2 -> dense 3 (tanh) -> dense 1 (sigmoid): two layers in the file, four in the runtime."""
    return {
        "in_shape": [None, None, 2],
        "layers": [
            {"type": "dense", "activation": "tanh", "shape": [None, None, 3],
             "weights": [[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], [0.0, 0.1, -0.1]]},
            {"type": "dense", "activation": "sigmoid", "shape": [None, None, 1],
             "weights": [[[1.0], [2.0], [3.0]], [0.5]]},
        ],
    }


def write_json(name: str, data: Any) -> str:
    Path(name).write_text(json.dumps(data), encoding="utf-8")
    return name


# --------------------------------------------------------------------------- RTNeural files


def test_layer_count_is_the_files_own(capsys):
    name = write_json("two.json", two_dense_layers())
    assert len(load_rtneural(name).layers) == 4  # the runtime splits dense + activation
    code, out, err = run(["check", name], capsys)
    assert (code, err) == (0, "")
    assert out == "ok   two.json: RTNeural model, 2 layers, 2 -> 1, stateless\n"


def test_stand_alone_activation_layers_count_as_written(capsys):
    data = two_dense_layers()
    data["layers"][1]["activation"] = ""
    data["layers"].append({"type": "activation", "activation": "sigmoid", "shape": [None, None, 1], "weights": []})
    name = write_json("three.json", data)
    code, out, _ = run(["check", name], capsys)
    assert code == 0
    assert out == "ok   three.json: RTNeural model, 3 layers, 2 -> 1, stateless\n"
    assert load_rtneural(name).file_layers == 3


def validation_results() -> dict[str, Any]:
    """A results document shaped as `modelreg validate` writes it (the keys its schema requires)."""
    schema = json.loads((ROOT / "schemas" / "validation_results.schema.json").read_text(encoding="utf-8"))
    document: dict[str, Any] = {
        "format": 1, "ok": True, "registry": "registry.toml",
        "environment": {"python": "3.11", "torch": "2.13.0", "platform": "Linux", "modelreg": "0.1.0",
                        "time": "2026-11-24T00:00:00Z"},
        "problems": [], "models": {}, "warnings": [],
    }
    assert set(schema["required"]) == set(document)
    return document


@pytest.mark.parametrize(
    ("data", "looks_like", "found"),
    [
        (validation_results(), "modelreg's validation results (written by `modelreg validate`)",
         "keys 'format', 'ok', 'registry', 'environment', 'problems', 'models', ..."),
        # The layout RTNeural's torch_helpers.h reads tensor by tensor (loadDense, loadGRU, loadLSTM).
        ({"dense1.weight": [[0.1, 0.2]], "dense1.bias": [0.0], "gru.weight_ih_l0": [[0.3]], "gru.bias_hh_l0": [0.1]},
         "a PyTorch state dict saved as JSON (tensors by name, such as 'dense.weight', as RTNeural's torch_helpers.h "
         "reads them layer by layer; json_parser::parseJson and `modelreg check` read whole models with in_shape and "
         "layers, as `modelreg export` writes them; one that the rtneural-torch exporter wrote is checked against "
         "its entry by `modelreg validate`)",
         "keys 'dense1.weight', 'dense1.bias', 'gru.weight_ih_l0', 'gru.bias_hh_l0'"),
        ({"name": "synth", "version": 2}, "another kind of JSON document", "keys 'name', 'version'"),
        ({}, "an empty JSON object", "an empty object"),
    ],
    ids=["validation-results", "torch-state-dict", "other-object", "empty-object"],
)
def test_a_json_object_that_is_not_a_model_says_what_it_is(data, looks_like, found, capsys):
    name = write_json("thing.json", data)
    code, out, err = run(["check", name], capsys)
    expected = (f"thing.json: not an RTNeural model file: it looks like {looks_like} "
                f"(expected an object with in_shape and layers, found {found})")
    assert (code, err) == (1, "")  # read and found wrong: a failed check
    assert out == f"FAIL thing.json: 1 problem\n       {expected}\n"
    assert "missing required key" not in out
    # The API says the same (one place decides it).
    assert [str(p) for p in check_rtneural(data, file="thing.json")] == [expected]


def test_a_broken_model_still_gets_its_detailed_problems(capsys):
    data = two_dense_layers()
    del data["in_shape"]
    name = write_json("broken.json", data)
    code, out, err = run(["check", name], capsys)
    assert (code, err) == (1, "")
    assert out.splitlines() == ["FAIL broken.json: 1 problem", "       broken.json: in_shape: missing required key"]


# --------------------------------------------------------------------------- ONNX


def tiny_onnx(path: str, first_input: str = "x") -> str:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", [first_input], ["y"])], "tiny",
        [helper.make_tensor_value_info(first_input, TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, path)
    return path


def test_an_onnx_file_is_checked_by_the_onnx_exporter(capsys):
    name = tiny_onnx("good.onnx")
    code, out, err = run(["check", name], capsys)
    assert (code, err) == (0, "")
    assert out == "ok   good.onnx: passes the 'onnx' exporter's file checks\n"


def test_a_damaged_onnx_file_fails_as_onnx_not_as_utf8(capsys):
    Path("bad.onnx").write_bytes(b"\x08\xff\xfe" + bytes(range(256)))
    code, out, err = run(["check", "bad.onnx"], capsys)
    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[0] == "FAIL bad.onnx: 1 problem"
    assert lines[1].startswith("       bad.onnx: not a valid ONNX model: ")
    assert "UTF-8" not in out


def test_an_onnx_file_without_modelregs_interface_fails(capsys):
    name = tiny_onnx("other.onnx", first_input="input")
    code, out, _ = run(["check", name], capsys)
    assert code == 1
    assert out.splitlines()[1] == "       other.onnx: unexpected graph inputs (expected 'x' first, found ['input'])"


def test_onnx_check_artifact_still_names_the_model(tmp_path):
    from modelreg import get_exporter

    Path("bad.onnx").write_bytes(b"junk")

    class Spec:
        name = "tiny"

    (problem,) = get_exporter("onnx").check_artifact(Spec(), tmp_path / "bad.onnx")  # type: ignore[arg-type]
    assert problem.model == "tiny" and problem.reason.startswith("not a valid ONNX model")


# --------------------------------------------------------------------------- files check does not read


KINDS = "a file ending in .h (rtneural-cpp), .json (rtneural), .nam (nam) or .onnx (onnx)"


@pytest.mark.parametrize(
    ("name", "what"),
    [
        ("registry.lock", "it is modelreg's registry.lock (hashes of the exported artifacts; `modelreg validate` "
                          "checks them)"),
        ("registry.toml", "it looks like a registry (`modelreg validate --registry FILE` checks one)"),
        ("model.pt", "it looks like a PyTorch checkpoint (`modelreg validate` checks a checkpoint against its "
                     "registry entry)"),
        ("model.safetensors", "it looks like a safetensors checkpoint (`modelreg validate` checks a checkpoint "
                              "against its registry entry)"),
        ("notes.txt", "no exporter reads files ending in '.txt'"),
        ("README", "a file name without a suffix"),
    ],
    ids=["registry-lock", "registry", "checkpoint", "safetensors", "txt", "no-suffix"],
)
def test_a_kind_no_exporter_reads_is_refused_naming_the_kinds(name, what, capsys):
    Path(name).write_text("[models]\n")
    code, out, err = run(["check", name], capsys)
    assert (code, out) == (2, "")
    assert err == f"modelreg: error: {name}: not a kind of file `modelreg check` reads: {what} (expected {KINDS})\n"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda: None, "gone.json: file not found"),
        (lambda: Path("gone.json").mkdir(), "gone.json: expected a file, found a directory"),
    ],
    ids=["missing", "directory"],
)
def test_a_file_that_cannot_be_read_is_refused(setup, message, capsys):
    setup()
    code, out, err = run(["check", "gone.json"], capsys)
    assert (code, out, err) == (2, "", f"modelreg: error: {message}\n")


def test_every_file_is_checked_and_the_worst_outcome_decides(capsys):
    good = write_json("good.json", two_dense_layers())
    bad = write_json("bad.json", {"name": "x"})
    code, out, err = run(["check", bad, good], capsys)
    assert code == 1
    assert "FAIL bad.json: 1 problem" in out and "ok   good.json: " in out and err == ""
    code, out, err = run(["check", "missing.json", bad, good], capsys)
    assert code == 2  # one file could not be checked at all: 2 wins over 1
    assert "FAIL bad.json" in out and "ok   good.json" in out
    assert err == "modelreg: error: missing.json: file not found\n"


# --------------------------------------------------------------------------- plugins


class BlobExporter(Exporter):
    """A plugin with a file kind of its own (``.blob``, which starts with ``BLOB``)."""

    name = "blobtest"
    suffix = ".blob"

    def artifact_path(self, spec: Any) -> Path:
        return spec.registry_dir / f"{spec.name}.blob"

    def export(self, spec: Any, module: Any, path: Path) -> None:
        raise NotImplementedError

    def verify(self, spec: Any, module: Any, path: Path, tolerance: float) -> Any:
        raise NotImplementedError

    def check_file(self, path: Path) -> list[Problem]:
        if not path.read_bytes().startswith(b"BLOB"):
            return [Problem("not a blob", file=str(path), expected="b'BLOB' first")]
        return []


class MuteExporter(Exporter):
    """Claims a suffix but defines no check_file: it cannot check a file on its own."""

    name = "mutetest"
    suffix = ".mute"

    def artifact_path(self, spec: Any) -> Path:
        return spec.registry_dir / f"{spec.name}.mute"

    def export(self, spec: Any, module: Any, path: Path) -> None:
        raise NotImplementedError

    def verify(self, spec: Any, module: Any, path: Path, tolerance: float) -> Any:
        raise NotImplementedError


@pytest.fixture
def plugins():
    register_exporter(BlobExporter)
    register_exporter(MuteExporter)
    yield
    unregister_exporter("blobtest")
    unregister_exporter("mutetest")


def test_a_plugins_files_are_checked_through_its_check_file(plugins, capsys):
    Path("a.blob").write_bytes(b"BLOB1234")
    Path("b.blob").write_bytes(b"nope")
    code, out, err = run(["check", "a.blob", "b.blob"], capsys)
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "ok   a.blob: passes the 'blobtest' exporter's file checks",
        "FAIL b.blob: 1 problem",
        "       b.blob: not a blob (expected b'BLOB' first)",
    ]


def test_a_plugin_without_check_file_says_so(plugins, capsys):
    Path("a.mute").write_bytes(b"")
    code, out, err = run(["check", "a.mute"], capsys)
    assert (code, out) == (2, "")
    assert err == ("modelreg: error: a.mute: the 'mutetest' exporter cannot check a file on its own "
                   "(expected an exporter that defines check_file(path))\n")
    # ...and the list of kinds names the plugins' suffixes.
    Path("x.txt").write_text("")
    _, _, err = run(["check", "x.txt"], capsys)
    assert "(expected a file ending in .blob (blobtest), .h (rtneural-cpp), .json (rtneural), .mute (mutetest), .nam (nam) or .onnx (onnx))" in err


def test_the_default_check_file_refuses(tmp_path):
    from modelreg import UsageError

    with pytest.raises(UsageError, match="the 'mutetest' exporter cannot check a file on its own"):
        MuteExporter().check_file(tmp_path / "a.mute")
