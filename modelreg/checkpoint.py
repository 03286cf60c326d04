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
from .errors import CheckpointError, Problem, WriteError
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

__all__ = ["InitResult", "init_checkpoint", "load_checkpoint", "read_state_dict", "save_checkpoint"]

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
    """The checkpoint's tensors, loaded without executing any code."""
    return _read_checkpoint(spec, check_pin=False)[0]


def _read_checkpoint(spec: CheckpointSpec, *, check_pin: bool) -> tuple[dict[str, torch.Tensor], str]:
    """The checkpoint's tensors and the sha256 of the very bytes they were loaded from.

    The file is read once: hashing it and then loading it by path would read it
    twice, and a checkpoint replaced in between would be loaded under the other
    file's hash (the pin check passed, the lock recording the wrong checkpoint).
    """
    import hashlib

    import torch

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
    return data, digest


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
        return _Fit(state, problems, _float_hint(needs_float) if needs_float else None,
                    needs_float=tuple(needs_float))

    bias_fit = _bias_misfit(spec, state, problems)
    if bias_fit is not None:
        return bias_fit

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
    renamed = _rename_by_order(spec, expected, as_saved) if rename else None
    if renamed is not None:
        return renamed
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


def _float_hint(names: list[str]) -> str:
    shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
    return (f"call `.float()` before saving (`torch.save(model.float().state_dict(), PATH)`) to store {shown} "
            f"as float32: modelreg converts a tensor only when no value changes")


def _rename_by_order(spec: CheckpointSpec, expected: dict[str, Any], state: dict[str, Any]) -> _Fit | None:
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
    if after.needs_float:
        hint += f"; and {_float_hint([old_name[name] for name in after.needs_float])}"
    return _Fit(state, problems, hint, misfit=True)


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
    fit = _fit(spec, module.state_dict(), state)
    if fit.problems:
        raise CheckpointError(*fit.problems, hint=fit.hint)
    module.load_state_dict(fit.state, strict=True)
    # What the module's weights came from: the lock records it with every artifact made from them.
    module.checkpoint_sha256 = digest
    module.eval()
    if module.reset_mode == "rest" and module.is_stateful:
        # Computed now, once: a host's first call after reset() must not pay for it.
        module.resting_state()
    return module


def _state_bytes(module: RealtimeModel) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getvalue()


def save_checkpoint(module: RealtimeModel, path: Path) -> str:
    """Write ``module``'s state dict atomically; returns the file's sha256."""
    import hashlib

    data = _state_bytes(module)
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
            fit = _fit(spec, build_module(spec).state_dict(), state)
            misfit = CheckpointError(*fit.problems, hint=fit.hint) if fit.problems else None
        except CheckpointError as exc:
            misfit = exc
    else:
        data = _state_bytes(build_module(spec, seed=seed))
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
