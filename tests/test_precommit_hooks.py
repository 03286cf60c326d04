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

from conftest import ROOT, TINYDENSE, write_registry

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
    assert "--latency-seconds 0.05" in HOOKS["modelreg-validate"]["entry"]


def test_check_selects_json_files_but_not_the_results_file():
    staged = ["models/a.json", "exports/b.json", "models/validation_results.json", "models/onnx/a.onnx",
              "registry.toml", "package.json.md"]
    assert _selected(HOOKS["modelreg-check"], staged) == ["models/a.json", "exports/b.json"]


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


def test_validate_runs_when_the_registry_or_a_checkpoint_is_staged():
    hook = HOOKS["modelreg-validate"]
    assert _selected(hook, ["registry.toml"]) and _selected(hook, ["models/x.pt"]) and _selected(hook, ["sub/registry.toml"])
    assert not _selected(hook, ["README.md", "models/x.json", "my_registry.toml.bak"])
    assert run_hook("modelreg-validate", ["README.md"], ROOT) is None  # pre-commit would skip it


def test_validate_passes_a_good_registry_without_writing_results(project):
    results = project / "models" / "validation_results.json"
    before = results.read_bytes()
    result = run_hook("modelreg-validate", ["registry.toml"], project)
    assert result is not None and result.returncode == 0, result.stdout + result.stderr
    assert "ok   tinydense: 15/17 checks passed" in result.stdout
    assert results.read_bytes() == before  # --no-write: a commit does not rewrite the results


def test_validate_fails_a_failing_model_with_exit_1_and_a_broken_registry_with_exit_2(project, tmp_path):
    registry = project / "registry.toml"
    try:
        registry.write_text(REGISTRY.replace("latency_ms = 50.0", "latency_ms = 1e-9"))
        failing = run_hook("modelreg-validate", ["registry.toml"], project)
        assert failing is not None and failing.returncode == 1
        assert "FAIL tinydense" in failing.stdout and "latency: p99" in failing.stdout
        registry.write_text(REGISTRY.replace("params = 43", "params = 44"))
        broken = run_hook("modelreg-validate", ["registry.toml"], project)
        assert broken is not None and broken.returncode == 2
        assert "models.tinydense.params" in broken.stdout
    finally:
        registry.write_text(REGISTRY)


def test_validate_takes_a_registry_elsewhere_through_args(project, tmp_path):
    result = run_hook("modelreg-validate", ["registry.toml"], tmp_path, args=["--registry", str(project / "registry.toml")])
    assert result is not None and result.returncode == 0, result.stdout + result.stderr


def test_the_readme_snippet_uses_these_hooks():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```yaml\n(# \.pre-commit-config\.yaml.*?)```", readme, re.S)
    assert block, "README has no .pre-commit-config.yaml snippet"
    config = yaml.safe_load(block[1])
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert {hook["id"] for hook in hooks} == set(HOOKS)
    for hook in hooks:
        merged = {**HOOKS[hook["id"]], **hook}
        if hook["id"] == "modelreg-check":
            assert _selected(merged, ["models/groovepredictor.json", "models/validation_results.json", "src/x.json"]) == [
                "models/groovepredictor.json"]
