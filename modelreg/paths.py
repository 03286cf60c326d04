"""Paths as messages show them, and whether a path stays inside a folder (symlinks resolved).

The lowest floor of the package with :mod:`modelreg.errors` and :mod:`modelreg.atomic`:
every module that names a file in a message, or refuses a path leaving the
registry's folder, asks here.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["RESULTS_FILENAME", "display_path", "inside", "outside_note", "symlink_exit"]

#: A registry's validation results, relative to its folder (see :func:`modelreg.validation.results_path`);
#: here, at the floor, so that the shards' plan and the validation run both name it without importing each other.
RESULTS_FILENAME = "models/validation_results.json"


def display_path(path: Path) -> str:
    """A path as messages show it: relative to the current folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return str(path)



def inside(root: Path, candidate: Path) -> bool:
    try:
        candidate.resolve().relative_to(root.resolve())
    except (ValueError, OSError, RuntimeError):  # outside; or unresolvable (a symlink loop)
        return False
    return True


def symlink_exit(root: Path, target: Path) -> str:
    """The symlink through which ``target`` leaves ``root``, worded for a message (or "")."""
    try:
        if target.is_symlink():
            return f", a symlink to {target.resolve()}"
        parts = target.relative_to(root).parts
    except (ValueError, OSError, RuntimeError):
        return ""
    # A folder on the way can be the symlink (models -> /elsewhere): name it, or
    # the user sees a plain relative path that "obviously" stays inside.
    folder = root
    for part in parts[:-1]:
        folder = folder / part
        if folder.is_symlink():
            return f", through the symlink {folder.relative_to(root).as_posix()} -> {folder.resolve()}"
    return ""


def outside_note(root: Path, path: Path) -> str | None:
    """None when ``path`` stays inside the folder ``root`` once every symlink is resolved;
    else what a message shows as found: the path (relative to ``root`` when written
    under it) and the symlink it leaves through."""
    if inside(root, path):
        return None
    try:
        shown = path.relative_to(root).as_posix()
    except ValueError:
        shown = str(path)
    return repr(shown) + symlink_exit(root, path)  # in full: a path cut short would not help
