"""``dense``: a fully connected layer with an activation (``nn.Linear``; RTNeural ``dense``).

RTNeural's dense kernel is ``[in][out]`` (Keras layout, ``y = x @ kernel + bias``),
so the kernel is torch's ``weight.T``; the bias is copied. RTNeural's loader
also reads ``time-distributed-dense`` (the same layer applied per frame) and a
dense layer without a bias (zeros). A non-empty ``activation`` adds an
activation after the layer, as the loader does.

``bias = false`` is torch's ``nn.Linear(bias=False)``: no ``bias`` entry in the
checkpoint; the RTNeural file still holds ``[kernel, zeros]``, since older
RTNeural loaders read ``weights[1]`` unconditionally (current ones accept
``[kernel]``, what RTNeural's Keras exporter writes for ``use_bias=False``).
Read back, a file's ``[kernel]`` is a bias-free layer (the file says so); a
bias of zeros is a bias unless ``drop_zero_biases`` is asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import activations
from .base import BIAS_KEY, LayerKind, LayerSpec, RuntimeLayer, SizeCheck, StateReader, StateSpec, bias_option

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn
__all__ = ["KIND", "DenseLayer"]


class DenseLayer:
    """``y = x @ kernel + bias``; kernel ``[in, out]`` as stored in the file (numpy reference runtime)."""

    is_recurrent = False

    def __init__(self, kernel: np.ndarray, bias: np.ndarray | None) -> None:
        import numpy as np

        self.kernel = np.ascontiguousarray(kernel, dtype=np.float32)
        self.in_size, self.out_size = (int(n) for n in self.kernel.shape)
        self.bias = (np.zeros(self.out_size, np.float32) if bias is None
                     else np.ascontiguousarray(bias, dtype=np.float32))

    def reset(self, batch: int) -> None:
        """Stateless: nothing to reset."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.kernel + self.bias

    def __repr__(self) -> str:
        return f"DenseLayer({self.in_size} -> {self.out_size})"


class Dense(LayerKind):
    name = "dense"
    registry_keys = {
        "units": {"$ref": "#/$defs/positive_int"},
        "activation": {"enum": list(activations.NAMES)},
        "bias": BIAS_KEY,
    }
    required_keys = ("units", "activation")
    missing_key_hints = {"activation": "an activation: dense layers need one of "
                                       + ", ".join(repr(name) for name in activations.NAMES)}
    examples = (*({"units": 5, "activation": name} for name in activations.NAMES),
                {"units": 4, "activation": "tanh", "bias": False})
    rtneural_types = ("dense", "time-distributed-dense")
    loader_adds_activation = True
    weight_depths = (2, 1)

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        return LayerSpec("dense", table["units"], table.get("activation", "linear"), bias_option(table))

    def params(self, layer: LayerSpec, in_features: int) -> int:
        return in_features * layer.units + (layer.units if layer.has_bias else 0)

    def state(self, layer: LayerSpec) -> StateSpec:
        return ()

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        return activations.output_range(layer.activation)

    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        from torch import nn

        return nn.Linear(in_features, layer.units, bias=layer.has_bias)

    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        return activations.torch_activation(layer.activation)(module(x)), ()

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        import numpy as np

        kernel = weights.take(prefix + "weight", (layer.units, in_features)).T
        arrays = [np.ascontiguousarray(kernel)]
        if not layer.has_bias:
            # Zeros, not [kernel] alone: older RTNeural loaders read weights[1] unconditionally.
            # A bias-free layer never reads a bias (a state dict that has one is refused as left over).
            arrays.append(np.zeros(layer.units, np.float32))
        elif weights.has(prefix + "bias"):  # a state dict without its bias: RTNeural reads [kernel] as zeros
            arrays.append(np.ascontiguousarray(weights.take(prefix + "bias", (layer.units,))))
        return {"type": "dense", "activation": activations.to_rtneural_name(layer.activation),
                "shape": [None, None, layer.units], "weights": arrays}

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        import numpy as np
        kernel = np.asarray(weight(0), dtype=np.float32)
        activation = activations.from_rtneural_name(layer.get("activation", ""))
        if len(layer["weights"]) == 1:  # [kernel]: the file says the layer has no bias
            return LayerSpec("dense", units, activation, (("bias", False),)), {"weight": np.ascontiguousarray(kernel.T)}
        bias = np.asarray(weight(1), dtype=np.float32)
        spec = LayerSpec("dense", units, activation)
        return spec, {"weight": np.ascontiguousarray(kernel.T), "bias": np.ascontiguousarray(bias)}

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        return ((in_features, layer.units), (layer.units,))  # a bias-free layer's bias: zeros

    def rtneural_activation(self, layer: LayerSpec) -> str | None:
        return activations.to_rtneural_name(layer.activation)

    def cpp_types(self, layer: LayerSpec, in_features: int) -> list[str]:
        types = [f"RTNeural::DenseT<float, {in_features}, {layer.units}>"]
        activation = activations.cpp_type(layer.activation, layer.units)
        return types + ([activation] if activation else [])

    def cpp_set_weights(self, layer: LayerSpec, in_features: int, target: str, weights: str,
                        shapes: Sequence[tuple[int, ...]]) -> list[str]:
        # The file's kernel is [in][out]; DenseT::setWeights takes [out][in]: its T** overload, row
        # pointers into one buffer the loader reuses (no vector per row).
        lines = [f"{target}.setWeights({weights}.kernel({in_features}, {layer.units}));"]
        return lines + ([f"{target}.setBias({weights}.values({layer.units}));"] if len(shapes) > 1 else [])

    def torch_tensors(self, layer: LayerSpec, in_features: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        bias = (("bias", (layer.units,)),) if layer.has_bias else ()
        return (("weight", (layer.units, in_features)), *bias)

    def cpp_load_torch(self, layer: LayerSpec, in_features: int, target: str, doc: str, prefix: str) -> list[str]:
        # torch's [out][in] is what DenseT::setWeights takes; bias-free: the helper sets zeros.
        return [f'RTNeural::torch_helpers::loadDense<float>({doc}, "{prefix}", {target}, '
                f'{"true" if layer.has_bias else "false"});']

    def rtneural_schema(self) -> dict[str, Any]:
        return {
            "properties": {
                "weights": {
                    "type": "array",
                    "description": "[kernel] or [kernel, bias]: kernel is [inputs][units], bias is [units]",
                    "minItems": 1,
                    "maxItems": 2,
                    "prefixItems": [{"$ref": "#/$defs/matrix"}, {"$ref": "#/$defs/vector"}],
                }
            }
        }

    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        kernel = check.dims(0)
        if kernel is not None:
            check.expect(0, "row", kernel[0], check.previous, check.from_previous)
            check.expect(0, "column", kernel[1], check.units, check.from_units)
        bias = check.dims(1)
        if bias is not None:
            check.expect(1, "entry", bias[0], check.units, check.from_units)
        return check.units

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        runtime: list[RuntimeLayer] = [DenseLayer(weight(0), weight(1) if len(layer["weights"]) > 1 else None)]
        activation = layer.get("activation", "")
        if activation:  # as the loader: a dense layer adds its activation, if any
            runtime.append(activations.ActivationLayer(activation, units))
        return runtime


KIND = Dense()
