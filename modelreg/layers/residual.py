"""``residual``: a block whose output is its main path plus its skip path, both fed the block's input.

Registry: ``{ type = "residual", layers = [...], skip = [...] }``. ``layers`` (the main
path, at least one layer) and ``skip`` are lists of layer tables of any kind, residual
blocks included (blocks nest and repeat: a dilated TCN is a list of them). An empty or
absent ``skip`` is the identity: the block adds its input. Both paths must end at the
same size; the block's size (its ``units``) is the main path's.

Everything about the block is its paths' kinds': parameters are both paths' sum; its
state is the main path's state tensors, then the skip path's, each named after the
inner layer (``buf.layers.0`` for the conv1d at ``layers[0]``, ``h.skip.1`` for a GRU at
``skip[1]``; the model appends the block's index to the first part: ``buf3.layers.0``);
seeded builds create the main path's modules, then the skip path's.

Torch: one module holding two ``nn.ModuleList`` named ``layers`` and ``skip``, so a
checkpoint's keys nest PyTorch-style: ``layers.3.layers.0.weight`` (the main path's
first layer of block 3), ``layers.3.skip.0.weight``.

RTNeural: its JSON format has no residual layer (``parseJson`` reads straight stacks),
so the RTNeural-side methods refuse and name ``rtneural-cpp`` and ``rtneural-torch``, whose
C++ for a model with blocks composes RTNeural's compile-time layers itself (``cpp_combine``
writes the block's add; see docs/rtneural-cpp.md), with the weights embedded or read from the
model's state-dict JSON (the paths' layers load with torch_helpers, under their nested names).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from .base import LayerKind, LayerProblem, LayerSpec, RuntimeLayer, SizeCheck, StateReader, StateSpec, get_kind

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn

__all__ = ["KIND", "PATHS", "Residual"]

#: The block's paths: registry key and what it is, in the order state and weights follow them.
PATHS = ("layers", "skip")

_RTNEURAL_REFUSAL = ("RTNeural's JSON format has no residual layer (parseJson reads straight stacks); "
                     "export the entry with rtneural-cpp (weights embedded, or from the state-dict JSON) or "
                     "rtneural-torch, which write the C++ model")

_PATH_SCHEMA = {"type": "array", "items": {"$ref": "#/$defs/layer"}}


def _refuse(what: str) -> UsageError:
    return UsageError.at(f"a residual block cannot be {what}: {_RTNEURAL_REFUSAL}",
                         expected="the rtneural-cpp exporter", found="type = \"residual\"")


@functools.cache
def _module_class() -> type:
    """The torch module of a block (made once, on first use: this module imports no torch)."""
    from torch import nn

    class ResidualBlock(nn.Module):
        """A residual block's modules: ``layers`` (main path) and ``skip`` (empty: the identity).
        The block's computation is the kind's ``forward``."""

        def __init__(self, layers: list[nn.Module], skip: list[nn.Module]) -> None:
            super().__init__()
            self.layers = nn.ModuleList(layers)
            self.skip = nn.ModuleList(skip)

    return ResidualBlock


class Residual(LayerKind):
    name = "residual"
    registry_keys = {
        "layers": {**_PATH_SCHEMA, "minItems": 1,
                   "description": "the main path: an array of layer tables, at least one"},
        "skip": {**_PATH_SCHEMA,
                 "description": "the skip path: an array of layer tables; empty or absent: the identity"},
    }
    required_keys = ("layers",)
    missing_key_hints = {"layers": "the main path: residual blocks need layers, an array of layer tables"}
    refused_keys = {"units": "residual blocks take their size from their main path (its last layer); "
                             "they take no units",
                    "activation": "residual blocks take no activation: end the main path with an activation "
                                  "layer, or add one after the block"}
    examples = (
        {"layers": [{"type": "batchnorm"}, {"type": "prelu"}]},
        {"layers": [{"type": "conv1d", "units": 4, "kernel_size": 3, "dilation": 2}, {"type": "prelu"}],
         "skip": [{"type": "conv1d", "units": 4, "kernel_size": 1}]},
        {"layers": [{"type": "gru", "units": 3}, {"type": "dense", "units": 5, "activation": "tanh"}],
         "skip": [{"type": "dense", "units": 5, "activation": "sigmoid"}]},
        {"layers": [{"type": "residual", "layers": [{"type": "conv1d", "units": 6, "kernel_size": 2,
                                                     "dilation": 3, "activation": "tanh"}],
                     "skip": [{"type": "dense", "units": 6, "activation": "linear"}]},
                    {"type": "batchnorm"}],
         "skip": [{"type": "conv1d", "units": 6, "kernel_size": 2}]},
    )
    # RTNeural's JSON has no residual layer: no RTNeural type reads one.
    rtneural_types = ()
    weight_depths = ()

    # ------------------------------------------------------------------ registry

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        paths = tuple((key, _path_spec(table.get(key, ()), in_features)) for key in PATHS)
        main = paths[0][1]
        return LayerSpec("residual", main[-1].units, options=paths)

    def children(self, layer: LayerSpec) -> tuple[tuple[str, tuple[LayerSpec, ...]], ...]:
        return tuple((key, tuple(layer.option(key, ()))) for key in PATHS)

    def problems(self, layer: LayerSpec, in_features: int) -> list[LayerProblem]:
        found: list[LayerProblem] = []
        ends = {}
        for key, path in self.children(layer):
            size = in_features
            for index, inner in enumerate(path):
                found += [(f"{key}[{index}].{field}", reason, expected, text)
                          for field, reason, expected, text in inner.kind.problems(inner, size)]
                size = inner.units
            ends[key] = size
        main, skip = ends["layers"], ends["skip"]
        if main != skip:
            if layer.option("skip"):
                found.append(("skip", f"the skip path ends at {skip} values and the main path (layers) at {main}: "
                                      "a residual block adds them, so both must end at the same size",
                              f"a skip path ending at {main} values, the main path's size", f"{skip} values"))
            else:
                found.append(("layers", f"the main path ends at {main} values, but the skip path is the identity "
                                        f"(no skip layers), which passes the block's {in_features} input values: "
                                        "a residual block adds them, so both must end at the same size",
                              f"a main path ending at {in_features} values, or skip layers ending at {main}",
                              f"{main} values"))
        return found

    def params(self, layer: LayerSpec, in_features: int) -> int:
        total = 0
        for _, path in self.children(layer):
            size = in_features
            for inner in path:
                total += inner.kind.params(inner, size)
                size = inner.units
        return total

    def state(self, layer: LayerSpec) -> StateSpec:
        names: list[tuple[str, int]] = []
        for key, path in self.children(layer):
            for index, inner in enumerate(path):
                for name, size in inner.kind.state(inner):
                    # "buf" -> "buf.layers.0"; a nested block's "buf.layers.0" -> "buf.skip.1.layers.0":
                    # the first part stays the state's own name, the rest is where it lives.
                    base, dot, rest = name.partition(".")
                    names.append((f"{base}.{key}.{index}{dot}{rest}", size))
        return tuple(names)

    def memory(self, layer: LayerSpec) -> int | None:
        # A path's layers are chained (their memories add up); the paths run side by side (the longest
        # counts). Unbounded as soon as one inner layer is.
        longest = 0
        for _, path in self.children(layer):
            total = 0
            for inner in path:
                memory = inner.kind.memory(inner)
                if memory is None:
                    return None
                total += memory
            longest = max(longest, total)
        return longest

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        main = layer.option("layers")[-1]
        _, low, high = main.kind.output_range(main)
        skip = layer.option("skip")
        if skip:
            _, skip_low, skip_high = skip[-1].kind.output_range(skip[-1])
        else:  # the identity passes the block's input, whatever it is
            skip_low, skip_high = -math.inf, math.inf
        return ("residual sum", low + skip_low, high + skip_high)

    # ------------------------------------------------------------------ torch

    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        built: dict[str, list[nn.Module]] = {}
        for key, path in self.children(layer):  # main path first: creation order fixes seeded weights
            modules = []
            size = in_features
            for inner in path:
                modules.append(inner.kind.build(inner, size))
                size = inner.units
            built[key] = modules
        module: nn.Module = _module_class()(built["layers"], built["skip"])
        return module

    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        new_state: list[Tensor] = []
        position = 0
        outputs = []
        for key, path in self.children(layer):
            y = x
            for inner, inner_module in zip(path, getattr(module, key)):
                count = len(inner.kind.state(inner))
                y, inner_state = inner.kind.forward(inner_module, inner, y, state[position:position + count])
                position += count
                new_state.extend(inner_state)
            outputs.append(y)
        return outputs[0] + outputs[1], tuple(new_state)

    # ------------------------------------------------------------------ RTNeural: refused

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        raise _refuse("written to an RTNeural JSON file")

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        raise _refuse("read from an RTNeural JSON file")

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        raise _refuse("written to an RTNeural JSON file")

    def rtneural_schema(self) -> dict[str, Any]:
        return {}  # no RTNeural type names it (rtneural_types is empty)

    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        raise _refuse("read from an RTNeural JSON file")

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        raise _refuse("run by the numpy reference runtime of RTNeural JSON files")

    # ------------------------------------------------------------------ RTNeural C++ (rtneural-cpp)

    def cpp_combine(self, layer: LayerSpec, in_features: int, outs: str, paths: Mapping[str, str],
                    ins: str) -> list[str]:
        """C++ statements that write the block's output to ``outs`` (an aligned float array of
        ``layer.units``) from ``paths`` (each path's key -> a C++ expression of its output, a
        ``const float*``; a path without layers is absent) and ``ins`` (the block's input)."""
        skip = paths.get("skip", ins)  # no skip layers: the identity adds the block's input
        return [f"const float* main_out = {paths['layers']};",
                f"const float* skip_out = {skip};",
                f"for(int i = 0; i < {layer.units}; ++i)",
                f"    {outs}[i] = main_out[i] + skip_out[i];"]


def _path_spec(tables: Sequence[Mapping[str, Any]], in_features: int) -> tuple[LayerSpec, ...]:
    """The (schema-valid) layer tables of one path as LayerSpecs, each kind reading its own keys."""
    specs: list[LayerSpec] = []
    size = in_features
    for table in tables:
        inner = get_kind(table["type"]).spec(table, size)
        specs.append(inner)
        size = inner.units
    return tuple(specs)


KIND = Residual()
