"""The layer parts of ``schemas/registry.schema.json`` and ``schemas/rtneural.schema.json``, from the kinds.

The schema files are for non-Python consumers too, so they are committed in
full; their ``$defs.layer`` is generated from the kinds and everything else is
written by hand. ``make schemas`` (``python -m modelreg.layers.compose``)
rewrites the layer parts; ``--check`` exits 1 when a committed file is out of
date (a test runs the same check). At run time modelreg composes the same
layer parts from the kinds in memory (cheap: a few dicts), so a kind added
with :func:`modelreg.layers.register_kind` is known to the checks too.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

from . import kinds, rtneural_handlers
from .base import LayerKind

__all__ = ["COMPOSED", "compose", "main", "registry_layer_schema", "render", "rtneural_layer_schema", "stale"]

#: The schemas whose ``$defs.layer`` comes from the kinds.
COMPOSED = ("registry", "rtneural")

# Every layer type RTNeural's json_parser::parseJson reads (RTNeural/model_loader.h).
_LOADER_TYPES = ("dense", "time-distributed-dense", "activation", "lstm", "gru",
                 "conv1d", "conv2d", "prelu", "batchnorm", "batchnorm2d")


def _when(types: list[str]) -> dict[str, Any]:
    match = {"const": types[0]} if len(types) == 1 else {"enum": types}
    return {"required": ["type"], "properties": {"type": match}}


def _grouped(rules: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One if/then per distinct ``then``; types sharing a ``then`` share one ``if`` (in first-seen order)."""
    groups: list[tuple[list[str], dict[str, Any]]] = []
    for type_name, then in rules:
        for types, existing in groups:
            if existing == then:
                types.append(type_name)
                break
        else:
            groups.append(([type_name], then))
    return [{"if": _when(types), "then": then} for types, then in groups]


def registry_layer_schema() -> dict[str, Any]:
    """``$defs.layer`` of the registry schema: a layer table of any kind.

    Keys every kind requires are required outright; a key only some kinds
    require, or only some kinds take, gets an if/then per kind (the kind's
    ``missing_key_hints`` / ``refused_keys`` word the messages).
    """
    all_kinds = kinds()
    properties: dict[str, Any] = {"type": {"enum": [kind.name for kind in all_kinds]}}
    for kind in all_kinds:
        for key, schema in kind.registry_keys.items():
            if key in properties and properties[key] != schema:
                raise ValueError(f"layer key {key!r} of kind {kind.name!r} contradicts another kind's schema for it")
            properties.setdefault(key, schema)
    everywhere = [key for key in all_kinds[0].required_keys if all(key in k.required_keys for k in all_kinds)]
    rules: list[tuple[str, dict[str, Any]]] = []
    for kind in all_kinds:
        then: dict[str, Any] = {}
        own = [key for key in kind.required_keys if key not in everywhere]
        hints = kind.missing_key_hints
        if own:
            then["required"] = own
            if len(own) == 1 and own[0] in hints:
                then["description"] = hints[own[0]]
            else:  # messages take a missing key's description from here, key by key
                then["properties"] = {key: {"description": hints[key]} if key in hints else properties[key]
                                      for key in own}
        refused = {key: {"not": {}, "description": _refusal(kind, key)}
                   for key in properties if key != "type" and key not in kind.registry_keys}
        if refused:
            then.setdefault("properties", {}).update(refused)
        if then:
            rules.append((kind.name, then))
    layer: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "required": ["type", *everywhere],
        "properties": properties,
    }
    if rules:
        layer["allOf"] = _grouped(rules)
    return layer


def _refusal(kind: LayerKind, key: str) -> str:
    return kind.refused_keys.get(key, f"{kind.name} layers take no {key}")


def rtneural_layer_schema() -> dict[str, Any]:
    """``$defs.layer`` of the RTNeural schema: a layer of any type the runtime reads."""
    handlers = rtneural_handlers()
    types = [t for handler in handlers for t in handler.rtneural_types]
    unknown = [t for t in _LOADER_TYPES if t not in types]
    type_comment = "The loader silently skips unknown types, which would run a different model."
    if unknown:
        listed = ", ".join(unknown[:-1]) + " and " + unknown[-1] if len(unknown) > 1 else unknown[0]
        type_comment = (f"The loader also knows {listed}; modelreg's runtime does not implement "
                        f"{'them' if len(unknown) > 1 else 'it'}, so they are rejected rather than silently mis-run. "
                        + type_comment)
    return {
        "type": "object",
        "required": ["type", "shape", "weights"],
        "$comment": "The loader reads type, shape and weights of every layer with .at(), which throws when the key "
                    "is missing, so all three are required even for activation layers (whose weights are []). "
                    "activation is optional: the loader checks contains(\"activation\"). For lstm and gru layers the "
                    "loader never reads activation (RTNeural's LSTM and GRU always use tanh/sigmoid); the Keras "
                    "exporter writes \"tanh\" there.",
        "properties": {
            "type": {"enum": types, "$comment": type_comment},
            "activation": {"$ref": "#/$defs/activation"},
            "shape": {"$ref": "#/$defs/shape"},
            "weights": {"type": "array"},
        },
        # A kind RTNeural's JSON cannot express (a residual block) names no type: no rule.
        "allOf": [{"if": _when(list(handler.rtneural_types)), "then": handler.rtneural_schema()}
                  for handler in handlers if handler.rtneural_types],
    }


def compose(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` (as read from ``schemas/<name>.schema.json``) with its layer part from the kinds."""
    if name not in COMPOSED:
        return schema
    layer = registry_layer_schema() if name == "registry" else rtneural_layer_schema()
    composed = copy.copy(schema)
    composed["$defs"] = {**schema.get("$defs", {}), "layer": layer}
    return composed


def render(schema: dict[str, Any]) -> str:
    """The text a schema file holds: 2-space indented JSON and a final newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def _source_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "schemas"


def stale(folder: Path | None = None) -> list[Path]:
    """The composed schema files in ``folder`` (default: the checkout's schemas/) that differ from the kinds."""
    folder = folder or _source_dir()
    out = []
    for name in COMPOSED:
        path = folder / f"{name}.schema.json"
        text = path.read_text(encoding="utf-8")
        if text != render(compose(name, json.loads(text))):
            out.append(path)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m modelreg.layers.compose [--check] [FOLDER]``: rewrite (or check) the layer parts."""
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    rest = [a for a in args if a != "--check"]
    folder = Path(rest[0]) if rest else _source_dir()
    outdated = stale(folder)
    if check:
        for path in outdated:
            print(f"{path}: out of date with modelreg/layers; run `make schemas`", file=sys.stderr)
        return 1 if outdated else 0
    from ..atomic import atomic_write_text

    for path in outdated:
        atomic_write_text(path, render(compose(path.name.split(".")[0], json.loads(path.read_text(encoding="utf-8")))))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
