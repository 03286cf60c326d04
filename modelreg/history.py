"""The older side of a comparison: a registry at a git revision, or another registry file.

From git, the registry and the checkpoints its entries name are read with
``git cat-file`` (what ``git show REV:path`` prints), never checked out: the
working tree, the index and HEAD are left alone. They are written into a
private temporary folder that mirrors the registry's folder, so that the
older entries load through the same code as any registry (``load_registry``,
``read_state_dict``: whatever checkpoint format the loader reads). Messages
name the files as ``REV:path``, never the temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from .errors import ModelRegError, Problem, UsageError
from .paths import display_path
from .registry import Registry, load_registry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["RESULTS", "Base", "open_base", "read_results"]

#: Where validate writes its results, relative to the registry's folder (modelreg.validation's constant,
#: repeated here so that reading a base does not import validation).
RESULTS = "models/validation_results.json"


@attrs.define
class Base:
    """The older registry and what came with it."""

    registry: Registry
    #: ``git`` or ``file``.
    kind: str
    #: How the page and messages name the base: ``HEAD~1 (3f2a1b9)`` or a path.
    label: str
    #: How messages name its registry file: ``HEAD~1:registry.toml`` or a path.
    shown: str
    revision: str | None = None
    commit: str | None = None
    #: Its validation results (for latency), when there are any; ``results_note`` says where
    #: they came from or why there are none.
    results: Mapping[str, Any] | None = None
    results_note: str = ""
    #: model -> why its checkpoint could not be read at the base.
    missing: dict[str, str] = attrs.field(factory=dict)
    #: Where the temporary copy lives (git only): problems naming it are renamed to REV:path.
    copy_root: Path | None = None
    git_dir: str = ""

    def rename(self, problem: Problem) -> Problem:
        """``problem`` with a file in the temporary copy named as ``REV:path`` instead."""
        if self.copy_root is None or problem.file is None:
            return problem
        for prefix in (str(self.copy_root), display_path(self.copy_root)):
            if problem.file.startswith(prefix):
                rest = problem.file[len(prefix):].lstrip("/\\")
                where = posixpath.join(self.git_dir, rest) if self.git_dir else rest
                return attrs.evolve(problem, file=f"{self.revision}:{where}")
        return problem

    def renamed(self, exc: ModelRegError) -> ModelRegError:
        """``exc`` with its problems renamed (see :meth:`rename`)."""
        return type(exc)(*(self.rename(p) for p in exc.problems), hint=exc.hint)


def _git(args: list[str], cwd: Path) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)
    except FileNotFoundError:
        raise UsageError.at("git is not installed: `modelreg diff REV` reads the older registry from git",
                            expected="git on PATH, or --against PATH (another registry file)") from None


def _commit(revision: str, top: Path, shown: str) -> str:
    """The full hash of ``revision``, or a UsageError naming it."""
    expected = f"a commit of the repository at {top}: a branch, a tag, HEAD~N or a commit hash"
    if not revision or revision.startswith("-"):  # never let a revision be read as an option of git's
        raise UsageError.at("not a git revision", file=shown, expected=expected, found=revision)
    done = _git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{revision}^{{commit}}"], top)
    if done.returncode != 0:
        empty = _git(["rev-parse", "--verify", "--quiet", "HEAD"], top).returncode != 0
        why = " (the repository has no commits yet)" if empty else ""
        raise UsageError.at(f"unknown git revision{why}", file=shown, expected=expected, found=revision)
    return done.stdout.decode().strip()


def _blob(commit: str, path: str, top: Path) -> bytes | None:
    """The bytes of ``path`` (relative to the repository's top) at ``commit``; None when it is not there."""
    done = _git(["cat-file", "blob", f"{commit}:{path}"], top)
    return done.stdout if done.returncode == 0 else None


@contextlib.contextmanager
def open_base(registry_path: Path, *, revision: str | None = None, against: str | None = None,
              base_results: str | None = None) -> Iterator[Base]:
    """The base to compare the registry at ``registry_path`` with: ``against`` (another registry file),
    else ``revision`` of the git repository holding it (default ``HEAD``). Its validation results are
    ``base_results`` when given, else the file beside that registry (at that revision), when there is one.
    Usage errors (not a repository, an unknown revision, a missing file) raise :class:`UsageError`."""
    if against is not None:
        base = _file_base(Path(against))
    else:
        stack = contextlib.ExitStack()
        with stack:
            base = _git_base(registry_path, revision or "HEAD", stack)
            _attach_results(base, base_results)
            yield base
        return
    _attach_results(base, base_results)
    yield base


def _attach_results(base: Base, explicit: str | None) -> None:
    if explicit is not None:
        document, problems = _load_results(Path(explicit), explicit)
        if document is None:
            raise UsageError(*problems)
        base.results = document
        base.results_note = f"from {explicit}"


def _load_results(path: Path, shown: str) -> tuple[dict[str, Any] | None, list[Problem]]:
    """A validation results document, schema-checked, or the problems that stop it being one.

    (``html_report.load_results`` says the same in more words; it is not imported here, since the
    report imports the diff that imports this module.)"""
    import json

    from .schemas import schema_problems

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None, [Problem("validation results not found", file=shown)]
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, [Problem("not a validation results file", file=shown,
                              expected="the JSON object `modelreg validate` writes", found=type(exc).__name__)]
    if not isinstance(document, dict) or "models" not in document:
        return None, [Problem("not a validation results file", file=shown,
                              expected="the JSON object `modelreg validate` writes (with \"models\")")]
    problems = schema_problems(document, "validation_results", file=shown)
    return (None, problems) if problems else (document, [])


def _file_base(path: Path) -> Base:
    shown = display_path(path)
    if not path.exists():
        raise UsageError.at("registry file not found (--against)", file=shown, expected="a registry.toml to compare with")
    registry = load_registry(path, strict=False)
    base = Base(registry=registry, kind="file", label=shown, shown=shown)
    results = registry.root / RESULTS
    base.results, base.results_note = read_results(results, display_path(results))
    return base


def read_results(path: Path, shown: str) -> tuple[Mapping[str, Any] | None, str]:
    """A validation results file when it is there and valid, else None; and a note saying which."""
    if not path.is_file():
        return None, f"no validation results ({shown} not found)"
    document, problems = _load_results(path, shown)
    if document is None:
        return None, f"validation results not read: {problems[0]}"
    return document, f"from {shown}"


def _git_base(registry_path: Path, revision: str, stack: contextlib.ExitStack) -> Base:
    shown_current = display_path(registry_path)
    folder = registry_path.resolve().parent
    if not folder.is_dir():
        raise UsageError.at("registry file not found", file=shown_current)
    done = _git(["rev-parse", "--show-toplevel"], folder)
    if done.returncode != 0:
        raise UsageError.at("not inside a git repository: the older registry is read from git", file=shown_current,
                            expected="a registry tracked in a git repository, or --against PATH (another registry file)",
                            found=display_path(folder))
    top = Path(done.stdout.decode().strip()).resolve()
    commit = _commit(revision, top, shown_current)
    git_dir = folder.relative_to(top).as_posix() if folder != top else ""
    git_path = posixpath.join(git_dir, registry_path.name) if git_dir else registry_path.name
    shown = f"{revision}:{git_path}"
    raw = _blob(commit, git_path, top)
    if raw is None:
        raise UsageError.at(f"the registry is not in git at {revision}", file=shown_current,
                            expected=f"{git_path} committed at {revision} ({commit[:10]})",
                            found="no such file in that commit")
    tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="modelreg-diff-")))
    copy = tmp / registry_path.name
    copy.write_bytes(raw)
    base = Base(registry=Registry(copy, {}), kind="git", label=f"{revision} ({commit[:10]})", shown=shown,
                revision=revision, commit=commit, copy_root=tmp, git_dir=git_dir)
    try:
        registry = load_registry(copy, strict=False)
    except ModelRegError as exc:
        raise base.renamed(exc) from None
    base.registry = registry
    # The checkpoints its entries name, as committed (an entry's path stays inside the registry's folder).
    try:
        tables = tomllib.loads(raw.decode("utf-8")).get("models", {})
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):  # pragma: no cover - load_registry refused it first
        tables = {}
    for name, table in tables.items():
        checkpoint = table.get("checkpoint") if isinstance(table, dict) else None
        if not isinstance(checkpoint, str) or os.path.isabs(checkpoint):
            continue
        relative = posixpath.normpath(checkpoint.replace("\\", "/"))
        if relative.startswith("../") or relative == "..":
            continue
        where = posixpath.join(git_dir, relative) if git_dir else relative
        data = _blob(commit, where, top)
        if data is None:
            base.missing[name] = str(Problem(f"checkpoint not in git at {revision}: weights and drift not compared",
                                             file=f"{revision}:{where}", key=f"models.{name}.checkpoint",
                                             expected=f"the file committed at {revision} ({commit[:10]})",
                                             found="no such file in that commit"))
            continue
        target = tmp / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    results_git = posixpath.join(git_dir, RESULTS) if git_dir else RESULTS
    data = _blob(commit, results_git, top)
    if data is None:
        base.results_note = f"no validation results at {revision} ({results_git} is not committed)"
    else:
        (tmp / RESULTS).parent.mkdir(parents=True, exist_ok=True)
        (tmp / RESULTS).write_bytes(data)
        base.results, note = read_results(tmp / RESULTS, f"{revision}:{results_git}")
        base.results_note = note
    return base

