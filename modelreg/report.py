"""Validation reports: per model, per check, with figures; and the results file."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from .atomic import atomic_write_text
from .errors import ModelRegError, Problem

__all__ = ["CheckResult", "ModelReport", "ValidationReport", "environment"]

Status = Literal["pass", "fail", "error", "skip"]
RESULTS_FORMAT = 1


@attrs.frozen
class CheckResult:
    """One check of one model.

    ``status`` is ``pass``, ``fail`` (the model does not meet the check),
    ``error`` (the check could not run: bad input file, broken plugin) or
    ``skip`` (not run because an earlier check it needs failed).
    """

    name: str
    status: Status
    message: str = ""
    figures: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "pass"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "message": self.message,
                "figures": {k: _json_safe(v) for k, v in self.figures.items()}}


@attrs.define
class ModelReport:
    """Every check of one model, in the order they ran."""

    name: str
    checks: list[CheckResult] = attrs.field(factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no check failed or errored (and at least one check passed)."""
        return any(c.ok for c in self.checks) and all(c.status in ("pass", "skip") for c in self.checks)

    @property
    def passed(self) -> int:
        return sum(c.ok for c in self.checks)

    def __getitem__(self, check: str) -> CheckResult:
        for result in self.checks:
            if result.name == check:
                return result
        raise KeyError(check)

    def get(self, check: str) -> CheckResult | None:
        try:
            return self[check]
        except KeyError:
            return None

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status in ("fail", "error")]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "seconds": round(self.seconds, 4), "checks": [c.to_json() for c in self.checks]}


def _json_safe(value: Any) -> Any:
    """Figures as strict JSON: NaN/Inf (a broken model's output) become strings."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def environment() -> dict[str, str]:
    """Where a report was made: enough to reproduce or compare figures."""
    from . import __version__

    torch_version = "not imported"
    if "torch" in sys.modules:
        torch_version = str(sys.modules["torch"].__version__)
    return {
        "python": platform.python_version(),
        "torch": torch_version,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "modelreg": __version__,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


@attrs.define
class ValidationReport:
    """The result of a validation run. ``.ok`` is True when every model passed."""

    registry: Path
    models: dict[str, ModelReport] = attrs.field(factory=dict)
    problems: list[Problem] = attrs.field(factory=list)  # invalid registry entries
    warnings: list[Problem] = attrs.field(factory=list)  # plugins that failed to load
    environment: dict[str, str] = attrs.field(factory=environment)

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.models) and all(m.ok for m in self.models.values())

    @property
    def has_registry_problems(self) -> bool:
        return bool(self.problems)

    def __getitem__(self, model: str) -> ModelReport:
        return self.models[model]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": RESULTS_FORMAT,
            "ok": self.ok,
            "registry": str(self.registry),
            "environment": self.environment,
            "problems": [str(p) for p in self.problems],
            "warnings": [str(p) for p in self.warnings],
            "models": {name: report.to_json() for name, report in self.models.items()},
        }

    def write(self, path: Path) -> None:
        """Validate the report against ``validation_results.schema.json``, then write it atomically."""
        from .schemas import schema_problems

        document = self.to_json()
        problems = schema_problems(document, "validation_results", file=str(path))
        if problems:  # a bug in modelreg, not the user's fault; still say exactly what
            raise ModelRegError(*problems)
        atomic_write_text(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
