"""From registry to audio thread (issue 22): weights compiled into the header, real-time safety and
denormals, proven in RTNeural's C++ engine.

The C++ tests compile against RTNeural (``conftest.RTNEURAL``) with the STL backend and skip,
saying what to set, without it. RealtimeSanitizer (clang >= 20) is off in the tests' set-up
except where a test asks for it (the ``rtsan`` fixture).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import modelreg
from modelreg import LayerSpec
from modelreg.errors import ArtifactError, ToolchainError
from modelreg.rtneural import cpp as rc
from modelreg.rtneural.exporter import RTNeuralExporter
from modelreg.rtneural.header import RTNeuralCppExporter, render_header, weight_arrays

from conftest import RTNEURAL, needs_rtneural, run_cli, write_registry
from kind_tools import spec_of, widened

# Every kind that has weights, in two stacks (each compiled once).
RECURRENT_STACK = [LayerSpec("dense", 6, "tanh"), LayerSpec("prelu", 6),
                   LayerSpec("batchnorm", 6, options=(("affine", True), ("epsilon", 1e-3))),
                   LayerSpec("gru", 5), LayerSpec("activation", 5, "elu"), LayerSpec("lstm", 4),
                   LayerSpec("batchnorm", 4, options=(("affine", False), ("epsilon", 1e-5))),
                   LayerSpec("dense", 3, "sigmoid")]

ENTRY = """\
[models.{name}]
description = "every kind with weights"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = ["rtneural", "rtneural-cpp"]
checkpoint = "models/{name}.pt"
cpp_weights = "{weights}"
layers = [
    {{ type = "conv1d", units = 6, kernel_size = 3, dilation = 2, groups = 2, activation = "tanh" }},
    {{ type = "prelu" }},
    {{ type = "batchnorm", epsilon = 0.001 }},
    {{ type = "gru", units = 5 }},
    {{ type = "activation", activation = "elu" }},
    {{ type = "lstm", units = 4 }},
    {{ type = "batchnorm", affine = false }},
    {{ type = "dense", units = 3, activation = "sigmoid" }},
]
"""


def _entry(name: str, weights: str) -> str:
    from modelreg.spec import count_params

    layers = [LayerSpec("conv1d", 6, "tanh", (("dilation", 2), ("groups", 2), ("in_channels", 4), ("kernel_size", 3))),
              *RECURRENT_STACK[1:]]
    return ENTRY.format(name=name, weights=weights, params=count_params(layers, 4))


def _floats_of(text: str) -> bytes:
    """The embedded weights of a header, as the bytes of its string literals."""
    section = text[text.index("// ---- embedded weights begin"):text.index("// ---- embedded weights end")]
    literal = "".join(re.findall(r'"((?:\\x[0-9a-f]{2})*)"', section))
    return bytes(int(pair, 16) for pair in re.findall(r"\\x([0-9a-f]{2})", literal))


@pytest.fixture
def embedded_project(tmp_path: Path) -> Path:
    from modelreg.checkpoint import init_checkpoint

    path = write_registry(tmp_path / "project", text=_entry("every", "embedded"))
    init_checkpoint(modelreg.load_registry(path)["every"], seed=3)
    return path


# ---------------------------------------------------------------- weights compiled in (no C++ needed)


def test_an_embedded_header_holds_the_json_exports_float32_bytes_and_no_json(embedded_project: Path) -> None:
    report = modelreg.export_all(embedded_project)
    assert report.ok, [a.message for a in report.artifacts]
    models = embedded_project.parent / "models"
    text = (models / "cpp" / "every.h").read_text()
    # No JSON parser, no file I/O: nothing of nlohmann, no stream.
    assert "nlohmann" not in text and "json.hpp" not in text and "fstream" not in text and "ifstream" not in text
    # Bit for bit the float32 values of the RTNeural file, in its order.
    document = orjson.loads((models / "every.json").read_bytes())
    flat = [np.asarray(w, dtype=np.float32).ravel() for layer in document["layers"] for w in layer["weights"]]
    assert _floats_of(text) == np.concatenate(flat).astype("<f4").tobytes()
    # The CMake target hosts link.
    cmake = (models / "cpp" / "CMakeLists.txt").read_text()
    assert "add_library(modelreg_models INTERFACE)" in cmake and "EIGEN_STACK_ALLOCATION_LIMIT=0" in cmake


def test_export_refuses_an_embedded_header_whose_weights_are_not_the_checkpoints(embedded_project: Path) -> None:
    spec = modelreg.load_registry(embedded_project)["every"]
    module = spec.load()
    other = widened(spec, seed=11)  # other weights, same architecture
    header = embedded_project.parent / "other.h"
    header.write_text(render_header(spec, weight_arrays(spec, other)))
    exporter = RTNeuralCppExporter()
    assert exporter.check_artifact(spec, header) == []  # the code is this entry's...
    with pytest.raises(ArtifactError, match="the header's embedded weights are not the checkpoint's"):
        exporter.verify(spec, module, header, 1e-5)  # ...the weights are not


def test_a_header_of_the_other_weights_form_is_refused(embedded_project: Path) -> None:
    registry = modelreg.load_registry(embedded_project)
    spec = registry["every"]
    import attrs

    header = embedded_project.parent / "json-form.h"
    header.write_text(render_header(attrs.evolve(spec, cpp_weights="json")))
    problems = RTNeuralCppExporter().check_artifact(spec, header)
    assert problems and "weights embedded" in str(problems[0])


def test_the_weights_form_is_a_validated_registry_key(tmp_path: Path) -> None:
    path = write_registry(tmp_path, text=_entry("every", "inline"))
    registry = modelreg.load_registry(path, strict=False)
    assert "models.every.cpp_weights" in str(registry.invalid["every"][0])
    assert "'json', 'embedded'" in str(registry.invalid["every"][0])


# ---------------------------------------------------------------- in RTNeural's C++ engine


@needs_rtneural
@pytest.mark.parametrize("weights", ["embedded", "json"])
def test_both_header_forms_match_torch_allocate_nothing_and_time_their_silent_tail(tmp_path: Path, cpp: Path,
                                                                                  weights: str, capsys) -> None:
    from modelreg.checkpoint import init_checkpoint

    path = write_registry(tmp_path / "project", text=_entry("every", weights))
    init_checkpoint(modelreg.load_registry(path)["every"], seed=3)
    assert modelreg.export_all(path).ok
    code, out, err = run_cli(["validate", "--registry", str(path), "--latency-seconds", "0.02"], capsys)
    assert code == 0, out + err
    # The host's table: load time of the header form, heap calls, the silent tail.
    table = out.split("C++ on the audio thread (RTNeural)\n")[1]
    assert re.search(rf"^every\s+[\d.e-]+ ms \({weights}\)\s+0 / 0\s+not run\s+x[\d.]+, 0 subnormal\s+"
                     r"[\d.e-]+ / [\d.e-]+$", table, re.M), table
    saved = json.loads((path.parent / "models" / "validation_results.json").read_text())["models"]["every"]
    model = {c["name"]: modelreg.CheckResult(c["name"], c["status"], c["message"], c["figures"])
             for c in saved["checks"]}
    assert saved["ok"]
    parity = model["rtneural-cpp.parity"]
    assert parity.figures["weights"] == weights and parity.figures["load_ms"] > 0
    assert parity.figures["max_abs_error"] < 1e-5
    for name in ("rtneural-cpp.realtime", "rtneural.dynamic_realtime"):
        check = model[name]
        assert check.status == "pass" and check.figures["allocations"] == 0, check
        assert check.figures["rtsan"] == "not run" and "the counter alone" in check.message
    denormals = model["rtneural-cpp.denormals"]
    assert denormals.status == "pass" and denormals.figures["tail_frames"] == rc.DENORMAL_TAIL
    assert denormals.figures["signal_us"] > 0 and denormals.figures["tail_us"] > 0


@pytest.fixture
def allocating(monkeypatch: pytest.MonkeyPatch, cpp: Path) -> None:
    """Runners whose models allocate a vector on every forward(): the checks must say so."""
    monkeypatch.setenv(rc.ENV_CXXFLAGS, "-DMODELREG_TEST_ALLOCATE_IN_FORWARD=16")


@needs_rtneural
def test_a_model_that_allocates_in_forward_fails_the_realtime_checks_naming_the_call(tmp_path: Path,
                                                                                    allocating: None) -> None:
    path = write_registry(tmp_path / "project", text=_entry("every", "embedded"))
    from modelreg.checkpoint import init_checkpoint

    init_checkpoint(modelreg.load_registry(path)["every"], seed=3)
    assert modelreg.export_all(path).ok
    model = modelreg.validate_all(path, latency_seconds=0.02, write=False)["every"]
    for name, engine in (("rtneural.dynamic_realtime", "the dynamic model"), ("rtneural-cpp.realtime", "the compiled header")):
        check = model[name]
        assert check.status == "fail", check
        assert check.figures["allocations"] == 64 * 4  # per forward(): a vector and its buffer, made and freed
        assert re.search(rf"{engine}.*: 256 heap calls \(\d+ bytes\); the first: operator new\(24\) in forward\(\) "
                         r"of frame 0", check.message), check.message
        assert "they must not allocate, lock or block" in check.message
    assert model["rtneural.dynamic_parity"].status == "pass"  # the numbers are still right


@pytest.fixture
def rtsan(cpp: Path, monkeypatch: pytest.MonkeyPatch) -> rc.Sanitizer:
    monkeypatch.delenv(rc.ENV_RTSAN_CXX, raising=False)
    sanitizer = rc.find_sanitizer()
    if sanitizer.missing:
        message = f"RealtimeSanitizer: {sanitizer.missing}"
        if os.environ.get("MODELREG_REQUIRE_RTSAN"):  # CI: .ci/run installs clang-22, so this must run there
            pytest.fail(message)
        pytest.skip(message)
    return sanitizer


@needs_rtneural
def test_realtime_sanitizer_stops_an_allocating_forward_with_its_stack(tmp_path: Path, rtsan: rc.Sanitizer,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    spec = spec_of(tmp_path, 3, [LayerSpec("gru", 4), LayerSpec("dense", 2, "tanh")], name="rt")
    module = widened(spec, seed=1)
    file = tmp_path / "rt.json"
    RTNeuralExporter().export(spec, module, file)
    toolchain = rc.find_toolchain()
    clean = rc.realtime_check("x.realtime", spec, toolchain, "the dynamic model", lambda: rc.runner_for(toolchain),
                              file, lambda s: rc.sanitizer_runner(toolchain, s), shared_runner=True)
    assert clean.status == "pass" and clean.figures["rtsan"] == "clean", clean
    assert clean.figures["rtsan_compiler"].startswith(("Debian clang", "clang", "Ubuntu clang"))
    monkeypatch.setenv(rc.ENV_CXXFLAGS, "-DMODELREG_TEST_ALLOCATE_IN_FORWARD=16")
    toolchain = rc.find_toolchain()
    caught = rc.realtime_check("x.realtime", spec, toolchain, "the dynamic model", lambda: rc.runner_for(toolchain),
                               file, lambda s: rc.sanitizer_runner(toolchain, s), shared_runner=True)
    assert caught.status == "fail" and caught.figures["rtsan"] == "violation"
    assert "RealtimeSanitizer stopped the dynamic model" in caught.message
    assert "unsafe-library-call" in caught.message and "malloc" in caught.message
    assert "allocate_like_a_careless_layer" in caught.message  # the stack names the offending call


@needs_rtneural
def test_the_alignment_pitfall_is_refused_by_the_headers_and_named_by_the_runner(tmp_path: Path, cpp: Path,
                                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    if not (RTNEURAL / "modules" / "Eigen" / "Eigen" / "Dense").is_file():
        pytest.skip(f"no modules/Eigen in {RTNEURAL}")
    # RTNEURAL_DEFAULT_ALIGNMENT=32 without AVX: Eigen aligns to 16.
    spec = spec_of(tmp_path, 3, [LayerSpec("dense", 4, "tanh")], name="aligned")
    header = tmp_path / "aligned.h"
    header.write_text(render_header(spec))
    source = tmp_path / "use.cpp"
    source.write_text('#include "aligned.h"\nint main() { return 0; }\n')
    compiler = shutil.which("c++") or "g++"
    flags = ["-std=c++17", "-E", "-march=x86-64", "-DRTNEURAL_USE_EIGEN=1", "-DRTNEURAL_DEFAULT_ALIGNMENT=32",
             f"-I{RTNEURAL}", f"-I{RTNEURAL / 'modules' / 'Eigen'}", str(source), "-o", "/dev/null"]
    done = subprocess.run([compiler, *flags], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode != 0
    assert "RTNEURAL_DEFAULT_ALIGNMENT is larger than the alignment Eigen gives its buffers" in done.stderr
    assert "Enable AVX (-mavx, or -march=<your target>) or define RTNEURAL_DEFAULT_ALIGNMENT=16" in done.stderr
    done = subprocess.run([compiler, *flags[:2], "-mavx", *flags[3:]], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    # The runner, built the same way, names it from its self-test.
    monkeypatch.setenv(rc.ENV_BACKEND, "eigen")
    monkeypatch.setenv(rc.ENV_CXXFLAGS, "-march=x86-64 -DRTNEURAL_DEFAULT_ALIGNMENT=32")
    with pytest.raises(ToolchainError, match=r"fails its self-test .*RTNEURAL_DEFAULT_ALIGNMENT=32 but Eigen aligns its "
                                             r"buffers to 16 bytes \(no AVX in this build\)"):
        rc.runner_for(rc.find_toolchain())


@needs_rtneural
def test_eigen_with_its_stack_limit_at_0_does_not_allocate_in_forward(tmp_path: Path, cpp: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """What issue 22 asked to find out: a layer whose fixed-size matrices exceed Eigen's stack limit
    needs EIGEN_STACK_ALLOCATION_LIMIT=0 to compile (the headers say so). Does forward() then put
    temporaries on the heap? Measured: no (the products RTNeural's layers use need none), in the
    dynamic model and in the compiled header alike."""
    if not (RTNEURAL / "modules" / "Eigen" / "Eigen" / "Dense").is_file():
        pytest.skip(f"no modules/Eigen in {RTNEURAL}")
    monkeypatch.setenv(rc.ENV_BACKEND, "eigen")
    spec = spec_of(tmp_path, 128, [LayerSpec("dense", 512, "tanh"), LayerSpec("lstm", 64), LayerSpec("gru", 64),
                                   LayerSpec("dense", 8, "linear")], name="big")
    module = widened(spec, seed=2)
    header = tmp_path / "big.h"
    RTNeuralCppExporter().export(spec, module, header)
    assert re.search(r"EIGEN_STACK_ALLOCATION_LIMIT < \d+", header.read_text())  # above the default limit
    from modelreg.rtneural.header import header_engine_checks

    checks = dict(header_engine_checks(spec, module, 1e-5))
    realtime = checks["realtime"](header)
    assert realtime.status == "pass" and realtime.figures["allocations"] == 0, realtime
    assert realtime.figures["backend"] == "eigen"


# ---------------------------------------------------------------- resting state in the headers

REST_ENTRY = """\
[models.rester]
description = "a GRU whose resting state on 0.5 is far from zero"
input_shape = [1, 3]
output_shape = [1, 2]
dtype = "float32"
params = 118
latency_ms = 50.0
exports = ["rtneural", "rtneural-cpp"]
checkpoint = "models/rester.pt"
cpp_weights = "{weights}"
reset = "rest"
rest_input = 0.5
layers = [
    {{ type = "gru", units = 4 }},
    {{ type = "dense", units = 2, activation = "sigmoid" }},
]
"""


@needs_rtneural
@pytest.mark.parametrize("weights", ["embedded", "json"])
def test_the_headers_reset_restores_the_resting_state_and_a_short_warm_up_is_caught(tmp_path: Path, cpp: Path,
                                                                                    weights: str) -> None:
    from modelreg.checkpoint import init_checkpoint
    from modelreg.rtneural.header import header_engine_checks, rest_warmup

    path = write_registry(tmp_path / "project", text=REST_ENTRY.format(weights=weights))
    init_checkpoint(modelreg.load_registry(path)["rester"], seed=5)
    assert modelreg.export_all(path).ok
    model = modelreg.validate_all(path, latency_seconds=0.02, write=False)["rester"]
    check = model["rtneural-cpp.rest"]
    assert check.status == "pass", check
    assert check.figures["click_rest"] <= check.figures["allowed"] < check.figures["click_zero"]
    assert check.figures["reset_frames"] >= check.figures["float32_frames"]
    assert model["rtneural-cpp.realtime"].figures["allocations"] == 0  # the warm-up allocates nothing either
    assert model["rtneural-cpp.parity"].status == "pass"  # parity starts from zeros, as torch's reference
    # A header whose reset() stops short of rest clicks: the check says reset = "rest" is not honoured.
    spec = modelreg.load_registry(path)["rester"]
    module = spec.load()
    resting = module.resting_state()
    header = tmp_path / "short.h"
    arrays = weight_arrays(spec, module) if weights == "embedded" else None
    text = render_header(spec, arrays, resting)
    assert f"inline constexpr int kRestFrames = {rest_warmup(resting)};" in text
    header.write_text(text.replace(f"kRestFrames = {rest_warmup(resting)};", "kRestFrames = 1;"))
    with pytest.raises(ArtifactError, match="are not the checkpoint's"):
        RTNeuralCppExporter().verify(spec, module, header, 1e-5)
    failed = dict(header_engine_checks(spec, module, 1e-5))["rest"](header)
    assert failed.status == "fail" and 'reset = "rest" is not honoured' in failed.message, failed
