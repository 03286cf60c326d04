"""The pre-commit hooks of .pre-commit-hooks.yaml, run the way pre-commit runs them.

pre-commit picks the staged files that match a hook's ``files`` and not its
``exclude`` (``re.search``), then runs ``entry`` + ``args`` + those files (or
``entry`` + ``args`` alone with ``pass_filenames: false``) from the repository
root, and fails the commit on a non-zero exit. These tests do exactly that,
without needing pre-commit itself.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DOCS, ROOT, TINYDENSE, write_registry

HOOKS = {hook["id"]: hook for hook in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}

REGISTRY = TINYDENSE.replace("exports = []", 'exports = ["rtneural"]')


def _selected(hook: dict, staged: list[str]) -> list[str]:
    files, exclude = hook.get("files", ""), hook.get("exclude", "^$")
    return [f for f in staged if re.search(files, f) and not re.search(exclude, f)]


def run_hook(hook_id: str, staged: list[str], cwd: Path, args: list[str] | None = None) -> subprocess.CompletedProcess[str] | None:
    """Run a hook as pre-commit would; None when no staged file concerns it (pre-commit skips it)."""
    hook = HOOKS[hook_id]
    selected = _selected(hook, staged)
    if not selected:
        return None
    command = shlex.split(hook["entry"])
    assert command[0] == "modelreg"  # the console script pre-commit installs with the package
    script = Path(sys.executable).with_name("modelreg")
    command[0:1] = [str(script)] if script.is_file() else [sys.executable, "-m", "modelreg"]
    command += args if args is not None else hook.get("args", [])
    if hook.get("pass_filenames", True):
        command += selected
    env = {k: v for k, v in __import__("os").environ.items() if k != "MODELREG_REGISTRY"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=240, env=env)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A repository root holding a registry, a checkpoint, its RTNeural export and a results file."""
    import modelreg
    from modelreg.checkpoint import init_checkpoint

    root = tmp_path_factory.mktemp("repo")
    path = write_registry(root, text=REGISTRY)
    registry = modelreg.load_registry(path)
    init_checkpoint(registry["tinydense"], seed=0)
    assert modelreg.export_all(registry).artifacts[0].status == "written"
    modelreg.validate_all(registry, latency_seconds=0.02)
    assert (root / "models" / "validation_results.json").is_file()
    return root


def test_the_hooks_file_declares_both_hooks():
    assert list(HOOKS) == ["modelreg-check", "modelreg-validate"]
    for hook in HOOKS.values():
        assert hook["language"] == "python" and hook["name"] and hook["entry"].startswith("modelreg ")
    assert HOOKS["modelreg-validate"]["pass_filenames"] is False
    # No timing in a commit hook: a busy machine must not block a commit for noise.
    assert "--no-latency" in HOOKS["modelreg-validate"]["entry"]


# What modelreg writes, what it does not, and modelreg's own results file.
STAGED = ["models/a.json", "models/onnx/a.onnx", "models/cpp/a.h", "sub/models/b.json",
          "models/validation_results.json", "package.json", "src/x.json", "include/x.h", "models/x.onnx.md",
          "registry.toml", "registry.lock", "models/a.pt", "README.md"]


def test_check_selects_the_files_modelreg_exports_and_nothing_else():
    assert _selected(HOOKS["modelreg-check"], STAGED) == [
        "models/a.json", "models/onnx/a.onnx", "models/cpp/a.h", "sub/models/b.json"]


def test_check_passes_good_exports_and_fails_a_broken_one(project):
    good = run_hook("modelreg-check", ["models/tinydense.json", "models/validation_results.json", "README.md"], project)
    assert good is not None and good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.startswith("ok   models/tinydense.json: RTNeural model, 2 layers, 4 -> 3")
    broken = project / "models" / "broken.json"
    broken.write_text('{"in_shape": [null, null, 4], "layers": [{"type": "dense", "shape": [null, null, 3]}]}')
    try:
        bad = run_hook("modelreg-check", ["models/tinydense.json", "models/broken.json"], project)
    finally:
        broken.unlink()
    assert bad is not None and bad.returncode == 1
    assert "ok   models/tinydense.json" in bad.stdout and "FAIL models/broken.json" in bad.stdout


def test_validate_runs_when_anything_it_reads_is_staged():
    # Issue 23: an edited export or registry.lock alone did not run it.
    hook = HOOKS["modelreg-validate"]
    assert _selected(hook, STAGED) == ["models/a.json", "models/onnx/a.onnx", "models/cpp/a.h", "sub/models/b.json",
                                       "registry.toml", "registry.lock", "models/a.pt"]
    assert _selected(hook, ["sub/registry.toml"]) and not _selected(hook, ["my_registry.toml.bak"])
    assert run_hook("modelreg-validate", ["README.md"], ROOT) is None  # pre-commit would skip it


def test_both_hooks_catch_a_hand_edited_export(project):
    # Issue 23: modelreg-check said ok on a hand-edited export that validate reports as tampered.
    export = project / "models" / "tinydense.json"
    before = export.read_bytes()
    export.write_bytes(before.replace(b'"shape"', b'"shape" ', 1))  # still a valid model file
    try:
        check = run_hook("modelreg-check", ["models/tinydense.json"], project)
        validate = run_hook("modelreg-validate", ["models/tinydense.json"], project)
    finally:
        export.write_bytes(before)
    assert check is not None and check.returncode == 1, check.stdout
    assert "changed after export (sha256 differs from registry.lock" in check.stdout
    assert validate is not None and validate.returncode == 1, validate.stdout
    assert "rtneural.fresh" in validate.stdout and "changed after export" in validate.stdout


def test_validate_passes_a_good_registry_without_writing_results(project):
    results = project / "models" / "validation_results.json"
    before = results.read_bytes()
    result = run_hook("modelreg-validate", ["registry.toml"], project)
    assert result is not None and result.returncode == 0, result.stdout + result.stderr
    assert "ok   tinydense: 16/20 checks passed, 4 skipped" in result.stdout
    assert "checks skipped (1 model: latency, rtneural.dynamic_latency): latency not measured" in result.stdout
    assert results.read_bytes() == before  # --no-write: a commit does not rewrite the results


def test_validate_fails_a_failing_model_with_exit_1_and_a_broken_registry_with_exit_2(project, tmp_path):
    registry = project / "registry.toml"
    try:
        registry.write_text(REGISTRY.replace("latency_ms = 50.0", "latency_ms = 1e-9"))
        unmeasured = run_hook("modelreg-validate", ["registry.toml"], project)
        assert unmeasured is not None and unmeasured.returncode == 0  # no timing, so no verdict on it
        timed = run_hook("modelreg-validate", ["registry.toml"], project,
                         args=["--latency-seconds", "0.02"])  # args are appended: the entry's --no-latency stays
        assert timed is not None and timed.returncode == 0
        registry.write_text(REGISTRY.replace('activation = "tanh"', 'activation = "relu"'))
        failing = run_hook("modelreg-validate", ["registry.toml"], project)
        assert failing is not None and failing.returncode == 1
        assert "FAIL tinydense" in failing.stdout and "rtneural.fresh" in failing.stdout
        registry.write_text(REGISTRY.replace("params = 43", "params = 44"))
        broken = run_hook("modelreg-validate", ["registry.toml"], project)
        assert broken is not None and broken.returncode == 2
        assert "models.tinydense.params" in broken.stdout
    finally:
        registry.write_text(REGISTRY)


def test_validate_takes_a_registry_elsewhere_through_args(project, tmp_path):
    result = run_hook("modelreg-validate", ["registry.toml"], tmp_path, args=["--registry", str(project / "registry.toml")])
    assert result is not None and result.returncode == 0, result.stdout + result.stderr


def test_the_documented_snippet_uses_these_hooks():
    page = (DOCS / "project.md").read_text()
    block = re.search(r"```yaml\n(# \.pre-commit-config\.yaml.*?)```", page, re.S)
    assert block, "docs/project.md has no .pre-commit-config.yaml snippet"
    config = yaml.safe_load(block[1])
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert {hook["id"] for hook in hooks} == set(HOOKS)
    for hook in hooks:
        merged = {**HOOKS[hook["id"]], **hook}
        if hook["id"] == "modelreg-check":
            assert _selected(merged, ["models/groovepredictor.json", "models/validation_results.json", "src/x.json"]) == [
                "models/groovepredictor.json"]
    assert "--no-latency" in page  # documented
