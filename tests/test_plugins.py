"""Exporter plugins: entry-point discovery, broken and clashing plugins, registration, isolation."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

import modelreg
from modelreg import PluginError, available_exporters, load_registry, register_exporter, validate_all
from modelreg.exporting import export_all
from modelreg.plugins import Exporter, plugin_problems, reset_plugins, unregister_exporter

FAST = {"latency_seconds": 0.05}
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(autouse=True)
def _fresh_plugins():
    reset_plugins()
    yield
    reset_plugins()


def _fake_distribution(root: Path, name: str, entry_points: str, module: str = "", module_name: str = "") -> None:
    """A minimal installed distribution (dist-info + module) that importlib.metadata finds on sys.path."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    if module_name:
        (root / f"{module_name}.py").write_text(textwrap.dedent(module))


def test_builtin_and_example_plugin_found_through_entry_points():
    exporters = available_exporters()
    assert {"rtneural", "onnx", "torchscript"} <= set(exporters)
    # The example package is installed on its own; modelreg knows nothing of it but its entry point.
    assert type(exporters["torchscript"]).__module__ == "modelreg_torchscript"
    assert plugin_problems() == ()


def test_example_plugin_artifacts_are_checked_by_validate_all(tiny_registry):
    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["torchscript"]'))
    report = export_all(tiny_registry)
    assert report.ok and len(report.artifacts) == 3
    result = validate_all(tiny_registry, write=False, **FAST)
    assert result.ok
    for model in result.models.values():
        names = [c.name for c in model.checks]
        assert names[-4:] == ["torchscript.exists", "torchscript.fresh", "torchscript.schema", "torchscript.parity"]
        assert model["torchscript.parity"].figures["max_error"] <= 1e-5
    # Tamper with one artifact: reported as tampered, parity not run.
    artifact = tiny_registry.parent / "models" / "torchscript" / "tinygru.pt"
    artifact.write_bytes(artifact.read_bytes() + b"\0")
    tinygru = validate_all(tiny_registry, write=False, **FAST)["tinygru"]
    assert tinygru["torchscript.fresh"].status == "fail"
    assert "changed after export" in tinygru["torchscript.fresh"].message
    assert tinygru["torchscript.parity"].status == "skip"


def test_broken_and_clashing_plugins_are_reported_and_others_keep_working(tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path, "broken-plugin",
        "[modelreg.exporters]\nbroken = broken_plugin_mod:Exporter\n",
        "raise RuntimeError('plugin import exploded')\n", "broken_plugin_mod",
    )
    _fake_distribution(
        tmp_path, "clashing-plugin",
        "[modelreg.exporters]\nonnx = clashing_plugin_mod:Clash\n",
        """
        from modelreg.onnx.exporter import ONNXExporter
        class Clash(ONNXExporter):
            pass
        """, "clashing_plugin_mod",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    exporters = available_exporters()
    assert "rtneural" in exporters and "torchscript" in exporters
    assert "onnx" not in exporters and "broken" not in exporters
    messages = [str(p) for p in plugin_problems()]
    assert any("entry point 'broken = broken_plugin_mod:Exporter' of broken-plugin 0.1" in m
               and "RuntimeError: plugin import exploded" in m for m in messages), messages
    assert any("two exporters are named 'onnx'" in m and "clashing-plugin 0.1" in m and "modelreg 0.1.0" in m
               for m in messages), messages
    with pytest.raises(PluginError, match="two exporters are named 'onnx'"):
        modelreg.get_exporter("onnx")


def test_unknown_exporter_in_registry_lists_the_available_ones(tiny_registry):
    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["tflite"]', 1))
    with pytest.raises(modelreg.RegistryError) as info:
        load_registry(tiny_registry)
    text = str(info.value)
    assert "models.tinydense.exports[0]: unknown exporter (expected one of nam, onnx, rtneural, rtneural-cpp, rtneural-torch, torchscript, found 'tflite')" in text


class _Exploding(Exporter):
    name = "exploding"

    def artifact_path(self, spec):
        return spec.registry_dir / "models" / f"{spec.name}.boom"

    def export(self, spec, module, path):
        if spec.name == "tinylstm":
            raise ValueError("simulated plugin bug")
        path.write_text("ok")

    def verify(self, spec, module, path, tolerance):
        return modelreg.Parity(max_error=0.0, max_abs_error=0.0, tolerance=tolerance)


def test_register_exporter_and_isolation_of_a_raising_plugin(tiny_registry):
    register_exporter(_Exploding)
    with pytest.raises(PluginError, match="already registered"):
        register_exporter(_Exploding)
    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["exploding"]'))
    report = export_all(tiny_registry)
    status = {a.model: a.status for a in report.artifacts}
    assert status == {"tinydense": "written", "tinylstm": "failed", "tinygru": "written"}
    failed = next(a for a in report.artifacts if a.status == "failed")
    assert "unexpected ValueError in exporter 'exploding': simulated plugin bug" in failed.message
    assert not list((tiny_registry.parent / "models").glob(".*.partial"))  # no half-written leftovers
    unregister_exporter("exploding")
    assert "exploding" not in available_exporters()


def test_register_rejects_non_exporters():
    with pytest.raises(PluginError, match="not an exporter"):
        register_exporter(object())  # type: ignore[arg-type]


def test_onnx_without_its_extra_names_the_extra(tiny_registry, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["onnx"]', 1))
    report = export_all(tiny_registry)
    (artifact,) = report.artifacts
    assert artifact.status == "failed"
    assert "the ONNX exporter needs the 'onnx' package, which is not installed (expected pip install 'modelreg[onnx]')" in artifact.message


def test_broken_plugin_is_a_warning_of_export_and_validate_not_a_failure(tiny_registry, tmp_path, monkeypatch):
    plugins = tmp_path / "plugins"
    _fake_distribution(plugins, "broken-plugin", "[modelreg.exporters]\nbroken = broken_plugin_mod:Exporter\n",
                       "raise RuntimeError('plugin import exploded')\n", "broken_plugin_mod")
    monkeypatch.syspath_prepend(str(plugins))
    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["rtneural"]'))
    exported = export_all(tiny_registry)
    assert exported.ok
    assert any("broken-plugin 0.1" in str(w) and "plugin import exploded" in str(w) for w in exported.warnings)
    validated = validate_all(tiny_registry, write=False, **FAST)
    assert validated.ok and [str(w) for w in validated.warnings] == [str(w) for w in exported.warnings]

    # The CLI prints it on stderr, once, and still succeeds.
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run([sys.executable, "-m", "modelreg", "export", "--registry", str(tiny_registry)],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    warnings = [line for line in run.stderr.splitlines() if line.startswith("modelreg: warning:")]
    assert len(warnings) == 1 and "broken-plugin 0.1" in warnings[0], run.stderr
    assert "Traceback" not in run.stderr


# ---------------------------------------------------------------- the path export() is given


def _state_arrays(module) -> dict:
    return {key.replace(".", "_"): value.detach().numpy() for key, value in module.state_dict().items()}


class _NpzBySavez(Exporter):
    """Written the natural way: ``np.savez(path, ...)``, which appends ".npz" to a name without it."""

    name = "npz"

    def artifact_path(self, spec):
        return spec.registry_dir / "models" / f"{spec.name}.npz"

    def export(self, spec, module, path):
        import numpy as np

        np.savez(path, **_state_arrays(module))

    def check_artifact(self, spec, path):
        import numpy as np

        try:
            with np.load(path) as data:
                data.files
        except Exception as exc:
            return [modelreg.Problem(f"not a readable npz: {exc}", file=str(path), model=spec.name)]
        return []

    def verify(self, spec, module, path, tolerance):
        return modelreg.Parity(max_error=0.0, max_abs_error=0.0, tolerance=tolerance)


class _NpzToHandle(_NpzBySavez):
    """The documented way: hand np.savez an open file, so the name is used as it is."""

    def export(self, spec, module, path):
        import numpy as np

        with open(path, "wb") as handle:
            np.savez(handle, **_state_arrays(module))


class _NpzWithLeftoverThenRaise(_NpzToHandle):
    """Writes its artifact, leaves a scratch file beside it under the temporary name, then fails."""

    def export(self, spec, module, path):
        super().export(spec, module, path)
        Path(f"{path}.scratch").write_text("half done")
        raise ValueError("simulated failure after writing")


def _hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_exporter_that_writes_beside_its_path_gets_a_clear_message_and_leaves_nothing(tiny_registry):
    register_exporter(_NpzBySavez)
    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["npz"]', 1))
    report = export_all(tiny_registry)
    (artifact,) = report.artifacts
    assert artifact.status == "failed"
    message = artifact.message
    assert "exporter 'npz' wrote nothing at the path it was given" in message, message
    assert ".partial.npz" in message  # names what it wrote instead
    assert "pass an open file" in message
    assert "not a readable npz" not in message  # the artifact check never ran on an empty file
    models = tiny_registry.parent / "models"
    assert _hidden_leftovers(models) == []
    assert not (models / "tinydense.npz").exists()


def test_exporter_writing_to_an_open_file_at_its_path_succeeds(tiny_registry):
    import numpy as np

    register_exporter(_NpzToHandle)
    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["npz"]', 1))
    report = export_all(tiny_registry)
    assert report.ok, [a.message for a in report.artifacts]
    models = tiny_registry.parent / "models"
    with np.load(models / "tinydense.npz") as data:
        assert "layers_0_weight" in data.files
    assert _hidden_leftovers(models) == []


def test_failed_export_removes_what_it_left_beside_the_target(tiny_registry):
    register_exporter(_NpzWithLeftoverThenRaise)
    tiny_registry.write_text(tiny_registry.read_text().replace("exports = []", 'exports = ["npz"]', 1))
    (artifact,) = export_all(tiny_registry).artifacts
    assert artifact.status == "failed" and "simulated failure after writing" in artifact.message
    assert _hidden_leftovers(tiny_registry.parent / "models") == []


# ---------------------------------------------------------------- the public plugin API

EXAMPLE = ROOT / "examples" / "modelreg-torchscript" / "src" / "modelreg_torchscript" / "__init__.py"

# What docs/plugins.md's "Writing an exporter" section promises on the objects an exporter is handed.
SPEC_API = ("name", "registry_dir", "in_features", "out_features", "is_stateful", "layers", "tolerance", "input_range")
MODULE_API = ("in_features", "out_features", "is_stateful", "input_range", "state_dict", "reset", "state_layout", "streaming")


def _writing_an_exporter() -> str:
    text = (DOCS / "plugins.md").read_text()
    start = text.index("## Writing an exporter")
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _signature(function) -> str:
    """As Python prints it (keyword-only marker and defaults included), annotations unquoted."""
    import inspect

    return function.__name__ + str(inspect.signature(function)).replace("'", "")


def test_the_docs_document_the_exporter_interface_with_signatures(tiny_registry):
    section = _writing_an_exporter()
    for method in ("artifact_path", "export", "verify", "check_artifact"):
        signature = _signature(getattr(Exporter, method))
        assert f"def {signature}" in section, signature
    assert _signature(modelreg.compare_parity) in section
    spec = load_registry(tiny_registry)["tinylstm"]
    module = spec.build()
    for name in SPEC_API:
        assert f"spec.{name}" in section and hasattr(spec, name), name
    for name in MODULE_API:
        assert f"module.{name}" in section and hasattr(module, name), name


def test_plugin_api_is_public_and_lazy():
    for name in ("Exporter", "Parity", "Problem", "ExportError", "compare_parity", "RealtimeModel", "ModelSpec",
                 "register_exporter"):
        assert name in modelreg.__all__, name
    from modelreg.builder import RealtimeModel
    from modelreg.parity import compare_parity

    assert modelreg.RealtimeModel is RealtimeModel and modelreg.compare_parity is compare_parity
    import subprocess

    code = ("import sys, modelreg\n"
            "from modelreg import Exporter, Parity, Problem, ModelSpec\n"
            "assert 'torch' not in sys.modules and 'numpy' not in sys.modules, 'the plugin base imported torch/numpy'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_example_plugin_uses_only_the_public_api():
    """The example imports modelreg's facade names only, and uses only the documented
    attributes of what it is handed (so a plugin writer need not read modelreg's modules)."""
    import ast

    tree = ast.parse(EXAMPLE.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("modelreg"):
            assert node.module == "modelreg", f"imports from {node.module}"
            assert all(alias.name in modelreg.__all__ for alias in node.names), [a.name for a in node.names]
        if isinstance(node, ast.Import):
            assert all(not alias.name.startswith("modelreg.") for alias in node.names)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "modelreg":
                assert node.attr in modelreg.__all__, node.attr
            if node.value.id == "spec":
                assert node.attr in SPEC_API, f"spec.{node.attr} is not documented"
            if node.value.id == "module":
                assert node.attr in MODULE_API, f"module.{node.attr} is not documented"
