"""Property: any architecture in the registry's language exports to both formats with parity."""

from __future__ import annotations

from pathlib import Path

import attrs
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelreg import LayerSpec, ModelSpec
from modelreg.builder import build_module
from modelreg.exporters.onnx import ONNXExporter
from modelreg.exporters.rtneural import RTNeuralExporter
from modelreg.layers import get_kind
from modelreg.spec import ACTIVATIONS, count_params

_dense = st.builds(LayerSpec, st.just("dense"), st.integers(1, 64), st.sampled_from(ACTIVATIONS))
_recurrent = st.builds(LayerSpec, st.sampled_from(["lstm", "gru"]), st.integers(1, 64))


@st.composite
def _conv1d(draw: st.DrawFn, in_features: int) -> LayerSpec:
    groups = draw(st.sampled_from([g for g in (1, 2, 3, 4) if in_features % g == 0]))
    table = {"type": "conv1d", "units": groups * draw(st.integers(1, 16)), "kernel_size": draw(st.integers(1, 4)),
             "dilation": draw(st.integers(1, 8)), "groups": groups, "activation": draw(st.sampled_from(ACTIVATIONS))}
    return get_kind("conv1d").spec(table, in_features)


@st.composite
def architectures(draw: st.DrawFn) -> tuple[int, list[LayerSpec]]:
    """(in_features, layers): a conv1d layer's groups must divide the size it is fed, so layers are drawn in order."""
    in_features = draw(st.integers(1, 64))
    layers: list[LayerSpec] = []
    size = in_features
    for _ in range(draw(st.integers(1, 4))):
        layer = draw(st.one_of(_dense, _recurrent, _conv1d(size)))
        layers.append(layer)
        size = layer.units
    return in_features, layers


def _spec(root: Path, in_features: int, layers: list[LayerSpec]) -> ModelSpec:
    return ModelSpec(
        name="random", description="", input_shape=(1, in_features), output_shape=(1, layers[-1].units),
        dtype="float32", params=count_params(layers, in_features), latency_ms=10.0, layers=tuple(layers),
        checkpoint=root / "random.pt", registry_file=root / "registry.toml",
    )


@settings(max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(architecture=architectures(), seed=st.integers(0, 2**16))
def test_random_architectures_export_with_parity(tmp_path, architecture, seed):
    in_features, layers = architecture
    spec = _spec(tmp_path, in_features, layers)
    module = build_module(spec, seed=seed)
    with torch.no_grad():  # default init is small; widen weights so activations leave their linear region
        for parameter in module.parameters():
            parameter.mul_(2.0)
    for exporter in (RTNeuralExporter(), ONNXExporter()):
        path = tmp_path / f"random.{exporter.name}"
        exporter.export(spec, module, path)
        assert exporter.check_artifact(spec, path) == [], exporter.name
        parity = exporter.verify(spec, module, path, 1e-5)
        assert parity.ok, (exporter.name, layers, parity.to_figures())
    assert attrs.evolve(spec).params == sum(p.numel() for p in module.parameters())
