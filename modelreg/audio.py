"""Audio-rate models (an entry with ``sample_rate`` and ``block_size``): latency a whole block at a time.

A host's audio callback calls a per-sample model ``block_size`` times, once per sample, and must
finish before the next callback, one block's duration later. Every runtime's latency check of such
a model times whole blocks and turns them into the same figures and wording here: the time per
block and the real-time factor (block duration / block time), as in "48.2x real time at 48 kHz,
64-sample blocks". (Not in :mod:`modelreg.latency`, which the model builder's modules import and
which must not import the spec back.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .latency import LatencyStats, ms_text, rtf_text

if TYPE_CHECKING:
    import numpy as np

    from .report import CheckResult
    from .spec import ModelSpec

__all__ = ["MIN_BLOCKS", "block_figures", "block_input", "block_result"]

#: Fewest blocks the torch and onnxruntime comparisons time (more when they fit the window): a
#: block of a per-sample model called from Python can take tens of milliseconds.
MIN_BLOCKS = 10


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
