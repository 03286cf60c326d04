"""--jobs: parallel checks and exports give the same results as serial runs."""

from __future__ import annotations

import json

import pytest

from modelreg import Exporter, Parity, PluginError, UsageError, register_exporter, validate_all
from modelreg.checkpoint import init_checkpoint
from modelreg.cli import main
from modelreg.exporting import export_all, read_lock
from modelreg.plugins import reset_plugins
from modelreg.registry import load_registry


def _many(folder, count):
    blocks = []
    for i in range(count):
        units = 3 + i % 5
        recurrent = i % 3 == 0
        layers = f'{{ type = "lstm", units = {units} }}' if recurrent else f'{{ type = "dense", units = {units}, activation = "tanh" }}'
        params = 4 * units * (4 + units) + 8 * units if recurrent else 4 * units + units
        params += units * 2 + 2
        blocks.append(f"""
[models.m{i:02d}]
description = "model {i}"
input_shape = [1, 4]
output_shape = [1, 2]
dtype = "float32"
params = {params}
latency_ms = 50.0
exports = ["rtneural", "onnx"]
checkpoint = "models/m{i:02d}.pt"
layers = [{layers}, {{ type = "dense", units = 2, activation = "sigmoid" }}]
""")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text("".join(blocks))
    for spec in load_registry(path).values():
        init_checkpoint(spec)
    return path


def test_parallel_export_and_validate_match_serial(tmp_path, capsys):
    path = _many(tmp_path / "reg", 8)
    report = export_all(path, jobs=2)
    assert report.ok and len(report.artifacts) == 16
    assert [a.model for a in report.artifacts][::2] == [f"m{i:02d}" for i in range(8)]  # registry order
    lock = read_lock(path.parent)
    assert sorted(lock["models"]) == [f"m{i:02d}" for i in range(8)]  # no update lost under concurrency
    assert all(set(m["artifacts"]) == {"rtneural", "onnx"} for m in lock["models"].values())

    parallel = validate_all(path, jobs=2, write=False, latency_seconds=0.05)
    serial = validate_all(path, jobs=1, write=False, latency_seconds=0.05)
    assert parallel.ok and serial.ok
    for name in serial.models:
        assert [c.name for c in parallel[name].checks] == [c.name for c in serial[name].checks]
        assert parallel[name]["latency"].figures["iterations"] >= 200
    assert main(["validate", "--registry", str(path), "-j", "2", "--latency-seconds", "0.05", "--no-write"]) == 0
    assert "m07" in capsys.readouterr().out


def test_jobs_must_be_positive(tmp_path, capsys):
    path = _many(tmp_path / "reg", 1)
    with pytest.raises(UsageError, match="jobs must be at least 1"):
        validate_all(path, jobs=0)
    with pytest.raises(SystemExit) as info:
        main(["validate", "--registry", str(path), "--jobs", "0"])
    assert info.value.code == 2
    assert "expected a whole number >= 1, found '0'" in capsys.readouterr().err


class WeightSums(Exporter):
    """A scripted exporter, known only through register_exporter() (no entry point)."""

    name = "weightsums"

    def artifact_path(self, spec):
        return spec.registry_dir / "models" / f"{spec.name}.sums.json"

    def export(self, spec, module, path):
        path.write_text(json.dumps({k: float(v.double().sum()) for k, v in module.state_dict().items()}))

    def verify(self, spec, module, path, tolerance):
        written = json.loads(path.read_text())
        error = max(abs(written[k] - float(v.double().sum())) for k, v in module.state_dict().items())
        return Parity(max_error=error, max_abs_error=error, tolerance=tolerance)


class Unpicklable(WeightSums):
    name = "unpicklable"

    def __init__(self):
        self.hook = lambda: None  # a lambda cannot be pickled


@pytest.fixture
def _plugins():
    reset_plugins()
    yield
    reset_plugins()


def test_registered_exporters_reach_the_workers(tmp_path, _plugins):
    register_exporter(WeightSums)
    path = _many(tmp_path / "reg", 3)
    path.write_text(path.read_text().replace('exports = ["rtneural", "onnx"]', 'exports = ["weightsums"]'))
    report = export_all(path, jobs=2)
    assert report.ok, [a.message for a in report.artifacts]
    assert [a.status for a in report.artifacts] == ["written"] * 3
    validated = validate_all(path, jobs=2, write=False, latency_seconds=0.05)
    assert validated.ok
    assert all(m["weightsums.parity"].status == "pass" for m in validated.models.values())


def test_an_unpicklable_registered_exporter_is_refused_before_work_starts(tmp_path, _plugins):
    register_exporter(Unpicklable)
    path = _many(tmp_path / "reg", 2)
    unused = export_all(path, jobs=2)  # not used by these models: not sent, not in the way
    assert unused.ok
    path.write_text(path.read_text().replace('exports = ["rtneural", "onnx"]', 'exports = ["unpicklable"]'))
    with pytest.raises(PluginError) as info:
        export_all(path, jobs=2)
    message = str(info.value)
    assert "exporter 'unpicklable' was added with register_exporter() and cannot be sent to worker processes" in message
    assert "expected an exporter class defined at module level, an entry-point plugin, or jobs=1" in message
    assert not list((path.parent / "models").glob("*.sums.json"))
    assert export_all(path, jobs=1).ok  # in one process it works


class TimedSums(WeightSums):
    """WeightSums with a latency check (its name ends in "latency") and a plain one, each
    recording the process that ran it."""

    name = "timedsums"

    def extra_checks(self, spec, module, tolerance):
        import os

        from modelreg.report import CheckResult

        def check(name):
            return lambda path: CheckResult(f"timedsums.{name}", "pass", "ran", {"pid": os.getpid()})

        return [("fake_latency", check("fake_latency")), ("size", check("size"))]


def test_exporter_latency_checks_run_after_the_pool_in_this_process(tmp_path, _plugins):
    """With --jobs, latency is measured one model at a time with nothing else running: the
    exporters' latency checks (RTNeural C++) too, not inside the busy workers."""
    import os

    register_exporter(TimedSums)
    path = _many(tmp_path / "reg", 3)
    path.write_text(path.read_text().replace('exports = ["rtneural", "onnx"]', 'exports = ["timedsums"]'))
    assert export_all(path).ok
    parallel = validate_all(path, jobs=2, write=False, latency_seconds=0.02)
    serial = validate_all(path, jobs=1, write=False, latency_seconds=0.02)
    assert parallel.ok and serial.ok
    for name, model in parallel.models.items():
        assert [c.name for c in model.checks] == [c.name for c in serial[name].checks]  # same places
        assert model["timedsums.fake_latency"].status == "pass"
        assert model["timedsums.fake_latency"].figures["pid"] == os.getpid()
        assert model["timedsums.size"].figures["pid"] != os.getpid()  # other checks: in a worker
