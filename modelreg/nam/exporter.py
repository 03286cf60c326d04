"""The ``nam`` exporter: ``models/nam/NAME.nam``, proven in NAM's own C++ engine.

Parity (``nam.parity``) runs the file through the engine's loader ``nam::get_dsp`` and
``DSP::process`` as a plugin does (see :mod:`modelreg.nam.engine`), against torch started
from the state the file holds (the resting state on zeros, see :mod:`modelreg.nam.format`).
``nam.latency`` times the engine block by block. Both are skipped, saying what to set,
without ``$MODELREG_NAM_CORE`` or a compiler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ArtifactError, Problem
from ..layers.base import state_name
from ..plugins import Exporter, Parity

if TYPE_CHECKING:
    import numpy as np

    from ..builder import RealtimeModel
    from ..report import CheckResult
    from ..spec import ModelSpec

__all__ = ["AUDIO_STREAM_FRAMES", "NAMExporter"]

#: Frames of the audio stream parity adds to the standard cases: long enough for many blocks.
AUDIO_STREAM_FRAMES = 4096
#: What a host that does not say runs at: the block Reset() is given, and its sample rate.
DEFAULT_BLOCK = 64
DEFAULT_SAMPLE_RATE = 48000.0
RUNTIME = "NAM's C++ engine (NeuralAmpModelerCore, nam::get_dsp)"


class NAMExporter(Exporter):
    """Writes ``models/nam/NAME.nam`` for Neural Amp Modeler hosts (LSTM, ConvNet and WaveNet entries)."""

    name = "nam"
    version = "1"
    schema = "nam"
    suffix = ".nam"
    runtime = RUNTIME

    def artifact_path(self, spec: ModelSpec) -> Path:
        return spec.registry_dir / "models" / "nam" / f"{spec.name}.nam"

    def export(self, spec: ModelSpec, module: RealtimeModel, path: Path) -> None:
        from .format import build_document, dumps_nam

        path.write_bytes(dumps_nam(build_document(spec, module)))

    def check_artifact(self, spec: ModelSpec, path: Path) -> list[Problem]:
        import attrs

        from ..paths import display_path
        from .format import channels_of, read_nam

        shown = display_path(path)
        data, problems = read_nam(path, file=shown)
        if problems:
            return [attrs.evolve(problem, model=spec.name) for problem in problems]
        if channels_of(data) != (spec.in_features, spec.out_features):
            ins, outs = channels_of(data)
            return [Problem("file does not fit the registry entry", file=shown, model=spec.name, key="config",
                            expected=f"{spec.in_features} in, {spec.out_features} out", found=f"{ins} in, {outs} out")]
        return []

    def check_file(self, path: Path) -> list[Problem]:
        from ..paths import display_path
        from .format import read_nam

        return read_nam(path, file=display_path(path))[1]

    def describe_file(self, path: Path) -> str:
        from ..paths import display_path
        from .format import describe, read_nam

        return describe(read_nam(path, file=display_path(path))[0])

    def verify(self, spec: ModelSpec, module: RealtimeModel, path: Path, tolerance: float) -> Parity:
        from ..paths import display_path
        from .engine import NotConfigured, RunnerError, find_engine, run_file, runner_binary

        try:
            engine = find_engine()
        except NotConfigured as exc:
            return Parity.skip(str(exc), tolerance)
        binary = runner_binary(engine)
        sample_rate, block = _host(spec)

        def run(frames: np.ndarray) -> np.ndarray:
            try:
                return run_file(binary, path, frames, sample_rate=sample_rate, block=block, out=spec.out_features)
            except RunnerError as exc:
                raise ArtifactError(Problem(f"{RUNTIME}: {exc}", file=display_path(path), model=spec.name)) from None

        parity = compare_from_rest(spec, module, run, tolerance)
        details = {**parity.details, **engine.figures(), "reset_sample_rate": sample_rate,
                   "reset_block": block}
        return Parity(parity.max_error, parity.max_abs_error, parity.tolerance, parity.cases, details=details)

    def extra_checks(self, spec: ModelSpec, module: RealtimeModel,
                     tolerance: float) -> list[tuple[str, Callable[[Path], CheckResult]]]:
        """``latency``: NAM's engine timed block by block (real-time factor for audio-rate entries)."""
        return [("latency", lambda path: latency_check(spec, path))]


def _host(spec: ModelSpec) -> tuple[float, int]:
    """The sample rate and block a host resets the model with: the entry's, else 48 kHz and 64."""
    return (float(spec.sample_rate) if spec.sample_rate is not None else DEFAULT_SAMPLE_RATE,
            spec.block_size or DEFAULT_BLOCK)


def _start_state(spec: ModelSpec, module: RealtimeModel, dtype: Any) -> list[tuple[Any, ...]]:
    """The state NAM's engine runs from after load and Reset(): the resting state on zeros (the
    LSTM's written into the file and kept by the prewarm; the ConvNet's buffers filled by the
    prewarm), per layer, as ``module.step`` takes it (batch 1)."""
    import torch

    from .format import _rest_state, architecture_of

    if architecture_of(spec) == "WaveNet":
        return _prewarmed(spec, module, dtype)
    rest = _rest_state(spec, module)
    state: list[tuple[Any, ...]] = []
    for index, layer in enumerate(spec.layers):
        state.append(tuple(torch.from_numpy(rest[state_name(name, index)]).to(dtype).view(1, 1, -1)
                           for name, _ in layer.kind.state(layer)))
    return state


def _prewarmed(spec: ModelSpec, module: RealtimeModel, dtype: Any) -> list[tuple[Any, ...]]:
    """A WaveNet's state after NAM's prewarm: its conv buffers after a stream of zeros as long as the
    receptive field (every buffer then holds its resting values exactly: a finite memory). One
    sequence call (full convolutions), not the frame-by-frame search of the resting state."""
    import torch

    from ..layers.wavenet import arrays_of, history

    frames = 1 + sum(history(a.kernel_size, d) for a in arrays_of(spec.layers[0]) for d in a.dilations)
    with torch.inference_mode():
        _, state = module.step(torch.zeros(1, frames, spec.in_features), module.initial_state(1))
    return [tuple(t.to(dtype) for t in layer) for layer in state]


def _reference(module: Any, frames: np.ndarray, start: list[tuple[Any, ...]]) -> np.ndarray:
    import numpy as np
    import torch

    rows = frames.shape[0]
    state = [tuple(t.repeat(1, rows, 1) for t in layer) for layer in start]
    with torch.inference_mode():
        y, _ = module.step(torch.from_numpy(frames), state)  # pure: the module's own state is untouched
    return np.asarray(y.numpy())


def compare_from_rest(spec: ModelSpec, module: RealtimeModel, run: Callable[[np.ndarray], np.ndarray],
                      tolerance: float) -> Parity:
    """:func:`modelreg.compare_parity`'s cases, plus a 4,096-sample audio stream, with torch started
    from the resting state on zeros (what the ``.nam`` file and NAM's prewarm start from) instead
    of zeros; the same deciding figure (:func:`modelreg.parity.scaled_error`)."""
    import copy

    import numpy as np
    import torch

    from ..inputs import stream
    from ..parity import parity_cases, scaled_error

    cases = parity_cases(spec.in_features, True, with_stream=True, input_range=spec.input_range)
    cases[f"stream_{AUDIO_STREAM_FRAMES}"] = stream(spec.in_features, AUDIO_STREAM_FRAMES, input_range=spec.input_range)
    exact_module = copy.deepcopy(module).double()
    start32 = _start_state(spec, module, torch.float32)
    start64 = [tuple(t.double() for t in layer) for layer in start32]  # the same float32 values, exactly
    groups: dict[int, list[str]] = {}
    for name, frames in cases.items():
        groups.setdefault(frames.shape[1], []).append(name)
    worst = 0.0
    errors: dict[str, float] = {}
    for names in groups.values():
        frames = np.concatenate([cases[name] for name in names], axis=0)
        expected = _reference(module, frames, start32)
        exact = _reference(exact_module, frames.astype(np.float64), start64)
        actual = np.asarray(run(frames))
        for row, name in enumerate(names):
            if actual.shape != expected.shape:
                error, errors[name] = float("inf"), float("inf")
            else:
                error = scaled_error(actual[row:row + 1], expected[row:row + 1], exact[row:row + 1])
                errors[name] = float(np.max(np.abs(actual[row].astype(np.float64) - expected[row])))
            if np.isnan(error) or (not np.isnan(worst) and error > worst):  # NaN, once seen, stays
                worst = error
    max_abs = max(errors.values(), default=0.0)
    if any(np.isnan(v) for v in errors.values()):
        max_abs = float("nan")
    return Parity(worst, max_abs, tolerance, errors,
                  details={"start": "the resting state on zeros", "stream_frames": AUDIO_STREAM_FRAMES})


def latency_check(spec: ModelSpec, path: Path) -> CheckResult:
    """``nam.latency``: ``process()`` on one block, again and again for the run's latency window."""
    import numpy as np

    from ..audio import block_input, block_result
    from ..inputs import stream
    from ..latency import LatencyStats, latency_window
    from ..report import CheckResult
    from .engine import NotConfigured, RunnerError, find_engine, runner_binary, time_file

    name = "nam.latency"
    try:
        engine = find_engine()
    except NotConfigured as exc:
        return CheckResult(name, "skip", str(exc))
    binary = runner_binary(engine)
    sample_rate, block = _host(spec)
    frames = block_input(spec) if spec.is_audio_rate else stream(spec.in_features, 1, input_range=spec.input_range)[0]
    try:
        timing = time_file(binary, path, frames, sample_rate=sample_rate, seconds=latency_window())
    except RunnerError as exc:
        return CheckResult(name, "fail", f"{RUNTIME}: {exc}")
    extra: Mapping[str, Any] = {"load_ms": round(timing.load_ms, 4), **engine.figures(),
                                "api": "nam::get_dsp, DSP::Reset, DSP::process"}
    if spec.is_audio_rate:
        return block_result(name, timing.samples_ns, spec, warmup=timing.warmup, prefix=f"{RUNTIME}: ", extra=extra)
    stats = LatencyStats.from_samples(np.asarray(timing.samples_ns), timing.warmup)
    value = stats.stat(spec.latency_stat)
    figures = {**stats.to_figures(), "stat": spec.latency_stat, "target_ms": spec.latency_ms, "threads": 1, **extra}
    summary = (f"{RUNTIME}: {spec.latency_stat} {value * 1000:.2f} us per sample vs target {spec.latency_ms:g} ms "
               f"({stats.iterations} calls)")
    return CheckResult(name, "pass" if value <= spec.latency_ms else "fail", summary, figures)
