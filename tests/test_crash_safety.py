"""Crash safety: `modelreg export` and `modelreg validate` killed with SIGKILL, at many moments.

After every kill, each artifact, ``registry.lock`` and
``models/validation_results.json`` must be the complete old version or the
complete new one (compared by sha256 against both), never a mix; the lock
never records a new artifact that is not on disk; and the next
``modelreg export`` + ``modelreg validate`` repairs everything (exit 0),
removing the temporary files the killed run left behind.

The moments are deterministic: fractions of the window in which a measured
reference run did its work (from its first progress line to its last; the
second before is spent importing torch), plus "right after the N-th progress
line" (an artifact was just installed, or the results file is about to be
written), plus three exact worst moments made by a child that kills itself
just before a rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import modelreg
from modelreg.checkpoint import init_checkpoint
from modelreg.cli import main
from modelreg.exporting import read_lock
from modelreg.registry import REGISTRY_ENV
from modelreg.schemas import schema_problems
from modelreg.spec import LayerSpec, count_params

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL and process ids: POSIX only")

# Large enough that an export spends a second writing and checking files (600 kB JSON).
MODELS = {
    "alpha": (64, [("dense", 256, "tanh"), ("dense", 128, "tanh")]),
    "beta": (32, [("lstm", 64, None), ("dense", 16, "sigmoid")]),
    "gamma": (32, [("gru", 48, None), ("dense", 8, "tanh")]),
    "delta": (128, [("dense", 128, "tanh"), ("dense", 64, "softmax")]),
}
ARTIFACTS = {(name, fmt): f"models/{name}.json" if fmt == "rtneural" else f"models/onnx/{name}.onnx"
             for name in MODELS for fmt in ("rtneural", "onnx")}
RESULTS = "models/validation_results.json"
FAST = ("--latency-seconds", "0.01")


def registry_text() -> str:
    entries = []
    for name, (inputs, layers) in MODELS.items():
        specs = [LayerSpec(kind, units, activation or "linear") for kind, units, activation in layers]
        rows = ",\n".join(
            f'    {{ type = "{kind}", units = {units}' + (f', activation = "{activation}"' if activation else "") + " }"
            for kind, units, activation in layers
        )
        entries.append(textwrap.dedent(f"""\
            [models.{name}]
            description = "{name}"
            input_shape = [1, {inputs}]
            output_shape = [1, {layers[-1][1]}]
            dtype = "float32"
            params = {count_params(specs, inputs)}
            latency_ms = 50.0
            exports = ["rtneural", "onnx"]
            checkpoint = "models/{name}.pt"
            layers = [
            """) + rows + ",\n]\n")
    return "\n".join(entries)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != REGISTRY_ENV}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "modelreg", *args, "--registry", "registry.toml"]


def temp_files(project: Path) -> list[str]:
    return sorted(str(p.relative_to(project)) for p in project.rglob(".*") if p.name.endswith((".tmp", ".partial")))


class States:
    """The old state (seed-0 weights, exported and validated) and the new one (seed-1 weights)."""

    def __init__(self, base: Path) -> None:
        self.old = base / "old"
        self.old.mkdir(parents=True)
        (self.old / "registry.toml").write_text(registry_text())
        for spec in modelreg.load_registry(self.old / "registry.toml").values():
            init_checkpoint(spec, seed=0)
        assert main(["export", "--registry", str(self.old / "registry.toml")]) == 0
        assert main(["validate", "--registry", str(self.old / "registry.toml"), *FAST]) == 0
        self.old_sha = {key: sha(self.old / path) for key, path in ARTIFACTS.items()}

        # The new state is made by the real commands, which also measures when they do their work.
        self.new = base / "new"
        shutil.copytree(self.old, self.new)
        for spec in modelreg.load_registry(self.new / "registry.toml").values():
            init_checkpoint(spec, seed=1, force=True)
        self.export_window = progress_window(cli("export"), self.new)
        self.validate_window = progress_window(cli("validate", *FAST), self.new)
        self.new_sha = {key: sha(self.new / path) for key, path in ARTIFACTS.items()}
        assert all(self.old_sha[key] != self.new_sha[key] for key in ARTIFACTS)

    def old_with_new_weights(self, folder: Path) -> Path:
        """A copy of the old state whose checkpoints are the new ones: every artifact must be rewritten."""
        shutil.copytree(self.old, folder)
        for name in MODELS:
            shutil.copy(self.new / f"models/{name}.pt", folder / f"models/{name}.pt")
        return folder


PROGRESS = ("wrote ", "ok   ", "FAIL ")


def progress_window(command: list[str], cwd: Path) -> tuple[float, float]:
    """Run ``command`` to the end; seconds from its start to its first and its last progress line."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    times = [time.perf_counter() - started for line in proc.stdout if line.startswith(PROGRESS)]
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0 and len(times) >= 2, err
    return times[0], times[-1]


@pytest.fixture(scope="module")
def states(tmp_path_factory) -> States:
    return States(tmp_path_factory.mktemp("crash"))


def run_and_kill(command: list[str], cwd: Path, moment: tuple[str, float | int], window: tuple[float, float]) -> bool:
    """Start ``command``; SIGKILL it at ``moment``; True when the kill landed before it finished.

    ``("time", f)``: at the fraction ``f`` of the ``window`` in which the reference run worked
    (0: its first progress line, 1: its last).
    ``("line", n)``: right after its n-th progress line (an artifact installed, a model checked).
    """
    kind, value = moment
    proc = subprocess.Popen(command, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        if kind == "time":
            try:
                proc.wait(timeout=window[0] + value * (window[1] - window[0]))
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        else:
            assert proc.stdout is not None
            seen = 0
            for line in proc.stdout:
                seen += line.startswith(PROGRESS)
                if seen == value:
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return proc.returncode == -signal.SIGKILL


def assert_complete_old_or_new(project: Path, states: States) -> dict[tuple[str, str], str]:
    """Every artifact is the complete old or new file; registry.lock parses and never records
    a new artifact that is not on disk. Returns which version each artifact is."""
    version = {}
    for key, path in ARTIFACTS.items():
        digest = sha(project / path)
        assert digest in (states.old_sha[key], states.new_sha[key]), f"{path} is neither the old nor the new file"
        version[key] = "new" if digest == states.new_sha[key] else "old"
    lock = read_lock(project)  # raises if the file is damaged
    for (name, fmt), path in ARTIFACTS.items():
        record = lock["models"][name]["artifacts"][fmt]
        assert record["path"] == path
        assert record["sha256"] in (states.old_sha[(name, fmt)], states.new_sha[(name, fmt)]), f"{path}: lock record is a mix"
        if record["sha256"] == states.new_sha[(name, fmt)]:
            # Installed before recorded, always: a new record with the old file would hide a stale artifact.
            assert version[(name, fmt)] == "new", f"registry.lock records a new {path} that is not on disk"
    return version


def assert_repaired(project: Path, states: States, capsys) -> None:
    registry = str(project / "registry.toml")
    assert main(["export", "--registry", registry]) == 0, capsys.readouterr()
    assert main(["validate", "--registry", registry, *FAST]) == 0, capsys.readouterr()
    capsys.readouterr()
    for key, path in ARTIFACTS.items():
        assert sha(project / path) == states.new_sha[key]
    lock = read_lock(project)
    for (name, fmt), path in ARTIFACTS.items():
        assert lock["models"][name]["artifacts"][fmt]["sha256"] == sha(project / path)
    assert temp_files(project) == [], "the next run did not remove the killed run's temporary files"
    document = json.loads((project / RESULTS).read_text())
    assert document["ok"] is True


# --------------------------------------------------------------------------- export killed

EXPORT_MOMENTS = [("time", 0.0), ("time", 0.35), ("time", 0.7), ("time", 1.0), ("line", 1), ("line", 4), ("line", 7)]


@pytest.mark.parametrize("moment", EXPORT_MOMENTS, ids=[f"{kind}-{value}" for kind, value in EXPORT_MOMENTS])
def test_export_killed(moment, states, tmp_path, capsys):
    project = states.old_with_new_weights(tmp_path / "project")
    results_before = sha(project / RESULTS)
    killed = run_and_kill(cli("export", "--force"), project, moment, states.export_window)

    version = assert_complete_old_or_new(project, states)
    if moment[0] == "line":  # killed while it still had artifacts to write
        assert killed
        if moment[1] < 7:
            assert set(version.values()) == {"old", "new"}, version
    assert sha(project / RESULTS) == results_before  # export never touches it
    assert_repaired(project, states, capsys)


# --------------------------------------------------------------------------- validate killed

VALIDATE_MOMENTS = [("time", 0.0), ("time", 0.5), ("time", 1.0), ("time", 1.1), ("line", 2), ("line", 4)]


@pytest.mark.parametrize("moment", VALIDATE_MOMENTS, ids=[f"{kind}-{value}" for kind, value in VALIDATE_MOMENTS])
def test_validate_killed(moment, states, tmp_path, capsys):
    project = tmp_path / "project"
    shutil.copytree(states.new, project)
    before = sha(project / RESULTS)
    killed = run_and_kill(cli("validate", *FAST), project, moment, states.validate_window)
    if moment[0] == "line":
        assert killed

    path = project / RESULTS
    if sha(path) != before:  # then it must be a complete new results file
        document = json.loads(path.read_text())
        assert schema_problems(document, "validation_results", file=RESULTS) == []
        assert document["ok"] is True and set(document["models"]) == set(MODELS)
    assert_repaired(project, states, capsys)


# --------------------------------------------------------------------------- the worst moments, exactly

# A child that runs the CLI and SIGKILLs itself just before renaming a complete temporary
# file over TARGET: the last instant at which the old file is still in place.
KILL_BEFORE_RENAME = textwrap.dedent("""\
    import os, signal, sys
    import modelreg.atomic as atomic
    import modelreg.exporting as exporting

    target_name, argv = sys.argv[1], sys.argv[2:]
    real_install = atomic.install

    def install(tmp, target):
        if target.name == target_name:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_install(tmp, target)

    atomic.install = install      # registry.lock, validation results, exporters' own writes
    exporting.install = install   # the artifact's rename after its checks
    from modelreg.cli import main
    sys.exit(main(argv))
    """)


@pytest.mark.parametrize(
    ("target", "command"),
    [("gamma.json", ("export", "--force")), ("registry.lock", ("export", "--force")),
     ("validation_results.json", ("validate", *FAST))],
    ids=["before-installing-an-artifact", "before-writing-registry-lock", "before-writing-the-results"],
)
def test_killed_just_before_a_rename(target, command, states, tmp_path, capsys):
    project = states.old_with_new_weights(tmp_path / "project")
    results_before = sha(project / RESULTS)
    lock_before = sha(project / "registry.lock")
    result = subprocess.run([sys.executable, "-c", KILL_BEFORE_RENAME, target, *command, "--registry", "registry.toml"],
                            cwd=project, env=env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == -signal.SIGKILL, result.stderr

    leftovers = temp_files(project)
    assert leftovers, "the kill should have left the temporary file behind"
    assert all(name.rsplit("/", 1)[-1].startswith(f".{target}.") for name in leftovers), leftovers
    version = assert_complete_old_or_new(project, states)
    assert sha(project / RESULTS) == results_before
    if target == "gamma.json":
        assert version[("gamma", "rtneural")] == "old"
    if target == "registry.lock":
        assert sha(project / "registry.lock") == lock_before
        assert "new" in version.values()  # installed but unrecorded: reported, then redone
        report = modelreg.validate_all(project / "registry.toml", write=False, latency_seconds=0.01)
        fresh = report["alpha"]["rtneural.fresh"]
        assert fresh.status == "fail" and "an export was killed before recording it" in fresh.message

    assert_repaired(project, states, capsys)


def test_temporary_files_of_a_live_writer_are_left_alone(tmp_path):
    """The next run removes orphans only: a temp file whose process still runs is a concurrent write."""
    from modelreg.atomic import remove_orphaned_temps

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead_pid = int(dead.stdout)
        live = tmp_path / f".a.json.{sleeper.pid}-abcdefgh.partial"
        orphan = tmp_path / f".a.json.{dead_pid}-abcdefgh.partial"
        nested = tmp_path / f"..a.json.{dead_pid}-abcdefgh.partial.{dead_pid}-ijklmnop.tmp"
        unrelated = tmp_path / ".a.json.tmp"  # not a name modelreg makes: never touched
        for path in (live, orphan, nested, unrelated):
            path.write_text("x")
        removed = remove_orphaned_temps(tmp_path)
        assert sorted(removed) == sorted([orphan, nested])
        assert live.exists() and unrelated.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_leftovers_named_after_a_dead_writers_temp_file_are_orphans_too(tmp_path, tiny_registry):
    """An exporter plugin may write ``TEMP.npz`` (np.savez) or a folder beside its temporary path;
    once that process is gone, the next run removes them like the temporary file itself."""
    from modelreg.atomic import remove_orphaned_temps

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        dead_pid = int(dead.stdout)
        folder = tmp_path / "f"
        folder.mkdir()
        orphan_npz = folder / f".a.npz.{dead_pid}-abcdefgh.partial.npz"
        orphan_dir = folder / f".a.npz.{dead_pid}-abcdefgh.partial.d"
        live_npz = folder / f".a.npz.{sleeper.pid}-abcdefgh.partial.npz"
        not_ours = folder / f".a.npz.{dead_pid}-abcdefgh.partially"  # not a temporary name plus a suffix
        for path in (orphan_npz, live_npz, not_ours):
            path.write_text("x")
        orphan_dir.mkdir()
        (orphan_dir / "inner").write_text("x")
        removed = remove_orphaned_temps(folder)
        assert sorted(removed) == sorted([orphan_npz, orphan_dir])
        assert live_npz.exists() and not_ours.exists()

        # The next export cleans the folders it writes to.
        tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["rtneural"]', 1))
        left = tiny_registry.parent / "models" / f".tinydense.json.{dead_pid}-abcdefgh.partial.json"
        left.write_text("x")
        assert modelreg.export_all(tiny_registry).ok
        assert not left.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
