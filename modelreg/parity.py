"""Compare a model run in another runtime with the torch model, on the same inputs.

The inputs are the core edge cases (each held for several frames on stateful
models, so that state builds up) and, for stateful models, a 64-frame stream
with state carried between frames.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from .inputs import STREAM_FRAMES, edge_cases, stream
from .plugins import Parity

if TYPE_CHECKING:
    from .builder import RealtimeModel

__all__ = ["compare_parity", "scaled_error"]

_HOLD_FRAMES = 8


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


def compare_parity(module: RealtimeModel, run: Callable[[np.ndarray], np.ndarray], tolerance: float) -> Parity:
    """How closely ``run`` (an artifact in its own runtime) follows ``module``: an exporter's ``verify()``.

    ``run(frames)`` gets a float32 array ``[batch, time, in_features]`` and must
    return ``[batch, time, out_features]``: the artifact run one frame per step
    from a fresh (zero) state, carrying its state from frame to frame. It is
    called once per input case: the edge cases (zeros, N(0,1), +-1e6, mixed
    signs; held for 8 frames on stateful models) and, for stateful models, a
    64-frame stream. ``module`` runs the same frames; the result's ``ok`` says
    whether the deciding error is within ``tolerance`` (see :class:`Parity`).
    A wrong output shape counts as an infinite error, a NaN where torch has
    none as NaN (which fails).
    """
    import copy

    from .checks import run_frames

    exact_module = copy.deepcopy(module).double()
    cases: dict[str, np.ndarray] = {}
    hold = _HOLD_FRAMES if module.is_stateful else 1
    for name, frame in edge_cases(module.in_features).items():
        cases[name] = np.repeat(frame[:, None, :], hold, axis=1)
    if module.is_stateful:
        cases[f"stream_{STREAM_FRAMES}"] = stream(module.in_features, STREAM_FRAMES)

    worst = 0.0
    abs_errors: dict[str, float] = {}
    for name, frames in cases.items():
        expected = run_frames(module, frames)
        exact = run_frames(exact_module, frames.astype(np.float64))
        actual = np.asarray(run(frames))
        error = scaled_error(actual, expected, exact)
        same_shape = actual.shape == expected.shape
        abs_errors[name] = float(np.max(np.abs(actual.astype(np.float64) - expected))) if same_shape else float("inf")
        if np.isnan(error) or (not np.isnan(worst) and error > worst):  # NaN, once seen, stays
            worst = error
    max_abs = max(abs_errors.values(), default=0.0)
    if any(np.isnan(v) for v in abs_errors.values()):
        max_abs = float("nan")
    return Parity(max_error=worst, max_abs_error=max_abs, tolerance=tolerance, cases=abs_errors)
