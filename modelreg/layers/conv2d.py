"""``conv2d``: RTNeural's streaming 2-D convolution over (time, feature) frames; RTNeural ``conv2d``.

What RTNeural computes (``conv2d/conv2d.h``, ``conv1d_stateless/``; established
against its C++ loader, STL and Eigen backends, in tests/test_conv2d.py):

* A frame holds ``num_features_in`` features of ``num_filters_in`` filters
  (channels), **feature-major**: value ``(f, c)`` sits at ``f * C + c`` (the
  filters of one feature are adjacent; Keras's channels-last ``[F, C]``
  flattened). The output frame is laid out the same way with the output
  features and ``filters``.
* Time is causal and streamed: output ``t`` sums kernel time slice ``i`` applied
  to input frame ``t - (kernel_size_time - 1 - i) * dilation`` (slice 0 is the
  oldest frame, the last slice the current one; frames before the stream are
  zeros). The layer keeps the last ``(kernel_size_time - 1) * dilation`` input
  frames as state. Dilation acts along time only.
* Along the features there is no state: ``strides`` and ``padding`` act there,
  as TensorFlow does: ``"valid"`` gives ``ceil((F - kf + 1) / s)`` outputs,
  ``"same"`` gives ``ceil(F / s)`` with ``max(kf - s, 0)`` (F divisible by s)
  or ``max(kf - F % s, 0)`` zeros padded, the smaller half on the left. The
  loader treats every ``padding`` other than ``"valid"`` as same; modelreg
  writes and accepts only ``"valid"`` and ``"same"``.
* The file's kernel is ``[kernel_size_time][kernel_size_feature][num_filters_in][filters]``
  (Keras's Conv2D kernel), the bias ``[filters]``. So torch's
  ``nn.Conv2d(C, filters, (kernel_size_time, kernel_size_feature))`` weight
  ``[filters, C, kt, kf]`` is written as ``weight.permute(2, 3, 1, 0)``, with
  no axis reversed: torch's cross-correlation over ``[batch, C, time, F]``
  with ``(kernel_size_time - 1) * dilation`` zero frames padded on the left
  of time is exactly RTNeural's stream.

Registry: ``filters``, ``num_features_in``, ``kernel_size_time``,
``kernel_size_feature``, ``dilation`` (1), ``strides`` (1), ``padding``
("valid"), ``activation`` (linear), ``bias`` (true). ``num_filters_in`` is the input size
divided by ``num_features_in``; the layer's size (``units``) is computed:
output features x ``filters``. ``bias = false`` is torch's ``bias=False``: no
checkpoint entry, a bias of zeros in the RTNeural file (the loader reads one).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import activations
from .base import (BIAS_KEY, LayerKind, LayerProblem, LayerSpec, RuntimeLayer, SizeCheck, StateReader, StateSpec,
                   bias_option)

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn
__all__ = ["KIND", "Conv2DLayer", "features_out", "feature_padding"]

PADDINGS = ("valid", "same")
# The keys RTNeural's loader reads with .at(...).back() (an array, or a plain number, whose last entry counts).
_ARRAY_KEYS = ("num_filters_in", "num_features_in", "num_filters_out", "kernel_size_time", "kernel_size_feature",
               "dilation", "strides")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def features_out(features: int, kernel: int, stride: int, padding: str) -> int:
    """Output features along the feature axis (RTNeural's computeNumFeaturesOut: TensorFlow's rule)."""
    if padding == "valid":
        return _ceil_div(features - kernel + 1, stride)
    return _ceil_div(features, stride)


def feature_padding(features: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    """(left, right) zeros padded along the features (RTNeural's computePadLeft/Right: TensorFlow's "same")."""
    if padding == "valid":
        return 0, 0
    total = max(kernel - stride if features % stride == 0 else kernel - features % stride, 0)
    return total // 2, total - total // 2


def same_padding_overrun(features: int, kernel: int, stride: int) -> bool:
    """Whether RTNeural's "same" padding reads past the frame for these sizes.

    RTNeural's Conv1DStateless (every backend) computes the outputs whose window starts
    in the left padding as input columns ``0 .. kernel - pad_left + j * stride``, without
    clipping at the right edge: when that exceeds ``features`` (a kernel much longer than
    the features) it reads beyond the frame, and the result is whatever memory holds there
    (garbage in C++ with many filters; zeros by luck with few).
    """
    left, _ = feature_padding(features, kernel, stride, "same")
    return any(kernel - left + j * stride > features for j in range(_ceil_div(left, stride)))


_OVERRUN = ("with padding \"same\" this kernel is longer than RTNeural can pad: its conv2d reads past "
            "the frame's {features} features for the first outputs (undefined result; garbage in C++)")


def _overrun_fix(features: int, stride: int) -> str:
    longest = max((k for k in range(1, 4 * features + 8) if not same_padding_overrun(features, k, stride)), default=1)
    # An overrun needs a kernel longer than the features, so "valid" is no way out either.
    return f"at most {longest} for {features} features with strides {stride}"


class Conv2DLayer:
    """RTNeural's conv2d in the numpy reference runtime: kernel ``[kt, kf, C, Co]``, frames feature-major."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray, features: int, dilation: int, stride: int,
                 padding: str) -> None:
        import numpy as np

        self.kernel = np.ascontiguousarray(kernel, dtype=np.float32)
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)
        self.kernel_time, self.kernel_feature, self.filters_in, self.filters = (int(n) for n in self.kernel.shape)
        self.features, self.dilation, self.stride = features, dilation, stride
        self.pad = feature_padding(features, self.kernel_feature, stride, padding)
        self.features_out = features_out(features, self.kernel_feature, stride, padding)
        self.in_size = features * self.filters_in
        self.out_size = self.features_out * self.filters
        self.history = (self.kernel_time - 1) * dilation
        self.is_recurrent = self.history > 0
        self.past = np.zeros((1, self.history, features, self.filters_in), np.float32)

    def reset(self, batch: int) -> None:
        import numpy as np

        self.past = np.zeros((batch, self.history, self.features, self.filters_in), np.float32)

    def forward(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        frame = x.reshape(x.shape[0], 1, self.features, self.filters_in)
        if self.history:  # without history the layer is stateless: never reset to the batch size
            frames = np.concatenate([self.past, frame], axis=1)  # [batch, history + 1, F, C], oldest first
            self.past = frames[:, 1:]
        else:
            frames = frame
        left, right = self.pad
        if left or right:
            frames = np.pad(frames, ((0, 0), (0, 0), (left, right), (0, 0)))
        out = np.broadcast_to(self.bias, (x.shape[0], self.features_out, self.filters)).copy()
        span = self.stride * (self.features_out - 1) + 1
        for i in range(self.kernel_time):
            for j in range(self.kernel_feature):
                # Input features j, j + s, ... of the frame kernel slice i reaches back to.
                out += frames[:, i * self.dilation, j:j + span:self.stride, :] @ self.kernel[i, j]
        return out.reshape(x.shape[0], self.out_size)

    def __repr__(self) -> str:
        return (f"Conv2DLayer({self.features}x{self.filters_in} -> {self.features_out}x{self.filters}, "
                f"kernel {self.kernel_time}x{self.kernel_feature}, dilation {self.dilation}, stride {self.stride})")


def _positive(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if float(value).is_integer() and value >= 1:
        return int(value)
    return None


def read_key(layer: Mapping[str, Any], key: str) -> int | None:
    """A conv2d key as the loader reads it (``.back()``: the last entry of an array, or the number itself)."""
    value = layer.get(key)
    if isinstance(value, (list, tuple)):
        value = value[-1] if value else None
    return _positive(value)


class Conv2D(LayerKind):
    name = "conv2d"
    registry_keys = {
        "filters": {"$ref": "#/$defs/positive_int"},
        "num_features_in": {"$ref": "#/$defs/positive_int"},
        "kernel_size_time": {"$ref": "#/$defs/positive_int"},
        "kernel_size_feature": {"$ref": "#/$defs/positive_int"},
        "dilation": {"$ref": "#/$defs/positive_int"},
        "strides": {"$ref": "#/$defs/positive_int"},
        "padding": {"enum": list(PADDINGS)},
        "activation": {"enum": list(activations.NAMES)},
        "bias": BIAS_KEY,
    }
    required_keys = ("filters", "num_features_in", "kernel_size_time", "kernel_size_feature")
    missing_key_hints = {
        "filters": "the number of output filters (channels) of the conv2d layer",
        "num_features_in": "how many features an input frame holds (the frame is features x filters, feature-major)",
        "kernel_size_time": "the kernel's length along time (frames)",
        "kernel_size_feature": "the kernel's length along the features",
    }
    refused_keys = {"units": "a conv2d layer's size follows from filters, num_features_in, kernel_size_feature, "
                             "strides and padding (output features x filters)"}
    examples = (
        {"filters": 2, "num_features_in": 3, "kernel_size_time": 2, "kernel_size_feature": 2},
        {"filters": 2, "num_features_in": 3, "kernel_size_time": 3, "kernel_size_feature": 2, "dilation": 2,
         "strides": 2, "padding": "same", "activation": "tanh"},
        # One frame of time: a stateless conv2d.
        {"filters": 2, "num_features_in": 3, "kernel_size_time": 1, "kernel_size_feature": 2, "padding": "same"},
        {"filters": 3, "num_features_in": 1, "kernel_size_time": 2, "kernel_size_feature": 1, "activation": "relu"},
        {"filters": 2, "num_features_in": 3, "kernel_size_time": 2, "kernel_size_feature": 2, "padding": "same",
         "activation": "tanh", "bias": False},
    )
    rtneural_types = ("conv2d",)
    loader_adds_activation = True
    weight_depths = (4, 1)

    # ------------------------------------------------------------------ registry

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        features = int(table["num_features_in"])
        options: dict[str, Any] = {
            "filters": int(table["filters"]),
            "num_features_in": features,
            "num_filters_in": max(in_features // features, 0),  # problems() reports a remainder
            "kernel_size_time": int(table["kernel_size_time"]),
            "kernel_size_feature": int(table["kernel_size_feature"]),
            "dilation": int(table.get("dilation", 1)),
            "strides": int(table.get("strides", 1)),
            "padding": str(table.get("padding", "valid")),
            **dict(bias_option(table)),
        }
        out = features_out(features, options["kernel_size_feature"], options["strides"], options["padding"])
        return LayerSpec("conv2d", max(out, 0) * options["filters"], table.get("activation", "linear"),
                         tuple(sorted(options.items())))

    def problems(self, layer: LayerSpec, in_features: int) -> list[LayerProblem]:
        features = layer.option("num_features_in")
        found: list[LayerProblem] = []
        if in_features % features:
            found.append(("num_features_in", f"the layer's {in_features} inputs are not whole frames of "
                          f"{features} features (each feature holds num_filters_in filters)",
                          f"a divisor of {in_features}", str(features)))
        kernel = layer.option("kernel_size_feature")
        stride = layer.option("strides")
        if layer.option("padding") == "valid" and kernel > features:
            same = "" if same_padding_overrun(features, kernel, stride) else ', or padding = "same"'
            found.append(("kernel_size_feature", f"with padding \"valid\" the kernel cannot be longer than the "
                          f"{features} input features (no output would remain)",
                          f"at most {features}{same}", str(kernel)))
        if layer.option("padding") == "same" and same_padding_overrun(features, kernel, stride):
            found.append(("kernel_size_feature", _OVERRUN.format(features=features),
                          _overrun_fix(features, stride), str(kernel)))
        return found

    def params(self, layer: LayerSpec, in_features: int) -> int:
        o = dict(layer.options)
        filters_in = in_features // o["num_features_in"]
        bias = o["filters"] if layer.has_bias else 0
        return o["filters"] * filters_in * o["kernel_size_time"] * o["kernel_size_feature"] + bias

    def history(self, layer: LayerSpec) -> int:
        """Past input frames the layer keeps: ``(kernel_size_time - 1) * dilation``."""
        return (layer.option("kernel_size_time") - 1) * layer.option("dilation")

    def state(self, layer: LayerSpec) -> StateSpec:
        frames = self.history(layer)
        size = frames * layer.option("num_features_in") * layer.option("num_filters_in")
        return (("frames", size),) if size else ()

    def memory(self, layer: LayerSpec) -> int | None:
        return self.history(layer)  # its buffer: the last (kernel_size_time - 1) * dilation frames

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        return activations.output_range(layer.activation)

    # ------------------------------------------------------------------ torch

    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        from torch import nn

        o = dict(layer.options)
        # Padding is applied in forward(): time causally from the state, features as TensorFlow's "same".
        return nn.Conv2d(in_features // o["num_features_in"], o["filters"],
                         (o["kernel_size_time"], o["kernel_size_feature"]),
                         stride=(1, o["strides"]), dilation=(o["dilation"], 1), bias=layer.has_bias)

    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        import torch
        from torch.nn import functional

        o = dict(layer.options)
        features, filters_in = o["num_features_in"], o["num_filters_in"]
        history = self.history(layer)
        size = features * filters_in
        if history:
            past = state[0].reshape(-1, history, size)  # [1, batch, history*size] -> [batch, history, size]
            frames = torch.cat([past, x], dim=1)
            new_state: tuple[Tensor, ...] = (frames[:, -history:].reshape(1, -1, history * size),)
        else:
            frames, new_state = x, ()
        # [batch, time, F*C] feature-major -> [batch, C, time, F], the layout nn.Conv2d convolves.
        grid = frames.reshape(frames.shape[0], frames.shape[1], features, filters_in).permute(0, 3, 1, 2)
        left, right = feature_padding(features, o["kernel_size_feature"], o["strides"], o["padding"])
        if left or right:
            grid = functional.pad(grid, (left, right))
        y = module(grid)  # [batch, filters, time, F_out]
        y = y.permute(0, 2, 3, 1)
        y = y.reshape(y.shape[0], y.shape[1], layer.units)
        return activations.torch_activation(layer.activation)(y), new_state

    # ------------------------------------------------------------------ RTNeural layout, both ways

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        import numpy as np

        o = dict(layer.options)
        filters_in = in_features // o["num_features_in"]
        weight = weights.take(prefix + "weight", (o["filters"], filters_in, o["kernel_size_time"],
                                                  o["kernel_size_feature"]))
        bias = (weights.take(prefix + "bias", (o["filters"],)) if layer.has_bias and weights.has(prefix + "bias")
                else np.zeros(o["filters"], np.float32))  # RTNeural always reads a bias: zeros for none
        return {
            "type": "conv2d",
            "activation": activations.to_rtneural_name(layer.activation),
            # 3 entries: the loader reads the size from the last one; the features and filters are in the keys below.
            "shape": [None, None, layer.units],
            "num_filters_in": [filters_in],
            "num_features_in": [o["num_features_in"]],
            "num_filters_out": [o["filters"]],
            "kernel_size_time": [o["kernel_size_time"]],
            "kernel_size_feature": [o["kernel_size_feature"]],
            "dilation": [o["dilation"]],
            "strides": [o["strides"]],
            "padding": o["padding"],
            # torch [out, in, time, feature] -> RTNeural (Keras) [time, feature, in, out]; no axis reversed.
            "weights": [np.ascontiguousarray(weight.transpose(2, 3, 1, 0)), np.ascontiguousarray(bias)],
        }

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        import numpy as np

        table = {"type": "conv2d", "filters": read_key(layer, "num_filters_out"),
                 "num_features_in": read_key(layer, "num_features_in"),
                 "kernel_size_time": read_key(layer, "kernel_size_time"),
                 "kernel_size_feature": read_key(layer, "kernel_size_feature"),
                 "dilation": read_key(layer, "dilation"), "strides": read_key(layer, "strides"),
                 "padding": layer["padding"],
                 "activation": activations.from_rtneural_name(layer.get("activation", ""))}
        spec = self.spec(table, in_features)
        kernel = np.asarray(weight(0), dtype=np.float32)
        return spec, {"weight": np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)),
                      "bias": np.ascontiguousarray(np.asarray(weight(1), dtype=np.float32))}

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        o = dict(layer.options)
        return ((o["kernel_size_time"], o["kernel_size_feature"], in_features // o["num_features_in"], o["filters"]),
                (o["filters"],))

    def rtneural_activation(self, layer: LayerSpec) -> str | None:
        return activations.to_rtneural_name(layer.activation)

    def cpp_types(self, layer: LayerSpec, in_features: int) -> list[str]:
        o = dict(layer.options)
        # Conv2DT<T, num_filters_in, num_filters_out, num_features_in, kernel_size_time, kernel_size_feature,
        #         dilation_rate, stride, valid_pad> (conv2d/conv2d.h).
        types = [f"RTNeural::Conv2DT<float, {in_features // o['num_features_in']}, {o['filters']}, "
                 f"{o['num_features_in']}, {o['kernel_size_time']}, {o['kernel_size_feature']}, {o['dilation']}, "
                 f"{o['strides']}, {'true' if o['padding'] == 'valid' else 'false'}>"]
        activation = activations.cpp_type(layer.activation, layer.units)
        return types + ([activation] if activation else [])

    def cpp_set_weights(self, layer: LayerSpec, in_features: int, target: str, weights: str,
                        shapes: Sequence[tuple[int, ...]]) -> list[str]:
        time, feature, ins, outs = shapes[0]
        return [f"{target}.setWeights({weights}.conv2d_kernel({time}, {feature}, {ins}, {outs}));",
                f"{target}.setBias({weights}.vec({outs}));"]

    def rtneural_schema(self) -> dict[str, Any]:
        size_key = {"anyOf": [{"$ref": "#/$defs/units"},
                              {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/units"}}],
                    "description": "a positive integer, or an array of them whose last entry counts (the loader "
                                   "reads it with .back())"}
        return {
            "required": [*_ARRAY_KEYS, "padding"],
            "properties": {
                **{key: size_key for key in _ARRAY_KEYS},
                "padding": {"enum": list(PADDINGS),
                            "$comment": "The loader treats anything but \"valid\" as \"same\"; other names are "
                                        "refused as probable mistakes."},
                "weights": {
                    "type": "array",
                    "description": "[kernel, bias]: kernel is [kernel_size_time][kernel_size_feature]"
                                   "[num_filters_in][num_filters_out], bias is [num_filters_out]",
                    "minItems": 2,
                    "maxItems": 2,
                    "prefixItems": [
                        {"type": "array", "minItems": 1, "items": {"type": "array", "minItems": 1, "items": {
                            "$ref": "#/$defs/matrix"}}},
                        {"$ref": "#/$defs/vector"},
                    ],
                },
            },
        }

    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        layer = check.layer
        keys = {key: read_key(layer, key) for key in _ARRAY_KEYS}
        if any(value is None for value in keys.values()):
            return check.units  # the schema reported it
        features, filters_in, filters = keys["num_features_in"], keys["num_filters_in"], keys["num_filters_out"]
        kt, kf, stride = keys["kernel_size_time"], keys["kernel_size_feature"], keys["strides"]
        assert features is not None and filters_in is not None and filters is not None
        assert kt is not None and kf is not None and stride is not None
        prefix = check.prefix
        if check.previous is not None and features * filters_in != check.previous:
            check.problem(f"num_features_in x num_filters_in ({features} x {filters_in}) does not match "
                          f"{check.from_previous} (the loader would read past the frame)",
                          key=f"{prefix}.num_features_in", expected=f"{check.previous} values per frame",
                          found=f"{features * filters_in}")
        padding = layer.get("padding")
        if padding not in PADDINGS:
            return check.units  # the schema reported it
        out = features_out(features, kf, stride, padding)
        if padding == "same" and same_padding_overrun(features, kf, stride):
            check.problem(_OVERRUN.format(features=features), key=f"{prefix}.kernel_size_feature",
                          expected=_overrun_fix(features, stride), found=str(kf))
        if out < 1:
            check.problem(f"with padding \"valid\" the kernel is longer than the {features} input features",
                          key=f"{prefix}.kernel_size_feature", expected=f"at most {features}", found=str(kf))
        elif out * filters != check.units:
            check.problem("the layer's size does not match its output frame (the loader refuses the model)",
                          key=f"{prefix}.shape", expected=f"{out * filters} units ({out} features x {filters} filters)",
                          found=f"{check.units} units")
        kernel = check.dims(0)
        if kernel is not None:
            wanted = (kt, kf, filters_in, filters)
            if kernel != wanted:
                names = ("kernel_size_time", "kernel_size_feature", "num_filters_in", "num_filters_out")
                axis = next(n for n, (a, b) in enumerate(zip(kernel, wanted)) if a != b)
                check.problem(f"kernel axis {axis} ({names[axis]}) has the wrong length (the loader would zero-fill "
                              "or drop weights)", key=f"{prefix}.weights[0]",
                              expected=f"[{kt}][{kf}][{filters_in}][{filters}] (time, feature, filters in, filters out)",
                              found="[" + "][".join(str(n) for n in kernel) + "]")
        bias = check.dims(1)
        if bias is not None:
            check.expect(1, "entry", bias[0], filters, f"num_filters_out ({filters})")
        return check.units

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        features = read_key(layer, "num_features_in")
        dilation, stride = read_key(layer, "dilation"), read_key(layer, "strides")
        assert features is not None and dilation is not None and stride is not None
        runtime: list[RuntimeLayer] = [Conv2DLayer(weight(0), weight(1), features, dilation, stride, layer["padding"])]
        activation = layer.get("activation", "")
        if activation:  # as the loader: conv2d adds its activation, if any
            runtime.append(activations.ActivationLayer(activation, units))
        return runtime


KIND = Conv2D()
