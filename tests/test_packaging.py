"""Packaging: pyproject.toml's lower bounds and .ci/min-versions.txt (what `make test-min` installs)
agree; the licence is declared and present; the facade's namespace is its public API."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from packaging.requirements import Requirement

from conftest import ROOT


def _lower_bounds() -> dict[str, str]:
    """The ">=" bounds of what users install: the dependencies and the onnx extra. The dev extra
    (pytest, mypy, mkdocs...) holds the repository's own tools, not a promise to users: unpinned."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {}
    for line in project["dependencies"] + project["optional-dependencies"]["onnx"]:
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # e.g. tomli, only below Python 3.11
        lower = [s.version for s in requirement.specifier if s.operator == ">="]
        assert lower, f"pyproject.toml: {line!r} has no lower bound (expected '>=')"
        bounds[requirement.name.lower().replace("_", "-")] = lower[0]
    return bounds


def _min_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / ".ci" / "min-versions.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_min_versions_pin_every_lower_bound_of_pyproject():
    bounds, pins = _lower_bounds(), _min_pins()
    torch_bound = bounds.pop("torch")  # only torch 2.13.0 installs here; the README says so
    assert torch_bound == "2.2"
    assert set(pins) == set(bounds)
    for name, lower in bounds.items():
        # The pin is the oldest release of the bound's own series that installs with every extra
        # (numpy 1.24.2: onnxruntime 1.18.0 needs it), so a bound that drifts above its tested pin fails here.
        bound = lower.split(".")
        assert pins[name].split(".")[: len(bound)] == bound, (
            f"{name}: pyproject says >={lower}, .ci/min-versions.txt pins {pins[name]}")


def test_licence_file_is_declared_and_matches_the_declared_licence():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "Copyright (c) 2026 the modelreg authors" in text


def _public_dir(module: object) -> list[str]:
    dunders = {name for name in vars(module) if name.startswith("__") and name.endswith("__")}
    return sorted(set(module.__all__) | dunders)  # type: ignore[attr-defined]


def test_dir_of_the_facade_is_its_public_api_only():
    # In a fresh interpreter (nothing else imported) and here, after the test-suite
    # imported submodules (which Python sets as attributes of the package).
    code = ("import modelreg, json; "
            "print(json.dumps([dir(modelreg), sorted(modelreg.__all__), sorted(vars(modelreg))]))")
    import json

    listed, public, namespace = json.loads(subprocess.run([sys.executable, "-c", code], check=True,
                                                          capture_output=True, text=True).stdout)
    helpers = {"Any", "TYPE_CHECKING", "annotations", "importlib"}
    assert not helpers & set(namespace), sorted(helpers & set(namespace))
    extra = [name for name in listed if name not in public and not name.startswith("__")]
    assert extra == [], extra
    assert set(public) <= set(listed)

    import modelreg
    import modelreg.exporting  # noqa: F401  (sets modelreg.exporting, modelreg.atomic, ...)

    assert dir(modelreg) == _public_dir(modelreg)
    for name in modelreg.__all__:
        assert getattr(modelreg, name) is not None, name
    for name in helpers:
        assert not hasattr(modelreg, name), name
