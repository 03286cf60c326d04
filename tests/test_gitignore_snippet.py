"""The .gitignore snippet of docs/project.md ("What to commit") ignores exactly the machine-local files a run writes (issue 23)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import DOCS, TINYDENSE, run_cli, write_registry


def _snippet() -> str:
    page = (DOCS / "project.md").read_text()
    block = re.search(r"```gitignore\n(.*?)```", page, re.S)
    assert block, "docs/project.md has no ```gitignore snippet"
    return block[1]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_the_gitignore_snippet_leaves_what_to_commit_and_ignores_the_rest(tmp_path: Path, capsys) -> None:
    project = tmp_path / "project"
    path = write_registry(project, text=TINYDENSE.replace("exports = []", 'exports = ["rtneural", "onnx", "rtneural-cpp"]'))
    (project / ".gitignore").write_text(_snippet())
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    for argv in (["init"], ["init", "--force", "--seed", "1"], ["export"], ["validate", "--latency-seconds", "0.02", "--report"],
                 ["validate", "--no-latency", "--shard", "1/1"]):
        assert run_cli([*argv, "--registry", str(path)], capsys)[0] == 0
    (project / "models" / ".tinydense.json.123-abcdefgh.partial").write_text("a killed run's leftover")
    backups = [p.name for p in (project / "models").glob("tinydense.pt.bak-*")]
    assert len(backups) == 1  # init --force kept the replaced checkpoint
    status = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=project,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    untracked = sorted(line[3:] for line in status if line.startswith("?? "))
    ignored = sorted(line[3:] for line in status if line.startswith("!! "))
    assert untracked == [".gitignore", "models/cpp/CMakeLists.txt", "models/cpp/tinydense.h", "models/onnx/tinydense.onnx", "models/tinydense.json",
                         "models/tinydense.pt", "registry.lock", "registry.toml"]
    assert ignored == sorted(["models/.tinydense.json.123-abcdefgh.partial", "models/validation_report.html",
                              "models/validation_results.json", "models/validation_results.shard-1-of-1.json",
                              "registry.lock.flock", *(f"models/{b}" for b in backups)])
