"""``conv1d``: a causal, streaming 1-D convolution over time (``nn.Conv1d``; RTNeural ``conv1d``).

As RTNeural runs it: one frame of ``in`` channels in, one frame of ``units``
channels out; the layer keeps the last ``(kernel_size - 1) * dilation`` input
frames and combines ``kernel_size`` of them, ``dilation`` frames apart, the
newest being the current frame. A sequence ``[batch, time, in]`` gives what
``nn.Conv1d`` gives on it with ``(kernel_size - 1) * dilation`` zero frames
padded on the left; ``groups`` splits inputs and outputs into that many
independent blocks, as in PyTorch.

State: ``buf`` ``[1, batch, (kernel_size - 1) * dilation * in]``, the past input
frames oldest first, each frame's channels contiguous (none when kernel_size is 1).

RTNeural layout (``json_parser::loadConv1D`` in ``model_loader.h``):
``weights = [kernel, bias]``, kernel ``[kernel_size][in / groups][units]``
with entry ``[i][c][o]`` going to RTNeural's internal tap ``kernel_size - 1 - i``,
and RTNeural's internal tap k multiplies the frame k * dilation frames ago. So
file index 0 is the oldest frame and the last index the current one, which is
PyTorch's kernel order: the file kernel is torch's ``weight [units, in/groups,
kernel_size]`` transposed to ``(2, 1, 0)``, not reversed. The bias is required
(the loader reads ``weights[1]`` unconditionally). ``kernel_size`` and
``dilation`` are read with ``.back()`` (written as one-entry arrays, as
RTNeural's Keras exporter does; a plain integer reads the same), ``groups``
with ``value("groups", 1)``. A non-empty ``activation`` adds an activation
after the layer, as for dense.

``bias = false`` is torch's ``nn.Conv1d(bias=False)``: no ``bias`` entry in the
checkpoint; the RTNeural file still holds a bias of zeros, since the loader
reads ``weights[1]`` unconditionally (so a file cannot tell a bias-free layer
from one whose bias is zero: see ``modelreg import --drop-zero-biases``).

``stride = s`` (s > 1) is RTNeural's ``StridedConv1D`` / ``StridedConv1DT``
(``conv1d/strided_conv1d.h``, loaded by ``torch_helpers::loadConv1D``): frame
``t`` is computed when ``t % s == 0`` (counting from the reset) and every other
frame repeats that output, while the past input frames keep advancing (its
``skip()``). Over a sequence from zeros that is ``nn.Conv1d(stride=s)`` on the
input with ``(kernel_size - 1) * dilation`` zero frames on the left, each
output repeated ``s`` times. Extra state: ``held`` ``[1, batch, units]`` (the
last computed output, before the activation) and ``phase`` ``[1, batch, 1]``
(frames since the last computed one, 0 to s - 1, as a float). The checkpoint is
``nn.Conv1d``'s (the stride changes no weight). RTNeural's JSON loader has no
strided conv1d (``parseJson``'s conv1d reads no stride; ``ModelT::parseJson``
leaves a ``StridedConv1DT`` unloaded): such a layer goes to C++ through
``rtneural-cpp`` with embedded weights. Established in C++: tests/test_strided_conv1d.py.
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
__all__ = ["KIND", "Conv1DLayer", "history", "stride"]

#: Why an RTNeural JSON file cannot hold a strided conv1d (the rtneural exporter's refusal says it).
STRIDE_REFUSAL = ("RTNeural's JSON loader has no strided conv1d (parseJson's conv1d reads no stride, and "
                  "ModelT::parseJson leaves a StridedConv1DT unloaded)")


def history(kernel_size: int, dilation: int) -> int:
    """How many past input frames a causal conv1d keeps: ``(kernel_size - 1) * dilation``."""
    return (kernel_size - 1) * dilation


def stride(layer: LayerSpec) -> int:
    """A conv1d LayerSpec's stride (1: every frame computed)."""
    return int(layer.option("stride", 1))


def _last(value: Any) -> int:
    """A schema-valid ``kernel_size`` / ``dilation`` value as the loader reads it (``.back()``)."""
    return int(value[-1] if isinstance(value, (list, tuple)) else value)


class Conv1DLayer:
    """RTNeural's conv1d in the numpy reference runtime: kernel ``[K][in/groups][out]`` as in the file."""

    def __init__(self, kernel: np.ndarray, bias: np.ndarray, dilation: int, groups: int, stride: int = 1) -> None:
        import numpy as np

        self.kernel = np.ascontiguousarray(kernel, dtype=np.float32)
        self.bias = np.ascontiguousarray(bias, dtype=np.float32)
        self.kernel_size, per_group, self.out_size = (int(n) for n in self.kernel.shape)
        self.dilation, self.groups = int(dilation), int(groups)
        self.in_size = per_group * self.groups
        self.history = history(self.kernel_size, self.dilation)
        self.stride = int(stride)
        self.is_recurrent = self.history > 0 or self.stride > 1  # carries state between frames
        # [K, c, g, o/g]: output o belongs to group o // (out/groups), as in RTNeural and PyTorch.
        self._grouped = self.kernel.reshape(self.kernel_size, per_group, self.groups, self.out_size // self.groups)
        self.buffer = np.zeros((1, self.history, self.in_size), np.float32)
        # Strided: RTNeural's StridedConv1D (dynamic), whose reset() zeroes its counter and held output.
        self.held = np.zeros((1, self.out_size), np.float32)
        self.phase = 0

    def reset(self, batch: int) -> None:
        import numpy as np

        self.buffer = np.zeros((batch, self.history, self.in_size), np.float32)
        self.held = np.zeros((batch, self.out_size), np.float32)
        self.phase = 0

    def forward(self, x: np.ndarray) -> np.ndarray:
        import numpy as np

        frame = x[:, None, :].astype(np.float32, copy=False)
        if self.stride > 1:
            computed = self.phase == 0
            self.phase = (self.phase + 1) % self.stride
            if not computed:  # RTNeural's skip(): the frame enters the buffer, the output is held
                if self.history:
                    self.buffer = np.concatenate([self.buffer, frame], axis=1)[:, 1:, :]
                return self.held.copy()
        # Without history (kernel_size 1) the layer is stateless, its model never resets
        # it to the batch size, and there is nothing to prepend.
        full = np.concatenate([self.buffer, frame], axis=1) if self.history else frame
        taps = full[:, ::self.dilation, :]  # K frames, oldest first: file index i is frame t - (K-1-i)*d
        batch = x.shape[0]
        grouped = taps.reshape(batch, self.kernel_size, self.groups, -1)  # [B, K, g, c]
        y = np.einsum("bkgc,kcgo->bgo", grouped, self._grouped).reshape(batch, self.out_size) + self.bias
        if self.history:
            self.buffer = full[:, 1:, :]
        y = y.astype(np.float32, copy=False)
        if self.stride > 1:
            self.held = y.copy()
        return y

    def __repr__(self) -> str:
        strided = f", stride={self.stride}" if self.stride > 1 else ""
        return (f"Conv1DLayer({self.in_size} -> {self.out_size}, kernel_size={self.kernel_size}, "
                f"dilation={self.dilation}, groups={self.groups}{strided})")


_INT_OR_LIST = {
    "anyOf": [
        {"$ref": "#/$defs/units"},
        {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/units"}},
    ],
}


class Conv1D(LayerKind):
    name = "conv1d"
    registry_keys = {
        "units": {"$ref": "#/$defs/positive_int"},
        "kernel_size": {"$ref": "#/$defs/positive_int"},
        "dilation": {"$ref": "#/$defs/positive_int"},
        "groups": {"$ref": "#/$defs/positive_int"},
        "stride": {"$ref": "#/$defs/positive_int"},
        "activation": {"enum": list(activations.NAMES)},
        "bias": BIAS_KEY,
    }
    required_keys = ("units", "kernel_size")
    missing_key_hints = {"kernel_size": "a kernel size: conv1d layers need kernel_size, a positive integer"}
    examples = (
        {"units": 6, "kernel_size": 2, "dilation": 3, "groups": 3, "activation": "tanh"},
        {"units": 2, "kernel_size": 1, "activation": "relu"},
        {"units": 4, "kernel_size": 3, "dilation": 2, "activation": "sigmoid"},
        {"units": 5, "kernel_size": 3},
        {"units": 4, "kernel_size": 2, "dilation": 2, "activation": "tanh", "bias": False},
        {"units": 4, "kernel_size": 3, "dilation": 2, "stride": 3, "activation": "tanh"},
        {"units": 2, "kernel_size": 1, "stride": 2},
    )
    rtneural_types = ("conv1d",)
    loader_adds_activation = True
    weight_depths = (3, 1)

    # ------------------------------------------------------------------ registry

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        # Defaults are filled in, so a layer read back from RTNeural equals the one declared.
        # in_channels is not a registry key: it is the size the layer is fed, recorded because
        # the state (the past input frames) is sized by it and state() sees only the LayerSpec.
        options = (*bias_option(table), ("dilation", int(table.get("dilation", 1))),
                   ("groups", int(table.get("groups", 1))), ("in_channels", int(in_features)),
                   ("kernel_size", int(table["kernel_size"])))  # sorted by key, "bias" first
        if int(table.get("stride", 1)) != 1:
            # Only a stride is recorded (as bias = false): every stride-1 layer stays the LayerSpec it was.
            options += (("stride", int(table["stride"])),)
        return LayerSpec("conv1d", int(table["units"]), table.get("activation", "linear"), options)

    @staticmethod
    def sizes(layer: LayerSpec) -> tuple[int, int, int]:
        """(kernel_size, dilation, groups) of a conv1d LayerSpec."""
        if layer.option("kernel_size") is None or layer.option("in_channels") is None:
            from ..errors import UsageError

            raise UsageError.at("a conv1d LayerSpec needs its options (kernel_size, dilation, groups, in_channels)",
                                expected="modelreg.layers.get_kind('conv1d').spec(table, in_features)",
                                found=repr(layer))
        return int(layer.option("kernel_size")), int(layer.option("dilation", 1)), int(layer.option("groups", 1))

    def problems(self, layer: LayerSpec, in_features: int) -> list[LayerProblem]:
        _, _, groups = self.sizes(layer)
        found: list[LayerProblem] = []
        if in_features % groups:
            found.append(("groups", f"groups must divide the {in_features} input channels",
                          f"a divisor of {in_features}", str(groups)))
        if layer.units % groups:
            found.append(("groups", f"groups must divide the layer's {layer.units} output channels (units)",
                          f"a divisor of {layer.units}", str(groups)))
        return found

    def params(self, layer: LayerSpec, in_features: int) -> int:
        kernel_size, _, groups = self.sizes(layer)
        # Integer arithmetic only (no building): kernel [units, in/groups, K] + bias [units] (if any).
        return layer.units * (in_features // groups) * kernel_size + (layer.units if layer.has_bias else 0)

    def state(self, layer: LayerSpec) -> StateSpec:
        kernel_size, dilation, _ = self.sizes(layer)
        past = history(kernel_size, dilation)
        # kernel_size 1 keeps nothing: no state tensor (a zero-size ONNX input would be useless).
        buffer = (("buf", past * int(layer.option("in_channels"))),) if past else ()
        if stride(layer) > 1:  # RTNeural's strides_counter and held output
            return (*buffer, ("held", layer.units), ("phase", 1))
        return buffer

    def frame_period(self, layer: LayerSpec) -> int:
        return stride(layer)

    def memory(self, layer: LayerSpec) -> int | None:
        kernel_size, dilation, _ = self.sizes(layer)
        return history(kernel_size, dilation)  # its buffer: the last (kernel_size - 1) * dilation inputs

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        return activations.output_range(layer.activation)

    # ------------------------------------------------------------------ torch

    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        from torch import nn

        kernel_size, dilation, groups = self.sizes(layer)
        # No padding: the past frames come from the state, which starts at zeros. The stride is
        # torch's own (what a user's module says); forward computes every frame and holds (see there).
        return nn.Conv1d(in_features, layer.units, kernel_size, dilation=dilation, groups=groups,
                         bias=layer.has_bias, stride=stride(layer))

    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        import torch

        kernel_size, dilation, _ = self.sizes(layer)
        past = history(kernel_size, dilation)
        channels = int(module.in_channels)  # type: ignore[arg-type]  # a static int: traced as a constant
        steps = stride(layer)
        if steps > 1:
            return self._strided(module, layer, x, state, past, channels, steps)
        if past == 0:
            y = module(x.transpose(1, 2)).transpose(1, 2)
            return activations.torch_activation(layer.activation)(y), ()
        frames = state[0].reshape(-1, past, channels)  # [1, batch, past*in] -> [batch, past, in]
        full = torch.cat([frames, x], dim=1)
        y = module(full.transpose(1, 2)).transpose(1, 2)  # [batch, time, units]
        kept = full[:, -past:, :].reshape(1, -1, past * channels)
        return activations.torch_activation(layer.activation)(y), (kept,)

    @staticmethod
    def _strided(module: nn.Module, layer: LayerSpec, x: Tensor, state: tuple[Tensor, ...], past: int,
                 channels: int, steps: int) -> tuple[Tensor, tuple[Tensor, ...]]:
        """RTNeural's StridedConv1D over ``x``: every frame's convolution (stride 1, from the buffer),
        then each frame takes the output of the last frame whose phase was 0, or the held one.
        The same whatever the chunking: a sequence gives what one frame per call gives."""
        import torch
        import torch.nn.functional as F

        held, phase = state[-2], state[-1]  # [1, batch, units], [1, batch, 1]
        if past:
            full = torch.cat([state[0].reshape(-1, past, channels), x], dim=1)
            kept: tuple[Tensor, ...] = (full[:, -past:, :].reshape(1, -1, past * channels),)
        else:
            full, kept = x, ()
        conv: Any = module  # nn.Conv1d: its weights, at stride 1 (every frame; the hold is below)
        y = F.conv1d(full.transpose(1, 2), conv.weight, conv.bias, dilation=conv.dilation,
                     groups=conv.groups).transpose(1, 2)  # [batch, time, units]
        time = torch.arange(x.shape[1], dtype=x.dtype, device=x.device)
        start = phase.reshape(-1, 1)  # [batch, 1]
        # Frame t was computed at frame t - ((start + t) % steps) of this chunk; before it: the held output.
        source = time - torch.remainder(start + time, steps) + 1  # index into [held, y...]
        index = source.clamp(min=0).long().unsqueeze(-1).expand(-1, -1, y.shape[-1])
        out = torch.gather(torch.cat([held.reshape(-1, 1, y.shape[-1]), y], dim=1), 1, index)
        new_held = out[:, -1:, :].reshape(1, -1, y.shape[-1])
        new_phase = torch.remainder(phase + x.shape[1], steps)
        return activations.torch_activation(layer.activation)(out), (*kept, new_held, new_phase)

    # ------------------------------------------------------------------ RTNeural layout

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        import numpy as np

        kernel_size, dilation, groups = self.sizes(layer)
        weight = weights.take(prefix + "weight", (layer.units, in_features // groups, kernel_size))
        if not (layer.has_bias and weights.has(prefix + "bias")):
            # RTNeural's loader reads weights[1] unconditionally: write the zeros a bias-free conv adds.
            bias = np.zeros(layer.units, np.float32)
        else:
            bias = weights.take(prefix + "bias", (layer.units,))
        return {"type": "conv1d", "activation": activations.to_rtneural_name(layer.activation),
                "shape": [None, None, layer.units],
                "weights": [np.ascontiguousarray(weight.transpose(2, 1, 0)), np.ascontiguousarray(bias)],
                "kernel_size": [kernel_size], "dilation": [dilation], "groups": groups}

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        import numpy as np

        # Always with a bias: zeros in a file are zeros of a bias or no bias at all (format.from_rtneural
        # decides, when asked to drop zero biases).
        table = {"units": units, "kernel_size": _last(layer["kernel_size"]), "dilation": _last(layer["dilation"]),
                 "groups": int(layer.get("groups", 1)),
                 "activation": activations.from_rtneural_name(layer.get("activation", ""))}
        spec = self.spec(table, in_features)
        kernel = np.asarray(weight(0), dtype=np.float32)
        return spec, {"weight": np.ascontiguousarray(kernel.transpose(2, 1, 0)),
                      "bias": np.ascontiguousarray(np.asarray(weight(1), dtype=np.float32))}

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        kernel_size, _, groups = self.sizes(layer)
        return ((kernel_size, in_features // groups, layer.units), (layer.units,))

    def rtneural_activation(self, layer: LayerSpec) -> str | None:
        return activations.to_rtneural_name(layer.activation)

    def rtneural_keys(self, layer: LayerSpec) -> tuple[tuple[str, int, int], ...]:
        kernel_size, dilation, groups = self.sizes(layer)
        # (key, value, what the loader assumes when the key is absent; 0: it throws)
        return (("kernel_size", kernel_size, 0), ("dilation", dilation, 0), ("groups", groups, 1))

    def rtneural_json_refusal(self, layer: LayerSpec) -> str | None:
        # to_rtneural still writes the layer's arrays: the rtneural-cpp header sets them on a StridedConv1DT.
        return STRIDE_REFUSAL if stride(layer) > 1 else None

    def cpp_types(self, layer: LayerSpec, in_features: int) -> list[str]:
        kernel_size, dilation, groups = self.sizes(layer)
        steps = stride(layer)
        if steps > 1:  # RTNeural's template order: ..., dilation, stride, groups
            types = [f"RTNeural::StridedConv1DT<float, {in_features}, {layer.units}, {kernel_size}, {dilation}, "
                     f"{steps}, {groups}>"]
        else:
            types = [f"RTNeural::Conv1DT<float, {in_features}, {layer.units}, {kernel_size}, {dilation}, {groups}>"]
        activation = activations.cpp_type(layer.activation, layer.units)
        return types + ([activation] if activation else [])

    def cpp_set_weights(self, layer: LayerSpec, in_features: int, target: str, weights: str,
                        shapes: Sequence[tuple[int, ...]]) -> list[str]:
        kernel_size, _, groups = self.sizes(layer)
        return [f"{target}.setWeights({weights}.conv1d_kernel({kernel_size}, {in_features // groups}, {layer.units}));",
                f"{target}.setBias({weights}.vec({layer.units}));"]

    def torch_tensors(self, layer: LayerSpec, in_features: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        kernel_size, _, groups = self.sizes(layer)
        bias = (("bias", (layer.units,)),) if layer.has_bias else ()
        return (("weight", (layer.units, in_features // groups, kernel_size)), *bias)

    def cpp_load_torch(self, layer: LayerSpec, in_features: int, target: str, doc: str, prefix: str) -> list[str]:
        # The helper reverses each kernel (torch's index 0 is the oldest frame's tap, RTNeural's the
        # newest's); groups are the layer type's, so grouped convs load the same way.
        return [f'RTNeural::torch_helpers::loadConv1D<float>({doc}, "{prefix}", {target}, '
                f'{"true" if layer.has_bias else "false"});']

    def rtneural_schema(self) -> dict[str, Any]:
        return {
            "required": ["kernel_size", "dilation"],
            "$comment": "The loader reads kernel_size and dilation with .at(...).back() (so they must exist; "
                        "RTNeural's Keras exporter writes one-entry arrays) and groups with value(\"groups\", 1).",
            "properties": {
                "kernel_size": {**_INT_OR_LIST, "description": "[K] (or K): the kernel size, a positive integer"},
                "dilation": {**_INT_OR_LIST, "description": "[d] (or d): the dilation, a positive integer"},
                "groups": {"$ref": "#/$defs/units"},
                "weights": {
                    "type": "array",
                    "description": "[kernel, bias]: kernel is [kernel_size][inputs/groups][units] "
                                   "(index 0 the oldest frame), bias is [units]",
                    "minItems": 2,
                    "maxItems": 2,
                    "prefixItems": [
                        {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/matrix"},
                         "description": "[kernel_size][inputs/groups][units]"},
                        {"$ref": "#/$defs/vector"},
                    ],
                },
            },
        }

    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        layer = check.layer
        kernel_size, groups = _last(layer["kernel_size"]), int(layer.get("groups", 1))
        units, previous = check.units, check.previous
        divides = True
        if previous is not None and previous % groups:
            divides = False
            check.problem(f"groups does not divide {check.from_previous} (RTNeural would read the kernel "
                          "for other channels)", key=f"{check.prefix}.groups",
                          expected=f"a divisor of {previous}", found=str(groups))
        if units % groups:
            divides = False
            check.problem(f"groups does not divide {check.from_units}", key=f"{check.prefix}.groups",
                          expected=f"a divisor of {units}", found=str(groups))
        kernel = check.dims(0)
        if kernel is not None:
            where = f"{check.prefix}.weights[0]"
            taps, per_group, outs = kernel
            if taps != kernel_size:
                check.problem(f"kernel has {taps} taps (dimension 1 of [kernel_size][inputs/groups][units]) but "
                              f"kernel_size is {kernel_size}", key=where, expected=f"{kernel_size} taps",
                              found=f"{taps} taps")
            if divides and previous is not None and per_group != previous // groups:
                check.problem(f"kernel input-channel count {per_group} (dimension 2 of [kernel_size][inputs/groups]"
                              f"[units]) does not match {check.from_previous} split into {groups} groups", key=where,
                              expected=f"{previous // groups} input channels", found=f"{per_group} input channels")
            if outs != units:
                check.problem(f"kernel output-channel count {outs} (dimension 3 of [kernel_size][inputs/groups]"
                              f"[units]) does not match {check.from_units}", key=where,
                              expected=f"{units} output channels", found=f"{outs} output channels")
        bias = check.dims(1)
        if bias is not None:
            check.expect(1, "entry", bias[0], units, check.from_units)
        return units

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        runtime: list[RuntimeLayer] = [Conv1DLayer(weight(0), weight(1), _last(layer["dilation"]),
                                                   int(layer.get("groups", 1)))]
        activation = layer.get("activation", "")
        if activation:  # as the loader: conv1d adds its activation, if any
            runtime.append(activations.ActivationLayer(activation, units))
        return runtime


KIND = Conv1D()
