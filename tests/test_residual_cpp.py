"""Residual blocks in C++ (issue 19, section 2): the rtneural-cpp header of a model with blocks is a
struct of RTNeural compile-time layers per path, proven against torch over a stream in RTNeural's
own C++ (STL and Eigen backends). Its JSON weight form (the state-dict JSON rtneural-torch writes)
is proven in tests/test_rtneural_torch.py."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from modelreg import load_registry
from modelreg.builder import build_module
from modelreg.rtneural import cpp as rc
from modelreg.rtneural.header import RTNeuralCppExporter, render_header, weight_arrays

from conftest import RTNEURAL, needs_rtneural
from kind_tools import widened
from test_residual import PARAMS, TCN


def _spec(tmp_path: Path, weights: str = "embedded", inputs: int = 2):  # type: ignore[no-untyped-def]
    text = TCN.format(params=PARAMS).replace("exports = []", f'exports = ["rtneural-cpp"]\ncpp_weights = "{weights}"')
    if inputs == 1:  # ModelT's one-input forward (it broadcasts input[0]) in the first stage
        text = text.replace("input_shape = [1, 2]", "input_shape = [1, 1]").replace(f"params = {PARAMS}",
                                                                                   f"params = {PARAMS - 6}")
    path = tmp_path / "registry.toml"
    path.write_text(text, encoding="utf-8")
    return load_registry(path)["restcn"]


def test_the_header_holds_a_struct_per_block_and_every_weight(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    module = build_module(spec, seed=0)
    text = render_header(spec, weight_arrays(spec, module))
    assert "struct Model : Net, modelreg_rt::ModelAllocation" in text and "RTNeural::ModelT<float, 2, 6," in text
    for block in ("struct Block0", "struct Block1", "struct Block2"):  # the nested block comes before its parent
        assert block in text
    assert text.index("struct Block1") < text.index("struct Block2") < text.index("struct Net")
    assert "const float* skip_out = ins;" in text  # the nested block's identity skip
    assert "model.s2.layers1.layers0.template get<0>().setWVals" in text  # the GRU inside the nested block
    # Every float of the checkpoint is embedded exactly once.
    assert f"if(w.values_read() != {sum(a.size for layer in weight_arrays(spec, module) for a in layer)})" in text
    # The exporter's own artifact check accepts it, and rejects a header of other layers.
    path = tmp_path / "restcn.h"
    RTNeuralCppExporter().export(spec, module, path)
    assert RTNeuralCppExporter().check_artifact(spec, path) == []
    path.write_text(path.read_text().replace("Conv1DT<float, 6, 6, 3, 2, 1>", "Conv1DT<float, 6, 6, 3, 1, 1>"))
    assert RTNeuralCppExporter().check_artifact(spec, path)


@needs_rtneural
@pytest.mark.parametrize("inputs", [2, 1])
def test_stl_header_matches_torch_over_the_stream(tmp_path: Path, cpp: Path, inputs: int) -> None:
    spec = _spec(tmp_path, inputs=inputs)
    module = widened(spec, seed=4)
    path = tmp_path / "restcn.h"
    exporter = RTNeuralCppExporter()
    exporter.export(spec, module, path)
    result = exporter.verify(spec, module, path, 1e-5)
    assert not result.skipped and result.ok, result.to_figures()
    assert rc.find_toolchain().backend == "stl"
    if inputs == 2:
        # The audio thread: reset() and forward() of the composed model allocate nothing.
        checks = dict(exporter.extra_checks(spec, module, 1e-5))
        realtime = checks["realtime"](path)
        assert realtime.status == "pass", realtime


@needs_rtneural
def test_eigen_header_matches_torch_over_the_stream(tmp_path: Path, cpp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (RTNEURAL / "modules" / "Eigen" / "Eigen" / "Dense").is_file():
        pytest.skip(f"no modules/Eigen in {RTNEURAL}")
    monkeypatch.delenv(rc.ENV_BACKEND)  # Eigen is found in the checkout: the default
    spec = _spec(tmp_path)
    module = widened(spec, seed=5)
    path = tmp_path / "restcn.h"
    exporter = RTNeuralCppExporter()
    exporter.export(spec, module, path)
    assert rc.find_toolchain().backend == "eigen"
    result = exporter.verify(spec, module, path, 1e-5)
    assert not result.skipped and result.ok, result.to_figures()


@needs_rtneural
def test_a_wrong_residual_add_fails_the_cpp_parity(tmp_path: Path, cpp: Path) -> None:
    # The proof can fail: a header that subtracts the skip path compiles, loads and is caught by parity.
    spec = _spec(tmp_path)
    module = widened(spec, seed=4)
    path = tmp_path / "restcn.h"
    RTNeuralCppExporter().export(spec, module, path)
    text = path.read_text()
    assert text.count("main_out[i] + skip_out[i]") == 3
    path.write_text(text.replace("main_out[i] + skip_out[i]", "main_out[i] - skip_out[i]", 1))
    result = RTNeuralCppExporter().verify(spec, module, path, 1e-5)
    assert not result.skipped and not result.ok


def test_straight_stacks_keep_their_modelt_header(tmp_path: Path) -> None:
    # A model without blocks is written as before: one ModelT, no struct.
    from modelreg.spec import ModelSpec

    spec = _spec(tmp_path)
    plain = attrs.evolve(spec, layers=(spec.layers[0], spec.layers[3], spec.layers[4]), output_shape=(1, 2))
    assert isinstance(plain, ModelSpec)
    text = render_header(plain, weight_arrays(plain, build_module(plain, seed=0)))
    assert "using Stages = RTNeural::ModelT<float, 2, 2," in text and "struct Net" not in text
    assert "model.template get<1>().setWVals" in text
