"""`modelreg report`: the HTML page, its charts, its inputs and its failure paths (no browser here;
tests/test_report_browser.py renders it in Chromium)."""

from __future__ import annotations

import copy
import html.parser
import json
import re
from pathlib import Path

import pytest

from conftest import write_registry
from modelreg.cli import main
from modelreg.html_report import load_results, registry_for_results, render_report, runtime_label, write_report

REGISTRY = """\
[models.alpha]
description = "a dense model"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = 43
latency_ms = 5.0
exports = ["rtneural", "onnx"]
checkpoint = "models/alpha.pt"
layers = [
    { type = "dense", units = 5, activation = "tanh" },
    { type = "dense", units = 3, activation = "softmax" },
]

[models.beta]
description = "a recurrent model"
input_shape = [1, 3]
output_shape = [1, 2]
dtype = "float32"
params = 80
latency_ms = 0.05
latency_stat = "p95"
exports = ["rtneural"]
checkpoint = "models/beta.pt"
layers = [
    { type = "dense", units = 4, activation = "tanh" },
    { type = "lstm", units = 2 },
]
"""


def _check(name: str, status: str, message: str = "", **figures) -> dict:
    return {"name": name, "status": status, "message": message, "figures": figures}


def _latency(p50: float, target: float | None = None, stat: str | None = None) -> dict:
    figures = {"mean_ms": p50 * 1.1, "p50_ms": p50, "p95_ms": p50 * 1.5, "p99_ms": p50 * 2, "max_ms": p50 * 9,
               "iterations": 500}
    if target is not None:
        figures["target_ms"] = target
    if stat is not None:
        figures["stat"] = stat
    return figures


CPP = {"rtneural": "/opt/RTNeural", "backend": "eigen", "compiler": "g++ (Debian 12.2.0) 12.2.0"}


def results_document(registry: str = "/nowhere/registry.toml") -> dict:
    """Results as `modelreg validate` writes them, plus checks of a C++ runtime (latency, parity)."""
    alpha = [_check("entry", "pass", "registry entry is valid", params=43),
             _check("build", "pass", "2 layers"),
             _check("latency", "pass", "p99 0.08 ms", **_latency(0.04, 5.0, "p99")),
             # The C++ runtime's check, with the figures the results schema requires of it.
             _check("rtneural.dynamic_latency", "pass", "p99 0.006 ms", **_latency(0.003, 5.0, "p99"), warmup=100,
                    clock_overhead_ns=20.0, **CPP),
             _check("rtneural.parity", "pass", "error 0 <= tolerance 1e-05", max_error=0.0, max_abs_error=1e-7,
                    tolerance=1e-5, cases={"zeros": 2e-8, "normal": 1e-7}),
             _check("rtneural.dynamic_parity", "pass", "error 3e-07 <= tolerance 1e-05", max_error=3e-7,
                    max_abs_error=3e-7, tolerance=1e-5, cases={"zeros": 3e-7}, **CPP),
             _check("onnx.parity", "pass", "error 0 <= tolerance 1e-05", max_error=0.0, max_abs_error=6e-8,
                    tolerance=1e-5, cases={"zeros": 6e-8})]
    beta = [_check("entry", "pass", "registry entry is valid", params=80),
            _check("latency", "fail", "p95 0.3 ms vs target 0.05 ms", **_latency(0.2, 0.05, "p95")),
            _check("rtneural.parity", "fail", "error 0.25 > tolerance 1e-05 <script>alert(1)</script>",
                   max_error=0.25, max_abs_error=0.25, tolerance=1e-5, cases={"normal": 0.25}),
            _check("rtneural.dynamic_latency", "skip", "not run: RTNeural's C++ headers not found"),
            _check("onnx.parity", "skip", "not run: no artifact"),
            _check("determinism", "error", "unexpected ValueError at checks.py:1: boom")]
    gamma = [_check("entry", "fail", "registry.toml: models.gamma.params: wrong"),
             _check("build", "skip", "not run: the registry entry is invalid")]
    return {"format": 1, "ok": False, "registry": registry,
            "environment": {"python": "3.11.7", "torch": "2.13.0", "platform": "Linux", "modelreg": "0.1.0",
                            "time": "2026-11-30T12:00:00+00:00"},
            "problems": ["registry.toml: models.gamma.params: wrong"], "warnings": [],
            "models": {"alpha": {"ok": True, "seconds": 1.0, "checks": alpha},
                       "beta": {"ok": False, "seconds": 2.0, "checks": beta},
                       "gamma": {"ok": False, "seconds": 0.0, "checks": gamma}}}


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Path]:
    """A registry and a results file naming it."""
    registry = write_registry(tmp_path / "project", text=REGISTRY)
    results = registry.parent / "models" / "validation_results.json"
    results.parent.mkdir()
    results.write_text(json.dumps(results_document(str(registry)), indent=2))
    return registry, results


def _svg(page: str, kind: str, model: str) -> str:
    section = page[page.index(f'id="model-{model}"'):]
    section = section[: section.index("</section>")]
    match = re.search(rf'<svg class="chart {kind}".*?</svg>', section, re.S)
    assert match, f"no {kind} chart for {model}"
    return match[0]


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.style = ""
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.style += data


def test_the_results_document_is_what_validate_writes():
    from modelreg.schemas import schema_problems

    assert schema_problems(results_document(), "validation_results") == []


def test_the_page_is_self_contained(project):
    registry, results = project
    page = render_report(load_results(results), load_registry_lenient(registry))
    parser = _Tags()
    parser.feed(page)
    tags = {tag for tag, _ in parser.tags}
    assert not tags & {"script", "link", "iframe", "img", "object", "embed", "base"}
    for tag, attrs in parser.tags:
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert "//" not in (value or ""), (tag, name, value)  # nothing fetched, no xmlns needed
    assert "url(" not in parser.style and "@import" not in parser.style and "@font-face" not in parser.style
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page


def load_registry_lenient(path: Path):
    import modelreg

    return modelreg.load_registry(path, strict=False)


def test_a_latency_chart_per_runtime_against_the_target(project):
    registry, results = project
    page = render_report(load_results(results), load_registry_lenient(registry))
    alpha = _svg(page, "latency", "alpha")
    assert re.findall(r'data-check="([^"]+)"', alpha) == ["latency", "rtneural.dynamic_latency"]
    assert ">torch<" in alpha and ">rtneural (C++ parseJson)<" in alpha
    # p50, p95 and p99 bars per runtime, the max, and one target line per row at the entry's 5 ms.
    assert alpha.count('class="bar p50"') == 2 and alpha.count('class="bar p99"') == 2 and alpha.count('class="max"') == 2
    assert alpha.count('class="target"') == 2 and "target p99 \u2264 5.00 ms" in alpha
    assert '<g class="runtime pass"' in alpha and '<g class="runtime fail"' not in alpha
    # beta misses its p95 target (0.3 ms > 0.05 ms): red bars, the value it is judged on, and the
    # runtime that did not run says why instead of drawing a bar.
    beta = _svg(page, "latency", "beta")
    assert '<g class="runtime fail" data-check="latency"' in beta and "p95 0.3 ms" in beta
    assert "target p95 \u2264 0.05 ms" in beta
    assert "not run: RTNeural&#x27;s C++ headers not found" in beta


def test_bars_are_placed_on_a_log_axis_in_order(project):
    registry, results = project
    alpha = _svg(render_report(load_results(results), load_registry_lenient(registry)), "latency", "alpha")
    torch_row = alpha[alpha.index('data-check="latency"'):alpha.index('data-check="rtneural.dynamic_latency"')]
    widths = {m[0]: float(m[1]) for m in re.findall(r'class="bar (p\d\d)" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', torch_row)}
    assert widths["p50"] < widths["p95"] < widths["p99"]
    # log axis: p99 = 2 x p50 is a fixed distance whatever the magnitude; on the C++ row too.
    cpp = alpha[alpha.index('data-check="rtneural.dynamic_latency"'):]
    cpp_widths = {m[0]: float(m[1]) for m in re.findall(r'class="bar (p\d\d)" x="[\d.]+" y="[\d.]+" width="([\d.]+)"', cpp)}
    assert widths["p99"] - widths["p50"] == pytest.approx(cpp_widths["p99"] - cpp_widths["p50"], abs=0.2)


def test_parity_per_export_against_the_tolerance(project):
    registry, results = project
    page = render_report(load_results(results), load_registry_lenient(registry))
    alpha = _svg(page, "parity", "alpha")
    assert re.findall(r'data-check="([^"]+)"', alpha) == ["rtneural.parity", "rtneural.dynamic_parity", "onnx.parity"]
    assert ">rtneural (C++ parseJson)<" in alpha and alpha.count('class="target"') == 3
    assert alpha.count('<circle class="case"') == 4  # the raw error of each input case (2 + 1 + 1)
    assert "3e-07 \u2264 1e-05" in alpha
    beta = _svg(page, "parity", "beta")
    assert '<g class="export fail" data-check="rtneural.parity"' in beta and "0.25 &gt; 1e-05" in beta
    assert "not run: no artifact" in beta


def test_every_check_with_its_status_and_message_escaped(project):
    registry, results = project
    page = render_report(load_results(results), load_registry_lenient(registry))
    for model in results_document()["models"].values():
        for check in model["checks"]:
            assert f'<td class="mono">{check["name"]}</td>' in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "unexpected ValueError at checks.py:1: boom" in page
    assert "registry.toml: models.gamma.params: wrong" in page  # the registry problem, on top
    # Failing models open their check table; passing ones keep it folded.
    assert re.search(r'id="model-beta".*?<details open>', page, re.S)
    assert not re.search(r'id="model-alpha"[^§]*?<details open>.*?id="model-beta"', page, re.S)


def test_layer_stacks_come_from_the_registry(project):
    registry, results = project
    page = render_report(load_results(results), load_registry_lenient(registry))
    layers = _svg(page, "layers", "beta")
    assert [m for m in re.findall(r'class="label"[^>]*>([^<]+)<', layers)] == ["input", "[0] dense tanh", "[1] lstm"]
    assert ">16 params<" in layers and ">64 params<" in layers  # 3*4+4; 4*(4*2 + 2*2 + 2+2), torch's two biases
    assert "a recurrent model" in page


def test_without_a_registry_the_page_says_why_no_layers_are_shown(project):
    _, results = project
    page = render_report(load_results(results))
    assert '<svg class="chart layers"' not in page
    assert page.count("Layer stack not shown: no registry given.") == 3
    assert '<svg class="chart latency"' in page  # charts need no registry: targets are in the figures
    # beta's target comes from its latency figures, alpha's C++ row has none of its own: it is drawn without.
    assert "target p95 \u2264 0.05 ms" in page


def test_a_changed_entry_is_pointed_out(project):
    registry, results = project
    registry.write_text(REGISTRY.replace("units = 5", "units = 6").replace("params = 43", "params = 51"))
    page = render_report(load_results(results), load_registry_lenient(registry))
    assert "changed since this run (43 parameters then, 51 now)" in page


def test_the_registry_named_by_the_results_is_used_when_it_is_there(project, tmp_path):
    registry, results = project
    found, note = registry_for_results(load_results(results))
    assert found is not None and found.path.resolve() == registry.resolve() and note is None
    moved = copy.deepcopy(results_document(str(tmp_path / "gone" / "registry.toml")))
    found, note = registry_for_results(moved)
    assert found is None and "is not there; pass --registry to show layers" in note


def test_runtime_labels():
    assert runtime_label("latency", "latency") == "torch"
    assert runtime_label("rtneural.dynamic_latency", "latency") == "rtneural (C++ parseJson)"
    assert runtime_label("onnx.parity", "parity") == "onnx (onnxruntime)"
    assert runtime_label("rtneural.dynamic_parity", "parity") == "rtneural (C++ parseJson)"
    # Issue 23: the reference runtime, the dynamic loader and the compiled header never read alike.
    assert runtime_label("rtneural.parity", "parity") == "rtneural (numpy reference)"
    assert runtime_label("rtneural-cpp.parity", "parity") == "rtneural-cpp (C++ ModelT header)"
    assert runtime_label("rtneural.cpp_latency", "latency") == "rtneural (C++)"  # results written before the rename
    assert runtime_label("tflite.gpu_latency", "latency") == "tflite (gpu)"


def test_nan_figures_do_not_break_the_page(project):
    registry, results = project
    document = load_results(results)
    document["models"]["beta"]["checks"][2]["figures"].update(max_error="nan", max_abs_error="nan")
    page = render_report(document, load_registry_lenient(registry))
    assert "error 0.25 &gt; tolerance" in _svg(page, "parity", "beta")  # no bar: the message instead


# ---------------------------------------------------------------- command line


def test_report_command_writes_the_page_beside_the_results(project, capsys):
    registry, results = project
    assert main(["report", "--registry", str(registry)]) == 0
    out = results.parent / "validation_report.html"
    assert capsys.readouterr().out.strip().endswith("validation_report.html (3 models, 1 passed)")
    page = out.read_text()
    assert page.count('<svg class="chart latency"') == 2 and page.count('<svg class="chart layers"') == 2
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_report_with_results_only_uses_the_registry_they_name(project, tmp_path, capsys):
    _, results = project
    assert main(["report", "--results", str(results), "-o", str(tmp_path / "r.html")]) == 0
    assert '<svg class="chart layers"' in (tmp_path / "r.html").read_text()
    document = json.loads(results.read_text())
    document["registry"] = str(tmp_path / "moved" / "registry.toml")
    results.write_text(json.dumps(document))
    assert main(["report", "--results", str(results), "-o", str(tmp_path / "r.html")]) == 0
    assert "is not there; pass --registry" in capsys.readouterr().err
    assert "Layer stack not shown" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize(("content", "message"), [
    (None, "validation results not found (`modelreg validate` writes them after a full run)"),
    ("{not json", ":1:2: not valid JSON: Expecting property name enclosed in double quotes"),
    ("[1, 2]", "not a validation results file (expected the JSON object `modelreg validate` writes"),
    ('{"models": {}}', "format: missing required key"),
    (b"\xff\xfe", "not a validation results file (expected UTF-8 JSON"),
])
def test_bad_results_files_exit_2_with_the_file_named(tmp_path, capsys, content, message):
    path = tmp_path / "results.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert main(["report", "--results", str(path), "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("modelreg: error: ") and re.search(re.escape(str(path)) + r":? ?" + re.escape(message), err) and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_report_output_must_be_an_html_file(project, capsys, tmp_path):
    registry, _ = project
    with pytest.raises(SystemExit) as exit_info:
        main(["report", "--registry", str(registry), "-o", str(tmp_path / "r.txt")])
    assert exit_info.value.code == 2
    assert "expected a file name ending in .html" in capsys.readouterr().err
    (tmp_path / "d.html").mkdir()
    assert main(["report", "--registry", str(registry), "-o", str(tmp_path / "d.html")]) == 2
    assert "expected a file to write the report to, found a directory" in capsys.readouterr().err


def test_validate_report_writes_the_page_of_the_run(tiny_registry, capsys, tmp_path):
    out = tmp_path / "run.html"
    code = main(["validate", "--registry", str(tiny_registry), "tinydense", "--latency-seconds", "0.02",
                 "--report", str(out)])
    assert code == 0
    assert f"report: {out} (partial: tinydense)\n" in capsys.readouterr().out  # the page given, saying what it holds
    page = out.read_text()
    assert 'id="model-tinydense"' in page and 'id="model-tinylstm"' not in page  # the models of this run
    assert '<g class="runtime pass" data-check="latency"' in page and '<svg class="chart layers"' in page
    # Model names go before --report; a name after it is refused rather than used as a file name.
    with pytest.raises(SystemExit):
        main(["validate", "--registry", str(tiny_registry), "--report", "tinydense"])
    assert "(model names go before --report)" in capsys.readouterr().err


def test_validate_names_report_leaves_the_whole_registry_report_alone(tiny_registry, capsys):
    """Issue 23: `validate NAME --report` replaced the whole-registry report with a one-model page.
    As the results file, the default report is written by a full run only; a run of named models
    writes its page beside it, under a name that says it is partial."""
    models = tiny_registry.parent / "models"
    full, partial = models / "validation_report.html", models / "validation_report.partial.html"
    assert main(["validate", "--registry", str(tiny_registry), "--latency-seconds", "0.02", "--report"]) == 0
    assert f"report: {full}\n" in capsys.readouterr().out
    whole = full.read_bytes()
    assert all(f'id="model-{name}"'.encode() in whole for name in ("tinydense", "tinylstm", "tinygru"))
    results = (models / "validation_results.json").read_bytes()

    assert main(["validate", "--registry", str(tiny_registry), "tinygru", "tinydense", "--latency-seconds", "0.02",
                 "--report"]) == 0
    out = capsys.readouterr().out
    assert f"report: {partial} (partial: tinygru, tinydense; {full} is written by a full run)\n" in out
    assert full.read_bytes() == whole and (models / "validation_results.json").read_bytes() == results
    page = partial.read_text()
    assert 'id="model-tinygru"' in page and 'id="model-tinydense"' in page and 'id="model-tinylstm"' not in page


def test_write_report_takes_a_validation_report(tiny_registry, tmp_path):
    import modelreg

    registry = modelreg.load_registry(tiny_registry)
    report = modelreg.validate("tinygru", registry, latency_seconds=0.02)
    path = modelreg.write_report(tmp_path / "r.html", report, registry)
    assert 'data-check="latency"' in path.read_text() and "[0] gru" in path.read_text()


# ---------------------------------------------------------------- failed checks, long texts


def test_failed_checks_without_figures_are_rows_that_say_why(project):
    """A check that failed or errored may record no figures, or only some (issue 23: a failed
    `rtneural.dynamic_latency` has no `p99_ms`): each is a row with its reason, never a KeyError."""
    registry, results = project
    document = load_results(results)
    alpha = document["models"]["alpha"]
    alpha["ok"] = False
    by_name = {c["name"]: c for c in alpha["checks"]}
    by_name["rtneural.dynamic_latency"].update(status="fail", message="the runner did not build: g++ exited 1", figures={})
    by_name["rtneural.dynamic_parity"].update(status="error", message="unexpected KeyError at runner.py:3: 'x'", figures={})
    by_name["latency"].update(status="error", message="interrupted", figures={"p50_ms": 0.1, "p99_ms": "nan"})
    by_name["onnx.parity"].update(status="fail", message="onnxruntime failed", figures={"max_error": 0.5})
    by_name["entry"]["figures"] = {}
    document["models"]["beta"]["checks"].append(_check("rtneural.dynamic_parity", "fail", "no compiler", stat="p99"))
    page = render_report(document, load_registry_lenient(registry))
    latency, parity = _svg(page, "latency", "alpha"), _svg(page, "parity", "alpha")
    assert "data-check" not in latency  # no bars: neither row measured all of p50, p95, p99
    assert ">the runner did not build: g++ exited 1<" in latency and ">interrupted<" in latency
    assert ">unexpected KeyError at runner.py:3: &#x27;x&#x27;<" in parity
    assert '<g class="export fail" data-check="onnx.parity"' in parity and ">0.5<" in parity  # an error, no tolerance
    assert ">no compiler<" in _svg(page, "parity", "beta")
    overview = page[page.index('<table class="overview">'):page.index("</table>")]
    assert "rtneural (C++ parseJson): p99" not in overview
    assert "0.25 beyond float32 rounding (max abs 0.25, rtneural (numpy reference))" in overview


def test_a_validate_run_whose_cpp_checks_failed_is_reported(tiny_registry, tmp_path, monkeypatch):
    """The issue's repro: MODELREG_RTNEURAL pointing at the inner RTNeural/ folder makes both C++
    checks fail with no figures; the report of that very run is written, each row saying why."""
    import modelreg
    from modelreg.exporting import export_all

    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["rtneural"]', 1))
    registry = modelreg.load_registry(tiny_registry)
    export_all(registry, names=["tinydense"])
    inner = tmp_path / "rtneural" / "RTNeural"
    inner.mkdir(parents=True)
    (inner / "RTNeural.h").write_text("")
    monkeypatch.setenv("MODELREG_RTNEURAL", str(inner))
    report = modelreg.validate("tinydense", registry, latency_seconds=0.02)
    failed = {c.name: c for c in report["tinydense"].checks if c.name.startswith("rtneural.dynamic_")}
    assert {c.status for c in failed.values()} == {"fail"} and not any(c.figures for c in failed.values())
    page = modelreg.write_report(tmp_path / "r.html", report, registry).read_text()
    latency, parity = _svg(page, "latency", "tinydense"), _svg(page, "parity", "tinydense")
    assert 'data-check="latency"' in latency and 'data-check="rtneural.dynamic_latency"' not in latency
    assert 'class="note fail"' in latency and 'class="note fail"' in parity and "MODELREG_RTNEURAL" in latency


def test_long_reasons_are_wrapped_whole_in_the_chart(project):
    """The reason a row did not run is wrapped onto lines inside the chart, not cut at the SVG's edge."""
    from modelreg.rtneural.cpp import HOW_TO_CONFIGURE

    registry, results = project
    document = load_results(results)
    reason = f"RTNeural C++ is not configured: {HOW_TO_CONFIGURE}"
    document["models"]["beta"]["checks"][3]["message"] = reason
    beta = _svg(render_report(document, load_registry_lenient(registry)), "latency", "beta")
    lines = re.findall(r"<tspan[^>]*>([^<]*)</tspan>", beta)
    assert len(lines) > 1 and " ".join(lines) == reason.replace("'", "&#x27;")
    # A reason longer than a row's lines is cut with an ellipsis, the whole of it in a tooltip.
    document["models"]["beta"]["checks"][3]["message"] = "word " * 200
    beta = _svg(render_report(document, load_registry_lenient(registry)), "latency", "beta")
    lines = re.findall(r"<tspan[^>]*>([^<]*)</tspan>", beta)
    assert len(lines) == 4 and lines[-1].endswith("\u2026") and f"<title>{'word ' * 200}</title>" in beta
    # A word wider than a line (a long path) is split across lines, not left to run out of the chart.
    path = "/a-rather-long-folder-name" * 6 + "/beta.onnx"
    document["models"]["beta"]["checks"][3]["message"] = f"{path} does not exist"
    beta = _svg(render_report(document, load_registry_lenient(registry)), "latency", "beta")
    lines = re.findall(r"<tspan[^>]*>([^<]*)</tspan>", beta)
    assert len(lines) > 2 and "".join(lines).startswith(path) and lines[-1].endswith("does not exist")


def test_charts_widen_for_long_labels_and_values(project):
    registry, results = project
    document = load_results(results)
    checks = document["models"]["alpha"]["checks"]
    checks[3]["figures"].update(p50_ms=0.0004055, p95_ms=0.0006, p99_ms=0.000811, max_ms=0.001)
    checks.append(_check("a_plugin_with_a_long_name.parity", "pass", "ok", max_error=3.8e-9, max_abs_error=3.8e-9,
                         tolerance=1e-5, cases={}))
    page = render_report(document, load_registry_lenient(registry))
    for kind, value in (("latency", "p99 0.000811 ms"), ("parity", "3.8e-09 \u2264 1e-05")):
        svg = _svg(page, kind, "alpha")
        width = float(re.search(r'viewBox="0 0 (\d+) ', svg)[1])
        x = float(re.search(rf'x="([\d.]+)" y="[\d.]+">{re.escape(value)}<', svg)[1])
        assert x + 8 * len(value) <= width  # room for 8 px a character (11.5 px text is narrower)
    parity = _svg(page, "parity", "alpha")
    assert float(re.search(r'class="bar err" x="([\d.]+)"', parity)[1]) >= 4 + 6 * len("a_plugin_with_a_long_name")


def test_a_parity_within_rounding_is_said_in_words_not_as_a_second_figure():
    # Issue 23: "worst parity error 0 (rtneural, max abs 3e-08)" put two error figures side by side.
    document = results_document()
    alpha = document["models"]["alpha"]["checks"]
    document["models"]["alpha"]["checks"] = [c for c in alpha if c["name"] != "rtneural.dynamic_parity"]
    page = render_report(document, None)
    overview = page[page.index('<table class="overview">'):page.index("</table>")]
    assert "within float32 rounding (max abs 1e-07, rtneural (numpy reference))" in overview
    assert ">within float32 rounding<" in _svg(page, "parity", "alpha")
    assert ">0 \u2264 1e-05<" not in page


def test_the_real_time_section_shows_what_was_measured_and_what_to_do_on_failure():
    # Issue 22 section 6: a host developer reading the report learns what to do for each failure.
    document = results_document()
    alpha = document["models"]["alpha"]["checks"]
    alpha.append(_check("rtneural-cpp.parity", "pass", "RTNeural C++ compiled header (ModelT): within float32 rounding",
                        max_error=0.0, max_abs_error=1e-7, tolerance=1e-5, cases={"zeros": 1e-7}, load_ms=0.42,
                        weights="embedded"))
    alpha.append(_check("rtneural-cpp.realtime", "fail", "the compiled header: 256 heap calls (6144 bytes); the first: "
                        "operator new(24) in forward() of frame 0", allocations=256))
    alpha.append(_check("rtneural-cpp.denormals", "pass", "silent tail x0.99, 0 subnormal outputs", tail_slowdown=0.99))
    page = render_report(document, None)
    card = page[page.index('id="model-alpha"'):page.index('id="model-beta"')]
    section = card[card.index("On the audio thread (C++)"):card.index("</table>", card.index("On the audio thread"))]
    assert "operator new(24) in forward() of frame 0" in section
    assert "<b>What to do:</b> reset() and forward() run on the audio thread" in section
    assert "construct and set the weights (embedded): 0.42 ms" in section
    assert section.count("What to do") == 1  # passing checks get no advice
    assert "On the audio thread" not in page[page.index('id="model-beta"'):]  # beta ran no such check


def test_the_layer_drawing_names_every_key_that_changes_a_layer():
    # Issue 23: a conv1d was drawn as "[2] conv1d": a TCN's dilations were invisible.
    from modelreg.html_report import layer_chart

    from modelreg import load_registry

    tcn = load_registry(Path(__file__).resolve().parents[1] / "examples" / "tcn" / "registry.toml")
    svg = layer_chart(next(iter(tcn.values())))
    labels = re.findall(r'class="label"[^>]*>([^<]+)<', svg)
    assert "[2] conv1d linear, kernel_size=3, dilation=2, groups=2" in labels
    assert "[3] batchnorm epsilon=1e-05, affine=true" in labels
