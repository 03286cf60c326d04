"""Build and run the C++ host of the bundled models, in both weight forms, with real CMake.

    python examples/cpp-host/run.py [--build DIR] [--rtneural DIR]

For each form ("json": weights read from models/NAME.json at run time; "embedded": compiled
into the header) it exports the bundled registry's RTNeural files and rtneural-cpp headers
into DIR/FORM, writes each model's reference stream (torch's outputs for the parity stream,
through modelreg's API), configures and builds this CMake project against DIR/FORM/models/cpp
(add_subdirectory + target_link_libraries, as any host would), and runs the host. Exit 0 when
every model in both forms matches torch.

RTNeural comes from --rtneural, else $MODELREG_RTNEURAL, else ../shared/rtneural beside the
checkout. CMake and Ninja come from the dev set-up (pip's cmake and ninja).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FORMS = ("json", "embedded")


def _tool(name: str) -> str:
    """cmake / ninja: beside this Python (the venv's pip packages), else on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise SystemExit(f"{name} not found: install the dev set-up (pip install cmake ninja)")
    return found


def _registry_for(form: str, folder: Path) -> Path:
    """The bundled registry with every entry's cpp_weights set to ``form``, and its checkpoints."""
    (folder / "models").mkdir(parents=True, exist_ok=True)
    for checkpoint in (ROOT / "models").glob("*.pt"):
        shutil.copy(checkpoint, folder / "models" / checkpoint.name)
    text = (ROOT / "registry.toml").read_text(encoding="utf-8")
    text = re.sub(r'^cpp_weights = "\w+"\n', "", text, flags=re.M)
    text = re.sub(r"^(exports = .*)$", rf'\1\ncpp_weights = "{form}"', text, flags=re.M)
    path = folder / "registry.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _write_streams(registry: Path, folder: Path) -> None:
    """NAME.stream: int32 frames, in, out; the parity stream's inputs; torch's outputs (float32)."""
    import numpy as np
    import torch

    import modelreg
    from modelreg.inputs import stream

    folder.mkdir(parents=True, exist_ok=True)
    for spec in modelreg.load_registry(registry).values():
        module = spec.load()
        frames = stream(spec.in_features, input_range=spec.input_range)[0]
        module.reset()
        with torch.inference_mode():
            outputs = np.stack([module(torch.from_numpy(frame[None, :])).numpy()[0] for frame in frames])
        with open(folder / f"{spec.name}.stream", "wb") as handle:
            handle.write(struct.pack("<3i", frames.shape[0], spec.in_features, spec.out_features))
            handle.write(np.ascontiguousarray(frames, "<f4").tobytes())
            handle.write(np.ascontiguousarray(outputs, "<f4").tobytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=ROOT / "build" / "cpp-host", help="build folder")
    parser.add_argument("--rtneural", type=Path, default=None, help="RTNeural checkout")
    args = parser.parse_args(argv)
    rtneural = args.rtneural or Path(os.environ.get("MODELREG_RTNEURAL") or ROOT.parent / "shared" / "rtneural")
    if not (rtneural / "RTNeural" / "RTNeural.h").is_file():
        print(f"RTNeural not found at {rtneural}: pass --rtneural or set MODELREG_RTNEURAL", file=sys.stderr)
        return 2
    cmake, ninja = _tool("cmake"), _tool("ninja")
    failed = False
    for form in FORMS:
        folder = (args.build / form).absolute()
        registry = _registry_for(form, folder)
        exported = subprocess.run([sys.executable, "-m", "modelreg", "export", "--registry", str(registry),
                                   "--format", "rtneural", "--format", "rtneural-cpp"], capture_output=True, text=True)
        if exported.returncode != 0:
            print(exported.stdout + exported.stderr, file=sys.stderr)
            return 1
        _write_streams(registry, folder / "streams")
        build = folder / "cmake"
        configure = [cmake, "-S", str(HERE), "-B", str(build), "-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}",
                     "-DCMAKE_BUILD_TYPE=Release", f"-DMODELREG_MODELS_DIR={folder / 'models' / 'cpp'}",
                     f"-DMODELREG_RTNEURAL_DIR={rtneural.absolute()}",
                     f"-DMODELREG_EMBEDDED={'ON' if form == 'embedded' else 'OFF'}"]
        for step in (configure, [cmake, "--build", str(build)]):
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                print(done.stdout[-4000:] + done.stderr[-4000:], file=sys.stderr)
                return 1
        host = build / ("host.exe" if os.name == "nt" else "host")
        ran = subprocess.run([str(host), str(folder / "streams"), str(folder / "models")], capture_output=True, text=True)
        print(f"[{form} weights]")
        print(ran.stdout, end="")
        failed |= ran.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
