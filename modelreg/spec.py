"""Frozen descriptions of models, as read from a registry entry.

Nothing here imports torch: a spec can be read, listed and checked for
consistency in milliseconds. ``ModelSpec.build()`` and ``.load()`` import the
torch-backed builder lazily.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import attrs

from .layers import names
from .layers import activations as _activations
from .layers.base import LayerSpec
from .rest import RESET_MODES, ResetMode

if TYPE_CHECKING:
    from .builder import RealtimeModel

__all__ = [
    "ACTIVATIONS",
    "LATENCY_STATS",
    "LAYER_TYPES",
    "LayerSpec",
    "ModelSpec",
    "RESET_MODES",
    "audio_rate_text",
    "block_duration_ms",
    "count_params",
    "layer_keys",
    "layer_label",
    "layer_params",
    "layer_rows",
    "sample_rate_text",
]

LatencyStat = Literal["mean", "p50", "p95", "p99"]

#: Registry layer types (the kinds in modelreg.layers.KINDS) and dense activations.
LAYER_TYPES: tuple[str, ...] = names()
ACTIVATIONS: tuple[str, ...] = _activations.NAMES
LATENCY_STATS: tuple[str, ...] = ("mean", "p50", "p95", "p99")


def block_duration_ms(block_size: int, sample_rate: float) -> float:
    """How long one audio block lasts, in milliseconds: ``block_size / sample_rate`` (64 at 48 kHz: 1.333 ms).

    One function, so that a target derived from it and the figures measured against it agree exactly."""
    return block_size * 1000.0 / sample_rate


def sample_rate_text(sample_rate: float) -> str:
    """A sample rate for people: ``48 kHz``, ``44.1 kHz``, ``500 Hz``."""
    return f"{sample_rate / 1000:g} kHz" if sample_rate >= 1000 else f"{sample_rate:g} Hz"


def audio_rate_text(sample_rate: float, block_size: int) -> str:
    """An audio-rate setting for people: ``48 kHz, 64-sample blocks``."""
    return f"{sample_rate_text(sample_rate)}, {block_size}-sample blocks"


def layer_keys(layer: LayerSpec) -> str:
    """Every key that changes what a layer computes, defaults included: ``tanh, kernel_size=3,
    dilation=2, groups=1`` (a TCN's dilations must show); "" for a layer that has none."""
    custom = layer.kind.keys_text(layer)
    if custom is not None:
        return custom
    keys = layer.kind.registry_keys
    parts = [layer.activation] if "activation" in keys else []
    paths = dict(layer.kind.children(layer))  # a block's paths are rows of their own (layer_rows)
    for key in keys:
        value = layer.option(key)
        if key in paths:
            if not paths[key]:
                parts.append(f"{key}=identity")  # a residual block without skip layers adds its input
        elif key not in ("units", "activation") and value is not None:
            parts.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return ", ".join(parts)


def layer_label(layer: LayerSpec, in_features: int) -> str:
    """One layer for people: ``conv1d 8 -> 8 tanh, kernel_size=3, dilation=2, groups=1``."""
    keys = layer_keys(layer)
    return f"{layer.type} {in_features} -> {layer.units}" + (f" {keys}" if keys else "")


def layer_rows(layers: tuple[LayerSpec, ...] | list[LayerSpec], in_features: int,
               path: str = "") -> list[tuple[int, str, LayerSpec, int]]:
    """Every layer for people, blocks opened: ``(depth, key path, layer, input size)`` each, a
    block's row followed by its paths' rows one level deeper (``[3]``, then ``[3].layers[0]``,
    ``[3].skip[0]``...). What ``modelreg show`` and the report's layer drawing list."""
    rows: list[tuple[int, str, LayerSpec, int]] = []
    depth = path.count("[")
    size = in_features
    for index, layer in enumerate(layers):
        where = f"{path}[{index}]"
        rows.append((depth, where, layer, size))
        for key, inner in layer.kind.children(layer):  # each path is fed the block's input
            rows += layer_rows(inner, size, f"{where}.{key}")
        size = layer.units
    return rows


def layer_params(layer: LayerSpec, in_features: int) -> int:
    """PyTorch's parameter count of ``layer`` fed with ``in_features`` values."""
    return layer.kind.params(layer, in_features)


def count_params(layers: tuple[LayerSpec, ...] | list[LayerSpec], in_features: int) -> int:
    """Total parameter count of a layer stack, computed without building it."""
    total = 0
    for layer in layers:
        total += layer_params(layer, in_features)
        in_features = layer.units
    return total


@attrs.frozen
class ModelSpec:
    """A validated registry entry. Paths are absolute (resolved against the registry).

    The fields are the entry's keys (``name``, ``input_shape``, ``layers`` as
    :class:`LayerSpec` with ``type``, ``units``, ``activation``, ``exports``,
    ``checkpoint``, ``tolerance``...). What an exporter plugin typically uses:
    ``name``, ``registry_dir`` (the folder artifacts go in), ``in_features``,
    ``out_features``, ``is_stateful``, ``layers``, ``tolerance`` (None: the
    default 1e-5 applies), ``input_range`` (``(min, max)`` the host feeds;
    None: any value), ``reset`` (``"zeros"`` or ``"rest"``: what ``reset()``
    restores) and ``rest_frame`` (the input of a silent host, one value per feature).

    An audio-rate model (one frame per sample) has ``sample_rate`` (Hz) and
    ``block_size`` (samples per block the host processes); its ``latency_ms`` is
    the budget of one block: the entry's own ``latency_ms``, else the block's
    duration (:attr:`block_ms`).
    """

    name: str
    description: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    dtype: str
    params: int
    latency_ms: float
    layers: tuple[LayerSpec, ...]
    checkpoint: Path
    registry_file: Path
    latency_stat: LatencyStat = "p99"
    # An audio-rate model: the host's sample rate (Hz) and samples per block; None for other models.
    sample_rate: float | None = None
    block_size: int | None = None
    exports: tuple[str, ...] = ()
    sha256: str | None = None
    tolerance: float | None = None
    # (min, max) the host feeds; None: any value (the edge cases include +-1e6).
    input_range: tuple[float, float] | None = None
    #: Where the rtneural-cpp header's weights come from: "json" (the model's RTNeural file, read
    #: at run time) or "embedded" (compiled into the header).
    cpp_weights: Literal["json", "embedded"] = "json"
    tags: tuple[str, ...] = ()
    # What reset() restores on a stateful model: "zeros" (the default, as before) or "rest".
    reset: ResetMode = "zeros"
    # The entry's rest_input, one value per feature (a single number is spread by the
    # registry); None: the default (see rest_frame).
    rest_input: tuple[float, ...] | None = None
    #: How the checkpoint's own module names map onto the layers: (module name, layer index, or
    #: a layer's path inside a block such as ``"layers.0.skip.0"``) pairs as the entry's ``checkpoint_names`` table gives them, ``"match"`` (paired by shape
    #: where that is unambiguous), or None (the checkpoint uses the entry's own names).
    checkpoint_names: tuple[tuple[str, int | str], ...] | Literal["match"] | None = None
    # The entry exactly as written (parsed TOML), kept for hashing and display.
    entry: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)
    # The registry's [settings] table (e.g. where RTNeural's C++ headers are), shared by every entry.
    settings: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def in_features(self) -> int:
        """Values per input frame (``input_shape[-1]``)."""
        return self.input_shape[-1]

    @property
    def out_features(self) -> int:
        """Values per output frame (``output_shape[-1]``)."""
        return self.output_shape[-1]

    @property
    def is_stateful(self) -> bool:
        """True when any layer is recurrent: outputs depend on earlier calls."""
        return any(layer.is_recurrent for layer in self.layers)

    @property
    def is_audio_rate(self) -> bool:
        """True for an audio-rate model (``sample_rate`` and ``block_size`` declared): one frame per sample,
        timed a block at a time, with a real-time factor."""
        return self.sample_rate is not None and self.block_size is not None

    @property
    def block_ms(self) -> float | None:
        """Duration of one audio block in ms (``block_size / sample_rate``); None for other models."""
        if self.sample_rate is None or self.block_size is None:
            return None
        return block_duration_ms(self.block_size, self.sample_rate)

    @property
    def target_is_block(self) -> bool:
        """True when the latency target is the block's duration (an audio-rate entry without a
        stricter ``latency_ms``)."""
        return self.block_ms is not None and self.latency_ms == self.block_ms

    @property
    def rest_frame(self) -> tuple[float, ...]:
        """The rest input: what a silent host feeds, one value per input feature.

        The entry's ``rest_input``; by default 0.0 for every feature, or, when a
        declared ``input_range`` excludes 0, the bound nearest to 0 (the quietest
        value the host feeds).
        """
        if self.rest_input is not None:
            values = self.rest_input
            return values * self.in_features if len(values) == 1 else values
        quiet = 0.0
        if self.input_range is not None:
            quiet = min(max(quiet, self.input_range[0]), self.input_range[1])
        return (quiet,) * self.in_features

    @property
    def computed_params(self) -> int:
        return count_params(self.layers, self.in_features)

    @property
    def registry_dir(self) -> Path:
        """The folder of the registry file: relative paths of the entry, and artifacts, live under it."""
        return self.registry_file.parent

    @property
    def entry_sha256(self) -> str:
        """Hash of the entry's content (canonical JSON), independent of TOML layout."""
        canonical = json.dumps(self.entry, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    def build(self) -> RealtimeModel:
        """The PyTorch module for this entry, with freshly initialised weights."""
        from .builder import build_module

        return build_module(self)

    def load(self) -> RealtimeModel:
        """The PyTorch module with the checkpoint's weights (pin checked), in eval mode."""
        from .checkpoint import load_checkpoint

        return load_checkpoint(self)
