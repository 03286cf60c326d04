"""The README's test command must pass on a clone with nothing beside it.

Data the tests need lives in the repository; anything outside it (RTNeural's C++
headers in ``../shared``) is reached only through ``conftest.shared_dir()``,
which skips with a message naming what to set.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import GOLDEN, ROOT, SHARED

TESTS = ROOT / "tests"
# Ways a test module could reach outside the repository.
_OUTSIDE = re.compile(r"parents\[2\]|ROOT\.parent|\.\./shared|SHARED\b")


def test_no_test_module_reads_outside_the_repository_directly():
    offenders = []
    for path in sorted(TESTS.glob("*.py")):
        if path.name in ("conftest.py", Path(__file__).name):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _OUTSIDE.search(line):
                offenders.append(f"{path.name}:{number}: {line.strip()}")
    assert not offenders, "use conftest.shared_dir() (skips when absent) or tests/data/:\n" + "\n".join(offenders)


def test_rtneural_golden_data_is_inside_the_repository_with_its_licence():
    assert ROOT in GOLDEN.parents
    names = {p.name for p in GOLDEN.iterdir()}
    assert "LICENSE-RTNeural" in names and "README.md" in names
    for model in ("dense", "lstm", "lstm_1d", "gru_1d"):
        assert {f"{model}.json", f"{model}_y.csv"} <= names
    assert "BSD" in (GOLDEN / "LICENSE-RTNeural").read_text(encoding="utf-8") or "Redistribution" in (
        GOLDEN / "LICENSE-RTNeural").read_text(encoding="utf-8")


def test_the_in_repository_copy_equals_the_shared_original_when_present():
    original = SHARED / "rtneural-golden"
    if not original.is_dir():
        import pytest

        pytest.skip(f"{original} not present (only beside CI's checkout); nothing to compare")
    for source in original.iterdir():
        assert (GOLDEN / source.name).read_bytes() == source.read_bytes(), source.name
