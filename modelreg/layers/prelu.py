"""``prelu``: a parametric ReLU with one slope per feature.

Registry: ``{ type = "prelu" }``; no ``units`` (it keeps its input's size) and
no ``activation``. ``y = x`` where ``x >= 0``, else ``slope * x``.

Torch: ``nn.PReLU(num_parameters=features)`` holds the slopes (state-dict key
``weight``, ``[features]``; ``params`` = features). torch's PReLU puts the
channels on axis 1, so the step applies the slopes over the last axis of
``[batch, time, features]`` itself (``where(x >= 0, x, slope * x)``, RTNeural's
formula).

RTNeural (``model_loader.h``: ``createPReLU`` / ``loadPReLU``): the loader
reads ``weights.at(0).at(0)`` as the slope vector, so ``weights = [[slopes]]``,
one ``[1][features]`` matrix (what RTNeural's Keras exporter writes for a
``PReLU(shared_axes=[1])``). ``setAlphaVals`` fills every slope from a single
value, so ``[[a]]`` (Keras ``shared_axes=[0, 1]``, torch's default
``nn.PReLU()``) is read correctly too: it is accepted and imported as that slope
repeated. The loader reads no other row and copies a vector of any other length
past or short of the layer's slopes, so those are rejected. It sizes the layer
from the previous layer and ignores ``shape`` and ``activation``; modelreg
requires the shape to match and refuses an activation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from .base import LayerKind, LayerSpec, RuntimeLayer, SizeCheck, StateReader, StateSpec

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn
__all__ = ["KIND", "PReLULayer"]


class PReLULayer:
    """``x >= 0 ? x : alpha * x`` per feature, as RTNeural's PReLUActivation (numpy reference runtime)."""

    is_recurrent = False

    def __init__(self, alpha: np.ndarray, size: int) -> None:
        import numpy as np

        values = np.asarray(alpha, dtype=np.float32).reshape(-1)
        self.alpha = np.full(size, values[0], np.float32) if values.size == 1 else np.ascontiguousarray(values)
        self.in_size = self.out_size = size

    def reset(self, batch: int) -> None:
        """Stateless: nothing to reset."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        return np.where(x >= 0, x, x * self.alpha)

    def __repr__(self) -> str:
        return f"PReLULayer({self.out_size})"


class PReLU(LayerKind):
    name = "prelu"
    registry_keys: ClassVar[Mapping[str, Any]] = {}  # no keys of its own
    required_keys = ()
    refused_keys = {"units": "prelu layers keep the size of their input; they take no units",
                    "activation": "prelu layers take no activation (RTNeural's loader ignores one there); "
                                  "add an activation layer after it"}
    examples = ({},)
    rtneural_types = ("prelu",)
    weight_depths = (2,)

    # ------------------------------------------------------------------ registry

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        return LayerSpec("prelu", in_features)

    def params(self, layer: LayerSpec, in_features: int) -> int:
        return in_features

    def state(self, layer: LayerSpec) -> StateSpec:
        return ()

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        return ("linear", -math.inf, math.inf)  # slopes may be anything, negative included

    # ------------------------------------------------------------------ torch

    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        import torch
        from torch import nn

        module = nn.PReLU(num_parameters=in_features)
        # torch starts every slope at 0.25: a seeded checkpoint would then hide slopes written in
        # the wrong order. Draw them from the seeded generator; a checkpoint overwrites them.
        with torch.no_grad():
            module.weight.uniform_(0.05, 0.6)
        return module

    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        import torch

        slopes = cast("Tensor", module.weight)
        return torch.where(x >= 0, x, x * slopes), ()

    # ------------------------------------------------------------------ RTNeural

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        import numpy as np

        slopes = weights.take(prefix + "weight", (in_features,))
        return {"type": "prelu", "activation": "", "shape": [None, None, layer.units],
                "weights": [np.ascontiguousarray(slopes.reshape(1, in_features))]}

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        import numpy as np
        row = np.asarray(weight(0), dtype=np.float32)[0]
        slopes = np.full(in_features, row[0], np.float32) if row.size == 1 else np.ascontiguousarray(row)
        return LayerSpec("prelu", in_features), {"weight": slopes}

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        return ((1, in_features),)

    def cpp_types(self, layer: LayerSpec, in_features: int) -> list[str]:
        return [f"RTNeural::PReLUActivationT<float, {in_features}>"]

    def cpp_set_weights(self, layer: LayerSpec, in_features: int, target: str, weights: str,
                        shapes: Sequence[tuple[int, ...]]) -> list[str]:
        return [f"{target}.setAlphaVals({weights}.vec({in_features}));"]  # row 0 of [1][units]

    def torch_tensors(self, layer: LayerSpec, in_features: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return (("weight", (in_features,)),)

    def cpp_load_torch(self, layer: LayerSpec, in_features: int, target: str, doc: str, prefix: str) -> list[str]:
        # torch_helpers has no PReLU loader: its setter, as RTNeural's TCN test sets it.
        return [f'{target}.setAlphaVals({doc}.at("{prefix}weight").get<std::vector<float>>());']

    def rtneural_schema(self) -> dict[str, Any]:
        return {
            "properties": {
                "activation": {"const": "", "description": "\"\" or no activation (the loader ignores one on a "
                                                          "prelu layer)"},
                "weights": {
                    "type": "array",
                    "description": "[slopes]: slopes is [1][units] (one per input), or [1][1] (one shared slope)",
                    "minItems": 1,
                    "maxItems": 1,
                    "prefixItems": [{"$ref": "#/$defs/matrix", "maxItems": 1,
                                     "description": "one row (the loader reads only weights[0][0])"}],
                },
            },
        }

    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        size = check.previous if check.previous is not None else check.units
        if check.previous is not None and check.units != check.previous:
            check.problem(f"prelu layer size does not match the {check.previous} outputs of {check.source} "
                          "(RTNeural sizes it from the previous layer)", key=f"{check.prefix}.shape",
                          expected=f"{check.previous} units", found=f"{check.units} units")
        slopes = check.dims(0)
        if slopes is not None and slopes[1] not in (1, size):
            check.problem(f"column count {slopes[1]} does not match the layer's {size} inputs (RTNeural copies "
                          "the row over its slopes, past their end or leaving some zero)",
                          key=f"{check.prefix}.weights[0]", expected=f"{size} columns (or 1: one shared slope)",
                          found=f"{slopes[1]} columns")
        return size

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        return [PReLULayer(weight(0)[0], units)]


KIND = PReLU()
