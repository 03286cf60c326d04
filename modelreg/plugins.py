"""Exporter plugins: one small interface and one entry-point loader.

Exporters are found through the entry-point group ``modelreg.exporters``;
the built-in ones are registered there too (see pyproject.toml), so they go
through exactly the same path as third-party ones. Scripts and tests can add
exporters with :func:`register_exporter`.
"""

from __future__ import annotations

import abc
import contextlib
import math
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from .errors import PluginError, Problem, UsageError, did_you_mean

if TYPE_CHECKING:
    from .builder import RealtimeModel
    from .report import CheckResult
    from .spec import ModelSpec

__all__ = [
    "BUILTIN_EXPORTERS",
    "ENTRY_POINT_GROUP",
    "Exporter",
    "adopt_registered",
    "Parity",
    "available_exporters",
    "exporter_names",
    "get_exporter",
    "plugin_problems",
    "register_exporter",
    "registered_exporters",
    "reset_plugins",
    "sessions",
]

ENTRY_POINT_GROUP = "modelreg.exporters"
#: Exporters that ship with modelreg (registered through its own entry points, like any plugin).
#: A start-up shortcut, not a list to keep: a registry naming only these needs no scan of the
#: installed distributions' entry points (importlib.metadata costs ~50 ms to import). An exporter
#: missing here is found through its entry point all the same (a test holds that every name
#: here is one of modelreg's own entry points).
BUILTIN_EXPORTERS = frozenset({"rtneural", "onnx", "rtneural-cpp", "rtneural-torch", "nam"})


#: The edge cases beyond any host's range (see :mod:`modelreg.inputs`).
LARGE_INPUT_CASES = ("plus_1e6", "minus_1e6")

#: What to do when an artifact overflows only at those inputs (export and validate say it).
INPUT_RANGE_HINT = ("; NaN only at the +-1e6 inputs: if the host feeds values in a bounded range, declare it "
                    "(input_range = [MIN, MAX] in the entry) and the model is proven on that range")


@attrs.frozen
class Parity:
    """How closely an exported artifact, run in its own runtime, follows the torch model.

    What :meth:`Exporter.verify` returns; :func:`modelreg.compare_parity` makes
    one. ``max_error`` decides (``ok`` when ``max_error <= tolerance``; NaN
    fails): the error beyond float32 rounding noise, absolute where the torch
    output is within [-1, 1] and relative beyond (see
    :func:`modelreg.parity.scaled_error`). ``max_abs_error`` is the plain
    figure, ``cases`` the max abs error per input case, by name.
    """

    max_error: float
    max_abs_error: float
    tolerance: float
    cases: Mapping[str, float] = attrs.field(factory=dict)  # max abs error per input case
    #: Why the artifact could not be run at all (its runtime is not available here,
    #: e.g. no RTNeural checkout configured); "" when it was run. A skipped parity
    #: is reported as skipped, never as passed.
    skipped: str = ""
    #: Further figures of the run, recorded with the parity's (e.g. ``load_ms``: how long the
    #: artifact took to load in its runtime).
    details: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def skip(cls, reason: str, tolerance: float) -> Parity:
        """A parity that was not run, and why."""
        return cls(float("nan"), float("nan"), tolerance, skipped=reason)

    @property
    def ok(self) -> bool:
        """Not failed: within tolerance, or skipped (which callers must report as such)."""
        if self.skipped:
            return True
        # "<=" so that NaN (a broken runtime) fails rather than passes.
        return self.max_error <= self.tolerance

    @property
    def summary(self) -> str:
        """One line for people. One deciding figure: the error left once float32 rounding
        is allowed for (see :func:`modelreg.parity.scaled_error`); when that is 0 the line
        says "within float32 rounding" in words, so that two error figures never stand side
        by side reading alike. The plain max abs error follows as detail."""
        detail = f"max abs error {self.max_abs_error:.3g}"
        nan_cases = [name for name, error in self.cases.items() if math.isnan(error)]
        if nan_cases:
            # NaN is never a rounding matter: say which inputs produce it.
            detail += f"; NaN where torch has none, on inputs: {', '.join(nan_cases)}"
        if self.ok and self.max_error == 0:
            # A large absolute error on a passing file reads as an alarm unless it says why.
            where = " at large inputs" if self.max_abs_error > self.tolerance else ""
            return f"within float32 rounding{where} ({detail})"
        verdict = "<=" if self.ok else ">"
        return f"error beyond float32 rounding {self.max_error:.3g} {verdict} tolerance {self.tolerance:g} ({detail})"

    def summary_for(self, spec: ModelSpec) -> str:
        """:attr:`summary`, saying what to do when the artifact fails only by overflowing at the
        +-1e6 inputs of an entry without ``input_range``."""
        if not self.ok and spec.input_range is None and self.nan_at_large_inputs:
            return self.summary + INPUT_RANGE_HINT
        return self.summary

    @property
    def nan_at_large_inputs(self) -> bool:
        """True when the artifact gives NaN (torch does not) at the +-1e6 edge cases: an overflow
        (RTNeural's softmax, say) that a declared ``input_range`` may rule out."""
        return any(math.isnan(self.cases.get(case, 0.0)) for case in LARGE_INPUT_CASES)

    def to_figures(self) -> dict[str, Any]:
        if self.skipped:
            return {"skipped": self.skipped, "tolerance": self.tolerance}
        return {"max_error": self.max_error, "max_abs_error": self.max_abs_error,
                "tolerance": self.tolerance, "cases": dict(self.cases), **self.details}


class Exporter(abc.ABC):
    """Writes one artifact per model and proves it behaves like the source model.

    The base class of exporter plugins (registered in the entry-point group
    ``modelreg.exporters``, or with :func:`register_exporter`). Subclasses set
    :attr:`name` (what registries list in ``exports``) and :attr:`version`
    (recorded in ``registry.lock``; bump it when the output format changes so
    that old artifacts count as stale), and implement :meth:`artifact_path`,
    :meth:`export` and :meth:`verify`; :meth:`check_artifact` is optional.

    For one model, ``modelreg export`` calls ``export()`` on a temporary file,
    then ``check_artifact()`` and ``verify()`` on that file, and renames it over
    ``artifact_path(spec)`` only when there are no problems and the parity is
    within tolerance. ``modelreg validate`` calls ``check_artifact()`` and
    ``verify()`` on the installed artifact. Each method is handed a
    :class:`~modelreg.ModelSpec` (the registry entry) and, where it runs the
    model, the :class:`~modelreg.RealtimeModel` with the checkpoint's weights.
    A :class:`~modelreg.ModelRegError` raised here (e.g.
    ``ExportError.at(reason, model=spec.name)``, or ``MissingDependencyError``
    for an absent optional package) fails that model with its message; any other
    exception fails it as "unexpected TYPE in exporter NAME"; other models go on.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    #: Informational: the schema in modelreg's ``schemas/`` this format follows
    #: (``"rtneural"``), or None. modelreg does not apply it by itself: checking
    #: a file is :meth:`check_artifact`'s job.
    schema: ClassVar[str | None] = None
    #: How the names of this exporter's files end (``".onnx"``), or None: ``modelreg check FILE``
    #: picks the exporter whose suffix the file has and runs its :meth:`check_file`.
    suffix: ClassVar[str | None] = None
    #: True when ``check_artifact``, ``verify`` and the non-latency :meth:`extra_checks` of
    #: one model may run in a thread beside other formats' checks of the same model
    #: (``modelreg validate`` proves such formats concurrently, so that one runtime's
    #: work in its own process overlaps another's). They must then touch the model only
    #: through :func:`~modelreg.compare_parity` (whose torch references take turns)
    #: or read-only (``state_dict()``), and keep no unlocked shared
    #: state. False (the default): the format's checks run alone, after the others.
    thread_safe: ClassVar[bool] = False
    #: What runs the artifact in :meth:`verify`, in words (``"onnxruntime"``): parity messages
    #: start with it, so that two runtimes of one format never read alike. None: the format's name.
    runtime: ClassVar[str | None] = None
    #: Python packages whose versions a validation results file records when this format's
    #: checks ran (``("onnx", "onnxruntime")``).
    packages: ClassVar[tuple[str, ...]] = ()

    def session(self) -> contextlib.AbstractContextManager[None]:
        """A scope around one ``export`` or ``validate`` run (optional; nothing by default).

        Within it the exporter may keep what is costly to find out again and cannot change
        during a run: a toolchain looked up once, a compiled program self-tested once.
        Runs nest (a model's checks inside a whole run): keep the outermost scope's."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def artifact_path(self, spec: ModelSpec) -> Path:
        """Where ``spec``'s artifact lives: a path inside ``spec.registry_dir``
        (e.g. ``spec.registry_dir / "models" / f"{spec.name}.ext"``); one that
        leaves that folder is refused. Folders on the way are created."""

    @abc.abstractmethod
    def export(self, spec: ModelSpec, module: RealtimeModel, path: Path) -> None:
        """Write the complete artifact for ``module`` at exactly ``path``.

        ``path`` is not :meth:`artifact_path`: it is an empty temporary file that
        modelreg created beside the target (``.NAME.PID-xxxxxxxx.partial``).
        Overwrite it; no need to write atomically. modelreg then runs
        :meth:`check_artifact` and :meth:`verify` on it and only renames it over
        the artifact when both pass. Write to that name as it is: a function
        that appends a suffix to a name without it (``np.savez(path)`` writes
        ``path.npz``) leaves ``path`` empty, which fails the export with a
        message saying so; pass such functions an open file
        (``with open(path, "wb") as f: np.savez(f, ...)``). Whatever is left
        beside ``path`` under its name is removed after the export.
        """

    @abc.abstractmethod
    def verify(self, spec: ModelSpec, module: RealtimeModel, path: Path, tolerance: float) -> Parity:
        """Run the artifact at ``path`` in its own runtime and compare it with ``module``.

        Usually ``return compare_parity(module, run, tolerance)`` with a ``run``
        that loads ``path`` in the artifact's runtime (see
        :func:`modelreg.compare_parity` for what ``run`` receives and returns).
        Called only on a file that passed :meth:`check_artifact`.
        """

    def check_artifact(self, spec: ModelSpec, path: Path) -> list[Problem]:
        """Problems with the file itself (unreadable, schema and format rules); none by default.

        Return one :class:`~modelreg.Problem` per finding (``file``, ``model``,
        ``expected``, ``found`` filled in where known) rather than raising: a
        file that fails here is never installed, and ``modelreg validate``
        reports the problems as the ``FORMAT.schema`` check.
        """
        return []

    def check_file(self, path: Path) -> list[Problem]:
        """Problems with a file of this format on its own, without a registry entry
        (``modelreg check FILE``); an empty list means it passes.

        Optional: by default an exporter cannot check a file standalone, and this
        raises :class:`~modelreg.errors.UsageError` saying so. Raise a
        :class:`~modelreg.errors.ModelRegError` too when the file cannot be
        checked at all (a missing dependency); return the problems of a file
        that was read and is broken.
        """
        raise UsageError.at(f"the {self.name!r} exporter cannot check a file on its own",
                            file=str(path), expected="an exporter that defines check_file(path)")

    def describe_file(self, path: Path) -> str:
        """What ``modelreg check FILE`` says of a file that passed :meth:`check_file` (optional)."""
        return f"passes the {self.name!r} exporter's file checks"

    def extra_checks(
        self, spec: ModelSpec, module: RealtimeModel, tolerance: float
    ) -> list[tuple[str, Callable[[Path], CheckResult]]]:
        """Further checks of a fresh artifact that passed its schema, run after parity.

        Each is ``(suffix, check)``: reported as ``FORMAT.SUFFIX``; ``check(path)``
        returns a :class:`~modelreg.report.CheckResult` of that name. None by default.
        A check whose suffix ends in ``latency`` or ``denormals`` measures time: it runs after
        the model's other checks (with ``--jobs``: after the worker pool), one at a
        time with nothing else running, like torch's latency.
        """
        return []


@attrs.frozen
class _Source:
    """Where an exporter came from, for error messages."""

    distribution: str
    entry_point: str


_lock = threading.Lock()
_exporters: dict[str, Exporter] | None = None
_sources: dict[str, _Source] = {}
_problems: list[Problem] = []
_registered: dict[str, Exporter] = {}


def _describe(ep: Any) -> _Source:
    dist = getattr(ep, "dist", None)
    dist_name = f"{dist.name} {dist.version}" if dist is not None else "(unknown distribution)"
    return _Source(dist_name, f"{ep.name} = {ep.value}")


def _load_entry_points() -> None:
    global _exporters
    from importlib.metadata import entry_points

    found: dict[str, Exporter] = {}
    sources: dict[str, _Source] = {}
    clashes: set[str] = set()
    problems: list[Problem] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        source = _describe(ep)
        try:
            loaded = ep.load()
            exporter = loaded() if isinstance(loaded, type) else loaded
            if not isinstance(exporter, Exporter):
                raise TypeError(f"{ep.value} is not a modelreg.Exporter subclass or instance")
            name = exporter.name
        except Exception as exc:  # a broken plugin must not take the others down
            problems.append(
                Problem(f"exporter plugin failed to load: {type(exc).__name__}: {exc}",
                        key=f"entry point {source.entry_point!r} of {source.distribution}")
            )
            continue
        if name in found or name in clashes:
            if name in found:
                first = sources.pop(name)
                del found[name]
                clashes.add(name)
                problems.append(_clash_problem(name, first, source))
            continue
        found[name] = exporter
        sources[name] = source
    _problems[:] = problems
    _sources.clear()
    _sources.update(sources)
    _exporters = found


def _clash_problem(name: str, first: _Source, second: _Source) -> Problem:
    return Problem(
        f"two exporters are named {name!r}: entry point {first.entry_point!r} of {first.distribution} "
        f"and entry point {second.entry_point!r} of {second.distribution}; neither is used until one is renamed or uninstalled",
        key=f"exporter {name!r}",
    )


def available_exporters() -> dict[str, Exporter]:
    """Every usable exporter by name: entry points plus :func:`register_exporter`."""
    with _lock:
        if _exporters is None:
            _load_entry_points()
        assert _exporters is not None
        merged = dict(_exporters)
    merged.update(_registered)
    return merged


def exporter_names() -> set[str]:
    """Names of every exporter, read from entry-point metadata without importing any plugin.

    Enough to check a registry's ``exports``: loading plugins (and whatever they
    import) is left to the commands that export or verify.
    """
    from importlib.metadata import entry_points

    return {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | set(_registered)


def plugin_problems() -> tuple[Problem, ...]:
    """Plugins that failed to load or clash, each naming its distribution and entry point."""
    available_exporters()
    return tuple(_problems)


def get_exporter(name: str) -> Exporter:
    """The exporter called ``name``; a clear error lists the available ones."""
    exporters = available_exporters()
    if name in exporters:
        return exporters[name]
    broken = [p for p in plugin_problems() if repr(name) in (p.key or "") or repr(name) in p.reason]
    if broken:
        raise PluginError(*broken)
    raise PluginError.at(
        f"no exporter named {name!r}{did_you_mean(name, sorted(exporters))}",
        expected="one of " + (", ".join(sorted(exporters)) or "(none installed)"),
    )


def register_exporter(exporter: Exporter | type[Exporter], *, replace: bool = False) -> Exporter:
    """Add an exporter without an entry point (for scripts and tests).

    A name that is already taken is an error unless ``replace=True``.
    """
    instance = exporter() if isinstance(exporter, type) else exporter
    if not isinstance(instance, Exporter):
        raise PluginError.at("not an exporter", expected="a modelreg.Exporter subclass or instance",
                             found=type(instance).__name__)
    if not replace and instance.name in available_exporters():
        raise PluginError.at(f"an exporter named {instance.name!r} is already registered",
                             expected="a new name, or replace=True")
    _registered[instance.name] = instance
    return instance


def registered_exporters() -> dict[str, Exporter]:
    """The exporters added with :func:`register_exporter` in this process."""
    return dict(_registered)


def adopt_registered(exporters: Mapping[str, Exporter]) -> None:
    """Register ``exporters`` in this process (a worker receiving its parent's)."""
    _registered.update(exporters)


def unregister_exporter(name: str) -> None:
    """Remove an exporter added with :func:`register_exporter` (no-op if absent)."""
    _registered.pop(name, None)


def reset_plugins() -> None:
    """Forget loaded entry points and registered exporters (re-read on next use)."""
    global _exporters
    with _lock:
        _exporters = None
        _problems.clear()
        _sources.clear()
    _registered.clear()


@contextlib.contextmanager
def sessions(names: Iterable[str]) -> Iterator[None]:
    """Every named exporter's :meth:`Exporter.session`, entered once each, for one run.
    An unknown or broken exporter is passed over: the run's own checks say what is wrong with it."""
    with contextlib.ExitStack() as stack:
        for name in dict.fromkeys(names):
            try:
                exporter = get_exporter(name)
            except Exception:
                continue
            stack.enter_context(exporter.session())
        yield


def exporters_for(names: Mapping[str, Any] | list[str]) -> dict[str, Exporter]:
    """The exporters for ``names``, raising for any unknown one."""
    return {name: get_exporter(name) for name in names}
