"""``modelreg import FILE.nam``: adopt a Neural Amp Modeler file as a registry entry and a checkpoint.

The file is checked as ``modelreg check`` checks it, what NAM's engine reads but a
registry entry cannot hold is refused (one message naming the feature, the file and the
key: :func:`unsupported`), its weights are read by the architecture's reader
(:data:`READERS`: NAM's flat list -> layers and a torch state dict), and nothing is
written until the import is proven:

- the torch module, loaded from the exact checkpoint bytes about to be written, matches
  the **original file run in NAM's own engine** (``nam::get_dsp``, ``Reset``, ``process``
  block by block: the ``nam.parity`` run of :mod:`modelreg.nam.exporter`, from the state
  NAM starts in);
- an LSTM file's stored initial states are the model's resting state on zeros (what NAM's
  trainer burns in; see :func:`start_state_problems`): the entry holds no other start
  state, and its export writes the resting state;
- exporting the checkpoint with the ``nam`` exporter gives the file's config (the keys the
  engine reads) and its weights as float32, bit for bit (the stored initial states:
  within the tolerance above).

NAM's engine is required: without it (``$MODELREG_NAM_CORE``, a compiler) nothing is
imported. The writing (checkpoint, registry entry appended as text) is every import's
(:mod:`modelreg.adopting`).

Each architecture is one reader in :data:`READERS` (LSTM, ConvNet, WaveNet): a function from
the checked file to :class:`Read`. A WaveNet's config and weight order are the ``wavenet``
layer kind's (:mod:`modelreg.nam.wavenet`).
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..adopting import Adopted, appended, entry_text, install_entry, prepare_target
from ..errors import ArtifactError, ExportError, Problem, ToolchainError, UsageError
from ..layers import LayerSpec, get_kind
from ..paths import display_path
from ..spec import ModelSpec, block_duration_ms, count_params

if TYPE_CHECKING:
    import numpy as np

    from ..plugins import Parity
    from ..registry import Registry

__all__ = ["DEFAULT_BLOCK", "DEFAULT_LATENCY_MS", "NAMImportResult", "READERS", "Read", "ReExport", "import_nam",
           "is_nam_document", "unsupported"]

#: The entry's latency target when the file has no sample rate (one sample per call).
DEFAULT_LATENCY_MS = 10.0
#: The entry's block_size when the file has a sample rate (NAM's files do not say; a plugin's common block).
DEFAULT_BLOCK = 64
#: What NAM's trainer burns in: the state after this many samples of zeros (nam/models/recurrent.py).
TRAINER_BURN_IN = 48_000

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")  # the engine's semver rule (NAM/get_dsp.cpp)


@attrs.frozen
class Read:
    """What a reader makes of a checked file: the entry's layers and the torch state."""

    in_features: int
    layers: tuple[LayerSpec, ...]
    #: The torch state dict (float32 arrays, checkpoint keys).
    state: Mapping[str, np.ndarray]
    #: The initial state the file stores, as ``state_layout()`` names it (``h0``, ``c0``...), with
    #: each one's offset in ``weights``; empty for architectures that store none.
    start: Mapping[str, tuple[int, np.ndarray]] = attrs.field(factory=dict)
    #: The exports the entry declares unless told otherwise.
    exports: tuple[str, ...] = ("nam", "rtneural", "onnx")
    notes: tuple[str, ...] = ()


Reader = Callable[[Mapping[str, Any], str], Read]


@attrs.frozen
class ReExport:
    """The ``nam`` exporter's document of the imported checkpoint against the file."""

    #: weights compared bit for bit as float32 (all but the stored initial states).
    values: int
    #: those that differ (first few indices); empty when the import is accepted.
    differing: tuple[int, ...]
    #: stored initial-state values, compared within the tolerance, and the largest difference.
    state_values: int
    state_max_diff: float
    config_equal: bool

    @property
    def ok(self) -> bool:
        return not self.differing and self.config_equal


@attrs.frozen(kw_only=True)
class NAMImportResult(Adopted):
    """What :func:`import_nam` wrote and how it proved the import: :attr:`parity` against the original
    file in NAM's engine (cases by name, incl. ``stream_4096``), and besides it:"""

    architecture: str
    reexport: ReExport


# ---------------------------------------------------------------- what cannot be imported

#: Architectures NAM's engine builds that no registry entry holds: the feature each one is.
NOT_HELD = {
    "SlimmableContainer": "a slimmable container (SlimmableContainer: several submodels, one chosen by a size "
                          "control at run time)",
    "Linear": "NAM's Linear architecture (one long FIR filter: an impulse response)",
}
#: WaveNet config keys (top level, or of a layer array: ``layers[i]``) beyond what a registry's
#: WaveNet holds (the issue's: input_size, condition_size, head_size, channels, kernel_size,
#: dilations, activation, gated, head_bias, head_scale): the feature each one is, refused when the
#: file turns it on (:func:`_active`). A key holding null or false is absent for the engine
#: (NAM/wavenet/model.cpp); the switched-off forms NAM's trainer writes are read.
WAVENET_TOP_FEATURES = {
    "condition_dsp": "a conditioning DSP (condition_dsp: a nested model the conditioning signal runs through)",
    "head": "a post-stack head (head: convolutions after the layer arrays)",
}
WAVENET_LAYER_FEATURES = {
    "slimmable": "slimmable channels (slimmable: channel counts chosen at run time)",
    "kernel_sizes": "per-layer kernel sizes that differ (kernel_sizes: NAM's A2 layer arrays; one size for every "
                    "layer is a kernel_size and is read)",
    "conv_pre_film": "FiLM (feature-wise modulation by the condition)",
    "conv_post_film": "FiLM (feature-wise modulation by the condition)",
    "input_mixin_pre_film": "FiLM (feature-wise modulation by the condition)",
    "input_mixin_post_film": "FiLM (feature-wise modulation by the condition)",
    "activation_pre_film": "FiLM (feature-wise modulation by the condition)",
    "activation_post_film": "FiLM (feature-wise modulation by the condition)",
    "layer1x1_post_film": "FiLM (feature-wise modulation by the condition)",
    "head1x1_post_film": "FiLM (feature-wise modulation by the condition)",
    "bottleneck": "a bottleneck (bottleneck: fewer channels inside each layer)",
    "layer1x1": "a configurable layer 1x1 (layer1x1)",
    "head1x1": "a head 1x1 (head1x1)",
    "groups_input": "grouped convolutions (groups_input)",
    "groups_input_mixin": "grouped convolutions (groups_input_mixin)",
    "gating_mode": "gating modes (gating_mode)",
    "secondary_activation": "a secondary activation (secondary_activation)",
}


def _refused(feature: str, file: str, key: str, found: Any = None, expected: str | None = None) -> UsageError:
    return UsageError.at(f"{feature}: NAM's engine reads it, but no registry entry can hold it, so it cannot be "
                         "imported", file=file, key=key, expected=expected, found=found)


def _version_problem(version: Any, file: str) -> ArtifactError | None:
    """A ``version`` NAM's engine refuses (NAM/get_dsp.cpp: 0.5.0 to 0.7.x)."""
    match = _VERSION.match(version) if isinstance(version, str) else None
    if match is not None:
        major, minor, patch = map(int, match.groups())
        if major == 0 and 5 <= minor <= 7:
            return None
    return ArtifactError.at("a file version NAM's engine does not read", file=file, key="version",
                            expected="0.5.0 to 0.7.x (NAM/get_dsp.h: EARLIEST_SUPPORTED_NAM_FILE_VERSION to "
                                     "LATEST_FULLY_SUPPORTED_NAM_FILE_VERSION)", found=version)


def _present(value: Any) -> bool:
    return value is not None and value is not False


def _active(key: str, value: Any) -> bool:
    """Whether a layer array's ``key`` turns its feature on. NAM's trainer writes most keys in every
    file, switched off (``{"active": false, ...}`` FiLM and head1x1, ``slimmable: null``, a
    ``kernel_sizes`` list of one size, a ``head`` object of kernel size 1...): those describe the plain
    WaveNet and are read (:func:`modelreg.nam.wavenet.table_from_config`), only what is on is refused."""
    if not _present(value):
        return False
    if key == "slimmable":
        return not isinstance(value, dict) or bool(value.get("method"))
    if key == "kernel_sizes":  # one size for every layer is a kernel_size
        return not isinstance(value, list) or len({repr(v) for v in value}) != 1
    if key.endswith("_film") or key == "head1x1":
        return not isinstance(value, dict) or bool(value.get("active", key != "head1x1"))
    return key not in ("bottleneck", "layer1x1", "groups_input", "groups_input_mixin", "gating_mode",
                       "secondary_activation")  # judged by table_from_config, naming the feature


def _wavenet_refusal(config: Mapping[str, Any], file: str) -> UsageError | None:
    """What a WaveNet config turns on that the ``wavenet`` layer cannot hold, named (the feature
    tables above first, then every rule of :func:`modelreg.nam.wavenet.table_from_config`)."""
    from .wavenet import table_from_config

    for key, feature in WAVENET_TOP_FEATURES.items():
        if _present(config.get(key)):
            return _refused(feature, file, f"config.{key}")
    arrays = config.get("layers")
    for index, array in enumerate(arrays if isinstance(arrays, list) else []):
        if not isinstance(array, dict):
            return None  # the schema says what is wrong
        for key, feature in WAVENET_LAYER_FEATURES.items():
            if key in array and _active(key, array[key]):
                return _refused(feature, file, f"config.layers[{index}].{key}", array[key])
    try:
        in_channels = config.get("in_channels", 1)
        table_from_config(config, in_channels if isinstance(in_channels, int) else 1)
    except UsageError as exc:
        problem = exc.problems[0]
        return UsageError.at(f"{problem.reason}, so it cannot be imported", file=file, key=problem.key or "config",
                             expected=problem.expected, found=problem.found)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None  # a malformed config: the schema and the weight count say what is wrong
    return None


def unsupported(data: Any, file: str) -> ArtifactError | UsageError | None:
    """The first thing in ``data`` (a parsed .nam file) that NAM's engine reads and no registry entry
    holds, or a version the engine refuses, as the error to raise; None when there is none.

    Checked before the schema (which knows only what modelreg writes), so that a slimmable
    container or a FiLM WaveNet is refused by name rather than as an unknown architecture."""
    if not isinstance(data, dict):
        return None
    if "version" in data:
        problem = _version_problem(data["version"], file)
        if problem is not None:
            return problem
    architecture = data.get("architecture")
    config = data.get("config")
    if architecture in NOT_HELD:
        return _refused(NOT_HELD[architecture], file, "architecture", architecture)
    if architecture == "WaveNet" and isinstance(config, dict):
        refusal = _wavenet_refusal(config, file)
        if refusal is not None:
            return refusal
    if architecture == "ConvNet" and isinstance(config, dict) and config.get("groups", 1) != 1:
        return _refused("grouped convolutions (the nam exporter writes none)", file, "config.groups",
                        config.get("groups"), expected="1")
    if isinstance(architecture, str) and architecture not in READERS:
        return ArtifactError.at("an architecture NAM's engine does not know", file=file, key="architecture",
                                expected="one of LSTM, ConvNet, WaveNet, Linear, SlimmableContainer "
                                         "(NAM/get_dsp.cpp's registry)", found=architecture)
    return None



# ---------------------------------------------------------------- readers: the file -> layers and state


def _layer(table: Mapping[str, Any], in_features: int) -> LayerSpec:
    return get_kind(table["type"]).spec(table, in_features)


def _take(weights: np.ndarray, position: int, count: int) -> tuple[np.ndarray, int]:
    return weights[position:position + count], position + count


def _read_lstm(data: Mapping[str, Any], file: str) -> Read:
    """NAM's LSTM (NAM/lstm.cpp): per layer ``W`` (4H x (in + H)) row by row, ``b`` (4H), the
    initial hidden and cell states (H each); then the head (out x H row by row, out biases)."""
    import numpy as np

    config = data["config"]
    hidden, count = int(config["hidden_size"]), int(config["num_layers"])
    size, out = int(config["input_size"]), int(config.get("out_channels", 1))
    if count == 0:
        raise _refused("an LSTM of no layers (NAM's engine passes the input through)", file, "config.num_layers", 0,
                       expected="at least one layer")
    weights = _float32(data["weights"])
    state: dict[str, np.ndarray] = {}
    start: dict[str, tuple[int, np.ndarray]] = {}
    layers: list[LayerSpec] = []
    position = 0
    for index in range(count):
        width = size if index == 0 else hidden
        w, position = _take(weights, position, 4 * hidden * (width + hidden))
        w = w.reshape(4 * hidden, width + hidden)
        b, position = _take(weights, position, 4 * hidden)
        state[f"layers.{index}.weight_ih_l0"] = w[:, :width]
        state[f"layers.{index}.weight_hh_l0"] = w[:, width:]
        # NAM holds one bias; torch two. bias_hh = -0.0 keeps every bit of b in the sum the
        # exporter writes (x + -0.0 is x for every float, -0.0 included).
        state[f"layers.{index}.bias_ih_l0"] = b
        state[f"layers.{index}.bias_hh_l0"] = np.full(4 * hidden, -0.0, np.float32)
        for name in ("h", "c"):
            start[f"{name}{index}"] = (position, weights[position:position + hidden])
            position += hidden
        layers.append(_layer({"type": "lstm", "units": hidden}, width))
    return _with_head(weights, position, hidden, out, layers, state, in_features=size, start=start)


def _with_head(weights: np.ndarray, position: int, width: int, out: int, layers: list[LayerSpec],
               state: dict[str, np.ndarray], *, in_features: int,
               start: Mapping[str, tuple[int, np.ndarray]] | None = None) -> Read:
    """NAM's head, a linear layer (out x width row by row, then out biases), as a dense layer."""
    index = len(layers)
    head, position = _take(weights, position, out * width)
    state[f"layers.{index}.weight"] = head.reshape(out, width)
    state[f"layers.{index}.bias"], position = _take(weights, position, out)
    layers.append(_layer({"type": "dense", "units": out, "activation": "linear"}, width))
    assert position == len(weights)  # the count was checked against the config
    return Read(in_features, tuple(layers), state, dict(start or {}))


def _read_convnet(data: Mapping[str, Any], file: str) -> Read:
    """NAM's ConvNet (NAM/convnet.cpp): per block a kernel-2 dilated conv ``[out][in][2]``, its bias
    (no batchnorm) or batchnorm's running mean, running variance, weight, bias and epsilon; one
    activation for all blocks; then the head. With batchnorm a block becomes three layers (a
    bias-free conv1d, batchnorm, activation: NAM's order), without it one conv1d with its activation."""
    import numpy as np

    from .format import ACTIVATIONS

    config = data["config"]
    names = {nam: ours for ours, nam in ACTIVATIONS.items()}
    activation = config["activation"]
    if activation not in names:
        raise _refused(f"the activation {activation!r} (no registry activation computes it)", file,
                       "config.activation", activation, expected="one of " + ", ".join(names))
    channels, batchnorm = int(config["channels"]), bool(config["batchnorm"])
    ins, out = int(config.get("in_channels", 1)), int(config.get("out_channels", 1))
    weights = _float32(data["weights"])
    state: dict[str, np.ndarray] = {}
    layers: list[LayerSpec] = []
    position = 0
    for block, dilation in enumerate(config["dilations"]):
        width = ins if block == 0 else channels
        conv, position = _take(weights, position, channels * width * 2)
        index = len(layers)
        state[f"layers.{index}.weight"] = conv.reshape(channels, width, 2)  # nn.Conv1d's [out][in][k]: NAM's order
        table: dict[str, Any] = {"type": "conv1d", "units": channels, "kernel_size": 2, "dilation": int(dilation)}
        if not batchnorm:
            state[f"layers.{index}.bias"], position = _take(weights, position, channels)
            layers.append(_layer({**table, "activation": names[activation]}, width))
            continue
        layers.append(_layer({**table, "bias": False}, width))  # NAM's batchnorm blocks have a bias-free conv
        norm = len(layers)
        for key in ("running_mean", "running_var", "weight", "bias"):
            state[f"layers.{norm}.{key}"], position = _take(weights, position, channels)
        epsilon = float(str(weights[position]))  # the float32's shortest decimal: it writes back to the same bits
        position += 1
        layers.append(_layer({"type": "batchnorm", "epsilon": epsilon}, channels))
        layers.append(_layer({"type": "activation", "activation": names[activation]}, channels))
    return _with_head(weights, position, channels, out, layers, state, in_features=ins)


def _read_wavenet(data: Mapping[str, Any], file: str) -> Read:
    """NAM's WaveNet (NAM/wavenet/model.cpp): one ``wavenet`` layer; its config (plain or the trainer's
    newer form, :func:`modelreg.nam.wavenet.table_from_config`) and weight order
    (:func:`modelreg.nam.wavenet.named_tensors`) are the layer kind's. ``head_scale`` is the last
    weight (the engine reads it there, not from the config): written to the entry as the float32's
    shortest decimal, so that the export writes back the same bits in both places."""
    from .wavenet import named_tensors, table_from_config

    config = data["config"]
    ins = int(config.get("in_channels", 1))
    try:
        table = table_from_config(config, ins)
    except UsageError as exc:  # unsupported() has refused these already; kept for a direct caller
        raise UsageError(*(attrs.evolve(p, file=file) for p in exc.problems)) from None
    weights = _float32(data["weights"])
    scale = float(str(weights[-1]))
    if _float32([table["head_scale"]])[0] != weights[-1]:
        raise _refused("a head_scale in the config other than the one in the weights (the engine uses the last "
                       "weight; an entry holds one head_scale, written in both places)", file, "config.head_scale",
                       table["head_scale"], expected=f"{scale!r} (the last weight)")
    layer = _layer({**table, "head_scale": scale}, ins)
    state, _ = named_tensors(layer, weights, "layers.0.")
    return Read(ins, (layer,), state, exports=("nam", "onnx"))  # RTNeural holds no WaveNet


#: NAM architecture -> its reader.
READERS: dict[str, Reader] = {"LSTM": _read_lstm, "ConvNet": _read_convnet, "WaveNet": _read_wavenet}


def _float32(values: Sequence[float]) -> np.ndarray:
    """The weights as NAM's engine holds them: each JSON number parsed as a double, rounded to float."""
    import numpy as np

    return np.asarray(values, dtype=np.float64).astype(np.float32)


def is_nam_document(path: Path) -> bool:
    """True for a ``.nam`` file, or a JSON file holding a NAM model (``architecture`` and
    ``weights`` at the top, no RTNeural ``layers``)."""
    if path.suffix.lower() == ".nam":
        return True
    if path.suffix.lower() != ".json":
        return False
    import orjson

    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    return isinstance(data, dict) and "architecture" in data and "weights" in data and "layers" not in data


# ---------------------------------------------------------------- the proof


def start_state_problems(read: Read, resting: Mapping[str, np.ndarray], tolerance: float,
                         file: str) -> list[Problem]:
    """Each stored initial state against the resting state on zeros, within ``tolerance``
    (absolute, relative beyond magnitude 1, as parity): the first value off per state."""
    import numpy as np

    problems = []
    for key, (offset, stored) in read.start.items():
        rest = np.asarray(resting[key], np.float32)
        off = np.abs(stored.astype(np.float64) - rest) > tolerance * np.maximum(1.0, np.abs(rest))
        if not off.any():
            continue
        first = int(np.argmax(off))
        what = "hidden" if key.startswith("h") else "cell"
        problems.append(Problem(
            f"layer {key[1:]} (lstm): the file's initial {what} state is not the model's resting state on zeros, "
            f"the only start state an entry holds (modelreg starts a NAM LSTM at rest on silence and its export "
            f"writes that state; NAM's trainer writes the state after {TRAINER_BURN_IN:,} samples of zeros, which "
            f"is it for a model that settles)", file=file, key=f"weights[{offset + first}]",
            expected=f"{float(rest[first]):.9g} (within {tolerance:g})", found=f"{float(stored[first]):.9g}"))
    return problems


def _compare(document: Mapping[str, Any], data: Mapping[str, Any], read: Read, tolerance: float) -> ReExport:
    """The exporter's document against the file: the config (the keys the engine reads, its
    defaults filled in), every weight as float32 bits, the stored states within ``tolerance``."""
    import numpy as np

    original = _float32(data["weights"])
    written = np.asarray(document["weights"], np.float32)
    states = np.zeros(len(original), bool)
    for offset, stored in read.start.values():
        states[offset:offset + len(stored)] = True
    if written.shape != original.shape:
        return ReExport(len(original), (-1,), 0, float("nan"), _engine_config(document) == _engine_config(data))
    same = written.view(np.uint32) == original.view(np.uint32)
    differing = tuple(int(i) for i in np.flatnonzero(~same & ~states)[:8])
    diff = np.abs(written[states].astype(np.float64) - original[states])
    return ReExport(int((~states).sum()), differing, int(states.sum()), float(diff.max()) if diff.size else 0.0,
                    _engine_config(document) == _engine_config(data))


#: The config keys NAM's engine reads per architecture, with its defaults.
_ENGINE_KEYS: dict[str, dict[str, Any]] = {
    "LSTM": {"num_layers": None, "input_size": None, "hidden_size": None, "in_channels": 1, "out_channels": 1},
    "ConvNet": {"channels": None, "dilations": None, "batchnorm": None, "activation": None, "groups": 1,
                "in_channels": 1, "out_channels": 1},
}


#: A layer array's keys in the plain WaveNet config (what the nam exporter writes).
_PLAIN_WAVENET_KEYS = {"input_size", "condition_size", "head_size", "channels", "kernel_size", "dilations",
                       "activation", "gated", "head_bias"}


def _engine_config(data: Mapping[str, Any]) -> dict[str, Any]:
    config = data["config"]
    if data["architecture"] == "WaveNet":
        # What the engine builds: the layer arrays resolved from the plain or the newer form (the
        # trainer's switched-off keys say nothing more), in_channels, and head_scale.
        from .wavenet import table_from_config

        ins = int(config.get("in_channels", 1))
        table = table_from_config(config, ins)
        return {"in_channels": ins, **table, "head_scale": float(_float32([table["head_scale"]])[0])}
    keys = _ENGINE_KEYS.get(data["architecture"])
    if keys is None:  # an architecture added by a reader: its config as written
        return dict(config)
    return {key: config.get(key, default) for key, default in keys.items()}


def _engine_parity(spec: ModelSpec, module: Any, source: Path, tolerance: float) -> Parity:
    """The original file in NAM's engine against the torch module (the exporter's nam.parity run)."""
    from .engine import NotConfigured, RunnerError, find_engine, run_file, runner_binary
    from .exporter import RUNTIME, _host, compare_from_rest

    try:
        engine = find_engine()
    except NotConfigured as exc:
        raise ToolchainError.at(f"{exc}; modelreg import proves a .nam file in NAM's engine before it writes "
                                "anything", key="$MODELREG_NAM_CORE") from None
    binary = runner_binary(engine)
    sample_rate, block = _host(spec)

    def run(frames: np.ndarray) -> np.ndarray:
        try:
            return run_file(binary, source, frames, sample_rate=sample_rate, block=block, out=spec.out_features)
        except RunnerError as exc:
            raise ArtifactError.at(f"{RUNTIME}: {exc}", file=display_path(source)) from None

    return compare_from_rest(spec, module, run, tolerance)


# ---------------------------------------------------------------- import


def _description(data: Mapping[str, Any], source: Path) -> str:
    """The modelreg description a file carries (a modelreg export), else one built from NAM's metadata."""
    found = data.get("metadata")
    metadata: Mapping[str, Any] = found if isinstance(found, dict) else {}
    ours = metadata.get("modelreg")
    if isinstance(ours, dict) and isinstance(ours.get("description"), str) and ours["description"].strip():
        return ours["description"]
    said = [str(metadata[key]) for key in ("name", "gear_make", "gear_model", "gear_type", "tone_type")
            if isinstance(metadata.get(key), str) and metadata[key].strip()]
    by = f", modeled by {metadata['modeled_by']}" if isinstance(metadata.get("modeled_by"), str) else ""
    about = f" ({', '.join(said)}{by})" if said else ""
    return f"NAM {data['architecture']} capture{about}, imported from {source.name} by modelreg import."


def import_nam(
    path: str | os.PathLike[str],
    registry: Registry | str | os.PathLike[str] | None = None,
    *,
    name: str | None = None,
    latency_ms: float | None = None,
    exports: Sequence[str] | None = None,
    block_size: int = DEFAULT_BLOCK,
    force: bool = False,
) -> NAMImportResult:
    """Adopt the NAM model file ``path`` as entry ``name`` of ``registry``, with checkpoint ``models/NAME.pt``.

    ``registry`` and ``name`` as :func:`modelreg.import_rtneural`. The entry gets the file's
    ``sample_rate`` (with ``block_size``, default 64: an audio-rate entry) when it has one, its
    description (from modelreg's metadata, else NAM's), ``reset = "rest"`` for an LSTM (NAM
    starts it at rest), ``latency_ms`` when given (default: the block's duration; 10 ms per
    sample for a file without a sample rate) and ``exports`` (default ``nam``, ``rtneural``,
    ``onnx``).

    Raises :class:`ArtifactError` when the file is no valid NAM file or the import does not
    reproduce it (nothing is written then), :class:`UsageError` for what a registry entry cannot
    hold (naming the feature and key) and for a taken name, :class:`ToolchainError` when NAM's
    engine is not configured (the proof needs it), :class:`RegistryError` / :class:`WriteError`
    as the RTNeural import.
    """
    import hashlib

    import numpy as np
    import orjson
    import torch

    from ..checks import DEFAULT_TOLERANCE
    from ..registry import load_registry
    from .format import _rest_state, build_document, read_nam

    source = Path(path)
    shown = display_path(source)
    if not (isinstance(block_size, int) and 1 <= block_size <= 65536):
        raise UsageError.at("invalid block size", key="block_size", expected="an integer from 1 to 65536",
                            found=block_size)
    target = prepare_target(source, registry, name=name, force=force, latency_ms=latency_ms)
    name = target.name

    # The file: what cannot be imported first (by name), then the schema and the weight count.
    try:
        raw = orjson.loads(source.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        raw = None  # read_nam says why
    refusal = unsupported(raw, shown)
    if refusal is not None:
        raise refusal
    data, problems = read_nam(source, file=shown)
    if problems:
        raise ArtifactError(*problems)
    architecture = data["architecture"]
    read = READERS[architecture](data, shown)
    notes = list(read.notes)

    rate = data.get("sample_rate")
    extra: list[tuple[str, Any]] = []
    if rate is not None:
        extra += [("sample_rate", int(rate) if float(rate).is_integer() else float(rate)), ("block_size", block_size)]
    elif latency_ms is None:
        latency_ms = DEFAULT_LATENCY_MS
    if read.start:
        extra.append(("reset", "rest"))  # NAM starts the model at rest; so does the entry's reset()
    exports = tuple(read.exports if exports is None else exports)
    spec = ModelSpec(
        name=name, description=_description(data, source), input_shape=(1, read.in_features),
        output_shape=(1, read.layers[-1].units), dtype="float32", params=count_params(list(read.layers),
                                                                                      read.in_features),
        latency_ms=(latency_ms if latency_ms is not None else block_duration_ms(block_size, float(rate))),
        layers=read.layers, checkpoint=target.checkpoint,
        registry_file=target.registry_file.absolute(), exports=exports, settings=dict(target.settings),
        sample_rate=None if rate is None else float(rate), block_size=block_size if rate is not None else None,
        reset="rest" if read.start else "zeros",
    )
    module = spec.build()
    full = module.state_dict()
    for key, value in read.state.items():  # every key the reader wrote is one the module has, of its shape
        assert key in full and tuple(full[key].shape) == value.shape, (key, value.shape)
        full[key] = torch.from_numpy(np.ascontiguousarray(value))
    module.load_state_dict(full, strict=True)
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    checkpoint_bytes = buffer.getvalue()
    sha256 = hashlib.sha256(checkpoint_bytes).hexdigest()

    # The proof runs on the checkpoint bytes about to be written.
    proven = spec.build()
    proven.load_state_dict(torch.load(io.BytesIO(checkpoint_bytes), weights_only=True), strict=True)
    proven.eval()
    tolerance = DEFAULT_TOLERANCE
    problems = []
    if read.start:  # the stored initial states against the resting state (a file without any: nothing to check)
        try:
            resting = _rest_state(spec, proven)
        except ExportError as exc:
            raise ArtifactError(*(attrs.evolve(p, file=shown, key=None) for p in exc.problems)) from None
        problems = start_state_problems(read, resting, tolerance, shown)
    if problems:
        raise UsageError(*problems)
    parity = _engine_parity(spec, proven, source, tolerance)
    document = orjson.loads(orjson.dumps(build_document(spec, proven), option=orjson.OPT_SERIALIZE_NUMPY))
    reexport = _compare(document, data, read, tolerance)
    if not parity.ok:
        problems.append(Problem(f"the imported torch model does not match the file in NAM's engine: {parity.summary}",
                                file=shown, model=name))
    if not reexport.config_equal:
        problems.append(Problem("the nam export of the imported checkpoint does not give the file's config",
                                file=shown, model=name, key="config", expected=str(_engine_config(data)),
                                found=str(_engine_config(document))))
    if reexport.differing:
        first = reexport.differing[0]
        problems.append(Problem("the nam export of the imported checkpoint does not give the file's float32 weights",
                                file=shown, model=name, key=f"weights[{first}]" if first >= 0 else "weights",
                                expected="bit-identical float32 values",
                                found=f"{len(reexport.differing)}+ differing values"))
    if problems:
        raise ArtifactError(*problems)
    found = data.get("metadata")
    metadata: Mapping[str, Any] = found if isinstance(found, dict) else {}
    dropped = [key for key in ("loudness", "input_level_dbu", "output_level_dbu") if metadata.get(key) is not None]
    if dropped:
        notes.append(f"metadata {', '.join(dropped)}: the engine uses them to calibrate levels; the entry does not "
                     "hold them and the nam export does not write them")
    if architecture == "WaveNet" and any(set(array) - _PLAIN_WAVENET_KEYS for array in data["config"]["layers"]):
        notes.append("the config is in NAM's newer form (nested head, per-layer lists, switched-off features); the "
                     "nam export writes the plain form of the same network, which every engine since 0.5 reads")
    extra_keys = sorted(set(data["config"]) - set(_ENGINE_KEYS.get(architecture, data["config"])))
    if extra_keys:
        notes.append(f"config keys the engine does not read, left out: {', '.join(extra_keys)}")

    entry = entry_text(name, spec.description, read.in_features, read.layers, latency_ms=latency_ms,
                        exports=exports, checkpoint=target.checkpoint_rel, sha256=sha256, extra=extra)
    new_bytes = appended(target.old_bytes, entry)
    backup = install_entry(target.registry_file, target.registry_shown, target.old_bytes, new_bytes, name, spec,
                      target.checkpoint, checkpoint_bytes, target.existed)
    final = load_registry(target.registry_file, strict=False)[name]
    return NAMImportResult(name=name, source=source, registry=target.registry_file, checkpoint=target.checkpoint,
                           sha256=sha256, spec=final, architecture=architecture, entry_text=entry, parity=parity,
                           reexport=reexport, notes=tuple(notes), backup=backup)
