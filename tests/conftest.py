"""Shared fixtures: small registries written into temporary folders."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

# One torch/OpenMP thread per test process (inherited by the CLI subprocesses tests start): make test
# runs two xdist workers on two cores, and two intra-op threads each (torch's default here) make four
# spinning threads on two cores. The models are small, so a thread each is faster as well as steadier:
# tests/test_export_properties.py alone took 100 s with two threads, 56 s with one. Set before torch
# is imported anywhere; a value the developer set is kept.
os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
#: The reference, one page per topic (README.md is the landing page that links to them).
DOCS = ROOT / "docs"
# Beside the checkout only on CI machines (RTNeural's C++ headers): tests that need it
# go through shared_dir(), which skips with a message when it is absent.
SHARED = ROOT.parent / "shared"
# RTNeural's golden models and outputs, copied into the repository (BSD-3-Clause,
# LICENSE-RTNeural beside them) so that the suite passes on a clone with nothing beside it.
GOLDEN = ROOT / "tests" / "data" / "rtneural"
#: RTNeural's C++ headers beside CI's checkout; tests using them skip when absent,
#: naming $MODELREG_RTNEURAL (tests/test_rtneural_cpp.py).
SHARED_RTNEURAL = SHARED / "rtneural"
#: The RTNeural checkout the C++ tests compile against: $MODELREG_RTNEURAL, else the shared one.
RTNEURAL = Path(os.environ.get("MODELREG_RTNEURAL") or SHARED_RTNEURAL)
#: NAM's engine (NeuralAmpModelerCore) beside CI's checkout: $MODELREG_NAM_CORE, else the shared
#: copy; tests using it skip when absent, naming the variable (tests/test_nam.py).
NAM_CORE = Path(os.environ.get("MODELREG_NAM_CORE") or SHARED / "nam-core")
#: Marks a test that compiles against RTNeural's C++ headers; skipped, saying what to set, without them.
needs_rtneural = pytest.mark.skipif(
    not (RTNEURAL / "RTNeural" / "RTNeural.h").is_file() or (shutil.which("c++") is None and shutil.which("g++") is None),
    reason=f"RTNeural's C++ headers are not at {RTNEURAL} (or no C++ compiler): "
           "set MODELREG_RTNEURAL to an RTNeural checkout",
)


def shared_dir(*parts: str, what: str, setting: str) -> Path:
    """A path under ``../shared``, or skip the test naming what is missing and what to set."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{what} not found at {path}; set {setting} to run this test")
    return path

# The tiny registry: three models, every test's default. TINYDENSE alone serves tests that
# write their own registry around it (tanh keeps its softmax inputs small: RTNeural's
# softmax overflows above ~88, see docs/exporters.md).
TINYDENSE = """\
[models.tinydense]
description = "two dense layers"
input_shape = [1, 4]
output_shape = [1, 3]
dtype = "float32"
params = 43
latency_ms = 50.0
exports = []
checkpoint = "models/tinydense.pt"
layers = [
    { type = "dense", units = 5, activation = "tanh" },
    { type = "dense", units = 3, activation = "softmax" },
]
"""

TINY_REGISTRY = TINYDENSE + """
[models.tinylstm]
description = "a dense layer, then an LSTM"
input_shape = [1, 3]
output_shape = [1, 2]
dtype = "float32"
params = 80
latency_ms = 50.0
exports = []
checkpoint = "models/tinylstm.pt"
layers = [
    { type = "dense", units = 4, activation = "tanh" },
    { type = "lstm", units = 2 },
]

[models.tinygru]
description = "a GRU, then a sigmoid dense layer"
input_shape = [1, 3]
output_shape = [1, 2]
dtype = "float32"
params = 118
latency_ms = 50.0
exports = []
checkpoint = "models/tinygru.pt"
layers = [
    { type = "gru", units = 4 },
    { type = "dense", units = 2, activation = "sigmoid" },
]
"""


#: Prepended to $MODELREG_CXXFLAGS for every test (see _no_rtneural_cpp_unless_asked).
TEST_CXXFLAGS = "-O1"


@pytest.fixture(autouse=True)
def _no_rtneural_cpp_unless_asked(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tests run as on a machine without RTNeural: a developer's MODELREG_RTNEURAL never
    reaches them (tests/test_rtneural_cpp.py configures it itself), and nothing is
    compiled into the user's cache."""
    monkeypatch.delenv("MODELREG_RTNEURAL", raising=False)
    monkeypatch.delenv("MODELREG_RTNEURAL_BACKEND", raising=False)
    base = tmp_path_factory.getbasetemp()
    # One cache for the whole session: with pytest-xdist (make test runs -n 2) each worker has a
    # basetemp of its own under the session's, and the cache's file locks serialise the builds.
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    monkeypatch.setenv("MODELREG_CACHE_DIR", str(shared / "modelreg-cache"))
    # The suite's C++ test programs compile at -O1 (appended after modelreg's -O3, so it wins):
    # ~35% less compile time for some sixty programs, and nothing the tests judge depends on it
    # (parity within tolerance, allocations, sanitizer stops, resting states). What ships is proven
    # at the shipping flags where it is built as a host builds it: the CMake host example compiles
    # every bundled model in both forms as a release build (-O2 -march=native) and compares outputs.
    monkeypatch.setenv("MODELREG_CXXFLAGS", f"{TEST_CXXFLAGS} {os.environ.get('MODELREG_CXXFLAGS', '')}".strip())


@pytest.fixture
def cpp(monkeypatch: pytest.MonkeyPatch) -> Path:
    """RTNeural C++ configured through the environment (STL backend, the default compiler). Builds go
    to the session's cache (set above), so each program compiles once per test session."""
    monkeypatch.setenv("MODELREG_RTNEURAL", str(RTNEURAL))
    monkeypatch.setenv("MODELREG_RTNEURAL_BACKEND", "stl")
    monkeypatch.delenv("CXX", raising=False)
    # RealtimeSanitizer builds cost a clang compile per header: the tests that prove them ask for it
    # (the `rtsan` fixture); everywhere else the real-time checks rely on the allocation counter.
    monkeypatch.setenv("MODELREG_RTSAN_CXX", "off")
    return RTNEURAL


def write_registry(folder: Path, extra: str = "", text: str | None = None) -> Path:
    """Write the tiny registry (or ``text``) into ``folder``; returns the file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.toml"
    path.write_text(textwrap.dedent(text) if text is not None else TINY_REGISTRY + extra)
    return path


@pytest.fixture
def tiny_registry(tmp_path: Path) -> Path:
    """A three-model registry (dense, lstm, gru) with seeded checkpoints."""
    import modelreg
    from modelreg.checkpoint import init_checkpoint

    path = write_registry(tmp_path / "project")
    registry = modelreg.load_registry(path)
    for spec in registry.values():
        init_checkpoint(spec, seed=0)
    return path


@pytest.fixture
def bundled_copy(tmp_path: Path) -> Path:
    """A copy of the bundled registry and its checkpoints, safe to modify."""
    target = tmp_path / "bundled"
    (target / "models").mkdir(parents=True)
    shutil.copy(ROOT / "registry.toml", target / "registry.toml")
    for checkpoint in (ROOT / "models").glob("*.pt"):
        shutil.copy(checkpoint, target / "models" / checkpoint.name)
    return target / "registry.toml"


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Run the CLI in-process: (exit code, stdout, stderr); argparse's SystemExit becomes its exit code."""
    from modelreg.cli import main

    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err
