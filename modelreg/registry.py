"""Finding, parsing and checking ``registry.toml``.

Loading works in two passes. The JSON Schema (``schemas/registry.schema.json``)
checks structure and types; then the semantic checks that a schema cannot
express run on every entry that passed it. Every problem of every entry is
collected before anything is reported.
"""

from __future__ import annotations

import ast
import errno
import math
import os
import re
import sys
import types
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from .errors import Problem, RegistryError, UnknownModelError, did_you_mean, found
from .paths import display_path, inside as _inside, outside_note, symlink_exit as _symlink_exit
from .layers import get_kind
from .plugins import BUILTIN_EXPORTERS
from .schemas import format_key_path, schema_problems
from .spec import LayerSpec, ModelSpec, block_duration_ms, count_params, sample_rate_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DEFAULT_PARAM_BUDGET",
    "REGISTRY_ENV",
    "REGISTRY_FILENAME",
    "Registry",
    "display_path",
    "find_registry",
    "load_registry",
]

REGISTRY_FILENAME = "registry.toml"
REGISTRY_ENV = "MODELREG_REGISTRY"
# Refuse absurd architectures before anything is allocated (a 10^9-unit layer
# would try to allocate terabytes). Override per registry with
# [settings] param_budget, or per call.
DEFAULT_PARAM_BUDGET = 50_000_000


def find_registry(path: str | os.PathLike[str] | None = None) -> Path:
    """The registry file to use: ``path``, else ``$MODELREG_REGISTRY``, else the nearest
    ``registry.toml`` from the current folder upward."""
    if path is not None:
        return Path(path)
    from_env = os.environ.get(REGISTRY_ENV)
    if from_env:
        return Path(from_env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / REGISTRY_FILENAME
        if candidate.is_file():
            return candidate
    raise RegistryError.at(
        f"no {REGISTRY_FILENAME} found in {here} or any parent folder; pass a path "
        f"(--registry PATH) or set {REGISTRY_ENV}"
    )


class Registry(Mapping[str, ModelSpec]):
    """A read-only mapping of model name to :class:`ModelSpec`.

    Loaded leniently (``strict=False``), entries that failed their checks are
    left out of the mapping and listed in :attr:`invalid` with their problems,
    so that the valid models can still be used.
    """

    def __init__(
        self,
        path: Path,
        specs: Mapping[str, ModelSpec],
        invalid: Mapping[str, tuple[Problem, ...]] | None = None,
        param_budget: int = DEFAULT_PARAM_BUDGET,
        order: Sequence[str] | None = None,
    ) -> None:
        self.path = path
        self._specs = dict(specs)
        self._order = list(order) if order is not None else None
        # Read-only, like the mapping itself.
        self.invalid: Mapping[str, tuple[Problem, ...]] = types.MappingProxyType(dict(invalid or {}))
        self.param_budget = param_budget

    @property
    def root(self) -> Path:
        """The folder every path in the registry is relative to."""
        return self.path.parent

    @property
    def problems(self) -> tuple[Problem, ...]:
        return tuple(p for problems in self.invalid.values() for p in problems)

    @property
    def names(self) -> tuple[str, ...]:
        """Every model name in the file, valid or not, in file order."""
        return tuple(self._all_names)

    @property
    def _all_names(self) -> list[str]:
        known = list(self._specs) + [n for n in self.invalid if n not in self._specs]
        if self._order is None:
            return known
        return [n for n in self._order if n in self._specs or n in self.invalid] + [n for n in known if n not in self._order]

    def __getitem__(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            pass
        if name in self.invalid:
            raise RegistryError(*self.invalid[name])
        raise UnknownModelError.at(
            f"no model named {name!r}{did_you_mean(name, self._all_names)}",
            file=display_path(self.path),
            expected="one of " + (", ".join(self._all_names) or "(the registry is empty)"),
        ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def get(self, name: str, default: ModelSpec | None = None) -> ModelSpec | None:  # type: ignore[override]
        return self._specs.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"Registry({str(self.path)!r}, models={list(self._specs)!r}, invalid={list(self.invalid)!r})"


def load_registry(
    path: str | os.PathLike[str] | None = None,
    *,
    strict: bool = True,
    param_budget: int | None = None,
    known_exporters: Callable[[], Collection[str]] | None = None,
) -> Registry:
    """Read and check a registry.

    ``path`` defaults to ``$MODELREG_REGISTRY``, then the nearest
    ``registry.toml`` upward from the current folder. Paths inside the
    registry resolve relative to the registry file.

    With ``strict=True`` (the default) any problem raises one
    :class:`RegistryError` listing every problem found. With ``strict=False``
    only file-level problems raise; broken entries go to ``Registry.invalid``.
    """
    registry_file = find_registry(path)
    shown = display_path(registry_file)
    data = _read_toml(registry_file, shown)
    if not data:
        raise RegistryError.at("the registry file is empty", file=shown,
                               expected="one [models.NAME] table per model")

    if known_exporters is None:
        from .plugins import exporter_names

        known_exporters = exporter_names

    def model_of(parts: list[Any]) -> str | None:
        return str(parts[1]) if len(parts) >= 2 and parts[0] == "models" else None

    problems = schema_problems(data, "registry", file=shown, model_of=model_of)
    file_level = [p for p in problems if p.model is None]
    if file_level:
        raise RegistryError(*problems)

    settings = data.get("settings", {})
    budget = param_budget if param_budget is not None else settings.get("param_budget", DEFAULT_PARAM_BUDGET)

    by_model: dict[str, list[Problem]] = {}
    for problem in problems:
        by_model.setdefault(problem.model or "", []).append(problem)

    exporters: Collection[str] | None = None
    specs: dict[str, ModelSpec] = {}
    invalid: dict[str, tuple[Problem, ...]] = {}
    for name, entry in data.get("models", {}).items():
        if name in by_model:  # schema problems: semantic checks would only add noise
            invalid[name] = tuple(by_model[name])
            continue
        # Built-in exporter names always exist: scanning entry points (importlib.metadata
        # reads every installed distribution, ~30 ms) is only needed for other names.
        if exporters is None and any(e not in BUILTIN_EXPORTERS for e in entry.get("exports", [])):
            exporters = known_exporters()
        entry_problems = _semantic_problems(name, entry, registry_file, shown, budget,
                                            BUILTIN_EXPORTERS if exporters is None else exporters)
        if entry_problems:
            invalid[name] = tuple(entry_problems)
        else:
            specs[name] = _to_spec(name, entry, registry_file, settings)

    if strict and invalid:
        raise RegistryError(*(p for ps in invalid.values() for p in ps))
    return Registry(registry_file, specs, invalid, param_budget=budget, order=list(data.get("models", {})))


def _read_toml(registry_file: Path, shown: str) -> dict[str, Any]:
    if registry_file.is_dir():
        inside = registry_file / REGISTRY_FILENAME
        hint = f"; did you mean {display_path(inside)}?" if inside.is_file() else ""
        raise RegistryError.at(f"is a folder, not a registry file{hint}", file=shown, expected="a TOML file")
    try:
        raw = registry_file.read_bytes()
    except FileNotFoundError:
        raise RegistryError.at("registry file not found", file=shown) from None
    except OSError as exc:
        raise RegistryError.at(f"cannot read the registry: {exc.strerror}", file=shown) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw.count(b"\n", 0, exc.start) + 1
        bad_column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise RegistryError(Problem(
            "not valid UTF-8 text", file=shown, line=bad_line, column=bad_column,
            expected="a UTF-8 encoded TOML file", found=f"byte 0x{raw[exc.start]:02x}",
        )) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts "(at line L, column C)" in the message; newer versions also
        # expose lineno/colno. Report them as structured fields either way.
        message = str(exc)
        line: int | None = getattr(exc, "lineno", None)
        column: int | None = getattr(exc, "colno", None)
        match = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if match:
            line, column = int(match[1]), int(match[2])
            message = message[: match.start()]
        elif "(at end of document)" in message:
            # The position is the end of the file: say where that is.
            line = text.count("\n") + 1
            column = len(text) - (text.rfind("\n") + 1) + 1
            message = message.replace(" (at end of document)", "")
            if message.startswith(("Invalid value", "Unclosed", "Unterminated")):
                message += " at end of document (a bracket, brace or quote left open?)"
        raise RegistryError(_toml_problem(message, text, shown, line, column)) from None


def _toml_problem(message: str, text: str, shown: str, line: int | None, column: int | None) -> Problem:
    """A TOML syntax error as a Problem; tomllib's wording for redefinitions is made plain."""
    declared = re.fullmatch(r"Cannot declare (\(.*\)) twice", message)
    if declared:
        # "Cannot declare ('models', 'x') twice": the same [table] header appears twice.
        try:
            parts = [str(part) for part in ast.literal_eval(declared[1])]
        except (ValueError, SyntaxError, TypeError):
            parts = []
        if parts:
            key = format_key_path(parts)
            is_model = len(parts) == 2 and parts[0] == "models"
            return Problem(
                "invalid TOML: table declared twice", file=shown, model=parts[1] if is_model else None,
                key=key, expected="a unique model name" if is_model else "each table declared once",
                found=f"a second [{key}]", line=line, column=column,
            )
    if message.startswith("Cannot overwrite a value"):
        # tomllib does not say which key; a one-line `key = value` at the reported line does.
        lines = text.splitlines()
        statement = None
        if line is not None and 0 < line <= len(lines):
            statement = re.match(r"\s*([A-Za-z0-9_-]+(?:\s*\.\s*[A-Za-z0-9_-]+)*)\s*=", lines[line - 1])
        what = "a key"
        if statement:
            what = "key " + repr(re.sub(r"\s+", "", statement[1]))
        message = message.replace("Cannot overwrite a value", f"{what} is set twice in the same table", 1)
    elif message.startswith("Illegal character '\\n'"):  # only raised inside a string
        message = message.replace("Illegal character '\\n'", "unterminated string (a line ends inside quotes)", 1)
    return Problem(f"invalid TOML: {message}", file=shown, line=line, column=column)


def _semantic_problems(
    name: str,
    entry: Mapping[str, Any],
    registry_file: Path,
    shown: str,
    budget: int,
    exporters: Collection[str],
) -> list[Problem]:
    """What the schema cannot say about one (schema-valid) entry."""
    key = f"models.{name}"
    problems: list[Problem] = []

    def add(reason: str, field: str, expected: str | None = None, found_: Any = None, *,
            text: str | None = None) -> None:
        # ``found_`` is a value from the file (shown as repr); ``text`` is already worded.
        problems.append(
            Problem(reason, file=shown, model=name, key=f"{key}.{field}", expected=expected,
                    found=text if text is not None else None if found_ is None else found(found_))
        )

    in_features = entry["input_shape"][-1]
    out_features = entry["output_shape"][-1]
    layers = _layer_specs(entry)
    size = in_features
    for index, layer in enumerate(layers):
        # What the schema cannot say about one layer of its kind (e.g. sizes that must divide).
        for field, reason, expected, text in layer.kind.problems(layer, size):
            add(reason, f"layers[{index}].{field}", expected, text=text)
        size = layer.units
    # A layer with such a problem has no PyTorch parameter count to compare `params` with.
    layers_ok = not problems

    if layers[-1].units != out_features:
        add("output shape contradicts the last layer", "output_shape",
            f"[{entry['output_shape'][0]}, {layers[-1].units}], "
            f"since layers[{len(layers) - 1}] has {layers[-1].units} units",
            entry["output_shape"])
    if entry["input_shape"][0] != entry["output_shape"][0]:
        add("input and output batch sizes differ", "output_shape",
            f"batch size {entry['input_shape'][0]}, as in input_shape", entry["output_shape"])

    from .spec import count_params, layer_params

    # Pure arithmetic on the declared sizes: nothing is allocated, whatever the sizes.
    computed = count_params(layers, in_features)
    if computed > budget:
        # Checked before anything is built: a 10^9-unit layer must never be allocated.
        sizes = [in_features] + [layer.units for layer in layers]
        per_layer = [layer_params(layer, size) for layer, size in zip(layers, sizes)]
        biggest = per_layer.index(max(per_layer))
        add("architecture exceeds the parameter budget; raise [settings] param_budget if this is intended",
            "layers", f"at most {budget:,} parameters",
            text=f"{computed:,} parameters, {per_layer[biggest]:,} of them in layers[{biggest}]")
    elif entry["params"] != computed and layers_ok:
        declared = entry["params"]
        pytorch_count = f"{computed:,}, PyTorch's count for these layers on {in_features} input features"
        # A bias-free layer counted with its bias (the usual slip after adding bias = false) first:
        # a first dense layer's bias also fits one more input feature, which would mislead.
        flipped = _bias_flip_with_params(layers, in_features, declared, to_bias=True)
        # A torch model's num_layers forgotten (or a stack's count wrong): the count of another depth.
        # Before the input sizes: a stack's extra layers always fit some larger input of a first
        # recurrent layer (they add 2 (units + 1) times its count per input feature).
        stack = _stack_with_params(layers, in_features, declared) if flipped is None else None
        sizes_fitting = ([] if flipped is not None or stack is not None
                         else _input_sizes_with_params(entry, declared, in_features))
        # A forgotten bias = false after that: a first dense layer without its bias also fits one
        # input feature more, and an input_shape slip is the more common one (its message stays).
        missing_bias_free = (_bias_flip_with_params(layers, in_features, declared, to_bias=False)
                             if flipped is None and stack is None and not sizes_fitting else None)
        if flipped is not None:
            add(f"params {declared:,} counts the bias of layers[{flipped}], which declares bias = false "
                "(no bias, so no bias parameters)", "params",
                f"{pytorch_count}; or no bias = false on layers[{flipped}], if it has a bias", text=f"{declared:,}")
        elif stack is not None:
            index, depth = stack
            now = int(layers[index].option("num_layers", 1))
            add(f"params {declared:,} is what these layers have when layers[{index}] stacks {depth} layers "
                f"(it declares {now}): is num_layers = {depth} meant there?", "params",
                f"{pytorch_count}; or num_layers = {depth} on layers[{index}]", text=f"{declared:,}")
        elif sizes_fitting:
            # The count fits the layers fed another input size: the usual slip is input_shape
            # (a first layer trained on 16 features declared as [1, 12]), not params.
            shape = list(entry["input_shape"])
            likely = shape[:-1] + [sizes_fitting[0]]
            features = " or ".join(str(size) for size in sizes_fitting)
            add(f"params {declared:,} is what these layers have with {features} input features: "
                f"is input_shape {likely}?", "input_shape",
                f"{likely}, or params = {computed:,} for {shape}", text=str(shape))
        elif missing_bias_free is not None:
            add(f"params {declared:,} is what these layers have when layers[{missing_bias_free}] has no bias: "
                "is bias = false missing there?", "params",
                f"{pytorch_count}; or bias = false on layers[{missing_bias_free}]", text=f"{declared:,}")
        else:
            add("declared parameter count does not match the layers", "params", pytorch_count,
                text=f"{declared:,}")

    for field in ("latency_ms", "tolerance", "sample_rate"):
        value = entry.get(field)
        if value is not None and not math.isfinite(value):
            add("must be a finite number", field, "a finite number > 0", value)
    _audio_rate_problems(entry, add)
    bounds = entry.get("input_range")
    if bounds is not None:
        expected = "[min, max]: two finite numbers, min < max"
        if not all(math.isfinite(v) for v in bounds):
            add("input range must be finite", "input_range", expected, bounds)
        elif not bounds[0] < bounds[1]:
            add("input range is empty or reversed", "input_range", expected, bounds)

    # Nothing is asked of layers beyond the budget (a stack's state lists each of its layers).
    _rest_problems(entry, layers, layers_ok and computed <= budget, add)
    _checkpoint_names_problems(entry, len(layers), add)

    root = registry_file.parent
    checkpoint = entry["checkpoint"]
    inside = "a relative path inside the registry's folder"
    target = root / checkpoint
    if Path(checkpoint).is_absolute():
        add("checkpoint path is absolute", "checkpoint", inside, checkpoint)
    else:
        try:
            resolved = target.resolve()
        except (OSError, RuntimeError, ValueError) as exc:
            # RuntimeError: a symlink loop before Python 3.13 (OSError ELOOP after);
            # ValueError: a NUL character in the path.
            if isinstance(exc, ValueError):
                why = "an embedded NUL character"
            elif isinstance(exc, RuntimeError) or exc.errno == errno.ELOOP:
                why = "a symlink loop"
            else:
                why = exc.strerror or str(exc)
            add(f"checkpoint path cannot be resolved: {why}", "checkpoint", inside, checkpoint)
        else:
            if not _inside(root, resolved):
                add("checkpoint path leaves the registry's folder", "checkpoint", inside,
                    text=found(checkpoint) + _symlink_exit(root, target))

    for index, exporter in enumerate(entry.get("exports", [])):
        if exporter in exporters:
            continue
        hint = did_you_mean(exporter, sorted(exporters))
        if exporters:
            expected = "one of " + ", ".join(sorted(exporters))
        else:
            expected = "an installed exporter, but none are installed"
        add(f"unknown exporter{hint}", f"exports[{index}]", expected, exporter)
    return problems


def _audio_rate_problems(entry: Mapping[str, Any], add: Callable[..., None]) -> None:
    """An audio-rate entry's latency_ms is a budget per block: it may be stricter than the block's
    duration, never looser (a block computed slower than it lasts is not real time). The schema
    already said when one of sample_rate and block_size is missing."""
    rate, block, target = entry.get("sample_rate"), entry.get("block_size"), entry.get("latency_ms")
    if rate is None or block is None or target is None or not math.isfinite(rate) or not math.isfinite(target):
        return
    duration = block_duration_ms(block, rate)
    if target > duration:
        add("latency target longer than one audio block: a block computed slower than it lasts is not real time",
            "latency_ms", f"at most {duration:.4g} ms, one {block}-sample block at {sample_rate_text(rate)}; "
            "or no latency_ms, which makes the block's duration the target", target)


def _rest_problems(entry: Mapping[str, Any], layers: list[LayerSpec], layers_ok: bool,
                   add: Callable[..., None]) -> None:
    """``reset`` and ``rest_input``: what the schema cannot say (sizes, finiteness, the declared range),
    each problem passed to ``add`` (see :func:`_semantic_problems`)."""
    in_features = entry["input_shape"][-1]
    if entry.get("reset") == "rest" and layers_ok and not any(layer.kind.state(layer) for layer in layers):
        add('reset = "rest" restores a resting state, but this model keeps no state between frames '
            "(no recurrent layer, no causal conv1d/conv2d with history)", "reset",
            'no reset key (or reset = "zeros") for a stateless model', "rest")
    rest = entry.get("rest_input")
    if rest is None:
        return
    values = list(rest) if isinstance(rest, list) else [rest]
    one_each = f"one number for all features, or {in_features} numbers: one per input feature (input_shape {list(entry['input_shape'])})"
    if isinstance(rest, list) and len(values) != in_features:
        add(f"rest_input has {len(values)} values, the model takes {in_features} input features", "rest_input",
            one_each, text=f"{len(values)} values")
        return
    where = (lambda i: f"rest_input[{i}]") if isinstance(rest, list) else (lambda i: "rest_input")
    bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
    if bad:
        add("rest input must be finite", where(bad[0]), "a finite number", values[bad[0]])
        return
    bounds = entry.get("input_range")
    if bounds is not None and all(math.isfinite(v) for v in bounds) and bounds[0] < bounds[1]:
        outside = [i for i, v in enumerate(values) if not bounds[0] <= v <= bounds[1]]
        if outside:
            also = ", ".join(where(i) for i in outside[1:4]) + (", ..." if len(outside) > 4 else "")
            add("rest input lies outside input_range: the host never feeds it" + (f" (nor {also})" if also else ""),
                where(outside[0]), f"a value within input_range [{bounds[0]:g}, {bounds[1]:g}]", values[outside[0]])


#: Input sizes tried when the declared params do not fit the declared input size.
_INPUT_SIZES_TRIED = range(1, 4097)


def _input_sizes_with_params(entry: Mapping[str, Any], params: int, in_features: int) -> list[int]:
    """Input sizes other than ``in_features`` (at most three) on which the entry's layers have ``params``.

    Arithmetic only (each kind's ``params()``), as the budget check: nothing is built.
    A size on which a layer has a problem (a group that does not divide) does not count.
    """
    fitting: list[int] = []
    for size in _INPUT_SIZES_TRIED:
        if size == in_features:
            continue
        layers = _layer_specs(entry, size)
        if count_params(layers, size) != params:
            continue
        width = size
        valid = True
        for layer in layers:
            if layer.kind.problems(layer, width):
                valid = False
                break
            width = layer.units
        if valid:
            fitting.append(size)
            if len(fitting) == 3:
                break
    return fitting


def _bias_flip_with_params(layers: list[LayerSpec], in_features: int, params: int, *, to_bias: bool) -> int | None:
    """The first layer whose ``bias`` key, set the other way, makes the layers count ``params``:
    with ``to_bias``, a ``bias = false`` layer given its bias back (params counted the bias);
    else a layer with a bias made bias-free (``bias = false`` forgotten). None when no single
    flip does. Arithmetic only, one count per layer that takes ``bias``."""
    from .layers.base import with_bias

    for index, layer in enumerate(layers):
        if "bias" not in layer.kind.registry_keys or layer.has_bias == to_bias:
            continue
        trial = list(layers)
        trial[index] = with_bias(layer, not layer.has_bias)
        if count_params(trial, in_features) == params:
            return index
    return None


#: The stack depths tried when a params count might be another num_layers (torch models rarely stack more).
_STACK_DEPTHS = range(1, 9)


def _stack_with_params(layers: list[LayerSpec], in_features: int, params: int) -> tuple[int, int] | None:
    """The first layer taking ``num_layers`` and a depth (1 to 8) that, set there, make the layers
    count ``params``: ``(index, depth)``; None when no single change does. Arithmetic only."""
    for index, layer in enumerate(layers):
        if "num_layers" not in layer.kind.registry_keys:
            continue
        others = tuple(item for item in layer.options if item[0] != "num_layers")
        for depth in _STACK_DEPTHS:
            if depth == int(layer.option("num_layers", 1)):
                continue
            options = tuple(sorted((*others, *((("num_layers", depth),) if depth > 1 else ()))))
            trial = list(layers)
            trial[index] = attrs.evolve(layer, options=options)
            if count_params(trial, in_features) == params:
                return index, depth
    return None


def _layer_specs(entry: Mapping[str, Any], in_features: int | None = None) -> list[LayerSpec]:
    """The entry's (schema-valid) layer tables as LayerSpecs, each kind reading its own keys.

    ``in_features``: the input size they are fed (default: ``input_shape[-1]``).
    """
    specs: list[LayerSpec] = []
    size = entry["input_shape"][-1] if in_features is None else in_features
    for table in entry["layers"]:
        layer = get_kind(table["type"]).spec(table, size)
        specs.append(layer)
        size = layer.units
    return specs


def _layer_paths(tables: Any, prefix: str = "layers") -> list[str]:
    """Every layer's path as the entry's tensors name it (``layers.0``, ``layers.1.layers.0``,
    ``layers.1.skip.0``), depth first; blocks' inner layers after the block."""
    paths: list[str] = []
    for index, table in enumerate(tables if isinstance(tables, list) else []):
        path = f"{prefix}.{index}"
        paths.append(path)
        if isinstance(table, Mapping):
            for part in ("layers", "skip"):  # a residual block's paths (absent skip: the identity)
                if isinstance(table.get(part), list):
                    paths += _layer_paths(table[part], f"{path}.{part}")
    return paths


def _checkpoint_names_problems(entry: Mapping[str, Any], layer_count: int, add: Callable[..., None]) -> None:
    """A ``checkpoint_names`` table must pair each name with its own, existing layer (an index, or a
    layer's path inside a block), no layer may lie inside another one named (``layers.0`` and
    ``layers.0.skip.0``), and no name may hold another (``net`` and ``net.0``: which one renames
    ``net.0.weight`` would be a guess)."""
    names = entry.get("checkpoint_names")
    if not isinstance(names, Mapping):
        return
    paths = _layer_paths(entry.get("layers"))
    owner: dict[str, str] = {}
    for name, target in names.items():
        where = format_key_path(["checkpoint_names", name])  # "net.0" is quoted, as TOML needs it
        if isinstance(target, str):
            path = target
            if path not in paths:
                shown = ", ".join(f'"{p}"' for p in paths[:12]) + (", ..." if len(paths) > 12 else "")
                add("no such layer", where, f"a layer index, or the path of one of the entry's layers ({shown})",
                    text=f'"{target}"')
                continue
        elif isinstance(target, int) and not isinstance(target, bool):
            path = f"layers.{target}"
            if target >= layer_count:
                add("no such layer", where, f"a layer index from 0 to {layer_count - 1} (the entry has "
                    f"{layer_count} layer{'s' if layer_count != 1 else ''})", target)
                continue
        else:
            continue  # the schema reports it
        shown_target = target if isinstance(target, int) else f'"{target}"'
        if path in owner:
            add(f"two module names for one layer: {owner[path]!r} already reads as {_layer_label(path)}", where,
                "one module name per layer", shown_target)
        else:
            outer = [(other, by) for other, by in owner.items()
                     if path.startswith(other + ".") or other.startswith(path + ".")]
            if outer:
                other, by = outer[0]
                add(f"{_layer_label(path)} and {_layer_label(other)} ({by!r}) lie one inside the other: which "
                    "name reads their tensors would be a guess", where,
                    "layers of which none lies inside another one named", shown_target)
            owner[path] = name
        inner = [other for other in names if other.startswith(name + ".")]
        if inner:
            add(f"this module name holds another one ({inner[0]!r}): which of them renames its tensors would be "
                "a guess", where, "module names of which none starts another one", text=repr(name))


def _layer_label(path: str) -> str:
    """``layers.1.skip.0`` as the registry's messages name that layer: ``layers[1].skip[0]``."""
    parts = path.split(".")
    return ".".join(f"{parts[i]}[{parts[i + 1]}]" for i in range(0, len(parts), 2))


def _latency_target(entry: Mapping[str, Any]) -> float:
    """The entry's latency_ms; for an audio-rate entry without one, the duration of its block."""
    if "latency_ms" in entry:
        return float(entry["latency_ms"])
    return block_duration_ms(entry["block_size"], float(entry["sample_rate"]))


def _to_spec(name: str, entry: Mapping[str, Any], registry_file: Path,
             settings: Mapping[str, Any] | None = None) -> ModelSpec:
    layers = tuple(_layer_specs(entry))
    return ModelSpec(
        name=name,
        description=entry["description"],
        input_shape=tuple(entry["input_shape"]),
        output_shape=tuple(entry["output_shape"]),
        dtype=entry["dtype"],
        params=entry["params"],
        latency_ms=_latency_target(entry),
        latency_stat=entry.get("latency_stat", "p99"),
        sample_rate=float(entry["sample_rate"]) if "sample_rate" in entry else None,
        block_size=entry.get("block_size"),
        layers=layers,
        checkpoint=(registry_file.parent / entry["checkpoint"]).absolute(),
        registry_file=registry_file.absolute(),
        exports=tuple(entry.get("exports", ())),
        sha256=entry.get("sha256"),
        tolerance=entry.get("tolerance"),
        input_range=(float(entry["input_range"][0]), float(entry["input_range"][1])) if "input_range" in entry else None,
        tags=tuple(entry.get("tags", ())),
        cpp_weights=entry.get("cpp_weights", "json"),
        reset=entry.get("reset", "zeros"),
        rest_input=_rest_values(entry),
        checkpoint_names=_checkpoint_names(entry),
        entry=dict(entry),
        settings=dict(settings or {}),
    )


def _rest_values(entry: Mapping[str, Any]) -> tuple[float, ...] | None:
    """The (valid) entry's rest_input as one float per input feature; None when not given."""
    rest = entry.get("rest_input")
    if rest is None:
        return None
    if isinstance(rest, list):
        return tuple(float(v) for v in rest)
    return (float(rest),) * entry["input_shape"][-1]


def _checkpoint_names(entry: Mapping[str, Any]) -> tuple[tuple[str, int | str], ...] | Literal["match"] | None:
    """The (valid) entry's checkpoint_names: (module name, layer index or layer path) pairs as written,
    "match", or None."""
    names = entry.get("checkpoint_names")
    if names is None or names == "match":
        return names
    return tuple((str(name), target if isinstance(target, str) else int(target)) for name, target in names.items())
