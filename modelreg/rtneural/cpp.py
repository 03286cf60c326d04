"""RTNeural's own C++ engine in the loop: toolchain, cached runner, C++ parity and latency.

modelreg proves RTNeural files in its numpy reference runtime; this module
runs them where they ship: RTNeural's C++ code, compiled against the user's
RTNeural checkout.

- **Configuration**: ``[settings] rtneural = "third_party/RTNeural"`` (relative
  to the registry file) or ``$MODELREG_RTNEURAL``; compiler ``$CXX``, else
  ``c++``/``g++``/``clang++``; backend ``[settings] rtneural_backend`` or
  ``$MODELREG_RTNEURAL_BACKEND`` (``eigen`` when the checkout has
  ``modules/Eigen``, else ``stl``). Not configured: the C++ checks are skipped,
  saying why. Configured but broken: :class:`~modelreg.errors.ToolchainError`.
- **Runner**: ``modelreg/rtneural/runner.cpp`` (package data), compiled on first use
  into the user cache (``$MODELREG_CACHE_DIR``, else ``$XDG_CACHE_HOME/modelreg``,
  else ``~/.cache/modelreg``), keyed by the RTNeural tree, the compiler and its
  version, the flags, the backend and the CPU; built under a file lock,
  installed atomically, proven by ``--selftest`` before use (a corrupt entry is
  rebuilt). One process serves every model over a pipe.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import attrs

from ..layers import rtneural_handler
from .. import native
from ..errors import ArtifactError, Problem, ToolchainError
from ..notices import notice

if TYPE_CHECKING:
    import numpy as np

    from ..builder import RealtimeModel
    from ..plugins import Parity
    from ..report import CheckResult
    from ..spec import ModelSpec

__all__ = [
    "BACKENDS",
    "ENV_BACKEND",
    "ENV_CACHE",
    "ENV_RTNEURAL",
    "Build",
    "Loaded",
    "NotConfigured",
    "Runner",
    "Toolchain",
    "builds",
    "cache_dir",
    "close_runners",
    "cpp_checks",
    "find_toolchain",
    "header_runner",
    "run_scope",
    "runner_for",
]

ENV_RTNEURAL = "MODELREG_RTNEURAL"
ENV_BACKEND = "MODELREG_RTNEURAL_BACKEND"
ENV_CACHE = native.ENV_CACHE
BACKENDS = ("eigen", "stl")
PROTOCOL = 2
#: What to set, in every "not configured" message.
HOW_TO_CONFIGURE = (f"set {ENV_RTNEURAL} to an RTNeural checkout (the folder holding RTNeural/ and modules/), "
                    "or [settings] rtneural in the registry")
_RUNNER_SOURCE = Path(__file__).with_name("runner.cpp")
_RT_HELPERS = Path(__file__).with_name("modelreg_rt.h")  # included by the runner: part of every build key
ENV_CXXFLAGS = "MODELREG_CXXFLAGS"
ENV_RTSAN_CXX = "MODELREG_RTSAN_CXX"
#: clang's RealtimeSanitizer (-fsanitize=realtime) came with clang 20.
_RTSAN_MIN_CLANG = 20
# Lines RTNeural's loaders print in debug mode when all is well; any other line is a warning.
_INFO_LINE = re.compile(r"# dimensions: \d+|Layer: \S+|  Dims: \d+|  activation: \S*")


class NotConfigured(Exception):
    """No RTNeural checkout is configured: the C++ checks are skipped, with this reason."""


# ---------------------------------------------------------------- configuration


@attrs.frozen
class Toolchain:
    """An RTNeural checkout, a C++ compiler and a backend: everything a build depends on."""

    root: Path
    origin: str  # where the checkout was configured, for messages
    compiler: tuple[str, ...]  # argv prefix ($CXX may hold arguments)
    compiler_path: str
    compiler_version: str  # first line of `--version`
    compiler_identity: str  # the whole `--version` output (part of the cache key)
    backend: str
    #: The user's own flags ([settings] rtneural_cxxflags or $MODELREG_CXXFLAGS), after modelreg's:
    #: build the runner as the plugin is built (-march, RTNEURAL_DEFAULT_ALIGNMENT...).
    extra_flags: tuple[str, ...] = ()

    def flags(self, *, header: bool = False) -> list[str]:
        """Compiler flags (without the source and output)."""
        machine = platform.machine().lower()
        # -march=native: the code a plugin build for this machine would run. Part of the cache key
        # together with the CPU, so a cache shared between machines never runs foreign code.
        arch = "-mcpu=native" if machine in ("arm64", "aarch64") else "-march=native"
        flags = ["-std=c++17", "-O3", arch, "-DNDEBUG", "-DRTNEURAL_DEFAULT_ALIGNMENT=16", f"-I{self.root}"]
        if self.backend == "eigen":
            flags += ["-DRTNEURAL_USE_EIGEN=1", f"-I{self.root / 'modules' / 'Eigen'}"]
            if header:
                # Pitfall 1 of RTNeural's compile-time API with Eigen: fixed-size layers above
                # Eigen's stack limit do not compile; the model lives on the heap (make()).
                flags.append("-DEIGEN_STACK_ALLOCATION_LIMIT=0")
        return flags + list(self.extra_flags)

    def figures(self) -> dict[str, str]:
        """What a C++ check ran on, for its figures."""
        return {"rtneural": str(self.root), "backend": self.backend, "compiler": self.compiler_version}


def _compiler() -> tuple[tuple[str, ...], str]:
    """The compiler argv and its resolved path (:func:`modelreg.native.find_compiler`); none is an error here."""
    found = native.find_compiler()
    if found is None:
        raise ToolchainError.at("no C++ compiler found (tried c++, g++, clang++); install one or set CXX",
                                key="CXX", expected="a C++17 compiler")
    return found


def _compiler_version(argv: tuple[str, ...], path: str) -> str:
    return native.compiler_version(argv, path, expected="a C++17 compiler (g++ or clang++)")


def find_toolchain(settings: Mapping[str, Any] | None = None, registry_file: Path | None = None) -> Toolchain:
    """The configured toolchain (registry settings first, then the environment).

    Raises :class:`NotConfigured` when no RTNeural checkout is configured and
    :class:`~modelreg.errors.ToolchainError` when the configuration cannot work.
    """
    from ..paths import display_path

    settings = settings or {}
    shown_registry = display_path(registry_file) if registry_file is not None else "the registry"
    configured = settings.get("rtneural")
    if configured:
        base = registry_file.parent if registry_file is not None else Path.cwd()
        root = base / str(configured)
        origin = f"[settings] rtneural in {shown_registry}"
        where: dict[str, Any] = {"file": shown_registry, "key": "settings.rtneural"}
    elif os.environ.get(ENV_RTNEURAL):
        root = Path(os.environ[ENV_RTNEURAL]).expanduser()
        origin = f"${ENV_RTNEURAL}"
        where = {"key": origin}
    else:
        raise NotConfigured(f"RTNeural C++ is not configured: {HOW_TO_CONFIGURE}")
    root = root.absolute()
    missing = [part for part in ("RTNeural/RTNeural.h", "RTNeural/model_loader.h", "modules/json/json.hpp")
               if not (root / part).is_file()]
    if missing:
        raise ToolchainError.at(f"points at {root}, which {_checkout_problem(root, missing)}", **where,
                                expected="an RTNeural checkout: a folder holding RTNeural/RTNeural.h and modules/json/json.hpp")
    has_eigen = (root / "modules" / "Eigen" / "Eigen" / "Dense").is_file()
    backend = settings.get("rtneural_backend") or os.environ.get(ENV_BACKEND) or ("eigen" if has_eigen else "stl")
    if backend not in BACKENDS:
        raise ToolchainError.at("unknown RTNeural backend", key=ENV_BACKEND, expected="eigen or stl", found=backend)
    if backend == "eigen" and not has_eigen:
        raise ToolchainError.at(f"the eigen backend needs Eigen in the RTNeural checkout, and {root / 'modules' / 'Eigen'} "
                                "has no Eigen/Dense", key=ENV_BACKEND if not settings.get("rtneural_backend") else "settings.rtneural_backend",
                                expected="modules/Eigen in the checkout (git submodule update --init), or backend stl",
                                found=str(root / "modules" / "Eigen"))
    argv, path = _compiler()
    identity = _compiler_version(argv, path)
    configured_flags = settings.get("rtneural_cxxflags") or os.environ.get(ENV_CXXFLAGS, "")
    return Toolchain(root, origin, argv, path, identity.splitlines()[0].strip(), identity, backend,
                     tuple(shlex.split(str(configured_flags))))


@attrs.frozen
class Sanitizer:
    """A clang that has RealtimeSanitizer (``-fsanitize=realtime``, clang >= 20), or why there is none."""

    compiler: tuple[str, ...] = ()
    path: str = ""
    version: str = ""
    identity: str = ""
    missing: str = ""  # why there is none ("" when there is one)


_sanitizers: dict[str, Sanitizer] = {}


def find_sanitizer() -> Sanitizer:
    """``$MODELREG_RTSAN_CXX``, else the newest ``clang++-N`` (N >= 20) on PATH, else ``clang++`` when it is
    new enough; ``$MODELREG_RTSAN_CXX=off`` turns RealtimeSanitizer off. Looked up once per process
    and setting."""
    configured = os.environ.get(ENV_RTSAN_CXX, "").strip()
    if configured in _sanitizers:
        return _sanitizers[configured]
    if configured == "off":
        _sanitizers[configured] = Sanitizer(missing=f"turned off (${ENV_RTSAN_CXX}=off)")
        return _sanitizers[configured]
    candidates = [configured] if configured else [f"clang++-{n}" for n in range(30, _RTSAN_MIN_CLANG - 1, -1)] + ["clang++"]
    found = Sanitizer(missing=f"no clang >= {_RTSAN_MIN_CLANG} with RealtimeSanitizer found (Debian/Ubuntu: apt-get "
                              f"install clang-22 libclang-rt-22-dev; or set {ENV_RTSAN_CXX})")
    for candidate in candidates:
        argv = tuple(shlex.split(candidate))
        path = shutil.which(argv[0]) if argv else None
        if path is None:
            if configured:
                found = Sanitizer(missing=f"${ENV_RTSAN_CXX} names {candidate!r}, which is not on PATH")
            continue
        try:
            identity = _compiler_version(argv, path)
        except ToolchainError:
            continue
        match = re.search(r"clang version (\d+)", identity)
        if match is None or int(match[1]) < _RTSAN_MIN_CLANG:
            if configured:
                found = Sanitizer(missing=f"${ENV_RTSAN_CXX} names {candidate!r}, which is not clang >= {_RTSAN_MIN_CLANG}")
            continue
        found = Sanitizer(argv, path, identity.splitlines()[0].strip(), identity)
        break
    _sanitizers[configured] = found
    return found


def _checkout_problem(root: Path, missing: list[str]) -> str:
    """What is wrong with a folder configured as the RTNeural checkout, in words that say what to change."""
    if not root.exists():
        return "does not exist"
    if not root.is_dir():
        return "is a file, not a folder"
    if (root / "RTNeural.h").is_file():
        # The easy slip: the inner RTNeural/ folder of the checkout (the headers include "RTNeural/...").
        return f"holds RTNeural.h itself: point at its parent, {root.parent}"
    if (root / "RTNeural" / "RTNeural" / "RTNeural.h").is_file():
        return f"holds the checkout in a subfolder: point at {root / 'RTNeural'}"
    return f"has no {', '.join(missing)}"


def toolchain_for(spec: ModelSpec) -> Toolchain:
    """:func:`find_toolchain` for a registry entry (its registry's [settings])."""
    return find_toolchain(spec.settings, spec.registry_file)


# ---------------------------------------------------------------- cache and builds


def cache_dir() -> Path:
    """Where compiled runners are kept: ``$MODELREG_CACHE_DIR``, else ``$XDG_CACHE_HOME/modelreg``,
    else ``~/.cache/modelreg``."""
    return native.cache_root()


# While a run is in progress (run_scope): tree digests and self-tested binaries, so that one
# validate digests the RTNeural tree (~13 ms with Eigen) and self-tests a binary once, not per check.
_scope: dict[str, dict[Any, Any]] | None = None


@contextlib.contextmanager
def run_scope() -> Iterator[None]:
    """Within one ``validate`` or ``export`` run, look at the RTNeural tree once and self-test each
    cached program once. A header edited during a run is seen by the next run."""
    global _scope
    if _scope is not None:  # nested: the outer run's scope holds
        yield
        return
    _scope = {"digests": {}, "verified": {}}
    try:
        yield
    finally:
        _scope = None


def _tree_digest(toolchain: Toolchain) -> str:
    """A digest of the headers a build reads: every file's path, size and mtime (as make sees them)."""
    memo = _scope["digests"] if _scope is not None else None
    if memo is not None and (toolchain.root, toolchain.backend) in memo:
        return str(memo[toolchain.root, toolchain.backend])
    value = _walk_digest(toolchain)
    if memo is not None:
        memo[toolchain.root, toolchain.backend] = value
    return value


def _walk_digest(toolchain: Toolchain) -> str:
    digest = hashlib.sha256()
    folders = [toolchain.root / "RTNeural", toolchain.root / "modules" / "json"]
    if toolchain.backend == "eigen":
        folders.append(toolchain.root / "modules" / "Eigen")
    for folder in folders:
        digest.update(native.tree_listing(folder, toolchain.root).encode())
    return digest.hexdigest()



@attrs.frozen
class Build:
    """One compilation (a cache miss): what was built and how long it took."""

    binary: Path
    kind: str  # "runner" or "header:NAME"
    seconds: float


_builds: list[Build] = []
_build_failures: dict[str, ToolchainError] = {}


def builds() -> list[Build]:
    """Every compilation this process ran (cache hits compile nothing and add nothing)."""
    return list(_builds)


def _first_error_lines(text: str, limit: int = 12) -> str:
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if re.search(r"\berror\b", line)), 0)
    return "\n".join(lines[first:first + limit]).strip()


def _selftest(binary: Path, backend: str, mode: str) -> tuple[bool, str]:
    """Whether ``binary`` passes its self-test, and what it said when it did not."""
    try:
        done = subprocess.run([str(binary), "--selftest"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    expected = f"modelreg-rtneural-runner {PROTOCOL} {backend} {mode}"
    if done.returncode == 0 and done.stdout.splitlines()[:2] == [expected, "selftest ok"]:
        return True, ""
    said = [line.removeprefix("selftest failed: ") for line in done.stdout.splitlines() if line.startswith("selftest failed")]
    return False, said[0] if said else (done.stderr or done.stdout).strip()[-300:]


# What every program of the runner parses first: RTNeural (with nlohmann::json) and the standard
# headers runner.cpp includes. GCC precompiles it once per flag set (_precompiled).
_PCH_TEXT = "".join(f"#include <{name}>\n" for name in (
    "RTNeural/RTNeural.h", "algorithm", "chrono", "cmath", "cstdint", "cstdio", "cstdlib", "cstring", "fstream",
    "iostream", "map", "memory", "new", "sstream", "string", "vector"))
_pch_failures: set[str] = set()


def _precompiled(toolchain: Toolchain, flags: list[str]) -> list[str]:
    """``-include`` flags for GCC's precompiled RTNeural headers, built once per toolchain and flag set
    (compile flags without the per-program ``-DMODELREG_*``); ``[]`` when the compiler is not GCC or
    the precompile fails (then each program parses the headers itself: slower, the same program).

    Parsing RTNeural and nlohmann::json is about half of a small header program's compile time at
    -O1 (~2.5 of 5 s). GCC checks that a precompiled header fits the compile (flags, macros) and
    otherwise reads the text header, so a stale or foreign one costs time, never correctness.
    """
    if "Free Software Foundation" not in toolchain.compiler_identity or os.environ.get("MODELREG_NO_PCH"):
        return []
    shared = [flag for flag in flags if not flag.startswith("-DMODELREG_")]
    key = hashlib.sha256(json.dumps({
        "text": _PCH_TEXT, "tree": _tree_digest(toolchain), "compiler": toolchain.compiler_identity,
        "flags": shared, "cpu": native.cpu_identity()}, sort_keys=True).encode()).hexdigest()[:24]
    folder = cache_dir() / "rtneural-cpp" / f"pch-{key}"
    header = folder / "modelreg_pch.h"
    compiled = folder / "modelreg_pch.h.gch"
    if key in _pch_failures:
        return []
    if compiled.is_file():
        return ["-include", str(header)]
    from filelock import FileLock

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock", timeout=900):
            if not compiled.is_file():
                header.write_text(_PCH_TEXT, encoding="utf-8")
                tmp = folder / f".modelreg_pch.h.gch.{os.getpid()}.partial"
                done = subprocess.run([*toolchain.compiler, *shared, "-x", "c++-header", str(header), "-o", str(tmp)],
                                      capture_output=True, text=True, timeout=1800)
                if done.returncode != 0:
                    with contextlib.suppress(FileNotFoundError):
                        tmp.unlink()
                    _pch_failures.add(key)
                    return []
                os.replace(tmp, compiled)  # atomic: a compile sees no .gch or the whole one
    except (OSError, subprocess.TimeoutExpired):
        _pch_failures.add(key)
        return []
    return ["-include", str(header)]


def _build(toolchain: Toolchain, kind: str, extra_flags: list[str], key_parts: list[str], mode: str,
           sanitizer: Sanitizer | None = None) -> Path:
    """The cached binary for ``kind``; compiled (under a file lock, installed atomically) when missing or broken.
    With ``sanitizer``: built by that clang with RealtimeSanitizer instead of the toolchain's compiler."""
    from filelock import FileLock

    source = _RUNNER_SOURCE.read_bytes() + _RT_HELPERS.read_bytes()
    flags = toolchain.flags(header=mode == "header") + extra_flags
    compiler = [toolchain.compiler_path, *toolchain.compiler, toolchain.compiler_identity]
    if sanitizer is not None:
        flags = [*flags, "-fsanitize=realtime", "-DMODELREG_RTSAN=1", "-g"]
        compiler = [sanitizer.path, *sanitizer.compiler, sanitizer.identity]
        kind = f"rtsan-{kind}"
    key = hashlib.sha256(json.dumps({
        "protocol": PROTOCOL, "source": hashlib.sha256(source).hexdigest(), "tree": _tree_digest(toolchain),
        "compiler": compiler,
        "flags": flags, "backend": toolchain.backend, "cpu": native.cpu_identity(), "extra": key_parts,
    }, sort_keys=True).encode()).hexdigest()[:24]
    if key in _build_failures:  # one attempt per process: 200 models do not compile 200 times
        raise _build_failures[key]
    folder = cache_dir() / "rtneural-cpp"
    safe_kind = re.sub(r"[^A-Za-z0-9_.-]", "_", kind)
    binary = folder / f"{safe_kind}-{toolchain.backend}-{key}"
    verified = _scope["verified"] if _scope is not None else {}
    if verified.get(key) == binary and binary.is_file():
        return binary
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(binary) + ".lock", timeout=900):
            if binary.is_file() and _selftest(binary, toolchain.backend, mode)[0]:
                verified[key] = binary
                return binary
            _compile(toolchain, kind, flags, binary, mode, sanitizer)
            verified[key] = binary
    except OSError as exc:
        raise ToolchainError.at(f"cannot use the cache folder {folder}: {exc.strerror or exc}",
                                key=ENV_CACHE, expected="a writable folder") from None
    except ToolchainError as exc:
        _build_failures[key] = exc
        raise
    return binary


def _compile(toolchain: Toolchain, kind: str, flags: list[str], binary: Path, mode: str,
             sanitizer: Sanitizer | None = None) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{binary.name}.", suffix=".partial", dir=binary.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    compiler = sanitizer.compiler if sanitizer is not None else toolchain.compiler
    version = sanitizer.version if sanitizer is not None else toolchain.compiler_version
    plain = kind.removeprefix("rtsan-")
    what = "RTNeural's C++ runner" if plain == "runner" else f"the C++ test program of {plain.split(':', 1)[-1]}'s header"
    if sanitizer is not None:
        what += " with RealtimeSanitizer"
    again = "RTNeural checkout, compiler and flags" if plain == "runner" else "header"
    notice(f"compiling {what} ({toolchain.backend} backend, {version}) into {binary.parent}: "
           f"once per {again}, it takes a while (about half a minute with Eigen)")
    started = time.perf_counter()
    try:
        # The precompiled headers speed the compile up; they are not part of the program's cache key
        # (the program is the same with or without them). The first program of a flag set builds them.
        pch = _precompiled(toolchain, flags) if sanitizer is None else []
        command = [*compiler, *flags, *pch, str(_RUNNER_SOURCE), "-o", str(tmp)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0 and pch and "precompiled header" in done.stderr:
                # GCC reads a damaged precompiled header (a truncated file) as an error instead of
                # falling back: drop it (the next program rebuilds it) and compile without.
                with contextlib.suppress(OSError):
                    Path(pch[-1] + ".gch").unlink()
                command = [*compiler, *flags, str(_RUNNER_SOURCE), "-o", str(tmp)]
                done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        except OSError as exc:
            raise ToolchainError.at(f"the C++ compiler cannot be run: {exc.strerror or exc}",
                                    key="CXX", found=toolchain.compiler_path) from None
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            what = "modelreg's RTNeural runner" if plain == "runner" else f"the test program of {plain.split(':', 1)[-1]}"
            if sanitizer is not None:
                what += " with RealtimeSanitizer"
            raise ToolchainError.at(
                f"compiling {what} against {toolchain.root} ({version}, "
                f"{toolchain.backend} backend) failed:\n{_first_error_lines(done.stderr or done.stdout)}",
                key=toolchain.origin)
        passed, said = _selftest(tmp, toolchain.backend, mode)
        if not passed:
            raise ToolchainError.at(f"the freshly compiled {kind} fails its self-test ({version}, "
                                    f"{toolchain.backend} backend, RTNeural at {toolchain.root}): {said}",
                                    key=toolchain.origin)
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)  # atomic: readers see the old entry or the complete new one
        _builds.append(Build(binary, kind, seconds))
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


# ---------------------------------------------------------------- the runner process


@attrs.frozen
class Loaded:
    """A model loaded in a runner process."""

    id: int
    in_size: int
    out_size: int
    layers: tuple[tuple[str, int, int], ...]  # (name, in, out) as the loaded model holds them
    log: str  # the loader's debug output
    #: How long the load took in C++: construct the model and set its weights (plus, for a file,
    #: reading and parsing it), in nanoseconds.
    load_ns: int = 0
    #: The runner process's page faults during that load (first touches of memory: the model's, the
    #: loader's buffers, the data's); -1 where the platform does not count them.
    load_faults: int = -1

    @property
    def warnings(self) -> list[str]:
        """Lines of the loader's debug output that are not its usual layer/shape lines."""
        return [line for line in self.log.splitlines() if line.strip() and not _INFO_LINE.fullmatch(line)]


@attrs.frozen
class Allocations:
    """Heap calls made by ``reset()`` and ``forward()`` (see :meth:`Runner.alloc`)."""

    calls: int
    bytes: int
    first: str = ""  # "operator new", "malloc", "free"...
    first_size: int = 0
    first_where: str = ""  # "reset" or "forward:FRAME"
    counted: bool = True  # False: a RealtimeSanitizer build (it stops at the first call instead)

    def describe(self) -> str:
        if not self.calls:
            return "no heap allocation or free"
        where = self.first_where.replace("forward:", "forward() of frame ") if self.first_where != "reset" else "reset()"
        return (f"{self.calls} heap call{'s' if self.calls != 1 else ''} ({self.bytes} bytes); the first: "
                f"{self.first}({self.first_size}) in {where}")


class RunnerError(Exception):
    """The runner answered with an error message (e.g. RTNeural's loader threw)."""


class RunnerDied(Exception):
    """The runner process died (e.g. RTNeural's loader crashed on a file)."""


class Runner:
    """One runner process, serving many models over a pipe (text commands, raw float32 payloads)."""

    def __init__(self, binary: Path, toolchain: Toolchain, mode: str = "dynamic") -> None:
        self.binary = binary
        self.toolchain = toolchain
        self.mode = mode  # "dynamic" (parseJson) or "header" (an rtneural-cpp header's ModelT)
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def _died(self, doing: str) -> RunnerDied:
        code = self._proc.wait(timeout=30)
        how = f"exit code {code}"
        if code < 0:
            with contextlib.suppress(ValueError):
                how = signal.Signals(-code).name
        self._stderr.seek(0)
        said = self._stderr.read().decode(errors="replace").strip()
        report = said.find("RealtimeSanitizer")
        # A sanitizer's report says what and where first; anything else, its last words.
        detail = "\n".join(said[report:].splitlines()[:14]) if report >= 0 else said[-500:]
        return RunnerDied(f"the RTNeural runner died ({how}) while {doing}" + (f": {detail}" if detail else ""))

    def _request(self, line: str, payload: bytes, doing: str) -> str:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(line.encode() + b"\n" + payload)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died(doing) from None
        answer = self._proc.stdout.readline().decode(errors="replace")
        if not answer.endswith("\n"):
            raise self._died(doing)
        answer = answer.rstrip("\n")
        if answer.startswith("err "):
            raise RunnerError(self._read(int(answer.split()[1]), doing).decode(errors="replace"))
        return answer

    def _read(self, size: int, doing: str) -> bytes:
        assert self._proc.stdout is not None
        data = self._proc.stdout.read(size) if size else b""
        if len(data) != size:
            raise self._died(doing)
        return data

    def hello(self) -> str:
        with self._lock:
            return self._request("hello", b"", "starting")

    def load(self, path: Path | None) -> Loaded:
        """Load an RTNeural JSON file, or (``None``) the embedded weights of the header the runner was
        built with (RunnerError: the loader refused it; RunnerDied: it crashed)."""
        if "\n" in str(path):
            raise RunnerError(f"a path with a line break cannot be passed to the runner: {str(path)!r}")
        doing = f"loading {path}" if path is not None else "loading the embedded weights"
        with self._lock:
            head = self._request(f"load {Path(path).absolute() if path is not None else '-'}", b"", doing).split()
            count = int(head[4])
            layers = []
            assert self._proc.stdout is not None
            for _ in range(count):
                name, size_in, size_out = self._proc.stdout.readline().decode().split()
                layers.append((name, int(size_in), int(size_out)))
            log_head = self._proc.stdout.readline().decode().split()
            log = self._read(int(log_head[1]), doing).decode(errors="replace")
        return Loaded(int(head[1]), int(head[2]), int(head[3]), tuple(layers), log,
                      int(head[5]) if len(head) > 5 else 0, int(head[6]) if len(head) > 6 else -1)

    def run(self, model: Loaded, frames: np.ndarray, *, reset: str = "default") -> np.ndarray:
        """``frames [time, in]`` from a reset, one frame per call; ``[time, out]`` float32.

        ``reset``: ``"default"`` (what the model's own reset does: a header's reset(), which restores
        the resting state when the entry asks) or ``"zero"`` (RTNeural's reset(): state zeroed)."""
        import numpy as np

        data = np.ascontiguousarray(frames, dtype=np.float32)
        steps = data.shape[0]
        with self._lock:
            self._request(f"run {model.id} {steps} {data.shape[1]} {reset}", data.tobytes(), f"running {steps} frames")
            raw = self._read(4 * steps * model.out_size, "reading outputs")
        return np.frombuffer(raw, dtype=np.float32).reshape(steps, model.out_size).copy()

    def time(self, model: Loaded, frame: np.ndarray, *, seconds: float = 0.4, min_iterations: int = 200,
             max_iterations: int = 100_000, warmup_seconds: float = 0.05, min_warmup: int = 20,
             block: int = 1) -> tuple[np.ndarray, int, int]:
        """Nanoseconds per ``forward(frame)`` (per ``block`` calls when ``block > 1``: an audio
        callback's block) timed in C++: (samples, warm-up calls, clock overhead ns)."""
        import numpy as np

        data = np.ascontiguousarray(frame, dtype=np.float32).reshape(-1)
        with self._lock:
            head = self._request(f"time {model.id} {data.size} {min_warmup} {warmup_seconds} {min_iterations} "
                                 f"{max_iterations} {seconds} {block}", data.tobytes(), "timing").split()
            warmup, count, overhead = int(head[1]), int(head[2]), int(head[3])
            raw = self._read(8 * count, "reading timings")
        return np.frombuffer(raw, dtype=np.int64).copy(), warmup, overhead

    def alloc(self, model: Loaded, frames: np.ndarray) -> Allocations:
        """The heap calls ``reset()`` and then ``forward()`` over ``frames [time, in]`` make (counted in
        the runner; a RealtimeSanitizer build stops, RunnerDied, at the first unsafe call instead)."""
        import numpy as np

        data = np.ascontiguousarray(frames, dtype=np.float32)
        with self._lock:
            head = self._request(f"alloc {model.id} {data.shape[0]} {data.shape[1]}", data.tobytes(),
                                 "running reset() and forward() with the allocation counter armed").split()
            assert self._proc.stdout is not None
            first = self._proc.stdout.readline().decode(errors="replace").split()
        calls, size = int(head[1]), int(head[2])
        if len(first) >= 4:
            return Allocations(calls, size, first[1].replace("_", " "), int(first[2]), first[3])
        return Allocations(calls, size, counted=first[1:] != ["uncounted"])

    def subnormal(self, model: Loaded, signal: np.ndarray, rest: np.ndarray, tail: int) -> tuple[int, np.ndarray]:
        """``forward()`` timed per call over ``signal [time, in]`` then ``tail`` frames of ``rest [in]``,
        once with the FPU as it is and once with denormals flushed: (subnormal outputs seen in the first
        run's tail, ns ``[2, time + tail]``)."""
        import numpy as np

        data = np.ascontiguousarray(signal, dtype=np.float32)
        rest_frame = np.ascontiguousarray(rest, dtype=np.float32).reshape(-1)
        steps = data.shape[0] + tail
        with self._lock:
            head = self._request(f"subnormal {model.id} {data.shape[1]} {data.shape[0]} {tail}",
                                 data.tobytes() + rest_frame.tobytes(), "timing a signal and its silent tail").split()
            raw = self._read(8 * 2 * steps, "reading timings")
        return int(head[1]), np.frombuffer(raw, dtype=np.int64).reshape(2, steps).copy()

    def free(self, model: Loaded) -> None:
        with self._lock, contextlib.suppress(RunnerDied):
            self._request(f"free {model.id}", b"", "freeing a model")

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            if self._proc.poll() is None and self._proc.stdin is not None:
                self._proc.stdin.write(b"quit\n")
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        with contextlib.suppress(OSError, ValueError):
            if self._proc.stdout is not None:
                self._proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_runners: dict[Path, Runner] = {}
# validate proves formats in threads: two checks asking at once must share one process.
_runners_lock = threading.Lock()


def runner_for(toolchain: Toolchain) -> Runner:
    """The (shared) dynamic-API runner process for ``toolchain``; compiled on first use, restarted if it died."""
    binary = _build(toolchain, "runner", [], [], "dynamic")
    with _runners_lock:
        runner = _runners.get(binary)
        if runner is None or not runner.alive:
            if runner is not None:
                runner.close()
            runner = _runners[binary] = Runner(binary, toolchain)
        return runner


def header_runner(toolchain: Toolchain, header: Path, namespace: str, name: str, *, embedded: bool = False,
                  sanitizer: Sanitizer | None = None) -> Runner:
    """A runner compiled with the rtneural-cpp header ``header`` (its compile-time ModelT); the caller closes it.

    Cached by the header's content: with weights from the JSON file at run time, a new
    checkpoint never needs a new build (an ``embedded`` header holds them: its runner
    loads with ``load(None)``). ``sanitizer``: built with RealtimeSanitizer.
    """
    digest = hashlib.sha256(header.read_bytes()).hexdigest()
    # The header is copied into the cache, so that the build does not depend on where it came from.
    folder = cache_dir() / "rtneural-cpp" / "headers"
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / f"{digest[:24]}.h"
    if not copy.is_file():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".partial")
        with os.fdopen(fd, "wb") as handle:
            handle.write(header.read_bytes())
        os.replace(tmp, copy)
    flags = [f'-DMODELREG_HEADER="{copy}"', f"-DMODELREG_HEADER_NS={namespace}"]
    if embedded:
        flags.append("-DMODELREG_HEADER_EMBEDDED=1")
    binary = _build(toolchain, f"header:{name}", flags, [digest], "header", sanitizer)
    return Runner(binary, toolchain, "header")


def sanitizer_runner(toolchain: Toolchain, sanitizer: Sanitizer) -> Runner:
    """The dynamic-API runner built with RealtimeSanitizer (one process per use: the first unsafe
    call stops it); the caller closes it."""
    return Runner(_build(toolchain, "runner", [], [], "dynamic", sanitizer), toolchain)


@atexit.register
def close_runners() -> None:
    """Stop every shared runner process (also run at exit)."""
    with _runners_lock:
        for runner in list(_runners.values()):
            runner.close()
        _runners.clear()


# ---------------------------------------------------------------- loading, checked


def expected_layers(document: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """The layers RTNeural's dynamic loader should build from an RTNeural document: (name, in, out)."""
    def declared(shape: Any) -> int:
        # As parseJson: the last entry, or entries 2 x 3 of a 4-entry (conv2d-style) shape.
        shape = shape or [0]
        return int(shape[2] or 0) * int(shape[3] or 0) if len(shape) == 4 else int(shape[-1] or 0)

    size = declared(document.get("in_shape"))
    layers: list[tuple[str, int, int]] = []
    for layer in document.get("layers", []):
        kind = str(layer.get("type"))
        units = declared(layer.get("shape"))
        handler = rtneural_handler(kind)
        # A type no kind reads is one the loader does not know either: it skips it.
        layers += handler.loader_layers(layer, size, units) if handler else [(kind, size, units)]
        size = units
    return layers


def load_checked(runner: Runner, path: Path | None, *, model: str | None = None,
                 sizes: tuple[int, int] | None = None,
                 declared: list[tuple[str, int, int]] | None = None) -> Loaded:
    """Load ``path`` in RTNeural's C++ loader; ArtifactError if it refuses the file, crashes on it,
    warns in debug mode, skips a layer, or builds other sizes than ``sizes`` (in, out).

    ``declared``: the layers the file declares, as :func:`expected_layers` gives them, when
    the caller has them already (the reference runtime's ``loader_layers``); else the file is
    read for them."""
    from ..paths import display_path

    shown = display_path(path) if path is not None else "the header's embedded weights"

    def problem(reason: str, **extra: Any) -> ArtifactError:
        return ArtifactError(Problem(reason, file=shown, model=model, **extra))

    try:
        loaded = runner.load(path)
    except RunnerError as exc:
        raise problem(f"RTNeural's C++ loader rejects the file: {exc}") from None
    except RunnerDied as exc:
        raise problem(f"RTNeural's C++ loader crashed on the file: {exc}") from None
    try:
        if loaded.warnings:
            raise problem("RTNeural's C++ loader warns (debug mode): " + " | ".join(loaded.warnings[:5]))
        if runner.mode == "dynamic" and path is not None:
            if declared is None:
                document = _read_document(path)
                declared = expected_layers(document) if isinstance(document, dict) else []
            wanted = declared
            if list(loaded.layers) != wanted:
                raise problem("RTNeural's C++ loader built other layers than the file declares "
                              "(it skips what it does not know)",
                              expected=_layer_text(wanted), found=_layer_text(list(loaded.layers)))
        if sizes is not None and (loaded.in_size, loaded.out_size) != sizes:
            raise problem("the model RTNeural loads does not fit the registry entry",
                          expected=f"{sizes[0]} in, {sizes[1]} out",
                          found=f"{loaded.in_size} in, {loaded.out_size} out")
    except BaseException:
        runner.free(loaded)
        raise
    return loaded


def _read_document(path: Path) -> Any:
    import orjson

    raw = path.read_bytes()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)  # NaN literals, which orjson refuses


def _layer_text(layers: list[tuple[str, int, int]]) -> str:
    return "[" + ", ".join(f"{name} {a}->{b}" for name, a, b in layers) + "]"


def parity(runner: Runner, loaded: Loaded, module: RealtimeModel, tolerance: float, *,
           with_stream: bool | None = None, file: str | None = None) -> Parity:
    """:func:`modelreg.compare_parity` with the frames run in the C++ runner (``file``: named if it crashes)."""
    import numpy as np

    from ..parity import compare_parity

    def run(frames: np.ndarray) -> np.ndarray:
        # RTNeural runs one stream: each row (an input case) from its own reset.
        # From the zero state, as torch's reference: a header's own reset() may restore the resting state.
        return np.stack([runner.run(loaded, row, reset="zero") for row in frames])

    try:
        return compare_parity(module, run, tolerance, with_stream=with_stream)
    except RunnerDied as exc:
        raise ArtifactError(Problem(f"RTNeural's C++ engine crashed running the model: {exc}", file=file)) from None


# ---------------------------------------------------------------- the checks


def cpp_checks(spec: ModelSpec, module: RealtimeModel, tolerance: float,
               declared: Callable[[Path], list[tuple[str, int, int]] | None] | None = None,
               ) -> list[tuple[str, Callable[[Path], CheckResult]]]:
    """``dynamic_parity`` and ``dynamic_latency`` of an RTNeural file, in RTNeural's dynamic C++ API
    (``parseJson``: the model built at run time; the compiled headers' ModelT is ``rtneural-cpp``'s).

    ``declared(path)``: the layers the file declares if the caller knows them (None: read the file)."""
    from ..report import CheckResult

    shared: dict[str, Any] = {}

    def setup(name: str) -> CheckResult | None:
        try:
            shared.setdefault("toolchain", toolchain_for(spec))
        except NotConfigured as exc:
            return CheckResult(name, "skip", str(exc))
        return None

    def dynamic_parity(path: Path) -> CheckResult:
        name = "rtneural.dynamic_parity"
        # Asked first, skipped or not: the caller may hold a whole model for this answer.
        layers = declared(path) if declared is not None else None
        skipped = setup(name)
        if skipped is not None:
            return skipped
        toolchain: Toolchain = shared["toolchain"]
        runner = runner_for(toolchain)
        shared["load_failed"] = True
        loaded = load_checked(runner, path, model=spec.name, sizes=(spec.in_features, spec.out_features),
                              declared=layers)
        shared["load_failed"] = False
        shared["loaded"] = loaded
        result = parity(runner, loaded, module, tolerance)
        figures = {**result.to_figures(), **toolchain.figures(), "api": "RTNeural::json_parser::parseJson<float>"}
        summary = f"RTNeural C++ dynamic model (parseJson, {toolchain.backend}): {result.summary_for(spec)}"
        return CheckResult(name, "pass" if result.ok else "fail", summary, figures)

    def dynamic_latency(path: Path) -> CheckResult:
        import numpy as np

        from ..inputs import edge_cases
        from ..latency import LatencyStats, latency_window

        name = "rtneural.dynamic_latency"
        skipped = setup(name)
        if skipped is not None:
            return skipped
        if shared.get("load_failed"):
            return CheckResult(name, "skip", "not run: the file did not load in RTNeural C++ (see rtneural.dynamic_parity)")
        toolchain = shared["toolchain"]
        runner = runner_for(toolchain)
        loaded = shared.pop("loaded", None)
        if loaded is None or not runner.alive:
            try:
                loaded = load_checked(runner, path, model=spec.name, sizes=(spec.in_features, spec.out_features))
            except ArtifactError:  # dynamic_parity, run before (maybe in a worker process), says why
                return CheckResult(name, "skip", "not run: the file did not load in RTNeural C++ (see rtneural.dynamic_parity)")
        try:
            frame = edge_cases(spec.in_features, input_range=spec.input_range)["normal"][0]
            samples, warmup, overhead = runner.time(loaded, frame, seconds=latency_window(),
                                                    block=spec.block_size or 1)
        finally:
            runner.free(loaded)
        if spec.is_audio_rate:
            from ..audio import block_result

            return block_result(name, samples, spec, warmup=warmup,
                                prefix=f"RTNeural C++ dynamic model (parseJson, {toolchain.backend}): ",
                                extra={"clock_overhead_ns": overhead, **toolchain.figures(),
                                       "api": "RTNeural::json_parser::parseJson<float>"})
        stats = LatencyStats.from_samples(np.asarray(samples), warmup)
        value = stats.stat(spec.latency_stat)
        figures: dict[str, Any] = {**stats.to_figures(), "stat": spec.latency_stat, "target_ms": spec.latency_ms,
                                   "threads": 1, "clock_overhead_ns": overhead, **toolchain.figures(),
                                   "api": "RTNeural::json_parser::parseJson<float>"}
        summary = (f"RTNeural C++ dynamic model (parseJson, {toolchain.backend}): {spec.latency_stat} {value * 1000:.2f} us "
                   f"vs target {spec.latency_ms:g} ms ({stats.iterations} calls)")
        return CheckResult(name, "pass" if value <= spec.latency_ms else "fail", summary, figures)

    def dynamic_realtime(path: Path) -> CheckResult:
        name = "rtneural.dynamic_realtime"
        skipped = setup(name)
        if skipped is not None:
            return skipped
        toolchain = shared["toolchain"]
        if shared.get("load_failed"):
            return CheckResult(name, "skip", "not run: the file did not load in RTNeural C++ (see rtneural.dynamic_parity)")
        runner = runner_for(toolchain)
        # The model dynamic_parity loaded, when its runner still lives: the file is not read again.
        loaded = shared.get("loaded") if runner.alive else None
        return realtime_check(name, spec, toolchain, "the dynamic model (parseJson)", lambda: runner, path,
                              lambda sanitizer: sanitizer_runner(toolchain, sanitizer), shared_runner=True,
                              loaded=loaded)

    return [("dynamic_parity", dynamic_parity), ("dynamic_realtime", dynamic_realtime),
            ("dynamic_latency", dynamic_latency)]


# ---------------------------------------------------------------- real-time safety and denormals


def _rt_frames(spec: ModelSpec) -> np.ndarray:
    """What the real-time checks feed: the parity stream, one frame per call ``[time, in]``."""
    from ..inputs import stream

    return stream(spec.in_features, input_range=spec.input_range)[0]


def realtime_check(name: str, spec: ModelSpec, toolchain: Toolchain, engine: str, open_runner: Callable[[], Runner],
                   path: Path | None, open_sanitized: Callable[[Sanitizer], Runner], *,
                   shared_runner: bool = False, loaded: Loaded | None = None) -> CheckResult:
    """``reset()`` and ``forward()`` over the parity stream, with the runner's allocation counter armed
    around them, then (where a clang has it) under RealtimeSanitizer, which also catches locks and
    blocking system calls. Fails on any heap call or sanitizer report, naming it."""
    from ..report import CheckResult

    frames = _rt_frames(spec)
    runner = open_runner()
    try:
        # ``loaded``: a model the caller loaded in this runner already (kept loaded: not freed here).
        model = loaded if loaded is not None else load_checked(runner, path, model=spec.name,
                                                               sizes=(spec.in_features, spec.out_features))
        try:
            counted = runner.alloc(model, frames)
        finally:
            if loaded is None:
                runner.free(model)
    finally:
        if not shared_runner:
            runner.close()
    figures: dict[str, Any] = {"engine": engine, "frames": int(frames.shape[0]), "allocations": counted.calls,
                               "allocated_bytes": counted.bytes, **toolchain.figures()}
    if counted.calls:
        figures["first_allocation"] = f"{counted.first}({counted.first_size}) in {counted.first_where}"
    problems = [] if not counted.calls else [f"{engine}: {counted.describe()}"]
    sanitizer = find_sanitizer()
    if sanitizer.missing:
        figures["rtsan"] = "not run"
        rtsan_text = f"RealtimeSanitizer not run ({sanitizer.missing}): the counter alone"
    else:
        figures["rtsan_compiler"] = sanitizer.version
        sanitized = open_sanitized(sanitizer)
        try:
            loaded = load_checked(sanitized, path, model=spec.name, sizes=(spec.in_features, spec.out_features))
            sanitized.alloc(loaded, frames)
            figures["rtsan"] = "clean"
            rtsan_text = "RealtimeSanitizer: clean"
        except RunnerDied as exc:
            figures["rtsan"] = "violation"
            report = str(exc).split(": ", 1)[-1]
            problems.append(f"RealtimeSanitizer stopped {engine}: {report}")
            rtsan_text = "RealtimeSanitizer: violation"
        finally:
            sanitized.close()
    if problems:
        return CheckResult(name, "fail", "\n".join(problems) + "\n(reset() and forward() run on the audio thread: "
                           "they must not allocate, lock or block)", figures)
    return CheckResult(name, "pass", f"{engine}: no heap call in reset() and {frames.shape[0]} forward() calls; "
                       f"{rtsan_text}", figures)


#: The silent tail may be this many times slower than the signal before subnormals fail the check.
DENORMAL_SLOWDOWN = 2.0
#: Frames of rest input after the signal, at least (long enough for recurrent state and buffers to
#: decay; longer for a model that takes longer to come to rest, see modelreg.denormals.tail_frames).
DENORMAL_TAIL = 4096


def denormal_check(name: str, spec: ModelSpec, toolchain: Toolchain, engine: str, runner: Runner,
                   path: Path | None, tail: int = 0) -> CheckResult:
    """The parity stream, then a long silent tail (the rest input), timed per forward() in C++ with
    and without flushing denormals. Fails when subnormal outputs appear and the tail is more than
    :data:`DENORMAL_SLOWDOWN` times slower than the signal unflushed; else passes with the figures."""
    import numpy as np

    from ..report import CheckResult

    signal = _rt_frames(spec)
    rest = np.asarray(spec.rest_frame, np.float32)  # what a silent host feeds
    tail = max(tail, DENORMAL_TAIL)
    loaded = load_checked(runner, path, model=spec.name, sizes=(spec.in_features, spec.out_features))
    try:
        subnormal, ns = runner.subnormal(loaded, signal, rest, tail)
    finally:
        runner.free(loaded)
    n = signal.shape[0]
    # The first frames of the tail still carry the signal's state: judge the tail's second half.
    tail_from = n + tail // 2
    medians = {key: float(np.median(values)) / 1000.0 for key, values in (
        ("signal_us", ns[0, :n]), ("tail_us", ns[0, tail_from:]),
        ("signal_flushed_us", ns[1, :n]), ("tail_flushed_us", ns[1, tail_from:]))}
    slowdown = medians["tail_us"] / max(medians["signal_us"], 1e-9)
    figures: dict[str, Any] = {"engine": engine, "subnormal_outputs": subnormal, "tail_frames": tail,
                               **{k: round(v, 4) for k, v in medians.items()},
                               "tail_slowdown": round(slowdown, 3), "threshold": DENORMAL_SLOWDOWN, **toolchain.figures()}
    summary = (f"{engine}: silent tail {medians['tail_us']:.3g} us/frame vs signal {medians['signal_us']:.3g} us "
               f"(x{slowdown:.2f}; flushed: x{medians['tail_flushed_us'] / max(medians['signal_flushed_us'], 1e-9):.2f}), "
               f"{subnormal} subnormal outputs in {tail} silent frames")
    if subnormal and slowdown > DENORMAL_SLOWDOWN:
        return CheckResult(name, "fail", summary + f": subnormals slow the silent tail more than {DENORMAL_SLOWDOWN:g}x; "
                           "flush denormals on the audio thread (modelreg_rt::ScopedFlushDenormals in the header, "
                           "or JUCE's ScopedNoDenormals)", figures)
    if subnormal:
        summary += (f"; warning: subnormals appear, {slowdown:.2f}x is within {DENORMAL_SLOWDOWN:g}x here; "
                    "flushing denormals (modelreg_rt::ScopedFlushDenormals) is safer")
    return CheckResult(name, "pass", summary, figures)
