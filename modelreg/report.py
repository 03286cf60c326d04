"""Validation reports: per model, per check, with figures; and the results file."""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import attrs

from .atomic import atomic_write_text
from .errors import ModelRegError, Problem

__all__ = ["RUNTIME_PACKAGES", "CheckResult", "ModelReport", "ValidationReport", "environment"]

Status = Literal["pass", "fail", "error", "skip"]
RESULTS_FORMAT = 1


@attrs.frozen
class CheckResult:
    """One check of one model.

    Fields:

    - ``name``: the check (``params``, ``latency``, ``rtneural.parity``...);
    - ``status``: ``"pass"``; ``"fail"`` (the model does not meet the check);
      ``"error"`` (the check could not run: a bug in modelreg or a plugin, shown
      with where it was raised); ``"skip"`` (not run, because a check it needs
      failed or something it needs is not configured; ``message`` says which);
    - ``message``: one line for people;
    - ``figures``: the measured values (``latency``: ``mean_ms``, ``p50_ms``,
      ``p95_ms``, ``p99_ms``, ``max_ms``, ``iterations``; ``FORMAT.parity``:
      ``max_error``, ``max_abs_error``, ``tolerance``, ``cases``...).
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
class ModelReport(Mapping[str, CheckResult]):
    """Every check of one model, in the order they ran.

    A read-only mapping of check name to :class:`CheckResult` (``report["latency"]``,
    ``"onnx.parity" in report``, iteration in run order); ``checks`` is the same
    results as a list. ``ok`` is True when no check failed or errored.
    """

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

    def __iter__(self) -> Iterator[str]:
        return (result.name for result in self.checks)

    def __len__(self) -> int:
        return len(self.checks)

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status in ("fail", "error")]

    def to_json(self) -> dict[str, Any]:
        """A dict of plain JSON values: ``{"ok", "seconds", "checks": [CheckResult.to_json(), ...]}``."""
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


#: The libraries every run that builds a model uses (listed first; exporters add their own,
#: see :attr:`modelreg.Exporter.packages`).
RUNTIME_PACKAGES = ("torch", "numpy")


def _version(package: str) -> str | None:
    module = sys.modules.get(package)
    version = getattr(module, "__version__", None)
    if version is not None:
        return str(version)
    from importlib.metadata import PackageNotFoundError, version as dist_version

    try:
        return dist_version(package)
    except PackageNotFoundError:
        return None


def environment(used: Iterable[str] = ()) -> dict[str, str]:
    """Where a report was made: enough to reproduce or compare figures.

    ``used`` names the libraries that ran checks (:data:`RUNTIME_PACKAGES`, and the exporters' ``packages``);
    each is recorded with its version. It is called when the run ends, not when
    it starts: torch is imported lazily, by the first model built. A library
    that took no part is not listed, except torch, which is always present
    ("not used" when no model was built).
    """
    from ._version import __version__

    used = set(used)
    versions = {package: _version(package) for package in dict.fromkeys((*RUNTIME_PACKAGES, *sorted(used)))
                if package in used}
    found = {package: v for package, v in versions.items() if v is not None}
    return {
        "python": platform.python_version(),
        "torch": found.pop("torch", "not used"),
        **found,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
        "modelreg": __version__,
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


@attrs.define
class ValidationReport(Mapping[str, ModelReport]):
    """The result of a validation run: a read-only mapping of model name to :class:`ModelReport`.

    ``report["groovepredictor"]``, ``"groovepredictor" in report``, ``len(report)``
    and iteration (registry order) work as on any mapping. ``ok`` is True when
    every model passed and the registry had no problems; ``problems`` holds
    invalid registry entries, ``warnings`` plugins that failed to load,
    ``environment`` the versions that ran the checks, ``shard`` the shard and
    plan of a ``validate --shard I/N`` run (None for other runs). ``to_json()`` returns the
    dict written to ``models/validation_results.json``.
    """

    registry: Path
    models: dict[str, ModelReport] = attrs.field(factory=dict)
    problems: list[Problem] = attrs.field(factory=list)  # invalid registry entries
    warnings: list[Problem] = attrs.field(factory=list)  # plugins that failed to load
    environment: dict[str, str] = attrs.field(factory=environment)
    #: A shard's run (``validate --shard I/N``): its number, the count and the whole plan; else None.
    shard: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        # A shard may hold no model at all (more shards than models): nothing failed there.
        return (not self.problems and (bool(self.models) or self.shard is not None)
                and all(m.ok for m in self.models.values()))

    @property
    def has_registry_problems(self) -> bool:
        return bool(self.problems)

    def __getitem__(self, model: str) -> ModelReport:
        return self.models[model]

    def __iter__(self) -> Iterator[str]:
        return iter(self.models)

    def __len__(self) -> int:
        return len(self.models)

    def to_json(self) -> dict[str, Any]:
        """The results document as a dict (what :meth:`write` writes, schema-valid)."""
        document = {
            "format": RESULTS_FORMAT,
            "ok": self.ok,
            "registry": str(self.registry),
            "environment": self.environment,
            "problems": [str(p) for p in self.problems],
            "warnings": [str(p) for p in self.warnings],
            "models": {name: report.to_json() for name, report in self.models.items()},
        }
        if self.shard is not None:  # a partial file: `modelreg merge-results` reads the plan from it
            document["shard"] = self.shard
        return document

    def write(self, path: Path) -> None:
        """Validate the report against ``validation_results.schema.json``, then write it atomically."""
        from .schemas import schema_problems

        document = self.to_json()
        problems = schema_problems(document, "validation_results", file=str(path))
        if problems:  # a bug in modelreg, not the user's fault; still say exactly what
            raise ModelRegError(*problems)
        atomic_write_text(path, json.dumps(document, indent=2, allow_nan=False) + "\n")
