"""validate proves a model's formats concurrently (thread-safe exporters), a thread-unsafe
exporter's checks alone, and every latency check last, alone; the results keep their order."""

from __future__ import annotations

import json
import threading
import time

import pytest

from modelreg import Exporter, Parity, register_exporter, validate_all
from modelreg.checkpoint import init_checkpoint
from modelreg.exporting import artifact_checks, export_all
from modelreg.plugins import reset_plugins
from modelreg.registry import load_registry
from modelreg.report import CheckResult

from conftest import TINYDENSE, write_registry


class Tracker:
    """Which checks run right now, and what each one saw when it started."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[str] = set()
        self.finished: list[str] = []
        self.seen: dict[str, set[str]] = {}  # check -> the others running while it ran
        self.threads: dict[str, str] = {}
        self.meeting: threading.Barrier | None = None  # set for validation only

    def enter(self, name: str) -> None:
        with self.lock:
            self.seen[name] = set(self.running)
            self.running.add(name)
            self.threads[name] = threading.current_thread().name

    def leave(self, name: str) -> None:
        with self.lock:
            self.running.discard(name)
            self.finished.append(name)
            for other in self.running:  # it overlapped them too
                self.seen[name].add(other)


tracker = Tracker()


class Sums(Exporter):
    """Writes the weights' sums; its verify and extra checks tell the tracker when they run."""

    name = "sums_a"
    thread_safe = True

    def artifact_path(self, spec):
        return spec.registry_dir / "models" / f"{spec.name}.{self.name}.json"

    def export(self, spec, module, path):
        path.write_text(json.dumps({k: float(v.double().sum()) for k, v in module.state_dict().items()}))

    def verify(self, spec, module, path, tolerance):
        name = f"{self.name}.parity"
        tracker.enter(name)
        try:
            if tracker.meeting is not None and self.thread_safe:
                # Both thread-safe formats must be here at once: run one after the other,
                # the first waits alone until the timeout and the barrier breaks.
                tracker.meeting.wait()
            time.sleep(0.02)
            written = json.loads(path.read_text())
            error = max(abs(written[k] - float(v.double().sum())) for k, v in module.state_dict().items())
            return Parity(max_error=error, max_abs_error=error, tolerance=tolerance)
        finally:
            tracker.leave(name)

    def extra_checks(self, spec, module, tolerance):
        def check(suffix):
            def run(path):
                name = f"{self.name}.{suffix}"
                tracker.enter(name)
                try:
                    time.sleep(0.01)
                    return CheckResult(name, "pass", "ran", {"thread": threading.current_thread().name})
                finally:
                    tracker.leave(name)
            return run

        return [("stamp_latency", check("stamp_latency")), ("size", check("size"))]


class OtherSums(Sums):
    name = "sums_b"


class LoneSums(Sums):
    """A plugin that did not declare itself thread-safe."""

    name = "sums_alone"
    thread_safe = False


@pytest.fixture
def three_formats(tmp_path):
    global tracker
    tracker = Tracker()  # no meeting while exporting: export proves one format at a time
    reset_plugins()
    for exporter in (Sums, OtherSums, LoneSums):
        register_exporter(exporter)
    text = TINYDENSE.replace('exports = []', 'exports = ["sums_a", "sums_alone", "sums_b"]')
    path = write_registry(tmp_path / "project", text=text)
    for spec in load_registry(path).values():
        init_checkpoint(spec, seed=0)
    assert export_all(path).ok
    tracker = Tracker()
    tracker.meeting = threading.Barrier(2, timeout=10)
    yield path
    reset_plugins()


def test_thread_safe_formats_are_proven_at_once_the_rest_alone_latency_last(three_formats):
    report = validate_all(three_formats, write=False, latency_seconds=0.02)
    model = report["tinydense"]
    assert model.ok, [(c.name, c.status, c.message) for c in model.checks]

    # The two thread-safe formats met (the barrier needs both at once) in two threads.
    assert tracker.threads["sums_a.parity"] != tracker.threads["sums_b.parity"]
    assert "sums_b.parity" in tracker.seen["sums_a.parity"] or "sums_a.parity" in tracker.seen["sums_b.parity"]
    # The thread-unsafe one ran with nothing beside it, in the calling thread.
    for name in ("sums_alone.parity", "sums_alone.size"):
        assert tracker.seen[name] == set(), name
        assert tracker.threads[name] == threading.current_thread().name
    # Latency checks: after every other check, each alone.
    latency = ["sums_a.stamp_latency", "sums_alone.stamp_latency", "sums_b.stamp_latency"]
    assert tracker.finished[-3:] == latency
    for name in latency:
        assert tracker.seen[name] == set(), name

    # Reported in the order the checks are declared, as a serial run has them.
    spec = load_registry(three_formats)["tinydense"]
    declared = [name for name, _ in artifact_checks(spec, spec.load(), 1e-4)]
    assert [c.name for c in model.checks][-len(declared):] == declared


def test_one_thread_safe_format_runs_in_the_calling_thread(three_formats):
    three_formats.write_text(three_formats.read_text().replace('["sums_a", "sums_alone", "sums_b"]', '["sums_a"]'))
    tracker.meeting = None
    model = validate_all(three_formats, write=False, latency_seconds=0.02)["tinydense"]
    assert model.ok, [(c.name, c.status, c.message) for c in model.checks]
    assert tracker.threads["sums_a.parity"] == threading.current_thread().name


def test_a_failing_format_does_not_stop_the_others(three_formats):
    (three_formats.parent / "models" / "tinydense.sums_a.json").write_text("{}")  # tampered: stale, parity skipped
    tracker.meeting = None
    model = validate_all(three_formats, write=False, latency_seconds=0.02)["tinydense"]
    assert model["sums_a.fresh"].status == "fail"
    assert model["sums_a.parity"].status == "skip"
    assert model["sums_b.parity"].status == "pass"
    assert model["sums_alone.parity"].status == "pass"


def test_torch_references_take_turns(tiny_registry):
    """compare_parity from several threads on one stateful module: its torch reference runs
    one at a time (the module carries its recurrent state), and every result is the serial one."""
    import numpy as np

    from modelreg.parity import compare_parity

    spec = load_registry(tiny_registry)["tinylstm"]
    module = spec.load()
    inside = {"now": 0, "most": 0}
    lock = threading.Lock()

    def entering(_module, _args):
        with lock:
            inside["now"] += 1
            inside["most"] = max(inside["most"], inside["now"])
        time.sleep(0.01)  # wide enough that unguarded calls would overlap

    def leaving(_module, _args, _output):
        with lock:
            inside["now"] -= 1

    def run(frames):
        # The torch module itself as the "artifact": exact, frame by frame from a reset.
        import torch

        copy = spec.load()
        with torch.inference_mode():
            return np.stack([copy(torch.from_numpy(frames[:, t, :])).numpy() for t in range(frames.shape[1])], axis=1)

    serial = compare_parity(module, run, 1e-4)
    # Hooks (not a patched forward): the float64 copy compare_parity makes keeps them.
    module.register_forward_pre_hook(entering)
    module.register_forward_hook(leaving)
    start = threading.Barrier(4, timeout=10)
    results: list[Parity] = []

    def worker():
        start.wait()
        results.append(compare_parity(module, run, 1e-4))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inside["most"] == 1
    assert len(results) == 4
    assert all(r.cases == serial.cases and r.ok for r in results)


def test_workers_of_a_parallel_run_prove_one_format_at_a_time(three_formats):
    """With --jobs the pool keeps the cores busy: threads per format in each worker only
    oversubscribed them (0.76x serial at 200 models), so workers prove formats in turn."""
    tracker.meeting = None  # workers are other processes; the report says where checks ran
    text = three_formats.read_text()
    three_formats.write_text(text + text.replace("[models.tinydense]", "[models.tinydense2]")
                             .replace("models/tinydense.pt", "models/tinydense2.pt"))
    init_checkpoint(load_registry(three_formats)["tinydense2"], seed=1)
    assert export_all(three_formats).ok
    parallel = validate_all(three_formats, jobs=2, write=False, latency_seconds=0.02)
    serial = validate_all(three_formats, write=False, latency_seconds=0.02)
    assert parallel.ok and serial.ok
    for name in ("tinydense", "tinydense2"):
        assert {parallel[name][f"{fmt}.size"].figures["thread"] for fmt in ("sums_a", "sums_b")} == {"MainThread"}
        serial_threads = {serial[name][f"{fmt}.size"].figures["thread"] for fmt in ("sums_a", "sums_b")}
        assert len(serial_threads) == 2 and "MainThread" not in serial_threads
        assert [c.name for c in parallel[name].checks] == [c.name for c in serial[name].checks]
