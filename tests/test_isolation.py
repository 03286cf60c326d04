"""One model's problems never stop the others (issue 4).

`validate_all()` on a registry where one model's checkpoint is corrupt, one
exporter plugin raises and one entry is invalid still checks every other model
fully, and reports all three problems, each naming its model (the checkpoint
file; the plugin and its exception). The same through `modelreg validate`:
exit 2 (an invalid entry is a bad registry, see cli.py), every problem
printed, never a traceback.

The plugin is registered in this process with `register_exporter`, so nothing
here runs in a worker pool (`--jobs`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelreg
from modelreg import validate_all
from modelreg.checkpoint import init_checkpoint
from modelreg.cli import main
from modelreg.exporting import export_all
from modelreg.plugins import Exporter, Parity, register_exporter, unregister_exporter
from modelreg.registry import display_path, load_registry
from modelreg.validation import MODEL_CHECKS

from conftest import write_registry

FAST = 0.01
GOOD = ("gooddense", "goodlstm")
PLUGIN_ERROR = "simulated crash in the plugin's runtime"

# Problem models first: every model after them must still be checked.
REGISTRY = """\
[models.corrupt]
description = "its checkpoint is garbage bytes"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = 43
latency_ms = 50.0
exports = ["rtneural"]
checkpoint = "models/corrupt.pt"
layers = [
    { type = "dense", units = 5, activation = "tanh" },
    { type = "dense", units = 3, activation = "softmax" },
]

[models.plugged]
description = "exported by a plugin whose verify raises during validation"
input_shape = [1, 3]
output_shape = [1, 2]
dtype = "float32"
params = 118
latency_ms = 50.0
exports = ["rtneural", "raising"]
checkpoint = "models/plugged.pt"
layers = [
    { type = "gru", units = 4 },
    { type = "dense", units = 2, activation = "sigmoid" },
]

[models.badentry]
description = "declares the wrong parameter count"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = 44
latency_ms = 50.0
exports = ["rtneural"]
checkpoint = "models/badentry.pt"
layers = [
    { type = "dense", units = 5, activation = "tanh" },
    { type = "dense", units = 3, activation = "softmax" },
]

[models.gooddense]
description = "a good model"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = 43
latency_ms = 50.0
exports = ["rtneural", "onnx"]
checkpoint = "models/gooddense.pt"
layers = [
    { type = "dense", units = 5, activation = "tanh" },
    { type = "dense", units = 3, activation = "softmax" },
]

[models.goodlstm]
description = "another good model"
input_shape = [1, 3]
output_shape = [1, 2]
dtype = "float32"
params = 80
latency_ms = 50.0
exports = ["rtneural"]
checkpoint = "models/goodlstm.pt"
layers = [
    { type = "dense", units = 4, activation = "tanh" },
    { type = "lstm", units = 2 },
]
"""


class _Raising(Exporter):
    """Exports fine; once ``broken_in`` names one of its methods, that method raises
    (as a plugin whose runtime broke after the export)."""

    name = "raising"

    def __init__(self) -> None:
        self.broken_in: str | None = None

    def _maybe_raise(self, method: str) -> None:
        if self.broken_in == method:
            raise RuntimeError(PLUGIN_ERROR)

    def artifact_path(self, spec):
        self._maybe_raise("artifact_path")
        return spec.registry_dir / "models" / f"{spec.name}.raising"

    def export(self, spec, module, path):
        path.write_text(f"artifact of {spec.name}\n")

    def check_artifact(self, spec, path):
        self._maybe_raise("check_artifact")
        return []

    def verify(self, spec, module, path, tolerance):
        self._maybe_raise("verify")
        return Parity(max_error=0.0, max_abs_error=0.0, tolerance=tolerance)


@pytest.fixture
def plugin():
    exporter = register_exporter(_Raising())
    try:
        yield exporter
    finally:
        unregister_exporter("raising")


@pytest.fixture
def project(tmp_path: Path, plugin: _Raising) -> Path:
    """The registry above, exported; then the plugin breaks. Returns the registry file."""
    path = write_registry(tmp_path / "project", text=REGISTRY)
    for spec in load_registry(path, strict=False).values():
        init_checkpoint(spec, seed=0)
    corrupt = path.parent / "models" / "corrupt.pt"
    corrupt.write_bytes(bytes(range(256)) * 8)  # garbage: not a PyTorch checkpoint at all

    report = export_all(path)
    status = {(a.model, a.exporter): a.status for a in report.artifacts}
    assert status == {
        ("corrupt", "rtneural"): "failed",
        ("plugged", "rtneural"): "written", ("plugged", "raising"): "written",
        ("gooddense", "rtneural"): "written", ("gooddense", "onnx"): "written",
        ("goodlstm", "rtneural"): "written",
    }
    failed = next(a for a in report.artifacts if a.status == "failed")
    assert "not a readable PyTorch checkpoint" in failed.message and "corrupt.pt" in failed.message
    assert [p.model for p in report.problems] == ["badentry"]

    plugin.broken_in = "verify"
    return path


def assert_good(report) -> None:
    """The good models pass every check, artifacts included; none was skipped."""
    for name in GOOD:
        model = report[name]
        assert model.ok, [(c.name, c.status, c.message) for c in model.checks]
        # RTNeural C++ is not configured in the tests: its checks are skipped (saying why), nothing else is.
        cpp = ("rtneural.dynamic_parity", "rtneural.dynamic_realtime", "rtneural.dynamic_latency")
        assert all(c.status == "pass" or (c.name in cpp and c.status == "skip") for c in model.checks), \
            [(c.name, c.status, c.message) for c in model.checks if c.status != "pass"]
        names = [c.name for c in model.checks]
        assert names[:len(MODEL_CHECKS)] == list(MODEL_CHECKS)
        for fmt in modelreg.load_registry(report.registry, strict=False)[name].exports:
            extra = list(cpp) if fmt == "rtneural" else []
            assert [f"{fmt}.exists", f"{fmt}.fresh", f"{fmt}.schema", f"{fmt}.parity", *extra] == \
                [n for n in names if n.startswith(f"{fmt}.")]


# The plugin method that raises, and the check of `plugged` that reports it (later plugin checks are skipped).
WHERE = {"verify": "raising.parity", "check_artifact": "raising.schema", "artifact_path": "raising.exists"}


@pytest.mark.parametrize("where", list(WHERE))
def test_validate_all_checks_every_other_model_and_reports_all_three_problems(project, plugin, where):
    plugin.broken_in = where
    failing = WHERE[where]
    checkpoint = display_path(project.parent / "models" / "corrupt.pt")
    report = validate_all(project, write=True, latency_seconds=FAST)

    assert list(report.models) == ["corrupt", "plugged", "badentry", "gooddense", "goodlstm"]  # file order
    assert report.ok is False
    assert_good(report)

    # The corrupt checkpoint: a failed check naming the file; the checks that need the weights are skipped.
    corrupt = report["corrupt"]
    assert not corrupt.ok
    assert [c.name for c in corrupt.failures] == ["checkpoint"]
    message = corrupt["checkpoint"].message
    assert "not a readable PyTorch checkpoint" in message and checkpoint in message and "corrupt" in message
    assert corrupt["build"].ok and corrupt["params"].ok
    assert all(corrupt[name].status == "skip" for name in MODEL_CHECKS[4:])

    # The raising plugin: an error on its own check (named after the plugin), with the exception;
    # the same model's other checks, its RTNeural artifact included, all ran and passed.
    plugged = report["plugged"]
    assert not plugged.ok
    assert [(c.name, c.status) for c in plugged.failures] == [(failing, "error")]
    assert "unexpected RuntimeError at test_isolation.py" in plugged[failing].message
    assert PLUGIN_ERROR in plugged[failing].message
    names = [c.name for c in plugged.checks]
    assert names[-4:] == ["raising.exists", "raising.fresh", "raising.schema", "raising.parity"]
    after = names[names.index(failing) + 1:]
    assert all(plugged[name].status == "skip" for name in after)
    cpp = ("rtneural.dynamic_parity", "rtneural.dynamic_realtime", "rtneural.dynamic_latency")  # not configured here
    assert all(plugged[name].status == "skip" for name in cpp)
    assert all(c.status == "pass" for c in plugged.checks if c.name not in (failing, *cpp) and c.name not in after)
    assert plugged["rtneural.parity"].ok and plugged["latency"].ok

    # The invalid entry: reported as a failed model (and a registry problem), naming the model and key.
    bad = report["badentry"]
    assert [c.name for c in bad.failures] == ["entry"]
    assert "models.badentry.params" in bad["entry"].message
    assert "declared parameter count does not match the layers" in bad["entry"].message
    assert all(c.status == "skip" for c in bad.checks[1:])
    assert [p.model for p in report.problems] == ["badentry"]

    # The results file was written, holds every model, and says what went wrong.
    document = json.loads((project.parent / "models" / "validation_results.json").read_text())
    assert set(document["models"]) == {"corrupt", "plugged", "badentry", *GOOD}
    assert document["ok"] is False
    assert all(document["models"][name]["ok"] for name in GOOD)
    assert not any(document["models"][name]["ok"] for name in ("corrupt", "plugged", "badentry"))
    assert any("models.badentry.params" in p for p in document["problems"])
    checks = {name: {c["name"]: c for c in model["checks"]} for name, model in document["models"].items()}
    assert checkpoint in checks["corrupt"]["checkpoint"]["message"]
    assert checks["plugged"][failing]["status"] == "error"
    assert PLUGIN_ERROR in checks["plugged"][failing]["message"]


def test_cli_validate_reports_all_three_problems_without_a_traceback(project, capsys):
    checkpoint = display_path(project.parent / "models" / "corrupt.pt")
    code = main(["validate", "--registry", str(project), "--latency-seconds", str(FAST)])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)  # cli.py: 2 for a bad registry (the invalid entry), which outranks failed checks
    assert "Traceback" not in out + err

    lines = out.splitlines()
    for name in GOOD:
        assert any(line.startswith(f"ok   {name}: ") for line in lines), out
    for name in ("corrupt", "plugged", "badentry"):
        assert any(line.startswith(f"FAIL {name}: ") for line in lines), out

    # The corrupt checkpoint, with its file.
    assert any(line.strip().startswith("checkpoint: ") and checkpoint in line
               and "not a readable PyTorch checkpoint" in line for line in lines), out
    # The plugin's exception, under the plugin's check.
    assert any(line.strip().startswith("raising.parity: unexpected RuntimeError") and PLUGIN_ERROR in line
               for line in lines), out
    # The invalid entry: in the model's lines and as a registry error on stderr.
    assert any(line.strip().startswith("entry: ") and "models.badentry.params" in line for line in lines), out
    # ... and once only: stderr points at it without repeating it.
    assert "modelreg: error: " in err and "the registry has problems in badentry (printed above, under FAIL)" in err, err
    assert (out + err).count("models.badentry.params") == 1
    assert "declared parameter count does not match the layers" in out

    # The summary table lists every model; the results file was written with all of them.
    table = out[out.index("model "):]
    for name in ("corrupt", "plugged", "badentry", *GOOD):
        assert f"\n{name} " in table, table
    document = json.loads((project.parent / "models" / "validation_results.json").read_text())
    assert set(document["models"]) == {"corrupt", "plugged", "badentry", *GOOD}
