"""One amp model, every engine: export examples/amp/registry.toml and compare the engines side by side.

    python examples/amp/run.py [FOLDER] [--latency-seconds S] [--json FILE]

Copies the registry into FOLDER (default: a temporary folder), makes seeded weights (as
``modelreg init --seed 1`` does), exports NAM's ``.nam`` file, RTNeural JSON, the rtneural-cpp
header and ONNX, then runs ``modelreg validate --report``: its Engines table shows, per engine
(torch, RTNeural's dynamic loader ``parseJson``, the compiled RTNeural header, onnxruntime,
NAM's engine ``nam::get_dsp``), the parity against torch (max abs error) and the real-time
factor at 48 kHz in 64-sample blocks (at the median block, and at the p99 that the C++
engines are judged by); the HTML report (models/validation_report.html) has the same table.

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
from modelreg.cli import main as cli_main
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

    # What `modelreg validate --report` prints and writes: the Engines table is the comparison.
    print(f"\n$ modelreg validate --latency-seconds {latency_seconds:g} --report", flush=True)
    code = cli_main(["validate", "--registry", str(path), "--latency-seconds", f"{latency_seconds:g}", "--report"])
    sys.stdout.flush()

    results = json.loads((folder / "models" / "validation_results.json").read_text(encoding="utf-8"))
    comparison = {}
    for name, model in results["models"].items():
        spec = registry[name]
        rows = engine_comparison(model["checks"], audio_rate=spec.is_audio_rate)
        comparison[name] = {"sample_rate": spec.sample_rate, "block_size": spec.block_size, "block_ms": spec.block_ms,
                            "engines": [attrs.asdict(row) for row in rows]}
        ran = [row for row in rows if row.rtf_p50 is not None]
        if len(ran) > 1:
            fastest = max(ran, key=lambda row: row.rtf_p50 or 0.0)
            print(f"\n{name}: {len(rows)} engines, {len(ran)} timed; fastest at the median block: {fastest.engine}, "
                  f"{rtf_text(fastest.rtf_p50 or 0.0)} real time ({ms_text(fastest.p50_ms or 0.0)} per "
                  f"{spec.block_size}-sample block)")
        for row in rows:
            if row.latency_status == "skip":
                print(f"  {row.engine}: skipped: {row.reason}")
        for check in model["checks"]:
            if check["status"] in ("fail", "error"):
                print(f"  FAIL {check['name']}: {check['message']}")
    if json_path is not None:
        json_path.write_text(json.dumps(comparison, indent=2) + "\n")
    return 0 if code == 0 and exported.ok else 1


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
