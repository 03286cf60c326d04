"""The pytest plugin (``pytest --modelreg``), run through pytest's own ``pytester``.

Runs that must show what a fresh process loads use ``runpytest_subprocess``
(the plugin is found through its ``pytest11`` entry point, as in any project
that installs modelreg); the others run in-process, which is faster and lets a
test count the validation runs.
"""

from __future__ import annotations

import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# pytester's in-process runs drop every module first imported during a test when the test
# ends; torch and numpy cannot be imported twice in one process, so they (and the modules of
# modelreg that import them) are imported here, before any pytester fixture takes its snapshot.
import modelreg.builder  # noqa: F401
import modelreg.checkpoint  # noqa: F401
import modelreg.rtneural.exporter  # noqa: F401
import modelreg.exporting  # noqa: F401
import modelreg.rtneural.runtime  # noqa: F401
import modelreg.validation  # noqa: F401
from conftest import TINYDENSE, write_registry

pytest_plugins = ["pytester"]

REGISTRY = TINYDENSE.replace("exports = []", 'exports = ["rtneural"]') + """
[models.slowgru]
description = "a GRU with an impossible latency target"
input_shape = [1, 3]
output_shape = [1, 2]
dtype = "float32"
params = 118
latency_ms = 1e-9
exports = []
checkpoint = "models/slowgru.pt"
layers = [
    { type = "gru", units = 4 },
    { type = "dense", units = 2, activation = "sigmoid" },
]
"""

MODEL_CHECKS = ["entry", "build", "params", "checkpoint", "weights_finite", "output_shape", "batch_consistency",
                "edge_cases", "output_range", "state.rest", "denormals", "determinism", "latency"]
FAST = ["--modelreg-latency-seconds", "0.02"]


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """A project folder holding a registry of two models with seeded checkpoints (no exports yet)."""
    import modelreg
    from modelreg.checkpoint import init_checkpoint

    path = write_registry(pytester.path, text=REGISTRY)
    for spec in modelreg.load_registry(path).values():
        init_checkpoint(spec, seed=0)
    return path


def _ids(result: pytest.RunResult) -> list[str]:
    return [line.strip() for line in result.outlines if "::" in line and not line.startswith(("=", "_"))]


def test_one_item_per_model_and_check(pytester, project):
    result = pytester.runpytest_inprocess("--modelreg", "registry.toml", "--collect-only", "-q")
    expected = ([f"registry.toml::tinydense::{c}" for c in MODEL_CHECKS]
                + [f"registry.toml::tinydense::rtneural.{c}"
                   for c in ("exists", "fresh", "schema", "parity", "dynamic_parity", "dynamic_realtime",
                             "dynamic_latency")]
                + [f"registry.toml::slowgru::{c}" for c in MODEL_CHECKS])
    assert _ids(result) == expected
    assert result.ret == 0


def test_failures_carry_the_checks_message_and_skips_the_reason(pytester, project):
    result = pytester.runpytest_inprocess("--modelreg", "registry.toml", "-rs", *FAST)
    result.assert_outcomes(passed=25, failed=2, skipped=6)
    text = result.stdout.str()
    assert "slowgru: latency failed: p99 " in text and "vs target 1e-09 ms" in text
    assert ("tinydense: rtneural.exists failed: models/tinydense.json does not exist; "
            "run `modelreg export tinydense`") in text
    # Skipped checks say why, pointing at the model's entry in the registry (line 1), not at the plugin.
    assert "SKIPPED [2] registry.toml:1: not run: no artifact" in text
    # parity and the dynamic C++ checks need a valid artifact
    assert "SKIPPED [4] registry.toml:1: not run: no valid artifact" in text
    assert "Traceback" not in text and "pytest_plugin.py" not in text
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_export_refreshes_artifacts_first(pytester, project):
    result = pytester.runpytest_inprocess("--modelreg", "registry.toml", "--modelreg-export", "-k", "tinydense", *FAST)
    # rtneural.dynamic_parity and cpp_latency skip: RTNeural C++ is not configured in the tests
    result.assert_outcomes(passed=17, skipped=3, deselected=13)
    assert (project.parent / "models" / "tinydense.json").is_file()
    assert result.ret == 0


def test_items_of_a_model_share_one_run_covering_only_the_selected_checks(pytester, project, monkeypatch):
    import modelreg.validation

    calls: list[tuple[str, dict]] = []
    real = modelreg.validation.validate_model

    def counting(spec, **kwargs):
        calls.append((spec.name, kwargs))
        return real(spec, **kwargs)

    monkeypatch.setattr(modelreg.validation, "validate_model", counting)
    result = pytester.runpytest_inprocess("--modelreg", "registry.toml", *FAST)
    result.assert_outcomes(passed=25, failed=2, skipped=6)
    assert [name for name, _ in calls] == ["tinydense", "slowgru"]  # 20 and 13 items, one run each
    assert all(kwargs["latency"] for _, kwargs in calls)

    calls.clear()
    result = pytester.runpytest_inprocess("--modelreg", "registry.toml", "-k", "params", *FAST)
    result.assert_outcomes(passed=2, deselected=31)
    assert calls == [("tinydense", {"latency_seconds": 0.02, "exports": False, "latency": False}),
                     ("slowgru", {"latency_seconds": 0.02, "exports": False, "latency": False})]

    # state.rest has a dot, but is the model's own check: selecting it checks no artifact.
    calls.clear()
    result = pytester.runpytest_inprocess("--modelreg", "registry.toml", "-k", "state", *FAST)
    result.assert_outcomes(passed=2, deselected=31)
    assert [kwargs["exports"] for _, kwargs in calls] == [False, False]


@pytest.mark.parametrize(("expression", "selected"), [
    ("slowgru", [f"registry.toml::slowgru::{c}" for c in MODEL_CHECKS]),
    ("latency", ["registry.toml::tinydense::latency", "registry.toml::tinydense::rtneural.dynamic_latency",
                 "registry.toml::slowgru::latency"]),
    ("tinydense and rtneural.parity", ["registry.toml::tinydense::rtneural.parity"]),
    ("parity or slowgru and entry", ["registry.toml::tinydense::rtneural.parity",
                                     "registry.toml::tinydense::rtneural.dynamic_parity", "registry.toml::slowgru::entry"]),
])
def test_k_selects_models_and_checks(pytester, project, expression, selected):
    result = pytester.runpytest_inprocess("--modelreg", "registry.toml", "--collect-only", "-q", "-k", expression)
    assert _ids(result) == selected


def test_x_stops_at_the_first_failing_check(pytester, project):
    result = pytester.runpytest_inprocess("--modelreg", "registry.toml", "-x", *FAST)
    # tinydense runs first: its 13 model checks pass, rtneural.exists fails, nothing after it runs.
    result.assert_outcomes(passed=13, failed=1)
    assert "stopping after 1 failures" in result.stdout.str()


def test_last_failed_reruns_only_the_failed_checks(pytester, project):
    first = pytester.runpytest_subprocess("--modelreg", "registry.toml", *FAST)
    first.assert_outcomes(passed=25, failed=2, skipped=6)
    again = pytester.runpytest_subprocess("--modelreg", "registry.toml", "--lf", "-v", *FAST)
    again.assert_outcomes(failed=2, deselected=31)
    again.stdout.fnmatch_lines(["*registry.toml::tinydense::rtneural.exists FAILED*",
                                "*registry.toml::slowgru::latency FAILED*"])


def test_junitxml_reports_each_check_with_its_figures(pytester, project):
    result = pytester.runpytest_inprocess("--modelreg", "registry.toml", "--junitxml=out.xml", *FAST)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    cases = {(c.get("classname"), c.get("name")): c for c in ET.parse(pytester.path / "out.xml").iter("testcase")}
    assert len(cases) == 33
    latency = cases[("registry.toml.slowgru", "latency")]
    failure = latency.find("failure")
    assert failure is not None and "slowgru: latency failed: p99" in failure.get("message", "")
    properties = {p.get("name"): p.get("value") for p in latency.iter("property")}
    assert {"p50_ms", "p95_ms", "p99_ms", "iterations", "target_ms"} <= set(properties)
    assert float(properties["target_ms"]) == 1e-9 and float(properties["p99_ms"]) > 0
    params = cases[("registry.toml.tinydense", "params")]
    assert params.find("failure") is None and params.find("skipped") is None
    assert {p.get("name"): p.get("value") for p in params.iter("property")} == {"declared": "43", "actual": "43"}
    skipped = cases[("registry.toml.tinydense", "rtneural.fresh")].find("skipped")
    assert skipped is not None and "no artifact" in skipped.get("message", "")


def test_invalid_entry_fails_its_entry_check_and_skips_the_rest(pytester, project):
    project.write_text(REGISTRY.replace("params = 118", "params = 7"))
    result = pytester.runpytest_inprocess("--modelreg", "registry.toml", "-k", "slowgru", "-rs", *FAST)
    result.assert_outcomes(failed=1, skipped=12, deselected=20)
    text = result.stdout.str()
    assert "slowgru: entry failed: registry.toml: models.slowgru.params: declared parameter count" in text
    assert "not run: entry failed" in text


def test_the_ini_option_turns_it_on_and_no_modelreg_turns_it_off(pytester, project):
    (pytester.path / "sub").mkdir()
    project.rename(pytester.path / "sub" / "registry.toml")
    (pytester.path / "models").rename(pytester.path / "sub" / "models")
    pytester.makeini("[pytest]\nmodelreg_registry = sub/registry.toml\n")
    result = pytester.runpytest_inprocess("--collect-only", "-q")
    assert _ids(result)[0] == "sub/registry.toml::tinydense::entry" and len(_ids(result)) == 33
    off = pytester.runpytest_inprocess("--collect-only", "-q", "-p", "no:modelreg")
    assert _ids(off) == []


def test_without_the_option_it_is_inert(pytester, project):
    # A fresh process, as in any project that installs modelreg: nothing is collected from the
    # registry beside the tests, and nothing heavy is imported.
    pytester.makepyfile(test_imports=textwrap.dedent("""\
        import sys

        def test_nothing_heavy_was_imported():
            loaded = {m for m in sys.modules if m.split(".")[0] in ("torch", "numpy", "jsonschema", "modelreg")}
            assert loaded <= {"modelreg", "modelreg._version", "modelreg.pytest_plugin"}, sorted(loaded)
            assert "modelreg.pytest_plugin" in sys.modules  # loaded through its pytest11 entry point
        """))
    result = pytester.runpytest_subprocess("-v", ".")
    result.assert_outcomes(passed=1)
    assert "registry.toml::" not in result.stdout.str()
    assert "--modelreg" in pytester.runpytest_subprocess("--help").stdout.str()


def test_a_registry_given_as_a_test_path_is_collected_once(pytester, project):
    result = pytester.runpytest_inprocess("registry.toml", "--modelreg", "--collect-only", "-q")
    assert len(_ids(result)) == 33
    result = pytester.runpytest_inprocess(".", "--modelreg=registry.toml", "--collect-only", "-q")
    assert len(_ids(result)) == 33


def test_bad_registry_is_one_collection_error_without_traceback(pytester, project):
    project.write_text("[models.x\n")
    result = pytester.runpytest_inprocess("--modelreg", "registry.toml")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    text = result.stdout.str()
    assert "ERROR collecting registry.toml" in text and "registry.toml:1" in text
    assert "Traceback" not in text and "pytest_plugin.py" not in text


@pytest.mark.parametrize(("args", "message"), [
    (["--modelreg", "missing.toml"], "--modelreg missing.toml: registry not found: "),
    (["--modelreg", "models"], "is a folder, not a registry file"),
    (["--modelreg", "--modelreg-latency-seconds", "0"], "--modelreg-latency-seconds: expected a number of seconds > 0"),
])
def test_usage_errors(pytester, project, args, message):
    result = pytester.runpytest_inprocess(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_modelreg_without_a_path_finds_the_nearest_registry(pytester, project, monkeypatch):
    monkeypatch.delenv("MODELREG_REGISTRY", raising=False)
    result = pytester.runpytest_inprocess("--modelreg", "--collect-only", "-q")
    assert len(_ids(result)) == 33
