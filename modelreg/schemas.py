"""The JSON Schemas modelreg validates against, and readable messages for their errors.

The schemas live at the repository root in ``schemas/``; an installed wheel
carries them as ``modelreg/schemas/`` (see pyproject.toml), so both places
are searched.
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import Problem, found

__all__ = ["format_key_path", "load_schema", "schema_path", "schema_problems"]

_SEARCH_DIRS = (
    Path(__file__).resolve().parent / "schemas",  # installed wheel
    Path(__file__).resolve().parent.parent / "schemas",  # source checkout / editable install
)


def schema_path(name: str) -> Path:
    """Path of ``schemas/<name>.schema.json``."""
    filename = f"{name}.schema.json"
    for folder in _SEARCH_DIRS:
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    searched = ", ".join(str(folder) for folder in _SEARCH_DIRS)
    raise FileNotFoundError(f"modelreg's schema {filename} is missing (searched {searched}); the installation is broken")


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``name`` (e.g. ``"registry"``), cached."""
    with open(schema_path(name), encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return schema


@functools.cache
def _validator(name: str) -> Any:
    # jsonschema is imported here, not at module level: it costs ~50 ms and only
    # validation needs it.
    import jsonschema

    schema = load_schema(name)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def format_key_path(parts: Iterable[str | int]) -> str:
    """``["models", "x", "layers", 1, "units"]`` -> ``models.x.layers[1].units``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


_TYPE_NAMES = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "array": "an array",
    "object": "a table",
    "boolean": "a boolean",
    "null": "null",
}


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    if value is None:
        return "null"
    return type(value).__name__


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _problems_for(error: Any, file: str | None, model_of: Any) -> list[Problem]:
    """Translate one jsonschema error into one or more Problems."""
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    validator = error.validator
    value = error.instance

    def problem(reason: str, parts: list[Any], expected: str | None = None, found_: str | None = None) -> Problem:
        return Problem(reason, file=file, model=model_of(parts), key=format_key_path(parts) or None,
                       expected=expected, found=found_)

    if validator == "additionalProperties" and isinstance(value, dict):
        known = list(schema.get("properties", {}))
        unknown = [k for k in value if k not in known]
        allowed = ", ".join(known)
        return [problem(f"unknown key{_suggest(k, known)}", path + [k], expected=f"one of: {allowed}") for k in unknown]
    if validator == "required" and isinstance(value, dict):
        return [problem("missing required key", path + [k]) for k in error.validator_value if k not in value]
    if validator == "type":
        expected = schema.get("description") or " or ".join(
            _TYPE_NAMES.get(t, t) for t in ([error.validator_value] if isinstance(error.validator_value, str) else error.validator_value)
        )
        return [problem("wrong type", path, expected, f"{found(value)} ({_kind(value)})")]
    if validator == "enum":
        choices = [str(c) for c in error.validator_value]
        hint = _suggest(value, choices) if isinstance(value, str) else ""
        return [problem(f"not an allowed value{hint}", path, "one of " + ", ".join(repr(c) for c in choices), found(value))]
    if validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[validator]
        expected = schema.get("description") or f"a value {op} {error.validator_value}"
        return [problem("out of range", path, expected, found(value))]
    if validator in ("minItems", "maxItems", "items", "prefixItems"):
        expected = schema.get("description") or f"{validator} {error.validator_value}"
        reason = "empty" if validator == "minItems" and not value else "wrong number of entries"
        return [problem(reason, path, expected, found(value))]
    if validator == "uniqueItems":
        return [problem("duplicate entries", path, "unique entries", found(value))]
    if validator == "pattern":
        expected = schema.get("description") or f"text matching {error.validator_value!r}"
        return [problem("invalid value", path, expected, found(value))]
    if validator == "maxLength" or validator == "minLength":
        expected = schema.get("description") or f"{validator} {error.validator_value}"
        return [problem("invalid length", path, expected, found(value))]
    if validator == "not":
        return [problem(f"not allowed here: {schema.get('description', 'this key must not be set')}", path, None, found(value))]
    return [problem(error.message, path)]


def _name_problems(error: Any, file: str | None, model_of: Any) -> list[Problem] | None:
    """propertyNames errors point at the parent table; report the offending name itself."""
    if error.validator != "propertyNames":
        return None
    parent = list(error.absolute_path)
    problems = []
    for sub in error.context or [error]:
        name = sub.instance
        expected = error.validator_value.get("description", "a valid name")
        problems.append(
            Problem("invalid name", file=file, model=None, key=format_key_path(parent + [str(name)]),
                    expected=expected, found=found(name))
        )
    return problems


def schema_problems(
    instance: Any,
    name: str,
    *,
    file: str | None = None,
    model_of: Any = lambda parts: None,
) -> list[Problem]:
    """Every violation of schema ``name`` in ``instance``, as Problems, in document order.

    ``model_of(path_parts)`` tells which model a key path belongs to (or None),
    so the caller can attribute problems to models.
    """
    problems: list[Problem] = []
    seen: set[tuple[str | None, str]] = set()
    errors = sorted(_validator(name).iter_errors(instance), key=_path_order)
    for error in errors:
        translated = _name_problems(error, file, model_of) or _problems_for(error, file, model_of)
        for item in translated:
            marker = (item.key, item.reason)
            if marker not in seen:  # if/then branches can report the same thing twice
                seen.add(marker)
                problems.append(item)
    return problems


def _path_order(error: Any) -> list[tuple[int, int, str]]:
    # Array indices sort numerically (layers[2] before layers[10]), keys alphabetically.
    return [(0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in error.absolute_path]
