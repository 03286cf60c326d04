"""Issue 22, section 2: the resting state, reset = "rest", and the state.rest / onnx.rest checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import modelreg
from modelreg.checks import check_rest_state, tolerance_for
from modelreg.errors import UsageError
from modelreg.exporting import ARTIFACT_FIELDS, artifact_entry_sha256
from modelreg.parity import reference_outputs
from modelreg.rest import MAX_FRAMES, THRESHOLD, compute_resting_state, rest_check

from conftest import TINY_REGISTRY, write_registry
from rest_models import (GRU_LAYERS, GRU_PARAMS, LSTM_LAYERS, LSTM_PARAMS, entry, growing_lstm, make_registry,
                         nan_lstm, oscillating_gru, slow_gru)

LSTM_REST = TINY_REGISTRY.replace('checkpoint = "models/tinylstm.pt"',
                                  'reset = "rest"\nrest_input = [0.1, 0.0, -0.2]\ncheckpoint = "models/tinylstm.pt"')


@pytest.fixture
def rest_registry(tmp_path):
    """The tiny registry, its LSTM asking for reset = "rest" on a rest input of its own."""
    from modelreg.checkpoint import init_checkpoint

    path = write_registry(tmp_path / "rest", text=LSTM_REST)
    for spec in modelreg.load_registry(path).values():
        init_checkpoint(spec, seed=0)
    return path


def first_output(module, rest, **reset):
    module.reset(**reset)
    with torch.inference_mode():
        y = module(torch.tensor([rest], dtype=torch.float32)).numpy()[0]
    module.reset()
    return y


# ---------------------------------------------------------------- registry keys


def test_reset_defaults_to_zeros_and_the_rest_input_to_zeros(tiny_registry):
    spec = modelreg.load_registry(tiny_registry)["tinylstm"]
    assert spec.reset == "zeros" and spec.rest_input is None and spec.rest_frame == (0.0, 0.0, 0.0)
    module = spec.load()
    assert module.reset_mode == "zeros" and module.rest_input == (0.0, 0.0, 0.0)


def test_a_rest_input_number_is_every_feature_and_a_list_is_kept(tmp_path):
    text = LSTM_REST.replace("rest_input = [0.1, 0.0, -0.2]", "rest_input = 0.25")
    spec = modelreg.load_registry(write_registry(tmp_path, text=text))["tinylstm"]
    assert spec.reset == "rest" and spec.rest_frame == (0.25, 0.25, 0.25)
    spec = modelreg.load_registry(write_registry(tmp_path / "b", text=LSTM_REST))["tinylstm"]
    assert spec.rest_frame == (0.1, 0.0, -0.2)


def test_the_default_rest_input_is_the_bound_nearest_zero_when_the_range_excludes_zero(tmp_path):
    text = TINY_REGISTRY.replace('checkpoint = "models/tinylstm.pt"',
                                 'input_range = [0.5, 2.0]\ncheckpoint = "models/tinylstm.pt"')
    spec = modelreg.load_registry(write_registry(tmp_path, text=text))["tinylstm"]
    assert spec.rest_frame == (0.5, 0.5, 0.5)


def test_artifacts_of_entries_without_the_keys_keep_their_hash_and_the_keys_make_them_stale(tiny_registry, tmp_path):
    import hashlib

    spec = modelreg.load_registry(tiny_registry)["tinylstm"]
    canonical = json.dumps({key: spec.entry.get(key) for key in ARTIFACT_FIELDS}, sort_keys=True, separators=(",", ":"))
    assert artifact_entry_sha256(spec) == hashlib.sha256(canonical.encode()).hexdigest()  # as before the keys existed
    rest = modelreg.load_registry(write_registry(tmp_path / "r", text=LSTM_REST))["tinylstm"]
    other = modelreg.load_registry(write_registry(tmp_path / "o", text=LSTM_REST.replace("-0.2]", "-0.3]")))["tinylstm"]
    assert len({artifact_entry_sha256(s) for s in (spec, rest, other)}) == 3


def test_an_artifact_is_stale_after_reset_changes(tmp_path):
    from modelreg.exporting import export_all

    path = make_registry(tmp_path / "p", {"tinylstm": (entry("tinylstm", LSTM_LAYERS, outputs=1, params=LSTM_PARAMS)
                                                       .replace("exports = []", 'exports = ["onnx"]'), None)})
    assert export_all(path).ok
    path.write_text(path.read_text().replace('checkpoint =', 'reset = "rest"\ncheckpoint ='))
    report = modelreg.validate("tinylstm", path, latency_seconds=0.02)
    assert report["tinylstm"]["onnx.fresh"].status == "fail"
    assert "the registry entry's reset or architecture changed" in report["tinylstm"]["onnx.fresh"].message


def test_show_says_what_reset_restores(rest_registry, tiny_registry, capsys):
    from conftest import run_cli

    code, out, _ = run_cli(["show", "tinylstm", "--registry", str(rest_registry)], capsys)
    assert code == 0
    assert "  stateful     yes (one frame per call, reset() to the resting state)\n  rest input   0.1, 0, -0.2\n" in out
    code, out, _ = run_cli(["show", "tinylstm", "--registry", str(tiny_registry)], capsys)
    assert "reset() to zeros)\n  latency" in out  # no rest input line when the entry declares none


# ---------------------------------------------------------------- computing it


def test_an_lstm_settles_and_its_resting_state_is_where_a_long_run_ends(rest_registry):
    module = modelreg.load_registry(rest_registry)["tinylstm"].load()
    resting = compute_resting_state(module)
    assert resting.behaviour == "converged" and resting.converged and resting.verdict is None
    assert list(resting.state) == [name for name, _ in module.state_layout()] == ["h1", "c1"]
    assert all(v.dtype == np.float32 and v.shape == (2,) for v in resting.state.values())
    assert 0 < resting.frames <= resting.frames_run < MAX_FRAMES and resting.float32_frames is not None
    assert resting.threshold == THRESHOLD and resting.rest_input == (0.1, 0.0, -0.2)
    # A long float64 run from zeros ends there, and gives the resting output.
    exact = module.double()
    state = exact.initial_state(1)
    x = torch.tensor([[[0.1, 0.0, -0.2]]], dtype=torch.float64)
    with torch.inference_mode():
        for _ in range(2000):
            y, state = exact.step(x, state)
    ends = np.concatenate([t.reshape(-1).numpy() for layer in state for t in layer])
    assert np.max(np.abs(ends - np.concatenate(list(resting.state.values())))) < 1e-7
    assert np.max(np.abs(y.reshape(-1).numpy() - resting.output)) < 1e-9


def test_frames_count_until_the_state_is_at_rest(rest_registry):
    module = modelreg.load_registry(rest_registry)["tinylstm"].load()
    resting = compute_resting_state(module)
    rest = np.concatenate(list(resting.state.values())).astype(np.float64)
    x = torch.tensor([[[0.1, 0.0, -0.2]]])
    state = module.initial_state(1)
    distances = []
    with torch.inference_mode():
        for _ in range(resting.float32_frames + 5):
            _, state = module.step(x, state)
            distances.append(np.max(np.abs(np.concatenate([t.reshape(-1).numpy() for l in state for t in l]) - rest)))
    # float32: within 1e-6 from float32_frames on, not one frame before.
    assert all(d <= 1e-6 for d in distances[resting.float32_frames - 1:])
    assert distances[resting.float32_frames - 2] > 1e-6


def test_a_causal_conv_settles_when_its_buffer_holds_the_rest_input(tmp_path):
    layers = '    { type = "conv1d", units = 2, kernel_size = 3, dilation = 2 },\n'
    path = make_registry(tmp_path, {"conv": (entry("conv", layers, params=14, extra="rest_input = [0.5, -1.0]\n"), None)})
    module = modelreg.load_registry(path)["conv"].load()
    resting = compute_resting_state(module)
    assert resting.behaviour == "converged" and resting.frames == 4  # (kernel_size - 1) * dilation past frames
    assert resting.state["buf0"].tolist() == [0.5, -1.0] * 4


TCN_LAYERS = ('    { type = "conv1d", units = 3, kernel_size = 3, dilation = 2, activation = "tanh" },\n'
              '    { type = "residual", layers = [\n'
              '        { type = "conv1d", units = 3, kernel_size = 2, dilation = 3, activation = "tanh" },\n'
              '        { type = "batchnorm" },\n'
              '        { type = "conv1d", units = 3, kernel_size = 3 },\n'
              '    ], skip = [ { type = "conv1d", units = 3, kernel_size = 2 } ] },\n'
              '    { type = "dense", units = 2, activation = "linear" },\n')
TCN_PARAMS = 21 + (21 + 6 + 30 + 21) + 8
WAVENET_LAYERS = ('    { type = "wavenet", head_scale = 0.5, layer_arrays = [\n'
                  '        { channels = 3, head_size = 2, kernel_size = 3, dilations = [1, 2, 4], gated = true },\n'
                  '        { channels = 2, head_size = 1, kernel_size = 2, dilations = [1, 3], head_bias = true },\n'
                  '    ] },\n')


@pytest.mark.parametrize(("layers", "params", "inputs", "outputs", "memory"), [
    ('    { type = "conv1d", units = 2, kernel_size = 3, dilation = 2, activation = "tanh" },\n', 14, 2, 2, 4),
    (TCN_LAYERS, TCN_PARAMS, 2, 2, 4 + (3 + 2)),  # chained layers add up; the longer residual path counts
    (WAVENET_LAYERS, None, 1, 1, 2 * (1 + 2 + 4) + (1 + 3)),
], ids=["conv1d", "residual", "wavenet"])
def test_a_finite_memory_model_rests_after_its_memory_as_the_search_finds(tmp_path, layers, params, inputs, outputs,
                                                                        memory):
    """Conv buffers only: the resting state is one sequence call over the model's memory (its receptive
    field - 1), the same state and output as the frame-by-frame search."""
    from modelreg.layers import get_kind
    from modelreg.spec import count_params

    if params is None:  # the wavenet's count, from its kind
        import tomllib

        table = tomllib.loads("layers = [\n" + layers + "]")["layers"][0]
        params = count_params([get_kind("wavenet").spec(table, inputs)], inputs)
    rest = "[0.3, -0.7]" if inputs == 2 else "0.4"
    text = entry("fm", layers, inputs=inputs, outputs=outputs, params=params, extra=f"rest_input = {rest}\n")
    module = modelreg.load_registry(make_registry(tmp_path, {"fm": (text, None)}))["fm"].load()
    assert module.memory() == memory
    fast = compute_resting_state(module)
    module.memory = lambda: None  # the search, as for a recurrent model
    searched = compute_resting_state(module)
    assert fast.behaviour == searched.behaviour == "converged"
    assert fast.frames == fast.float32_frames == memory and searched.frames <= memory
    assert list(fast.state) == list(searched.state)
    for key in fast.state:
        np.testing.assert_allclose(fast.state[key], searched.state[key], rtol=0, atol=1e-7)
        assert np.any(fast.state[key] != 0)
    np.testing.assert_allclose(fast.output, searched.output, rtol=0, atol=1e-12)


def test_a_recurrent_layer_anywhere_means_unbounded_memory(tmp_path):
    layers = ('    { type = "conv1d", units = 2, kernel_size = 2 },\n'
              '    { type = "residual", layers = [ { type = "gru", units = 2 } ] },\n')
    text = entry("mixed", layers, params=10 + 3 * (2 * 2 + 2 * 2 + 4))
    module = modelreg.load_registry(make_registry(tmp_path, {"mixed": (text, None)}))["mixed"].load()
    assert module.memory() is None  # its resting state is searched for


def test_a_stateless_model_has_no_resting_state(tiny_registry):
    module = modelreg.load_registry(tiny_registry)["tinydense"].load()
    resting = compute_resting_state(module)
    assert resting.behaviour == "stateless" and resting.converged and not resting.stateful
    assert dict(resting.state) == {} and resting.output.shape == (3,)


def test_a_zero_rest_on_a_zero_state_is_rest_at_once(tmp_path):
    from rest_models import decaying_gru

    path = make_registry(tmp_path, {"gru": (entry("gru", GRU_LAYERS, params=GRU_PARAMS),
                                            lambda s: decaying_gru(s, 0.9))})
    resting = compute_resting_state(modelreg.load_registry(path)["gru"].load())
    assert resting.behaviour == "converged" and resting.frames == 0 and resting.float32_frames == 0
    assert resting.state["h0"].tolist() == [0.0] * 4


@pytest.mark.parametrize(("shape", "layers", "params", "behaviour", "words"), [
    (oscillating_gru, GRU_LAYERS, GRU_PARAMS, "oscillates", "it oscillates with a period of 2 frames"),
    (growing_lstm, LSTM_LAYERS, LSTM_PARAMS, "diverges", "it diverges: the largest state value grows from "),
    (nan_lstm, LSTM_LAYERS, LSTM_PARAMS, "diverges", "it diverges: state h0, c0 is no longer finite at frame 1"),
    (slow_gru, GRU_LAYERS, GRU_PARAMS, "moving", "it is still moving after 3000 frames (a state value still changes by "),
])
def test_a_state_that_never_settles_is_named_with_what_it_did(tmp_path, shape, layers, params, behaviour, words):
    outputs = 1 if layers == LSTM_LAYERS else 2
    path = make_registry(tmp_path, {"restless": (entry("restless", layers, outputs=outputs, params=params), shape)})
    module = modelreg.load_registry(path)["restless"].load()
    resting = compute_resting_state(module, max_frames=3000)
    assert resting.behaviour == behaviour and not resting.converged
    assert dict(resting.state) == {} and resting.output is None and resting.frames is None
    assert resting.verdict.startswith("restless: the state never settles on the rest input (0 on all 2 features): ")
    assert words in resting.verdict
    if behaviour == "oscillates":
        assert resting.period == 2 and resting.frames_run < 3000  # found early, not after the bound


class Wobble(torch.nn.Module):
    """A state at rest that float64 rounding keeps flipping by one ulp (0.5 <-> 0.5 + 2**-53)."""

    spec_name = "wobble"
    rest_input = (0.0,)
    is_stateful = True

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Identity()])
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives .double() / .float() a dtype to follow

    def state_layout(self):
        return [("h0", 1)]

    def initial_state(self, batch):
        return [(torch.full((1, batch, 1), 0.5, dtype=self.anchor.dtype),)]

    def step(self, x, state):
        h = state[0][0]
        flipped = torch.where(h == 0.5, h + 2.0**-53, torch.full_like(h, 0.5))
        return flipped, [(flipped,)]


def test_a_state_wobbling_by_an_ulp_is_at_rest():
    resting = compute_resting_state(Wobble(), max_frames=600)
    assert resting.behaviour == "converged" and resting.frames_run == 1, resting.detail
    assert resting.state["h0"].tolist() == [0.5]


def test_computing_it_leaves_the_module_as_it_was(rest_registry):
    module = modelreg.load_registry(rest_registry)["tinylstm"].load()
    module(torch.ones(1, 3))
    state = [tuple(t.clone() for t in layer) for layer in module._state]
    compute_resting_state(module)
    assert next(module.parameters()).dtype == torch.float32 and not module.training
    assert all(torch.equal(a, b) for la, lb in zip(state, module._state) for a, b in zip(la, lb))


# ---------------------------------------------------------------- the torch module's reset()


def test_reset_restores_the_resting_state_when_the_entry_asks(rest_registry):
    module = modelreg.load_registry(rest_registry)["tinylstm"].load()
    resting = module.resting_state()
    rest = [0.1, 0.0, -0.2]
    assert np.max(np.abs(first_output(module, rest) - resting.output)) < 1e-6
    zero = first_output(module, rest, to="zeros")
    assert np.max(np.abs(zero - resting.output)) > 1e-3  # the click a zero reset makes
    # reset(to=...) holds until the next reset: the entry's choice comes back.
    assert np.max(np.abs(first_output(module, rest) - resting.output)) < 1e-6
    # A batch starts every row from the resting state.
    module.reset()
    with torch.inference_mode():
        rows = module(torch.tensor([rest, rest, rest], dtype=torch.float32)).numpy()
    assert np.max(np.abs(rows - resting.output)) < 1e-6


def test_reset_zeroes_by_default_and_rests_on_request(tiny_registry):
    module = modelreg.load_registry(tiny_registry)["tinylstm"].load()
    rest = [0.0, 0.0, 0.0]
    with torch.inference_mode():
        from_zero = module.step(torch.zeros(1, 1, 3), module.initial_state(1))[0].reshape(-1).numpy()
    assert np.array_equal(first_output(module, rest), from_zero)
    assert np.max(np.abs(first_output(module, rest, to="rest") - module.resting_state().output)) < 1e-6


def test_reset_rejects_an_unknown_mode(tiny_registry):
    module = modelreg.load_registry(tiny_registry)["tinylstm"].load()
    with pytest.raises(UsageError, match="unknown reset mode"):
        module.reset(to="silence")


def test_the_resting_state_is_computed_once_per_set_of_weights(rest_registry, monkeypatch):
    import modelreg.rest

    spec = modelreg.load_registry(rest_registry)["tinylstm"]
    calls = []
    real = modelreg.rest.compute_resting_state
    monkeypatch.setattr(modelreg.rest, "compute_resting_state", lambda m: calls.append(1) or real(m))
    module = spec.load()
    assert len(calls) == 1  # at load time, for an entry that resets to rest
    first = module.resting_state()
    for _ in range(5):
        module.reset()
        module(torch.zeros(1, 3))
    assert module.resting_state() is first and len(calls) == 1
    with torch.no_grad():
        module.layers[1].bias_ih_l0.add_(0.5)  # new weights: a new resting state
    assert module.resting_state() is not first and len(calls) == 2
    assert not np.allclose(module.resting_state().state["h1"], first.state["h1"])


def test_a_model_built_without_a_checkpoint_computes_it_on_first_use(tiny_registry):
    spec = modelreg.load_registry(tiny_registry)["tinygru"]
    module = spec.build()
    assert module._rest_cache is None
    assert module.resting_state().behaviour == "converged" and module._rest_cache is not None


def test_parity_references_start_from_zeros_whatever_the_entry_says(rest_registry):
    module = modelreg.load_registry(rest_registry)["tinylstm"].load()
    frames = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    expected = reference_outputs(module, frames)
    state = module.initial_state(2)
    with torch.inference_mode():
        from_zero, _ = module.step(torch.from_numpy(frames), state)
    assert np.allclose(expected, from_zero.numpy(), atol=1e-6)
    assert module._reset_to == "rest"  # and the module resets as its entry says afterwards


def test_a_state_that_never_settles_resets_to_zeros(tmp_path):
    text = entry("restless", GRU_LAYERS, params=GRU_PARAMS, extra='reset = "rest"\n')
    path = make_registry(tmp_path, {"restless": (text, oscillating_gru)})
    module = modelreg.load_registry(path)["restless"].load()
    assert module.resting_state().behaviour == "oscillates"
    with torch.inference_mode():
        from_zero = module.step(torch.zeros(1, 1, 2), module.initial_state(1))[0].reshape(-1).numpy()
    assert np.array_equal(first_output(module, [0.0, 0.0]), from_zero)


# ---------------------------------------------------------------- the checks


def test_state_rest_measures_both_clicks(rest_registry, tiny_registry):
    spec = modelreg.load_registry(rest_registry)["tinylstm"]
    result = check_rest_state(spec, spec.load(), tolerance_for(spec))
    figures = result.figures
    assert result.name == "state.rest" and result.status == "pass", result.message
    assert figures["reset"] == "rest" and figures["behaviour"] == "converged" and figures["threshold"] == THRESHOLD
    assert figures["click_rest"] < 1e-6 < 1e-3 < figures["click_zero"]
    assert figures["frames_to_rest"] > 0 and figures["float32_frames"] > 0 and figures["tolerance"] == 1e-5
    assert result.message.startswith('torch: reset() restores the resting state (reset = "rest"): click ')
    spec = modelreg.load_registry(tiny_registry)["tinylstm"]
    result = check_rest_state(spec, spec.load(), tolerance_for(spec))
    assert result.ok and result.figures["reset"] == "zeros" and result.figures["click_rest"] < 1e-6
    assert result.message.startswith('torch: reset() zeroes the state (reset = "zeros"): click ')


def test_state_rest_fails_when_reset_does_not_honour_the_entry(rest_registry):
    spec = modelreg.load_registry(rest_registry)["tinylstm"]
    module = spec.load()
    module.reset_mode = "zeros"  # as a module that ignores the entry would
    result = check_rest_state(spec, module, tolerance_for(spec))
    assert result.status == "fail"
    assert result.message.startswith('torch: reset = "rest" is not honoured: the first output after reset() differs '
                                     "from the resting output by ")
    assert result.figures["click_rest"] == result.figures["click_zero"] > 1e-3


def test_state_rest_fails_with_the_verdict_when_the_state_never_settles(tmp_path):
    path = make_registry(tmp_path, {"restless": (entry("restless", GRU_LAYERS, params=GRU_PARAMS), oscillating_gru)})
    spec = modelreg.load_registry(path)["restless"]
    result = check_rest_state(spec, spec.load(), tolerance_for(spec))
    assert result.status == "fail"
    assert result.message.startswith("restless: the state never settles on the rest input (0 on all 2 features): "
                                     "it oscillates with a period of 2 frames")
    assert result.figures["period"] == 2 and result.figures["click_zero"] is None


def test_state_rest_of_a_stateless_model_passes_with_no_click(tiny_registry):
    spec = modelreg.load_registry(tiny_registry)["tinydense"]
    result = check_rest_state(spec, spec.load(), tolerance_for(spec))
    assert result.ok and result.message == "torch: no state, so a reset changes nothing"
    assert result.figures["click_zero"] == result.figures["click_rest"] == 0.0


def test_rest_check_takes_any_runtime(rest_registry):
    """The function the C++ side calls: run(frames, mode) -> outputs, or None when a reset is not available."""
    module = modelreg.load_registry(rest_registry)["tinylstm"].load()
    resting = module.resting_state()
    seen = []

    def run(frames, mode):
        seen.append((frames.shape, frames.dtype, mode))
        if mode == "rest":
            return None
        state = module.initial_state(1)
        with torch.inference_mode():
            return module.step(torch.from_numpy(frames), state)[0].numpy()

    result = rest_check("x.rest", run, resting, reset="zeros", runtime="C++")
    assert seen == [((1, 1, 3), np.float32, "zeros"), ((1, 1, 3), np.float32, "rest")]
    assert result.ok and result.name == "x.rest" and result.figures["click_rest"] is None
    assert "click_zero" in result.figures and "not measured" in result.message
    result = rest_check("x.rest", run, resting, reset="rest", runtime="C++")
    assert result.status == "fail" and "the resting reset could not be measured" in result.message
    # A runtime whose output has another shape, or NaN, never passes.
    wrong = rest_check("x.rest", lambda f, m: np.zeros((1, 1, 5), np.float32), resting, reset="rest")
    assert wrong.status == "fail" and wrong.figures["click_rest"] == float("inf")
    nan = rest_check("x.rest", lambda f, m: np.full((1, 1, 2), np.nan, np.float32), resting, reset="rest")
    assert nan.status == "fail" and np.isnan(nan.figures["click_rest"])


def test_the_results_schema_holds_the_new_checks_figures(rest_registry):
    import jsonschema

    from modelreg.schemas import load_schema

    report = modelreg.validate("tinylstm", rest_registry, latency_seconds=0.02)
    document = report.to_json()
    jsonschema.validate(document, load_schema("validation_results"))
    checks = document["models"]["tinylstm"]["checks"]
    rest = next(c for c in checks if c["name"] == "state.rest")
    denormals = next(c for c in checks if c["name"] == "denormals")
    assert rest["status"] == denormals["status"] == "pass"
    for check, key in ((rest, "click_zero"), (rest, "frames_to_rest"), (denormals, "counts"), (denormals, "warn")):
        del check["figures"][key]
        with pytest.raises(jsonschema.ValidationError, match=repr(key)):
            jsonschema.validate(document, load_schema("validation_results"))
        check["figures"][key] = None if key != "counts" else {}


# ---------------------------------------------------------------- ONNX


@pytest.fixture
def onnx_registry(tmp_path):
    """An LSTM with reset = "rest" and a conv1d + GRU with the default reset, both exported to ONNX."""
    from modelreg.exporting import export_all

    conv_gru = ('    { type = "conv1d", units = 4, kernel_size = 3, dilation = 2, activation = "tanh" },\n'
                '    { type = "gru", units = 2 },\n')
    path = make_registry(tmp_path / "onnx", {
        "resting": (entry("resting", '    { type = "dense", units = 4, activation = "tanh" },\n'
                                     '    { type = "lstm", units = 2 },\n', inputs=3, params=80,
                          extra='reset = "rest"\nrest_input = [0.1, 0.0, -0.2]\n'), None),
        "zeroing": (entry("zeroing", conv_gru, inputs=3, params=88), None),
    })
    path.write_text(path.read_text().replace("exports = []", 'exports = ["onnx"]'))
    assert export_all(path).ok
    return path


def onnx_metadata(path):
    import onnx

    return {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}


def test_onnx_carries_the_resting_state_when_the_entry_asks_and_nothing_otherwise(onnx_registry):
    root = onnx_registry.parent / "models" / "onnx"
    registry = modelreg.load_registry(onnx_registry)
    metadata = onnx_metadata(root / "resting.onnx")
    assert set(metadata) == {"modelreg.reset", "modelreg.rest_state"} and metadata["modelreg.reset"] == "rest"
    carried = json.loads(metadata["modelreg.rest_state"])
    resting = registry["resting"].load().resting_state()
    assert list(carried) == ["h1", "c1"]
    for name, values in carried.items():
        assert np.asarray(values).shape == (1, 1, 2)
        assert np.array_equal(np.asarray(values, np.float32)[0, 0], resting.state[name])  # float32 values, exactly
    assert onnx_metadata(root / "zeroing.onnx") == {}  # the default reset: the file is as it always was


def test_onnx_rest_proves_onnxruntime_fed_the_resting_state_does_not_click(onnx_registry):
    report = modelreg.validate(["resting", "zeroing"], onnx_registry, latency_seconds=0.02)
    resting, zeroing = report["resting"]["onnx.rest"], report["zeroing"]["onnx.rest"]
    assert resting.ok and resting.figures["rest_state"] == "metadata", resting.message
    assert resting.message.startswith('onnxruntime: reset() restores the resting state (reset = "rest"): click ')
    assert resting.figures["click_rest"] < 1e-6 < 1e-3 < resting.figures["click_zero"]
    assert zeroing.ok and zeroing.figures["rest_state"] == "computed" and zeroing.figures["click_rest"] < 1e-6
    assert report["resting"]["onnx.parity"].ok  # parity still runs every artifact from zeros
    assert report.ok, [(m.name, c.name, c.message) for m in report.models.values() for c in m.failures]


def test_onnx_rest_fails_when_the_file_carries_another_state(onnx_registry, tmp_path):
    import onnx

    from modelreg.onnx.exporter import ONNXExporter

    source = onnx_registry.parent / "models" / "onnx" / "resting.onnx"
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == "modelreg.rest_state":
            prop.value = json.dumps({"h1": [[[0.0, 0.0]]], "c1": [[[0.0, 0.0]]]})
    changed = tmp_path / "resting.onnx"
    onnx.save(model, str(changed))
    spec = modelreg.load_registry(onnx_registry)["resting"]
    exporter = ONNXExporter()
    assert exporter.check_artifact(spec, changed) == []  # a well-formed state: only running it tells
    (name, check), = exporter.extra_checks(spec, spec.load(), 1e-5)
    result = check(changed)
    assert name == "rest" and result.name == "onnx.rest" and result.status == "fail"
    assert result.message.startswith('onnxruntime: reset = "rest" is not honoured: the first output after reset() differs')


def test_onnx_rest_is_only_for_stateful_models(tiny_registry):
    from modelreg.onnx.exporter import ONNXExporter

    registry = modelreg.load_registry(tiny_registry)
    assert ONNXExporter().extra_checks(registry["tinydense"], registry["tinydense"].load(), 1e-5) == []


@pytest.mark.parametrize(("props", "message"), [
    ({"modelreg.reset": "resting"}, "modelreg.reset: unknown reset in the metadata (expected 'rest' or 'zeros', found 'resting')"),
    ({"modelreg.reset": "rest", "modelreg.rest_state": "{"}, "modelreg.rest_state: the resting state is not JSON"),
    ({"modelreg.reset": "rest", "modelreg.rest_state": '{"h1": [[[0, 0]]]}'},
     "modelreg.rest_state: the resting state does not name the graph's state inputs (expected h1 [1, 1, 2], "
     "c1 [1, 1, 2], found ['h1'])"),
    ({"modelreg.reset": "rest", "modelreg.rest_state": '{"h1": [[[0, 0, 0]]], "c1": [[[0, 0]]]}'},
     "modelreg.rest_state.h1: a resting state tensor has the wrong shape or values (expected [1, 1, 2] finite numbers)"),
    ({"modelreg.reset": "rest", "modelreg.rest_state": '{"h1": [[[0, NaN]]], "c1": [[[0, 0]]]}'},
     "modelreg.rest_state.h1: a resting state tensor has the wrong shape or values"),
    ({"modelreg.reset": "zeros", "modelreg.rest_state": '{"h1": [[[0, 0]]], "c1": [[[0, 0]]]}'},
     "modelreg.rest_state: a resting state in the metadata of a file that resets to zeros"),
])
def test_check_file_reads_the_metadata(onnx_registry, tmp_path, props, message):
    import onnx

    from modelreg.onnx.exporter import ONNXExporter

    model = onnx.load(str(onnx_registry.parent / "models" / "onnx" / "resting.onnx"))
    del model.metadata_props[:]
    for key, value in props.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    problems = ONNXExporter().check_file(path)
    assert len(problems) == 1 and message in str(problems[0]), problems


def test_the_schema_check_says_when_the_file_and_the_entry_reset_differently(onnx_registry):
    from modelreg.onnx.exporter import ONNXExporter

    root = onnx_registry.parent / "models" / "onnx"
    text = onnx_registry.read_text()
    onnx_registry.write_text(text.replace('reset = "rest"\n', "").replace(
        'description = "zeroing"', 'description = "zeroing"\nreset = "rest"'))
    registry = modelreg.load_registry(onnx_registry)
    exporter = ONNXExporter()
    (problem,) = exporter.check_artifact(registry["resting"], root / "resting.onnx")
    assert str(problem).endswith("models.resting.reset: the file's reset does not match the entry; run `modelreg "
                                 "export --force resting` (expected no resting state, as the entry does not say "
                                 "reset = \"rest\", found modelreg.reset = 'rest')")
    (problem,) = exporter.check_artifact(registry["zeroing"], root / "zeroing.onnx")
    assert "(expected modelreg.reset = \"rest\" and modelreg.rest_state, as the entry says reset = \"rest\", " \
           "found no resting state)" in str(problem)


def test_export_refuses_a_resting_reset_for_a_state_that_never_settles(tmp_path):
    from modelreg.exporting import export_all

    text = entry("restless", GRU_LAYERS, params=GRU_PARAMS, extra='reset = "rest"\n').replace(
        "exports = []", 'exports = ["onnx"]')
    path = make_registry(tmp_path, {"restless": (text, oscillating_gru)})
    report = export_all(path)
    (artifact,) = report.artifacts
    assert artifact.status == "failed" and not (tmp_path / "models" / "onnx" / "restless.onnx").exists()
    assert ("registry.toml: models.restless.reset: reset = \"rest\" needs a resting state, but the state never "
            "settles on the rest input (0 on all 2 features): it oscillates with a period of 2 frames") in artifact.message
    assert artifact.message.endswith('(expected a state that settles on the rest input, or reset = "zeros")')
