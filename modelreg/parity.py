"""Compare a model run in another runtime with the torch model, on the same inputs.

The inputs are the core edge cases (each held for several frames on stateful
models, so that state builds up) and, for stateful models, a 64-frame stream
with state carried between frames. torch's reference runs each group of cases
as one sequence (see :func:`reference_outputs`); the artifact runs them as it
runs in a host, one frame per step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .inputs import STREAM_FRAMES, edge_cases, stream
from .plugins import Parity

if TYPE_CHECKING:
    from .builder import RealtimeModel

__all__ = ["compare_parity", "parity_cases", "reference_outputs", "scaled_error"]

_HOLD_FRAMES = 8

# torch references are computed one at a time: validate proves a model's formats in
# threads (see modelreg.exporting.run_artifact_checks), and a stateful module keeps its
# recurrent state on itself, so two references at once would step each other's state.
_reference_lock = threading.RLock()


#: How many times torch's own float32 rounding noise an export may add.
NOISE_FACTOR = 8.0


def scaled_error(actual: np.ndarray, expected: np.ndarray, exact: np.ndarray | None = None) -> float:
    """The parity figure: error beyond float32 rounding noise, relative beyond magnitude 1.

    ``expected`` is torch's float32 output, ``exact`` the same model run in
    float64. Two float32 implementations may legitimately differ by about as
    much as float32 differs from exact math: on +-1e6 inputs a linear layer
    sums terms of 1e5 whose rounding error survives cancellation. So each
    frame may deviate by ``NOISE_FACTOR`` times torch's own float32 error on
    that frame; what remains is divided by ``max(1, |expected|)``. On inputs
    of normal range that noise is ~1e-7, so layout mistakes (errors of 1e-2
    and more) are never hidden.
    """
    if actual.shape != expected.shape:
        return float("inf")
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    if np.isnan(a).any() or np.isnan(e).any():
        # A NaN on one side only is a mismatch; NaN on both at the same places is agreement.
        if not np.array_equal(np.isnan(a), np.isnan(e)):
            return float("nan")
        a, e = np.nan_to_num(a), np.nan_to_num(e)
    noise = np.zeros_like(e)
    if exact is not None:
        frame_noise = np.max(np.abs(e - np.nan_to_num(exact.astype(np.float64))), axis=-1, keepdims=True)
        noise = NOISE_FACTOR * np.broadcast_to(frame_noise, e.shape)
    with np.errstate(invalid="ignore"):
        excess = np.maximum(np.abs(a - e) - noise, 0.0) / np.maximum(1.0, np.abs(e))
    return float(np.max(excess)) if excess.size else 0.0


def reference_outputs(module: RealtimeModel, frames: np.ndarray) -> np.ndarray:
    """``module`` on ``frames [batch, time, in]`` from a zero state, as one sequence: ``[batch, time, out]``
    (from zeros whatever the entry's ``reset``: an artifact's step is proven from the zero state;
    the resting reset has its own check, ``state.rest``).

    The dtype of ``frames`` must be the module's (float32, or float64 for an
    exact copy). Every layer kind computes a sequence exactly as it computes
    the same frames one per call, up to float rounding (each kind's tests hold
    it to that), so a reference costs one call per case group instead of one
    per frame.
    """
    import torch

    with _reference_lock:
        module.reset(to="zeros")
        try:
            with torch.inference_mode():
                return module(torch.from_numpy(np.ascontiguousarray(frames))).numpy()
        finally:
            module.reset()


def parity_cases(in_features: int, stateful: bool, *, with_stream: bool | None = None,
                 input_range: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
    """The inputs of :func:`compare_parity`, by name, each ``[1, time, in_features]`` float32
    (``input_range``: kept within it, see :func:`modelreg.inputs.edge_cases`)."""
    hold = _HOLD_FRAMES if stateful else 1
    frames = edge_cases(in_features, input_range=input_range)
    cases = {name: np.repeat(frame[:, None, :], hold, axis=1) for name, frame in frames.items()}
    if stateful if with_stream is None else with_stream:
        cases[f"stream_{STREAM_FRAMES}"] = stream(in_features, STREAM_FRAMES, input_range=input_range)
    return cases


def compare_parity(module: RealtimeModel, run: Callable[[np.ndarray], np.ndarray], tolerance: float,
                   *, with_stream: bool | None = None) -> Parity:
    """How closely ``run`` (an artifact in its own runtime) follows ``module``: an exporter's ``verify()``.

    ``run(frames)`` gets a float32 array ``[batch, time, in_features]`` and must
    return ``[batch, time, out_features]``: each row (batch entry) run one frame
    per step from a fresh (zero) state, carrying its state from frame to frame;
    rows are independent streams. The input cases are the edge cases (zeros,
    N(0,1), +-1e6, mixed signs; within the entry's ``input_range`` when it
    declares one (``module.input_range``); held for 8 frames on stateful models), given
    together as the rows of one call, and, for stateful models (or when
    ``with_stream`` is true), a 64-frame stream in a second call. ``module``
    runs the same frames; the result's ``ok`` says whether the deciding error
    is within ``tolerance`` (see :class:`Parity`), ``cases`` has the max abs
    error per case. A wrong output shape counts as an infinite error, a NaN
    where torch has none as NaN (which fails).
    """
    import copy

    # The entry's input_range travels with the module, so plugins' verify() gets it too.
    cases = parity_cases(module.in_features, module.is_stateful, with_stream=with_stream,
                         input_range=getattr(module, "input_range", None))
    # Cases of the same length run as the rows of one call: the artifact's runtime
    # and torch both step every frame once for all of them.
    groups: dict[int, list[str]] = {}
    for name, frames in cases.items():
        groups.setdefault(frames.shape[1], []).append(name)
    with _reference_lock:  # a copy taken while another thread steps the module would copy its state
        exact_module = copy.deepcopy(module).double()

    worst = 0.0
    abs_errors: dict[str, float] = {}
    for names in groups.values():
        frames = np.concatenate([cases[name] for name in names], axis=0)
        expected = reference_outputs(module, frames)
        exact = reference_outputs(exact_module, frames.astype(np.float64))
        actual = np.asarray(run(frames))
        same_shape = actual.shape == expected.shape
        for row, name in enumerate(names):
            if same_shape:
                error = scaled_error(actual[row:row + 1], expected[row:row + 1], exact[row:row + 1])
                abs_errors[name] = float(np.max(np.abs(actual[row].astype(np.float64) - expected[row])))
            else:
                error, abs_errors[name] = float("inf"), float("inf")
            if np.isnan(error) or (not np.isnan(worst) and error > worst):  # NaN, once seen, stays
                worst = error
    max_abs = max(abs_errors.values(), default=0.0)
    if any(np.isnan(v) for v in abs_errors.values()):
        max_abs = float("nan")
    return Parity(max_error=worst, max_abs_error=max_abs, tolerance=tolerance, cases=abs_errors)
