"""``modelreg diff`` and ``modelreg check-version``, end to end in temporary git repositories (issue 21, 1 and 2).

Each test builds a small project (the tiny registry of conftest.py, seeded checkpoints made as
``modelreg init`` makes them), commits it, changes something, and runs the command in process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, TINY_REGISTRY, run_cli, write_registry

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True).stdout


def commit(project: Path, message: str) -> None:
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", message)


def init(project: Path, *names: str, seed: int = 0) -> None:
    """Write checkpoints as `modelreg init [--force --seed N] NAME...` does."""
    import modelreg
    from modelreg.checkpoint import init_checkpoint

    registry = modelreg.load_registry(project / "registry.toml")
    for name in names or tuple(registry):
        init_checkpoint(registry[name], seed=seed, force=True)
    for backup in (project / "models").glob("*.bak-*"):
        backup.unlink()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repository holding the tiny registry (tinydense, tinylstm, tinygru) and its checkpoints, committed."""
    folder = tmp_path / "project"
    write_registry(folder)
    git(folder, "init", "-q")
    git(folder, "config", "user.name", "modelreg tests")
    git(folder, "config", "user.email", "tests@modelreg.invalid")
    git(folder, "config", "commit.gpgsign", "false")
    init(folder)
    commit(folder, "tiny registry")
    return folder


def edit(project: Path, old: str, new: str, count: int = 1) -> None:
    path = project / "registry.toml"
    text = path.read_text()
    assert text.count(old) >= count, old
    path.write_text(text.replace(old, new, count))


def diff(project: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    return run_cli(["diff", "--registry", str(project / "registry.toml"), *args], capsys)


def diff_json(project: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = diff(project, capsys, "--json", *args)
    document = json.loads(out)
    from modelreg.schemas import schema_problems

    assert schema_problems(document, "diff", file="diff.json") == []
    return code, document


# ---------------------------------------------------------------- weights and drift


def test_diff_of_a_commit_that_changed_one_models_weights_reports_tensors_and_drift(project, capsys):
    init(project, "tinydense", seed=1)
    commit(project, "retrain tinydense")
    head = git(project, "rev-parse", "HEAD").strip()
    code, document = diff_json(project, capsys, "HEAD~1")
    assert code == 0  # no gate asked for: a report
    assert document["base"]["kind"] == "git" and document["base"]["revision"] == "HEAD~1"
    models = document["models"]
    assert {n: m["status"] for n, m in models.items()} == {"tinydense": "changed", "tinylstm": "unchanged",
                                                           "tinygru": "unchanged"}
    dense = models["tinydense"]
    assert dense["breaks"] == [] and dense["level"] == "minor"
    assert [c["what"] for c in dense["changes"]] == ["weights changed"]
    assert dense["architecture"]["changed"] is False
    tensors = {t["name"]: t for t in dense["weights"]["tensors"]}
    assert set(tensors) == {"layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"}
    assert all(t["status"] == "changed" and t["max_abs_delta"] > 0 for t in tensors.values())
    drift = dense["drift"]
    assert drift["ran"] and drift["finite"] and drift["max_abs"] > 0
    assert 0 < drift["mean_abs"] <= drift["max_abs"]
    assert set(drift["cases"]) == {"zeros", "normal", "plus_1e6", "minus_1e6", "mixed_signs", "stream_64"}
    assert [o["index"] for o in drift["outputs"]] == [0, 1, 2]
    assert max(o["max_abs"] for o in drift["outputs"]) == pytest.approx(drift["max_abs"])
    # An unchanged model is not run: its checkpoint bytes and layers are the same.
    assert models["tinylstm"]["weights"]["same_bytes"] is True
    assert models["tinylstm"]["drift"]["ran"] is False
    assert git(project, "rev-parse", "HEAD").strip() == head  # nothing checked out, nothing committed
    assert git(project, "status", "--porcelain") == ""


def test_drift_is_the_difference_of_the_two_checkpoints_outputs_on_the_probes(project, capsys):
    """Independently of modelreg.diff: both checkpoints (the old one from git) on the zeros and normal probes."""
    import io

    import numpy as np
    import torch

    import modelreg
    from modelreg.inputs import edge_cases

    old_bytes = (project / "models" / "tinydense.pt").read_bytes()
    init(project, "tinydense", seed=3)
    _, document = diff_json(project, capsys)  # the working tree against HEAD
    spec = modelreg.load_registry(project / "registry.toml")["tinydense"]
    new = spec.load()
    old = spec.build()
    old.load_state_dict(torch.load(io.BytesIO(old_bytes), weights_only=True))
    old.eval()
    frames = edge_cases(4)
    with torch.inference_mode():
        for case in ("zeros", "normal"):
            x = torch.from_numpy(frames[case])
            expected = float(np.max(np.abs(new(x).numpy().astype(np.float64) - old(x).numpy())))
            assert document["models"]["tinydense"]["drift"]["cases"][case] == pytest.approx(expected, rel=1e-6)


def test_text_output_names_tensors_drift_and_unchanged_models(project, capsys):
    init(project, "tinygru", seed=2)
    code, out, err = diff(project, capsys)
    assert code == 0, err
    assert "tinygru: changed, needs a minor bump" in out
    assert "weights      6 of 6 tensors changed" in out
    assert "layers.0.weight_ih_l0" in out and "max |d|" in out
    assert "drift        max " in out and "stream_64" in out
    assert "unchanged: tinydense, tinylstm" in out


def test_max_drift_gate_global_and_per_model(project, capsys):
    init(project, "tinydense", seed=1)
    commit(project, "retrain")
    _, document = diff_json(project, capsys, "HEAD~1")
    worst = document["models"]["tinydense"]["drift"]["max_abs"]
    assert diff(project, capsys, "HEAD~1", "--max-drift", f"{worst * 2}")[0] == 0
    code, out, _ = diff(project, capsys, "HEAD~1", "--max-drift", f"{worst / 2}")
    assert code == 1
    assert f"tinydense: drift: max |drift| {worst:.3g} > {worst / 2:g}" in out
    # A model's own limit wins over the global one, either way.
    assert diff(project, capsys, "HEAD~1", "--max-drift", "0", "--max-drift", f"tinydense={worst * 2}")[0] == 0
    assert diff(project, capsys, "HEAD~1", "--max-drift", "10", "--max-drift", f"tinydense={worst / 2}")[0] == 1
    # Models that were not run (unchanged) never cross a drift gate.
    assert diff(project, capsys, "HEAD~1", "--max-drift", "tinylstm=0")[0] == 0


# ---------------------------------------------------------------- interface breaks


def test_an_input_size_change_is_a_break_and_fails_the_breaking_gate(project, capsys):
    edit(project, "input_shape = [1, 4]", "input_shape = [1, 6]")
    edit(project, "params = 43", "params = 53")
    init(project, "tinydense")
    commit(project, "wider input")
    code, out, err = diff(project, capsys, "HEAD~1", "--fail-on", "breaking")
    assert code == 1, err
    assert "tinydense: changed (BREAKING), needs a major bump" in out
    assert "  break        input size 4 -> 6" in out
    assert "-dense 4 -> 5 tanh  (25 params)" in out and "+dense 6 -> 5 tanh  (35 params)" in out
    assert "drift        not compared: the interface changed" in out
    assert "gate (--fail-on breaking): crossed\n  tinydense: breaking: input size 4 -> 6" in out
    # The same comparison without the gate is a report: exit 0.
    assert diff(project, capsys, "HEAD~1")[0] == 0
    _, document = diff_json(project, capsys, "HEAD~1")
    weights = {t["name"]: t for t in document["models"]["tinydense"]["weights"]["tensors"]}
    assert weights["layers.0.weight"]["status"] == "reshaped"
    assert weights["layers.0.weight"]["shape_old"] == [5, 4] and weights["layers.0.weight"]["shape_new"] == [5, 6]


def test_a_layer_inserted_before_an_lstm_moves_its_state_a_named_break(project, capsys):
    edit(project, '    { type = "dense", units = 4, activation = "tanh" },\n    { type = "lstm", units = 2 },',
         '    { type = "dense", units = 4, activation = "tanh" },\n    { type = "dense", units = 4, activation = "tanh" },\n'
         '    { type = "lstm", units = 2 },')
    edit(project, "params = 80", "params = 100")
    init(project, "tinylstm")
    code, document = diff_json(project, capsys, "--fail-on", "breaking")
    assert code == 1
    model = document["models"]["tinylstm"]
    assert [b["what"] for b in model["breaks"]] == [
        "state layout h1[2], c1[2] -> h2[2], c2[2] (the state tensors ONNX and streaming hosts carry)"]
    # The sizes still fit: both versions run on the probes.
    assert model["drift"]["ran"] is True
    assert " dense 3 -> 4 tanh  (16 params)" in model["architecture"]["diff"]
    assert "+dense 4 -> 4 tanh  (20 params)" in model["architecture"]["diff"]


def test_removed_and_renamed_entries(project, capsys):
    text = (project / "registry.toml").read_text()
    # tinygru renamed (same checkpoint file, so the same bytes); tinylstm removed.
    start = text.index("[models.tinylstm]")
    end = text.index("[models.tinygru]")
    (project / "registry.toml").write_text(text[:start] + text[end:].replace("[models.tinygru]", "[models.gru2]"))
    code, document = diff_json(project, capsys, "--fail-on", "breaking")
    assert code == 1
    models = document["models"]
    assert models["gru2"]["status"] == "renamed" and models["gru2"]["old_name"] == "tinygru"
    assert models["gru2"]["weights"]["same_bytes"] is True
    assert models["tinylstm"]["status"] == "removed"
    assert document["gate"]["crossed"][0].startswith("gru2: breaking: renamed from 'tinygru'")
    assert "tinylstm: breaking: entry removed" in document["gate"]["crossed"][1]


def test_an_added_entry_and_changed_fields(project, capsys):
    edit(project, "latency_ms = 50.0", "latency_ms = 20.0\ntags = [\"rhythm\"]\ntolerance = 1e-4")
    with open(project / "registry.toml", "a") as handle:
        handle.write(TINY_REGISTRY.split("[models.tinylstm]")[0].replace("tinydense", "another"))
    init(project, "another", seed=5)
    code, document = diff_json(project, capsys, "--fail-on", "breaking")
    assert code == 0  # neither an addition nor metadata breaks a host
    models = document["models"]
    assert models["another"]["status"] == "added"
    dense = models["tinydense"]
    assert dense["fields"] == [{"key": "latency_ms", "old": 50.0, "new": 20.0},
                               {"key": "tags", "old": None, "new": ["rhythm"]},
                               {"key": "tolerance", "old": None, "new": 1e-4}]
    assert dense["level"] == "patch"
    assert dense["drift"]["ran"] is False and dense["drift"]["max_abs"] == 0.0


def test_diff_against_another_registry_file(project, capsys, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(project, other, ignore=shutil.ignore_patterns(".git"))
    init(project, "tinylstm", seed=4)
    code, document = diff_json(project, capsys, "--against", str(other / "registry.toml"))
    assert code == 0
    assert document["base"]["kind"] == "file"
    assert document["models"]["tinylstm"]["drift"]["ran"] is True


def test_latency_is_compared_where_both_sides_have_validation_results(project, capsys, tmp_path):
    def results(p99: float) -> dict[str, Any]:
        figures = {"mean_ms": p99 / 2, "p50_ms": p99 / 2, "p95_ms": p99 * 0.9, "p99_ms": p99, "max_ms": p99 * 2}
        return {"format": 1, "ok": True, "registry": str(project / "registry.toml"),
                "environment": {"python": "3", "torch": "2", "platform": "x", "modelreg": "0",
                                "time": "2026-12-05T00:00:00Z"},
                "problems": [], "warnings": [],
                "models": {"tinydense": {"ok": True, "seconds": 0.1, "checks": [
                    {"name": "latency", "status": "pass", "message": "", "figures": figures}]}}}

    (project / "models" / "validation_results.json").write_text(json.dumps(results(0.2)))
    (tmp_path / "base.json").write_text(json.dumps(results(0.1)))
    init(project, "tinydense", seed=1)
    code, out, err = diff(project, capsys, "--base-results", str(tmp_path / "base.json"))
    assert code == 0, err
    assert "latency      latency p99 0.1 ms -> 0.2 ms (+100.0%)" in out
    # Without the base's results, the text says why there is no comparison.
    code, out, _ = diff(project, capsys)
    assert "latency      not compared: no validation results at HEAD" in out


# ---------------------------------------------------------------- versions


def _versioned(project: Path, version: str) -> None:
    edit(project, 'description = "two dense layers"', f'description = "two dense layers"\nversion = "{version}"')


def test_check_version_fails_a_bump_too_small_and_names_the_change(project, capsys):
    _versioned(project, "1.0.0")
    commit(project, "version 1.0.0")
    init(project, "tinydense", seed=1)  # new weights: a minor bump
    edit(project, 'version = "1.0.0"', 'version = "1.0.1"')
    code, out, err = run_cli(["check-version", "--registry", str(project / "registry.toml")], capsys)
    assert code == 1, err
    assert ("FAIL tinydense: registry.toml: models.tinydense.version: declared bump too small: 1.0.0 -> 1.0.1 is a "
            "patch bump, the changes need a minor bump (expected at least 1.1.0, found 1.0.1); minor: weights changed"
            ) in out.replace(str(project) + "/", "")
    assert "ok   tinylstm: no version declared: not checked" in out
    edit(project, 'version = "1.0.1"', 'version = "1.1.0"')
    code, out, _ = run_cli(["check-version", "--registry", str(project / "registry.toml")], capsys)
    assert code == 0
    assert "ok   tinydense: 1.0.0 -> 1.1.0: a minor bump, minor needed" in out
    # diff gates on it too.
    edit(project, 'version = "1.1.0"', 'version = "1.0.1"')
    assert diff(project, capsys, "--fail-on", "version")[0] == 1
    assert diff(project, capsys, "--fail-on", "breaking")[0] == 0


@pytest.mark.parametrize(("version", "expected"), [
    ("1.0.0", "too_small"), ("1.0.1", "too_small"), ("1.1.0", "too_small"), ("2.0.0", "ok"), ("3.1.4", "ok"),
    ("0.9.0", "backwards"),
])
def test_check_version_of_an_interface_break(project, capsys, version, expected):
    _versioned(project, "1.0.0")
    commit(project, "version 1.0.0")
    edit(project, "output_shape = [1, 3]", "output_shape = [1, 2]")
    edit(project, '{ type = "dense", units = 3, activation = "softmax" }', '{ type = "dense", units = 2, activation = "softmax" }')
    edit(project, "params = 43", "params = 37")
    edit(project, 'version = "1.0.0"', f'version = "{version}"')
    init(project, "tinydense")
    code, document = diff_json(project, capsys, "--fail-on", "version")
    verdict = document["models"]["tinydense"]["version"]
    assert verdict["status"] == expected
    assert verdict["required"] == "major"
    assert code == (0 if expected == "ok" else 1)
    if expected == "too_small":
        assert "output size 3 -> 2" in verdict["message"] and "expected at least 2.0.0" in verdict["message"]


def test_a_removed_version_fails_and_a_first_version_passes(project, capsys):
    _versioned(project, "1.2.0")
    commit(project, "versioned")
    edit(project, 'version = "1.2.0"\n', "")
    code, out, _ = run_cli(["check-version", "--registry", str(project / "registry.toml")], capsys)
    assert code == 1 and "the version was removed (it was 1.2.0)" in out
    git(project, "checkout", "-q", "--", "registry.toml")
    edit(project, 'input_shape = [1, 3]\noutput_shape = [1, 2]\ndtype = "float32"\nparams = 80',
         'version = "0.1.0"\ninput_shape = [1, 3]\noutput_shape = [1, 2]\ndtype = "float32"\nparams = 80')
    code, out, _ = run_cli(["check-version", "--registry", str(project / "registry.toml")], capsys)
    assert code == 0 and "ok   tinylstm: 0.1.0: first version declared" in out


# ---------------------------------------------------------------- usage errors: one line, exit 2


def _one_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("modelreg: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_an_unknown_revision_is_a_usage_error(project, capsys):
    code, out, err = diff(project, capsys, "HEAD~7")
    assert code == 2 and out == ""
    assert "unknown git revision (expected a commit of the repository at" in _one_error(err)
    assert "found 'HEAD~7'" in err
    code, _, err = diff(project, capsys, "--upload-pack=evil")  # never handed to git as an option
    assert code == 2


def test_outside_a_repository_and_before_the_first_commit(tmp_path, capsys):
    folder = tmp_path / "plain"
    write_registry(folder)
    code, _, err = run_cli(["diff", "--registry", str(folder / "registry.toml")], capsys)
    assert code == 2
    assert "not inside a git repository" in _one_error(err) and "--against PATH" in err
    git(folder, "init", "-q")
    code, _, err = run_cli(["check-version", "--registry", str(folder / "registry.toml")], capsys)
    assert code == 2 and "unknown git revision (the repository has no commits yet)" in _one_error(err)


def test_a_registry_not_committed_at_the_revision(project, capsys):
    sub = project / "sub"
    write_registry(sub)
    code, _, err = run_cli(["diff", "--registry", str(sub / "registry.toml")], capsys)
    assert code == 2
    assert "the registry is not in git at HEAD (expected sub/registry.toml committed at HEAD" in _one_error(err)


def test_a_checkpoint_missing_at_the_base_is_named_as_rev_path(project, capsys):
    git(project, "rm", "-q", "--cached", "models/tinygru.pt")
    git(project, "commit", "-q", "-m", "untrack the gru checkpoint")
    code, out, err = diff(project, capsys)
    assert code == 2
    assert ("HEAD:models/tinygru.pt: models.tinygru.checkpoint: checkpoint not in git at HEAD: weights and drift not "
            "compared (expected the file committed at HEAD (") in err
    assert "found no such file in that commit)" in err
    assert "unchanged: tinydense, tinylstm" in out  # the others are still compared


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "=3", "x=y"])
def test_bad_max_drift_values(project, capsys, value):
    code, out, err = diff(project, capsys, "--max-drift", value)
    assert code == 2 and out == ""
    assert _one_error(err) == (f"modelreg: error: --max-drift: not a drift limit (expected a finite number >= 0 "
                               f"(every model), or NAME=NUMBER (one model), such as 1e-3 or groovepredictor=0.05, "
                               f"found {value!r})")


def test_max_drift_naming_no_model_and_base_with_against(project, capsys):
    code, _, err = diff(project, capsys, "--max-drift", "tinydens=1")
    assert code == 2
    assert "--max-drift: names no model of either registry; did you mean 'tinydense'?" in _one_error(err)
    code, _, err = diff(project, capsys, "HEAD", "--against", str(project / "registry.toml"))
    assert code == 2 and "give a revision or --against PATH, not both" in _one_error(err)


def test_an_invalid_entry_at_the_base_is_named_at_its_revision(project, capsys):
    edit(project, "params = 43", "params = 44")
    commit(project, "broken")
    edit(project, "params = 44", "params = 43")
    code, out, err = diff(project, capsys)
    assert code == 2
    assert "HEAD:registry.toml: models.tinydense.params: declared parameter count does not match" in err
    assert "tinydense: invalid entry" in out


# ---------------------------------------------------------------- the report's section


def test_report_with_a_diff_section(project, capsys):
    init(project, "tinydense", seed=1)
    code, _, err = run_cli(["validate", "--registry", str(project / "registry.toml"), "--no-latency"], capsys)
    assert code == 0, err
    out_html = project / "page.html"
    code, out, err = run_cli(["report", "--registry", str(project / "registry.toml"), "--diff", "-o", str(out_html)],
                             capsys)
    assert code == 0, err
    page = out_html.read_text()
    assert '<div class="card diff" id="diff"><h2>Changes since HEAD (' in page
    assert 'href="#diff-tinydense"' in page and "4 of 4 tensors changed" in page
    assert "<script" not in page
    # Without --diff the page has no such section.
    run_cli(["report", "--registry", str(project / "registry.toml"), "-o", str(out_html)], capsys)
    assert 'id="diff"' not in out_html.read_text()


def test_the_diff_schema_is_a_valid_json_schema():
    import jsonschema

    schema = json.loads((ROOT / "schemas" / "diff.schema.json").read_text())
    jsonschema.validators.validator_for(schema).check_schema(schema)


def test_the_results_path_is_validations():
    from modelreg.history import RESULTS
    from modelreg.validation import RESULTS_FILENAME

    assert RESULTS == RESULTS_FILENAME


def test_base_results_that_are_not_results_are_a_usage_error(project, capsys, tmp_path):
    (tmp_path / "bad.json").write_text('{"models": {}}')
    code, out, err = diff(project, capsys, "--base-results", str(tmp_path / "bad.json"))
    assert code == 2 and out == ""
    assert "bad.json" in err and "Traceback" not in err


def test_importing_the_diff_modules_imports_neither_torch_nor_numpy():
    code = ("import sys, modelreg.diff, modelreg.history, modelreg.versioning; "
            "print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))")
    out = subprocess.run([__import__("sys").executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
