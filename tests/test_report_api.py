"""What a validation run reports and records: the report as a mapping, the environment, the results file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping

import pytest

from modelreg import CheckResult, ModelReport, ValidationReport, load_registry, validate_all
from modelreg.validation import results_path

FAST = {"latency_seconds": 0.02}


@pytest.fixture
def report(tiny_registry) -> ValidationReport:
    return validate_all(tiny_registry, write=False, **FAST)


def test_the_report_is_a_read_only_mapping_of_model_reports(report):
    assert isinstance(report, Mapping)
    assert "tinygru" in report and "nosuch" not in report
    assert list(report) == ["tinydense", "tinylstm", "tinygru"] and len(report) == 3
    assert dict(report.items())["tinygru"] is report["tinygru"]
    assert report.get("nosuch") is None
    assert not hasattr(report, "__setitem__")


def test_a_model_report_is_a_mapping_of_check_results(report):
    model = report["tinylstm"]
    assert isinstance(model, ModelReport) and isinstance(model, Mapping)
    assert "latency" in model and "nosuch" not in model
    assert list(model) == [c.name for c in model.checks] and len(model) == len(model.checks)
    assert isinstance(model["latency"], CheckResult) and model.get("nosuch") is None
    assert {c.status for c in model.values()} <= {"pass", "fail", "error", "skip"}


def test_to_json_returns_plain_dicts(report):
    document = report.to_json()
    assert isinstance(document, dict) and isinstance(document["models"]["tinydense"], dict)
    assert json.loads(json.dumps(document)) == document


def test_the_environment_records_what_ran_the_checks_in_a_fresh_process(tiny_registry):
    # In a fresh interpreter torch is imported only by the first model built;
    # the environment must still name it (it used to say "not imported").
    code = subprocess.run(
        [sys.executable, "-m", "modelreg", "validate", "--registry", str(tiny_registry), "--latency-seconds", "0.02"],
        capture_output=True, text=True, timeout=240,
    )
    assert code.returncode == 0, code.stderr
    document = json.loads(results_path(load_registry(tiny_registry)).read_text())
    import numpy
    import torch

    environment = document["environment"]
    assert environment["torch"] == torch.__version__
    assert environment["numpy"] == numpy.__version__
    assert "onnxruntime" not in environment  # the tiny registry exports nothing


def test_the_environment_names_onnx_and_onnxruntime_when_they_ran(bundled_copy):
    import onnx
    import onnxruntime

    from modelreg import export

    export("dynamicsengine", bundled_copy, formats=["onnx"])
    environment = validate_all(bundled_copy, names=["dynamicsengine"], **FAST).environment
    assert environment["onnx"] == onnx.__version__ and environment["onnxruntime"] == onnxruntime.__version__


def test_validating_a_few_models_does_not_overwrite_the_whole_registry_record(tiny_registry):
    target = results_path(load_registry(tiny_registry))
    validate_all(tiny_registry, **FAST)  # a full run writes the record
    before = (target.read_bytes(), target.stat().st_ino)
    validate_all(tiny_registry, names=["tinygru"], **FAST)
    assert (target.read_bytes(), target.stat().st_ino) == before
    validate_all(tiny_registry, names=["tinygru", "tinylstm", "tinydense"], **FAST)  # every model: a full run
    assert set(json.loads(target.read_text())["models"]) == {"tinydense", "tinylstm", "tinygru"}
    assert target.stat().st_ino != before[1]  # replaced by an atomic rename


def test_write_true_writes_even_a_partial_run_and_write_false_never(tiny_registry):
    target = results_path(load_registry(tiny_registry))
    validate_all(tiny_registry, write=False, **FAST)
    assert not target.exists()
    validate_all(tiny_registry, names=["tinygru"], write=True, **FAST)
    assert list(json.loads(target.read_text())["models"]) == ["tinygru"]
