"""The inputs every model is checked with, shared by the model checks and exporter parity.

Plain numpy (float32), seeded: the same model always sees the same inputs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["EDGE_CASES", "STREAM_FRAMES", "edge_cases", "stream"]

EDGE_CASES = ("zeros", "normal", "plus_1e6", "minus_1e6", "mixed_signs")
#: Frames of the stateful stream used for parity (state carried between frames).
STREAM_FRAMES = 64
_SEED = 20240521


def edge_cases(in_features: int, *, batch: int = 1, seed: int = _SEED) -> dict[str, np.ndarray]:
    """Edge-case frames ``[batch, in_features]``: zeros, N(0,1), +1e6, -1e6, mixed signs.

    ``mixed_signs`` alternates large and small magnitudes of both signs, the
    input most likely to saturate one unit while another sits near zero.
    """
    rng = np.random.default_rng(seed)
    shape = (batch, in_features)
    signs = np.where(np.arange(in_features) % 2 == 0, 1.0, -1.0)
    magnitudes = np.array([1e6, 1e-3, 1.0, 1e3])[np.arange(in_features) % 4]
    return {
        "zeros": np.zeros(shape, np.float32),
        "normal": rng.standard_normal(shape).astype(np.float32),
        "plus_1e6": np.full(shape, 1e6, np.float32),
        "minus_1e6": np.full(shape, -1e6, np.float32),
        "mixed_signs": np.broadcast_to(signs * magnitudes, shape).astype(np.float32),
    }


def stream(in_features: int, frames: int = STREAM_FRAMES, *, batch: int = 1, seed: int = _SEED + 1) -> np.ndarray:
    """A ``[batch, frames, in_features]`` stream: a slow sine sweep plus noise, like a control signal."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames, dtype=np.float64)[None, :, None]
    phase = rng.uniform(0, 2 * np.pi, size=(batch, 1, in_features))
    signal = np.sin(0.2 * t + phase) + 0.3 * rng.standard_normal((batch, frames, in_features))
    return signal.astype(np.float32)
