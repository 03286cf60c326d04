"""Issue 22, section 4, reference side: subnormal float32 values on silence, counted (check ``denormals``).

What makes them: a state decaying by a factor a per frame reaches the subnormal range
(< 2**-126) and then, in float32's round-to-nearest, either passes through to zero
(a <= 0.5: k * 2**-149 * a rounds down) or stays there for ever (0.5 < a < 1: the
smallest values round back to themselves). Both are shown with a GRU whose update gate
holds a on silence (h' = a * h exactly).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import modelreg
from modelreg.checks import check_denormals
from modelreg.denormals import MIN_TAIL_FRAMES, count_subnormals, tail_frames
from modelreg.inputs import STREAM_FRAMES, stream

from conftest import ROOT
from rest_models import GRU_LAYERS, GRU_PARAMS, decaying_gru, entry, make_registry

TINY = np.finfo(np.float32).tiny


@pytest.fixture(scope="module")
def decaying(tmp_path_factory):
    """Two GRUs decaying on silence: by 0.9 per frame (sticks in the subnormals) and 0.5 (passes through)."""
    folder = tmp_path_factory.mktemp("decaying")
    path = make_registry(folder, {
        "sticky": (entry("sticky", GRU_LAYERS, params=GRU_PARAMS), lambda s: decaying_gru(s, 0.9)),
        "halving": (entry("halving", GRU_LAYERS, params=GRU_PARAMS), lambda s: decaying_gru(s, 0.5)),
    })
    registry = modelreg.load_registry(path)
    return {name: (registry[name], registry[name].load()) for name in registry}


def brute_force(module, tail):
    """Every frame run and counted (no shortcut): per tensor, the counts over the tail and in its last frame."""
    names = [n for n, _ in module.state_layout()] + [f"layers[{i}]" for i in range(len(module.layers) - 1)] + ["y"]
    counts = dict.fromkeys(names, 0)
    first = None
    signal = torch.from_numpy(stream(module.in_features, STREAM_FRAMES, input_range=module.input_range))
    with torch.inference_mode():
        state = module.initial_state(1)
        for t in range(STREAM_FRAMES):
            _, state = module.step_layers(signal[:, t:t + 1], state)
        for t in range(1, tail + 1):
            outputs, state = module.step_layers(torch.zeros(1, 1, module.in_features), state)
            values = [v for layer in state for v in layer] + outputs
            frame = {n: int(np.count_nonzero((v.numpy() != 0) & (np.abs(v.numpy()) < TINY))) for n, v in zip(names, values)}
            frame["layers[0]"] = 0  # the GRU's output is its state h0: counted there
            for n, c in frame.items():
                counts[n] += c
            if first is None and any(frame.values()):
                first = t
    return counts, frame, first


def test_a_decay_by_0_9_sticks_in_the_subnormals(decaying):
    _, module = decaying["sticky"]
    counts = count_subnormals(module)
    assert counts.tail_frames == MIN_TAIL_FRAMES  # its resting state is 0, reached at once
    assert counts.counts["h0"] > 0 and counts.at_end["h0"] == 4  # all four units, for good
    assert 700 < counts.first_frame < 1000  # 0.9**t from ~1 reaches 2**-126 after ~830 frames
    assert counts.stream == 0 and counts.total == sum(counts.counts.values())
    # Counted exactly: the frames after the state repeats are what running them gives.
    assert counts.fixed_point_at is not None
    assert (dict(counts.counts), dict(counts.at_end), counts.first_frame) == brute_force(module, MIN_TAIL_FRAMES)


def test_a_decay_by_0_5_passes_through_the_subnormals_to_zero(decaying):
    _, module = decaying["halving"]
    counts = count_subnormals(module)
    assert 0 < counts.counts["h0"] <= 4 * 24  # 2**-127 .. 2**-149: 23 frames per unit, then exactly 0
    assert sum(counts.at_end.values()) == 0
    assert (dict(counts.counts), dict(counts.at_end), counts.first_frame) == brute_force(module, MIN_TAIL_FRAMES)


def test_the_check_warns_with_the_counts(decaying):
    spec, module = decaying["sticky"]
    result = check_denormals(spec, module)
    assert result.name == "denormals" and result.status == "pass" and result.figures["warn"] is True
    assert result.message.startswith(f"warning: {result.figures['subnormals']:,} subnormal float32 values over "
                                     "4,096 frames of silence after the 64-frame stream (h0 ")
    assert "; still there at the end: h0 4, y 1)" in result.message and "flush denormals to zero (FTZ/DAZ)" in result.message
    for key in ("subnormals", "counts", "at_end", "first_frame", "tail_frames", "stream_frames"):
        assert key in result.figures


@pytest.fixture(scope="module")
def bundled():
    registry = modelreg.load_registry(ROOT / "registry.toml")
    return {name: registry[name] for name in registry}


def test_the_bundled_models_make_no_subnormals(bundled):
    for name, spec in bundled.items():
        result = check_denormals(spec, spec.load())
        assert result.ok and result.figures["subnormals"] == 0 and result.figures["warn"] is False, name
        assert result.figures["first_frame"] is None
        if spec.is_stateful:
            assert result.figures["tail_frames"] >= MIN_TAIL_FRAMES
            assert result.message == ("no subnormal float32 values in state or outputs over 4,096 frames of "
                                      "silence after the 64-frame stream")
        else:
            assert result.figures["tail_frames"] == 1  # every frame of silence gives the same output
            assert result.message.endswith("over silence (no state: one frame)")


def test_the_tail_is_twice_the_frames_to_rest_and_at_least_4096():
    from modelreg.rest import RestingState

    assert tail_frames(None) == MIN_TAIL_FRAMES
    assert tail_frames(RestingState("m", (0.0,), "converged", frames=30, float32_frames=40)) == MIN_TAIL_FRAMES
    assert tail_frames(RestingState("m", (0.0,), "converged", frames=3000, float32_frames=2500)) == 6000
    assert tail_frames(RestingState("m", (0.0,), "oscillates")) == MIN_TAIL_FRAMES
