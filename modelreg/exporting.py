"""Export runs, the lock file that records them, and the artifact checks of a validation run.

An artifact is only installed when it is complete and proven: the exporter
writes it to a temporary file beside the target, the file is checked against
its schema and format rules, run in its own runtime for parity, and only then
renamed over the old artifact. ``registry.lock`` records what each artifact
was made from, so that a later run can tell fresh from stale from tampered.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .atomic import (atomic_write_text, file_identity, fsync_file, install, remove_orphaned_temps, remove_temp, sha256_file,
                     temp_leftovers, temp_prefix)
from .errors import (ArtifactError, ExportError, ModelRegError, Problem, RegistryError, UsageError, WriteError,
                     format_problems)
from .latency import single_thread
from .plugins import Exporter, get_exporter
from .paths import display_path, outside_note
from .registry import Registry, load_registry
from .report import CheckResult

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

if TYPE_CHECKING:
    from .builder import RealtimeModel
    from .spec import ModelSpec

__all__ = [
    "LOCK_FILENAME",
    "ArtifactResult",
    "ExportReport",
    "artifact_checks",
    "artifact_path",
    "export",
    "export_all",
    "freshness",
    "lock_record",
    "read_lock",
]

LOCK_FILENAME = "registry.lock"
LOCK_FORMAT = 1
# The entry fields an artifact depends on. A new description or latency target
# does not make an export stale; a changed layer or shape does.
ARTIFACT_FIELDS = ("input_shape", "output_shape", "dtype", "layers")
#: Fields that shape some artifacts, hashed only when an entry sets them: an entry without them
#: hashes as it did before they existed (its records in registry.lock stay fresh). cpp_weights:
#: the rtneural-cpp header's form; reset, rest_input: the resting state an ONNX file carries.
OPTIONAL_ARTIFACT_FIELDS = ("cpp_weights", "reset", "rest_input")


def artifact_entry_sha256(spec: ModelSpec) -> str:
    """Hash of the entry fields that shape an artifact (canonical JSON)."""
    import hashlib
    import json

    relevant = {key: spec.entry.get(key) for key in ARTIFACT_FIELDS}
    relevant.update({key: spec.entry[key] for key in OPTIONAL_ARTIFACT_FIELDS if key in spec.entry})
    canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# ---------------------------------------------------------------- lock file


def lock_path(root: Path) -> Path:
    """``registry.lock`` beside the registry file in ``root``."""
    return root / LOCK_FILENAME


_lock_cache: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}


def read_lock(root: Path) -> dict[str, Any]:
    """The parsed ``registry.lock`` in folder ``root``, or an empty one. A damaged lock file is an error.

    The result is cached while the file is unchanged (same inode, size and
    mtime): a validation run asks once per model, and re-parsing a lock of N
    models N times would make the run quadratic. Treat it as read-only.
    """
    path = lock_path(root)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {"format": LOCK_FORMAT, "models": {}}
    except OSError as exc:
        raise RegistryError.at(f"cannot read the lock file: {exc.strerror or exc}", file=display_path(path)) from None
    identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    cached = _lock_cache.get(path)
    if cached is not None and cached[0] == identity:
        return cached[1]
    data = _parse_lock(path)
    _lock_cache[path] = (identity, data)
    return data


def _parse_lock(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"format": LOCK_FORMAT, "models": {}}
    except (OSError, UnicodeDecodeError) as exc:
        raise RegistryError.at(f"cannot read the lock file: {getattr(exc, 'strerror', None) or exc}",
                               file=display_path(path)) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RegistryError.at(f"damaged lock file ({exc}); delete it and run `modelreg export --force`",
                               file=display_path(path)) from None
    if not isinstance(data.get("models", {}), dict):
        raise RegistryError.at("damaged lock file: 'models' is not a table", file=display_path(path))
    data.setdefault("models", {})
    return data


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    """Serialise read-modify-write of registry.lock between processes."""
    from filelock import FileLock

    with FileLock(str(lock_path(root)) + ".flock", timeout=300):
        yield


# errno values meaning "this folder or disk cannot take the file" (an environment
# problem that stops the command), as opposed to an exporter's bug.
_WRITE_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EACCES", "EPERM", "ENOTDIR", "EISDIR", "EEXIST")
    if hasattr(errno, name)
)


def write_error(exc: OSError, path: Path, what: str, model: str | None = None) -> WriteError:
    """An OSError met while writing ``path``, as one clear message naming the file
    (and the folder on its way when that is the culprit, never a temporary file)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    culprit = Path(exc.filename).absolute() if isinstance(exc.filename, str) else None
    if culprit is not None and culprit in path.absolute().parents:
        if exc.errno in (errno.EEXIST, errno.ENOTDIR) and not culprit.is_dir():
            reason = f"{display_path(culprit)} is a file, not a folder"
        else:
            reason += f": {display_path(culprit)}"
    return WriteError.at(f"cannot write {what} ({reason}); any previous file was kept",
                         file=display_path(path), model=model)


def artifact_path(spec: ModelSpec, exporter: Exporter) -> Path:
    """Where ``exporter`` puts ``spec``'s artifact; refused (ArtifactError) when that leaves the
    registry's folder: ``../``, an absolute path elsewhere, a symlinked file or folder pointing out."""
    path = exporter.artifact_path(spec)
    note = outside_note(spec.registry_dir, path)
    if note is not None:
        index = f"[{spec.exports.index(exporter.name)}]" if exporter.name in spec.exports else ""
        raise ArtifactError(Problem(
            "artifact path leaves the registry's folder; nothing is read or written there",
            file=display_path(spec.registry_file), model=spec.name, key=f"models.{spec.name}.exports{index}",
            expected="a path inside the registry's folder", found=note,
        ))
    return path


@attrs.frozen
class _Made:
    """An artifact to record in registry.lock."""

    spec: ModelSpec
    exporter: Exporter
    path: Path
    sha256: str
    #: The file installed at ``path`` (see :func:`~modelreg.atomic.file_identity`), to tell it from a later one.
    identity: tuple[int, int, int, int]
    #: The checkpoint bytes the artifact was made from (the module's, not the file's now).
    checkpoint_sha256: str


def _record(root: Path, made: list[_Made]) -> None:
    """Add ``made`` to registry.lock in one read-modify-write, under the cross-process lock."""
    if not made:
        return
    # Artifact paths are absolute; a registry given as a relative path (--registry
    # registry.toml) has a relative root, and relative_to() would fail between the two.
    root = root.absolute()
    try:
        with _locked(root):
            _write_records(root, made)
    except OSError as exc:  # registry.lock(.flock) cannot be written: folder not writable, disk full
        raise write_error(exc, lock_path(root), LOCK_FILENAME) from None


def _write_records(root: Path, made: list[_Made]) -> None:
    import tomli_w

    from ._version import __version__

    lock = _parse_lock(lock_path(root))  # fresh, never the cache: another process may have written it
    for item in made:
        with contextlib.suppress(OSError):
            if file_identity(item.path) != item.identity:
                # Another run installed its own file here since (a concurrent
                # `modelreg export`): it records that file itself, after us or
                # already. Recording ours would describe a file that is gone.
                continue
        # Recorded per artifact: formats can be exported at different times
        # (`--format onnx`), from different checkpoints.
        artifacts = lock["models"].setdefault(item.spec.name, {}).setdefault("artifacts", {})
        artifacts[item.exporter.name] = {
            "path": item.path.relative_to(root).as_posix(),
            "sha256": item.sha256,
            "exporter": item.exporter.name,
            "exporter_version": item.exporter.version,
            "entry_sha256": artifact_entry_sha256(item.spec),
            "checkpoint_sha256": item.checkpoint_sha256,
            "torch": _torch_version(),
            "modelreg": __version__,
        }
    lock["format"] = LOCK_FORMAT
    header = "# Written by `modelreg export`: what each artifact was made from. Do not edit.\n"
    atomic_write_text(lock_path(root), header + tomli_w.dumps(lock))


def _torch_version() -> str:
    torch = sys.modules.get("torch")
    return str(torch.__version__) if torch is not None else "unknown"


def tampered_reason(model: str) -> str:
    """Why an artifact whose bytes differ from its registry.lock record is refused, and what to do."""
    return (f"changed after export (sha256 differs from {LOCK_FILENAME}: edited by hand, or an export was "
            f"killed before recording it); run `modelreg export --force {model}`")


def lock_record(path: Path) -> tuple[Path, str, str, dict[str, Any]] | None:
    """The registry.lock record of the artifact at ``path`` (lock file, model, format, record), if any.

    The nearest ``registry.lock`` in the file's folder or a folder above decides, as
    the registry beside it would (``modelreg check`` has no registry to start from).
    """
    target = path.resolve()
    for folder in target.parents:
        if (folder / LOCK_FILENAME).is_file():
            lock = read_lock(folder)  # a damaged lock file is an error, as in export
            for model, entry in lock["models"].items():
                artifacts = entry.get("artifacts", {}) if isinstance(entry, dict) else {}
                for fmt, record in artifacts.items():
                    if isinstance(record, dict) and (folder / str(record.get("path", ""))).resolve() == target:
                        return folder / LOCK_FILENAME, model, fmt, record
            return None
    return None


@attrs.frozen
class Freshness:
    """Whether an artifact still matches what it was made from."""

    state: str  # "fresh", "missing", "stale", "tampered"
    reason: str

    @property
    def fresh(self) -> bool:
        return self.state == "fresh"


def freshness(spec: ModelSpec, exporter: Exporter, lock: dict[str, Any], checkpoint_sha256: str | None = None) -> Freshness:
    """Compare an artifact with its lock record and the entry/checkpoint it came from."""
    artifact = artifact_path(spec, exporter)
    if not artifact.is_file():
        return Freshness("missing", f"{display_path(artifact)} does not exist; run `modelreg export {spec.name}`")
    record = lock.get("models", {}).get(spec.name, {}).get("artifacts", {}).get(exporter.name)
    if not isinstance(record, dict):
        return Freshness("stale", f"{display_path(artifact)} is not recorded in {LOCK_FILENAME}; run `modelreg export --force {spec.name}`")
    if record.get("sha256") != sha256_file(artifact):
        return Freshness("tampered", f"{display_path(artifact)} {tampered_reason(spec.name)}")
    reasons = []
    if record.get("entry_sha256") != artifact_entry_sha256(spec):
        reasons.append("the registry entry's reset or architecture changed")
    current_checkpoint = checkpoint_sha256 or sha256_file(spec.checkpoint)
    if record.get("checkpoint_sha256") != current_checkpoint:
        reasons.append("the checkpoint changed")
    if record.get("exporter_version") != exporter.version:
        reasons.append(f"exporter version {record.get('exporter_version')} -> {exporter.version}")
    if reasons:
        return Freshness("stale", f"{display_path(artifact)} is stale: {'; '.join(reasons)}; run `modelreg export {spec.name}`")
    return Freshness("fresh", f"{display_path(artifact)} matches {LOCK_FILENAME}")


# ---------------------------------------------------------------- export


@attrs.frozen
class ArtifactResult:
    """One artifact of one export run."""

    model: str
    exporter: str
    path: Path | None  # None when the exporter itself could not be found
    status: str  # "written", "fresh" (kept), "failed"
    message: str = ""
    figures: dict[str, Any] = attrs.field(factory=dict)
    made: _Made | None = attrs.field(default=None, repr=False, eq=False)  # for registry.lock
    # Set when the artifact could not be written (disk full, folder not writable):
    # the whole run stops with this error once the results in flight are recorded.
    stop: WriteError | None = attrs.field(default=None, repr=False, eq=False)

    @property
    def ok(self) -> bool:
        return self.status in ("written", "fresh")


@attrs.define
class ExportReport:
    """Every artifact of an export run; ``.ok`` when none failed."""

    registry: Path
    artifacts: list[ArtifactResult] = attrs.field(factory=list)
    problems: list[Problem] = attrs.field(factory=list)
    warnings: list[Problem] = attrs.field(factory=list)  # plugins that failed to load
    #: Models of the run not exported because their registry entry is invalid (their problems are in ``problems``).
    invalid: list[str] = attrs.field(factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and all(a.ok for a in self.artifacts)


def _require_written(spec: ModelSpec, exporter: Exporter, target: Path, tmp: Path) -> None:
    """The exporter wrote its artifact at exactly the path it was given, not beside it.

    ``tmp`` was created empty; an exporter that leaves it so (np.savez(path)
    writes ``path.npz``) would otherwise fail later with a puzzling "not a
    readable file" from its own check.
    """
    try:
        size: int | None = tmp.stat().st_size if tmp.is_file() else None
    except OSError:
        size = None
    if size:
        return
    found = "an empty file" if size == 0 else "no file"
    beside = [leftover.name for leftover in temp_leftovers(tmp)]
    if beside:
        found += f"; it wrote {', '.join(beside)} beside it instead (removed)"
    raise ExportError(Problem(
        f"exporter {exporter.name!r} wrote nothing at the path it was given: Exporter.export() must write "
        "the artifact at exactly that path (functions such as np.savez append a suffix to a name "
        "without it: pass an open file instead)",
        file=display_path(target), model=spec.name,
        expected=f"the artifact written at {tmp.name}", found=found,
    ))


def _export_one(spec: ModelSpec, module: RealtimeModel, exporter: Exporter) -> ArtifactResult:
    """Write to a temporary file, check and verify it, then rename it over the artifact."""
    from .checks import tolerance_for

    target = artifact_path(spec, exporter)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".partial", dir=target.parent)
        os.close(fd)
    except OSError as exc:  # the folder is a file, not writable, on a full disk...
        raise write_error(exc, target, "the artifact", spec.name) from None
    tmp = Path(tmp_name)
    started = time.perf_counter()
    try:
        try:
            exporter.export(spec, module, tmp)
        except OSError as exc:
            if exc.errno not in _WRITE_ERRNOS:
                raise  # not the disk's fault: reported as the exporter's error
            raise write_error(exc, target, "the artifact", spec.name) from None
        export_seconds = time.perf_counter() - started
        _require_written(spec, exporter, target, tmp)
        problems = exporter.check_artifact(spec, tmp)
        if problems:
            raise ArtifactError(*problems)
        parity = exporter.verify(spec, module, tmp, tolerance_for(spec))
        if not parity.ok:
            raise ExportError.at(
                f"exported file does not behave like the model: {parity.summary_for(spec)}; the previous artifact was kept",
                file=display_path(target), model=spec.name,
            )
        digest = sha256_file(tmp)
        try:
            fsync_file(tmp)  # the exporter wrote it its own way: make it durable before the rename
            identity = file_identity(tmp)  # what the rename installs: the same inode
            install(tmp, target)
        except OSError as exc:  # e.g. the target is a folder
            raise write_error(exc, target, "the artifact", spec.name) from None
    finally:
        remove_temp(tmp)  # and whatever the exporter made beside it (np.savez's "tmp.npz")
    figures = {"bytes": target.stat().st_size, "export_seconds": round(export_seconds, 4),
               "max_error": parity.max_error, "max_abs_error": parity.max_abs_error, "sha256": digest}
    message = f"parity {parity.summary}"
    if parity.skipped:  # written, but not run in its runtime: say so, never "parity nan"
        figures.update(max_error=None, max_abs_error=None, parity_skipped=parity.skipped)
        message = f"parity skipped: {parity.skipped}"
    return ArtifactResult(spec.name, exporter.name, target, "written", message, figures,
                          made=_Made(spec, exporter, target, digest, identity,
                                     module.checkpoint_sha256 or sha256_file(spec.checkpoint)))


def _resolve(registry: Registry | str | os.PathLike[str] | None) -> Registry:
    return registry if isinstance(registry, Registry) else load_registry(registry, strict=False)


def export_all(
    registry: Registry | str | os.PathLike[str] | None = None,
    *,
    names: Iterable[str] | None = None,
    formats: Iterable[str] | None = None,
    force: bool = False,
    on_result: Callable[[ArtifactResult], None] | None = None,
    jobs: int = 1,
) -> ExportReport:
    """Export every declared format of every model (or of ``names`` / ``formats``).

    Fresh artifacts are kept unless ``force``. One model's failure never stops
    the others; invalid entries are reported in ``ExportReport.problems``.
    ``jobs > 1`` exports several models at once in a process pool (results are
    reported in registry order); registry.lock updates are serialised by a file lock.
    """
    if jobs < 1:
        raise UsageError.at("jobs must be at least 1", key="jobs", expected="an integer >= 1", found=jobs)
    reg = _resolve(registry)
    selected = list(reg.names) if names is None else list(dict.fromkeys(names))
    for name in selected:
        if name not in reg.names:
            reg[name]  # raises UnknownModelError with a suggestion
    wanted = None if formats is None else list(dict.fromkeys(formats))
    for fmt in wanted or []:
        get_exporter(fmt)  # unknown format: clear error listing the available ones
    report = ExportReport(reg.path)
    report.problems.extend(p for name in selected for p in reg.invalid.get(name, ()))
    report.invalid.extend(name for name in selected if name in reg.invalid)
    _check_paths(reg, selected, wanted, report.problems)
    from .plugins import plugin_problems

    report.warnings.extend(plugin_problems())

    pending: list[_Made] = []
    last_flush = time.monotonic()
    stop: list[WriteError] = []

    def emit(result: ArtifactResult) -> None:
        nonlocal last_flush
        if result.stop is not None:
            stop.append(result.stop)  # raised once the work in flight is recorded
            return
        report.artifacts.append(result)
        if result.made is not None:
            pending.append(result.made)
        # registry.lock is rewritten whole, so writing it per artifact would make a
        # run quadratic in the number of models; flush at most once a second. An
        # artifact a crash leaves unrecorded reads as stale and is simply redone.
        if pending and time.monotonic() - last_flush >= 1.0:
            _record(reg.root, pending)
            pending.clear()
            last_flush = time.monotonic()
        if on_result is not None:
            on_result(result)

    work = []
    for name in selected:
        if name in reg.invalid:
            continue
        spec = reg[name]
        formats_here = [f for f in spec.exports if wanted is None or f in wanted]
        if formats_here:
            work.append((spec, formats_here))
    report.problems.extend(_undeclared_formats(reg, selected, wanted, named=names is not None))
    if jobs > 1 and len(work) > 1:
        import concurrent.futures

        from .workers import process_pool

        with process_pool(jobs, (fmt for _, fmts in work for fmt in fmts)) as pool:
            futures = [pool.submit(_export_model, spec, fmts, force) for spec, fmts in work]
            for (spec, fmts), future in zip(work, futures):
                if stop:
                    future.cancel()  # not started yet: leave it; a running one is waited for
                try:
                    results = future.result()
                except concurrent.futures.CancelledError:
                    continue
                except Exception as exc:  # the worker died
                    results = [ArtifactResult(spec.name, f, None, "failed", f"worker failed: {exc}") for f in fmts]
                for result in results:
                    emit(result)
    else:
        for spec, fmts in work:
            if stop:
                break
            for result in _export_model(spec, fmts, force):
                emit(result)
    _record(reg.root, pending)
    if stop:
        raise stop[0]
    return report


def _undeclared_formats(reg: Registry, selected: list[str], wanted: list[str] | None, named: bool) -> list[Problem]:
    """Requested formats that nothing will be exported to: silence there would read as success.

    Models named explicitly must each declare every requested format; for a
    whole-registry run, a format is wrong only when no model declares it.
    """
    if wanted is None:
        return []
    valid = [reg[name] for name in selected if name not in reg.invalid]
    shown = display_path(reg.path)
    problems = []
    for fmt in wanted:
        if named:
            problems += [Problem(f"format {fmt!r} is not declared for this model, so nothing is exported to it",
                                 file=shown, model=spec.name, key=f"models.{spec.name}.exports",
                                 expected=f"{fmt!r} listed in exports", found=str(list(spec.exports)))
                         for spec in valid if fmt not in spec.exports]
        elif valid and not any(fmt in spec.exports for spec in valid):
            problems.append(Problem(f"format {fmt!r} is declared by none of the {len(valid)} models, "
                                    "so nothing is exported to it", file=shown,
                                    expected=f"a model with {fmt!r} in its exports"))
    return problems


def _check_paths(reg: Registry, names: list[str], wanted: list[str] | None, problems: list[Problem]) -> None:
    """Refuse paths leaving the registry's folder up front (exit 2), and remove the
    temporary files that killed runs left in the folders this run writes to."""
    root = reg.root
    note = outside_note(root, lock_path(root))
    if note is not None:
        raise WriteError(Problem(f"{LOCK_FILENAME} leaves the registry's folder; refusing to read or write it",
                                 file=display_path(reg.path), expected="a file inside the registry's folder", found=note))
    read_lock(root)  # a damaged lock stops the run here, the same way with or without --jobs
    folders = {root}
    for name in names:
        spec = reg.get(name)
        if spec is None:
            continue
        for fmt in spec.exports:
            if wanted is not None and fmt not in wanted:
                continue
            try:
                folders.add(artifact_path(spec, get_exporter(fmt)).parent)
            except ArtifactError as exc:
                problems.extend(exc.problems)
            except Exception:  # a broken plugin: reported with the model's results
                continue
    for folder in folders:
        remove_orphaned_temps(folder)


def _export_model(spec: ModelSpec, formats: list[str], force: bool) -> list[ArtifactResult]:
    """Every requested format of one model; never raises for the model's own problems."""
    from .plugins import sessions

    with sessions(formats):  # e.g. RTNeural C++: the toolchain is looked at once for the model's formats
        return _export_formats(spec, formats, force)


def _export_formats(spec: ModelSpec, formats: list[str], force: bool) -> list[ArtifactResult]:
    results: list[ArtifactResult] = []
    lock = read_lock(spec.registry_dir)
    module: RealtimeModel | None = None
    load_failed = False
    for fmt in formats:
        path: Path | None = None
        try:
            exporter = get_exporter(fmt)
            path = exporter.artifact_path(spec)
            artifact_path(spec, exporter)  # refuses a path leaving the registry's folder
            if not force and freshness(spec, exporter, lock).fresh:
                results.append(ArtifactResult(spec.name, fmt, path, "fresh", "up to date (use --force to rewrite)"))
                continue
            if load_failed:  # its problems are in the first format's result: not repeated per format
                results.append(ArtifactResult(spec.name, fmt, path, "failed",
                                              "not exported: the checkpoint does not load (see above)"))
                continue
            if module is None:
                try:
                    module = spec.load()
                except Exception:
                    load_failed = True
                    raise  # reported below, with this format
            with single_thread():  # see validation.validate_model
                results.append(_export_one(spec, module, exporter))
        except WriteError as exc:
            # The disk or folder cannot take files: the other formats and models
            # would fail the same way. Stop, with one clear error (exit 2).
            results.append(ArtifactResult(spec.name, fmt, path, "failed", str(exc), stop=exc))
            break
        except ModelRegError as exc:
            results.append(ArtifactResult(spec.name, fmt, path, "failed", str(exc)))
        except Exception as exc:  # a plugin's bug must not stop the other models
            results.append(ArtifactResult(spec.name, fmt, path, "failed",
                                          f"unexpected {type(exc).__name__} in exporter {fmt!r}: {exc}"))
    return results


def export(
    name: str | Iterable[str],
    registry: Registry | str | os.PathLike[str] | None = None,
    *,
    formats: Iterable[str] | None = None,
    force: bool = False,
) -> ExportReport:
    """Export one model (or a few) by name."""
    names = [name] if isinstance(name, str) else list(name)
    if not names:
        raise UsageError.at("no model names given", expected="at least one model name")
    return export_all(registry, names=names, formats=formats, force=force)


# ---------------------------------------------------------------- validation


#: What a latency check an exporter adds says while a parallel run has deferred it.
DEFERRED = "deferred: measured after the parallel checks, one model at a time"


#: Check name endings that measure time: they run after a model's other checks, alone (with
#: ``--jobs``: after the worker pool), like torch's latency.
TIMED_SUFFIXES = ("latency", "denormals")


def is_latency_check(name: str) -> bool:
    """Whether check ``name`` measures time: ``latency``, or an exporter's ``FORMAT.*latency`` /
    ``FORMAT.*denormals`` (see :data:`TIMED_SUFFIXES`)."""
    return name.endswith(TIMED_SUFFIXES)


def artifact_checks(
    spec: ModelSpec, module: RealtimeModel, tolerance: float, *, defer_latency: bool = False
) -> list[tuple[str, Callable[[], CheckResult]]]:
    """Per declared export: the artifact exists, is fresh, passes its schema, passes parity.

    Returned as named callables so the validation run isolates each one.
    ``defer_latency``: an exporter's latency checks (see :func:`is_latency_check`)
    that would run report a skip carrying ``{"deferred": True}`` instead, for
    :func:`run_deferred` to run later.
    """
    checks: list[tuple[str, Callable[[], CheckResult]]] = []
    lock_holder: dict[str, Any] = {}

    def lock() -> dict[str, Any]:
        if "lock" not in lock_holder:
            lock_holder["lock"] = read_lock(spec.registry_dir)
        return lock_holder["lock"]

    for fmt in spec.exports:
        state: dict[str, Any] = {}

        def exists(fmt: str = fmt, state: dict[str, Any] = state) -> CheckResult:
            exporter = get_exporter(fmt)
            state["exporter"] = exporter
            path = artifact_path(spec, exporter)
            if path.exists() and not path.is_file():  # "does not exist" would send the user looking in vain
                return CheckResult(f"{fmt}.exists", "fail", f"{display_path(path)} is not a file (a folder?); "
                                   f"remove it and run `modelreg export {spec.name}`")
            if not path.is_file():
                return CheckResult(f"{fmt}.exists", "fail", f"{display_path(path)} does not exist; run `modelreg export {spec.name}`")
            state["path"] = path
            return CheckResult(f"{fmt}.exists", "pass", display_path(path), {"bytes": path.stat().st_size})

        def fresh(fmt: str = fmt, state: dict[str, Any] = state) -> CheckResult:
            if "path" not in state:
                return CheckResult(f"{fmt}.fresh", "skip", "not run: no artifact")
            # Against the checkpoint bytes the module under test was loaded from (hashed once, at load).
            verdict = freshness(spec, state["exporter"], lock(), module.checkpoint_sha256)
            state["fresh"] = verdict.fresh
            return CheckResult(f"{fmt}.fresh", "pass" if verdict.fresh else "fail", verdict.reason, {"state": verdict.state})

        def schema(fmt: str = fmt, state: dict[str, Any] = state) -> CheckResult:
            if "path" not in state:
                return CheckResult(f"{fmt}.schema", "skip", "not run: no artifact")
            problems = state["exporter"].check_artifact(spec, state["path"])
            state["schema_ok"] = not problems
            if problems:
                return CheckResult(f"{fmt}.schema", "fail", format_problems(problems), {"problems": len(problems)})
            return CheckResult(f"{fmt}.schema", "pass", "file passes its schema and format rules")

        def parity(fmt: str = fmt, state: dict[str, Any] = state) -> CheckResult:
            if not (state.get("fresh") and state.get("schema_ok")):
                why = "the artifact is stale or tampered" if state.get("schema_ok") else "no valid artifact"
                return CheckResult(f"{fmt}.parity", "skip", f"not run: {why}")
            result = state["exporter"].verify(spec, module, state["path"], tolerance)
            if result.skipped:
                return CheckResult(f"{fmt}.parity", "skip", result.skipped, result.to_figures())
            runtime = state["exporter"].runtime or fmt
            return CheckResult(f"{fmt}.parity", "pass" if result.ok else "fail", f"{runtime}: {result.summary_for(spec)}",
                               result.to_figures())

        checks += [(f"{fmt}.exists", exists), (f"{fmt}.fresh", fresh), (f"{fmt}.schema", schema), (f"{fmt}.parity", parity)]
        checks += _extra_checks(spec, module, tolerance, fmt, state, defer_latency)
    return checks


def run_artifact_checks(
    spec: ModelSpec, module: RealtimeModel, tolerance: float, capture: Callable[[str, Callable[[], CheckResult]], CheckResult],
    *, defer_latency: bool = False, concurrent: bool = True,
) -> list[CheckResult]:
    """Run :func:`artifact_checks` through ``capture(name, check)``; the results in that order.

    The checks of the formats whose exporter is :attr:`~modelreg.Exporter.thread_safe`
    run concurrently, one thread per format (each format's checks in their order, as
    each depends on the one before). Their runtimes work mostly outside Python
    (RTNeural's C++ loader in its runner processes, onnxruntime, numpy), so one
    format's proof overlaps another's: with RTNeural C++ in the loop, its two loaders
    parse the same megabytes at once on two cores instead of one after the other.
    The other formats' checks run afterwards, one at a time; the latency checks
    (:func:`is_latency_check`) last, each alone, so no timing ever shares the
    machine with a proof. ``concurrent=False``: every format alone, in order (for
    worker processes of a parallel run, where threads would only oversubscribe
    the cores: measured 0.76x serial at 200 models with them).
    """
    from concurrent.futures import ThreadPoolExecutor

    checks = artifact_checks(spec, module, tolerance, defer_latency=defer_latency)
    results: list[CheckResult | None] = [None] * len(checks)
    chains: dict[str, list[int]] = {}  # format -> positions of its checks, in order
    timings: list[int] = []
    for position, (name, _) in enumerate(checks):
        if is_latency_check(name):
            timings.append(position)
        else:
            chains.setdefault(name.split(".", 1)[0], []).append(position)

    def run(positions: list[int]) -> None:
        for position in positions:
            results[position] = capture(*checks[position])

    def thread_safe(fmt: str) -> bool:
        try:
            return bool(get_exporter(fmt).thread_safe)
        except Exception:  # a broken plugin: its FORMAT.exists check reports it, alone
            return False

    together = [positions for fmt, positions in chains.items() if concurrent and thread_safe(fmt)]
    alone = [positions for fmt, positions in chains.items() if not (concurrent and thread_safe(fmt))]
    if len(together) > 1:
        with ThreadPoolExecutor(max_workers=len(together), thread_name_prefix=f"modelreg-{spec.name}") as pool:
            for _ in pool.map(run, together):  # re-raises what capture() let through (KeyboardInterrupt)
                pass
    else:
        alone = together + alone
    for positions in alone + [timings]:
        run(positions)
    return [result for result in results if result is not None]


def run_deferred(spec: ModelSpec, module: RealtimeModel, tolerance: float, name: str) -> CheckResult:
    """Run the exporter check ``name`` (``FORMAT.SUFFIX``) that :func:`artifact_checks` deferred."""
    fmt, suffix = name.split(".", 1)
    exporter = get_exporter(fmt)
    checks = dict(exporter.extra_checks(spec, module, tolerance))
    return checks[suffix](artifact_path(spec, exporter))


def _extra_checks(
    spec: ModelSpec, module: RealtimeModel, tolerance: float, fmt: str, state: dict[str, Any], defer_latency: bool
) -> list[tuple[str, Callable[[], CheckResult]]]:
    """An exporter's own further checks (``Exporter.extra_checks``), run on a fresh, schema-valid artifact."""
    try:
        extras = get_exporter(fmt).extra_checks(spec, module, tolerance)
    except Exception:  # a broken plugin: FORMAT.exists reports it
        return []
    checks: list[tuple[str, Callable[[], CheckResult]]] = []
    for suffix, check in extras:
        def run(name: str = f"{fmt}.{suffix}", check: Callable[[Path], CheckResult] = check) -> CheckResult:
            if not (state.get("fresh") and state.get("schema_ok")):
                why = "the artifact is stale or tampered" if state.get("schema_ok") else "no valid artifact"
                return CheckResult(name, "skip", f"not run: {why}")
            if defer_latency and is_latency_check(name):
                return CheckResult(name, "skip", DEFERRED, {"deferred": True})
            return check(state["path"])
        checks.append((f"{fmt}.{suffix}", run))
    return checks
