"""The examples run as documented (so they cannot silently rot)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_own_registry_example_runs_from_another_folder(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "own_registry.py"), str(tmp_path / "proj")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "validation: 19/19 checks passed (2 skipped)" in result.stdout  # rtneural.cpp_*: RTNeural C++ not configured
    assert (tmp_path / "proj" / "models" / "envelope.json").is_file()
    assert (tmp_path / "proj" / "weights" / "envelope.pt").is_file()
