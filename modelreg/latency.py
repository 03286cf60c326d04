"""Latency measurement the way a real-time host sees it: one thread, batch 1, one call at a time.

An audio-rate model's whole blocks and real-time factor: :mod:`modelreg.audio`.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "LatencyStats",
    "latency_window",
    "measure",
    "measure_samples",
    "measuring_for",
    "ms_text",
    "rtf_text",
    "single_thread",
]

#: How long a latency measurement times calls when the run does not say (``--latency-seconds``).
DEFAULT_WINDOW_SECONDS = 0.4

_window: contextvars.ContextVar[float] = contextvars.ContextVar("modelreg_latency_window", default=DEFAULT_WINDOW_SECONDS)


def latency_window() -> float:
    """Seconds each latency measurement of the current run times calls for.

    What ``--latency-seconds`` (``validate_all(latency_seconds=...)``) asked for,
    else :data:`DEFAULT_WINDOW_SECONDS`. An exporter's latency check (an
    ``extra_checks`` suffix ending in ``latency``) times its runtime this long,
    as torch's latency check does.
    """
    return _window.get()


@contextlib.contextmanager
def measuring_for(seconds: float) -> Iterator[None]:
    """Within this block, :func:`latency_window` is ``seconds``."""
    token = _window.set(seconds)
    try:
        yield
    finally:
        _window.reset(token)


@attrs.frozen
class LatencyStats:
    """Per-call wall times in milliseconds."""

    mean: float
    p50: float
    p95: float
    p99: float
    max: float
    iterations: int
    warmup: int

    @classmethod
    def from_samples(cls, samples_ns: np.ndarray, warmup: int) -> LatencyStats:
        import numpy as np

        ms = samples_ns.astype(np.float64) / 1e6
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return cls(float(ms.mean()), float(p50), float(p95), float(p99), float(ms.max()), int(ms.size), warmup)

    def stat(self, name: str) -> float:
        value: float = getattr(self, name)
        return value

    def to_figures(self) -> dict[str, float | int]:
        return {
            "mean_ms": round(self.mean, 6),
            "p50_ms": round(self.p50, 6),
            "p95_ms": round(self.p95, 6),
            "p99_ms": round(self.p99, 6),
            "max_ms": round(self.max, 6),
            "iterations": self.iterations,
            "warmup": self.warmup,
        }


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread, restoring the caller's setting afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def measure(
    call: Callable[[], object],
    *,
    seconds: float = 0.4,
    min_iterations: int = 200,
    max_iterations: int = 20_000,
    warmup_seconds: float = 0.05,
    min_warmup: int = 20,
) -> LatencyStats:
    """Time ``call()`` one call at a time.

    Warm-up first (caches, lazy allocations, branch predictors), then at least
    ``min_iterations`` timed calls and as many more as fit in ``seconds``, so
    fast models get enough samples for a stable p99 (at least 100 samples
    above it). The garbage collector is paused while timing: a collection in
    the middle of a call would be measured as the model's latency.
    """
    samples, warmup = measure_samples(call, seconds=seconds, min_iterations=min_iterations, max_iterations=max_iterations,
                                      warmup_seconds=warmup_seconds, min_warmup=min_warmup)
    return LatencyStats.from_samples(samples, warmup)


def measure_samples(
    call: Callable[[], object],
    *,
    seconds: float = 0.4,
    min_iterations: int = 200,
    max_iterations: int = 20_000,
    warmup_seconds: float = 0.05,
    min_warmup: int = 20,
) -> tuple[np.ndarray, int]:
    """What :func:`measure` times, unsummarised: (nanoseconds per timed call, warm-up calls)."""
    import numpy as np

    warmup = 0
    deadline = time.perf_counter() + warmup_seconds
    while warmup < min_warmup or time.perf_counter() < deadline:
        call()
        warmup += 1

    samples = np.empty(max_iterations, dtype=np.int64)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        clock = time.perf_counter_ns
        end = clock() + int(seconds * 1e9)
        count = 0
        while count < max_iterations and (count < min_iterations or clock() < end):
            start = clock()
            call()
            samples[count] = clock() - start
            count += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples[:count], warmup


# ---------------------------------------------------------------- for people

def rtf_text(rtf: float) -> str:
    """A real-time factor for people, three figures: ``152x``, ``48.2x``, ``3.41x``, ``0.0208x``
    (``1,520x`` from a thousand on)."""
    return f"{rtf:,.0f}x" if rtf >= 1000 else f"{rtf:.3g}x"


def ms_text(ms: float) -> str:
    """Milliseconds for people, three figures: ``0.0123 ms``, ``1.33 ms``, ``64.2 ms`` (``1,234 ms`` from a second on)."""
    return f"{ms:,.0f} ms" if ms >= 1000 else f"{ms:.3g} ms"
