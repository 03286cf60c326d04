"""RTNeural JSON: the format RTNeural's C++ ``json_parser::parseJson`` reads.

Parity runs the file in modelreg's numpy reference runtime
(:mod:`modelreg.rtneural.runtime`), which is itself proven against RTNeural's
own golden data.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Problem
from ..plugins import Exporter, Parity

if TYPE_CHECKING:
    from ..builder import RealtimeModel
    from ..report import CheckResult
    from .runtime import RTNeuralModel
    from ..spec import ModelSpec

__all__ = ["RTNeuralExporter"]

# The file's identity: a rewrite (new inode by rename, or new size/mtime/ctime in place) misses.
_Identity = tuple[str, int, int, int, int]


def _identity(path: Path) -> _Identity | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (os.fspath(path.absolute()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


class _Handoff:
    """The model :meth:`RTNeuralExporter.check_artifact` loaded, handed to the ``verify`` that follows.

    Export and validation both check a file, then run it for parity: without this
    every file was read, parsed and checked twice (most of an export's time). One
    slot, taken at most once, and only while the file is unchanged (same
    inode, size, mtime and ctime), so a file edited in between is read again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slot: tuple[_Identity, RTNeuralModel] | None = None

    def put(self, identity: _Identity | None, model: RTNeuralModel | None) -> None:
        """Hand ``model`` on (``None``: empty the slot)."""
        with self._lock:
            self._slot = None if identity is None or model is None else (identity, model)

    def take(self, path: Path) -> tuple[_Identity, RTNeuralModel] | None:
        """The model and the file identity it was read at, if ``path`` is still that file."""
        with self._lock:
            slot, self._slot = self._slot, None
        if slot is None or slot[0] != _identity(path):
            return None
        return slot


_handoff = _Handoff()


def block_paths(spec: ModelSpec) -> list[str]:
    """Key paths of the entry's layers that hold paths of layers (residual blocks): ``layers[3]``..."""
    return [f"layers[{index}]" for index, layer in enumerate(spec.layers) if layer.kind.children(layer)]


def refuse_unholdable(spec: ModelSpec, exporter: str) -> None:
    """Raise ExportError when the entry holds a layer no RTNeural export can hold (a kind with an
    ``rtneural_refusal``, such as NAM's WaveNet), naming the layer and what can hold it."""
    from ..layers.base import leaves

    found = [leaf for leaf in leaves(spec.layers, spec.in_features) if leaf.layer.kind.rtneural_refusal]
    if not found:
        return
    from ..errors import ExportError, Problem
    from ..paths import display_path

    first = found[0]
    exports = list(spec.exports)
    where = f"exports[{exports.index(exporter)}]" if exporter in exports else "exports"
    raise ExportError(Problem(
        f"the {exporter} exporter cannot write {first.path} ({first.layer.type}): {first.layer.kind.rtneural_refusal}",
        file=display_path(spec.registry_file), model=spec.name, key=f"models.{spec.name}.{where}",
        expected='"nam" or "onnx" instead of ' + f'"{exporter}"', found=f'"{exporter}"'))


def refuse_blocks(spec: ModelSpec) -> None:
    """Raise ExportError when the entry holds a residual block: RTNeural's JSON reads straight stacks."""
    blocks = block_paths(spec)
    if not blocks:
        return
    from ..errors import ExportError, Problem
    from ..paths import display_path

    exports = list(spec.exports)
    where = f"exports[{exports.index('rtneural')}]" if "rtneural" in exports else "exports"
    listed = ", ".join(blocks[:3]) + (", ..." if len(blocks) > 3 else "")
    raise ExportError(Problem(
        f"RTNeural's JSON format cannot express a residual block ({listed}): RTNeural's parseJson reads straight "
        "stacks of layers. Export this entry with rtneural-cpp (weights embedded, or read from the model's "
        "state-dict JSON) or rtneural-torch (the state-dict JSON and a header loading it with RTNeural's "
        "torch_helpers), which write the C++ model of RTNeural's compile-time layers, residual adds included",
        file=display_path(spec.registry_file), model=spec.name, key=f"models.{spec.name}.{where}",
        expected='"rtneural-cpp" or "rtneural-torch" instead of "rtneural"', found='"rtneural"'))


def refuse_unwritable(spec: ModelSpec) -> None:
    """Raise ExportError when a layer's kind says RTNeural's JSON format cannot hold it (a strided
    conv1d), naming every such layer and ``rtneural-cpp``."""
    from ..layers.base import leaves

    found = [(leaf.path, reason) for leaf in leaves(spec.layers, spec.in_features)
             if (reason := leaf.layer.kind.rtneural_json_refusal(leaf.layer)) is not None]
    if not found:
        return
    from ..errors import ExportError, Problem
    from ..paths import display_path

    exports = list(spec.exports)
    where = f"exports[{exports.index('rtneural')}]" if "rtneural" in exports else "exports"
    listed = ", ".join(path for path, _ in found[:3]) + (", ..." if len(found) > 3 else "")
    raise ExportError(Problem(
        f"RTNeural's JSON format cannot express {listed}: {found[0][1]}. Export this entry with rtneural-cpp "
        "(and cpp_weights = \"embedded\"), which writes the C++ model of RTNeural's compile-time layers",
        file=display_path(spec.registry_file), model=spec.name, key=f"models.{spec.name}.{where}",
        expected='"rtneural-cpp" instead of "rtneural"', found='"rtneural"'))


class RTNeuralExporter(Exporter):
    """Writes ``models/NAME.json``: compact, lossless (shortest float32 decimals), deterministic."""

    name = "rtneural"
    runtime = "RTNeural reference runtime (numpy)"
    version = "1"
    thread_safe = True
    schema = "rtneural"
    suffix = ".json"

    def session(self) -> contextlib.AbstractContextManager[None]:
        """One look at the RTNeural tree and one self-test per cached program for the whole run."""
        from .cpp import run_scope

        return run_scope()

    def artifact_path(self, spec: ModelSpec) -> Path:
        return spec.registry_dir / "models" / f"{spec.name}.json"

    def export(self, spec: ModelSpec, module: RealtimeModel, path: Path) -> None:
        from .format import dumps_rtneural, to_rtneural

        refuse_unholdable(spec, self.name)
        refuse_blocks(spec)
        refuse_unwritable(spec)
        state = {key: tensor.detach().cpu().numpy() for key, tensor in module.state_dict().items()}
        layers = list(spec.layers)  # each kind writes its own layout
        # check=False: the export pipeline checks the written file (check_artifact) before installing it.
        data = dumps_rtneural(to_rtneural(layers, spec.in_features, state), check=False)
        # Written in place: ``path`` is the pipeline's temporary file, which it syncs and renames
        # over the artifact once checked (a temporary file of its own here cost a rename and a sync).
        path.write_bytes(data)

    def check_artifact(self, spec: ModelSpec, path: Path) -> list[Problem]:
        from ..errors import ArtifactError
        from ..paths import display_path
        from .runtime import load_rtneural

        shown = display_path(path)
        identity = _identity(path)  # before reading: a change while it is read makes verify() read it again
        _handoff.put(None, None)
        try:
            # Reads, checks (schema and format rules) and builds in one pass.
            model = load_rtneural(path, file=shown)
        except ArtifactError as exc:
            return list(exc.problems)
        _handoff.put(identity, model)
        if (model.in_size, model.out_size) != (spec.in_features, spec.out_features):
            return [Problem("file does not fit the registry entry", file=shown, model=spec.name,
                            key="in_shape", expected=f"{spec.in_features} in, {spec.out_features} out",
                            found=f"{model.in_size} in, {model.out_size} out")]
        return []

    def check_file(self, path: Path) -> list[Problem]:
        from ..errors import ArtifactError
        from ..paths import display_path
        from .runtime import load_rtneural

        try:
            load_rtneural(path, file=display_path(path))
        except ArtifactError as exc:
            return list(exc.problems)
        return []

    def describe_file(self, path: Path) -> str:
        """The file's layers and sizes, as its reader sees them (``modelreg check``)."""
        from ..paths import display_path
        from .runtime import load_rtneural

        model = load_rtneural(path, file=display_path(path))
        layers = f"{model.file_layers} layer{'' if model.file_layers == 1 else 's'}"
        kind = "stateful" if model.is_stateful else "stateless"
        return f"RTNeural model, {layers}, {model.in_size} -> {model.out_size}, {kind}"

    def verify(self, spec: ModelSpec, module: RealtimeModel, path: Path, tolerance: float) -> Parity:
        import numpy as np

        from ..parity import compare_parity
        from ..paths import display_path
        from .runtime import load_rtneural

        # The model check_artifact() just loaded from this very file, else read it now.
        taken = _handoff.take(path)
        identity: _Identity | None
        if taken is not None:
            identity, model = taken
        else:
            identity = _identity(path)
            model = load_rtneural(path, file=display_path(path))

        def run(frames: Any) -> Any:
            model.reset()
            return np.stack([model.step(frames[:, t, :]) for t in range(frames.shape[1])], axis=1)

        parity = compare_parity(module, run, tolerance)
        # Handed on once more: the C++ checks that follow compare RTNeural's loader with the
        # layers the file declares, which the model knows without reading the file again.
        _handoff.put(identity, model)
        return parity

    def extra_checks(self, spec: ModelSpec, module: RealtimeModel, tolerance: float) -> list[tuple[str, Callable[[Path], CheckResult]]]:
        """``cpp_parity`` and ``cpp_latency``: the file in RTNeural's own C++ engine (skipped when not configured)."""
        from .cpp import cpp_checks

        def declared(path: Path) -> list[tuple[str, int, int]] | None:
            taken = _handoff.take(path)
            return taken[1].loader_layers if taken is not None else None

        return cpp_checks(spec, module, tolerance, declared)


