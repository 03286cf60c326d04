"""The layer kinds (modelreg/layers/): every kind implements the whole interface, its RTNeural
layout round-trips bit-exactly, the committed schemas match the kinds, and a new kind needs
nothing but its own module (shown with a toy kind defined in this file only)."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import modelreg
from modelreg import layers
from modelreg.layers import compose
from modelreg.layers.base import Leaf, LayerKind, RTNeuralLayerType, SizeCheck, StateReader, StateSpec, with_bias
from modelreg.rtneural.format import dumps_rtneural, from_rtneural, to_rtneural
from modelreg.rtneural.runtime import check_rtneural, load_rtneural
from modelreg.spec import LayerSpec

ROOT = Path(__file__).resolve().parents[1]
IN_FEATURES = 3
FRAMES = 16

REGISTRY_KINDS = [kind for kind in layers.KINDS if isinstance(kind, LayerKind)]
EXAMPLES = [(kind, table) for kind in REGISTRY_KINDS for table in kind.examples]
EXAMPLE_IDS = [f"{kind.name}-{'-'.join(str(v) for v in table.values())}" for kind, table in EXAMPLES]


def _in_rtneural_json(kind: LayerKind, table: Mapping[str, Any]) -> bool:
    """What RTNeural's JSON can express: a residual block names no RTNeural type, and a strided conv1d
    is refused by its kind (rtneural-cpp writes their C++; tests/test_strided_conv1d.py proves the latter)."""
    return bool(kind.rtneural_types) and kind.rtneural_json_refusal(kind.spec(table, IN_FEATURES)) is None


RTNEURAL_EXAMPLES = [(kind, table) for kind, table in EXAMPLES if _in_rtneural_json(kind, table)]
RTNEURAL_IDS = [name for (kind, table), name in zip(EXAMPLES, EXAMPLE_IDS) if _in_rtneural_json(kind, table)]


def _built(kind: LayerKind, table: Mapping[str, Any], seed: int = 0) -> tuple[LayerSpec, torch.nn.Module]:
    layer = kind.spec({"type": kind.name, **table}, IN_FEATURES)
    torch.manual_seed(seed)
    module = kind.build(layer, IN_FEATURES)
    # Non-zero everywhere (torch initialises some kinds' biases to zero): a layout
    # mistake must change numbers.
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.uniform_(-0.8, 0.8)
    return layer, module.eval()


def _numpy_state(module: torch.nn.Module, prefix: str = "layers.0.") -> dict[str, np.ndarray]:
    return {prefix + key: value.detach().numpy().copy() for key, value in module.state_dict().items()}


def _bits(array: np.ndarray) -> np.ndarray:
    """float32 arrays as their bit patterns (compares -0.0 and NaN payloads exactly); others as they are."""
    return array.view(np.uint32) if array.dtype == np.float32 else array


def _torch_frames(kind: LayerKind, layer: LayerSpec, module: torch.nn.Module, frames: np.ndarray) -> np.ndarray:
    """Run frames one at a time through the kind's torch step, carrying its state."""
    state = tuple(torch.zeros(1, 1, size) for _, size in kind.state(layer))
    outputs = []
    with torch.no_grad():
        for frame in frames:
            y, state = kind.forward(module, layer, torch.from_numpy(frame[None, None, :]), state)
            outputs.append(y[0, 0].numpy().copy())
    return np.stack(outputs)


def _file_layers(layer: LayerSpec) -> list[Leaf]:
    """The RTNeural file layers of one registry layer fed IN_FEATURES (a stack: one per stacked layer)."""
    return layer.kind.unstack(Leaf(layer, IN_FEATURES, "layers[0]", "layers.0."))


def _as_read(layer: LayerSpec, state: dict[str, np.ndarray]) -> tuple[list[LayerSpec], dict[str, np.ndarray]]:
    """What reading the file of ``layer`` gives: a stack of N (num_layers) comes back as N single
    layers, its ``layers.0.*_l{k}`` entries as ``layers.{k}.*_l0`` (a file cannot say they were one module)."""
    count = int(layer.option("num_layers", 1))
    if count == 1:
        return [layer], state
    single = LayerSpec(layer.type, layer.units, layer.activation,
                       tuple(item for item in layer.options if item[0] != "num_layers"))
    read = {}
    for key, value in state.items():
        name, _, k = key.removeprefix("layers.0.").rpartition("_l")
        read[f"layers.{k}.{name}_l0"] = value
    return [single] * count, read


# --------------------------------------------------------------------------- the one list


def test_one_list_of_kinds_and_it_is_what_the_machinery_uses() -> None:
    assert layers.names()[:3] == ("dense", "lstm", "gru")  # the first kinds, in the order messages list them
    assert layers.names() == tuple(kind.name for kind in REGISTRY_KINDS) == modelreg.spec.LAYER_TYPES
    assert [kind.name for kind in layers.kinds()] == [kind.name for kind in REGISTRY_KINDS]
    # The RTNeural side reads exactly the types the handlers in the list declare.
    from modelreg.rtneural.runtime import LAYER_TYPES

    assert LAYER_TYPES == tuple(t for handler in layers.KINDS for t in handler.rtneural_types)
    names = [kind.name for kind in REGISTRY_KINDS]
    assert len(set(names)) == len(names)
    assert len(set(LAYER_TYPES)) == len(LAYER_TYPES)


@pytest.mark.parametrize("handler", layers.KINDS, ids=lambda h: type(h).__name__)
def test_every_entry_implements_the_whole_interface(handler: RTNeuralLayerType) -> None:
    assert not type(handler).__abstractmethods__, f"{type(handler).__name__} leaves methods unimplemented"
    # Only a registry kind RTNeural's JSON cannot express names no RTNeural type: a block (the residual
    # block: rtneural-cpp writes its C++) or a kind no RTNeural export holds (NAM's WaveNet), which says why.
    assert handler.rtneural_types or (isinstance(handler, LayerKind) and (handler.rtneural_refusal or handler.children(
        handler.spec({"type": handler.name, **handler.examples[0]}, IN_FEATURES))))
    assert all(isinstance(t, str) and t for t in handler.rtneural_types)
    assert all(depth in (1, 2, 3, 4) for depth in handler.weight_depths)  # 3: conv1d's kernel, 4: conv2d's
    assert isinstance(handler.rtneural_schema(), dict)
    if not isinstance(handler, LayerKind):  # RTNeural only: the stand-alone activation layer
        return
    assert isinstance(handler.name, str) and handler.name
    assert set(handler.required_keys) <= set(handler.registry_keys)
    assert set(handler.missing_key_hints) <= set(handler.required_keys)
    assert not set(handler.refused_keys) & set(handler.registry_keys)
    assert handler.examples, "each kind lists example tables for these tests"


@pytest.mark.parametrize(("kind", "table"), EXAMPLES, ids=EXAMPLE_IDS)
def test_kind_registry_side_agrees_with_its_torch_module(kind: LayerKind, table: Mapping[str, Any]) -> None:
    layer, module = _built(kind, table)
    assert layer.type == kind.name and layer.kind is kind
    assert kind.params(layer, IN_FEATURES) == sum(p.numel() for p in module.parameters())
    rule, low, high = kind.output_range(layer)
    assert isinstance(rule, str) and low <= high
    # State: what state() declares is what forward() takes and gives back, and the output has `units`.
    batch, time = 2, 5
    declared: StateSpec = kind.state(layer)
    state = tuple(torch.zeros(1, batch, size) for _, size in declared)
    with torch.no_grad():
        y, new_state = kind.forward(module, layer, torch.randn(batch, time, IN_FEATURES), state)
    assert tuple(y.shape) == (batch, time, layer.units)
    assert [tuple(t.shape) for t in new_state] == [(1, batch, size) for _, size in declared]
    assert len({name for name, _ in declared}) == len(declared)
    # The output values respect the declared range on a wide input.
    with torch.no_grad():
        wide, _ = kind.forward(module, layer, torch.linspace(-50, 50, 40).reshape(1, 40, 1).expand(1, 40, IN_FEATURES)
                               .contiguous(), tuple(torch.zeros(1, 1, size) for _, size in declared))
    assert float(wide.min()) >= low - 1e-6 and float(wide.max()) <= high + 1e-6


@pytest.mark.parametrize(("kind", "table"), RTNEURAL_EXAMPLES, ids=RTNEURAL_IDS)
def test_declared_rtneural_shapes_and_activation_are_what_the_writer_writes(kind: LayerKind,
                                                                           table: Mapping[str, Any]) -> None:
    # The rtneural-cpp header checks files against rtneural_shapes(); they must describe the real layout.
    layer, module = _built(kind, table)
    parts = _file_layers(layer)
    file_layers = to_rtneural([layer], IN_FEATURES, _numpy_state(module))["layers"]
    assert len(file_layers) == len(parts)  # one per layer of a stack (num_layers)
    for part, written in zip(parts, file_layers):
        shapes = part.layer.kind.rtneural_shapes(part.layer, part.in_features)
        assert tuple(tuple(array.shape) for array in written["weights"]) == shapes
        assert written["type"] == kind.rtneural_types[0]
        activation = kind.rtneural_activation(part.layer)
        assert activation is None or written["activation"] == activation
    types = kind.cpp_types(layer, IN_FEATURES)
    assert len(types) >= len(parts) and all(t.startswith("RTNeural::") and t.endswith(">") for t in types)


@pytest.mark.parametrize(("kind", "table"), RTNEURAL_EXAMPLES, ids=RTNEURAL_IDS)
def test_rtneural_write_read_round_trip_is_bit_identical(kind: LayerKind, table: Mapping[str, Any]) -> None:
    stack, module = _built(kind, table, seed=3)
    written = to_rtneural([stack], IN_FEATURES, _numpy_state(module))
    document = json.loads(dumps_rtneural(written))
    # A stack (num_layers = N) is N file layers and reads back as N layers: compare with those.
    expected_layers, state = _as_read(stack, _numpy_state(module))
    layer = expected_layers[0]
    if not layer.has_bias and len(written["layers"][0]["weights"]) == len(kind.rtneural_shapes(
            with_bias(layer, True), IN_FEATURES)):
        # A bias-free layer whose file still holds a bias (of zeros: RTNeural's loader reads one)
        # reads back as a zero bias: the file cannot tell. Only drop_zero_biases reads it as bias = false.
        _, plain, plain_state = from_rtneural(document)
        assert plain == [with_bias(read, True) for read in expected_layers]
        assert all(not plain_state[f"layers.{i}." + name].any() for i in range(len(expected_layers))
                   for name in kind.bias_entries(layer))
    # Through the bytes a file holds, as `modelreg import` will read them.
    in_size, read_layers, read_state = from_rtneural(document, drop_zero_biases=not layer.has_bias)
    assert in_size == IN_FEATURES and read_layers == expected_layers
    assert sorted(read_state) == sorted(state)
    for key, value in read_state.items():
        assert value.dtype == state[key].dtype and value.shape == state[key].shape, key  # float32 weights
    # read(write(x)) is x, bit for bit, once x is in the form read gives (the fixed point):
    # for dense and gru that is any state dict; an LSTM's two biases come back as one sum.
    again = from_rtneural(json.loads(dumps_rtneural(to_rtneural(read_layers, in_size, read_state))))[2]
    for key in read_state:
        np.testing.assert_array_equal(_bits(again[key]), _bits(read_state[key]), err_msg=key)
    # write(read(file)) writes the same float32 bits as the file.
    rewritten = to_rtneural(read_layers, in_size, read_state)
    assert len(rewritten["layers"]) == len(written["layers"])
    for i, (was, now) in enumerate(zip(written["layers"], rewritten["layers"])):
        for j, (a, b) in enumerate(zip(was["weights"], now["weights"])):
            np.testing.assert_array_equal(a.view(np.uint32), b.view(np.uint32), err_msg=f"layers[{i}].weights[{j}]")
    if kind.name == "lstm" and layer.has_bias:
        for i in range(len(read_layers)):
            np.testing.assert_array_equal(read_state[f"layers.{i}.bias_ih_l0"],
                                          state[f"layers.{i}.bias_ih_l0"] + state[f"layers.{i}.bias_hh_l0"])
            assert not read_state[f"layers.{i}.bias_hh_l0"].any()
    else:
        for key in state:
            np.testing.assert_array_equal(_bits(read_state[key]), _bits(state[key]), err_msg=key)
    # The state dict read back loads into the kind's torch module (the stack's, keys back as
    # torch names them) and computes the same function.
    reloaded = kind.build(stack, IN_FEATURES)
    if read_layers != [stack]:
        back = {}
        for key, value in read_state.items():
            index, _, name = key.removeprefix("layers.").partition(".")
            back[name.removesuffix("_l0") + f"_l{index}"] = value
    else:
        back = {key.removeprefix("layers.0."): value for key, value in read_state.items()}
    reloaded.load_state_dict({key: torch.from_numpy(v) for key, v in back.items()})
    frames = np.random.default_rng(1).normal(size=(FRAMES, IN_FEATURES)).astype(np.float32)
    np.testing.assert_allclose(_torch_frames(kind, stack, reloaded.eval(), frames),
                               _torch_frames(kind, stack, module, frames), atol=1e-6)


@pytest.mark.parametrize(("kind", "table"), RTNEURAL_EXAMPLES, ids=RTNEURAL_IDS)
def test_numpy_runtime_layer_matches_the_torch_step(kind: LayerKind, table: Mapping[str, Any]) -> None:
    layer, module = _built(kind, table, seed=5)
    model = to_rtneural([layer], IN_FEATURES, _numpy_state(module))
    assert check_rtneural(model) == []
    frames = np.random.default_rng(2).normal(scale=1.5, size=(FRAMES, IN_FEATURES)).astype(np.float32)
    ours = load_rtneural(json.loads(dumps_rtneural(model))).run(frames)
    np.testing.assert_allclose(ours, _torch_frames(kind, layer, module, frames), atol=1e-5)


_KERNEL_EXAMPLES = [next(i for i, (kind, _) in enumerate(EXAMPLES) if kind.name == name) for name in ("dense", "gru")]


@pytest.mark.parametrize(("kind", "table"), [EXAMPLES[i] for i in _KERNEL_EXAMPLES],
                         ids=[EXAMPLE_IDS[i] for i in _KERNEL_EXAMPLES])
def test_rtneural_size_rules_catch_a_kernel_for_another_input_size(kind: LayerKind, table: Mapping[str, Any]) -> None:
    layer, module = _built(kind, table)
    model = to_rtneural([layer], IN_FEATURES, _numpy_state(module))
    model["in_shape"] = [None, None, IN_FEATURES + 1]
    problems = check_rtneural(model)
    assert [p.key for p in problems] == ["layers[0].weights[0]"]
    assert f"the {IN_FEATURES + 1} outputs of the model input" in problems[0].reason


def test_from_rtneural_refuses_what_no_registry_kind_represents() -> None:
    class ReadOnly(RTNeuralLayerType):
        """An RTNeural layer type modelreg can check and run but not declare in a registry."""

        rtneural_types = ("readonly",)
        weight_depths = ()

        def rtneural_schema(self) -> dict[str, Any]:
            return {}

        def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
            return check.units

        def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any], units: int) -> list[Any]:
            return []

    handler = ReadOnly()
    layers.register_kind(handler)
    try:
        model = {"in_shape": [None, 2], "layers": [{"type": "readonly", "shape": [None, 2], "weights": []}]}
        assert check_rtneural(model) == []
        with pytest.raises(modelreg.UsageError) as info:
            from_rtneural(model, file="m.json")
    finally:
        layers.unregister_kind(handler)
    assert info.value.key == "layers[0].type" and "no registry layer kind" in str(info.value)


def test_from_rtneural_reads_keras_style_dense_without_bias_as_bias_free() -> None:
    # RTNeural's Keras exporter writes [kernel] for use_bias=False: the file says the layer has no bias.
    model = {"in_shape": [None, 2], "layers": [{"type": "time-distributed-dense", "activation": "relu",
                                               "shape": [None, 1], "weights": [[[0.5], [-2.0]]]}]}
    in_size, specs, state = from_rtneural(model)
    assert (in_size, specs) == (2, [LayerSpec("dense", 1, "relu", (("bias", False),))])
    assert sorted(state) == ["layers.0.weight"]
    np.testing.assert_array_equal(state["layers.0.weight"], [[0.5, -2.0]])


def _gru_file(bias_rows: list[list[float]]) -> dict[str, Any]:
    return {"in_shape": [None, 1], "layers": [{"type": "gru", "activation": "tanh", "shape": [None, 1],
                                               "weights": [[[0.1, 0.2, 0.3]], [[0.4, 0.5, 0.6]], bias_rows]}]}


@pytest.mark.parametrize(("bias", "dropped"), [
    ([[0.0] * 3, [0.0] * 3], True),
    ([[0.0] * 3, [0.0, 0.0, 1e-30]], False),  # a tiny bias is a bias
    ([[0.0] * 3, [0.0, -0.0, 0.0]], False),  # -0.0: the bias-free layer writes +0.0, not these bits
])
def test_drop_zero_biases_reads_a_bias_free_layer_only_when_asked(bias: list[list[float]], dropped: bool) -> None:
    from modelreg.rtneural.format import zero_bias_layers

    _, kept, kept_state = from_rtneural(_gru_file(bias))
    assert kept == [LayerSpec("gru", 1)] and "layers.0.bias_hh_l0" in kept_state  # the default keeps it
    _, specs, state = from_rtneural(_gru_file(bias), drop_zero_biases=True)
    assert specs == [LayerSpec("gru", 1, options=(("bias", False),)) if dropped else LayerSpec("gru", 1)]
    assert ("layers.0.bias_ih_l0" in state) is not dropped
    assert zero_bias_layers(_gru_file(bias)) == ([0] if dropped else [])


def test_drop_zero_biases_reads_a_dense_zero_bias_as_bias_free() -> None:
    model = {"in_shape": [None, 2], "layers": [{"type": "dense", "activation": "", "shape": [None, 1],
                                               "weights": [[[0.5], [-2.0]], [0.0]]}]}
    assert from_rtneural(model)[1] == [LayerSpec("dense", 1)]
    _, specs, state = from_rtneural(model, drop_zero_biases=True)
    assert specs == [LayerSpec("dense", 1, options=(("bias", False),))] and sorted(state) == ["layers.0.weight"]


# --------------------------------------------------------------------------- committed schemas


def test_committed_schemas_are_generated_from_the_kinds() -> None:
    assert compose.stale() == [], "schemas/ is out of date with modelreg/layers: run `make schemas`"
    assert compose.main(["--check"]) == 0


def test_stale_schema_is_detected(tmp_path: Path) -> None:
    for name in compose.COMPOSED:
        shutil.copy(ROOT / "schemas" / f"{name}.schema.json", tmp_path)
    path = tmp_path / "registry.schema.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["$defs"]["layer"]["properties"]["type"]["enum"].remove("gru")  # a kind forgotten in the file
    path.write_text(compose.render(data), encoding="utf-8")
    assert compose.stale(tmp_path) == [path]
    assert compose.main(["--check", str(tmp_path)]) == 1
    assert compose.main([str(tmp_path)]) == 0  # rewrites it
    assert compose.stale(tmp_path) == []
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(
        (ROOT / "schemas" / "registry.schema.json").read_text(encoding="utf-8"))


def test_make_schemas_target_runs_the_generator() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "python -m modelreg.layers.compose" in makefile.split("\nschemas:", 1)[1].split("\n\n", 1)[0]


# --------------------------------------------------------------------------- adding a kind


class _ScaleLayer:
    """Numpy runtime layer of the toy kind: y = x * w."""

    is_recurrent = False

    def __init__(self, w: np.ndarray) -> None:
        self.w = np.ascontiguousarray(w, dtype=np.float32)
        self.in_size = self.out_size = int(self.w.shape[0])

    def reset(self, batch: int) -> None:
        pass

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x * self.w


class _ScaleModule(torch.nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(features).uniform_(0.5, 1.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight


class ScaleKind(LayerKind):
    """A toy kind: one weight per feature, no units key (the size is the input's).

    Its RTNeural type "scale" is made up: RTNeural's C++ loader would skip it. It
    exists to show that a kind is one self-contained definition.
    """

    name = "scale"
    registry_keys: Mapping[str, Any] = {}
    required_keys = ()
    examples = ({},)
    rtneural_types = ("scale",)
    weight_depths = (1,)

    def spec(self, table: Mapping[str, Any], in_features: int) -> LayerSpec:
        return LayerSpec("scale", in_features)

    def params(self, layer: LayerSpec, in_features: int) -> int:
        return in_features

    def state(self, layer: LayerSpec) -> StateSpec:
        return ()

    def output_range(self, layer: LayerSpec) -> tuple[str, float, float]:
        return ("linear", -math.inf, math.inf)

    def build(self, layer: LayerSpec, in_features: int) -> torch.nn.Module:
        return _ScaleModule(in_features)

    def forward(self, module: torch.nn.Module, layer: LayerSpec, x: torch.Tensor,
                state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        return module(x), ()

    def to_rtneural(self, layer: LayerSpec, in_features: int, weights: StateReader, prefix: str) -> dict[str, Any]:
        return {"type": "scale", "shape": [None, None, layer.units],
                "weights": [np.ascontiguousarray(weights.take(prefix + "weight", (in_features,)))]}

    def rtneural_shapes(self, layer: LayerSpec, in_features: int) -> tuple[tuple[int, ...], ...]:
        return ((in_features,),)

    def from_rtneural(self, layer: Mapping[str, Any], weight: Callable[[int], np.ndarray], in_features: int,
                      units: int) -> tuple[LayerSpec, dict[str, np.ndarray]]:
        return LayerSpec("scale", units), {"weight": np.asarray(weight(0), dtype=np.float32)}

    def rtneural_schema(self) -> dict[str, Any]:
        return {"properties": {"weights": {"type": "array", "minItems": 1, "maxItems": 1,
                                           "description": "[w]: one weight per feature",
                                           "prefixItems": [{"$ref": "#/$defs/vector"}]}}}

    def check_rtneural_sizes(self, check: SizeCheck) -> int | None:
        w = check.dims(0)
        if w is not None:
            check.expect(0, "entry", w[0], check.previous, check.from_previous)
            check.expect(0, "entry", w[0], check.units, check.from_units)
        return check.units

    def runtime_layers(self, layer: Mapping[str, Any], weight: Callable[[int], Any], units: int) -> list[Any]:
        return [_ScaleLayer(weight(0))]


@pytest.fixture
def scale_kind() -> Iterator[ScaleKind]:
    kind = ScaleKind()
    layers.register_kind(kind)
    try:
        yield kind
    finally:
        layers.unregister_kind(kind)


TOY_ENTRY = """
[models.toy]
description = "dense, the toy scale kind, dense"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = ["rtneural"]
checkpoint = "models/toy.pt"
layers = [
    {{ type = "dense", units = 6, activation = "tanh" }},
    {{ type = "scale"{extra} }},
    {{ type = "dense", units = 3, activation = "linear" }},
]
"""


def _toy_registry(tmp_path: Path, params: int = 4 * 6 + 6 + 6 + 6 * 3 + 3, extra: str = "") -> Path:
    path = tmp_path / "registry.toml"
    path.write_text(TOY_ENTRY.format(params=params, extra=extra), encoding="utf-8")
    return path


def test_adding_a_kind_needs_only_its_definition(scale_kind: ScaleKind, tmp_path: Path) -> None:
    """registry -> build -> checkpoint -> RTNeural export (schema, size rules, parity) -> validate,
    with the toy kind defined above and registered: no other module was edited."""
    from modelreg.checkpoint import init_checkpoint

    registry = modelreg.load_registry(_toy_registry(tmp_path))
    spec = registry["toy"]
    assert [layer.units for layer in spec.layers] == [6, 6, 3] and spec.computed_params == 57
    init_checkpoint(spec)
    report = modelreg.export("toy", registry)
    (artifact,) = report.artifacts
    assert artifact.status == "written", artifact.message
    document = json.loads((tmp_path / "models" / "toy.json").read_text(encoding="utf-8"))
    assert [layer["type"] for layer in document["layers"]] == ["dense", "scale", "dense"]
    # The numpy runtime runs the toy layer like torch does, frame by frame.
    module = spec.load()
    frames = np.random.default_rng(0).normal(size=(FRAMES, 4)).astype(np.float32)
    with torch.no_grad():
        expected = module(torch.from_numpy(frames)).numpy()
    np.testing.assert_allclose(load_rtneural(tmp_path / "models" / "toy.json").run(frames), expected, atol=1e-5)
    # And the RTNeural file reads back into the registry layers and the checkpoint's weights.
    in_size, read_layers, state = from_rtneural(document)
    assert (in_size, tuple(read_layers)) == (4, spec.layers)
    np.testing.assert_array_equal(state["layers.1.weight"], module.state_dict()["layers.1.weight"].numpy())
    validation = modelreg.validate("toy", registry)
    assert validation.ok, [(c.name, c.message) for c in validation["toy"].failures]


def test_a_registered_kind_gets_schema_checks_and_messages(scale_kind: ScaleKind, tmp_path: Path) -> None:
    registry = modelreg.load_registry(_toy_registry(tmp_path, extra=", units = 6"), strict=False)
    (problem,) = registry.invalid["toy"]
    assert problem.key == "models.toy.layers[1].units"
    assert problem.reason == "not allowed here: scale layers take no units"
    registry = modelreg.load_registry(_toy_registry(tmp_path, params=58), strict=False)
    (problem,) = registry.invalid["toy"]
    assert problem.key == "models.toy.params" and "expected 57" in str(problem)


def test_an_unregistered_kind_is_unknown_again(tmp_path: Path) -> None:
    kind = ScaleKind()
    layers.register_kind(kind)
    with pytest.raises(ValueError, match="exists already"):
        layers.register_kind(ScaleKind())
    layers.unregister_kind(kind)
    registry = modelreg.load_registry(_toy_registry(tmp_path), strict=False)
    by_key = {problem.key: problem for problem in registry.invalid["toy"]}
    listed = ", ".join(repr(name) for name in layers.names())
    assert f"one of {listed}, found 'scale'" in str(by_key["models.toy.layers[1].type"])
    assert layers.rtneural_handler("scale") is None


def test_kind_modules_import_neither_torch_nor_numpy() -> None:
    code = ("import sys, modelreg, modelreg.layers, modelreg.layers.compose; modelreg.load_registry('registry.toml'); "
            "modelreg.layers.compose.registry_layer_schema(); modelreg.layers.compose.rtneural_layer_schema(); "
            "print('torch' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.split() == ["False", "False"]
