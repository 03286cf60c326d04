"""RTNeural's own C++ engine in the loop: runner, checks, headers, cache, broken configurations.

Compiled against the RTNeural checkout beside CI's clone (conftest.SHARED_RTNEURAL) or $MODELREG_RTNEURAL. Builds share one
cache folder per session, so each program compiles once; the STL backend is
used except in one Eigen test (an Eigen build takes 2x longer).
"""

from __future__ import annotations

import json
import re
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest
import torch

import modelreg
from modelreg import LayerSpec, ModelSpec
from modelreg.rtneural import cpp as rc
from modelreg.builder import build_module
from modelreg.errors import ArtifactError, ToolchainError
from modelreg.rtneural.exporter import RTNeuralExporter
from modelreg.rtneural.header import RTNeuralCppExporter, cpp_namespace, render_header, weight_arrays
from modelreg.exporting import export_all
from modelreg.spec import ACTIVATIONS, count_params

from conftest import GOLDEN, ROOT, write_registry, RTNEURAL, needs_rtneural
from kind_tools import run_in_rtneural_cpp, spec_of, widened

CPP_CHECKS = ("rtneural.dynamic_parity", "rtneural.dynamic_realtime", "rtneural.dynamic_latency", "rtneural-cpp.parity",
              "rtneural-cpp.realtime", "rtneural-cpp.denormals")



@pytest.fixture
def unconfigured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(rc.ENV_RTNEURAL, raising=False)
    monkeypatch.delenv(rc.ENV_BACKEND, raising=False)
    monkeypatch.setenv(rc.ENV_CACHE, str(tmp_path / "cache"))


# ---------------------------------------------------------------- not configured


def test_without_rtneural_every_cpp_check_is_skipped_saying_what_to_set(tiny_registry: Path, unconfigured: None) -> None:
    text = tiny_registry.read_text().replace('exports = []', 'exports = ["rtneural", "rtneural-cpp"]')
    tiny_registry.write_text(text)
    exported = export_all(tiny_registry)
    assert exported.ok
    headers = [a for a in exported.artifacts if a.exporter == "rtneural-cpp"]
    assert len(headers) == 3 and all(a.status == "written" and a.path is not None and a.path.is_file() for a in headers)
    assert all(a.message.startswith("parity skipped: RTNeural C++ is not configured") for a in headers)
    assert all("MODELREG_RTNEURAL" in a.message for a in headers)
    report = modelreg.validate_all(tiny_registry, write=True, latency_seconds=0.02)
    assert report.ok
    for model in report.models.values():
        for name in CPP_CHECKS:
            check = model[name]
            assert check.status == "skip", (model.name, name, check)
            assert "MODELREG_RTNEURAL" in check.message and "[settings] rtneural" in check.message
    saved = json.loads((tiny_registry.parent / "models" / "validation_results.json").read_text())
    assert saved["models"]["tinygru"]["checks"][-1]["status"] == "skip"


def test_cli_prints_the_skip_reason_once(tiny_registry: Path, unconfigured: None, capsys: pytest.CaptureFixture[str]) -> None:
    from modelreg.cli import main

    tiny_registry.write_text(tiny_registry.read_text().replace('exports = []', 'exports = ["rtneural"]'))
    assert main(["export", "--registry", str(tiny_registry)]) == 0
    assert main(["validate", "--registry", str(tiny_registry), "--latency-seconds", "0.02"]) == 0
    out = capsys.readouterr().out
    assert "C++ dynamic latency" in out and "C++ dynamic parity" in out
    assert out.count("checks skipped (3 models: rtneural.dynamic_parity, rtneural.dynamic_realtime, rtneural.dynamic_latency): RTNeural C++ is not configured: set MODELREG_RTNEURAL") == 1
    assert main(["validate", "--registry", str(tiny_registry), "--latency-seconds", "0.02", "tinygru"]) == 0
    assert "checks skipped (1 model: " in capsys.readouterr().out


def test_backend_setting_is_checked_by_the_registry_schema(tmp_path: Path) -> None:
    path = write_registry(tmp_path, extra='\n[settings]\nrtneural_backend = "cuda"\n')
    with pytest.raises(modelreg.RegistryError, match="settings.rtneural_backend"):
        modelreg.load_registry(path)


# ---------------------------------------------------------------- the bundled models


@needs_rtneural
def test_bundled_models_match_torch_in_cpp_dynamic_and_compiled(bundled_copy: Path, cpp: Path) -> None:
    export = export_all(bundled_copy, formats=["rtneural", "rtneural-cpp"])
    assert export.ok, [a.message for a in export.artifacts if not a.ok]
    headers = [a for a in export.artifacts if a.exporter == "rtneural-cpp"]
    assert len(headers) == 5 and all(a.message.startswith("parity ") and "skipped" not in a.message for a in headers)
    report = modelreg.validate_all(bundled_copy, write=True, latency_seconds=0.02)
    for model in report.models.values():
        for name in ("rtneural.dynamic_parity", "rtneural-cpp.parity"):
            check = model[name]
            assert check.status == "pass", (model.name, check)
            assert check.figures["max_error"] <= 1e-5 and check.figures["max_abs_error"] < 1e-5
        latency = model["rtneural.dynamic_latency"]
        figures = latency.figures
        # Judged against the entry's target (no timed assertion here: the machine may be loaded).
        assert latency.status == ("pass" if figures["p99_ms"] <= figures["target_ms"] else "fail"), (model.name, latency)
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"] <= figures["max_ms"]
        assert figures["iterations"] >= 200 and figures["warmup"] >= 20 and figures["backend"] == "stl"
        assert model["latency"].status in ("pass", "fail")  # the torch check is still there
    assert model["rtneural.dynamic_parity"].figures["cases"].keys() == model["rtneural.parity"].figures["cases"].keys()
    saved = json.loads((bundled_copy.parent / "models" / "validation_results.json").read_text())
    names = [c["name"] for c in saved["models"]["emotionrecognizer"]["checks"]]
    assert {"rtneural.dynamic_parity", "rtneural.dynamic_latency", "rtneural-cpp.parity"} <= set(names)


# ---------------------------------------------------------------- random architectures, golden files


RANDOM = [
    (3, [LayerSpec("gru", 4), LayerSpec("dense", 2, "sigmoid")]),
    (5, [LayerSpec("dense", 6, "tanh"), LayerSpec("gru", 5), LayerSpec("dense", 3, "linear")]),
    (4, [LayerSpec("lstm", 6), LayerSpec("gru", 5), LayerSpec("dense", 2, "linear")]),
    (2, [LayerSpec("gru", 6), LayerSpec("gru", 4), LayerSpec("dense", 3, "tanh")]),
    (6, [LayerSpec("dense", 8, a) for a in ACTIVATIONS] + [LayerSpec("dense", 5, "softmax")]),
    (1, [LayerSpec("gru", 8), LayerSpec("dense", 4, "softmax")]),
    (3, [LayerSpec("dense", 4, "relu"), LayerSpec("lstm", 5), LayerSpec("dense", 3, "elu")]),
    (16, [LayerSpec("gru", 16), LayerSpec("dense", 8, "relu"), LayerSpec("dense", 1, "linear")]),
    (7, [LayerSpec("lstm", 3), LayerSpec("lstm", 9)]),
    (9, [LayerSpec("dense", 33, "elu"), LayerSpec("dense", 17, "sigmoid")]),
    # stand-alone activation layers (the activation kind), every one RTNeural's createActivation knows
    (4, [LayerSpec("lstm", 5), LayerSpec("activation", 5, "relu"), LayerSpec("dense", 3, "linear"),
         LayerSpec("activation", 3, "softmax")]),
    (3, [LayerSpec("gru", 6), LayerSpec("activation", 6, "elu"), LayerSpec("activation", 6, "sigmoid"),
         LayerSpec("dense", 4, "linear"), LayerSpec("activation", 4, "tanh")]),
    # batchnorm, affine and not, epsilon default and not
    (5, [LayerSpec("dense", 6, "linear"), LayerSpec("batchnorm", 6, options=(("affine", True), ("epsilon", 1e-3))),
         LayerSpec("activation", 6, "tanh"), LayerSpec("gru", 4),
         LayerSpec("batchnorm", 4, options=(("affine", False), ("epsilon", 1e-5))), LayerSpec("dense", 2, "linear")]),
    (3, [LayerSpec("batchnorm", 3, options=(("affine", True), ("epsilon", 0.5))), LayerSpec("lstm", 5),
         LayerSpec("batchnorm", 5, options=(("affine", True), ("epsilon", 1e-5)))]),
    # prelu, alone and in a mixed stack
    (4, [LayerSpec("dense", 6, "linear"), LayerSpec("prelu", 6), LayerSpec("gru", 5), LayerSpec("prelu", 5),
         LayerSpec("batchnorm", 5, options=(("affine", True), ("epsilon", 1e-3))), LayerSpec("activation", 5, "elu"),
         LayerSpec("dense", 2, "linear")]),
    (2, [LayerSpec("prelu", 2)]),
]


@needs_rtneural
def test_with_jobs_cpp_latency_is_timed_after_the_pool(tiny_registry: Path, cpp: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Parallel runs measure latency one model at a time with nothing else running: RTNeural's
    C++ latency too (counted in this process: the workers' calls would not be seen here),
    over the window the run asked for (--latency-seconds), serial or not."""
    tiny_registry.write_text(tiny_registry.read_text().replace('exports = []', 'exports = ["rtneural"]'))
    assert export_all(tiny_registry).ok
    timed: list[tuple[int, float]] = []
    real = rc.Runner.time

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        timed.append((os.getpid(), kwargs["seconds"]))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(rc.Runner, "time", counting)
    report = modelreg.validate_all(tiny_registry, jobs=2, write=False, latency_seconds=0.02)
    for model in report.models.values():
        assert model["rtneural.dynamic_parity"].status == "pass", model["rtneural.dynamic_parity"].message
        assert model["rtneural.dynamic_latency"].status == "pass", model["rtneural.dynamic_latency"].message
    assert timed == [(os.getpid(), 0.02)] * 3
    timed.clear()
    assert modelreg.validate_all(tiny_registry, write=False, latency_seconds=0.03).ok
    assert timed == [(os.getpid(), 0.03)] * 3
    timed.clear()
    assert modelreg.validate("tinygru", tiny_registry).ok  # the default window
    assert timed == [(os.getpid(), modelreg.latency.DEFAULT_WINDOW_SECONDS)]


@needs_rtneural
@pytest.mark.parametrize("index", range(len(RANDOM)))
def test_architectures_match_torch_in_rtneural_cpp(tmp_path: Path, cpp: Path, index: int) -> None:
    in_features, layers = RANDOM[index]
    spec = spec_of(tmp_path, in_features, layers)
    module = widened(spec, seed=index)
    path = tmp_path / "random.json"
    RTNeuralExporter().export(spec, module, path)
    toolchain = rc.find_toolchain()
    runner = rc.runner_for(toolchain)
    loaded = rc.load_checked(runner, path, sizes=(spec.in_features, spec.out_features))
    try:
        result = rc.parity(runner, loaded, module, 1e-5)
    finally:
        runner.free(loaded)
    assert result.ok and result.max_abs_error < 1e-5, (layers, result.to_figures())


@needs_rtneural
@pytest.mark.parametrize("index", [4, 11, 12, 14])  # every activation, dense and stand-alone; batchnorm; prelu (GRU headers: the next test)
def test_compiled_headers_of_architectures_match_torch(tmp_path: Path, cpp: Path, index: int) -> None:
    in_features, layers = RANDOM[index]
    spec = spec_of(tmp_path, in_features, layers, name=f"arch-{index}")
    module = widened(spec, seed=index)
    header = tmp_path / "arch.h"
    exporter = RTNeuralCppExporter()
    exporter.export(spec, module, header)
    assert exporter.check_artifact(spec, header) == []
    result = exporter.verify(spec, module, header, 1e-5)
    assert not result.skipped and result.ok and result.max_abs_error < 1e-5, result.to_figures()


@needs_rtneural
def test_rtneurals_softmax_overflows_as_the_reference_runtime_says(tmp_path: Path, cpp: Path) -> None:
    """RTNeural computes softmax as exp(x) / sum without shifting by the maximum: an input above
    ~88.7 makes its row NaN and zeros. The numpy reference runtime must give the same, or its
    parity would pass files that give NaN in the plugin."""
    from modelreg.rtneural.runtime import load_rtneural

    document = {"in_shape": [None, None, 4], "layers": [
        {"type": "dense", "activation": "softmax", "shape": [None, None, 4],
         "weights": [np.eye(4).tolist(), [0.0] * 4]}]}
    path = tmp_path / "softmax.json"
    path.write_text(json.dumps(document))
    frames = np.array([[0.5, -1.0, 2.0, 3.0], [1.0, 2.0, 89.0, -100.0], [100.0, 100.0, 1.0, 0.0]], np.float32)
    cpp_out = run_in_rtneural_cpp(path, frames)
    ours = load_rtneural(path).run(frames)
    np.testing.assert_array_equal(np.isnan(cpp_out), np.isnan(ours))
    assert np.isnan(cpp_out[1:]).any() and not np.isnan(cpp_out[0]).any()
    np.testing.assert_allclose(ours, cpp_out, rtol=1e-6, atol=1e-7, equal_nan=True)


GOLDEN_MODELS = ["dense", "lstm", "lstm_1d", "gru_1d"]


@needs_rtneural
@pytest.mark.parametrize("name", GOLDEN_MODELS)
def test_golden_files_give_rtneurals_outputs_in_cpp(cpp: Path, name: str) -> None:
    if not (GOLDEN / f"{name}.json").is_file():
        pytest.skip(f"RTNeural golden data not found at {GOLDEN}")
    runner = rc.runner_for(rc.find_toolchain())
    loaded = rc.load_checked(runner, GOLDEN / f"{name}.json")
    x = np.loadtxt(GOLDEN / f"{name}_x.csv", delimiter=",", ndmin=2)
    y = np.loadtxt(GOLDEN / f"{name}_y.csv", delimiter=",", ndmin=2)
    try:
        out = runner.run(loaded, np.repeat(x, loaded.in_size, axis=1) if x.shape[1] != loaded.in_size else x)
    finally:
        runner.free(loaded)
    error = float(np.abs(out - y).max())
    assert error <= 1e-5, f"{name}: max abs error {error:.3g}"


# ---------------------------------------------------------------- files RTNeural must refuse


@pytest.fixture
def dense_export(tmp_path: Path) -> tuple[ModelSpec, Any, Path, dict[str, Any]]:
    spec = spec_of(tmp_path, 4, [LayerSpec("dense", 5, "relu"), LayerSpec("gru", 3), LayerSpec("dense", 2, "tanh")])
    module = widened(spec, seed=3)
    path = tmp_path / "model.json"
    RTNeuralExporter().export(spec, module, path)
    return spec, module, path, json.loads(path.read_text())


def _cpp_parity(spec: ModelSpec, module: Any, path: Path) -> Any:
    checks = dict(rc.cpp_checks(spec, module, 1e-5))
    return checks["dynamic_parity"](path)


@needs_rtneural
def test_a_corrupted_export_fails_cpp_parity(cpp: Path, dense_export: Any) -> None:
    spec, module, path, document = dense_export
    assert _cpp_parity(spec, module, path).status == "pass"
    gru = document["layers"][1]["weights"]
    gru[0] = [row[3:6] + row[0:3] + row[6:] for row in gru[0]]  # z and r gates swapped
    path.write_text(json.dumps(document))
    result = _cpp_parity(spec, module, path)
    assert result.status == "fail" and result.figures["max_error"] > 1e-3, result


@needs_rtneural
def test_a_file_the_loader_rejects_fails_with_the_loaders_message(cpp: Path, dense_export: Any) -> None:
    spec, module, path, document = dense_export
    document["layers"][0]["weights"][0] = [row + [0.5] for row in document["layers"][0]["weights"][0]]  # 6 columns, 5 units
    path.write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="RTNeural's C.. loader rejects the file: the loader threw: .*range"):
        _cpp_parity(spec, module, path)


@needs_rtneural
def test_a_layer_the_loader_skips_silently_fails(cpp: Path, dense_export: Any) -> None:
    spec, module, path, document = dense_export
    document["layers"].insert(1, {"type": "conv3d", "shape": [None, None, 5], "weights": []})
    path.write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match=r"built other layers than the file declares .*conv3d 5->5"):
        _cpp_parity(spec, module, path)


@needs_rtneural
def test_a_loader_crash_fails_the_file_and_the_runner_restarts(cpp: Path, dense_export: Any) -> None:
    spec, module, path, document = dense_export
    good = path.with_name("good.json")
    shutil.copy(path, good)
    document["layers"][0]["activation"] = "swish"  # RTNeural adds a null layer for an unknown activation
    path.write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="RTNeural's C.. loader crashed on the file: the RTNeural runner died"):
        _cpp_parity(spec, module, path)
    assert _cpp_parity(spec, module, good).status == "pass"


@needs_rtneural
def test_the_header_loader_refuses_a_file_of_another_architecture(tmp_path: Path, cpp: Path, dense_export: Any) -> None:
    spec, module, path, document = dense_export
    header = tmp_path / "model.h"
    RTNeuralCppExporter().export(spec, module, header)
    result = RTNeuralCppExporter().verify(spec, module, header, 1e-5)  # dense, GRU, dense: compiled and matching
    assert not result.skipped and result.ok and result.max_abs_error < 1e-5, result.to_figures()
    with rc.header_runner(rc.find_toolchain(), header, cpp_namespace(spec), spec.name) as runner:
        loaded = rc.load_checked(runner, path)
        # The load's time and the page faults it took (the model's memory is touched for the first time).
        assert loaded.in_size == 4 and loaded.load_ns > 0 and loaded.load_faults >= 0
        document["layers"][1]["shape"] = [None, None, 4]
        wrong = tmp_path / "wrong.json"
        wrong.write_text(json.dumps(document))
        with pytest.raises(ArtifactError, match=r"layers\[1\]\.shape: expected 3 units, found \[null,null,4\]"):
            rc.load_checked(runner, wrong)
        document["layers"][1]["shape"] = [None, None, 3]
        document["layers"][1]["weights"][1] = document["layers"][1]["weights"][1][:-1]
        wrong.write_text(json.dumps(document))
        with pytest.raises(ArtifactError, match=r"layers\[1\]\.weights\[1\]: expected 3 rows of 9, found 2 rows"):
            rc.load_checked(runner, wrong)


def test_headers_declare_the_exact_compile_time_type(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, 128, [LayerSpec("dense", 512, "tanh"), LayerSpec("lstm", 128),
                                 LayerSpec("gru", 8), LayerSpec("dense", 64, "linear")], name="deep-1")
    text = render_header(spec)
    assert ("using Stages = RTNeural::ModelT<float, 128, 64,\n"
            "            RTNeural::DenseT<float, 128, 512>,\n"
            "            RTNeural::TanhActivationT<float, 512>,\n"
            "            RTNeural::LSTMLayerT<float, 512, 128>,\n"
            "            RTNeural::GRULayerT<float, 128, 8>,\n"
            "            RTNeural::DenseT<float, 8, 64>>;") in text
    assert "struct Model : Stages, modelreg_rt::ModelAllocation" in text  # make(): huge pages when large
    assert "namespace deep_1" in text
    # Pitfalls: the LSTM's 512 x (4 x 128) + recurrent matrix is above Eigen's stack limit; inputs must be aligned.
    assert "EIGEN_STACK_ALLOCATION_LIMIT < 1312768" in text and "layers[1] lstm 512 -> 128" in text
    assert "alignas(RTNEURAL_DEFAULT_ALIGNMENT)" in text
    small = spec_of(tmp_path, 4, [LayerSpec("dense", 3, "relu")])
    assert "EIGEN_STACK_ALLOCATION_LIMIT" not in render_header(small)
    assert RTNeuralCppExporter().check_artifact(spec, _write(tmp_path / "h.h", render_header(small)))[0].reason == \
        "header does not declare this entry's architecture"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ---------------------------------------------------------------- the cache


@needs_rtneural
def test_the_cache_is_reused_and_rebuilt_when_headers_change_or_the_binary_is_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkout = tmp_path / "RTNeural-copy"
    shutil.copytree(RTNEURAL / "RTNeural", checkout / "RTNeural")
    shutil.copytree(RTNEURAL / "modules" / "json", checkout / "modules" / "json")
    monkeypatch.setenv(rc.ENV_RTNEURAL, str(checkout))
    monkeypatch.delenv(rc.ENV_BACKEND, raising=False)  # no modules/Eigen here: stl is chosen
    monkeypatch.setenv(rc.ENV_CACHE, str(tmp_path / "cache"))

    def runner() -> rc.Runner:
        rc.close_runners()
        toolchain = rc.find_toolchain()
        assert toolchain.backend == "stl"
        return rc.runner_for(toolchain)

    before = len(rc.builds())
    first = runner().binary
    assert len(rc.builds()) == before + 1 and first.is_relative_to(tmp_path / "cache")
    assert runner().binary == first and len(rc.builds()) == before + 1  # second run compiles nothing
    # With GCC, RTNeural's headers were precompiled once for these flags, beside the programs.
    precompiled = sorted((tmp_path / "cache" / "rtneural-cpp").glob("pch-*/modelreg_pch.h.gch"))
    gcc = "Free Software Foundation" in rc.find_toolchain().compiler_identity
    assert len(precompiled) == (1 if gcc else 0)

    rc.close_runners()
    first.write_bytes(b"not a program")  # a corrupt entry is rebuilt in place
    if gcc:  # ... and a truncated precompiled header (GCC refuses it) is dropped, not fatal
        precompiled[0].write_bytes(precompiled[0].read_bytes()[:100_000])
    assert runner().binary == first and len(rc.builds()) == before + 2
    assert runner().hello().startswith("ok modelreg-rtneural-runner")
    if gcc:
        assert not precompiled[0].exists()

    os.utime(checkout / "RTNeural" / "dense" / "dense.h")  # a header changed: a new build
    second = runner().binary
    assert second != first and len(rc.builds()) == before + 3
    rc.close_runners()


def test_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(rc.ENV_CACHE, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert rc.cache_dir() == tmp_path / "xdg" / "modelreg"
    monkeypatch.setenv(rc.ENV_CACHE, str(tmp_path / "mine"))
    assert rc.cache_dir() == tmp_path / "mine"


# ---------------------------------------------------------------- broken configurations


@needs_rtneural
def test_no_compiler_gives_one_clear_failure(tiny_registry: Path, cpp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXX", "/nonexistent/c++")
    with pytest.raises(ToolchainError, match=r"CXX: the C\+\+ compiler '/nonexistent/c\+\+' \(\$CXX\) was not found"):
        rc.find_toolchain()
    tiny_registry.write_text(tiny_registry.read_text().replace('exports = []', 'exports = ["rtneural"]'))
    assert export_all(tiny_registry).ok
    report = modelreg.validate("tinydense", tiny_registry, latency_seconds=0.02)
    check = report["tinydense"]["rtneural.dynamic_parity"]
    assert check.status == "fail" and "'/nonexistent/c++' ($CXX) was not found" in check.message
    assert not report.ok


def test_a_checkout_without_headers_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(rc.ENV_RTNEURAL, str(tmp_path / "empty"))
    with pytest.raises(ToolchainError, match=r"\$MODELREG_RTNEURAL: points at .*empty, which has no "
                                             r"RTNeural/RTNeural.h, RTNeural/model_loader.h, modules/json/json.hpp"):
        rc.find_toolchain()
    monkeypatch.setenv(rc.ENV_RTNEURAL, str(tmp_path / "missing"))
    with pytest.raises(ToolchainError, match="which does not exist"):
        rc.find_toolchain()


def _fake_checkout(folder: Path) -> Path:
    """The three files find_toolchain looks for (nothing is compiled from them)."""
    for part in ("RTNeural/RTNeural.h", "RTNeural/model_loader.h", "modules/json/json.hpp"):
        (folder / part).parent.mkdir(parents=True, exist_ok=True)
        (folder / part).write_text("// fake\n")
    return folder


# The slips a new user made (issue 23): each must give one message naming the variable, what it
# found and what is expected, and the validate table, report and JSON must still be written.
MISCONFIGURED = {
    "inner folder": (lambda tmp: {"MODELREG_RTNEURAL": str(_fake_checkout(tmp / "RTNeural") / "RTNeural")},
                     r"\$MODELREG_RTNEURAL: points at .*RTNeural/RTNeural, which holds RTNeural.h itself: "
                     r"point at its parent, .*RTNeural \(expected an RTNeural checkout"),
    "missing folder": (lambda tmp: {"MODELREG_RTNEURAL": str(tmp / "nowhere")},
                       r"\$MODELREG_RTNEURAL: points at .*nowhere, which does not exist \(expected an RTNeural checkout"),
    "compiler that fails": (lambda tmp: {"MODELREG_RTNEURAL": str(_fake_checkout(tmp / "checkout")), "CXX": "/bin/false"},
                            r"CXX: the C\+\+ compiler '/bin/false' does not work: `--version` failed \(exit 1\)"
                            r"(: [^\n]*)? \(expected a C\+\+17 compiler"),
}


@pytest.mark.parametrize("slip", MISCONFIGURED)
def test_a_misconfigured_toolchain_is_one_message_and_the_table_report_and_json_are_still_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], slip: str) -> None:
    from conftest import TINYDENSE, run_cli

    environment, message = MISCONFIGURED[slip]
    path = write_registry(tmp_path / "project", text=TINYDENSE.replace("exports = []", 'exports = ["rtneural", "rtneural-cpp"]'))
    assert run_cli(["init", "--registry", str(path)], capsys)[0] == 0
    assert run_cli(["export", "--registry", str(path)], capsys)[0] == 0
    for name, value in environment(tmp_path).items():
        monkeypatch.setenv(name, value)
    code, out, err = run_cli(["validate", "tinydense", "--registry", str(path), "--latency-seconds", "0.02",
                              "--report", str(tmp_path / "report.html")], capsys)
    assert code == 1, out + err
    assert "Traceback" not in out + err
    # The reason once, for the three checks it fails.
    assert re.search(r"rtneural.dynamic_parity, rtneural.dynamic_realtime, rtneural.dynamic_latency, rtneural-cpp.parity, "
                     r"rtneural-cpp.realtime, rtneural-cpp.denormals: " + message, out), out
    assert len(re.findall(message, out)) == 1, out
    row = next(line for line in out.splitlines() if line.startswith("tinydense "))
    assert re.search(r"p99 \d+\.\d+ ms\s+fail\s+fail\s+50 ms\s+\d+/\d+ FAIL", row), row
    assert (tmp_path / "report.html").is_file()
    code, out, _ = run_cli(["validate", "tinydense", "--registry", str(path), "--latency-seconds", "0.02", "--json"], capsys)
    checks = {c["name"]: c for c in json.loads(out)["models"]["tinydense"]["checks"]}
    assert code == 1 and checks["rtneural.dynamic_latency"]["status"] == "fail"
    assert checks["rtneural.dynamic_latency"]["figures"] == {}


@needs_rtneural
def test_registry_setting_is_relative_to_the_registry_and_wins_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(rc.ENV_RTNEURAL, str(tmp_path / "elsewhere"))
    project = tmp_path / "project"
    (project / "third_party").mkdir(parents=True)
    (project / "third_party" / "RTNeural").symlink_to(RTNEURAL)
    path = write_registry(project, extra='\n[settings]\nrtneural = "third_party/RTNeural"\nrtneural_backend = "stl"\n')
    spec = modelreg.load_registry(path)["tinydense"]
    toolchain = rc.toolchain_for(spec)
    assert toolchain.root == project / "third_party" / "RTNeural" and toolchain.backend == "stl"
    assert toolchain.origin.startswith("[settings] rtneural in ")


@needs_rtneural
def test_a_compile_error_shows_the_compilers_first_error_lines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = tmp_path / "broken"
    shutil.copytree(RTNEURAL / "RTNeural", checkout / "RTNeural")
    shutil.copytree(RTNEURAL / "modules" / "json", checkout / "modules" / "json")
    common = checkout / "RTNeural" / "common.h"
    common.write_text(common.read_text() + "\nthis is not C++;\n")
    monkeypatch.setenv(rc.ENV_RTNEURAL, str(checkout))
    monkeypatch.delenv(rc.ENV_BACKEND, raising=False)
    monkeypatch.setenv(rc.ENV_CACHE, str(tmp_path / "cache"))
    with pytest.raises(ToolchainError) as caught:
        rc.runner_for(rc.find_toolchain())
    message = str(caught.value)
    assert message.startswith("$MODELREG_RTNEURAL: compiling modelreg's RTNeural runner against")
    assert "stl backend) failed:" in message and "common.h" in message and "error" in message
    assert len(message.splitlines()) <= 13
    assert not list((tmp_path / "cache" / "rtneural-cpp").glob("runner-*[!k]"))  # nothing half-built installed


# ---------------------------------------------------------------- Eigen


@needs_rtneural
def test_eigen_backend_runner_and_header_match(tmp_path: Path, cpp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (RTNEURAL / "modules" / "Eigen" / "Eigen" / "Dense").is_file():
        pytest.skip(f"no modules/Eigen in {RTNEURAL}")
    monkeypatch.delenv(rc.ENV_BACKEND)  # Eigen is found in the checkout: the default
    spec = spec_of(tmp_path, 5, [LayerSpec("dense", 6, "tanh"), LayerSpec("gru", 5), LayerSpec("lstm", 4),
                               LayerSpec("dense", 3, "softmax")], name="eigen")
    module = widened(spec, seed=7)
    header = tmp_path / "eigen.h"
    exporter = RTNeuralCppExporter()
    exporter.export(spec, module, header)
    assert rc.find_toolchain().backend == "eigen"
    result = exporter.verify(spec, module, header, 1e-5)
    assert not result.skipped and result.ok, result.to_figures()
    path = tmp_path / "eigen.json"
    RTNeuralExporter().export(spec, module, path)
    check = _cpp_parity(spec, module, path)
    assert check.status == "pass" and check.figures["backend"] == "eigen", check


@needs_rtneural
def test_eigen_stack_limit_pitfall_is_caught_by_the_header(tmp_path: Path, cpp: Path) -> None:
    if not (RTNEURAL / "modules" / "Eigen" / "Eigen" / "Dense").is_file():
        pytest.skip(f"no modules/Eigen in {RTNEURAL}")
    import subprocess

    spec = spec_of(tmp_path, 128, [LayerSpec("dense", 512, "tanh")], name="big")
    header = tmp_path / "big.h"
    header.write_text(render_header(spec))
    source = tmp_path / "use.cpp"
    source.write_text('#include "big.h"\nint main() { auto m = modelreg_models::big::make(); return 0; }\n')
    compiler = shutil.which("c++") or "g++"
    # Preprocessing is enough to meet the #error, and takes a fraction of a build.
    done = subprocess.run([compiler, "-std=c++17", "-E", "-DRTNEURAL_USE_EIGEN=1", "-DRTNEURAL_DEFAULT_ALIGNMENT=16",
                           f"-I{RTNEURAL}", f"-I{RTNEURAL / 'modules' / 'Eigen'}", str(source), "-o", os.devnull],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0
    assert "big: layers[0] dense 128 -> 512 needs 264192 bytes, above EIGEN_STACK_ALLOCATION_LIMIT" in done.stderr
    done = subprocess.run([compiler, "-std=c++17", "-E", "-DRTNEURAL_USE_EIGEN=1", "-DRTNEURAL_DEFAULT_ALIGNMENT=16",
                           "-DEIGEN_STACK_ALLOCATION_LIMIT=0", f"-I{RTNEURAL}", f"-I{RTNEURAL / 'modules' / 'Eigen'}",
                           str(source), "-o", os.devnull], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[:2000]


def test_render_is_deterministic_and_independent_of_weights(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, 3, [LayerSpec("gru", 4), LayerSpec("dense", 2, "sigmoid")])
    assert render_header(spec) == render_header(attrs.evolve(spec, checkpoint=tmp_path / "other.pt"))


def test_results_schema_requires_the_figures_of_a_passed_cpp_check() -> None:
    import jsonschema

    from modelreg.schemas import load_schema

    def document(check: dict[str, Any]) -> dict[str, Any]:
        return {"format": 1, "ok": True, "registry": "r", "problems": [], "warnings": [],
                "environment": {"python": "3", "torch": "2", "platform": "p", "modelreg": "0", "time": "2026-01-01T00:00:00+00:00"},
                "models": {"m": {"ok": True, "seconds": 0, "checks": [check]}}}

    schema = load_schema("validation_results")
    bare = {"name": "rtneural.dynamic_latency", "status": "pass", "message": "", "figures": {}}
    with pytest.raises(jsonschema.ValidationError, match="'mean_ms' is a required property"):
        jsonschema.validate(document(bare), schema)
    jsonschema.validate(document({**bare, "status": "skip"}), schema)  # a skip says why, no figures


@needs_rtneural
def test_threads_asking_at_once_share_one_runner(tiny_registry: Path, cpp: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """validate proves formats in threads: the shared runner must be one process however it is asked for."""
    import threading
    import time

    toolchain = rc.toolchain_for(modelreg.load_registry(tiny_registry)["tinydense"])
    rc.runner_for(toolchain)  # compiled (or found) first, so that the threads race on the process only
    rc.close_runners()

    class SlowStart(rc.Runner):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            time.sleep(0.05)  # a process start slow enough for every thread to ask meanwhile
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(rc, "Runner", SlowStart)
    start = threading.Barrier(4, timeout=60)
    got: list[rc.Runner] = []

    def ask() -> None:
        start.wait()
        got.append(rc.runner_for(toolchain))

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 4 and len({id(runner) for runner in got}) == 1
    assert got[0].hello()
    rc.close_runners()  # none left behind: every runner started is the shared one


@needs_rtneural
def test_the_first_compile_says_so_once(tmp_path: Path, cpp: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Issue 23: the first validate compiled the runner for ~30 s without a word.
    from conftest import TINYDENSE, run_cli

    monkeypatch.setenv("MODELREG_CACHE_DIR", str(tmp_path / "empty-cache"))  # nothing compiled yet
    path = write_registry(tmp_path / "project", text=TINYDENSE.replace("exports = []", 'exports = ["rtneural"]'))
    assert run_cli(["init", "--registry", str(path)], capsys)[0] == 0
    code, out, err = run_cli(["export", "--registry", str(path)], capsys)
    assert code == 0, out + err
    notice = re.findall(r"modelreg: compiling RTNeural's C\+\+ runner \(stl backend, .*\) into .*empty-cache.*: "
                        r"once per RTNeural checkout, compiler and flags", err)
    assert "RealtimeSanitizer" not in err  # off in the tests' set-up (the `cpp` fixture)
    code, out, err2 = run_cli(["validate", "--registry", str(path), "--latency-seconds", "0.02"], capsys)
    assert code == 0, out + err2
    notice += re.findall(r"modelreg: compiling RTNeural's C\+\+ runner \(", err2)
    assert len(notice) == 1, err + err2  # once, by whichever command compiled it; the second finds it cached


# ---------------------------------------------------------------- where make() puts the model

_PLACEMENT = r'''
#include "big.h"
#include "small.h"
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <new>
#include <string>

/** The mapping of /proc/self/smaps that holds p: "<AnonHugePages kB> <1 if VmFlags has hg (MADV_HUGEPAGE)>". */
std::string mapping_of(const void* p)
{
    const auto at = reinterpret_cast<std::uintptr_t>(p);
    std::ifstream smaps("/proc/self/smaps");
    std::string line;
    bool inside = false;
    long huge_kb = -1;
    while(std::getline(smaps, line))
    {
        const std::string first = line.substr(0, line.find(' '));
        unsigned long lo = 0, hi = 0;
        if(first.find(':') == std::string::npos && std::sscanf(first.c_str(), "%lx-%lx", &lo, &hi) == 2) // a mapping's first line
            inside = lo <= at && at < hi;
        else if(inside && line.rfind("AnonHugePages:", 0) == 0)
            huge_kb = std::stol(line.substr(14));
        else if(inside && line.rfind("VmFlags:", 0) == 0)
            return std::to_string(huge_kb) + (line.find(" hg") != std::string::npos ? " 1" : " 0");
    }
    return "-1 0";
}

template <typename M>
void report(const char* name, const M& model)
{
    const auto at = reinterpret_cast<std::uintptr_t>(&model);
    std::printf("%s %zu %d %d %s\n", name, sizeof(model), (int)(at % (std::size_t(2) << 20) == 0),
                (int)modelreg_rt::ModelAllocation::in_huge_pages(sizeof(model), alignof(M)), mapping_of(&model).c_str());
}

int main()
{
    auto small = modelreg_models::small::load(); // first: it comes from the heap, the large one from a mapping
    auto big = modelreg_models::big::load();
    modelreg_models::big::Frame frame {};
    modelreg_models::big::reset(*big);
    big->forward(frame.values);
    report("big", *big);
    report("small", *small);
    big.reset(); // freed as it was allocated (a mismatch aborts in glibc)
    small.reset();
    // The other forms a host may write still compile (a class-scope operator new hides the global ones).
    using Big = modelreg_models::big::Model;
    delete new (std::nothrow) Big;
    alignas(Big) static unsigned char where[sizeof(Big)];
    (new (where) Big())->~Big();
    std::printf("done\n");
}
'''


@pytest.fixture(scope="module")
def placement_programs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The program above, with a model just over 2 MB and a small one (embedded weights, STL backend),
    compiled as is and with MODELREG_NO_HUGE_PAGES, once per header text."""
    import hashlib
    import subprocess

    from modelreg.native import find_compiler

    found = find_compiler()
    if found is None:
        pytest.skip("no C++ compiler on PATH (set CXX)")
    folder = tmp_path_factory.getbasetemp() / "placement"
    folder.mkdir(exist_ok=True)
    # dense 512 -> 1040: 532,480 weights, an object of 2.13 MB (RTNeural's STL DenseT holds them inline).
    texts = {}
    for name, ins, units in (("big", 512, 1040), ("small", 3, 4)):
        spec = spec_of(folder, ins, [LayerSpec("dense", units, "tanh")], name=name)
        module = build_module(spec, seed=0)
        texts[name] = render_header(spec, weight_arrays(spec, module), form="embedded")
    key = hashlib.sha256("".join([_PLACEMENT, *texts.values()]).encode()).hexdigest()[:16]
    for name, text in texts.items():
        (folder / f"{name}.h").write_text(text, encoding="utf-8")
    (folder / "placement.cpp").write_text(_PLACEMENT, encoding="utf-8")
    programs = {}
    for variant, flags in (("huge", []), ("plain", ["-DMODELREG_NO_HUGE_PAGES"])):
        binary = folder / f"placement-{variant}-{key}"
        if not binary.is_file():
            done = subprocess.run([*found[0], "-std=c++17", "-O1", "-DRTNEURAL_DEFAULT_ALIGNMENT=16", f"-I{RTNEURAL}",
                                   f"-I{folder}", *flags, str(folder / "placement.cpp"), "-o", str(binary)],
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stderr[-3000:]
        programs[variant] = binary
    return programs


def _placement(binary: Path) -> dict[str, dict[str, int]]:
    import subprocess

    done = subprocess.run([str(binary)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.endswith("done\n"), (done.returncode, done.stdout, done.stderr)
    rows = [line.split() for line in done.stdout.splitlines()[:-1]]
    keys = ("size", "aligned_2mb", "in_huge_pages", "anon_huge_kb", "advised")
    return {row[0]: dict(zip(keys, map(int, row[1:]))) for row in rows}


def _thp_mode() -> str:
    """The kernel's transparent huge page mode (the bracketed word), or "" where it cannot be read."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return ""
    found = re.search(r"\[(\w+)\]", text)
    return found[1] if found else ""


@needs_rtneural
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="transparent huge pages are Linux's")
def test_make_places_a_model_of_2_mb_or_more_in_huge_pages(placement_programs: dict[str, Path]) -> None:
    placed = _placement(placement_programs["huge"])
    big, small = placed["big"], placed["small"]
    assert big["size"] >= 2 << 20 > small["size"]
    # The large model: 2 MB-aligned memory advised MADV_HUGEPAGE; the small one: the ordinary heap.
    assert (big["aligned_2mb"], big["in_huge_pages"], big["advised"]) == (1, 1, 1), big
    assert (small["aligned_2mb"], small["in_huge_pages"], small["advised"]) == (0, 0, 0), small
    mode = _thp_mode()
    if mode == "never":
        pytest.skip("transparent huge pages are `never` on this machine: the model is advised and aligned "
                    "(checked), but the kernel gives it 4 KB pages")
    assert big["anon_huge_kb"] >= 2048, f"THP {mode!r}: the advised model got no huge page: {big}"
    # MODELREG_NO_HUGE_PAGES: every model the ordinary way (with THP `always` the kernel may still
    # give any large mapping huge pages: only `madvise` makes them the advice's doing).
    plain = _placement(placement_programs["plain"])["big"]
    assert (plain["in_huge_pages"], plain["advised"]) == (0, 0), plain
    if mode == "madvise":
        assert plain["anon_huge_kb"] == 0, plain
