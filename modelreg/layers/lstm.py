"""``lstm``: PyTorch's ``nn.LSTM`` (batch_first; ``num_layers`` stacked, see recurrent.py); RTNeural ``lstm``.

Layout: both use the gate order i, f, g(c), o, so RTNeural's ``W = weight_ih_l0.T``
``[in][4u]`` and ``U = weight_hh_l0.T`` ``[u][4u]`` need no reordering.
RTNeural has one bias vector and PyTorch two that are simply added inside
every gate, so ``b = bias_ih_l0 + bias_hh_l0`` (a float32 sum, as RTNeural's
``torch_helpers.h`` does it in a float build). Read back, the sum becomes
``bias_ih_l0`` and ``bias_hh_l0`` is zero: the same function, and writing it
again gives the same file. State: ``h`` and ``c``, each ``[1, batch, units]`` (a stack of N:
``h.l0`` .. ``h.l{N-1}``, ``c.l0`` .. ``c.l{N-1}``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import activations
from .base import LayerSpec, RuntimeLayer, StateReader, StateSpec
from .recurrent import RTNEURAL_ACTIVATION, Recurrent, num_layers

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn
__all__ = ["KIND", "LSTMLayer"]


class LSTMLayer:
    """RTNeural's LSTM: gates i, f, c, o in the columns of W ``[in, 4u]``, U ``[u, 4u]``, b ``[4u]``."""

    is_recurrent = True

    def __init__(self, w: np.ndarray, u: np.ndarray, b: np.ndarray) -> None:
        import numpy as np

        self.w = np.ascontiguousarray(w, dtype=np.float32)
        self.u = np.ascontiguousarray(u, dtype=np.float32)
        self.b = np.ascontiguousarray(b, dtype=np.float32)
        self.in_size = int(self.w.shape[0])
        self.out_size = int(self.u.shape[0])
        self.h = np.zeros((1, self.out_size), np.float32)
        self.c = np.zeros((1, self.out_size), np.float32)

    def reset(self, batch: int) -> None:
        import numpy as np

        self.h = np.zeros((batch, self.out_size), np.float32)
        self.c = np.zeros((batch, self.out_size), np.float32)

    def forward(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        sigmoid = activations.sigmoid
        n = self.out_size
        gates = x @ self.w + self.h @ self.u + self.b
        i = sigmoid(gates[:, :n])
        f = sigmoid(gates[:, n:2 * n])
        g = np.tanh(gates[:, 2 * n:3 * n])
        o = sigmoid(gates[:, 3 * n:])
        self.c = f * self.c + i * g
        self.h = o * np.tanh(self.c)
        return self.h

    def __repr__(self) -> str:
        return f"LSTMLayer({self.in_size} -> {self.out_size})"


class LSTM(Recurrent):
    name = "lstm"
    gates = 4
    cpp_template = "LSTMLayerT"
    gate_names = "i, f, c, o"
    torch_loader = "loadLSTM"
    rtneural_types = ("lstm",)
    weight_depths = (2, 2, 1)

    def _module(self) -> Callable[..., nn.Module]:
        from torch import nn

        return nn.LSTM

    def state(self, layer: LayerSpec) -> StateSpec:
        return self.stacked_state(layer, ("h", "c"))

    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        count = num_layers(layer)
        h, c = self.stacked(state, count)
        y, (h, c) = module(x, (h, c))
        return y, self.split((h, c), count)

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        import numpy as np

        w_ih, w_hh, b_ih, b_hh = self.take(layer, in_features, weights, prefix)
        # An overflow to inf is reported (with its key) when the model is checked.
        with np.errstate(over="ignore"):
            bias = b_ih + b_hh
        return {"type": "lstm", "activation": RTNEURAL_ACTIVATION, "shape": [None, None, layer.units],
                "weights": [np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T), np.ascontiguousarray(bias)]}

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        import numpy as np

        spec, (w, u, b) = self.from_rtneural_arrays(layer, weight, units)
        # bias_hh is -0.0, not +0.0: x + (-0.0) is x for every float, -0.0 included, so writing
        # the layer again (b_ih + b_hh) gives the file's bits back; +0.0 would turn a -0.0 bias into +0.0.
        return spec, self.torch_state(w.T, u.T, b, np.full_like(b, -0.0))

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        self._single(layer, "an RTNeural layer's shapes")
        u = layer.units
        return ((in_features, 4 * u), (u, 4 * u), (4 * u,))  # one summed bias

    def rtneural_schema(self) -> dict[str, Any]:
        return {
            "properties": {
                "weights": {
                    "type": "array",
                    "description": "[W, U, b]: W is [inputs][4*units], U is [units][4*units], b is [4*units], "
                                   "gates in the order i, f, c, o",
                    "minItems": 3,
                    "maxItems": 3,
                    "prefixItems": [{"$ref": "#/$defs/matrix"}, {"$ref": "#/$defs/matrix"}, {"$ref": "#/$defs/vector"}],
                }
            }
        }

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        # The loader never reads a recurrent layer's activation.
        return [LSTMLayer(weight(0), weight(1), weight(2))]


KIND = LSTM()
