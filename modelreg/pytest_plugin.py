"""pytest plugin: a registry's checks as test items (``pytest --modelreg [PATH]``).

Registered through the ``pytest11`` entry point, so every pytest run of every
project that installs modelreg loads this module. It is therefore inert unless
asked for: without ``--modelreg`` or the ``modelreg_registry`` ini option it
adds options and nothing else, and it imports nothing of modelreg beyond this
module (no torch, no numpy, no jsonschema). ``-p no:modelreg`` turns it off
even when the ini option is set.

When active, the registry file is collected like a test file: one item per
model and check, ``registry.toml::groovepredictor::latency``. The items of one
model share one validation run (one built and loaded module), made when the
first of them runs and covering only what the selected items need (no
latency measurement when ``-k`` leaves the latency item out, no artifact
checks when no export item is selected).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:
    from .registry import Registry
    from .report import CheckResult, ModelReport
    from .spec import ModelSpec

__all__ = ["ModelRegCheckFailed", "planned_checks"]

_STATE = pytest.StashKey["_State"]()
_INI_REGISTRY = "modelreg_registry"
_INI_LATENCY = "modelreg_latency_seconds"


class ModelRegCheckFailed(Exception):
    """A registry check that failed or errored; pytest shows its message, not a traceback."""

    def __init__(self, model: str, result: CheckResult, note: str = "") -> None:
        self.model = model
        self.result = result
        self.note = note
        super().__init__(self.describe())

    def describe(self) -> str:
        what = "failed" if self.result.status == "fail" else "could not run (error)"
        text = f"{self.model}: {self.result.name} {what}: {self.result.message}"
        return text + (f"\n{self.note}" if self.note else "")


# ---------------------------------------------------------------- options


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("modelreg", "modelreg: a registry's checks as test items")
    group.addoption(
        "--modelreg", nargs="?", const=True, default=None, metavar="PATH",
        help=f"run every check of every model of the registry PATH as a test item (default: the "
             f"{_INI_REGISTRY} ini option, else $MODELREG_REGISTRY, else the nearest registry.toml upward)",
    )
    group.addoption("--modelreg-export", action="store_true",
                    help="export each model's declared formats first (fresh artifacts are kept), as `modelreg export`")
    group.addoption("--modelreg-latency-seconds", type=float, default=None, metavar="S",
                    help=f"time spent measuring each model's latency (default: the {_INI_LATENCY} ini option, else 0.4)")
    parser.addini(_INI_REGISTRY, "registry whose checks run as test items (relative to the ini file); turns the plugin on")
    parser.addini(_INI_LATENCY, "seconds spent measuring each model's latency (default 0.4)", default="0.4")


class _State:
    """What an active run needs: the registry file and the run options."""

    def __init__(self, path: Path, export: bool, latency_seconds: float) -> None:
        self.path = path
        self.export = export
        self.latency_seconds = latency_seconds
        self.uncollected: list[str] = []  # failed checks the run made that no item covered


def _registry_path(config: pytest.Config) -> Path | None:
    """The registry to collect, or None when the plugin was not asked for (inert)."""
    option = config.getoption("modelreg")
    ini = config.getini(_INI_REGISTRY)
    if option is None and not ini:
        return None
    if isinstance(option, str):
        path = Path(option)
        if not path.is_absolute():
            path = config.invocation_params.dir / path
        source = f"--modelreg {option}"
    elif ini:
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        path = base / str(ini)
        source = f"{_INI_REGISTRY} = {ini} ({config.inipath.name if config.inipath else 'ini'})"
    else:
        from .errors import ModelRegError
        from .registry import find_registry

        try:
            path = find_registry()
        except ModelRegError as exc:
            raise pytest.UsageError(f"--modelreg: {exc}") from None
        if not path.is_absolute():
            path = config.invocation_params.dir / path
        source = "--modelreg"
    if path.is_dir():
        raise pytest.UsageError(
            f"{source}: {path} is a folder, not a registry file (expected a .toml registry; "
            "to give test paths, write them before --modelreg or use --modelreg=PATH)")
    if not path.is_file():
        raise pytest.UsageError(f"{source}: registry not found: {path}")
    return path.resolve()


def _latency_seconds(config: pytest.Config) -> float:
    value: Any = config.getoption("modelreg_latency_seconds")
    source = "--modelreg-latency-seconds"
    if value is None:
        value, source = config.getini(_INI_LATENCY), _INI_LATENCY
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{source}: expected a number of seconds > 0, found {value!r}") from None
    if not 0 < seconds < float("inf"):
        raise pytest.UsageError(f"{source}: expected a number of seconds > 0, found {value!r}")
    return seconds


def pytest_configure(config: pytest.Config) -> None:
    path = _registry_path(config)
    if path is None:
        return  # inert: nothing registered, nothing imported
    config.stash[_STATE] = _State(path, bool(config.getoption("modelreg_export")), _latency_seconds(config))
    config.addinivalue_line("markers", "modelreg: a check of a modelreg registry entry (added by --modelreg)")
    # The registry is collected like a test file given on the command line.
    given = {Path(str(arg).split("::")[0]).resolve() for arg in config.args}
    if path not in given and not any(folder in path.parents for folder in given if folder.is_dir()):
        config.args.append(str(path))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = parent.config.stash.get(_STATE, None)
    if state is None or file_path.resolve() != state.path:
        return None
    return _RegistryFile.from_parent(parent, path=file_path)


# ---------------------------------------------------------------- collection


def planned_checks(spec: ModelSpec) -> list[str]:
    """The checks a validation run of ``spec`` makes, by name, in run order, without running them."""
    from .checks import DEFAULT_TOLERANCE
    from .exporting import artifact_checks
    from .validation import MODEL_CHECKS

    names = list(MODEL_CHECKS)
    if spec.exports:
        # The artifact checks are named callables; naming them builds and runs nothing.
        names += [name for name, _ in artifact_checks(spec, cast(Any, None), DEFAULT_TOLERANCE)]
    return names


class _RegistryFile(pytest.File):
    """The registry file: one child per model, in file order."""

    registry: Registry

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        from .registry import load_registry

        self.registry = load_registry(self.path, strict=False)
        lines = _entry_lines(self.path)
        for name in self.registry.names:
            node = _ModelNode.from_parent(self, name=name)
            node.line = lines.get(name, 0)
            yield node

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> Any:  # type: ignore[override]
        from .errors import ModelRegError

        if isinstance(excinfo.value, ModelRegError):  # a broken registry: its message, no traceback
            return str(excinfo.value)
        return super().repr_failure(excinfo)


def _entry_lines(path: Path) -> dict[str, int]:
    """0-based line of each ``[models.NAME]`` table, so that reports point at the entry."""
    import re

    found: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return found
    for number, line in enumerate(text.splitlines()):
        match = re.match(r"\s*\[\s*models\s*\.\s*[\"']?([^\]\"']+)[\"']?\s*\]", line)
        if match:
            found.setdefault(match[1].strip(), number)
    return found


class _ModelNode(pytest.Collector):
    """One model: its checks as items, and the one validation run they share."""

    line = 0

    _report: ModelReport | None = None
    _error: BaseException | None = None
    _export_notes: dict[str, str]
    _planned: list[str]

    @property
    def registry(self) -> Registry:
        return cast(_RegistryFile, self.parent).registry

    def collect(self) -> Iterator[pytest.Item]:
        self._export_notes = {}
        spec = self.registry.get(self.name)
        self._planned = planned_checks(spec) if spec is not None else _invalid_entry_checks()
        for check in self._planned:
            item = _CheckItem.from_parent(self, name=check)
            item.add_marker("modelreg")
            yield item

    def report(self) -> ModelReport:
        """The model's validation run, made once, for the items selected in this session."""
        if self._error is not None:
            raise self._error
        if self._report is None:
            try:
                self._report = self._run()
            except BaseException as exc:
                self._error = exc
                raise
        return self._report

    def _run(self) -> ModelReport:
        from .errors import format_problems
        from .report import CheckResult, ModelReport

        state = self.config.stash[_STATE]
        spec = self.registry.get(self.name)
        if spec is None:
            report = ModelReport(self.name)
            report.checks.append(CheckResult("entry", "fail", format_problems(self.registry.invalid[self.name])))
            return report
        from .validation import MODEL_CHECKS, validate_model

        selected = {item.name for item in self.session.items if item.parent is self}
        # An artifact check is any but the model's own (state.rest has a dot too, and needs no export).
        exports = any(name not in MODEL_CHECKS for name in selected)
        if state.export and exports:
            self._export(spec)

        report = validate_model(spec, latency_seconds=state.latency_seconds, exports=exports,
                                latency="latency" in selected)
        # A check no item stands for (one added after collection) must not pass unseen.
        state.uncollected += [f"{self.name}::{c.name} {c.status}: {c.message}" for c in report.checks
                              if c.name not in self._planned and c.status in ("fail", "error")]
        return report

    def _export(self, spec: ModelSpec) -> None:
        """``--modelreg-export``: refresh the artifacts first; failures annotate the export's items."""
        from .errors import ModelRegError
        from .exporting import export_all

        try:
            result = export_all(self.registry, names=[self.name])
        except ModelRegError as exc:
            for fmt in spec.exports:
                self._export_notes[fmt] = f"modelreg export {self.name} failed: {exc}"
            return
        for artifact in result.artifacts:
            if artifact.status == "failed":
                self._export_notes[artifact.exporter] = f"modelreg export {self.name} ({artifact.exporter}) failed: {artifact.message}"

    def export_note(self, check: str) -> str:
        from .validation import MODEL_CHECKS

        return self._export_notes.get(check.split(".", 1)[0], "") if check not in MODEL_CHECKS else ""


def _invalid_entry_checks() -> list[str]:
    from .validation import MODEL_CHECKS

    return list(MODEL_CHECKS)


def _skip(reason: str) -> None:
    """Skip the running item; the skip summary points at the model's entry, not at this module."""
    try:
        exc = pytest.skip.Exception(reason, _use_item_location=True)  # pytest's own flag for skip marks
    except TypeError:  # a pytest without it: the summary names this module instead
        exc = pytest.skip.Exception(reason)
    raise exc


class _CheckItem(pytest.Item):
    """One check of one model: passes, fails with the check's message, or skips saying why."""

    @property
    def model(self) -> _ModelNode:
        return cast(_ModelNode, self.parent)

    def runtest(self) -> None:
        report = self.model.report()
        result = report.get(self.name)
        if result is None:
            # Not made by the run: an earlier check stopped it, or the entry is invalid.
            failed = next((c for c in report.checks if c.status in ("fail", "error")), None)
            if failed is not None:
                _skip(f"not run: {failed.name} failed")
            pytest.fail(f"{self.model.name}: the validation run made no {self.name!r} check", pytrace=False)
        for key, value in result.figures.items():
            if isinstance(value, (int, float, str, bool)) or value is None:
                self.user_properties.append((key, value))
        if result.status == "skip":
            _skip(result.message or "not run")
        if result.status in ("fail", "error"):
            raise ModelRegCheckFailed(self.model.name, result, self.model.export_note(self.name))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ModelRegCheckFailed):
            return excinfo.value.describe()
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[os.PathLike[str] | str, int | None, str]:
        # Not "model::check": pytest's terminal would print a dot in the check name as "::".
        return self.path, self.model.line, f"{self.model.name}: {self.name}"


# ---------------------------------------------------------------- pytest-xdist


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: unknown (and never called) without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``-n N``: a model's items go to one worker, so each model is validated once.

    The items of one model share one validation run in the process that runs
    them; xdist's default (``load``) deals items one by one, and a model's
    checks spread over N workers would be validated N times. For ``load`` and
    ``loadgroup`` this returns xdist's ``loadgroup`` scheduler with each
    model's items as one group: every other test is still dealt one by one
    (or by its ``xdist_group``), exactly as before. ``loadscope`` and
    ``loadfile`` already keep a model's items together; ``each`` runs
    everything everywhere by definition, and ``worksteal`` moves single items
    between workers (a model may then be validated on two): both are left as
    asked.
    """
    state = config.stash.get(_STATE, None)
    if state is None or config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadGroupScheduling  # type: ignore[import-untyped]

    registry_file = state.path
    root = config.rootpath
    known: dict[str, bool] = {}

    def ours(file_part: str) -> bool:
        # The controller collects nothing: an item is the registry's when its file part is the registry.
        if file_part not in known:
            known[file_part] = (root / file_part).resolve() == registry_file
        return known[file_part]

    class ByModel(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            parts = nodeid.split("::")
            if len(parts) >= 3 and ours(parts[0]):
                return f"{parts[0]}::{parts[1]}"  # registry.toml::MODEL (model names hold no "::")
            return str(super()._split_scope(nodeid))

    return ByModel(config, log)


# ---------------------------------------------------------------- end of the run


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is not None and state.uncollected and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED  # a failure no item showed must still fail the run


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not state.uncollected:
        return
    terminalreporter.section("modelreg: failed checks without a test item")
    for line in state.uncollected:
        terminalreporter.line(line)

