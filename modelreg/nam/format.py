"""The ``.nam`` file: what Neural Amp Modeler's C++ engine (NeuralAmpModelerCore) loads.

A JSON object: ``version`` (a file version the engine supports), ``architecture``,
``config``, ``weights`` (one flat list of float32 values, consumed in order by the
architecture's constructor), ``sample_rate`` and ``metadata``. Every layout here is
the engine's (NAM/lstm.cpp, NAM/convnet.cpp; see docs/nam.md):

- **LSTM** (``config``: ``num_layers``, ``input_size``, ``hidden_size``, and
  ``in_channels`` / ``out_channels`` when not 1; ``num_layers`` counts the
  layers of stacked registry layers one by one): per layer, the gate matrix
  ``W`` ``(4H) x (in + H)`` row by row, its columns the input then the hidden
  state (torch's ``weight_ih`` beside ``weight_hh``; gates i, f, g, o as in
  torch), then ``b`` ``4H`` (one bias: torch's two summed), then the layer's
  initial hidden state ``H`` and initial cell state ``H``; after the layers, the
  head (a linear layer ``out x H`` row by row, then its ``out`` biases). All
  layers have one hidden size.
- **ConvNet** (``config``: ``channels``, ``dilations``, ``batchnorm``,
  ``activation``): per block, a kernel-size-2 dilated conv (weights
  ``[out][in][k]``, then its bias when there is no batchnorm), then with batchnorm
  its running mean, running variance, weight, bias and eps; the activation; then
  the head (``out x channels`` row by row, then the biases).
- **WaveNet** (``config``: ``layers``, ``head_scale``): one ``wavenet`` layer; its config and
  weight order live in :mod:`modelreg.nam.wavenet` (the importer reuses them).

Nothing here imports torch or numpy at module level.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import ExportError, Problem, UsageError

if TYPE_CHECKING:
    import numpy as np

    from ..builder import RealtimeModel
    from ..spec import ModelSpec

__all__ = [
    "ARCHITECTURES",
    "FILE_VERSION",
    "WHAT_NAM_HOLDS",
    "build_document",
    "dumps_nam",
    "count_problem",
    "expected_weight_count",
    "file_problems",
    "read_nam",
    "weight_layout",
]

#: The file version written: one the engine's loader supports fully (NAM/get_dsp.h: from
#: EARLIEST_SUPPORTED_NAM_FILE_VERSION 0.5.0 to LATEST_FULLY_SUPPORTED_NAM_FILE_VERSION 0.7.0),
#: and the model version NAM's own trainer writes (0.5.4), so older plugins load the file too.
FILE_VERSION = "0.5.4"
ARCHITECTURES = ("LSTM", "ConvNet", "WaveNet")
#: modelreg's activations -> NAM's names (NAM/activations.cpp); those NAM lacks are refused.
ACTIVATIONS = {"tanh": "Tanh", "relu": "ReLU", "sigmoid": "Sigmoid"}
#: What the refusal of an entry says NAM can hold.
WHAT_NAM_HOLDS = ("NAM's engine holds an LSTM stack (lstm layers of one size, then one dense layer with "
                  "activation 'linear') or a ConvNet (blocks of conv1d with kernel_size 2 and a dilation, "
                  "with activation tanh, relu or sigmoid (on the layer, or in an activation layer after it, optionally "
                  "after a batchnorm layer: in every block or none; one activation for all blocks), "
                  "then one dense layer with activation 'linear'), or a WaveNet (one wavenet layer, "
                  "the entry's only layer)")


def _refuse(spec: ModelSpec, reason: str, found: str) -> ExportError:
    from ..paths import display_path

    return ExportError.at(f"the 'nam' exporter cannot write this entry: {reason}", file=display_path(spec.registry_file),
                          model=spec.name, key=f"models.{spec.name}.layers", expected=WHAT_NAM_HOLDS, found=found)


def _layers_text(spec: ModelSpec) -> str:
    """The entry's layers, one label each: ``gru 1 -> 10; dense 10 -> 1 linear``."""
    from ..spec import layer_label

    labels, size = [], spec.in_features
    for layer in spec.layers:
        labels.append(layer_label(layer, size))
        size = layer.units
    return "; ".join(labels)


# ---------------------------------------------------------------- entry -> document


def architecture_of(spec: ModelSpec) -> str:
    """``"LSTM"``, ``"ConvNet"`` or ``"WaveNet"``: the NAM architecture that holds ``spec``'s layers;
    refused (:class:`~modelreg.errors.ExportError`, saying what NAM can hold) otherwise."""
    layers = list(spec.layers)
    if any(layer.type == "wavenet" for layer in layers):
        if len(layers) != 1:
            raise _refuse(spec, "NAM's WaveNet is the whole model: a wavenet layer must be the entry's only layer",
                          _layers_text(spec))
        return "WaveNet"
    if len(layers) < 2 or layers[-1].type != "dense":
        raise _refuse(spec, "NAM's models end in one linear head", _layers_text(spec))
    head = layers[-1]
    if head.activation != "linear" or head.options:
        raise _refuse(spec, f"the head (layers[{len(layers) - 1}]) must be a dense layer with activation 'linear' "
                            "and a bias (NAM's head is a plain linear layer)", _layers_text(spec))
    body = layers[:-1]
    if all(layer.type == "lstm" for layer in body):
        sizes = {layer.units for layer in body}
        # num_layers (a stack) is NAM's own num_layers; any other option (bias = false) NAM cannot hold.
        if len(sizes) != 1:
            raise _refuse(spec, "NAM's LSTM gives every layer the same hidden size", _layers_text(spec))
        if any(key != "num_layers" for layer in body for key, _ in layer.options):
            raise _refuse(spec, "NAM's LSTM layers have a bias (bias = false cannot be written)", _layers_text(spec))
        return "LSTM"
    if body[0].type == "conv1d":
        _convnet_blocks(spec)
        return "ConvNet"
    raise _refuse(spec, "these layers fit neither NAM's LSTM nor its ConvNet", _layers_text(spec))


@attrs.frozen
class _ConvNet:
    """A ConvNet entry as NAM's config sees it: channels, dilations, one activation, batchnorm or not,
    and where each block's conv1d (and batchnorm) layer is in the entry."""

    channels: int
    dilations: list[int]
    activation: str
    batchnorm: bool
    convs: list[int]
    norms: list[int]


def _convnet_blocks(spec: ModelSpec) -> _ConvNet:
    """The ConvNet of an entry whose blocks are each: a conv1d layer with its activation; or a linear
    conv1d, then an activation layer; or a linear conv1d, a batchnorm layer, then an activation layer
    (NAM's block order: conv, batchnorm, activation). Refused otherwise."""
    body = list(spec.layers)[:-1]
    channels = body[0].units
    dilations: list[int] = []
    convs: list[int] = []
    norms: list[int] = []
    names: set[str] = set()
    index = 0
    while index < len(body):
        conv = body[index]
        options = dict(conv.options)
        if conv.type != "conv1d":
            raise _refuse(spec, f"layers[{index}] ({conv.type}) is where a ConvNet block's conv1d layer belongs",
                          _layers_text(spec))
        if (options.get("kernel_size") != 2 or options.get("groups", 1) != 1 or options.get("stride", 1) != 1
                or conv.units != channels):
            raise _refuse(spec, f"layers[{index}]: NAM's ConvNet blocks are conv1d layers of kernel_size 2, one "
                                f"channel count ({channels}), no groups and no stride", _layers_text(spec))
        convs.append(index)
        dilations.append(int(options.get("dilation", 1)))
        activation = conv.activation
        if activation == "linear" and index + 1 < len(body) and body[index + 1].type == "batchnorm":
            index += 1
            norms.append(index)
        if activation == "linear" and index + 1 < len(body) and body[index + 1].type == "activation":
            index += 1
            activation = body[index].activation
        if activation not in ACTIVATIONS:
            raise _refuse(spec, f"layers[{index}]: a ConvNet block ends in one of NAM's activations "
                                f"({', '.join(ACTIVATIONS)}), found {activation!r}", _layers_text(spec))
        names.add(activation)
        index += 1
    if len(names) != 1:
        raise _refuse(spec, "NAM's ConvNet applies one activation in every block", _layers_text(spec))
    if norms and len(norms) != len(convs):
        raise _refuse(spec, "NAM's ConvNet has a batchnorm in every block or in none", _layers_text(spec))
    return _ConvNet(channels, dilations, ACTIVATIONS[names.pop()], bool(norms), convs, norms)


def _rest_state(spec: ModelSpec, module: RealtimeModel) -> Mapping[str, np.ndarray]:
    """The resting state on zeros (what NAM's prewarm feeds): the entry's own when its rest input
    is zeros (computed once per set of weights), else computed for zeros."""
    from ..paths import display_path
    from ..rest import compute_resting_state

    zeros = (0.0,) * spec.in_features
    resting = module.resting_state() if tuple(module.rest_input) == zeros else compute_resting_state(module, zeros)
    if resting.behaviour != "converged":
        raise ExportError.at(
            f"NAM starts a model at rest on silence (an LSTM file holds its starting state, and the engine "
            f"prewarms on zeros); "
            f"this model has no resting state: {resting.unsettled}",
            file=display_path(spec.registry_file), model=spec.name, key=f"models.{spec.name}.layers",
            expected="a state that settles on zero input")
    return resting.state


def build_document(spec: ModelSpec, module: RealtimeModel, *, date: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The ``.nam`` document of ``spec`` with ``module``'s weights (``weights`` a float32 array)."""
    import numpy as np

    architecture = architecture_of(spec)
    state = {key: tensor.detach().cpu().numpy().astype(np.float32) for key, tensor in module.state_dict().items()}
    last = len(spec.layers) - 1
    parts: list[np.ndarray] = []
    config: dict[str, Any]
    if architecture == "WaveNet":
        from . import wavenet

        # The engine reads in_channels (default 1) and takes its outputs from the last head_size.
        config = {**({"in_channels": spec.in_features} if spec.in_features != 1 else {}),
                  **wavenet.config_of(spec.layers[0])}
        return _document(spec, module, architecture, config, wavenet.flat_weights(spec.layers[0], state, "layers.0."),
                         date)
    head_w, head_b = state[f"layers.{last}.weight"], state[f"layers.{last}.bias"]
    if architecture == "LSTM":
        hidden = spec.layers[0].units
        rest = _rest_state(spec, module)
        count = 0
        for index in range(last):
            # A stacked layer (num_layers = N) is N of NAM's layers: its entries _l0 .. _l{N-1},
            # its state h{index}.l0 .. (see modelreg/layers/recurrent.py).
            stack = int(spec.layers[index].option("num_layers", 1))
            for k in range(stack):
                at = f"layers.{index}."
                w = np.concatenate([state[f"{at}weight_ih_l{k}"], state[f"{at}weight_hh_l{k}"]], axis=1)
                # NAM keeps one bias: torch's two summed (in float32, as NAM holds it).
                b = state[f"{at}bias_ih_l{k}"] + state[f"{at}bias_hh_l{k}"]
                suffix = f".l{k}" if stack > 1 else ""
                parts += [w.reshape(-1), b, rest[f"h{index}{suffix}"], rest[f"c{index}{suffix}"]]
            count += stack
        config = {"input_size": spec.in_features, "hidden_size": hidden, "num_layers": count}
    else:
        net = _convnet_blocks(spec)
        for block, index in enumerate(net.convs):
            weight = state[f"layers.{index}.weight"]
            # nn.Conv1d's weight is [out, in, k]: the order NAM's Conv1D reads (NAM/conv1d.cpp).
            bias = state.get(f"layers.{index}.bias", np.zeros(weight.shape[0], np.float32))
            if not net.batchnorm:
                # Without batchnorm NAM's block conv has a bias (a bias-free conv's is zeros).
                parts += [weight.reshape(-1), bias]
                continue
            # With batchnorm NAM's conv has none: BN(conv + b) is BN with its mean moved by -b
            # (one float32 rounding of mean - b).
            norm = net.norms[block]
            ones, zeros = np.ones_like(bias), np.zeros_like(bias)
            parts += [weight.reshape(-1), state[f"layers.{norm}.running_mean"] - bias,
                      state[f"layers.{norm}.running_var"], state.get(f"layers.{norm}.weight", ones),
                      state.get(f"layers.{norm}.bias", zeros),
                      np.array([spec.layers[norm].option("epsilon")], np.float32)]
        config = {"channels": net.channels, "dilations": net.dilations, "batchnorm": net.batchnorm,
                  "activation": net.activation}
    parts += [head_w.reshape(-1), head_b]
    if spec.in_features != 1:
        config["in_channels"] = spec.in_features
    if spec.out_features != 1:
        config["out_channels"] = spec.out_features
    return _document(spec, module, architecture, config, np.concatenate(parts).astype(np.float32), date)


def _document(spec: ModelSpec, module: RealtimeModel, architecture: str, config: dict[str, Any],
              weights: np.ndarray, date: Mapping[str, int] | None) -> dict[str, Any]:
    from .._version import __version__

    document: dict[str, Any] = {
        "version": FILE_VERSION,
        "architecture": architecture,
        "config": config,
        "weights": weights,
    }
    if spec.sample_rate is not None:
        rate = float(spec.sample_rate)
        document["sample_rate"] = int(rate) if rate.is_integer() else rate
    document["metadata"] = {
        "date": dict(date) if date is not None else _today(),
        "name": spec.name,
        "modelreg": {
            "version": __version__,
            "description": spec.description,
            "entry_sha256": spec.entry_sha256,
            "checkpoint_sha256": module.checkpoint_sha256,
        },
    }
    return document


def _today() -> dict[str, int]:
    """NAM's metadata date (year, month, day, hour, minute, second), UTC; ``$SOURCE_DATE_EPOCH``
    when set, so that a reproducible build writes the same bytes."""
    import datetime

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    now = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc) if epoch.isdigit()
           else datetime.datetime.now(datetime.timezone.utc))
    return {"year": now.year, "month": now.month, "day": now.day, "hour": now.hour, "minute": now.minute,
            "second": now.second}


def dumps_nam(document: Mapping[str, Any]) -> bytes:
    """The document as compact JSON; float32 weights as their shortest exact decimals (orjson)."""
    import orjson

    return orjson.dumps(dict(document), option=orjson.OPT_SERIALIZE_NUMPY)


# ---------------------------------------------------------------- reading and checking


def read_nam(path: os.PathLike[str] | str, *, file: str) -> tuple[Any, list[Problem]]:
    """The parsed file and its problems (unreadable, not JSON, schema, format rules)."""
    import orjson

    from ..schemas import schema_problems

    try:
        data = orjson.loads(open(path, "rb").read())
    except OSError as exc:
        return None, [Problem(f"cannot read the file: {exc.strerror or exc}", file=file)]
    except orjson.JSONDecodeError as exc:
        return None, [Problem(f"not JSON: {exc}", file=file, expected="a .nam file (JSON)")]
    problems = schema_problems(data, "nam", file=file)
    if problems:
        return data, problems
    return data, file_problems(data, file=file)


def weight_layout(architecture: str, config: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The weights the engine's constructor of ``architecture`` consumes for ``config``, part by part
    in its order: ``[("layer 0 (lstm, 1 -> 8)", 328), ..., ("head (linear, 8 -> 1)", 9)]``."""
    in_channels = int(config.get("in_channels", 1))
    out_channels = int(config.get("out_channels", 1))
    if architecture == "WaveNet":
        from ..layers import get_kind
        from .wavenet import table_from_config, weight_parts

        # Raises UsageError naming a feature the wavenet layer cannot represent.
        return weight_parts(get_kind("wavenet").spec(table_from_config(config, in_channels), in_channels))
    parts: list[tuple[str, int]] = []
    if architecture == "LSTM":
        hidden, layers = int(config["hidden_size"]), int(config["num_layers"])
        for index in range(layers):
            size = int(config["input_size"]) if index == 0 else hidden
            # W (4H x (in + H)), b (4H), initial hidden (H), initial cell (H)
            parts.append((f"layer {index} (lstm, {size} -> {hidden})", 4 * hidden * (size + hidden) + 6 * hidden))
        parts.append((f"head (linear, {hidden} -> {out_channels})", out_channels * hidden + out_channels))
        return parts
    channels, batchnorm = int(config["channels"]), bool(config["batchnorm"])
    for index, dilation in enumerate(config["dilations"]):
        size = in_channels if index == 0 else channels
        # kernel 2 conv [out][in][2], then its bias, or batchnorm's mean, variance, weight, bias (C each) and eps
        parts.append((f"block {index} (conv, {size} -> {channels}, dilation {dilation}"
                      f"{', batchnorm' if batchnorm else ''})",
                      channels * size * 2 + (4 * channels + 1 if batchnorm else channels)))
    parts.append((f"head (linear, {channels} -> {out_channels})", out_channels * channels + out_channels))
    return parts


def expected_weight_count(architecture: str, config: Mapping[str, Any]) -> int:
    """How many weights the engine's constructor of ``architecture`` consumes for ``config``."""
    return sum(count for _, count in weight_layout(architecture, config))


def count_problem(architecture: str, config: Mapping[str, Any], found: int, *, file: str) -> Problem | None:
    """The weight count against the config: the first part (layer, block, head) the weights do not
    cover, or the weights left over after the head; None when the count is exact."""
    layout = weight_layout(architecture, config)
    expected = sum(count for _, count in layout)
    if found == expected:
        return None
    left = found
    for label, count in layout:
        if left < count:
            # The engine reads exactly this many in order: its release build reads past a short list.
            return Problem(f"the weights end inside {label}: it needs {count:,} weights, the file has {left:,} left",
                           file=file, key="weights", expected=f"{expected:,} weights for this {architecture} config",
                           found=f"{found:,}")
        left -= count
    return Problem(f"{left:,} weights are left after the head: the {architecture} config consumes {expected:,}",
                   file=file, key="weights", expected=f"{expected:,} weights for this {architecture} config",
                   found=f"{found:,}")


def file_problems(data: Mapping[str, Any], *, file: str) -> list[Problem]:
    """The rules beyond the schema: the weights the engine reads, and an LSTM's input size."""
    architecture, config, weights = data["architecture"], data["config"], data["weights"]
    problems = []
    if architecture == "LSTM" and config["input_size"] != config.get("in_channels", 1):
        # NAM's LSTM copies in_channels samples into an input of input_size values.
        problems.append(Problem("an LSTM's input_size must equal its in_channels", file=file, key="config.input_size",
                                expected=str(config.get("in_channels", 1)), found=str(config["input_size"])))
    try:
        counted = count_problem(architecture, config, len(weights), file=file)
    except UsageError as exc:  # a WaveNet variant modelreg cannot represent, named
        problem = exc.problems[0]
        return problems + [attrs.evolve(problem, file=file, reason="cannot count this file's weights: "
                                                                   + problem.reason)]
    if counted is not None:
        problems.append(counted)
    bad = next((i for i, value in enumerate(weights) if not math.isfinite(value)), None)
    if bad is not None:
        problems.append(Problem("a weight is not finite", file=file, key=f"weights[{bad}]", found=str(weights[bad])))
    return problems


def channels_of(data: Mapping[str, Any]) -> tuple[int, int]:
    """(in, out) channels of a checked file."""
    config = data["config"]
    if data["architecture"] == "WaveNet":  # the engine's outputs are the last array's head output
        last = config["layers"][-1]
        outs = last["head"]["out_channels"] if last.get("head") is not None else last["head_size"]
        return int(config.get("in_channels", 1)), int(outs)
    return int(config.get("in_channels", 1)), int(config.get("out_channels", 1))


def describe(data: Mapping[str, Any]) -> str:
    """One line: architecture, sizes, weights, sample rate."""
    config = data["config"]
    if data["architecture"] == "LSTM":
        shape = f"{config['num_layers']} x {config['hidden_size']} hidden"
    elif data["architecture"] == "WaveNet":
        arrays = config["layers"]
        shape = (f"{len(arrays)} layer array{'s' if len(arrays) != 1 else ''}: "
                 + ", ".join(f"{a['channels']} channels x {len(a['dilations'])} layers" for a in arrays))
    else:
        shape = f"{len(config['dilations'])} blocks x {config['channels']} channels, dilations {config['dilations']}"
    rate = f", {data['sample_rate']:g} Hz" if "sample_rate" in data else ""
    ins, outs = channels_of(data)
    return f"NAM {data['architecture']} ({shape}), {ins} -> {outs}, {len(data['weights']):,} weights{rate}"

