"""Checkpoints: PyTorch state-dict files, loaded safely and checked against the architecture.

Loading always uses ``torch.load(..., weights_only=True)``: a file that tries
to run code while unpickling is refused, never executed.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .atomic import atomic_write_bytes, sha256_file
from .errors import CheckpointError, Problem
from .registry import display_path

if TYPE_CHECKING:
    import torch

    from .builder import RealtimeModel
    from .spec import ModelSpec

__all__ = ["InitResult", "init_checkpoint", "load_checkpoint", "read_state_dict", "save_checkpoint"]

DEFAULT_SEED = 0


def _error(spec: ModelSpec, reason: str, **context: Any) -> CheckpointError:
    return CheckpointError.at(reason, file=display_path(spec.checkpoint), model=spec.name,
                              key=f"models.{spec.name}.checkpoint", **context)


def _check_pin(spec: ModelSpec, actual: str) -> str:
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


def read_state_dict(spec: ModelSpec) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, loaded without executing any code."""
    return _read_checkpoint(spec, check_pin=False)[0]


def _read_checkpoint(spec: ModelSpec, *, check_pin: bool) -> tuple[dict[str, torch.Tensor], str]:
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


def _mismatch_problems(spec: ModelSpec, expected: dict[str, Any], state: dict[str, Any]) -> list[Problem]:
    shown = display_path(spec.checkpoint)
    problems: list[Problem] = []

    def add(reason: str, tensor: str, exp: str | None = None, got: Any = None) -> None:
        # Shapes and dtypes are shown as written ([4, 3], float64), not repr'ed.
        problems.append(Problem(reason, file=shown, model=spec.name, key=tensor, expected=exp,
                                found=None if got is None else str(got)))

    for name in expected:
        if name not in state:
            add("missing tensor", name, f"shape {list(expected[name].shape)}")
    for name in state:
        if name not in expected:
            add("unexpected tensor (not part of this architecture)", name, None, list(state[name].shape))
    for name, want in expected.items():
        got = state.get(name)
        if got is None:
            continue
        if tuple(got.shape) != tuple(want.shape):
            add("tensor has the wrong shape", name, f"shape {list(want.shape)}", list(got.shape))
        elif got.dtype != want.dtype:
            add("tensor has the wrong dtype", name, str(want.dtype).replace("torch.", ""),
                str(got.dtype).replace("torch.", ""))
    prefix = _common_prefix(expected, state)
    if prefix is not None:
        # A module saved from inside a wrapper (self.model = ...): the names are right
        # but for the wrapper's attribute name; one hint instead of a puzzle.
        problems.insert(0, Problem(
            f"every tensor name carries the prefix {prefix!r}: strip it before saving "
            f"({{key.removeprefix({prefix!r}): value for key, value in state.items()}})",
            file=shown, model=spec.name, key=f"models.{spec.name}.checkpoint",
        ))
    return problems


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


def load_checkpoint(spec: ModelSpec) -> RealtimeModel:
    """The module for ``spec`` with the checkpoint's weights, in eval mode.

    Raises :class:`CheckpointError` for a missing, unsafe or unreadable file,
    a sha256 pin mismatch, or tensors that do not fit the architecture (all
    missing, unexpected and mis-shaped tensors listed together).
    """
    state, digest = _read_checkpoint(spec, check_pin=True)
    module = spec.build()
    problems = _mismatch_problems(spec, module.state_dict(), state)
    if problems:
        if _common_prefix(module.state_dict(), state) is not None:
            raise CheckpointError(*problems)  # the first problem says how to strip the prefix
        # Usually the entry's layers were changed after the weights were saved: say what to do.
        raise CheckpointError(*problems, hint=(
            f"the checkpoint was saved for other layers than models.{spec.name} declares: train and save "
            f"it again, or run `modelreg init --force {spec.name}` for seeded (untrained) weights"))
    module.load_state_dict(state, strict=True)
    # What the module's weights came from: the lock records it with every artifact made from them.
    module.checkpoint_sha256 = digest
    return module.eval()


def save_checkpoint(module: RealtimeModel, path: Path) -> str:
    """Write ``module``'s state dict atomically; returns the file's sha256."""
    import hashlib

    import torch

    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


@attrs.frozen
class InitResult:
    """What ``modelreg init`` did for one model."""

    model: str
    path: Path
    action: str  # "written" or "kept"
    sha256: str
    pin_ok: bool | None  # None when the registry pins no sha256
    #: Why a kept file does not fit the entry's architecture (None when it fits,
    #: or when it was written now).
    misfit: CheckpointError | None = None


def init_checkpoint(spec: ModelSpec, *, seed: int = DEFAULT_SEED, force: bool = False) -> InitResult:
    """Create ``spec``'s checkpoint with seeded, reproducible (untrained) weights.

    An existing file is kept unless ``force`` (``InitResult.misfit`` then says
    whether it still fits the architecture); the same seed always gives
    bit-identical tensors.
    """
    from .builder import build_module

    misfit: CheckpointError | None = None
    if spec.checkpoint.exists() and not force:
        digest = sha256_file(spec.checkpoint)
        action = "kept"
        # A kept file made for another architecture (units changed since) would only
        # fail later, in validate; say it now. The pin is reported separately.
        try:
            state = read_state_dict(spec)
            problems = _mismatch_problems(spec, spec.build().state_dict(), state)
            misfit = CheckpointError(*problems) if problems else None
        except CheckpointError as exc:
            misfit = exc
    else:
        digest = save_checkpoint(build_module(spec, seed=seed), spec.checkpoint)
        action = "written"
    pin_ok = None if spec.sha256 is None else digest == spec.sha256
    return InitResult(spec.name, spec.checkpoint, action, digest, pin_ok, misfit)
