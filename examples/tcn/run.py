"""Export and validate the TCN example registry (examples/tcn/registry.toml).

    python examples/tcn/run.py [FOLDER]

Copies the registry into FOLDER (default: a temporary folder), makes seeded
weights, exports RTNeural JSON, ONNX and the rtneural-cpp header (the residual
TCN ``restcn``: ONNX, the header, whose C++ composes its blocks, with its weights
embedded, and rtneural-torch's state-dict JSON with the header that loads it
through RTNeural's torch_helpers; ``restcn_json``: the same model's rtneural-cpp
header reading that JSON), validates
every model, then streams an impulse through the exported RTNeural file with
modelreg's reference runtime: the response lasts as long as the receptive
field plus the GRU's memory, exactly as RTNeural runs it sample by sample.
RTNeural C++ checks run when MODELREG_RTNEURAL is set (else they are skipped).

The entry is an audio-rate model (48 kHz, 64-sample blocks): each latency check
times whole blocks, and this prints its real-time factor per runtime.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import modelreg
from modelreg.latency import ms_text, rtf_text
from modelreg.spec import audio_rate_text

HERE = Path(__file__).resolve().parent


def main(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    shutil.copy(HERE / "registry.toml", path)
    registry = modelreg.load_registry(path)
    for spec in registry.values():
        modelreg.init_checkpoint(spec, seed=1)
        print(f"{spec.name}: {spec.params} params, stateful={spec.is_stateful}")

    exported = modelreg.export_all(registry)
    for artifact in exported.artifacts:
        shown = artifact.path.relative_to(folder) if artifact.path else "-"
        print(f"  {artifact.status:7} {shown}  {artifact.message}")

    report = modelreg.validate_all(registry, latency_seconds=0.1)
    for model in report.models.values():
        skipped = sum(c.status == "skip" for c in model.checks)
        print(f"  {model.name} validation: {model.passed}/{len(model.checks) - skipped} checks passed "
              f"({skipped} skipped)")
        for check in model.checks:
            if "parity" in check.name and check.status == "pass":
                print(f"  {check.name}: max abs error {check.figures['max_abs_error']:.2g}")
            if check.figures.get("rtf") is not None:  # a block timing: how many times real time
                print(f"  {check.name}: {rtf_text(check.figures['rtf'])} real time at "
                      f"{audio_rate_text(check.figures['sample_rate'], check.figures['block_size'])} "
                      f"({check.figures['stat']} {ms_text(check.figures[check.figures['stat'] + '_ms'])} per block"
                      + ("" if check.figures["judged"] else ", for comparison, not judged") + ")")
        for failure in model.failures:
            print(f"  FAIL {failure.name}: {failure.message}")

    rt = modelreg.load_rtneural(folder / "models" / "tcn.json")
    rt.reset()
    response = [float(rt.step([1.0 if t == 0 else 0.0])[0]) for t in range(40)]
    print("  impulse response (first 8): " + ", ".join(f"{v:+.4f}" for v in response[:8]))
    return 0 if report.ok and exported.ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(main(Path(sys.argv[1])))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp) / "project"))
