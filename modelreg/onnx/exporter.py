"""ONNX for onnxruntime and friends, streamable: recurrent state is an explicit input and output.

Graph interface (``batch`` is a dynamic axis everywhere):

- input ``x`` ``[batch, in]`` (one frame), output ``y`` ``[batch, out]``;
- per LSTM layer i: inputs ``h{i}``, ``c{i}`` and outputs ``h{i}_out``,
  ``c{i}_out``, each ``[1, batch, units]``; per GRU layer i: ``h{i}`` / ``h{i}_out``;
  per conv1d layer i with kernel_size > 1: ``buf{i}`` / ``buf{i}_out``
  ``[1, batch, (kernel_size - 1) * dilation * in]``, its past input frames, oldest first;
  a strided conv1d adds ``held{i}`` ``[1, batch, units]`` and ``phase{i}`` ``[1, batch, 1]``
  (every state comes from the layer kinds' ``state()``).

A host feeds zeros as the first state and each call's ``*_out`` as the next
call's state. When the entry says ``reset = "rest"``, the file's
``metadata_props`` carry the resting state to feed instead (after a reset too):
``modelreg.reset`` = ``"rest"`` and ``modelreg.rest_state`` = JSON
``{"h1": [[[v, ...]]], "c1": [[[...]]]}``, each ``[1, 1, size]`` (tile it along
axis 1 for a batch), in input order. Entries without it get no metadata: their
files are byte for byte what they were. Exported with PyTorch's TorchScript-based exporter
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
from ..errors import ExportError, MissingDependencyError, Problem
from ..plugins import Exporter, Parity
from ..rest import METADATA_RESET, METADATA_REST_STATE

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
        if spec.reset == "rest" and module.is_stateful:
            data = _with_resting_state(onnx, spec, module, data)
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
        atomic_write_bytes(path, data)

    def check_artifact(self, spec: ModelSpec, path: Path) -> list[Problem]:
        problems = [attrs.evolve(problem, model=spec.name) for problem in self.check_file(path)]
        if problems:
            return problems
        from ..paths import display_path

        onnx = _require("onnx")
        carried = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
        wanted = "rest" if spec.reset == "rest" and spec.is_stateful else None
        if carried.get(METADATA_RESET) != wanted:
            found_ = f"{METADATA_RESET} = {carried[METADATA_RESET]!r}" if METADATA_RESET in carried else "no resting state"
            expected = (f'{METADATA_RESET} = "rest" and {METADATA_REST_STATE}, as the entry says reset = "rest"'
                        if wanted else "no resting state, as the entry does not say reset = \"rest\"")
            return [Problem(f"the file's reset does not match the entry; run `modelreg export --force {spec.name}`",
                            file=display_path(path), model=spec.name, key=f"models.{spec.name}.reset",
                            expected=expected, found=found_)]
        return []

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
        return _metadata_problems(model, shown)

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

    def extra_checks(self, spec: ModelSpec, module: RealtimeModel,
                     tolerance: float) -> list[tuple[str, Callable[[Path], CheckResult]]]:
        """``rest`` (stateful models): onnxruntime, fed the zero state and the resting state (the
        file's metadata; with ``reset = "zeros"``, the one modelreg computes), makes the clicks
        the ``state.rest`` check measures in torch. ``latency`` (audio-rate models): whole blocks
        timed in onnxruntime, for comparison."""
        checks: list[tuple[str, Callable[[Path], CheckResult]]] = []
        if spec.is_stateful:

            def rest(path: Path) -> CheckResult:
                return _rest_check(spec, module, path, tolerance)

            checks.append(("rest", rest))
        if spec.is_audio_rate:
            checks.append(("latency", lambda path: block_latency(spec, module, path)))
        return checks


def _with_resting_state(onnx: Any, spec: ModelSpec, module: RealtimeModel, data: bytes) -> bytes:
    """``data`` (a serialised model) with the resting state in its metadata_props; refused (ExportError)
    when the state never settles."""
    from ..paths import display_path

    resting = module.resting_state()
    if resting.behaviour != "converged":
        raise ExportError.at(f'reset = "rest" needs a resting state, but {resting.unsettled}',
                             file=display_path(spec.registry_file), model=spec.name, key=f"models.{spec.name}.reset",
                             expected='a state that settles on the rest input, or reset = "zeros"')
    model = onnx.load_from_string(data)
    for key, value in ((METADATA_RESET, "rest"), (METADATA_REST_STATE, resting.metadata())):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return bytes(model.SerializeToString())


def read_resting_state(metadata: dict[str, str]) -> dict[str, Any] | None:
    """The resting state a file's ``metadata_props`` carry (name -> float32 ``[1, 1, size]`` array), or None."""
    import json

    import numpy as np

    text = metadata.get(METADATA_REST_STATE)
    if text is None:
        return None
    return {name: np.asarray(values, np.float32) for name, values in json.loads(text).items()}


def _metadata_problems(model: Any, shown: str) -> list[Problem]:
    """modelreg's metadata_props, when present: a known reset, and a resting state that fits the state inputs."""
    import json
    import math

    props = {prop.key: prop.value for prop in model.metadata_props}
    reset = props.get(METADATA_RESET)
    text = props.get(METADATA_REST_STATE)
    if reset is None and text is None:
        return []
    if reset not in ("rest", "zeros"):
        return [Problem("unknown reset in the metadata", file=shown, key=METADATA_RESET,
                        expected="'rest' or 'zeros'", found=repr(reset))]
    if reset == "zeros":
        return [] if text is None else [Problem("a resting state in the metadata of a file that resets to zeros",
                                                file=shown, key=METADATA_REST_STATE, expected="no resting state",
                                                found="one")]
    states = {i.name: [d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input[1:]}
    expected = ", ".join(f"{name} [1, 1, {dims[2] if len(dims) == 3 else '?'}]" for name, dims in states.items())
    try:
        carried = json.loads(text) if text is not None else None
    except ValueError as exc:
        return [Problem(f"the resting state is not JSON: {exc}", file=shown, key=METADATA_REST_STATE,
                        expected=f"{{name: [[[values]]]}} for {expected}")]
    if not isinstance(carried, dict) or list(carried) != list(states):
        return [Problem("the resting state does not name the graph's state inputs", file=shown, key=METADATA_REST_STATE,
                        expected=expected, found=str(list(carried) if isinstance(carried, dict) else carried)[:200])]
    for name, values in carried.items():
        size = states[name][2] if len(states[name]) == 3 else None
        row = values[0][0] if (isinstance(values, list) and len(values) == 1 and isinstance(values[0], list)
                               and len(values[0]) == 1 and isinstance(values[0][0], list)) else None
        if row is None or len(row) != size or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in row):
            return [Problem("a resting state tensor has the wrong shape or values", file=shown,
                            key=f"{METADATA_REST_STATE}.{name}", expected=f"[1, 1, {size}] finite numbers")]
    return []


def _rest_check(spec: ModelSpec, module: RealtimeModel, path: Path, tolerance: float) -> CheckResult:
    """``onnx.rest``: onnxruntime's first output after each kind of reset, against the resting output."""
    import numpy as np

    from ..rest import ResetMode, rest_check

    ort = _require("onnxruntime")
    resting = module.resting_state()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    carried = read_resting_state(dict(session.get_modelmeta().custom_metadata_map))
    states = module.state_layout()
    output_names = ["y"] + [f"{name}_out" for name, _ in states]
    source = "metadata" if carried is not None else "computed" if resting.behaviour == "converged" else None

    def run(frames: Any, mode: ResetMode) -> Any:
        if mode == "zeros":
            state = {name: np.zeros((1, 1, units), np.float32) for name, units in states}
        elif carried is not None:
            state = dict(carried)
        elif spec.reset != "rest" and resting.behaviour == "converged":
            # The file resets to zeros; the resting state a host could feed it is modelreg's.
            state = {name: values.reshape(1, 1, -1) for name, values in resting.state.items()}
        else:
            return None
        outputs = []
        for t in range(frames.shape[1]):
            results = session.run(output_names, {"x": np.ascontiguousarray(frames[:, t, :]), **state})
            outputs.append(results[0])
            state = {name: value for (name, _), value in zip(states, results[1:])}
        return np.stack(outputs, axis=1)

    result = rest_check("onnx.rest", run, resting, reset=spec.reset, tolerance=tolerance, runtime="onnxruntime")
    return attrs.evolve(result, figures={**result.figures, "rest_state": source})


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

    from ..audio import MIN_BLOCKS, block_input, block_result
    from ..latency import latency_window, measure_samples

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
