"""modelreg benchmarks: start-up, RTNeural export speed/size, proof at the speed of parsing (issue 13), the whole job, scale, latency per runtime, the rtneural-cpp headers, diff, one amp model in every engine.

    .venv/bin/python benchmarks/run.py            # everything (~8 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick    # smaller scale run, for a smoke test

Prints a table (figure, target, met?) and writes benchmarks/results.json
(--quick: benchmarks/results.quick.json, so a smoke test never replaces the
figures docs/benchmarks.md quotes).
Speed targets are checked here, not in the test-suite: this machine is noisy.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MODELREG = [PYTHON, "-m", "modelreg"]

rows: list[tuple[str, str, str, str]] = []  # (section, figure, target, verdict)
results: dict[str, Any] = {}


def record(section: str, figure: str, target: str = "", met: bool | None = None) -> None:
    verdict = "" if met is None else ("met" if met else "NOT MET")
    rows.append((section, figure, target, verdict))
    print(f"  {figure}" + (f"   [target {target}: {verdict}]" if target else ""), flush=True)


# Started by a small Python process, not by this one: a child started from a large process
# inherits that process's peak RSS in its own ru_maxrss (Python spawns with vfork, and exec
# records the shared memory's high-water mark), so the figure was this benchmark's size.
_TIMER = """\
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss, os.waitstatus_to_exitcode(status))
"""


def run_timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MB: the largest of the command and its child processes) and exit code."""
    timer = subprocess.run([sys.executable, "-c", _TIMER, *command], cwd=cwd, env=env, capture_output=True, text=True)
    if timer.returncode != 0 or not timer.stdout.strip():
        raise SystemExit(f"{' '.join(command)}: the timer failed: {timer.stderr[-2000:]}")
    wall_text, rss_kb, code_text = timer.stdout.split()
    code = int(code_text)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed ({code}): {timer.stderr[-2000:]}")
    return float(wall_text), int(rss_kb) / 1024, code


def copy_bundled(folder: Path) -> Path:
    """The bundled registry and its checkpoints, copied into ``folder/bundled`` (no artifacts)."""
    copy = folder / "bundled"
    (copy / "models").mkdir(parents=True)
    shutil.copy(ROOT / "registry.toml", copy / "registry.toml")
    for checkpoint in (ROOT / "models").glob("*.pt"):
        shutil.copy(checkpoint, copy / "models")
    return copy


# ---------------------------------------------------------------- 1. start-up


def bench_startup(repeats: int) -> None:
    print("\n1. start-up", flush=True)
    load = "import modelreg; r = modelreg.load_registry(); print(list(r))"
    probe = "import modelreg, sys; modelreg.load_registry(); print('torch' in sys.modules)"
    # As an installed package is: pip byte-compiles what it installs, while an editable
    # install under PYTHONDONTWRITEBYTECODE=1 (as on the dev machine) would recompile
    # modelreg's sources on every start and measure the compiler.
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(ROOT / "modelreg")], check=True)
    torch_loaded = subprocess.run([PYTHON, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    times = {"import torch": [], "load_registry": [], "modelreg list": []}
    for _ in range(repeats):  # interleaved, so drifting machine load hits all three alike
        times["import torch"].append(run_timed([PYTHON, "-c", "import torch"], ROOT)[0])
        times["load_registry"].append(run_timed([PYTHON, "-c", load], ROOT)[0])
        times["modelreg list"].append(run_timed(MODELREG + ["list"], ROOT)[0])
    median = {k: statistics.median(v) for k, v in times.items()}
    ratio = median["load_registry"] / median["import torch"]
    results["startup"] = {"median_seconds": median, "ratio": ratio, "repeats": repeats, "torch_imported": torch_loaded}
    record("start-up", f"python -c 'import torch': {median['import torch'] * 1000:.0f} ms (median of {repeats})")
    record("start-up", f"import modelreg + load_registry(): {median['load_registry'] * 1000:.0f} ms = {ratio:.1%} of import torch",
           "<= 10%", ratio <= 0.10)
    record("start-up", f"torch imported by it: {torch_loaded}", "False", torch_loaded == "False")
    record("start-up", f"modelreg list: {median['modelreg list'] * 1000:.0f} ms")


# ---------------------------------------------------------------- 2. RTNeural export


def _naive_rtneural(spec: Any, state: dict[str, Any]) -> dict[str, Any]:
    """What common export scripts do: the same layout, floats via .tolist()."""
    import numpy as np

    layers = []
    for i, layer in enumerate(spec.layers):
        p = f"layers.{i}."
        if layer.type == "dense":
            weights = [state[p + "weight"].T.tolist(), state[p + "bias"].tolist()]
            act = "" if layer.activation == "linear" else layer.activation
        elif layer.type == "lstm":
            weights = [state[p + "weight_ih_l0"].T.tolist(), state[p + "weight_hh_l0"].T.tolist(),
                       (state[p + "bias_ih_l0"] + state[p + "bias_hh_l0"]).tolist()]
            act = "tanh"
        else:
            u = layer.units

            def rz(a: Any) -> Any:
                return np.concatenate([a[u:2 * u], a[:u], a[2 * u:]])

            weights = [rz(state[p + "weight_ih_l0"]).T.tolist(), rz(state[p + "weight_hh_l0"]).T.tolist(),
                       [rz(state[p + "bias_ih_l0"]).tolist(), rz(state[p + "bias_hh_l0"]).tolist()]]
            act = "tanh"
        layers.append({"type": layer.type, "activation": act, "shape": [None, None, layer.units], "weights": weights})
    return {"in_shape": [None, None, spec.in_features], "layers": layers}


def bench_rtneural_export(repeats: int) -> None:
    print("\n2. RTNeural export: modelreg vs naive json.dump(tolist(), indent=4)", flush=True)
    import numpy as np

    import modelreg
    from modelreg.rtneural.format import dumps_rtneural, to_rtneural

    registry = modelreg.load_registry(ROOT / "registry.toml")
    per_model = {}
    total_ours = total_naive = 0.0
    bytes_ours = bytes_naive = 0
    lossless = True
    with tempfile.TemporaryDirectory() as tmp:
        for name, spec in registry.items():
            state = {k: v.numpy() for k, v in spec.load().state_dict().items()}
            layers = [(l.type, l.units, l.activation) for l in spec.layers]
            ours_t, naive_t = [], []
            for _ in range(repeats):
                start = time.perf_counter()
                data = dumps_rtneural(to_rtneural(layers, spec.in_features, state), check=False)
                Path(tmp, "ours.json").write_bytes(data)
                ours_t.append(time.perf_counter() - start)
                start = time.perf_counter()
                with open(Path(tmp, "naive.json"), "w") as handle:
                    json.dump(_naive_rtneural(spec, state), handle, indent=4)
                naive_t.append(time.perf_counter() - start)
            ours, naive = min(ours_t), min(naive_t)
            size_ours, size_naive = len(data), Path(tmp, "naive.json").stat().st_size
            # Lossless: every weight read back from our file is bit-identical to the checkpoint.
            parsed = json.loads(data)
            ours_layers = to_rtneural(layers, spec.in_features, state)["layers"]
            for written, expected in zip(parsed["layers"], ours_layers):
                for w_read, w_exp in zip(written["weights"], expected["weights"]):
                    a = np.asarray(w_read, dtype=np.float32)
                    b = np.asarray(w_exp, dtype=np.float32)
                    lossless &= a.shape == b.shape and a.tobytes() == b.tobytes()
            per_model[name] = {"ours_s": ours, "naive_s": naive, "ours_bytes": size_ours, "naive_bytes": size_naive}
            total_ours += ours
            total_naive += naive
            bytes_ours += size_ours
            bytes_naive += size_naive
            print(f"    {name:18} {ours * 1000:7.1f} ms {size_ours / 1e6:6.2f} MB   naive {naive * 1000:7.1f} ms {size_naive / 1e6:6.2f} MB", flush=True)
    speedup = total_naive / total_ours
    shrink = bytes_naive / bytes_ours
    results["rtneural_export"] = {"per_model": per_model, "speedup": speedup, "size_ratio": shrink, "lossless": lossless,
                                  "repeats": repeats, "timing": "best of repeats, includes writing the file"}
    record("rtneural export", f"5 models: {total_ours * 1000:.0f} ms vs naive {total_naive * 1000:.0f} ms = {speedup:.1f}x faster",
           ">= 10x", speedup >= 10)
    record("rtneural export", f"size: {bytes_ours / 1e6:.1f} MB vs naive {bytes_naive / 1e6:.1f} MB = {shrink:.2f}x fewer bytes",
           ">= 3.5x", shrink >= 3.5)
    record("rtneural export", f"lossless (every float32 bit-identical after reading back): {lossless}", "True", lossless)


# ---------------------------------------------------------------- 2b. proof at the speed of parsing


@contextlib.contextmanager
def _counting_parses(sizes: set[int]) -> Iterator[list[int]]:
    """Every JSON parse (orjson, and json's fallback) of a document the length of an artifact, by length."""
    import orjson

    seen: list[int] = []
    originals = (orjson.loads, json.loads)

    def counted(original: Any) -> Any:
        def loads(data: Any, *args: Any, **kwargs: Any) -> Any:
            if len(data) in sizes:
                seen.append(len(data))
            return original(data, *args, **kwargs)
        return loads

    orjson.loads, json.loads = counted(originals[0]), counted(originals[1])
    try:
        yield seen
    finally:
        orjson.loads, json.loads = originals


def bench_proof(repeats: int) -> None:
    print("\n2b. proof at the speed of parsing (issue 13): RTNeural files read, checked, exported, validated", flush=True)
    import numpy as np
    import orjson

    import modelreg
    from modelreg.rtneural.runtime import load_rtneural

    with tempfile.TemporaryDirectory() as tmp:
        copy = copy_bundled(Path(tmp))
        registry = modelreg.load_registry(copy / "registry.toml")
        report = modelreg.export_all(registry, formats=["rtneural"], force=True)
        assert report.ok, [a.message for a in report.artifacts]
        files = sorted((copy / "models").glob("*.json"))
        total_bytes = sum(f.stat().st_size for f in files)

        # Target 1: load_rtneural (read, schema, format rules, build) vs orjson.loads + np.asarray of
        # every weight entry of the same bytes, interleaved so that both see the same machine load.
        def baseline(path: Path) -> None:
            data = orjson.loads(path.read_bytes())
            for layer in data["layers"]:
                for entry in layer["weights"]:
                    np.asarray(entry, dtype=np.float64)

        base_t: list[float] = []
        load_t: list[float] = []
        for _ in range(repeats):
            start = time.perf_counter()
            for path in files:
                baseline(path)
            base_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            for path in files:
                load_rtneural(path)
            load_t.append(time.perf_counter() - start)
        base, load = min(base_t), min(load_t)
        ratio = load / base
        record("proof", f"load_rtneural of the 5 bundled files ({total_bytes / 1e6:.1f} MB): {load * 1000:.0f} ms vs "
               f"orjson.loads + np.asarray {base * 1000:.0f} ms = {ratio:.2f}x", "<= 2x", ratio <= 2)

        # Target 2: parses per export and per validate, counted at the JSON parsers.
        sizes = {f.stat().st_size for f in files}
        with _counting_parses(sizes) as seen:
            modelreg.export_all(registry, formats=["rtneural"], force=True)
        export_parses = len(seen)
        sizes = {f.stat().st_size for f in files}
        with _counting_parses(sizes) as seen:
            validation = modelreg.validate_all(registry, write=False, latency_seconds=0.01)
        validate_parses = len(seen)
        parity_ran = sum(1 for model in validation.values()
                         if "rtneural.parity" in model and model["rtneural.parity"].status == "pass")
        per_export, per_validate = export_parses / len(files), validate_parses / len(files)
        record("proof", f"parses per RTNeural file: export {per_export:g}, validate {per_validate:g} "
               f"(schema and parity checks passed for {parity_ran}/{len(files)})", "1 and 1",
               per_export == 1 and per_validate == 1 and parity_ran == len(files))

        # Target 3: the checked export against the naive unchecked json.dump(tolist(), indent=4),
        # interleaved; naive from state dicts already in memory, export_all loading the checkpoints itself.
        states = {name: {k: v.numpy() for k, v in spec.load().state_dict().items()} for name, spec in registry.items()}
        ours_t: list[float] = []
        naive_t: list[float] = []
        for _ in range(repeats):
            start = time.perf_counter()
            modelreg.export_all(registry, formats=["rtneural"], force=True)
            ours_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            for name, spec in registry.items():
                with open(Path(tmp, "naive.json"), "w") as handle:
                    json.dump(_naive_rtneural(spec, states[name]), handle, indent=4)
            naive_t.append(time.perf_counter() - start)
        ours, naive = min(ours_t), min(naive_t)
        speedup = naive / ours
        record("proof", f"export_all(formats=['rtneural'], force=True), checked (schema, format, parity): "
               f"{ours * 1000:.0f} ms vs naive unchecked {naive * 1000:.0f} ms = {speedup:.2f}x faster", ">= 4x",
               speedup >= 4)
        # Target 4: validate in process, everything but the latency measurements themselves;
        # with RTNeural C++ in the loop when it is configured, and without it.
        modelreg.export_all(registry, force=True)  # every declared format, fresh
        split = {"as_configured": _validate_split(registry, repeats)}
        if split["as_configured"]["cpp_checks_ran"]:
            from modelreg import exporting
            from modelreg.rtneural import cpp as rtneural_cpp

            # Side by side: the same run with each model's formats proven one after the other
            # (as before validate proved them at once), to show what the overlap gains.
            at_once = exporting.run_artifact_checks

            def in_turn(*args: Any, **kwargs: Any) -> Any:
                return at_once(*args, **{**kwargs, "concurrent": False})  # validate passes concurrent= itself

            exporting.run_artifact_checks = in_turn
            try:
                split["formats_in_turn"] = _validate_split(registry, repeats, target=False)
            finally:
                exporting.run_artifact_checks = at_once
            saved = os.environ.pop(rtneural_cpp.ENV_RTNEURAL)
            try:
                split["without_cpp"] = _validate_split(registry, repeats)
            finally:
                os.environ[rtneural_cpp.ENV_RTNEURAL] = saved
    results["proof"] = {"load_seconds": load, "baseline_seconds": base, "load_ratio": ratio, "bytes": total_bytes,
                        "export_parses_per_file": per_export, "validate_parses_per_file": per_validate,
                        "export_seconds": ours, "naive_seconds": naive, "export_speedup": speedup,
                        "validate_split": split,
                        "repeats": repeats, "timing": "best of repeats, interleaved, in process, torch imported"}


#: Check names as validate reports them, grouped for the split (first match wins).
_SPLIT_GROUPS = (
    ("latency measurement (torch)", lambda name: name == "latency"),
    ("latency measurement (RTNeural C++)", lambda name: name.endswith("dynamic_latency")),
    ("RTNeural C++ parity (dynamic loader)", lambda name: name.endswith("dynamic_parity")),
    ("RTNeural C++ compiled-header proof (rtneural-cpp.*)", lambda name: name.startswith("rtneural-cpp.")),
    ("checkpoint load", lambda name: name == "checkpoint"),
    ("model checks (shape, batch, edge cases, range, determinism)",
     lambda name: name in ("weights_finite", "output_shape", "batch_consistency", "edge_cases", "output_range",
                           "determinism", "params", "build")),
    ("RTNeural read + schema/format check", lambda name: name == "rtneural.schema"),
    ("RTNeural parity (reference runtime)", lambda name: name == "rtneural.parity"),
    ("ONNX checker", lambda name: name == "onnx.schema"),
    ("ONNX parity (onnxruntime)", lambda name: name == "onnx.parity"),
    ("freshness (hashing, registry.lock)", lambda name: name.endswith(".fresh") or name.endswith(".exists")),
    ("other checks", lambda name: True),
)


def _validate_split(registry: Any, repeats: int, *, target: bool = True) -> dict[str, Any]:
    """validate_all in process, each check timed where validate runs it; the best of ``repeats`` runs
    (``target=False``: a comparison, printed without a verdict)."""
    import modelreg
    from modelreg import validation

    real = validation._capture
    best: dict[str, Any] | None = None
    for _ in range(repeats):
        seconds: dict[str, float] = {}

        def timed(name: str, check: Any) -> Any:
            begun = time.perf_counter()
            try:
                return real(name, check)
            finally:
                group = next(label for label, matches in _SPLIT_GROUPS if matches(name))
                seconds[group] = seconds.get(group, 0.0) + time.perf_counter() - begun

        validation._capture = timed
        try:
            start = time.perf_counter()
            report = modelreg.validate_all(registry, write=False)
            total = time.perf_counter() - start
        finally:
            validation._capture = real
        latency = sum(t for label, t in seconds.items() if label.startswith("latency measurement"))
        # A latency verdict depends on the machine's load, not on what this target measures.
        failed = {name: bad for name, model in report.items()
                  if (bad := [c.name for c in model.failures if not c.name.endswith("latency")])}
        run = {"total_s": total, "latency_s": latency, "rest_s": total - latency, "split_s": seconds,
               "failed": failed, "cpp_checks_ran": any(c.name.endswith("dynamic_parity") and c.status == "pass"
                                                       for model in report.values() for c in model.checks)}
        if best is None or run["rest_s"] < best["rest_s"]:
            best = run
    assert best is not None
    rest, cpp = best["rest_s"], best["cpp_checks_ran"]
    cpp_proofs = sum(t for label, t in best["split_s"].items() if label.startswith("RTNeural C++") and "latency" not in label)
    how = "with RTNeural C++ in the loop" if cpp else "RTNeural C++ not configured"
    if not target:
        how += ", each model's formats proven one after the other (for comparison)"
    figure = (f"validate (5 models, in process, {how}): {best['total_s']:.2f} s, of which latency measurement "
              f"{best['latency_s']:.2f} s; everything else {rest:.2f} s"
              + (f" (RTNeural C++ proofs: {cpp_proofs:.2f} s of check time)" if cpp else ""))
    if target:
        record("proof", figure, "<= 1 s", rest <= 1.0 and not best["failed"])
    else:
        record("proof", figure)
    # Each check's own time where it ran: a model's formats are proven concurrently
    # (exporting.run_artifact_checks), so the artifact checks' times overlap.
    checks_time = sum(best["split_s"].values())
    if target:
        print(f"      each check's own time ({checks_time:.2f} s in all; the formats of a model are proven at once, "
              f"so these add up to more than the {best['total_s']:.2f} s wall time):")
    else:
        print(f"      each check's own time ({checks_time:.2f} s in all):")
    for label, t in sorted(best["split_s"].items(), key=lambda item: -item[1]):
        print(f"      {t:6.3f} s  {label}")
    return best


# ---------------------------------------------------------------- 3. the whole job


def _profile_summary(registry_path: Path) -> list[dict[str, Any]]:
    """Where validate's time goes: cumulative time of modelreg's own functions."""
    import modelreg

    profiler = cProfile.Profile()
    profiler.enable()
    modelreg.validate_all(registry_path, write=False)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=io.StringIO())
    total = max(v[3] for v in stats.stats.values())  # type: ignore[attr-defined]
    wanted = {
        ("builder.py", "<module>"): "import torch (first use)",
        ("checks.py", "check_latency"): "latency measurement",
        ("checks.py", "check_batch_consistency"): "batch consistency",
        ("checks.py", "check_edge_cases"): "edge cases",
        ("checks.py", "check_output_range"): "output range",
        ("checks.py", "check_determinism"): "determinism",
        ("spec.py", "load"): "checkpoint load",
        ("rtneural.py", "verify"): "RTNeural parity",
        ("rtneural.py", "check_artifact"): "RTNeural schema/format check",
        ("onnx.py", "verify"): "ONNX parity",
        ("onnx.py", "check_artifact"): "ONNX checker",
        ("exporting.py", "fresh"): "freshness (hashing)",
    }
    seconds: dict[str, float] = {}
    for (filename, _, func), value in stats.stats.items():  # type: ignore[attr-defined]
        key = (os.path.basename(filename), func)
        if key in wanted and "modelreg" in filename:  # two functions may share a name: one line, summed
            seconds[wanted[key]] = seconds.get(wanted[key], 0.0) + value[3]
    picked = [{"what": what, "seconds": round(t, 3), "share": round(t / total, 3)} for what, t in seconds.items()]
    picked.sort(key=lambda item: -item["seconds"])
    return [{"what": "total (in-process, torch already imported)", "seconds": round(total, 3), "share": 1.0}] + picked


def bench_whole_job() -> None:
    print("\n3. the whole job on the bundled registry", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        copy = copy_bundled(Path(tmp))
        export_wall, export_rss, _ = run_timed(MODELREG + ["export", "--force"], copy)
        validate_wall, validate_rss, _ = run_timed(MODELREG + ["validate"], copy)
        profile = _profile_summary(copy / "registry.toml")
    results["whole_job"] = {"export_seconds": export_wall, "export_peak_rss_mb": export_rss,
                            "validate_seconds": validate_wall, "validate_peak_rss_mb": validate_rss, "profile": profile}
    record("whole job", f"modelreg export --force: {export_wall:.1f} s", "< 15 s", export_wall < 15)
    record("whole job", f"modelreg validate: {validate_wall:.1f} s", "< 10 s", validate_wall < 10)
    peak = max(export_rss, validate_rss)
    record("whole job", f"peak RSS: export {export_rss:.0f} MB, validate {validate_rss:.0f} MB", "< 1024 MB", peak < 1024)
    print("    where validate's time goes:")
    for item in profile:
        print(f"      {item['seconds']:7.2f} s  {item['share']:6.1%}  {item['what']}")


# ---------------------------------------------------------------- 4. scale


def _random_layer(rng: random.Random, size: int) -> dict[str, Any]:
    """One registry layer table of a random kind (every kind of modelreg.layers) that fits ``size`` inputs.

    No softmax: RTNeural's softmax is exp(x) / sum, unshifted, so at the +-1e6 parity inputs most
    random stacks would overflow it to NaN, which RTNeural parity rightly fails (docs/exporters.md,
    "The RTNeural reference runtime"); these registries measure speed, and every model must pass."""
    from modelreg.layers import kinds
    from modelreg.spec import ACTIVATIONS

    bounded = tuple(name for name in ACTIVATIONS if name != "softmax")

    kind = rng.choice(kinds())
    if kind.name == "conv1d":  # groups must divide both sides
        groups = rng.choice([g for g in (1, 2, 3, 4) if size % g == 0])
        return {"type": "conv1d", "units": groups * rng.randint(1, 12), "kernel_size": rng.randint(1, 4),
                "dilation": rng.randint(1, 8), "groups": groups, "activation": rng.choice(bounded)}
    if kind.name in ("conv2d", "batchnorm2d"):  # frames of F features x size/F channels
        features = rng.choice([f for f in range(1, min(size, 12) + 1) if size % f == 0])
        if kind.name == "batchnorm2d":
            return {"type": "batchnorm2d", "num_features_in": features, "affine": rng.random() < 0.5}
        padding = rng.choice(["valid", "same"])
        return {"type": "conv2d", "filters": rng.randint(1, 4), "num_features_in": features,
                "kernel_size_time": rng.randint(1, 3),
                "kernel_size_feature": rng.randint(1, features if padding == "valid" else features + 2),
                "dilation": rng.randint(1, 3), "strides": rng.randint(1, 2), "padding": padding,
                "activation": rng.choice(bounded)}
    table = {"type": kind.name, **rng.choice([example for example in kind.examples
                                              if example.get("activation") != "softmax"])}
    if "units" in table:
        table["units"] = rng.randint(2, 64)
    return table


def make_registry(folder: Path, count: int, seed: int) -> Path:
    """A registry of ``count`` small random models (< 50k params, 1-4 layers of every kind), with checkpoints."""
    import tomli_w

    import modelreg
    from modelreg.checkpoint import init_checkpoint
    from modelreg.layers import get_kind
    from modelreg.spec import count_params

    rng = random.Random(seed)
    models: dict[str, Any] = {}
    for i in range(count):
        while True:
            in_features = rng.randint(2, 48)
            tables, specs, size = [], [], in_features
            for _ in range(rng.randint(1, 4)):
                table = _random_layer(rng, size)
                kind = get_kind(table["type"])
                layer = kind.spec(table, size)
                if kind.problems(layer, size) or layer.units < 1:
                    break
                tables.append(table)
                specs.append(layer)
                size = layer.units
            if specs and len(specs) == len(tables) and size <= 256 and count_params(specs, in_features) < 50_000:
                break
        models[f"m{i:03d}"] = {
            "description": f"random model {i}", "input_shape": [1, in_features], "output_shape": [1, size],
            "dtype": "float32", "params": count_params(specs, in_features), "latency_ms": 10.0,
            "exports": ["rtneural", "onnx"], "checkpoint": f"models/m{i:03d}.pt", "layers": tables,
        }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text(tomli_w.dumps({"models": models}))
    for spec in modelreg.load_registry(path).values():
        init_checkpoint(spec, seed=seed)
    return path


@contextlib.contextmanager
def _time_calls(module: Any, name: str) -> Iterator[list[float]]:
    """Sum the wall time of every call to ``module.name`` in this process (into the yielded list's one item)."""
    real, total = getattr(module, name), [0.0]

    def timed(*args: Any, **kwargs: Any) -> Any:
        begun = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - begun

    setattr(module, name, timed)
    try:
        yield total
    finally:
        setattr(module, name, real)


def bench_scale(sizes: list[int], latency_seconds: float) -> None:
    print(f"\n4. scale: registries of {sizes} random small models (latency window {latency_seconds} s per model)", flush=True)
    import modelreg
    from modelreg import checks, validation
    from modelreg.rtneural import cpp as rtneural_cpp

    scale: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            # One seed for every size: each registry is a prefix of the largest, so per-model
            # figures compare the same kind of models.
            path = make_registry(Path(tmp, f"r{size}"), size, seed=0)
            load_runs = []
            for _ in range(5):  # milliseconds: one timing is at the mercy of the machine
                start = time.perf_counter()
                modelreg.load_registry(path)
                load_runs.append(time.perf_counter() - start)
            load_s = statistics.median(load_runs)
            start = time.perf_counter()
            exported = modelreg.export_all(path)
            export_s = time.perf_counter() - start
            assert exported.ok, [a.message for a in exported.artifacts if not a.ok][:3]
            with _time_calls(checks, "check_latency") as serial_latency, \
                    _time_calls(rtneural_cpp.Runner, "time") as serial_cpp_latency:
                start = time.perf_counter()
                report = modelreg.validate_all(path, write=False, latency_seconds=latency_seconds)
                validate_s = time.perf_counter() - start
            failed = [n for n, m in report.models.items() if not m.ok]
            scale[str(size)] = {"load_s": load_s, "export_s": export_s, "validate_s": validate_s,
                                "validate_latency_s": serial_latency[0] + serial_cpp_latency[0],
                                "per_model_ms": {"load": load_s / size * 1e3, "export": export_s / size * 1e3,
                                                 "validate": validate_s / size * 1e3},
                                "models_failed": failed}
            print(f"    {size:4} models: load {load_s * 1e3:7.1f} ms ({load_s / size * 1e3:.2f} ms/model)   "
                  f"export {export_s:6.1f} s ({export_s / size * 1e3:.0f} ms/model)   "
                  f"validate {validate_s:6.1f} s ({validate_s / size * 1e3:.0f} ms/model)", flush=True)
        largest = str(max(sizes))
        path = Path(tmp, f"r{largest}", "registry.toml")
        kinds_used = collections.Counter(layer.type for spec in modelreg.load_registry(path).values()
                                         for layer in spec.layers)
        # With --jobs the latency phase (torch's and RTNeural C++'s) runs in this process, one
        # model at a time, after the pool (by design: parallel work must not disturb it); its
        # time bounds the speed-up.
        with _time_calls(validation, "add_latency") as latency_phase:
            start = time.perf_counter()
            modelreg.validate_all(path, write=False, latency_seconds=latency_seconds, jobs=2)
            jobs_s = time.perf_counter() - start
        start = time.perf_counter()
        modelreg.export_all(path, force=True, jobs=2)
        export_jobs_s = time.perf_counter() - start
        start = time.perf_counter()
        modelreg.export_all(path, force=True, jobs=1)
        export_serial_s = time.perf_counter() - start
    mid, big = scale[str(sorted(sizes)[1])] if len(sizes) > 1 else scale[largest], scale[largest]
    growth = {k: big["per_model_ms"][k] / mid["per_model_ms"][k] for k in ("load", "export", "validate")}
    from modelreg.layers import names as kind_names

    missing = [name for name in kind_names() if name not in kinds_used]
    record("scale", f"layers of the {largest}-model registry by kind: "
           + ", ".join(f"{name} {kinds_used[name]}" for name in kind_names()), "every kind", not missing)
    results["scale"] = {"sizes": scale, "per_model_growth_largest_vs_middle": growth, "layer_kinds": dict(kinds_used),
                        "validate_jobs2_s": jobs_s, "validate_jobs2_latency_phase_s": latency_phase[0],
                        "export_jobs2_s": export_jobs_s, "export_serial_s": export_serial_s}
    for kind in ("load", "export", "validate"):
        per = ", ".join(f"{s}: {scale[str(s)]['per_model_ms'][kind]:.1f}" for s in sizes)
        record("scale", f"{kind} ms/model ({per}); {largest} vs {sorted(sizes)[1]}: x{growth[kind]:.2f}",
               "linear (x <= 1.3)", growth[kind] <= 1.3)
    serial = scale[largest]["validate_s"]
    pooled, unpooled = jobs_s - latency_phase[0], serial - scale[largest]["validate_latency_s"]
    record("scale", f"validate {largest} models, --jobs 2: {jobs_s:.1f} s vs {serial:.1f} s serial = {serial / jobs_s:.2f}x; "
                    f"without the latency phase (one model at a time by design: {latency_phase[0]:.1f} s): "
                    f"{pooled:.1f} s vs {unpooled:.1f} s = {unpooled / pooled:.2f}x")
    record("scale", f"export {largest} models, --jobs 2: {export_jobs_s:.1f} s vs {export_serial_s:.1f} s serial = "
                    f"{export_serial_s / export_jobs_s:.2f}x")
    failed = sum(len(v["models_failed"]) for v in scale.values())
    record("scale", f"models failing validation in the random registries: {failed}", "0", failed == 0)


# ---------------------------------------------------------------- 5. latency per runtime


def _latency_runners(spec: Any, root: Path) -> dict[str, Any]:
    import numpy as np
    import onnxruntime as ort
    import torch

    from modelreg.inputs import edge_cases
    from modelreg.rtneural.runtime import load_rtneural

    module = spec.load()
    frame = edge_cases(spec.in_features)["normal"]
    x_torch = torch.from_numpy(frame)

    def torch_call() -> None:
        with torch.inference_mode():
            module(x_torch)

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(root / "models" / "onnx" / f"{spec.name}.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    layout = module.state_layout()
    feeds = {"x": frame, **{name: np.zeros((1, 1, units), np.float32) for name, units in layout}}
    outputs = ["y"] + [f"{name}_out" for name, _ in layout]

    def onnx_call() -> None:
        results_ = session.run(outputs, feeds)
        for (name, _), value in zip(layout, results_[1:]):
            feeds[name] = value  # carry the state, as a streaming host does

    rt = load_rtneural(root / "models" / f"{spec.name}.json")
    frame_1d = frame[0]

    def rtneural_call() -> None:
        rt.step(frame_1d)

    return {"torch eager": torch_call, "onnxruntime (1 thread)": onnx_call, "rtneural reference (numpy)": rtneural_call,
            "overhead (empty call)": lambda: None}


def _stable_p50(call: Any, runs: int, windows: int, seconds: float, attempts: int = 3) -> dict[str, Any]:
    """p50/p99 of ``runs`` consecutive runs that agree within 15%, trying up to ``attempts`` times.

    This VM alternates between phases about 2x apart, each lasting seconds; an
    attempt that straddles a change of phase is measured again rather than
    averaged into a figure nobody could reproduce. When no attempt is stable,
    the last one is returned with ``stable`` false and no figure is printed.
    """
    for attempt in range(1, attempts + 1):
        figures = _runs_p50(call, runs, windows, seconds)
        figures["attempts"] = attempt
        if figures["stable"]:
            break
    return figures


def _runs_p50(call: Any, runs: int, windows: int, seconds: float) -> dict[str, Any]:
    """p50/p99 over ``runs`` runs of ``windows`` windows each; the spread of the runs' p50 says how far to trust it."""
    from modelreg.latency import measure

    per_run = []
    for _ in range(runs):
        window_stats = [measure(call, seconds=seconds / windows, min_iterations=100, max_iterations=50_000)
                        for _ in range(windows)]
        # The run's figure is the median over its windows: one burst of machine noise moves one window, not the run.
        per_run.append({"p50": statistics.median(w.p50 for w in window_stats),
                        "p99": statistics.median(w.p99 for w in window_stats)})
    p50s = [r["p50"] for r in per_run]
    spread = (max(p50s) - min(p50s)) / min(p50s) if min(p50s) > 0 else float("inf")
    return {"runs": per_run, "p50_ms": statistics.median(p50s), "p99_ms": statistics.median(r["p99"] for r in per_run),
            "p50_spread": spread, "stable": spread <= 0.15}


def _cpp_setup(tmp: Path) -> Any:
    """RTNeural C++ (Eigen, -O3 -march=native) from $MODELREG_RTNEURAL, else ../shared/rtneural; None if absent.

    Builds go to a fresh cache folder, so the compile times printed are real compilations.
    """
    import modelreg.rtneural.cpp as rc

    root = os.environ.get(rc.ENV_RTNEURAL) or str(ROOT.parent / "shared" / "rtneural")
    if not (Path(root) / "RTNeural" / "RTNeural.h").is_file():
        print(f"    RTNeural C++ columns skipped: no RTNeural checkout at {root} (set {rc.ENV_RTNEURAL})", flush=True)
        return None
    os.environ[rc.ENV_RTNEURAL] = root
    os.environ[rc.ENV_BACKEND] = "eigen"
    os.environ[rc.ENV_CACHE] = str(tmp / "cache")
    toolchain = rc.find_toolchain()
    runner = rc.runner_for(toolchain)  # compiles the dynamic-API runner
    build = rc.builds()[-1]
    print(f"    RTNeural C++: {toolchain.compiler_version}, {toolchain.backend} backend, flags {' '.join(toolchain.flags())}",
          flush=True)
    results["rtneural_cpp"] = {"compiler": toolchain.compiler_version, "backend": toolchain.backend,
                               "flags": toolchain.flags(), "runner_compile_s": round(build.seconds, 2)}
    record("latency", f"RTNeural C++ runner (dynamic API, {toolchain.backend}) compile time: {build.seconds:.1f} s")
    return toolchain, runner


def _cpp_calls(spec: Any, root: Path, cpp: Any) -> dict[str, Any]:
    """Per-runtime timers of the RTNeural C++ engine: each returns (p50_ms, p99_ms) of one window, timed in C++."""
    import modelreg.rtneural.cpp as rc
    from modelreg.rtneural.header import cpp_namespace
    from modelreg.inputs import edge_cases
    from modelreg.latency import LatencyStats

    toolchain, runner = cpp
    frame = edge_cases(spec.in_features)["normal"][0]
    dynamic = rc.load_checked(runner, root / "models" / f"{spec.name}.json")
    embedded = spec.cpp_weights == "embedded"
    header = rc.header_runner(toolchain, root / "models" / "cpp" / f"{spec.name}.h", cpp_namespace(spec), spec.name,
                              embedded=embedded)
    compiled = rc.load_checked(header, None if embedded else root / "models" / f"{spec.name}.json")
    built = [b for b in rc.builds() if b.kind == f"header:{spec.name}"]
    results.setdefault("rtneural_cpp", {}).setdefault("header_compile_s", {})[spec.name] = (
        round(built[-1].seconds, 2) if built else None)

    def timer(target: Any, loaded: Any) -> Any:
        def window(seconds: float) -> tuple[float, float]:
            samples, warmup, _ = target.time(loaded, frame, seconds=seconds, min_iterations=100, max_iterations=50_000)
            stats = LatencyStats.from_samples(samples, warmup)
            return stats.p50, stats.p99
        return window

    return {"rtneural C++ dynamic (eigen)": timer(runner, dynamic),
            "rtneural C++ compile-time (eigen)": timer(header, compiled), "_close": header.close}


def _cpp_stable_p50(window: Any, runs: int, windows: int, seconds: float, attempts: int = 3) -> dict[str, Any]:
    """As :func:`_stable_p50`, with each window timed inside the C++ runner."""
    for attempt in range(1, attempts + 1):
        per_run = []
        for _ in range(runs):
            measured = [window(seconds / windows) for _ in range(windows)]
            per_run.append({"p50": statistics.median(m[0] for m in measured), "p99": statistics.median(m[1] for m in measured)})
        p50s = [r["p50"] for r in per_run]
        spread = (max(p50s) - min(p50s)) / min(p50s) if min(p50s) > 0 else float("inf")
        figures = {"runs": per_run, "p50_ms": statistics.median(p50s), "p99_ms": statistics.median(r["p99"] for r in per_run),
                   "p50_spread": spread, "stable": spread <= 0.15, "attempts": attempt}
        if figures["stable"]:
            break
    return figures


def bench_latency(seconds: float) -> None:
    print("\n5. latency per runtime (single thread, batch 1; 3 runs x 5 windows each, up to 3 attempts)", flush=True)
    import modelreg
    from modelreg.latency import single_thread

    with tempfile.TemporaryDirectory() as tmp:
        copy = copy_bundled(Path(tmp))
        cpp = _cpp_setup(Path(tmp))
        registry = modelreg.load_registry(copy / "registry.toml")
        assert modelreg.export_all(registry).ok  # with RTNeural configured, this compiles each model's header test
        latency: dict[str, Any] = {}
        unstable = []
        with single_thread():
            for name, spec in registry.items():
                latency[name] = {}
                runners = dict(_latency_runners(spec, copy))
                cpp_calls = _cpp_calls(spec, copy, cpp) if cpp is not None else {}
                close = cpp_calls.pop("_close", None)
                runners.update(cpp_calls)
                for runtime, call in runners.items():
                    if runtime in cpp_calls:
                        figures = _cpp_stable_p50(call, runs=3, windows=5, seconds=seconds)
                    else:
                        figures = _stable_p50(call, runs=3, windows=5, seconds=seconds)
                    latency[name][runtime] = figures
                    if figures["stable"]:
                        shown = f"p50 {figures['p50_ms'] * 1000:8.1f} us  p99 {figures['p99_ms'] * 1000:8.1f} us"
                    else:
                        unstable.append(f"{name}/{runtime}")
                        shown = f"UNSTABLE (p50 of the 3 runs differ by {figures['p50_spread']:.0%}): no figure"
                    print(f"    {name:18} {runtime:28} {shown}   (spread {figures['p50_spread']:.1%}, "
                          f"attempt {figures['attempts']})", flush=True)
                    torch_p50 = latency[name].get("torch eager", {}).get("p50_ms")
                    if runtime in cpp_calls and figures["stable"] and torch_p50:
                        figures["vs_torch_eager"] = torch_p50 / figures["p50_ms"]
                        print(f"    {'':18} {'':28} {figures['vs_torch_eager']:.1f}x faster than torch eager (p50)", flush=True)
                if close is not None:
                    close()
    results["latency"] = latency
    if cpp is not None:
        compile_s = results["rtneural_cpp"]["header_compile_s"]
        record("latency", "RTNeural C++ header test compile time (compile-time API, eigen): "
                          + ", ".join(f"{n} {v:.1f} s" for n, v in compile_s.items() if v is not None))
    record("latency", f"p50 figures stable across 3 runs (within 15%): {sum(len(v) for v in latency.values()) - len(unstable)}"
                      f"/{sum(len(v) for v in latency.values())}" + (f"; unstable: {', '.join(unstable)}" if unstable else ""),
           "all stable", not unstable)


# ---------------------------------------------------------------- rtneural-cpp headers: JSON vs embedded weights


def _chunk_bytes(binary: Path) -> int:
    """Bytes of the embedded weight literals in a compiled program (its kChunkN symbols, from nm)."""
    listing = subprocess.run(["nm", "-S", "-C", str(binary)], capture_output=True, text=True).stdout
    total = 0
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) >= 4 and "::kChunk" in line and not line.rstrip().endswith("kChunks"):
            total += int(parts[1], 16)
    return total


def _loads(runner: Any, path: Path | None, repeats: int) -> list[tuple[float, int]]:
    """Each load's C++ time (ms) and page faults in one runner process: the first is cold (first
    touches of the model's memory, the loader's buffers and the data), the rest as the allocator
    leaves the process (glibc reuses the freed model's pages, or grows the heap again)."""
    samples = []
    for _ in range(repeats):
        loaded = runner.load(path)
        samples.append((loaded.load_ns / 1e6, loaded.load_faults))
        runner.free(loaded)
    return samples


def _load_times_ms(runner: Any, path: Path | None, repeats: int) -> list[float]:
    return [ms for ms, _ in _loads(runner, path, repeats)]


def _cold_loads(runner: Any, path: Path | None, processes: int) -> list[tuple[float, int]]:
    """The first load in each of `processes` new runner processes (the same program): what a host
    pays when a plugin instance loads the model in a process that has not touched it yet."""
    import modelreg.rtneural.cpp as rc

    samples = []
    for _ in range(processes):
        with rc.Runner(runner.binary, runner.toolchain, runner.mode) as fresh:
            loaded = fresh.load(path)
            samples.append((loaded.load_ns / 1e6, loaded.load_faults))
    return samples


def _first_touch_ms(nbytes: int, repeats: int) -> dict[str, float]:
    """Writing `nbytes` of new anonymous memory (the kernel maps and zeroes a page at each first
    touch) against writing it again, and against copying it: the floor of any load that fills
    a new model of that size. Medians of `repeats`."""
    import mmap

    import numpy as np

    cold, hot, copy = [], [], []
    source = np.ones(nbytes, np.uint8)
    for _ in range(repeats):
        memory = mmap.mmap(-1, nbytes)
        array = np.frombuffer(memory, dtype=np.uint8)
        start = time.perf_counter()
        array.fill(0)
        cold.append(time.perf_counter() - start)
        start = time.perf_counter()
        array.fill(1)
        hot.append(time.perf_counter() - start)
        start = time.perf_counter()
        np.copyto(array, source)
        copy.append(time.perf_counter() - start)
        del array
        memory.close()
    pages = -(-nbytes // mmap.PAGESIZE)
    first = statistics.median(cold) * 1e3
    return {"bytes": nbytes, "pages": pages, "first_touch_ms": first, "again_ms": statistics.median(hot) * 1e3,
            "copy_ms": statistics.median(copy) * 1e3,
            "us_per_page": (first - statistics.median(hot) * 1e3) * 1e3 / pages}


def _median_load_ms(runner: Any, path: Path | None, repeats: int) -> float:
    return statistics.median(_load_times_ms(runner, path, repeats))


#: A model of ~5 million parameters: its embedded header must compile (issue 22).
BIG = {"name": "big5m", "in": 512, "layers": [("dense", 2048, "tanh"), ("dense", 2048, "tanh"), ("dense", 64, "linear")]}


def bench_headers(repeats: int, cold_processes: int) -> None:
    print("\n6. rtneural-cpp headers: weights read from JSON at run time vs compiled in (eigen)", flush=True)
    import attrs

    import modelreg
    import modelreg.rtneural.cpp as rc
    from modelreg.rtneural.exporter import RTNeuralExporter
    from modelreg.rtneural.header import cpp_namespace, render_header, weight_arrays
    from modelreg.spec import LayerSpec, count_params

    with tempfile.TemporaryDirectory() as tmp:
        cpp = _cpp_setup(Path(tmp))
        if cpp is None:
            record("headers", "skipped: RTNeural C++ is not configured")
            return
        toolchain, runner = cpp
        copy = copy_bundled(Path(tmp))
        registry = modelreg.load_registry(copy / "registry.toml")
        specs = dict(registry.items())
        big_layers = tuple(LayerSpec(t, u, a) for t, u, a in BIG["layers"])
        big_spec = attrs.evolve(specs["dynamicsengine"], name=BIG["name"], layers=big_layers,
                                input_shape=(1, BIG["in"]), output_shape=(1, big_layers[-1].units),
                                params=count_params(big_layers, BIG["in"]), checkpoint=Path(tmp) / "big5m.pt")
        specs[BIG["name"]] = big_spec
        figures: dict[str, Any] = {}
        for name, spec in specs.items():
            module = spec.load() if name != BIG["name"] else spec.build()
            json_file = Path(tmp) / f"{name}.json"
            RTNeuralExporter().export(spec, module, json_file)
            row: dict[str, Any] = {"params": spec.params, "json_mb": round(json_file.stat().st_size / 1e6, 2)}
            row["parsejson_load_ms"] = _median_load_ms(runner, json_file, repeats)
            for form in ("json", "embedded"):
                form_spec = attrs.evolve(spec, cpp_weights=form)
                header = Path(tmp) / form / f"{name}.h"
                header.parent.mkdir(exist_ok=True)
                arrays = weight_arrays(form_spec, module) if form == "embedded" else None
                header.write_text(render_header(form_spec, arrays))
                before = len(rc.builds())
                with rc.header_runner(toolchain, header, cpp_namespace(form_spec), f"{name}-{form}",
                                      embedded=form == "embedded") as program:
                    built = rc.builds()[before:]
                    row[f"{form}_compile_s"] = round(built[-1].seconds, 2) if built else None
                    row[f"{form}_header_mb"] = round(header.stat().st_size / 1e6, 2)
                    samples = _loads(program, json_file if form == "json" else None, repeats)
                    times = [ms for ms, _ in samples]
                    row[f"{form}_load_ms"] = statistics.median(times)
                    row[f"{form}_load_first_ms"], row[f"{form}_load_min_ms"] = times[0], min(times)
                    if form == "embedded":
                        floats = sum(int(a.size) for layer in arrays or [] for a in layer)
                        row["embedded_data_ratio"] = _chunk_bytes(program.binary) / (4 * floats)
                        faults = [f for _, f in samples]
                        quiet = [ms for ms, f in samples if f == 0]
                        row["embedded_load_faults"] = faults
                        # The loader's own work: the loads that touched no new page.
                        row["embedded_load_fault_free_ms"] = statistics.median(quiet) if quiet else None
                        cold = _cold_loads(program, None, cold_processes)
                        row["embedded_cold_ms"] = [ms for ms, _ in cold]
                        row["embedded_cold_faults"] = [f for _, f in cold]
            figures[name] = row
            print(f"    {name:18} {spec.params:>9,} params  load: parseJson {row['parsejson_load_ms']:8.2f} ms, "
                  f"JSON header {row['json_load_ms']:8.2f} ms, embedded {row['embedded_load_ms']:7.3f} ms  "
                  f"compile: JSON {row['json_compile_s']} s, embedded {row['embedded_compile_s']} s  "
                  f"weights in binary {row['embedded_data_ratio']:.5f}x", flush=True)
    melody = figures["melodytransformer"]
    touch = _first_touch_ms(4 * melody["params"], repeats=15)
    results["headers"] = figures
    results["headers_first_touch"] = touch
    print(f"    first touch of {touch['bytes'] / 1e6:.2f} MB (melodytransformer's float32 weights): "
          f"{touch['first_touch_ms']:.2f} ms ({touch['pages']} pages, {touch['us_per_page']:.2f} us a page); "
          f"written again {touch['again_ms']:.3f} ms, copied {touch['copy_ms']:.3f} ms", flush=True)
    faults = melody["embedded_load_faults"]
    record("headers", f"melodytransformer load (construct + set weights), median of {repeats} in one process: embedded "
                      f"{melody['embedded_load_ms']:.3f} ms (first {melody['embedded_load_first_ms']:.2f} ms, best "
                      f"{melody['embedded_load_min_ms']:.3f} ms; page faults first {faults[0]}, median "
                      f"{statistics.median(faults):.0f}) vs parseJson {melody['parsejson_load_ms']:.1f} ms "
                      f"(JSON header {melody['json_load_ms']:.1f} ms)", "<= 1 ms", melody["embedded_load_ms"] <= 1.0)
    cold_ms, cold_faults = melody["embedded_cold_ms"], melody["embedded_cold_faults"]
    record("headers", f"melodytransformer embedded load, the first in each of {len(cold_ms)} new processes: median "
                      f"{statistics.median(cold_ms):.3f} ms (first {cold_ms[0]:.2f}, best {min(cold_ms):.3f}; "
                      f"{statistics.median(cold_faults):.0f} page faults); first touch of its "
                      f"{touch['bytes'] / 1e6:.2f} MB alone {touch['first_touch_ms']:.2f} ms", "<= 1 ms",
           statistics.median(cold_ms) <= 1.0)
    worst = max(row["embedded_data_ratio"] for row in figures.values())
    record("headers", f"weight data in the compiled program: at most {worst:.5f}x the float32 bytes", "<= 1.05x",
           worst <= 1.05)
    record("headers", "embedded header compile time (eigen, -O3): " + ", ".join(
        f"{n} {row['embedded_compile_s']} s" for n, row in figures.items() if n != BIG["name"]))
    big = figures[BIG["name"]]
    record("headers", f"{big['params']:,}-parameter model: embedded header compiles in {big['embedded_compile_s']} s "
                      f"({big['embedded_header_mb']} MB), loads in {big['embedded_load_ms']:.2f} ms", "compiles", True)


# ---------------------------------------------------------------- main


# ---------------------------------------------------------------- 7. diff (issue 21)


def bench_diff(repeats: int) -> None:
    """`modelreg diff HEAD~1` on the bundled registry in a git repository where one model's weights changed
    (the largest model, melodytransformer, re-initialised with another seed: every tensor changes)."""
    print("\n7. modelreg diff (issue 21)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        copy = copy_bundled(Path(tmp))

        def git(*args: str) -> None:
            subprocess.run(["git", *args], cwd=copy, check=True, capture_output=True)

        git("init", "-q")
        git("config", "user.name", "bench")
        git("config", "user.email", "bench@modelreg.invalid")
        git("add", "-A")
        git("commit", "-q", "-m", "bundled")
        import hashlib

        import modelreg

        pin = modelreg.load_registry(copy / "registry.toml")["melodytransformer"].sha256 or ""
        # init exits 1 here: the new weights differ from the pin, which the retrain commit then updates.
        subprocess.run(MODELREG + ["init", "--force", "--seed", "1", "melodytransformer"], cwd=copy, capture_output=True)
        for backup in (copy / "models").glob("*.bak-*"):
            backup.unlink()
        digest = hashlib.sha256((copy / "models" / "melodytransformer.pt").read_bytes()).hexdigest()
        text = (copy / "registry.toml").read_text()
        (copy / "registry.toml").write_text(text.replace(pin, digest) if pin else text)
        git("add", "-A")
        git("commit", "-q", "-m", "melodytransformer retrained")
        check = subprocess.run(MODELREG + ["diff", "HEAD~1", "--json"], cwd=copy, capture_output=True, text=True)
        document = json.loads(check.stdout)
        changed = sorted(n for n, m in document["models"].items() if m["status"] != "unchanged")
        drift = document["models"]["melodytransformer"]["drift"]
        times: dict[str, list[float]] = {"import torch": [], "modelreg diff HEAD~1": []}
        cpu: dict[str, list[float]] = {"import torch": [], "modelreg diff HEAD~1": []}
        for _ in range(repeats):  # interleaved, as in section 1
            for key, command in (("import torch", [PYTHON, "-c", "import torch"]),
                                 ("modelreg diff HEAD~1", MODELREG + ["diff", "HEAD~1"])):
                wall, seconds = _wall_and_cpu(command, copy)
                times[key].append(wall)
                cpu[key].append(seconds)
        # In process, torch already imported: the diff's own work (git, both registries, weights, both models run).
        inproc = subprocess.run([PYTHON, "-c", _DIFF_IN_PROCESS, str(repeats)], cwd=copy, capture_output=True, text=True,
                                check=True)
        in_process = json.loads(inproc.stdout)
    median = {k: statistics.median(v) for k, v in times.items()}
    median_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    own = median["modelreg diff HEAD~1"] - median["import torch"]
    own_cpu = median_cpu["modelreg diff HEAD~1"] - median_cpu["import torch"]
    results["diff"] = {"median_seconds": median, "without_torch_import_seconds": own, "repeats": repeats,
                       "median_cpu_seconds": median_cpu, "cpu_without_torch_import_seconds": own_cpu,
                       "in_process_seconds": in_process, "changed": changed, "drift_max_abs": drift["max_abs"],
                       "load_average": os.getloadavg()}
    record("diff", f"models reported changed: {', '.join(changed)}; melodytransformer drift max {drift['max_abs']:.3g} "
                   f"over {drift['frames']} frames")
    record("diff", f"`modelreg diff HEAD~1`: {median['modelreg diff HEAD~1']:.2f} s wall (median of {repeats}), "
                   f"{own:.2f} s without torch's import ({median['import torch']:.2f} s)", "<= 2 s", own <= 2.0)
    record("diff", f"CPU time (user + sys, git included): {median_cpu['modelreg diff HEAD~1']:.2f} s, "
                   f"{own_cpu:.2f} s without torch's import ({median_cpu['import torch']:.2f} s)")
    record("diff", f"in process, torch imported: median {statistics.median(in_process['wall']):.2f} s wall "
                   f"(best {min(in_process['wall']):.2f} s), {statistics.median(in_process['cpu']):.2f} s CPU")


# ---------------------------------------------------------------- 8. one amp model, every engine (issue 20, section 4)


def bench_amp(runs: int, seconds: float) -> None:
    """examples/amp run ``runs`` times (each a fresh folder: init, export, `modelreg validate --report`), its
    engines timed for ``seconds`` each: per engine, parity against torch and the real-time factor at 48 kHz in
    64-sample blocks (at the median block and at the p99 the C++ engines are judged by), the median over runs.
    RTNeural (Eigen backend, as in section 5) and NAM's engine come from $MODELREG_RTNEURAL /
    $MODELREG_NAM_CORE, else ../shared beside the checkout; an absent one is reported as skipped."""
    print(f"\n8. one amp model, every engine (examples/amp, {runs} runs, {seconds:g} s per engine)", flush=True)
    import modelreg.nam.engine as ne
    import modelreg.rtneural.cpp as rc

    env = dict(os.environ, MODELREG_RTSAN_CXX="off", MODELREG_RTNEURAL_BACKEND="eigen",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    for variable, shared, marker in ((rc.ENV_RTNEURAL, "rtneural", "RTNeural/RTNeural.h"),
                                     (ne.ENV_CORE, "nam-core", "NAM/get_dsp.h")):
        root = os.environ.get(variable) or str(ROOT.parent / "shared" / shared)
        if (Path(root) / marker).is_file():
            env[variable] = root
        else:
            env.pop(variable, None)
            print(f"    {shared}: not found at {root} (set {variable}): its engine is skipped", flush=True)
    per_run: list[dict[str, Any]] = []
    load: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(runs):
            out = Path(tmp) / f"engines-{run}.json"
            load.append(os.getloadavg())
            done = subprocess.run([PYTHON, str(ROOT / "examples" / "amp" / "run.py"), str(Path(tmp) / f"run{run}"),
                                   "--latency-seconds", f"{seconds:g}", "--json", str(out)],
                                  env=env, capture_output=True, text=True)
            if not out.is_file():
                raise SystemExit(f"examples/amp/run.py failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
            per_run.append(json.loads(out.read_text())["amp"])
            fails = [line.strip() for line in done.stdout.splitlines() if line.startswith("  FAIL ")]
            print(f"    run {run + 1}: exit {done.returncode}" + (f" ({'; '.join(fails)})" if fails else ""), flush=True)
    engines: list[dict[str, Any]] = []
    for index, first in enumerate(per_run[0]["engines"]):
        rows = [r["engines"][index] for r in per_run]

        def median(key: str, rows: list[dict[str, Any]] = rows) -> float | None:
            values = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
            return statistics.median(values) if values else None

        engines.append({"engine": first["engine"], "check": first["latency_check"],
                        "parity": [r["parity_status"] for r in rows], "max_abs_error": median("max_abs_error"),
                        "p50_ms": median("p50_ms"), "p99_ms": median("stat_ms"), "rtf_p50": median("rtf_p50"),
                        "rtf_p99": median("rtf"), "judged": first["judged"],
                        "latency": [r["latency_status"] for r in rows],
                        "runs": [{k: r[k] for k in ("p50_ms", "stat_ms", "rtf_p50", "rtf")} for r in rows]})
    results["amp"] = {"runs": runs, "seconds_per_engine": seconds, "block_size": per_run[0]["block_size"],
                      "sample_rate": per_run[0]["sample_rate"], "block_ms": per_run[0]["block_ms"],
                      "load_average": load, "engines": engines}
    from modelreg.latency import ms_text, rtf_text

    for engine in engines:
        if engine["rtf_p50"] is None:
            record("amp", f"{engine['engine']}: skipped (not configured)")
            continue
        parity = ("reference" if engine["check"] == "latency" else
                  f"parity max abs error {engine['max_abs_error']:.2g} ({', '.join(sorted(set(engine['parity'])))})")
        record("amp", f"{engine['engine']}: {parity}; real time {rtf_text(engine['rtf_p50'])} at the median block "
                      f"({ms_text(engine['p50_ms'])}), {rtf_text(engine['rtf_p99'])} at p99 ({ms_text(engine['p99_ms'])})"
                      + ("" if engine["judged"] else ", not judged (from Python)"))
    proven = [e for e in engines if e["check"] != "latency" and e["rtf_p50"] is not None]
    record("amp", f"parity against torch in every engine that ran ({len(proven)} of {len(engines) - 1}), every run",
           "all pass", all(set(e["parity"]) == {"pass"} for e in proven))
    print(f"    load average at the start of each run: {', '.join(f'{a[0]:.1f}' for a in load)}", flush=True)
    print("\n| engine | parity (max abs error) | block p50 | real time (p50) | block p99 | real time (p99) | judged |"
          "\n|---|---|---|---|---|---|---|")
    for engine in engines:
        if engine["rtf_p50"] is None:
            print(f"| {engine['engine']} | skipped | | | | | |")
            continue
        parity = "reference" if engine["check"] == "latency" else f"{engine['max_abs_error']:.2g}"
        print(f"| {engine['engine']} | {parity} | {ms_text(engine['p50_ms'])} | {rtf_text(engine['rtf_p50'])} | "
              f"{ms_text(engine['p99_ms'])} | {rtf_text(engine['rtf_p99'])} | "
              f"{'yes' if engine['judged'] else 'no (Python)'} |")


def _wall_and_cpu(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + sys of the command and the children it waited for, such as git):
    the CPU figure moves far less than the wall on a busy machine."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return wall, usage.ru_utime + usage.ru_stime


_DIFF_IN_PROCESS = """\
import json, sys, time
import torch  # imported first: the figure is the diff's own work
from modelreg.cli import main
import contextlib, io
walls, cpus = [], []
for _ in range(int(sys.argv[1])):
    start, cpu = time.perf_counter(), time.process_time()
    with contextlib.redirect_stdout(io.StringIO()):
        main(["diff", "HEAD~1"])
    walls.append(time.perf_counter() - start)
    cpus.append(time.process_time() - cpu)  # this process's CPU (git's children not counted): steadier on a busy machine
print(json.dumps({"wall": walls, "cpu": cpus}))
"""


def machine() -> dict[str, Any]:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="sizes 5/20/50 and shorter latency windows")
    parser.add_argument("--only", choices=["startup", "export", "proof", "job", "scale", "latency", "headers", "diff", "amp"],
                        action="append")
    parser.add_argument("--output", type=Path, default=None,
                        help="default benchmarks/results.json (--quick: benchmarks/results.quick.json)")
    args = parser.parse_args()
    if args.output is None:
        args.output = ROOT / "benchmarks" / ("results.quick.json" if args.quick else "results.json")
    sections = set(args.only or ["startup", "export", "proof", "job", "scale", "latency", "headers", "diff", "amp"])
    results["machine"] = machine()
    print(f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, python {results['machine']['python']}, "
          f"torch {results['machine']['torch']}")
    if "startup" in sections:
        bench_startup(repeats=5 if args.quick else 9)
    if "export" in sections:
        bench_rtneural_export(repeats=3)
    if "proof" in sections:
        bench_proof(repeats=3 if args.quick else 5)
    if "job" in sections:
        bench_whole_job()
    if "scale" in sections:
        bench_scale([5, 20, 50] if args.quick else [5, 50, 200], latency_seconds=0.02)
    if "latency" in sections:
        bench_latency(seconds=0.5 if args.quick else 1.5)
    if "headers" in sections:
        bench_headers(repeats=5 if args.quick else 15, cold_processes=5 if args.quick else 15)
    if "diff" in sections:
        bench_diff(repeats=3 if args.quick else 7)
    if "amp" in sections:
        bench_amp(runs=1 if args.quick else 3, seconds=0.2 if args.quick else 2.0)

    results["table"] = [{"section": s, "figure": f, "target": t, "verdict": v} for s, f, t, v in rows]
    from modelreg.atomic import atomic_write_text

    document = dict(results)
    if args.only and args.output.is_file():
        # A partial run updates its sections in the results file and keeps the others' figures.
        document = {**json.loads(args.output.read_text()), **results}
        ran = {s for s, *_ in rows}
        kept = [r for r in json.loads(args.output.read_text()).get("table", []) if r["section"] not in ran]
        document["table"] = kept + results["table"]
    atomic_write_text(args.output, json.dumps(document, indent=2, default=str) + "\n")
    print("\n| section | figure | target | verdict |\n|---|---|---|---|")
    for section, figure, target, verdict in rows:
        print(f"| {section} | {figure} | {target} | {verdict} |")
    print(f"\nwritten: {args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output}")
    return 0 if all(v != "NOT MET" for *_, v in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
