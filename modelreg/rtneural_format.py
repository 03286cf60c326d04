"""Writing RTNeural JSON: PyTorch state dict -> RTNeural layout, and lossless bytes.

torch-free: state dicts arrive as numpy arrays (``tensor.detach().numpy()``).

How PyTorch's parameters map onto what ``RTNeural::json_parser`` reads (the
same mapping RTNeural's own ``torch_helpers.h`` applies when it loads a state
dict directly):

* ``nn.Linear``: RTNeural's dense kernel is ``[in][out]`` (Keras layout), so
  the kernel is ``weight.T``; the bias is copied.
* ``nn.LSTM``: both use the gate order i, f, g(c), o, so ``W = weight_ih_l0.T``
  and ``U = weight_hh_l0.T`` need no reordering. RTNeural has one bias vector
  and PyTorch two that are simply added inside every gate, so
  ``b = bias_ih_l0 + bias_hh_l0``.
* ``nn.GRU``: PyTorch's gate order is r, z, n, RTNeural's (Keras's) is z, r, h,
  so the first two gate blocks are swapped in W, U and both biases. The bias
  rows are NOT summed: RTNeural's row 0 is the input bias and row 1 the
  recurrent bias, which RTNeural (like PyTorch's ``b_hn``) puts inside the
  reset-gate product ``r * (U_h h + b1_h)``; so row 0 = ``bias_ih_l0`` and
  row 1 = ``bias_hh_l0``, each with r and z swapped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from .errors import ArtifactError, UsageError
from .rtneural_runtime import _check

__all__ = ["dumps_rtneural", "to_rtneural"]

# Our activation names -> RTNeural's ("" is linear; RTNeural has no "linear").
_ACTIVATIONS: dict[str, str] = {
    "linear": "",
    "tanh": "tanh",
    "relu": "relu",
    "sigmoid": "sigmoid",
    "softmax": "softmax",
    "elu": "elu",
}
_LAYER_TYPES = ("dense", "lstm", "gru")
# What RTNeural's Keras exporter writes for recurrent layers (their cell
# activation); the loader never reads it.
_RECURRENT_ACTIVATION = "tanh"


def _is_count(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and bool(value >= 1)


class _State:
    """Reads arrays out of a state dict, checking shapes and remembering what was used."""

    def __init__(self, state: Mapping[str, Any]) -> None:
        self.state = state
        self.used: set[str] = set()

    def has(self, key: str) -> bool:
        return key in self.state

    def take(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
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


def _gru_gates(array: np.ndarray, hidden: int) -> np.ndarray:
    """PyTorch's r, z, n blocks (along axis 0) -> RTNeural's z, r, h."""
    return np.concatenate([array[hidden:2 * hidden], array[:hidden], array[2 * hidden:]], axis=0)


def to_rtneural(layers: Sequence[tuple[str, int, str]], in_size: int, state: Mapping[str, Any]) -> dict[str, Any]:
    """Convert a PyTorch-style state dict to an RTNeural model (a dict ready for :func:`dumps_rtneural`).

    ``layers`` lists ``(type, units, activation)`` with type ``dense``, ``lstm``
    or ``gru`` and activation ``linear``, ``tanh``, ``relu``, ``sigmoid``,
    ``softmax`` or ``elu`` (ignored for lstm/gru: RTNeural's recurrent layers
    have fixed activations, and torch's too). ``state`` holds, for layer ``i``:
    ``layers.{i}.weight`` [out, in] and ``layers.{i}.bias`` [out] (dense; the
    bias may be absent), or ``layers.{i}.weight_ih_l0``, ``weight_hh_l0``,
    ``bias_ih_l0``, ``bias_hh_l0`` (single-layer ``batch_first`` LSTM/GRU; the
    biases may both be absent). Every entry must be used: leftovers (a second
    LSTM layer, a bidirectional one) raise :class:`UsageError`.

    Returns ``{"in_shape": [None, None, in_size], "layers": [...]}`` with the
    weights as C-contiguous float32 numpy arrays in RTNeural's layout.
    """
    if not _is_count(in_size):
        raise UsageError.at("in_size must be a positive integer", key="in_size", found=in_size)
    if not layers:
        raise UsageError.at("a model needs at least one layer", key="layers", found=list(layers))
    reader = _State(state)
    out_layers: list[dict[str, Any]] = []
    previous = int(in_size)
    for i, entry in enumerate(layers):
        try:
            kind, units, activation = entry
        except (TypeError, ValueError):
            raise UsageError.at("a layer must be (type, units, activation)", key=f"layers[{i}]", found=entry) from None
        if kind not in _LAYER_TYPES:
            raise UsageError.at("unknown layer type", key=f"layers[{i}].type",
                                expected="one of " + ", ".join(_LAYER_TYPES), found=kind)
        if not _is_count(units):
            raise UsageError.at("units must be a positive integer", key=f"layers[{i}].units", found=units)
        if activation not in _ACTIVATIONS:
            raise UsageError.at("unknown activation", key=f"layers[{i}].activation",
                                expected="one of " + ", ".join(_ACTIVATIONS), found=activation)
        units = int(units)
        prefix = f"layers.{i}."
        shape = [None, None, units]
        if kind == "dense":
            kernel = reader.take(prefix + "weight", (units, previous)).T
            weights = [np.ascontiguousarray(kernel)]
            if reader.has(prefix + "bias"):
                weights.append(np.ascontiguousarray(reader.take(prefix + "bias", (units,))))
            out_layers.append({"type": "dense", "activation": _ACTIVATIONS[activation], "shape": shape,
                               "weights": weights})
        else:
            gates = 4 if kind == "lstm" else 3
            w_ih = reader.take(prefix + "weight_ih_l0", (gates * units, previous))
            w_hh = reader.take(prefix + "weight_hh_l0", (gates * units, units))
            has_ih, has_hh = reader.has(prefix + "bias_ih_l0"), reader.has(prefix + "bias_hh_l0")
            if has_ih != has_hh:
                missing = prefix + ("bias_hh_l0" if has_ih else "bias_ih_l0")
                raise UsageError.at("a recurrent layer needs both bias vectors or neither", key=missing,
                                    expected=f"an array of shape [{gates * units}]")
            if has_ih:
                b_ih = reader.take(prefix + "bias_ih_l0", (gates * units,))
                b_hh = reader.take(prefix + "bias_hh_l0", (gates * units,))
            else:  # bias=False: torch adds nothing, RTNeural adds zeros
                b_ih = b_hh = np.zeros(gates * units, np.float32)
            if kind == "lstm":
                # float32 sum, as torch_helpers.h does it in a float build; an
                # overflow to inf is reported (with its key) when the model is checked.
                with np.errstate(over="ignore"):
                    bias_sum = b_ih + b_hh
                weights = [np.ascontiguousarray(w_ih.T), np.ascontiguousarray(w_hh.T), np.ascontiguousarray(bias_sum)]
            else:
                bias = np.stack([_gru_gates(b_ih, units), _gru_gates(b_hh, units)])
                weights = [np.ascontiguousarray(_gru_gates(w_ih, units).T),
                           np.ascontiguousarray(_gru_gates(w_hh, units).T),
                           np.ascontiguousarray(bias)]
            out_layers.append({"type": kind, "activation": _RECURRENT_ACTIVATION, "shape": shape,
                               "weights": weights})
        previous = units
    leftover = sorted(set(state) - reader.used)
    if leftover:
        raise UsageError.at("state dict entries that no layer uses (a multi-layer or bidirectional RNN?)",
                            key=leftover[0], found=leftover)
    return {"in_shape": [None, None, int(in_size)], "layers": out_layers}


def _count(value: Any) -> Any:
    """Shape entries as JSON integers (8.0 -> 8); None stays null."""
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def dumps_rtneural(model: Mapping[str, Any], *, check: bool = True) -> bytes:
    """Serialize an RTNeural model to compact, deterministic, lossless JSON bytes.

    The model is checked first (:func:`modelreg.rtneural_runtime.check_rtneural`):
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
