"""Residual blocks (issue 19, section 2): ``{ type = "residual", layers = [...], skip = [...] }``.

The registry side (sizes, params without building, state, nesting), torch (streaming equals the
whole sequence, seeded init, checkpoint keys), show and the report's drawing, the RTNeural JSON
exporter's refusal and ONNX with explicit state. The C++ side is in test_residual_cpp.py.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from modelreg import load_registry
from modelreg.builder import build_module
from modelreg.errors import ExportError, RegistryError

from conftest import run_cli

# A residual TCN with every kind of the issue inside blocks: dilated conv1d, batchnorm, prelu, a GRU
# in a nested block (identity skip), a 1x1 conv1d skip.
TCN = """\
[models.restcn]
description = "a residual TCN"
input_shape = [1, 2]
output_shape = [1, 2]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = []
checkpoint = "models/restcn.pt"
layers = [
    {{ type = "conv1d", units = 6, kernel_size = 1 }},
    {{ type = "residual", layers = [
        {{ type = "conv1d", units = 6, kernel_size = 3, dilation = 2 }},
        {{ type = "batchnorm" }},
        {{ type = "prelu" }},
    ], skip = [ {{ type = "conv1d", units = 6, kernel_size = 1 }} ] }},
    {{ type = "residual", layers = [
        {{ type = "conv1d", units = 4, kernel_size = 2, dilation = 4, activation = "tanh" }},
        {{ type = "residual", layers = [ {{ type = "gru", units = 4 }} ] }},
    ], skip = [ {{ type = "conv1d", units = 4, kernel_size = 2, dilation = 3 }} ] }},
    {{ type = "gru", units = 5 }},
    {{ type = "dense", units = 2, activation = "linear" }},
]
"""
# conv1d 2->6 k1: 18; block 1: conv 6*6*3+6=114, batchnorm 12, prelu 6, skip 6*6+6=42 -> 174;
# block 2: conv 4*6*2+4=52, gru 3*(4*4+4*4+8)=120, skip 4*6*2+4=52 -> 224; gru 6->5: 3*(5*4+5*5+10)=165... (torch counts)
PARAMS = 18 + 174 + 224 + 3 * (5 * 4 + 5 * 5 + 10) + 12


@pytest.fixture
def registry_file(tmp_path: Path) -> Path:
    path = tmp_path / "registry.toml"
    path.write_text(TCN.format(params=PARAMS), encoding="utf-8")
    return path


def test_params_are_counted_without_building_and_match_torch(registry_file: Path) -> None:
    spec = load_registry(registry_file)["restcn"]
    assert spec.computed_params == PARAMS
    module = build_module(spec, seed=0)
    assert sum(p.numel() for p in module.parameters()) == PARAMS
    assert spec.is_stateful
    assert spec.layers[1].units == 6 and spec.layers[2].units == 4


def test_checkpoint_keys_nest_pytorch_style(registry_file: Path) -> None:
    module = build_module(load_registry(registry_file)["restcn"], seed=0)
    keys = list(module.state_dict())
    assert "layers.1.layers.0.weight" in keys and "layers.1.skip.0.bias" in keys
    assert "layers.1.layers.1.running_var" in keys  # the batchnorm inside block 1
    assert "layers.2.layers.1.layers.0.weight_hh_l0" in keys  # the GRU in the block nested in block 2
    assert not any(key.startswith("layers.2.layers.1.skip") for key in keys)  # an identity skip has no weights


def test_state_covers_both_paths_with_unique_names(registry_file: Path) -> None:
    module = build_module(load_registry(registry_file)["restcn"], seed=0)
    assert module.state_layout() == [
        ("buf1.layers.0", 4 * 6),  # (3 - 1) * 2 past frames of 6 channels
        ("buf2.layers.0", 4 * 6),
        ("h2.layers.1.layers.0", 4),
        ("buf2.skip.0", 3 * 6),  # the skip path's conv buffer
        ("h3", 5),
    ]


def test_streaming_frame_by_frame_equals_the_whole_sequence(registry_file: Path) -> None:
    module = build_module(load_registry(registry_file)["restcn"], seed=3)
    with torch.no_grad():
        for parameter in module.parameters():  # wide weights: every path must matter
            parameter.mul_(2.0)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((3, 48, 2)).astype(np.float32))
    with torch.no_grad():
        whole = module(x)
        module.reset()
        frames = torch.stack([module(x[:, t]) for t in range(x.shape[1])], dim=1)
    np.testing.assert_allclose(frames.numpy(), whole.numpy(), atol=2e-6)
    # The stream depends on the past (the buffers and the GRUs carry it): a reset changes the output.
    with torch.no_grad():
        module.reset()
        late = module(x[:, 20])
    assert not torch.allclose(late, whole[:, 20], atol=1e-4)


def test_the_block_adds_its_paths(tmp_path: Path) -> None:
    # Identity skip: main path + input; with the main path zeroed, the block passes its input.
    (tmp_path / "registry.toml").write_text(textwrap.dedent("""\
        [models.ident]
        description = "one block"
        input_shape = [1, 3]
        output_shape = [1, 3]
        dtype = "float32"
        params = 12
        latency_ms = 50.0
        exports = []
        checkpoint = "models/ident.pt"
        layers = [ { type = "residual", layers = [ { type = "dense", units = 3, activation = "tanh" } ] } ]
        """), encoding="utf-8")
    module = build_module(load_registry(tmp_path / "registry.toml")["ident"], seed=0)
    x = torch.randn(2, 3)
    dense = module.layers[0].layers[0]
    with torch.no_grad():
        assert torch.allclose(module(x), torch.tanh(dense(x)) + x, atol=1e-6)
        dense.weight.zero_()
        dense.bias.zero_()
        assert torch.equal(module(x), x)


def test_seeded_init_is_reproducible_and_covers_both_paths(registry_file: Path) -> None:
    spec = load_registry(registry_file)["restcn"]
    a, b, c = build_module(spec, seed=0), build_module(spec, seed=0), build_module(spec, seed=1)
    for key, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[key]), key
    assert not torch.equal(a.state_dict()["layers.1.skip.0.weight"], c.state_dict()["layers.1.skip.0.weight"])


def test_init_and_load_round_trip_through_the_checkpoint(registry_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["init", "--registry", str(registry_file)], capsys)
    assert code == 0, err
    spec = load_registry(registry_file)["restcn"]
    loaded = spec.load()
    fresh = build_module(spec, seed=0)
    for key, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[key]), key


def test_a_checkpoint_of_a_straight_stack_does_not_load_into_blocks(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from modelreg.errors import CheckpointError

    path = tmp_path / "registry.toml"
    path.write_text(TCN.format(params=PARAMS), encoding="utf-8")
    spec = load_registry(path)["restcn"]
    (tmp_path / "models").mkdir()
    torch.save({"layers.1.weight": torch.zeros(6, 6, 3)}, spec.checkpoint)
    with pytest.raises(CheckpointError) as caught:
        spec.load()
    assert "layers.1.layers.0.weight" in str(caught.value)


def test_show_opens_blocks(registry_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(["show", "restcn", "--registry", str(registry_file)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    start = lines.index("  layers")
    assert lines[start + 1:start + 7] == [
        "    [0] conv1d 2 -> 6 linear, kernel_size=1, dilation=1, groups=1  (18 params)",
        "    [1] residual 6 -> 6  (174 params)",
        "      [1].layers[0] conv1d 6 -> 6 linear, kernel_size=3, dilation=2, groups=1  (114 params)",
        "      [1].layers[1] batchnorm 6 -> 6 epsilon=1e-05, affine=true  (12 params)",
        "      [1].layers[2] prelu 6 -> 6  (6 params)",
        "      [1].skip[0] conv1d 6 -> 6 linear, kernel_size=1, dilation=1, groups=1  (42 params)",
    ]
    assert "      [2].layers[1] residual 4 -> 4 skip=identity  (120 params)" in lines
    assert "        [2].layers[1].layers[0] gru 4 -> 4  (120 params)" in lines


def test_the_report_draws_every_layer_of_every_block(registry_file: Path) -> None:
    from modelreg.html_report import layer_chart

    svg = layer_chart(load_registry(registry_file)["restcn"])
    for label in ("[1] residual", "[1].skip[0] conv1d", "[2].layers[1] residual skip=identity",
                  "[2].layers[1].layers[0] gru", "[4] dense"):
        assert f">{label}" in svg, label


def test_rtneural_json_refuses_a_residual_entry_naming_rtneural_cpp(registry_file: Path, tmp_path: Path) -> None:
    from modelreg.rtneural.exporter import RTNeuralExporter

    text = registry_file.read_text().replace("exports = []", 'exports = ["onnx", "rtneural"]')
    registry_file.write_text(text)
    spec = load_registry(registry_file)["restcn"]
    with pytest.raises(ExportError) as caught:
        RTNeuralExporter().export(spec, build_module(spec, seed=0), tmp_path / "out.json")
    problem = caught.value.problems[0]
    assert problem.key == "models.restcn.exports[1]" and problem.model == "restcn"
    assert "rtneural-cpp" in problem.reason and "layers[1], layers[2]" in problem.reason
    assert not (tmp_path / "out.json").exists()


def test_the_cli_export_fails_on_rtneural_and_writes_onnx(registry_file: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    text = registry_file.read_text().replace("exports = []", 'exports = ["onnx", "rtneural"]')
    registry_file.write_text(text)
    assert run_cli(["init", "--registry", str(registry_file)], capsys)[0] == 0
    code, out, err = run_cli(["export", "--registry", str(registry_file)], capsys)
    assert code != 0
    assert "wrote restcn -> " in out and "restcn.onnx  parity error" in out
    assert "1 written, 0 fresh, 1 failed" in out
    assert ("FAIL  restcn (rtneural): " in out + err and "models.restcn.exports[1]: RTNeural's JSON format cannot "
            "express a residual block (layers[1], layers[2])") in out + err
    assert "Traceback" not in out + err


def test_onnx_with_explicit_state_matches_torch(registry_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from kind_tools import assert_onnx_runs_at_batch
    from modelreg.onnx.exporter import ONNXExporter

    spec = load_registry(registry_file)["restcn"]
    module = build_module(spec, seed=2)
    path = tmp_path / "restcn.onnx"
    exporter = ONNXExporter()
    exporter.export(spec, module, path)
    assert exporter.check_artifact(spec, path) == []
    parity = exporter.verify(spec, module, path, 1e-5)
    assert parity.ok, parity.to_figures()
    assert_onnx_runs_at_batch(spec, module, tmp_path, batch=3)
    import onnx

    names = [i.name for i in onnx.load(str(path)).graph.input]
    assert names == ["x", "buf1.layers.0", "buf2.layers.0", "h2.layers.1.layers.0", "buf2.skip.0", "h3"]


def test_onnx_parity_fails_when_a_path_is_wrong(registry_file: Path, tmp_path: Path) -> None:
    # The proof can fail: an ONNX file of other skip weights does not pass parity.
    pytest.importorskip("onnxruntime")
    from modelreg.onnx.exporter import ONNXExporter

    spec = load_registry(registry_file)["restcn"]
    module = build_module(spec, seed=2)
    other = build_module(spec, seed=2)
    with torch.no_grad():
        other.layers[2].skip[0].weight.mul_(-1.0)
    path = tmp_path / "restcn.onnx"
    ONNXExporter().export(spec, other, path)
    assert not ONNXExporter().verify(spec, module, path, 1e-5).ok


def test_bad_block_sizes_fail_in_the_api_with_both_sizes(tmp_path: Path) -> None:
    path = tmp_path / "registry.toml"
    text = TCN.format(params=PARAMS).replace('skip = [ { type = "conv1d", units = 4, kernel_size = 2, dilation = 3 } ]',
                                             'skip = [ { type = "conv1d", units = 5, kernel_size = 2, dilation = 3 } ]')
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError) as caught:
        load_registry(path)
    problem = caught.value.problems[0]
    assert problem.key == "models.restcn.layers[2].skip"
    assert "the skip path ends at 5 values and the main path (layers) at 4" in problem.reason
