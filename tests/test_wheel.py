"""An installed (non-editable) wheel must carry its schemas and work from any folder."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_installs_and_validates_a_model(tmp_path, bundled_copy):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(dist), str(ROOT)],
        check=True, capture_output=True, text=True,
    )
    wheel = next(dist.glob("modelreg-*.whl"))
    import zipfile

    archive = zipfile.ZipFile(wheel)
    names = archive.namelist()
    assert "modelreg/schemas/registry.schema.json" in names
    assert "modelreg/py.typed" in names
    # It declares MIT: the licence text travels with it (PEP 639: dist-info/licenses/).
    (dist_info,) = {name.split("/")[0] for name in names if name.split("/")[0].endswith(".dist-info")}
    assert f"{dist_info}/licenses/LICENSE" in names, names
    assert archive.read(f"{dist_info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    metadata = archive.read(f"{dist_info}/METADATA").decode()
    assert "License-Expression: MIT" in metadata and "License-File: LICENSE" in metadata, metadata
    assert "modelreg/rtneural/runner.cpp" in names  # the RTNeural runner is compiled from the installed package

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # Dependencies (torch, numpy, ...) come from the test's own environment, offline;
    # modelreg itself only from the wheel. A path line in a .pth file does not run the
    # dev environment's own .pth files, so its editable modelreg stays invisible.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True, capture_output=True, text=True,
    )
    script = textwrap.dedent(f"""
        import modelreg, pathlib
        assert pathlib.Path(modelreg.__file__).is_relative_to({str(env_dir)!r}), modelreg.__file__
        from modelreg.exporting import export
        registry = modelreg.load_registry({str(bundled_copy)!r})
        assert export("dynamicsengine", registry).ok  # built-in exporters come via the wheel's entry points
        report = modelreg.validate("dynamicsengine", registry, latency_seconds=0.05, write=True)
        # latency is measured, not asserted (a loaded machine may miss the target)
        assert all(c.name == "latency" for c in report["dynamicsengine"].failures), report.to_json()
        print("OK", len(registry))
    """)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([str(python), "-c", script], cwd=elsewhere, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["OK", "5"]
