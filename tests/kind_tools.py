"""Helpers for the per-kind test files (test_kind_*.py): a spec from layers, a module with
non-trivial weights, both exports proven, and a corrupted RTNeural file checked against torch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from modelreg import LayerSpec, ModelSpec
from modelreg.builder import RealtimeModel, build_module
from modelreg.onnx.exporter import ONNXExporter
from modelreg.rtneural.exporter import RTNeuralExporter
from modelreg.parity import Parity
from modelreg.spec import count_params


def spec_of(root: Path, in_features: int, layers: list[LayerSpec], name: str = "kind") -> ModelSpec:
    return ModelSpec(
        name=name, description="", input_shape=(1, in_features), output_shape=(1, layers[-1].units),
        dtype="float32", params=count_params(layers, in_features), latency_ms=10.0, layers=tuple(layers),
        checkpoint=root / f"{name}.pt", registry_file=root / "registry.toml",
    )


def widened(spec: ModelSpec, seed: int) -> RealtimeModel:
    module = build_module(spec, seed=seed)
    with torch.no_grad():  # default init is small; widen weights so activations leave their linear region
        for parameter in module.parameters():
            parameter.mul_(2.0)
    return module


def export_both(spec: ModelSpec, module: RealtimeModel, folder: Path) -> dict[str, Parity]:
    """Export RTNeural JSON and ONNX, check each file, and return each one's parity (asserted ok)."""
    results = {}
    for exporter in (RTNeuralExporter(), ONNXExporter()):
        path = folder / f"{spec.name}.{exporter.name}"
        exporter.export(spec, module, path)
        assert exporter.check_artifact(spec, path) == [], exporter.name
        parity = exporter.verify(spec, module, path, 1e-5)
        assert parity.ok, (exporter.name, parity.to_figures())
        results[exporter.name] = parity
    return results


def corrupted_parity(spec: ModelSpec, module: RealtimeModel, folder: Path,
                     corrupt: Callable[[dict[str, Any]], None]) -> Parity:
    """Write the RTNeural file, let ``corrupt`` edit its document, and run parity on the edited file."""
    path = folder / f"{spec.name}.json"
    exporter = RTNeuralExporter()
    exporter.export(spec, module, path)
    assert exporter.verify(spec, module, path, 1e-5).ok  # the file was right before
    document = json.loads(path.read_text())
    corrupt(document)
    path.write_text(json.dumps(document))
    assert exporter.check_artifact(spec, path) == []  # well-formed: only the numbers can tell
    return exporter.verify(spec, module, path, 1e-5)


def assert_onnx_runs_at_batch(spec: ModelSpec, module: RealtimeModel, folder: Path, batch: int = 3) -> None:
    """Export ONNX and stream 4 frames of ``batch`` rows through onnxruntime: the batch axis is
    declared dynamic, so every batch must run and match torch."""
    import numpy as np
    import onnxruntime as ort

    from modelreg.checks import run_frames

    path = folder / f"{spec.name}.onnx"
    ONNXExporter().export(spec, module, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    frames = np.random.default_rng(1).standard_normal((batch, 4, spec.in_features)).astype(np.float32)
    state = {name: np.zeros((1, batch, size), np.float32) for name, size in module.state_layout()}
    outputs = []
    for t in range(frames.shape[1]):
        y, *new_state = session.run(None, {"x": frames[:, t], **state})
        state = dict(zip(state, new_state))
        outputs.append(y)
    np.testing.assert_allclose(np.stack(outputs, axis=1), run_frames(module, frames), atol=1e-5)


def run_in_rtneural_cpp(path: Path, frames: Any) -> Any:
    """``frames [T, in]`` through RTNeural's C++ dynamic loader (checked load), from a reset: ``[T, out]``."""
    from modelreg.rtneural import cpp as rc

    runner = rc.runner_for(rc.find_toolchain())
    loaded = rc.load_checked(runner, path)
    try:
        return runner.run(loaded, frames)
    finally:
        runner.free(loaded)
