"""compare_parity: which inputs the artifact's runtime gets, how rows are judged, and the torch reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modelreg import LayerSpec, compare_parity
from modelreg.checks import run_frames
from modelreg.inputs import EDGE_CASES, STREAM_FRAMES
from modelreg.layers import kinds
from modelreg.parity import parity_cases, reference_outputs

from kind_tools import spec_of, widened

STREAM = f"stream_{STREAM_FRAMES}"


def _module(tmp_path: Path, layers: list[LayerSpec], in_features: int = 3):
    return widened(spec_of(tmp_path, in_features, layers), seed=7)


def _recording(module):
    """A correct `run` (torch frame by frame) that records the shapes it was called with."""
    calls: list[tuple[int, ...]] = []

    def run(frames: np.ndarray) -> np.ndarray:
        calls.append(frames.shape)
        assert frames.dtype == np.float32
        return run_frames(module, frames)

    return run, calls


def test_stateful_models_get_the_edge_cases_as_rows_of_one_call_then_the_stream(tmp_path):
    module = _module(tmp_path, [LayerSpec("lstm", 4), LayerSpec("dense", 2, "tanh")])
    run, calls = _recording(module)
    parity = compare_parity(module, run, 1e-5)
    assert calls == [(len(EDGE_CASES), 8, 3), (1, STREAM_FRAMES, 3)]
    assert parity.ok and set(parity.cases) == {*EDGE_CASES, STREAM}


def test_stateless_models_get_one_frame_per_case_and_the_stream_only_when_asked(tmp_path):
    module = _module(tmp_path, [LayerSpec("dense", 2, "relu")])
    run, calls = _recording(module)
    assert set(compare_parity(module, run, 1e-5).cases) == set(EDGE_CASES)
    assert calls == [(len(EDGE_CASES), 1, 3)]
    calls.clear()
    assert set(compare_parity(module, run, 1e-5, with_stream=True).cases) == {*EDGE_CASES, STREAM}
    assert calls == [(len(EDGE_CASES), 1, 3), (1, STREAM_FRAMES, 3)]


def test_each_row_is_judged_as_its_own_case(tmp_path):
    module = _module(tmp_path, [LayerSpec("gru", 3)])

    def off_on_normal(frames: np.ndarray) -> np.ndarray:
        out = run_frames(module, frames)
        if frames.shape[0] > 1:
            out[list(EDGE_CASES).index("normal"), -1, 0] += 1e-3  # one value of one case
        return out

    parity = compare_parity(module, off_on_normal, 1e-5)
    assert not parity.ok and parity.max_error == pytest.approx(1e-3, rel=1e-3)
    assert parity.cases["normal"] == pytest.approx(1e-3, rel=1e-3)
    assert all(error < 1e-6 for name, error in parity.cases.items() if name != "normal")


def test_rows_swapped_by_the_runtime_fail(tmp_path):
    """A runtime that mixes up its streams (rows) gives each case another case's outputs."""
    module = _module(tmp_path, [LayerSpec("lstm", 3)])
    parity = compare_parity(module, lambda frames: run_frames(module, frames)[::-1], 1e-5)
    assert not parity.ok


def test_a_wrong_output_shape_is_an_infinite_error_for_every_case_of_the_call(tmp_path):
    module = _module(tmp_path, [LayerSpec("dense", 2, "linear")])
    parity = compare_parity(module, lambda frames: run_frames(module, frames)[:1], 1e-5)
    assert not parity.ok and parity.max_error == float("inf")
    assert all(error == float("inf") for error in parity.cases.values())


def test_the_module_is_left_reset(tmp_path):
    module = _module(tmp_path, [LayerSpec("lstm", 3)])
    frame = torch.ones(1, 3)
    with torch.inference_mode():
        first = module(frame).clone()
        compare_parity(module, lambda frames: run_frames(module, frames), 1e-5)
        module.reset()
        assert torch.equal(module(frame), first)


@pytest.mark.parametrize("kind", kinds(), ids=lambda kind: kind.name)
def test_the_sequence_reference_is_what_the_model_computes_frame_by_frame(tmp_path, kind):
    """The reference runs each case group as one sequence; a host runs frames one per call.
    Both must agree to float32 rounding for every kind (with a stateful layer after it, so that
    a layer's sequence output feeds a recurrent state too)."""
    in_features = 6
    for example in kind.examples:
        first = kind.spec({"type": kind.name, **example}, in_features)
        module = _module(tmp_path, [first, LayerSpec("gru", 3)], in_features)
        for frames in parity_cases(in_features, True).values():
            frames = np.repeat(frames, 2, axis=0)  # batch 2
            frame_by_frame = run_frames(module, frames)
            sequence = reference_outputs(module, frames)
            assert sequence.shape == frame_by_frame.shape
            np.testing.assert_allclose(sequence, frame_by_frame, rtol=1e-5, atol=1e-6, err_msg=str(example))
