"""input_range: a model is checked and proven on the values its host feeds it.

A softmax classifier fed normalised features overflows RTNeural's unshifted
softmax at the +-1e6 edge cases (NaN in the plugin too), so without a declared
range it fails RTNeural parity although the host never sends such values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import modelreg
from modelreg.checkpoint import init_checkpoint
from modelreg.exporting import export_all
from modelreg.inputs import EDGE_CASES, RANGE_CASES, edge_cases, stream
from modelreg.parity import parity_cases

from conftest import needs_rtneural, run_cli, write_registry

# A softmax straight on the input: logits ~ weights * 1e6 at the edge cases.
CLASSIFIER = """\
[models.classifier]
description = "normalised features to three classes"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = 15
latency_ms = 50.0
exports = ["rtneural"]
checkpoint = "models/classifier.pt"
layers = [{ type = "dense", units = 3, activation = "softmax" }]
"""


def _classifier(folder: Path, input_range: str | None) -> Path:
    text = CLASSIFIER if input_range is None else CLASSIFIER.replace(
        'exports = ["rtneural"]', f'exports = ["rtneural"]\ninput_range = {input_range}')
    path = write_registry(folder, text=text)
    init_checkpoint(modelreg.load_registry(path)["classifier"], seed=0)
    assert export_all(path).ok  # the export proves parity on the same cases validate uses
    return path


@pytest.mark.parametrize("bounds", [(-1.0, 1.0), (0.0, 1.0), (100.0, 200.0), (-3.5, -0.5)])
def test_every_input_stays_inside_the_range(bounds):
    low, high = bounds
    cases = edge_cases(6, batch=3, input_range=bounds)
    assert list(cases)[1:] == list(RANGE_CASES)[1:]
    assert list(cases)[0] == ("zeros" if low <= 0 <= high else "range_mid")
    for name, frame in cases.items():
        assert frame.dtype == np.float32 and frame.shape == (3, 6), name
        assert frame.min() >= low and frame.max() <= high, name
    assert (cases["range_max"] == np.float32(high)).all() and (cases["range_min"] == np.float32(low)).all()
    mixed = cases["mixed_signs"][0]
    assert mixed.max() == np.float32(high) and mixed.min() == np.float32(low)  # both bounds, side by side
    frames = stream(5, 64, input_range=bounds)
    assert frames.min() >= low and frames.max() <= high and frames.std() > (high - low) / 10  # it moves
    for name, frames in parity_cases(6, True, input_range=bounds).items():
        assert frames.min() >= low and frames.max() <= high, name


def test_without_a_range_the_cases_are_unchanged():
    assert list(edge_cases(4)) == list(EDGE_CASES)
    assert edge_cases(4)["plus_1e6"].max() == 1e6
    # The normal draw is the same N(0,1) as before (seeded); a [-1, 1] range clips it.
    assert np.array_equal(edge_cases(4, input_range=(-1.0, 1.0))["normal"], np.clip(edge_cases(4)["normal"], -1, 1))


def test_the_entry_declares_it_and_the_module_carries_it(tmp_path):
    path = _classifier(tmp_path / "project", "[-1.0, 1]")
    spec = modelreg.load_registry(path)["classifier"]
    assert spec.input_range == (-1.0, 1.0)
    assert spec.load().input_range == (-1.0, 1.0)  # compare_parity reads it from the module
    assert spec.build().input_range == (-1.0, 1.0)


def test_a_softmax_classifier_fails_rtneural_parity_at_1e6_and_passes_within_its_range(tmp_path, capsys):
    unbounded = write_registry(tmp_path / "unbounded", text=CLASSIFIER)
    init_checkpoint(modelreg.load_registry(unbounded)["classifier"], seed=0)
    export = export_all(unbounded)
    assert not export.ok
    assert "NaN where torch has none, on inputs: plus_1e6" in export.artifacts[0].message

    bounded = _classifier(tmp_path / "bounded", "[-1.0, 1.0]")
    report = modelreg.validate_all(bounded, write=False, latency_seconds=0.02)["classifier"]
    assert report["rtneural.parity"].status == "pass", report["rtneural.parity"].message
    assert set(report["rtneural.parity"].figures["cases"]) == {"zeros", "normal", "range_max", "range_min", "mixed_signs"}
    assert report["edge_cases"].message == "5 edge cases give finite outputs (inputs within input_range [-1, 1])"
    assert report["edge_cases"].figures["input_range"] == [-1.0, 1.0]
    assert report.ok, [(c.name, c.message) for c in report.failures]
    code, out, err = run_cli(["validate", "--registry", str(bounded), "--no-write", "--latency-seconds", "0.02"], capsys)
    assert code == 0, out + err
    code, out, err = run_cli(["show", "classifier", "--registry", str(bounded)], capsys)
    assert code == 0 and "  input        [1, 4] (float32), values in [-1, 1]\n" in out


def test_a_range_change_needs_no_new_export(tmp_path):
    """The range decides what the artifacts are proven on, not what they contain."""
    path = _classifier(tmp_path / "project", "[-1.0, 1.0]")
    path.write_text(path.read_text().replace("input_range = [-1.0, 1.0]", "input_range = [-0.5, 0.5]"))
    report = modelreg.validate_all(path, write=False, latency_seconds=0.02)["classifier"]
    assert report["rtneural.fresh"].status == "pass"
    assert report.ok


@needs_rtneural
def test_rtneural_cpp_agrees_on_the_range(tmp_path, cpp):
    """RTNeural's own engine: NaN at +-1e6 (its softmax overflows), a pass within the range."""
    unbounded = write_registry(tmp_path / "unbounded", text=CLASSIFIER)
    spec = modelreg.load_registry(unbounded)["classifier"]
    init_checkpoint(spec, seed=0)
    from modelreg.rtneural.exporter import RTNeuralExporter

    RTNeuralExporter().export(spec, spec.load(), tmp_path / "classifier.json")
    from modelreg.rtneural import cpp as rc

    runner = rc.runner_for(rc.toolchain_for(spec))
    loaded = rc.load_checked(runner, tmp_path / "classifier.json")
    try:
        assert np.isnan(rc.parity(runner, loaded, spec.load(), 1e-5).max_error)
    finally:
        runner.free(loaded)

    bounded = _classifier(tmp_path / "bounded", "[-1.0, 1.0]")
    report = modelreg.validate_all(bounded, write=False, latency_seconds=0.02)["classifier"]
    assert report["rtneural.dynamic_parity"].status == "pass", report["rtneural.dynamic_parity"].message
    assert "range_max" in report["rtneural.dynamic_parity"].figures["cases"]


def test_import_of_a_softmax_classifier_needs_its_range_and_keeps_it(tmp_path, capsys):
    """An RTNeural classifier (e.g. from RTNeural's Keras exporter) whose softmax overflows at
    +-1e6 cannot be imported as if any input were possible: the refusal says how to declare
    the range, and with it the import is proven on that range and the entry keeps it."""
    from modelreg.rtneural.exporter import RTNeuralExporter

    source = write_registry(tmp_path / "source", text=CLASSIFIER)
    spec = modelreg.load_registry(source)["classifier"]
    init_checkpoint(spec, seed=0)
    RTNeuralExporter().export(spec, spec.load(), tmp_path / "classifier.json")
    (tmp_path / "app").mkdir()
    registry = tmp_path / "app" / "registry.toml"

    code, out, _ = run_cli(["import", str(tmp_path / "classifier.json"), "--registry", str(registry)], capsys)
    assert code == 1
    assert "NaN where torch has none, on inputs: plus_1e6" in out
    assert "give it (--input-range MIN MAX)" in out
    assert not registry.exists()

    code, out, err = run_cli(["import", str(tmp_path / "classifier.json"), "--registry", str(registry),
                              "--input-range", "-1", "1", "--exports", "rtneural"], capsys)
    assert code == 0, out + err
    assert "input_range = [-1.0, 1.0]\n" in registry.read_text()
    assert modelreg.load_registry(registry)["classifier"].input_range == (-1.0, 1.0)
    assert export_all(registry).ok
    assert modelreg.validate_all(registry, write=False, latency_seconds=0.02).ok
