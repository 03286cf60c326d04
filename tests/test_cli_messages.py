"""What the command line says: each problem once, the figure that decides, no silent no-ops."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from modelreg import export_all, load_registry
from modelreg.cli import main

from conftest import run_cli as run

ENTRY = """\
[models.{name}]
description = "dense layers"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = {exports}
checkpoint = "models/{name}.pt"
layers = [
    {{ type = "dense", units = {units}, activation = "elu" }},
    {{ type = "dense", units = 3, activation = "linear" }},
]
"""


def entry(name: str, units: int = 16, exports: str = "[]", params: int | None = None) -> str:
    count = (4 * units + units) + (units * 3 + 3)
    return ENTRY.format(name=name, units=units, exports=exports, params=count if params is None else params)




@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    return folder


def write(project: Path, *entries: str) -> str:
    path = project / "registry.toml"
    path.write_text("\n".join(entries))
    return str(path)


# ------------------------------------------------------------------ each problem once


def test_validate_prints_each_registry_problem_once(project, capsys):
    registry = write(project, entry("good"), entry("bad", params=999))
    assert main(["init", "--registry", registry]) == 2
    capsys.readouterr()
    code, out, err = run(["validate", "--registry", registry, "--latency-seconds", "0.02"], capsys)
    assert code == 2
    message = "models.bad.params: declared parameter count does not match the layers"
    assert (out + err).count(message) == 1, out + err
    assert "FAIL bad" in out
    assert "the registry has problems in bad (printed above, under FAIL)" in err  # why the exit code is 2


def test_list_of_a_registry_whose_entries_are_all_invalid_shows_them_and_their_problems(project, capsys):
    registry = write(project, entry("first", params=1), entry("second", params=2))
    code, out, err = run(["list", "--registry", registry], capsys)
    assert code == 2
    rows = [line.split()[:2] for line in out.splitlines()[2:]]
    assert rows == [["first", "INVALID"], ["second", "INVALID"]]
    for name, found in (("first", 1), ("second", 2)):
        assert err.count(f"models.{name}.params: declared parameter count does not match the layers "
                         f"(expected 131, PyTorch's count for these layers on 4 input features, found {found})") == 1


@pytest.mark.parametrize("declared", [0, -131])
def test_a_zero_or_negative_parameter_count_is_told_the_real_count(project, capsys, declared):
    registry = write(project, entry("tiny", params=declared))
    code, _, err = run(["list", "--registry", registry], capsys)
    assert code == 2
    assert f"(expected 131, PyTorch's count for these layers on 4 input features, found {declared})" in err


# ------------------------------------------------------------------ the figure that decides


def test_a_passing_export_says_rounding_in_words_beside_one_error_figure(project, capsys):
    # elu then linear: the +-1e6 edge cases give outputs near 1e6, where float32
    # rounding alone is far above 1e-5 in absolute terms. Issue 23: "error 0 <= tolerance
    # 1e-05 (max abs error 1.4e-07)" put two error figures side by side; a deciding figure
    # of 0 is now said in words.
    registry = write(project, entry("eluer", exports='["rtneural"]'))
    assert main(["init", "--registry", registry]) == 0
    capsys.readouterr()
    code, out, _ = run(["export", "--registry", registry], capsys)
    assert code == 0, out
    match = re.search(r"wrote eluer -> \S+  parity within float32 rounding( at large inputs)? \(max abs error ([^,)]+)\)", out)
    assert match, out
    assert (match[1] is not None) == (float(match[2]) > 1e-5)
    assert "error 0 <=" not in out
    code, out, _ = run(["validate", "--registry", registry, "--latency-seconds", "0.02", "--json"], capsys)
    import json

    parity = next(c for c in json.loads(out)["models"]["eluer"]["checks"] if c["name"] == "rtneural.parity")
    assert parity["status"] == "pass" and parity["figures"]["max_error"] == 0
    assert parity["message"].startswith("RTNeural reference runtime (numpy): within float32 rounding")


def test_a_parity_beyond_rounding_names_the_deciding_figure_against_the_tolerance():
    from modelreg import Parity

    assert Parity(3e-6, 4e-6, 1e-5).summary == ("error beyond float32 rounding 3e-06 <= tolerance 1e-05 "
                                                 "(max abs error 4e-06)")
    assert Parity(0.25, 0.3, 1e-5).summary == ("error beyond float32 rounding 0.25 > tolerance 1e-05 "
                                                "(max abs error 0.3)")


# ------------------------------------------------------------------ init keeps only what fits


def test_init_says_when_a_kept_checkpoint_no_longer_fits(project, capsys):
    registry = write(project, entry("eluer", units=16))
    assert main(["init", "--registry", registry]) == 0
    capsys.readouterr()
    write(project, entry("eluer", units=17))
    code, out, _ = run(["init", "--registry", registry], capsys)
    assert code == 1
    assert "kept    models/eluer.pt" in out or "kept" in out
    assert "the kept checkpoint does not fit models.eluer's architecture" in out
    assert "layers.0.weight: tensor has the wrong shape (expected shape [17, 4], found [16, 4])" in out
    assert "run `modelreg init --force eluer`" in out
    code, out, _ = run(["init", "--force", "--registry", registry], capsys)
    assert code == 0 and out.startswith("written")
    code, out, _ = run(["init", "--registry", registry], capsys)
    assert code == 0 and "does not fit" not in out


def test_init_result_carries_the_misfit(project):
    from modelreg import init_checkpoint

    registry = write(project, entry("eluer", units=16))
    init_checkpoint(load_registry(registry)["eluer"])
    write(project, entry("eluer", units=17))
    result = init_checkpoint(load_registry(registry)["eluer"])
    assert result.action == "kept" and result.misfit is not None
    assert {p.key for p in result.misfit.problems} >= {"layers.0.weight", "layers.0.bias"}


# ------------------------------------------------------------------ no silent no-op


def test_export_of_a_format_the_named_model_does_not_declare_says_so(project, capsys):
    registry = write(project, entry("eluer", exports='["rtneural"]'))
    assert main(["init", "--registry", registry]) == 0
    capsys.readouterr()
    code, out, err = run(["export", "--registry", registry, "--format", "onnx", "eluer"], capsys)
    assert code == 2
    assert ("models.eluer.exports: format 'onnx' is not declared for this model, so nothing is exported to it "
            "(expected 'onnx' listed in exports, found ['rtneural'])") in err
    report = export_all(registry, names=["eluer"], formats=["onnx"])
    assert not report.ok and report.problems[0].key == "models.eluer.exports"


def test_export_of_a_format_no_model_declares_says_so_and_others_still_export(project, capsys):
    registry = write(project, entry("eluer", exports='["rtneural"]'), entry("plain"))
    assert main(["init", "--registry", registry]) == 0
    capsys.readouterr()
    code, _, err = run(["export", "--registry", registry, "--format", "onnx"], capsys)
    assert code == 2 and "format 'onnx' is declared by none of the 2 models" in err
    # A format some model declares: the others are simply not concerned.
    code, out, err = run(["export", "--registry", registry, "--format", "rtneural"], capsys)
    assert code == 0 and "1 written" in out and err == ""


# ------------------------------------------------------------------ issue 23: what a new user tripped over


def test_an_export_format_typo_gets_a_did_you_mean(project, capsys):
    registry = write(project, entry("eluer", exports='["rtneural"]'))
    code, out, err = run(["export", "--registry", registry, "--format", "rtnueral"], capsys)
    assert code == 2 and out == ""
    assert "no exporter named 'rtnueral'; did you mean 'rtneural'?" in err


def test_several_entry_problems_are_printed_one_per_line_by_validate(project, capsys):
    broken = entry("bad").replace('type = "dense", units = 16, activation = "elu"',
                                  'type = "Dense", units = 16, activation = "elu"').replace(
        'activation = "linear"', 'activation = "tanhh"')
    registry = write(project, broken)
    code, out, _ = run(["validate", "--registry", registry, "--latency-seconds", "0.02"], capsys)
    assert code == 2
    block = out.split("\n\n")[0].splitlines()
    assert block[1].strip() == "entry: 2 problems:"
    assert "layers[0].type: not an allowed value; did you mean 'dense'?" in block[2]
    assert "layers[1].activation: not an allowed value; did you mean 'tanh'?" in block[3]


def test_export_counts_an_invalid_model_in_its_summary(project, capsys):
    registry = write(project, entry("good", exports='["rtneural"]'), entry("bad", exports='["rtneural"]', params=9))
    assert main(["init", "--registry", registry]) == 2
    capsys.readouterr()
    code, out, err = run(["export", "--registry", registry], capsys)
    assert code == 2
    assert "1 written, 0 fresh, 0 failed, 1 model not exported (invalid entry)" in out
    assert "models.bad.params" in err


def test_export_of_an_undeclared_format_prints_only_its_error(project, capsys):
    registry = write(project, entry("eluer", exports='["rtneural"]'))
    assert main(["init", "--registry", registry]) == 0
    capsys.readouterr()
    code, out, err = run(["export", "--registry", registry, "--format", "rtneural-cpp", "eluer"], capsys)
    assert code == 2 and out == "", out
    assert "format 'rtneural-cpp' is not declared for this model" in err


SOFTMAX_ON_INPUTS = """\
[models.classifier]
description = "softmax straight on the inputs: its logits reach 1e6 at the +-1e6 edge cases"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = 15
latency_ms = 50.0
exports = ["rtneural"]
checkpoint = "models/classifier.pt"
layers = [{ type = "dense", units = 3, activation = "softmax" }]
"""


def test_a_softmax_overflow_at_large_inputs_points_at_input_range(project, capsys):
    registry = write(project, SOFTMAX_ON_INPUTS)
    assert main(["init", "--registry", registry]) == 0
    capsys.readouterr()
    code, out, _ = run(["export", "--registry", registry], capsys)
    assert code == 1
    assert "NaN where torch has none, on inputs: plus_1e6, minus_1e6" in out
    assert "declare it (input_range = [MIN, MAX] in the entry)" in out
    # With the range the host really feeds, it exports and validates, and the hint is gone.
    write(project, SOFTMAX_ON_INPUTS.replace('exports = ["rtneural"]', 'exports = ["rtneural"]\ninput_range = [-1.0, 1.0]'))
    code, out, _ = run(["export", "--registry", registry], capsys)
    assert code == 0 and "input_range" not in out

