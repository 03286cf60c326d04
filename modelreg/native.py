"""The C++ toolchain the native targets share: which compiler, its version, where builds are cached,
and what identifies the machine and a source tree in a cache key.

RTNeural's C++ engine (:mod:`modelreg.rtneural.cpp`) and NAM's (:mod:`modelreg.nam.engine`)
both compile a program once and keep it; this module is what they have in common, so that
``$CXX``, ``$MODELREG_CACHE_DIR`` and a broken compiler mean the same thing for both.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
from pathlib import Path

from .errors import ToolchainError

__all__ = [
    "COMPILERS",
    "ENV_CACHE",
    "cache_root",
    "compiler_origin",
    "compiler_version",
    "cpu_identity",
    "find_compiler",
    "tree_listing",
]

#: Where compiled programs are kept (else ``$XDG_CACHE_HOME/modelreg``, else ``~/.cache/modelreg``).
ENV_CACHE = "MODELREG_CACHE_DIR"
#: The compilers looked for on PATH when ``$CXX`` is not set, in order.
COMPILERS = ("c++", "g++", "clang++")

_version_cache: dict[tuple[str, int], str] = {}


def find_compiler() -> tuple[tuple[str, ...], str] | None:
    """The compiler argv and its resolved path: ``$CXX``, else the first of :data:`COMPILERS` on
    PATH; None when there is none. A ``$CXX`` naming no executable raises ToolchainError."""
    from_env = os.environ.get("CXX", "").strip()
    if from_env:
        argv = tuple(shlex.split(from_env))
        found = shutil.which(argv[0])
        if found is None:
            raise ToolchainError.at(f"the C++ compiler {argv[0]!r} ($CXX) was not found",
                                    key="CXX", expected="an executable C++ compiler", found=from_env)
        return argv, found
    for name in COMPILERS:
        found = shutil.which(name)
        if found is not None:
            return (name,), found
    return None


def compiler_origin() -> str:
    """Where the compiler came from, for messages: ``$CXX`` when set, else the search of PATH."""
    return "CXX" if os.environ.get("CXX", "").strip() else "PATH (c++, g++, clang++)"


def compiler_version(argv: tuple[str, ...], path: str, *, expected: str) -> str:
    """The compiler's ``--version`` text (cached per argv and binary mtime); ToolchainError, naming
    ``expected`` (e.g. "a C++17 compiler"), when it cannot be run or does not answer."""
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        stamp = 0
    cached = _version_cache.get((" ".join(argv), stamp))
    if cached is not None:
        return cached
    try:
        done = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise ToolchainError.at(f"the C++ compiler {argv[0]!r} cannot be run: {exc.strerror or exc}",
                                key=compiler_origin(), found=path) from None
    except subprocess.TimeoutExpired:
        raise ToolchainError.at(f"the C++ compiler {argv[0]!r} did not answer `--version` within 60 s",
                                key=compiler_origin(), found=path) from None
    if done.returncode != 0 or not done.stdout.strip():
        said = ((done.stderr or done.stdout).strip().splitlines() or [""])[0][:200]  # its first line says enough
        how = f"exit {done.returncode}" if done.returncode != 0 else "it printed nothing"
        raise ToolchainError.at(f"the C++ compiler {' '.join(argv)!r} does not work: `--version` failed ({how})"
                                + (f": {said}" if said else ""), key=compiler_origin(), expected=expected, found=path)
    _version_cache[(" ".join(argv), stamp)] = done.stdout
    return done.stdout


def cache_root() -> Path:
    """Where compiled programs are kept: ``$MODELREG_CACHE_DIR``, else ``$XDG_CACHE_HOME/modelreg``,
    else ``~/.cache/modelreg`` (each target keeps its builds in a folder of its own below it)."""
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "modelreg"


def cpu_identity() -> str:
    """What a binary built with ``-march=native`` depends on: the CPU's model and flags (hashed),
    so a cache shared between machines never runs a program built for another CPU."""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        models = sorted({line.split(":", 1)[1].strip() for line in text.splitlines()
                         if line.startswith(("model name", "flags", "Features"))})
        return hashlib.sha256("\n".join(models).encode()).hexdigest()[:16]
    return f"{platform.machine()} {platform.processor()}"


def tree_listing(folder: Path, relative_to: Path) -> str:
    """Every file under ``folder`` as ``path, size, mtime`` (sorted): what a cache key of a large
    source tree (Eigen, RTNeural) is made of, as make sees a change, without reading the files."""
    entries = []
    for current, dirs, files in os.walk(folder):
        dirs.sort()
        for name in files:
            full = os.path.join(current, name)
            with contextlib.suppress(OSError):
                stat = os.stat(full)
                entries.append(f"{os.path.relpath(full, relative_to)}\0{stat.st_size}\0{stat.st_mtime_ns}")
    return "\n".join(sorted(entries))
