"""The catalogue of hostile inputs that are not a registry file.

(Broken registries have their own catalogue: ``tests/bad_registries/``.) Each
case breaks a fresh copy of a small exported project (three tiny models,
checkpoints, RTNeural and ONNX artifacts, ``registry.lock``), runs one
``modelreg`` command in it and asserts:

* the exit code: 2 for a bad registry, path, file argument or environment
  (the command cannot do its job), 1 for a failed check (a checkpoint or
  artifact that ``validate`` checks, or a file that ``check`` reads, found broken);
* the message: one exact line of stdout (a failed check, as ``validate``
  prints it under the model) or stderr (``modelreg: error: ...``), compared
  after stripping the line's indentation. ``{outside}`` stands for the folder
  outside the project that symlinks point to; a regex is used only where a
  number genuinely varies;
* no traceback, and, for the cases that need it, that nothing ran, nothing
  outside the project was touched and the previous files are intact.

Most cases call ``modelreg.cli.main`` in-process (fast); the cases marked
``process=True`` run ``python -m modelreg`` as a real subprocess, to prove
that no traceback reaches a real terminal (the pickle exploit, a full disk).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import resource
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

import modelreg
from modelreg.checkpoint import init_checkpoint
from modelreg.cli import main
from modelreg.exporting import export_all
from modelreg.plugins import Exporter, Parity, register_exporter, unregister_exporter
from modelreg.registry import REGISTRY_ENV

from conftest import write_registry

PREFIX = "modelreg: error: "
VALIDATE = ("validate", "tinydense", "--latency-seconds", "0.01")
VALIDATE_ALL = ("validate", "--latency-seconds", "0.01")
EXPORT = ("export",)
EXPORT_FORCE = ("export", "--force")


# --------------------------------------------------------------------------- the project every case breaks


@pytest.fixture(scope="module")
def exported_project(tmp_path_factory) -> Path:
    """Three tiny models with seeded checkpoints, exported to RTNeural and ONNX, validated once."""
    folder = tmp_path_factory.mktemp("hostile") / "project"
    path = write_registry(folder)
    path.write_text(path.read_text().replace("exports = []", 'exports = ["rtneural", "onnx"]'))
    for spec in modelreg.load_registry(path).values():
        init_checkpoint(spec, seed=0)
    assert export_all(path).ok
    assert modelreg.validate_all(path, latency_seconds=0.01).ok  # writes models/validation_results.json
    return folder


@dataclass(frozen=True)
class Case:
    id: str
    setup: Callable[[Path], None]  # breaks the project (its argument: the project folder)
    argv: tuple[str, ...]  # after `modelreg`; `--registry registry.toml` is added (but to `check`)
    code: int
    expected: str  # one whole line of the output (indentation stripped)
    stream: str = "out"  # "out" or "err"
    regex: bool = False
    process: bool = False  # run as a real subprocess
    after: Callable[[Path], None] | None = field(default=None)  # more assertions (nothing ran, files intact)


def project_file(project: Path, relative: str) -> Path:
    return project / relative


def outside(project: Path) -> Path:
    """A folder beside the project (outside the registry's folder)."""
    folder = project.parent / "outside"
    folder.mkdir(exist_ok=True)
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------- setups: checkpoints

CKPT = "models/tinydense.pt"


def write_checkpoint(data: bytes) -> Callable[[Path], None]:
    return lambda project: (project / CKPT).write_bytes(data)


def edit_state(edit: Callable[[dict[str, torch.Tensor]], None]) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        state = torch.load(project / CKPT, weights_only=True)
        edit(state)
        torch.save(state, project / CKPT)

    return setup


def truncate_checkpoint(project: Path) -> None:
    data = (project / CKPT).read_bytes()
    (project / CKPT).write_bytes(data[: len(data) // 2])


def checkpoint_is_a_folder(project: Path) -> None:
    (project / CKPT).unlink()
    (project / CKPT).mkdir()


def zip_not_from_torch(project: Path) -> None:
    with zipfile.ZipFile(project / CKPT, "w") as archive:
        archive.writestr("weights.txt", "0.1 0.2 0.3")


def set_item(name: str, index: tuple[int, ...], value: float) -> Callable[[dict[str, torch.Tensor]], None]:
    def edit(state: dict[str, torch.Tensor]) -> None:
        state[name][index] = value

    return edit


def pin_other_sha256(project: Path) -> None:
    registry = project / "registry.toml"
    registry.write_text(registry.read_text().replace(
        'checkpoint = "models/tinydense.pt"', 'checkpoint = "models/tinydense.pt"\nsha256 = "' + "ab" * 32 + '"'))


class _Exploit:
    """Unpickled, this would run a shell command that creates a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def marker(project: Path) -> Path:
    return project.parent / "pwned"


def exploit_in_torch_save(project: Path) -> None:
    torch.save({"layers.0.weight": _Exploit(str(marker(project)))}, project / CKPT)


def exploit_as_plain_pickle(project: Path) -> None:
    (project / CKPT).write_bytes(pickle.dumps({"layers.0.weight": _Exploit(str(marker(project)))}))


def nothing_ran(project: Path) -> None:
    assert not marker(project).exists(), "the pickle's code ran"


# ----------------------------------------------------------------- setups: exported files

JSON = "models/tinydense.json"
ONNX = "models/onnx/tinydense.onnx"


def bad_json(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    """``bad.json``: a copy of tinylstm's RTNeural file (dense 3->4 tanh, lstm 4->2), edited."""

    def setup(project: Path) -> None:
        data = json.loads((project / "models/tinylstm.json").read_text())
        edit(data)
        (project / "bad.json").write_text(json.dumps(data))

    return setup


def bad_json_text(make: Callable[[str], str | bytes]) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        content = make((project / "models/tinylstm.json").read_text())
        target = project / "bad.json"
        target.write_bytes(content if isinstance(content, bytes) else content.encode())

    return setup


def layer(data: dict, index: int) -> dict:
    return data["layers"][index]


def drop_kernel_row(data: dict) -> None:
    layer(data, 0)["weights"][0].pop()


def drop_bias_entry(data: dict) -> None:
    layer(data, 0)["weights"][1].pop()


def narrow_recurrent_kernel(data: dict) -> None:
    layer(data, 1)["weights"][1] = [row[:6] for row in layer(data, 1)["weights"][1]]


def ragged_rows(data: dict) -> None:
    layer(data, 1)["weights"][0][2].pop()


def truncate(relative: str, size: int) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        path = project / relative
        path.write_bytes(path.read_bytes()[:size])

    return setup


def tamper_json(project: Path) -> None:
    data = json.loads((project / JSON).read_text())
    data["layers"][0]["weights"][1][0] = 0.25
    (project / JSON).write_text(json.dumps(data, separators=(",", ":")))


def new_checkpoint(project: Path) -> None:
    init_checkpoint(modelreg.load_registry(project / "registry.toml")["tinydense"], seed=7, force=True)


def artifact_of_another_model(project: Path) -> None:
    shutil.copy(project / "models/tinylstm.json", project / JSON)


def replace_with_folder(relative: str) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        path = project / relative
        path.unlink()
        path.mkdir()

    return setup


# ----------------------------------------------------------------- setups: paths


def _move_outside(project: Path, relative: str) -> None:
    """Move ``project/relative`` out of the registry's folder and leave a symlink to it in its place."""
    source = project / relative
    target = outside(project) / source.name
    shutil.move(source, target)
    source.symlink_to(target)


def artifact_symlink_outside(project: Path) -> None:
    _move_outside(project, JSON)


def outside_untouched(project: Path) -> None:
    # The symlink is still a symlink, the file it points to is unchanged, nothing else was written there.
    assert (project / JSON).is_symlink()
    target = outside(project) / "tinydense.json"
    assert sha(target) == sha(project.parent / "original" / JSON)
    assert sorted(p.name for p in outside(project).iterdir()) == ["tinydense.json"]


def onnx_folder_symlink_outside(project: Path) -> None:
    _move_outside(project, "models/onnx")


def onnx_outside_untouched(project: Path) -> None:
    folder = outside(project) / "onnx"
    original = project.parent / "original" / "models/onnx"
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in original.iterdir())
    for path in folder.iterdir():
        assert sha(path) == sha(original / path.name)


def models_folder_symlink_outside(project: Path) -> None:
    _move_outside(project, "models")


def results_symlink_outside(project: Path) -> None:
    _move_outside(project, "models/validation_results.json")


def lock_symlink_outside(project: Path) -> None:
    _move_outside(project, "registry.lock")


class _Escaping(Exporter):
    """A plugin whose artifact path leaves the registry's folder."""

    name = "escaping"

    def __init__(self, where: Callable[[Path, str], Path]) -> None:
        self.where = where

    def artifact_path(self, spec):
        return self.where(spec.registry_dir, spec.name)

    def export(self, spec, module, path):
        path.write_text("exported")

    def verify(self, spec, module, path, tolerance):
        return Parity(max_error=0.0, max_abs_error=0.0, tolerance=tolerance)


def plugin_path(where: Callable[[Path, str], Path]) -> Callable[[Path], None]:
    def setup(project: Path) -> None:
        register_exporter(_Escaping(where), replace=True)
        registry = project / "registry.toml"
        registry.write_text(registry.read_text().replace('exports = ["rtneural", "onnx"]', 'exports = ["escaping"]', 1))

    return setup


def nothing_outside(project: Path) -> None:
    assert list(outside(project).iterdir()) == []


# ----------------------------------------------------------------- setups: environment


def onnx_folder_is_a_file(project: Path) -> None:
    shutil.rmtree(project / "models/onnx")
    (project / "models/onnx").write_text("a file where the folder should be")
    new_checkpoint(project)  # so that every artifact must be rewritten


def results_is_a_folder(project: Path) -> None:
    (project / "models/validation_results.json").unlink()
    (project / "models/validation_results.json").mkdir()


def lock_is_a_folder(project: Path) -> None:
    (project / "registry.lock").unlink()
    (project / "registry.lock").mkdir()


def damaged_lock(project: Path) -> None:
    (project / "registry.lock").write_text("[models.tinydense\n")


def previous_files_intact(project: Path) -> None:
    original = project.parent / "original"
    for relative in ("models/tinydense.json", "models/tinylstm.json", "models/tinygru.json", "registry.lock",
                     "models/validation_results.json", *(f"models/onnx/{n}.onnx" for n in ("tinydense", "tinylstm", "tinygru"))):
        if (project / relative).is_file():
            assert sha(project / relative) == sha(original / relative), f"{relative} changed"
    leftovers = [p.name for p in project.rglob(".*") if p.name.endswith((".tmp", ".partial"))]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def rtneural_intact_and_no_temp(project: Path) -> None:
    previous_files_intact(project)


# The full-disk cases run as a subprocess with a file-size limit: a write beyond
# it fails with EFBIG, a real "disk full" for that process, half-way through the file.
FULL_DISK_BYTES = {"export": 400, "validate": 4096}


# --------------------------------------------------------------------------- the catalogue

TANH_LAYER0 = "bad.json: layers[0]"
CASES: list[Case] = [
    # ----- paths: nothing outside the registry's folder is read, written or followed
    # validate prints a model's problem once, in its FAIL block (stdout); stderr only points at it.
    Case("artifact-symlink-outside-validate", artifact_symlink_outside, VALIDATE, 2,
         "rtneural.exists: registry.toml: models.tinydense.exports[0]: artifact path leaves the registry's folder; nothing is "
         "read or written there (expected a path inside the registry's folder, found 'models/tinydense.json', "
         "a symlink to {outside}/tinydense.json)", stream="out"),
    Case("artifact-symlink-outside-export", artifact_symlink_outside, EXPORT_FORCE + ("tinydense",), 2,
         PREFIX + "registry.toml: models.tinydense.exports[0]: artifact path leaves the registry's folder; nothing is "
         "read or written there (expected a path inside the registry's folder, found 'models/tinydense.json', "
         "a symlink to {outside}/tinydense.json)", stream="err", process=True, after=outside_untouched),
    Case("artifact-folder-symlink-outside", onnx_folder_symlink_outside, EXPORT_FORCE + ("tinydense",), 2,
         PREFIX + "registry.toml: models.tinydense.exports[1]: artifact path leaves the registry's folder; nothing is "
         "read or written there (expected a path inside the registry's folder, found 'models/onnx/tinydense.onnx', "
         "through the symlink models/onnx -> {outside}/onnx)", stream="err", after=onnx_outside_untouched),
    Case("plugin-artifact-absolute-path", plugin_path(lambda root, name: root.parent / "outside" / f"{name}.bin"),
         EXPORT + ("tinydense",), 2,
         PREFIX + "registry.toml: models.tinydense.exports[0]: artifact path leaves the registry's folder; nothing is "
         "read or written there (expected a path inside the registry's folder, found '{outside}/tinydense.bin')",
         stream="err", after=nothing_outside),
    Case("plugin-artifact-parent-dir", plugin_path(lambda root, name: root / ".." / "outside" / f"{name}.bin"),
         EXPORT + ("tinydense",), 2,
         PREFIX + "registry.toml: models.tinydense.exports[0]: artifact path leaves the registry's folder; nothing is "
         "read or written there (expected a path inside the registry's folder, found '../outside/tinydense.bin')",
         stream="err", after=nothing_outside),
    Case("checkpoint-through-symlinked-folder", models_folder_symlink_outside, VALIDATE, 2,
         "entry: registry.toml: models.tinydense.checkpoint: checkpoint path leaves the registry's folder (expected a "
         "relative path inside the registry's folder, found 'models/tinydense.pt', through the symlink models -> "
         "{outside}/models)", stream="out"),
    Case("results-file-symlink-outside", results_symlink_outside, VALIDATE_ALL, 2,
         PREFIX + "registry.toml: the validation results file leaves the registry's folder; refusing to write it "
         "(expected a file inside the registry's folder, found 'models/validation_results.json', a symlink to "
         "{outside}/validation_results.json)", stream="err"),
    Case("lock-file-symlink-outside", lock_symlink_outside, EXPORT, 2,
         PREFIX + "registry.toml: registry.lock leaves the registry's folder; refusing to read or write it (expected a "
         "file inside the registry's folder, found 'registry.lock', a symlink to {outside}/registry.lock)", stream="err"),

    # ----- checkpoints: a failed `checkpoint` check (exit 1) naming file, key and what is wrong
    Case("checkpoint-missing", lambda p: (p / CKPT).unlink(), VALIDATE, 1,
         "checkpoint: models/tinydense.pt: models.tinydense.checkpoint: checkpoint file not found; "
         "run `modelreg init` to create seeded weights"),
    Case("checkpoint-empty", write_checkpoint(b""), VALIDATE, 1,
         "checkpoint: models/tinydense.pt: models.tinydense.checkpoint: checkpoint file is empty"),
    Case("checkpoint-truncated", truncate_checkpoint, VALIDATE, 1,
         "checkpoint: models/tinydense.pt: models.tinydense.checkpoint: not a readable PyTorch checkpoint (truncated or "
         "another format): PytorchStreamReader failed reading zip archive: failed finding central directory"),
    Case("checkpoint-is-text", write_checkpoint(b"weights: 0.1 0.2 0.3\n"), VALIDATE, 1,
         "checkpoint: models/tinydense.pt: models.tinydense.checkpoint: not a readable PyTorch checkpoint (another "
         "format: torch.save writes a zip archive) (expected a file starting with b'PK\\x03\\x04', found a file "
         "starting with b'weights:')"),
    Case("checkpoint-is-a-plain-pickle", write_checkpoint(pickle.dumps({"layers.0.weight": [[0.5] * 4] * 5}, protocol=4)),
         VALIDATE, 1,
         "checkpoint: models/tinydense.pt: models.tinydense.checkpoint: not a readable PyTorch checkpoint (another "
         "format: torch.save writes a zip archive) (expected a file starting with b'PK\\x03\\x04', found a file "
         "starting with b'\\x80\\x04\\x95J\\x00\\x00\\x00\\x00')"),
    Case("checkpoint-is-an-onnx-file", lambda p: shutil.copy(p / ONNX, p / CKPT), VALIDATE, 1,
         "checkpoint: models/tinydense.pt: models.tinydense.checkpoint: not a readable PyTorch checkpoint (another "
         "format: torch.save writes a zip archive) (expected a file starting with b'PK\\x03\\x04', found a file "
         "starting with b'\\x08\\x08\\x12\\x07pyto')"),
    Case("checkpoint-is-a-zip-not-from-torch", zip_not_from_torch, VALIDATE, 1,
         "checkpoint: models/tinydense.pt: models.tinydense.checkpoint: not a readable PyTorch checkpoint (truncated or "
         "another format): file in archive is not in a subdirectory: weights.txt"),
    Case("checkpoint-is-a-folder", checkpoint_is_a_folder, VALIDATE, 1,
         "checkpoint: models/tinydense.pt: models.tinydense.checkpoint: checkpoint is a folder (expected a state-dict file)"),
    Case("checkpoint-is-a-list", lambda p: torch.save([torch.zeros(5, 4)], p / CKPT), VALIDATE, 1,
         "checkpoint: models/tinydense.pt: models.tinydense.checkpoint: checkpoint is not a state dict (expected a dict "
         "of tensor name to tensor, found 'list')"),
    Case("checkpoint-values-not-tensors", lambda p: torch.save({"layers.0.weight": [0.5, 0.25]}, p / CKPT), VALIDATE, 1,
         "checkpoint: models/tinydense.pt: models.tinydense.checkpoint: checkpoint is not a state dict (expected a dict "
         "of tensor name to tensor, found 'a dict with non-tensor values')"),
    Case("checkpoint-tensor-wrong-shape", edit_state(lambda s: s.__setitem__("layers.0.weight", torch.zeros(5, 6))),
         VALIDATE, 1,
         "checkpoint: models/tinydense.pt: layers.0.weight: tensor has the wrong shape (expected shape [5, 4], found [5, 6])"),
    # (float16, and float64 holding float32 values, load: issue 23)
    Case("checkpoint-tensor-wrong-dtype", edit_state(lambda s: s.__setitem__("layers.1.bias", s["layers.1.bias"].int())),
         VALIDATE, 1,
         "checkpoint: models/tinydense.pt: layers.1.bias: tensor has the wrong dtype (expected float32, found int32)"),
    Case("checkpoint-tensor-float64-that-rounds",
         edit_state(lambda s: s.__setitem__("layers.1.bias", s["layers.1.bias"].double() + 1e-12)), VALIDATE, 1,
         "checkpoint: models/tinydense.pt: layers.1.bias: tensor is float64, and rounding it to float32 changes 3 of "
         "its 3 values (by up to 1e-12) (expected float32, found float64)"),
    Case("checkpoint-tensor-missing", edit_state(lambda s: s.pop("layers.1.weight")), VALIDATE, 1,
         "checkpoint: models/tinydense.pt: layers.1.weight: missing tensor (expected shape [3, 5])"),
    Case("checkpoint-tensor-extra", edit_state(lambda s: s.__setitem__("layers.2.weight", torch.zeros(2, 3))), VALIDATE, 1,
         "checkpoint: models/tinydense.pt: layers.2.weight: unexpected tensor (not part of this architecture) (found [2, 3])"),
    Case("checkpoint-nan-weight", edit_state(set_item("layers.0.weight", (1, 2), float("nan"))), VALIDATE, 1,
         "weights_finite: non-finite weights in layers.0.weight (1 NaN/Inf)"),
    Case("checkpoint-inf-weights", edit_state(lambda s: (set_item("layers.1.bias", (0,), float("inf"))(s),
                                                         set_item("layers.1.bias", (2,), float("-inf"))(s))),
         VALIDATE, 1, "weights_finite: non-finite weights in layers.1.bias (2 NaN/Inf)"),
    Case("checkpoint-sha256-pin-mismatch", pin_other_sha256, VALIDATE, 1,
         r"checkpoint: models/tinydense\.pt: models\.tinydense\.sha256: checkpoint does not match its pinned sha256 "
         r"\(changed or replaced since it was pinned\) \(expected (ab){32}, found '[0-9a-f]{64}'\)", regex=True),
    Case("checkpoint-pickle-exploit", exploit_in_torch_save, VALIDATE, 1,
         "checkpoint: models/tinydense.pt: models.tinydense.checkpoint: refused to load: the file holds objects other than "
         "tensors (Trying to load unsupported GLOBAL posix.system whose module posix is blocked.); nothing was executed "
         "(expected a state dict saved with torch.save(module.state_dict()))",
         process=True, after=nothing_ran),
    Case("checkpoint-raw-pickle-exploit", exploit_as_plain_pickle, VALIDATE, 1,
         r"checkpoint: models/tinydense\.pt: models\.tinydense\.checkpoint: not a readable PyTorch checkpoint \(another "
         r"format: torch\.save writes a zip archive\) \(expected a file starting with b'PK\\x03\\x04', found a file "
         r"starting with b'.*'\)", regex=True, after=nothing_ran),

    # ----- RTNeural files given to `modelreg check`: read and found broken, a failed check (exit 1, under
    # `FAIL bad.json` on stdout); a file that cannot be read at all is refused (exit 2, stderr)
    Case("rtneural-truncated-json", bad_json_text(lambda text: text[:200]), ("check", "bad.json"), 1,
         "bad.json:1:201: truncated JSON: the file ends inside a value (Expecting ',' delimiter)", process=True),
    Case("rtneural-kernel-rows-contradict-input", bad_json(drop_kernel_row), ("check", "bad.json"), 1,
         TANH_LAYER0 + ".weights[0]: row count 2 does not match the 3 outputs of the model input (in_shape) "
         "(expected 3 rows, found 2 rows)"),
    Case("rtneural-bias-contradicts-units", bad_json(drop_bias_entry), ("check", "bad.json"), 1,
         TANH_LAYER0 + ".weights[1]: entry count 3 does not match the layer's 4 units (shape) "
         "(expected 4 entries, found 3 entries)"),
    Case("rtneural-lstm-recurrent-kernel-too-narrow", bad_json(narrow_recurrent_kernel), ("check", "bad.json"), 1,
         "bad.json: layers[1].weights[1]: column count 6 does not match 4 gates (i, f, c, o) x 2 units "
         "(expected 8 columns, found 6 columns)"),
    Case("rtneural-ragged-rows", bad_json(ragged_rows), ("check", "bad.json"), 1,
         "bad.json: layers[1].weights[0][2]: rows have different lengths (expected 8 numbers (like row 0), "
         "found 7 numbers)"),
    Case("rtneural-unknown-layer-type", bad_json(lambda d: layer(d, 0).__setitem__("type", "conv3d")),
         ("check", "bad.json"), 1,
         "bad.json: layers[0].type: unknown or unsupported layer type (expected one of 'dense', "
         "'time-distributed-dense', 'lstm', 'gru', 'conv1d', 'activation', 'batchnorm', 'prelu', 'conv2d', "
         "'batchnorm2d', found 'conv3d')"),
    Case("rtneural-unknown-activation", bad_json(lambda d: layer(d, 0).__setitem__("activation", "swish")),
         ("check", "bad.json"), 1,
         "bad.json: layers[0].activation: unknown activation (RTNeural knows tanh, relu, sigmoid, softmax, elu; "
         "\"\" is linear) (expected one of '', 'tanh', 'relu', 'sigmoid', 'softmax', 'elu', found 'swish')"),
    Case("rtneural-non-numeric-weight", bad_json(lambda d: layer(d, 0)["weights"][1].__setitem__(2, "0.5")),
         ("check", "bad.json"), 1,
         "bad.json: layers[0].weights[1][2]: wrong type (expected a number, found '0.5' (a string))"),
    Case("rtneural-nan-weight", bad_json_text(lambda text: text.replace("0.018012393", "NaN", 1)), ("check", "bad.json"), 1,
         "bad.json: layers[0].weights[0][0][0]: not a finite number (NaN or Infinity; RTNeural's JSON parser "
         "rejects these literals) (expected a finite float32 number, found nan)"),
    Case("rtneural-infinite-weight", bad_json_text(lambda text: text.replace("0.018012393", "-Infinity", 1)),
         ("check", "bad.json"), 1,
         "bad.json: layers[0].weights[0][0][0]: not a finite number (NaN or Infinity; RTNeural's JSON parser "
         "rejects these literals) (expected a finite float32 number, found -inf)"),
    Case("rtneural-weight-overflows-float32", bad_json_text(lambda text: text.replace("0.018012393", "1e39", 1)),
         ("check", "bad.json"), 1,
         "bad.json: layers[0].weights[0][0][0]: too large for float32, the type RTNeural computes in (expected a "
         "finite float32 number, found 1e+39)"),
    Case("rtneural-missing-in-shape", bad_json(lambda d: d.pop("in_shape")), ("check", "bad.json"), 1,
         "bad.json: in_shape: missing required key"),
    Case("rtneural-not-an-object", bad_json_text(lambda text: "[" + text + "]"), ("check", "bad.json"), 1,
         "bad.json: an RTNeural model must be a JSON object (expected an object with in_shape and layers, "
         "found an array)"),
    Case("rtneural-empty-file", bad_json_text(lambda text: ""), ("check", "bad.json"), 1,
         "bad.json:1:1: empty file (expected a JSON object)"),
    Case("rtneural-invalid-utf8", bad_json_text(lambda text: text[:40].encode() + b"\xff\xfe" + text[40:].encode()),
         ("check", "bad.json"), 1,
         "bad.json:1:41: not valid UTF-8 (found b'\\xff\\xfepe')"),
    Case("check-validation-results", lambda p: None, ("check", "models/validation_results.json"), 1,
         "models/validation_results.json: not an RTNeural model file: it looks like modelreg's validation results "
         "(written by `modelreg validate`) (expected an object with in_shape and layers, found keys 'format', 'ok', "
         "'registry', 'environment', 'problems', 'warnings', ...)"),
    Case("check-truncated-onnx", truncate(ONNX, 100), ("check", ONNX), 1,
         r"models/onnx/tinydense\.onnx: not a valid ONNX model: .+", regex=True),
    Case("check-registry-lock", lambda p: None, ("check", "registry.lock"), 2,
         PREFIX + "registry.lock: not a kind of file `modelreg check` reads: it is modelreg's registry.lock (hashes of "
         "the exported artifacts; `modelreg validate` checks them) (expected a file ending in .h (rtneural-cpp), "
         ".json (rtneural), .nam (nam) or .onnx (onnx))", stream="err"),
    Case("rtneural-file-is-a-folder", lambda p: (p / "bad.json").mkdir(), ("check", "bad.json"), 2,
         PREFIX + "bad.json: expected a file, found a directory", stream="err"),
    Case("rtneural-file-missing", lambda p: None, ("check", "bad.json"), 2,
         PREFIX + "bad.json: file not found", stream="err"),

    # ----- exported artifacts checked by `modelreg validate` (a failed check: exit 1)
    Case("artifact-truncated", truncate(JSON, 300), VALIDATE, 1,
         "rtneural.schema: models/tinydense.json:1:301: truncated JSON: the file ends inside a value (Expecting ',' delimiter)"),
    Case("artifact-tampered", tamper_json, VALIDATE, 1,
         "rtneural.fresh: models/tinydense.json changed after export (sha256 differs from registry.lock: edited by hand, "
         "or an export was killed before recording it); run `modelreg export --force tinydense`"),
    Case("artifact-stale-checkpoint-changed", new_checkpoint, VALIDATE, 1,
         "onnx.fresh: models/onnx/tinydense.onnx is stale: the checkpoint changed; run `modelreg export tinydense`"),
    Case("artifact-missing", lambda p: (p / ONNX).unlink(), VALIDATE, 1,
         "onnx.exists: models/onnx/tinydense.onnx does not exist; run `modelreg export tinydense`"),
    Case("artifact-not-recorded", lambda p: (p / "registry.lock").unlink(), VALIDATE, 1,
         "rtneural.fresh: models/tinydense.json is not recorded in registry.lock; run `modelreg export --force tinydense`"),
    Case("artifact-is-a-folder", replace_with_folder(JSON), VALIDATE, 1,
         "rtneural.exists: models/tinydense.json is not a file (a folder?); remove it and run `modelreg export tinydense`"),
    Case("artifact-of-another-model", artifact_of_another_model, VALIDATE, 1,
         "rtneural.schema: models/tinydense.json: in_shape: file does not fit the registry entry (expected 4 in, 3 out, "
         "found 3 in, 2 out)"),
    Case("onnx-artifact-truncated", truncate(ONNX, 200), VALIDATE, 1,
         r"onnx\.schema: models/onnx/tinydense\.onnx: models\.tinydense: not a valid ONNX model: .+", regex=True),
    Case("lock-damaged-validate", damaged_lock, VALIDATE, 1,
         "rtneural.fresh, onnx.fresh: registry.lock: damaged lock file (Expected ']' at the end of a table declaration "
         "(at line 1, column 18)); delete it and run `modelreg export --force`"),
    Case("lock-damaged-export", damaged_lock, EXPORT, 2,
         PREFIX + "registry.lock: damaged lock file (Expected ']' at the end of a table declaration (at line 1, column "
         "18)); delete it and run `modelreg export --force`", stream="err"),

    # ----- environment: the command stops with one clear error (exit 2), every previous file intact
    Case("output-folder-is-a-file", onnx_folder_is_a_file, EXPORT, 2,
         PREFIX + "models/onnx/tinydense.onnx: models.tinydense: cannot write the artifact (models/onnx is a file, not a "
         "folder); any previous file was kept", stream="err"),
    Case("results-file-is-a-folder", results_is_a_folder, VALIDATE_ALL, 2,
         PREFIX + "models/validation_results.json: cannot write the validation results (Is a directory); any previous "
         "file was kept", stream="err"),
    Case("lock-file-is-a-folder", lock_is_a_folder, EXPORT, 2,
         PREFIX + "registry.lock: cannot read the lock file: Is a directory", stream="err"),
    Case("disk-full-during-export", new_checkpoint, EXPORT, 2,
         PREFIX + "models/tinydense.json: models.tinydense: cannot write the artifact (File too large); any previous "
         "file was kept", stream="err", process=True, after=previous_files_intact),
    Case("disk-full-writing-results", lambda p: None, VALIDATE_ALL, 2,
         PREFIX + "models/validation_results.json: cannot write the validation results (File too large); any previous "
         "file was kept", stream="err", process=True, after=previous_files_intact),
]

# A case that must run under a file-size limit, and which limit (bytes).
FULL_DISK = {"disk-full-during-export": FULL_DISK_BYTES["export"], "disk-full-writing-results": FULL_DISK_BYTES["validate"]}


def test_catalogue_is_large_and_distinct():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    assert len(CASES) >= 30
    messages = [case.expected for case in CASES]
    duplicates = {m for m in messages if messages.count(m) > 1}
    # The same message from two commands is allowed (same refusal, read and write side).
    assert all(len({c.argv[0] for c in CASES if c.expected == m}) > 1 for m in duplicates)


# --------------------------------------------------------------------------- running a case


@pytest.fixture(autouse=True)
def _clean_state(monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)
    yield
    unregister_exporter("escaping")


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before it runs Python
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write beyond the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _run(case: Case, project: Path, capsys) -> tuple[int, str, str]:
    argv = [*case.argv] + ([] if case.argv[0] == "check" else ["--registry", "registry.toml"])
    if case.process:
        env = {k: v for k, v in os.environ.items() if k != REGISTRY_ENV}
        limit = FULL_DISK.get(case.id)
        result = subprocess.run([sys.executable, "-m", "modelreg", *argv], cwd=project, capture_output=True, text=True,
                                env=env, timeout=120, preexec_fn=_limit_file_size(limit) if limit else None)
        return result.returncode, result.stdout, result.stderr
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(case: Case, exported_project: Path, tmp_path: Path, monkeypatch, capsys):
    shutil.copytree(exported_project, tmp_path / "original", symlinks=True)
    project = tmp_path / "project"
    shutil.copytree(exported_project, project, symlinks=True)
    monkeypatch.chdir(project)
    case.setup(project)
    capsys.readouterr()  # whatever the setup printed

    code, out, err = _run(case, project, capsys)

    assert "Traceback" not in out + err, out + err
    assert code == case.code, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    expected = case.expected.replace("{outside}", str(outside(project).resolve()))
    lines = [line.strip() for line in (out if case.stream == "out" else err).splitlines()]
    if case.regex:
        assert any(re.fullmatch(expected, line) for line in lines), f"no line matches\n{expected}\nin:\n" + "\n".join(lines)
    else:
        assert expected in lines, f"no line is\n{expected}\nin:\n" + "\n".join(lines)
    if case.stream == "err":
        # A refused command says so on stderr, each error on one `modelreg: error:` line.
        assert all(line.startswith(("modelreg: error: ", "modelreg: warning: ")) for line in err.splitlines()), err
    if case.after is not None:
        case.after(project)
