"""One amp model, every engine: export examples/amp/registry.toml and compare the engines side by side.

    python examples/amp/run.py [FOLDER] [--latency-seconds S] [--json FILE]

Copies the registry into FOLDER (default: a temporary folder), makes seeded weights (as
``modelreg init --seed 1`` does), exports NAM's ``.nam`` file, RTNeural JSON, the rtneural-cpp
header and ONNX, validates them, and prints one table: per engine (torch, RTNeural's dynamic
loader ``parseJson``, the compiled RTNeural header, onnxruntime, NAM's engine ``nam::get_dsp``)
the parity against torch (max abs error) and the real-time factor at 48 kHz in 64-sample
blocks (the median block, and the p99 that the C++ engines are judged by).

The C++ engines run when MODELREG_RTNEURAL (an RTNeural checkout) and MODELREG_NAM_CORE (a
NeuralAmpModelerCore checkout) are set; without them their checks are skipped and the table
says why. ``--json FILE`` writes the comparison (what ``benchmarks/run.py --only amp`` reads).
Exit status 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import attrs

import modelreg
from modelreg.audio import engine_comparison
from modelreg.latency import ms_text, rtf_text
from modelreg.spec import audio_rate_text

HERE = Path(__file__).resolve().parent


def main(folder: Path, latency_seconds: float, json_path: Path | None) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    shutil.copy(HERE / "registry.toml", path)
    registry = modelreg.load_registry(path)
    for spec in registry.values():
        modelreg.init_checkpoint(spec, seed=1)
        print(f"{spec.name}: {spec.params} params, stateful={spec.is_stateful}, "
              f"{audio_rate_text(spec.sample_rate, spec.block_size)}")

    exported = modelreg.export_all(registry)
    for artifact in exported.artifacts:
        shown = artifact.path.relative_to(folder) if artifact.path else "-"
        print(f"  {artifact.status:7} {shown}  {artifact.message}")

    report = modelreg.validate_all(registry, latency_seconds=latency_seconds)
    comparison = {}
    for model in report.models.values():
        spec = registry[model.name]
        skipped = sum(c.status == "skip" for c in model.checks)
        print(f"  {model.name} validation: {model.passed}/{len(model.checks) - skipped} checks passed "
              f"({skipped} skipped)")
        rows = engine_comparison(model.checks, audio_rate=spec.is_audio_rate)
        comparison[model.name] = [attrs.asdict(row) for row in rows]
        print(f"\n  {model.name}: one model, {len(rows)} engines, {audio_rate_text(spec.sample_rate, spec.block_size)} "
              f"(a block lasts {ms_text(spec.block_ms or 0.0)})")
        print(f"  {'engine':32} {'parity (max abs error)':24} {'real time, p50 block':22} {'real time, p99 block':22}")
        for row in rows:
            parity = ("reference" if row.parity_status == "reference" else
                      f"{row.max_abs_error:.2g} ({row.parity_status})" if row.max_abs_error is not None
                      else str(row.parity_status or "-"))
            if row.rtf is not None and row.rtf_p50 is not None:
                p50 = f"{rtf_text(row.rtf_p50)} ({ms_text(row.p50_ms or 0.0)})"
                p99 = f"{rtf_text(row.rtf)} ({ms_text(row.stat_ms or 0.0)})" + ("" if row.judged else " *")
            else:
                p50 = p99 = row.latency_status
            print(f"  {row.engine:32} {parity:24} {p50:22} {p99:22}")
            if row.reason:
                print(f"  {'':32} {row.latency_status}: {row.reason}")
        print("  * timed from Python, once per sample: for comparison, not judged")
        for failure in model.failures:
            print(f"  FAIL {failure.name}: {failure.message}")
    if json_path is not None:
        json_path.write_text(json.dumps(comparison, indent=2) + "\n")
    return 0 if report.ok and exported.ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, help="where to work (default: a temporary folder)")
    parser.add_argument("--latency-seconds", type=float, default=0.5, help="time each engine this long (default 0.5)")
    parser.add_argument("--json", type=Path, default=None, help="write the comparison here")
    args = parser.parse_args()
    if args.folder is not None:
        sys.exit(main(args.folder, args.latency_seconds, args.json))
    with tempfile.TemporaryDirectory() as tmp:
        sys.exit(main(Path(tmp) / "project", args.latency_seconds, args.json))
