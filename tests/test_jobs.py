"""--jobs: parallel checks and exports give the same results as serial runs."""

from __future__ import annotations

import pytest

from modelreg import UsageError, validate_all
from modelreg.checkpoint import init_checkpoint
from modelreg.cli import main
from modelreg.exporting import export_all, read_lock
from modelreg.registry import load_registry


def _many(folder, count):
    blocks = []
    for i in range(count):
        units = 3 + i % 5
        recurrent = i % 3 == 0
        layers = f'{{ type = "lstm", units = {units} }}' if recurrent else f'{{ type = "dense", units = {units}, activation = "tanh" }}'
        params = 4 * units * (4 + units) + 8 * units if recurrent else 4 * units + units
        params += units * 2 + 2
        blocks.append(f"""
[models.m{i:02d}]
description = "model {i}"
input_shape = [1, 4]
output_shape = [1, 2]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = ["rtneural", "onnx"]
checkpoint = "models/m{i:02d}.pt"
layers = [{layers}, {{ type = "dense", units = 2, activation = "sigmoid" }}]
""")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text("".join(blocks))
    for spec in load_registry(path).values():
        init_checkpoint(spec)
    return path


def test_parallel_export_and_validate_match_serial(tmp_path, capsys):
    path = _many(tmp_path / "reg", 8)
    report = export_all(path, jobs=2)
    assert report.ok and len(report.artifacts) == 16
    assert [a.model for a in report.artifacts][::2] == [f"m{i:02d}" for i in range(8)]  # registry order
    lock = read_lock(path.parent)
    assert sorted(lock["models"]) == [f"m{i:02d}" for i in range(8)]  # no update lost under concurrency
    assert all(set(m["artifacts"]) == {"rtneural", "onnx"} for m in lock["models"].values())

    parallel = validate_all(path, jobs=2, write=False, latency_seconds=0.05)
    serial = validate_all(path, jobs=1, write=False, latency_seconds=0.05)
    assert parallel.ok and serial.ok
    for name in serial.models:
        assert [c.name for c in parallel[name].checks] == [c.name for c in serial[name].checks]
        assert parallel[name]["latency"].figures["iterations"] >= 200
    assert main(["validate", "--registry", str(path), "-j", "2", "--latency-seconds", "0.05", "--no-write"]) == 0
    assert "m07" in capsys.readouterr().out


def test_jobs_must_be_positive(tmp_path, capsys):
    path = _many(tmp_path / "reg", 1)
    with pytest.raises(UsageError, match="jobs must be at least 1"):
        validate_all(path, jobs=0)
    with pytest.raises(SystemExit) as info:
        main(["validate", "--registry", str(path), "--jobs", "0"])
    assert info.value.code == 2
    assert "expected a whole number >= 1, found '0'" in capsys.readouterr().err
