"""ONNX for onnxruntime and friends, streamable: recurrent state is an explicit input and output.

Graph interface (``batch`` is a dynamic axis everywhere):

- input ``x`` ``[batch, in]`` (one frame), output ``y`` ``[batch, out]``;
- per LSTM layer i: inputs ``h{i}``, ``c{i}`` and outputs ``h{i}_out``,
  ``c{i}_out``, each ``[1, batch, units]``; per GRU layer i: ``h{i}`` / ``h{i}_out``.

A host feeds zeros as the first state and each call's ``*_out`` as the next
call's state. Exported with PyTorch's TorchScript-based exporter
(``dynamo=False``): for these small fixed graphs it is ~20x faster than the
torch.export-based one and needs no onnxscript; see docs/decisions.md.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any


from ..atomic import atomic_write_bytes
from ..errors import MissingDependencyError, Problem
from ..plugins import Exporter, Parity

if TYPE_CHECKING:
    from ..builder import RealtimeModel
    from ..spec import ModelSpec

__all__ = ["ONNXExporter", "OPSET", "state_names"]

OPSET = 17


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError.at(
            f"the ONNX exporter needs the '{module}' package, which is not installed",
            expected="pip install 'modelreg[onnx]'",
        ) from None


def state_names(module: RealtimeModel) -> list[tuple[str, int, int]]:
    """(name, layer index, units) of every state tensor, in graph order."""
    names = []
    for index, (kind, layer) in enumerate(zip(module.kinds, module.layers)):
        if kind == "lstm":
            names += [(f"h{index}", index, layer.hidden_size), (f"c{index}", index, layer.hidden_size)]
        elif kind == "gru":
            names.append((f"h{index}", index, layer.hidden_size))
    return names


def _streaming_wrapper(module: RealtimeModel) -> Any:
    import torch

    class Streaming(torch.nn.Module):
        """One frame in, one frame out, state passed explicitly."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, x: torch.Tensor, *flat_state: torch.Tensor) -> tuple[torch.Tensor, ...]:
            state: list[Any] = []
            position = 0
            for kind in self.inner.kinds:
                if kind == "lstm":
                    state.append((flat_state[position], flat_state[position + 1]))
                    position += 2
                elif kind == "gru":
                    state.append(flat_state[position])
                    position += 1
                else:
                    state.append(None)
            y, new_state = self.inner.step(x.unsqueeze(1), state)
            flat_out: list[torch.Tensor] = []
            for layer_state in new_state:
                if isinstance(layer_state, tuple):
                    flat_out += list(layer_state)
                elif layer_state is not None:
                    flat_out.append(layer_state)
            return (y.squeeze(1), *flat_out)

    return Streaming().eval()


class ONNXExporter(Exporter):
    """Writes ``models/onnx/NAME.onnx`` (opset 17), checked with ``onnx.checker``."""

    name = "onnx"
    version = "1"
    schema = None  # binary protobuf: onnx.checker is its schema

    def artifact_path(self, spec: ModelSpec) -> Path:
        return spec.registry_dir / "models" / "onnx" / f"{spec.name}.onnx"

    def export(self, spec: ModelSpec, module: RealtimeModel, path: Path) -> None:
        onnx = _require("onnx")
        import torch

        wrapper = _streaming_wrapper(module)
        states = state_names(module)
        example = (torch.zeros(1, spec.in_features),) + tuple(torch.zeros(1, 1, units) for _, _, units in states)
        input_names = ["x"] + [name for name, _, _ in states]
        output_names = ["y"] + [f"{name}_out" for name, _, _ in states]
        axes = {"x": {0: "batch"}, "y": {0: "batch"}}
        for name, _, _ in states:
            axes[name] = {1: "batch"}
            axes[f"{name}_out"] = {1: "batch"}
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            # The TorchScript exporter announces its deprecation on every call.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, example, buffer, dynamo=False, opset_version=OPSET,
                input_names=input_names, output_names=output_names, dynamic_axes=axes,
                do_constant_folding=True,
            )
        data = buffer.getvalue()
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
        atomic_write_bytes(path, data)

    def check_artifact(self, spec: ModelSpec, path: Path) -> list[Problem]:
        onnx = _require("onnx")
        from ..registry import display_path

        shown = display_path(path)
        try:
            model = onnx.load(str(path))
            onnx.checker.check_model(model, full_check=True)
        except Exception as exc:  # protobuf/checker raise many types for a damaged file
            return [Problem(f"not a valid ONNX model: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}",
                            file=shown, model=spec.name)]
        inputs = [i.name for i in model.graph.input]
        if not inputs or inputs[0] != "x":
            return [Problem("unexpected graph inputs", file=shown, model=spec.name, expected="'x' first", found=str(inputs))]
        return []

    def verify(self, spec: ModelSpec, module: RealtimeModel, path: Path, tolerance: float) -> Parity:
        import numpy as np

        ort = _require("onnxruntime")
        from ..parity import compare

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        states = state_names(module)
        output_names = ["y"] + [f"{name}_out" for name, _, _ in states]

        def run(frames: Any) -> Any:
            batch = frames.shape[0]
            state = {name: np.zeros((1, batch, units), np.float32) for name, _, units in states}
            outputs = []
            for t in range(frames.shape[1]):
                results = session.run(output_names, {"x": np.ascontiguousarray(frames[:, t, :]), **state})
                outputs.append(results[0])
                state = {name: value for (name, _, _), value in zip(states, results[1:])}
            return np.stack(outputs, axis=1)

        return compare(module, run, tolerance)
