"""ONNX for onnxruntime and friends, streamable: recurrent state is an explicit input and output.

Graph interface (``batch`` is a dynamic axis everywhere):

- input ``x`` ``[batch, in]`` (one frame), output ``y`` ``[batch, out]``;
- per LSTM layer i: inputs ``h{i}``, ``c{i}`` and outputs ``h{i}_out``,
  ``c{i}_out``, each ``[1, batch, units]``; per GRU layer i: ``h{i}`` / ``h{i}_out``;
  per conv1d layer i with kernel_size > 1: ``buf{i}`` / ``buf{i}_out``
  ``[1, batch, (kernel_size - 1) * dilation * in]``, its past input frames, oldest first
  (every state comes from the layer kinds' ``state()``).

A host feeds zeros as the first state and each call's ``*_out`` as the next
call's state. Exported with PyTorch's TorchScript-based exporter
(``dynamo=False``): for these small fixed graphs it is ~20x faster than the
torch.export-based one and needs no onnxscript; see docs/decisions.md.

For an audio-rate entry (``sample_rate`` and ``block_size``) the check
``onnx.latency`` times whole blocks in onnxruntime (one thread, one call per
sample, state carried), with the real-time factor: reported for comparison with
torch and RTNeural C++, not judged (see :data:`ONNX_COMPARISON`).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from ..atomic import atomic_write_bytes
from ..errors import MissingDependencyError, Problem
from ..plugins import Exporter, Parity

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..builder import RealtimeModel
    from ..report import CheckResult
    from ..spec import ModelSpec

__all__ = ["ONNX_COMPARISON", "ONNXExporter", "OPSET"]

OPSET = 17
#: Why onnxruntime's block timing of an audio-rate model is reported, not judged (docs/decisions.md).
ONNX_COMPARISON = ("each sample is a session.run() call from Python, a C++ host's callback makes none "
                   "(the RTNeural C++ latency checks judge)")


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError.at(
            f"the ONNX exporter needs the '{module}' package, which is not installed",
            expected="pip install 'modelreg[onnx]'",
        ) from None


class ONNXExporter(Exporter):
    """Writes ``models/onnx/NAME.onnx`` (opset 17), checked with ``onnx.checker``."""

    name = "onnx"
    runtime = "onnxruntime"
    packages = ("onnx", "onnxruntime")
    # 2: the batch axis works at every batch (files of conv2d / batchnorm2d stacks made by
    # version 1 failed in onnxruntime at batch > 1); version-1 files turn stale.
    version = "2"
    thread_safe = True
    schema = None  # binary protobuf: onnx.checker is its schema
    suffix = ".onnx"

    def artifact_path(self, spec: ModelSpec) -> Path:
        return spec.registry_dir / "models" / "onnx" / f"{spec.name}.onnx"

    def export(self, spec: ModelSpec, module: RealtimeModel, path: Path) -> None:
        onnx = _require("onnx")
        import torch

        wrapper = module.streaming()
        states = module.state_layout()
        example = (torch.zeros(1, spec.in_features),) + tuple(torch.zeros(1, 1, units) for _, units in states)
        input_names = ["x"] + [name for name, _ in states]
        output_names = ["y"] + [f"{name}_out" for name, _ in states]
        axes = {"x": {0: "batch"}, "y": {0: "batch"}}
        for name, _ in states:
            axes[name] = {1: "batch"}
            axes[f"{name}_out"] = {1: "batch"}
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # The TorchScript exporter announces its deprecation on every call.
            warnings.simplefilter("ignore")
            # The TorchScript path also takes a file object (torch's hints say path only).
            torch.onnx.export(
                wrapper, example, buffer,  # type: ignore[arg-type]
                dynamo=False, opset_version=OPSET,
                input_names=input_names, output_names=output_names, dynamic_axes=axes,
                do_constant_folding=True,
            )
        data = buffer.getvalue()
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
        atomic_write_bytes(path, data)

    def check_artifact(self, spec: ModelSpec, path: Path) -> list[Problem]:
        return [attrs.evolve(problem, model=spec.name) for problem in self.check_file(path)]

    def check_file(self, path: Path) -> list[Problem]:
        onnx = _require("onnx")
        from ..paths import display_path

        shown = display_path(path)
        try:
            model = onnx.load(str(path))
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:  # protobuf/checker raise many types for a damaged file
            return [Problem(f"not a valid ONNX model: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                            file=shown)]
        inputs = [i.name for i in model.graph.input]
        if not inputs or inputs[0] != "x":
            return [Problem("unexpected graph inputs", file=shown, expected="'x' first", found=str(inputs))]
        return []

    def verify(self, spec: ModelSpec, module: RealtimeModel, path: Path, tolerance: float) -> Parity:
        import numpy as np

        from ..parity import compare_parity

        session = _session(path)
        states = module.state_layout()
        output_names = ["y"] + [f"{name}_out" for name, _ in states]

        def run(frames: Any) -> Any:
            batch = frames.shape[0]
            state = {name: np.zeros((1, batch, units), np.float32) for name, units in states}
            outputs = []
            for t in range(frames.shape[1]):
                results = session.run(output_names, {"x": np.ascontiguousarray(frames[:, t, :]), **state})
                outputs.append(results[0])
                state = {name: value for (name, _), value in zip(states, results[1:])}
            return np.stack(outputs, axis=1)

        return compare_parity(module, run, tolerance)

    def extra_checks(
        self, spec: ModelSpec, module: RealtimeModel, tolerance: float
    ) -> list[tuple[str, Callable[[Path], CheckResult]]]:
        """``latency`` for an audio-rate entry (whole blocks in onnxruntime); none for other entries."""
        if not spec.is_audio_rate:
            return []
        return [("latency", lambda path: block_latency(spec, module, path))]


def _session(path: Path) -> Any:
    """An onnxruntime session on one thread, as a real-time host runs it."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def block_latency(spec: ModelSpec, module: RealtimeModel, path: Path) -> CheckResult:
    """``onnx.latency`` of an audio-rate model: blocks of ``block_size`` session calls of one frame
    each, the state outputs fed back as the next call's inputs (never reset between blocks, as a
    host's callback runs), timed for :func:`~modelreg.latency.latency_window`."""
    import numpy as np

    from ..latency import MIN_BLOCKS, block_input, block_result, latency_window, measure_samples

    session = _session(path)
    states = module.state_layout()
    output_names = ["y"] + [f"{name}_out" for name, _ in states]
    frames = [np.ascontiguousarray(frame[None, :]) for frame in block_input(spec)]
    state = {name: np.zeros((1, 1, units), np.float32) for name, units in states}

    def block() -> None:
        nonlocal state
        for frame in frames:
            results = session.run(output_names, {"x": frame, **state})
            state = {name: value for (name, _), value in zip(states, results[1:])}

    samples, warmup = measure_samples(block, seconds=latency_window(), min_iterations=MIN_BLOCKS, min_warmup=2)
    return block_result("onnx.latency", samples, spec, warmup=warmup, prefix="onnxruntime: ", comparison=ONNX_COMPARISON,
                        extra={"api": "onnxruntime.InferenceSession.run, one call per sample"})
