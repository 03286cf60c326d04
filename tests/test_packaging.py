"""pyproject.toml's lower bounds and .ci/min-versions.txt (what `make test-min` installs) agree."""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement

from conftest import ROOT


def _lower_bounds() -> dict[str, str]:
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
