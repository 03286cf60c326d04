"""What the ``lstm`` and ``gru`` kinds share: one ``batch_first`` torch RNN each.

Not a kind itself. A recurrent layer has ``gates`` gate blocks, each with an
input kernel, a recurrent kernel and (in PyTorch) two bias vectors; its
internal activations are fixed (tanh/sigmoid), so it takes no ``activation``.
``bias = false`` is torch's ``bias=False``: neither bias vector exists (no
``bias_ih_l0`` / ``bias_hh_l0`` entries, no parameters); RTNeural's loader
always reads a bias, so the file holds zeros there.

``num_layers = N`` (default 1) is torch's ``num_layers``: one module stacking N
layers of ``units`` each (layer 0 fed the layer's input, layer k the output of
layer k-1; ``bias`` applies to all), its entries ``weight_ih_l0`` ..
``weight_ih_l{N-1}`` etc. under the layer's prefix, as a user's
``nn.LSTM(num_layers=N)`` saves them. RTNeural has no stacked layer: the file
holds N consecutive layers, read as torch_helpers' ``loadLSTM`` / ``loadGRU``
read them with ``layer_index`` (:meth:`Recurrent.unstack` gives each as a
single-layer spec whose ``layer_index`` option picks its entries). The state
is one ``h`` (and ``c``) per stacked layer: ``h.l0`` .. ``h.l{N-1}``, then
``c.l0`` .. (torch's ``[N, batch, units]`` split by layer). ``num_layers = 1``
is recorded nowhere: such a layer is the single layer it always was.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ..errors import UsageError
from .base import BIAS_KEY, LayerKind, LayerSpec, Leaf, SizeCheck, StateReader, StateSpec, bias_option

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn
__all__ = ["NUM_LAYERS_KEY", "Recurrent", "layer_index", "num_layers"]

#: The registry key of a stacked recurrent layer, as torch's ``num_layers`` argument.
NUM_LAYERS_KEY: Mapping[str, Any] = {
    "type": "integer",
    "minimum": 1,
    "description": "an integer >= 1: how many layers of units each the layer stacks, as torch's num_layers "
                   "(default 1)",
}


def num_layers(layer: LayerSpec) -> int:
    """The layers a recurrent ``layer`` stacks (its ``num_layers``; 1 when not set)."""
    return int(layer.option("num_layers", 1))


def layer_index(layer: LayerSpec) -> int:
    """Which layer of its torch module a single (unstacked) recurrent layer is: the ``_l{k}`` of its
    state-dict entries, torch_helpers' ``layer_index`` (0 for a registry layer)."""
    return int(layer.option("layer_index", 0))


# RTNeural's Keras exporter writes the cell activation on recurrent layers;
# the loader never reads it.
RTNEURAL_ACTIVATION = "tanh"


class Recurrent(LayerKind):
    """Base of the recurrent kinds; subclasses set ``gates``, ``gate_names`` and the layouts."""

    gates: ClassVar[int]
    #: RTNeural's gate order, as messages show it (``"i, f, c, o"``).
    gate_names: ClassVar[str]
    registry_keys = {"units": {"$ref": "#/$defs/positive_int"}, "num_layers": NUM_LAYERS_KEY, "bias": BIAS_KEY}
    required_keys = ("units",)
    refused_keys = {"activation": "lstm and gru layers take no activation: they use tanh and sigmoid internally "
                                  "(add an activation layer after them for another one)"}
    examples = ({"units": 1}, {"units": 6}, {"units": 5, "bias": False}, {"units": 3, "num_layers": 3},
                {"units": 2, "num_layers": 2, "bias": False})

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        # Only a stack is recorded (as only bias = false is): num_layers = 1 is the layer it always was.
        stacked = (("num_layers", int(table["num_layers"])),) if table.get("num_layers", 1) != 1 else ()
        return LayerSpec(self.name, table["units"], options=tuple(sorted((*bias_option(table), *stacked))))

    def bias_entries(self, layer: LayerSpec) -> tuple[str, ...]:
        first = layer_index(layer)
        return tuple(f"bias_{side}_l{k}" for k in range(first, first + num_layers(layer)) for side in ("ih", "hh"))

    def params(self, layer: LayerSpec, in_features: int) -> int:
        hidden = layer.units
        # Per stacked layer: kernel (in x gates*h) + recurrent kernel (h x gates*h) + two bias vectors
        # (unless bias = false); layer 0 is fed in_features values, the others h.
        biases = 2 * self.gates * hidden if layer.has_bias else 0
        first = self.gates * hidden * (in_features + hidden) + biases
        return first + (num_layers(layer) - 1) * (self.gates * hidden * 2 * hidden + biases)

    def stacked_state(self, layer: LayerSpec, names: tuple[str, ...]) -> StateSpec:
        """One tensor per name, or (a stack) one per name and stacked layer: ``h.l0``, ``h.l1``, ..."""
        count = num_layers(layer)
        if count == 1:
            return tuple((name, layer.units) for name in names)
        return tuple((f"{name}.l{k}", layer.units) for name in names for k in range(count))

    def unstack(self, leaf: Leaf) -> list[Leaf]:
        layer = leaf.layer
        count = num_layers(layer)
        if count == 1:
            return [leaf]
        options = tuple(item for item in layer.options if item[0] != "num_layers")
        return [Leaf(attrs.evolve(layer, options=tuple(sorted((*options, ("layer_index", k))))),
                     leaf.in_features if k == 0 else layer.units, f"{leaf.path}_l{k}", leaf.prefix)
                for k in range(count)]

    def _single(self, layer: LayerSpec, what: str) -> None:
        """Refuse a stack where one RTNeural layer is meant (callers open stacks with unstack())."""
        if num_layers(layer) != 1:
            raise UsageError.at(f"a {self.name} layer with num_layers = {num_layers(layer)} is that many RTNeural "
                                f"layers: {what} takes them one by one (LayerKind.unstack)", key="num_layers",
                                expected="1", found=num_layers(layer))

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        # LSTM: o * tanh(c); GRU: a convex mix of tanh and the previous state, starting at zero.
        return ("recurrent (h in [-1, 1])", -1.0, 1.0)

    def _module(self) -> Callable[..., nn.Module]:
        raise NotImplementedError

    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        # One torch module for the whole stack: its seeded draws and entry names are torch's own.
        return self._module()(in_features, layer.units, num_layers=num_layers(layer), batch_first=True,
                              bias=layer.has_bias)

    @staticmethod
    def stacked(state: tuple[Tensor, ...], count: int) -> list[Tensor]:
        """The state as torch takes it: per name, the ``count`` layers' ``[1, batch, units]`` tensors
        joined into one ``[count, batch, units]``."""
        if count == 1:
            return list(state)
        import torch

        return [torch.cat(state[i:i + count], 0) for i in range(0, len(state), count)]

    @staticmethod
    def split(tensors: Sequence[Tensor], count: int) -> tuple[Tensor, ...]:
        """The inverse of :meth:`stacked`: torch's ``[count, batch, units]`` tensors, layer by layer."""
        if count == 1:
            return tuple(tensors)
        return tuple(part for tensor in tensors for part in tensor.split(1, 0))

    def take(self, layer: LayerSpec, in_features: int, weights: StateReader,
             prefix: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """torch's ``weight_ih_l{k}``, ``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` (zeros when
        bias=False) of the single layer ``layer`` (k: its :func:`layer_index`)."""
        import numpy as np

        self._single(layer, "the RTNeural layout")
        k = layer_index(layer)
        units, wide = layer.units, self.gates * layer.units
        w_ih = weights.take(f"{prefix}weight_ih_l{k}", (wide, in_features))
        w_hh = weights.take(f"{prefix}weight_hh_l{k}", (wide, units))
        # A bias-free layer reads no bias (a state dict that has one is refused as left over).
        has_ih = layer.has_bias and weights.has(f"{prefix}bias_ih_l{k}")
        has_hh = layer.has_bias and weights.has(f"{prefix}bias_hh_l{k}")
        if has_ih != has_hh:
            missing = f"{prefix}bias_hh_l{k}" if has_ih else f"{prefix}bias_ih_l{k}"
            raise UsageError.at("a recurrent layer needs both bias vectors or neither", key=missing,
                                expected=f"an array of shape [{wide}]")
        if has_ih:
            b_ih = weights.take(f"{prefix}bias_ih_l{k}", (wide,))
            b_hh = weights.take(f"{prefix}bias_hh_l{k}", (wide,))
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
        # A stack is that many compile-time layers, the first fed in_features values, the others units.
        return [f"RTNeural::{self.cpp_template}<float, {in_features if k == 0 else layer.units}, {layer.units}>"
                for k in range(num_layers(layer))]

    def cpp_set_weights(self, layer: LayerSpec, in_features: int, target: str, weights: str,
                        shapes: Sequence[tuple[int, ...]]) -> list[str]:
        self._single(layer, "the embedded-weights loader")
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

    def torch_tensors(self, layer: LayerSpec, in_features: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        # A single (unstacked) layer: its layer_index picks the _l{k} tensors of the torch module.
        k, wide, units = layer_index(layer), self.gates * layer.units, layer.units
        bias = ((f"bias_ih_l{k}", (wide,)), (f"bias_hh_l{k}", (wide,))) if layer.has_bias else ()
        return ((f"weight_ih_l{k}", (wide, in_features)), (f"weight_hh_l{k}", (wide, units)), *bias)

    def cpp_load_torch(self, layer: LayerSpec, in_features: int, target: str, doc: str, prefix: str) -> list[str]:
        # layer_index: which layer of a stacked torch module (nn.GRU(num_layers=N)) ``target`` is:
        # torch_helpers reads its ``weight_ih_l{layer_index}``... (one call per stacked layer).
        return [f'RTNeural::torch_helpers::{self.torch_loader}<float>({doc}, "{prefix}", {target}, '
                f'{"true" if layer.has_bias else "false"}, {layer_index(layer)});']

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
