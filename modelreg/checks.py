"""The checks a loaded model must pass. Each returns one :class:`CheckResult` with its figures.

Stateful (recurrent) models are always driven the way a host drives them:
``reset()``, then one frame per call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .inputs import edge_cases, stream
from .latency import measure, single_thread
from .report import CheckResult

if TYPE_CHECKING:
    from .builder import RealtimeModel
    from .spec import ModelSpec

__all__ = [
    "DEFAULT_TOLERANCE",
    "check_batch_consistency",
    "check_block_latency",
    "check_denormals",
    "check_determinism",
    "check_edge_cases",
    "check_finite_weights",
    "check_latency",
    "check_output_range",
    "check_output_shape",
    "check_params",
    "check_rest_state",
    "run_frames",
    "tolerance_for",
]

DEFAULT_TOLERANCE = 1e-5
#: Frames fed to stateful models in the batch and determinism checks.
_FRAMES = 8


def tolerance_for(spec: ModelSpec) -> float:
    """The parity and batch tolerance of ``spec``: its own ``tolerance``, else :data:`DEFAULT_TOLERANCE`."""
    return spec.tolerance if spec.tolerance is not None else DEFAULT_TOLERANCE


def run_frames(module: RealtimeModel, frames: np.ndarray) -> np.ndarray:
    """Reset, then feed ``frames [batch, time, features]`` one frame per call; ``[batch, time, out]``."""
    import torch

    module.reset()
    outputs = []
    with torch.inference_mode():
        for t in range(frames.shape[1]):
            outputs.append(module(torch.from_numpy(np.ascontiguousarray(frames[:, t, :]))).numpy())
    module.reset()
    return np.stack(outputs, axis=1)


def _frames_for(module: RealtimeModel, frame: np.ndarray) -> np.ndarray:
    """A frame ``[batch, F]`` as a stream: repeated for stateful models so state builds up."""
    repeats = _FRAMES if module.is_stateful else 1
    return np.repeat(frame[:, None, :], repeats, axis=1)


def check_params(spec: ModelSpec, module: RealtimeModel) -> CheckResult:
    actual = sum(p.numel() for p in module.parameters())
    figures = {"declared": spec.params, "actual": actual}
    if actual != spec.params:
        return CheckResult("params", "fail", f"built module has {actual:,} parameters, registry declares {spec.params:,}", figures)
    return CheckResult("params", "pass", f"{actual:,} parameters", figures)


def check_finite_weights(spec: ModelSpec, module: RealtimeModel) -> CheckResult:
    bad = {}
    for name, tensor in module.state_dict().items():
        values = tensor.detach().numpy()
        count = int(values.size - np.isfinite(values).sum())
        if count:
            bad[name] = count
    if bad:
        listed = ", ".join(f"{name} ({count} NaN/Inf)" for name, count in bad.items())
        return CheckResult("weights_finite", "fail", f"non-finite weights in {listed}", {"tensors": bad})
    return CheckResult("weights_finite", "pass", "all weights finite")


def check_output_shape(spec: ModelSpec, module: RealtimeModel) -> CheckResult:
    x = edge_cases(spec.in_features, batch=spec.input_shape[0], input_range=spec.input_range)["normal"]
    y = run_frames(module, x[:, None, :])[:, 0, :]
    expected = list(spec.output_shape)
    figures = {"expected": expected, "actual": list(y.shape)}
    if list(y.shape) != expected:
        return CheckResult("output_shape", "fail", f"output shape {list(y.shape)}, registry declares {expected}", figures)
    return CheckResult("output_shape", "pass", f"{expected}", figures)


def check_batch_consistency(spec: ModelSpec, module: RealtimeModel, tolerance: float, batch: int = 8) -> CheckResult:
    """Each row of a batch must give what that row gives alone (no leakage between streams)."""
    frames = stream(spec.in_features, _FRAMES if module.is_stateful else 1, batch=batch, input_range=spec.input_range)
    together = run_frames(module, frames)
    alone = np.concatenate([run_frames(module, frames[i : i + 1]) for i in range(batch)], axis=0)
    error = float(np.max(np.abs(together - alone)))
    figures = {"batch": batch, "frames": frames.shape[1], "max_abs_error": error, "tolerance": tolerance}
    # BLAS may pick other kernels for other batch sizes, so "equal" means within tolerance.
    if not error <= tolerance:
        return CheckResult("batch_consistency", "fail", f"rows differ from single runs by {error:.3g} (> {tolerance:g})", figures)
    return CheckResult("batch_consistency", "pass", f"max abs difference {error:.3g}", figures)


def _edge_outputs(spec: ModelSpec, module: RealtimeModel) -> dict[str, np.ndarray]:
    return {name: run_frames(module, _frames_for(module, x)) for name, x in edge_cases(spec.in_features, input_range=spec.input_range).items()}


def check_edge_cases(spec: ModelSpec, module: RealtimeModel) -> CheckResult:
    outputs = _edge_outputs(spec, module)
    broken = [name for name, y in outputs.items() if not np.isfinite(y).all()]
    figures: dict[str, Any] = {"cases": list(outputs), "non_finite": broken}
    within = "" if spec.input_range is None else f" (inputs within input_range [{spec.input_range[0]:g}, {spec.input_range[1]:g}])"
    if spec.input_range is not None:
        figures["input_range"] = list(spec.input_range)
    if broken:
        return CheckResult("edge_cases", "fail", f"non-finite outputs for: {', '.join(broken)}{within}", figures)
    return CheckResult("edge_cases", "pass", f"{len(outputs)} edge cases give finite outputs{within}", figures)


def implied_range(spec: ModelSpec) -> tuple[str, float, float]:
    """What the last layer guarantees about every output value: (rule, low, high), from its kind."""
    last = spec.layers[-1]
    return last.kind.output_range(last)


def check_output_range(spec: ModelSpec, module: RealtimeModel, softmax_tolerance: float = 1e-5) -> CheckResult:
    rule, low, high = implied_range(spec)
    outputs = _edge_outputs(spec, module)
    values = np.concatenate([y.reshape(-1, y.shape[-1]) for y in outputs.values()], axis=0)
    finite = values[np.isfinite(values).all(axis=1)]
    figures: dict[str, Any] = {"rule": rule, "min": float(finite.min()) if finite.size else None,
                               "max": float(finite.max()) if finite.size else None}
    problems = []
    if finite.size and (finite.min() < low or finite.max() > high):
        problems.append(f"values outside [{low:g}, {high:g}] (min {finite.min():.6g}, max {finite.max():.6g})")
    if rule == "softmax" and finite.size:
        row_error = float(np.max(np.abs(finite.astype(np.float64).sum(axis=1) - 1.0)))
        figures["max_row_sum_error"] = row_error
        if not row_error <= softmax_tolerance:
            problems.append(f"rows sum to 1 only within {row_error:.3g} (> {softmax_tolerance:g})")
    if problems:
        return CheckResult("output_range", "fail", f"{rule}: " + "; ".join(problems), figures)
    return CheckResult("output_range", "pass", f"{rule}: within [{low:g}, {high:g}]", figures)


def check_rest_state(spec: ModelSpec, module: RealtimeModel, tolerance: float) -> CheckResult:
    """``state.rest``: the click a reset makes on the rest input, zero reset and resting reset.

    The first output after each reset is compared with the resting output (see
    :func:`modelreg.rest.rest_check`). With ``reset = "rest"`` the module's own
    ``reset()`` must restore the resting state; otherwise the resting reset is
    ``reset(to="rest")``, for comparison. Fails when the state never settles.
    """
    import torch

    from .parity import _reference_lock
    from .rest import ResetMode, rest_check

    resting = module.resting_state()

    def run(frames: np.ndarray, mode: ResetMode) -> np.ndarray:
        # The entry's own reset() is what is proven when it asks for the resting state.
        to: ResetMode | None = None if mode == spec.reset else mode
        with _reference_lock, torch.inference_mode():  # the module's state is stepped here
            module.reset(to=to)
            try:
                return np.stack([module(torch.from_numpy(np.ascontiguousarray(frames[:, t, :]))).numpy()
                                 for t in range(frames.shape[1])], axis=1)
            finally:
                module.reset()

    return rest_check("state.rest", run, resting, reset=spec.reset, tolerance=tolerance)


def check_denormals(spec: ModelSpec, module: RealtimeModel) -> CheckResult:
    """``denormals``, reference side: subnormal float32 values in state and outputs on silence.

    The parity stream, then a silent tail (see :mod:`modelreg.denormals`). A warning only
    (status pass, the message and ``warn`` saying so) when there are any: what they cost is
    a runtime's matter (timed in C++).
    """
    from .denormals import count_subnormals

    counts = count_subnormals(module)
    figures = {**counts.figures(), "warn": counts.total > 0}
    silence = (f"{counts.tail_frames:,} frames of silence after the {counts.stream_frames}-frame stream"
               if module.is_stateful else "silence (no state: one frame)")
    if not counts.total:
        return CheckResult("denormals", "pass", f"no subnormal float32 values in state or outputs over {silence}",
                           figures)
    where = ", ".join(f"{name} {count:,}" for name, count in counts.counts.items() if count)
    staying = ", ".join(f"{name} {count:,}" for name, count in counts.at_end.items() if count)
    still = f"still there at the end: {staying}" if staying else "none left at the end"
    return CheckResult("denormals", "pass",
                       f"warning: {counts.total:,} subnormal float32 values over {silence} ({where}; first at "
                       f"silent frame {counts.first_frame}; {still}): each operation on one costs 10-100x on "
                       "most CPUs; have the host flush denormals to zero (FTZ/DAZ) around the model's calls",
                       figures)


def check_determinism(spec: ModelSpec, module: RealtimeModel) -> CheckResult:
    frames = stream(spec.in_features, _FRAMES if module.is_stateful else 1, input_range=spec.input_range)
    first = run_frames(module, frames)
    second = run_frames(module, frames)
    identical = first.tobytes() == second.tobytes()
    figures = {"frames": frames.shape[1], "bit_identical": identical}
    if not identical:
        error = float(np.nanmax(np.abs(first - second)))
        return CheckResult("determinism", "fail", f"two runs after reset differ (max abs difference {error:.3g})", figures)
    return CheckResult("determinism", "pass", "two runs after reset are bit-identical", figures)


#: Why torch's block timing of an audio-rate model is reported, not judged (docs/decisions.md).
TORCH_COMPARISON = ("torch pays Python's overhead on every sample, a C++ host does not "
                    "(the RTNeural C++ latency checks judge)")


def check_latency(spec: ModelSpec, module: RealtimeModel, seconds: float = 0.4) -> CheckResult:
    """Single thread, batch 1, inference mode; passes when the entry's statistic is within target.

    An audio-rate model is timed a block at a time (:func:`check_block_latency`)."""
    import torch

    if spec.is_audio_rate:
        return check_block_latency(spec, module, seconds=seconds)
    x = torch.from_numpy(edge_cases(spec.in_features, input_range=spec.input_range)["normal"])
    module.reset()
    with single_thread(), torch.inference_mode():
        stats = measure(lambda: module(x), seconds=seconds)
    module.reset()
    value = stats.stat(spec.latency_stat)
    figures: dict[str, Any] = {**stats.to_figures(), "stat": spec.latency_stat, "target_ms": spec.latency_ms, "threads": 1}
    summary = f"{spec.latency_stat} {value:.4f} ms vs target {spec.latency_ms:g} ms ({stats.iterations} calls)"
    return CheckResult("latency", "pass" if value <= spec.latency_ms else "fail", summary, figures)


def check_block_latency(spec: ModelSpec, module: RealtimeModel, seconds: float = 0.4) -> CheckResult:
    """An audio-rate model's latency in torch: whole blocks of ``block_size`` calls of one frame
    each, as a host's audio callback makes them (state carried from block to block), with the
    real-time factor. Reported for comparison, not judged (:data:`TORCH_COMPARISON`)."""
    import torch

    from .audio import MIN_BLOCKS, block_input, block_result
    from .latency import measure_samples

    frames = [torch.from_numpy(np.ascontiguousarray(frame[None, :])) for frame in block_input(spec)]

    def block() -> None:
        for frame in frames:
            module(frame)

    module.reset()
    with single_thread(), torch.inference_mode():
        samples, warmup = measure_samples(block, seconds=seconds, min_iterations=MIN_BLOCKS, min_warmup=2)
    module.reset()
    return block_result("latency", samples, spec, warmup=warmup, comparison=TORCH_COMPARISON)
