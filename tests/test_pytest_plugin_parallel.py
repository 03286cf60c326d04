"""The pytest plugin across processes and machines (issue 21, section 3): pytest-xdist (``-n N``)
spreads a registry's items over workers with one validation per model; pytest-split's groups
together run every item once, with the outcomes of a single run."""

from __future__ import annotations

import os
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

# As in test_pytest_plugin.py: torch and numpy cannot be imported twice in one process, so the
# modules that import them are imported before pytester takes its snapshot of sys.modules.
import modelreg.builder  # noqa: F401
import modelreg.checkpoint  # noqa: F401
import modelreg.validation  # noqa: F401
from conftest import ROOT, TINY_REGISTRY, write_registry

pytest.importorskip("xdist", reason="pytest-xdist is in the dev extra")
pytest.importorskip("pytest_split", reason="pytest-split is in the dev extra")

pytest_plugins = ["pytester"]

REGISTRY = TINY_REGISTRY + TINY_REGISTRY.split("[models.tinylstm]", 1)[0].replace("tinydense", "otherdense")
MODELS = ["tinydense", "tinylstm", "tinygru", "otherdense"]
FAST = ["--modelreg-latency-seconds", "0.02"]
CHECKS_PER_MODEL = 13  # the model checks (no exports)

# Each validation run appends "MODEL WORKER" to validations.log: the runs of every process, counted.
COUNTING_CONFTEST = textwrap.dedent("""\
    import os
    from pathlib import Path

    import modelreg.validation

    # In-process runs import this file again each time: wrap the real function, not the last wrapper.
    _real = getattr(modelreg.validation, "_unwrapped_validate_model", modelreg.validation.validate_model)
    modelreg.validation._unwrapped_validate_model = _real
    _log = Path(__file__).with_name("validations.log")


    def _counting(spec, **kwargs):
        with _log.open("a") as handle:
            handle.write(f"{spec.name} {os.environ.get('PYTEST_XDIST_WORKER', 'main')}\\n")
        return _real(spec, **kwargs)


    modelreg.validation.validate_model = _counting
    """)


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four tiny models with seeded checkpoints, and a conftest counting validation runs."""
    import modelreg

    # Subprocesses (and xdist's workers) must import the modelreg under test, not whichever
    # checkout the environment installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    from modelreg.checkpoint import init_checkpoint

    path = write_registry(pytester.path, text=REGISTRY)
    for spec in modelreg.load_registry(path).values():
        init_checkpoint(spec, seed=0)
    pytester.makeconftest(COUNTING_CONFTEST)
    # In-process runs import that conftest, which wraps validate_model in this process: put the
    # real one back afterwards, or later tests (validate --jobs pickles it) get the wrapper.
    monkeypatch.setattr(modelreg.validation, "validate_model", modelreg.validation.validate_model)
    monkeypatch.setattr(modelreg.validation, "_unwrapped_validate_model", None, raising=False)
    monkeypatch.delattr(modelreg.validation, "_unwrapped_validate_model")
    return path


def _outcomes(xml: Path) -> dict[tuple[str, str], str]:
    """(model, check) -> passed / failed / skipped, from a JUnit XML report."""
    found = {}
    for case in ET.parse(xml).iter("testcase"):
        outcome = next((tag for tag in ("failure", "error", "skipped") if case.find(tag) is not None), "passed")
        key = (case.get("classname", "").rsplit(".", 1)[-1], case.get("name", "").split("@")[0])
        assert key not in found, f"{key} ran twice"
        found[key] = outcome
    return found


def _validations(folder: Path) -> list[tuple[str, str]]:
    log = folder / "validations.log"
    lines = log.read_text().splitlines() if log.exists() else []
    log.unlink(missing_ok=True)
    return [tuple(line.split()) for line in lines]  # type: ignore[misc]


def test_xdist_spreads_models_over_workers_and_validates_each_model_once(pytester, project):
    serial = pytester.runpytest_subprocess("--modelreg", "registry.toml", "--junitxml=serial.xml", *FAST)
    assert serial.ret == 0
    expected = _outcomes(pytester.path / "serial.xml")
    assert len(expected) == len(MODELS) * CHECKS_PER_MODEL
    assert sorted(name for name, _ in _validations(pytester.path)) == sorted(MODELS)

    result = pytester.runpytest_subprocess("--modelreg", "registry.toml", "-n", "2", "--junitxml=xdist.xml", *FAST)
    assert result.ret == 0, result.stdout.str()
    assert _outcomes(pytester.path / "xdist.xml") == expected
    assert "registry.toml::tinydense::entry@" not in result.stdout.str()  # node ids as in a serial run
    runs = _validations(pytester.path)
    # One validation per model, whichever worker ran its items; and both workers had models.
    assert sorted(name for name, _ in runs) == sorted(MODELS), runs
    assert {worker for _, worker in runs} == {"gw0", "gw1"}, runs


def test_dist_loadgroup_validates_each_model_once_too(pytester, project):
    # (loadscope and loadfile are xdist's own: they keep a registry.toml::MODEL scope together.)
    result = pytester.runpytest_subprocess("--modelreg", "registry.toml", "-n", "2", "--dist", "loadgroup", *FAST)
    assert result.ret == 0, result.stdout.str()
    assert sorted(name for name, _ in _validations(pytester.path)) == sorted(MODELS)


def test_without_the_plugin_active_xdist_schedules_as_it_always_does(pytester, project):
    # Plain tests, no --modelreg: the plugin's scheduler hook stands aside (xdist's own "load").
    pytester.makepyfile(test_plain="def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    result = pytester.runpytest_subprocess("-n", "2", "-v", "test_plain.py")
    result.assert_outcomes(passed=2)
    assert "scheduling tests via LoadScheduling" in result.stdout.str()
    assert "registry.toml::" not in result.stdout.str()
    assert _validations(pytester.path) == []


@pytest.mark.parametrize("algorithm", ["least_duration", "duration_based_chunks"])
def test_pytest_split_groups_together_run_every_item_once_as_a_single_run(pytester, project, algorithm):
    assert pytester.runpytest_inprocess("--modelreg", "registry.toml", "--junitxml=serial.xml", *FAST).ret == 0
    expected = _outcomes(pytester.path / "serial.xml")
    _validations(pytester.path)
    combined: dict[tuple[str, str], str] = {}
    runs = 0
    for group in (1, 2, 3):
        result = pytester.runpytest_inprocess("--modelreg", "registry.toml", "--splits", "3", "--group", str(group),
                                              "--splitting-algorithm", algorithm, f"--junitxml=g{group}.xml", *FAST)
        assert result.ret == 0, result.stdout.str()
        outcomes = _outcomes(pytester.path / f"g{group}.xml")
        assert outcomes, f"group {group} ran nothing"
        assert not set(outcomes) & set(combined), "an item ran in two groups"
        combined.update(outcomes)
        runs += len(_validations(pytester.path))
    assert combined == expected
    assert runs >= len(MODELS)
    if algorithm == "duration_based_chunks":
        # Contiguous chunks keep a model's items together but where a chunk ends: at most one
        # model per boundary is validated (in part) twice.
        assert runs <= len(MODELS) + 2
