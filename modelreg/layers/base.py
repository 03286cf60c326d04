"""The interface every layer kind implements, and the small helpers kinds share.

A layer kind is one object (a :class:`LayerKind`) that knows everything about
its layers: registry keys and their JSON Schema, parameter count, output size,
state, torch module and per-frame step, RTNeural layout both ways, RTNeural
size rules and its numpy reference-runtime layer. The shared machinery
(registry, builder, RTNeural writer, reader and runtime, ONNX state) asks the
kinds in :data:`modelreg.layers.KINDS` and holds no per-kind code.

Import cost matters (``import modelreg`` and ``load_registry()`` must not
import torch or numpy): kinds import torch and numpy inside the methods that
need them, never at module level.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import attrs

from ..errors import Problem, UsageError

if TYPE_CHECKING:
    import numpy as np
    from torch import Tensor, nn

__all__ = [
    "LayerKind",
    "LayerProblem",
    "Leaf",
    "LayerSpec",
    "RTNeuralLayerType",
    "RuntimeLayer",
    "SizeCheck",
    "StateReader",
    "StateSpec",
    "BIAS_KEY",
    "bias_option",
    "cpp_float",
    "generation",
    "get_kind",
    "install_builtin",
    "kinds",
    "leaves",
    "names",
    "register_kind",
    "rtneural_handler",
    "rtneural_handlers",
    "state_name",
    "unregister_kind",
    "unstacked",
    "with_bias",
]

#: (name, size) of each state tensor of one layer, e.g. ``(("h", 64), ("c", 64))``;
#: ``()`` for a stateless layer. Names get the layer index appended (``h2``).
StateSpec = tuple[tuple[str, int], ...]
#: A semantic problem of one registry layer: (key inside the layer, reason, expected, found).
LayerProblem = tuple[str, str, "str | None", "str | None"]


@attrs.frozen
class LayerSpec:
    """One layer: its ``type`` (a kind of :mod:`modelreg.layers`: ``dense``, ``lstm``, ``gru``),
    its output size ``units``, a dense layer's ``activation``, and any further keys
    of its kind as sorted ``(key, value)`` pairs in ``options``."""

    type: str
    units: int
    activation: str = "linear"
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def kind(self) -> LayerKind:
        """The kind that knows everything else about this layer."""
        return get_kind(self.type)

    def option(self, key: str, default: Any = None) -> Any:
        """The value of a kind-specific key (``default`` when not set)."""
        return dict(self.options).get(key, default)

    @property
    def is_recurrent(self) -> bool:
        """True when the layer carries state from one frame to the next."""
        return bool(self.kind.state(self))

    @property
    def has_bias(self) -> bool:
        """False for a layer declared ``bias = false`` (torch's ``bias=False``); True otherwise,
        also for kinds that have no bias at all (ask ``kind.bias_entries()`` what a bias is)."""
        return self.option("bias", True) is not False


class RuntimeLayer(Protocol):
    """A layer of the numpy reference runtime: float32 frames ``[batch, in]`` -> ``[batch, out]``."""

    in_size: int
    out_size: int
    is_recurrent: bool

    def reset(self, batch: int) -> None:
        """Zero the state for ``batch`` parallel streams (stateless layers: nothing)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        """One frame; advances the state."""


class SizeCheck:
    """What an RTNeural layer's size rules are checked with (see ``check_rtneural_sizes``).

    ``previous`` is the size the layer receives (None when unknown), ``units``
    the layer's ``shape`` size, ``source`` words where ``previous`` comes from,
    ``layer`` the layer's JSON object (for kinds whose sizes live in keys of
    their own, such as conv2d's ``num_features_in``).
    """

    def __init__(self, *, index: int, previous: int | None, units: int, source: str, file: str | None,
                 dims: Callable[[int], "tuple[int, ...] | None"], problems: list[Problem],
                 layer: Mapping[str, Any] | None = None) -> None:
        self.index = index
        self.layer: Mapping[str, Any] = layer if layer is not None else {}
        self.prefix = f"layers[{index}]"
        self.previous = previous
        self.units = units
        self.source = source
        self.file = file
        self.dims = dims
        self.problems = problems

    @property
    def from_previous(self) -> str:
        return f"the {self.previous} outputs of {self.source}"

    @property
    def from_units(self) -> str:
        return f"the layer's {self.units} units (shape)"

    def problem(self, reason: str, *, key: str, expected: str | None = None, found: str | None = None) -> None:
        self.problems.append(Problem(reason, file=self.file, key=key, expected=expected, found=found))

    def expect(self, j: int, axis: str, actual: int, wanted: int | None, why: str) -> None:
        """Weight ``j``'s count of rows / columns / entries must equal ``wanted`` (None: unknown, not checked)."""
        if wanted is not None and actual != wanted:
            plural = {"row": "rows", "column": "columns", "entry": "entries"}[axis]
            self.problem(f"{axis} count {actual} does not match {why}", key=f"{self.prefix}.weights[{j}]",
                         expected=f"{wanted} {plural}", found=f"{actual} {plural}")


class StateReader:
    """Reads arrays out of a PyTorch-style state dict, checking shapes and remembering what was used."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.state = state
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.state

    def ignore(self, key: str) -> None:
        """Mark ``key`` as used without reading it (an entry inference never needs, such as a
        batchnorm's ``num_batches_tracked``); a missing key is fine."""
        if key in self.state:
            self.used.add(key)

    def take(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        import numpy as np

        if key not in self.state:
            raise UsageError.at("missing entry in the state dict", key=key, expected=f"an array of shape {list(shape)}")
        self.used.add(key)
        try:
            array = np.asarray(self.state[key])
        except Exception as exc:  # e.g. a torch tensor that requires grad
            raise UsageError.at(f"state dict entry is not an array ({exc})", key=key,
                                expected=f"a numpy array of shape {list(shape)}") from None
        if array.dtype.kind not in "fiu":
            raise UsageError.at("state dict entry is not numeric", key=key, expected="a float array",
                                found=str(array.dtype))
        if tuple(array.shape) != shape:
            raise UsageError.at("state dict entry has the wrong shape", key=key, expected=str(list(shape)),
                                found=list(array.shape))
        # RTNeural's default build computes in float; all layout work happens in float32.
        return array.astype(np.float32)


class RTNeuralLayerType(abc.ABC):
    """The RTNeural side of a layer: check and run the RTNeural layer types it names.

    Every :class:`LayerKind` is one; an RTNeural layer type that is not (yet) a
    registry kind (the stand-alone ``activation`` layer) implements only this.
    """

    #: RTNeural ``type`` values this handles (the first is the one written).
    rtneural_types: ClassVar[tuple[str, ...]]
    #: Nesting depth of each ``weights`` entry (1: a vector, 2: a matrix, 3 or 4: a tensor).
    weight_depths: ClassVar[tuple[int, ...]]
    #: Whether RTNeural's loader follows a layer of these types with a layer for its
    #: ``activation``, when it names one (dense, conv1d, conv2d).
    loader_adds_activation: ClassVar[bool] = False

    def loader_layers(self, layer: Mapping[str, Any], size: int, units: int) -> list[tuple[str, int, int]]:
        """What RTNeural's dynamic loader builds for this file layer, fed ``size`` values and
        declaring ``units``: ``(Layer::getName(), in, out)`` each. modelreg's C++ runner
        compares them with what the loader did build (it skips types it does not know)."""
        built = [(self.rtneural_types[0], size, units)]
        activation = str(layer.get("activation") or "")
        if self.loader_adds_activation and activation:
            built.append((activation, units, units))
        return built

    @abc.abstractmethod
    def rtneural_schema(self) -> dict[str, Any]:
        """JSON Schema applied to a layer of these types (the ``then`` of an if/then in rtneural.schema.json)."""

    @abc.abstractmethod
    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        """Report (through ``check``) weight sizes that contradict the previous layer or the units;
        return the size this layer passes on (normally ``check.units``)."""

    @abc.abstractmethod
    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any],
                       units: int) -> list[RuntimeLayer]:
        """The numpy reference-runtime layers for a checked RTNeural layer (``weight(j)``: entry j as an array)."""


class LayerKind(RTNeuralLayerType):
    """Everything about one registry layer ``type``. Subclasses are stateless singletons."""

    #: The registry ``type`` value.
    name: ClassVar[str]
    #: Registry keys besides ``type``, each with its JSON Schema (in the order messages list them).
    registry_keys: ClassVar[Mapping[str, Any]]
    #: Keys a layer of this kind must set.
    required_keys: ClassVar[tuple[str, ...]]
    #: For required keys that not every kind requires: what a missing one should hold, in words
    #: (default: the key's schema description).
    missing_key_hints: ClassVar[Mapping[str, str]] = {}
    #: Keys other kinds take that this kind refuses, each with why (default: a generic reason).
    refused_keys: ClassVar[Mapping[str, str]] = {}
    #: A few layer tables of this kind (without ``type``), for the tests every kind goes through.
    examples: ClassVar[tuple[Mapping[str, Any], ...]]
    #: For a kind no RTNeural export can hold (neither its JSON nor its compile-time layers): why, and
    #: which exporters can (the RTNeural exporters refuse an entry holding one with it). None: RTNeural
    #: can hold it (a block of such kinds, like the residual block, is decided by its layers).
    rtneural_refusal: ClassVar[str | None] = None

    # ------------------------------------------------------------------ registry (no torch, no numpy)

    def children(self, layer: LayerSpec) -> tuple[tuple[str, tuple[LayerSpec, ...]], ...]:
        """The layer paths a block holds, each ``(registry key, its layers)`` and each fed the block's
        input (a residual block's ``layers`` and ``skip``); ``()`` for a plain layer, the default."""
        return ()

    @abc.abstractmethod
    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        """The :class:`LayerSpec` of a schema-valid layer table fed ``in_features`` values."""

    def keys_text(self, layer: LayerSpec) -> str | None:
        """The layer's keys for people, when the generic ``key=value`` list cannot show them (nested
        tables); None (the default): the generic list (:func:`modelreg.spec.layer_keys`)."""
        return None

    def problems(self, layer: LayerSpec, in_features: int) -> list[LayerProblem]:
        """What the schema cannot say about one layer (e.g. sizes that must divide); none by default."""
        return []

    def bias_entries(self, layer: LayerSpec) -> tuple[str, ...]:
        """The torch state-dict names (without the ``layers.{i}.`` prefix) that hold the layer's bias
        when it has one, whatever its ``bias`` key says; ``()`` for a kind without the ``bias`` key.
        What checkpoint messages and ``modelreg import --drop-zero-biases`` go by."""
        return ("bias",) if "bias" in self.registry_keys else ()

    @abc.abstractmethod
    def params(self, layer: LayerSpec, in_features: int) -> int:
        """PyTorch's parameter count, computed without building anything."""

    @abc.abstractmethod
    def state(self, layer: LayerSpec) -> StateSpec:
        """The state tensors a layer carries between frames (each ``[1, batch, size]``); ``()`` if none."""

    def frame_period(self, layer: LayerSpec) -> int:
        """Frames after which the layer's own frame counter, if it has one, is back where it was (a
        strided conv1d: its stride); 1, the default, for a layer that counts no frames. Blocks need
        not say: the model takes the lcm over its plain layers (``leaves``)."""
        return 1

    def memory(self, layer: LayerSpec) -> int | None:
        """How many past input frames the layer's state depends on: a finite memory (conv buffers), after
        which a constant input brings the state to rest exactly; ``0`` for a layer without state; None
        for a state with unbounded memory (recurrent layers: their resting state is searched for,
        :mod:`modelreg.rest`). The default: 0 without state, else None (a kind that knows says so)."""
        return 0 if not self.state(layer) else None

    @abc.abstractmethod
    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        """(rule, low, high) that every output value of the layer satisfies."""

    # ------------------------------------------------------------------ torch

    @abc.abstractmethod
    def build(self, layer: LayerSpec, in_features: int) -> nn.Module:
        """The torch module (created in the order that keeps seeded builds reproducible)."""

    @abc.abstractmethod
    def forward(self, module: nn.Module, layer: LayerSpec, x: Tensor,
                state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Run ``x [batch, time, features]`` from ``state`` (as :meth:`state` lists it); pure."""

    # ------------------------------------------------------------------ RTNeural layout, both ways

    @abc.abstractmethod
    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        """One RTNeural JSON layer from the torch state-dict entries under ``prefix`` (``layers.{i}.``)."""

    @abc.abstractmethod
    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        """The inverse: a checked RTNeural layer -> (its LayerSpec, torch state-dict entries without prefix)."""

    def rtneural_json_refusal(self, layer: LayerSpec) -> str | None:
        """Why RTNeural's JSON format cannot hold this (plain) layer although its kind has an RTNeural
        type (a strided conv1d: parseJson reads no stride), or None, the default. The ``rtneural``
        exporter refuses such an entry before writing anything, naming ``rtneural-cpp``."""
        return None

    # ------------------------------------------------------------------ RTNeural C++ (compile-time API)

    def cpp_types(self, layer: LayerSpec, in_features: int) -> list[str]:
        """RTNeural's compile-time layer types for ``layer``, in order (``RTNeural::DenseT<float, IN, OUT>``,
        then its activation's type, ...), for the ``rtneural-cpp`` exporter's ``ModelT``."""
        raise UsageError.at(f"layer type {self.name!r} has no RTNeural compile-time type in modelreg yet",
                            expected="a kind that defines cpp_types()")

    @abc.abstractmethod
    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        """The shape of every ``weights`` array :meth:`to_rtneural` writes for ``layer`` (what a file
        must hold for it; the ``rtneural-cpp`` header checks files against these before loading)."""

    def rtneural_activation(self, layer: LayerSpec) -> str | None:
        """The ``activation`` value RTNeural's loader acts on for this layer, or None when it ignores it."""
        return None

    def rtneural_keys(self, layer: LayerSpec) -> tuple[tuple[str, int, int], ...]:
        """Integer keys besides ``shape`` that RTNeural's loader checks a layer against (``kernel_size``,
        ``dilation``...), each ``(key, value, default)``: the value this layer needs, and what the loader
        assumes when the key is absent (0: the loader throws). Read as RTNeural does: an array's last
        entry. The ``rtneural-cpp`` header checks files against them. None by default."""
        return ()

    def cpp_set_weights(self, layer: LayerSpec, in_features: int, target: str, weights: str,
                        shapes: Sequence[tuple[int, ...]]) -> list[str]:
        """C++ statements that set the weights of ``target`` (this layer's RTNeural compile-time object)
        through RTNeural's own setters, reading them from ``weights`` (a ``modelreg_rt::Weights``:
        its ``vec``, ``rows``, ``transposed``, ``conv1d_kernel``... each take the next values, in
        the order and row-major layout :meth:`to_rtneural` writes them; ``kernel``, ``matrix`` and
        ``values`` hand out buffers it reuses, for one setter call each: prefer them where the
        setter takes that form, they keep the load's allocations and page faults down). ``shapes``: the arrays
        this layer's export holds (as :meth:`rtneural_shapes`, without the ones it leaves out).
        What the ``rtneural-cpp`` exporter's embedded-weights header runs instead of parseJson:
        the setters must receive exactly what RTNeural's JSON loader hands them."""
        raise UsageError.at(f"layer type {self.name!r} cannot be loaded from embedded weights in modelreg yet",
                            expected="a kind that defines cpp_set_weights()")

    def unstack(self, leaf: Leaf) -> list[Leaf]:
        """The single layers one registry layer stacks, in order, each as the :class:`Leaf` that the
        per-layer RTNeural methods (:meth:`to_rtneural`, :meth:`rtneural_shapes`,
        :meth:`cpp_set_weights`...) take: one RTNeural file layer each. ``[leaf]`` itself for every
        kind but a stacked recurrent layer (``num_layers = N``: torch's one module, RTNeural's N
        layers, read under the same prefix as torch_helpers' ``layer_index`` reads them)."""
        return [leaf]

    def torch_tensors(self, layer: LayerSpec, in_features: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """The torch state-dict tensors (name without the layer's prefix, shape) that
        :meth:`cpp_load_torch`'s statements read, in the order they read them; ``()`` for a kind
        without weights. What the ``rtneural-torch`` header checks a state-dict JSON against before
        handing it to RTNeural's ``torch_helpers`` (which check no size)."""
        raise UsageError.at(f"layer type {self.name!r} has no loader in RTNeural's torch_helpers.h (nor a setter "
                            "route in modelreg)", expected="dense, conv1d, gru, lstm, batchnorm, prelu or activation")

    def cpp_load_torch(self, layer: LayerSpec, in_features: int, target: str, doc: str, prefix: str) -> list[str]:
        """C++ statements that load ``target`` (this layer's RTNeural compile-time object) from ``doc``
        (a ``nlohmann::json`` holding a PyTorch state dict, tensors as nested lists named as torch names
        them: ``prefix + "weight"``...), as RTNeural's ``torch_helpers.h`` does (``loadDense``,
        ``loadConv1D``, ``loadGRU``, ``loadLSTM``), or through the layer's setters where the helpers
        have no loader (batchnorm, PReLU: as RTNeural's own TCN test sets them). The tensors read are
        :meth:`torch_tensors`. What the ``rtneural-torch`` header (and an ``rtneural-cpp`` header of a
        model with blocks, ``cpp_weights = "json"``) runs."""
        raise UsageError.at(f"layer type {self.name!r} has no loader in RTNeural's torch_helpers.h (nor a setter "
                            "route in modelreg)", expected="dense, conv1d, gru, lstm, batchnorm, prelu or activation")

    def cpp_combine(self, layer: LayerSpec, in_features: int, outs: str, paths: Mapping[str, str],
                    ins: str) -> list[str]:
        """For a kind with paths (:meth:`children`): C++ statements writing the layer's ``layer.units``
        outputs to ``outs`` from each path's output (``paths``: key -> a ``const float*`` expression;
        a path without layers is absent) and the layer's input ``ins``. The ``rtneural-cpp``
        exporter's struct for the block runs them after the paths."""
        raise UsageError.at(f"layer type {self.name!r} has no C++ that combines its paths in modelreg yet",
                            expected="a kind that defines cpp_combine()")


@attrs.frozen
class Leaf:
    """One plain layer (a layer that holds no paths) of a model, however deep in blocks it sits."""

    layer: LayerSpec
    #: The size it is fed.
    in_features: int
    #: Its key path in the entry (``layers[3].skip[0]``) and its torch state-dict prefix (``layers.3.skip.0.``).
    path: str
    prefix: str


def leaves(layers: Sequence[LayerSpec], in_features: int, path: str = "layers", prefix: str = "layers.") -> list[Leaf]:
    """Every plain layer of ``layers`` fed ``in_features`` values, in order: a block's paths (its
    :meth:`LayerKind.children`, each fed the block's input) one after the other, depth first. For a
    straight stack, the layers themselves (``layers[i]``, ``layers.{i}.``)."""
    found: list[Leaf] = []
    size = in_features
    for index, layer in enumerate(layers):
        paths = layer.kind.children(layer)
        if paths:
            for key, inner in paths:
                found += leaves(inner, size, f"{path}[{index}].{key}", f"{prefix}{index}.{key}.")
        else:
            found.append(Leaf(layer, size, f"{path}[{index}]", f"{prefix}{index}."))
        size = layer.units
    return found


def unstacked(found: Sequence[Leaf]) -> list[Leaf]:
    """``found`` (:func:`leaves`) with every stacked layer opened into its single layers
    (:meth:`LayerKind.unstack`): one entry per RTNeural file layer, in file order."""
    return [part for leaf in found for part in leaf.layer.kind.unstack(leaf)]


#: The registry key of the kinds that have a bias (dense, conv1d, conv2d, lstm, gru), as torch's
#: ``bias`` argument: true (the default) or false. One schema for every kind that takes it.
BIAS_KEY: Mapping[str, Any] = {
    "type": "boolean",
    "description": "true (a learned bias, the default) or false (no bias, as torch's bias=False)",
}


def state_name(name: str, index: int) -> str:
    """A state tensor's model-wide name: ``name`` (as :meth:`LayerKind.state` gives it) of the layer
    at ``index``, the index after its first part: ``h`` -> ``h2``; a block's ``buf.layers.0`` ->
    ``buf2.layers.0``; a stacked LSTM's ``h.l1`` -> ``h2.l1``."""
    base, dot, rest = name.partition(".")
    return f"{base}{index}{dot}{rest}"


def bias_option(table: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """The ``options`` entry of a (schema-valid) layer table's ``bias``: ``(("bias", False),)`` for
    ``bias = false``, nothing otherwise.

    Only ``false`` is recorded: a layer with a bias stays the ``LayerSpec`` it always was (equal to
    ``LayerSpec("dense", 5, "relu")``, labelled without ``bias=true``), and a bias-free one shows
    ``bias=false`` wherever its keys are listed."""
    return (("bias", False),) if table.get("bias", True) is False else ()


def with_bias(layer: LayerSpec, bias: bool) -> LayerSpec:
    """``layer`` with ``bias`` set (options kept sorted, as the kinds write them)."""
    options = [(key, value) for key, value in layer.options if key != "bias"]
    if not bias:
        options.append(("bias", False))
    return attrs.evolve(layer, options=tuple(sorted(options, key=lambda item: item[0])))


def cpp_float(value: float) -> str:
    """A C++ float literal of exactly the float32 RTNeural's JSON loader makes of ``value`` (decimal ->
    double -> float), written in hex so no compiler rounds it again (``0x1.4f8b58p-17f``)."""
    import struct

    rounded = struct.unpack("<f", struct.pack("<f", float(value)))[0]  # double -> float, round to nearest
    return f"{rounded.hex()}f"


# ---------------------------------------------------------------- the table of kinds
#
# Here, beside LayerSpec, so that a layer finds its kind without importing upward: the
# package (modelreg/layers/__init__.py) imports every kind module and installs them in
# the order of its KINDS list; register_kind() adds more at run time.

_builtin: tuple[RTNeuralLayerType, ...] = ()
_registered: list[RTNeuralLayerType] = []
_generation = 0
_by_name: dict[str, LayerKind] = {}
_by_name_generation = -1


def install_builtin(builtin: tuple[RTNeuralLayerType, ...]) -> None:
    """The built-in kinds, in order (called once, by the package, with its KINDS list)."""
    global _builtin, _generation
    _builtin = tuple(builtin)
    _generation += 1


def _all() -> tuple[RTNeuralLayerType, ...]:
    return _builtin + tuple(_registered)


def kinds() -> tuple[LayerKind, ...]:
    """Every registry layer kind (built-in, then registered), in order."""
    return tuple(kind for kind in _all() if isinstance(kind, LayerKind))


def names() -> tuple[str, ...]:
    """The registry ``type`` values, in order."""
    return tuple(kind.name for kind in kinds())


def get_kind(name: str) -> LayerKind:
    """The kind whose registry ``type`` is ``name`` (KeyError if none)."""
    global _by_name, _by_name_generation
    # A dictionary rebuilt when the kinds change: this runs for every layer of
    # every frame a built module steps, where a scan of the list cost ~5 us.
    if _by_name_generation != _generation:
        _by_name = {kind.name: kind for kind in kinds()}
        _by_name_generation = _generation
    return _by_name[name]


def rtneural_handlers() -> tuple[RTNeuralLayerType, ...]:
    """Everything that reads an RTNeural layer type, in order."""
    return _all()


def rtneural_handler(rtneural_type: str) -> RTNeuralLayerType | None:
    """What reads RTNeural layers of ``type == rtneural_type`` (None: not supported)."""
    for handler in _all():
        if rtneural_type in handler.rtneural_types:
            return handler
    return None


def generation() -> int:
    """Changes whenever the kinds change: caches of composed schemas key on it."""
    return _generation


def register_kind(kind: RTNeuralLayerType) -> None:
    """Add a kind at run time (after the built-in ones), without editing ``KINDS``.

    For tests and experiments: registered kinds live in this process only.
    A name or RTNeural type already taken is refused with ValueError.
    """
    global _generation
    taken = set(names())
    if isinstance(kind, LayerKind) and kind.name in taken:
        raise ValueError(f"a layer kind named {kind.name!r} exists already")
    clash = [t for t in kind.rtneural_types if rtneural_handler(t) is not None]
    if clash:
        raise ValueError(f"RTNeural layer type {clash[0]!r} is read by another kind already")
    _registered.append(kind)
    _generation += 1


def unregister_kind(kind: RTNeuralLayerType) -> None:
    """Remove a kind added with :func:`register_kind` (no-op if it is not registered)."""
    global _generation
    if kind in _registered:
        _registered.remove(kind)
        _generation += 1
