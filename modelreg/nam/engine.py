"""NAM's C++ engine in the loop: where it is, the cached runner, and running a file in it.

- **Configuration**: ``$MODELREG_NAM_CORE``, a NeuralAmpModelerCore checkout (the folder
  holding ``NAM/`` and ``Dependencies/nlohmann``). Eigen: ``$MODELREG_NAM_EIGEN``, else the
  checkout's ``Dependencies/eigen``, else ``$MODELREG_RTNEURAL/modules/Eigen``, else
  ``../rtneural/modules/Eigen`` beside the checkout. Compiler: ``$CXX``, else c++, g++,
  clang++. Not configured: the NAM checks are skipped, saying what to set.
- **Build**: the engine's ``NAM/*.cpp`` (all but ``linear.cpp``, which needs Eigen's
  unsupported FFT module) and ``NAM/wavenet/*.cpp`` are compiled to objects once (as two
  unity translation units: about half a minute on two cores), keyed by the sources' digest, the Eigen tree, the compiler and
  its version, the flags and the CPU; ``modelreg/nam/runner.cpp`` is compiled and linked
  against them (seconds). Both live in the user cache (``$MODELREG_CACHE_DIR``, else
  ``$XDG_CACHE_HOME/modelreg``, else ``~/.cache/modelreg``) under ``nam/``, built under a
  file lock, installed atomically, and the runner is proven by ``--selftest`` before use.
- **Runs**: one runner process per request (see runner.cpp for the protocol).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from .. import native
from ..errors import ToolchainError
from ..notices import notice

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ENV_CORE", "ENV_EIGEN", "HOW_TO_CONFIGURE", "Engine", "NotConfigured", "RunnerError", "find_engine",
           "Timing", "runner_binary", "run_file", "time_file"]

ENV_CORE = "MODELREG_NAM_CORE"
ENV_EIGEN = "MODELREG_NAM_EIGEN"
ENV_CACHE = native.ENV_CACHE
PROTOCOL = 1
HOW_TO_CONFIGURE = (f"set {ENV_CORE} to a NeuralAmpModelerCore checkout (the folder holding NAM/ and "
                    "Dependencies/nlohmann)")
_RUNNER_SOURCE = Path(__file__).with_name("runner.cpp")
#: The engine's sources it cannot build here: linear.cpp needs Eigen's unsupported/ FFT.
_LEFT_OUT = ("linear.cpp",)


class NotConfigured(Exception):
    """No NAM engine is configured (or no compiler): the NAM checks are skipped, with this reason."""


class RunnerError(Exception):
    """The runner refused or failed (its ``error:`` line): the file did not run in NAM's engine."""


@attrs.frozen
class Engine:
    """A NeuralAmpModelerCore checkout, Eigen and a compiler: everything a build depends on."""

    root: Path
    eigen: Path
    compiler: tuple[str, ...]
    compiler_path: str
    compiler_version: str  # first line of --version
    compiler_identity: str  # all of it (part of the cache key)

    def sources(self) -> list[Path]:
        """The engine's .cpp files that are built (sorted)."""
        found = sorted((self.root / "NAM").glob("*.cpp")) + sorted((self.root / "NAM" / "wavenet").glob("*.cpp"))
        return [path for path in found if path.name not in _LEFT_OUT]

    def flags(self) -> list[str]:
        """Compiler flags: C++20 as the engine needs, a release build as a plugin ships (NDEBUG),
        -march=native as the RTNeural runner (the CPU is part of the cache key)."""
        machine = platform.machine().lower()
        arch = "-mcpu=native" if machine in ("arm64", "aarch64") else "-march=native"
        return ["-std=c++20", "-O3", arch, "-DNDEBUG", f"-I{self.root}", f"-I{self.root / 'Dependencies' / 'nlohmann'}",
                f"-I{self.eigen}"]

    def figures(self) -> dict[str, str]:
        return {"nam_core": str(self.root), "compiler": self.compiler_version}


def _eigen_for(root: Path) -> Path:
    candidates: list[tuple[Path, str]] = []
    if os.environ.get(ENV_EIGEN):
        candidates.append((Path(os.environ[ENV_EIGEN]).expanduser(), f"${ENV_EIGEN}"))
    candidates.append((root / "Dependencies" / "eigen", "the checkout's Dependencies/eigen"))
    if os.environ.get("MODELREG_RTNEURAL"):
        candidates.append((Path(os.environ["MODELREG_RTNEURAL"]).expanduser() / "modules" / "Eigen",
                           "$MODELREG_RTNEURAL/modules/Eigen"))
    candidates.append((root.parent / "rtneural" / "modules" / "Eigen", "../rtneural/modules/Eigen"))
    for path, _ in candidates:
        if (path / "Eigen" / "Dense").is_file():
            return path.absolute()
    if os.environ.get(ENV_EIGEN):
        raise ToolchainError.at(f"points at {candidates[0][0]}, which has no Eigen/Dense", key=f"${ENV_EIGEN}",
                                expected="an Eigen 3.4 source folder (holding Eigen/Dense)")
    raise ToolchainError.at("NAM's engine needs Eigen, and none was found (tried "
                            + ", ".join(where for _, where in candidates) + ")", key=f"${ENV_EIGEN}",
                            expected="an Eigen 3.4 source folder (holding Eigen/Dense)")


def find_engine() -> Engine:
    """The configured engine; :class:`NotConfigured` when ``$MODELREG_NAM_CORE`` is unset or no
    compiler is found, :class:`~modelreg.errors.ToolchainError` when the configuration cannot work."""
    configured = os.environ.get(ENV_CORE, "").strip()
    if not configured:
        raise NotConfigured(f"NAM's C++ engine is not configured: {HOW_TO_CONFIGURE}")
    root = Path(configured).expanduser().absolute()
    missing = [part for part in ("NAM/get_dsp.h", "NAM/lstm.cpp", "Dependencies/nlohmann/json.hpp")
               if not (root / part).is_file()]
    if missing:
        state = "does not exist" if not root.exists() else f"has no {', '.join(missing)}"
        raise ToolchainError.at(f"points at {root}, which {state}", key=f"${ENV_CORE}",
                                expected="a NeuralAmpModelerCore checkout: a folder holding NAM/get_dsp.h and "
                                         "Dependencies/nlohmann/json.hpp")
    argv, path = _compiler()
    identity = _compiler_version(argv, path)
    return Engine(root, _eigen_for(root), argv, path, identity.splitlines()[0].strip(), identity)


def _compiler() -> tuple[tuple[str, ...], str]:
    found = native.find_compiler()
    if found is None:
        raise NotConfigured("no C++ compiler found (tried c++, g++, clang++) to build NAM's engine: install one or set CXX")
    return found


def _compiler_version(argv: tuple[str, ...], path: str) -> str:
    return native.compiler_version(argv, path, expected="a C++20 compiler (g++ or clang++)")


# ---------------------------------------------------------------- cache and builds


def cache_dir() -> Path:
    """``$MODELREG_CACHE_DIR``, else ``$XDG_CACHE_HOME/modelreg``, else ``~/.cache/modelreg`` (as the
    RTNeural runner's), with NAM's builds under ``nam/``."""
    return native.cache_root() / "nam"



def _engine_digest(engine: Engine) -> str:
    """The engine's own files by content (small), Eigen's by path, size and mtime (as make sees them)."""
    digest = hashlib.sha256()
    for path in sorted((engine.root / "NAM").rglob("*")) + [engine.root / "Dependencies" / "nlohmann" / "json.hpp"]:
        if path.is_file():
            digest.update(str(path.relative_to(engine.root)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(native.tree_listing(engine.eigen, engine.eigen).encode())
    return digest.hexdigest()


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]


#: Runners proven by their self-test in this process (binary path), and builds that failed (key -> error).
_verified: set[Path] = set()
_failures: dict[str, ToolchainError] = {}


def runner_binary(engine: Engine) -> Path:
    """The cached runner for ``engine``: built (objects once, then the runner) when missing or broken."""
    from filelock import FileLock

    compiler = [engine.compiler_path, *engine.compiler, engine.compiler_identity]
    base = [_engine_digest(engine), compiler, engine.flags(), native.cpu_identity()]
    objects_key = _key("objects", "unity", *base)
    runner_key = _key("runner", PROTOCOL, hashlib.sha256(_RUNNER_SOURCE.read_bytes()).hexdigest(), *base)
    if runner_key in _failures:  # one attempt per process: many models do not compile many times
        raise _failures[runner_key]
    folder = cache_dir()
    binary = folder / f"runner-{runner_key}"
    if binary in _verified and binary.is_file():
        return binary
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(binary) + ".lock", timeout=1800):
            if binary.is_file() and _selftest(binary)[0]:
                _verified.add(binary)
                return binary
            objects = _objects(engine, folder / f"objects-{objects_key}")
            _link(engine, objects, binary)
            _verified.add(binary)
    except OSError as exc:
        raise ToolchainError.at(f"cannot use the cache folder {folder}: {exc.strerror or exc}", key=ENV_CACHE,
                                expected="a writable folder") from None
    except ToolchainError as exc:
        _failures[runner_key] = exc
        raise
    return binary


def _compile_error(engine: Engine, what: str, output: str) -> ToolchainError:
    lines = output.splitlines()
    first = next((i for i, line in enumerate(lines) if re.search(r"\berror\b", line)), 0)
    return ToolchainError.at(f"compiling {what} ({engine.compiler_version}) failed:\n"
                             + "\n".join(lines[first:first + 12]).strip(), key=f"${ENV_CORE}", found=str(engine.root))


def _unity_groups(sources: list[Path]) -> list[list[Path]]:
    """The engine's sources in two groups, each compiled as one translation unit.

    Every file of the engine includes Eigen and nlohmann::json, whose parsing is most of a
    file's compile time: as two unity units (each parses them once, and the two compile side by
    side) the engine builds in ~30 s of CPU instead of ~100 s for thirteen separate files. The
    engine's own code is compiled unchanged. A group that does not compile as one unit (another
    engine version whose files define the same internal name twice) is compiled file by file.
    WaveNet's files (the largest) form one group, the rest the other.
    """
    wavenet = [path for path in sources if path.parent.name == "wavenet"]
    rest = [path for path in sources if path.parent.name != "wavenet"]
    return [group for group in (wavenet, rest) if group]


def _objects(engine: Engine, folder: Path) -> list[Path]:
    """The engine's object files in ``folder`` (compiled when missing). A complete set has a stamp
    naming its objects (a unity unit's, or the files' of a group that needed compiling one by one)."""
    root = engine.root
    groups = _unity_groups(engine.sources())
    stamp = folder / "complete"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        listed = [folder / name for name in json.loads(stamp.read_text(encoding="utf-8"))["objects"]]
        if listed and all(path.is_file() for path in listed):
            return listed
    folder.mkdir(parents=True, exist_ok=True)
    count = sum(len(group) for group in groups)
    notice(f"compiling NAM's C++ engine ({count} files, {engine.compiler_version}) into {folder}: once per "
           "engine, compiler and flags; it takes about half a minute")
    started = time.perf_counter()

    def compile_source(source: Path, target: Path) -> str | None:
        tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
        done = subprocess.run([*engine.compiler, *engine.flags(), "-c", str(source), "-o", str(tmp)],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            return done.stderr or done.stdout
        os.replace(tmp, target)
        return None

    def compile_group(pair: tuple[int, list[Path]]) -> tuple[list[Path], str | None]:
        index, group = pair
        unit = folder / f"unity-{index}.cpp"
        unit.write_text("".join(f'#include "{source}"\n' for source in group), encoding="utf-8")
        if compile_source(unit, unit.with_suffix(".o")) is None:
            return [unit.with_suffix(".o")], None
        objects = []
        for source in group:  # one by one: the error, if any, is then the file's own
            target = folder / (str(source.relative_to(root)).replace(os.sep, "_") + ".o")
            error = compile_source(source, target)
            if error is not None:
                return [], f"{source.name}: {error}"
            objects.append(target)
        return objects, None

    # Side by side: CI machines have two cores.
    with ThreadPoolExecutor(max_workers=2) as pool:
        built = list(pool.map(compile_group, enumerate(groups)))
    errors = [error for _, error in built if error]
    if errors:
        raise _compile_error(engine, "NAM's engine", errors[0])
    objects = [path for paths, _ in built for path in paths]
    stamp.write_text(json.dumps({"seconds": round(time.perf_counter() - started, 1),
                                 "objects": [path.name for path in objects]}) + "\n", encoding="utf-8")
    return objects


def _link(engine: Engine, objects: list[Path], binary: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{binary.name}.", suffix=".partial", dir=binary.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        done = subprocess.run([*engine.compiler, *engine.flags(), f"-DMODELREG_NAM_PROTOCOL={PROTOCOL}",
                               str(_RUNNER_SOURCE), *map(str, objects), "-o", str(tmp)],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            raise _compile_error(engine, "modelreg's NAM runner", done.stderr or done.stdout)
        passed, said = _selftest(tmp)
        if not passed:
            raise ToolchainError.at(f"the freshly built NAM runner fails its self-test ({engine.compiler_version}, "
                                    f"engine at {engine.root}): {said}", key=f"${ENV_CORE}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, binary)  # atomic: readers see no runner or the complete one
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _selftest(binary: Path) -> tuple[bool, str]:
    try:
        done = subprocess.run([str(binary), "--selftest"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    if done.returncode == 0 and done.stdout.splitlines()[:2] == [f"modelreg-nam-runner {PROTOCOL}", "selftest ok"]:
        return True, ""
    return False, (done.stdout + done.stderr).strip()[-300:]


# ---------------------------------------------------------------- running a file


def _call(binary: Path, args: list[str], payload: bytes, timeout: float) -> bytes:
    try:
        done = subprocess.run([str(binary), *args], input=payload, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RunnerError(f"NAM's engine did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()
        line = next((text for text in said.splitlines() if text.startswith("error: ")), None)
        if line is not None:
            raise RunnerError(line.removeprefix("error: "))
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
        raise RunnerError(f"NAM's engine crashed ({how})" + (f": {said[-300:]}" if said else ""))
    return done.stdout


def run_file(binary: Path, path: Path, frames: np.ndarray, *, sample_rate: float, block: int, out: int) -> np.ndarray:
    """``frames [rows, time, in]`` through the file in NAM's engine, each row its own stream (loaded
    afresh, ``Reset(sample_rate, block)``, processed in blocks): ``[rows, time, out]`` float64."""
    import numpy as np

    rows, count, ins = frames.shape
    payload = np.ascontiguousarray(frames, dtype="<f8").tobytes()
    data = _call(binary, ["run", str(path), repr(float(sample_rate)), str(block), str(rows), str(count), str(ins),
                          str(out)], payload, timeout=600)
    values = np.frombuffer(data, dtype="<f8")
    if values.size != rows * count * out:
        raise RunnerError(f"NAM's runner returned {values.size} samples, expected {rows * count * out}")
    return values.reshape(rows, count, out)


@attrs.frozen
class Timing:
    """Block times of one run of the runner's ``time`` command."""

    samples_ns: list[int]
    warmup: int
    load_ms: float


def time_file(binary: Path, path: Path, block_frames: np.ndarray, *, sample_rate: float, seconds: float) -> Timing:
    """``process()`` of one block (``[block, in]``), again and again for ``seconds``: wall time per block."""
    import numpy as np

    block, ins = block_frames.shape
    payload = np.ascontiguousarray(block_frames, dtype="<f8").tobytes()
    text = _call(binary, ["time", str(path), repr(float(sample_rate)), str(block), repr(float(seconds)), str(ins)],
                 payload, timeout=600 + 20 * seconds).decode()
    lines = text.split()
    # "load_ms X warmup N" then one number per block.
    return Timing([int(v) for v in lines[4:]], int(lines[3]), float(lines[1]))

