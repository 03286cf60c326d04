"""What the ``lstm`` and ``gru`` kinds share: one single-layer ``batch_first`` torch RNN each.

Not a kind itself. A recurrent layer has ``gates`` gate blocks, each with an
input kernel, a recurrent kernel and (in PyTorch) two bias vectors; its
internal activations are fixed (tanh/sigmoid), so it takes no ``activation``.
``bias = false`` is torch's ``bias=False``: neither bias vector exists (no
``bias_ih_l0`` / ``bias_hh_l0`` entries, no parameters); RTNeural's loader
always reads a bias, so the file holds zeros there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from .base import BIAS_KEY, LayerKind, LayerSpec, SizeCheck, StateReader, StateSpec, bias_option

if TYPE_CHECKING:
    import numpy as np
    from torch import nn
__all__ = ["Recurrent"]

# RTNeural's Keras exporter writes the cell activation on recurrent layers;
# the loader never reads it.
RTNEURAL_ACTIVATION = "tanh"


class Recurrent(LayerKind):
    """Base of the recurrent kinds; subclasses set ``gates``, ``gate_names`` and the layouts."""

    gates: ClassVar[int]
    #: RTNeural's gate order, as messages show it (``"i, f, c, o"``).
    gate_names: ClassVar[str]
    registry_keys = {"units": {"$ref": "#/$defs/positive_int"}, "bias": BIAS_KEY}
    required_keys = ("units",)
    refused_keys = {"activation": "lstm and gru layers take no activation: they use tanh and sigmoid internally "
                                  "(add an activation layer after them for another one)"}
    examples = ({"units": 1}, {"units": 6}, {"units": 5, "bias": False})

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        return LayerSpec(self.name, table["units"], options=bias_option(table))

    def bias_entries(self, layer: LayerSpec) -> tuple[str, ...]:
        return ("bias_ih_l0", "bias_hh_l0")

    def params(self, layer: LayerSpec, in_features: int) -> int:
        hidden = layer.units
        # kernel (in x gates*h) + recurrent kernel (h x gates*h) + two bias vectors (unless bias = false).
        biases = 2 * self.gates * hidden if layer.has_bias else 0
        return self.gates * hidden * (in_features + hidden) + biases

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        # LSTM: o * tanh(c); GRU: a convex mix of tanh and the previous state, starting at zero.
        return ("recurrent (h in [-1, 1])", -1.0, 1.0)

    def _module(self) -> Callable[..., nn.Module]:
        raise NotImplementedError

    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        return self._module()(in_features, layer.units, batch_first=True, bias=layer.has_bias)

    def take(self, layer: LayerSpec, in_features: int, weights: StateReader,
             prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """torch's ``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0`` (zeros when bias=False)."""
        import numpy as np

        units, wide = layer.units, self.gates * layer.units
        w_ih = weights.take(prefix + "weight_ih_l0", (wide, in_features))
        w_hh = weights.take(prefix + "weight_hh_l0", (wide, units))
        # A bias-free layer reads no bias (a state dict that has one is refused as left over).
        has_ih = layer.has_bias and weights.has(prefix + "bias_ih_l0")
        has_hh = layer.has_bias and weights.has(prefix + "bias_hh_l0")
        if has_ih != has_hh:
            missing = prefix + ("bias_hh_l0" if has_ih else "bias_ih_l0")
            from ..errors import UsageError

            raise UsageError.at("a recurrent layer needs both bias vectors or neither", key=missing,
                                expected=f"an array of shape [{wide}]")
        if has_ih:
            b_ih = weights.take(prefix + "bias_ih_l0", (wide,))
            b_hh = weights.take(prefix + "bias_hh_l0", (wide,))
        else:  # bias=False: torch adds nothing, RTNeural adds zeros
            b_ih = b_hh = np.zeros(wide, np.float32)
        return w_ih, w_hh, b_ih, b_hh

    @staticmethod
    def torch_state(w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray, b_hh: np.ndarray) -> dict[str, np.ndarray]:
        import numpy as np

        return {key: np.ascontiguousarray(value, dtype=np.float32) for key, value in
                (("weight_ih_l0", w_ih), ("weight_hh_l0", w_hh), ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh))}

    #: RTNeural's compile-time layer template (``LSTMLayerT``, ``GRULayerT``).
    cpp_template: ClassVar[str]

    def cpp_types(self, layer: LayerSpec, in_features: int) -> list[str]:
        return [f"RTNeural::{self.cpp_template}<float, {in_features}, {layer.units}>"]

    def cpp_set_weights(self, layer: LayerSpec, in_features: int, target: str, weights: str,
                        shapes: Sequence[tuple[int, ...]]) -> list[str]:
        # Kernel [in][G*units] and recurrent kernel [units][G*units] as stored; the bias is one
        # summed row (LSTM) or two rows (GRU), see rtneural_shapes(). The compile-time layers'
        # setters take nested vectors only: matrix() reuses one set of them for all three.
        wide = self.gates * layer.units
        bias_shape = shapes[2]
        bias = f"{weights}.vec({wide})" if len(bias_shape) == 1 else f"{weights}.matrix({bias_shape[0]}, {wide})"
        return [f"{target}.setWVals({weights}.matrix({in_features}, {wide}));",
                f"{target}.setUVals({weights}.matrix({layer.units}, {wide}));",
                f"{target}.setBVals({bias});"]

    #: torch_helpers' loader of the kind (``loadGRU``, ``loadLSTM``).
    torch_loader: ClassVar[str]

    def torch_tensors(self, layer: LayerSpec, in_features: int,
                      layer_index: int = 0) -> tuple[tuple[str, tuple[int, ...]], ...]:
        wide, units = self.gates * layer.units, layer.units
        bias = ((f"bias_ih_l{layer_index}", (wide,)), (f"bias_hh_l{layer_index}", (wide,))) if layer.has_bias else ()
        return ((f"weight_ih_l{layer_index}", (wide, in_features)), (f"weight_hh_l{layer_index}", (wide, units)), *bias)

    def cpp_load_torch(self, layer: LayerSpec, in_features: int, target: str, doc: str, prefix: str,
                       layer_index: int = 0) -> list[str]:
        # layer_index: which layer of a stacked torch module (nn.GRU(num_layers=N)) ``target`` is:
        # torch_helpers reads its ``weight_ih_l{layer_index}``... (one call per stacked layer).
        return [f'RTNeural::torch_helpers::{self.torch_loader}<float>({doc}, "{prefix}", {target}, '
                f'{"true" if layer.has_bias else "false"}, {layer_index});']

    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        units = check.units
        wide = f"{self.gates} gates ({self.gate_names}) x {units} units"
        w = check.dims(0)
        if w is not None:
            check.expect(0, "row", w[0], check.previous, check.from_previous)
            check.expect(0, "column", w[1], self.gates * units, wide)
        u = check.dims(1)
        if u is not None:
            check.expect(1, "row", u[0], units, check.from_units)
            check.expect(1, "column", u[1], self.gates * units, wide)
        b = check.dims(2)
        if b is not None:
            check.expect(2, "entry" if self.weight_depths[2] == 1 else "column",  # a vector or bias rows
                         b[-1], self.gates * units, wide)
        return units

    def from_rtneural_arrays(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray],
                             units: int) -> tuple[LayerSpec, tuple[np.ndarray, ...]]:
        import numpy as np
        return LayerSpec(self.name, units), tuple(np.asarray(weight(j), dtype=np.float32) for j in range(3))
