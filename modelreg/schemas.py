"""The JSON Schemas modelreg validates against, and readable messages for their errors.

The schemas live at the repository root in ``schemas/``; an installed wheel
carries them as ``modelreg/schemas/`` (see pyproject.toml), so both places
are searched.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .errors import Problem, closest, did_you_mean, found

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


def load_schema(name: str) -> dict[str, Any]:
    """The parsed schema ``name`` (e.g. ``"registry"``), cached.

    The layer parts of the registry and RTNeural schemas come from the layer
    kinds (:mod:`modelreg.layers.compose`; the committed files hold the same,
    which a test checks), so a kind registered at run time is known too.
    """
    from .layers import generation

    return _load_schema(name, generation())


@functools.cache
def _load_schema(name: str, generation: int) -> dict[str, Any]:
    from .layers.compose import compose

    with open(schema_path(name), encoding="utf-8") as handle:
        schema: dict[str, Any] = json.load(handle)
    return compose(name, schema)


def _validator(name: str) -> Any:
    from .layers import generation

    return _cached_validator(name, generation())


@functools.cache
def _cached_validator(name: str, generation: int) -> Any:
    # jsonschema is imported here, not at module level: it costs ~50 ms and only
    # validation needs it.
    import jsonschema

    schema = load_schema(name)
    # No check_schema() here: modelreg's own schemas are checked against their
    # metaschema by the test-suite, not on every start (it cost ~10 ms).
    cls = jsonschema.validators.validator_for(schema)
    # JSON Schema counts 5.0 as an integer; TOML does not, and a float unit count
    # or shape would only fail later, deep inside torch. Integers must be written
    # as integers.
    checker = cls.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return jsonschema.validators.extend(cls, type_checker=checker)(schema)


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def format_key_path(parts: Iterable[str | int]) -> str:
    """``["models", "x", "layers", 1, "units"]`` -> ``models.x.layers[1].units``.

    Keys that TOML would need to quote (``my model``, ``a.b``, ``""``) are quoted
    as TOML writes them, so the path stays unambiguous.
    """
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            key = str(part)
            if not _BARE_KEY.fullmatch(key):
                key = json.dumps(key, ensure_ascii=False)
            text += f".{key}" if text else key
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
    # TOML's date and time values: datetime is a subclass of date, so it goes first.
    if isinstance(value, datetime.datetime):
        return "a date-time"
    if isinstance(value, datetime.date):
        return "a date"
    if isinstance(value, datetime.time):
        return "a time"
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



def _typo_targets(value: dict[str, Any], known: Sequence[str]) -> dict[str, str]:
    """Unknown key -> the known key it probably misspells (only keys not already set)."""
    unset = [k for k in known if k not in value]
    targets = {}
    for key in value:
        if key not in known:
            close = closest(key, unset)
            if close is not None:
                targets[key] = close
    return targets


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (``#/$defs/x``); other schemas are returned as they are."""
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#/"):
        target: Any = root
        for part in schema["$ref"][2:].split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        schema = target
    return schema if isinstance(schema, dict) else {}


def _expected_of(schema: dict[str, Any]) -> str | None:
    """What a (sub)schema accepts, in words: its description, its choices or its type."""
    if schema.get("description"):
        return str(schema["description"])
    if "enum" in schema:
        choices = [repr(c) for c in schema["enum"]]
        return choices[0] if len(choices) == 1 else "one of " + ", ".join(choices)
    kind = schema.get("type")
    if isinstance(kind, str):
        return _TYPE_NAMES.get(kind, kind)
    return None


def _layer_keys(path: list[Any], table: dict[str, Any]) -> list[str] | None:
    """``type`` and the registry keys of the layer kind a ``layers[i]`` (or a residual block's
    ``skip[i]``) table names, else None."""
    if len(path) < 2 or path[-2] not in ("layers", "skip") or not isinstance(table.get("type"), str):
        return None
    from .layers import get_kind

    try:
        kind = get_kind(table["type"])
    except KeyError:
        return None
    return ["type", *kind.registry_keys]


def _problems_for(error: Any, file: str | None, model_of: Any, root: dict[str, Any]) -> list[Problem]:
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
        # A layer's table: name the keys of its own type, not every kind's (the schema's union).
        own = _layer_keys(path, value)
        listed = own if own is not None else known
        typos = _typo_targets(value, listed)
        allowed = ", ".join(listed)
        return [
            problem(f"unknown key; did you mean {typos[k]!r}?" if k in typos else "unknown key", path + [k],
                    expected=f"one of: {allowed}")
            for k in unknown
        ]
    if validator == "required" and isinstance(value, dict):
        # A table's own schema says what each key holds; a conditional requirement
        # (if/then, e.g. "dense layers need an activation") carries a description.
        properties = schema.get("properties", {})
        return [
            problem("missing required key", path + [k],
                    _expected_of(_resolve(properties[k], root)) if k in properties else schema.get("description"))
            for k in error.validator_value
            if k not in value
        ]
    if validator == "type":
        expected = schema.get("description") or " or ".join(
            _TYPE_NAMES.get(t, t) for t in ([error.validator_value] if isinstance(error.validator_value, str) else error.validator_value)
        )
        # Dates and times are shown as TOML writes them, not as Python reprs.
        shown = value.isoformat() if isinstance(value, (datetime.date, datetime.time)) else found(value)
        return [problem("wrong type", path, expected, f"{shown} ({_kind(value)})")]
    if validator == "enum":
        choices = [str(c) for c in error.validator_value]
        if len(choices) == 1:  # "did you mean" would only repeat the one choice
            return [problem("not an allowed value", path, repr(error.validator_value[0]), found(value))]
        hint = did_you_mean(value, choices) if isinstance(value, str) else ""
        return [problem(f"not an allowed value{hint}", path, "one of " + ", ".join(repr(c) for c in choices), found(value))]
    if validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[validator]
        expected = schema.get("description") or f"a value {op} {error.validator_value}"
        return [problem("out of range", path, expected, found(value))]
    if validator in ("minItems", "maxItems", "items", "prefixItems"):
        expected = schema.get("description") or f"{validator} {error.validator_value}"
        reason = "empty" if validator == "minItems" and not value else "wrong number of entries"
        return [problem(reason, path, expected, found(value))]
    if validator == "minProperties":
        expected = schema.get("description") or f"at least {error.validator_value} keys"
        return [problem("empty" if not value else "too few keys", path, expected, found(value))]
    if validator == "uniqueItems":
        return [problem("duplicate entries", path, "unique entries", found(value))]
    if validator == "pattern":
        expected = schema.get("description") or f"text matching {error.validator_value!r}"
        return [problem("invalid value", path, expected, found(value))]
    if validator == "maxLength" or validator == "minLength":
        expected = schema.get("description") or f"{validator} {error.validator_value}"
        return [problem("empty" if value == "" else "invalid length", path, expected, found(value))]
    if validator == "anyOf":
        # The branches whose type the value has say what is wrong with it (an array holding
        # a string: that entry); when it has none of their types, it is the wrong type.
        branches: dict[Any, list[Any]] = {}
        for sub in error.context or ():
            branches.setdefault(sub.relative_schema_path[0], []).append(sub)
        fitting = [subs for subs in branches.values()
                   if not any(sub.validator == "type" and list(sub.absolute_path) == path for sub in subs)]
        if len(fitting) == 1:
            return [item for sub in fitting[0] for item in _problems_for(sub, file, model_of, root)]
        expected = schema.get("description") or " or ".join(
            filter(None, (_expected_of(_resolve(branch, root)) for branch in error.validator_value)))
        return [problem("wrong type", path, expected or None, f"{found(value)} ({_kind(value)})")]
    if validator == "not":
        # A TOML / JSON boolean as the file spells it (bias = false), not Python's False.
        shown = ("true" if value else "false") if isinstance(value, bool) else found(value)
        return [problem(f"not allowed here: {schema.get('description', 'this key must not be set')}", path, None, shown)]
    return [problem(error.message, path)]


def _name_problems(error: Any, file: str | None, model_of: Any) -> list[Problem] | None:
    """propertyNames errors point at the parent table; report the offending name itself.

    Depending on the jsonschema version, a bad name comes either as one
    ``propertyNames`` error (with the details in ``context``) or as the inner
    error itself (``pattern``, ``maxLength``) whose schema path runs through
    ``propertyNames``; both are handled.
    """
    if error.validator == "propertyNames":
        names_schema = error.validator_value if isinstance(error.validator_value, dict) else {}
        subs = error.context or [error]
    elif "propertyNames" in error.relative_schema_path:
        names_schema = error.schema if isinstance(error.schema, dict) else {}
        subs = [error]
    else:
        return None
    parent = list(error.absolute_path)
    problems = []
    for sub in subs:
        name = str(sub.instance)
        parts = parent + [name]
        what = "model name" if model_of(parts) is not None else "name"
        problems.append(
            Problem(f"invalid {what}", file=file, model=model_of(parts), key=format_key_path(parts),
                    expected=names_schema.get("description", "a valid name"), found=found(name))
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

    A misspelt key is one mistake, so it is reported once: as an unknown key
    with a "did you mean", not also as the missing key it was meant to be.
    """
    problems: list[Problem] = []
    seen: set[tuple[str | None, str]] = set()
    misspelt: set[str] = set()  # key paths of required keys that an unknown key probably misspells
    root = load_schema(name)
    errors = sorted(_validator(name).iter_errors(instance), key=lambda e: _path_order(e, instance))
    for error in errors:
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = list(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
            parent = list(error.absolute_path)
            misspelt.update(format_key_path(parent + [t]) for t in _typo_targets(error.instance, known).values())
    for error in errors:
        translated = _name_problems(error, file, model_of) or _problems_for(error, file, model_of, root)
        for item in translated:
            marker = (item.key, item.reason)
            if item.reason == "missing required key" and item.key in misspelt:
                continue
            if marker not in seen:  # if/then branches can report the same thing twice
                seen.add(marker)
                problems.append(item)
    return problems


def _path_order(error: Any, instance: Any) -> list[tuple[int, int]]:
    """Sort key putting errors in document order.

    Parsed TOML keeps the file's key order, so a key's position in its table
    is its position in the document; array entries sort by index
    (layers[2] before layers[10]).
    """
    order = []
    node = instance
    for part in error.absolute_path:
        if isinstance(node, dict):
            keys = list(node)
            order.append((0, keys.index(part) if part in node else len(keys)))
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int):
            order.append((0, part))
            node = node[part] if 0 <= part < len(node) else None
        else:
            order.append((1, 0))
            node = None
    return order
