"""RTNeural JSON both ways: PyTorch state dict <-> RTNeural layout, and lossless bytes.

torch-free: state dicts arrive as numpy arrays (``tensor.detach().numpy()``).

How each layer kind's PyTorch parameters map onto what
``RTNeural::json_parser`` reads (the same mapping RTNeural's own
``torch_helpers.h`` applies when it loads a state dict directly) is written in
that kind's module, :mod:`modelreg.layers.dense`, :mod:`~modelreg.layers.lstm`
and :mod:`~modelreg.layers.gru`; this module walks the layers and asks them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from ..layers import LayerKind, get_kind, kinds, names, rtneural_handler
from ..errors import ArtifactError, UsageError
from ..layers.activations import NAMES as _ACTIVATION_NAMES
from ..layers.base import Leaf, StateReader, with_bias
from .runtime import _check, _units
from ..spec import LayerSpec

__all__ = ["dumps_rtneural", "from_rtneural", "to_rtneural", "zero_bias_layers"]


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= 1)


def _layer_spec(i: int, entry: Any) -> LayerSpec:
    """A checked LayerSpec from a ``(type, units, activation)`` tuple or a LayerSpec."""
    if isinstance(entry, LayerSpec):
        kind, units, activation = entry.type, entry.units, entry.activation
    else:
        try:
            kind, units, activation = entry
        except (TypeError, ValueError):
            raise UsageError.at("a layer must be (type, units, activation)", key=f"layers[{i}]", found=entry) from None
    known = names()
    if kind not in known:
        raise UsageError.at("unknown layer type", key=f"layers[{i}].type",
                            expected="one of " + ", ".join(known), found=kind)
    if not _is_count(units):
        raise UsageError.at("units must be a positive integer", key=f"layers[{i}].units", found=units)
    if activation not in _ACTIVATION_NAMES:
        raise UsageError.at("unknown activation", key=f"layers[{i}].activation",
                            expected="one of " + ", ".join(_ACTIVATION_NAMES), found=activation)
    if isinstance(entry, LayerSpec):
        return entry
    more = [key for key in get_kind(kind).required_keys if key not in ("units", "activation")]
    if more:  # e.g. conv1d's kernel_size: a tuple cannot say it
        raise UsageError.at(f"a {kind} layer needs {', '.join(more)}, which a (type, units, activation) tuple "
                            "cannot give", key=f"layers[{i}]",
                            expected=f"a LayerSpec from modelreg.layers.get_kind({kind!r}).spec(table, in_features)",
                            found=entry)
    return LayerSpec(kind, int(units), activation)


def to_rtneural(layers: Sequence[tuple[str, int, str] | LayerSpec], in_size: int,
                state: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a PyTorch-style state dict to an RTNeural model (a dict ready for :func:`dumps_rtneural`).

    ``layers`` lists :class:`LayerSpec` or ``(type, units, activation)`` with
    type ``dense``, ``lstm`` or ``gru`` (any kind of :mod:`modelreg.layers`) and
    activation ``linear``, ``tanh``, ``relu``, ``sigmoid``, ``softmax`` or
    ``elu`` (ignored for lstm/gru: RTNeural's recurrent layers have fixed
    activations, and torch's too). ``state`` holds, for layer ``i``:
    ``layers.{i}.weight`` [out, in] and ``layers.{i}.bias`` [out] (dense; the
    bias may be absent), or ``layers.{i}.weight_ih_l0``, ``weight_hh_l0``,
    ``bias_ih_l0``, ``bias_hh_l0`` (``batch_first`` LSTM/GRU; the biases may
    both be absent; a layer with ``num_layers = N`` reads ``_l0`` .. ``_l{N-1}``
    and writes N RTNeural layers). Every entry must be used: leftovers (a second
    LSTM layer the spec does not declare, a bidirectional one) raise :class:`UsageError`.

    Returns ``{"in_shape": [None, None, in_size], "layers": [...]}`` with the
    weights as C-contiguous float32 numpy arrays in RTNeural's layout.
    """
    if not _is_count(in_size):
        raise UsageError.at("in_size must be a positive integer", key="in_size", found=in_size)
    if not layers:
        raise UsageError.at("a model needs at least one layer", key="layers", found=list(layers))
    reader = StateReader(state)
    out_layers: list[dict[str, Any]] = []
    previous = int(in_size)
    for i, entry in enumerate(layers):
        layer = _layer_spec(i, entry)
        refusal = layer.kind.rtneural_json_refusal(layer)
        if refusal is not None:  # e.g. a strided conv1d: the file would load as another model
            raise UsageError.at(f"layers[{i}] cannot be written to an RTNeural JSON file: {refusal}",
                                key=f"layers[{i}]", expected="a layer RTNeural's JSON loader reads (rtneural-cpp "
                                "writes the others' C++)", found=repr(layer))
        # A stacked recurrent layer (num_layers = N) writes N layers: RTNeural has no stack.
        for part in layer.kind.unstack(Leaf(layer, previous, f"layers[{i}]", f"layers.{i}.")):
            out_layers.append(part.layer.kind.to_rtneural(part.layer, part.in_features, reader, part.prefix))
        previous = layer.units
    leftover = sorted(set(state) - reader.used)
    if leftover:
        raise UsageError.at("state dict entries that no layer uses (a stacked RNN whose layer does not declare "
                            "num_layers, or a bidirectional one?)",
                            key=leftover[0], found=leftover)
    return {"in_shape": [None, None, int(in_size)], "layers": out_layers}


def from_rtneural(data: Mapping[str, Any], *, file: str | None = None,
                  drop_zero_biases: bool = False) -> tuple[int, list[LayerSpec], dict[str, np.ndarray]]:
    """The inverse of :func:`to_rtneural`: an RTNeural model -> (input size, layers, torch state dict).

    ``data`` is checked first (:func:`~modelreg.rtneural.runtime.check_rtneural`;
    problems raise :class:`ArtifactError`). Each layer's kind converts its
    weights back to PyTorch's layout as float32 arrays under ``layers.{i}.``;
    writing the result with :func:`to_rtneural` gives the same float32 weights
    (an LSTM's single bias comes back as ``bias_ih_l0`` with ``bias_hh_l0``
    zero). A dense layer without a bias array (``[kernel]``) is a bias-free
    layer (``bias = false``): the file says so. Every other bias is kept, zeros
    included: RTNeural's loader reads a bias for conv1d, conv2d, lstm and gru,
    so a file cannot tell a bias-free layer from a zero bias. With
    ``drop_zero_biases``, a layer whose kind takes ``bias`` and whose file
    arrays are exactly what the bias-free layer writes (its bias +0.0 everywhere)
    is read as ``bias = false``, without bias entries (see :func:`zero_bias_layers`).
    A layer type that is no registry kind (an RTNeuralLayerType that is not a
    LayerKind; none built in) raises :class:`UsageError`.
    """
    problems, arrays = _check(data, file)
    if problems:
        raise ArtifactError(*problems)
    in_size = _units(data["in_shape"])
    assert in_size is not None
    layers: list[LayerSpec] = []
    state: dict[str, np.ndarray] = {}
    previous = in_size
    for i, layer in enumerate(data["layers"]):
        handler = rtneural_handler(layer["type"])
        if not isinstance(handler, LayerKind):
            raise UsageError.at("this RTNeural layer type has no registry layer kind yet", file=file,
                                key=f"layers[{i}].type", expected="one of " + ", ".join(
                                    t for k in kinds() for t in k.rtneural_types), found=layer["type"])
        units = _units(layer["shape"])
        assert units is not None

        def weight(j: int, i: int = i, layer: Mapping[str, Any] = layer) -> np.ndarray:
            array = arrays.get((i, j))
            return array if array is not None else np.asarray(layer["weights"][j], dtype=np.float64)

        spec, entries = handler.from_rtneural(layer, weight, previous, units)
        if drop_zero_biases:
            spec, entries = _without_zero_bias(spec, entries, layer, weight, previous)
        layers.append(spec)
        state.update({f"layers.{i}.{key}": value for key, value in entries.items()})
        previous = spec.units
    return in_size, layers, state


def _float32_bits(value: Any) -> np.ndarray:
    """A file's numbers as RTNeural reads them (a double, then float32), as bit patterns."""
    return np.asarray(value, dtype=np.float64).astype(np.float32).view(np.uint32)


def _without_zero_bias(spec: LayerSpec, entries: dict[str, np.ndarray], layer: Mapping[str, Any],
                       weight: Any, in_features: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
    """``(spec, entries)`` as a bias-free layer when the file's arrays are exactly what that layer
    writes; else unchanged. The criterion is the file itself (not a per-kind rule): the bias-free
    layer is written again and compared bit for bit, so a -0.0 or a tiny bias is kept, and the
    import's own re-export check holds by construction."""
    kind = spec.kind
    names = kind.bias_entries(spec)
    if not spec.has_bias or not names or any(name not in entries for name in names):
        return spec, entries
    if any(np.any(entries[name] != 0) for name in names):  # cheap first: a real bias
        return spec, entries
    bare = with_bias(spec, False)
    kept = {key: value for key, value in entries.items() if key not in names}
    written = kind.to_rtneural(bare, in_features, StateReader(kept), "")["weights"]
    file_weights = layer["weights"]
    if len(written) > len(file_weights):
        return spec, entries
    for j, array in enumerate(written):
        if not np.array_equal(_float32_bits(weight(j)), _float32_bits(array)):
            return spec, entries
    for j in range(len(written), len(file_weights)):  # arrays the bias-free layer leaves out: +0.0 only
        if _float32_bits(weight(j)).any():
            return spec, entries
    return bare, kept


def zero_bias_layers(data: Mapping[str, Any], *, file: str | None = None) -> list[int]:
    """Indices of the layers :func:`from_rtneural` reads as ``bias = false`` only with
    ``drop_zero_biases`` (their bias is all +0.0): what ``modelreg import`` mentions when not asked."""
    plain = from_rtneural(data, file=file)[1]
    dropped = from_rtneural(data, file=file, drop_zero_biases=True)[1]
    return [i for i, (a, b) in enumerate(zip(plain, dropped)) if a != b]


def _count(value: Any) -> Any:
    """Shape entries as JSON integers (8.0 -> 8); None stays null."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def dumps_rtneural(model: Mapping[str, Any], *, check: bool = True) -> bytes:
    """Serialize an RTNeural model to compact, deterministic, lossless JSON bytes.

    The model is checked first (:func:`modelreg.rtneural.runtime.check_rtneural`):
    any problem, including a NaN or infinite weight, raises
    :class:`ArtifactError` naming its key path, so no invalid file is written.
    ``check=False`` skips the full check for callers that check the written
    file anyway (the export pipeline does); non-finite weights are still
    refused, since orjson would write them as ``null``.
    Weights are written as float32, the precision RTNeural computes in, each as
    the shortest decimal that reads back to the same float32 bit pattern
    (orjson's float32 formatting; -0.0, subnormals and extreme exponents
    included). Inputs that are float32 round-trip bit-exactly; float64 values
    are rounded to float32 first. Keys are written in a fixed order (known keys
    first, then any others sorted), so equal models give byte-identical output.
    """
    if check:
        problems, _ = _check(model, None)
        if problems:
            raise ArtifactError(*problems)
    known_top = ("in_shape", "layers")
    known_layer = ("type", "activation", "shape", "weights")
    out: dict[str, Any] = {"in_shape": [_count(v) for v in model["in_shape"]], "layers": []}
    for index, layer in enumerate(model["layers"]):
        item: dict[str, Any] = {}
        for key in known_layer:
            if key == "weights":
                # orjson formats float32 numpy arrays with the shortest float32
                # representation; it needs native-endian C-contiguous arrays.
                item[key] = [np.ascontiguousarray(np.asarray(w, dtype=np.float32)) for w in layer[key]]
                for position, array in enumerate(item[key]):
                    if not np.isfinite(array).all():
                        raise ArtifactError.at("weights must be finite numbers", key=f"layers[{index}].weights[{position}]",
                                               expected="finite float32 values", found="NaN or Inf")
            elif key == "shape":
                item[key] = [_count(v) for v in layer[key]]
            elif key in layer:
                item[key] = layer[key]
        for key in sorted(k for k in layer if k not in known_layer):
            item[key] = layer[key]
        out["layers"].append(item)
    for key in sorted(k for k in model if k not in known_top):
        out[key] = model[key]
    try:
        return orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)
    except orjson.JSONEncodeError as exc:  # an extra key holding something JSON cannot express
        raise ArtifactError.at(f"cannot serialize the model: {exc}") from None
