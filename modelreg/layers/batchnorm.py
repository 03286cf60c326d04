"""``batchnorm``: 1-D batch normalisation over the features, with inference statistics.

Registry: ``{ type = "batchnorm" }`` with ``epsilon`` (default 1e-5, PyTorch's)
and ``affine`` (default true); no ``units``: it keeps its input's size.

Torch: ``nn.BatchNorm1d(features, eps=epsilon, affine=affine)`` holds the
tensors; the step always uses its running statistics (PyTorch's eval-mode
formula, written out over the last axis of ``[batch, time, features]``; equal
to ``BatchNorm1d.eval()`` up to float32 rounding). State-dict keys are torch's: ``weight`` (gamma) and ``bias``
(beta) when affine, the buffers ``running_mean``, ``running_var`` and
``num_batches_tracked`` (a training counter: kept in checkpoints because torch
saves it, ignored by inference and by the RTNeural file). Only gamma and beta
are parameters (``params`` counts them).

RTNeural (``model_loader.h``: ``createBatchNorm`` / ``loadBatchNorm``):
``weights = [gamma, beta, running_mean, running_var]`` (affine) or
``[running_mean, running_var]``, each a vector of the layer's size, plus an
``"epsilon"`` key (read with ``.at()``: required). The dynamic loader decides
affine from ``weights.size() == 4``: any other count is read as non-affine, so
three arrays (Keras with ``center`` xor ``scale``) would be misread and are
rejected. RTNeural computes ``gamma / sqrt(var + epsilon) * (x - mean) + beta``
(``batchnorm.tpp``), PyTorch's eval formula (epsilon inside the square root).
The loader sizes the layer from the previous layer and ignores ``shape`` and
``activation``; modelreg requires the shape to match and refuses an activation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from .base import cpp_float, LayerKind, LayerProblem, LayerSpec, RuntimeLayer, SizeCheck, StateReader, StateSpec

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn
__all__ = ["KIND", "BatchNormLayer", "cpp_load_statistics", "cpp_set_statistics", "cpp_statistics",
           "statistics_tensors"]

DEFAULT_EPSILON = 1e-5  # PyTorch's BatchNorm1d default
_AFFINE_NAMES = ("gamma", "beta", "running_mean", "running_var")


class BatchNormLayer:
    """``multiplier * (x - mean) + beta`` with ``multiplier = gamma / sqrt(var + epsilon)``, as RTNeural."""

    is_recurrent = False

    def __init__(self, mean: np.ndarray, var: np.ndarray, epsilon: float,
                 gamma: np.ndarray | None = None, beta: np.ndarray | None = None) -> None:
        import numpy as np

        self.mean = np.asarray(mean, dtype=np.float32)
        size = int(self.mean.shape[0])
        var32 = np.asarray(var, dtype=np.float32)
        gamma32 = np.ones(size, np.float32) if gamma is None else np.asarray(gamma, dtype=np.float32)
        self.beta = np.zeros(size, np.float32) if beta is None else np.asarray(beta, dtype=np.float32)
        # RTNeural reads epsilon as float and computes the multiplier once, in float.
        with np.errstate(divide="ignore", invalid="ignore"):
            self.multiplier = gamma32 / np.sqrt(var32 + np.float32(epsilon))
        self.in_size = self.out_size = size

    def reset(self, batch: int) -> None:
        """Stateless: nothing to reset."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.multiplier * (x - self.mean) + self.beta

    def __repr__(self) -> str:
        return f"BatchNormLayer({self.out_size})"



def cpp_statistics(layer: LayerSpec, target: str, argument: Callable[[str], str]) -> list[str]:
    """The setters of an RTNeural batchnorm (1-D or 2-D: the same setters, the same order as the
    JSON's weights): gamma and beta when affine, the running statistics, then epsilon.
    ``argument(tensor)``: the C++ expression of the values of the torch tensor ``tensor``
    (``weight``, ``bias``, ``running_mean``, ``running_var``) that setter takes."""
    setters = ((("setGamma", "weight"), ("setBeta", "bias")) if layer.option("affine") else ()) + \
        (("setRunningMean", "running_mean"), ("setRunningVariance", "running_var"))
    lines = [f"{target}.{setter}({argument(tensor)});" for setter, tensor in setters]
    # The value RTNeural's loader reads (JSON decimal -> double -> float), as an exact hex float.
    return lines + [f"{target}.setEpsilon({cpp_float(layer.option('epsilon'))});"]


def cpp_set_statistics(layer: LayerSpec, target: str, weights: str, shapes: Sequence[tuple[int, ...]]) -> list[str]:
    """:func:`cpp_statistics` from embedded weights (``weights``, in the RTNeural JSON's order)."""
    size = shapes[0][0]
    return cpp_statistics(layer, target, lambda _: f"{weights}.vec({size})")


def statistics_tensors(layer: LayerSpec, size: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The torch tensors :func:`cpp_statistics` sets (a state dict's ``num_batches_tracked`` is a
    training counter, which inference never reads)."""
    names = (("weight", "bias") if layer.option("affine") else ()) + ("running_mean", "running_var")
    return tuple((name, (size,)) for name in names)


def cpp_load_statistics(layer: LayerSpec, target: str, doc: str, prefix: str) -> list[str]:
    """:func:`cpp_statistics` from a state-dict JSON (torch_helpers has no batchnorm loader: the
    setters, as RTNeural's own TCN test sets them; epsilon is the entry's, which no state dict holds)."""
    return cpp_statistics(layer, target, lambda tensor: f'{doc}.at("{prefix}{tensor}").get<std::vector<float>>()')


class BatchNorm(LayerKind):
    name = "batchnorm"
    registry_keys = {
        "epsilon": {"type": "number", "minimum": 0,
                    "description": "a number >= 0 added to the variance (default 1e-5, PyTorch's)"},
        "affine": {"type": "boolean", "description": "true (learned gamma and beta, the default) or false"},
    }
    required_keys = ()
    refused_keys = {"units": "batchnorm layers keep the size of their input; they take no units",
                    "activation": "batchnorm layers take no activation (RTNeural's loader ignores one there); "
                                  "add an activation layer after it",
                    "bias": "batchnorm layers take no bias key: their beta is the bias (affine = false drops "
                            "gamma and beta)"}
    examples = ({}, {"affine": False}, {"epsilon": 0.01}, {"affine": False, "epsilon": 1e-3})
    rtneural_types = ("batchnorm",)
    weight_depths = (1, 1, 1, 1)

    # ------------------------------------------------------------------ registry

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        # Defaults filled in: an entry that spells them out is the same layer as one that does not.
        options = (("affine", bool(table.get("affine", True))),
                   ("epsilon", float(table.get("epsilon", DEFAULT_EPSILON))))
        return LayerSpec("batchnorm", in_features, options=options)

    def problems(self, layer: LayerSpec, in_features: int) -> list[LayerProblem]:
        epsilon = layer.option("epsilon")
        if not math.isfinite(epsilon):
            return [("epsilon", "must be a finite number", "a finite number >= 0", repr(epsilon))]
        return []

    def params(self, layer: LayerSpec, in_features: int) -> int:
        return 2 * in_features if layer.option("affine") else 0  # running statistics are buffers

    def state(self, layer: LayerSpec) -> StateSpec:
        return ()

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        return ("linear", -math.inf, math.inf)

    # ------------------------------------------------------------------ torch

    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        import torch
        from torch import nn

        module = nn.BatchNorm1d(in_features, eps=layer.option("epsilon"), affine=layer.option("affine"))
        # torch starts at mean 0, var 1, gamma 1, beta 0: an identity (up to epsilon) that would hide
        # a layout mistake in every seeded checkpoint and test. Draw statistics (and gamma, beta)
        # from the same seeded generator as the other kinds' weights; a checkpoint overwrites them.
        assert module.running_mean is not None and module.running_var is not None  # track_running_stats
        with torch.no_grad():
            module.running_mean.normal_(0.0, 0.5)
            module.running_var.uniform_(0.25, 2.0)
            if layer.option("affine"):
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.5)
        return module

    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        import torch

        # Inference statistics always (a real-time runtime, not a training loop), over the last
        # axis of [batch, time, features]. PyTorch's eval formula written out, in RTNeural's order
        # (gamma / sqrt(var + eps) * (x - mean) + beta): F.batch_norm would need the features on
        # axis 1, and its ONNX export refuses the reshape that would put them there.
        mean, var = cast("Tensor", module.running_mean), cast("Tensor", module.running_var)
        gamma, beta = cast("Tensor | None", module.weight), cast("Tensor | None", module.bias)
        multiplier = torch.rsqrt(var + layer.option("epsilon"))
        if gamma is not None:
            multiplier = gamma * multiplier
        y = (x - mean) * multiplier
        return (y + beta if beta is not None else y), ()

    # ------------------------------------------------------------------ RTNeural

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        import numpy as np

        n = (in_features,)
        arrays = []
        if layer.option("affine"):
            arrays += [weights.take(prefix + "weight", n), weights.take(prefix + "bias", n)]
        arrays += [weights.take(prefix + "running_mean", n), weights.take(prefix + "running_var", n)]
        weights.ignore(prefix + "num_batches_tracked")  # a training counter; inference never reads it
        return {"type": "batchnorm", "activation": "", "shape": [None, None, layer.units],
                "weights": [np.ascontiguousarray(a) for a in arrays], "epsilon": layer.option("epsilon")}

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        import numpy as np
        affine = len(layer["weights"]) == 4
        arrays = [np.ascontiguousarray(weight(j), dtype=np.float32) for j in range(len(layer["weights"]))]
        spec = LayerSpec("batchnorm", in_features, options=(("affine", affine),
                                                            ("epsilon", float(layer["epsilon"]))))
        state = dict(zip(("weight", "bias") if affine else (), arrays[:2] if affine else []))
        state.update(running_mean=arrays[-2], running_var=arrays[-1],
                     num_batches_tracked=np.array(0, dtype=np.int64))  # what a fresh torch module holds
        return spec, state

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        return ((in_features,),) * (4 if layer.option("affine") else 2)

    def cpp_types(self, layer: LayerSpec, in_features: int) -> list[str]:
        affine = "true" if layer.option("affine") else "false"
        return [f"RTNeural::BatchNorm1DT<float, {in_features}, {affine}>"]

    def cpp_set_weights(self, layer: LayerSpec, in_features: int, target: str, weights: str,
                        shapes: Sequence[tuple[int, ...]]) -> list[str]:
        return cpp_set_statistics(layer, target, weights, shapes)

    def torch_tensors(self, layer: LayerSpec, in_features: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        return statistics_tensors(layer, in_features)

    def cpp_load_torch(self, layer: LayerSpec, in_features: int, target: str, doc: str, prefix: str) -> list[str]:
        return cpp_load_statistics(layer, target, doc, prefix)

    def rtneural_schema(self) -> dict[str, Any]:
        return {
            "required": ["epsilon"],
            "properties": {
                "epsilon": {"type": "number", "minimum": 0,
                            "description": "a number >= 0 (the loader reads it with .at(): required)"},
                "activation": {"const": "", "description": "\"\" or no activation (the loader ignores one on a "
                                                          "batchnorm layer)"},
                "weights": {
                    "type": "array",
                    "description": "[gamma, beta, running_mean, running_var] (affine) or [running_mean, "
                                   "running_var], each [units]; RTNeural reads any count but 4 as non-affine",
                    "minItems": 2,
                    "maxItems": 4,
                    "items": {"$ref": "#/$defs/vector"},
                },
            },
        }

    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        count = 0
        while check.dims(count) is not None:
            count += 1
        if count == 3:
            check.problem("3 weight arrays: RTNeural's loader reads any count but 4 as non-affine, so it would take "
                          "the first two as running mean and variance (a Keras batchnorm with only center or only "
                          "scale?)", key=f"{check.prefix}.weights",
                          expected="4 arrays [gamma, beta, running_mean, running_var] or 2 [running_mean, running_var]",
                          found="3 arrays")
        size = check.previous if check.previous is not None else check.units
        if check.previous is not None and check.units != check.previous:
            check.problem(f"batchnorm layer size does not match the {check.previous} outputs of {check.source} "
                          "(RTNeural sizes it from the previous layer)", key=f"{check.prefix}.shape",
                          expected=f"{check.previous} units", found=f"{check.units} units")
        names = _AFFINE_NAMES if count == 4 else _AFFINE_NAMES[2:]
        for j in range(count):
            dims = check.dims(j)
            assert dims is not None
            what = names[j] if j < len(names) else "an array"
            check.expect(j, "entry", dims[0], size, f"{what}: one value per input ({check.from_previous})"
                         if check.previous is not None else f"{what}: {check.from_units}")
        return size

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        epsilon = float(layer["epsilon"])
        if len(layer["weights"]) == 4:
            gamma, beta, mean, var = (weight(j) for j in range(4))
            return [BatchNormLayer(mean, var, epsilon, gamma, beta)]
        return [BatchNormLayer(weight(0), weight(1), epsilon)]


KIND = BatchNorm()
