"""The catalogue of broken registries: every one gets one exact, clear message.

Each case in ``tests/bad_registries/`` is ``NAME.toml`` (the broken registry)
plus ``NAME.expected``: the exact stderr of ``modelreg list --registry FILE``
after ``modelreg: error: ``. Placeholders in ``.expected``:

* ``{file}`` - the registry path as messages display it
  (``bad_registries/NAME.toml``: the CLI runs from ``tests/``);
* ``{...}``  - any text on one line (used only where the text depends on the
  installation, e.g. which exporters are installed).

A message listing several problems spans several lines. Cases that cannot be
a single file (a folder, a symlink, a missing file) are explicit tests below.

Nothing here may import torch: every registry is refused before anything is
built.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from modelreg import ModelRegError, RegistryError, load_registry

HERE = Path(__file__).resolve().parent
CASES_DIR = HERE / "bad_registries"
CASES = sorted(path.stem for path in CASES_DIR.glob("*.toml"))
PREFIX = "modelreg: error: "
KNOWN_EXPORTERS = {"rtneural": None, "onnx": None}


def known_exporters() -> dict[str, None]:
    return dict(KNOWN_EXPORTERS)


def shown(name: str) -> str:
    """How messages display a case's path when the current folder is tests/."""
    return f"bad_registries/{name}.toml"


def expected_text(name: str) -> str:
    return (CASES_DIR / f"{name}.expected").read_text(encoding="utf-8").rstrip("\n")


def pattern(expected: str, file: str) -> re.Pattern[str]:
    """``expected`` as a regex: literal text, with ``{file}`` and ``{...}`` filled in."""
    parts = re.split(r"(\{file\}|\{\.\.\.\})", expected)
    regex = "".join(
        re.escape(file) if part == "{file}" else r"[^\n]*?" if part == "{...}" else re.escape(part)
        for part in parts
    )
    return re.compile(regex)


def expected_problems(expected: str) -> list[str]:
    """The one-line problems of an expected CLI message, as ``str(problem)`` gives them.

    ``modelreg list`` prints either one error holding several problems
    (``N problems:`` then indented lines) or one ``modelreg: error:`` line per
    broken model's problem.
    """
    lines = expected.split("\n")
    if re.fullmatch(r"\d+ problems:", lines[0]):
        assert all(line.startswith("  ") for line in lines[1:])
        return [line[2:] for line in lines[1:]]
    assert all(line.startswith(PREFIX) for line in lines[1:])
    return [lines[0]] + [line[len(PREFIX):] for line in lines[1:]]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MODELREG_REGISTRY"}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelreg", *args],
        cwd=cwd, capture_output=True, text=True, encoding="utf-8", env=clean_env(), timeout=60,
    )


# --------------------------------------------------------------------------- the catalogue itself


def test_catalogue_is_complete_and_distinct():
    assert len(CASES) >= 30
    for name in CASES:
        assert (CASES_DIR / f"{name}.expected").is_file(), f"{name}.toml has no {name}.expected"
        assert expected_text(name), f"{name}.expected is empty"
    orphans = {p.stem for p in CASES_DIR.glob("*.expected")} - set(CASES)
    assert not orphans, f".expected files without a .toml: {sorted(orphans)}"
    contents = [(CASES_DIR / f"{name}.toml").read_bytes() for name in CASES]
    assert len(set(contents)) == len(contents), "two cases are the same registry"
    messages = [expected_text(name) for name in CASES]
    assert len(set(messages)) == len(messages), "two cases expect the same message"


# --------------------------------------------------------------------------- through the CLI


# Every case through the CLI's own ``main`` in one separate Python process (as ``python -m
# modelreg`` calls it, from tests/, with a clean environment): one interpreter start-up for ~100
# cases instead of one each (~0.3 s of CPU apiece). Whatever escapes ``main`` is recorded with its
# traceback, so a crash still fails the case. SAMPLED cases also run as real ``python -m modelreg``
# processes and must print exactly what the batch recorded.
_BATCH = r"""
import contextlib, io, json, sys, traceback
from modelreg.cli import main
results = {}
for name in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(["list", "--registry", f"bad_registries/{name}.toml"])
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results[name] = [code, out.getvalue(), err.getvalue()]
results["__torch_imported__"] = "torch" in sys.modules
print(json.dumps(results))
"""
SAMPLED = (CASES[0], CASES[len(CASES) // 2], CASES[-1])


@pytest.fixture(scope="module")
def cli_results() -> dict[str, subprocess.CompletedProcess[str]]:
    """``modelreg list --registry CASE`` for every case (see _BATCH)."""
    import json

    done = subprocess.run([sys.executable, "-c", _BATCH, json.dumps(CASES)], cwd=HERE, capture_output=True,
                          text=True, encoding="utf-8", env=clean_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    batch = json.loads(done.stdout)
    assert batch.pop("__torch_imported__") is False, "refusing a broken registry imported torch"
    return {name: subprocess.CompletedProcess(["modelreg", "list", "--registry", shown(name)], code, out, err)
            for name, (code, out, err) in batch.items()}


@pytest.mark.parametrize("name", SAMPLED)
def test_the_real_command_prints_what_the_batch_recorded(name, cli_results):
    real = run_cli("list", "--registry", shown(name), cwd=HERE)
    recorded = cli_results[name]
    assert (real.returncode, real.stdout, real.stderr) == (recorded.returncode, recorded.stdout, recorded.stderr)


@pytest.mark.parametrize("name", CASES)
def test_cli_reports_the_exact_message(name, cli_results):
    result = cli_results[name]
    assert "Traceback" not in result.stderr + result.stdout
    assert result.returncode == 2, result.stderr
    assert result.stderr.endswith("\n") and not result.stderr.endswith("\n\n")
    actual = result.stderr.rstrip("\n")
    expected = PREFIX + expected_text(name)
    assert pattern(expected, shown(name)).fullmatch(actual), f"\nexpected: {expected}\nactual:   {actual}"


def test_unknown_exporter_message_does_not_depend_on_the_installation():
    # The one place with a placeholder: the list of installed exporters.
    expected = expected_text("unknown_exporter")
    assert "{...}" in expected
    for exporter in KNOWN_EXPORTERS:
        assert exporter not in expected


def test_several_broken_models_keep_the_valid_one_listed(cli_results):
    result = cli_results["several_broken_models"]
    rows = [line.split()[:2] for line in result.stdout.splitlines()[2:]]
    # Every entry in file order; the invalid ones marked, their problems on stderr.
    assert rows == [["zeta", "INVALID"], ["good", "43"], ["alpha", "INVALID"], ["mid", "INVALID"]]


def test_cli_output_is_deterministic():
    first = run_cli("list", "--registry", shown("several_broken_models"), cwd=HERE)
    second = run_cli("list", "--registry", shown("several_broken_models"), cwd=HERE)
    assert (first.returncode, first.stdout, first.stderr) == (second.returncode, second.stdout, second.stderr)


# --------------------------------------------------------------------------- through the API


@pytest.mark.parametrize("name", CASES)
def test_api_raises_registry_error(name, monkeypatch):
    monkeypatch.chdir(HERE)
    monkeypatch.delenv("MODELREG_REGISTRY", raising=False)
    with pytest.raises(RegistryError) as info:
        load_registry(shown(name), known_exporters=known_exporters)
    error = info.value
    assert isinstance(error, ModelRegError) and isinstance(error, ValueError)
    assert error.problems
    for problem in error.problems:
        assert problem.file == shown(name)
        assert problem.reason and "\n" not in str(problem)
        if problem.key is not None and problem.key.startswith("models."):
            # A problem inside a model names that model, and its key path starts there.
            assert problem.model is not None
            assert problem.key == f"models.{problem.model}" or problem.key.startswith(
                (f"models.{problem.model}.", f"models.{problem.model}[", f'models."{problem.model}"')
            )

    # The API and the CLI agree, problem by problem, in the same order.
    lines = expected_problems(expected_text(name))
    actual = [str(problem) for problem in error.problems]
    assert len(actual) == len(lines), actual
    for line, problem in zip(lines, actual):
        assert pattern(line, shown(name)).fullmatch(problem), f"\nexpected: {line}\nactual:   {problem}"
    if len(actual) == 1:
        assert str(error) == actual[0]
    else:
        assert str(error) == f"{len(actual)} problems:\n" + "\n".join(f"  {p}" for p in actual)


def test_lenient_loading_keeps_the_valid_model(monkeypatch):
    monkeypatch.chdir(HERE)
    registry = load_registry(shown("several_broken_models"), strict=False, known_exporters=known_exporters)
    assert list(registry) == ["good"]
    assert list(registry.invalid) == ["zeta", "alpha", "mid"]  # file order
    assert [str(p) for p in registry.problems] == expected_problems(
        expected_text("several_broken_models").replace("{file}", shown("several_broken_models"))
    )


def test_loading_the_catalogue_never_imports_torch():
    script = textwrap.dedent(
        f"""
        import sys
        import modelreg
        names = {CASES!r}
        for name in names:
            try:
                modelreg.load_registry(f"bad_registries/{{name}}.toml", known_exporters=lambda: {{"onnx": None}})
            except modelreg.RegistryError:
                pass
            else:
                raise SystemExit(f"{{name}} loaded without an error")
        assert "torch" not in sys.modules, "loading a registry imported torch"
        print("ok", len(names))
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=HERE, capture_output=True, text=True,
                            env=clean_env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok {len(CASES)}"


# --------------------------------------------------------------------------- a 10^9-unit layer


def test_billion_unit_layer_is_refused_fast(monkeypatch):
    monkeypatch.chdir(HERE)
    load_registry(HERE.parent / "registry.toml")  # warm up: jsonschema import, schema compilation
    start = time.perf_counter()
    with pytest.raises(RegistryError) as info:
        load_registry(shown("units_billion_over_param_budget"), known_exporters=known_exporters)
    elapsed = time.perf_counter() - start
    assert elapsed < 0.25, f"refusing a 10^9-unit layer took {elapsed:.3f} s"
    (problem,) = info.value.problems
    assert problem.key == "models.tiny.layers"
    assert "8,000,000,003 parameters" in str(problem)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS is only reliable on Linux")
def test_billion_unit_layer_allocates_nothing():
    """Under a 512 MiB address-space limit (a 10^9 x 4 float32 weight alone is 16 GB),
    the registry is still refused cleanly, and torch is never imported."""
    import resource

    limit = 512 * 2**20

    def cap_memory() -> None:  # runs in the child, before Python starts
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    script = textwrap.dedent(
        """
        import sys
        try:
            bytearray(2**30)  # the limit is real: 1 GiB cannot be had
        except MemoryError:
            pass
        else:
            raise SystemExit("the memory limit is not effective")
        import modelreg
        try:
            modelreg.load_registry("bad_registries/units_billion_over_param_budget.toml")
        except modelreg.RegistryError as error:
            print(error)
        assert "torch" not in sys.modules
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=HERE, capture_output=True, text=True,
                            env=clean_env(), preexec_fn=cap_memory, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    expected = expected_text("units_billion_over_param_budget")
    assert result.stdout.rstrip("\n") == expected.replace("{file}", shown("units_billion_over_param_budget"))

    cli = subprocess.run([sys.executable, "-m", "modelreg", "list", "--registry",
                          shown("units_billion_over_param_budget")],
                         cwd=HERE, capture_output=True, text=True, env=clean_env(), preexec_fn=cap_memory,
                         timeout=60)
    assert cli.returncode == 2
    assert cli.stderr.rstrip("\n") == PREFIX + expected.replace("{file}", shown("units_billion_over_param_budget"))


# --------------------------------------------------------------------------- cases that are not one file

TINY = """\
[models.tiny]
description = "two dense layers"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = 43
latency_ms = 5.0
exports = []
checkpoint = "{checkpoint}"
layers = [
    {{ type = "dense", units = 5, activation = "tanh" }},
    {{ type = "dense", units = 3, activation = "softmax" }},
]
"""


def test_missing_registry_file(tmp_path):
    result = run_cli("list", "--registry", "nowhere/registry.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr == f"{PREFIX}nowhere/registry.toml: registry file not found\n"
    with pytest.raises(RegistryError) as info:
        load_registry(tmp_path / "nowhere" / "registry.toml")
    assert info.value.file == str(tmp_path / "nowhere" / "registry.toml")


def test_registry_that_is_a_folder(tmp_path):
    (tmp_path / "empty_folder").mkdir()
    result = run_cli("list", "--registry", "empty_folder", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr == f"{PREFIX}empty_folder: is a folder, not a registry file (expected a TOML file)\n"


def test_registry_that_is_a_folder_holding_a_registry(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "registry.toml").write_text(TINY.format(checkpoint="models/tiny.pt"))
    result = run_cli("list", "--registry", "project", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"{PREFIX}project: is a folder, not a registry file; did you mean project/registry.toml? "
        "(expected a TOML file)\n"
    )


def test_registry_file_that_is_a_symlink_loop(tmp_path):
    (tmp_path / "loop.toml").symlink_to("loop.toml")
    result = run_cli("list", "--registry", "loop.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith(f"{PREFIX}loop.toml: cannot read the registry: ")


def test_checkpoint_symlink_pointing_outside(tmp_path):
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    outside = tmp_path / "elsewhere.pt"
    outside.write_bytes(b"not inside the project")
    (project / "models" / "tiny.pt").symlink_to(outside)
    (project / "registry.toml").write_text(TINY.format(checkpoint="models/tiny.pt"))

    result = run_cli("list", "--registry", "project/registry.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"{PREFIX}project/registry.toml: models.tiny.checkpoint: checkpoint path leaves the registry's folder "
        f"(expected a relative path inside the registry's folder, found 'models/tiny.pt', "
        f"a symlink to {outside.resolve()})\n"
    )
    with pytest.raises(RegistryError) as info:
        load_registry(project / "registry.toml")
    (problem,) = info.value.problems
    assert (problem.model, problem.key) == ("tiny", "models.tiny.checkpoint")


def test_checkpoint_symlink_staying_inside_is_fine(tmp_path):
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "real.pt").write_bytes(b"")
    (project / "models" / "tiny.pt").symlink_to("real.pt")
    (project / "registry.toml").write_text(TINY.format(checkpoint="models/tiny.pt"))
    registry = load_registry(project / "registry.toml")
    assert registry["tiny"].checkpoint == (project / "models" / "tiny.pt").absolute()


def test_checkpoint_symlink_loop_is_reported_not_crashed(tmp_path):
    project = tmp_path / "project"
    (project / "models").mkdir(parents=True)
    (project / "models" / "a.pt").symlink_to("b.pt")
    (project / "models" / "b.pt").symlink_to("a.pt")
    (project / "registry.toml").write_text(TINY.format(checkpoint="models/a.pt"))
    result = run_cli("list", "--registry", "project/registry.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr == (
        f"{PREFIX}project/registry.toml: models.tiny.checkpoint: checkpoint path cannot be resolved: a symlink loop "
        "(expected a relative path inside the registry's folder, found 'models/a.pt')\n"
    )


def test_parent_dir_checkpoint_that_comes_back_inside_is_fine(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "registry.toml").write_text(TINY.format(checkpoint="../project/models/tiny.pt"))
    registry = load_registry(project / "registry.toml")
    assert registry["tiny"].checkpoint.resolve() == (project / "models" / "tiny.pt").resolve()


# --------------------------------------------------------------------------- exporter names


def _write_with_exports(folder: Path, exports: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text(TINY.format(checkpoint="models/tiny.pt").replace("exports = []", f"exports = {exports}"))
    return path


def test_unknown_exporter_lists_the_known_ones_and_suggests(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_with_exports(tmp_path, '["onnx", "rtnueral"]')
    with pytest.raises(RegistryError) as info:
        load_registry("registry.toml", known_exporters=known_exporters)
    assert str(info.value) == (
        "registry.toml: models.tiny.exports[1]: unknown exporter; did you mean 'rtneural'? "
        "(expected one of onnx, rtneural, found 'rtnueral')"
    )


def test_unknown_exporter_when_none_are_installed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_with_exports(tmp_path, '["tflite"]')
    with pytest.raises(RegistryError) as info:
        load_registry("registry.toml", known_exporters=dict)
    assert str(info.value) == (
        "registry.toml: models.tiny.exports[0]: unknown exporter "
        "(expected an installed exporter, but none are installed, found 'tflite')"
    )


def test_known_exporters_are_accepted(tmp_path):
    path = _write_with_exports(tmp_path, '["onnx", "rtneural"]')
    registry = load_registry(path, known_exporters=known_exporters)
    assert registry["tiny"].exports == ("onnx", "rtneural")
