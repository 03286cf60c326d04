"""A numpy reader and runtime for RTNeural's JSON model format.

RTNeural (github.com/jatinchowdhury18/RTNeural) loads models with
``RTNeural::json_parser::parseJson`` (``RTNeural/model_loader.h``). This module
reads the same files, checks them far more strictly than the loader does (the
loader silently zero-pads short kernels, skips unknown layer types and crashes
on unknown activations), and runs them with RTNeural's semantics in float32,
the precision of RTNeural's default ``float`` build:

* ``dense`` / ``time-distributed-dense``: ``weights = [kernel, bias]`` or
  ``[kernel]`` (no bias: zeros); the kernel is ``[inputs][units]``
  (Keras layout, ``y = x @ kernel + bias``). A non-empty ``activation`` adds
  an activation after the layer.
* ``activation``: a stand-alone activation, ``weights = []``.
* ``lstm``: ``weights = [W [in][4u], U [u][4u], b [4u]]``, gates in the
  order i, f, c, o; ``c' = f*c + i*tanh(.)``, ``h' = o*tanh(c')``. The
  layer's ``activation`` key is ignored, as the loader ignores it.
* ``gru``: ``weights = [W [in][3u], U [u][3u], b [2][3u]]``, gates in the
  order z, r, h; row 0 of ``b`` is the input bias, row 1 the recurrent bias,
  which sits inside the reset-gate product:
  ``h~ = tanh(x W_h + b0_h + r * (h U_h + b1_h))``, ``h' = (1-z)*h~ + z*h``.
* ``conv2d``: ``weights = [kernel [kt][kf][C][filters], bias [filters]]`` over
  feature-major frames of F features x C filters, causal along time (state:
  the last ``(kt - 1) * dilation`` frames), TensorFlow's "valid"/"same"
  padding and strides along the features (:mod:`modelreg.layers.conv2d`).
* ``batchnorm2d``: ``[gamma, beta, mean, var]`` or ``[mean, var]``, one per
  filter, over the same frames.
* activations: ``""`` (linear), tanh, relu, sigmoid, softmax, elu (alpha 1).

Each layer type's weight nesting, size rules and numpy layer live in its
kind's module (:mod:`modelreg.layers`); this module is the machinery that
reads, checks and runs a file by asking them. It imports numpy but not torch;
jsonschema is imported on the first check.
"""

from __future__ import annotations

import codecs
import functools
import itertools
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..layers import generation, rtneural_handler, rtneural_handlers
from ..errors import ArtifactError, Problem, UsageError, found
from ..layers.activations import RTNEURAL_NAMES, ActivationLayer
from ..layers.base import RuntimeLayer, SizeCheck
from ..layers.dense import DenseLayer
from ..layers.gru import GRULayer
from ..layers.lstm import LSTMLayer

__all__ = [
    "ACTIVATIONS",
    "LAYER_TYPES",
    "ActivationLayer",
    "DenseLayer",
    "GRULayer",
    "LSTMLayer",
    "RTNeuralModel",
    "check_rtneural",
    "load_rtneural",
]

#: Layer types the runtime supports (a subset of what the loader knows), from the kinds.
LAYER_TYPES: tuple[str, ...] = tuple(t for handler in rtneural_handlers() for t in handler.rtneural_types)
#: Activation names RTNeural's ``createActivation`` knows; "" is linear.
ACTIVATIONS: tuple[str, ...] = RTNEURAL_NAMES

# A file with many bad numbers would otherwise yield one problem per number.
_MAX_PROBLEMS = 100
_F32_MAX = float(np.finfo(np.float32).max)
_MAX_UNITS = 2**31 - 1  # the loader reads sizes as C++ int


def _weight_depths(kind: str) -> tuple[int, ...] | None:
    """Expected nesting depth of each weight entry of a layer type (kernel, bias, ...); None if unknown."""
    handler = rtneural_handler(kind)
    return None if handler is None else handler.weight_depths


# --------------------------------------------------------------------------- schema


def _schema() -> dict[str, Any]:
    """The parsed RTNeural JSON Schema (cached), its layer part composed from the layer kinds
    (see :mod:`modelreg.layers.compose`)."""
    from ..schemas import load_schema

    return load_schema("rtneural")


def _validator() -> Any:
    return _cached_validator(generation())


@functools.cache
def _cached_validator(generation: int) -> Any:
    # Imported lazily: jsonschema costs tens of milliseconds to import.
    import jsonschema

    schema = _schema()
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _key(parts: Iterable[str | int]) -> str:
    """``["layers", 2, "weights", 0]`` -> ``layers[2].weights[0]``."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, np.integer)):
        return "an integer"
    if isinstance(value, (float, np.floating)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple, np.ndarray)):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    if value is None:
        return "null"
    return type(value).__name__


_TYPE_NAMES = {"integer": "an integer", "number": "a number", "string": "a string", "array": "an array",
               "object": "an object", "boolean": "a boolean", "null": "null"}


def _schema_problem(error: Any, file: str | None, lengths: Mapping[int, int] | None = None) -> list[Problem]:
    """Translate one jsonschema error into Problems with a key path.

    ``lengths`` maps ``id()`` of a shortened stand-in (:func:`_stub`) to the real entry's length.
    """
    path = list(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    validator = error.validator

    def problem(reason: str, parts: list[Any], expected: str | None = None, found_: str | None = None) -> Problem:
        return Problem(reason, file=file, key=_key(parts) or None, expected=expected, found=found_)

    if validator == "required" and isinstance(value, Mapping):
        return [problem("missing required key", path + [k]) for k in error.validator_value if k not in value]
    if validator == "type":
        names = [error.validator_value] if isinstance(error.validator_value, str) else list(error.validator_value)
        expected = " or ".join(_TYPE_NAMES.get(n, n) for n in names)
        return [problem("wrong type", path, expected, f"{found(value)} ({_kind(value)})")]
    if validator == "enum":
        choices = ", ".join(repr(c) for c in error.validator_value)
        last = path[-1] if path else None
        if last == "type":
            reason = "unknown or unsupported layer type"
        elif last == "activation":
            reason = "unknown activation (RTNeural knows tanh, relu, sigmoid, softmax, elu; \"\" is linear)"
        else:
            reason = "not an allowed value"
        return [problem(reason, path, f"one of {choices}", found(value))]
    if validator in ("minItems", "maxItems"):
        expected = schema.get("description") or f"{validator} {error.validator_value}"
        count = len(value) if isinstance(value, (list, tuple)) else 0
        count = (lengths or {}).get(id(value), count)
        reason = "empty array" if validator == "minItems" and not value else "wrong number of entries"
        return [problem(reason, path, expected, f"{count} entr{'y' if count == 1 else 'ies'}")]
    if validator in ("anyOf", "oneOf"):
        return [problem("invalid value", path, schema.get("description"), found(value))]
    if validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        return [problem("out of range", path, schema.get("description") or f"{validator} {error.validator_value}", found(value))]
    return [problem(error.message, path)]


def _parts_order(parts: Iterable[str | int]) -> list[tuple[int, int, str]]:
    # Array indices sort numerically (layers[2] before layers[10]).
    return [(0, part, "") if isinstance(part, int) else (1, 0, str(part)) for part in parts]


def _path_order(error: Any) -> list[tuple[int, int, str]]:
    return _parts_order(error.absolute_path)


_KEY_PART = re.compile(r"\[(\d+)\]|([^.\[\]]+)")


def _problem_order(problem: Problem) -> list[tuple[int, int, str]]:
    parts: list[str | int] = [int(index) if index else name for index, name in _KEY_PART.findall(problem.key or "")]
    return _parts_order(parts)


# --------------------------------------------------------------------------- checking


_NUMBER_TYPES = (int, float, np.integer, np.floating)


@functools.cache
def _is_number_type(kind: type) -> bool:
    """What the exact path accepts per leaf: a number, and not a boolean (True is an int to Python)."""
    return issubclass(kind, _NUMBER_TYPES) and not issubclass(kind, bool)


def _fast_numeric(value: list[Any] | tuple[Any, ...], depth: int) -> np.ndarray | None:
    """:func:`_numeric` in C loops, for the usual case; None means "undecided, ask the exact path".

    ``np.array`` infers the dtype in C: a string, None, an object or a row where
    a number belongs gives a non-numeric dtype or the wrong number of dimensions,
    an integer beyond 64 bits an object array. One case only hides: a boolean
    among numbers, which becomes 0.0 or 1.0 (True is an int to Python). So an
    array holding an exact 0.0 or 1.0 (rare in trained weights; pruned ones have
    many) has its leaves' types looked at too (``set(map(type, ...))`` over the
    flattened levels, ~10 ns per leaf); any other array cannot have held one.
    """
    try:
        array = np.array(value)
    except (ValueError, OverflowError):  # ragged rows
        return None
    if array.ndim != depth or array.size == 0 or array.dtype.kind not in "fi":
        return None
    array = array.astype(np.float64, copy=False)
    if ((array == 0.0) | (array == 1.0)).any() and not _leaves_are_numbers(value, depth):
        return None
    return array


def _leaves_are_numbers(value: list[Any] | tuple[Any, ...], depth: int) -> bool:
    """Whether every leaf ``depth`` levels down is a number and not a boolean."""
    leaves: Iterable[Any] = value
    try:
        for _ in range(depth - 1):
            leaves = itertools.chain.from_iterable(leaves)
        kinds = set(map(type, leaves))  # a number where a row belongs: TypeError
    except TypeError:
        return False
    return all(_is_number_type(kind) for kind in kinds)


def _numeric(value: Any, depth: int) -> np.ndarray | None:
    """``value`` as a float64 array if it is a non-empty rectangular array of numbers
    nested ``depth`` deep, else None (then the schema reports what is wrong)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fiu" and value.ndim == depth and value.size > 0:
            return value.astype(np.float64, copy=False)
        return None
    if not isinstance(value, (list, tuple)):
        return None
    fast = _fast_numeric(value, depth)
    return fast if fast is not None else _exact_numeric(value, depth)


def _exact_numeric(value: list[Any] | tuple[Any, ...], depth: int) -> np.ndarray | None:
    """:func:`_numeric` one leaf at a time: it decides every case the fast path left open."""
    try:
        # dtype=object keeps the leaves as they are, so their types can be checked
        # (np.asarray(..., float) would quietly turn True or "1.5" into numbers).
        grid = np.array(value, dtype=object)
    except ValueError:
        return None
    if grid.ndim != depth or grid.size == 0:
        return None
    leaves = grid.ravel().tolist()
    for leaf in leaves:
        if isinstance(leaf, bool) or not isinstance(leaf, (int, float, np.integer, np.floating)):
            return None
    try:
        return np.array(leaves, dtype=np.float64).reshape(grid.shape)
    except (OverflowError, ValueError):  # e.g. an integer literal with 400 digits
        return None


def _stub_rows() -> int:
    """One more row than the largest minItems/maxItems in the schema: enough for every verdict on a stub."""
    return _cached_stub_rows(generation())


@functools.cache
def _cached_stub_rows(generation: int) -> int:
    counts = [0]

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            for key, item in node.items():
                if key in ("minItems", "maxItems") and isinstance(item, int):
                    counts.append(item)
                else:
                    walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(_schema())
    return max(counts) + 1


def _stub(array: np.ndarray) -> list[Any]:
    """A tiny stand-in with the same nesting, for the schema.

    Validating every number with jsonschema costs ~5 us each (0.15 s for one
    64-unit LSTM); the numbers were already checked by :func:`_numeric`, and
    every size rule beyond "non-empty" is checked by :func:`_check_sizes`.
    Rows are kept up to one more than the largest count the schema states
    (GRU's two bias rows), so every minItems/maxItems verdict is the same as on
    the real entry, whose length the messages then quote (``lengths`` in :func:`_check`).
    """
    def nested(depth: int) -> Any:  # [0.0], [[0.0]], [[[0.0]]], ...
        return [0.0] if depth == 1 else [nested(depth - 1)]

    if array.ndim == 1:
        return [0.0]
    # Rows beyond the largest count the schema states (minItems/maxItems) change no verdict.
    return [nested(array.ndim - 1) for _ in range(min(array.shape[0], _stub_rows()))]


def _size(value: Any) -> int | None:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        try:
            whole = float(value).is_integer()
        except OverflowError:  # an integer too big for a float is no valid size either
            return None
        if whole and 1 <= value <= _MAX_UNITS:
            return int(value)
    return None


def _units(shape: Any) -> int | None:
    """The size a valid ``shape``/``in_shape`` declares, else None: its last entry (``[null, 100, 8]``,
    a Keras model built for 100 frames, declares 8), or, as the loader reads a 4-entry shape
    (RTNeural's Keras exporter writes them around conv2d layers: ``[null, null, features, filters]``),
    the product of entries 2 and 3."""
    if isinstance(shape, (list, tuple)) and len(shape) == 4 and shape[0] is None \
            and (shape[1] is None or _size(shape[1]) is not None):
        features, filters = _size(shape[2]), _size(shape[3])
        if features is not None and filters is not None and features * filters <= _MAX_UNITS:
            return features * filters
        return None
    if isinstance(shape, (list, tuple)) and shape:
        last = shape[-1]
        if isinstance(last, (int, float, np.integer, np.floating)) and not isinstance(last, bool):
            try:
                whole = float(last).is_integer()
            except OverflowError:  # an integer too big for a float is no valid size either
                return None
            # [null, 100, 8]: Keras writes the time length a model was built for in entry 1;
            # the loader reads only the last entry, so any size there is fine.
            fixed_time = len(shape) == 3 and shape[0] is None and _size(shape[1]) is not None
            if whole and 1 <= last <= _MAX_UNITS and len(shape) <= 3 and (
                    fixed_time or all(entry is None for entry in shape[:-1])):
                return int(last)
    return None


def _weight_shape(value: Any, array: np.ndarray | None, depth: int, key: str, file: str | None,
                  problems: list[Problem]) -> tuple[int, ...] | None:
    """Shape of a schema-valid weight entry; reports ragged matrices."""
    if array is not None:
        return tuple(int(n) for n in array.shape)
    if depth == 1:
        return (len(value),)
    if depth > 2:  # a tensor (conv kernels): every entry a block of the same shape
        shapes: list[tuple[int, ...]] = []
        for index, block in enumerate(value):
            shape = _weight_shape(block, None, depth - 1, f"{key}[{index}]", file, problems)
            if shape is None:
                return None
            if shapes and shape != shapes[0]:
                dims = "".join(f"[{n}]" for n in shapes[0])
                problems.append(Problem("entries have different shapes", file=file, key=f"{key}[{index}]",
                                        expected=f"{dims} (like entry 0)", found="".join(f"[{n}]" for n in shape)))
                return None
            shapes.append(shape)
        return (len(value), *shapes[0])
    lengths = [len(row) for row in value]
    for index, length in enumerate(lengths):
        if length != lengths[0]:
            problems.append(Problem("rows have different lengths", file=file, key=f"{key}[{index}]",
                                    expected=f"{lengths[0]} numbers (like row 0)", found=f"{length} numbers"))
            return None
    return (len(lengths), lengths[0])


def _check_sizes(data: Mapping[str, Any], arrays: dict[tuple[int, int], np.ndarray], bad_layers: set[int],
                 file: str | None) -> list[Problem]:
    """The rules the schema cannot express: sizes agree from layer to layer (each kind's rules)."""
    problems: list[Problem] = []
    layers = data.get("layers")
    if not isinstance(layers, list):
        return problems
    previous = _units(data.get("in_shape"))
    source = "the model input (in_shape)"
    for i, layer in enumerate(layers):
        if not isinstance(layer, Mapping):
            previous = None
            continue
        kind = layer.get("type")
        units = _units(layer.get("shape"))
        handler = rtneural_handler(kind) if isinstance(kind, str) else None
        if i in bad_layers or units is None or handler is None:
            # The schema already reported this layer; keep the chain going if we can.
            previous, source = units, f"layer {i}"
            continue
        weights = layer["weights"]
        depths = handler.weight_depths

        def dims(j: int, i: int = i, weights: Any = weights, depths: tuple[int, ...] = depths) -> tuple[int, ...] | None:
            if j >= len(weights) or j >= len(depths):
                return None
            return _weight_shape(weights[j], arrays.get((i, j)), depths[j], f"layers[{i}].weights[{j}]", file, problems)

        check = SizeCheck(index=i, previous=previous, units=units, source=source, file=file, dims=dims,
                          problems=problems, layer=layer)
        passed_on = handler.check_rtneural_sizes(check)
        if passed_on != units:
            previous = passed_on  # e.g. an activation layer cannot change the size: keep the real one
            continue
        previous, source = units, f"layer {i}"
    return problems


def _check_numbers(arrays: dict[tuple[int, int], np.ndarray], file: str | None) -> list[Problem]:
    """NaN/Infinity, and values that overflow float32 (RTNeural's default type)."""
    problems: list[Problem] = []
    for (i, j), array in sorted(arrays.items()):
        # The usual verdict in two passes: every value finite and within float32's range
        # (a NaN makes the maximum NaN, which fails the comparison).
        if array.size and np.max(np.abs(array)) <= _F32_MAX:
            continue
        bad = ~np.isfinite(array)
        reason = "not a finite number (NaN or Infinity; RTNeural's JSON parser rejects these literals)"
        if not bad.any():
            bad = np.abs(array) > _F32_MAX
            # Values a hair above the maximum still round to it; only flag real overflow.
            with np.errstate(over="ignore"):
                bad &= ~np.isfinite(array.astype(np.float32))
            reason = "too large for float32, the type RTNeural computes in"
        if bad.any():
            where = tuple(int(n) for n in np.argwhere(bad)[0])
            count = int(bad.sum())
            more = f"; {count} such values in this array" if count > 1 else ""
            key = f"layers[{i}].weights[{j}]" + "".join(f"[{n}]" for n in where)
            problems.append(Problem(reason + more, file=file, key=key, expected="a finite float32 number",
                                    found=found(float(array[where]))))
    return problems


# Tensor names of a PyTorch state dict (``dense1.weight``, ``lstm.bias_hh_l0``).
_STATE_DICT_KEY = re.compile(r".+\.(weight|bias)(_(ih|hh)_l\d+)?")


def _looks_like(data: Mapping[Any, Any]) -> str:
    """What a JSON object that is not an RTNeural model seems to be, for the message."""
    keys = {str(key) for key in data}
    if {"format", "environment", "models"} <= keys:
        return "modelreg's validation results (written by `modelreg validate`)"
    if any(_STATE_DICT_KEY.fullmatch(key) for key in keys):
        return ("a PyTorch state dict saved as JSON (tensors by name, such as 'dense.weight', as RTNeural's "
                "torch_helpers.h reads them layer by layer; json_parser::parseJson and `modelreg check` read "
                "whole models with in_shape and layers, as `modelreg export` writes them; one that the "
                "rtneural-torch exporter wrote is checked against its entry by `modelreg validate`)")
    return "another kind of JSON document" if keys else "an empty JSON object"


def _check(data: object, file: str | None) -> tuple[list[Problem], dict[tuple[int, int], np.ndarray]]:
    """Problems of ``data`` plus the weight arrays already converted on the way."""
    if not isinstance(data, Mapping):
        return [Problem("an RTNeural model must be a JSON object", file=file, expected="an object with in_shape and layers",
                        found=_kind(data))], {}
    if "in_shape" not in data and "layers" not in data:
        # Nothing of a model at all: say what the file is instead of listing the missing keys.
        shown = ", ".join(repr(str(key)) for key in list(data)[:6]) + (", ..." if len(data) > 6 else "")
        return [Problem(f"not an RTNeural model file: it looks like {_looks_like(data)}", file=file,
                        expected="an object with in_shape and layers",
                        found=f"keys {shown}" if data else "an empty object")], {}
    arrays: dict[tuple[int, int], np.ndarray] = {}
    lengths: dict[int, int] = {}  # id(stub) -> the real entry's length, for messages
    skeleton: dict[str, Any] = dict(data)
    layers = data.get("layers")
    if isinstance(layers, list):
        skeleton_layers: list[Any] = []
        for i, layer in enumerate(layers):
            if isinstance(layer, Mapping) and isinstance(layer.get("weights"), (list, tuple)):
                kind = layer.get("type")
                depths = (_weight_depths(kind) or ()) if isinstance(kind, str) else ()
                weights: list[Any] = []
                for j, entry in enumerate(layer["weights"]):
                    array = _numeric(entry, depths[j]) if j < len(depths) else None
                    if array is not None:
                        arrays[(i, j)] = array
                        stub = _stub(array)
                        lengths[id(stub)] = int(array.shape[0])
                        weights.append(stub)
                    else:
                        weights.append(entry)
                layer = {**layer, "weights": weights}
            skeleton_layers.append(layer)
        skeleton["layers"] = skeleton_layers

    problems: list[Problem] = []
    seen: set[tuple[str | None, str]] = set()
    bad_layers: set[int] = set()
    for error in sorted(_validator().iter_errors(skeleton), key=_path_order):
        path = list(error.absolute_path)
        # A layer whose structure is broken cannot be size-checked; one with
        # only a bad activation name still can.
        if len(path) >= 2 and path[0] == "layers" and isinstance(path[1], int) and path[2:3] != ["activation"]:
            bad_layers.add(path[1])
        for item in _schema_problem(error, file, lengths):
            marker = (item.key, item.reason)
            if marker not in seen:  # if/then branches can report one fault twice
                seen.add(marker)
                problems.append(item)
    # Numbers in layers the schema rejected are still worth reporting.
    problems += _check_sizes(data, arrays, bad_layers, file)
    problems += _check_numbers(arrays, file)
    problems.sort(key=_problem_order)  # document order, whichever check found it
    if len(problems) > _MAX_PROBLEMS:
        extra = len(problems) - _MAX_PROBLEMS
        problems = problems[:_MAX_PROBLEMS] + [Problem(f"... and {extra} more problems", file=file)]
    return problems, arrays


def check_rtneural(data: object, *, file: str | None = None) -> list[Problem]:
    """Every problem of an RTNeural model (parsed JSON), as :class:`Problem` records.

    Runs the JSON Schema (``schemas/rtneural.schema.json``) and then the rules
    it cannot express: each kernel's rows match the previous layer's outputs,
    its columns (and bias lengths) match the layer's units (x4 for LSTM, x3
    for GRU), activation layers keep the size, and every weight is a finite
    float32 number. All problems are collected (up to 100), each with the
    ``file``, a key path such as ``layers[2].weights[0]``, and what was
    expected and found. An empty list means the model loads and runs.

    numpy arrays may stand in for nested lists (as :func:`to_rtneural` makes them).
    """
    return _check(data, file)[0]


# --------------------------------------------------------------------------- reading


def _position(raw: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column of byte/char ``offset``."""
    line = raw.count(b"\n", 0, offset) + 1
    column = offset - (raw.rfind(b"\n", 0, offset) + 1) + 1
    return line, column


_STRUCTURE = re.compile(r"[\s,:\[\]{}]")


def _read_json(path: Path, name: str) -> object:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError.at("RTNeural model file not found", file=name) from None
    except IsADirectoryError:
        raise ArtifactError.at("expected an RTNeural model file, found a directory", file=name) from None
    except OSError as exc:
        raise ArtifactError.at(f"cannot read the RTNeural model file: {exc.strerror or exc}", file=name) from None
    import orjson

    # nlohmann::json skips a UTF-8 byte order mark, so accept one too.
    body = raw[len(codecs.BOM_UTF8):] if raw.startswith(codecs.BOM_UTF8) else raw
    try:
        # Fast path (models are megabytes of numbers), straight from the bytes: orjson
        # checks the UTF-8 itself. It refuses some things Python's json accepts (NaN
        # literals, huge integers): those, invalid UTF-8 and every real syntax error
        # go through the decoding and json below, which say where.
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, column = _position(raw, exc.start)
        raise ArtifactError.at("not valid UTF-8", file=name, line=line, column=column,
                               found=raw[exc.start:exc.start + 4]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        rest = text[exc.pos:].strip()
        if not text.strip():
            reason = "empty file (expected a JSON object)"
        elif not rest or exc.msg.startswith("Unterminated string") or not _STRUCTURE.search(rest):
            # The parser stopped in the last token (or ran out of text): the file was cut short.
            reason = f"truncated JSON: the file ends inside a value ({exc.msg})"
        else:
            reason = f"invalid JSON: {exc.msg}"
        raise ArtifactError.at(reason, file=name, line=exc.lineno, column=exc.colno) from None
    except RecursionError:
        raise ArtifactError.at("invalid JSON: nested too deeply", file=name) from None


def load_rtneural(source: str | os.PathLike[str] | Mapping[str, Any] | object, *, file: str | None = None) -> RTNeuralModel:
    """Read, check and build an RTNeural model.

    ``source`` is a path to a JSON file or an already parsed model (a mapping,
    possibly holding numpy arrays). ``file`` names the source in error
    messages (default: the path). Raises :class:`ArtifactError` holding every
    problem found (missing file, invalid UTF-8, invalid or truncated JSON with
    line and column, and all of :func:`check_rtneural`'s findings).
    """
    name: str | None
    if isinstance(source, (str, os.PathLike)):
        path = Path(os.fspath(source))
        name = file if file is not None else str(path)
        data: object = _read_json(path, name)
    else:  # already parsed: any JSON value; a list or a number is refused as the file would be
        data = source
        name = file
    problems, arrays = _check(data, name)
    if problems:
        raise ArtifactError(*problems)
    assert isinstance(data, Mapping)
    return RTNeuralModel._build(data, arrays)


# --------------------------------------------------------------------------- runtime

# The numpy layers live with their kinds (modelreg.layers.*); imported above so
# that ``modelreg.rtneural.runtime.DenseLayer`` etc. keep working.
Layer = RuntimeLayer  # DenseLayer, ActivationLayer, LSTMLayer, GRULayer, ... (one per kind)


class RTNeuralModel:
    """An RTNeural model run in numpy float32, frame by frame, with RTNeural's semantics.

    Recurrent state starts at zero and is carried across :meth:`step` and
    :meth:`run` calls, one state per batch row, until :meth:`reset`. The batch
    size of a stateful model is fixed by the first step after a reset.
    """

    def __init__(self, in_size: int, layers: list[Layer]) -> None:
        self.in_size = int(in_size)
        self.layers: list[Layer] = list(layers)
        self.out_size = self.layers[-1].out_size if self.layers else self.in_size
        self.is_stateful = any(layer.is_recurrent for layer in self.layers)
        #: How many layers the file lists. ``layers`` holds the runtime's layers, where a
        #: dense layer with an activation runs as two (as in RTNeural's loader).
        self.file_layers = len(self.layers)
        #: What RTNeural's dynamic loader builds from the file: ``(Layer::getName(), in, out)``
        #: per layer it adds (see ``RTNeuralLayerType.loader_layers``).
        self.loader_layers: list[tuple[str, int, int]] = []
        self._batch: int | None = None

    @classmethod
    def _build(cls, data: Mapping[str, Any], arrays: dict[tuple[int, int], np.ndarray]) -> RTNeuralModel:
        """Build from checked data (see :func:`load_rtneural`)."""
        in_size = _units(data["in_shape"])
        assert in_size is not None
        layers: list[Layer] = []
        loader_layers: list[tuple[str, int, int]] = []
        size = in_size
        for i, spec in enumerate(data["layers"]):
            kind = spec["type"]
            units = _units(spec["shape"])
            assert units is not None

            def weight(j: int) -> np.ndarray:
                array = arrays.get((i, j))
                return array if array is not None else np.asarray(spec["weights"][j], dtype=np.float64)

            handler = rtneural_handler(kind)
            assert handler is not None
            # Each kind adds its layers, including an activation where the loader adds one.
            layers.extend(handler.runtime_layers(spec, weight, units))
            loader_layers.extend(handler.loader_layers(spec, size, units))
            size = units
        model = cls(in_size, layers)
        model.loader_layers = loader_layers
        model.out_size = size
        model.file_layers = len(data["layers"])
        model.reset()
        return model

    def reset(self) -> None:
        """Set all recurrent state to zeros and free the batch size."""
        self._batch = None
        for layer in self.layers:
            layer.reset(1)

    def _frames(self, x: Any, ndim: tuple[int, ...], what: str) -> np.ndarray:
        array = np.asarray(x, dtype=np.float32)
        if array.ndim not in ndim or array.shape[-1] != self.in_size:
            shapes = " or ".join({1: "[in]", 2: "[batch, in]" if what == "step" else "[T, in]",
                                  3: "[batch, T, in]"}[n] for n in ndim).replace("in", str(self.in_size))
            raise UsageError.at(f"{what}() got an input of the wrong shape", key="x" if what == "step" else "frames",
                                expected=shapes, found=tuple(array.shape))
        return array

    def _forward(self, x: np.ndarray) -> np.ndarray:
        batch = x.shape[0]
        if self.is_stateful:
            if self._batch is None:
                for layer in self.layers:
                    layer.reset(batch)
                self._batch = batch
            elif batch != self._batch:
                raise UsageError.at("the batch size changed while recurrent state is carried", key="x",
                                    expected=f"{self._batch} rows (call reset() to change it)", found=batch)
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def step(self, x: Any) -> np.ndarray:
        """Process one frame: ``[in_size]`` -> ``[out_size]``, or ``[batch, in_size]`` -> ``[batch, out_size]``."""
        frame = self._frames(x, (1, 2), "step")
        if frame.ndim == 1:
            return self._forward(frame[None, :])[0].copy()
        return self._forward(frame).copy()

    def run(self, frames: Any) -> np.ndarray:
        """Step through time: ``[T, in]`` -> ``[T, out]``, ``[batch, T, in]`` -> ``[batch, T, out]``.

        Continues from the current state; call :meth:`reset` first for a fresh start.
        """
        array = self._frames(frames, (2, 3), "run")
        batched = array if array.ndim == 3 else array[None]
        outputs = np.empty((batched.shape[0], batched.shape[1], self.out_size), np.float32)
        for t in range(batched.shape[1]):
            outputs[:, t] = self._forward(batched[:, t])
        return outputs if array.ndim == 3 else outputs[0]

    def __repr__(self) -> str:
        return f"RTNeuralModel(in_size={self.in_size}, out_size={self.out_size}, layers={self.layers!r})"

