"""`modelreg list`, `show`, usage errors, --version and `python -m modelreg`.

(`validate` and `init` are tested elsewhere.) Most cases call ``cli.main``
in-process, which is fast; a few run the real command to prove there is no
traceback and that ``python -m modelreg`` works.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import modelreg
from modelreg import load_registry
from modelreg.cli import main
from modelreg.registry import REGISTRY_ENV

from conftest import run_cli as run

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "registry.toml"
NAMES = ["emotionrecognizer", "melodytransformer", "harmonypredictor", "groovepredictor", "dynamicsengine"]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the bundled registry without its checkpoints, as the current folder."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(BUNDLED, folder / "registry.toml")
    return folder




def run_process(*args: str, cwd: Path = ROOT, module: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != REGISTRY_ENV}
    command = [sys.executable, "-m", "modelreg"] if module else [str(Path(sys.executable).parent / "modelreg")]
    return subprocess.run([*command, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=60)


# --------------------------------------------------------------------------- list


def test_list(capsys):
    code, out, err = run(["list", "--registry", str(BUNDLED)], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split() == ["model", "params", "in", "->", "out", "layers", "stateful", "exports"]
    assert set(lines[1]) <= {"-", " "}
    assert [line.split()[0] for line in lines[2:]] == NAMES
    rows = {line.split()[0]: line for line in lines[2:]}
    assert rows["emotionrecognizer"].split()[1:5] == ["403,264", "128", "->", "64"]
    assert "dense 512, dense 256, lstm 128, dense 64" in rows["emotionrecognizer"]
    assert rows["melodytransformer"].split()[1] == "641,664"
    assert rows["harmonypredictor"].split()[1] == "74,176"
    assert rows["groovepredictor"].split()[1] == "18,656"
    assert rows["dynamicsengine"].split()[1:5] == ["13,520", "32", "->", "16"]
    stateful_column = lines[0].index("stateful")
    stateful = {name: row[stateful_column:].split()[0] for name, row in rows.items()}
    assert stateful == {"emotionrecognizer": "yes", "melodytransformer": "yes", "harmonypredictor": "no",
                        "groovepredictor": "no", "dynamicsengine": "no"}
    # Columns line up: every row starts each column at the header's offset.
    for row in lines[2:]:
        assert row[stateful_column - 2:stateful_column] == "  "


def test_list_finds_the_registry_upward(monkeypatch, capsys, project):
    (project / "deep" / "er").mkdir(parents=True)
    monkeypatch.chdir(project / "deep" / "er")
    code, out, _ = run(["list"], capsys)
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()[2:]] == NAMES


def test_list_uses_the_environment_variable(monkeypatch, capsys, project, tmp_path):
    monkeypatch.chdir(tmp_path)
    (project / "registry.toml").rename(project / "other.toml")
    monkeypatch.setenv(REGISTRY_ENV, str(project / "other.toml"))
    code, out, _ = run(["list"], capsys)
    assert code == 0
    assert len(out.splitlines()) == 2 + len(NAMES)


def test_list_json(capsys):
    code, out, err = run(["list", "--json", "--registry", str(BUNDLED)], capsys)
    assert (code, err) == (0, "")
    document = json.loads(out)
    assert document["registry"] == str(BUNDLED)
    assert document["invalid"] == {}
    assert list(document["models"]) == NAMES
    registry = load_registry(BUNDLED)
    for name, entry in document["models"].items():
        spec = registry[name]
        assert entry["params"] == spec.params
        assert entry["input_shape"] == list(spec.input_shape)
        assert entry["output_shape"] == list(spec.output_shape)
        assert entry["layers"] == [dict(layer) for layer in spec.entry["layers"]]
        assert entry["stateful"] is spec.is_stateful
        assert entry["checkpoint_path"] == str(spec.checkpoint)
        assert entry["checkpoint_exists"] is spec.checkpoint.is_file()
    assert document["models"]["melodytransformer"]["stateful"] is True
    assert document["models"]["groovepredictor"]["stateful"] is False


def test_list_json_reports_invalid_entries(capsys, project):
    text = (project / "registry.toml").read_text()
    assert text.count("params = 74176") == 1
    (project / "registry.toml").write_text(text.replace("params = 74176", "params = 74177"))
    code, out, err = run(["list", "--json", "--registry", str(project / "registry.toml")], capsys)
    assert code == 2
    document = json.loads(out)  # stdout stays valid JSON
    assert list(document["models"]) == [n for n in NAMES if n != "harmonypredictor"]
    (message,) = document["invalid"]["harmonypredictor"]
    assert "models.harmonypredictor.params: declared parameter count does not match the layers" in message
    assert err == f"modelreg: error: {message}\n"


def test_list_of_a_registry_without_models(capsys, tmp_path, monkeypatch):
    (tmp_path / "registry.toml").write_text("[models]\n")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["list"], capsys)
    assert (code, out, err) == (0, "registry.toml: no models\n", "")


# --------------------------------------------------------------------------- show


def test_show(capsys, project, monkeypatch):
    monkeypatch.chdir(project)
    spec = load_registry("registry.toml")["harmonypredictor"]
    code, out, err = run(["show", "harmonypredictor"], capsys)
    assert (code, err) == (0, "")
    assert out == "\n".join([
        "harmonypredictor: Predicts a distribution over 64 chord classes from a 128-value harmony context.",
        "  input        [1, 128] (float32)",
        "  output       [1, 64]",
        "  params       74,176",
        "  stateful     no",
        f"  latency      p99 <= {spec.latency_ms:g} ms",
        "  checkpoint   models/harmonypredictor.pt  (missing: run `modelreg init`)",
        f"  sha256       {spec.sha256 or '(not pinned)'}",
        f"  exports      {', '.join(spec.exports) or '-'}",
        f"  tags         {', '.join(spec.tags)}",
        "  layers",
        "    [0] dense 128 -> 256 tanh  (33,024 params)",
        "    [1] dense 256 -> 128 tanh  (32,896 params)",
        "    [2] dense 128 -> 64 softmax  (8,256 params)",
        "",
    ])


def test_show_a_stateful_model(capsys):
    code, out, _ = run(["show", "emotionrecognizer", "--registry", str(BUNDLED)], capsys)
    assert code == 0
    assert "  params       403,264\n" in out
    assert "  stateful     yes (one frame per call, reset() to zeros)\n" in out
    assert "    [2] lstm 256 -> 128  (197,632 params)\n" in out  # no activation on an lstm
    layer_params = [int(line.rsplit("(", 1)[1].split()[0].replace(",", "")) for line in out.splitlines()
                    if line.startswith("    [")]
    assert sum(layer_params) == 403264


def test_show_names_every_key_that_changes_what_a_layer_computes(capsys):
    # Issue 23: a conv1d showed as "conv1d 8 -> 8 (200 params)": a TCN's dilations were invisible.
    tcn = Path(__file__).resolve().parents[1] / "examples" / "tcn" / "registry.toml"
    name = load_registry(tcn).names[0]
    code, out, _ = run(["show", name, "--registry", str(tcn)], capsys)
    assert code == 0
    assert "    [2] conv1d 8 -> 8 linear, kernel_size=3, dilation=2, groups=2  (104 params)\n" in out
    assert "    [3] batchnorm 8 -> 8 epsilon=1e-05, affine=true  (16 params)\n" in out
    assert "    [4] activation 8 -> 8 tanh  (0 params)\n" in out
    assert "    [7] gru 8 -> 8  (432 params)\n" in out


def test_show_json(capsys):
    code, out, err = run(["show", "dynamicsengine", "--json", "--registry", str(BUNDLED)], capsys)
    assert (code, err) == (0, "")
    document = json.loads(out)
    spec = load_registry(BUNDLED)["dynamicsengine"]
    assert {k: v for k, v in document.items() if k in spec.entry} == json.loads(json.dumps(dict(spec.entry)))
    assert document["params"] == 13520
    assert document["checkpoint_path"] == str(ROOT / "models" / "dynamicsengine.pt")
    assert document["checkpoint_exists"] is spec.checkpoint.is_file()
    assert document["stateful"] is False


def test_show_unknown_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside the registry's folder: the path is shown in full
    code, out, err = run(["show", "harmonypredicter", "--registry", str(BUNDLED)], capsys)
    assert code == 2 and out == ""
    assert err == (
        f"modelreg: error: {BUNDLED}: no model named 'harmonypredicter'; did you mean 'harmonypredictor'? "
        f"(expected one of {', '.join(NAMES)})\n"
    )


def test_show_unknown_name_as_a_command():
    result = run_process("show", "groovepredicter")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        "modelreg: error: registry.toml: no model named 'groovepredicter'; did you mean 'groovepredictor'? "
        f"(expected one of {', '.join(NAMES)})\n"
    )


def test_show_an_invalid_entry_says_what_is_wrong(capsys, project, monkeypatch):
    monkeypatch.chdir(project)
    text = (project / "registry.toml").read_text()
    assert text.count('checkpoint = "models/groovepredictor.pt"') == 1
    (project / "registry.toml").write_text(
        text.replace('checkpoint = "models/groovepredictor.pt"', 'checkpoint = "../groovepredictor.pt"')
    )
    code, out, err = run(["show", "groovepredictor"], capsys)
    assert code == 2 and out == ""
    assert err == (
        "modelreg: error: registry.toml: models.groovepredictor.checkpoint: checkpoint path leaves the registry's "
        "folder (expected a relative path inside the registry's folder, found '../groovepredictor.pt')\n"
    )
    code, _, err = run(["show", "dynamicsengine"], capsys)  # the other models are still shown
    assert (code, err) == (0, "")


# --------------------------------------------------------------------------- usage


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "modelreg: error: the following arguments are required: COMMAND"),
        (["bogus"], "modelreg: error: argument COMMAND: invalid choice: 'bogus'"),
        (["list", "--bogus"], "modelreg: error: unrecognized arguments: --bogus"),
        (["show"], "modelreg show: error: the following arguments are required: name"),
        (["list", "--registry"], "modelreg list: error: argument --registry: expected one argument"),
    ],
)
def test_bad_usage_exits_2(argv, message, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("usage: modelreg")
    assert message in err
    assert "Traceback" not in err


def test_bad_usage_as_a_command():
    for args in ([], ["bogus"]):
        result = run_process(*args)
        assert result.returncode == 2
        assert result.stderr.startswith("usage: modelreg")
        assert "Traceback" not in result.stderr


def test_version(capsys):
    code, out, err = run(["--version"], capsys)
    assert code == 0
    assert out == f"modelreg {modelreg.__version__}\n"


def test_help_lists_the_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    for command in ("list", "show", "validate", "init"):
        assert command in out


# --------------------------------------------------------------------------- the real commands


def test_python_dash_m_modelreg():
    version = run_process("--version")
    assert (version.returncode, version.stdout) == (0, f"modelreg {modelreg.__version__}\n")
    listing = run_process("list", "--registry", str(BUNDLED), cwd=ROOT / "models")
    assert listing.returncode == 0, listing.stderr
    assert listing.stderr == ""
    assert [line.split()[0] for line in listing.stdout.splitlines()[2:]] == NAMES


def test_console_script():
    script = Path(sys.executable).parent / "modelreg"
    if not script.is_file():
        pytest.skip("no modelreg console script next to this interpreter")
    result = run_process("show", "dynamicsengine", "--json", module=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["params"] == 13520
