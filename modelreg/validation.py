"""Validation runs: every check of every model, one model's failure never stopping the others."""

from __future__ import annotations

import functools
import os
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from . import checks
from .errors import ModelRegError, Problem, UsageError, WriteError, format_problems
from .paths import RESULTS_FILENAME, display_path, outside_note
from .registry import Registry, load_registry
from .report import CheckResult, ModelReport, ValidationReport, environment

if TYPE_CHECKING:
    from .builder import RealtimeModel
    from .shards import Shard, ShardPlan
    from .spec import ModelSpec

__all__ = ["RESULTS_FILENAME", "results_path", "validate", "validate_all", "validate_model"]

OnResult = Callable[[ModelReport], None]


def results_path(registry: Registry) -> Path:
    """Where a registry's validation results go: ``models/validation_results.json`` beside it."""
    return registry.root / RESULTS_FILENAME


def _unexpected(name: str, exc: BaseException) -> CheckResult:
    # A bug (ours or a plugin's) must be visible, but must not stop the other models.
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" at {os.path.basename(where.filename)}:{where.lineno}" if where else ""
    return CheckResult(name, "error", f"unexpected {type(exc).__name__}{at}: {exc}")


def _capture(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; a ModelRegError is a failure, anything else an error (never raised)."""
    try:
        return check()
    except ModelRegError as exc:
        return CheckResult(name, "fail", str(exc))
    except Exception as exc:
        return _unexpected(name, exc)


def _run(report: ModelReport, name: str, check: Callable[[], CheckResult]) -> bool:
    """Run one check, recording its result; True when it passed."""
    result = _capture(name, check)
    report.checks.append(result)
    return result.ok


def _skip_rest(report: ModelReport, names: Iterable[str], because: str) -> None:
    for name in names:
        report.checks.append(CheckResult(name, "skip", f"not run: {because}"))


MODEL_CHECKS = (
    "entry", "build", "params", "checkpoint", "weights_finite", "output_shape",
    "batch_consistency", "edge_cases", "output_range", "state.rest", "denormals", "determinism", "latency",
)


def validate_model(
    spec: ModelSpec, *, latency_seconds: float = 0.4, exports: bool = True, latency: bool = True,
    defer_latency: bool = False, concurrent_formats: bool = True,
) -> ModelReport:
    """Run every check on one model (never raises for a model's own problems).

    ``latency=False`` leaves the latency check out. ``defer_latency=True`` (with
    it) also defers the exporters' latency checks: parallel runs measure all of
    them afterwards, one model at a time (see :func:`add_latency`).
    ``concurrent_formats=False`` proves the formats one after the other instead
    of at once (see :func:`modelreg.exporting.run_artifact_checks`): the workers
    of a parallel run, where the pool already keeps every core busy.
    """
    from .latency import measuring_for, single_thread
    from .plugins import sessions

    # One thread for everything, as a real-time host runs these models: frame-by-frame
    # calls of small layers are several times slower when torch fans out to a pool.
    with single_thread(), sessions(spec.exports if exports else ()), measuring_for(latency_seconds):
        return _validate_model(spec, latency_seconds=latency_seconds, exports=exports, latency=latency,
                               defer_latency=defer_latency, concurrent_formats=concurrent_formats)


def add_latency(report: ModelReport, spec: ModelSpec, *, latency_seconds: float = 0.4) -> None:
    """Measure latency for a report made with ``latency=False``, and run the exporters' latency
    checks it deferred, each in its place."""
    from .latency import measuring_for, single_thread

    if report.get("determinism") is None:  # the model never got that far: nothing to time
        return
    from .exporting import run_deferred

    started = time.perf_counter()
    module = spec.load()
    tolerance = checks.tolerance_for(spec)
    with single_thread(), measuring_for(latency_seconds):
        result = _capture("latency", lambda: checks.check_latency(spec, module, seconds=latency_seconds))
        position = next(i for i, c in enumerate(report.checks) if c.name == "determinism") + 1
        report.checks.insert(position, result)
        # The exporters' latency checks (RTNeural C++), deferred by the worker: timed here too.
        for i, check in enumerate(report.checks):
            if check.status == "skip" and check.figures.get("deferred"):
                report.checks[i] = _capture(check.name, functools.partial(run_deferred, spec, module, tolerance, check.name))
    report.seconds += time.perf_counter() - started


#: Why the latency checks of a run without latency (``validate --no-latency``) were skipped.
NOT_MEASURED = "latency not measured: the run was asked not to (validate --no-latency)"


def skip_latency(report: ModelReport) -> None:
    """Mark a report made with ``latency=False, defer_latency=True`` as measured by nobody: its
    latency checks are skips saying so (a commit hook's run, where timing under load is noise)."""
    if report.get("determinism") is None:  # the model never got that far: nothing would be timed
        return
    position = next(i for i, c in enumerate(report.checks) if c.name == "determinism") + 1
    report.checks.insert(position, CheckResult("latency", "skip", NOT_MEASURED))
    for i, check in enumerate(report.checks):
        if check.status == "skip" and check.figures.get("deferred"):
            report.checks[i] = CheckResult(check.name, "skip", NOT_MEASURED)


def _validate_model(spec: ModelSpec, *, latency_seconds: float, exports: bool, latency: bool,
                    defer_latency: bool, concurrent_formats: bool) -> ModelReport:
    started = time.perf_counter()
    report = ModelReport(spec.name)
    tolerance = checks.tolerance_for(spec)
    report.checks.append(CheckResult("entry", "pass", "registry entry is valid", {"params": spec.computed_params}))

    holder: dict[str, object] = {}

    def build() -> CheckResult:
        holder["built"] = spec.build()
        return CheckResult("build", "pass", f"{len(spec.layers)} layers")

    def load() -> CheckResult:
        holder["module"] = spec.load()
        figures = {"sha256_pinned": spec.sha256 is not None}
        pin = "pin matches" if spec.sha256 else "no sha256 pin"
        return CheckResult("checkpoint", "pass", f"{display_path(spec.checkpoint)} loaded; {pin}", figures)

    if not _run(report, "build", build):
        _skip_rest(report, MODEL_CHECKS[3:], "the module does not build")
    else:
        _run(report, "params", lambda: checks.check_params(spec, cast("RealtimeModel", holder["built"])))
        if not _run(report, "checkpoint", load):
            _skip_rest(report, MODEL_CHECKS[4:], "the checkpoint did not load")
        else:
            module = cast("RealtimeModel", holder["module"])
            for name, check in (
                ("weights_finite", lambda: checks.check_finite_weights(spec, module)),
                ("output_shape", lambda: checks.check_output_shape(spec, module)),
                ("batch_consistency", lambda: checks.check_batch_consistency(spec, module, tolerance)),
                ("edge_cases", lambda: checks.check_edge_cases(spec, module)),
                ("output_range", lambda: checks.check_output_range(spec, module)),
                ("state.rest", lambda: checks.check_rest_state(spec, module, tolerance)),
                ("denormals", lambda: checks.check_denormals(spec, module)),
                ("determinism", lambda: checks.check_determinism(spec, module)),
            ):
                _run(report, name, check)
            if latency:
                _run(report, "latency", lambda: checks.check_latency(spec, module, seconds=latency_seconds))
            if exports and spec.exports:
                from .exporting import run_artifact_checks

                report.checks += run_artifact_checks(spec, module, tolerance, _capture, defer_latency=defer_latency,
                                                     concurrent=concurrent_formats)
    report.seconds = time.perf_counter() - started
    return report


def _invalid_entry_report(name: str, problems: Iterable[Problem]) -> ModelReport:
    report = ModelReport(name)
    report.checks.append(CheckResult("entry", "fail", format_problems(problems)))
    _skip_rest(report, MODEL_CHECKS[1:], "the registry entry is invalid")
    return report


def _resolve(registry: Registry | str | os.PathLike[str] | None) -> Registry:
    if isinstance(registry, Registry):
        return registry
    return load_registry(registry, strict=False)


def validate_all(
    registry: Registry | str | os.PathLike[str] | None = None,
    *,
    names: Iterable[str] | None = None,
    write: bool | None = None,
    on_result: OnResult | None = None,
    latency_seconds: float = 0.4,
    exports: bool = True,
    jobs: int = 1,
    latency: bool = True,
    shard: Shard | ShardPlan | str | None = None,
    durations: str | os.PathLike[str] | None = None,
) -> ValidationReport:
    """Validate every model of ``registry`` (a :class:`Registry`, a path, or None to find one).

    Invalid entries are reported as failed models; the other models are still
    checked. The report goes to ``models/validation_results.json`` beside the
    registry (schema-checked, written atomically) when the run covers every
    model of the registry: the file is the record of the whole registry, so by
    default (``write=None``) a run of a few ``names`` leaves it alone.
    ``write=True`` writes it anyway, ``write=False`` never. ``on_result`` is
    called as each model finishes.

    ``jobs > 1`` runs the checks of several models in a process pool; latency
    is then measured afterwards in this process, one model at a time, with the
    pool shut down, so that parallel work never disturbs the figures.
    ``latency=False`` measures no latency at all (torch's and the exporters'
    latency checks are reported as skipped): for commit hooks, where a loaded
    machine's timings would block a commit for noise.

    ``shard="I/N"`` validates shard I of N of the whole registry (no ``names``):
    the models :func:`modelreg.shards.plan_shard` gives it, balanced by the
    durations in ``durations`` (default: the results file) when there are any
    (or a :class:`~modelreg.shards.ShardPlan` made beforehand).
    Its results go to ``models/validation_results.shard-I-of-N.json`` (unless
    ``write=False``), never to the full results file; ``modelreg merge-results``
    combines the shards' files. The report's ``shard`` holds the plan.
    """
    if jobs < 1:
        raise UsageError.at("jobs must be at least 1", key="jobs", expected="an integer >= 1", found=jobs)
    reg = _resolve(registry)
    plan = None
    if shard is not None:
        if names is not None:
            raise UsageError.at("a shard is a share of the whole registry: give model names or a shard, not both",
                                key="shard", expected="no model names with a shard", found=list(names))
        from .shards import ShardPlan, plan_shard

        plan = shard if isinstance(shard, ShardPlan) else plan_shard(reg, shard, durations)
        names = plan.models
    selected = list(reg.names) if names is None else list(dict.fromkeys(names))
    unknown = [n for n in selected if n not in reg.names]
    if unknown:
        # Raises UnknownModelError with a suggestion for the first unknown name.
        reg[unknown[0]]
    if write is None:
        write = plan is not None or set(selected) >= set(reg.names)
    target = results_path(reg)
    if plan is not None:
        from .shards import shard_results_path

        target = shard_results_path(reg, plan.shard)
    if write:
        _check_results_path(reg, target)
    report = ValidationReport(registry=reg.path, shard=None if plan is None else plan.record())
    report.problems.extend(reg.problems)
    if exports:
        report.problems.extend(_artifact_path_problems(reg, selected))
    from .plugins import plugin_problems, sessions

    report.warnings.extend(plugin_problems())
    valid = [name for name in selected if name not in reg.invalid]
    if jobs > 1 and len(valid) > 1:
        parallel = _checks_in_pool(reg, valid, jobs, latency_seconds, exports)
    else:
        parallel = {}
    # The exporters' run scopes (RTNeural C++: the toolchain is looked at once per run).
    formats = [fmt for name in valid for fmt in reg[name].exports] if exports else []
    with sessions(formats):
        for name in selected:
            if name in reg.invalid:
                model_report = _invalid_entry_report(name, reg.invalid[name])
            elif name in parallel:
                model_report = parallel[name]
                if latency:
                    add_latency(model_report, reg[name], latency_seconds=latency_seconds)
                else:
                    skip_latency(model_report)
            else:
                model_report = validate_model(reg[name], latency_seconds=latency_seconds, exports=exports,
                                              latency=latency, defer_latency=not latency)
                if not latency:
                    skip_latency(model_report)
            report.models[name] = model_report
            if on_result is not None:
                on_result(model_report)
    # Recorded now, not when the report was made: torch is imported by the first model built.
    report.environment = environment(_packages_used(report))
    if write:
        try:
            report.write(target)
        except WriteError:
            raise
        except OSError as exc:  # not writable, disk full: the old results file is kept (atomic write)
            from .exporting import write_error

            raise write_error(exc, target, "the validation results") from None
    return report


def _packages_used(report: ValidationReport) -> set[str]:
    """The libraries that ran checks in this report (their versions go into its environment)."""
    ran = [check.name for model in report.models.values() for check in model.checks if check.status != "skip"]
    used: set[str] = set()
    if "build" in ran:  # building a module is torch; every check after it uses numpy too
        used |= {"torch", "numpy"}
    from .plugins import get_exporter

    for fmt in {name.split(".", 1)[0] for name in ran if "." in name}:
        try:
            used |= set(get_exporter(fmt).packages)  # e.g. onnx, onnxruntime
        except Exception:  # a broken plugin: its checks say why
            continue
    return used


def _artifact_path_problems(reg: Registry, names: list[str]) -> list[Problem]:
    """Artifact paths that leave the registry's folder: a run-level problem (exit 2), as in export.
    (The model's ``FORMAT.exists`` check fails with the same message.)"""
    from .exporting import artifact_path
    from .errors import ArtifactError
    from .plugins import get_exporter

    problems: list[Problem] = []
    for name in names:
        spec = reg.get(name)
        if spec is None:
            continue
        for fmt in spec.exports:
            try:
                artifact_path(spec, get_exporter(fmt))
            except ArtifactError as exc:
                problems.extend(exc.problems)
            except Exception:  # a broken plugin: the model's own checks report it
                continue
    return problems


def _check_results_path(reg: Registry, target: Path | None = None) -> None:
    """Before any work: refuse a results path leaving the registry's folder, and remove
    temporary files that killed runs left beside it."""
    from .atomic import remove_orphaned_temps

    target = results_path(reg) if target is None else target
    note = outside_note(reg.root, target)
    if note is not None:
        raise WriteError(Problem("the validation results file leaves the registry's folder; refusing to write it",
                                 file=display_path(reg.path), expected="a file inside the registry's folder", found=note))
    remove_orphaned_temps(target.parent)


def _checks_in_pool(
    reg: Registry, names: list[str], jobs: int, latency_seconds: float, exports: bool
) -> dict[str, ModelReport]:
    """Every check but latency, for ``names``, in ``jobs`` worker processes."""
    import concurrent.futures

    from .workers import process_pool

    results: dict[str, ModelReport] = {}
    with process_pool(jobs, (fmt for name in names for fmt in reg[name].exports) if exports else ()) as pool:
        futures = {pool.submit(validate_model, reg[name], latency_seconds=latency_seconds,
                               exports=exports, latency=False, defer_latency=True,
                               concurrent_formats=False): name for name in names}
        for future in concurrent.futures.as_completed(futures):
            name = futures[future]
            try:
                results[name] = future.result()
            except Exception as exc:  # a worker that died (e.g. killed, out of memory)
                failed = ModelReport(name)
                failed.checks.append(_unexpected("build", exc))
                results[name] = failed
    return results


def validate(
    name: str | Iterable[str],
    registry: Registry | str | os.PathLike[str] | None = None,
    *,
    write: bool = False,
    on_result: OnResult | None = None,
    latency_seconds: float = 0.4,
) -> ValidationReport:
    """Validate one model (or a few) by name. Does not write the results file unless ``write``."""
    names = [name] if isinstance(name, str) else list(name)
    if not names:
        raise UsageError.at("no model names given", expected="at least one model name")
    return validate_all(registry, names=names, write=write, on_result=on_result, latency_seconds=latency_seconds)
