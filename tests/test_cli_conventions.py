"""Command-line conventions: where ``--registry`` goes, and the exit-code rule of docs/cli.md.

0: everything passed. 1: a check failed (a model, checkpoint or file was
examined and found wrong; the others are still checked). 2: the command could
not do what was asked (bad usage, a missing or invalid registry or entry, an
unknown name, an input file that cannot be read or whose kind ``check`` does not
read, a file that cannot be written); 2 wins over 1. Each path below is run
in-process in a temporary project of three tiny models.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import write_registry, run_cli as run

import modelreg
from modelreg import cli
from modelreg.cli import main
from modelreg.registry import REGISTRY_ENV

NAMES = ["tinydense", "tinylstm", "tinygru"]
FAST = ("--latency-seconds", "0.01")


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(REGISTRY_ENV, raising=False)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Three tiny models with seeded checkpoints and an RTNeural export of tinydense (made once)."""
    from modelreg.checkpoint import init_checkpoint

    folder = tmp_path_factory.mktemp("conventions") / "project"
    path = write_registry(folder)
    path.write_text(path.read_text().replace("exports = []", 'exports = ["rtneural"]', 1))
    for spec in modelreg.load_registry(path).values():
        init_checkpoint(spec, seed=0)
    assert modelreg.export_all(path).ok
    return folder


@pytest.fixture
def project(template: Path, tmp_path: Path, monkeypatch) -> Path:
    """A fresh copy of the template; the current folder is *outside* it, so only --registry can find it."""
    folder = tmp_path / "project"
    shutil.copytree(template, folder)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return folder




# --------------------------------------------------------------------------- --registry before or after the command


COMMANDS = {
    "list": ["list"],
    "show": ["show", "tinygru"],
    "validate": ["validate", "tinydense", *FAST],
    "export": ["export"],
    "init": ["init"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("where", ["before", "after"])
def test_registry_option_before_or_after_the_command(command, where, project, capsys):
    registry = str(project / "registry.toml")
    argv = COMMANDS[command]
    argv = ["--registry", registry, *argv] if where == "before" else [*argv, "--registry", registry]
    code, out, err = run(argv, capsys)
    assert (code, err) == (0, ""), out + err
    expected = {"list": "tinylstm", "show": "tinygru: a GRU, then a sigmoid dense layer", "validate": "ok   tinydense",
                "export": "fresh tinydense", "init": "kept"}[command]
    assert expected in out


def test_without_registry_option_no_registry_is_found_here(project, capsys):
    """The control for the test above: from this folder, nothing finds the project by itself."""
    code, out, err = run(["list"], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("modelreg: error: ") and "registry.toml" in err


def test_registry_given_twice_the_one_after_the_command_wins(project, capsys):
    good = str(project / "registry.toml")
    code, out, err = run(["--registry", "nothere.toml", "list", "--registry", good], capsys)
    assert (code, err) == (0, "") and "tinygru" in out
    code, out, err = run(["--registry", good, "list", "--registry", "nothere.toml"], capsys)
    assert (code, out, err) == (2, "", "modelreg: error: nothere.toml: registry file not found\n")


def test_registry_option_before_a_command_shows_in_the_usage(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0
    assert out.startswith("usage: modelreg [-h] [--version] [--registry PATH] COMMAND ...")


# --------------------------------------------------------------------------- check needs no registry


@pytest.mark.parametrize("where", ["before", "after"])
def test_check_refuses_a_registry_option(where, project, capsys):
    artifact = str(project / "models" / "tinydense.json")
    registry = ["--registry", str(project / "registry.toml")]
    argv = [*registry, "check", artifact] if where == "before" else ["check", artifact, *registry]
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    assert err.startswith("usage: modelreg")
    assert err.endswith("modelreg: error: argument --registry: check reads only the files it is given and needs "
                        "no registry\n")


def test_check_reads_no_registry(project, monkeypatch, capsys):
    """Neither a registry in the folder nor $MODELREG_REGISTRY is read (here: it points at nothing)."""
    monkeypatch.setenv(REGISTRY_ENV, str(project / "nothere.toml"))
    code, out, err = run(["check", str(project / "models" / "tinydense.json")], capsys)
    assert (code, err) == (0, "")
    assert out == f"ok   {project / 'models' / 'tinydense.json'}: RTNeural model, 2 layers, 4 -> 3, stateless\n"
    code, _, err = run(["list"], capsys)  # while every other command does read it
    assert code == 2 and "nothere.toml" in err


# --------------------------------------------------------------------------- every exit-code path


def corrupt_checkpoint(project: Path) -> None:
    (project / "models" / "tinydense.pt").write_bytes(b"PK\x03\x04 not really a zip")


def wrong_architecture(project: Path) -> None:
    shutil.copy(project / "models" / "tinygru.pt", project / "models" / "tinydense.pt")


def invalid_entry(project: Path) -> None:
    path = project / "registry.toml"
    path.write_text(path.read_text().replace("params = 80", "params = 81"))  # tinylstm


def pin_that_differs(project: Path) -> None:
    path = project / "registry.toml"
    path.write_text(path.read_text().replace('checkpoint = "models/tinygru.pt"',
                                             'checkpoint = "models/tinygru.pt"\nsha256 = "' + "0" * 64 + '"'))


def broken_artifact(project: Path) -> None:
    path = project / "models" / "tinydense.json"
    data = json.loads(path.read_text())
    data["layers"][0]["weights"][1] = data["layers"][0]["weights"][1][:-1]
    path.write_text(json.dumps(data))


def models_folder_is_a_file(project: Path) -> None:
    shutil.rmtree(project / "models")
    (project / "models").write_text("not a folder")


def nothing(project: Path) -> None:
    pass


REG = ("--registry", "{registry}")
JSON = "{project}/models/tinydense.json"

# (id, setup, argv, exit code, a line or fragment of the output)
EXIT_PATHS: list[tuple[str, Callable[[Path], None], tuple[str, ...], int, str]] = [
    # 0: everything passed
    ("0-list", nothing, ("list", *REG), 0, "tinydense"),
    ("0-validate", nothing, ("validate", *FAST, *REG), 0, "ok   tinydense: "),
    ("0-check", nothing, ("check", JSON), 0, "ok   "),
    # 1: a check failed, the other models still checked
    ("1-corrupt-checkpoint", corrupt_checkpoint, ("validate", *FAST, "--no-write", *REG), 1, "FAIL tinydense: "),
    ("1-wrong-architecture-checkpoint", wrong_architecture, ("validate", *FAST, "--no-write", *REG), 1,
     "FAIL tinydense: "),
    ("1-export-of-a-corrupt-checkpoint", corrupt_checkpoint, ("export", "--force", *REG), 1, "FAIL"),
    ("1-init-pin-differs", pin_that_differs, ("init", *REG), 1, "pinned sha256 differs"),
    ("1-check-broken-file", broken_artifact, ("check", JSON), 1, "FAIL "),
    # 2: the command could not do what was asked
    ("2-bad-usage", nothing, ("list", "--bogus", *REG), 2, "unrecognized arguments: --bogus"),
    ("2-missing-registry", nothing, ("list", "--registry", "{project}/nothere.toml"), 2, "registry file not found"),
    ("2-invalid-entry-list", invalid_entry, ("list", *REG), 2, "models.tinylstm.params"),
    ("2-invalid-entry-validate", invalid_entry, ("validate", *FAST, "--no-write", *REG), 2, "models.tinylstm.params"),
    ("2-unknown-model", nothing, ("validate", "nosuch", *FAST, *REG), 2, "no model named 'nosuch'"),
    ("2-unknown-format", nothing, ("export", "--format", "tflite", *REG), 2, "no exporter named 'tflite'"),
    ("2-check-missing-file", nothing, ("check", "{project}/models/nothere.json"), 2, "file not found"),
    ("2-check-a-folder", nothing, ("check", "{project}/models"), 2, "expected a file, found a directory"),
    ("2-check-unread-kind", nothing, ("check", "{project}/models/tinydense.pt"), 2,
     "not a kind of file `modelreg check` reads"),
    ("2-check-with-registry", nothing, ("check", JSON, *REG), 2, "check reads only the files it is given"),
    ("2-unwritable-folder", models_folder_is_a_file, ("init", *REG), 2, "modelreg: error: "),
    # 2 wins over 1: an invalid entry and a corrupt checkpoint in one run, both reported
    ("2-wins-over-1", lambda p: (invalid_entry(p), corrupt_checkpoint(p)), ("validate", *FAST, "--no-write", *REG), 2,
     "FAIL tinydense: "),
]


@pytest.mark.parametrize(("setup", "argv", "code", "expected"), [case[1:] for case in EXIT_PATHS],
                         ids=[case[0] for case in EXIT_PATHS])
def test_exit_code(setup, argv, code, expected, project, capsys):
    setup(project)
    argv = [arg.format(registry=project / "registry.toml", project=project) for arg in argv]
    actual, out, err = run(argv, capsys)
    assert "Traceback" not in out + err
    assert actual == code, f"exit {actual}\nstdout:\n{out}\nstderr:\n{err}"
    assert expected in out + err
    if code == 2:  # a refusal says so on stderr, one `modelreg: error:` line each (argparse: usage first)
        assert any(line.startswith("modelreg") and ": error: " in line for line in err.splitlines()), err
    if code == 1:  # a failed check is reported, not refused
        assert "error:" not in err, err


def test_the_docs_state_the_rule_the_cli_docstring_states():
    """One rule, written twice (docs/cli.md for users, the module docstring for readers of the code)."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "cli.md").read_text(encoding="utf-8")
    section = page.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        assert "Every command takes `--registry PATH`" not in path.read_text(encoding="utf-8"), path.name
    assert "`check`, which reads only the files it is given" in page
    docstring = cli.__doc__ or ""
    for code in ("0", "1", "2", "130"):
        assert f"\n| {code} | " in section, code
        assert f"\n- {code}: " in docstring, code
