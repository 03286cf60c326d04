"""RTNeural JSON: the format RTNeural's C++ ``json_parser::parseJson`` reads.

Parity runs the file in modelreg's numpy reference runtime
(:mod:`modelreg.rtneural_runtime`), which is itself proven against RTNeural's
own golden data.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any


from ..atomic import atomic_write_bytes
from ..errors import Problem
from ..plugins import Exporter, Parity

if TYPE_CHECKING:
    from ..builder import RealtimeModel
    from ..report import CheckResult
    from ..spec import ModelSpec

__all__ = ["RTNeuralExporter"]


class RTNeuralExporter(Exporter):
    """Writes ``models/NAME.json``: compact, lossless (shortest float32 decimals), deterministic."""

    name = "rtneural"
    version = "1"
    schema = "rtneural"
    suffix = ".json"

    def artifact_path(self, spec: ModelSpec) -> Path:
        return spec.registry_dir / "models" / f"{spec.name}.json"

    def export(self, spec: ModelSpec, module: RealtimeModel, path: Path) -> None:
        from ..rtneural_format import dumps_rtneural, to_rtneural

        state = {key: tensor.detach().cpu().numpy() for key, tensor in module.state_dict().items()}
        layers = list(spec.layers)  # each kind writes its own layout
        # check=False: the export pipeline checks the written file (check_artifact) before installing it.
        atomic_write_bytes(path, dumps_rtneural(to_rtneural(layers, spec.in_features, state), check=False))

    def check_artifact(self, spec: ModelSpec, path: Path) -> list[Problem]:
        from ..errors import ArtifactError
        from ..registry import display_path
        from ..rtneural_runtime import load_rtneural

        shown = display_path(path)
        try:
            # Reads, checks (schema and format rules) and builds in one pass.
            model = load_rtneural(path, file=shown)
        except ArtifactError as exc:
            return list(exc.problems)
        if (model.in_size, model.out_size) != (spec.in_features, spec.out_features):
            return [Problem("file does not fit the registry entry", file=shown, model=spec.name,
                            key="in_shape", expected=f"{spec.in_features} in, {spec.out_features} out",
                            found=f"{model.in_size} in, {model.out_size} out")]
        return []

    def check_file(self, path: Path) -> list[Problem]:
        from ..errors import ArtifactError
        from ..registry import display_path
        from ..rtneural_runtime import load_rtneural

        try:
            load_rtneural(path, file=display_path(path))
        except ArtifactError as exc:
            return list(exc.problems)
        return []

    def verify(self, spec: ModelSpec, module: RealtimeModel, path: Path, tolerance: float) -> Parity:
        import numpy as np

        from ..parity import compare_parity
        from ..registry import display_path
        from ..rtneural_runtime import load_rtneural

        model = load_rtneural(path, file=display_path(path))

        def run(frames: Any) -> Any:
            model.reset()
            return np.stack([model.step(frames[:, t, :]) for t in range(frames.shape[1])], axis=1)

        return compare_parity(module, run, tolerance)

    def extra_checks(self, spec: ModelSpec, module: RealtimeModel, tolerance: float) -> list[tuple[str, Callable[[Path], CheckResult]]]:
        """``cpp_parity`` and ``cpp_latency``: the file in RTNeural's own C++ engine (skipped when not configured)."""
        from ..rtneural_cpp import cpp_checks

        return cpp_checks(spec, module, tolerance)


