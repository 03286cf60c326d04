"""Checkpoints: PyTorch state-dict files, loaded safely and checked against the architecture.

Loading always uses ``torch.load(..., weights_only=True)``: a file that tries
to run code while unpickling is refused, never executed.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import pickle
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from .atomic import atomic_write_bytes, sha256_file, temp_prefix
from .errors import CheckpointError, Problem, WriteError, found
from .paths import display_path

if TYPE_CHECKING:
    import torch

    from .builder import BuildSpec, RealtimeModel

    class CheckpointSpec(BuildSpec, Protocol):
        """What checkpoints read of an entry (a :class:`~modelreg.ModelSpec` is one): the
        spec loads checkpoints (``spec.load()``), so this module does not import it."""

        @property
        def checkpoint(self) -> Path: ...

        @property
        def sha256(self) -> str | None: ...

        @property
        def checkpoint_names(self) -> tuple[tuple[str, int | str], ...] | str | None: ...

__all__ = ["InitResult", "init_checkpoint", "load_checkpoint", "read_state_dict", "save_checkpoint", "state_dict_json"]

DEFAULT_SEED = 0


def _error(spec: CheckpointSpec, reason: str, **context: Any) -> CheckpointError:
    return CheckpointError.at(reason, file=display_path(spec.checkpoint), model=spec.name,
                              key=f"models.{spec.name}.checkpoint", **context)


def _check_pin(spec: CheckpointSpec, actual: str) -> str:
    """``actual`` (the checkpoint's sha256); raises when the registry pins a different one."""
    if spec.sha256 is not None and actual != spec.sha256:
        raise CheckpointError.at(
            "checkpoint does not match its pinned sha256 (changed or replaced since it was pinned)",
            file=display_path(spec.checkpoint), model=spec.name, key=f"models.{spec.name}.sha256",
            expected=spec.sha256, found=actual,
        )
    return actual


# What torch.load can read: torch.save's zip archive, or the legacy format (a
# protocol-2 pickle of torch's magic number). Anything else is refused before
# torch sees it: its readers answer other bytes with KeyError('101') and the like.
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"


def read_state_dict(spec: CheckpointSpec) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, loaded without executing any code (names as in the file)."""
    return _read_checkpoint(spec, check_pin=False)[0]


# The checkpoint formats, by the file's extension (anything else is torch.save's).
JSON_SUFFIX = ".json"
SAFETENSORS_SUFFIX = ".safetensors"


def checkpoint_format(path: Path) -> str:
    """``"json"``, ``"safetensors"`` or ``"torch"``: how a checkpoint at ``path`` is read and written.

    The extension decides, never the content: a file renamed by mistake is refused
    saying what it holds, instead of being read as something it was not named."""
    suffix = path.suffix.lower()
    return {JSON_SUFFIX: "json", SAFETENSORS_SUFFIX: "safetensors"}.get(suffix, "torch")


_FORMAT_WORDS = {
    "torch": "a PyTorch checkpoint (torch.save)",
    "json": "a JSON state dict",
    "safetensors": "a safetensors file",
}


def _sniff(raw: bytes) -> str | None:
    """What the bytes hold, as far as their first bytes tell: a format name, or None."""
    if raw.startswith(_ZIP_MAGIC) or raw[:len(_LEGACY_MAGIC)] == _LEGACY_MAGIC:
        return "torch"
    if len(raw) >= 10:
        # safetensors: an 8-byte little-endian header length, then the JSON header. Checked
        # before JSON: the length's first byte may itself be "{".
        length = int.from_bytes(raw[:8], "little")
        if 2 <= length <= len(raw) - 8 and raw[8:9] == b"{":
            return "safetensors"
    if raw.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"["):
        return "json"
    return None


def _refuse_other_format(spec: CheckpointSpec, raw: bytes, fmt: str) -> None:
    """Raise when the bytes are plainly another checkpoint format than the extension names."""
    held = _sniff(raw)
    if held is None or held == fmt:
        return
    suffix = {"torch": ".pt", "json": JSON_SUFFIX, "safetensors": SAFETENSORS_SUFFIX}[held]
    raise _error(spec, f"the file holds {_FORMAT_WORDS[held]}, but its name ends in "
                       f"{spec.checkpoint.suffix or '(no extension)'!r}, which is read as {_FORMAT_WORDS[fmt]}: "
                       f"rename it to end in {suffix} (and the entry's checkpoint path with it)",
                 expected=_FORMAT_WORDS[fmt], found=_FORMAT_WORDS[held])


def _read_checkpoint(spec: CheckpointSpec, *, check_pin: bool) -> tuple[dict[str, torch.Tensor], str]:
    """The checkpoint's tensors and the sha256 of the very bytes they were loaded from.

    The file is read once: hashing it and then loading it by path would read it
    twice, and a checkpoint replaced in between would be loaded under the other
    file's hash (the pin check passed, the lock recording the wrong checkpoint).
    """
    import hashlib

    path = spec.checkpoint
    if not path.exists():
        raise _error(spec, "checkpoint file not found; run `modelreg init` to create seeded weights")
    if path.is_dir():
        raise _error(spec, "checkpoint is a folder", expected="a state-dict file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _error(spec, f"cannot read the checkpoint: {exc.strerror or exc}") from None
    digest = hashlib.sha256(raw).hexdigest()
    if check_pin:
        _check_pin(spec, digest)
    if not raw:
        raise _error(spec, "checkpoint file is empty")
    fmt = checkpoint_format(path)
    _refuse_other_format(spec, raw, fmt)
    if fmt == "json":
        return _read_json_state(spec, raw), digest
    if fmt == "safetensors":
        return _read_safetensors(spec, raw), digest
    return _read_torch(spec, raw), digest


def _read_torch(spec: CheckpointSpec, raw: bytes) -> dict[str, torch.Tensor]:
    """torch.save's bytes, loaded with ``weights_only=True`` after a check of their first bytes."""
    import torch

    path = spec.checkpoint
    head = raw[:len(_LEGACY_MAGIC)]
    if not head.startswith(_ZIP_MAGIC) and head != _LEGACY_MAGIC:
        raise CheckpointError(Problem(
            "not a readable PyTorch checkpoint (another format: torch.save writes a zip archive)",
            file=display_path(path), model=spec.name, key=f"models.{spec.name}.checkpoint",
            expected=f"a file starting with {_ZIP_MAGIC!r}", found=f"a file starting with {head[:8]!r}",
        ))
    try:
        # torch warns (UserWarning, with its own source line) about files it loads all the
        # same, e.g. an unusual pickle protocol byte: on a command line that is noise around
        # the verdict. What it cannot load raises, and is reported below.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses anything but tensors and plain containers; that
        # includes pickles built to run code on load. torch reports both that and
        # plain junk bytes as UnpicklingError: tell them apart by its detail line.
        detail = _unpickler_detail(str(exc))
        if "global" in detail.lower() or "class" in detail.lower():
            raise _error(spec, f"refused to load: the file holds objects other than tensors ({detail}); nothing was executed",
                         expected="a state dict saved with torch.save(module.state_dict())") from None
        raise _error(spec, f"not a readable PyTorch checkpoint (truncated or another format): {detail}") from None
    except Exception as exc:
        # Arbitrary bytes make torch's readers raise almost anything (IndexError,
        # RuntimeError, EOFError, ...); for the user they all mean the same.
        detail = _first_sentence(str(exc)) or type(exc).__name__
        raise _error(spec, f"not a readable PyTorch checkpoint (truncated or another format): {detail}") from None
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        nested = _nested_state_dict_key(data)
        if nested is not None:
            # A training loop's checkpoint ({"state_dict": ..., "epoch": ...}): say how to unwrap it
            # rather than guess which inner dict holds the weights.
            raise _error(spec, f"checkpoint is not a state dict: its tensors are nested under {nested!r}; "
                         f"save that dict itself (torch.save(checkpoint[{nested!r}], PATH))",
                         expected="a dict of tensor name to tensor",
                         found=f"a dict with non-tensor values (keys {sorted(map(str, data))})")
        raise _error(spec, "checkpoint is not a state dict", expected="a dict of tensor name to tensor",
                     found=type(data).__name__ if not isinstance(data, dict) else "a dict with non-tensor values")
    return data


def _nested_state_dict_key(data: object) -> str | None:
    """The key of a dict holding a dict of tensors (``{"state_dict": {...}}``), if any."""
    import torch

    if not isinstance(data, dict):
        return None
    for key, value in data.items():
        if (isinstance(key, str) and isinstance(value, dict) and value
                and all(isinstance(v, torch.Tensor) for v in value.values())):
            return key
    return None


def _first_sentence(message: str) -> str:
    """torch's reader errors, without the C++ location and the paragraph of advice that follow."""
    text = re.sub(r"^\[enforce fail at [^\]]*\]\s*\.?\s*", "", message.strip())
    line = text.splitlines()[0] if text else ""
    return line.split(". ")[0].rstrip(".").strip()


def _unpickler_detail(message: str) -> str:
    """The informative line of torch's long weights_only error message."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "unsupported" in line.lower():
            return line
    return lines[0] if lines else "unreadable pickle"


# ---------------------------------------------------------------- JSON state dicts

#: What a JSON checkpoint holds: what RTNeural's torch_helpers.h reads, written by
#: ``json.dump({k: v.tolist() for k, v in model.state_dict().items()}, f)``.
_JSON_EXPECTED = "an object of tensor name to number or nested lists of numbers"


def _json_error(spec: CheckpointSpec, reason: str, key: str | None = None, *, expected: str | None = None,
                found: str | None = None) -> CheckpointError:
    """A malformed file's one problem; ``key`` is the tensor (and position) when one is to blame,
    ``found`` is already worded (``5 bytes``, ``'2.0' (a JSON string)``)."""
    return CheckpointError(Problem(reason, file=display_path(spec.checkpoint), model=spec.name,
                                   key=key or f"models.{spec.name}.checkpoint", expected=expected, found=found))


def _read_json_state(spec: CheckpointSpec, raw: bytes) -> dict[str, torch.Tensor]:
    """A JSON state dict: each value a number (a 0-d tensor) or rectangular nested lists of numbers.

    JSON has no dtype: every number is read as RTNeural reads it (a double, rounded
    to float32). A tensor is float32 when each of its numbers is written as a float32
    value: exactly (``tolist()`` of a float32 tensor) or as the shortest decimal that
    reads back to one (numpy's, orjson's and modelreg's float32 writing). Numbers
    with more digits than that come from a float64 tensor: such a tensor is given
    as float64, so that the dtype rules of every format apply (it loads when nothing
    rounds, else it is refused saying by how much).
    """
    import json

    import torch

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _json_error(spec, f"not a JSON state dict: the file is not UTF-8 text (byte {exc.start})",
                          expected=_JSON_EXPECTED) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(Problem(f"not valid JSON: {exc.msg}", file=display_path(spec.checkpoint),
                                      model=spec.name, key=f"models.{spec.name}.checkpoint",
                                      line=exc.lineno, column=exc.colno)) from None
    except RecursionError:
        raise _json_error(spec, "not a JSON state dict: nested too deeply to read",
                          expected=_JSON_EXPECTED) from None
    if not isinstance(data, dict):
        raise _json_error(spec, "not a JSON state dict", expected=_JSON_EXPECTED,
                          found=f"a JSON {_json_kind(data)}")
    if "in_shape" in data and "layers" in data:
        # The other JSON a user of RTNeural has: a whole model file, which import adopts.
        raise _json_error(spec, "this is an RTNeural model file (in_shape and layers), not a state dict: "
                                "`modelreg import FILE` makes a registry entry and a checkpoint of it",
                          expected=_JSON_EXPECTED, found="an RTNeural model file")
    for key, value in data.items():
        if isinstance(value, dict):
            raise _json_error(spec, f"checkpoint is not a state dict: its tensors are nested under {key!r}; "
                                    f"save that object itself", expected=_JSON_EXPECTED,
                              found=f"an object under {key!r}")
    # No booleans, nulls or strings among the values (every quote is a key's): numpy may read
    # the lists directly (it would take True or "1.5" for numbers, so not otherwise).
    fast = not any(word in raw for word in (b"true", b"false", b"null")) and raw.count(b'"') == 2 * len(data)
    state: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        state[key] = _json_tensor(_json_array(spec, key, value, fast=fast))
    return state


def _value_text(value: object) -> str:
    return found(value)


def _json_kind(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _json_array(spec: CheckpointSpec, key: str, value: Any, *, fast: bool) -> Any:
    """``value`` as a float64 numpy array, or a message naming the first thing wrong with it."""
    import numpy as np

    if fast:
        # Numbers and lists only (no strings, booleans or nulls anywhere in the file): numpy
        # reads a rectangular nesting directly; anything else takes the walk below.
        try:
            return np.asarray(value, dtype=np.float64)
        except (ValueError, TypeError, OverflowError):
            pass  # ragged, or a huge integer: the walk says where
    shape = _json_shape(spec, key, value, key)
    flat: list[float] = []
    _json_leaves(spec, value, key, flat)
    return np.array(flat, dtype=np.float64).reshape(shape)


def _json_shape(spec: CheckpointSpec, key: str, value: Any, where: str) -> tuple[int, ...]:
    """The shape of a rectangular nesting of lists; raises naming the first ragged or wrong entry."""
    if not isinstance(value, list):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _json_error(spec, "not a number", where, expected="a number or a list of numbers",
                              found=f"{_value_text(value)} (a JSON {_json_kind(value)})")
        return ()
    if not value:
        return (0,)
    shapes = [_json_shape(spec, key, item, f"{where}[{index}]") for index, item in enumerate(value)]
    for index, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise _json_error(spec, "ragged nested lists: a tensor's rows must all have one shape",
                              f"{where}[{index}]", expected=_shape_words(shapes[0]) + " (like entry 0)",
                              found=_shape_words(shape))
    return (len(value), *shapes[0])


def _shape_words(shape: tuple[int, ...]) -> str:
    return "a number" if not shape else f"a list of shape {list(shape)}"


def _json_leaves(spec: CheckpointSpec, value: Any, where: str, out: list[float]) -> None:
    """Every number of a (rectangular) nesting, in order, as floats."""
    if isinstance(value, list):
        for index, item in enumerate(value):
            _json_leaves(spec, item, f"{where}[{index}]", out)
        return
    try:
        out.append(float(value))
    except OverflowError:
        raise _json_error(spec, "number too large for any float", where, expected="a number float32 can hold",
                          found=f"an integer of {len(str(value))} digits") from None


def _json_tensor(array: Any) -> Any:
    """A float64 array of JSON numbers as a tensor: float32 when each number is written as a float32 value."""
    import numpy as np
    import orjson
    import torch

    rounded = array.astype(np.float32)
    with np.errstate(invalid="ignore"):
        widened = rounded.astype(np.float64)
    exact = (widened == array) | (np.isnan(array) & np.isnan(widened))
    if not exact.all():
        # The shortest decimal of a float32 (0.1 for float32(0.1)) is no float32 value as a double,
        # but it names one. orjson writes exactly those decimals; read back they must equal the file's.
        others = ~exact & np.isfinite(rounded)
        shortest = np.array(orjson.loads(orjson.dumps(np.ascontiguousarray(rounded[others]),
                                                      option=orjson.OPT_SERIALIZE_NUMPY)), dtype=np.float64)
        named = np.zeros_like(exact)
        named[others] = shortest.reshape(-1) == array[others]
        exact |= named
    if exact.all():
        return torch.from_numpy(rounded.copy(order="C"))  # ascontiguousarray would make a 0-d array 1-d
    # More digits than float32 holds: a float64 tensor, with the numbers that name float32 values
    # as those values (so that only the others count as rounding).
    return torch.from_numpy(np.where(exact, widened, array))


# ---------------------------------------------------------------- safetensors

#: Bytes per element of safetensors' dtypes (its format's names).
_SAFETENSORS_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                      "BOOL": 1, "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}


def _read_safetensors(spec: CheckpointSpec, raw: bytes) -> dict[str, torch.Tensor]:
    """A safetensors file: its header checked here (every tensor's dtype, shape and byte range named
    when they disagree), its tensors read by the safetensors package."""
    import json
    import math

    where = f"models.{spec.name}.checkpoint"
    expected = "an 8-byte little-endian header length, a JSON header, then the tensors' bytes"
    if len(raw) < 8:
        raise _json_error(spec, "not a safetensors file: too short for the header length",
                          expected=expected, found=f"{len(raw)} bytes")
    length = int.from_bytes(raw[:8], "little")
    if length > len(raw) - 8:
        raise _json_error(spec, "safetensors header length runs past the end of the file (truncated, or not "
                                "a safetensors file)", expected=f"at most {len(raw) - 8} bytes",
                          found=f"{length} bytes")
    try:
        header = json.loads(raw[8:8 + length].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise _json_error(spec, f"safetensors header is not valid JSON ({detail})", expected=expected) from None
    if not isinstance(header, dict):
        raise _json_error(spec, "safetensors header is not a JSON object", expected="an object of tensor name "
                          "to {dtype, shape, data_offsets}", found=f"a JSON {_json_kind(header)}")
    data_size = len(raw) - 8 - length
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(info, dict) and isinstance(info.get("dtype"), str)
                and isinstance(info.get("shape"), list) and isinstance(info.get("data_offsets"), list)
                and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                        for n in info["shape"] + info["data_offsets"])
                and len(info["data_offsets"]) == 2):
            raise _json_error(spec, "safetensors header entry is malformed", name,
                              expected="{\"dtype\": ..., \"shape\": [sizes], \"data_offsets\": [begin, end]}",
                              found=_value_text(info))
        begin, end = info["data_offsets"]
        if not begin <= end <= data_size:
            raise _json_error(spec, "safetensors header gives this tensor bytes outside the file's data", name,
                              expected=f"0 <= begin <= end <= {data_size}", found=f"data_offsets [{begin}, {end}]")
        size = _SAFETENSORS_SIZES.get(info["dtype"])
        if size is not None and math.prod(info["shape"]) * size != end - begin:
            raise _json_error(spec, "safetensors header contradicts itself: the tensor's dtype and shape need "
                                    "another number of bytes than its data_offsets span", name,
                              expected=f"{math.prod(info['shape']) * size} bytes ({info['dtype']} of shape "
                                       f"{info['shape']})", found=f"{end - begin} bytes")
    try:
        from safetensors.torch import load
    except ImportError:  # a dependency, but an installation may lack it
        raise _json_error(spec, "reading a .safetensors checkpoint needs the safetensors package "
                                "(pip install safetensors)") from None
    try:
        return dict(load(raw))
    except Exception as exc:  # SafetensorError: what the checks above do not cover (overlaps, gaps, dtypes)
        detail = str(exc).removeprefix("Error while deserializing header: ").removeprefix("Error while deserializing: ")
        raise _json_error(spec, f"not a readable safetensors file: {detail}", expected=expected) from None


# batchnorm's training counter: inference and export never read it (docs/registry.md).
_COUNTER = "num_batches_tracked"


def _leaf(name: str) -> str:
    return name.rpartition(".")[2]


def _module_of(name: str) -> str:
    """``"layers.0."`` for ``"layers.0.weight"``; ``""`` for a name without a module."""
    return name[: len(name) - len(_leaf(name))]


def _dtype_name(tensor: Any) -> str:
    return str(tensor.dtype).replace("torch.", "")


@attrs.frozen
class _Fit:
    """How a checkpoint's tensors fit an architecture's state dict."""

    #: What to load: the file's tensors, converted to float32 where no value changes,
    #: batchnorm counters filled in where missing (left as read when problems remain).
    state: dict[str, Any]
    problems: list[Problem]
    #: What to do, when one thing fixes the problems (None: the first problem says it).
    hint: str | None
    #: True when names or shapes do not fit (a dtype alone does not make a misfit).
    misfit: bool = False
    #: Float tensors whose dtype does not convert to float32 exactly.
    needs_float: tuple[str, ...] = ()


def _fit(spec: CheckpointSpec, expected: dict[str, Any], state: dict[str, Any], *, rename: bool = True) -> _Fit:
    """The file's tensors against the module's state dict: what to load, or what is wrong and what to do.

    Accepted as they are: a missing batchnorm ``num_batches_tracked`` (or one where the
    module keeps none), and tensors of another floating dtype whose every value is a
    float32 value (float16 always; float64 when nothing rounds). ``rename``: look for
    names that fit by order and shape (not when checking such a rename itself).
    """
    shown = display_path(spec.checkpoint)
    problems: list[Problem] = []

    def add(reason: str, tensor: str, exp: str | None = None, got: Any = None) -> None:
        # Shapes and dtypes are shown as written ([4, 3], float64), not repr'ed.
        problems.append(Problem(reason, file=shown, model=spec.name, key=tensor, expected=exp,
                                found=None if got is None else str(got)))

    as_saved, state = state, dict(state)
    for name, want in expected.items():
        if _leaf(name) == _COUNTER:
            # Any counter will do (none is a fine one): inference never reads it.
            got = state.get(name)
            if got is None or (tuple(got.shape) == tuple(want.shape) and got.dtype != want.dtype):
                state[name] = want.clone()
    for name in list(state):
        if (_leaf(name) == _COUNTER and name not in expected
                and _module_of(name) + "running_mean" in expected):
            del state[name]  # a plain nn.BatchNorm2d's counter: modelreg's batchnorm2d keeps none

    for name in expected:
        if name not in state:
            add("missing tensor", name, f"shape {list(expected[name].shape)}")
    for name in state:
        if name not in expected:
            add("unexpected tensor (not part of this architecture)", name, None, list(state[name].shape))
    misfit = bool(problems)
    needs_float: list[str] = []  # float tensors saved in a dtype that does not convert exactly
    for name, want in expected.items():
        got = state.get(name)
        if got is None:
            continue
        if tuple(got.shape) != tuple(want.shape):
            misfit = True
            add("tensor has the wrong shape", name, f"shape {list(want.shape)}", list(got.shape))
        elif got.dtype != want.dtype:
            converted = _convert_exactly(got, want.dtype)
            if converted is not None:
                state[name] = converted
                continue
            if want.is_floating_point():
                needs_float.append(name)
            reason = _rounding_reason(got, want.dtype) if got.is_floating_point() and want.is_floating_point() \
                else "tensor has the wrong dtype"
            add(reason, name, _dtype_name(want), _dtype_name(got))
    if not misfit:
        return _Fit(state, problems, _float_hint(needs_float, checkpoint_format(spec.checkpoint)) if needs_float else None,
                    needs_float=tuple(needs_float))

    bias_fit = _bias_misfit(spec, state, problems)
    if bias_fit is not None:
        return bias_fit
    depth_fit = _depth_misfit(spec, state, problems)
    if depth_fit is not None:
        return depth_fit

    prefix = _common_prefix(expected, as_saved)
    if prefix is not None:
        # A module saved from inside a wrapper (self.model = ...): the names are right
        # but for the wrapper's attribute name; one hint instead of a puzzle.
        problems.insert(0, Problem(
            f"every tensor name carries the prefix {prefix!r}: strip it before saving "
            f"({{key.removeprefix({prefix!r}): value for key, value in state.items()}})",
            file=shown, model=spec.name, key=f"models.{spec.name}.checkpoint",
        ))
        return _Fit(state, problems, None, misfit=True)
    if rename and spec.checkpoint_names is not None:
        # The entry says how the file's names map: a misfit now is the file's or the table's
        # (_fit_named words the hint with the file's own module names).
        return _Fit(state, problems, None, misfit=True)
    match = _match_modules(expected, as_saved) if rename else None
    # safetensors keeps no order (its writers sort the tensors): only a pairing by shape is offered there.
    ordered = checkpoint_format(spec.checkpoint) != "safetensors"
    renamed = _rename_by_order(spec, expected, as_saved, match) if rename and ordered else None
    if renamed is not None:
        return renamed
    matched = _match_fit(spec, match, state) if match is not None else None
    if matched is not None:
        return matched
    # Usually the entry's layers were changed after the weights were saved: say what to do.
    return _Fit(state, problems, (
        f"the checkpoint was saved for other layers than models.{spec.name} declares: train and save "
        f"it again, or run `modelreg init --force {spec.name}` for seeded (untrained) weights "
        f"(it keeps this file as a timestamped backup)"), misfit=True)


def _bias_misfit(spec: CheckpointSpec, state: dict[str, Any], problems: list[Problem]) -> _Fit | None:
    """When every misfit is a layer's bias (present for a ``bias = false`` layer, or missing for a
    layer with a bias): the problems, each saying which way the layer and the file disagree, and the
    hint. None when anything else misfits (the general messages apply)."""
    shown = display_path(spec.checkpoint)
    explained: dict[str, tuple[int, bool]] = {}  # tensor name -> (layer index, whether the layer has a bias)
    for index, layer in enumerate(spec.layers):
        for entry in layer.kind.bias_entries(layer):
            explained[f"layers.{index}.{entry}"] = (index, layer.has_bias)
    if not problems or any(p.key not in explained for p in problems):
        return None
    out: list[Problem] = []
    layers_without: set[int] = set()
    layers_with: set[int] = set()
    for problem in problems:
        index, has_bias = explained[problem.key or ""]
        if has_bias and problem.reason == "missing tensor":
            layers_with.add(index)
            reason = (f"missing tensor: models.{spec.name}.layers[{index}] has a bias (bias = true, the default), "
                      "the checkpoint's layer has none")
        elif not has_bias and problem.reason.startswith("unexpected tensor"):
            layers_without.add(index)
            reason = (f"unexpected tensor: models.{spec.name}.layers[{index}] declares bias = false, "
                      "the checkpoint's layer has a bias")
        else:
            return None  # a wrong shape or dtype of a bias: the general messages say it
        out.append(attrs.evolve(problem, reason=reason))
    parts = []
    if layers_with:
        listed = ", ".join(f"layers[{i}]" for i in sorted(layers_with))
        parts.append(f"declare bias = false on {listed} if the trained layers have no bias")
    if layers_without:
        listed = ", ".join(f"layers[{i}]" for i in sorted(layers_without))
        parts.append(f"remove bias = false from {listed} if the trained layers have a bias")
    hint = ("; ".join(parts) + f" (and the entry's params with it), or save the checkpoint of a model built as "
            f"models.{spec.name} declares")
    return _Fit(state, out, hint, misfit=True)


#: A stacked recurrent layer's tensor: its layer index and which layer of the stack (``_l{k}``) it is.
_STACKED_TENSOR = re.compile(r"layers\.(\d+)\.(?:weight|bias)_(?:ih|hh)_l(\d+)")


def _depth_misfit(spec: CheckpointSpec, state: dict[str, Any], problems: list[Problem]) -> _Fit | None:
    """When every misfit is the tensors of stacked layers one side has and the other lacks (a
    checkpoint of ``nn.GRU(num_layers=2)`` for a layer declaring ``num_layers = 3``, or the other
    way): the problems as they are, and a hint naming the depth the file holds. None otherwise."""
    layers: set[int] = set()
    for problem in problems:
        found = _STACKED_TENSOR.fullmatch(problem.key or "")
        if found is None or not (problem.reason == "missing tensor" or problem.reason.startswith("unexpected tensor")):
            return None
        index = int(found[1])
        if index >= len(spec.layers) or "num_layers" not in spec.layers[index].kind.registry_keys:
            return None
        layers.add(index)
    if not layers:
        return None
    parts = []
    for index in sorted(layers):
        held = {int(m[2]) for m in map(_STACKED_TENSOR.fullmatch, state) if m is not None and int(m[1]) == index}
        depth = len(held)
        if not held or held != set(range(depth)):
            return None  # a gap in the file's stack: not a matter of num_layers
        declared = int(spec.layers[index].option("num_layers", 1))
        parts.append(f"the checkpoint's layers[{index}] stacks {depth} layer{'s' if depth > 1 else ''} (its "
                     f"_l0 .. _l{depth - 1} tensors), models.{spec.name}.layers[{index}] declares num_layers = "
                     f"{declared}: declare num_layers = {depth} there if the trained module has {depth}")
    hint = ("; ".join(parts) + f" (and the entry's params with it), or save the checkpoint of a model built as "
            f"models.{spec.name} declares")
    return _Fit(state, problems, hint, misfit=True)


def _convert_exactly(tensor: Any, dtype: Any) -> Any:
    """``tensor`` as ``dtype`` when both are floating and no value changes (NaN stays NaN); else None."""
    import torch

    if not (tensor.is_floating_point() and torch.empty(0, dtype=dtype).is_floating_point()):
        return None
    converted = tensor.to(dtype)
    return converted if bool(_same(converted.to(tensor.dtype), tensor).all()) else None


def _same(a: Any, b: Any) -> Any:
    """Elementwise: equal, or both NaN."""
    import torch

    return (a == b) | (torch.isnan(a) & torch.isnan(b))


def _rounding_reason(tensor: Any, dtype: Any) -> str:
    """Why a floating tensor is not converted: how many values rounding would change, and by how much."""
    import torch

    wide = tensor.to(torch.float64)
    rounded = tensor.to(dtype).to(torch.float64)
    changed = ~_same(rounded, wide)
    count = int(changed.sum())
    largest = float((rounded - wide)[changed].abs().max())
    return (f"tensor is {_dtype_name(tensor)}, and rounding it to {str(dtype).replace('torch.', '')} "
            f"changes {count:,} of its {tensor.numel():,} values (by up to {largest:.3g})")


#: How to save a float32 state dict in each format (the float hint's example).
_SAVE_FLOAT = {
    "torch": "torch.save(model.float().state_dict(), PATH)",
    "json": "json.dump({k: v.tolist() for k, v in model.float().state_dict().items()}, open(PATH, 'w'))",
    "safetensors": "safetensors.torch.save_file(model.float().state_dict(), PATH)",
}


def _float_hint(names: list[str], fmt: str = "torch") -> str:
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (f"call `.float()` before saving (`{_SAVE_FLOAT[fmt]}`) to store {shown} "
            f"as float32: modelreg converts a tensor only when no value changes")


def _rename_by_order(spec: CheckpointSpec, expected: dict[str, Any], state: dict[str, Any],
                     match: _Match | None = None) -> _Fit | None:
    """When the file's tensors fit the expected ones one-to-one in order and shape, under other names:
    the pairing, and the rename that makes the file load.

    Never applied here: a module whose attributes are defined in another order than
    it runs them would pair same-shaped layers wrongly, and load without a word.
    """
    wanted = [name for name in expected if _leaf(name) != _COUNTER]
    given = [name for name in state if _leaf(name) != _COUNTER]
    if (len(wanted) != len(given) or not wanted or wanted == given
            or any(tuple(state[g].shape) != tuple(expected[w].shape) for g, w in zip(given, wanted))):
        return None
    modules: dict[str, str] = {}
    for g, w in zip(given, wanted):
        if _leaf(g) != _leaf(w) or modules.setdefault(_module_of(g), _module_of(w)) != _module_of(w):
            modules = {}
            break
    counters = [name for name in state if _leaf(name) == _COUNTER]
    if (modules and len(set(modules.values())) == len(modules)
            and all(_module_of(name) in modules for name in counters)):
        # Whole modules renamed (nn.Sequential's "0.", a wrapper's "net.0."): one pair per layer.
        names = modules
        listing = ", ".join(f"{old}* -> {new}*" for old, new in modules.items() if old != new)
        comprehension = "{names[k[:k.rfind('.') + 1]] + k[k.rfind('.') + 1:]: v for k, v in state.items()}"
        renamed = {names[_module_of(k)] + _leaf(k): v for k, v in state.items()}
    elif not counters:  # tensor by tensor
        names = dict(zip(given, wanted))
        listing = ", ".join(f"{old} -> {new}" for old, new in names.items())
        comprehension = "{names[k]: v for k, v in state.items()}"
        renamed = {names[k]: v for k, v in state.items()}
    else:
        return None
    after = _fit(spec, expected, renamed, rename=False)
    if after.misfit:
        return None  # the renamed file would still not load (a counter where none belongs)
    shown = display_path(spec.checkpoint)
    problems = [Problem(
        f"the tensor names are not models.{spec.name}'s, but the tensors fit them one-to-one in order "
        f"and shape: {listing}", file=shown, model=spec.name, key=f"models.{spec.name}.checkpoint")]
    # What else the renamed file needs (a float64 tensor that rounds), named as in the file.
    old_name = {new: old for old, new in zip(given, wanted)}
    problems += [attrs.evolve(p, key=old_name.get(p.key or "", p.key)) for p in after.problems]
    hint = (f"check that pairing (it follows the order of the tensors in the file), then rename them before "
            f"saving: `names = {names!r}; state = {comprehension}; torch.save(state, PATH)`")
    table = _names_table(modules) if names is modules else None
    if match is not None and match.modules is None:
        # Same-shaped modules: the file's order is the only thing that paired them.
        hint += f"; by shape alone, {_candidates(match)}: the order may be wrong"
    elif table is not None and match is not None and match.modules == modules:
        hint += f"; or keep the file and declare the pairing in models.{spec.name}: `checkpoint_names = {table}`"
    if after.needs_float:
        hint += f"; and {_float_hint([old_name[name] for name in after.needs_float], checkpoint_format(spec.checkpoint))}"
    return _Fit(state, problems, hint, misfit=True)


# ---------------------------------------------------------------- the user's own module names

_LAYER_PREFIX = re.compile(r"layers\.(\d+)\.")


def _names_table(modules: dict[str, str]) -> str | None:
    """``{ "gru" = 0, "dense" = 1 }`` (TOML, names quoted: "net.0" must not become a nested table) for a
    pairing of the file's module prefixes with the entry's ``layers.N.``; None when it is no such pairing."""
    pairs = []
    for old, new in modules.items():
        match = _LAYER_PREFIX.fullmatch(new)
        if not old or match is None:
            return None
        pairs.append(f'"{old[:-1]}" = {match[1]}')
    return "{ " + ", ".join(pairs) + " }"


def _module_list(state: dict[str, Any]) -> str:
    """The file's module names, for a message: ``gru, dense`` (at most 8)."""
    modules = list(dict.fromkeys(_module_of(name)[:-1] or "(none)" for name in state))
    return ", ".join(modules[:8]) + (f" and {len(modules) - 8} more" if len(modules) > 8 else "")


@attrs.frozen
class _Match:
    """The file's modules paired with the entry's layers by what they hold (tensor names after the
    module's name, and shapes), independent of the file's order."""

    #: module prefix in the file ("gru.") -> the entry's ("layers.0."); None when ambiguous.
    modules: dict[str, str] | None
    #: Layers (indices) that several of the file's modules fit alike, with those modules.
    ambiguous: tuple[tuple[tuple[int, ...], tuple[str, ...]], ...] = ()


def _match_modules(expected: dict[str, Any], state: dict[str, Any]) -> _Match | None:
    """Pair the file's modules with the entry's layers by content; None when no one-to-one pairing exists.

    A layer fits a module of the file when the module holds exactly the layer's tensors (the
    names after the module's prefix, e.g. ``weight_ih_l0``, and their shapes). Where several
    modules fit several layers alike, only an nn.Sequential decides: its indices are the
    order it runs its layers in. Anything else is ambiguous (the file's order is the order a
    module defines its layers, not the order it runs them).
    """
    wanted: dict[int, dict[str, tuple[int, ...]]] = {}
    for name, tensor in expected.items():
        if _leaf(name) == _COUNTER:
            continue
        match = _LAYER_PREFIX.match(name)
        if match is None:
            return None
        wanted.setdefault(int(match[1]), {})[name[match.end():]] = tuple(tensor.shape)
    given = {name: tuple(tensor.shape) for name, tensor in state.items() if _leaf(name) != _COUNTER}
    if not wanted or not given:
        return None

    def holds(prefix: str) -> dict[str, tuple[int, ...]]:
        return {name[len(prefix):]: shape for name, shape in given.items() if name.startswith(prefix)}

    candidates: dict[int, list[str]] = {}
    for index, tensors in wanted.items():
        found_in = {name[: len(name) - len(rest)] for name in given for rest in tensors if name.endswith("." + rest)}
        candidates[index] = [prefix for prefix in sorted(found_in) if holds(prefix) == tensors]
        if not candidates[index]:
            return None
    chosen: dict[int, str] = {}
    progress = True
    while progress:  # a layer with one module left takes it
        progress = False
        for index, options in candidates.items():
            left = [prefix for prefix in options if prefix not in chosen.values()]
            if index not in chosen and not left:
                return None
            if index not in chosen and len(left) == 1:
                chosen[index], progress = left[0], True
    ties: dict[tuple[str, ...], list[int]] = {}
    for index, options in candidates.items():
        if index not in chosen:
            ties.setdefault(tuple(p for p in options if p not in chosen.values()), []).append(index)
    ambiguous = []
    for tied, indices in ties.items():
        order = _sequential_order(tied)
        if order is not None and len(order) == len(indices):
            chosen.update(zip(sorted(indices), order))
        else:
            ambiguous.append((tuple(sorted(indices)), tuple(p[:-1] for p in tied)))
    if ambiguous:
        return _Match(None, tuple(sorted(ambiguous)))
    if any(sum(name.startswith(prefix) for prefix in chosen.values()) != 1 for name in given):
        return None  # a tensor in no paired module (or in two)
    return _Match({prefix: f"layers.{index}." for index, prefix in sorted(chosen.items())})


def _sequential_order(prefixes: tuple[str, ...]) -> list[str] | None:
    """``net.0.``, ``net.2.``... (siblings in an nn.Sequential) in index order; None for other names."""
    parents = set()
    for prefix in prefixes:
        parent, _, index = prefix[:-1].rpartition(".")
        if not index.isdigit():
            return None
        parents.add(parent)
    if len(parents) != 1:
        return None
    return sorted(prefixes, key=lambda prefix: int(prefix[:-1].rpartition(".")[2]))


def _listing(modules: dict[str, str]) -> str:
    return ", ".join(f"{old}* -> {new}*" for old, new in modules.items())


def _candidates(match: _Match) -> str:
    """``layers[0], layers[1] could each be any of 'hidden', 'out'`` for each group of alike layers."""
    parts = []
    for indices, prefixes in match.ambiguous:
        layers = ", ".join(f"layers[{i}]" for i in indices)
        parts.append(f"{layers} could each be any of {', '.join(repr(p) for p in prefixes)}")
    return "; ".join(parts)


def _ambiguity(spec: CheckpointSpec, match: _Match) -> Problem:
    return Problem(f"the checkpoint's modules cannot be paired with models.{spec.name}'s layers by shape alone: "
                   + _candidates(match), file=display_path(spec.checkpoint), model=spec.name,
                   key=f"models.{spec.name}.checkpoint_names")


def _declare_hint(spec: CheckpointSpec, match: _Match) -> str:
    example = ", ".join(f'"{p}" = {i}' for indices, prefixes in match.ambiguous for i, p in zip(indices, prefixes))
    return (f"say which module is which layer in models.{spec.name}: `checkpoint_names = {{ {example}, ... }}` "
            f"(every module of the file with its layer index; this example pairs them in the file's order, "
            f"which may be wrong)")


def _match_fit(spec: CheckpointSpec, match: _Match, state: dict[str, Any]) -> _Fit | None:
    """A misfit whose modules pair with the layers by shape: the pairing and the checkpoint_names to declare;
    or, when they pair ambiguously, the candidates. None for the entry's own names."""
    if match.modules is None:
        return _Fit(state, [_ambiguity(spec, match)], _declare_hint(spec, match), misfit=True)
    if all(old == new for old, new in match.modules.items()):
        return None  # the entry's own names: the misfit is elsewhere (a counter where none belongs)
    table = _names_table(match.modules)
    problem = Problem(f"the tensor names are not models.{spec.name}'s, but the checkpoint's modules fit its layers "
                      f"one-to-one by shape: {_listing(match.modules)}", file=display_path(spec.checkpoint),
                      model=spec.name, key=f"models.{spec.name}.checkpoint")
    return _Fit(state, [problem], (
        f"check that pairing, then declare it in models.{spec.name}: `checkpoint_names = {table}` "
        f"(or `checkpoint_names = \"match\"` to pair by shape on every load)"), misfit=True)


def _rename_modules(spec: CheckpointSpec, state: dict[str, Any], modules: dict[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``state`` with each tensor under a paired module renamed (``gru.x`` -> ``layers.0.x``); others as
    they are. Returns it and, for each new name, the file's."""
    renamed: dict[str, Any] = {}
    old: dict[str, str] = {}
    for name, tensor in state.items():
        new = name
        for prefix, target in modules.items():
            if name.startswith(prefix):
                new = target + name[len(prefix):]
                break
        if new in renamed:
            raise CheckpointError.at(
                f"two tensors of the file read as {new!r} under models.{spec.name}.checkpoint_names: "
                f"{old.get(new, new)!r} and {name!r}", file=display_path(spec.checkpoint), model=spec.name,
                key=f"models.{spec.name}.checkpoint_names", expected="one tensor per name")
        renamed[new] = tensor
        if new != name:
            old[new] = name
    return renamed, old


def _named(spec: CheckpointSpec, expected: dict[str, Any], state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The file's tensors under the entry's names, as its ``checkpoint_names`` says.

    Returns the state, the file's name of each renamed tensor, and the module pairing used
    (file prefix -> entry prefix; empty when nothing was renamed).
    """
    names = spec.checkpoint_names
    if names is None:
        return state, {}, {}
    if names == "match":
        plain = {name for name in state if _leaf(name) != _COUNTER}
        if plain == {name for name in expected if _leaf(name) != _COUNTER}:
            return state, {}, {}  # the entry's own names: nothing to pair
        match = _match_modules(expected, state)
        if match is None:
            return state, {}, {}  # nothing pairs: the fit lists what is wrong
        if match.modules is None:
            raise CheckpointError(_ambiguity(spec, match), hint=_declare_hint(spec, match))
        modules = match.modules
    else:
        assert not isinstance(names, str)  # "match" is the one string the registry admits
        # An index is a layer of the entry's list; a path ("layers.0.skip.0") one inside a block.
        modules = {f"{name}.": (f"{target}." if isinstance(target, str) else f"layers.{target}.")
                   for name, target in names}
    renamed, old = _rename_modules(spec, state, modules)
    return renamed, old, modules


def _fit_named(spec: CheckpointSpec, expected: dict[str, Any], state: dict[str, Any]) -> tuple[_Fit, dict[str, str]]:
    """:func:`_fit` of the file's tensors under the names its ``checkpoint_names`` gives them; problems name
    tensors as the file does (a missing one as it would be named there). Returns the fit and the pairing."""
    renamed, old, modules = _named(spec, expected, state)
    fit = _fit(spec, expected, renamed)
    if fit.misfit and spec.checkpoint_names is not None:
        if spec.checkpoint_names == "match" and not modules:
            hint = (f"the file's modules ({_module_list(state)}) do not pair one-to-one with models.{spec.name}'s "
                    f"layers by shape: the layers changed since the weights were saved, or the file holds others")
        else:
            hint = (f"the checkpoint's tensors do not fit models.{spec.name}'s layers as its checkpoint_names "
                    f"pair them: check that table against the file's module names ({_module_list(state)})")
        fit = attrs.evolve(fit, hint=hint)
    if not modules:
        return fit, modules
    back = {new: prefix for prefix, new in modules.items()}

    def file_name(key: str | None) -> str | None:
        if key is None or key in old:
            return old.get(key or "", key)
        # The longest paired prefix: a layer inside a block ("layers.0.skip.0.") before its block.
        for target in sorted(back, key=len, reverse=True):
            if key.startswith(target):
                return back[target] + key[len(target):]
        return key

    problems = [attrs.evolve(p, key=file_name(p.key)) for p in fit.problems]
    return attrs.evolve(fit, problems=problems), modules


def _common_prefix(expected: dict[str, Any], state: dict[str, Any]) -> str | None:
    """``"model."`` when every name in ``state`` is an expected name behind that prefix."""
    if not state or set(state) & set(expected):
        return None
    some = next(iter(state))
    for name in expected:
        if some.endswith("." + name):
            prefix = some[: len(some) - len(name)]
            if all(key.startswith(prefix) and key[len(prefix):] in expected for key in state):
                return prefix
    return None


def load_checkpoint(spec: CheckpointSpec) -> RealtimeModel:
    """The module for ``spec`` with the checkpoint's weights, in eval mode.

    Raises :class:`CheckpointError` for a missing, unsafe or unreadable file,
    a sha256 pin mismatch, or tensors that do not fit the architecture (all
    missing, unexpected and mis-shaped tensors listed together, with a hint
    saying what to do). Accepted as saved: tensors of another floating dtype
    whose values are all float32 values (converted), and a batchnorm without
    its ``num_batches_tracked`` counter.
    """
    state, digest = _read_checkpoint(spec, check_pin=True)
    from .builder import build_module  # torch, on first use

    module = build_module(spec)
    fit, modules = _fit_named(spec, module.state_dict(), state)
    if fit.problems:
        raise CheckpointError(*fit.problems, hint=fit.hint)
    if modules and spec.checkpoint_names == "match":
        # Paired by shape on this load: say how, every time (the file may have changed since).
        from .notices import notice

        notice(f"{display_path(spec.checkpoint)}: models.{spec.name}.checkpoint_names = \"match\" paired "
               f"{_listing(modules)}")
    module.load_state_dict(fit.state, strict=True)
    # What the module's weights came from: the lock records it with every artifact made from them.
    module.checkpoint_sha256 = digest
    module.eval()
    if module.reset_mode == "rest" and module.is_stateful:
        # Computed now, once: a host's first call after reset() must not pay for it.
        module.resting_state()
    return module


def _state_bytes(module: RealtimeModel, fmt: str = "torch") -> bytes:
    """``module``'s state dict as the bytes of a checkpoint in format ``fmt`` (see :func:`checkpoint_format`).

    Deterministic in every format: the same weights give the same bytes.
    """
    state = module.state_dict()
    if fmt == "json":
        # What RTNeural's torch_helpers read (json.dump of tolist()), written by orjson: each
        # float32 as the float64 literal of its exact value (as tolist() gives it), so every
        # JSON reader gets the weights bit for bit; -0.0 stays -0.0.
        import orjson

        body = {key: value.item() if value.ndim == 0 else
                (value.detach().double() if value.is_floating_point() else value.detach()).numpy()
                for key, value in state.items()}
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
    if fmt == "safetensors":
        from safetensors.torch import save  # sorted by dtype and name, no metadata: deterministic

        return save({key: value.detach().contiguous() for key, value in state.items()})
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def state_dict_json(module: RealtimeModel) -> bytes:
    """``module``'s state dict as JSON, as a JSON checkpoint holds it and RTNeural's torch_helpers.h
    read it (what ``json.dump({k: v.tolist() ...})`` writes, each float32 exactly); the
    ``rtneural-torch`` exporter's file."""
    return _state_bytes(module, "json")


def save_checkpoint(module: RealtimeModel, path: Path) -> str:
    """Write ``module``'s state dict atomically, in the format ``path``'s extension names; returns its sha256."""
    import hashlib

    data = _state_bytes(module, checkpoint_format(Path(path)))
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _utc_stamp() -> str:
    """``20261205T041600Z``: the backup's time, UTC, to the second."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def _backup_path(path: Path, stamp: str, attempt: int = 1) -> Path:
    """``models/x.pt.bak-20261205T041600Z`` (``-2``, ``-3``... when that name is taken)."""
    return path.with_name(f"{path.name}.bak-{stamp}" + ("" if attempt == 1 else f"-{attempt}"))


def write_backup(path: Path, data: bytes) -> Path:
    """Keep ``data`` (the checkpoint about to be replaced) beside ``path``; returns where.

    Written complete under a temporary name first, then linked to a name that does
    not exist yet: never a partial backup, never one backup over another.
    """
    stamp = _utc_stamp()
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, path.stat().st_mode & 0o7777)  # as readable as the checkpoint was
        for attempt in itertools.count(1):
            target = _backup_path(path, stamp, attempt)
            try:
                os.link(tmp, target)  # fails if the name exists: a backup is never overwritten
            except FileExistsError:
                continue
            except OSError:
                # No hard links here (some network or FAT folders): claim the name, then
                # rename the complete file over the claim.
                try:
                    os.close(os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
                except FileExistsError:
                    continue
                os.replace(tmp, target)
            return target
        raise AssertionError("unreachable")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@attrs.frozen
class InitResult:
    """What ``modelreg init`` did for one model."""

    model: str
    path: Path
    action: str  # "written" or "kept"
    sha256: str
    pin_ok: bool | None  # None when the registry pins no sha256
    #: Why a kept file does not fit the entry's architecture (None when it fits,
    #: or when it was written now); its ``hint`` says what to do, when one thing does.
    misfit: CheckpointError | None = None
    #: Where ``force`` kept the checkpoint it replaced (None: there was none, or it
    #: held the very bytes written now).
    backup: Path | None = None


def init_checkpoint(spec: CheckpointSpec, *, seed: int = DEFAULT_SEED, force: bool = False) -> InitResult:
    """Create ``spec``'s checkpoint with seeded, reproducible (untrained) weights.

    An existing file is kept unless ``force`` (``InitResult.misfit`` then says
    whether it still fits the architecture); with ``force`` it is kept beside
    the new one as ``NAME.pt.bak-<UTC time>`` (``InitResult.backup``) before
    being replaced. The same seed always gives bit-identical tensors.
    """
    import hashlib

    from .builder import build_module

    misfit: CheckpointError | None = None
    backup: Path | None = None
    if spec.checkpoint.exists() and not force:
        digest = sha256_file(spec.checkpoint)
        action = "kept"
        # A kept file made for another architecture (units changed since) would only
        # fail later, in validate; say it now. The pin is reported separately.
        try:
            state = read_state_dict(spec)
            fit, _ = _fit_named(spec, build_module(spec).state_dict(), state)
            misfit = CheckpointError(*fit.problems, hint=fit.hint) if fit.problems else None
        except CheckpointError as exc:
            misfit = exc
    else:
        data = _state_bytes(build_module(spec, seed=seed), checkpoint_format(spec.checkpoint))
        if spec.checkpoint.is_file():
            # --force replaces what may be the user's trained weights: keep them first.
            try:
                previous = spec.checkpoint.read_bytes()
                if previous != data:
                    backup = write_backup(spec.checkpoint, previous)
            except OSError as exc:
                raise WriteError.at(
                    f"cannot keep a backup of the checkpoint, so it was not replaced: {exc.strerror or exc}",
                    file=display_path(spec.checkpoint), model=spec.name,
                    key=f"models.{spec.name}.checkpoint") from None
        atomic_write_bytes(spec.checkpoint, data)
        digest = hashlib.sha256(data).hexdigest()
        action = "written"
    pin_ok = None if spec.sha256 is None else digest == spec.sha256
    return InitResult(spec.name, spec.checkpoint, action, digest, pin_ok, misfit, backup)
