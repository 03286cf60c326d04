"""Each RTNeural artifact is read and parsed once per export and once per validation (issue 13),
and a file changed between the check and the parity run is read again, never taken from memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelreg import export_all, load_registry, validate_all
from modelreg.rtneural import cpp as rtneural_cpp, runtime as rtneural_runtime
from modelreg.rtneural.exporter import RTNeuralExporter

from conftest import needs_rtneural


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of every RTNeural file read by modelreg's reader, in order."""
    seen: list[str] = []
    original = rtneural_runtime._read_json
    original_cpp = rtneural_cpp._read_document  # the C++ checks' own read, for what the loader should build

    def counting(path: Path, name: str) -> object:
        seen.append(Path(path).name)
        return original(path, name)

    def counting_cpp(path: Path) -> object:
        seen.append(Path(path).name)
        return original_cpp(path)

    monkeypatch.setattr(rtneural_runtime, "_read_json", counting)
    monkeypatch.setattr(rtneural_cpp, "_read_document", counting_cpp)
    return seen


def _with_rtneural(registry: Path) -> Path:
    registry.write_text(registry.read_text().replace("exports = []", 'exports = ["rtneural"]'))
    return registry


def test_export_parses_each_file_once(tiny_registry: Path, parses: list[str]) -> None:
    report = export_all(_with_rtneural(tiny_registry), force=True)
    assert report.ok, [a.message for a in report.artifacts]
    assert len(parses) == 3 and len(set(parses)) == 3  # one temporary file per model, each read once


def test_validate_parses_each_file_once(tiny_registry: Path, parses: list[str]) -> None:
    assert export_all(_with_rtneural(tiny_registry)).ok
    parses.clear()
    report = validate_all(tiny_registry, write=False, latency_seconds=0.01)
    for model in report.values():
        assert model["rtneural.schema"].status == "pass" and model["rtneural.parity"].status == "pass"
    assert sorted(parses) == ["tinydense.json", "tinygru.json", "tinylstm.json"]
    # The model handed from the check to the parity run is not kept after the run (RTNeural C++
    # is not configured here: its checks skip, and still take what was handed on).
    from modelreg.rtneural import exporter as rtneural

    assert rtneural._handoff.take(tiny_registry.parent / "models" / "tinygru.json") is None


@needs_rtneural
def test_validate_with_rtneural_cpp_still_parses_each_file_once(tiny_registry: Path, parses: list[str],
                                                               cpp: Path) -> None:
    """cpp_parity compares the layers RTNeural's loader built with those the file declares:
    it takes them from the model the check built, not from another read of the file."""
    assert export_all(_with_rtneural(tiny_registry)).ok
    parses.clear()
    report = validate_all(tiny_registry, write=False, latency_seconds=0.01)
    for model in report.values():
        assert model["rtneural.dynamic_parity"].status == "pass", model["rtneural.dynamic_parity"].message
    assert sorted(parses) == ["tinydense.json", "tinygru.json", "tinylstm.json"]


def test_a_file_changed_after_the_check_is_read_again(tiny_registry: Path, parses: list[str]) -> None:
    assert export_all(_with_rtneural(tiny_registry)).ok
    spec = load_registry(tiny_registry)["tinydense"]
    module = spec.load()
    exporter = RTNeuralExporter()
    path = exporter.artifact_path(spec)
    parses.clear()
    assert exporter.check_artifact(spec, path) == []
    # Replaced (as a rename does) by a valid file of the same sizes whose first weight is off by 1.
    data = json.loads(path.read_text())
    data["layers"][0]["weights"][0][0][0] += 1.0
    other = path.with_name("other.json")
    other.write_text(json.dumps(data))
    other.replace(path)
    parses.clear()
    parity = exporter.verify(spec, module, path, 1e-5)
    assert parses == ["tinydense.json"]  # read again: the model in memory was of the old file
    assert not parity.ok and parity.max_abs_error > 0.01


def test_verify_without_a_check_reads_the_file(tiny_registry: Path, parses: list[str]) -> None:
    assert export_all(_with_rtneural(tiny_registry)).ok
    spec = load_registry(tiny_registry)["tinylstm"]
    exporter = RTNeuralExporter()
    parses.clear()
    path = exporter.artifact_path(spec)
    assert exporter.verify(spec, spec.load(), path, 1e-5).ok
    assert parses == ["tinylstm.json"]
    assert exporter.verify(spec, spec.load(), path, 1e-5).ok  # handed on while the file is unchanged
    assert parses == ["tinylstm.json"]
    path.touch()  # a new mtime: the file may have changed
    assert exporter.verify(spec, spec.load(), path, 1e-5).ok
    assert parses == ["tinylstm.json", "tinylstm.json"]
