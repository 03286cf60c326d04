"""Audio-rate models (an entry with ``sample_rate`` and ``block_size``): latency a whole block at a time.

A host's audio callback calls a per-sample model ``block_size`` times, once per sample, and must
finish before the next callback, one block's duration later. Every runtime's latency check of such
a model times whole blocks and turns them into the same figures and wording here: the time per
block and the real-time factor (block duration / block time), as in "48.2x real time at 48 kHz,
64-sample blocks". (Not in :mod:`modelreg.latency`, which the model builder's modules import and
which must not import the spec back.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from .latency import LatencyStats, ms_text, rtf_text

if TYPE_CHECKING:
    import numpy as np

    from .report import CheckResult
    from .spec import ModelSpec

__all__ = ["ENGINE_LABELS", "MIN_BLOCKS", "EngineRow", "block_figures", "block_input", "block_result",
           "engine_comparison"]

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


# ---------------------------------------------------------------- one model, every engine


#: What runs each built-in latency check's blocks, for the engine comparison (a plugin's check
#: ``FORMAT.latency`` is shown as ``FORMAT``).
ENGINE_LABELS = {
    "latency": "torch (Python)",
    "rtneural.dynamic_latency": "RTNeural C++ (parseJson)",
    "rtneural-cpp.latency": "RTNeural C++ (compiled header)",
    "onnx.latency": "onnxruntime (Python)",
    "nam.latency": "NAM's engine (C++)",
}


@attrs.frozen
class EngineRow:
    """One engine of an audio-rate model's comparison: its parity against torch and its block timing.

    ``parity_status`` is ``"reference"`` for torch (the others are compared with it), else the
    parity check's status (None when the model has no such check); ``max_abs_error`` and
    ``error`` (the deciding figure, beyond float32 rounding) are its figures. ``latency_status``
    is the latency check's; ``stat_ms`` the time of one block at the entry's statistic
    (``stat``), ``rtf`` the real-time factor at that statistic and ``rtf_p50`` at the median
    block; ``judged`` whether that engine's time decides the check. ``reason``: why a check was
    skipped or failed before measuring (its message), else "".
    """

    engine: str
    latency_check: str
    parity_check: str | None
    parity_status: str | None
    max_abs_error: float | None
    error: float | None
    tolerance: float | None
    latency_status: str
    stat: str | None
    stat_ms: float | None
    p50_ms: float | None
    rtf: float | None
    rtf_p50: float | None
    judged: bool | None
    reason: str = ""


def _parts(check: Any) -> tuple[str, str, str, Mapping[str, Any]]:
    """(name, status, message, figures) of a CheckResult or of its JSON form."""
    if isinstance(check, Mapping):
        figures = check.get("figures")
        return (str(check.get("name", "")), str(check.get("status", "")), str(check.get("message", "")),
                figures if isinstance(figures, Mapping) else {})
    return check.name, check.status, check.message, check.figures


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def engine_comparison(checks: Iterable[Any], *, audio_rate: bool | None = None) -> list[EngineRow]:
    """Every engine an audio-rate model was timed in, side by side: parity and real-time factor.

    ``checks``: a model's checks (:class:`~modelreg.report.CheckResult` or their JSON form,
    as the results file holds them). An engine is a latency check (torch's ``latency``, or an
    exporter's ``FORMAT.latency`` / ``FORMAT.X_latency``), paired with the parity check of the
    same name (``FORMAT.parity`` / ``FORMAT.X_parity``); torch is the reference. Empty for a
    model that is not audio-rate: ``audio_rate`` says so when known (the entry), else a block
    timing among the checks decides (a results file read without its registry).
    """
    by_name = {}
    for check in checks:
        name, status, message, figures = _parts(check)
        by_name[name] = (status, message, figures)
    timed = [n for n in by_name if n == "latency" or (n.endswith("latency") and "." in n)]
    if audio_rate is None:
        audio_rate = any("block_size" in by_name[n][2] for n in timed)
    if not audio_rate:
        return []
    rows = []
    for name in sorted(timed, key=lambda n: n != "latency"):  # torch first, then the exports in order
        status, message, figures = by_name[name]
        parity_name = None if name == "latency" else name[: -len("latency")] + "parity"
        parity = by_name.get(parity_name) if parity_name is not None else None
        parity_figures = parity[2] if parity is not None else {}
        stat = figures.get("stat") if isinstance(figures.get("stat"), str) else None
        stat_ms = _number(figures.get(f"{stat}_ms")) if stat else None
        p50 = _number(figures.get("p50_ms"))
        block_ms = _number(figures.get("block_ms"))
        # Why an engine has no figure: a skip, an error, or a failure before measuring (no figures).
        reasons = [m for s, m, f in ((status, message, figures), parity if parity is not None else ("", "", {}))
                   if s in ("skip", "error") or (s == "fail" and not f)]
        rows.append(EngineRow(
            engine=ENGINE_LABELS.get(name, name.split(".", 1)[0]),
            latency_check=name,
            parity_check=parity_name if parity is not None else None,
            parity_status="reference" if name == "latency" else (parity[0] if parity is not None else None),
            max_abs_error=_number(parity_figures.get("max_abs_error")),
            error=_number(parity_figures.get("max_error")),
            tolerance=_number(parity_figures.get("tolerance")),
            latency_status=status, stat=stat, stat_ms=stat_ms, p50_ms=p50,
            rtf=_number(figures.get("rtf")),
            rtf_p50=block_ms / p50 if block_ms is not None and p50 else None,
            judged=figures.get("judged") if isinstance(figures.get("judged"), bool) else None,
            reason=reasons[0] if reasons else ""))
    return rows
