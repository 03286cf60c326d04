"""Two `modelreg export` processes started together on the same registry (issue 4).

Both must finish (exit 0, no traceback); every artifact must be valid (RTNeural
files pass `modelreg check`, ONNX files pass onnx.checker and load in
onnxruntime); ``registry.lock`` must parse and record, for every model and
format, the sha256 of the file on disk; `modelreg validate` must pass (fresh
and parity); and no temporary file may be left behind.

When the two processes export different formats, both formats must end up in
``registry.lock``: each process rewrites the whole lock file, so without the
file lock around that read-modify-write one process's records could be lost.
The last test makes the two read-modify-writes collide on purpose, so that it
fails if the file lock is missing rather than passing by luck of timing.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import attrs
import pytest

from modelreg.cli import main
from modelreg.exporting import export_all, read_lock
from test_crash_safety import env, sha, temp_files

# The tiny models, then a few larger ones: an export must write for long enough (about a
# second) that two started together are still writing at the same time, whatever the jitter
# of their start-up (the tiny ones alone take ~0.1 s since parity got faster).
BUSY = tuple(f"busy{i}" for i in range(6))
MODELS = ("tinydense", "tinylstm", "tinygru") + BUSY
FORMATS = ("rtneural", "onnx")
ROUNDS = 3
BUSY_ENTRY = """
[models.{name}]
description = "a larger model, to keep an export busy"
input_shape = [1, 64]
output_shape = [1, 8]
dtype = "float32"
params = 300040
latency_ms = 50.0
exports = ["rtneural", "onnx"]
checkpoint = "models/{name}.pt"
layers = [
    {{ type = "dense", units = 512, activation = "tanh" }},
    {{ type = "dense", units = 512, activation = "tanh" }},
    {{ type = "dense", units = 8, activation = "sigmoid" }},
]
"""


def relative_artifact(name: str, fmt: str) -> str:
    return f"models/{name}.json" if fmt == "rtneural" else f"models/onnx/{name}.onnx"


@pytest.fixture
def project(tiny_registry: Path) -> Path:
    """The tiny registry (three models, seed-0 checkpoints) and the BUSY models, all declaring both
    built-in formats."""
    from modelreg.checkpoint import init_checkpoint
    from modelreg.registry import load_registry

    text = tiny_registry.read_text().replace("exports = []", 'exports = ["rtneural", "onnx"]')
    tiny_registry.write_text(text + "".join(BUSY_ENTRY.format(name=name) for name in BUSY))
    registry = load_registry(tiny_registry)
    for name in BUSY:
        init_checkpoint(registry[name])
    return tiny_registry.parent


@attrs.define
class Run:
    """One finished process: its exit code, output, and when each progress line appeared."""

    returncode: int
    out: str
    err: str
    progress: list[float]  # time.monotonic() of each "wrote ..." line

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run_together(commands: list[list[str]], cwd: Path, timeout: float = 300) -> list[Run]:
    """Start every command at the same moment (one Popen right after the other), then wait for all."""
    procs = [subprocess.Popen(command, cwd=cwd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for command in commands]
    outs: list[list[str]] = [[] for _ in procs]
    errs: list[list[str]] = [[] for _ in procs]
    stamps: list[list[float]] = [[] for _ in procs]

    def read_out(index: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("wrote "):
                stamps[index].append(time.monotonic())
            outs[index].append(line)

    def read_err(index: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        errs[index].append(proc.stderr.read())

    readers = [threading.Thread(target=reader, args=(i, proc), daemon=True)
               for i, proc in enumerate(procs) for reader in (read_out, read_err)]
    try:
        for reader in readers:
            reader.start()
        for proc in procs:
            proc.wait(timeout=timeout)
        for reader in readers:
            reader.join(timeout=30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [Run(proc.returncode, "".join(outs[i]), "".join(errs[i]), stamps[i]) for i, proc in enumerate(procs)]


def export_command(project: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "modelreg", "export", *args, "--registry", str(project / "registry.toml")]


def assert_finished_cleanly(runs: list[Run], written: int) -> None:
    for run in runs:
        assert run.returncode == 0, run.describe()
        assert "Traceback" not in run.err and "Traceback" not in run.out, run.describe()
        assert "modelreg: error" not in run.err, run.describe()
        assert f"{written} written, 0 fresh, 0 failed" in run.out, run.describe()


def overlapped(runs: list[Run]) -> bool:
    """Whether the two processes were writing artifacts during the same span of time."""
    (a, b) = runs
    return bool(a.progress and b.progress) and a.progress[0] <= b.progress[-1] and b.progress[0] <= a.progress[-1]


def assert_consistent(project: Path, capsys: pytest.CaptureFixture[str], models=MODELS, formats=FORMATS) -> None:
    """Artifacts valid, registry.lock matching them, validate passing, no temporary files left."""
    assert temp_files(project) == [], "temporary files were left behind"

    # registry.lock parses (read_lock raises on a damaged file) and describes exactly the files on disk.
    lock = read_lock(project)
    assert sorted(lock["models"]) == sorted(models)
    for name in models:
        artifacts = lock["models"][name]["artifacts"]
        assert sorted(artifacts) == sorted(formats), f"{name}: formats recorded in registry.lock"
        for fmt in formats:
            record = artifacts[fmt]
            path = relative_artifact(name, fmt)
            assert record["path"] == path
            assert record["sha256"] == sha(project / path), f"registry.lock does not describe {path} on disk"
            assert record["checkpoint_sha256"] == sha(project / f"models/{name}.pt")

    # Every artifact is a complete, valid file.
    if "rtneural" in formats:
        files = [str(project / relative_artifact(name, "rtneural")) for name in models]
        capsys.readouterr()
        assert main(["check", *files]) == 0
        out = capsys.readouterr().out
        assert out.count("ok   ") == len(files), out
    if "onnx" in formats:
        import onnx
        import onnxruntime

        for name in models:
            path = project / relative_artifact(name, "onnx")
            onnx.checker.check_model(onnx.load(str(path)), full_check=True)
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            assert session.get_inputs()[0].name == "x"

    # And `modelreg validate` agrees: every artifact fresh (matches the lock) and in parity.
    registry = str(project / "registry.toml")
    assert main(["validate", "--registry", registry, "--latency-seconds", "0.01"]) == 0, capsys.readouterr()
    capsys.readouterr()
    results = read_json(project / "models/validation_results.json")
    assert results["ok"] is True
    for name in models:
        statuses = {c["name"]: c["status"] for c in results["models"][name]["checks"]}
        for fmt in formats:
            assert statuses[f"{fmt}.fresh"] == statuses[f"{fmt}.parity"] == "pass", (name, statuses)
    assert temp_files(project) == []


def read_json(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def test_two_exports_started_together_both_finish_and_the_lock_matches(project, capsys):
    # A serial export first: the reference bytes (RTNeural files are deterministic) and a lock to overwrite.
    assert export_all(project / "registry.toml").ok
    reference = {name: sha(project / relative_artifact(name, "rtneural")) for name in MODELS}

    rounds = []
    for _ in range(ROUNDS):
        runs = run_together([export_command(project, "--force")] * 2, cwd=project)
        assert_finished_cleanly(runs, written=len(MODELS) * len(FORMATS))
        rounds.append(overlapped(runs))
        assert temp_files(project) == []
    # Otherwise this would not have tested concurrency at all.
    assert any(rounds), "the two exports never ran at the same time"

    assert {name: sha(project / relative_artifact(name, "rtneural")) for name in MODELS} == reference
    assert_consistent(project, capsys)


def test_two_exports_of_different_formats_together_lose_no_lock_update(project, capsys):
    # From nothing: no artifact and no registry.lock yet, so each process must add its own records.
    assert not (project / "registry.lock").exists()
    for round_ in range(2):
        runs = run_together([export_command(project, "--force", "--format", fmt) for fmt in FORMATS], cwd=project)
        assert_finished_cleanly(runs, written=len(MODELS))
        for run, fmt in zip(runs, FORMATS):
            assert all(line.startswith(f"wrote {name} ") for name, line in zip(MODELS, run.out.splitlines())), run.out
            assert run.out.count(".onnx ") == (len(MODELS) if fmt == "onnx" else 0), run.out
        assert_consistent(project, capsys)


# A `modelreg export` that, once it has read registry.lock and is about to write it back,
# waits (at most WAIT seconds) until the other process has reached the same point.
# Under the file lock the other process cannot get there while this one holds the lock,
# so exactly one of the two waits in vain; without the file lock both would read the
# same old lock and the second write would drop the first one's records.
COLLIDING_EXPORT = textwrap.dedent("""\
    import sys, time
    from pathlib import Path
    import modelreg.exporting as exporting

    meeting, me, argv = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    WAIT = 3.0
    real_write = exporting.atomic_write_text

    def write(path, text):
        if Path(path).name == "registry.lock":
            (meeting / me).touch()
            deadline = time.monotonic() + WAIT
            while len(list(meeting.iterdir())) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            met = len(list(meeting.iterdir())) >= 2
            print("registry.lock update:", "met the other process" if met else "alone", flush=True)
        return real_write(path, text)

    exporting.atomic_write_text = write
    from modelreg.cli import main
    sys.exit(main(argv))
    """)


def test_colliding_lock_updates_are_serialised(project, tmp_path, capsys):
    meeting = tmp_path / "meeting"
    meeting.mkdir()
    registry = str(project / "registry.toml")
    # One artifact per process, so each one rewrites registry.lock exactly once.
    commands = [[sys.executable, "-c", COLLIDING_EXPORT, str(meeting), fmt,
                 "export", "tinylstm", "--format", fmt, "--registry", registry] for fmt in FORMATS]
    runs = run_together(commands, cwd=project)
    assert_finished_cleanly(runs, written=1)

    lock = read_lock(project)
    assert sorted(lock["models"]) == ["tinylstm"]
    artifacts = lock["models"]["tinylstm"]["artifacts"]
    assert sorted(artifacts) == sorted(FORMATS), "one process's lock update was lost"
    for fmt in FORMATS:
        assert artifacts[fmt]["sha256"] == sha(project / relative_artifact("tinylstm", fmt))

    outcomes = sorted(line.split(": ", 1)[1] for run in runs for line in run.out.splitlines()
                      if line.startswith("registry.lock update:"))
    # Exactly one process entered the read-modify-write while the other was kept out by the file lock.
    assert outcomes == ["alone", "met the other process"], [run.out for run in runs]
    assert temp_files(project) == []
    assert main(["validate", "tinylstm", "--registry", registry, "--latency-seconds", "0.01"]) == 0, capsys.readouterr()
