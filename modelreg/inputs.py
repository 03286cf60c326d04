"""The inputs every model is checked with, shared by the model checks and exporter parity.

Plain numpy (float32), seeded: the same model always sees the same inputs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EDGE_CASES", "RANGE_CASES", "STREAM_FRAMES", "edge_cases", "stream"]

EDGE_CASES = ("zeros", "normal", "plus_1e6", "minus_1e6", "mixed_signs")
#: The edge cases of a model with a declared ``input_range`` (``zeros`` becomes ``range_mid``
#: when the range excludes 0).
RANGE_CASES = ("zeros", "normal", "range_max", "range_min", "mixed_signs")
#: Frames of the stateful stream used for parity (state carried between frames).
STREAM_FRAMES = 64
_SEED = 20240521


def edge_cases(in_features: int, *, batch: int = 1, seed: int = _SEED,
               input_range: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
    """Edge-case frames ``[batch, in_features]``: zeros, N(0,1), +1e6, -1e6, mixed signs.

    ``mixed_signs`` alternates large and small magnitudes of both signs, the
    input most likely to saturate one unit while another sits near zero.

    With ``input_range=(min, max)`` (the entry's ``input_range``: what the host
    feeds) every case stays inside it: zeros (the middle, ``range_mid``, when 0
    is outside), a normal draw mapped onto the range (``mid + half * clip(z, -1,
    1)``: N(0,1) clipped for [-1, 1]), ``range_max``, ``range_min``, and
    ``mixed_signs`` alternating the bounds with values near the middle.
    """
    rng = np.random.default_rng(seed)
    shape = (batch, in_features)
    signs = np.where(np.arange(in_features) % 2 == 0, 1.0, -1.0)
    normal = rng.standard_normal(shape)
    if input_range is None:
        magnitudes = np.array([1e6, 1e-3, 1.0, 1e3])[np.arange(in_features) % 4]
        return {
            "zeros": np.zeros(shape, np.float32),
            "normal": normal.astype(np.float32),
            "plus_1e6": np.full(shape, 1e6, np.float32),
            "minus_1e6": np.full(shape, -1e6, np.float32),
            "mixed_signs": np.broadcast_to(signs * magnitudes, shape).astype(np.float32),
        }
    low, high = input_range
    reach = np.array([1.0, 1e-3, 0.5, 1.0])[np.arange(in_features) % 4]
    quiet = ("zeros", 0.0) if low <= 0.0 <= high else ("range_mid", (low + high) / 2)
    return {
        quiet[0]: np.full(shape, quiet[1], np.float32),
        "normal": _onto(normal, input_range),
        "range_max": np.full(shape, high, np.float32),
        "range_min": np.full(shape, low, np.float32),
        "mixed_signs": _onto(np.broadcast_to(signs * reach, shape), input_range),
    }


def stream(in_features: int, frames: int = STREAM_FRAMES, *, batch: int = 1, seed: int = _SEED + 1,
           input_range: tuple[float, float] | None = None) -> np.ndarray:
    """A ``[batch, frames, in_features]`` stream: a slow sine sweep plus noise, like a control signal
    (with ``input_range``: mapped onto it as :func:`edge_cases` maps its normal draw)."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames, dtype=np.float64)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=(batch, 1, in_features))
    signal = np.sin(0.2 * t + phase) + 0.3 * rng.standard_normal((batch, frames, in_features))
    if input_range is None:
        return signal.astype(np.float32)
    return _onto(signal, input_range)


def _onto(values: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    """``values`` in [-1, 1] (clipped there) mapped linearly onto ``input_range``, as float32."""
    low, high = input_range
    mapped = (low + high) / 2 + (high - low) / 2 * np.clip(values, -1.0, 1.0)
    # float32 rounding of mid + half * x may step just past a bound the host never exceeds.
    return np.clip(mapped.astype(np.float32), np.float32(low), np.float32(high))
