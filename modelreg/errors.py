"""One exception hierarchy for everything a user can get wrong.

Every error carries one or more :class:`Problem` records with structured
context (file, model, key path, expected, found) and builds its message from
them, so callers can either print ``str(err)`` or inspect ``err.problems``.
Each subclass also derives from the fitting built-in exception, so code that
already catches ``ValueError`` or ``LookupError`` keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import attrs

__all__ = [
    "ArtifactError",
    "CheckpointError",
    "ExportError",
    "MissingDependencyError",
    "ModelRegError",
    "PluginError",
    "Problem",
    "RegistryError",
    "ToolchainError",
    "UnknownModelError",
    "UsageError",
    "WriteError",
    "closest",
    "did_you_mean",
    "format_problems",
]


def _short(value: Any, limit: int = 80) -> str:
    """A value as it should appear in a message: repr, cut to a readable size."""
    text = value if isinstance(value, str) and value.startswith("<") else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@attrs.frozen
class Problem:
    """One thing that is wrong, with where it is and what was expected.

    ``key`` is a dotted key path inside the file (``models.x.layers[1].units``).
    ``found`` is stored already formatted (see :func:`found`), so a problem is
    cheap to keep and safe to print.
    """

    reason: str
    file: str | None = None
    model: str | None = None
    key: str | None = None
    expected: str | None = None
    found: str | None = None
    line: int | None = None
    column: int | None = None

    @property
    def location(self) -> str:
        parts = []
        if self.file is not None:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            parts.append(where)
        if self.key is not None:
            parts.append(self.key)
        elif self.model is not None:
            parts.append(f"models.{self.model}")
        return ": ".join(parts)

    def __str__(self) -> str:
        text = self.reason
        if self.expected is not None and self.found is not None:
            text += f" (expected {self.expected}, found {self.found})"
        elif self.expected is not None:
            text += f" (expected {self.expected})"
        elif self.found is not None:
            text += f" (found {self.found})"
        return f"{self.location}: {text}" if self.location else text


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice ``word`` most probably meant: one that differs only in case, else the closest
    spelling (difflib, cutoff 0.6), else None."""
    import difflib

    options = list(choices)
    folded = [choice for choice in options if choice.casefold() == word.casefold()]
    if folded:  # "LSTM" for "lstm": difflib scores case as a difference and would miss it
        return folded[0]
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'lstm'?"`` to end a message with, or ``""`` when nothing is close."""
    match = closest(word, choices)
    return f"; did you mean {match!r}?" if match is not None else ""


def format_problems(problems: Iterable[Problem | str], *, hint: str | None = None) -> str:
    """Problems as people read them everywhere (errors, FAIL blocks, reports): one on its own
    line, several under a count, one per line; the hint last."""
    items = [str(p) for p in problems]
    lines = items if len(items) == 1 else [f"{len(items)} problems:", *(f"  {item}" for item in items)]
    if hint is not None:
        lines.append(f"  hint: {hint}")
    return "\n".join(lines)


def found(value: Any) -> str:
    """Format an offending value for :attr:`Problem.found`."""
    return _short(value)


_E = TypeVar("_E", bound="ModelRegError")


class ModelRegError(Exception):
    """Base of every error modelreg raises for a user's input or environment."""

    def __init__(self, *problems: Problem, hint: str | None = None) -> None:
        if not problems:
            raise TypeError("ModelRegError needs at least one Problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        #: What to do about it, when one thing fixes every problem (printed after them).
        self.hint = hint
        super().__init__(str(self))

    @classmethod
    def at(
        cls: type[_E],
        reason: str,
        *,
        file: str | Path | None = None,
        model: str | None = None,
        key: str | None = None,
        expected: str | None = None,
        found: Any = attrs.NOTHING,
        line: int | None = None,
        column: int | None = None,
    ) -> _E:
        """Build an error from one problem's context (``found`` is any value)."""
        return cls(
            Problem(
                reason,
                file=None if file is None else str(file),
                model=model,
                key=key,
                expected=expected,
                found=None if found is attrs.NOTHING else _short(found),
                line=line,
                column=column,
            )
        )

    @classmethod
    def collect(cls, problems: Iterable[Problem]) -> ModelRegError | None:
        """An error holding all ``problems``, or None when there are none."""
        problems = tuple(problems)
        return cls(*problems) if problems else None

    # Convenience accessors for the (common) single-problem case.
    @property
    def file(self) -> str | None:
        return self.problems[0].file

    @property
    def model(self) -> str | None:
        return self.problems[0].model

    @property
    def key(self) -> str | None:
        return self.problems[0].key

    def __str__(self) -> str:
        return format_problems(self.problems, hint=self.hint)

    def __reduce__(self) -> tuple[Any, ...]:
        # Errors cross process boundaries (``--jobs``); keep them picklable.
        return (self.__class__, self.problems, {"hint": self.hint})


class RegistryError(ModelRegError, ValueError):
    """The registry file is missing, unreadable, malformed or inconsistent."""


class UnknownModelError(ModelRegError, KeyError):
    """A model name that the registry does not contain."""

    # KeyError.__str__ would repr() the message; keep ours.
    __str__ = ModelRegError.__str__


class CheckpointError(ModelRegError, ValueError):
    """A checkpoint is missing, corrupt, unsafe or does not fit its model."""


class ArtifactError(ModelRegError, ValueError):
    """An exported file (RTNeural JSON, ONNX, ...) is malformed or tampered with."""


class ExportError(ModelRegError, RuntimeError):
    """An exporter could not produce or verify its artifact."""


class PluginError(ModelRegError, ImportError):
    """An exporter plugin could not be loaded or clashes with another one."""


class MissingDependencyError(ModelRegError, ImportError):
    """An optional dependency (an extra) is needed but not installed."""


class UsageError(ModelRegError, ValueError):
    """A bad argument to the API or the command line."""


class WriteError(ModelRegError, OSError):
    """A file modelreg must write (artifact, registry.lock, results) cannot be written.

    The folder is not writable or not a folder, the disk is full, or the path
    would leave the registry's folder. An environment problem, not a model's:
    the command stops (exit 2) and every previous file is left as it was.
    """


class ToolchainError(ModelRegError, RuntimeError):
    """A configured C++ toolchain cannot be used: no compiler, headers missing, a compile error."""
