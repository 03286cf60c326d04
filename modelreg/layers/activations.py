"""Activation functions: every place an activation is named, computed or bounded.

One table serves the registry (``activation = "tanh"``), the torch module, the
RTNeural writer and reader (RTNeural calls linear ``""``), the numpy reference
runtime and the output-range check. The ``activation`` layer kind (a
stand-alone activation layer, e.g. after an LSTM; RTNeural's ``activation``
layer type) lives here too, next to the table it is made of.

Nothing here imports numpy or torch at module level (``import modelreg``
stays light); the functions that compute import them when called.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .base import LayerKind, LayerProblem, LayerSpec, RuntimeLayer, SizeCheck, StateReader, StateSpec

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn
__all__ = [
    "NAMES",
    "RTNEURAL_NAMES",
    "cpp_type",
    "KIND",
    "STANDALONE",
    "ActivationLayer",
    "from_rtneural_name",
    "numpy_activation",
    "output_range",
    "to_rtneural_name",
    "torch_activation",
]

#: Registry names, in the order messages list them.
NAMES: tuple[str, ...] = ("linear", "tanh", "relu", "sigmoid", "softmax", "elu")
# Registry name -> RTNeural's name ("" is linear; RTNeural has no "linear").
_TO_RTNEURAL: dict[str, str] = {"linear": "", "tanh": "tanh", "relu": "relu", "sigmoid": "sigmoid",
                                "softmax": "softmax", "elu": "elu"}
#: Names RTNeural's ``createActivation`` knows; "" is linear.
RTNEURAL_NAMES: tuple[str, ...] = tuple(_TO_RTNEURAL.values())
# What each activation guarantees about its outputs: (rule, low, high).
_RANGES: dict[str, tuple[str, float, float]] = {
    "sigmoid": ("sigmoid", 0.0, 1.0),
    "softmax": ("softmax", 0.0, 1.0),
    "tanh": ("tanh", -1.0, 1.0),
    "relu": ("relu", 0.0, math.inf),
    "elu": ("elu", -1.0, math.inf),
    "linear": ("linear", -math.inf, math.inf),
}


def to_rtneural_name(name: str) -> str:
    """Registry name -> RTNeural name (``linear`` -> ``""``)."""
    return _TO_RTNEURAL[name]


def from_rtneural_name(name: str) -> str:
    """RTNeural name -> registry name (``""`` -> ``linear``)."""
    return next(ours for ours, theirs in _TO_RTNEURAL.items() if theirs == name)


# Our names -> RTNeural's compile-time activation layer (linear adds none).
_CPP_TYPES: dict[str, str | None] = {"linear": None, "tanh": "TanhActivationT", "relu": "ReLuActivationT",
                                     "sigmoid": "SigmoidActivationT", "softmax": "SoftmaxActivationT",
                                     "elu": "ELuActivationT"}


def cpp_type(name: str, size: int) -> str | None:
    """RTNeural's compile-time layer for activation ``name`` over ``size`` values (None for linear)."""
    cpp = _CPP_TYPES[name]
    return None if cpp is None else f"RTNeural::{cpp}<float, {size}>"


def output_range(name: str) -> tuple[str, float, float]:
    """(rule, low, high) that every output of activation ``name`` satisfies."""
    return _RANGES[name]


def torch_activation(name: str) -> Callable[[Tensor], Tensor]:
    """The torch function of registry activation ``name``."""
    import torch

    functions: dict[str, Callable[[Tensor], Tensor]] = {
        "linear": lambda x: x,
        "tanh": torch.tanh,
        "relu": torch.relu,
        "sigmoid": torch.sigmoid,
        "softmax": lambda x: torch.softmax(x, dim=-1),
        "elu": torch.nn.functional.elu,
    }
    return functions[name]


# --------------------------------------------------------------------------- numpy (RTNeural semantics)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """RTNeural: 1 / (1 + exp(-x)); exp overflows to inf for x < -88, giving exactly 0."""
    import numpy as np

    with np.errstate(over="ignore"):
        return np.float32(1) / (np.float32(1) + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    """RTNeural: exp(x) times 1 / sum, in float32, not shifted by the row maximum (every backend).

    So an input above ~88.7 overflows exp to inf and RTNeural's row becomes NaN (inf * 0)
    and zeros: this runtime must show that, not a stable softmax that hides it."""
    import numpy as np

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        e = np.exp(x.astype(np.float32, copy=False))
        return e * (np.float32(1) / e.sum(axis=-1, keepdims=True, dtype=np.float32))


def _elu(x: np.ndarray) -> np.ndarray:
    import numpy as np

    # alpha = 1, as RTNeural's ELuActivation; exp(x) - 1 (not expm1), as RTNeural.
    return np.where(x > 0, x, np.exp(np.minimum(x, np.float32(0))) - np.float32(1))


def _tanh(x: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.tanh(x)


def _relu(x: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.maximum(x, np.float32(0))


_NUMPY: dict[str, Callable[[Any], Any]] = {
    "": lambda x: x,
    "tanh": _tanh,
    "relu": _relu,
    "sigmoid": sigmoid,
    "softmax": _softmax,
    "elu": _elu,
}


def numpy_activation(rtneural_name: str) -> Callable[[np.ndarray], np.ndarray]:
    """The numpy function of RTNeural activation ``rtneural_name`` (float32 in, float32 out)."""
    return _NUMPY[rtneural_name]


class ActivationLayer:
    """An element-wise (softmax: row-wise) activation in the numpy reference runtime."""

    is_recurrent = False

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.in_size = self.out_size = size
        self._func = _NUMPY[name]

    def reset(self, batch: int) -> None:
        """Stateless: nothing to reset."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self._func(x)

    def __repr__(self) -> str:
        return f"ActivationLayer({self.name or 'linear'!r}, {self.out_size})"


class Activation(LayerKind):
    """A stand-alone activation layer: ``{ type = "activation", activation = "tanh" }``.

    It keeps its input's size (no ``units`` key: the size is the previous
    layer's). RTNeural writes it as ``{"type": "activation", "activation": NAME,
    "weights": []}``; the dynamic loader adds ``createActivation(NAME)``, and a
    ``ModelT`` holds the matching ``...ActivationT`` (which consumes that JSON
    layer). ``linear`` is refused: such a layer does nothing, and a ``ModelT``
    has no layer for it, so the compile-time loader would pair the next layer
    with the wrong JSON entry.
    """

    name = "activation"
    registry_keys = {"activation": {"enum": list(NAMES)}}
    required_keys = ("activation",)
    missing_key_hints = {"activation": "an activation: activation layers need one of "
                                       + ", ".join(repr(name) for name in NAMES if name != "linear")}
    refused_keys = {"units": "activation layers keep the size of their input; they take no units"}
    examples = tuple({"activation": name} for name in NAMES if name != "linear")
    rtneural_types = ("activation",)
    weight_depths = ()

    # ------------------------------------------------------------------ registry

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        return LayerSpec("activation", in_features, table["activation"])

    def problems(self, layer: LayerSpec, in_features: int) -> list[LayerProblem]:
        if layer.activation == "linear":
            choices = ", ".join(repr(name) for name in NAMES if name != "linear")
            return [("activation", "a stand-alone linear activation layer does nothing (and RTNeural's compile-time "
                     "ModelT has no layer for it); remove the layer", f"one of {choices}", "'linear'")]
        return []

    def params(self, layer: LayerSpec, in_features: int) -> int:
        return 0

    def state(self, layer: LayerSpec) -> StateSpec:
        return ()

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        return output_range(layer.activation)

    # ------------------------------------------------------------------ torch

    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        from torch import nn

        return nn.Identity()  # no parameters; the function is applied in forward()

    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        return torch_activation(layer.activation)(x), ()

    # ------------------------------------------------------------------ RTNeural

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        return {"type": "activation", "activation": to_rtneural_name(layer.activation),
                "shape": [None, None, layer.units], "weights": []}

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        from ..errors import UsageError
        activation = layer.get("activation", "")
        if not activation:
            raise UsageError.at("a stand-alone activation layer without an activation does nothing; the registry "
                                "has no such layer (delete it from the file)", key="activation",
                                expected="one of " + ", ".join(repr(n) for n in RTNEURAL_NAMES if n), found=repr(activation))
        return LayerSpec("activation", in_features, from_rtneural_name(activation)), {}

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        return ()

    def rtneural_activation(self, layer: LayerSpec) -> str | None:
        return to_rtneural_name(layer.activation)

    def cpp_types(self, layer: LayerSpec, in_features: int) -> list[str]:
        cpp = cpp_type(layer.activation, layer.units)
        assert cpp is not None, "linear activation layers are refused by the registry"
        return [cpp]

    def cpp_set_weights(self, layer: LayerSpec, in_features: int, target: str, weights: str,
                        shapes: Sequence[tuple[int, ...]]) -> list[str]:
        return []  # no weights

    def torch_tensors(self, layer: LayerSpec, in_features: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return ()  # no weights

    def cpp_load_torch(self, layer: LayerSpec, in_features: int, target: str, doc: str, prefix: str) -> list[str]:
        return []

    def rtneural_schema(self) -> dict[str, Any]:
        return {
            "required": ["activation"],
            "$comment": "A stand-alone activation layer without an activation key is a no-op for the loader; "
                        "it is required here because such a layer is almost certainly a mistake.",
            "properties": {
                "weights": {"type": "array", "maxItems": 0, "description": "[] (an activation layer has no weights)"}
            },
        }

    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        if check.previous is not None and check.units != check.previous:
            check.problem(f"activation layer size does not match the {check.previous} outputs of {check.source}",
                          key=f"{check.prefix}.shape", expected=f"{check.previous} units", found=f"{check.units} units")
            return check.previous  # an activation cannot change the size: keep checking against the real one
        return check.units

    def loader_layers(self, layer: Mapping[str, Any], size: int, units: int) -> list[tuple[str, int, int]]:
        # The layer is its activation; with none named the loader adds nothing.
        activation = str(layer.get("activation") or "")
        return [(activation, units, units)] if activation else []

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        # As RTNeural's loader: the layer adds its activation, if it names one.
        activation = layer.get("activation", "")
        return [ActivationLayer(activation, units)] if activation else []


#: The ``activation`` layer kind.
KIND = Activation()
#: The old name of the same object (it was RTNeural-only before it became a registry kind).
STANDALONE = KIND
