"""The numpy RTNeural runtime: RTNeural's golden outputs, the file checks, the step API."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelreg.errors import ArtifactError, UsageError
from modelreg.layers import kinds
from modelreg.rtneural.runtime import RTNeuralModel, _schema, check_rtneural, load_rtneural

from conftest import GOLDEN
GOLDEN_MODELS = ("dense", "lstm", "lstm_1d", "gru_1d")
TOLERANCE = 1e-5


def golden_dir() -> Path:
    # A missing folder must fail, not skip: otherwise the semantics go unproven silently.
    if not GOLDEN.is_dir():
        pytest.fail(f"RTNeural golden data is missing: expected the folder {GOLDEN} (see its README.md)")
    return GOLDEN


def golden_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((golden_dir() / f"{name}.json").read_text(encoding="utf-8"))
    return data


def small_dense() -> dict[str, Any]:
    """in 2 -> dense 3 (tanh) -> dense 1."""
    return {
        "in_shape": [None, None, 2],
        "layers": [
            {"type": "dense", "activation": "tanh", "shape": [None, None, 3],
             "weights": [[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], [0.0, 0.1, -0.1]]},
            {"type": "dense", "activation": "", "shape": [None, None, 1], "weights": [[[1.0], [2.0], [3.0]], [0.5]]},
        ],
    }


def small_lstm() -> dict[str, Any]:
    rng = np.random.default_rng(3)
    return {
        "in_shape": [None, None, 2],
        "layers": [
            {"type": "lstm", "activation": "tanh", "shape": [None, None, 3],
             "weights": [rng.normal(size=(2, 12)).tolist(), rng.normal(size=(3, 12)).tolist(),
                         rng.normal(size=12).tolist()]},
            {"type": "dense", "activation": "", "shape": [None, None, 1], "weights": [[[1.0], [2.0], [3.0]], [0.5]]},
        ],
    }


def keys(problems: list[Any]) -> list[str | None]:
    return [p.key for p in problems]


# --------------------------------------------------------------------------- golden


@pytest.mark.parametrize("name", GOLDEN_MODELS)
def test_golden_outputs_match_rtneural(name: str) -> None:
    folder = golden_dir()
    model = load_rtneural(folder / f"{name}.json")
    x = np.loadtxt(folder / f"{name}_x.csv", delimiter=",", ndmin=2)
    y = np.loadtxt(folder / f"{name}_y.csv", delimiter=",", ndmin=2)
    assert x.shape[0] == y.shape[0] > 0
    model.reset()
    out = np.stack([model.step(row) for row in x])
    assert out.shape == y.shape
    error = float(np.abs(out - y).max())
    assert error <= TOLERANCE, f"{name}: max abs error {error:.3g} against RTNeural's expected outputs (limit {TOLERANCE})"


@pytest.mark.parametrize("name", GOLDEN_MODELS)
def test_golden_files_pass_the_checks(name: str) -> None:
    assert check_rtneural(golden_json(name), file=f"{name}.json") == []


def test_golden_structure_is_read_like_the_loader() -> None:
    dense = load_rtneural(golden_dir() / "dense.json")
    # 9 dense layers + 4 stand-alone activations; the 3 bias-less dense layers get zero bias.
    assert len(dense.layers) == 12
    assert (dense.in_size, dense.out_size, dense.is_stateful) == (1, 1, False)
    assert all(np.all(layer.bias == 0) for layer in dense.layers[-3:])  # type: ignore[union-attr]
    gru = load_rtneural(golden_dir() / "gru_1d.json")
    # The gru layer's "activation": "tanh" is ignored (as by the loader); the dense sigmoid is not.
    assert [type(layer).__name__ for layer in gru.layers] == ["GRULayer", "DenseLayer", "ActivationLayer", "DenseLayer"]
    assert gru.is_stateful


def test_run_matches_step_and_batches_are_independent() -> None:
    folder = golden_dir()
    model = load_rtneural(folder / "lstm.json")
    x = np.loadtxt(folder / "lstm_x.csv", delimiter=",", ndmin=2).astype(np.float32)
    model.reset()
    stepped = np.stack([model.step(row) for row in x])
    model.reset()
    ran = model.run(x)
    np.testing.assert_array_equal(ran, stepped)
    # Batch row 0 is the stream, row 1 a scaled copy: each keeps its own state.
    model.reset()
    batched = model.run(np.stack([x, 0.5 * x]))
    assert batched.shape == (2, x.shape[0], 1)
    np.testing.assert_allclose(batched[0], stepped, atol=1e-6)
    model.reset()
    np.testing.assert_allclose(batched[1], model.run(0.5 * x), atol=1e-6)


# --------------------------------------------------------------------------- step API


def test_state_is_carried_and_reset() -> None:
    model = load_rtneural(small_lstm())
    first = model.step([1.0, -1.0])
    second = model.step([1.0, -1.0])
    assert not np.allclose(first, second)  # state moved on
    model.reset()
    np.testing.assert_array_equal(model.step([1.0, -1.0]), first)
    assert first.dtype == np.float32 and first.shape == (1,)


def test_batch_size_is_fixed_until_reset() -> None:
    model = load_rtneural(small_lstm())
    out = model.step(np.ones((3, 2)))
    assert out.shape == (3, 1)
    with pytest.raises(UsageError) as info:
        model.step(np.ones((2, 2)))
    assert "batch size" in str(info.value) and info.value.problems[0].expected is not None
    with pytest.raises(UsageError):
        model.step(np.ones(2))  # a single frame is a batch of one
    model.reset()
    assert model.step(np.ones((2, 2))).shape == (2, 1)


def test_stateless_model_takes_any_batch() -> None:
    model = load_rtneural(small_dense())
    assert model.step(np.ones((4, 2))).shape == (4, 1)
    assert model.step(np.ones(2)).shape == (1,)


# Kinds RTNeural's JSON can hold (a residual block cannot: the exporter refuses it, tests/test_residual.py),
# with their examples it can hold (a strided conv1d cannot: tests/test_strided_conv1d.py).
@pytest.mark.parametrize("kind", [kind for kind in kinds() if kind.rtneural_types], ids=lambda kind: kind.name)
def test_every_layer_example_runs_any_batch_like_torch(tmp_path: Path, kind: Any) -> None:
    """Alone, so that a layer without history (a kernel of 1 frame) makes a stateless model,
    whose layers are never reset to the batch size: they must take any batch anyway."""
    from modelreg.checks import run_frames
    from modelreg.rtneural.exporter import RTNeuralExporter

    from kind_tools import spec_of, widened

    frames = np.random.default_rng(2).standard_normal((3, 4, 6)).astype(np.float32)
    for example in kind.examples:
        layer = kind.spec({"type": kind.name, **example}, 6)
        if kind.rtneural_json_refusal(layer) is not None:
            continue
        spec = spec_of(tmp_path, 6, [layer])
        module = widened(spec, seed=5)
        RTNeuralExporter().export(spec, module, tmp_path / "kind.json")
        model = load_rtneural(tmp_path / "kind.json")
        np.testing.assert_allclose(model.run(frames), run_frames(module, frames), rtol=1e-5, atol=1e-5,
                                   err_msg=str(example))
        model.reset()
        assert model.step(frames[:1, 0]).shape == (1, spec.out_features)  # and another batch after a reset


def test_wrong_input_shape_is_a_usage_error() -> None:
    model = load_rtneural(small_dense())
    with pytest.raises(UsageError) as info:
        model.step(np.ones(3))
    assert info.value.key == "x" and "[2]" in str(info.value)
    with pytest.raises(UsageError):
        model.run(np.ones(2))
    with pytest.raises(UsageError):
        model.run(np.ones((1, 2, 3, 2)))


def test_activations_follow_rtneural() -> None:
    # One dense identity layer per activation, so the activation alone is seen.
    x = np.array([-100.0, -1.5, -0.0, 0.5, 3.0, 100.0], dtype=np.float32)
    expected = {
        "": x,
        "tanh": np.tanh(x),
        "relu": np.maximum(x, 0),
        "sigmoid": 1 / (1 + np.exp(-x.astype(np.float64))),
        "elu": np.where(x > 0, x, np.exp(np.minimum(x, 0).astype(np.float64)) - 1),
        # RTNeural's softmax is exp(x) / sum, not shifted by the maximum: exp(100) overflows
        # float32 to inf, and the row becomes NaN there and 0 elsewhere (tests/test_rtneural_cpp.py
        # shows RTNeural's C++ doing exactly that).
        "softmax": np.array([0, 0, 0, 0, 0, np.nan]),
    }
    for name, want in expected.items():
        model = load_rtneural({
            "in_shape": [None, 6],
            "layers": [{"type": "dense", "activation": name, "shape": [None, 6], "weights": [np.eye(6).tolist()]}],
        })
        with np.errstate(over="ignore"):
            got = model.step(x)
        np.testing.assert_allclose(got, want, atol=1e-6, err_msg=name)
        assert np.all(np.isfinite(got)) == (name != "softmax"), name
    below = x[:-1]  # up to 3.0: nothing overflows, the usual softmax
    softmax = load_rtneural({"in_shape": [None, 5], "layers": [
        {"type": "dense", "activation": "softmax", "shape": [None, 5], "weights": [np.eye(5).tolist()]}]})
    np.testing.assert_allclose(softmax.step(below), np.exp(below) / np.exp(below).sum(), rtol=1e-6)


def test_model_holds_float32_weights() -> None:
    model = load_rtneural(golden_dir() / "lstm.json")
    assert isinstance(model, RTNeuralModel)
    for layer in model.layers:
        for value in vars(layer).values():
            if isinstance(value, np.ndarray):
                assert value.dtype == np.float32


# --------------------------------------------------------------------------- checks


def test_schema_is_valid_draft_2020_12() -> None:
    import jsonschema

    schema = _schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_kernel_rows_must_match_previous_layer() -> None:
    data = small_dense()
    data["layers"][1]["weights"][0] = [[1.0], [2.0]]  # 2 rows, previous layer has 3 outputs
    problems = check_rtneural(data, file="m.json")
    assert keys(problems) == ["layers[1].weights[0]"]
    text = str(problems[0])
    assert text.startswith("m.json: layers[1].weights[0]: row count 2") and "expected 3 rows" in text


def test_first_kernel_must_match_in_shape() -> None:
    data = small_dense()
    data["in_shape"] = [None, None, 5]
    problems = check_rtneural(data)
    assert keys(problems) == ["layers[0].weights[0]"]
    assert "in_shape" in problems[0].reason


def test_columns_and_bias_must_match_units() -> None:
    data = small_dense()
    data["layers"][0]["shape"] = [None, None, 4]
    problems = check_rtneural(data)
    # kernel columns, bias length, and the next kernel's rows all disagree with 4 units.
    assert keys(problems) == ["layers[0].weights[0]", "layers[0].weights[1]", "layers[1].weights[0]"]


def test_recurrent_sizes_are_checked() -> None:
    data = small_lstm()
    data["layers"][0]["weights"][1] = np.zeros((3, 9)).tolist()  # 9 = 3 gates, not 4
    data["layers"][0]["weights"][2] = [0.0] * 11
    problems = check_rtneural(data)
    assert keys(problems) == ["layers[0].weights[1]", "layers[0].weights[2]"]
    assert problems[0].expected == "12 columns" and problems[0].found == "9 columns"
    gru = golden_json("gru_1d")
    gru["layers"][0]["weights"][2] = gru["layers"][0]["weights"][2][:1]  # one bias row instead of two
    problems = check_rtneural(gru)
    assert keys(problems) == ["layers[0].weights[2]"]
    assert "two bias rows" in str(problems[0])


def test_ragged_matrix_is_reported() -> None:
    data = small_dense()
    data["layers"][0]["weights"][0][1] = [0.4, 0.5]
    problems = check_rtneural(data)
    assert keys(problems) == ["layers[0].weights[0][1]"]
    assert "different lengths" in problems[0].reason


def test_unknown_layer_type() -> None:
    data = small_dense()
    data["layers"][0]["type"] = "conv3d"  # RTNeural's loader would skip it silently
    problems = check_rtneural(data)
    assert "layers[0].type" in keys(problems)
    problem = next(p for p in problems if p.key == "layers[0].type")
    assert "unknown or unsupported layer type" in problem.reason and problem.found == "'conv3d'"


@pytest.mark.parametrize("name", ["linear", "swish", "Tanh"])
def test_unknown_activation(name: str) -> None:
    data = small_dense()
    data["layers"][1]["activation"] = name
    problems = check_rtneural(data)
    assert keys(problems) == ["layers[1].activation"]
    assert "unknown activation" in problems[0].reason


def test_non_numeric_weight() -> None:
    data = small_dense()
    data["layers"][0]["weights"][0][1][2] = "0.6"
    data["layers"][1]["weights"][1] = [True]
    problems = check_rtneural(data)
    assert keys(problems) == ["layers[0].weights[0][1][2]", "layers[1].weights[1][0]"]
    assert all(p.reason == "wrong type" and p.expected == "a number" for p in problems)


def test_nan_literal_in_file(tmp_path: Path) -> None:
    text = json.dumps(small_dense()).replace("0.5, 0.6", "NaN, Infinity")
    assert "NaN" in text
    path = tmp_path / "nan.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ArtifactError) as info:
        load_rtneural(path)
    problem = info.value.problems[0]
    assert (problem.file, problem.key) == (str(path), "layers[0].weights[0][1][1]")
    assert "not a finite number" in problem.reason and "2 such values" in problem.reason


def test_float32_overflow_is_reported() -> None:
    data = small_dense()
    data["layers"][1]["weights"][1] = [1e39]
    problems = check_rtneural(data)
    assert keys(problems) == ["layers[1].weights[1][0]"]
    assert "float32" in problems[0].reason


def test_truncated_json(tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    text = json.dumps(small_dense(), indent=2)
    cuts = {
        "half": len(text) // 2,
        "inside a number": text.index("0.5") + 2,
        "inside a string": text.index('"activation"') + 4,
        "after a bracket": text.index("[", text.index("layers")) + 1,
        "after a comma": text.index(",") + 1,
    }
    for where, cut in cuts.items():
        path.write_text(text[:cut], encoding="utf-8")
        with pytest.raises(ArtifactError) as info:
            load_rtneural(path)
        problem = info.value.problems[0]
        assert "truncated JSON" in problem.reason, where
        assert problem.line is not None and problem.line > 1 and problem.column is not None
        assert str(problem).startswith(f"{path}:{problem.line}:{problem.column}: ")


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "in_shape": [null, 1],\n  "layers": [}\n', encoding="utf-8")
    with pytest.raises(ArtifactError) as info:
        load_rtneural(path)
    problem = info.value.problems[0]
    assert problem.reason.startswith("invalid JSON") and (problem.line, problem.column) == (3, 14)


def test_invalid_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"in_shape": [null, 1],\n "x": "caf\xe9"}')
    with pytest.raises(ArtifactError) as info:
        load_rtneural(path)
    problem = info.value.problems[0]
    assert problem.reason == "not valid UTF-8" and (problem.line, problem.column) == (2, 11)


def test_missing_file_and_not_an_object(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="not found"):
        load_rtneural(tmp_path / "nope.json")
    path = tmp_path / "list.json"
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ArtifactError, match="must be a JSON object"):
        load_rtneural(path)


def test_missing_in_shape() -> None:
    data = small_dense()
    del data["in_shape"]
    problems = check_rtneural(data, file="m.json")
    assert keys(problems) == ["in_shape"]
    assert str(problems[0]) == "m.json: in_shape: missing required key"


def test_bad_shapes() -> None:
    data = small_dense()
    data["in_shape"] = [None, None, None, 2]  # conv2d-style, unsupported
    data["layers"][0]["shape"] = [None, None, 0]
    problems = check_rtneural(data)
    assert keys(problems)[:2] == ["in_shape", "layers[0].shape"]
    assert "[null, null, N]" in str(problems[0].expected)


def test_empty_shapes_are_refused() -> None:
    # Found by tests/test_fuzz.py: [] matched the schema's [N] branch (prefixItems
    # alone does not require an item) and the runtime then had no input size.
    data = small_dense()
    data["in_shape"] = []
    data["layers"][0]["shape"] = []
    problems = check_rtneural(data, file="m.json")
    assert keys(problems) == ["in_shape", "layers[0].shape"]
    with pytest.raises(ArtifactError, match="in_shape"):
        load_rtneural(data, file="m.json")


def test_a_parsed_document_that_is_not_an_object_is_refused_like_a_file() -> None:
    for value in ([1, 2], 0.0, None):  # (a str is a path)
        with pytest.raises(ArtifactError, match="m.json: an RTNeural model must be a JSON object"):
            load_rtneural(value, file="m.json")


def test_activation_layer_rules() -> None:
    data = golden_json("dense")
    data["layers"][1]["weights"] = [[1.0]]  # an activation layer has no weights
    data["layers"][3]["shape"] = [None, 7]  # and keeps the size
    del data["layers"][5]["activation"]
    problems = check_rtneural(data)
    assert keys(problems) == ["layers[1].weights", "layers[3].shape", "layers[5].activation"]


def test_several_problems_are_reported_together() -> None:
    data = small_lstm()
    data["layers"][0]["type"] = "lstmm"
    data["layers"][1]["weights"][0] = [[1.0], [2.0]]
    data["layers"][1]["weights"][1] = [float("nan")]
    data["layers"][1]["activation"] = "linear"
    del data["in_shape"]
    with pytest.raises(ArtifactError) as info:
        load_rtneural(data, file="m.json")
    found = keys(list(info.value.problems))
    assert found == ["in_shape", "layers[0].type", "layers[1].activation", "layers[1].weights[0]",
                     "layers[1].weights[1][0]"]
    assert str(info.value).startswith("5 problems:")
    assert all(p.file == "m.json" for p in info.value.problems)


def test_extra_keys_are_ignored_like_the_loader() -> None:
    data = small_dense()
    data["name"] = "from another exporter"
    data["layers"][0]["kernel_size"] = [3]
    assert check_rtneural(data) == []


def test_many_bad_numbers_are_capped() -> None:
    data = small_lstm()
    data["layers"][0]["weights"][1] = [["x"] * 12] * 3 + [["y"] * 12] * 10
    problems = check_rtneural(data)
    assert len(problems) == 101 and problems[-1].reason.startswith("... and ")


def test_check_accepts_numpy_arrays() -> None:
    data = copy.deepcopy(small_lstm())
    for layer in data["layers"]:
        layer["weights"] = [np.asarray(w, dtype=np.float32) for w in layer["weights"]]
    assert check_rtneural(data) == []
    lists = load_rtneural(small_lstm()).run(np.ones((5, 2)))
    arrays = load_rtneural(data).run(np.ones((5, 2)))
    np.testing.assert_array_equal(lists, arrays)


def test_importing_the_runtime_does_not_import_torch() -> None:
    code = ("import sys, modelreg.rtneural.runtime, modelreg.rtneural.format; "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
