"""Model versions: what a change between two registry entries means for a host, and the bump it needs.

An entry may declare ``version = "MAJOR.MINOR.PATCH"`` (optional). Comparing an
entry with its older self (:func:`entry_changes`) names every change with the
bump it needs:

- **major**: the host interface changed: input or output size, dtype, stateful or
  not, the state layout ONNX and streaming hosts carry, the generated C++ model
  type (``rtneural-cpp``), how that header loads its weights, a removed export
  format, the sample rate of an audio-rate model, a rename (artifacts are named
  after the model);
- **minor**: what the model computes changed behind the same interface: weights,
  architecture, an added export, ``reset``, ``rest_input``, ``input_range``, and
  any key this module does not know (the safe side);
- **patch**: metadata only: description, tags, latency target and statistic,
  tolerance, block size, the checkpoint's path or pin when the weights are the same.

Nothing here imports torch or numpy: whether the weights changed is decided by the
caller (:mod:`modelreg.diff`) and passed in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .layers.base import state_name

if TYPE_CHECKING:
    from .spec import ModelSpec

__all__ = [
    "LEVELS",
    "Change",
    "VersionVerdict",
    "check_version",
    "cpp_layer_types",
    "declared_bump",
    "entry_changes",
    "parse_version",
    "required_bump",
    "state_layout",
]

Level = Literal["major", "minor", "patch"]
#: Bump levels from the smallest to the largest.
LEVELS: tuple[Level, ...] = ("patch", "minor", "major")
_VERSION = re.compile(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)")
#: Entry keys whose change is metadata only (a patch). Keys not listed here nor handled
#: below count as minor: an unknown key may change what the model computes.
_PATCH_KEYS = frozenset({"description", "tags", "latency_ms", "latency_stat", "tolerance", "block_size",
                         "checkpoint", "sha256"})
#: Keys judged elsewhere in entry_changes (or not a change at all: the version itself; params, which
#: the registry holds equal to the layers' count, so that it changes with the layers only).
_HANDLED = frozenset({"input_shape", "output_shape", "dtype", "layers", "params", "exports", "cpp_weights",
                      "sample_rate", "version"})
_MINOR_KEYS = {"reset": "what reset() restores changed", "rest_input": "the rest input changed",
               "input_range": "the declared input range changed (the values the model is proven on)"}


def parse_version(text: str) -> tuple[int, int, int]:
    """``"1.4.0"`` -> ``(1, 4, 0)``; ValueError for anything else (the registry schema refuses it first)."""
    match = _VERSION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a MAJOR.MINOR.PATCH version: {text!r}")
    return int(match[1]), int(match[2]), int(match[3])


@attrs.frozen
class Change:
    """One change of an entry: the bump it needs, the key it concerns and what changed, in words."""

    level: Level
    key: str
    what: str

    def to_json(self) -> dict[str, str]:
        return {"level": self.level, "key": self.key, "what": self.what}


def state_layout(spec: ModelSpec) -> list[tuple[str, int]]:
    """(name, size) of every state tensor, as ``RealtimeModel.state_layout()`` gives it (``h1``, ``c1``...),
    from the layer kinds alone: nothing is built."""
    return [(state_name(name, index), size) for index, layer in enumerate(spec.layers)
            for name, size in layer.kind.state(layer)]


def cpp_layer_types(spec: ModelSpec) -> list[str]:
    """The type list of the ``rtneural-cpp`` header's ``RTNeural::ModelT`` (each kind's ``cpp_types``),
    without importing the target."""
    types: list[str] = []
    size = spec.in_features
    for layer in spec.layers:
        types += layer.kind.cpp_types(layer, size)
        size = layer.units
    return types


def _layout_text(layout: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{name}[{size}]" for name, size in layout) or "none"


def _value(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def entry_changes(old: ModelSpec, new: ModelSpec, *, weights_changed: bool | None,
                  renamed_from: str | None = None) -> list[Change]:
    """Every change from ``old`` to ``new`` with the bump it needs, the largest first.

    ``weights_changed``: whether the checkpoint's tensors differ (None: unknown, not judged).
    """
    changes: list[Change] = []

    def add(level: Level, key: str, what: str) -> None:
        changes.append(Change(level, key, what))

    if renamed_from is not None:
        add("major", "name", f"renamed from {renamed_from!r}: the exported files and the C++ namespace are named "
                             "after the model")
    if old.in_features != new.in_features:
        add("major", "input_shape", f"input size {old.in_features} -> {new.in_features}")
    elif old.input_shape != new.input_shape:
        add("major", "input_shape", f"input_shape {list(old.input_shape)} -> {list(new.input_shape)}")
    if old.out_features != new.out_features:
        add("major", "output_shape", f"output size {old.out_features} -> {new.out_features}")
    elif old.output_shape != new.output_shape:
        add("major", "output_shape", f"output_shape {list(old.output_shape)} -> {list(new.output_shape)}")
    if old.dtype != new.dtype:
        add("major", "dtype", f"dtype {old.dtype} -> {new.dtype}")
    if old.is_stateful != new.is_stateful:
        add("major", "layers", "stateful -> stateless (no state between calls)" if old.is_stateful
            else "stateless -> stateful (the host must keep state and reset it)")
    elif old.is_stateful and state_layout(old) != state_layout(new):
        add("major", "layers", f"state layout {_layout_text(state_layout(old))} -> {_layout_text(state_layout(new))} "
                               "(the state tensors ONNX and streaming hosts carry)")
    both_cpp = "rtneural-cpp" in old.exports and "rtneural-cpp" in new.exports
    if both_cpp:
        before, after = cpp_layer_types(old), cpp_layer_types(new)
        if before != after:
            add("major", "layers", f"the rtneural-cpp header's RTNeural::ModelT type changes ({_first_difference(before, after)})")
        if old.cpp_weights != new.cpp_weights:
            add("major", "cpp_weights", f"the rtneural-cpp header's load() changes: cpp_weights {old.cpp_weights!r} -> "
                                        f"{new.cpp_weights!r}")
    removed = [e for e in old.exports if e not in new.exports]
    if removed:
        add("major", "exports", f"export format{'s' if len(removed) > 1 else ''} removed: {', '.join(removed)}")
    if old.sample_rate != new.sample_rate:
        add("major", "sample_rate", f"sample rate {old.sample_rate} -> {new.sample_rate} (the host must run it at "
                                    "another rate)")

    if weights_changed:
        add("minor", "checkpoint", "weights changed")
    if old.layers != new.layers or old.in_features != new.in_features:
        add("minor", "layers", f"architecture changed ({len(old.layers)} -> {len(new.layers)} layers, "
                               f"params {old.computed_params:,} -> {new.computed_params:,})")
    added = [e for e in new.exports if e not in old.exports]
    if added:
        add("minor", "exports", f"export format{'s' if len(added) > 1 else ''} added: {', '.join(added)}")

    old_entry, new_entry = dict(old.entry), dict(new.entry)
    for key in sorted((set(old_entry) | set(new_entry)) - _HANDLED):
        if old_entry.get(key) == new_entry.get(key):
            continue
        what = (f"{key} {_value(old_entry[key]) if key in old_entry else '(none)'} -> "
                f"{_value(new_entry[key]) if key in new_entry else '(none)'}")
        if key in _PATCH_KEYS:
            add("patch", key, what)
        else:
            add("minor", key, _MINOR_KEYS.get(key, f"{key} changed") + f": {what}")
    changes.sort(key=lambda c: -LEVELS.index(c.level))
    return changes


def _first_difference(before: Sequence[str], after: Sequence[str]) -> str:
    for index, (a, b) in enumerate(zip(before, after)):
        if a != b:
            return f"type {index}: {a} -> {b}"
    if len(before) != len(after):
        return f"{len(before)} -> {len(after)} types"
    return "same types"


def required_bump(changes: Iterable[Change]) -> Level | None:
    """The largest bump the changes need; None when nothing changed."""
    levels = [LEVELS.index(c.level) for c in changes]
    return LEVELS[max(levels)] if levels else None


def declared_bump(old: str, new: str) -> Level | Literal["none", "backwards"]:
    """The bump from version ``old`` to ``new``: ``major``, ``minor``, ``patch``, ``none`` (equal) or
    ``backwards`` (lower)."""
    a, b = parse_version(old), parse_version(new)
    if b == a:
        return "none"
    if b < a:
        return "backwards"
    if b[0] != a[0]:
        return "major"
    return "minor" if b[1] != a[1] else "patch"


def _next(version: str, level: Level) -> str:
    major, minor, patch = parse_version(version)
    if level == "major":
        return f"{major + 1}.0.0"
    if level == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


@attrs.frozen
class VersionVerdict:
    """Whether an entry's declared version bump covers its changes.

    ``status``: ``ok``, ``too_small`` (the bump is smaller than a change needs),
    ``backwards``, ``removed`` (the older entry declared a version, this one does
    not), ``undeclared`` (neither side declares one: not checked) or ``new``
    (no older entry, or no older version: nothing to compare with).
    """

    status: Literal["ok", "too_small", "backwards", "removed", "undeclared", "new"]
    old: str | None
    new: str | None
    declared: str | None
    required: Level | None
    message: str

    @property
    def ok(self) -> bool:
        return self.status not in ("too_small", "backwards", "removed")

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "ok": self.ok, "old": self.old, "new": self.new, "declared": self.declared,
                "required": self.required, "message": self.message}


def check_version(old: Mapping[str, Any] | None, new: Mapping[str, Any], changes: Sequence[Change]) -> VersionVerdict:
    """Judge the declared bump between two entries (``old``: the older entry's table, None when it is new)."""
    required = required_bump(changes)
    old_version = old.get("version") if old is not None else None
    new_version = new.get("version")
    if new_version is None:
        if old_version is not None:
            return VersionVerdict("removed", old_version, None, None, required,
                                  f"the version was removed (it was {old_version}); keep declaring it")
        return VersionVerdict("undeclared", None, None, None, required, "no version declared: not checked")
    if old_version is None:
        return VersionVerdict("new", None, new_version, None, required,
                              f"{new_version}: first version declared, nothing to compare with")
    bump = declared_bump(old_version, new_version)
    if bump == "backwards":
        return VersionVerdict("backwards", old_version, new_version, bump, required,
                              f"{old_version} -> {new_version}: the version went backwards")
    if required is None:
        said = "unchanged" if bump == "none" else f"a {bump} bump"
        return VersionVerdict("ok", old_version, new_version, bump, None, f"{old_version} -> {new_version} ({said}); "
                                                                          "nothing changed that needs one")
    if bump != "none" and LEVELS.index(bump) >= LEVELS.index(required):
        return VersionVerdict("ok", old_version, new_version, bump, required,
                              f"{old_version} -> {new_version}: a {bump} bump, {required} needed")
    said = "unchanged" if bump == "none" else f"a {bump} bump"
    needs = "; ".join(f"{c.level}: {c.what}" for c in changes
                      if bump == "none" or LEVELS.index(c.level) > LEVELS.index(bump))
    return VersionVerdict("too_small", old_version, new_version, bump, required,
                          f"declared bump too small: {old_version} -> {new_version} is {said}, the changes need a "
                          f"{required} bump (expected at least {_next(old_version, required)}, found {new_version}); "
                          f"{needs}")
