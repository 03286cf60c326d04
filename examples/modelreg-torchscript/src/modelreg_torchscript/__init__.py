"""An example modelreg exporter plugin: TorchScript (``torch.jit``).

The artifact takes one frame and the recurrent state explicitly, like the
ONNX export, and is verified by running it with ``torch.jit.load``: its own
runtime, independent of how modelreg builds the module. It uses modelreg's
public API only (docs/plugins.md, "Writing an exporter").
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelreg import Exporter, Parity, Problem, compare_parity

if TYPE_CHECKING:  # for type hints only: modelreg.RealtimeModel imports torch
    from modelreg import ModelSpec, RealtimeModel

__all__ = ["TorchScriptExporter"]


@contextlib.contextmanager
def _quiet_jit() -> Iterator[None]:
    # torch.jit announces its deprecation on every call; users need not see it.
    import torch

    with warnings.catch_warnings():
        # Tracing an LSTM warns that its shape checks become constants: true, and harmless
        # here because the traced graph is verified for parity at every batch size used.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*torch\.jit")
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r"`torch\.jit")
        yield


class TorchScriptExporter(Exporter):
    name = "torchscript"
    version = "1"

    def artifact_path(self, spec: ModelSpec) -> Path:
        return spec.registry_dir / "models" / "torchscript" / f"{spec.name}.pt"

    def export(self, spec: ModelSpec, module: RealtimeModel, path: Path) -> None:
        import torch

        example = (torch.zeros(1, spec.in_features),) + tuple(
            torch.zeros(1, 1, units) for _, units in module.state_layout()
        )
        with _quiet_jit():
            traced = torch.jit.trace(module.streaming(), example, check_trace=False)
            # `path` is the temporary file modelreg checks, verifies and then installs:
            # write it as it is (no atomic dance needed, no suffix added).
            torch.jit.save(traced, str(path))

    def check_artifact(self, spec: ModelSpec, path: Path) -> list[Problem]:
        import torch

        try:
            with _quiet_jit():
                torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            return [Problem(f"not a loadable TorchScript file: {type(exc).__name__}", file=str(path), model=spec.name)]
        return []

    def verify(self, spec: ModelSpec, module: RealtimeModel, path: Path, tolerance: float) -> Parity:
        import numpy as np
        import torch

        with _quiet_jit():
            scripted = torch.jit.load(str(path), map_location="cpu")
        states = module.state_layout()

        def run(frames: Any) -> Any:
            batch = frames.shape[0]
            state = [torch.zeros(1, batch, units) for _, units in states]
            outputs = []
            with torch.inference_mode():
                for t in range(frames.shape[1]):
                    y, *state = scripted(torch.from_numpy(np.ascontiguousarray(frames[:, t, :])), *state)
                    outputs.append(y.numpy())
            return np.stack(outputs, axis=1)

        return compare_parity(module, run, tolerance)
