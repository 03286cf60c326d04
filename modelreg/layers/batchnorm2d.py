"""``batchnorm2d``: batch normalisation per filter of (feature, filter) frames, inference statistics;
PyTorch ``nn.BatchNorm2d``; RTNeural ``batchnorm2d``.

RTNeural (``batchnorm/batchnorm2d.h``): ``y[f*C + c] = (x[f*C + c] - mean[c]) *
gamma[c] / sqrt(var[c] + epsilon) + beta[c]``, frames feature-major as conv2d
writes them (one statistic per filter ``c``, shared by all features). The
loader reads ``num_filters_in`` and ``num_features_in`` as plain integers (an
array throws) and ``epsilon``; ``weights`` is ``[gamma, beta, mean, var]``
(affine) or ``[mean, var]``: it decides by ``weights.size() == 4``, so three
arrays would be read as non-affine, silently. It never compares the layer's
sizes with the previous layer (a wrong ``num_features_in`` reads past the
frame), so modelreg checks them.

Registry: ``num_features_in`` (the frame's features; filters = input size /
features), ``epsilon`` (1e-5, PyTorch's default), ``affine`` (true). Torch
runs the running statistics (what RTNeural computes). The module holds
``nn.BatchNorm2d``'s ``weight``, ``bias`` (affine), ``running_mean`` and
``running_var``, without its ``num_batches_tracked`` training counter (no
runtime reads it; the writer accepts and ignores one in a state dict).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import batchnorm
from .base import LayerKind, LayerProblem, LayerSpec, RuntimeLayer, SizeCheck, StateReader, StateSpec

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn
__all__ = ["KIND", "BatchNorm2DLayer"]

DEFAULT_EPSILON = 1e-5


class BatchNorm2DLayer:
    """RTNeural's batchnorm2d in the numpy reference runtime."""

    is_recurrent = False

    def __init__(self, features: int, mean: np.ndarray, var: np.ndarray, epsilon: float,
                 gamma: np.ndarray | None = None, beta: np.ndarray | None = None) -> None:
        import numpy as np

        f32 = np.float32
        self.filters = int(len(mean))
        self.features = features
        self.in_size = self.out_size = features * self.filters
        self.mean = np.asarray(mean, f32)
        # As RTNeural: multiplier = gamma / sqrt(var + epsilon), in T (float).
        scale = np.ones(self.filters, f32) if gamma is None else np.asarray(gamma, f32)
        self.multiplier = scale / np.sqrt(np.asarray(var, f32) + f32(epsilon))
        self.beta = np.zeros(self.filters, f32) if beta is None else np.asarray(beta, f32)

    def reset(self, batch: int) -> None:
        """Stateless: nothing to reset."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        grid = x.reshape(x.shape[0], self.features, self.filters)
        return ((grid - self.mean) * self.multiplier + self.beta).reshape(x.shape[0], self.out_size)

    def __repr__(self) -> str:
        return f"BatchNorm2DLayer({self.features}x{self.filters})"


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if float(value).is_integer() and value >= 1 else None


class BatchNorm2D(LayerKind):
    name = "batchnorm2d"
    registry_keys = {
        "num_features_in": {"$ref": "#/$defs/positive_int"},
        # One schema per key across kinds (the registry's layer schema is their union): batchnorm's.
        "epsilon": batchnorm.KIND.registry_keys["epsilon"],
        "affine": batchnorm.KIND.registry_keys["affine"],
    }
    required_keys = ("num_features_in",)
    missing_key_hints = {
        "num_features_in": "how many features an input frame holds (the frame is features x filters, feature-major)",
    }
    refused_keys = {"units": "a batchnorm2d layer keeps its input's size",
                    "activation": "batchnorm2d layers take no activation (RTNeural's loader ignores it)",
                    "bias": "batchnorm2d layers take no bias key: their beta is the bias (affine = false drops "
                            "gamma and beta)"}
    examples = (
        {"num_features_in": 3},
        {"num_features_in": 1, "epsilon": 0.001, "affine": False},
    )
    rtneural_types = ("batchnorm2d",)
    weight_depths = (1, 1, 1, 1)

    # ------------------------------------------------------------------ registry

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        features = int(table["num_features_in"])
        options = {"num_features_in": features, "epsilon": float(table.get("epsilon", DEFAULT_EPSILON)),
                   "affine": bool(table.get("affine", True))}
        return LayerSpec("batchnorm2d", in_features, "linear", tuple(sorted(options.items())))

    def problems(self, layer: LayerSpec, in_features: int) -> list[LayerProblem]:
        features = layer.option("num_features_in")
        if in_features % features:
            return [("num_features_in", f"the layer's {in_features} inputs are not whole frames of {features} "
                     "features (each feature holds one value per filter)", f"a divisor of {in_features}",
                     str(features))]
        return []

    def _filters(self, layer: LayerSpec) -> int:
        return layer.units // layer.option("num_features_in")

    def params(self, layer: LayerSpec, in_features: int) -> int:
        return 2 * (in_features // layer.option("num_features_in")) if layer.option("affine") else 0

    def state(self, layer: LayerSpec) -> StateSpec:
        return ()

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        return ("batchnorm2d (affine)", -math.inf, math.inf)

    # ------------------------------------------------------------------ torch

    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        import torch
        from torch import nn

        filters = in_features // layer.option("num_features_in")
        # nn.BatchNorm2d's parameters and buffers (same names and initial values), without its
        # num_batches_tracked training counter, which its loader re-adds to every state dict.
        module = nn.Module()
        affine = bool(layer.option("affine"))
        module.register_parameter("weight", nn.Parameter(torch.ones(filters)) if affine else None)
        module.register_parameter("bias", nn.Parameter(torch.zeros(filters)) if affine else None)
        module.register_buffer("running_mean", torch.zeros(filters))
        module.register_buffer("running_var", torch.ones(filters))
        return module

    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        import torch

        # Written out (not functional.batch_norm, which ONNX cannot export over a reshaped
        # frame) in RTNeural's order: (x - mean) * (gamma / sqrt(var + epsilon)) + beta.
        # reshape with the traced batch and time sizes, not unflatten/flatten: torch.onnx exports
        # those with the sizes seen while tracing (batch 1), and the file fails on other batches.
        grid = x.reshape(x.shape[0], x.shape[1], layer.option("num_features_in"), self._filters(layer))
        weight, bias = module.get_parameter("weight") if layer.option("affine") else None, \
            module.get_parameter("bias") if layer.option("affine") else None
        mean, var = module.get_buffer("running_mean"), module.get_buffer("running_var")
        multiplier = torch.rsqrt(var + layer.option("epsilon"))
        if weight is not None:
            multiplier = weight * multiplier
        y = (grid - mean) * multiplier
        if bias is not None:
            y = y + bias
        return y.reshape(y.shape[0], y.shape[1], layer.units), ()

    # ------------------------------------------------------------------ RTNeural layout, both ways

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        import numpy as np

        filters = in_features // layer.option("num_features_in")
        names = ("weight", "bias", "running_mean", "running_var") if layer.option("affine") else (
            "running_mean", "running_var")
        arrays = [np.ascontiguousarray(weights.take(prefix + name, (filters,))) for name in names]
        if weights.has(prefix + "num_batches_tracked"):  # a plain nn.BatchNorm2d's counter: used by no runtime
            weights.used.add(prefix + "num_batches_tracked")
        return {"type": "batchnorm2d", "shape": [None, None, layer.units], "num_filters_in": filters,
                "num_features_in": layer.option("num_features_in"), "epsilon": layer.option("epsilon"),
                "weights": arrays}

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        import numpy as np

        affine = len(layer["weights"]) == 4
        spec = self.spec({"num_features_in": layer["num_features_in"], "epsilon": layer["epsilon"],
                          "affine": affine}, in_features)
        names = ("weight", "bias", "running_mean", "running_var") if affine else ("running_mean", "running_var")
        return spec, {name: np.ascontiguousarray(np.asarray(weight(j), dtype=np.float32))
                      for j, name in enumerate(names)}

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        filters = in_features // layer.option("num_features_in")
        return ((filters,),) * (4 if layer.option("affine") else 2)

    def cpp_types(self, layer: LayerSpec, in_features: int) -> list[str]:
        # BatchNorm2DT<T, num_filters, num_features, affine> (batchnorm/batchnorm2d.h).
        features = layer.option("num_features_in")
        return [f"RTNeural::BatchNorm2DT<float, {in_features // features}, {features}, "
                f"{'true' if layer.option('affine') else 'false'}>"]

    def cpp_set_weights(self, layer: LayerSpec, in_features: int, target: str, weights: str,
                        shapes: Sequence[tuple[int, ...]]) -> list[str]:
        return batchnorm.cpp_set_statistics(layer, target, weights, shapes)

    def rtneural_schema(self) -> dict[str, Any]:
        return {
            "required": ["num_filters_in", "num_features_in", "epsilon"],
            "$comment": "The loader reads num_filters_in and num_features_in as plain integers (an array throws) "
                        "and epsilon with get<T>().",
            "properties": {
                "num_filters_in": {"$ref": "#/$defs/units"},
                "num_features_in": {"$ref": "#/$defs/units"},
                "epsilon": {"type": "number", "exclusiveMinimum": 0,
                            "description": "a positive number (added to the variance under the square root)"},
                "weights": {
                    "type": "array",
                    "description": "[gamma, beta, running mean, running variance] (affine) or [running mean, "
                                   "running variance], each [num_filters_in]; the loader reads any other count as "
                                   "the first two of a non-affine layer",
                    "minItems": 2,
                    "maxItems": 4,
                    "not": {"minItems": 3, "maxItems": 3},
                    "items": {"$ref": "#/$defs/vector"},
                },
            },
        }

    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        layer = check.layer
        filters, features = _int(layer.get("num_filters_in")), _int(layer.get("num_features_in"))
        if filters is None or features is None:
            return check.units  # the schema reported it
        if check.previous is not None and filters * features != check.previous:
            check.problem(f"num_features_in x num_filters_in ({features} x {filters}) does not match "
                          f"{check.from_previous} (the loader does not check, and would read past the frame)",
                          key=f"{check.prefix}.num_features_in", expected=f"{check.previous} values per frame",
                          found=str(filters * features))
        elif check.units != filters * features:
            check.problem("a batchnorm2d layer keeps its input's size", key=f"{check.prefix}.shape",
                          expected=f"{filters * features} units", found=f"{check.units} units")
        for j in range(len(layer.get("weights", []))):
            dims = check.dims(j)
            if dims is not None:
                check.expect(j, "entry", dims[0], filters, f"num_filters_in ({filters})")
        return check.units

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        features = _int(layer["num_features_in"])
        assert features is not None
        epsilon = float(layer["epsilon"])
        if len(layer["weights"]) == 4:
            return [BatchNorm2DLayer(features, weight(2), weight(3), epsilon, weight(0), weight(1))]
        return [BatchNorm2DLayer(features, weight(0), weight(1), epsilon)]


KIND = BatchNorm2D()
