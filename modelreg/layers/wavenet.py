"""``wavenet``: Neural Amp Modeler's WaveNet, the architecture of most NAM captures, as one layer.

Registry (the keys of NAM's WaveNet config, modelreg's activation names)::

    { type = "wavenet", head_scale = 0.02, layer_arrays = [
        { channels = 16, head_size = 8, kernel_size = 3, dilations = [1, 2, 4, 8], activation = "tanh",
          gated = false, head_bias = false },
        { channels = 8, head_size = 1, kernel_size = 3, dilations = [1, 2, 4, 8], activation = "tanh",
          head_bias = true },
    ] }

Each layer array: ``channels``, ``head_size``, ``kernel_size``, ``dilations`` (one layer per
dilation) required; ``activation`` (``tanh`` (default), ``relu``, ``sigmoid``), ``gated``
(false), ``head_bias`` (false), and NAM's ``input_size`` / ``condition_size`` (what the array
is fed and the condition it mixes in: derived, so optional; when given they must be what the
engine will feed). ``head_scale`` (default 1.0) scales the output. The layer's size (its
``units``) is the last array's ``head_size``.

What it computes is what NAM's engine computes (``NAM/wavenet/model.cpp``, ``detail.h``; the
condition is the layer's input, there is no condition DSP):

- per array: ``h = rechannel(input)`` (1x1, no bias; the first array's input is the layer's
  input, a later array's the previous array's last layer output), and the head accumulator
  starts at zeros (first array) or at the previous array's head output;
- per layer: ``z = conv(h) + input_mixer(condition)`` (a causal dilated conv with bias, and a
  1x1 without bias from the condition), ``a = act(z)``, or gated: ``act(z[:C]) *
  sigmoid(z[C:])`` with the conv and mixer giving ``2C``; ``head += a``; ``h = h +
  layer1x1(a)`` (1x1 with bias: the residual);
- ``head_out = head_rechannel(head)`` (1x1, bias when ``head_bias``); the next array starts
  from ``h`` and ``head_out`` (so its ``channels`` must equal this array's ``head_size``);
- the output: ``head_scale * head_out`` of the last array.

State: ``buf``: every dilated conv's past inputs (``(kernel_size - 1) * dilation`` frames of
``channels`` values), layer after layer, array after array, each oldest frame first, each
frame's channels contiguous (as conv1d's ``buf``). The sequence forward prepends them and runs
full convolutions, so a stream of one frame per call and one call on the whole sequence are
the same arithmetic.

Torch modules (NAM's Python trainer's names, ``nam/models/wavenet``), every one an
``nn.Conv1d``: ``_layer_arrays.{a}._rechannel``, ``_layer_arrays.{a}._layers.{l}._conv``,
``._input_mixer``, ``._layer1x1``, ``_layer_arrays.{a}._head_rechannel``. ``head_scale`` is the
registry's, not a parameter (as in NAM's trainer).

RTNeural has no such layer: both RTNeural exporters refuse an entry holding one (see
:data:`RTNEURAL_REFUSAL`); ``nam`` and ``onnx`` write it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import UsageError
from . import activations
from .base import LayerKind, LayerProblem, LayerSpec, RuntimeLayer, SizeCheck, StateReader, StateSpec

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "KIND", "RTNEURAL_REFUSAL", "LayerArray", "WaveNet", "arrays_of", "history"]

#: The activations a layer array takes (those NAM's engine and modelreg both compute).
ACTIVATIONS = ("tanh", "relu", "sigmoid")
RTNEURAL_REFUSAL = ("RTNeural has no WaveNet layer (neither its JSON loader nor its compile-time layers hold NAM's "
                    "layer arrays); export the entry with nam (NAM's own .nam file) or onnx")

_POSITIVE = {"$ref": "#/$defs/positive_int"}
_ARRAY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["channels", "head_size", "kernel_size", "dilations"],
    "properties": {
        "channels": {**_POSITIVE, "description": "the channels of every layer of the array"},
        "head_size": {**_POSITIVE, "description": "the array's head output size (the next array's channels)"},
        "kernel_size": {**_POSITIVE, "description": "the dilated convs' kernel size"},
        "dilations": {"type": "array", "minItems": 1, "items": _POSITIVE,
                      "description": "one layer per dilation"},
        "activation": {"enum": list(ACTIVATIONS), "description": "tanh (default), relu or sigmoid"},
        "gated": {"type": "boolean", "description": "gated activation: act(z[:C]) * sigmoid(z[C:]) (default false)"},
        "head_bias": {"type": "boolean", "description": "whether the head rechannel has a bias (default false)"},
        "input_size": {**_POSITIVE, "description": "what the array is fed: the layer's input size (first array), "
                                                   "else the previous array's channels"},
        "condition_size": {**_POSITIVE, "description": "the condition's size: the layer's input size"},
    },
}


def history(kernel_size: int, dilation: int) -> int:
    """Past frames a causal dilated conv keeps: ``(kernel_size - 1) * dilation``."""
    return (kernel_size - 1) * dilation


@attrs.frozen
class LayerArray:
    """One layer array of a ``wavenet`` layer, every key resolved (``input_size``, ``condition_size``
    filled in from what the array is fed)."""

    input_size: int
    condition_size: int
    channels: int
    head_size: int
    kernel_size: int
    dilations: tuple[int, ...]
    activation: str = "tanh"
    gated: bool = False
    head_bias: bool = False

    @property
    def z_channels(self) -> int:
        """What the dilated conv and the input mixer give: ``2 * channels`` when gated."""
        return 2 * self.channels if self.gated else self.channels

    def table(self) -> dict[str, Any]:
        """The registry table of this array, every key written."""
        return {"input_size": self.input_size, "condition_size": self.condition_size, "channels": self.channels,
                "head_size": self.head_size, "kernel_size": self.kernel_size, "dilations": list(self.dilations),
                "activation": self.activation, "gated": self.gated, "head_bias": self.head_bias}

    def params(self) -> int:
        """Torch parameters of the array (NAM's weights, ``head_scale`` aside)."""
        c, z = self.channels, self.z_channels
        per_layer = c * z * self.kernel_size + z + self.condition_size * z + c * c + c
        return (self.input_size * c + len(self.dilations) * per_layer
                + c * self.head_size + (self.head_size if self.head_bias else 0))

    def state_size(self) -> int:
        return sum(history(self.kernel_size, d) for d in self.dilations) * self.channels

    def text(self) -> str:
        """For people: ``16 channels, kernel 3, dilations 1..512 (10), tanh, head 8``."""
        d = list(self.dilations)
        dilations = (f"{d[0]}..{d[-1]} ({len(d)})" if len(d) > 3 and d == [d[0] * 2 ** i for i in range(len(d))]
                     else ",".join(str(v) for v in d))
        return (f"{self.channels} channels, kernel {self.kernel_size}, dilations {dilations}, "
                f"{'gated ' if self.gated else ''}{self.activation}, head {self.head_size}"
                f"{' with bias' if self.head_bias else ''}")


def arrays_of(layer: LayerSpec) -> tuple[LayerArray, ...]:
    """The resolved layer arrays of a ``wavenet`` LayerSpec."""
    arrays = layer.option("layer_arrays")
    if not arrays:
        raise UsageError.at("a wavenet LayerSpec needs its options (layer_arrays, head_scale)",
                            expected="modelreg.layers.get_kind('wavenet').spec(table, in_features)", found=repr(layer))
    return tuple(arrays)


@functools.cache
def _module_classes() -> tuple[type, type, type]:
    """The torch modules (made once, on first use: this module imports no torch). Named as NAM's
    Python trainer names them, so the checkpoint keys read alike."""
    from torch import nn

    class _Layer(nn.Module):
        def __init__(self, array: LayerArray, dilation: int) -> None:
            super().__init__()
            self._conv = nn.Conv1d(array.channels, array.z_channels, array.kernel_size, dilation=dilation)
            self._input_mixer = nn.Conv1d(array.condition_size, array.z_channels, 1, bias=False)
            self._layer1x1 = nn.Conv1d(array.channels, array.channels, 1)

    class _LayerArray(nn.Module):
        def __init__(self, array: LayerArray) -> None:
            super().__init__()
            # Created in the order NAM's engine reads the weights: seeded builds follow it.
            self._rechannel = nn.Conv1d(array.input_size, array.channels, 1, bias=False)
            self._layers = nn.ModuleList([_Layer(array, d) for d in array.dilations])
            self._head_rechannel = nn.Conv1d(array.channels, array.head_size, 1, bias=array.head_bias)

    class WaveNetModule(nn.Module):
        """NAM's WaveNet (``_layer_arrays``); the computation is the kind's ``forward``."""

        def __init__(self, arrays: Sequence[LayerArray]) -> None:
            super().__init__()
            self._layer_arrays = nn.ModuleList([_LayerArray(array) for array in arrays])

    return _Layer, _LayerArray, WaveNetModule


def _array_from(table: Mapping[str, Any] | LayerArray, input_size: int, condition_size: int) -> LayerArray:
    if isinstance(table, LayerArray):
        table = table.table()
    return LayerArray(
        input_size=int(table.get("input_size", input_size)), condition_size=int(table.get("condition_size",
                                                                                          condition_size)),
        channels=int(table["channels"]), head_size=int(table["head_size"]), kernel_size=int(table["kernel_size"]),
        dilations=tuple(int(d) for d in table["dilations"]), activation=str(table.get("activation", "tanh")),
        gated=bool(table.get("gated", False)), head_bias=bool(table.get("head_bias", False)))


class WaveNet(LayerKind):
    name = "wavenet"
    registry_keys = {
        "layer_arrays": {"type": "array", "minItems": 1, "items": _ARRAY_SCHEMA,
                         "description": "NAM's layer arrays: tables of channels, head_size, kernel_size, dilations "
                                        "(and activation, gated, head_bias, input_size, condition_size)"},
        "head_scale": {"type": "number", "description": "the factor NAM's WaveNet scales its output by (default 1)"},
    }
    required_keys = ("layer_arrays",)
    missing_key_hints = {"layer_arrays": "NAM's layer arrays: a wavenet layer needs layer_arrays, an array of tables "
                                         "with channels, head_size, kernel_size and dilations"}
    refused_keys = {"units": "a wavenet layer's size is its last layer array's head_size; it takes no units",
                    "activation": "a wavenet layer takes its activation in each layer array (layer_arrays[i]."
                                  "activation), not at the top"}
    examples = (
        {"layer_arrays": [{"channels": 4, "head_size": 2, "kernel_size": 3, "dilations": [1, 2]},
                          {"channels": 2, "head_size": 1, "kernel_size": 3, "dilations": [4, 1], "head_bias": True}],
         "head_scale": 0.5},
        {"layer_arrays": [{"channels": 3, "head_size": 2, "kernel_size": 2, "dilations": [1, 3], "gated": True,
                           "activation": "relu", "head_bias": True}]},
        {"layer_arrays": [{"channels": 2, "head_size": 3, "kernel_size": 1, "dilations": [1],
                           "activation": "sigmoid"}]},
    )
    rtneural_types = ()
    weight_depths = ()
    rtneural_refusal = RTNEURAL_REFUSAL

    # ------------------------------------------------------------------ registry

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        arrays: list[LayerArray] = []
        feed = in_features
        for item in table["layer_arrays"]:
            array = _array_from(item, feed, in_features)
            arrays.append(array)
            feed = array.channels  # a later array is fed the previous one's last layer output
        scale = float(table.get("head_scale", 1.0))
        return LayerSpec("wavenet", arrays[-1].head_size, options=(("head_scale", scale),
                                                                   ("layer_arrays", tuple(arrays))))

    def problems(self, layer: LayerSpec, in_features: int) -> list[LayerProblem]:
        found: list[LayerProblem] = []
        previous: LayerArray | None = None
        for index, array in enumerate(arrays_of(layer)):
            where = f"layer_arrays[{index}]"
            fed = in_features if previous is None else previous.channels
            whence = ("the layer's input" if previous is None
                      else f"layer_arrays[{index - 1}]'s last layer output (its channels)")
            if array.input_size != fed:
                found.append((f"{where}.input_size", f"the array is fed {whence}: {fed} values",
                              str(fed), str(array.input_size)))
            if array.condition_size != in_features:
                found.append((f"{where}.condition_size", "every array mixes in the condition, the layer's input "
                                                         f"({in_features} values)", str(in_features),
                              str(array.condition_size)))
            if previous is not None and array.channels != previous.head_size:
                found.append((f"{where}.channels", f"an array's head accumulator starts from layer_arrays[{index - 1}]"
                                                   f"'s head output ({previous.head_size} values), so its channels "
                                                   "must equal that head_size (NAM's engine refuses otherwise)",
                              str(previous.head_size), str(array.channels)))
            previous = array
        scale = layer.option("head_scale", 1.0)
        if not math.isfinite(scale):
            found.append(("head_scale", "head_scale must be a finite number", "a finite number", str(scale)))
        return found

    def params(self, layer: LayerSpec, in_features: int) -> int:
        return sum(array.params() for array in arrays_of(layer))

    def state(self, layer: LayerSpec) -> StateSpec:
        size = sum(array.state_size() for array in arrays_of(layer))
        return (("buf", size),) if size else ()

    def memory(self, layer: LayerSpec) -> int | None:
        # The layers are chained through h (the condition is the input itself): their histories add
        # up, the receptive field minus one.
        return sum(history(array.kernel_size, d) for array in arrays_of(layer) for d in array.dilations)

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        return ("linear head", -math.inf, math.inf)

    def keys_text(self, layer: LayerSpec) -> str:
        arrays = arrays_of(layer)
        return (f"{len(arrays)} layer array{'s' if len(arrays) > 1 else ''}: "
                + "; ".join(array.text() for array in arrays) + f"; head_scale={layer.option('head_scale'):g}")

    # ------------------------------------------------------------------ torch

    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        module: nn.Module = _module_classes()[2](arrays_of(layer))
        return module

    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        import torch

        batch = x.shape[0]
        condition = x.transpose(1, 2)  # [batch, in, time]
        buffer = state[0].reshape(batch, -1) if state else None
        kept: list[Tensor] = []
        offset = 0
        feed = condition
        head: Tensor | None = None
        for array, array_module in zip(arrays_of(layer), module._layer_arrays):  # type: ignore[arg-type]
            act = activations.torch_activation(array.activation)
            h = array_module._rechannel(feed)
            accumulated = head  # the previous array's head output, or nothing (zeros) for the first
            for dilation, layer_module in zip(array.dilations, array_module._layers):
                past = history(array.kernel_size, dilation)
                if past:
                    assert buffer is not None
                    size = past * array.channels
                    frames = buffer[:, offset:offset + size].reshape(batch, past, array.channels).transpose(1, 2)
                    offset += size
                    full = torch.cat([frames, h], dim=2)  # [batch, channels, past + time]
                    kept.append(full[:, :, -past:].transpose(1, 2).reshape(batch, size))
                else:
                    full = h
                z = layer_module._conv(full) + layer_module._input_mixer(condition)
                if array.gated:
                    a = act(z[:, :array.channels]) * torch.sigmoid(z[:, array.channels:])
                else:
                    a = act(z)
                accumulated = a if accumulated is None else accumulated + a
                h = h + layer_module._layer1x1(a)
            assert accumulated is not None
            head = array_module._head_rechannel(accumulated)
            feed = h
        assert head is not None
        y = (head * float(layer.option("head_scale", 1.0))).transpose(1, 2)
        new_state = (torch.cat(kept, dim=1).reshape(1, batch, -1),) if kept else ()
        return y, new_state

    # ------------------------------------------------------------------ RTNeural: refused

    def _refuse(self, what: str) -> UsageError:
        return UsageError.at(f"a wavenet layer cannot be {what}: {RTNEURAL_REFUSAL}",
                             expected="the nam or onnx exporter", found='type = "wavenet"')

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        raise self._refuse("written to an RTNeural JSON file")

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        raise self._refuse("read from an RTNeural JSON file")

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        raise self._refuse("written to an RTNeural JSON file")

    def rtneural_schema(self) -> dict[str, Any]:
        return {}  # no RTNeural type names it (rtneural_types is empty)

    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        raise self._refuse("read from an RTNeural JSON file")

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        # The numpy reference runtime runs RTNeural JSON files, which cannot hold a WaveNet:
        # not applicable (as for residual blocks).
        raise self._refuse("run by the numpy reference runtime of RTNeural JSON files")

    def cpp_types(self, layer: LayerSpec, in_features: int) -> list[str]:
        raise self._refuse("written as RTNeural compile-time layers (rtneural-cpp)")


KIND = WaveNet()
