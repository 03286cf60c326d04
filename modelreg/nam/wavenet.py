"""NAM's WaveNet in a ``.nam`` file: config <-> the ``wavenet`` layer, and the flat weight order.

Derived from NeuralAmpModelerCore (``NAM/wavenet/model.cpp``: ``parse_config_json``,
``LayerArray`` and ``WaveNet::set_weights_``; ``NAM/wavenet/detail.h``: ``Layer``'s
constructor; ``NAM/conv1d.cpp``, ``NAM/dsp.cpp``: ``Conv1D`` / ``Conv1x1::set_weights_``):

- **Config written** (the plain WaveNet every engine since 0.5 reads): ``layers`` (one object per
  layer array: ``input_size``, ``condition_size``, ``head_size``, ``channels``, ``kernel_size``,
  ``dilations``, ``activation`` (NAM's name), ``gated``, ``head_bias``), ``head_scale``.
- **Weights**, per layer array: the rechannel 1x1 (``channels x input_size``, no bias); per
  layer: the dilated conv (``[out][in][k]``, torch's order, then its ``out`` biases, ``out`` =
  ``2 * channels`` when gated), the input mixer 1x1 (``out x condition_size``, no bias), the
  layer 1x1 (``channels x channels``, then ``channels`` biases); then the head rechannel 1x1
  (``head_size x channels``, then ``head_size`` biases when ``head_bias``). After all arrays, one
  more value: ``head_scale`` (the engine takes the output scale from here, not from the config).

Reading (for ``modelreg import``): :func:`table_from_config` also reads the newer forms of the
same network NAM's trainer writes (a nested ``head`` of kernel size 1, ``gating_mode`` /
``kernel_sizes`` / per-layer ``activation`` lists that are uniform, ``bottleneck`` equal to
``channels``, inactive ``head1x1`` / FiLM / ``layer1x1`` active), and refuses, naming it, every
feature the ``wavenet`` layer cannot represent (``condition_dsp``, a post-stack ``head``,
blended gating, FiLM, slimmable, grouped convolutions, bottlenecks, head kernels > 1, ...).

Nothing here imports torch or numpy at module level.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import UsageError
from ..layers.wavenet import LayerArray, arrays_of

if TYPE_CHECKING:
    import numpy as np

    from ..layers.base import LayerSpec

__all__ = [
    "ACTIVATIONS",
    "config_of",
    "flat_weights",
    "named_tensors",
    "table_from_config",
    "tensor_shapes",
    "weight_count",
]

#: modelreg's activation names -> NAM's (NAM/activations.cpp).
ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "sigmoid": "Sigmoid"}
_FROM_NAM = {nam: ours for ours, nam in ACTIVATIONS.items()}
_FILM_KEYS = ("conv_pre_film", "conv_post_film", "input_mixin_pre_film", "input_mixin_post_film",
              "activation_pre_film", "activation_post_film", "layer1x1_post_film", "head1x1_post_film")


# ---------------------------------------------------------------- layer -> file


def config_of(layer: LayerSpec) -> dict[str, Any]:
    """The ``config`` of a ``.nam`` file holding the ``wavenet`` layer ``layer`` (its plain keys)."""
    return {
        "layers": [{"input_size": a.input_size, "condition_size": a.condition_size, "head_size": a.head_size,
                    "channels": a.channels, "kernel_size": a.kernel_size, "dilations": list(a.dilations),
                    "activation": ACTIVATIONS[a.activation], "gated": a.gated, "head_bias": a.head_bias}
                   for a in arrays_of(layer)],
        "head_scale": float(layer.option("head_scale", 1.0)),
    }


def tensor_shapes(layer: LayerSpec, prefix: str = "") -> list[tuple[str, tuple[int, ...]]]:
    """Every torch state-dict entry of the layer (``prefix`` + NAM's trainer's module names) with its
    shape, in the order the engine reads the weights (each tensor flattened row-major)."""
    shapes: list[tuple[str, tuple[int, ...]]] = []
    for index, array in enumerate(arrays_of(layer)):
        base = f"{prefix}_layer_arrays.{index}."
        c, z = array.channels, array.z_channels
        shapes.append((base + "_rechannel.weight", (c, array.input_size, 1)))
        for number, _ in enumerate(array.dilations):
            at = f"{base}_layers.{number}."
            shapes += [(at + "_conv.weight", (z, c, array.kernel_size)), (at + "_conv.bias", (z,)),
                       (at + "_input_mixer.weight", (z, array.condition_size, 1)),
                       (at + "_layer1x1.weight", (c, c, 1)), (at + "_layer1x1.bias", (c,))]
        shapes.append((base + "_head_rechannel.weight", (array.head_size, c, 1)))
        if array.head_bias:
            shapes.append((base + "_head_rechannel.bias", (array.head_size,)))
    return shapes


def weight_parts(layer: LayerSpec) -> list[tuple[str, int]]:
    """The values the engine reads, part by part in its order (each array's rechannel, its layers,
    its head rechannel; then ``head_scale``): what ``modelreg check`` names when a count is off."""
    parts: list[tuple[str, int]] = []
    for key, shape in tensor_shapes(layer):
        array, rest = key.removeprefix("_layer_arrays.").split(".", 1)
        if rest.startswith("_layers."):
            number = int(rest.split(".")[1])
            dilation = arrays_of(layer)[int(array)].dilations[number]
            label = f"layer array {array}, layer {number} (dilation {dilation})"
        else:
            label = f"layer array {array}, {rest.split('.')[0].lstrip('_').replace('_', ' ')}"
        if parts and parts[-1][0] == label:
            parts[-1] = (label, parts[-1][1] + _size(shape))
        else:
            parts.append((label, _size(shape)))
    return parts + [("head_scale", 1)]


def weight_count(layer: LayerSpec) -> int:
    """How many values the engine reads for ``layer``: its parameters and ``head_scale``."""
    return sum(_size(shape) for _, shape in tensor_shapes(layer)) + 1


def flat_weights(layer: LayerSpec, state: Mapping[str, Any], prefix: str = "") -> np.ndarray:
    """The ``weights`` list (float32) of the layer from torch state-dict entries under ``prefix``
    (``layers.0.`` in a model), ``head_scale`` last."""
    import numpy as np

    parts = []
    for key, shape in tensor_shapes(layer, prefix):
        value = np.asarray(state[key], dtype=np.float32)
        if tuple(value.shape) != shape:
            raise UsageError.at("state dict entry has the wrong shape", key=key, expected=str(list(shape)),
                                found=list(value.shape))
        parts.append(value.reshape(-1))  # [out][in][k]: nn.Conv1d's order is the engine's (NAM/conv1d.cpp)
    parts.append(np.array([layer.option("head_scale", 1.0)], np.float32))
    return np.concatenate(parts).astype(np.float32)


def named_tensors(layer: LayerSpec, weights: Sequence[float] | np.ndarray,
                  prefix: str = "") -> tuple[dict[str, np.ndarray], float]:
    """The inverse of :func:`flat_weights`: the torch state-dict entries (float32) and the
    ``head_scale`` the engine would use (the last weight). The count must be exact."""
    import numpy as np

    flat = np.asarray(weights, dtype=np.float32).reshape(-1)
    expected = weight_count(layer)
    if flat.size != expected:
        raise UsageError.at("the weight count does not match the WaveNet config", key="weights",
                            expected=f"{expected:,} weights", found=f"{flat.size:,}")
    tensors: dict[str, np.ndarray] = {}
    position = 0
    for key, shape in tensor_shapes(layer, prefix):
        size = _size(shape)
        tensors[key] = flat[position:position + size].reshape(shape).copy()
        position += size
    return tensors, float(flat[position])


def _size(shape: tuple[int, ...]) -> int:
    total = 1
    for n in shape:
        total *= n
    return total


# ---------------------------------------------------------------- file -> layer


def _refuse(key: str, feature: str, expected: str, found: Any) -> UsageError:
    return UsageError.at(f"this WaveNet uses {feature}, which modelreg's wavenet layer cannot represent",
                         key=key, expected=expected, found=str(found))


def _uniform(value: Any, key: str, what: str) -> Any:
    """A per-layer list whose entries are all equal -> that entry; a scalar -> itself."""
    if isinstance(value, list):
        if not value or any(v != value[0] for v in value):
            raise _refuse(key, f"per-layer {what} that differ", f"one {what} for every layer of the array", value)
        return value[0]
    return value


def _activation(value: Any, key: str) -> str:
    name = value.get("type") if isinstance(value, Mapping) and set(value) <= {"type"} else value
    if not isinstance(name, str) or name not in _FROM_NAM:
        raise _refuse(key, f"the activation {value!r}", f"one of {', '.join(_FROM_NAM)}", value)
    return _FROM_NAM[name]


def table_from_config(config: Mapping[str, Any], in_channels: int = 1) -> dict[str, Any]:
    """The ``wavenet`` registry layer table (``type``, ``layer_arrays``, ``head_scale``) of a WaveNet
    ``config``, for a model fed ``in_channels`` values. Raises :class:`~modelreg.errors.UsageError`
    naming the key of the first feature the layer cannot represent. ``head_scale`` is the config's:
    the engine uses the last weight instead (:func:`named_tensors` returns it), so a caller compares."""
    if config.get("condition_dsp") is not None:
        raise _refuse("config.condition_dsp", "a condition DSP (condition_dsp)", "no condition_dsp (or null)",
                      "a condition DSP")
    if config.get("head") is not None:
        raise _refuse("config.head", "a post-stack head (config.head)", "no head (or null)", "a head object")
    if int(config.get("in_channels", in_channels)) != in_channels:
        raise UsageError.at("config.in_channels does not match the model's input", key="config.in_channels",
                            expected=str(in_channels), found=str(config.get("in_channels")))
    arrays = []
    for index, item in enumerate(config["layers"]):
        at = f"config.layers[{index}]"
        channels = int(item["channels"])
        slim = item.get("slimmable")
        if isinstance(slim, Mapping) and slim.get("method"):
            raise _refuse(f"{at}.slimmable", "a slimmable layer array", "no slimmable method", slim.get("method"))
        if int(item.get("bottleneck", channels)) != channels:
            raise _refuse(f"{at}.bottleneck", "a bottleneck", f"bottleneck equal to channels ({channels})",
                          item.get("bottleneck"))
        for key in ("groups_input", "groups_input_mixin"):
            if int(item.get(key, 1)) != 1:
                raise _refuse(f"{at}.{key}", "grouped convolutions", "1", item.get(key))
        layer1x1 = item.get("layer1x1")
        if layer1x1 is not None and (not layer1x1.get("active", True) or int(layer1x1.get("groups", 1)) != 1):
            raise _refuse(f"{at}.layer1x1", "an inactive or grouped layer1x1", "active, groups 1", layer1x1)
        head1x1 = item.get("head1x1")
        if head1x1 is not None and head1x1.get("active", False):
            raise _refuse(f"{at}.head1x1", "a head1x1 convolution", "inactive", head1x1)
        for key in _FILM_KEYS:
            film = item.get(key)
            if film not in (None, False) and (not isinstance(film, Mapping) or film.get("active", True)):
                raise _refuse(f"{at}.{key}", f"FiLM ({key})", "inactive (or absent)", film)
        head = item.get("head")
        if head is not None:
            if int(head.get("kernel_size", 1)) != 1 or int(head.get("head_dilation", 1)) != 1:
                raise _refuse(f"{at}.head", "a head rechannel with a kernel wider than 1", "kernel_size 1",
                              head.get("kernel_size"))
            head_size, head_bias = int(head["out_channels"]), bool(head["bias"])
        else:
            head_size, head_bias = int(item["head_size"]), bool(item["head_bias"])
        if "kernel_sizes" in item:
            kernel_size = int(_uniform(item["kernel_sizes"], f"{at}.kernel_sizes", "kernel size"))
        else:
            kernel_size = int(item["kernel_size"])
        activation = _activation(_uniform(item["activation"], f"{at}.activation", "activation"), f"{at}.activation")
        if "gating_mode" in item:
            mode = _uniform(item["gating_mode"], f"{at}.gating_mode", "gating mode")
            if mode not in ("gated", "none"):
                raise _refuse(f"{at}.gating_mode", f"the gating mode {mode!r}", "'gated' or 'none'", mode)
            gated = mode == "gated"
            secondary = item.get("secondary_activation")
            if gated and secondary is not None and _activation(
                    _uniform(secondary, f"{at}.secondary_activation", "secondary activation"),
                    f"{at}.secondary_activation") != "sigmoid":
                raise _refuse(f"{at}.secondary_activation", "a gate other than Sigmoid", "Sigmoid", secondary)
        else:
            gated = bool(item.get("gated", False))
        arrays.append({"input_size": int(item["input_size"]), "condition_size": int(item["condition_size"]),
                       "channels": channels, "head_size": head_size, "kernel_size": kernel_size,
                       "dilations": [int(d) for d in item["dilations"]], "activation": activation, "gated": gated,
                       "head_bias": head_bias})
    return {"type": "wavenet", "layer_arrays": arrays, "head_scale": float(config["head_scale"])}


def arrays_from_config(config: Mapping[str, Any], in_channels: int = 1) -> tuple[LayerArray, ...]:
    """The resolved layer arrays of a WaveNet config (see :func:`table_from_config`)."""
    from ..layers import get_kind

    layer = get_kind("wavenet").spec(table_from_config(config, in_channels), in_channels)
    return arrays_of(layer)
