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


def test_a_passing_export_prints_the_deciding_figure_against_its_tolerance(project, capsys):
    # elu then linear: the +-1e6 edge cases give outputs near 1e6, where float32
    # rounding alone is far above 1e-5 in absolute terms.
    registry = write(project, entry("eluer", exports='["rtneural"]'))
    assert main(["init", "--registry", registry]) == 0
    capsys.readouterr()
    code, out, _ = run(["export", "--registry", registry], capsys)
    assert code == 0, out
    match = re.search(r"wrote eluer -> \S+  parity error (\S+) <= tolerance 1e-05 \(max abs error ([^,)]+)", out)
    assert match, out
    assert float(match[1]) <= 1e-5
    absolute = float(match[2])
    if absolute > 1e-5:
        assert "within float32 rounding at large inputs" in out
    code, out, _ = run(["validate", "--registry", registry, "--latency-seconds", "0.02", "--json"], capsys)
    import json

    parity = next(c for c in json.loads(out)["models"]["eluer"]["checks"] if c["name"] == "rtneural.parity")
    assert parity["status"] == "pass"
    assert parity["message"].startswith(f"error {parity['figures']['max_error']:.3g} <= tolerance 1e-05 (max abs error")


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
