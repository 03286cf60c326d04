"""``gru``: PyTorch's ``nn.GRU`` (batch_first; ``num_layers`` stacked, see recurrent.py); RTNeural ``gru``.

Layout: PyTorch's gate order is r, z, n, RTNeural's (Keras's) is z, r, h, so
the first two gate blocks are swapped in W ``[in][3u]``, U ``[u][3u]`` and both
biases. The bias rows are NOT summed: RTNeural's ``b`` is ``[2][3u]``, row 0
the input bias and row 1 the recurrent bias, which RTNeural (like PyTorch's
``b_hn``) keeps inside the reset-gate product ``r * (U_h h + b1_h)``; so row 0
= ``bias_ih_l0`` and row 1 = ``bias_hh_l0``, each with r and z swapped. The
layout is lossless both ways. State: ``h``, ``[1, batch, units]`` (a stack of N: ``h.l0`` ..
``h.l{N-1}``).
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
__all__ = ["KIND", "GRULayer"]


def _swap_rz(array: np.ndarray, hidden: int) -> np.ndarray:
    """PyTorch's r, z, n blocks (along axis 0) <-> RTNeural's z, r, h (its own inverse)."""
    import numpy as np

    return np.concatenate([array[hidden:2 * hidden], array[:hidden], array[2 * hidden:]], axis=0)


class GRULayer:
    """RTNeural's GRU: gates z, r, h in the columns of W ``[in, 3u]``, U ``[u, 3u]``;
    ``b[0]`` is the input bias, ``b[1]`` the recurrent bias (inside the reset product)."""

    is_recurrent = True

    def __init__(self, w: np.ndarray, u: np.ndarray, b: np.ndarray) -> None:
        import numpy as np

        self.w = np.ascontiguousarray(w, dtype=np.float32)
        self.u = np.ascontiguousarray(u, dtype=np.float32)
        self.b = np.ascontiguousarray(b, dtype=np.float32)
        self.in_size = int(self.w.shape[0])
        self.out_size = int(self.u.shape[0])
        self.h = np.zeros((1, self.out_size), np.float32)

    def reset(self, batch: int) -> None:
        import numpy as np

        self.h = np.zeros((batch, self.out_size), np.float32)

    def forward(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        sigmoid = activations.sigmoid
        n = self.out_size
        xs = x @ self.w + self.b[0]
        hs = self.h @ self.u + self.b[1]
        z = sigmoid(xs[:, :n] + hs[:, :n])
        r = sigmoid(xs[:, n:2 * n] + hs[:, n:2 * n])
        candidate = np.tanh(xs[:, 2 * n:] + r * hs[:, 2 * n:])
        self.h = (np.float32(1) - z) * candidate + z * self.h
        return self.h

    def __repr__(self) -> str:
        return f"GRULayer({self.in_size} -> {self.out_size})"


class GRU(Recurrent):
    name = "gru"
    gates = 3
    cpp_template = "GRULayerT"
    gate_names = "z, r, h"
    torch_loader = "loadGRU"
    rtneural_types = ("gru",)
    weight_depths = (2, 2, 2)

    def _module(self) -> Callable[..., nn.Module]:
        from torch import nn

        return nn.GRU

    def state(self, layer: LayerSpec) -> StateSpec:
        return self.stacked_state(layer, ("h",))

    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        count = num_layers(layer)
        (h,) = self.stacked(state, count)
        y, h = module(x, h)
        return y, self.split((h,), count)

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        import numpy as np

        units = layer.units
        w_ih, w_hh, b_ih, b_hh = self.take(layer, in_features, weights, prefix)
        bias = np.stack([_swap_rz(b_ih, units), _swap_rz(b_hh, units)])
        return {"type": "gru", "activation": RTNEURAL_ACTIVATION, "shape": [None, None, units],
                "weights": [np.ascontiguousarray(_swap_rz(w_ih, units).T),
                            np.ascontiguousarray(_swap_rz(w_hh, units).T),
                            np.ascontiguousarray(bias)]}

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        spec, (w, u, b) = self.from_rtneural_arrays(layer, weight, units)
        return spec, self.torch_state(_swap_rz(w.T, units), _swap_rz(u.T, units),
                                      _swap_rz(b[0], units), _swap_rz(b[1], units))

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        self._single(layer, "an RTNeural layer's shapes")
        u = layer.units
        return ((in_features, 3 * u), (u, 3 * u), (2, 3 * u))  # input and recurrent bias rows

    def rtneural_schema(self) -> dict[str, Any]:
        return {
            "properties": {
                "weights": {
                    "type": "array",
                    "description": "[W, U, b]: W is [inputs][3*units], U is [units][3*units], b is [2][3*units] "
                                   "(input bias row, recurrent bias row), gates in the order z, r, h",
                    "minItems": 3,
                    "maxItems": 3,
                    "prefixItems": [
                        {"$ref": "#/$defs/matrix"},
                        {"$ref": "#/$defs/matrix"},
                        {"$ref": "#/$defs/matrix", "minItems": 2, "maxItems": 2,
                         "description": "two bias rows: [input bias, recurrent bias]"},
                    ],
                }
            }
        }

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        # The loader never reads a recurrent layer's activation.
        return [GRULayer(weight(0), weight(1), weight(2))]


KIND = GRU()
