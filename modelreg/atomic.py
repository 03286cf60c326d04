"""Atomic file writes: a reader sees the complete old file or the complete new one."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_with",
    "atomic_writer",
    "file_identity",
    "fsync_file",
    "install",
    "remove_orphaned_temps",
    "remove_temp",
    "sha256_file",
    "temp_leftovers",
    "temp_prefix",
]

# Temporary files are ``.NAME.PID-XXXXXXXX.tmp`` (``.partial`` for an export being
# checked). A writer killed with SIGKILL cannot remove its own; the process id
# in the name lets a later run tell such an orphan from a write in progress.
# A name that merely starts with one is an orphan too: an exporter plugin may
# have made it from the path it was given (np.savez appends ".npz").
_TEMP_NAME = re.compile(r"^\..+\.(\d{1,10})-[a-z0-9_]{8}\.(?:tmp|partial)(?:$|[^a-z0-9_])")


def temp_prefix(target_name: str) -> str:
    """The ``mkstemp`` prefix for a temporary file beside ``target_name``."""
    return f".{target_name}.{os.getpid()}-"


def _process_alive(pid: int) -> bool:
    if sys.platform == "win32" or pid == os.getpid():
        return True  # on Windows os.kill(pid, 0) would send CTRL_C_EVENT: never guess there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError, ValueError):  # EPERM: alive but another user's
        return True
    return True


def remove_orphaned_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files in ``folder`` whose writer process no longer exists.

    Only names made by :func:`temp_prefix` are considered; a file whose process
    is alive (a concurrent run) is left alone. Returns the removed paths.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:  # no such folder yet, or not a folder: nothing to clean
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or _process_alive(int(match[1])):
            continue
        if _remove_entry(entry):
            removed.append(Path(entry.path))
    return removed


def _remove_entry(entry: os.DirEntry[str]) -> bool:
    """Remove a file, symlink (not its target) or folder; False when it could not be."""
    try:
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
    except OSError:
        return False
    return True


def temp_leftovers(tmp: Path) -> list[Path]:
    """What was made beside the temporary file ``tmp`` under its name, ``tmp`` itself excluded.

    An exporter given ``tmp`` may write ``tmp.npz`` instead (np.savez), or its own
    temporary ``.tmp.NAME...``; the random part of the name makes them ours alone.
    """
    try:
        entries = list(os.scandir(tmp.parent))
    except OSError:
        return []
    return sorted(Path(entry.path) for entry in entries
                  if entry.name != tmp.name and entry.name.startswith((tmp.name, "." + tmp.name)))


def remove_temp(tmp: Path) -> None:
    """Remove the temporary file ``tmp`` and whatever was made beside it under its name."""
    for path in (tmp, *temp_leftovers(tmp)):
        with contextlib.suppress(OSError):  # FileNotFoundError: installed, or never made
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """Yield a binary file object; on success it replaces ``path`` atomically.

    The data goes to a temporary file in the same folder (same filesystem, so
    ``os.replace`` is atomic), is flushed and fsync'ed, then renamed over the
    target. On any error the temporary file is removed and the old file is
    left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        install(Path(tmp_name), target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def install(tmp: Path, target: Path) -> None:
    """Rename a complete temporary file over ``target`` (same folder), durably.

    Keeps the permissions a user gave the old file; new files get 0644 (mkstemp
    creates 0600, which would surprise anyone sharing the folder).
    """
    try:
        mode = target.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o644
    os.chmod(tmp, mode)
    os.replace(tmp, target)
    _fsync_dir(target.parent)


def fsync_file(path: Path) -> None:
    """Flush a file written by other code (an exporter plugin) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    # Make the rename itself durable; not every platform allows opening a folder.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path) as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_with(path: str | os.PathLike[str], write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write(handle)`` and atomically install what it wrote at ``path``."""
    with atomic_writer(path) as handle:
        write(handle)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_identity(path: Path) -> tuple[int, int, int, int]:
    """Device, inode, size and modification time (ns): which file is at ``path``.

    A rename keeps all four, so the identity of a temporary file is that of the
    artifact it becomes; another process installing its own file there replaces
    the inode. Comparing identities instead of hashing again saves reading every
    artifact twice (git's index tells changed files apart the same way).
    """
    status = os.stat(path)
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns
