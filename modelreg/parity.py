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

__all__ = ["FrameRunner", "compare", "scaled_error"]

#: Runs ``frames [1, time, in]`` from a fresh (zero) state, one frame per step;
#: returns ``[1, time, out]``.
FrameRunner = Callable[[np.ndarray], np.ndarray]
_HOLD_FRAMES = 8


def scaled_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """Absolute error where |expected| <= 1, relative error beyond.

    float32 cannot hold 1e-5 absolute accuracy on an output of 1e5 (its spacing
    there is ~0.008), and unbounded activations fed with +-1e6 produce such
    outputs; bounded outputs are compared absolutely.
    """
    if actual.shape != expected.shape:
        return float("inf")
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    scale = np.maximum(1.0, np.abs(expected.astype(np.float64)))
    with np.errstate(invalid="ignore"):
        value = float(np.max(diff / scale)) if diff.size else 0.0
    # NaN anywhere (one side non-finite) is a mismatch unless both agree exactly.
    both_nan = np.isnan(actual) & np.isnan(expected)
    if np.isnan(diff[~both_nan]).any():
        return float("nan")
    return value


def compare(module: RealtimeModel, runner: FrameRunner, tolerance: float) -> Parity:
    """Parity of ``runner`` against ``module`` over the edge cases and (stateful) the stream."""
    from .checks import run_frames

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
        actual = np.asarray(runner(frames))
        error = scaled_error(actual, expected)
        same_shape = actual.shape == expected.shape
        abs_errors[name] = float(np.max(np.abs(actual.astype(np.float64) - expected))) if same_shape else float("inf")
        if np.isnan(error) or (not np.isnan(worst) and error > worst):  # NaN, once seen, stays
            worst = error
    max_abs = max(abs_errors.values(), default=0.0)
    if any(np.isnan(v) for v in abs_errors.values()):
        max_abs = float("nan")
    return Parity(max_error=worst, max_abs_error=max_abs, tolerance=tolerance, cases=abs_errors)
