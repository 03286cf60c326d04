"""Property: any architecture in the registry's language exports to both formats with parity.

Layers are drawn from every registry kind (modelreg.layers.kinds()): one of the kind's example
tables, with its ``units`` (if it has one) redrawn and ``bias`` drawn where the kind takes it;
residual blocks hold drawn layers of every kind, blocks nested in them; tables a kind's semantic
checks refuse at that position are discarded. A new kind is drawn without editing this file."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import torch
from hypothesis import HealthCheck, assume, find, given, settings
from hypothesis import strategies as st

from modelreg import LayerSpec, ModelSpec
from modelreg.builder import build_module
from modelreg.onnx.exporter import ONNXExporter
from modelreg.rtneural.exporter import RTNeuralExporter
from modelreg.rtneural.header import torch_route_problems
from modelreg.rtneural.statedict import RTNeuralTorchExporter
from modelreg.layers import get_kind, kinds
from modelreg.spec import ACTIVATIONS

from kind_tools import spec_of


@st.composite
def _conv2d(draw: st.DrawFn, name: str, size: int) -> LayerSpec:
    """A conv2d or batchnorm2d over frames of F features x size/F filters: its keys depend on the input size."""
    from modelreg.layers import batchnorm2d, conv2d

    features = draw(st.sampled_from([f for f in range(1, min(size, 16) + 1) if size % f == 0]))
    if name == "batchnorm2d":
        return batchnorm2d.KIND.spec({"num_features_in": features, "affine": draw(st.booleans()),
                                      "epsilon": draw(st.sampled_from([1e-5, 1e-3]))}, size)
    padding = draw(st.sampled_from(["valid", "same"]))
    table = {"filters": draw(st.integers(1, 4)), "num_features_in": features,
             "kernel_size_time": draw(st.integers(1, 3)),
             "kernel_size_feature": draw(st.integers(1, features if padding == "valid" else features + 2)),
             "dilation": draw(st.integers(1, 3)), "strides": draw(st.integers(1, 3)), "padding": padding,
             "activation": draw(st.sampled_from(ACTIVATIONS))}
    return conv2d.KIND.spec(table, size)


@st.composite
def _conv1d(draw: st.DrawFn, in_features: int) -> LayerSpec:
    """A conv1d whose groups divide the size it is fed; strided now and then (RTNeural's StridedConv1D)."""
    groups = draw(st.sampled_from([g for g in (1, 2, 3, 4) if in_features % g == 0]))
    table = {"type": "conv1d", "units": groups * draw(st.integers(1, 16)), "kernel_size": draw(st.integers(1, 4)),
             "dilation": draw(st.integers(1, 8)), "groups": groups, "activation": draw(st.sampled_from(ACTIVATIONS)),
             "stride": draw(st.sampled_from([1, 1, 2, 3])), "bias": draw(st.booleans())}
    return get_kind("conv1d").spec(table, in_features)


#: Kinds whose registry layer takes ``bias = false`` (torch's bias=False): drawn both ways.
BIASED = ("dense", "conv1d", "lstm", "gru")
#: How deep residual blocks nest (a block inside a block inside a block).
MAX_DEPTH = 2


@st.composite
def _layer(draw: st.DrawFn, in_features: int, depth: int = 0) -> LayerSpec:
    kind = draw(st.sampled_from(kinds()))
    if kind.name == "residual":  # a block of drawn layers (blocks nest), not only the kind's examples
        return draw(_residual(in_features, depth))
    if kind.name in ("conv2d", "batchnorm2d"):  # keys that must divide the input size: drawn for it
        assume(in_features <= 64)
        layer = draw(_conv2d(kind.name, in_features))
        assume(not kind.problems(layer, in_features))  # e.g. a "same" kernel RTNeural cannot pad
        return layer
    if kind.name == "conv1d":  # groups must divide the input size
        return draw(_conv1d(in_features))
    table = {"type": kind.name, **draw(st.sampled_from(kind.examples))}
    if "units" in table:
        table["units"] = draw(st.integers(1, 64))
    if kind.name in BIASED:
        table["bias"] = draw(st.booleans())
    layer = kind.spec(table, in_features)
    assume(not kind.problems(layer, in_features))
    return layer


@st.composite
def _residual(draw: st.DrawFn, in_features: int, depth: int) -> LayerSpec:
    """A residual block: a main path of 1-2 drawn layers of any kind (blocks among them, to
    MAX_DEPTH), and a skip path: the identity where the sizes allow it, else a dense or a 1x1
    conv1d (biased or not) to the main path's size."""
    from modelreg.adopting import layer_table

    if depth >= MAX_DEPTH:  # deep enough: the kind's own examples
        table = {"type": "residual", **draw(st.sampled_from(get_kind("residual").examples))}
        layer = get_kind("residual").spec(table, in_features)
        assume(not layer.kind.problems(layer, in_features))
        return layer
    main: list[LayerSpec] = []
    size = in_features
    for _ in range(draw(st.integers(1, 2))):
        main.append(draw(_layer(size, depth + 1)))
        size = main[-1].units
    skips = ["dense", "conv1d"] + (["identity"] if size == in_features else [])
    skip_kind = draw(st.sampled_from(skips))
    skip = [] if skip_kind == "identity" else [
        {"type": skip_kind, "units": size, "bias": draw(st.booleans()),
         **({"kernel_size": 1} if skip_kind == "conv1d" else {"activation": "linear"})}]
    paths: list[dict] = []
    at = in_features
    for layer in main:
        paths.append(layer_table(layer, at))
        at = layer.units
    block = get_kind("residual").spec({"type": "residual", "layers": paths, "skip": skip}, in_features)
    assume(not block.kind.problems(block, in_features))
    return block


@st.composite
def _architectures(draw: st.DrawFn) -> tuple[int, list[LayerSpec]]:
    in_features = draw(st.integers(1, 64))
    layers: list[LayerSpec] = []
    size = in_features
    for _ in range(draw(st.integers(1, 4))):
        layers.append(draw(_layer(size)))
        size = layers[-1].units
    return in_features, layers


architectures = _architectures()


@pytest.mark.parametrize("name", [kind.name for kind in kinds()])
def test_the_strategy_draws_every_kind(name: str) -> None:
    found = find(architectures, lambda architecture: any(layer.type == name for layer in architecture[1]),
                 settings=settings(database=None, max_examples=500))
    assert any(layer.type == name for layer in found[1])


def _inside_blocks(layers: list[LayerSpec] | tuple[LayerSpec, ...], depth: int = 0):  # type: ignore[no-untyped-def]
    """(layer, depth) of every layer held by a residual block, at any depth (1: in a top-level block)."""
    for layer in layers:
        for _, path in layer.kind.children(layer):
            for inner in path:
                yield inner, depth + 1
            yield from _inside_blocks(path, depth + 1)


@pytest.mark.parametrize("name", [kind.name for kind in kinds()])
def test_the_strategy_draws_every_kind_inside_a_residual_block(name: str) -> None:
    found = find(architectures, lambda a: any(layer.type == name for layer, _ in _inside_blocks(a[1])),
                 settings=settings(database=None, max_examples=2000))
    assert any(layer.type == name for layer, _ in _inside_blocks(found[1]))


def test_the_strategy_draws_nested_blocks_and_bias_free_layers() -> None:
    nested = find(architectures, lambda a: any(d >= 2 and layer.type == "residual" for layer, d in _inside_blocks(a[1])),
                  settings=settings(database=None, max_examples=2000))
    assert any(d >= 2 for _, d in _inside_blocks(nested[1]))
    for name in BIASED:
        found = find(architectures, lambda a: any(layer.type == name and not layer.has_bias for layer in a[1]),
                     settings=settings(database=None, max_examples=2000))
        assert any(layer.type == name and not layer.has_bias for layer in found[1]), name


def _spec(root: Path, in_features: int, layers: list[LayerSpec]) -> ModelSpec:
    return spec_of(root, in_features, layers, name="random")


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(architecture=architectures, seed=st.integers(0, 2**16))
def test_random_architectures_export_with_parity(tmp_path, architecture, seed):
    in_features, layers = architecture
    spec = _spec(tmp_path, in_features, layers)
    module = build_module(spec, seed=seed)
    with torch.no_grad():  # default init is small; widen weights so activations leave their linear region
        for parameter in module.parameters():
            parameter.mul_(2.0)
    # RTNeural JSON cannot hold a residual block, a strided conv1d nor a WaveNet (its exporter
    # refuses: tests/test_residual.py, test_strided_conv1d.py, test_wavenet.py): ONNX alone then.
    blocks = any(layer.kind.children(layer) for layer in layers)
    strided = any(layer.kind.rtneural_json_refusal(layer) for layer in layers)
    no_rtneural = any(layer.kind.rtneural_refusal for layer in layers)
    for exporter in (ONNXExporter(),) if blocks or strided or no_rtneural else (RTNeuralExporter(), ONNXExporter()):
        path = tmp_path / f"random.{exporter.name}"
        exporter.export(spec, module, path)
        assert exporter.check_artifact(spec, path) == [], exporter.name
        parity = exporter.verify(spec, module, path, 1e-5)
        if not parity.ok and exporter.name == "rtneural" and _softmax_overflows(module):
            # RTNeural's softmax is exp(x) / sum, unshifted: logits above ~88.7 (the +-1e6 cases)
            # give NaN in RTNeural itself, and parity must say so rather than pass.
            assert "NaN where torch has none" in parity.summary, parity.summary
            continue
        assert parity.ok, (exporter.name, layers, parity.to_figures())
    # RTNeural's PyTorch route, where every layer has one (not conv2d): the state dict and the header
    # that loads it fit the entry (their C++ parity is proven in tests/test_rtneural_torch.py).
    if not torch_route_problems(spec):
        torch_route = RTNeuralTorchExporter()
        path = tmp_path / "random.state.json"
        torch_route.export(spec, module, path)
        assert torch_route.check_artifact(spec, path) == [], layers
    assert attrs.evolve(spec).params == sum(p.numel() for p in module.parameters())


def _softmax_overflows(module) -> bool:
    """Whether a softmax of the module gets an input above float32's exp limit on the parity inputs."""
    import numpy as np

    from modelreg.parity import parity_cases, reference_outputs

    seen: list[float] = []
    real = torch.softmax

    def spy(x, dim=None, **kwargs):
        seen.append(float(x.max()))
        return real(x, dim=dim, **kwargs)

    torch.softmax = spy
    try:
        for frames in parity_cases(module.in_features, module.is_stateful).values():
            reference_outputs(module, frames)
    finally:
        torch.softmax = real
    return bool(seen) and max(seen) > float(np.log(np.finfo(np.float32).max))
