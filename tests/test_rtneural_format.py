"""PyTorch -> RTNeural conversion and serialization: parity with torch, layout mistakes, losslessness."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modelreg.errors import ArtifactError, UsageError
from modelreg.rtneural.format import dumps_rtneural, to_rtneural
from modelreg.rtneural.runtime import check_rtneural, load_rtneural

TOLERANCE = 1e-5
FRAMES = 64
ACTIVATIONS = ("linear", "tanh", "relu", "sigmoid", "softmax", "elu")
LayerTuple = tuple[str, int, str]

_TORCH_ACT: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "softmax": lambda x: torch.softmax(x, dim=-1),
    "elu": torch.nn.functional.elu,  # alpha = 1
}


class TorchStack(torch.nn.Module):
    """The reference: torch modules named so the state dict has ``layers.{i}.*`` keys."""

    def __init__(self, spec: Sequence[LayerTuple], in_size: int, bias: bool = True) -> None:
        super().__init__()
        self.spec = list(spec)
        modules: list[torch.nn.Module] = []
        previous = in_size
        for kind, units, _ in spec:
            if kind == "dense":
                modules.append(torch.nn.Linear(previous, units, bias=bias))
            elif kind == "lstm":
                modules.append(torch.nn.LSTM(previous, units, batch_first=True, bias=bias))
            else:
                modules.append(torch.nn.GRU(previous, units, batch_first=True, bias=bias))
            previous = units
        self.layers = torch.nn.ModuleList(modules)

    def numpy_state(self) -> dict[str, np.ndarray]:
        return {key: value.detach().numpy().copy() for key, value in self.state_dict().items()}

    @torch.no_grad()
    def stream(self, frames: np.ndarray) -> np.ndarray:
        """Feed ``[T, in]`` (or ``[batch, T, in]``) one ``[batch, 1, in]`` step at a time, carrying (h, c)."""
        batched = frames if frames.ndim == 3 else frames[None]
        states: list[Any] = [None] * len(self.layers)
        outputs = []
        for t in range(batched.shape[1]):
            x = torch.from_numpy(np.ascontiguousarray(batched[:, t : t + 1], dtype=np.float32))
            for i, (layer, (kind, _, activation)) in enumerate(zip(self.layers, self.spec)):
                if kind == "dense":
                    x = _TORCH_ACT[activation](layer(x))
                else:
                    x, states[i] = layer(x, states[i])
            outputs.append(x[:, 0].numpy().copy())
        result = np.stack(outputs, axis=1)
        return result if frames.ndim == 3 else result[0]


def parity_error(
    spec: Sequence[LayerTuple],
    in_size: int,
    seed: int,
    corrupt: Callable[[dict[str, Any], dict[str, np.ndarray]], None] | None = None,
    bias: bool = True,
    batch: int | None = None,
) -> float:
    """Max abs difference between torch and RTNeural JSON (converted, serialized, re-read) over a stream."""
    torch.manual_seed(seed)
    reference = TorchStack(spec, in_size, bias=bias)
    state = reference.numpy_state()
    model = to_rtneural(spec, in_size, state)
    if corrupt is not None:
        corrupt(model, state)
        assert check_rtneural(model) == [], "the corruption must keep the file well-formed"
    runtime = load_rtneural(json.loads(dumps_rtneural(model)))
    rng = np.random.default_rng(seed)
    shape = (FRAMES, in_size) if batch is None else (batch, FRAMES, in_size)
    frames = rng.normal(scale=1.5, size=shape).astype(np.float32)
    runtime.reset()
    if batch is None:
        ours = np.stack([runtime.step(frame) for frame in frames])
    else:
        ours = np.stack([runtime.step(frames[:, t]) for t in range(FRAMES)], axis=1)
    theirs = reference.stream(frames)
    assert ours.shape == theirs.shape
    return float(np.abs(ours - theirs).max())


# --------------------------------------------------------------------------- parity


PARITY_CASES: dict[str, tuple[list[LayerTuple], int]] = {
    "dense per activation": ([("dense", 8, a) for a in ACTIVATIONS] + [("dense", 3, "linear")], 4),
    "lstm": ([("lstm", 16, "linear"), ("dense", 1, "linear")], 1),
    "gru": ([("gru", 16, "linear"), ("dense", 1, "linear")], 1),
    "lstm wide input": ([("lstm", 5, "tanh")], 12),
    "gru wide input": ([("gru", 5, "tanh")], 12),
    "mixed": ([("dense", 8, "tanh"), ("lstm", 12, "linear"), ("gru", 6, "linear"), ("dense", 2, "softmax")], 3),
    "stacked recurrent": ([("gru", 8, "linear"), ("gru", 8, "linear"), ("lstm", 8, "linear"), ("lstm", 4, "linear")], 2),
}


@pytest.mark.parametrize("name", list(PARITY_CASES))
def test_parity_with_torch(name: str) -> None:
    spec, in_size = PARITY_CASES[name]
    error = parity_error(spec, in_size, seed=7)
    assert error <= TOLERANCE, f"{name}: max abs error {error:.3g} against torch over {FRAMES} frames"


def test_parity_without_biases() -> None:
    spec = [("dense", 6, "relu"), ("lstm", 5, "linear"), ("gru", 4, "linear"), ("dense", 2, "linear")]
    error = parity_error(spec, 3, seed=11, bias=False)
    assert error <= TOLERANCE, f"max abs error {error:.3g}"


def test_parity_with_batched_streams() -> None:
    spec = [("dense", 6, "tanh"), ("lstm", 7, "linear"), ("gru", 5, "linear"), ("dense", 2, "linear")]
    error = parity_error(spec, 3, seed=5, batch=4)
    assert error <= TOLERANCE, f"max abs error {error:.3g}"


def test_parity_through_a_file(tmp_path: Path) -> None:
    spec = [("gru", 8, "linear"), ("dense", 1, "linear")]
    torch.manual_seed(2)
    reference = TorchStack(spec, 1)
    path = tmp_path / "model.json"
    path.write_bytes(dumps_rtneural(to_rtneural(spec, 1, reference.numpy_state())))
    frames = np.sin(np.arange(FRAMES, dtype=np.float32) * 0.3)[:, None]
    runtime = load_rtneural(path)
    error = float(np.abs(runtime.run(frames) - reference.stream(frames)).max())
    assert error <= TOLERANCE, f"max abs error {error:.3g}"


layer_strategy = st.tuples(st.sampled_from(["dense", "lstm", "gru"]), st.integers(1, 64), st.sampled_from(ACTIVATIONS))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(spec=st.lists(layer_strategy, min_size=1, max_size=4), in_size=st.integers(1, 64), seed=st.integers(0, 2**31 - 1))
def test_parity_property(spec: list[LayerTuple], in_size: int, seed: int) -> None:
    error = parity_error(spec, in_size, seed)
    assert error <= TOLERANCE, f"{spec} in={in_size} seed={seed}: max abs error {error:.3g}"


# --------------------------------------------------------------------------- layout mistakes are caught


def _swap_blocks(array: np.ndarray, hidden: int, a: int, b: int, axis: int) -> np.ndarray:
    blocks = np.split(array, array.shape[axis] // hidden, axis=axis)
    blocks[a], blocks[b] = blocks[b], blocks[a]
    return np.ascontiguousarray(np.concatenate(blocks, axis=axis))


def transpose_dense_kernel(model: dict[str, Any], state: dict[str, np.ndarray]) -> None:
    kernel = model["layers"][0]["weights"][0]
    assert kernel.shape[0] == kernel.shape[1]
    model["layers"][0]["weights"][0] = np.ascontiguousarray(kernel.T)


def swap_lstm_gates(a: int, b: int) -> Callable[[dict[str, Any], dict[str, np.ndarray]], None]:
    def corrupt(model: dict[str, Any], state: dict[str, np.ndarray]) -> None:
        weights = model["layers"][0]["weights"]
        hidden = weights[1].shape[0]
        model["layers"][0]["weights"] = [_swap_blocks(w, hidden, a, b, axis=-1) for w in weights]

    return corrupt


def swap_gru_rz(model: dict[str, Any], state: dict[str, np.ndarray]) -> None:
    weights = model["layers"][0]["weights"]
    hidden = weights[1].shape[0]
    model["layers"][0]["weights"] = [_swap_blocks(w, hidden, 0, 1, axis=-1) for w in weights]


def lstm_bias_ih_only(model: dict[str, Any], state: dict[str, np.ndarray]) -> None:
    model["layers"][0]["weights"][2] = state["layers.0.bias_ih_l0"].copy()


def gru_biases_summed(model: dict[str, Any], state: dict[str, np.ndarray]) -> None:
    # The classic mistake: b_hn moved outside the reset-gate product.
    bias = model["layers"][0]["weights"][2]
    model["layers"][0]["weights"][2] = np.stack([bias[0] + bias[1], np.zeros_like(bias[1])])


CORRUPTIONS: dict[str, tuple[Callable[[dict[str, Any], dict[str, np.ndarray]], None], list[LayerTuple]]] = {
    "dense kernel transposed": (transpose_dense_kernel, [("dense", 8, "tanh"), ("dense", 1, "linear")]),
    "lstm gates i and f swapped": (swap_lstm_gates(0, 1), [("lstm", 8, "linear"), ("dense", 1, "linear")]),
    "lstm gates c and o swapped": (swap_lstm_gates(2, 3), [("lstm", 8, "linear"), ("dense", 1, "linear")]),
    "gru gates r and z swapped": (swap_gru_rz, [("gru", 8, "linear"), ("dense", 1, "linear")]),
    "lstm bias_hh dropped": (lstm_bias_ih_only, [("lstm", 8, "linear"), ("dense", 1, "linear")]),
    "gru bias rows summed": (gru_biases_summed, [("gru", 8, "linear"), ("dense", 1, "linear")]),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_layout_mistakes_are_caught_by_parity(name: str) -> None:
    corrupt, spec = CORRUPTIONS[name]
    assert parity_error(spec, 8, seed=3) <= TOLERANCE
    error = parity_error(spec, 8, seed=3, corrupt=corrupt)
    # Shape checks pass (asserted in parity_error); only the numbers tell.
    assert error > 1e-3, f"{name}: max abs error only {error:.3g}; the mistake would go unnoticed"


# --------------------------------------------------------------------------- conversion details


def test_layouts_and_bias_rows() -> None:
    torch.manual_seed(0)
    spec = [("dense", 3, "linear"), ("lstm", 2, "sigmoid"), ("gru", 2, "linear")]
    state = TorchStack(spec, 4).numpy_state()
    model = to_rtneural(spec, 4, state)
    assert model["in_shape"] == [None, None, 4]
    dense, lstm, gru = model["layers"]
    assert (dense["type"], dense["activation"], dense["shape"]) == ("dense", "", [None, None, 3])
    np.testing.assert_array_equal(dense["weights"][0], state["layers.0.weight"].T)
    np.testing.assert_array_equal(dense["weights"][1], state["layers.0.bias"])
    # LSTM: same gate order (i, f, c, o), one bias = the float32 sum of torch's two.
    assert (lstm["type"], lstm["activation"]) == ("lstm", "tanh")
    np.testing.assert_array_equal(lstm["weights"][0], state["layers.1.weight_ih_l0"].T)
    np.testing.assert_array_equal(lstm["weights"][1], state["layers.1.weight_hh_l0"].T)
    np.testing.assert_array_equal(lstm["weights"][2], state["layers.1.bias_ih_l0"] + state["layers.1.bias_hh_l0"])
    # GRU: torch r, z, n -> RTNeural z, r, h; bias row 0 = input bias, row 1 = recurrent bias.
    h = 2

    def zrn(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a[h : 2 * h], a[:h], a[2 * h :]])

    np.testing.assert_array_equal(gru["weights"][0], zrn(state["layers.2.weight_ih_l0"]).T)
    np.testing.assert_array_equal(gru["weights"][1], zrn(state["layers.2.weight_hh_l0"]).T)
    np.testing.assert_array_equal(gru["weights"][2][0], zrn(state["layers.2.bias_ih_l0"]))
    np.testing.assert_array_equal(gru["weights"][2][1], zrn(state["layers.2.bias_hh_l0"]))
    for layer in model["layers"]:
        for weight in layer["weights"]:
            assert weight.dtype == np.float32 and weight.flags.c_contiguous


def _dense_state(units: int = 2, inputs: int = 3) -> dict[str, np.ndarray]:
    return {"layers.0.weight": np.ones((units, inputs), np.float32), "layers.0.bias": np.zeros(units, np.float32)}


@pytest.mark.parametrize(
    ("layers", "state", "key"),
    [
        ([("dense", 2, "linear")], {"layers.0.bias": np.zeros(2, np.float32)}, "layers.0.weight"),
        ([("dense", 2, "linear")], {**_dense_state(), "layers.0.weight": np.ones((3, 2), np.float32)}, "layers.0.weight"),
        ([("dense", 2, "linear")], {**_dense_state(), "layers.1.weight": np.ones((1, 2), np.float32)}, "layers.1.weight"),
        ([("dense", 2, "swish")], _dense_state(), "layers[0].activation"),
        ([("conv3d", 2, "linear")], _dense_state(), "layers[0].type"),
        ([("conv1d", 2, "linear")], _dense_state(), "layers[0]"),  # kernel_size cannot be given in a tuple
        ([("dense", 0, "linear")], _dense_state(), "layers[0].units"),
        ([("lstm", 1, "linear")], {"layers.0.weight_ih_l0": np.ones((4, 3), np.float32),
                                   "layers.0.weight_hh_l0": np.ones((4, 1), np.float32),
                                   "layers.0.bias_ih_l0": np.ones(4, np.float32)}, "layers.0.bias_hh_l0"),
    ],
)
def test_conversion_errors_name_the_key(layers: list[LayerTuple], state: dict[str, np.ndarray], key: str) -> None:
    with pytest.raises(UsageError) as info:
        to_rtneural(layers, 3, state)
    assert info.value.key == key


# --------------------------------------------------------------------------- serialization


def _special_state() -> tuple[list[LayerTuple], dict[str, np.ndarray]]:
    """A mixed model whose weights include every awkward float32 value."""
    torch.manual_seed(1)
    spec: list[LayerTuple] = [("dense", 16, "linear"), ("lstm", 4, "linear"), ("gru", 4, "linear")]
    state = TorchStack(spec, 16).numpy_state()
    info = np.finfo(np.float32)
    specials = np.array(
        [0.0, -0.0, 0.1, -0.1, 1 / 3, 1e-45, -1e-45, float(info.smallest_subnormal) * 3, float(info.tiny),
         float(np.nextafter(info.tiny, np.float32(0))), float(info.max), -float(info.max), 16777217.0, 1e-38, 1e38,
         float(np.nextafter(np.float32(1), np.float32(2)))],
        dtype=np.float32,
    )
    rng = np.random.default_rng(0)
    wide = (rng.standard_normal(256) * 10.0 ** rng.uniform(-44, 38, 256)).astype(np.float32)
    wide = wide[np.isfinite(wide)]
    state["layers.0.weight"].flat[: specials.size] = specials
    state["layers.0.weight"].flat[specials.size : specials.size + wide.size] = wide
    state["layers.0.bias"][:] = specials
    state["layers.2.bias_ih_l0"][: specials.size // 2] = specials[::2]  # GRU biases are not summed
    state["layers.1.weight_ih_l0"].flat[: specials.size] = specials
    return spec, state


def _bits(values: Any) -> np.ndarray:
    # float text -> double -> float32: the path nlohmann::json's get<float>() takes.
    return np.asarray(values, dtype=np.float64).astype(np.float32).view(np.uint32)


def test_weights_round_trip_bit_exactly() -> None:
    spec, state = _special_state()
    model = to_rtneural(spec, 16, state)
    parsed = json.loads(dumps_rtneural(model))
    for i, (ours, theirs) in enumerate(zip(model["layers"], parsed["layers"])):
        assert len(ours["weights"]) == len(theirs["weights"])
        for j, (weight, text_weight) in enumerate(zip(ours["weights"], theirs["weights"])):
            np.testing.assert_array_equal(_bits(text_weight), weight.view(np.uint32), err_msg=f"layers[{i}].weights[{j}]")
    # -0.0 keeps its sign bit, the smallest subnormal survives.
    assert _bits(parsed["layers"][0]["weights"][1])[1] == np.float32(-0.0).view(np.uint32)
    assert _bits(parsed["layers"][0]["weights"][1])[5] == 1


def test_shortest_float32_text_exact_bytes() -> None:
    model = {
        "in_shape": [None, None, 1],
        "layers": [{"type": "dense", "activation": "", "shape": [None, None, 3],
                    "weights": [np.array([[0.1, 1 / 3, 16777217.0]], np.float32), np.array([-0.0, 1e-45, 3.4028235e38], np.float32)]}],
    }
    assert dumps_rtneural(model) == (
        b'{"in_shape":[null,null,1],"layers":[{"type":"dense","activation":"","shape":[null,null,3],'
        b'"weights":[[[0.1,0.33333334,16777216.0]],[-0.0,1e-45,3.4028235e+38]]}]}'
    )


def test_random_float32_values_are_lossless_and_shortest() -> None:
    rng = np.random.default_rng(42)
    values = rng.integers(0, 2**32, size=100_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = values[np.isfinite(values)]
    n = values.size // 2
    model = {"in_shape": [None, 1], "layers": [{"type": "dense", "activation": "", "shape": [None, n],
                                                "weights": [values[None, :n], values[n : 2 * n]]}]}
    text = dumps_rtneural(model)
    parsed = json.loads(text)
    np.testing.assert_array_equal(_bits(parsed["layers"][0]["weights"][0][0]), values[:n].view(np.uint32))
    np.testing.assert_array_equal(_bits(parsed["layers"][0]["weights"][1]), values[n : 2 * n].view(np.uint32))
    # Shortest: never more significant digits than numpy's shortest unique repr.
    tokens = text.split(b"[[[", 1)[1].split(b"]]]", 1)[0].split(b",")

    def digits(token: str) -> int:
        mantissa = token.lower().split("e")[0].lstrip("-").replace(".", "")
        return len(mantissa.strip("0")) or 1

    for token, value in zip(tokens[:5000], values[:5000]):
        assert digits(token.decode()) <= digits(np.format_float_scientific(value, unique=True)), (token, value)


def test_output_is_compact_and_deterministic() -> None:
    spec, state = _special_state()
    model = to_rtneural(spec, 16, state)
    first = dumps_rtneural(model)
    assert first == dumps_rtneural(copy.deepcopy(model))
    assert first == dumps_rtneural(to_rtneural(spec, 16, {k: v.copy() for k, v in state.items()}))
    # Re-reading the text (lists of Python floats) and writing it again changes nothing.
    assert dumps_rtneural(json.loads(first)) == first
    assert b" " not in first and b"\n" not in first


def test_extra_keys_are_kept_in_a_fixed_order() -> None:
    model = json.loads(dumps_rtneural(to_rtneural([("dense", 1, "linear")], 1, _dense_state(1, 1))))
    model["zeta"], model["alpha"] = 1, 2
    model["layers"][0] = {"weights": model["layers"][0]["weights"], "name": "out", "shape": [None, None, 1], "type": "dense"}
    assert dumps_rtneural(model) == (
        b'{"in_shape":[null,null,1],"layers":[{"type":"dense","shape":[null,null,1],"weights":[[[1.0]],[0.0]],'
        b'"name":"out"}],"alpha":2,"zeta":1}'
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_raise_with_the_key(bad: float) -> None:
    state = _dense_state(2, 3)
    state["layers.0.weight"][1, 2] = bad  # torch [out, in] -> RTNeural kernel [in][out]
    model = to_rtneural([("dense", 2, "linear")], 3, state)
    with pytest.raises(ArtifactError) as info:
        dumps_rtneural(model)
    assert info.value.key == "layers[0].weights[0][2][1]"
    assert "not a finite number" in str(info.value)


def test_lstm_bias_overflowing_to_infinity_raises() -> None:
    torch.manual_seed(0)
    state = TorchStack([("lstm", 2, "linear")], 1).numpy_state()
    state["layers.0.bias_ih_l0"][3] = state["layers.0.bias_hh_l0"][3] = 3e38  # the float32 sum is inf
    with pytest.raises(ArtifactError) as info:
        dumps_rtneural(to_rtneural([("lstm", 2, "linear")], 1, state))
    assert info.value.key == "layers[0].weights[2][3]"


def test_invalid_model_is_not_written() -> None:
    model = to_rtneural([("dense", 2, "linear")], 3, _dense_state(2, 3))
    model["layers"][0]["activation"] = "linear"
    with pytest.raises(ArtifactError) as info:
        dumps_rtneural(model)
    assert info.value.key == "layers[0].activation"
