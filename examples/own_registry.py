"""Use modelreg from another project that keeps its own registry.

    python examples/own_registry.py [FOLDER]

Creates FOLDER (default: a temporary folder) with a one-model registry,
makes seeded weights, exports the model to RTNeural JSON and ONNX, validates
everything, then streams frames through the exported RTNeural file with
modelreg's reference runtime, exactly as a C++ host would through RTNeural.
Paths in the registry are relative to the registry file, so this works from
any current folder.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import modelreg

REGISTRY = """\
[models.envelope]
description = "Smooths a 16-band envelope follower, frame by frame (an LSTM: stateful)."
input_shape = [1, 16]
output_shape = [1, 16]
dtype = "float32"
params = 2448
latency_ms = 2.0
exports = ["rtneural", "onnx"]
checkpoint = "weights/envelope.pt"
layers = [
    { type = "lstm", units = 16 },
    { type = "dense", units = 16, activation = "sigmoid" },
]
"""


def main(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text(REGISTRY)
    registry = modelreg.load_registry(path)
    spec = registry["envelope"]
    print(f"{spec.name}: {spec.params} params, stateful={spec.is_stateful}")

    modelreg.init_checkpoint(spec, seed=1)
    exported = modelreg.export_all(registry)
    for artifact in exported.artifacts:
        print(f"  {artifact.status:7} {artifact.path.relative_to(folder)}  {artifact.message}")

    report = modelreg.validate_all(registry, latency_seconds=0.1)
    model = report["envelope"]
    skipped = sum(c.status == "skip" for c in model.checks)  # the RTNeural C++ checks, unless configured
    print(f"  validation: {model.passed}/{len(model.checks) - skipped} checks passed ({skipped} skipped); "
          f"p99 latency {model['latency'].figures['p99_ms']:.3f} ms; "
          f"RTNeural parity {model['rtneural.parity'].figures['max_abs_error']:.2g}")
    for failure in model.failures:
        print(f"  FAIL {failure.name}: {failure.message}")

    rt = modelreg.load_rtneural(folder / "models" / "envelope.json")
    rt.reset()
    for t in range(3):
        frame = [0.1 * t] * 16
        print(f"  frame {t}: first output {rt.step(frame)[0]:.6f}")
    return 0 if report.ok and exported.ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp) / "project"))
