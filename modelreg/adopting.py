"""Adopting a model file as a registry entry: what every ``modelreg import`` shares, whatever the file's runtime.

An import (RTNeural JSON: :mod:`modelreg.rtneural.importing`; ``.nam``:
:mod:`modelreg.nam.importing`) reads its file and proves it; what it writes is
done here, the same way for every target:

- :func:`prepare_target` checks, before the file is read, that the registry can be
  read and extended, that the name is valid and free and where the checkpoint goes;
- :func:`entry_text` writes the entry as TOML text (each layer table checked by
  reading it back through its kind) and :func:`appended` appends it after the
  registry's bytes, so comments and layout are kept;
- :func:`install_entry` checks the new registry in a temporary file, writes the
  checkpoint (keeping a replaced one as a backup) and installs the registry
  atomically, undoing the checkpoint when that fails.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .atomic import fsync_file, install, temp_prefix
from .errors import RegistryError, UsageError
from .paths import display_path, outside_note
from .registry import REGISTRY_FILENAME, Registry, find_registry, load_registry
from .spec import LayerSpec, ModelSpec, count_params

if TYPE_CHECKING:
    from .plugins import Parity

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["Adopted", "Target", "appended", "check_new_registry", "entry_text", "install_entry", "layer_table",
           "prepare_target", "toml_value"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")  # as schemas/registry.schema.json

# ---------------------------------------------------------------- the registry entry


def _default_name(source: Path, shown: str) -> str:
    name = re.sub(r"[^a-z0-9_-]+", "_", source.stem.lower()).strip("_-")
    if not name or not _NAME.match(name):
        raise UsageError.at("cannot make a model name from the file name; give one with --name (name=...)",
                            file=shown, expected="lowercase letters, digits, _ and -, starting with a letter or digit",
                            found=source.stem)
    return name


def toml_value(value: Any) -> str:
    """A TOML value for a layer key (the kinds' keys hold numbers, strings, booleans and lists of them)."""
    import json

    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UsageError.at("a layer key holds a value TOML cannot write", found=value)
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are valid in a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if hasattr(value, "table"):  # a kind's nested table, resolved (a wavenet layer array)
        value = value.table()
    if isinstance(value, Mapping):  # an inline table
        return "{ " + ", ".join(f"{key} = {toml_value(v)}" for key, v in value.items()) + " }"
    raise UsageError.at("a layer key holds a value TOML cannot write", found=value)


def layer_table(layer: LayerSpec, in_features: int) -> dict[str, Any]:
    """The registry table of ``layer`` (the inverse of its kind's ``spec()``), checked by reading it back."""
    kind = layer.kind
    options = dict(layer.options)
    table: dict[str, Any] = {"type": layer.type}
    paths = dict(kind.children(layer))
    for key in kind.registry_keys:
        if key in paths:  # a block's path: its layers' tables, each path fed the block's input
            table[key] = _path_tables(paths[key], in_features)
        elif key == "units":
            table[key] = layer.units
        elif key == "activation":
            table[key] = layer.activation
        elif key in options:
            table[key] = options[key]
    if kind.spec(table, in_features) != layer:
        raise UsageError.at(f"the {layer.type} layer read from the file cannot be written as a registry table "
                            "(its kind's spec() does not give it back)", expected=repr(layer),
                            found=repr(kind.spec(table, in_features)))
    return table


def _path_tables(layers: Sequence[LayerSpec], in_features: int) -> list[dict[str, Any]]:
    tables = []
    for layer in layers:
        tables.append(layer_table(layer, in_features))
        in_features = layer.units
    return tables


def entry_text(name: str, description: str, in_features: int, layers: Sequence[LayerSpec], *,
                latency_ms: float | None,
                exports: Sequence[str], checkpoint: str, sha256: str,
                input_range: tuple[float, float] | None = None, extra: Sequence[tuple[str, Any]] = (),
                version: str | None = None) -> str:
    """The entry's TOML text. ``latency_ms`` None leaves the key out (an audio-rate entry's target
    is then its block's duration); ``extra`` are further ``key = value`` lines (before ``layers``)."""
    lines = [
        f"[models.{name}]",
        f"description = {toml_value(description)}",
        *([f"version = {toml_value(version)}"] if version is not None else []),
        f"input_shape = [1, {in_features}]",
        f"output_shape = [1, {layers[-1].units}]",
        'dtype = "float32"',
        f"params = {count_params(list(layers), in_features)}",
        *([f"latency_ms = {toml_value(float(latency_ms))}"] if latency_ms is not None else []),
        f"exports = {toml_value(list(exports))}",
        f"checkpoint = {toml_value(checkpoint)}",
        f"sha256 = {toml_value(sha256)}",
    ]
    if input_range is not None:
        lines.append(f"input_range = {toml_value([float(input_range[0]), float(input_range[1])])}")
    lines += [f"{key} = {toml_value(value)}" for key, value in extra]
    lines += [
        "layers = [",
    ]
    size = in_features
    for layer in layers:
        table = layer_table(layer, size)
        lines.append("    { " + ", ".join(f"{key} = {toml_value(value)}" for key, value in table.items()) + " },")
        size = layer.units
    lines.append("]")
    return "\n".join(lines) + "\n"


def appended(old: bytes, entry: str) -> bytes:
    """The registry's bytes with ``entry`` appended after a blank line (the old bytes untouched)."""
    if not old:
        return entry.encode("utf-8")
    glue = b"" if old.endswith(b"\n\n") else b"\n" if old.endswith(b"\n") else b"\n\n"
    if old.endswith(b"\r\n"):
        glue = b"" if old.endswith(b"\r\n\r\n") else b"\r\n"
        entry = entry.replace("\n", "\r\n")
    return old + glue + entry.encode("utf-8")


def _registry_path(registry: Registry | str | os.PathLike[str] | None) -> Path:
    if isinstance(registry, Registry):
        return registry.path
    if registry is None:
        return find_registry(None)
    path = Path(registry)
    return path / REGISTRY_FILENAME if path.is_dir() else path


def _parsed(registry_file: Path) -> dict[str, Any]:
    """The registry's TOML, or the loader's own message when it cannot be read."""
    try:
        return tomllib.loads(registry_file.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        load_registry(registry_file, strict=False)  # raises the registry loader's message
        raise


@attrs.frozen(kw_only=True)
class Adopted:
    """What an import wrote (a registry entry and its checkpoint) and the proof it ran first; each
    import's result adds what its runtime proves besides."""

    name: str
    #: The file that was imported.
    source: Path
    registry: Path
    checkpoint: Path
    #: The checkpoint's sha256, as the entry records it.
    sha256: str
    spec: ModelSpec
    #: The text appended to the registry.
    entry_text: str
    #: The torch module against the imported file, run in that file's own runtime (cases by name).
    parity: Parity
    #: What was adapted on the way, one sentence each.
    notes: tuple[str, ...] = ()
    #: Where ``force`` kept the checkpoint file it replaced (None: none was replaced).
    backup: Path | None = None


@attrs.frozen
class Target:
    """Where an import writes, checked before any file is read: the registry (its bytes, to
    append to), the model name, the checkpoint path."""

    registry_file: Path
    registry_shown: str
    old_bytes: bytes
    settings: Mapping[str, Any]
    name: str
    input_range: tuple[float, float] | None
    checkpoint_rel: str
    checkpoint: Path
    existed: bool


def prepare_target(source: Path, registry: Registry | str | os.PathLike[str] | None, *, name: str | None,
                   force: bool, latency_ms: float | None, input_range: tuple[float, float] | None = None) -> Target:
    """The checks every import makes before it reads its file: the registry can be read and
    extended, the name is valid and free, ``latency_ms`` and ``input_range`` are valid, the
    checkpoint ``models/NAME.pt`` stays inside the registry's folder and does not exist (unless
    ``force``). Raises the import's errors (the importers say which)."""
    shown = display_path(source)
    registry_file = _registry_path(registry)
    registry_shown = display_path(registry_file)
    root = registry_file.parent

    # The registry first: a name conflict should not wait for a conversion.
    old_bytes = b""
    settings: Mapping[str, Any] = {}
    taken: tuple[str, ...] = ()
    if registry_file.exists():
        try:
            taken = load_registry(registry_file, strict=False).names  # file-level problems raise
        except RegistryError:
            # A registry without models yet (empty, or [settings] only) takes its first entry; the
            # appended file is checked as a whole before it is installed. Anything else is refused.
            if _parsed(registry_file).get("models", None) is not None:
                raise
        old_bytes = registry_file.read_bytes()
        settings = _parsed(registry_file).get("settings", {})
    elif not root.is_dir():
        raise RegistryError.at("the registry's folder does not exist", file=registry_shown,
                               expected="an existing folder (the registry file itself is created if missing)")

    if name is None:
        name = _default_name(source, shown)
    elif not _NAME.match(name):
        raise UsageError.at("invalid model name", key="name",
                            expected="lowercase letters, digits, _ and -, starting with a letter or digit", found=name)
    if name in taken:
        raise UsageError.at("a model of this name is in the registry already; remove its entry or choose another "
                            "name (--name)", file=registry_shown, key=f"models.{name}",
                            expected="a new model name", found=name)
    if latency_ms is not None and not (isinstance(latency_ms, (int, float)) and math.isfinite(latency_ms)
                                       and latency_ms > 0):
        raise UsageError.at("latency target must be a finite number > 0", key="latency_ms", found=latency_ms)
    if input_range is not None:
        bounds = tuple(input_range)
        if not (len(bounds) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bounds)
                and bounds[0] < bounds[1]):
            raise UsageError.at("invalid input range", key="input_range",
                                expected="(min, max): two finite numbers, min < max", found=list(bounds))
        input_range = (float(bounds[0]), float(bounds[1]))
    checkpoint_rel = f"models/{name}.pt"
    checkpoint = (root / checkpoint_rel).absolute()
    outside = outside_note(root, checkpoint)
    if outside is not None:
        raise UsageError.at("the checkpoint path leaves the registry's folder", file=registry_shown,
                            key=f"models.{name}.checkpoint", expected="a path inside the registry's folder",
                            found=outside)
    existed = checkpoint.exists()
    if existed and not force:
        raise UsageError.at("the checkpoint file exists already; pass --force (force=True) to overwrite it, "
                            "or choose another name", file=display_path(checkpoint),
                            expected="no file", found="an existing file")
    return Target(registry_file, registry_shown, old_bytes, settings, name, input_range, checkpoint_rel, checkpoint,
                  existed)


def install_entry(registry_file: Path, registry_shown: str, old_bytes: bytes, new_bytes: bytes, name: str,
             spec: ModelSpec, checkpoint: Path, checkpoint_bytes: bytes, existed: bool) -> Path | None:
    """Check the new registry in a temporary file beside the old one, write the checkpoint, install the registry.

    A checkpoint replaced with other bytes (``--force``) is kept beside it first, as
    ``init --force`` keeps one; returns where (None: nothing was replaced)."""
    from .atomic import atomic_write_bytes
    from .checkpoint import write_backup
    from .exporting import write_error

    folder = registry_file.parent
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(registry_file.name), suffix=".tmp", dir=folder)
    except OSError as exc:
        raise write_error(exc, registry_file, "the registry") from None
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(new_bytes)
            fsync_file(tmp)
        except OSError as exc:
            raise write_error(exc, registry_file, "the registry") from None
        check_new_registry(tmp, registry_shown, old_bytes, new_bytes, name, spec)
        # Another writer (a second import, an editor) changed the registry since it was read:
        # installing now would drop its change.
        current = registry_file.read_bytes() if registry_file.exists() else b""
        if current != old_bytes:
            raise RegistryError.at("the registry changed while the model was being imported; nothing was written, "
                                   "run the import again", file=registry_shown)
        previous = checkpoint.read_bytes() if existed else None
        backup = None
        try:
            if previous is not None and previous != checkpoint_bytes:
                backup = write_backup(checkpoint, previous)  # someone's trained weights, maybe
            atomic_write_bytes(checkpoint, checkpoint_bytes)
        except OSError as exc:
            raise write_error(exc, checkpoint, "the checkpoint", model=name) from None
        try:
            install(tmp, registry_file)
        except OSError as exc:
            # The registry stays as it was: so does the checkpoint folder.
            with contextlib.suppress(OSError):
                if previous is None:
                    checkpoint.unlink()
                else:
                    atomic_write_bytes(checkpoint, previous)
            raise write_error(exc, registry_file, "the registry") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return backup


def check_new_registry(tmp: Path, shown: str, old_bytes: bytes, new_bytes: bytes, name: str, spec: ModelSpec) -> None:
    """The appended registry parses, keeps everything it had, and holds a valid entry equal to ``spec``."""
    assert new_bytes.startswith(old_bytes)  # every byte kept, by construction
    try:
        new = tomllib.loads(new_bytes.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        # e.g. a registry that declares `models` as an inline table, which cannot be extended
        raise RegistryError.at(f"the entry cannot be appended to this registry as a [models.{name}] table ({exc})",
                               file=shown, key=f"models.{name}",
                               expected="a registry whose models are [models.NAME] tables") from None
    old = tomllib.loads(old_bytes.decode("utf-8")) if old_bytes else {}
    new_models = dict(new.get("models", {}))
    new_models.pop(name, None)
    if {**new, "models": new_models} != {**old, "models": dict(old.get("models", {}))}:
        raise RegistryError.at(f"appending [models.{name}] would change what the registry already holds",
                               file=shown, key=f"models.{name}")
    loaded = load_registry(tmp, strict=False)
    if name in loaded.invalid:  # named after the registry, not the temporary file it was checked in
        raise UsageError(*(attrs.evolve(p, file=shown) for p in loaded.invalid[name]))
    written = loaded[name]
    if (written.layers, written.params, written.input_shape, written.output_shape) != (
            spec.layers, spec.params, spec.input_shape, spec.output_shape):
        raise UsageError.at("the appended entry does not read back as the imported model", file=shown,
                            key=f"models.{name}", expected=repr(spec.layers), found=repr(written.layers))
