"""What each change of an entry needs as a version bump (issue 21, section 1): entry pairs in, levels out.

Nothing is built or loaded: modelreg.versioning reads the entries only (whether the weights changed is
the caller's, :mod:`modelreg.diff`'s, to say).
"""

from __future__ import annotations

import pytest

import modelreg
from conftest import TINYDENSE, TINY_REGISTRY, write_registry
from modelreg.versioning import check_version, declared_bump, entry_changes, parse_version, required_bump


def _spec(tmp_path, text: str, name: str):
    folder = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
    return modelreg.load_registry(write_registry(folder, text=text))[name]


_CPP = TINYDENSE.replace("exports = []", 'exports = ["rtneural", "rtneural-cpp"]')
_AUDIO = TINYDENSE.replace("latency_ms = 50.0", "sample_rate = 48000\nblock_size = 64")

# (old registry text, (old, new) replacement, model, expected (level, words) of every change)
CASES = {
    "hidden units behind the C++ header": (
        _CPP, [('units = 5, activation = "tanh"', 'units = 6, activation = "tanh"'), ("params = 43", "params = 51")],
        "tinydense", [("major", "the rtneural-cpp header's RTNeural::ModelT type changes (type 0: "
                                "RTNeural::DenseT<float, 4, 5> -> RTNeural::DenseT<float, 4, 6>)"),
                      ("minor", "architecture changed (2 -> 2 layers, params 43 -> 51)")]),
    "hidden units, no C++ header": (
        TINYDENSE, [('units = 5, activation = "tanh"', 'units = 6, activation = "tanh"'), ("params = 43", "params = 51")],
        "tinydense", [("minor", "architecture changed (2 -> 2 layers, params 43 -> 51)")]),
    "an activation behind the C++ header": (
        _CPP, [('activation = "tanh"', 'activation = "relu"')],
        "tinydense", [("major", "the rtneural-cpp header's RTNeural::ModelT type changes (type 1: "
                                "RTNeural::TanhActivationT<float, 5> -> RTNeural::ReLuActivationT<float, 5>)"),
                      ("minor", "architecture changed (2 -> 2 layers, params 43 -> 43)")]),
    "the header's weights compiled in": (
        _CPP, [('exports = ["rtneural", "rtneural-cpp"]', 'exports = ["rtneural", "rtneural-cpp"]\ncpp_weights = "embedded"')],
        "tinydense", [("major", "the rtneural-cpp header's load() changes: cpp_weights 'json' -> 'embedded'")]),
    "an export removed, another added": (
        _CPP, [('exports = ["rtneural", "rtneural-cpp"]', 'exports = ["rtneural", "onnx"]')],
        "tinydense", [("major", "export format removed: rtneural-cpp"), ("minor", "export format added: onnx")]),
    "stateful to stateless": (
        TINY_REGISTRY, [('{ type = "lstm", units = 2 }', '{ type = "dense", units = 2, activation = "tanh" }'),
                        ("params = 80", "params = 26")],
        "tinylstm", [("major", "stateful -> stateless (no state between calls)"),
                     ("minor", "architecture changed (2 -> 2 layers, params 80 -> 26)")]),
    "reset to the resting state": (
        TINY_REGISTRY, [('checkpoint = "models/tinylstm.pt"', 'checkpoint = "models/tinylstm.pt"\nreset = "rest"')],
        "tinylstm", [("minor", "what reset() restores changed: reset (none) -> 'rest'")]),
    "input range": (
        TINYDENSE, [("latency_ms = 50.0", "latency_ms = 50.0\ninput_range = [-1.0, 1.0]")],
        "tinydense", [("minor", "the declared input range changed (the values the model is proven on): "
                                "input_range (none) -> [-1.0, 1.0]")]),
    "metadata": (
        TINYDENSE, [('description = "two dense layers"', 'description = "two dense layers, tanh"'),
                    ("latency_ms = 50.0", 'latency_ms = 5.0\ntags = ["x"]\ntolerance = 1e-4\nlatency_stat = "p95"')],
        "tinydense", [("patch", "description 'two dense layers' -> 'two dense layers, tanh'"),
                      ("patch", "latency_ms 50.0 -> 5.0"), ("patch", "latency_stat (none) -> 'p95'"),
                      ("patch", "tags (none) -> ['x']"), ("patch", "tolerance (none) -> 0.0001")]),
    "sample rate": (
        _AUDIO, [("sample_rate = 48000", "sample_rate = 44100")],
        "tinydense", [("major", "sample rate 48000.0 -> 44100.0 (the host must run it at another rate)")]),
    "block size": (
        _AUDIO, [("block_size = 64", "block_size = 128")],
        "tinydense", [("patch", "block_size 64 -> 128")]),
    "input batch": (
        TINYDENSE, [("input_shape = [1, 4]", "input_shape = [2, 4]"), ("output_shape = [1, 3]", "output_shape = [2, 3]")],
        "tinydense", [("major", "input_shape [1, 4] -> [2, 4]"), ("major", "output_shape [1, 3] -> [2, 3]")]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_change_gets_its_level(tmp_path, case):
    text, replacements, name, expected = CASES[case]
    new_text = text
    for old, new in replacements:
        assert old in new_text, old
        new_text = new_text.replace(old, new, 1)
    old_spec, new_spec = _spec(tmp_path, text, name), _spec(tmp_path, new_text, name)
    changes = entry_changes(old_spec, new_spec, weights_changed=False)
    assert [(c.level, c.what) for c in changes] == expected
    assert entry_changes(old_spec, old_spec, weights_changed=False) == []


def test_weights_and_renames(tmp_path):
    spec = _spec(tmp_path, TINYDENSE, "tinydense")
    assert [c.what for c in entry_changes(spec, spec, weights_changed=True)] == ["weights changed"]
    assert entry_changes(spec, spec, weights_changed=None) == []  # unknown: not judged
    renamed = entry_changes(spec, spec, weights_changed=False, renamed_from="old")
    assert [(c.level, c.key) for c in renamed] == [("major", "name")]


@pytest.mark.parametrize(("text", "parsed"), [("0.0.0", (0, 0, 0)), ("1.4.10", (1, 4, 10)), ("12.0.3", (12, 0, 3))])
def test_parse_version(text, parsed):
    assert parse_version(text) == parsed


@pytest.mark.parametrize("text", ["1.4", "1.4.0.0", "01.4.0", "1.4.0-rc1", "v1.4.0", "", "1..0"])
def test_parse_version_refuses(text):
    with pytest.raises(ValueError):
        parse_version(text)


@pytest.mark.parametrize(("old", "new", "bump"), [
    ("1.2.3", "1.2.3", "none"), ("1.2.3", "1.2.4", "patch"), ("1.2.3", "1.3.0", "minor"), ("1.2.3", "1.3.7", "minor"),
    ("1.2.3", "2.0.0", "major"), ("1.2.3", "1.2.2", "backwards"), ("1.10.0", "1.9.0", "backwards"),
    ("0.9.0", "0.10.0", "minor"),
])
def test_declared_bump(old, new, bump):
    assert declared_bump(old, new) == bump


def test_check_version_verdicts(tmp_path):
    spec = _spec(tmp_path, TINYDENSE, "tinydense")
    weights = entry_changes(spec, spec, weights_changed=True)
    assert required_bump(weights) == "minor" and required_bump([]) is None
    assert check_version({"version": "1.0.0"}, {"version": "1.1.0"}, weights).status == "ok"
    assert check_version({"version": "1.0.0"}, {"version": "2.0.0"}, weights).status == "ok"  # more than needed is fine
    small = check_version({"version": "1.0.0"}, {"version": "1.0.1"}, weights)
    assert small.status == "too_small" and not small.ok
    assert small.message == ("declared bump too small: 1.0.0 -> 1.0.1 is a patch bump, the changes need a minor bump "
                             "(expected at least 1.1.0, found 1.0.1); minor: weights changed")
    assert check_version({"version": "1.0.0"}, {"version": "1.0.0"}, []).status == "ok"  # nothing changed
    assert check_version({}, {}, weights).status == "undeclared"
    assert check_version(None, {"version": "1.0.0"}, []).status == "new"
    assert check_version({"version": "1.0.0"}, {}, weights).status == "removed"
