"""Audio-rate models (issue 22, section 5): ``sample_rate`` and ``block_size`` in an entry make a model
timed a whole block at a time, with the real-time factor (block duration / block time).

The broken entries (one key without the other, bad values, a target looser than the block) are in
tests/bad_registries/audio_rate_*.toml; here: what a valid entry becomes, the figures and their
arithmetic (checked against a fake timer), and where users read them.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

import modelreg
from conftest import needs_rtneural
from modelreg import ModelSpec, load_registry

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["pytester"]

#: A per-sample model: one sample in, one out (dense 1 -> 5 -> 1, tanh then linear).
AUDIO_ENTRY = """\
[models.{name}]
description = "a per-sample waveshaper"
input_shape = [1, 1]
output_shape = [1, 1]
dtype = "float32"
params = 16
{keys}
exports = {exports}
checkpoint = "models/{name}.pt"
layers = [
    {{ type = "dense", units = 5, activation = "tanh" }},
    {{ type = "dense", units = 1, activation = "linear" }},
]
"""


def audio_entry(name: str = "shaper", keys: str = "sample_rate = 48000\nblock_size = 64", exports: str = "[]") -> str:
    return AUDIO_ENTRY.format(name=name, keys=keys, exports=exports)


def write(folder: Path, *entries: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text("\n".join(entries), encoding="utf-8")
    return path


# ---------------------------------------------------------------- the registry keys


def test_an_audio_rate_entry_needs_no_latency_ms_its_target_is_the_block(tmp_path):
    spec = load_registry(write(tmp_path, audio_entry()))["shaper"]
    assert spec.is_audio_rate
    assert (spec.sample_rate, spec.block_size) == (48000.0, 64)
    assert spec.block_ms == pytest.approx(64 / 48000 * 1000)
    assert spec.latency_ms == spec.block_ms  # derived: one block's duration
    assert spec.target_is_block


def test_a_stricter_latency_ms_is_the_target_of_an_audio_rate_entry(tmp_path):
    spec = load_registry(write(tmp_path, audio_entry(keys="latency_ms = 0.5\nsample_rate = 44100\nblock_size = 128")))["shaper"]
    assert spec.latency_ms == 0.5
    assert spec.block_ms == pytest.approx(128 / 44.1)
    assert not spec.target_is_block


def test_latency_ms_equal_to_the_block_is_accepted(tmp_path):
    # 64 samples at 64 kHz last exactly 1 ms: the bound is inclusive.
    spec = load_registry(write(tmp_path, audio_entry(keys="latency_ms = 1.0\nsample_rate = 64000\nblock_size = 64")))["shaper"]
    assert spec.latency_ms == 1.0 and spec.target_is_block


def test_other_entries_are_not_audio_rate(tmp_path):
    spec = load_registry(write(tmp_path, audio_entry(keys="latency_ms = 2.0")))["shaper"]
    assert not spec.is_audio_rate
    assert spec.sample_rate is None and spec.block_size is None and spec.block_ms is None
    assert not spec.target_is_block


def test_a_model_spec_made_in_code_defaults_to_no_audio_rate():
    from modelreg.spec import LayerSpec

    spec = ModelSpec(name="m", description="", input_shape=(1, 1), output_shape=(1, 1), dtype="float32", params=2,
                     latency_ms=1.0, layers=(LayerSpec("dense", 1, "linear"),), checkpoint=Path("m.pt"),
                     registry_file=Path("registry.toml"))
    assert not spec.is_audio_rate and spec.block_ms is None


def test_the_audio_keys_do_not_make_artifacts_stale(tmp_path):
    """sample_rate and block_size say how the host calls the model, not what it computes."""
    from modelreg.exporting import artifact_entry_sha256

    plain = load_registry(write(tmp_path / "a", audio_entry(keys="latency_ms = 1.0")))["shaper"]
    audio = load_registry(write(tmp_path / "b", audio_entry()))["shaper"]
    assert artifact_entry_sha256(plain) == artifact_entry_sha256(audio)


@pytest.mark.parametrize(("rate", "block", "text"), [
    (48000, 64, "48 kHz, 64-sample blocks"),
    (44100, 32, "44.1 kHz, 32-sample blocks"),
    (22050, 1, "22.05 kHz, 1-sample blocks"),
    (500, 8, "500 Hz, 8-sample blocks"),
])
def test_audio_rate_text(rate, block, text):
    from modelreg.spec import audio_rate_text

    assert audio_rate_text(rate, block) == text


# ---------------------------------------------------------------- the figures, against a fake timer


class FakeClock:
    """Stands in for ``time`` in modelreg.latency: time moves only when the fake model computes."""

    def __init__(self) -> None:
        self.ns = 0

    def perf_counter_ns(self) -> int:
        return self.ns

    def perf_counter(self) -> float:
        return self.ns / 1e9


class FakeModule:
    """A model whose every call (one frame) takes ``ns_per_call`` on the fake clock."""

    is_stateful = True

    def __init__(self, clock: FakeClock, ns_per_call: int) -> None:
        self.clock, self.ns_per_call = clock, ns_per_call
        self.calls: list[tuple[int, ...]] = []
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1

    def __call__(self, frame):
        self.calls.append(tuple(frame.shape))
        self.clock.ns += self.ns_per_call
        return frame


@pytest.fixture
def clock(monkeypatch):
    from modelreg import latency

    fake = FakeClock()
    monkeypatch.setattr(latency, "time", fake)
    return fake


def spec_of(tmp_path: Path, keys: str = "sample_rate = 48000\nblock_size = 64") -> ModelSpec:
    return load_registry(write(tmp_path, audio_entry(keys=keys)))["shaper"]


def test_torch_times_whole_blocks_one_frame_per_call_and_reports_the_real_time_factor(tmp_path, clock):
    from modelreg.checks import check_latency

    spec = spec_of(tmp_path)
    module = FakeModule(clock, ns_per_call=10_000)  # 10 us a sample: 640 us a 64-sample block
    result = check_latency(spec, module, seconds=0.01)  # type: ignore[arg-type]
    figures = result.figures
    blocks = figures["iterations"]
    # The window (10 ms of fake time) holds 15.6 blocks: timed until it is over.
    assert blocks == 16
    assert len(module.calls) == 64 * (blocks + figures["warmup"])
    assert set(module.calls) == {(1, 1)}  # one frame [batch 1, 1 feature] per call
    assert module.resets == 2  # before and after: never between blocks, as a host's callback runs
    for stat in ("mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"):
        assert figures[stat] == pytest.approx(0.64)
    assert figures["block_ms"] == pytest.approx(1.333333)
    assert figures["rtf"] == pytest.approx(1.333333 / 0.64, rel=1e-3)  # 2.083
    assert (figures["block_size"], figures["sample_rate"], figures["stat"]) == (64, 48000.0, "p99")
    assert figures["target_ms"] == pytest.approx(1.333333) and figures["target_rtf"] == 1.0
    assert figures["judged"] is False and result.status == "pass"
    assert result.message == (
        f"p99 0.64 ms per block: 2.08x real time at 48 kHz, 64-sample blocks ({blocks} blocks); for comparison, "
        "not judged against the 1.33 ms target: torch pays Python's overhead on every sample, a C++ host does not "
        "(the RTNeural C++ latency checks judge)")


def test_torch_slower_than_real_time_is_reported_not_failed(tmp_path, clock):
    from modelreg.checks import check_latency

    module = FakeModule(clock, ns_per_call=1_000_000)  # 1 ms a sample: 64 ms a block
    result = check_latency(spec_of(tmp_path), module, seconds=0.01)  # type: ignore[arg-type]
    assert result.status == "pass" and result.figures["judged"] is False
    assert result.figures["iterations"] == 10  # MIN_BLOCKS, though the window was over after one
    assert result.figures["rtf"] == pytest.approx(1.333333 / 64, rel=1e-3)
    assert result.message.startswith("p99 64 ms per block: 0.0208x real time at 48 kHz, 64-sample blocks (10 blocks)")


def test_per_frame_latency_is_unchanged_for_other_models(tmp_path, clock):
    from modelreg.checks import check_latency

    spec = spec_of(tmp_path, keys="latency_ms = 2.0")
    module = FakeModule(clock, ns_per_call=10_000)
    result = check_latency(spec, module, seconds=0.01)  # type: ignore[arg-type]
    assert list(result.figures) == ["mean_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms", "iterations", "warmup",
                                    "stat", "target_ms", "threads"]
    assert result.figures["iterations"] == 1000 and result.figures["p99_ms"] == 0.01
    assert result.message == "p99 0.0100 ms vs target 2 ms (1000 calls)"


def samples_ms(*values: float) -> np.ndarray:
    return (np.array(values) * 1e6).astype(np.int64)


def test_block_figures_judge_the_entry_statistic_against_the_block(tmp_path):
    """What the C++ latency check calls with the runner's per-block nanoseconds."""
    from modelreg.audio import block_figures, block_result

    spec = spec_of(tmp_path)
    figures, summary = block_figures(samples_ms(*[0.01] * 99, 0.02), spec, warmup=5)
    assert figures["iterations"] == 100 and figures["warmup"] == 5
    assert figures["max_ms"] == 0.02 and figures["p50_ms"] == 0.01
    assert figures["rtf"] == pytest.approx(1.333333 / figures["p99_ms"], rel=1e-3)
    assert figures["judged"] is True
    assert summary == ("p99 0.0101 ms per block vs target 1.33 ms (the block's duration): 132x real time "
                       "at 48 kHz, 64-sample blocks (100 blocks)")

    passed = block_result("rtneural.dynamic_latency", samples_ms(1.0, 1.0), spec, warmup=0, prefix="RTNeural C++: ",
                          extra={"clock_overhead_ns": 20})
    assert passed.status == "pass" and passed.figures["clock_overhead_ns"] == 20
    assert passed.message == ("RTNeural C++: p99 1 ms per block vs target 1.33 ms (the block's duration): 1.33x real "
                              "time at 48 kHz, 64-sample blocks (2 blocks)")
    failed = block_result("rtneural.dynamic_latency", samples_ms(2.0, 2.0), spec, warmup=0)
    assert failed.status == "fail" and failed.figures["rtf"] == pytest.approx(0.6667, rel=1e-3)
    assert "0.667x real time" in failed.message


def test_a_stricter_latency_ms_is_judged_and_said(tmp_path):
    from modelreg.audio import block_result

    spec = spec_of(tmp_path, keys='latency_ms = 0.5\nlatency_stat = "p50"\nsample_rate = 48000\nblock_size = 64')
    result = block_result("x.latency", samples_ms(0.6, 0.6, 0.6), spec, warmup=0)
    # 2.2x real time, but slower than the 0.5 ms the entry budgets for it: fails.
    assert result.status == "fail"
    assert result.message == ("p50 0.6 ms per block vs target 0.5 ms: 2.22x real time at 48 kHz, 64-sample blocks "
                              "(3 blocks)")
    assert result.figures["target_rtf"] == pytest.approx(2.667, rel=1e-3) and result.figures["stat"] == "p50"


@pytest.mark.parametrize(("rtf", "text"), [
    (152.34, "152x"), (48.23, "48.2x"), (3.412, "3.41x"), (1.0, "1x"), (0.020833, "0.0208x"), (1520.4, "1,520x"),
])
def test_rtf_text(rtf, text):
    from modelreg.latency import rtf_text

    assert rtf_text(rtf) == text


def test_block_figures_refuse_a_model_that_is_not_audio_rate(tmp_path):
    from modelreg.audio import block_figures

    with pytest.raises(ValueError, match="shaper is not an audio-rate model"):
        block_figures(samples_ms(1.0), spec_of(tmp_path, keys="latency_ms = 2.0"), warmup=0)


# ---------------------------------------------------------------- onnxruntime


GRU_AUDIO = """\
[models.{name}]
description = "a per-sample GRU"
input_shape = [1, 1]
output_shape = [1, 1]
dtype = "float32"
params = 89
sample_rate = 44100
block_size = 16
exports = ["onnx"]
checkpoint = "models/{name}.pt"
layers = [
    {{ type = "gru", units = 4 }},
    {{ type = "dense", units = 1, activation = "linear" }},
]
"""


@pytest.fixture
def onnx_project(tmp_path: Path) -> Path:
    pytest.importorskip("onnxruntime")
    path = write(tmp_path / "project", GRU_AUDIO.format(name="voice"), audio_entry(keys="latency_ms = 5.0", exports='["onnx"]'))
    registry = load_registry(path)
    for spec in registry.values():
        modelreg.init_checkpoint(spec, seed=3)
    assert modelreg.export_all(registry).ok
    return path


def test_onnx_times_blocks_for_comparison_after_its_other_checks(onnx_project):
    report = modelreg.validate_all(onnx_project, latency_seconds=0.02, write=False)
    voice = report["voice"]
    names = [check.name for check in voice.checks]
    assert names[-1] == "onnx.latency"  # timed last, alone
    check = voice["onnx.latency"]
    assert check.status == "pass", check.message
    assert check.message.startswith("onnxruntime: p99 ") and " per block: " in check.message
    assert "x real time at 44.1 kHz, 16-sample blocks (" in check.message
    assert check.message.endswith("for comparison, not judged against the 0.363 ms target: each sample is a "
                                  "session.run() call from Python, a C++ host's callback makes none "
                                  "(the RTNeural C++ latency checks judge)")
    figures = check.figures
    assert figures["block_size"] == 16 and figures["sample_rate"] == 44100.0 and figures["judged"] is False
    assert figures["iterations"] >= 10
    assert figures["rtf"] == pytest.approx(figures["block_ms"] / figures["p99_ms"], rel=2e-3)
    # torch's latency of the same model: per block too.
    assert voice["latency"].figures["block_size"] == 16
    # A model that is not audio-rate gets no ONNX latency check: its checks are as before.
    assert "onnx.latency" not in report["shaper"]
    assert "block_size" not in report["shaper"]["latency"].figures


def test_onnx_blocks_carry_the_state_from_call_to_call(onnx_project, monkeypatch):
    from modelreg.onnx import exporter

    fed: list[dict[str, np.ndarray]] = []
    returned: list[list[np.ndarray]] = []
    real = exporter._session

    class Recording:
        def __init__(self, path):
            self.session = real(path)

        def run(self, names, inputs):
            fed.append({k: v.copy() for k, v in inputs.items()})
            outputs = self.session.run(names, inputs)
            returned.append(outputs)
            return outputs

    monkeypatch.setattr(exporter, "_session", Recording)
    spec = load_registry(onnx_project)["voice"]
    result = exporter.block_latency(spec, spec.load(), spec.registry_dir / "models" / "onnx" / "voice.onnx")
    assert result.status == "pass"
    assert len(fed) == 16 * (result.figures["iterations"] + result.figures["warmup"])
    assert not fed[0]["h0"].any()  # zeros first
    for before, after in zip(returned, fed[1:]):  # then each call's state output, never reset between blocks
        assert np.array_equal(after["h0"], before[1])
    block = [frame["x"][0, 0] for frame in fed[:16]]
    assert block == [frame["x"][0, 0] for frame in fed[16:32]]  # the same block every time


def test_with_jobs_the_onnx_block_latency_is_timed_after_the_pool(onnx_project):
    report = modelreg.validate_all(onnx_project, latency_seconds=0.02, write=False, jobs=2)
    check = report["voice"]["onnx.latency"]
    assert check.status == "pass" and check.figures["rtf"] > 0, check.message


# ---------------------------------------------------------------- where users read it: CLI, results file


def test_validate_table_shows_time_per_block_and_the_real_time_factor(onnx_project, capsys):
    import json
    import re

    from conftest import run_cli

    code, out, err = run_cli(["validate", "--registry", str(onnx_project), "--latency-seconds", "0.02"], capsys)
    # A loaded machine may miss a latency target (exit 1); every other check must pass.
    results = json.loads((onnx_project.parent / "models" / "validation_results.json").read_text())
    failed = [c["name"] for m in results["models"].values() for c in m["checks"] if c["status"] == "fail"]
    assert code == (1 if failed else 0) and all(name.endswith("latency") for name in failed), out + err
    main_table = out.split("\nEngines (")[0]  # the engine comparison below names the model on each of its rows too
    rows = {line.split()[0]: line for line in main_table.splitlines() if line.startswith(("voice ", "shaper "))}
    # An audio-rate model: its statistic per block, the real-time factor, the target per block.
    assert re.search(r"^voice\s+89\s+p99 \d[\d.,]* ms/blk \d[\d.,e+-]*x RT\s+-\s+-\s+0\.363 ms/blk\s+\d+/\d+", rows["voice"]), rows
    # Another model's row is as before: per call, the target in ms.
    assert re.search(r"^shaper\s+16\s+p99 \d+\.\d{3} ms\s+-\s+-\s+5 ms\s+\d+/\d+", rows["shaper"]), rows
    # One model, every engine (issue 20, section 4): torch is the reference, onnxruntime's parity and real-time
    # factor beside it; only the audio-rate model has the table.
    engines = out.split("\nEngines (audio-rate models: parity against torch, real-time factor at the entry's rate and "
                        "block)\n")[1].split("\n\n")[0].splitlines()
    assert re.match(r"model\s+engine\s+parity \(max abs error\)\s+block p50 / p99\s+real time \(p50 / p99\)\s+judged$",
                    engines[0]), engines
    assert re.match(r"voice\s+torch \(Python\)\s+reference\s+\S+ ms / \S+ ms\s+\S+x / \S+x\s+no \(Python\)$", engines[2])
    assert re.match(r"voice\s+onnxruntime \(Python\)\s+\d[\d.e+-]*\s+\S+ ms / \S+ ms\s+\S+x / \S+x\s+no \(Python\)$",
                    engines[3]), engines
    assert len(engines) == 4 and not any(line.startswith("shaper") for line in engines), engines

    # validate --json: the same figures; the results file written (schema-checked) holds them too.
    code, out, err = run_cli(["validate", "--registry", str(onnx_project), "--latency-seconds", "0.02", "--json"], capsys)
    document = json.loads(out)
    latency = next(c for c in document["models"]["voice"]["checks"] if c["name"] == "latency")
    assert {"block_size", "sample_rate", "block_ms", "rtf", "target_rtf", "judged"} <= set(latency["figures"])
    written = json.loads((onnx_project.parent / "models" / "validation_results.json").read_text(encoding="utf-8"))
    assert next(c for c in written["models"]["voice"]["checks"] if c["name"] == "onnx.latency")["figures"]["block_size"] == 16


def test_results_schema_requires_the_block_figures_of_a_block_timing():
    from modelreg.schemas import schema_problems

    figures = {"mean_ms": 1.0, "p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0, "iterations": 10, "warmup": 2,
               "stat": "p99", "target_ms": 1.333, "block_size": 64, "sample_rate": 48000.0, "block_ms": 1.333,
               "rtf": 1.333, "target_rtf": 1.0, "judged": True}

    def document(figures):
        check = {"name": "latency", "status": "pass", "message": "", "figures": figures}
        return {"format": 1, "ok": True, "registry": "r", "problems": [], "warnings": [],
                "environment": {"python": "3", "torch": "2", "platform": "p", "modelreg": "0",
                                "time": "2024-01-01T00:00:00+00:00"},
                "models": {"m": {"ok": True, "seconds": 1.0, "checks": [check]}}}

    assert schema_problems(document(figures), "validation_results") == []
    without_rtf = {k: v for k, v in figures.items() if k != "rtf"}
    assert [p.key for p in schema_problems(document(without_rtf), "validation_results")] == [
        "models.m.checks[0].figures.rtf"]
    assert schema_problems(document({**figures, "block_size": 0}), "validation_results")
    assert schema_problems(document({**figures, "rtf": None}), "validation_results") == []  # immeasurably fast


def test_show_says_the_audio_rate_and_the_target_per_block(tmp_path, capsys):
    from conftest import run_cli

    path = write(tmp_path, audio_entry(), audio_entry("strict", keys="latency_ms = 0.5\nsample_rate = 96000\nblock_size = 256"))
    code, out, _ = run_cli(["show", "shaper", "--registry", str(path)], capsys)
    assert code == 0
    assert "  audio rate   48 kHz, 64-sample blocks (1.33 ms each), one frame per sample\n" in out
    assert "  latency      p99 <= 1.333 ms per block (the block's duration)\n" in out
    code, out, _ = run_cli(["show", "strict", "--registry", str(path)], capsys)
    assert "  audio rate   96 kHz, 256-sample blocks (2.67 ms each), one frame per sample\n" in out
    assert "  latency      p99 <= 0.5 ms per block (the entry's latency_ms; a block lasts 2.67 ms)\n" in out
    # --json: the entry as written, plus the block's duration and the target it derives.
    import json

    code, out, _ = run_cli(["show", "shaper", "--registry", str(path), "--json"], capsys)
    shown = json.loads(out)
    assert (shown["sample_rate"], shown["block_size"]) == (48000, 64) and "latency_ms" not in shown
    assert shown["block_ms"] == shown["latency_target_ms"] == pytest.approx(4 / 3)
    code, out, _ = run_cli(["list", "--registry", str(path), "--json"], capsys)
    assert json.loads(out)["models"]["strict"]["latency_target_ms"] == 0.5


# ---------------------------------------------------------------- the HTML report


def block_check(name: str, status: str, p99: float, *, judged: bool, target: float = 64 / 48, message: str = "",
                **extra) -> dict:
    figures = {"mean_ms": p99 * 0.8, "p50_ms": p99 * 0.7, "p95_ms": p99 * 0.9, "p99_ms": p99, "max_ms": p99 * 1.5,
               "iterations": 100, "warmup": 5, "stat": "p99", "target_ms": target, "threads": 1, "block_size": 64,
               "sample_rate": 48000.0, "block_ms": 1.333333, "rtf": float(f"{1.333333 / p99:.4g}"),
               "target_rtf": float(f"{1.333333 / target:.4g}"), "judged": judged, **extra}
    return {"name": name, "status": status, "message": message or f"{name} timed", "figures": figures}


CPP_FIGURES = {"clock_overhead_ns": 20.0, "rtneural": "/opt/RTNeural", "backend": "eigen", "compiler": "g++ 12"}


def audio_document(registry: str) -> dict:
    """Two audio-rate models: one in real time in C++ (torch and onnxruntime far from it, not judged),
    one whose C++ block misses its target."""
    fast = [{"name": "entry", "status": "pass", "message": "registry entry is valid", "figures": {"params": 16}},
            block_check("latency", "pass", 76.6, judged=False),
            block_check("rtneural.dynamic_latency", "pass", 0.00875, judged=True, **CPP_FIGURES),
            block_check("onnx.latency", "pass", 13.3, judged=False)]
    slow = [{"name": "entry", "status": "pass", "message": "registry entry is valid", "figures": {"params": 16}},
            block_check("latency", "pass", 150.0, judged=False),
            block_check("rtneural.dynamic_latency", "fail", 2.1, judged=True, **CPP_FIGURES)]
    return {"format": 1, "ok": False, "registry": registry,
            "environment": {"python": "3.11.7", "torch": "2.13.0", "platform": "Linux", "modelreg": "0.1.0",
                            "time": "2026-11-30T12:00:00+00:00"},
            "problems": [], "warnings": [],
            "models": {"shaper": {"ok": True, "seconds": 1.0, "checks": fast},
                       "heavy": {"ok": False, "seconds": 1.0, "checks": slow}}}


@pytest.fixture
def audio_page(tmp_path: Path) -> tuple[Path, str]:
    from modelreg.html_report import render_report
    from modelreg.schemas import schema_problems

    registry = write(tmp_path / "project", audio_entry(), audio_entry("heavy"))
    document = audio_document(str(registry))
    assert schema_problems(document, "validation_results") == []
    return registry, render_report(document, load_registry(registry))


def chart(page: str, model: str) -> str:
    import re

    section = page[page.index(f'id="model-{model}"'):]
    section = section[: section.index("</section>")]
    match = re.search(r'<svg class="chart latency".*?</svg>', section, re.S)
    assert match
    return match[0]


def test_report_draws_blocks_with_the_real_time_factor(audio_page):
    _, page = audio_page
    svg = chart(page, "shaper")
    assert "latency per block per runtime" in svg
    # The C++ block is judged: passing, green value, its real-time factor in the label.
    assert '<text class="value pass"' in svg and "p99 0.00875 ms/blk, 152x RT</text>" in svg
    # torch and onnxruntime are timed for comparison: neutral, said so.
    assert "p99 76.6 ms/blk, 0.0174x RT (not judged)</text>" in svg
    assert "p99 13.3 ms/blk, 0.1x RT (not judged)</text>" in svg
    assert svg.count('class="runtime info"') == 2 and svg.count('class="runtime pass"') == 1
    assert "target p99 \u2264 1.33 ms/blk" in svg
    # Under the chart: what a block is, what RT means, who is not judged.
    assert ("Audio rate, 48 kHz, 64-sample blocks: each bar is the time of one block (64 calls of one sample, as a "
            "host&#x27;s audio callback makes them), which lasts 1.33 ms; RT is the real-time factor") in page
    assert "Not judged, for comparison only: torch, onnx (onnxruntime) (called from Python once per sample)" in page
    # The overview: per block, with the factor.
    assert "rtneural (C++ parseJson): p99 0.00875 ms / 1.33 ms per block, 152x real time" in page
    assert "torch: p99 76.6 ms / 1.33 ms per block, 0.0174x real time (not judged)" in page


def test_report_says_what_to_do_when_a_block_misses_its_target(audio_page):
    _, page = audio_page
    svg = chart(page, "heavy")
    assert '<text class="value fail"' in svg and "p99 2.10 ms/blk, 0.635x RT</text>" in svg
    heavy = page[page.index('id="model-heavy"'):]
    assert "A block slower than its target makes the host&#x27;s callback miss its deadline: a dropout." in heavy
    shaper = page[page.index('id="model-shaper"'):page.index('id="model-heavy"')]
    assert "dropout" not in shaper


def test_report_real_time_section_lists_the_judged_block_timing(audio_page):
    """The 'On the audio thread (C++)' section: the C++ block timing with its real-time factor (torch and
    onnxruntime, not judged, stay in the chart only); what to do when it failed."""
    _, page = audio_page
    shaper = page[page.index('id="model-shaper"'):page.index('id="model-heavy"')]
    section = shaper[shaper.index("On the audio thread (C++)"):]
    section = section[:section.index("</table></div>")]
    assert "rtneural.dynamic_latency" in section and "onnx.latency" not in section
    assert "What to do" not in section
    heavy = page[page.index('id="model-heavy"'):]
    section = heavy[heavy.index("On the audio thread (C++)"):]
    section = section[:section.index("</table></div>")]
    assert "<b>What to do:</b> A block slower than its target" in section


def test_report_of_other_models_has_no_audio_note(tmp_path):
    from modelreg.html_report import render_report

    registry = write(tmp_path / "project", audio_entry(keys="latency_ms = 1.0"))
    check = {"name": "latency", "status": "pass", "message": "p99 0.01 ms", "figures": {
        "mean_ms": 0.01, "p50_ms": 0.01, "p95_ms": 0.01, "p99_ms": 0.01, "max_ms": 0.02, "iterations": 200,
        "warmup": 20, "stat": "p99", "target_ms": 1.0, "threads": 1}}
    document = audio_document(str(registry))
    document["models"] = {"shaper": {"ok": True, "seconds": 1.0, "checks": [check]}}
    page = render_report(document, load_registry(registry))
    assert "Audio rate" not in page and "/blk" not in page and "p99 0.01 ms</text>" in chart(page, "shaper")
    assert 'class="engines"' not in page  # no engine comparison: not an audio-rate model


def test_report_compares_the_engines_of_an_audio_rate_model(tmp_path):
    """One model, every engine (issue 20, section 4): a table per audio-rate model with each engine's parity
    against torch and its real-time factor at the median block and at the judged statistic; an engine whose
    checks were skipped says why; a model without block timings has no such table."""
    import re

    from modelreg.html_report import render_report
    from modelreg.schemas import schema_problems

    registry = write(tmp_path / "project", audio_entry(), audio_entry("heavy"))
    document = audio_document(str(registry))

    def parity(name: str, error: float, status: str = "pass") -> dict:
        return {"name": name, "status": status, "message": f"error {error}", "figures": {
            "max_error": error / 2, "max_abs_error": error, "tolerance": 1e-5, "cases": {"zeros": error},
            **({"rtneural": "/opt/RTNeural", "backend": "eigen", "compiler": "g++ 12"} if "dynamic" in name else {})}}

    skipped = "NAM's C++ engine is not configured: set MODELREG_NAM_CORE to a NeuralAmpModelerCore checkout"
    document["models"]["shaper"]["checks"] += [
        parity("rtneural.dynamic_parity", 3e-8), parity("onnx.parity", 2e-7, "fail"),
        parity("rtneural-cpp.parity", 4e-9), block_check("rtneural-cpp.latency", "pass", 0.0086, judged=True, **CPP_FIGURES),
        {"name": "nam.parity", "status": "skip", "message": skipped, "figures": {}},
        {"name": "nam.latency", "status": "skip", "message": skipped, "figures": {}}]
    assert schema_problems(document, "validation_results") == []
    page = render_report(document, load_registry(registry))
    shaper = page[page.index('id="model-shaper"'):page.index('id="model-heavy"')]
    table = shaper[shaper.index('<div class="engines"><h3>Engines</h3>'):]
    table = table[:table.index("</div>")]
    rows = re.findall(r'<tr class="(\w+)" data-engine="([^"]+)">(.*?)</tr>', table)
    assert [(status, name) for status, name, _ in rows] == [
        ("pass", "latency"), ("pass", "rtneural.dynamic_latency"), ("fail", "onnx.latency"),
        ("pass", "rtneural-cpp.latency"), ("skip", "nam.latency")]
    cells = {name: re.findall(r"<td>(.*?)</td>", body) for _, name, body in rows}
    assert cells["latency"] == ["torch (Python)", "reference", "0.0249x (53.6 ms)", "0.0174x (76.6 ms)",
                                "no: from Python, for comparison"]
    assert cells["rtneural.dynamic_latency"] == ["RTNeural C++ (parseJson)", "3e-08", "218x (0.00613 ms)",
                                                 "152x (0.00875 ms)", "yes"]
    assert cells["onnx.latency"][:2] == ["onnxruntime (Python)", "2e-07 (fail)"]  # its parity failed
    assert cells["rtneural-cpp.latency"][:4] == ["RTNeural C++ (compiled header)", "4e-09", "221x (0.00602 ms)",
                                                 "155x (0.0086 ms)"]
    assert cells["nam.latency"][:4] == ["NAM&#x27;s engine (C++)", "skip", "skip", "skip"]
    assert "set MODELREG_NAM_CORE to a NeuralAmpModelerCore checkout" in cells["nam.latency"][4]
    assert "<th>real time, p99 block</th>" in table and "at 48 kHz, 64-sample blocks" in table


def test_report_of_audio_blocks_fits_in_the_browser(audio_page, tmp_path):
    """No label of an audio-rate latency chart is clipped in Chromium (skips where it is not installed)."""
    import html
    import json
    import re

    from test_report_browser import MEASURE, run_chromium

    registry, page = audio_page
    for window in ("1200,2400", "700,2400"):
        measured = tmp_path / "measured.html"
        measured.write_text(page.replace("</body>", MEASURE % "not measured" + "</body>"), encoding="utf-8")
        dom = run_chromium([f"--window-size={window}", "--dump-dom", measured.as_uri()], tmp_path / "profile").stdout
        found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
        assert found and found[1] != "not measured"
        result = json.loads(html.unescape(found[1]))
        assert result["charts"] == 4  # layers and latency of each model
        assert result["overflows"] == [], [(o["chart"], o["text"]) for o in result["overflows"]]


# ---------------------------------------------------------------- the pytest plugin


def test_pytest_plugin_items_carry_the_block_figures(pytester, onnx_project):
    import shutil
    import xml.etree.ElementTree as ET

    shutil.copytree(onnx_project.parent, pytester.path, dirs_exist_ok=True)
    result = pytester.runpytest_subprocess("--modelreg", "registry.toml", "-k", "voice and latency",
                                           "--modelreg-latency-seconds", "0.02", "--junitxml=out.xml")
    assert result.ret == 0, result.stdout.str()
    cases = {c.get("name"): c for c in ET.parse(pytester.path / "out.xml").iter("testcase")}
    assert set(cases) == {"latency", "onnx.latency"}
    for name, case in cases.items():
        properties = {p.get("name"): p.get("value") for p in case.iter("property")}
        assert {"p99_ms", "block_size", "sample_rate", "block_ms", "rtf", "target_rtf", "judged"} <= set(properties), name
        assert properties["block_size"] == "16" and properties["judged"] == "False"
        assert float(properties["rtf"]) == pytest.approx(float(properties["block_ms"]) / float(properties["p99_ms"]),
                                                         rel=2e-3)


# ---------------------------------------------------------------- RTNeural C++ (the judged runtime)


@needs_rtneural
@pytest.mark.parametrize(("keys", "status"), [
    ("sample_rate = 48000\nblock_size = 64", "pass"),  # a 16-parameter model: far faster than real time
    ("latency_ms = 1e-9\nsample_rate = 48000\nblock_size = 64", "fail"),  # no block is that fast
])
def test_cpp_latency_times_blocks_and_judges_them(tmp_path, cpp, keys, status):
    import re

    path = write(tmp_path / "project", audio_entry(keys=keys, exports='["rtneural", "rtneural-cpp"]'))
    registry = load_registry(path)
    modelreg.init_checkpoint(registry["shaper"], seed=1)
    assert modelreg.export_all(registry).ok
    report = modelreg.validate_all(path, latency_seconds=0.05, write=False)["shaper"]
    check = report["rtneural.dynamic_latency"]
    assert check.status == status, check.message
    figures = check.figures
    assert figures["block_size"] == 64 and figures["sample_rate"] == 48000.0 and figures["judged"] is True
    assert figures["rtf"] == pytest.approx(figures["block_ms"] / figures["p99_ms"], rel=2e-3)
    assert {"clock_overhead_ns", "rtneural", "backend", "compiler"} <= set(figures)  # what the results schema requires
    target = r"1\.33 ms \(the block's duration\)" if status == "pass" else "1e-09 ms"
    assert re.fullmatch(rf"RTNeural C\+\+ dynamic model \(parseJson, stl\): p99 \S+ ms per block vs target {target}: "
                        r"\S+x real time at 48 kHz, 64-sample blocks \(\d+ blocks\)", check.message), check.message
    # The compiled header's model (the rtneural-cpp export) is timed the same way and judged the same way.
    header = report["rtneural-cpp.latency"]
    assert header.status == status, header.message
    assert header.figures["judged"] is True and header.figures["block_size"] == 64
    assert {"clock_overhead_ns", "rtneural", "backend", "compiler"} <= set(header.figures)
    assert re.fullmatch(rf"RTNeural C\+\+ compiled header \(ModelT, json weights, stl\): p99 \S+ ms per block vs target "
                        rf"{target}: \S+x real time at 48 kHz, 64-sample blocks \(\d+ blocks\)", header.message), header.message


def test_engine_comparison_pairs_each_timing_with_its_parity():
    """modelreg.audio.engine_comparison: torch first (the reference), then each exporter's block timing with the
    parity check of the same name, a plugin's format included; a check that failed before measuring gives its
    message as the reason; a model without block timings has no comparison."""
    from modelreg.audio import engine_comparison
    from modelreg.report import CheckResult

    broke = "the runner did not build: g++ exited 1"
    checks = [CheckResult("latency", "pass", "t", block_check("latency", "pass", 40.0, judged=False)["figures"]),
              CheckResult("myfmt.parity", "pass", "p", {"max_error": 0.0, "max_abs_error": 1e-7, "tolerance": 1e-5}),
              CheckResult("myfmt.latency", "pass", "t", block_check("myfmt.latency", "pass", 0.1, judged=True)["figures"]),
              CheckResult("rtneural.parity", "pass", "numpy", {"max_abs_error": 2e-8}),  # no timing: not an engine
              CheckResult("rtneural.dynamic_parity", "fail", broke),
              CheckResult("rtneural.dynamic_latency", "fail", broke)]
    rows = engine_comparison(checks)
    assert [(r.engine, r.parity_check, r.parity_status) for r in rows] == [
        ("torch (Python)", None, "reference"), ("myfmt", "myfmt.parity", "pass"),
        ("RTNeural C++ (parseJson)", "rtneural.dynamic_parity", "fail")]
    assert rows[1].max_abs_error == 1e-7 and rows[1].rtf == pytest.approx(13.33) and rows[1].judged is True
    assert rows[1].rtf_p50 == pytest.approx(1.333333 / 0.07) and rows[1].reason == ""
    assert rows[2].rtf is None and rows[2].latency_status == "fail" and rows[2].reason == broke
    per_frame = [CheckResult("latency", "pass", "t", {"p50_ms": 0.1, "p99_ms": 0.2, "stat": "p99"})]
    assert engine_comparison(per_frame) == [] and engine_comparison(checks, audio_rate=False) == []
