"""Latency measurement the way a real-time host sees it: one thread, batch 1, one call at a time.

An audio-rate model (an entry with ``sample_rate`` and ``block_size``) is timed a
block at a time, as a host's audio callback runs it: ``block_size`` calls of one
frame each. Its figures are per block, with the real-time factor (block duration
/ block time); :func:`block_figures` makes them, for every runtime alike.
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    import numpy as np

    from .report import CheckResult
    from .spec import ModelSpec

__all__ = [
    "DEFAULT_WINDOW_SECONDS",
    "MIN_BLOCKS",
    "LatencyStats",
    "block_figures",
    "block_input",
    "block_result",
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


# ---------------------------------------------------------------- audio-rate models: whole blocks

#: Fewest blocks the torch and onnxruntime comparisons time (more when they fit the window): a
#: block of a per-sample model called from Python can take tens of milliseconds.
MIN_BLOCKS = 10


def rtf_text(rtf: float) -> str:
    """A real-time factor for people, three figures: ``152x``, ``48.2x``, ``3.41x``, ``0.0208x``
    (``1,520x`` from a thousand on)."""
    return f"{rtf:,.0f}x" if rtf >= 1000 else f"{rtf:.3g}x"


def ms_text(ms: float) -> str:
    """Milliseconds for people, three figures: ``0.0123 ms``, ``1.33 ms``, ``64.2 ms`` (``1,234 ms`` from a second on)."""
    return f"{ms:,.0f} ms" if ms >= 1000 else f"{ms:.3g} ms"


def block_input(spec: ModelSpec) -> np.ndarray:
    """The frames of one audio block, ``[block_size, in_features]`` float32: what every runtime's
    block timing feeds (the seeded stream of :func:`modelreg.inputs.stream`, within ``input_range``)."""
    from .inputs import stream

    if spec.block_size is None:
        raise ValueError(f"{spec.name} is not an audio-rate model (no sample_rate and block_size)")
    return stream(spec.in_features, spec.block_size, input_range=spec.input_range)[0]


def block_figures(samples_ns: Any, spec: ModelSpec, *, warmup: int,
                  comparison: str | None = None) -> tuple[dict[str, Any], str]:
    """The figures and the one-line summary of an audio-rate model's latency, from wall times per block.

    ``samples_ns``: nanoseconds per block (each block is ``spec.block_size`` calls of one frame,
    as a host's audio callback makes them), one value per timed block; ``warmup``: blocks run
    before timing. The figures are :meth:`LatencyStats.to_figures`'s, per block (``p99_ms`` is
    the p99 of block times, ``iterations`` counts blocks), plus ``stat``, ``target_ms`` (the
    entry's ``latency_ms``, else the block's duration), ``threads``, ``block_size``,
    ``sample_rate``, ``block_ms`` (the block's duration), ``rtf`` (real-time factor: ``block_ms``
    divided by the entry's statistic of block times; None if that is 0), ``target_rtf``
    (``block_ms / target_ms``: the least real-time factor that passes) and ``judged``.

    The summary reads ``p99 0.0277 ms per block vs target 1.33 ms (the block's duration): 48.2x
    real time at 48 kHz, 64-sample blocks (1200 blocks)``. With ``comparison`` (why this runtime
    is not judged), the figures say ``judged: false`` and the summary gives no verdict, ending
    with ``; for comparison, not judged against the 1.33 ms target: COMPARISON``.
    """
    import numpy as np

    from .spec import audio_rate_text

    if spec.sample_rate is None or spec.block_size is None or spec.block_ms is None:
        raise ValueError(f"{spec.name} is not an audio-rate model (no sample_rate and block_size)")
    stats = LatencyStats.from_samples(np.asarray(samples_ns), warmup)
    value = stats.stat(spec.latency_stat)
    rtf = spec.block_ms / value if value > 0 else None
    figures: dict[str, Any] = {
        **stats.to_figures(), "stat": spec.latency_stat, "target_ms": spec.latency_ms, "threads": 1,
        "block_size": spec.block_size, "sample_rate": spec.sample_rate, "block_ms": round(spec.block_ms, 6),
        "rtf": None if rtf is None else float(f"{rtf:.4g}"),
        "target_rtf": float(f"{spec.block_ms / spec.latency_ms:.4g}"), "judged": comparison is None,
    }
    speed = f"{'immeasurably fast' if rtf is None else rtf_text(rtf) + ' real time'} at " \
            f"{audio_rate_text(spec.sample_rate, spec.block_size)}"
    timed = f"{spec.latency_stat} {ms_text(value)} per block"
    if comparison is not None:
        return figures, (f"{timed}: {speed} ({stats.iterations} blocks); for comparison, not judged against the "
                         f"{ms_text(spec.latency_ms)} target: {comparison}")
    target = (f"{ms_text(spec.latency_ms)} (the block's duration)" if spec.target_is_block
              else f"{spec.latency_ms:g} ms")
    return figures, f"{timed} vs target {target}: {speed} ({stats.iterations} blocks)"


def block_result(name: str, samples_ns: Any, spec: ModelSpec, *, warmup: int, prefix: str = "",
                 comparison: str | None = None, extra: Mapping[str, Any] | None = None) -> CheckResult:
    """The latency check ``name`` of an audio-rate model from its per-block wall times
    (see :func:`block_figures`): it passes when the entry's statistic of block times is within
    the target (or always, when ``comparison`` says why it is not judged). ``prefix`` starts
    the message (the runtime); ``extra`` figures are added (toolchain, clock overhead...)."""
    from .report import CheckResult

    figures, summary = block_figures(samples_ns, spec, warmup=warmup, comparison=comparison)
    value = figures[f"{spec.latency_stat}_ms"]
    ok = comparison is not None or value <= spec.latency_ms
    return CheckResult(name, "pass" if ok else "fail", prefix + summary, {**figures, **(extra or {})})
